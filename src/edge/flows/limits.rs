//! Which limits a call counts against: the client's and the partner's buckets.

use crate::edge::calls::limits::{acquire, give_back, Admission};
use crate::edge::rt::objects::Placement;
use crate::protocol::error::ApiError;
use crate::protocol::partner::PartnerId;
use crate::protocol::ratelimit::{limited, RateLimits, MINUTE_MS};
use futures_util::future::join;

/// Clients' and partners' limits name nobody: one namespace, no hint.
const GLOBAL: Placement = Placement::GLOBAL;
use worker::Env;

/// Which limits a call counts against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bucket {
    Api,
    Token,
}

/// Admits one registration call under `key` (`partner:{id}` or `client:{id}`), within
/// `config::registrations_per_minute`, so that no partner, and no one who knows a client's id,
/// can keep the registry object busy.
pub async fn admit_registration(env: &Env, key: &str, now_ms: u64) -> Result<(), ApiError> {
    let key = format!("register:{key}");
    let limit = crate::edge::rt::config::registrations_per_minute(env);
    match acquire(env, &key, limit, MINUTE_MS, GLOBAL, now_ms).await? {
        Admission::Admitted(_) => Ok(()),
        Admission::Refused(window) => Err(limited("the registration limit", window, now_ms)),
    }
}

/// Admits one call of `client_id` (of `partner`) against the client's and the partner's
/// per-minute limits for `bucket`.
pub async fn admit_client(
    env: &Env,
    bucket: Bucket,
    partner: &PartnerId,
    client_id: &str,
    limits: &RateLimits,
    now_ms: u64,
) -> std::result::Result<(), ApiError> {
    let (name, per_client, per_partner) = match bucket {
        Bucket::Api => (
            "api",
            limits.api_per_client_per_minute,
            limits.api_per_minute,
        ),
        Bucket::Token => (
            "token",
            limits.token_per_client_per_minute,
            limits.token_per_minute,
        ),
    };
    // Both limits at once: a call waits on at most one round trip. A slot taken under one
    // limit when the other refuses goes back into this isolate's lease (it did not count).
    let client_key = format!("{name}:client:{client_id}");
    let partner_key = format!("{name}:partner:{partner}");
    let (client, partner) = join(
        acquire(env, &client_key, per_client, MINUTE_MS, GLOBAL, now_ms),
        acquire(env, &partner_key, per_partner, MINUTE_MS, GLOBAL, now_ms),
    )
    .await;
    match (client?, partner?) {
        (Admission::Admitted(_), Admission::Admitted(_)) => Ok(()),
        (Admission::Refused(window), other) => {
            if let Admission::Admitted(slot) = other {
                give_back(&slot);
            }
            Err(limited("this client's limit", window, now_ms))
        }
        (Admission::Admitted(slot), Admission::Refused(window)) => {
            give_back(&slot);
            Err(limited("this partner's limit", window, now_ms))
        }
    }
}
