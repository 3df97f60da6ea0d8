//! Reading the published registry (KV `PARTNERS`) through a small in-isolate cache: a hit costs
//! no I/O; entries live `GATE_CACHE_TTL_SECONDS`. Absent keys are cached too, so a flood of one
//! unknown key costs one KV read per isolate per TTL. A KV failure is a 503: never fail open.

use crate::edge::rt::config;
use crate::protocol::cache::TtlCache;
use crate::protocol::error::ApiError;
use crate::protocol::partner::keys::MAX_KEY_BYTES;
use serde::de::DeserializeOwned;
use std::any::Any;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use worker::Env;

/// Bounded so that invented keys cannot grow an isolate's memory.
const CACHE_CAPACITY: usize = 4096;

/// A record's text, and the value it parsed into.
type Parsed = (Rc<str>, Rc<dyn Any>);

thread_local! {
    static CACHE: RefCell<TtlCache<Option<Rc<str>>>> = RefCell::new(TtlCache::new(CACHE_CAPACITY));
    /// Moves on at each [`forget`]: a read that began before it does not put its (older) answer
    /// back into the cache after it.
    static FORGOTTEN: Cell<u64> = const { Cell::new(0) };
    /// Reads answered from the cache, counted: a caller compares it before and after a check to
    /// know whether the check rested on an answer read earlier (then as old as the TTL).
    static HITS: Cell<u64> = const { Cell::new(0) };
    /// What a cached record parsed into, with the very text it was parsed from: a record read
    /// again from the cache is not parsed again (a text read anew from KV is).
    static PARSED: RefCell<TtlCache<Parsed>> = RefCell::new(TtlCache::new(CACHE_CAPACITY));
}

/// How many reads this isolate has answered from its cache (see `HITS`).
pub fn hits() -> u64 {
    HITS.with(Cell::get)
}

/// How a read treats the isolate cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Read {
    /// A cached value if there is one.
    Cached,
    /// KV itself, and the cache refreshed with what it says (a check made again off the
    /// request's path, which must not rest on what the isolate read earlier).
    Fresh,
}

pub async fn get_text(env: &Env, key: &str, now_ms: u64) -> Result<Option<Rc<str>>, ApiError> {
    get_text_read(env, key, now_ms, Read::Cached).await
}

pub async fn get_text_read(
    env: &Env,
    key: &str,
    now_ms: u64,
    read: Read,
) -> Result<Option<Rc<str>>, ApiError> {
    // Nothing is stored under a key KV cannot hold: a request value that made one (an overlong
    // `iss`, say) finds nothing, and its endpoint answers as for any unknown value.
    if key.len() > MAX_KEY_BYTES {
        return Ok(None);
    }
    if read == Read::Cached {
        if let Some(hit) = CACHE.with(|c| c.borrow_mut().get(key, now_ms).cloned()) {
            HITS.with(|h| h.set(h.get().wrapping_add(1)));
            return Ok(hit);
        }
    }
    let kv = env
        .kv(config::PARTNERS_KV)
        .map_err(|e| ApiError::unavailable(format!("kv binding: {e}")))?;
    let before = FORGOTTEN.with(Cell::get);
    let value: Option<Rc<str>> = crate::edge::rt::objects::kv_op("get", key, kv.get(key).text())
        .await?
        .map(Rc::from);
    let ttl = config::gate_cache_ttl_ms(env);
    if FORGOTTEN.with(Cell::get) == before {
        CACHE.with(|c| {
            c.borrow_mut()
                .insert(key.to_owned(), value.clone(), now_ms, ttl)
        });
    }
    Ok(value)
}

/// Drops `key` from this isolate's cache, so the next read asks KV: for the isolate that just
/// caused a change, which should not wait out its own cache.
pub fn forget(key: &str) {
    FORGOTTEN.with(|g| g.set(g.get().wrapping_add(1)));
    CACHE.with(|c| c.borrow_mut().remove(key));
    PARSED.with(|c| c.borrow_mut().remove(key));
}

/// A published record. A record that does not parse is a 503 (never treated as absent).
pub async fn get_json<T: DeserializeOwned + Clone + 'static>(
    env: &Env,
    key: &str,
    now_ms: u64,
) -> Result<Option<T>, ApiError> {
    get_json_read(env, key, now_ms, Read::Cached).await
}

/// [`get_json`], reading as `read` says.
pub async fn get_json_read<T: DeserializeOwned + Clone + 'static>(
    env: &Env,
    key: &str,
    now_ms: u64,
    read: Read,
) -> Result<Option<T>, ApiError> {
    let Some(text) = get_text_read(env, key, now_ms, read).await? else {
        return Ok(None);
    };
    let parsed = PARSED.with(|c| {
        c.borrow_mut()
            .get(key, now_ms)
            .filter(|(from, _)| Rc::ptr_eq(from, &text))
            .and_then(|(_, value)| value.downcast_ref::<T>().cloned())
    });
    if let Some(value) = parsed {
        return Ok(Some(value));
    }
    let value: T = serde_json::from_str(&text)
        .map_err(|e| ApiError::unavailable(format!("corrupt record {key}: {e}")))?;
    let ttl = config::gate_cache_ttl_ms(env);
    let kept: Rc<dyn Any> = Rc::new(value.clone());
    PARSED.with(|c| {
        c.borrow_mut()
            .insert(key.to_owned(), (text, kept), now_ms, ttl)
    });
    Ok(Some(value))
}
