//! Reading the Worker's vars and secrets, with their documented defaults.

use worker::Env;

use crate::protocol::discovery::Issuer;
use crate::protocol::error::ApiError;

/// Default lifetime of the in-isolate gate cache, in seconds.
pub const DEFAULT_GATE_CACHE_TTL_S: u64 = 30;
/// Upper bound, so a typo cannot keep a removed partner admitted for long.
pub const MAX_GATE_CACHE_TTL_S: u64 = 300;

pub const PARTNERS_KV: &str = "PARTNERS";
pub const REGISTRY_DO: &str = "REGISTRY";
pub const USERS_DO: &str = "USERS";
pub const GRANTS_DO: &str = "GRANTS";
pub const REPLAY_DO: &str = "REPLAY";
pub const LINKS_DO: &str = "LINKS";
pub const AUDIT_DO: &str = "AUDIT";

pub fn gate_cache_ttl_ms(env: &Env) -> u64 {
    env.var("GATE_CACHE_TTL_SECONDS")
        .ok()
        .and_then(|v| v.to_string().trim().parse::<u64>().ok())
        .unwrap_or(DEFAULT_GATE_CACHE_TTL_S)
        .min(MAX_GATE_CACHE_TTL_S)
        * 1000
}

pub fn admin_token(env: &Env) -> Option<String> {
    env.secret("ADMIN_TOKEN").ok().map(|s| s.to_string())
}

/// The `ISSUER` var: every token's `iss` and the base of every endpoint URL. Unset or invalid,
/// everything that issues or checks tokens answers 503.
pub fn issuer(env: &Env) -> Result<Issuer, ApiError> {
    env.var("ISSUER")
        .ok()
        .and_then(|v| Issuer::parse(&v.to_string()))
        .ok_or_else(|| {
            ApiError::unavailable("ISSUER is not set to an https URL (or a loopback http URL)")
        })
}
