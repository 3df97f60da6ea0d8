//! Token revocation (RFC 7009) and introspection (RFC 7662), both for authenticated clients only.

use crate::edge::calls::{grants, replay};
use crate::edge::flows::revoke::seen_here;
use crate::edge::flows::{bearer, client_auth, user_grant};
use crate::edge::rt::body::read_form;
use crate::edge::rt::request::Request;
use crate::edge::rt::respond;
use crate::edge::rt::respond::Outcome;
use crate::edge::rt::revoked::{publish, REVOCATION_PUBLISHED_S};
use crate::protocol::client::{AuthMethod, ClientRecord};
use crate::protocol::error::{ApiError, ErrorCode};
use crate::protocol::grant::{hash_secret, is_grant_id, split_handle};
use crate::protocol::tokens::AccessClaims;
use crate::routes;
use crate::store::grants::{Revoke, Status};
use serde_json::{json, Value};
use worker::Env;

/// What a presented token is, if it is one of ours.
enum Ours {
    /// An access token, with its `exp` and `iat`.
    Access(AccessClaims, u64, u64),
    Refresh {
        grant_id: String,
        hash: String,
    },
}

async fn identify(env: &Env, token: &str, now: u64) -> Option<Ours> {
    if let Some((grant_id, hash)) = split_handle(token) {
        return Some(Ours::Refresh { grant_id, hash });
    }
    bearer::check_with_times(env, token, now)
        .await
        .ok()
        .map(|(c, exp, iat)| Ours::Access(c, exp, iat))
}

async fn form_and_client(
    req: Request,
    env: &Env,
    endpoint: &str,
    now_ms: u64,
) -> Result<(ClientRecord, String), ApiError> {
    let (req, params) = read_form(req).await?;
    let (client, _) = client_auth::authenticate(env, &req, &params, endpoint, now_ms).await?;
    let token = params
        .get("token")
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidRequest, "token is missing"))?
        .to_owned();
    Ok((client, token))
}

/// RFC 7009: revoking a refresh or access token ends its grant. Unknown tokens, and other
/// clients' tokens, are answered the same way (200) and change nothing.
pub async fn revoke(req: Request, env: &Env, now_ms: u64) -> Outcome {
    let now = now_ms / 1000;
    let result = async {
        let (client, token) = form_and_client(req, env, routes::REVOKE, now_ms).await?;
        let grant_id = match identify(env, &token, now).await {
            // Only the grant's current refresh token revokes it: a guessed handle with the right
            // grant id but the wrong secret changes nothing (RFC 7009 §2.1).
            Some(Ours::Refresh { grant_id, hash }) => {
                let cmd = Status {
                    now,
                    refresh_hash: Some(hash),
                };
                grants::call(env, &grant_id, cmd).await?.map(|_| grant_id)
            }
            Some(Ours::Access(c, _, _))
                if is_grant_id(&c.gid) && c.client_id == client.client_id.as_str() =>
            {
                Some(c.gid)
            }
            // A client-credentials token has no grant: the token itself is revoked.
            Some(Ours::Access(c, _, _)) if c.client_id == client.client_id.as_str() => {
                revoke_token(env, &c.jti, now_ms).await?;
                None
            }
            _ => None,
        };
        if let Some(gid) = grant_id {
            let cmd = Revoke {
                client_id: client.client_id.clone(),
            };
            grants::call(env, &gid, cmd).await?;
            seen_here(&gid);
        }
        Ok(client)
    }
    .await;
    match result {
        Ok(client) => Outcome::new(
            respond::empty(200, &[("cache-control", "no-store".to_owned())]),
            "revoked",
        )
        .partner(client.partner_id),
        Err(e) => Outcome::error(e),
    }
}

/// The signer under which revoked client-credentials tokens are recorded in the replay shards.
const REVOKED_TOKENS: &str = "revoked-token";

