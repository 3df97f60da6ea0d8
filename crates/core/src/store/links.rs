//! The link store's command protocol. One object per partner (named by `object_name`),
//! SQLite-backed: one partner account links to one platform user and, per partner, a platform
//! user has one linked account; both hold by unique keys in one object. A link the user agreed
//! to waits there, under the hash of its link code, until the partner confirms it.

use serde::{Deserialize, Serialize};

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

crate::commands! {
    pub enum LinkCommand, trait LinkHandler {
        Propose(Propose) -> Proposed, once, propose;
        Confirm(Confirm) -> Confirmed, retried, confirm;
        Lookup(Lookup) -> Option<LinkedAccount>, once, lookup;
        Unlink(Unlink) -> Vec<String>, once, unlink;
        AddGrant(AddGrant) -> GrantListed, once, add_grant;
        ForgetGrants(ForgetGrants) -> (), once, forget_grants;
        Retire(Retire) -> Vec<Username>, once, retire;
        Retired(Retired) -> (), once, finish_retiring;
    }
}

/// Keeps a link the user agreed to until `pending.expires_at`, under `code_hash`, if it could
/// be made now. Nothing is linked yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Propose {
    pub code_hash: String,
    pub pending: PendingLink,
    pub now: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Proposed {
    /// Kept until the partner confirms it.
    Kept,
    Refused(LinkRefusal),
}

/// Why a link cannot be made: the one-to-one rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkRefusal {
    /// The partner account is linked to another platform user.
    PartnerAccountTaken,
    /// This platform user is linked to another account at the partner.
    UserAlreadyLinked,
}

/// The partner confirms the link of `code_hash` for `partner_sub` and the request whose `jti`
/// hashes to `request_jti_hash`. `attempt` names this redemption, so our own retry after a lost
/// reply is answered again rather than taken for a replay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirm {
    pub code_hash: String,
    pub partner_sub: String,
    pub request_jti_hash: String,
    pub attempt: String,
    pub now: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Confirmed {
    /// Linked now, or already linked the same way (idempotent). `pending` is what the user
    /// agreed to.
    Linked { created: bool, pending: PendingLink },
    /// The link code is unknown, expired, or not for this request or account.
    CodeInvalid,
    /// The link code was redeemed before: the link made then has been removed here; the rest
    /// of unlinking (`username`'s grants and sessions) is the caller's.
    CodeReplayed { username: Username },
    /// The link cannot be made now (the code is used up).
    Refused(LinkRefusal),
}

/// The platform user linked to a partner account (`None`: nobody).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lookup {
    pub partner_sub: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkedAccount {
    pub username: Username,
    pub user_sub: String,
}

/// With `remove`, removes the link (if still there); answers up to `UNLINK_BATCH` of the grants
/// issued through it that may still be live: they are still to be revoked and then forgotten
/// (`ForgetGrants`), so a retry after a failure finds them again. Later batches of the same
/// unlinking leave `remove` off, so a link made again meanwhile stays.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unlink {
    pub username: Username,
    pub now: u64,
    #[serde(default = "yes")]
    pub remove: bool,
}

/// Remembers a grant issued through the link (until `expires_at`), so unlinking can end it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddGrant {
    pub username: Username,
    pub grant_id: String,
    pub expires_at: u64,
    pub now: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantListed {
    Listed,
    /// The user is not linked (any more): the grant is not to be handed out.
    NotLinked,
}

/// Forgets grants of `username` that unlinking has revoked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgetGrants {
    pub username: Username,
    pub grant_ids: Vec<String>,
}

/// The partner was removed: from now on the store makes no link, finds none and lists no grant
/// (for good); answers up to `RETIRE_BATCH` users whose links are still to be ended (each by
/// unlinking, then `Retired`; none: all are), so a removal is finished batch by batch. A user
/// stays on that list until `Retired`, even once the link itself is gone here: their own object
/// may not have ended its sessions and forgotten the link yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retire {}

/// Unlinking `username` for the partner's removal is finished.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retired {
    pub username: Username,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Command;

    #[test]
    fn commands_keep_their_wire_tags_and_an_old_unlink_removes() {
        let json = serde_json::to_string(&LinkCommand::from(Lookup {
            partner_sub: "p".into(),
        }))
        .unwrap();
        assert_eq!(json, r#"{"lookup":{"partner_sub":"p"}}"#);
        let old: LinkCommand =
            serde_json::from_str(r#"{"unlink":{"username":"ann","now":3}}"#).unwrap();
        match old {
            LinkCommand::Unlink(u) => assert!(u.remove),
            other => panic!("decoded as {other:?}"),
        }
        let retire = serde_json::to_string(&LinkCommand::from(Retire {})).unwrap();
        assert_eq!(retire, r#"{"retire":{}}"#);
        const { assert!(Confirm::IDEMPOTENT && !Propose::IDEMPOTENT) };
    }
}
