//! The refresh token grant (RFC 6749 §6, RFC 9700 §4.14.2): the grant's user is checked to be
//! the same person still, then the grant object rotates the token (and detects reuse).

use super::{issued, mint, new_refresh, Ctx};
use crate::edge::calls::grants;
use crate::edge::flows::user_grant;
use crate::protocol::claims;
use crate::protocol::error::{ApiError, ErrorCode};
use crate::protocol::token_request::TokenError;
use crate::protocol::tokens::{TokenResponse, ACCESS_TOKEN_TTL_S};
use crate::store::grants::{Refresh, Revoke, Status};

pub(super) async fn refresh(
    cx: &Ctx<'_>,
    grant_id: String,
    refresh_hash: String,
    scope: Option<Vec<String>>,
) -> Result<TokenResponse, TokenError> {
    let (env, client, now) = (cx.env, cx.client, cx.now);
    // The grant's user is checked before the token rotates, so a storage failure here leaves the
    // client's refresh token usable.
    let status = Status {
        now,
        refresh_hash: Some(refresh_hash.clone()),
    };
    let user = match grants::call(env, &grant_id, status).await? {
        Some(grant) if grant.client_id == client.client_id => {
            let until = now + ACCESS_TOKEN_TTL_S;
            match user_grant::grant_user(env, &grant, cx.now_ms, Some((until, now))).await? {
                Some(user) => Some(user),
                None => {
                    let revoke = Revoke {
                        client_id: client.client_id.clone(),
                    };
                    grants::call(env, &grant_id, revoke).await?;
                    return Err(ApiError::new(
                        ErrorCode::InvalidGrant,
                        "the user's account or password has changed",
                    )
                    .into());
                }
            }
        }
        // Inactive, foreign or superseded: the Refresh command decides (and detects reuse).
        _ => None,
    };
    let (token, new_hash) = new_refresh(&grant_id)?;
    let cmd = Refresh {
        refresh_hash,
        client_id: client.client_id.clone(),
        scopes: scope,
        new_refresh_hash: new_hash,
        now,
    };
    let mut issue = issued(grants::call(env, &grant_id, cmd).await?)?;
    // A client whose registration lost a scope since (RFC 7592 updates) is no longer given it.
    issue.scopes.retain(|s| client.scopes.contains(s));
    // ID-token claims from the current profile, for the scopes of this issue only.
    if let Some(user) = &user {
        let acr = issue.grant.id_claims.get("acr").cloned();
        issue.grant.id_claims = claims::released(&[], &issue.grant.claims.id_token, user);
        if let Some(acr) = acr {
            issue.grant.id_claims.insert("acr".into(), acr);
        }
    }
    Ok(mint(cx, issue, Some(token)).await?)
}
