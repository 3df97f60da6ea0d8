//! The API gateway: `/api/*` checked at the edge (partner gate for browsers, bearer token, scope,
//! partner still active) and forwarded to `ORIGIN_URL` with the caller's identity; and
//! `/edge/whoami`, the same checks answered at the edge.
//! The checks are the admission flow's (`flows::admission`).

use crate::edge::flows::admission::{check, with_cors, Admitted, Caller, Refusal};
use crate::edge::rt::request::Request;
use crate::edge::rt::respond::Outcome;
use crate::edge::rt::{config, keys, respond};
use crate::protocol::address::{client_address, forwarded_values};
use crate::protocol::api::{
    self, check_body, connection_named, forward_request_header, forward_response_header,
    forward_set_cookie, method_has_body, path_refusal, IdentityClaims, Needs,
};
use crate::protocol::error::{ApiError, ErrorCode};
use crate::protocol::keys::Times;
use crate::routes::Method;
use serde_json::json;
use wasm_bindgen::JsValue;
use worker::{Env, Fetch, Headers, RequestInit, RequestRedirect, Response};

/// `GET /edge/whoami`: the gateway's checks, answered at the edge.
pub async fn whoami(req: &Request, env: &Env, now_ms: u64) -> Outcome {
    match check(req, env, Needs::Token, now_ms).await {
        Ok(caller) => {
            let a = &caller.admitted;
            let body = json!({
                "sub": a.claims.sub,
                "client_id": a.claims.client_id,
                "partner_id": a.partner.as_str(),
                "scope": a.claims.scope,
                "exp": a.exp,
            });
            let resp = with_cors(respond::json(200, &body, &[]), caller.origin.as_ref());
            let mut out = Outcome::new(resp, "ok").partner(a.partner.clone());
            out.client = Some(a.claims.client_id.clone());
            out
        }
        Err(refusal) => refusal.outcome(),
    }
}

/// `/api/*`: checked at the edge, then forwarded.
pub async fn api(req: Request, env: &Env, method: Method, now_ms: u64) -> Outcome {
    let path = req.path();
    let ready = async {
        if let Some(why) = path_refusal(path) {
            return Err(ApiError::new(ErrorCode::InvalidRequest, why).into());
        }
        let scopes = config::api_scopes(env)?;
        // Callers learn which routes exist only after their token passed.
        let needs = scopes.needs(method, path);
        let caller = check(&req, env, needs.unwrap_or(Needs::Token), now_ms).await?;
        if needs.is_none() {
            return Err(Refusal::after(&caller, ApiError::not_found("API route")));
        }
        let origin_url = config::origin_url(env).map_err(|e| Refusal::after(&caller, e))?;
        Ok::<_, Refusal>((origin_url, caller))
    }
    .await;
    let (origin_url, caller) = match ready {
        Ok(v) => v,
        Err(refusal) => return refusal.outcome(),
    };
    let partner = caller.admitted.partner.clone();
    match forward(req, env, method, &origin_url, &caller, now_ms).await {
        Ok(resp) => {
            let outcome = if resp.status_code() >= 500 {
                "origin_error"
            } else {
                "forwarded"
            };
            let mut out =
                Outcome::new(with_cors(resp, caller.origin.as_ref()), outcome).partner(partner);
            out.client = Some(caller.admitted.claims.client_id.clone());
            out
        }
        Err(error) => Refusal::after(&caller, error).outcome(),
    }
}

/// The identity JWT for this caller, reused while it has at least half its life left.
async fn identity_jwt(
    env: &Env,
    origin_url: &str,
    a: &Admitted,
    now: u64,
) -> Result<String, ApiError> {
    if let Some((jwt, exp)) = a.identity.borrow().as_ref() {
        if now + api::IDENTITY_TTL_S / 2 < *exp {
            return Ok(jwt.clone());
        }
    }
    let keys = keys::key_set(env)?;
    let key = keys
        .access_token_key()
        .ok_or_else(|| ApiError::unavailable("no access-token signing key"))?;
    let issuer = config::issuer(env)?;
    let claims = IdentityClaims {
        iss: issuer.as_str().to_owned(),
        aud: origin_url.to_owned(),
        sub: a.claims.sub.clone(),
        client_id: a.claims.client_id.clone(),
        partner_id: a.partner.as_str().to_owned(),
        scope: a.claims.scope.clone(),
        ati: a.claims.jti.clone(),
    };
    let exp = now + api::IDENTITY_TTL_S;
    let jwt = keys::sign(key, api::IDENTITY_TYP, Times { iat: now, exp }, claims).await?;
    *a.identity.borrow_mut() = Some((jwt.clone(), exp));
    Ok(jwt)
}

