//! Calls to the `LinkStore` shards (`links:v2:{id}:{salt}:{region}:{n}`: a partner's links in
//! hash shards of each region, placed in that region), and to the one store per partner of the
//! layout before issue 13 (`links:{id}[:{salt}]`), asked only while `LINKS_LEGACY` is set.

use crate::edge::rt::objects::{self, Placement};
use crate::edge::rt::{config, kvcache};
use crate::protocol::error::ApiError;
use crate::protocol::partner::PartnerId;
use crate::store::links::{legacy_name, LinkCommand, Place};
use crate::store::Command;
use worker::Env;

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
        kvcache::get_json(env, &key, now_ms).await?;
    Ok(record.and_then(|p| p.subject_salt))
}

/// A store a link may be in: a shard, or the partner's store of the earlier layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    Shard(Place),
    Legacy,
}

/// Sends `cmd` to `store` of `partner` (with subject salt `salt`, `Partner::subject_salt`): a
/// shard, created in its place's region, or the partner's store of the layout before issue 13.
/// A command that is safe to run twice (a `Confirm` names its attempt) is sent again when the
/// exchange fails.
pub async fn send<C: Command<Kind = LinkCommand>>(
    env: &Env,
    partner: &PartnerId,
    salt: Option<&str>,
    store: Store,
    cmd: C,
) -> std::result::Result<C::Reply, ApiError> {
    let (name, placement) = match store {
        Store::Shard(place) => (place.name(partner, salt), Placement::of(place.home)),
        Store::Legacy => (legacy_name(partner, salt), Placement::GLOBAL),
    };
    objects::call_command_in(env, config::LINKS_DO, &name, placement, cmd).await
}
