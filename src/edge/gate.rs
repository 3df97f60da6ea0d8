//! The partner gate at the edge: the origin lookup (in-isolate cache, then one KV read) and the
//! answers for partner-facing routes.

use std::cell::RefCell;

use worker::{Env, Request, Response};

use super::config;
use super::respond;
use super::Outcome;
use crate::protocol::cache::TtlCache;
use crate::protocol::error::ApiError;
use crate::protocol::gate::{self, Caller};
use crate::protocol::origin::Origin;
use crate::protocol::partner::{keys, GateEntry, PartnerId};

/// Bounded so that invented origins cannot grow an isolate's memory.
const CACHE_CAPACITY: usize = 4096;

thread_local! {
    // `None` entries remember that an origin is not allowed, so a flood of one unknown origin
    // costs one KV read per isolate per TTL.
    static CACHE: RefCell<TtlCache<Option<GateEntry>>> = RefCell::new(TtlCache::new(CACHE_CAPACITY));
}

async fn lookup(env: &Env, origin: &Origin, now_ms: u64) -> Result<Option<GateEntry>, ApiError> {
    if let Some(hit) = CACHE.with(|c| c.borrow().get(origin.as_str(), now_ms).cloned()) {
        return Ok(hit);
    }
    let kv = env
        .kv(config::PARTNERS_KV)
        .map_err(|e| ApiError::unavailable(format!("kv binding: {e}")))?;
    let raw = kv
        .get(&keys::origin(origin))
        .text()
        .await
        .map_err(|e| ApiError::unavailable(format!("kv get: {e}")))?;
    let entry = match raw {
        None => None,
        Some(s) => Some(
            serde_json::from_str::<GateEntry>(&s)
                .map_err(|e| ApiError::unavailable(format!("corrupt gate entry: {e}")))?,
        ),
    };
    let ttl = config::gate_cache_ttl_ms(env);
    CACHE.with(|c| {
        c.borrow_mut()
            .insert(origin.as_str().to_owned(), entry.clone(), now_ms, ttl)
    });
    Ok(entry)
}

/// Runs the gate for a request: the admitted origin and partner, or the refusal.
pub async fn admit(req: &Request, env: &Env, now_ms: u64) -> Result<(Origin, PartnerId), ApiError> {
    let h = req.headers();
    let origin_h = h.get("origin").ok().flatten();
    let referer_h = h.get("referer").ok().flatten();
    let origin = match gate::caller(origin_h.as_deref(), referer_h.as_deref()) {
        Caller::Browser(o) => o,
        Caller::Unrecognized => {
            return Err(gate::origin_not_allowed(
                "this origin is not on the partner allowlist",
            ))
        }
        Caller::Server => {
            return Err(gate::origin_not_allowed(
                "requests without Origin or Referer are not accepted here yet",
            ))
        }
    };
    let entry = lookup(env, &origin, now_ms).await?;
    let partner = gate::admit(entry.as_ref())?.clone();
    Ok((origin, partner))
}

/// A CORS preflight, answered at the edge. `partner_facing` is whether the path speaks CORS.
pub async fn preflight(req: &Request, env: &Env, now_ms: u64, partner_facing: bool) -> Outcome {
    let (origin, partner) = match admit(req, env, now_ms).await {
        Ok(v) => v,
        Err(e) => return Outcome::error(e),
    };
    let result = if partner_facing {
        let requested = req
            .headers()
            .get("access-control-request-method")
            .ok()
            .flatten();
        gate::preflight_headers(&origin, requested.as_deref())
    } else {
        Err(ApiError::not_found("CORS route"))
    };
    match result {
        Ok(h) => Outcome::new(respond::empty(204, &h), "preflight").partner(partner),
        Err(e) => Outcome::error(e).partner(partner),
    }
}

/// `/api/*`: the gate, then (until the gateway exists) a placeholder answer naming the partner.
pub async fn api(req: &Request, env: &Env, now_ms: u64) -> Outcome {
    let (origin, partner) = match admit(req, env, now_ms).await {
        Ok(v) => v,
        Err(e) => return Outcome::error(e),
    };
    let body = serde_json::json!({
        "partner_id": partner.as_str(),
        "message": "admitted by the partner gate; the API gateway is not built yet",
    });
    let resp: Response = respond::json(200, &body, &gate::cors_headers(&origin));
    Outcome::new(resp, "allowed").partner(partner)
}
