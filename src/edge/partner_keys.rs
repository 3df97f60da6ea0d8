//! Partners' public keys at the edge: an inline JWK Set, or one fetched from the partner's
//! `jwks_uri` (time-out, 64 KiB cap, cached for five minutes, refetched on an unknown `kid` at
//! most once per 30 s per isolate).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use futures_util::future::{select, Either};
use futures_util::StreamExt;
use serde_json::Value;
use worker::{Delay, Fetch, Url};

use crate::protocol::assertion::{parse_public_jwks, PublicKey};
use crate::protocol::error::ApiError;
use crate::protocol::partner::Partner;

pub const FETCH_TIMEOUT: Duration = Duration::from_secs(3);
pub const MAX_JWKS_BYTES: usize = 64 * 1024;
pub const CACHE_MS: u64 = 5 * 60 * 1000;
pub const REFETCH_MIN_MS: u64 = 30 * 1000;

struct Cached {
    jwks: Rc<Value>,
    fetched_at: u64,
}

thread_local! {
    static FETCHED: RefCell<HashMap<String, Cached>> = RefCell::new(HashMap::new());
}

fn unavailable(why: String) -> ApiError {
    ApiError::unavailable(format!("partner keys: {why}"))
}

async fn fetch_jwks(uri: &str) -> Result<Value, ApiError> {
    let url = Url::parse(uri).map_err(|e| unavailable(e.to_string()))?;
    let fetch = Fetch::Url(url);
    let send = Box::pin(fetch.send());
    let timeout = Box::pin(Delay::from(FETCH_TIMEOUT));
    let mut resp = match select(send, timeout).await {
        Either::Left((r, _)) => r.map_err(|e| unavailable(format!("fetch: {e}")))?,
        Either::Right(_) => return Err(unavailable("fetch timed out".into())),
    };
    if resp.status_code() != 200 {
        return Err(unavailable(format!(
            "jwks_uri answered {}",
            resp.status_code()
        )));
    }
    let mut body: Vec<u8> = Vec::new();
    let mut stream = resp.stream().map_err(|e| unavailable(e.to_string()))?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| unavailable(e.to_string()))?;
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(unavailable("jwks_uri document is over 64 KiB".into()));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| unavailable(format!("jwks_uri is not JSON: {e}")))
}

/// The partner's keys, for a token whose header names `kid`.
pub async fn keys_for(
    partner: &Partner,
    kid: Option<&str>,
    now_ms: u64,
) -> Result<Vec<PublicKey>, ApiError> {
    if let Some(inline) = &partner.jwks {
        return parse_public_jwks(inline).map_err(unavailable);
    }
    let Some(uri) = &partner.jwks_uri else {
        return Ok(Vec::new());
    };
    let cached = FETCHED.with(|c| c.borrow().get(uri).map(|e| (e.jwks.clone(), e.fetched_at)));
    if let Some((jwks, fetched_at)) = &cached {
        let fresh = now_ms.saturating_sub(*fetched_at) < CACHE_MS;
        let keys = parse_public_jwks(jwks).map_err(unavailable)?;
        let knows_kid = kid.is_none_or(|k| keys.iter().any(|key| key.kid.as_deref() == Some(k)));
        let may_refetch = now_ms.saturating_sub(*fetched_at) >= REFETCH_MIN_MS;
        if fresh && (knows_kid || !may_refetch) {
            return Ok(keys);
        }
    }
    let jwks = Rc::new(fetch_jwks(uri).await?);
    let keys = parse_public_jwks(&jwks).map_err(unavailable)?;
    FETCHED.with(|c| {
        c.borrow_mut().insert(
            uri.clone(),
            Cached {
                jwks,
                fetched_at: now_ms,
            },
        )
    });
    Ok(keys)
}
