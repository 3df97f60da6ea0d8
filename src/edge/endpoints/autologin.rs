//! Automatic login (`/login/auto`): a partner's signed assertion about a user linked at the
//! platform starts a session without credentials, at once when the partner's own page posted
//! it, after the person confirmed otherwise. With authorization-request parameters the code
//! flow continues (consent rules still apply); with `return_to` the browser goes to a platform
//! page. No link: no session, and a page saying how to link.

use crate::edge::calls::{replay, users};
use crate::edge::flows::linked::{find_link, find_linked, paused, FoundLink, Linked, UseAssertion};
use crate::edge::flows::partner_jwt::{refused, verify_assertion};
use crate::edge::rt::browser::{self, Cookies};
use crate::edge::rt::request::Request;
use crate::edge::rt::respond::Outcome;
use crate::edge::rt::{config, kvcache};
use crate::pages;
use crate::protocol::authorize::safe_return_path;
use crate::protocol::autologin::{start, Arrival, Start};
use crate::protocol::client::{ClientId, ClientRecord};
use crate::protocol::error::{ApiError, ErrorCode};
use crate::protocol::form::{self, Params};
use crate::protocol::link::PartnerJwt;
use crate::protocol::partner::Partner;
use crate::protocol::user::LinkVia;
use crate::routes::{self, Method};
use crate::store::users::{AutoLogin, AutoLoginOutcome};
use worker::Env;

/// The authorization request carried along, if any, as a path on our authorize endpoint.
async fn continue_to(
    env: &Env,
    params: &Params,
    partner: &Partner,
    now_ms: u64,
) -> Result<String, ApiError> {
    if let Some(client_id) = params.get("client_id") {
        // The flow may only continue for a client of the asserting partner.
        let client_id =
            ClientId::parse(client_id).ok_or_else(|| refused("client_id is not a known client"))?;
        let client: Option<ClientRecord> =
            kvcache::get_json(env, &client_id.kv_key(), now_ms).await?;
        if client.is_none_or(|c| c.partner_id != partner.id) {
            return Err(refused("The client is not one of this partner's."));
        }
        let pairs: Vec<(&str, &str)> = params
            .iter()
            .filter(|(k, _)| !matches!(*k, "assertion" | "return_to" | "csrf" | "decision"))
            .collect();
        return Ok(format!("{}?{}", routes::AUTHORIZE, form::encode(&pairs)));
    }
    let raw = params.get("return_to").unwrap_or(routes::ACCOUNT);
    safe_return_path(raw, &[routes::AUTHORIZE, routes::ACCOUNT])
        .ok_or_else(|| refused("return_to must be a page of the platform"))
}

/// Whether a login assertion was used before the upgrade that moved their `jti`s into the link
/// shards: asked of the replay shards only until `REPLAY_LEGACY_UNTIL` (as for the layout before
/// them), so nothing used just before the deploy is used again after it.
async fn used_before_upgrade(
    env: &Env,
    partner: &Partner,
    jti: &str,
    now: u64,
) -> Result<bool, ApiError> {
    match config::replay_legacy_until(env)? {
        Some(until) if now < until => {
            Ok(!replay::partner_jti_unused(env, &partner.id, jti, now).await?)
        }
        _ => Ok(false),
    }
}

fn not_linked(partner: &Partner) -> Outcome {
    let html = pages::error(
        "Your account is not linked yet",
        &format!(
            "Your account at {} is not linked to a school account. Sign in here with your school username and password, then link it from {}.",
            partner.name, partner.name
        ),
    );
    browser::page(403, html, &[], "not_linked").partner(partner.id.clone())
}

