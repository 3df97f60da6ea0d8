//! The account page (`/account`): the signed-in user's linked partners, Unlink, and Confirm for
//! a link that a new password paused. Unlinking stops automatic login at once and revokes the
//! grants issued through the link.

use crate::edge::calls::{links, users};
use crate::edge::flows::unlink;
use crate::edge::rt::browser::{self, Cookies};
use crate::edge::rt::request::Request;
use crate::edge::rt::respond::Outcome;
use crate::edge::rt::{config, kvcache};
use crate::pages::{self, LinkedPartner};
use crate::protocol::dates::ymd;
use crate::protocol::error::{ApiError, ErrorCode};
use crate::protocol::form;
use crate::protocol::link::{session_serves, SessionUse};
use crate::protocol::partner::{keys as kv_keys, Partner, PartnerId};
use crate::protocol::user::LinkEntry;
use crate::routes::{self, Method};
use crate::store::links::Place;
use crate::store::users::{ConfirmLink, LinkConfirmed, Links, UserLinks};
use worker::Env;

async fn render(
    env: &Env,
    req: &Request,
    cookies: &Cookies,
    user_name: &str,
    entries: &[LinkEntry],
    notice: Option<&str>,
    now_ms: u64,
) -> Result<Outcome, ApiError> {
    // The partner's current name and the link's date, for each entry.
    let mut shown: Vec<(String, String)> = Vec::new();
    for e in entries {
        let name = kvcache::get_json::<Partner>(env, &kv_keys::partner(&e.partner_id), now_ms)
            .await?
            .map_or_else(|| e.partner_id.to_string(), |p| p.name);
        shown.push((name, ymd(e.linked_at)));
    }
    let links: Vec<LinkedPartner<'_>> = entries
        .iter()
        .zip(&shown)
        .map(|(e, (name, on))| LinkedPartner {
            partner_id: e.partner_id.as_str(),
            partner_name: name,
            linked_on: on,
            paused: e.paused,
            account_label: e.account_label.as_deref(),
        })
        .collect();
    let (csrf, new_cookie) = cookies.csrf(req)?;
    let html = pages::account(routes::ACCOUNT, &csrf, user_name, &links, notice);
    let set: Vec<String> = new_cookie.into_iter().collect();
    Ok(browser::page(200, html, &set, "account"))
}

pub async fn account(mut req: Request, env: &Env, method: Method, now_ms: u64) -> Outcome {
    let now = now_ms / 1000;
    let issuer = match config::issuer(env) {
        Ok(i) => i,
        Err(e) => return browser::error_page(&e),
    };
    let cookies = Cookies::for_issuer(&issuer);
    let result: Result<Outcome, ApiError> = async {
        let to_login = || {
            let location = format!(
                "{}?{}",
                routes::LOGIN,
                form::encode(&[("return_to", routes::ACCOUNT)])
            );
            browser::redirect(
                if method == Method::Post { 303 } else { 302 },
                &location,
                &[],
                "login",
            )
        };
        let Some((username, home, session_hash)) = cookies.session(&req) else {
            return Ok(to_login());
        };
        let cmd = Links {
            session_hash: Some(session_hash.clone()),
            now,
        };
        let (user, mut entries, via_link) = match users::call(env, &username, home, cmd).await {
            Ok(Some(UserLinks {
                user,
                links,
                via_link,
            })) => (user, links, via_link),
            Err(error) if error.code != ErrorCode::NotFound => return Err(error),
            // No session, or the user is gone.
            Ok(None) | Err(_) => return Ok(to_login()),
        };
        if method == Method::Get {
            return render(env, &req, &cookies, &user.name, &entries, None, now_ms).await;
        }
        let params = crate::edge::rt::body::form(&mut req).await?;
        if !cookies.csrf_ok(&req, params.get("csrf")) {
            return Err(ApiError::new(
                ErrorCode::AccessDenied,
                "This form has expired or was not sent from this browser.",
            ));
        }
        // Unlinking changes the account: a session from automatic login signs in again first.
        if !session_serves(via_link.as_ref(), SessionUse::Links) {
            return Ok(to_login());
        }
        let partner = params
            .get("partner_id")
            .and_then(|p| PartnerId::parse(p).ok())
            .filter(|p| entries.iter().any(|e| e.partner_id == *p))
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::InvalidRequest,
                    "that app is not linked to your account",
                )
            })?;
        let notice = if params.get("action") == Some("confirm") {
            let cmd = ConfirmLink {
                session_hash,
                partner_id: partner.clone(),
                now,
            };
            match users::call(env, &username, home, cmd).await? {
                LinkConfirmed::Confirmed => {}
                LinkConfirmed::NoSession => return Ok(to_login()),
            }
            for e in entries.iter_mut().filter(|e| e.partner_id == partner) {
                e.paused = false;
            }
            "The app may sign you in again."
        } else {
            // The link's shard: the partner account it is to, in the user's region.
            let place = entries
                .iter()
                .find(|e| e.partner_id == partner)
                .and_then(|e| e.partner_sub.as_deref())
                .map(|sub| Place::of(home, sub));
            unlink::unlink(
                env,
                &partner,
                links::salt_of(env, &partner, now_ms).await?.as_deref(),
                &username,
                home,
                place,
                now,
            )
            .await?;
            entries.retain(|e| e.partner_id != partner);
            "The app was unlinked."
        };
        let out = render(
            env,
            &req,
            &cookies,
            &user.name,
            &entries,
            Some(notice),
            now_ms,
        )
        .await?;
        Ok(out.partner(partner))
    }
    .await;
    result.unwrap_or_else(|e| browser::error_page(&e))
}
