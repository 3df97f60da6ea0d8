//! The move of a partner's links from its one store of the layout before issue 13
//! (`links:{id}[:{salt}]`) into the shards of its users' regions. Batch by batch: each link is
//! imported into its shard, the user's object notes which partner account it is to (so
//! unlinking finds the shard), and only then is it forgotten in the old store. A batch that
//! fails half way is simply moved again: importing is idempotent, and a partner account linked
//! anew since the upgrade keeps that link (the old one is skipped, and forgotten).

use crate::edge::calls::{links, users};
use crate::edge::flows::revoke;
use crate::protocol::error::{ApiError, ErrorCode};
use crate::protocol::partner::{Partner, PartnerId};
use crate::protocol::region::Home;
use crate::protocol::user::{LinkEntry, Username};
use crate::store::links::{Export, Import, Moved, Place, MOVE_BATCH};
use crate::store::users::{EndLinkSessions, ForgetLink, Links, NoteLinkAccount};
use worker::Env;

pub struct MovedBatch {
    pub moved: u32,
    pub skipped: u32,
    /// Nothing is left in the old store.
    pub done: bool,
}

/// Moves up to [`MOVE_BATCH`] links of `partner`.
pub async fn move_batch(
    env: &Env,
    partner: &PartnerId,
    now_ms: u64,
) -> Result<MovedBatch, ApiError> {
    let key = crate::protocol::partner::keys::partner(partner);
    crate::edge::rt::kvcache::forget(&key);
    let record: Partner = crate::edge::rt::kvcache::get_json(env, &key, now_ms)
        .await?
        .ok_or_else(|| ApiError::not_found("partner"))?;
    let salt = record.subject_salt.as_deref();
    let cmd = Export {
        limit: MOVE_BATCH,
        now: now_ms / 1000,
    };
    let batch = links::send(env, partner, salt, links::Store::Legacy, cmd).await?;
    let mut done = MovedBatch {
        moved: 0,
        skipped: 0,
        done: batch.links.len() < MOVE_BATCH as usize,
    };
    let mut forget = Vec::with_capacity(batch.links.len());
    for link in batch.links {
        let home = users::home_fresh(env, &link.username, now_ms).await?;
        let place = Place::of(home, &link.partner_sub);
        let partner_sub = link.partner_sub.clone();
        let username = link.username.clone();
        let grants: Vec<String> = link.grants.iter().map(|(id, _)| id.clone()).collect();
        // A user removed since: the link goes with the old store (a row in a shard would hold
        // the account for nobody), and what came through it is revoked.
        let Some(record) = links_of(env, &username, home).await? else {
            revoke::revoke_all(env, &grants).await?;
            done.skipped += 1;
            forget.push(partner_sub);
            continue;
        };
        // The old store's used login assertions go along, so none is used again in the shard.
        let import = Import {
            links: vec![link],
            used: batch.used.clone(),
        };
        let imported = links::send(env, partner, salt, links::Store::Shard(place), import).await?;
        if imported.imported > 0 {
            let note = NoteLinkAccount {
                partner_id: partner.clone(),
                partner_sub: partner_sub.clone(),
            };
            users::call(env, &username, home, note).await?;
            done.moved += 1;
        } else {
            // Linked otherwise since the upgrade: the old link ends here, with what came
            // through it (its grants, and its sessions and record, unless the user's record is
            // of the new link).
            revoke::revoke_all(env, &grants).await?;
            end_old_link(env, partner, &username, home, &record).await?;
            done.skipped += 1;
        }
        forget.push(partner_sub);
    }
    if !forget.is_empty() {
        let moved = Moved {
            partner_subs: forget,
        };
        links::send(env, partner, salt, links::Store::Legacy, moved).await?;
    }
    Ok(done)
}

/// The links `username` (in `home`) records; `None`: the user no longer exists.
async fn links_of(
    env: &Env,
    username: &Username,
    home: Home,
) -> Result<Option<Vec<LinkEntry>>, ApiError> {
    let cmd = Links {
        session_hash: None,
        now: 0,
    };
    match users::call(env, username, home, cmd).await {
        Ok(links) => Ok(links.map(|l| l.links)),
        Err(e) if e.code == ErrorCode::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Ends a moved link that a newer one replaced, on the user's side: only if the user's record of
/// their link with `partner` is the old one (it names no partner account).
async fn end_old_link(
    env: &Env,
    partner: &PartnerId,
    username: &Username,
    home: Home,
    links: &[LinkEntry],
) -> Result<(), ApiError> {
    let old = links
        .iter()
        .any(|l| l.partner_id == *partner && l.partner_sub.is_none());
    if old {
        let end = EndLinkSessions {
            partner_id: partner.clone(),
        };
        users::call(env, username, home, end).await?;
        let forget = ForgetLink {
            partner_id: partner.clone(),
        };
        users::call(env, username, home, forget).await?;
    }
    Ok(())
}
