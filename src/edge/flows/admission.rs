//! Admitting a token at the gateway: the partner gate for browsers, the bearer token (ours, valid
//! and still standing), the page's partner, the route's scope and the rate limits.
//!
//! The hot path touches no storage: a token seen before in this isolate is answered from a
//! bounded cache of admitted tokens (kept at most `ADMITTED_TTL_MS` and never past the token's
//! `exp`; see [`slot`] for its key), and the gate reads its isolate cache.
//! A first sight costs one signature check and up to three cached KV reads (revocation, client,
//! partner). A token used again two thirds of the way through its entry's life
//! (`recheck_at_ms`) is checked again off the request's path (`waitUntil`): its signature
//! against the keys of now, and its standing from KV itself rather than the isolate cache. Its
//! entry starts again from that check, so a token in steady use is never checked on its path
//! again. A first sight that rested on a cached read (as old as `GATE_CACHE_TTL_SECONDS`, at most
//! 30 s here) is checked again so at its very next use, so no entry outlives the reads it rests
//! on by more than one check. A revocation thus reaches the gateway within the cache's TTL plus
//! KV's propagation (and the time to the token's next use), never later than the access token's
//! own five minutes.

use crate::edge::flows::limits::{self, Bucket};
use crate::edge::flows::{bearer, gate};
use crate::edge::rt::kvcache::Read;
use crate::edge::rt::request::Request;
use crate::edge::rt::respond::Outcome;
use crate::edge::rt::{clock, config, later};
use crate::protocol::api::{has_scope, recheck_at_ms, Needs, ADMITTED_TTL_MS};
use crate::protocol::cache::TtlCache;
use crate::protocol::error::{ApiError, ErrorCode};
use crate::protocol::gate::{self as gate_rules, Caller as Seen};
use crate::protocol::origin::Origin;
use crate::protocol::partner::PartnerId;
use crate::protocol::ratelimit::RateLimits;
use crate::protocol::tokens::AccessClaims;
use base64ct::{Base64UrlUnpadded, Encoding};
use sha2::{Digest, Sha256};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use subtle::ConstantTimeEq;
use worker::{Env, Response};

const ADMITTED_CAPACITY: usize = 4096;

/// Tokens up to this long (ours are under 1 KiB) are cached under their last [`TAIL`] bytes,
/// part of their signature, and kept whole to be compared; longer ones under their SHA-256.
const SHORT_TOKEN: usize = 2048;
const TAIL: usize = 64;

/// The outcome of a token's check, for the token it was made for.
#[derive(Clone)]
struct Held {
    /// A short token itself, to be compared: its key (its tail) does not name it alone.
    token: Option<Rc<str>>,
    result: Result<Rc<Admitted>, ApiError>,
}

impl Held {
    fn new(token: &str, result: &Result<Rc<Admitted>, ApiError>) -> Self {
        Held {
            token: (token.len() <= SHORT_TOKEN).then(|| Rc::from(token)),
            result: result.clone(),
        }
    }
}

/// Where a token's check is cached: a short token under its tail (no hashing on the hot path;
/// another token with the same tail only replaces the entry, see [`Held`]), a long one under its
/// SHA-256 (so long tokens never hold much of the isolate's memory).
fn slot(token: &str) -> String {
    if token.len() <= SHORT_TOKEN {
        let from = token.len().saturating_sub(TAIL);
        let tail = (from..=token.len())
            .find_map(|i| token.get(i..))
            .unwrap_or(token);
        return format!("t:{tail}");
    }
    let hash = Base64UrlUnpadded::encode_string(&Sha256::digest(token.as_bytes()));
    format!("h:{hash}")
}

/// The cached outcome for `token` under `key`, if the entry there is for it (compared in
/// constant time).
fn held(key: &str, token: &str, now_ms: u64) -> Option<Result<Rc<Admitted>, ApiError>> {
    let entry = ADMITTED.with(|c| c.borrow_mut().get(key, now_ms).cloned())?;
    let for_it = entry
        .token
        .as_deref()
        .is_none_or(|t| bool::from(t.as_bytes().ct_eq(token.as_bytes())));
    for_it.then_some(entry.result)
}

/// A token that passed every check that does not depend on the request.
pub struct Admitted {
    pub claims: AccessClaims,
    /// The partner's rate limits, as published with its record.
    pub limits: RateLimits,
    /// The token's `exp`, in seconds.
    pub exp: u64,
    pub partner: PartnerId,
    /// The identity JWT for the origin and its `exp`, signed on first forward.
    pub identity: RefCell<Option<(String, u64)>>,
    /// When to check it again off the path (see `recheck_at_ms`), and whether that is on its way.
    recheck_ms: Cell<u64>,
    rechecking: Cell<bool>,
}

thread_local! {
    // Refusals are cached too (except 503s), so a flood of one forged token costs one check.
    static ADMITTED: RefCell<TtlCache<Held>> = RefCell::new(TtlCache::new(ADMITTED_CAPACITY));
    /// Moves on at each [`forget_admitted`]: a check that started before it is not cached.
    static GENERATION: Cell<u64> = const { Cell::new(0) };
}

