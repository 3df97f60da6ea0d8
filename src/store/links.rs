//! The link store's command protocol. One object per partner (named `links:{partner_id}`),
//! SQLite-backed: one partner account links to one platform user and, per partner, a platform
//! user has one linked account; both hold by unique keys in one object.

use serde::{Deserialize, Serialize};

use crate::protocol::error::ApiError;
use crate::protocol::partner::PartnerId;
use crate::protocol::user::Username;

pub fn object_name(partner: &PartnerId) -> String {
    format!("links:{partner}")
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkCommand {
    Link {
        partner_sub: String,
        username: Username,
        /// The user's pairwise subject for this partner: a later account reusing the username
        /// is not the linked person.
        user_sub: String,
        now: u64,
    },
    /// The platform user linked to a partner account.
    Lookup {
        partner_sub: String,
    },
    Unlink {
        username: Username,
    },
    /// Remembers a grant issued through the link, so unlinking can end it.
    AddGrant {
        partner_sub: String,
        grant_id: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkReply {
    /// Linked now, or already linked the same way (idempotent).
    Linked {
        created: bool,
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
    /// The link is gone; these grants were issued through it.
    Unlinked {
        grant_ids: Vec<String>,
    },
    Done,
    Failed {
        error: ApiError,
    },
}

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS links (partner_sub TEXT PRIMARY KEY, username TEXT NOT NULL UNIQUE, user_sub TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS link_grants (partner_sub TEXT NOT NULL, grant_id TEXT NOT NULL, PRIMARY KEY (partner_sub, grant_id));
";
