//! Account linking (`/link`): a partner's signed link request, the user's recent login and
//! consent, then a link stored once and a link token back to the partner. Any failure shows an
//! error page: the browser is never sent to a `return_to` that was not verified.

use base64ct::{Base64UrlUnpadded, Encoding};
use serde_json::Value;
use worker::{Env, Request};

use super::browser::{self, Cookies};
use super::{config, keys, kvcache, links, partner_keys, random, replay, users, Outcome};
use crate::pages;
use crate::protocol::assertion;
use crate::protocol::authorize::safe_return_path;
use crate::protocol::discovery::Issuer;
use crate::protocol::error::{ApiError, ErrorCode};
use crate::protocol::form;
use crate::protocol::grant::hash_secret;
use crate::protocol::keys::Times;
use crate::protocol::link::{
    check_link_request, recently_logged_in, session_serves, LinkRequest, LinkTokenClaims,
    PartnerJwt, SessionUse, CLOCK_SKEW_S, LINK_TOKEN_TTL_S,
};
use crate::protocol::partner::{
    keys as kv_keys, Partner, PartnerId, PartnerStatus, MAX_ISSUER_LEN,
};
use crate::routes::{self, Method};
use crate::store::links::{LinkCommand, LinkReply};
use crate::store::users::{UserCommand, UserReply};

pub fn refused(why: &str) -> ApiError {
    ApiError::new(ErrorCode::AccessDenied, why)
}

/// A JWT from a partner, of the `kind` its `typ` names: the partner named by its `iss` (active),
/// and the payload, once the signature checked out against the partner's keys. Claims are the
/// caller's to check.
pub async fn partner_jwt(
    env: &Env,
    token: &str,
    kind: PartnerJwt,
    now_ms: u64,
) -> Result<(Partner, Value), ApiError> {
    let bad = |e: assertion::AssertionError| {
        refused(&format!(
            "The partner's token is not valid: {}.",
            e.describe()
        ))
    };
    let header = jwt_header(token).ok_or_else(|| bad(assertion::AssertionError::Malformed))?;
    kind.check_typ(header.get("typ").and_then(Value::as_str))
        .map_err(bad)?;
    let claims = assertion::unverified_claims(token)
        .ok_or_else(|| bad(assertion::AssertionError::Malformed))?;
    // No partner has an `iss` this long (and it could not be a storage key): unknown.
    let iss = claims
        .get("iss")
        .and_then(Value::as_str)
        .filter(|iss| iss.len() <= MAX_ISSUER_LEN)
        .ok_or_else(|| refused("The token comes from an unknown partner."))?;
    let partner_id: Option<String> = kvcache::get_text(env, &kv_keys::issuer(iss), now_ms)
        .await?
        .map(|s| s.to_string());
    let partner_id = partner_id
        .and_then(|p| PartnerId::parse(&p).ok())
        .ok_or_else(|| refused("The token comes from an unknown partner."))?;
    let partner: Partner = kvcache::get_json(env, &kv_keys::partner(&partner_id), now_ms)
        .await?
        .ok_or_else(|| refused("The token comes from an unknown partner."))?;
    if partner.status != PartnerStatus::Active {
        return Err(refused("This partner is suspended."));
    }
    let kid = header.get("kid").and_then(Value::as_str);
    let keys = partner_keys::keys_for(&partner, kid, now_ms).await?;
    let payload = keys::verify_external(&keys, token).await.map_err(bad)?;
    Ok((partner, payload))
}

/// Verifies a link request: signature, partner, and the linking rules.
async fn verify(
    env: &Env,
    issuer: &Issuer,
    token: &str,
    now_ms: u64,
) -> Result<(Partner, LinkRequest), ApiError> {
    let (partner, payload) = partner_jwt(env, token, PartnerJwt::LinkRequest, now_ms).await?;
    let request = check_link_request(&payload, &partner, issuer, now_ms / 1000).map_err(|e| {
        refused(&format!(
            "This link request is not valid: {}.",
            e.describe()
        ))
    })?;
    Ok((partner, request))
}

fn jwt_header(token: &str) -> Option<Value> {
    let header = token.split('.').next()?;
    serde_json::from_slice(&Base64UrlUnpadded::decode_vec(header).ok()?).ok()
}

struct Session {
    username: crate::protocol::user::Username,
    name: String,
    sub: String,
}

/// The signed-in user, if they logged in with their password within the last five minutes.
async fn recent_session(
    env: &Env,
    cookies: &Cookies,
    req: &Request,
    partner: &Partner,
    now: u64,
) -> Result<Option<Session>, ApiError> {
    let Some((username, session_hash)) = cookies.session(req) else {
        return Ok(None);
    };
    let cmd = UserCommand::Whoami {
        session_hash,
        partner_id: partner.id.clone(),
        now,
    };
    match users::call(env, &username, &cmd).await? {
        UserReply::SessionState {
            user,
            sub,
            auth_time,
            via_link,
            ..
        } if recently_logged_in(auth_time, now)
            && session_serves(via_link.as_ref(), SessionUse::Links) =>
        {
            Ok(Some(Session {
                username,
                name: user.name,
                sub,
            }))
        }
        UserReply::Failed { error } => Err(error),
        _ => Ok(None),
    }
}