/// Forgets every admitted token of this isolate: called where a revocation happens, so the
/// isolate that revoked never lets the revoked token through again (nor a check of it that was
/// under way).
pub fn forget_admitted() {
    GENERATION.with(|g| g.set(g.get().wrapping_add(1)));
    ADMITTED.with(|c| *c.borrow_mut() = TtlCache::new(ADMITTED_CAPACITY));
}

fn generation() -> u64 {
    GENERATION.with(Cell::get)
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
async fn admit_token(
    env: &Env,
    token: &str,
    now_ms: u64,
    read: Read,
) -> Result<Admitted, ApiError> {
    let (claims, exp) = bearer::check_with_exp(env, token, now_ms / 1000).await?;
    let standing = bearer::standing_read(env, &claims, now_ms, read)
        .await?
        .map_err(bearer::Unstanding::gateway_error)?;
    Ok(Admitted {
        claims,
        limits: standing.partner.rate_limits.unwrap_or_default(),
        exp,
        partner: standing.client.partner_id,
        identity: RefCell::new(None),
        recheck_ms: Cell::new(u64::MAX),
        rechecking: Cell::new(false),
    })
}

/// Remembers the outcome of a check made at `now_ms` (begun in `generation`): an admission
/// until [`ADMITTED_TTL_MS`] (and the gate's TTL, and the token's `exp`), a refusal as long,
/// a 503 not at all.
/// `on_cached_reads`: the check answered from reads the isolate had cached, so the entry is
/// checked again (off the path) at its next use rather than after two thirds of its life.
fn remember(
    env: &Env,
    key: String,
    token: &str,
    result: &Result<Rc<Admitted>, ApiError>,
    now_ms: u64,
    generation: u64,
    on_cached_reads: bool,
) {
    let ttl = match result {
        Ok(a) => {
            let exp_ms = a.exp.saturating_mul(1000);
            let life = ADMITTED_TTL_MS.min(config::gate_cache_ttl_ms(env));
            let recheck = if on_cached_reads {
                now_ms
            } else {
                recheck_at_ms(now_ms, life)
            };
            a.recheck_ms.set(recheck);
            life.min(exp_ms.saturating_sub(now_ms))
        }
        Err(e) if e.code == ErrorCode::TemporarilyUnavailable => 0,
        Err(_) => ADMITTED_TTL_MS.min(config::gate_cache_ttl_ms(env)),
    };
    if generation == self::generation() {
        let held = Held::new(token, result);
        ADMITTED.with(|c| c.borrow_mut().insert(key, held, now_ms, ttl));
    }
}

async fn admitted(env: &Env, token: &str, now_ms: u64) -> Result<Rc<Admitted>, ApiError> {
    let key = slot(token);
    if let Some(hit) = held(&key, token, now_ms) {
        if let Ok(a) = &hit {
            if now_ms >= a.recheck_ms.get() && !a.rechecking.get() {
                recheck_later(env, key, token, a);
            }
        }
        return hit;
    }
    let generation = generation();
    let hits = crate::edge::rt::kvcache::hits();
    let result = admit_token(env, token, now_ms, Read::Cached)
        .await
        .map(Rc::new);
    let on_cached_reads = crate::edge::rt::kvcache::hits() != hits;
    remember(
        env,
        key,
        token,
        &result,
        now_ms,
        generation,
        on_cached_reads,
    );
    result
}

/// Checks an admitted token again off the request's path: its signature against the keys of
/// now (a removed key's tokens stop), and its standing from KV itself. The entry is replaced by
/// what the check finds (from the moment it began), or left to run out if storage fails.
fn recheck_later(env: &Env, key: String, token: &str, held: &Rc<Admitted>) {
    held.rechecking.set(true);
    let (env, this, token) = (env.clone(), Rc::clone(held), token.to_owned());
    let queued = later::spawn(async move {
        let generation = generation();
        let now_ms = clock::now_ms();
        let result = admit_token(&env, &token, now_ms, Read::Fresh).await;
        if let Err(e) = &result {
            if e.code == ErrorCode::TemporarilyUnavailable {
                this.rechecking.set(false);
                return;
            }
        }
        let result = result.map(|a| {
            // The same token, so the same identity for the origin: still good until its exp.
            *a.identity.borrow_mut() = this.identity.borrow().clone();
            Rc::new(a)
        });
        remember(&env, key, &token, &result, now_ms, generation, false);
    });
    if !queued {
        held.rechecking.set(false);
    }
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
    pub fn after(caller: &Caller, error: ApiError) -> Refusal {
        Refusal {
            error,
            partner: Some(caller.admitted.partner.clone()),
            origin: caller.origin.clone(),
            client: Some(caller.admitted.claims.client_id.clone()),
        }
    }

    pub fn outcome(self) -> Outcome {
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
    let read = |o: &str| gate::from_header(o, now_ms);
    match gate_rules::caller(origin_h.as_deref(), referer_h.as_deref(), read) {
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

pub fn with_cors(mut resp: Response, origin: Option<&Origin>) -> Response {
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
