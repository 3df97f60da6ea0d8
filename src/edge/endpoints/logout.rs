//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0). With a valid `id_token_hint`
//! (and no return address, or one registered for its client) the session ends at once; without
//! one, or with a return address that is not registered, the user confirms first (a cross-site
//! request must not sign people out, nor an app's mistake pass for success). The browser goes
//! back only to one of the hinted client's `post_logout_redirect_uris`, on an origin its partner
//! still holds, while that partner is active.

use crate::edge::calls::users;
use crate::edge::rt::browser::{self, Cookies};
use crate::edge::rt::request::Request;
use crate::edge::rt::respond::Outcome;
use crate::edge::rt::{config, keys, kvcache};
use crate::pages;
use crate::protocol::authorize::redirect_to;
use crate::protocol::client::{post_logout_destination, ClientId, ClientRecord};
use crate::protocol::error::{ApiError, ErrorCode};
use crate::protocol::form::Params;
use crate::protocol::keys::{rsa_check, verify_signature};
use crate::protocol::partner::{keys as kv_keys, Partner};
use crate::routes::{self, Method};
use crate::store::users::{Logout, Session, SessionState};
use serde_json::Value;
use worker::Env;

/// The client an ID token of ours was issued to, and its subject, if its signature is good
/// (expiry is not checked: a hint may be old).
async fn hinted_client(env: &Env, hint: &str) -> Option<(ClientId, String)> {
    let keys = keys::key_set(env).ok()?;
    let issuer = config::issuer(env).ok()?;
    let payload: Value = match verify_signature::<Value>(&keys, hint, "JWT") {
        Ok(claims) => claims.custom,
        Err(_) => {
            let check = rsa_check(&keys, hint)?;
            let rs256 = crate::protocol::jwk::SigningAlg::RS256;
            keys::webcrypto_verify(
                rs256,
                check.public_jwk,
                &check.signing_input,
                &check.signature,
            )
            .await?;
            check.payload
        }
    };
    if payload.get("iss").and_then(Value::as_str) != Some(issuer.as_str()) {
        return None;
    }
    let client = ClientId::parse(payload.get("aud").and_then(Value::as_str)?)?;
    Some((
        client,
        payload.get("sub").and_then(Value::as_str)?.to_owned(),
    ))
}

/// Whether the hint speaks for the person signed in here: the session user's pairwise subject
/// for the hinted client's partner must be the hint's `sub`. Without a session there is nothing
/// to protect.
async fn hint_matches_session(
    env: &Env,
    cookies: &Cookies,
    req: &Request,
    client_id: &ClientId,
    sub: &str,
    now_ms: u64,
) -> bool {
    let Some((username, home, session_hash)) = cookies.session(req) else {
        return true;
    };
    let Ok(Some(client)) =
        kvcache::get_json::<ClientRecord>(env, &client_id.kv_key(), now_ms).await
    else {
        return false;
    };
    let Ok(Some(partner)) =
        kvcache::get_json::<Partner>(env, &kv_keys::partner(&client.partner_id), now_ms).await
    else {
        return false;
    };
    let cmd = Session {
        session_hash,
        partner_id: client.partner_id,
        partner_salt: partner.subject_salt,
        client_id: client.client_id,
        scopes: Vec::new(),
        now: now_ms / 1000,
    };
    match users::call(env, &username, home, cmd).await {
        Ok(Some(SessionState {
            sub: session_sub, ..
        })) => session_sub == sub,
        Ok(None) => true,
        Err(_) => false,
    }
}

/// The post-logout destination: registered for the client, on an origin its active partner
/// still holds (`client::post_logout_destination`).
async fn destination(
    env: &Env,
    client_id: Option<&ClientId>,
    params: &Params,
    now_ms: u64,
) -> Option<String> {
    let uri = params.get("post_logout_redirect_uri")?;
    let client: ClientRecord = kvcache::get_json(env, &client_id?.kv_key(), now_ms)
        .await
        .ok()??;
    let partner: Partner = kvcache::get_json(env, &kv_keys::partner(&client.partner_id), now_ms)
        .await
        .ok()??;
    let registered = post_logout_destination(&client, &partner, uri)?;
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    if let Some(state) = params.get("state") {
        pairs.push(("state", state));
    }
    Some(if pairs.is_empty() {
        registered.as_str().to_owned()
    } else {
        redirect_to(registered, &pairs)
    })
}

pub async fn logout(mut req: Request, env: &Env, method: Method, now_ms: u64) -> Outcome {
    let issuer = match config::issuer(env) {
        Ok(i) => i,
        Err(e) => return browser::error_page(&e),
    };
    let cookies = Cookies::for_issuer(&issuer);
    let params = match crate::edge::rt::body::params(&mut req, method == Method::Post).await {
        Ok(p) => p,
        Err(e) => return browser::error_page(&e),
    };
    let hinted = match params.get("id_token_hint") {
        Some(h) => match hinted_client(env, h).await {
            Some((client, sub))
                if hint_matches_session(env, &cookies, &req, &client, &sub, now_ms).await =>
            {
                Some(client)
            }
            _ => None,
        },
        None => None,
    };
    // A return address that is not one registered for the hinted client is not followed, and the
    // person is asked first rather than signed out as if all were well (RP-Initiated Logout
    // §3: the OP must not redirect to it; the app did not get what it asked for).
    let unregistered_return = match (&hinted, params.get("post_logout_redirect_uri")) {
        (Some(client), Some(_)) => destination(env, Some(client), &params, now_ms)
            .await
            .is_none(),
        _ => false,
    };
    if method == Method::Get && (hinted.is_none() || unregistered_return) {
        // Not provably from a client: ask the person first.
        return match cookies.csrf(&req) {
            Ok((csrf, new_cookie)) => {
                let mut fields: Vec<(&'static str, String)> = Vec::new();
                for name in ["client_id", "post_logout_redirect_uri", "state"] {
                    if let Some(v) = params.get(name) {
                        fields.push((name, v.to_owned()));
                    }
                }
                let cookies: Vec<String> = new_cookie.into_iter().collect();
                browser::page(
                    200,
                    pages::logout_confirm(routes::LOGOUT, &csrf, &fields),
                    &cookies,
                    "logout_confirm",
                )
            }
            Err(e) => browser::error_page(&e),
        };
    }
    if method == Method::Post && !cookies.csrf_ok(&req, params.get("csrf")) {
        return browser::error_page(&ApiError::new(
            ErrorCode::AccessDenied,
            "This form has expired or was not sent from this browser.",
        ));
    }
    if let Some((username, home, session_hash)) = cookies.session(&req) {
        if let Err(e) = users::call(env, &username, home, Logout { session_hash }).await {
            return browser::error_page(&e);
        }
    }
    let clear = vec![cookies.clear_session()];
    let client_id = hinted.or_else(|| params.get("client_id").and_then(ClientId::parse));
    match destination(env, client_id.as_ref(), &params, now_ms).await {
        Some(location) => browser::redirect(
            if method == Method::Post { 303 } else { 302 },
            &location,
            &clear,
            "logged_out",
        ),
        None => browser::page(200, pages::signed_out(), &clear, "logged_out"),
    }
}
