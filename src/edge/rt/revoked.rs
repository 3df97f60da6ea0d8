//! Revocation markers in KV (`revoked:{id}`): what the gateway reads to refuse a revoked grant's
//! access tokens before they expire.

use crate::edge::rt::config;
use crate::protocol::api::revoked_key;
use crate::protocol::error::ApiError;
use crate::protocol::tokens::ACCESS_TOKEN_TTL_S;
use worker::Env;

/// How long a revocation stays published: past the last access token it could concern.
const REVOCATION_PUBLISHED_S: u64 = ACCESS_TOKEN_TTL_S + 60;

/// Tells the gateway that a grant (or a client-credentials token, by `jti`) is revoked: a KV
/// entry the gateway reads through its isolate cache, kept while the grant's access tokens can
/// still be valid. A failure is a 503: the caller retries, and revoking again publishes again.
pub async fn publish(env: &Env, id: &str) -> Result<(), ApiError> {
    let key = revoked_key(id);
    let put = env
        .kv(config::PARTNERS_KV)
        .map_err(|e| ApiError::unavailable(format!("kv binding: {e}")))?
        .put(&key, "1")
        .map_err(|e| ApiError::unavailable(format!("kv put: {e}")))?
        .expiration_ttl(REVOCATION_PUBLISHED_S);
    crate::edge::rt::objects::kv_op("put", &key, put.execute()).await
}
