//! Unlinking a user from a partner, and ending all of a removed partner's links: the link's
//! shard forgets the link, the user object forgets it and ends the sessions automatic login
//! started, and the grants issued through it are revoked.

use crate::edge::calls::links::{self, Store};
use crate::edge::flows::revoke;
use crate::edge::rt::config;
use crate::protocol::error::ApiError;
use crate::protocol::partner::PartnerId;
use crate::protocol::region::{Home, REGIONS};
use crate::protocol::user::Username;
use crate::store::links::{
    ForgetGrants, Place, Retire, Retired, Unlink, LINK_SHARDS, RETIRE_BATCH,
};
use futures_util::future::join_all;
use worker::Env;

/// Ends a link: the link's record first (automatic login stops at once), then every grant
/// issued through it, then the user's own list. `place` is the link's shard (from the user's
/// record of the link, or the link code); `None` for a link recorded before issue 13 that names
/// no partner account: the partner's store of the earlier layout has it. While `LINKS_LEGACY`
/// is set that store is unlinked as well, whatever `place` says.
pub async fn unlink(
    env: &Env,
    partner: &PartnerId,
    salt: Option<&str>,
    username: &Username,
    home: Home,
    place: Option<Place>,
    now: u64,
) -> std::result::Result<bool, ApiError> {
    let mut stores: Vec<Store> = place.map(Store::Shard).into_iter().collect();
    if place.is_none() || config::links_legacy(env)? {
        stores.push(Store::Legacy);
    }
    let mut sessions_ended = false;
    for store in stores {
        // Batch by batch: each revoked, then forgotten, so a failure leaves the rest for a
        // retry. Only the first call removes the link; the sessions it started end right after.
        let mut first = true;
        loop {
            let cmd = Unlink {
                username: username.clone(),
                now,
                remove: first,
            };
            let grant_ids = links::send(env, partner, salt, store, cmd).await?;
            if !sessions_ended {
                let end = crate::store::users::EndLinkSessions {
                    partner_id: partner.clone(),
                };
                crate::edge::calls::users::call(env, username, home, end).await?;
                sessions_ended = true;
            }
            first = false;
            if grant_ids.is_empty() {
                break;
            }
            revoke::revoke_all(env, &grant_ids).await?;
            let forget = ForgetGrants {
                username: username.clone(),
                grant_ids,
            };
            links::send(env, partner, salt, store, forget).await?;
        }
    }
    let forget = crate::store::users::ForgetLink {
        partner_id: partner.clone(),
    };
    crate::edge::calls::users::call(env, username, home, forget).await?;
    Ok(true)
}

/// Users one removal request unlinks at most, so the work of one request stays bounded.
const RETIRE_USERS_PER_REQUEST: usize = 32;

/// Every store a partner's links may be in: each shard of each region (and of users created
/// before regions), and while `LINKS_LEGACY` is set its store of the earlier layout.
fn every_store(env: &Env) -> Result<Vec<Store>, ApiError> {
    let homes = REGIONS.into_iter().map(Some).chain([None]);
    let mut stores: Vec<Store> = homes
        .flat_map(|home| (0..LINK_SHARDS).map(move |shard| Store::Shard(Place { home, shard })))
        .collect();
    if config::links_legacy(env)? {
        stores.push(Store::Legacy);
    }
    Ok(stores)
}

/// Ends what a removed partner held: every store of its links is retired first (no automatic
/// login, no jwt-bearer grant, no new link from then on), then every link is ended by
/// unlinking (the sessions it started, the grants issued through it, revoked and published, and
/// the user's own record of it). `Ok(false)`: more is left than one request does; the same
/// removal again (it is remembered by the registry until finished) goes on where this one
/// stopped, as does one that failed half way.
pub async fn end_partner(
    env: &Env,
    partner: &PartnerId,
    salt: Option<&str>,
    now: u64,
) -> std::result::Result<bool, ApiError> {
    let stores = every_store(env)?;
    let answers = join_all(
        stores
            .iter()
            .map(|store| links::send(env, partner, salt, *store, Retire {})),
    )
    .await;
    let mut budget = RETIRE_USERS_PER_REQUEST;
    let mut finished = true;
    for (store, answer) in stores.iter().zip(answers) {
        let usernames = answer?;
        // A full batch may hide more behind it.
        if usernames.len() >= RETIRE_BATCH as usize {
            finished = false;
        }
        for username in usernames {
            if budget == 0 {
                return Ok(false);
            }
            budget -= 1;
            let (home, place) = match store {
                Store::Shard(place) => (place.home, Some(*place)),
                // The earlier layout does not record where its users live: the directory does.
                Store::Legacy => {
                    let home =
                        crate::edge::calls::users::home_of(env, &username, now * 1000).await?;
                    (home, None)
                }
            };
            unlink(env, partner, salt, &username, home, place, now).await?;
            links::send(env, partner, salt, *store, Retired { username }).await?;
        }
    }
    Ok(finished)
}
