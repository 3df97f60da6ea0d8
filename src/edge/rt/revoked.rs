//! Revocation markers in KV (`revoked:{id}`): what the gateway reads to refuse a revoked grant's
//! access tokens before they expire.
//!
//! KV takes one write a second per key, so a marker is written once per revocation: the grant
//! object publishes only until it has recorded the marker as published, and in each isolate
//! concurrent publications of one id wait for the one being written and a published id is remembered
//! ([`PUBLISHED_HERE`]), so a storm of replays in one isolate writes the key once.

use crate::edge::rt::config::{self, Fault};
use crate::protocol::api::revoked_key;
use crate::protocol::cache::TtlCache;
use crate::protocol::error::ApiError;
use crate::protocol::tokens::ACCESS_TOKEN_TTL_S;
use std::cell::RefCell;
use std::collections::HashSet;
use std::time::Duration;
use worker::{Delay, Env};

/// How long a revocation stays published: past the last access token it could concern.
pub const REVOCATION_PUBLISHED_S: u64 = ACCESS_TOKEN_TTL_S + 60;

/// How long an isolate remembers a marker it wrote: less than the marker lives in KV, so a
/// remembered id is always still published.
const PUBLISHED_HERE_MS: u64 = ACCESS_TOKEN_TTL_S * 1000;

/// Ids an isolate remembers having published: bounded, evicting the least recently used.
const PUBLISHED_HERE: usize = 1024;

/// How often a caller that found another request writing the same marker looks again.
const WAIT_STEP_MS: u64 = 10;

/// How long it waits for that other request before writing itself.
const WAIT_AT_MOST_MS: u64 = 5_000;

thread_local! {
    static PUBLISHED: RefCell<TtlCache<()>> = RefCell::new(TtlCache::new(PUBLISHED_HERE));
    /// Ids whose marker a request of this isolate is writing now. Other requests wait by looking
    /// again on their own timer, never by awaiting the writer's future: the runtime does not let
    /// one request wait on another's I/O.
    static IN_FLIGHT: RefCell<HashSet<String>> = RefCell::new(HashSet::new());
}

/// Marks an id as being written until dropped (also when the writing request is cancelled).
struct Writing(String);

impl Drop for Writing {
    fn drop(&mut self) {
        IN_FLIGHT.with(|m| m.borrow_mut().remove(&self.0));
    }
}

/// Tells the gateway that a grant (or a client-credentials token, by `jti`) is revoked: a KV
/// entry the gateway reads through its isolate cache, kept while the grant's access tokens can
/// still be valid. A caller that finds the marker being written by another request of the
/// isolate waits for that write: if it succeeds, nothing more is written; if it fails, the
/// caller writes itself. A failure is a 503; the caller retries, and revoking again publishes
/// again (a failed write is never remembered).
pub async fn publish(env: &Env, id: &str, now_ms: u64) -> Result<(), ApiError> {
    let mut waited = 0;
    loop {
        if PUBLISHED.with(|c| c.borrow_mut().get(id, now_ms).is_some()) {
            return Ok(());
        }
        let busy = IN_FLIGHT.with(|m| m.borrow().contains(id));
        if !busy || waited >= WAIT_AT_MOST_MS {
            break;
        }
        Delay::from(Duration::from_millis(WAIT_STEP_MS)).await;
        waited += WAIT_STEP_MS;
    }
    IN_FLIGHT.with(|m| m.borrow_mut().insert(id.to_owned()));
    let writing = Writing(id.to_owned());
    let result = write(env.clone(), revoked_key(id)).await;
    if result.is_ok() {
        PUBLISHED.with(|c| {
            c.borrow_mut()
                .insert(id.to_owned(), (), now_ms, PUBLISHED_HERE_MS)
        });
    }
    drop(writing);
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