fn to_login(request: &str, status: u16) -> Outcome {
    let back = format!("{}?{}", routes::LINK, form::encode(&[("request", request)]));
    // A path we built ourselves; still checked like any return path.
    let back = safe_return_path(&back, &[routes::LINK]).unwrap_or_else(|| routes::LINK.to_owned());
    let location = format!(
        "{}?{}",
        routes::LOGIN,
        form::encode(&[("return_to", &back)])
    );
    browser::redirect(status, &location, &[], "login")
}

fn back_to_partner(request: &LinkRequest, pairs: &[(&str, &str)]) -> String {
    let mut all: Vec<(&str, &str)> = pairs.to_vec();
    if let Some(state) = &request.state {
        all.push(("state", state));
    }
    let sep = if request.return_to.contains('?') {
        '&'
    } else {
        '?'
    };
    format!("{}{sep}{}", request.return_to, form::encode(&all))
}

pub async fn link(req: Request, env: &Env, method: Method, now_ms: u64) -> Outcome {
    let now = now_ms / 1000;
    let issuer = match config::issuer(env) {
        Ok(i) => i,
        Err(e) => return browser::error_page(&e),
    };
    let cookies = Cookies::for_issuer(&issuer);
    let mut req = req;
    let params = match super::body::params(&mut req, method == Method::Post).await {
        Ok(p) => p,
        Err(e) => return browser::error_page(&e),
    };
    let result: Result<Outcome, ApiError> = async {
        let token = params
            .get("request")
            .ok_or_else(|| refused("This link has no link request."))?
            .to_owned();
        let (partner, request) = verify(env, &issuer, &token, now_ms).await?;
        let Some(session) = recent_session(env, &cookies, &req, &partner, now).await? else {
            return Ok(to_login(&token, if method == Method::Post { 303 } else { 302 }).partner(partner.id.clone()));
        };
        let origin = partner.origins.first().map(|o| o.to_string()).unwrap_or_default();
        if method == Method::Get {
            let (csrf, new_cookie) = cookies.csrf(&req)?;
            let html = pages::link_consent(routes::LINK, &csrf, &partner.name, &origin, &session.name, &token);
            let set: Vec<String> = new_cookie.into_iter().collect();
            return Ok(browser::page(200, html, &set, "link_consent").partner(partner.id.clone()));
        }
        if !cookies.csrf_ok(&req, params.get("csrf")) {
            return Err(refused("This form has expired or was not sent from this browser."));
        }
        let decision = params.get("decision");
        if !matches!(decision, Some("allow") | Some("deny")) {
            return Err(ApiError::new(ErrorCode::InvalidRequest, "decision must be allow or deny"));
        }
        // The request is used once, whatever the answer.
        let scope = format!("partner:{}", partner.id);
        let fresh = replay::claim(env, &scope, &hash_secret(&request.jti), request.exp + CLOCK_SKEW_S, now).await?;
        if !fresh {
            return Err(refused("This link request was already used. Start again from the partner's app."));
        }
        if decision == Some("deny") {
            let location = back_to_partner(&request, &[("error", "access_denied")]);
            return Ok(browser::redirect(303, &location, &[], "link_denied").partner(partner.id.clone()));
        }
        let cmd = LinkCommand::Link {
            partner_sub: request.partner_sub.clone(),
            username: session.username.clone(),
            user_sub: session.sub.clone(),
            now,
        };
        match links::call(env, &partner.id, &cmd).await? {
            LinkReply::Linked { created } => {
                let record = UserCommand::RecordLink {
                    partner_id: partner.id.clone(),
                    now,
                };
                let recorded = match users::call(env, &session.username, &record).await {
                    Ok(UserReply::Failed { error }) | Err(error) => Err(error),
                    Ok(_) => Ok(()),
                };
                if let Err(error) = recorded {
                    // Never half stored: a link the person cannot see on their account page must
                    // not log them in either. Undo what this request created, then fail.
                    if created {
                        let undo = LinkCommand::Unlink {
                            username: session.username.clone(),
                            now,
                            remove: true,
                        };
                        if let Err(e) = links::call(env, &partner.id, &undo).await {
                            worker::console_error!(
                                "link: undo after a failed record: {}",
                                e.cause.unwrap_or(e.description)
                            );
                        }
                    }
                    return Err(error);
                }
            }
            LinkReply::PartnerAccountTaken => {
                return Err(refused(
                    "This account at the partner is already linked to another school account. Unlink it there first.",
                ))
            }
            LinkReply::UserAlreadyLinked => {
                return Err(refused(
                    "Your school account is already linked to another account at this partner. Remove that link on your account page first, then try again.",
                ))
            }
            LinkReply::Failed { error } => return Err(error),
            _ => return Err(ApiError::unavailable("unexpected link reply")),
        }
        let keys = keys::key_set(env)?;
        let key = keys
            .access_token_key()
            .ok_or_else(|| ApiError::unavailable("no signing key"))?;
        let claims = LinkTokenClaims {
            iss: issuer.as_str().to_owned(),
            aud: partner.issuer.clone(),
            sub: session.sub.clone(),
            partner_sub: request.partner_sub.clone(),
            jti: Base64UrlUnpadded::encode_string(&random::bytes::<16>()?),
        };
        let times = Times {
            iat: now,
            exp: now + LINK_TOKEN_TTL_S,
        };
        let link_token = keys::sign(key, "JWT", times, claims).await?;
        let location = back_to_partner(&request, &[("link_token", &link_token)]);
        Ok(browser::redirect(303, &location, &[], "linked").partner(partner.id.clone()))
    }
    .await;
    result.unwrap_or_else(|e| browser::error_page(&e))
}
