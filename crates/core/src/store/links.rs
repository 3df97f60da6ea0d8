//! The link store's command protocol. One object per partner (named by `object_name`),
//! SQLite-backed: one partner account links to one platform user and, per partner, a platform
//! user has one linked account; both hold by unique keys in one object. A link the user agreed
//! to waits there, under the hash of its link code, until the partner confirms it.

use serde::{Deserialize, Serialize};

use crate::protocol::error::ApiError;
use crate::protocol::link::PendingLink;
use crate::protocol::partner::PartnerId;
use crate::protocol::user::Username;

/// `links:{partner_id}:{subject_salt}`: a partner created again under a removed one's id has a
/// new salt, so a store of its own that holds none of the old links. A partner without a salt
/// (created before salts existed) keeps its store, `links:{partner_id}`.
pub fn object_name(partner: &PartnerId, salt: Option<&str>) -> String {
    match salt {
        Some(salt) => format!("links:{partner}:{salt}"),
        None => format!("links:{partner}"),
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkCommand {
    /// Keeps a link the user agreed to until `pending.expires_at`, under `code_hash`, if it
    /// could be made now. Nothing is linked yet.
    Propose {
        code_hash: String,
        pending: PendingLink,
        now: u64,
    },
    /// The partner confirms the link of `code_hash` for `partner_sub` and the request whose
    /// `jti` hashes to `request_jti_hash`. `attempt` names this redemption, so our own retry
    /// after a lost reply is answered again rather than taken for a replay.
    Confirm {
        code_hash: String,
        partner_sub: String,
        request_jti_hash: String,
        attempt: String,
        now: u64,
    },
    /// The platform user linked to a partner account.
    Lookup { partner_sub: String },
    /// With `remove`, removes the link (if still there); answers up to `UNLINK_BATCH` of the
    /// grants issued through it that may still be live. Later batches of the same unlinking
    /// leave `remove` off, so a link made again meanwhile stays.
    Unlink {
        username: Username,
        now: u64,
        #[serde(default = "yes")]
        remove: bool,
    },
    /// Remembers a grant issued through the link (until `expires_at`), so unlinking can end it.
    AddGrant {
        username: Username,
        grant_id: String,
        expires_at: u64,
        now: u64,
    },
    /// Forgets grants of `username` that unlinking has revoked.
    ForgetGrants {
        username: Username,
        grant_ids: Vec<String>,
    },
    /// The partner was removed: from now on the store makes no link, finds none and lists no
    /// grant (for good); answers up to `RETIRE_BATCH` users whose links are still to be ended
    /// (each by unlinking, then `Retired`), so a removal is finished batch by batch. A user
    /// stays on that list until `Retired`, even once the link itself is gone here: their own
    /// object may not have ended its sessions and forgotten the link yet.
    Retire,
    /// Unlinking `username` for the partner's removal is finished.
    Retired { username: Username },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkReply {
    /// Kept until the partner confirms it.
    Proposed,
    /// Linked now, or already linked the same way (idempotent). `pending` is what the user
    /// agreed to.
    Linked {
        created: bool,
        pending: PendingLink,
    },
    /// The link code is unknown, expired, or not for this request or account.
    CodeInvalid,
    /// The link code was redeemed before: the link made then has been removed here; the rest
    /// of unlinking (`username`'s grants and sessions) is the caller's.
    CodeReplayed {
        username: Username,
    },
    /// The partner account is linked to another platform user.
    PartnerAccountTaken,
    /// This platform user is linked to another account at the partner.
    UserAlreadyLinked,
    Found {
        username: Username,
        user_sub: String,
    },
    NotFound,
    /// The link is gone (or was already); these grants issued through it are still to be revoked
    /// and then forgotten (`ForgetGrants`), so a retry after a failure finds them again.
    Unlinked {
        grant_ids: Vec<String>,
    },
    Done,
    /// The store is retired; these users' links are still to be ended (none: all are).
    Retired {
        usernames: Vec<Username>,
    },
    Failed {
        error: ApiError,
    },
}

/// Grants answered by one `Unlink`: revoked and forgotten before the next is asked for.
pub const UNLINK_BATCH: u32 = 64;
/// Grants listed per linked user: more are refused, so unlinking stays bounded work (eight
/// batches).
pub const MAX_LINK_GRANTS: u32 = 512;

/// Users answered by one `Retire`: each unlinked before the next batch is asked for.
pub const RETIRE_BATCH: u32 = 16;

fn yes() -> bool {
    true
}

/// `link_grants` is the table of earlier versions (no user, no expiry): its rows move to
/// `link_grants_by_user` when their link is removed.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS links (partner_sub TEXT PRIMARY KEY, username TEXT NOT NULL UNIQUE, user_sub TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS link_grants (partner_sub TEXT NOT NULL, grant_id TEXT NOT NULL, PRIMARY KEY (partner_sub, grant_id));
CREATE TABLE IF NOT EXISTS link_grants_by_user (username TEXT NOT NULL, grant_id TEXT NOT NULL, expires_at INTEGER NOT NULL, PRIMARY KEY (username, grant_id));
CREATE TABLE IF NOT EXISTS pending_links (code_hash TEXT PRIMARY KEY, username TEXT NOT NULL, expires_at INTEGER NOT NULL, record TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS pending_links_by_expiry ON pending_links (expires_at);
CREATE INDEX IF NOT EXISTS pending_links_by_user ON pending_links (username, expires_at);
CREATE TABLE IF NOT EXISTS retired (one INTEGER PRIMARY KEY CHECK (one = 1));
CREATE TABLE IF NOT EXISTS retiring (username TEXT PRIMARY KEY);
";
