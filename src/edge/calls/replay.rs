//! Calls to the `ReplayStore` objects: claiming an identifier once (client assertions, partner
//! JWTs), and asking whether one is still unused.

use crate::edge::rt::{config, objects};
use crate::protocol::error::ApiError;
use crate::protocol::grant::hash_secret;
use crate::protocol::link::CLOCK_SKEW_S;
use crate::protocol::partner::PartnerId;
use crate::store::replay::{object_name, Check, CheckOutcome, Claim, ClaimOutcome, ReplayCommand};
use crate::store::Command;
use worker::Env;

/// Sends `cmd` to the replay store of `signer` (`replay:{signer}`).
pub async fn call<C: Command<Kind = ReplayCommand>>(
    env: &Env,
    signer: &str,
    cmd: C,
) -> std::result::Result<C::Reply, ApiError> {
    objects::call_command(env, config::REPLAY_DO, &object_name(signer), cmd).await
}

/// Claims `key` (already hashed or otherwise safe to store) for `signer` until `expires_at`.
pub async fn claim(
    env: &Env,
    signer: &str,
    key: &str,
    expires_at: u64,
    now: u64,
) -> std::result::Result<bool, ApiError> {
    let cmd = Claim {
        key: key.to_owned(),
        expires_at,
        now,
    };
    Ok(call(env, signer, cmd).await? == ClaimOutcome::Claimed)
}

/// The signer under which a partner's JWTs are claimed (all three kinds share it: a `jti` is
/// used once across them).
pub fn partner_scope(partner: &PartnerId) -> String {
    format!("partner:{partner}")
}

/// Claims a partner JWT's `jti` (stored hashed) until its `exp` plus the clock skew.
pub async fn claim_partner_jti(
    env: &Env,
    partner: &PartnerId,
    jti: &str,
    exp: u64,
    now: u64,
) -> std::result::Result<bool, ApiError> {
    let key = hash_secret(jti);
    claim(env, &partner_scope(partner), &key, exp + CLOCK_SKEW_S, now).await
}

/// Whether `key` is still unused for `signer`, without using it: a page that only asks the
/// person refuses a used identifier at once; the claim that counts comes later.
pub async fn unused(
    env: &Env,
    signer: &str,
    key: &str,
    now: u64,
) -> std::result::Result<bool, ApiError> {
    let cmd = Check {
        key: key.to_owned(),
        now,
    };
    Ok(call(env, signer, cmd).await? == CheckOutcome::Unused)
}

/// Whether a partner JWT's `jti` is still unused, without using it.
pub async fn partner_jti_unused(
    env: &Env,
    partner: &PartnerId,
    jti: &str,
    now: u64,
) -> std::result::Result<bool, ApiError> {
    unused(env, &partner_scope(partner), &hash_secret(jti), now).await
}
