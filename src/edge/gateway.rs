//! The API gateway: `/api/*` checked at the edge (partner gate for browsers, bearer token, scope,
//! partner still active) and forwarded to `ORIGIN_URL` with the caller's identity; and
//! `/edge/whoami`, the same checks answered at the edge.
//!
//! The hot path touches no storage: a token seen before in this isolate is answered from a
//! bounded cache of admitted tokens (keyed by the token's SHA-256, kept at most
//! [`ADMITTED_TTL_MS`] and never past the token's `exp`), and the gate reads its isolate cache.
//! A first sight costs one signature check and up to three cached KV reads (revocation, client,
//! partner). A revocation reaches the gateway when the isolate's entries for it expire: within
//! `GATE_CACHE_TTL_SECONDS` (at most 30 s here) plus KV's propagation, and never later than
//! the access token's own five minutes.

use std::cell::RefCell;
use std::rc::Rc;

use base64ct::{Base64UrlUnpadded, Encoding};
use serde_json::json;
use sha2::{Digest, Sha256};
use wasm_bindgen::JsValue;
use worker::{Env, Fetch, Headers, Request, RequestInit, RequestRedirect, Response};

use super::limits::{self, Bucket};
use super::{bearer, config, gate, keys, respond, Outcome};
use crate::protocol::address::{client_address, forwarded_values};
use crate::protocol::api::{
    self, check_body, connection_named, forward_request_header, forward_response_header,
    forward_set_cookie, has_scope, method_has_body, path_refusal, IdentityClaims, Needs,
};
use crate::protocol::cache::TtlCache;
use crate::protocol::error::{ApiError, ErrorCode};
use crate::protocol::gate::{self as gate_rules, Caller as Seen};
use crate::protocol::keys::Times;
use crate::protocol::origin::Origin;
use crate::protocol::partner::PartnerId;
use crate::protocol::ratelimit::RateLimits;
use crate::protocol::tokens::AccessClaims;
use crate::routes::Method;

/// Longest time an admitted token is trusted without looking at revocations and the registry
/// again (also bounded by `GATE_CACHE_TTL_SECONDS` and the token's `exp`).
pub const ADMITTED_TTL_MS: u64 = 30_000;
const ADMITTED_CAPACITY: usize = 4096;

/// A token that passed every check that does not depend on the request.
pub struct Admitted {
    pub claims: AccessClaims,
    /// The partner's rate limits, as published with its record.
    pub limits: RateLimits,
    /// The token's `exp`, in seconds.
    pub exp: u64,
    pub partner: PartnerId,
    /// The identity JWT for the origin and its `exp`, signed on first forward.
    identity: RefCell<Option<(String, u64)>>,
}

thread_local! {
    // Refusals are cached too (except 503s), so a flood of one forged token costs one check.
    static ADMITTED: RefCell<TtlCache<Result<Rc<Admitted>, ApiError>>> =
        RefCell::new(TtlCache::new(ADMITTED_CAPACITY));
}

/// Forgets every admitted token of this isolate: called where a revocation happens, so the
/// isolate that revoked never lets the revoked token through again.
pub fn forget_admitted() {
    ADMITTED.with(|c| *c.borrow_mut() = TtlCache::new(ADMITTED_CAPACITY));
}

/// Who is calling, after every check.
pub struct Caller {
    pub admitted: Rc<Admitted>,
    /// The browser origin, when the call came from a partner's page (CORS applies).
    pub origin: Option<Origin>,
}

fn invalid(why: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidToken, why)
}

/// The checks of a token that do not depend on the request: ours and valid, and still standing
/// (not revoked, its client still registered, its partner active: [`bearer::standing`]).
async fn admit_token(env: &Env, token: &str, now_ms: u64) -> Result<Admitted, ApiError> {
    let (claims, exp) = bearer::check_with_exp(env, token, now_ms / 1000)?;
    let standing = bearer::standing(env, &claims, now_ms)
        .await?
        .map_err(bearer::Unstanding::gateway_error)?;
    Ok(Admitted {
        claims,
        limits: standing.partner.rate_limits.unwrap_or_default(),
        exp,
        partner: standing.client.partner_id,
        identity: RefCell::new(None),
    })
}

async fn admitted(env: &Env, token: &str, now_ms: u64) -> Result<Rc<Admitted>, ApiError> {
    let key = Base64UrlUnpadded::encode_string(&Sha256::digest(token.as_bytes()));
    if let Some(hit) = ADMITTED.with(|c| c.borrow().get(&key, now_ms).cloned()) {
        return hit;
    }
    let result = admit_token(env, token, now_ms).await.map(Rc::new);
    let ttl = match &result {
        Ok(a) => {
            let exp_ms = a.exp.saturating_mul(1000);
            ADMITTED_TTL_MS
                .min(config::gate_cache_ttl_ms(env))
                .min(exp_ms.saturating_sub(now_ms))
        }
        Err(e) if e.code == ErrorCode::TemporarilyUnavailable => 0,
        Err(_) => ADMITTED_TTL_MS.min(config::gate_cache_ttl_ms(env)),
    };
    ADMITTED.with(|c| c.borrow_mut().insert(key, result.clone(), now_ms, ttl));
    result
}

