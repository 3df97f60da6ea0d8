//! The UserInfo endpoint (OIDC Core §5.3): the consented claims of the token's user, checked
//! against the live grant so a revoked grant answers `invalid_token` at once.

use crate::edge::calls::grants;
use crate::edge::flows::{bearer, user_grant};
use crate::edge::rt::respond;
use crate::edge::rt::respond::Outcome;
use crate::protocol::error::{ApiError, ErrorCode};
use crate::protocol::grant::is_grant_id;
use crate::protocol::tokens::released_claims;
use crate::store::grants::Status;
use serde_json::Value;
use worker::{Env, Request};

async fn run(req: &Request, env: &Env, now_ms: u64) -> Result<Value, ApiError> {
    let now = now_ms / 1000;
    let token = bearer::presented(req)?;
    let claims = bearer::check(env, &token, now)?;
    // The gateway's question too: a token it refuses (its client removed, its partner suspended
    // or removed) releases nothing here either.
    bearer::standing(env, &claims, now_ms)
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
    let mut out = released_claims(&scopes, &user);
    out.insert("sub".into(), grant.sub.into());
    Ok(Value::Object(out))
}

pub async fn userinfo(req: Request, env: &Env, now_ms: u64) -> Outcome {
    match run(&req, env, now_ms).await {
        Ok(body) => Outcome::new(respond::json(200, &body, &[]), "ok"),
        Err(e) => Outcome::error(e),
    }
}
