//! The UserInfo endpoint (OIDC Core §5.3): the consented claims of the token's user, checked
//! against the live grant so a revoked grant answers `invalid_token` at once.

use crate::edge::calls::grants;
use crate::edge::flows::{bearer, user_grant};
use crate::edge::rt::request::Request;
use crate::edge::rt::respond::Outcome;
use crate::edge::rt::{body, respond};
use crate::edge::rt::{config, keys};
use crate::protocol::claims;
use crate::protocol::client::ClientRecord;
use crate::protocol::error::{ApiError, ErrorCode};
use crate::protocol::grant::is_grant_id;
use crate::protocol::jwk::SigningAlg;
use crate::protocol::keys::Times;
use crate::protocol::tokens::ID_TOKEN_TTL_S;
use crate::store::grants::Status;
use serde_json::{Map, Value};
use worker::Env;

/// The access token: from the `Authorization` header, or (a POST without one) from the form
/// body's `access_token` (RFC 6750 §2.2; OpenID Connect Core §5.3.1 allows either). Both at once
/// is `invalid_request` (RFC 6750 §2: one method per request).
async fn token_of(req: &mut Request) -> Result<String, ApiError> {
    let has_header = req.headers().get("authorization").ok().flatten().is_some();
    let posted = req.method() == worker::Method::Post;
    let is_form = req
        .headers()
        .get("content-type")
        .ok()
        .flatten()
        .is_some_and(|c| {
            c.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    if !posted || !is_form {
        return bearer::presented(req);
    }
    let form = body::form(req).await?;
    match (has_header, form.get("access_token")) {
        (true, Some(_)) => Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "send the access token one way only",
        )),
        (true, None) => bearer::presented(req),
        (false, Some(t)) => Ok(t.to_owned()),
        (false, None) => bearer::presented(req),
    }
}

/// The released claims, and the client they are for (which may want them signed).
async fn run(
    req: &mut Request,
    env: &Env,
    now_ms: u64,
) -> Result<(Map<String, Value>, ClientRecord), ApiError> {
    let now = now_ms / 1000;
    let token = token_of(req).await?;
    let claims = bearer::check(env, &token, now).await?;
    // The gateway's question too: a token it refuses (its client removed, its partner suspended
    // or removed) releases nothing here either.
    let standing = bearer::standing(env, &claims, now_ms)
        .await?
        .map_err(|u| ApiError::new(ErrorCode::InvalidToken, u.describe()))?;
    let scopes: Vec<String> = claims.scope.split(' ').map(str::to_owned).collect();
    if !scopes.iter().any(|s| s == "openid") {
        return Err(ApiError::new(
            ErrorCode::InsufficientScope,
            "the openid scope is required",
        ));
    }
    if !is_grant_id(&claims.gid) {
        return Err(ApiError::new(
            ErrorCode::InvalidToken,
            "the access token has no user",
        ));
    }
    let revoked = || ApiError::new(ErrorCode::InvalidToken, "the access token was revoked");
    let grant = match grants::call(
        env,
        &claims.gid,
        Status {
            now,
            refresh_hash: None,
        },
    )
    .await?
    {
        Some(grant) => grant,
        None => return Err(revoked()),
    };
    // A deleted user, or a new account reusing the username, ends the grant's tokens.
    let user = user_grant::grant_user(env, &grant, now * 1000, None)
        .await?
        .ok_or_else(revoked)?;
    let mut out = claims::released(&scopes, &grant.claims.userinfo, &user);
    out.insert("sub".into(), grant.sub.into());
    Ok((out, standing.client))
}

/// The claims as a JWT (OpenID Connect Core §5.3.2) for a client registered for it: signed with
/// its `userinfo_signed_response_alg`, for it (`aud`), by us (`iss`); never a `nonce`.
async fn signed(
    env: &Env,
    mut claims: Map<String, Value>,
    client: &ClientRecord,
    alg: SigningAlg,
    now: u64,
) -> Result<String, ApiError> {
    let keys = keys::key_set(env)?;
    let key = keys
        .for_alg(alg)
        .ok_or_else(|| ApiError::unavailable(format!("no {} key for userinfo", alg.as_str())))?;
    claims.insert("iss".into(), config::issuer(env)?.as_str().into());
    claims.insert("aud".into(), client.client_id.as_str().into());
    let times = Times {
        iat: now,
        exp: now + ID_TOKEN_TTL_S,
    };
    keys::sign(key, "JWT", times, Value::Object(claims)).await
}

pub async fn userinfo(mut req: Request, env: &Env, now_ms: u64) -> Outcome {
    let answer = match run(&mut req, env, now_ms).await {
        Ok((claims, client)) => match client.userinfo_signed_response_alg {
            None => Ok(respond::json(200, &Value::Object(claims), &[])),
            Some(alg) => signed(env, claims, &client, alg, now_ms / 1000)
                .await
                .map(|jwt| respond::body(200, "application/jwt", jwt)),
        },
        Err(e) => Err(e),
    };
    match answer {
        Ok(response) => Outcome::new(response, "ok"),
        Err(e) => Outcome::error(e),
    }
}