/// Revokes a client-credentials token (no grant object to record it): its marker is written
/// once. The replay shard of the `jti` records that the marker is published, after the write;
/// a revocation again finds it there and leaves KV alone, and one after a failed write writes
/// again. The record lives as long as the marker.
async fn revoke_token(env: &Env, jti: &str, now_ms: u64) -> Result<(), ApiError> {
    let now = now_ms / 1000;
    let key = hash_secret(jti);
    if replay::unused(env, REVOKED_TOKENS, &key, now).await? {
        publish(env, jti, now_ms).await?;
        replay::claim(env, REVOKED_TOKENS, &key, now + REVOCATION_PUBLISHED_S, now).await?;
    }
    seen_here(jti);
    Ok(())
}

fn inactive() -> Value {
    json!({ "active": false })
}

/// RFC 7662: `active: true` only for a live token of the caller's own partner.
pub async fn introspect(req: Request, env: &Env, now_ms: u64) -> Outcome {
    let now = now_ms / 1000;
    let result = async {
        let (client, token) = form_and_client(req, env, routes::INTROSPECT, now_ms).await?;
        if client.token_endpoint_auth_method == AuthMethod::None {
            return Err(ApiError::new(
                ErrorCode::InvalidClient,
                "introspection needs an authenticated (confidential) client",
            ));
        }
        let body = match identify(env, &token, now).await {
            None => inactive(),
            Some(Ours::Access(c, exp, iat)) => {
                // What the gateway would refuse is not active: its standing check comes first
                // (not revoked, the token's client registered, its partner active).
                let standing = bearer::standing(env, &c, now_ms).await?;
                // `Some(username)`: a live user grant (the username, if its scope shows it).
                let live: Option<Option<String>> = if standing.is_err() {
                    None
                } else if is_grant_id(&c.gid) {
                    let cmd = Status {
                        now,
                        refresh_hash: None,
                    };
                    match grants::call(env, &c.gid, cmd).await? {
                        // Still the same person, under the same password.
                        Some(grant) if grant.partner_id == client.partner_id => {
                            user_grant::grant_user(env, &grant, now_ms, None)
                                .await?
                                .map(|user| {
                                    let shown = c.scope.split(' ').any(|s| s == "profile");
                                    shown.then(|| user.username.as_str().to_owned())
                                })
                        }
                        _ => None,
                    }
                } else {
                    // Client-credentials tokens: the caller's own (revocation: the standing).
                    (c.client_id == client.client_id.as_str()).then_some(None)
                };
                match live {
                    Some(username) => {
                        // RFC 7662 §2.2: the members we know; `username` only where the token's
                        // consented scopes release it (`profile`).
                        let mut body = serde_json::Map::new();
                        let base = json!({
                            "active": true,
                            "token_type": "Bearer",
                            "scope": c.scope,
                            "client_id": c.client_id,
                            "sub": c.sub,
                            "aud": c.aud,
                            "iss": c.iss,
                            "jti": c.jti,
                            "exp": exp,
                        });
                        if let Value::Object(m) = base {
                            body.extend(m);
                        }
                        if iat > 0 {
                            body.insert("iat".into(), iat.into());
                            body.insert("nbf".into(), iat.into());
                        }
                        if let Some(u) = username {
                            body.insert("username".into(), u.into());
                        }
                        Value::Object(body)
                    }
                    None => inactive(),
                }
            }
            Some(Ours::Refresh { grant_id, hash }) => {
                let cmd = Status {
                    now,
                    refresh_hash: Some(hash),
                };
                match grants::call(env, &grant_id, cmd).await? {
                    Some(grant)
                        if grant.client_id == client.client_id
                            && user_grant::grant_user(env, &grant, now_ms, None)
                                .await?
                                .is_some() =>
                    {
                        json!({
                            "active": true,
                            "token_type": "refresh_token",
                            "scope": grant.scopes.join(" "),
                            "client_id": grant.client_id,
                            "sub": grant.sub,
                        })
                    }
                    _ => inactive(),
                }
            }
        };
        Ok((client, body))
    }
    .await;
    match result {
        Ok((client, body)) => {
            Outcome::new(respond::json(200, &body, &[]), "ok").partner(client.partner_id)
        }
        Err(e) => Outcome::error(e),
    }
}
