//! The token endpoint (RFC 6749 §3.2, §4.1.3, §4.4, §6): client authentication, then the
//! grant type's rules, then signed tokens. Every answer is `Cache-Control: no-store`.

use crate::edge::calls::grants;
use crate::edge::flows::limits::{self, Bucket};
use crate::edge::flows::{client_auth, linked, user_grant};
use crate::edge::rt::body::read_form;
use crate::edge::rt::config::api_audience;
use crate::edge::rt::respond::Outcome;
use crate::edge::rt::{config, keys, random, respond};
use crate::protocol::client::{ClientRecord, GrantType, JWT_BEARER_GRANT};
use crate::protocol::discovery::Issuer;
use crate::protocol::error::{ApiError, ErrorCode};
use crate::protocol::form::Params;
use crate::protocol::grant::{self, Grant, Issue};
use crate::protocol::keys::{KeySet, Times};
use crate::protocol::link::{linked_scopes, PartnerJwt};
use crate::protocol::partner::PartnerId;
use crate::protocol::tokens::{
    at_hash, released_claims, AccessClaims, IdClaims, ACCESS_TOKEN_TTL_S, ID_TOKEN_TTL_S,
};
use crate::store::grants::{Redeem, Refresh, Revoke, Status};
use base64ct::{Base64UrlUnpadded, Encoding};
use serde_json::{json, Value};
use worker::{Env, Request};

fn invalid_request(why: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, why)
}

fn require_grant(client: &ClientRecord, g: GrantType) -> Result<(), ApiError> {
    if client.grant_types.contains(&g) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::UnauthorizedClient,
            "this client may not use this grant type",
        ))
    }
}

fn new_token_id() -> Result<String, ApiError> {
    Ok(Base64UrlUnpadded::encode_string(&random::bytes::<16>()?))
}

/// Whom an access token speaks for.
struct Subject<'a> {
    sub: &'a str,
    gid: &'a str,
    auth_time: Option<u64>,
}

async fn access_token(
    keys: &KeySet,
    issuer: &Issuer,
    who: Subject<'_>,
    client: &ClientRecord,
    scopes: &[String],
    now: u64,
) -> Result<String, ApiError> {
    let key = keys
        .access_token_key()
        .ok_or_else(|| ApiError::unavailable("no access-token signing key"))?;
    let claims = AccessClaims {
        iss: issuer.as_str().to_owned(),
        sub: who.sub.to_owned(),
        aud: api_audience(issuer),
        client_id: client.client_id.as_str().to_owned(),
        scope: scopes.join(" "),
        jti: new_token_id()?,
        gid: who.gid.to_owned(),
        auth_time: who.auth_time,
    };
    let times = Times {
        iat: now,
        exp: now + ACCESS_TOKEN_TTL_S,
    };
    keys::sign(key, "at+jwt", times, claims).await
}

/// The tokens for a redeemed code or a refresh.
async fn mint(
    keys: &KeySet,
    issuer: &Issuer,
    client: &ClientRecord,
    issue: Issue,
    refresh_token: Option<String>,
    with_id_token: bool,
    now: u64,
) -> Result<Value, ApiError> {
    let g = &issue.grant;
    let who = Subject {
        sub: &g.sub,
        gid: &g.grant_id,
        auth_time: g.auth_time,
    };
    let at = access_token(keys, issuer, who, client, &issue.scopes, now).await?;
    let mut body = json!({
        "access_token": at,
        "token_type": "Bearer",
        "expires_in": ACCESS_TOKEN_TTL_S,
        "scope": issue.scopes.join(" "),
    });
    let mut extra = serde_json::Map::new();
    if let Some(rt) = refresh_token {
        extra.insert("refresh_token".into(), rt.into());
    }
    if with_id_token && issue.scopes.iter().any(|s| s == "openid") {
        let alg = client.id_token_signed_response_alg;
        let key = keys.for_alg(alg).ok_or_else(|| {
            ApiError::unavailable(format!("no {} key for ID tokens", alg.as_str()))
        })?;
        let claims = IdClaims {
            iss: issuer.as_str().to_owned(),
            sub: g.sub.clone(),
            aud: client.client_id.as_str().to_owned(),
            azp: client.client_id.as_str().to_owned(),
            nonce: g.nonce.clone(),
            auth_time: g.auth_time,
            at_hash: at_hash(&at, alg),
            profile: g.id_claims.clone(),
        };
        let times = Times {
            iat: now,
            exp: now + ID_TOKEN_TTL_S,
        };
        extra.insert(
            "id_token".into(),
            keys::sign(key, "JWT", times, claims).await?.into(),
        );
    }
    if let Some(obj) = body.as_object_mut() {
        obj.extend(extra);
    }
    Ok(body)
}

