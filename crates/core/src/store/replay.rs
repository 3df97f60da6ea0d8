//! The replay store's command protocol: single-use identifiers (`jti`s of client assertions, and
//! of partners' link requests, link confirmations, login and jwt-bearer assertions). One object per signer (named
//! `replay:{signer}`), SQLite-backed; an identifier is remembered until its token expires.

use serde::{Deserialize, Serialize};

pub fn object_name(signer: &str) -> String {
    format!("replay:{signer}")
}

crate::commands! {
    pub enum ReplayCommand, trait ReplayHandler {
        Claim(Claim) -> ClaimOutcome, once, claim;
        Check(Check) -> CheckOutcome, once, check;
    }
}

/// Marks `key` used until `expires_at`; answers whether it was fresh.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub key: String,
    pub expires_at: u64,
    pub now: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimOutcome {
    /// The key was unused: this claim used it.
    Claimed,
    /// The key was used before: a replay.
    Replayed,
}

/// Whether `key` is still unused, without using it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub key: String,
    pub now: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckOutcome {
    Unused,
    Used,
}

pub const SCHEMA: &str =
    "CREATE TABLE IF NOT EXISTS seen (key TEXT PRIMARY KEY, expires_at INTEGER NOT NULL)";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Command;

    #[test]
    fn a_command_keeps_its_wire_tag_and_round_trips() {
        let claim = Claim {
            key: "k".into(),
            expires_at: 9,
            now: 1,
        };
        let json = serde_json::to_string(&ReplayCommand::from(claim.clone())).unwrap();
        assert_eq!(json, r#"{"claim":{"key":"k","expires_at":9,"now":1}}"#);
        assert_eq!(
            serde_json::from_str::<ReplayCommand>(&json).unwrap(),
            ReplayCommand::Claim(claim)
        );
        let check = serde_json::to_string(&ReplayCommand::from(Check {
            key: "k".into(),
            now: 1,
        }))
        .unwrap();
        assert!(check.starts_with(r#"{"check":"#));
        const { assert!(!Claim::IDEMPOTENT && !Check::IDEMPOTENT) };
    }
}
