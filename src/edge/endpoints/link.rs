//! Account linking. `/link`: a partner's signed link request, the user's recent login and
//! consent; the browser goes back to the partner with a one-time link code, and nothing that
//! signs anyone in is stored yet. `/link/confirm`: the partner's server, having checked `state`
//! against the browser session that started the request, redeems the code with a signed
//! confirmation; only then is the link stored, and a link token answered. A link request
//! forwarded to someone else is therefore never confirmed by the partner for the sender. Any
//! failure at `/link` shows an error page: the browser is never sent to a `return_to` that was
//! not verified.

use crate::edge::calls::{links, replay, users};
use crate::edge::flows::partner_jwt::{partner_jwt, refused};
use crate::edge::flows::unlink;
use crate::edge::rt::browser::{self, Cookies};
use crate::edge::rt::respond::Outcome;
use crate::edge::rt::{config, keys, random, respond};
use crate::pages;
use crate::protocol::authorize::safe_return_path;
use crate::protocol::discovery::Issuer;
use crate::protocol::error::{ApiError, ErrorCode};
use crate::protocol::form;
use crate::protocol::grant::hash_secret;
use crate::protocol::keys::Times;
use crate::protocol::link::{
    check_link_confirmation, check_link_request, recently_logged_in, session_serves, LinkRequest,
    LinkTokenClaims, PartnerJwt, PendingLink, SessionUse, LINK_CODE_TTL_S, LINK_TOKEN_TTL_S,
};
use crate::protocol::partner::{Partner, PartnerId};
use crate::routes::{self, Method};
use crate::store::links::{
    Confirm, Confirmed, LinkRefusal, LinkedAccount, Lookup, Propose, Proposed,
};
use crate::store::users::{Agreed, LinkRecorded, RecordLink, SessionState, Whoami};
use base64ct::{Base64UrlUnpadded, Encoding};
use worker::{Env, Request};

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

struct Session {
    username: crate::protocol::user::Username,
    name: String,
    sub: String,
    password_epoch: u32,
}

/// The signed-in user, if they logged in with their password within the last five minutes.
async fn recent_session(
    env: &Env,
    cookies: &Cookies,
    req: &Request,
    partner: &Partner,
    now: u64,
) -> Result<Option<Session>, ApiError> {
    let Some((username, home, session_hash)) = cookies.session(req) else {
        return Ok(None);
    };
    let cmd = Whoami {
        session_hash,
        partner_id: partner.id.clone(),
        partner_salt: partner.subject_salt.clone(),
        now,
    };
    match users::call(env, &username, home, cmd).await? {
        Some(SessionState {
            user,
            sub,
            auth_time,
            via_link,
            password_epoch,
            ..
        }) if recently_logged_in(auth_time, now)
            && session_serves(via_link.as_ref(), SessionUse::Links) =>
        {
            Ok(Some(Session {
                username,
                name: user.name,
                sub,
                password_epoch,
            }))
        }
        Some(_) | None => Ok(None),
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
    all.push(("state", &request.state));
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
    let params = match crate::edge::rt::body::params(&mut req, method == Method::Post).await {
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
            return Ok(
                to_login(&token, if method == Method::Post { 303 } else { 302 })
                    .partner(partner.id.clone()),
            );
        };
        let origin = partner
            .origins
            .first()
            .map(|o| o.to_string())
            .unwrap_or_default();
        if method == Method::Get {
            let (csrf, new_cookie) = cookies.csrf(&req)?;
            let html = pages::link_consent(
                routes::LINK,
                &csrf,
                &partner.name,
                &origin,
                &request.account_label,
                &session.name,
                &token,
            );
            let set: Vec<String> = new_cookie.into_iter().collect();
            return Ok(browser::page(200, html, &set, "link_consent").partner(partner.id.clone()));
        }
        if !cookies.csrf_ok(&req, params.get("csrf")) {
            return Err(refused(
                "This form has expired or was not sent from this browser.",
            ));
        }
        let decision = params.get("decision");
        if !matches!(decision, Some("allow") | Some("deny")) {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "decision must be allow or deny",
            ));
        }
        // The request is used once, whatever the answer.
        if !replay::claim_partner_jti(env, &partner.id, &request.jti, request.exp, now).await? {
            return Err(refused(
                "This link request was already used. Start again from the partner's app.",
            ));
        }
        if decision == Some("deny") {
            let location = back_to_partner(&request, &[("error", "access_denied")]);
            return Ok(
                browser::redirect(303, &location, &[], "link_denied").partner(partner.id.clone())
            );
        }
        // Nothing that signs anyone in is stored until the partner confirms, for the browser
        // session that started the request (its `state`), that this is its user's account.
        let code = Base64UrlUnpadded::encode_string(&random::bytes::<32>()?);
        let cmd = Propose {
            code_hash: hash_secret(&code),
            pending: PendingLink {
                partner_sub: request.partner_sub.clone(),
                request_jti_hash: hash_secret(&request.jti),
                username: session.username.clone(),
                user_sub: session.sub.clone(),
                password_epoch: session.password_epoch,
                expires_at: now + LINK_CODE_TTL_S,
                confirmed_by: None,
                created: false,
                account_label: request.account_label.clone(),
            },
            now,
        };
        match links::call(env, &partner.id, partner.subject_salt.as_deref(), cmd).await? {
            Proposed::Kept => {}
            Proposed::Refused(refusal) => return Err(link_refusal(refusal)),
        }
        let location = back_to_partner(&request, &[("link_code", &code)]);
        Ok(browser::redirect(303, &location, &[], "link_consented").partner(partner.id.clone()))
    }
    .await;
    result.unwrap_or_else(|e| browser::error_page(&e))
}