/// The scopes a grant without a user's consent asks for: a subset of the client's registered
/// scopes (all of them when none are named), `openid` only where a user is involved.
fn requested_scopes(
    params: &Params,
    client: &ClientRecord,
    with_openid: bool,
) -> Result<Vec<String>, ApiError> {
    let allowed = |s: &String| client.scopes.contains(s) && (with_openid || s != "openid");
    match scopes_param(params) {
        Some(req) => match req.iter().find(|s| !allowed(s)) {
            Some(_) => Err(ApiError::new(
                ErrorCode::InvalidScope,
                "a requested scope is not allowed for this client and grant",
            )),
            None => Ok(req),
        },
        None => Ok(client
            .scopes
            .iter()
            .filter(|s| allowed(s))
            .cloned()
            .collect()),
    }
}

/// A token response without refresh or ID token (client credentials, jwt-bearer).
fn access_only(access_token: String, scopes: &[String]) -> Value {
    json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": ACCESS_TOKEN_TTL_S,
        "scope": scopes.join(" "),
    })
}

fn scopes_param(params: &Params) -> Option<Vec<String>> {
    params.get("scope").map(|s| {
        s.split(' ')
            .filter(|x| !x.is_empty())
            .map(str::to_owned)
            .collect()
    })
}

/// Runs a token request; `caller` learns the authenticated client (for the log and usage) even
/// when the request fails afterwards.
async fn run(
    req: Request,
    env: &Env,
    now_ms: u64,
    caller: &mut Option<(PartnerId, String)>,
) -> Result<Value, ApiError> {
    let now = now_ms / 1000;
    let issuer = config::issuer(env)?;
    let (req, params) = read_form(req).await?;
    let (client, partner) =
        client_auth::authenticate(env, &req, &params, crate::routes::TOKEN, now_ms).await?;
    *caller = Some((
        client.partner_id.clone(),
        client.client_id.as_str().to_owned(),
    ));
    let limits = partner.rate_limits.unwrap_or_default();
    limits::admit_client(
        env,
        Bucket::Token,
        &client.partner_id,
        client.client_id.as_str(),
        &limits,
        now_ms,
    )
    .await?;
    // Keys first: a code is never spent when tokens could not be signed.
    let keys = keys::key_set(env)?;
    if keys.for_alg(client.id_token_signed_response_alg).is_none() {
        return Err(ApiError::unavailable(format!(
            "no {} signing key for this client's ID tokens",
            client.id_token_signed_response_alg.as_str()
        )));
    }
    let new_refresh = |gid: &str| -> Result<(String, String), ApiError> {
        Ok(grant::handle(
            gid,
            &random::bytes::<{ grant::SECRET_LEN }>()?,
        ))
    };
    let body = match params.get("grant_type") {
        Some("authorization_code") => {
            require_grant(&client, GrantType::AuthorizationCode)?;
            let code = params
                .get("code")
                .ok_or_else(|| invalid_request("code is missing"))?;
            let (gid, code_hash) = grant::split_handle(code).ok_or_else(|| {
                ApiError::new(ErrorCode::InvalidGrant, "unknown authorization code")
            })?;
            let refresh = if client.grant_types.contains(&GrantType::RefreshToken) {
                Some(new_refresh(&gid)?)
            } else {
                None
            };
            let attempt = new_token_id()?;
            let cmd = Redeem {
                code_hash,
                attempt,
                client_id: client.client_id.clone(),
                redirect_uri: params.get("redirect_uri").map(str::to_owned),
                code_verifier: params.get("code_verifier").map(str::to_owned),
                new_refresh_hash: refresh.as_ref().map(|(_, h)| h.clone()),
                now,
            };
            let issue = grants::call(env, &gid, cmd).await?;
            mint(
                &keys,
                &issuer,
                &client,
                issue,
                refresh.map(|(t, _)| t),
                true,
                now,
            )
            .await?
        }
        Some("refresh_token") => {
            require_grant(&client, GrantType::RefreshToken)?;
            let presented = params
                .get("refresh_token")
                .ok_or_else(|| invalid_request("refresh_token is missing"))?;
            let (gid, refresh_hash) = grant::split_handle(presented)
                .ok_or_else(|| ApiError::new(ErrorCode::InvalidGrant, "unknown refresh token"))?;
            // The grant's user is checked before the token rotates, so a storage failure here
            // leaves the client's refresh token usable.
            let status = Status {
                now,
                refresh_hash: Some(refresh_hash.clone()),
            };
            let user = match grants::call(env, &gid, status).await? {
                Some(grant) if grant.client_id == client.client_id => {
                    let until = now + ACCESS_TOKEN_TTL_S;
                    match user_grant::grant_user(env, &grant, now_ms, Some((until, now))).await? {
                        Some(user) => Some(user),
                        None => {
                            let revoke = Revoke {
                                client_id: client.client_id.clone(),
                            };
                            grants::call(env, &gid, revoke).await?;
                            return Err(ApiError::new(
                                ErrorCode::InvalidGrant,
                                "the user's account or password has changed",
                            ));
                        }
                    }
                }
                // Inactive, foreign or superseded: the Refresh command decides (and detects reuse).
                _ => None,
            };
            let (token, new_hash) = new_refresh(&gid)?;
            let cmd = Refresh {
                refresh_hash,
                client_id: client.client_id.clone(),
                scopes: scopes_param(&params),
                new_refresh_hash: new_hash,
                now,
            };
            let mut issue = grants::call(env, &gid, cmd).await?;
            // ID-token claims from the current profile, for the scopes of this issue only.
            if let Some(user) = &user {
                issue.grant.id_claims = released_claims(&issue.scopes, user);
            }
            mint(&keys, &issuer, &client, issue, Some(token), true, now).await?
        }
        Some("client_credentials") => {
            require_grant(&client, GrantType::ClientCredentials)?;
            // No user here: openid means nothing.
            let scopes = requested_scopes(&params, &client, false)?;
            let sub = client.client_id.as_str().to_owned();
            let who = Subject {
                sub: &sub,
                gid: "",
                auth_time: None,
            };
            let at = access_token(&keys, &issuer, who, &client, &scopes, now).await?;
            access_only(at, &scopes)
        }
        Some(JWT_BEARER_GRANT) => {
            // RFC 7523 §2.1: a partner's assertion about a linked user, from a confidential client
            // of that partner. An access token for that user; no refresh token.
            require_grant(&client, GrantType::JwtBearer)?;
            let assertion = params
                .get("assertion")
                .ok_or_else(|| invalid_request("assertion is missing"))?;
            let audiences = [issuer.as_str().to_owned(), issuer.url(crate::routes::TOKEN)];
            let invalid = |why: &str| ApiError::new(ErrorCode::InvalidGrant, why);
            let (partner, linked, _partner_sub) = linked::linked_user(
                env,
                assertion,
                PartnerJwt::GrantAssertion,
                &audiences,
                Some(client.client_id.clone()),
                now_ms,
            )
            .await
            .map_err(|e| {
                if e.code == ErrorCode::TemporarilyUnavailable {
                    e
                } else {
                    invalid(&e.description)
                }
            })?;
            if partner.id != client.partner_id {
                return Err(invalid(
                    "the assertion is from another partner than the client's",
                ));
            }
            let linked::Linked {
                username,
                user,
                sub,
                consented,
                password_epoch,
            } = linked.ok_or_else(|| invalid("the partner account is not linked"))?;
            let requested = requested_scopes(&params, &client, true)?;
            // The link lets the partner recognise the user (openid); anything more only as far
            // as the user consented to it for this client.
            let scopes = linked_scopes(requested, scopes_param(&params).is_some(), &consented)?;
            // A grant of its own, so userinfo, introspection and revocation work as for any token.
            let grant_id = Base64UrlUnpadded::encode_string(&random::bytes::<{ grant::ID_LEN }>()?);
            let g = Grant {
                grant_id: grant_id.clone(),
                client_id: client.client_id.clone(),
                partner_id: partner.id.clone(),
                username: Some(username.clone()),
                sub: sub.clone(),
                scopes: scopes.clone(),
                nonce: None,
                auth_time: None,
                id_claims: released_claims(&scopes, &user),
                created_at: now,
                code: None,
                refresh: None,
                revoked: false,
                password_epoch,
            };
            grants::create(env, &g).await?;
            // The grant ends with the user's password or account, as well as with the link.
            user_grant::record_with_user(env, &g, ACCESS_TOKEN_TTL_S, None).await?;
            // Issued through the link: it ends when the link does.
            let until = now + ACCESS_TOKEN_TTL_S;
            let gone = invalid("the partner account is not linked");
            user_grant::add_grant(env, &partner, &username, &grant_id, until, now, gone).await?;
            let who = Subject {
                sub: &sub,
                gid: &grant_id,
                auth_time: None,
            };
            let at = access_token(&keys, &issuer, who, &client, &scopes, now).await?;
            access_only(at, &scopes)
        }
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::UnsupportedGrantType,
                "unsupported grant_type",
            ));
        }
        None => return Err(invalid_request("grant_type is missing")),
    };
    Ok(body)
}

pub async fn token(req: Request, env: &Env, now_ms: u64) -> Outcome {
    let mut caller = None;
    let mut out = match run(req, env, now_ms, &mut caller).await {
        Ok(body) => {
            let headers = [("pragma", "no-cache".to_owned())];
            Outcome::new(respond::json(200, &body, &headers), "tokens_issued")
        }
        Err(e) => {
            let replay = crate::protocol::grant::replay_outcome(&e);
            let mut out = Outcome::error(e);
            if let Some(outcome) = replay {
                out.outcome = outcome;
            }
            out
        }
    };
    if let Some((partner, client)) = caller {
        out.partner = Some(partner);
        out.client = Some(client);
    }
    out
}
