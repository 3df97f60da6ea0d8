//! The JWKS and discovery endpoints: our public keys and the OpenID Provider metadata.

use crate::edge::rt::keys::key_set;
use crate::edge::rt::respond::Outcome;
use crate::edge::rt::{config, respond};
use crate::protocol::discovery;
use worker::Env;

/// `/.well-known/jwks.json`: public keys only, cacheable for five minutes.
pub fn jwks(env: &Env) -> Outcome {
    match key_set(env) {
        Ok(keys) => Outcome::new(
            respond::json(
                200,
                keys.public_jwks(),
                &[("cache-control", "public, max-age=300".to_owned())],
            ),
            "ok",
        ),
        Err(e) => Outcome::error(e),
    }
}

/// Both discovery documents.
pub fn discovery(env: &Env) -> Outcome {
    let doc = config::issuer(env).and_then(|issuer| {
        let keys = key_set(env)?;
        Ok(discovery::document(&issuer, &keys.algs()))
    });
    match doc {
        Ok(doc) => Outcome::new(
            respond::json(
                200,
                &doc,
                &[("cache-control", "public, max-age=300".to_owned())],
            ),
            "ok",
        ),
        Err(e) => Outcome::error(e),
    }
}
