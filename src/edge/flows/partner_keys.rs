//! Partners' and clients' public keys at the edge: an inline JWK Set, or one fetched from the
//! partner's (or the client's) `jwks_uri`, always on one of the partner's origins.
//!
//! A fetch goes where the partner registered and nowhere else, bounded (`rt::outbound`: no
//! redirects, a time-out, a 64 KiB cap). A good document is cached for five
//! minutes and refetched on an unknown `kid` at most once per 30 s. Concurrent requests that need
//! the same document wait for one fetch, and a failure is remembered with a back-off
//! (`protocol::backoff`), so forged tokens naming a partner whose endpoint fails cost that
//! endpoint one fetch per back-off period, not one per token.
//!
//! The partner's endpoint failing is the partner's refusal, not our outage: it is answered like
//! any other assertion we cannot verify (`access_denied`: a 403 page at `/link` and
//! `/login/auto`, `invalid_grant` at the token endpoint), with the cause in the log line. A 503
//! stays for our own failures (a stored key set that does not parse).

use crate::edge::rt::outbound;
use crate::protocol::assertion::{parse_public_jwks, PublicKey};
use crate::protocol::backoff::Backoff;
use crate::protocol::client::ClientRecord;
use crate::protocol::error::{ApiError, ErrorCode};
use crate::protocol::origin::Origin;
use crate::protocol::partner::Partner;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;
use worker::Delay;

use crate::edge::rt::outbound::FETCH_TIMEOUT_MS;

pub const CACHE_MS: u64 = 5 * 60 * 1000;

pub const REFETCH_MIN_MS: u64 = 30 * 1000;

/// How often a request waiting for another's fetch of the same document looks again. Requests
/// never await each other's promises (the runtime ties I/O to the request that started it);
/// they look at the isolate's record instead.
const WAIT_STEP_MS: u64 = 20;

/// A fetch marked in flight for longer than its time-out was abandoned (its request went away):
/// the next request fetches.
const IN_FLIGHT_MAX_MS: u64 = FETCH_TIMEOUT_MS + 500;

/// A partner's public keys, parsed once per document.
type Keys = Rc<[PublicKey]>;

#[derive(Default)]
struct Endpoint {
    /// The last good document and when it was fetched.
    cached: Option<(Keys, u64)>,
    backoff: Backoff,
    /// When the fetch under way (if any) started.
    fetching_since: Option<u64>,
}

thread_local! {
    static ENDPOINTS: RefCell<HashMap<String, Endpoint>> = RefCell::new(HashMap::new());
}

/// Our stored key set is broken: our failure.
fn unavailable(why: String) -> ApiError {
    ApiError::unavailable(format!("partner keys: {why}"))
}

/// The partner's endpoint failed (now, or recently enough to be in its back-off).
fn endpoint_failed(why: &str) -> ApiError {
    ApiError::new(
        ErrorCode::AccessDenied,
        "The partner's keys could not be fetched, so its token cannot be verified. Try again in a few minutes.",
    )
    .with_cause(format!("partner keys: {why}"))
}

async fn read_jwks(uri: &str) -> Result<Keys, String> {
    let jwks = outbound::fetch_json(uri, "application/jwk-set+json, application/json")
        .await
        .map_err(|e| format!("jwks_uri: {e}"))?;
    // Only a usable document counts as a success (and resets the back-off); it is kept parsed.
    let keys = parse_public_jwks(&jwks).map_err(|e| format!("jwks_uri document: {e}"))?;
    Ok(Rc::from(keys))
}

/// Fetches `uri` (within `outbound`'s time-out) and records the outcome for the isolate.
async fn fetch_and_record(uri: &str, now_ms: u64) -> Result<Keys, String> {
    let result = read_jwks(uri).await;
    ENDPOINTS.with(|e| {
        let mut endpoints = e.borrow_mut();
        let entry = endpoints.entry(uri.to_owned()).or_default();
        entry.fetching_since = None;
        match &result {
            Ok(jwks) => {
                entry.cached = Some((jwks.clone(), now_ms));
                entry.backoff = Backoff::default();
            }
            Err(_) => entry.backoff = entry.backoff.failed(now_ms),
        }
    });
    result
}

/// What one request does next, decided from the isolate's record of the endpoint.
enum Plan {
    Use(Keys),
    /// No keys, and the endpoint is in its back-off: refuse without fetching.
    Refuse(String),
    /// Another request is fetching the document: look again shortly.
    Wait,
    /// Fetch it (marked in flight); `fallback` is the fresh document we hold, if any.
    Fetch {
        fallback: Option<Keys>,
    },
}