/// The path and query of the request URL, as the caller sent them.
fn path_and_query(url: &str) -> &str {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    after_scheme
        .find('/')
        .map_or("/", |i| after_scheme.get(i..).unwrap_or("/"))
}

fn bad_gateway(cause: String) -> ApiError {
    ApiError::new(ErrorCode::BadGateway, "the platform could not be reached").with_cause(cause)
}

async fn forward(
    req: Request,
    env: &Env,
    method: Method,
    origin_url: &str,
    caller: &Caller,
    now_ms: u64,
) -> Result<Response, ApiError> {
    let incoming = req.headers();
    let named = connection_named(incoming.get("connection").ok().flatten().as_deref());
    // A copy of the caller's headers less those the origin must not see: one copy, and no value
    // read into Rust (issue 15's profile: reading and appending each header was a tenth of the
    // forward path). A header that cannot be removed fails the request, never reaches the origin.
    let headers = web_sys::Headers::new_with_headers(&incoming.0)
        .map(Headers)
        .map_err(|e| ApiError::unavailable(format!("caller headers: {e:?}")))?;
    for name in incoming.keys() {
        if !forward_request_header(&name, &named) {
            headers
                .delete(&name)
                .map_err(|e| ApiError::unavailable(format!("caller header: {e}")))?;
        }
    }
    let a = &caller.admitted;
    let set = |k: &str, v: &str| {
        headers
            .set(k, v)
            .map_err(|e| ApiError::unavailable(format!("identity header: {e}")))
    };
    set(api::HEADER_SUB, &a.claims.sub)?;
    set(api::HEADER_CLIENT, &a.claims.client_id)?;
    set(api::HEADER_PARTNER, a.partner.as_str())?;
    set(api::HEADER_SCOPE, &a.claims.scope)?;
    set(
        api::HEADER_IDENTITY,
        &identity_jwt(env, origin_url, a, now_ms / 1000).await?,
    )?;
    // The client's address as Cloudflare saw the connection; what the caller said is gone.
    let client = client_address(incoming.get("cf-connecting-ip").ok().flatten().as_deref());
    if let Some((forwarded, forwarded_for)) = client.map(forwarded_values) {
        set("forwarded", &forwarded)?;
        set("x-forwarded-for", &forwarded_for)?;
    }

    let mut init = RequestInit::new();
    init.with_method(method_for(method))
        .with_headers(headers)
        .with_redirect(RequestRedirect::Manual);
    if method_has_body(method) {
        let length = incoming.get("content-length").ok().flatten();
        let has_body =
            req.inner().body().is_some() || incoming.has("transfer-encoding").unwrap_or(false);
        check_body(length.as_deref(), has_body, config::api_max_body(env))?;
        // The body streams through: nothing here reads it.
        init.with_body(req.inner().body().map(JsValue::from));
    }
    let url = format!("{origin_url}{}", path_and_query(req.url_text()));
    let out = worker::Request::new_with_init(&url, &init)
        .map_err(|e| ApiError::unavailable(format!("origin request: {e}")))?;
    let resp = Fetch::Request(out)
        .send()
        .await
        .map_err(|e| bad_gateway(format!("origin fetch: {e}")))?;

    let named = connection_named(resp.headers().get("connection").ok().flatten().as_deref());
    let back = Headers::new();
    for (name, value) in resp.headers().entries() {
        let ours = name.eq_ignore_ascii_case("set-cookie") && !forward_set_cookie(&value);
        if forward_response_header(&name, &named) && !ours {
            let _ = back.append(&name, &value);
        }
    }
    let status = resp.status_code();
    let (_, body) = resp.into_parts();
    Ok(Response::builder()
        .with_status(status)
        .with_headers(back)
        .body(body))
}

fn method_for(m: Method) -> worker::Method {
    match m {
        Method::Get => worker::Method::Get,
        Method::Head => worker::Method::Head,
        Method::Post => worker::Method::Post,
        Method::Put => worker::Method::Put,
        Method::Patch => worker::Method::Patch,
        Method::Delete => worker::Method::Delete,
        Method::Options => worker::Method::Options,
    }
}
