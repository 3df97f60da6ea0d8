//! Account linking. `/link`: a partner's signed link request, the user's recent login and
//! consent; the browser goes back to the partner with a one-time link code, and nothing that
//! signs anyone in is stored yet. `/link/confirm`: the partner's server, having checked `state`
//! against the browser session that started the request, redeems the code with a signed
//! confirmation; only then is the link stored, and a link token answered. A link request
//! forwarded to someone else is therefore never confirmed by the partner for the sender. Any
//! failure at `/link` shows an error page: the browser is never sent to a `return_to` that was
//! not verified.

use crate::edge::calls::links::Store;
use crate::edge::calls::{links, replay, users};
use crate::edge::flows::partner_jwt::{partner_jwt, refused};
use crate::edge::flows::unlink;
use crate::edge::rt::browser::{self, Cookies};
use crate::edge::rt::request::Request;
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
    places_of, Confirm, Confirmed, LinkRefusal, LinkedAccount, Lookup, Place, Propose, Proposed,
    Undo,
};
use crate::store::users::{Agreed, LinkRecorded, Links, RecordLink, SessionState, Whoami};
use base64ct::{Base64UrlUnpadded, Encoding};
use worker::Env;

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
    home: crate::protocol::region::Home,
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
    let Some((username, reached_in, session_hash)) = cookies.session(req) else {
        return Ok(None);
    };
    let cmd = Whoami {
        session_hash,
        partner_id: partner.id.clone(),
        partner_salt: partner.subject_salt.clone(),
        now,
    };
    match users::call(env, &username, reached_in, cmd).await? {
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
                // Where the user lives, as their record says (the cookie's region is only how
                // the object was reached; a link's shard must be the user's real region).
                home: user.region,
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
        // The code names the shard its pending link waits in: the partner account's, in the
        // user's region.
        let place = Place::of(session.home, &request.partner_sub);
        // Both linking rules, asked before anything is kept (the shard asks again of its own,
        // and the confirmation settles a race): the user's own record says whether they are
        // linked to another account of the partner, the account's shards in the other regions
        // whether it is linked to someone there.
        let asked = Links {
            session_hash: None,
            now: 0,
        };
        let (own, elsewhere) = futures_util::join!(
            users::call(env, &session.username, session.home, asked),
            linked_elsewhere(
                env,
                &partner,
                Store::Shard(place),
                &request.partner_sub,
                &session.username
            )
        );
        // A link the user's record keeps with the partner is to another account unless it
        // names this one (one recorded before accounts were may be to any: refused until the
        // move of links notes which).
        let other_account = own?.is_some_and(|l| {
            l.links.iter().any(|e| {
                e.partner_id == partner.id
                    && e.partner_sub.as_deref() != Some(request.partner_sub.as_str())
            })
        });
        if other_account {
            return Err(link_refusal(LinkRefusal::UserAlreadyLinked));
        }
        if elsewhere? {
            return Err(link_refusal(LinkRefusal::PartnerAccountTaken));
        }
        let seeding = config::legacy_link_writes(env);
        let code = format!(
            "{}{}",
            if seeding {
                String::new()
            } else {
                place.code_prefix()
            },
            Base64UrlUnpadded::encode_string(&random::bytes::<32>()?)
        );
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
        let store = if seeding {
            Store::Legacy
        } else {
            Store::Shard(place)
        };
        match links::send(
            env,
            &partner.id,
            partner.subject_salt.as_deref(),
            store,
            cmd,
        )
        .await?
        {
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

const CODE_INVALID: &str =
    "the link code is invalid, expired, already used, or not for this link request and account";

/// Whether partner account `partner_sub` is linked in a store of the partner other than
/// `here`: in its shard of another region (to anyone: one account has one link, in one place),
/// or, while `LINKS_LEGACY` is set, in the store of the earlier layout to someone other than
/// `me` (the same user's link there is the one being moved).
async fn linked_elsewhere(
    env: &Env,
    partner: &Partner,
    here: Store,
    partner_sub: &str,
    me: &crate::protocol::user::Username,
) -> Result<bool, ApiError> {
    let mut stores: Vec<Store> = places_of(partner_sub)
        .into_iter()
        .map(Store::Shard)
        .filter(|s| *s != here)
        .collect();
    if here != Store::Legacy && config::links_legacy(env)? {
        stores.push(Store::Legacy);
    }
    let salt = partner.subject_salt.as_deref();
    let answers = futures_util::future::join_all(stores.iter().map(|store| {
        let lookup = Lookup {
            partner_sub: partner_sub.to_owned(),
        };
        links::send(env, &partner.id, salt, *store, lookup)
    }))
    .await;
    let mut taken = false;
    for (store, answer) in stores.iter().zip(answers) {
        if let Some(found) = answer? {
            taken |= *store != Store::Legacy || found.username != *me;
        }
    }
    Ok(taken)
}

/// Whether the user's record names the link of `pending` (after a `RecordLink` whose answer was
/// lost): `false` also when the record cannot be read.
async fn recorded_anyway(
    env: &Env,
    partner: &PartnerId,
    pending: &PendingLink,
    home: crate::protocol::region::Home,
) -> bool {
    let cmd = Links {
        session_hash: None,
        now: 0,
    };
    match users::call(env, &pending.username, home, cmd).await {
        Ok(Some(l)) => l.links.iter().any(|e| {
            e.partner_id == *partner
                && e.partner_sub.as_deref() == Some(pending.partner_sub.as_str())
        }),
        _ => false,
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
        // The code names its shard; a code of the earlier layout (no place) waits in the
        // partner's old store, asked only while `LINKS_LEGACY` is set.
        let store = match Place::of_code(&code) {
            Some(place) => Store::Shard(place),
            None if config::links_legacy(env)? || config::legacy_link_writes(env) => Store::Legacy,
            None => return Err(invalid_grant(CODE_INVALID)),
        };
        let salt = partner.subject_salt.as_deref();
        let cmd = Confirm {
            code_hash: hash_secret(&code),
            partner_sub: confirmation.partner_sub.clone(),
            request_jti_hash: hash_secret(&confirmation.link_request),
            attempt: Base64UrlUnpadded::encode_string(&random::bytes::<16>()?),
            now,
        };
        let confirmed = links::send(env, &partner.id, salt, store, cmd).await?;
        // Where the user lives: the shard's region (the old store does not record it).
        let home_of = |username: &crate::protocol::user::Username| {
            let username = username.clone();
            async move {
                match store {
                    Store::Shard(place) => Ok(place.home),
                    Store::Legacy => users::home_of(env, &username, now * 1000).await,
                }
            }
        };
        let place = match store {
            Store::Shard(place) => Some(place),
            Store::Legacy => None,
        };
        let (created, pending) = match confirmed {
            Confirmed::Linked { created, pending } => (created, pending),
            Confirmed::CodeInvalid => return Err(invalid_grant(CODE_INVALID)),
            Confirmed::CodeReplayed { username } => {
                // As for a reused authorization code: the link it made is undone, with what
                // came through it.
                let home = home_of(&username).await?;
                unlink::unlink(env, &partner.id, salt, &username, home, place, now).await?;
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
        let home = home_of(&pending.username).await?;
        // Never half stored: a link the person cannot see on their account page must not log
        // them in either. Undo what this confirmation created, then fail.
        // Nothing of this link is recorded with the user yet (and no session or grant came
        // through it): undoing it removes only the row this confirmation made in its shard. The
        // user's record of another link with the partner stays.
        let undo = |error: ApiError| async {
            if created {
                let cmd = Undo {
                    code_hash: hash_secret(&code),
                    partner_sub: pending.partner_sub.clone(),
                    username: pending.username.clone(),
                    user_sub: pending.user_sub.clone(),
                };
                if let Err(e) = links::send(env, &partner.id, salt, store, cmd).await {
                    worker::console_error!(
                        "link confirm: undo: {}",
                        e.cause.unwrap_or(e.description)
                    );
                }
            }
            Err(error)
        };
        // One partner account, one platform user, across regions: a link just made here is
        // checked against the account's shards in the other regions, each made before it is
        // checked, so of two links racing in two regions at least one sees the other.
        // A check that cannot be made undoes the link too (fail closed, nothing half stored).
        if created {
            match linked_elsewhere(env, &partner, store, &pending.partner_sub, &pending.username).await {
                Ok(true) => {
                    let e = link_refusal(LinkRefusal::PartnerAccountTaken);
                    return undo(invalid_grant(&e.description)).await;
                }
                Ok(false) => {}
                Err(error) => return undo(error).await,
            }
        }
        let record = RecordLink {
            partner_id: partner.id.clone(),
            agreed: Some(Agreed {
                user_sub: pending.user_sub.clone(),
                partner_salt: partner.subject_salt.clone(),
                password_epoch: pending.password_epoch,
            }),
            account_label: Some(pending.account_label.clone()).filter(|l| !l.is_empty()),
            // (The earlier layout's record named no account: seeded so, for the move's tests.)
            partner_sub: Some(pending.partner_sub.clone())
                .filter(|_| !config::legacy_link_writes(env)),
            now,
        };
        match users::call(env, &pending.username, home, record).await {
            Ok(LinkRecorded::Recorded) => {}
            Ok(LinkRecorded::ConsentVoid) => return undo(invalid_grant(
                "the user's password changed (or the account is no longer theirs) after they agreed to the link; start again",
            )).await,
            Ok(LinkRecorded::OtherAccount) => {
                let e = link_refusal(LinkRefusal::UserAlreadyLinked);
                return undo(invalid_grant(&e.description)).await;
            }
            // The reply may be lost with the record written: the user's record says which. If it
            // names this account, the link stands; if it cannot be read, undo (fail closed).
            Err(error) => {
                if !recorded_anyway(env, &partner.id, &pending, home).await {
                    return undo(error).await;
                }
            }
        }
        // A replay racing this confirmation undoes the link; if its unlinking ran before our
        // record, the record would outlive the link. Looking again settles it either way.
        let lookup = Lookup {
            partner_sub: pending.partner_sub.clone(),
        };
        let still = match links::send(env, &partner.id, salt, store, lookup).await? {
            Some(LinkedAccount { username, user_sub }) => {
                username == pending.username && user_sub == pending.user_sub
            }
            None => false,
        };
        if !still {
            unlink::unlink(env, &partner.id, salt, &pending.username, home, place, now).await?;
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
