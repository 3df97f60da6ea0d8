//! Which limits a call counts against: the client's and the partner's buckets.

use crate::edge::calls::limits::admit;
use crate::protocol::error::ApiError;
use crate::protocol::partner::PartnerId;
use crate::protocol::ratelimit::{RateLimits, MINUTE_MS};
use worker::Env;

/// Which limits a call counts against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bucket {
    Api,
    Token,
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
    admit(
        env,
        &format!("{name}:client:{client_id}"),
        "this client's limit",
        per_client,
        MINUTE_MS,
        now_ms,
    )
    .await?;
    admit(
        env,
        &format!("{name}:partner:{partner}"),
        "this partner's limit",
        per_partner,
        MINUTE_MS,
        now_ms,
    )
    .await
}
