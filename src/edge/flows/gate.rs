//! The partner gate at the edge: the origin lookup (in-isolate cache, then one KV read) and the
//! answers for partner-facing routes.

use crate::edge::rt::request::Request;
use crate::edge::rt::respond::Outcome;
use crate::edge::rt::{kvcache, respond};
use crate::protocol::cache::TtlCache;
use crate::protocol::error::ApiError;
use crate::protocol::gate::{self, Caller};
use crate::protocol::origin::{Origin, MAX_ORIGIN_LEN};
use crate::protocol::partner::{keys, GateEntry, PartnerId};
use crate::routes::Method;
use std::cell::RefCell;
use worker::{Env, Response};

/// How many `Origin` header values an isolate remembers the reading of, and for how long.
const ORIGINS_READ: usize = 256;
const ORIGIN_READ_FOR_MS: u64 = 10 * 60 * 1000;

thread_local! {
    /// `Origin` header values read lately, each with what [`Origin::from_header`] made of it: a
    /// partner's app calling again is not parsed again. Bounded, so invented values only push
    /// out older ones.
    static ORIGINS: RefCell<TtlCache<Option<Origin>>> = RefCell::new(TtlCache::new(ORIGINS_READ));
}

/// [`Origin::from_header`], remembered for the same header value.
pub fn from_header(value: &str, now_ms: u64) -> Option<Origin> {
    if let Some(known) = ORIGINS.with(|c| c.borrow_mut().get(value, now_ms).cloned()) {
        return known;
    }
    let read = Origin::from_header(value);
    if value.len() <= MAX_ORIGIN_LEN {
        ORIGINS.with(|c| {
            c.borrow_mut()
                .insert(value.to_owned(), read.clone(), now_ms, ORIGIN_READ_FOR_MS)
        });
    }
    read
}

/// What the registry published for an origin (through the isolate cache).
pub async fn lookup(
    env: &Env,
    origin: &Origin,
    now_ms: u64,
) -> Result<Option<GateEntry>, ApiError> {
    kvcache::get_json::<GateEntry>(env, &keys::origin(origin), now_ms).await
}

/// Runs the gate for a request: the admitted origin and partner, or the refusal.
pub async fn admit(req: &Request, env: &Env, now_ms: u64) -> Result<(Origin, PartnerId), ApiError> {
    let h = req.headers();
    let origin_h = h.get("origin").ok().flatten();
    let referer_h = h.get("referer").ok().flatten();
    let read = |o: &str| from_header(o, now_ms);
    let origin = match gate::caller(origin_h.as_deref(), referer_h.as_deref(), read) {
        Caller::Browser(o) => o,
        Caller::Unrecognized => {
            return Err(gate::origin_not_allowed(
                "this origin is not on the partner allowlist",
            ))
        }
        Caller::Server => {
            return Err(gate::origin_not_allowed(
                "a CORS preflight must name its Origin",
            ))
        }
    };
    let entry = lookup(env, &origin, now_ms).await?;
    let partner = gate::admit(entry.as_ref())?.clone();
    Ok((origin, partner))
}

/// A CORS preflight on a route that answers `methods`, answered at the edge.
pub async fn preflight(
    req: &Request,
    env: &Env,
    now_ms: u64,
    methods: &'static [Method],
) -> Outcome {
    let (origin, partner) = match admit(req, env, now_ms).await {
        Ok(v) => v,
        Err(e) => return Outcome::error(e),
    };
    let requested = req
        .headers()
        .get("access-control-request-method")
        .ok()
        .flatten();
    match gate::preflight_headers(&origin, requested.as_deref(), methods) {
        Ok(h) => Outcome::new(respond::empty(204, &h), "preflight").partner(partner),
        Err(e) => Outcome::error(e).partner(partner),
    }
}

/// Adds CORS headers to a response when `origin` belongs to an active partner. Anything else,
/// including a failed lookup, adds nothing: the browser then withholds the response.
pub async fn add_cors(resp: &mut Response, env: &Env, origin: &str, now_ms: u64) {
    let Some(origin) = from_header(origin, now_ms) else {
        return;
    };
    if let Ok(Some(entry)) = lookup(env, &origin, now_ms).await {
        if gate::admit(Some(&entry)).is_ok() {
            for (k, v) in gate::cors_headers(&origin) {
                let _ = resp.headers_mut().set(k, &v);
            }
        }
    }
}
