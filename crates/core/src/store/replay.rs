//! The replay store's command protocol: single-use identifiers (`jti`s of client assertions and,
//! later, of partners' link requests and login assertions). One object per signer (named
//! `replay:{signer}`), SQLite-backed; an identifier is remembered until its token expires.

use serde::{Deserialize, Serialize};

pub fn object_name(signer: &str) -> String {
    format!("replay:{signer}")
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplayCommand {
    /// Marks `key` used until `expires_at`; answers whether it was fresh.
    Claim {
        key: String,
        expires_at: u64,
        now: u64,
    },
    /// Whether `key` is still unused, without using it (answers `Fresh` or `Seen`).
    Check { key: String, now: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplayReply {
    Fresh,
    Seen,
    Failed {
        error: crate::protocol::error::ApiError,
    },
}

pub const SCHEMA: &str =
    "CREATE TABLE IF NOT EXISTS seen (key TEXT PRIMARY KEY, expires_at INTEGER NOT NULL)";
