//! Calls to the `ReplayStore` objects: claiming an identifier once (client assertions, partner
//! JWTs), and asking whether one is still unused. The shard of an identifier is chosen here
//! (`replay:v2:{n}` by a hash of signer and key); until `REPLAY_LEGACY_UNTIL` the old per-signer
//! object is asked too, in parallel, so the call still costs one round trip.

use crate::edge::rt::{config, objects};
use crate::protocol::error::ApiError;
use crate::protocol::grant::hash_secret;
use crate::protocol::link::CLOCK_SKEW_S;
use crate::protocol::partner::PartnerId;
use crate::store::replay::{
    asks_legacy, legacy_object_name, object_name, Check, CheckKey, CheckOutcome, ClaimKey,
    ClaimOutcome,
};
use worker::Env;

/// Whether `key` was used for `signer` in the old per-signer object, if the old objects are
/// still to be asked at `now`; `false` without asking once they are not.
async fn used_in_legacy(
    env: &Env,
    legacy_until: Option<u64>,
    signer: &str,
    key: &str,
    now: u64,
) -> std::result::Result<bool, ApiError> {
    if !asks_legacy(legacy_until, now) {
        return Ok(false);
    }
    let cmd = Check {
        key: key.to_owned(),
        now,
    };
    let name = legacy_object_name(signer);
    Ok(objects::call_command(env, config::REPLAY_DO, &name, cmd).await? == CheckOutcome::Used)
}

/// Claims `key` (already hashed or otherwise safe to store) for `signer` until `expires_at`.
/// The shard alone decides races: of many parallel claims exactly one is `true`. A key used in
/// the old layout is refused as well (the shard's claim is then spent on a replay, harmlessly).
pub async fn claim(
    env: &Env,
    signer: &str,
    key: &str,
    expires_at: u64,
    now: u64,
) -> std::result::Result<bool, ApiError> {
    let legacy_until = config::replay_legacy_until(env)?;
    let cmd = ClaimKey {
        signer: signer.to_owned(),
        key: key.to_owned(),
        expires_at,
        now,
    };
    let shard = object_name(signer, key);
    let (claimed, legacy) = futures_util::future::join(
        objects::call_command(env, config::REPLAY_DO, &shard, cmd),
        used_in_legacy(env, legacy_until, signer, key, now),
    )
    .await;
    Ok(claimed? == ClaimOutcome::Claimed && !legacy?)
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
    let legacy_until = config::replay_legacy_until(env)?;
    let cmd = CheckKey {
        signer: signer.to_owned(),
        key: key.to_owned(),
        now,
    };
    let shard = object_name(signer, key);
    let (checked, legacy) = futures_util::future::join(
        objects::call_command(env, config::REPLAY_DO, &shard, cmd),
        used_in_legacy(env, legacy_until, signer, key, now),
    )
    .await;
    Ok(checked? == CheckOutcome::Unused && !legacy?)
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