/// `/login/auto`. A login assertion posted by one of the partner's own pages signs the browser
/// in at once (`protocol::autologin::start`). Any other arrival shows whom the browser would be
/// signed in as, with a form (our CSRF token) that carries the assertion: the person confirms,
/// or not. The assertion's `jti` is used only when a session starts, so it stays single-use
/// while an unanswered confirmation page costs nothing; a used one is refused on that page too.
pub async fn autologin(mut req: Request, env: &Env, method: Method, now_ms: u64) -> Outcome {
    let now = now_ms / 1000;
    let issuer = match config::issuer(env) {
        Ok(i) => i,
        Err(e) => return browser::error_page(&e),
    };
    let cookies = Cookies::for_issuer(&issuer);
    let posted = method == Method::Post;
    let origin = req.headers().get("origin").ok().flatten();
    let params = crate::edge::rt::body::params(&mut req, posted).await;
    let result: Result<Outcome, ApiError> = async {
        let params = params?;
        // The answer to our confirmation page: only with this browser's CSRF token.
        let confirmed = posted && params.get("csrf").is_some();
        if confirmed {
            if !cookies.csrf_ok(&req, params.get("csrf")) {
                return Err(refused(
                    "This form has expired or was not sent from this browser.",
                ));
            }
            match params.get("decision") {
                Some("yes") => {}
                Some("no") => {
                    return Ok(browser::page(
                        200,
                        pages::auto_login_declined(),
                        &[],
                        "auto_login_declined",
                    ))
                }
                _ => {
                    return Err(ApiError::new(
                        ErrorCode::InvalidRequest,
                        "decision must be yes or no",
                    ))
                }
            }
        }
        let assertion = params
            .get("assertion")
            .ok_or_else(|| refused("There is no login assertion."))?;
        let audiences = [issuer.as_str().to_owned()];
        let (partner, checked) = verify_assertion(
            env,
            assertion,
            PartnerJwt::LoginAssertion,
            &audiences,
            now_ms,
        )
        .await?;
        let arrival = Arrival {
            posted,
            origin: origin.as_deref(),
        };
        let guess = config::visitor_region(&req, env);
        if !confirmed && start(arrival, &partner.origins) == Start::AskFirst {
            // A used assertion is refused on this page too (checked where it is used: in the
            // link's shard).
            let check = UseAssertion {
                checked: &checked,
                use_it: false,
            };
            let (linked, before) = futures_util::join!(
                find_linked(
                    env,
                    &partner,
                    &checked.sub,
                    None,
                    guess,
                    Some(check),
                    now_ms
                ),
                used_before_upgrade(env, &partner, &checked.jti, now)
            );
            let Some(Linked { user, .. }) = linked? else {
                return Ok(not_linked(&partner));
            };
            if before? {
                return Err(refused("The login assertion was already used."));
            }
            continue_to(env, &params, &partner, now_ms).await?;
            let (csrf, new_cookie) = cookies.csrf(&req)?;
            let fields: Vec<(&str, String)> = params
                .iter()
                .filter(|(k, _)| !matches!(*k, "csrf" | "decision"))
                .map(|(k, v)| (k, v.to_owned()))
                .collect();
            let html = pages::auto_login_confirm(
                routes::AUTO_LOGIN,
                &csrf,
                &partner.name,
                &user.name,
                &fields,
            );
            let set: Vec<String> = new_cookie.into_iter().collect();
            return Ok(
                browser::page(200, html, &set, "auto_login_confirm").partner(partner.id.clone())
            );
        }
        // A session starts now: the link's shard (nearest first), which also uses the
        // assertion's `jti` (every replay of it meets that shard), and where the flow goes next,
        // together; then the user's object checks the link again and starts the session in one
        // call. Two round trips, both in the pupil's region when they sign in from it.
        let using = UseAssertion {
            checked: &checked,
            use_it: true,
        };
        let (found, before, next) = futures_util::join!(
            find_link(env, &partner, &checked.sub, guess, Some(using), now_ms),
            used_before_upgrade(env, &partner, &checked.jti, now),
            continue_to(env, &params, &partner, now_ms)
        );
        let Some(FoundLink {
            username,
            user_sub,
            home,
        }) = found?
        else {
            return Ok(not_linked(&partner));
        };
        let next = next?;
        if before? {
            return Err(refused("The login assertion was already used."));
        }
        let (cookie, session_hash) = cookies.new_session(&username, home)?;
        match users::call(
            env,
            &username,
            home,
            AutoLogin {
                session_hash,
                via: LinkVia {
                    partner_id: partner.id.clone(),
                    partner_sub: checked.sub,
                },
                partner_salt: partner.subject_salt.clone(),
                user_sub,
                now,
            },
        )
        .await
        {
            Ok(AutoLoginOutcome::LoggedIn { .. }) => {}
            Ok(AutoLoginOutcome::Paused) => return Err(paused()),
            Ok(AutoLoginOutcome::NotLinked) => return Ok(not_linked(&partner)),
            // The user is gone: the link with them is too.
            Err(e) if e.code == ErrorCode::NotFound => return Ok(not_linked(&partner)),
            Err(e) => return Err(e),
        }
        Ok(
            browser::redirect(303, &issuer.url(&next), &[cookie], "auto_login")
                .partner(partner.id.clone()),
        )
    }
    .await;
    result.unwrap_or_else(|e| browser::error_page(&e))
}
