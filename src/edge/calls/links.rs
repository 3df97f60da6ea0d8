//! Calls to the `LinkStore` objects (one per partner and subject salt: `links:{id}[:{salt}]`).

use crate::edge::rt::{config, objects};
use crate::protocol::error::ApiError;
use crate::protocol::partner::PartnerId;
use crate::store::links::{object_name, LinkCommand};
use crate::store::Command;
use worker::Env;

/// Sends `cmd` to the link store of `partner` with subject salt `salt`
/// (`Partner::subject_salt`); a command that is safe to run twice (a `Confirm` names its
/// attempt) is sent again when the exchange fails.
pub async fn call<C: Command<Kind = LinkCommand>>(
    env: &Env,
    partner: &PartnerId,
    salt: Option<&str>,
    cmd: C,
) -> std::result::Result<C::Reply, ApiError> {
    objects::call_command(env, config::LINKS_DO, &object_name(partner, salt), cmd).await
}

/// The subject salt of `partner` as its record says now, which names its link store. A partner
/// that is gone has none: its removal ends its links (`end_partner`); unlinking then still
/// forgets the link on the user's side.
pub async fn salt_of(
    env: &Env,
    partner: &PartnerId,
    now_ms: u64,
) -> std::result::Result<Option<String>, ApiError> {
    let key = crate::protocol::partner::keys::partner(partner);
    let record: Option<crate::protocol::partner::Partner> =
        crate::edge::rt::kvcache::get_json(env, &key, now_ms).await?;
    Ok(record.and_then(|p| p.subject_salt))
}