fn plan(uri: &str, kid: Option<&str>, now_ms: u64) -> Plan {
    ENDPOINTS.with(|e| {
        let mut endpoints = e.borrow_mut();
        let entry = endpoints.entry(uri.to_owned()).or_default();
        let fresh = entry
            .cached
            .as_ref()
            .filter(|(_, at)| now_ms.saturating_sub(*at) < CACHE_MS)
            .map(|(keys, at)| (keys.clone(), *at));
        if let Some((keys, fetched_at)) = &fresh {
            let knows_kid =
                kid.is_none_or(|k| keys.iter().any(|key| key.kid.as_deref() == Some(k)));
            let may_refetch = now_ms.saturating_sub(*fetched_at) >= REFETCH_MIN_MS;
            if knows_kid || !may_refetch {
                return Plan::Use(keys.clone());
            }
        }
        if entry
            .fetching_since
            .is_some_and(|t| now_ms.saturating_sub(t) < IN_FLIGHT_MAX_MS)
        {
            return Plan::Wait;
        }
        let fallback = fresh.map(|(jwks, _)| jwks);
        if entry.backoff.waiting(now_ms) {
            // Keys we still hold answer (an unknown kid is then simply unknown); without
            // them the request is refused without touching the endpoint.
            return match fallback {
                Some(jwks) => Plan::Use(jwks),
                None => Plan::Refuse(format!(
                    "jwks_uri failed {} time(s) in a row; not fetched during its back-off",
                    entry.backoff.failures()
                )),
            };
        }
        entry.fetching_since = Some(now_ms);
        Plan::Fetch { fallback }
    })
}

/// The partner's keys, for a token whose header names `kid`.
pub async fn keys_for(partner: &Partner, kid: Option<&str>, now_ms: u64) -> Result<Keys, ApiError> {
    if let Some(inline) = &partner.jwks {
        return parse_public_jwks(inline).map(Rc::from).map_err(unavailable);
    }
    let Some(uri) = &partner.jwks_uri else {
        return Ok(Rc::from(Vec::new()));
    };
    fetched(uri, kid, now_ms)
        .await
        .map_err(|why| endpoint_failed(&why))
}

/// The keys a client of `partner` registered, for an assertion whose header names `kid`: the
/// inline set, or its `jwks_uri`'s document while that is still on one of the partner's
/// origins (an origin the partner gave up may belong to someone else by now). A failure is the
/// client's (`invalid_client`), the cause in the log line.
pub async fn client_keys(
    client: &ClientRecord,
    partner: &Partner,
    kid: Option<&str>,
    now_ms: u64,
) -> Result<Keys, ApiError> {
    let refused = |why: &str| ApiError::new(ErrorCode::InvalidClient, why);
    if let Some(inline) = &client.jwks {
        return parse_public_jwks(inline)
            .map(Rc::from)
            .map_err(|_| refused("the client's registered keys are unusable"));
    }
    let Some(uri) = &client.jwks_uri else {
        return Err(refused("the client has no registered keys"));
    };
    if !Origin::from_referer(uri).is_some_and(|o| partner.origins.contains(&o)) {
        return Err(refused(
            "the client's jwks_uri is no longer on its partner's origins",
        ));
    }
    fetched(uri, kid, now_ms).await.map_err(|why| {
        refused("the client's keys could not be fetched").with_cause(format!("client keys: {why}"))
    })
}

/// The document at `uri` (cached, fetched again on an unknown `kid`, one fetch at a time, with
/// a back-off after failures).
async fn fetched(uri: &str, kid: Option<&str>, now_ms: u64) -> Result<Keys, String> {
    // The clock is read once per request; time spent waiting is counted here.
    let mut waited_ms = 0;
    let keys = loop {
        match plan(uri, kid, now_ms + waited_ms) {
            Plan::Use(keys) => break keys,
            Plan::Refuse(why) => return Err(why),
            Plan::Wait => {
                Delay::from(Duration::from_millis(WAIT_STEP_MS)).await;
                waited_ms += WAIT_STEP_MS;
            }
            Plan::Fetch { fallback } => {
                match (fetch_and_record(uri, now_ms + waited_ms).await, fallback) {
                    (Ok(keys), _) | (Err(_), Some(keys)) => break keys,
                    (Err(why), None) => return Err(why),
                }
            }
        }
    };
    Ok(keys)
}