/// A refusal, with what the gate already established: a partner's page gets the refusal with
/// CORS headers (so its code can read the 401 and fetch a new token), and the log line names
/// the partner.
pub struct Refusal {
    pub error: ApiError,
    pub partner: Option<PartnerId>,
    pub origin: Option<Origin>,
    /// The token's client, when the refusal came after the token was admitted.
    pub client: Option<String>,
}

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Refusal {
        Refusal {
            error,
            partner: None,
            origin: None,
            client: None,
        }
    }
}

impl Refusal {
    /// A refusal of a caller whose token was admitted: the log names its partner and client.
    fn after(caller: &Caller, error: ApiError) -> Refusal {
        Refusal {
            error,
            partner: Some(caller.admitted.partner.clone()),
            origin: caller.origin.clone(),
            client: Some(caller.admitted.claims.client_id.clone()),
        }
    }

    fn outcome(self) -> Outcome {
        let mut out = Outcome::error(self.error);
        out.response = with_cors(out.response, self.origin.as_ref());
        out.partner = self.partner;
        out.client = self.client;
        out
    }
}

/// The browser origin of a request and its partner, after the partner gate; `None` for a
/// server-to-server call (no `Origin` or `Referer`).
async fn browser_origin(
    req: &Request,
    env: &Env,
    now_ms: u64,
) -> Result<Option<(Origin, PartnerId)>, ApiError> {
    let h = req.headers();
    let origin_h = h.get("origin").ok().flatten();
    let referer_h = h.get("referer").ok().flatten();
    match gate_rules::caller(origin_h.as_deref(), referer_h.as_deref()) {
        Seen::Server => Ok(None),
        Seen::Unrecognized => Err(gate_rules::origin_not_allowed(
            "this origin is not on the partner allowlist",
        )),
        Seen::Browser(o) => {
            let entry = gate::lookup(env, &o, now_ms).await?;
            let partner = gate_rules::admit(entry.as_ref())?.clone();
            Ok(Some((o, partner)))
        }
    }
}

/// The token of a request, admitted (see [`admitted`]) and not expired.
async fn token_of(req: &Request, env: &Env, now_ms: u64) -> Result<Rc<Admitted>, ApiError> {
    let token = bearer::presented(req)?;
    let admitted = admitted(env, &token, now_ms).await?;
    if admitted.exp.saturating_mul(1000) <= now_ms {
        return Err(invalid("the access token expired"));
    }
    Ok(admitted)
}

/// The checks of an admitted token against this request: the page's partner, the route's
/// scope, the rate limits.
async fn permit(
    env: &Env,
    admitted: &Admitted,
    browser: Option<&PartnerId>,
    needs: Needs<'_>,
    now_ms: u64,
) -> Result<(), ApiError> {
    if browser.is_some_and(|p| *p != admitted.partner) {
        return Err(gate_rules::origin_not_allowed(
            "this origin belongs to another partner than the token's client",
        ));
    }
    if let Needs::Scope(scope) = needs {
        if !has_scope(&admitted.claims.scope, scope) {
            return Err(ApiError::insufficient_scope(scope));
        }
    }
    limits::admit_client(
        env,
        Bucket::Api,
        &admitted.partner,
        &admitted.claims.client_id,
        &admitted.limits,
        now_ms,
    )
    .await
}

/// Runs every edge check for a request that needs `needs`.
pub async fn check(
    req: &Request,
    env: &Env,
    needs: Needs<'_>,
    now_ms: u64,
) -> Result<Caller, Refusal> {
    let browser = browser_origin(req, env, now_ms).await?;
    let (origin, page_partner) = browser.unzip();
    let admitted = match token_of(req, env, now_ms).await {
        Ok(a) => a,
        Err(error) => {
            return Err(Refusal {
                error,
                partner: page_partner,
                origin,
                client: None,
            })
        }
    };
    let caller = Caller { admitted, origin };
    match permit(env, &caller.admitted, page_partner.as_ref(), needs, now_ms).await {
        Ok(()) => Ok(caller),
        Err(error) => Err(Refusal::after(&caller, error)),
    }
}

fn with_cors(mut resp: Response, origin: Option<&Origin>) -> Response {
    if let Some(o) = origin {
        for (k, v) in gate_rules::cors_headers(o) {
            // The origin's own `Vary` still holds: ours is added to it, never put in its place.
            let v = if k == "vary" {
                gate_rules::merge_vary(resp.headers().get(k).ok().flatten().as_deref(), &v)
            } else {
                v
            };
            let _ = resp.headers_mut().set(k, &v);
        }
    }
    resp
}

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
        if let Some(why) = path_refusal(&path) {
            return Err(ApiError::new(ErrorCode::InvalidRequest, why).into());
        }
        let scopes = config::api_scopes(env)?;
        // Callers learn which routes exist only after their token passed.
        let needs = scopes.needs(method, &path);
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
    let headers = Headers::new();
    for (name, value) in incoming.entries() {
        if forward_request_header(&name, &named) {
            let _ = headers.append(&name, &value);
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
    let url = format!("{origin_url}{}", path_and_query(&req.inner().url()));
    let out = Request::new_with_init(&url, &init)
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