/// Why a link could not be made, in the user's (and the partner's) words.
fn link_refusal(refusal: LinkRefusal) -> ApiError {
    match refusal {
        LinkRefusal::PartnerAccountTaken => refused(
            "This account at the partner is already linked to another school account. Unlink it there first.",
        ),
        LinkRefusal::UserAlreadyLinked => refused(
            "Your school account is already linked to another account at this partner. Remove that link on your account page first, then try again.",
        ),
    }
}

fn invalid_grant(why: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidGrant, why)
}

/// `POST /link/confirm` (server to server): `link_code`, and `assertion`, a JWT the partner
/// signed (`typ` `edgeward-link-confirm+jwt`, `sub` the partner account, `link_request` the
/// link request's `jti`). Answers the link token, or an OAuth-style JSON error: 401
/// `invalid_client` for a confirmation that does not verify, 400 `invalid_grant` for a code
/// that is unknown, expired, used, or not for this request and account.
pub async fn confirm(req: Request, env: &Env, now_ms: u64) -> Outcome {
    let mut req = req;
    let mut asked_by: Option<PartnerId> = None;
    let result: Result<Outcome, ApiError> = async {
        let params = crate::edge::rt::body::form(&mut req).await?;
        let issuer = config::issuer(env)?;
        let code = params
            .get("link_code")
            .filter(|c| !c.is_empty())
            .ok_or_else(|| ApiError::new(ErrorCode::InvalidRequest, "link_code is required"))?
            .to_owned();
        let assertion = params
            .get("assertion")
            .ok_or_else(|| ApiError::new(ErrorCode::InvalidRequest, "assertion is required"))?
            .to_owned();
        let as_client = |e: ApiError| {
            if e.code == ErrorCode::AccessDenied {
                ApiError::new(ErrorCode::InvalidClient, e.description)
            } else {
                e
            }
        };
        let (partner, payload) =
            partner_jwt(env, &assertion, PartnerJwt::LinkConfirmation, now_ms)
                .await
                .map_err(as_client)?;
        asked_by = Some(partner.id.clone());
        let now = now_ms / 1000;
        let confirmation = check_link_confirmation(&payload, &partner, &issuer, now)
            .map_err(|e| {
                ApiError::new(
                    ErrorCode::InvalidClient,
                    format!("The link confirmation is not valid: {}.", e.describe()),
                )
            })?;
        let (jti, exp) = (&confirmation.jti, confirmation.exp);
        if !replay::claim_partner_jti(env, &partner.id, jti, exp, now).await? {
            return Err(ApiError::new(
                ErrorCode::InvalidClient,
                "The link confirmation was already used.",
            ));
        }
        let cmd = Confirm {
            code_hash: hash_secret(&code),
            partner_sub: confirmation.partner_sub.clone(),
            request_jti_hash: hash_secret(&confirmation.link_request),
            attempt: Base64UrlUnpadded::encode_string(&random::bytes::<16>()?),
            now,
        };
        let (created, pending) = match links::call(env, &partner.id, partner.subject_salt.as_deref(), cmd).await? {
            Confirmed::Linked { created, pending } => (created, pending),
            Confirmed::CodeInvalid => {
                return Err(invalid_grant(
                    "the link code is invalid, expired, already used, or not for this link request and account",
                ))
            }
            Confirmed::CodeReplayed { username } => {
                // As for a reused authorization code: the link it made is undone, with what
                // came through it.
                let home = users::home_of(env, &username, now * 1000).await?;
                unlink::unlink(env, &partner.id, partner.subject_salt.as_deref(), &username, home, now).await?;
                let refusal = invalid_grant(
                    "the link code was already used; the link it made is removed",
                );
                return Ok(Outcome::new(respond::error(&refusal), "link_code_replay"));
            }
            Confirmed::Refused(refusal) => {
                let e = link_refusal(refusal);
                return Err(invalid_grant(&e.description));
            }
        };
        let record = RecordLink {
            partner_id: partner.id.clone(),
            agreed: Some(Agreed {
                user_sub: pending.user_sub.clone(),
                partner_salt: partner.subject_salt.clone(),
                password_epoch: pending.password_epoch,
            }),
            account_label: Some(pending.account_label.clone()).filter(|l| !l.is_empty()),
            now,
        };
        // The link store does not record where the user lives (yet): the directory says.
        let home = users::home_of(env, &pending.username, now * 1000).await?;
        let recorded = match users::call(env, &pending.username, home, record).await {
            Ok(LinkRecorded::Recorded) => Ok(()),
            Ok(LinkRecorded::ConsentVoid) => Err(invalid_grant(
                "the user's password changed (or the account is no longer theirs) after they agreed to the link; start again",
            )),
            Err(error) => Err(error),
        };
        if let Err(error) = recorded {
            // Never half stored: a link the person cannot see on their account page must not
            // log them in either. Undo what this confirmation created, then fail.
            if created {
                if let Err(e) = unlink::unlink(env, &partner.id, partner.subject_salt.as_deref(), &pending.username, home, now).await {
                    worker::console_error!(
                        "link confirm: undo after a failed record: {}",
                        e.cause.unwrap_or(e.description)
                    );
                }
            }
            return Err(error);
        }
        // A replay racing this confirmation undoes the link; if its unlinking ran before our
        // record, the record would outlive the link. Looking again settles it either way.
        let lookup = Lookup {
            partner_sub: pending.partner_sub.clone(),
        };
        let still = match links::call(env, &partner.id, partner.subject_salt.as_deref(), lookup).await? {
            Some(LinkedAccount { username, user_sub }) => {
                username == pending.username && user_sub == pending.user_sub
            }
            None => false,
        };
        if !still {
            unlink::unlink(env, &partner.id, partner.subject_salt.as_deref(), &pending.username, home, now).await?;
            return Ok(Outcome::new(
                respond::error(&invalid_grant(
                    "the link code was used more than once; the link it made is removed",
                )),
                "link_code_replay",
            ));
        }
        let keys = keys::key_set(env)?;
        let key = keys
            .access_token_key()
            .ok_or_else(|| ApiError::unavailable("no signing key"))?;
        let claims = LinkTokenClaims {
            iss: issuer.as_str().to_owned(),
            aud: partner.issuer.clone(),
            sub: pending.user_sub.clone(),
            partner_sub: pending.partner_sub.clone(),
            jti: Base64UrlUnpadded::encode_string(&random::bytes::<16>()?),
        };
        let times = Times {
            iat: now,
            exp: now + LINK_TOKEN_TTL_S,
        };
        let link_token = keys::sign(key, "JWT", times, claims).await?;
        let body = serde_json::json!({
            "link_token": link_token,
            "sub": pending.user_sub,
            "partner_sub": pending.partner_sub,
        });
        Ok(Outcome::new(respond::json(200, &body, &[]), "linked"))
    }
    .await;
    let out = result.unwrap_or_else(Outcome::error);
    match asked_by {
        Some(p) => out.partner(p),
        None => out,
    }
}
