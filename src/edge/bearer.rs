//! Checking our own access tokens where they are presented: signature and `kid` against our
//! keys, `typ` at+jwt, expiry, issuer and audience. Every failure is `invalid_token`.

use worker::{Env, Request};

use super::{config, keys, token::api_audience};
use crate::protocol::admin_auth::bearer_token;
use crate::protocol::error::{ApiError, ErrorCode};
use crate::protocol::keys::{verify, VerifyError};
use crate::protocol::tokens::AccessClaims;

fn invalid(why: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidToken, why)
}

/// The bearer token of a request (RFC 6750 §2.1; never from the query string).
pub fn presented(req: &Request) -> Result<String, ApiError> {
    let header = req.headers().get("authorization").ok().flatten();
    match header {
        None => Err(ApiError::new(
            ErrorCode::MissingToken,
            "a bearer access token is required",
        )),
        Some(h) => bearer_token(&h)
            .map(str::to_owned)
            .ok_or_else(|| invalid("the Authorization header is not a Bearer token")),
    }
}

/// Verifies an access token we issued.
pub fn check(env: &Env, token: &str, now: u64) -> Result<AccessClaims, ApiError> {
    check_with_exp(env, token, now).map(|(claims, _)| claims)
}

/// Verifies an access token we issued: its claims and its `exp`.
pub fn check_with_exp(env: &Env, token: &str, now: u64) -> Result<(AccessClaims, u64), ApiError> {
    let keys = keys::key_set(env)?;
    let issuer = config::issuer(env)?;
    let claims = verify::<AccessClaims>(&keys, token, "at+jwt", now, 0).map_err(|e| {
        invalid(match e {
            VerifyError::Expired => "the access token expired",
            VerifyError::NotYetValid => "the access token is not valid yet",
            _ => "the access token is not valid",
        })
    })?;
    let exp = claims
        .expiration
        .and_then(|t| u64::try_from(t.timestamp()).ok())
        .ok_or_else(|| invalid("the access token has no expiry"))?;
    let c = claims.custom;
    if c.iss != issuer.as_str() {
        return Err(invalid("the access token is from another issuer"));
    }
    if c.aud != api_audience(&issuer) {
        return Err(invalid("the access token is for another audience"));
    }
    Ok((c, exp))
}
