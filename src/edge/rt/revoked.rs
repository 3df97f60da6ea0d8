//! Revocation markers in KV (`revoked:{id}`): what the gateway reads to refuse a revoked grant's
//! access tokens before they expire.
//!
//! KV takes one write a second per key, so a marker is written once per revocation: the grant
//! object publishes only until it has recorded the marker as published, and in each isolate
//! concurrent publications of one id share one write and a published id is remembered
//! ([`PUBLISHED_HERE`]), so a storm of replays in one isolate writes the key once.

use crate::edge::rt::config::{self, Fault};
use crate::protocol::api::revoked_key;
use crate::protocol::cache::TtlCache;
use crate::protocol::error::ApiError;
use crate::protocol::tokens::ACCESS_TOKEN_TTL_S;
use futures_util::future::{FutureExt, LocalBoxFuture, Shared};
use std::cell::RefCell;
use std::collections::HashMap;
use worker::Env;

/// How long a revocation stays published: past the last access token it could concern.
pub const REVOCATION_PUBLISHED_S: u64 = ACCESS_TOKEN_TTL_S + 60;

/// How long an isolate remembers a marker it wrote: less than the marker lives in KV, so a
/// remembered id is always still published.
const PUBLISHED_HERE_MS: u64 = ACCESS_TOKEN_TTL_S * 1000;

/// Ids an isolate remembers having published: bounded, evicting the least recently used.
const PUBLISHED_HERE: usize = 1024;

type Publication = Shared<LocalBoxFuture<'static, Result<(), ApiError>>>;

thread_local! {
    static PUBLISHED: RefCell<TtlCache<()>> = RefCell::new(TtlCache::new(PUBLISHED_HERE));
    /// Publications under way in this isolate, by id: a second caller awaits the first's write.
    static IN_FLIGHT: RefCell<HashMap<String, Publication>> = RefCell::new(HashMap::new());
}

/// Tells the gateway that a grant (or a client-credentials token, by `jti`) is revoked: a KV
/// entry the gateway reads through its isolate cache, kept while the grant's access tokens can
/// still be valid. A failure is a 503 to every caller that waited on that write; the caller
/// retries, and revoking again publishes again (a failed write is never remembered).
pub async fn publish(env: &Env, id: &str, now_ms: u64) -> Result<(), ApiError> {
    if PUBLISHED.with(|c| c.borrow_mut().get(id, now_ms).is_some()) {
        return Ok(());
    }
    let pending = IN_FLIGHT.with(|m| m.borrow().get(id).cloned());
    let publication = match pending {
        Some(p) => p,
        None => {
            let p = write(env.clone(), revoked_key(id)).boxed_local().shared();
            IN_FLIGHT.with(|m| m.borrow_mut().insert(id.to_owned(), p.clone()));
            p
        }
    };
    let result = publication.clone().await;
    // The first waiter to resume settles it; a newer publication of the id is left alone.
    let mine = IN_FLIGHT.with(|m| {
        let mut m = m.borrow_mut();
        let is_mine = m.get(id).is_some_and(|p| p.ptr_eq(&publication));
        if is_mine {
            m.remove(id);
        }
        is_mine
    });
    if mine && result.is_ok() {
        PUBLISHED.with(|c| {
            c.borrow_mut()
                .insert(id.to_owned(), (), now_ms, PUBLISHED_HERE_MS)
        });
    }
    result
}

async fn write(env: Env, key: String) -> Result<(), ApiError> {
    if config::injected_fault(&env, config::PARTNERS_KV, "put_revoked") == Some(Fault::Fail) {
        return Err(ApiError::unavailable("kv put: injected fault"));
    }
    let put = env
        .kv(config::PARTNERS_KV)
        .map_err(|e| ApiError::unavailable(format!("kv binding: {e}")))?
        .put(&key, "1")
        .map_err(|e| ApiError::unavailable(format!("kv put: {e}")))?
        .expiration_ttl(REVOCATION_PUBLISHED_S);
    crate::edge::rt::objects::kv_op("put", &key, put.execute()).await
}
