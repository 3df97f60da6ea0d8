//! Unlinking a user from a partner, and ending all of a removed partner's links: the link store
//! forgets the links, the user objects forget them and end the sessions automatic login
//! started, and the grants issued through them are revoked.

use crate::edge::calls::links;
use crate::edge::flows::revoke;
use crate::protocol::error::ApiError;
use crate::protocol::partner::PartnerId;
use crate::protocol::region::Home;
use crate::protocol::user::Username;
use crate::store::links::{ForgetGrants, Retire, Retired, Unlink};
use worker::Env;

/// Ends a link: the partner's record first (automatic login stops at once), then every grant
/// issued through it, then the user's own list.
pub async fn unlink(
    env: &Env,
    partner: &PartnerId,
    salt: Option<&str>,
    username: &Username,
    home: Home,
    now: u64,
) -> std::result::Result<bool, ApiError> {
    // Batch by batch: each revoked, then forgotten, so a failure leaves the rest for a retry.
    // Only the first call removes the link; the sessions it started end right after.
    let mut first = true;
    loop {
        let cmd = Unlink {
            username: username.clone(),
            now,
            remove: first,
        };
        let grant_ids = links::call(env, partner, salt, cmd).await?;
        if first {
            let end = crate::store::users::EndLinkSessions {
                partner_id: partner.clone(),
            };
            crate::edge::calls::users::call(env, username, home, end).await?;
            first = false;
        }
        if grant_ids.is_empty() {
            break;
        }
        revoke::revoke_all(env, &grant_ids).await?;
        let forget = ForgetGrants {
            username: username.clone(),
            grant_ids,
        };
        links::call(env, partner, salt, forget).await?;
    }
    let forget = crate::store::users::ForgetLink {
        partner_id: partner.clone(),
    };
    crate::edge::calls::users::call(env, username, home, forget).await?;
    Ok(true)
}

/// Rounds of `Retire` one removal request works through: at most this many times
/// `RETIRE_BATCH` users are unlinked per request, so the work of one request stays bounded.
const RETIRE_ROUNDS: u32 = 2;

/// Ends what a removed partner held: its link store is retired first (no automatic login, no
/// jwt-bearer grant, no new link from then on), then every link is ended by unlinking (the
/// sessions it started, the grants issued through it, revoked and published, and the user's own
/// record of it). `Ok(false)`: more is left than one request does; the same removal again (it
/// is remembered by the registry until finished) goes on where this one stopped, as does one
/// that failed half way.
pub async fn end_partner(
    env: &Env,
    partner: &PartnerId,
    salt: Option<&str>,
    now: u64,
) -> std::result::Result<bool, ApiError> {
    for round in 0..=RETIRE_ROUNDS {
        let usernames = links::call(env, partner, salt, Retire {}).await?;
        if usernames.is_empty() {
            return Ok(true);
        }
        if round == RETIRE_ROUNDS {
            break;
        }
        for username in usernames {
            // A link store does not know where its users live (yet): the directory does.
            let home = crate::edge::calls::users::home_of(env, &username, now * 1000).await?;
            unlink(env, partner, salt, &username, home, now).await?;
            links::call(env, partner, salt, Retired { username }).await?;
        }
    }
    Ok(false)
}
