//! The replay store's command protocol: single-use identifiers (`jti`s of client assertions, and
//! of partners' link requests, link confirmations, login and jwt-bearer assertions).
//!
//! Identifiers are sharded by a hash: the claim of `key` by `signer` goes to the object
//! `replay:v2:{n}`, `n` = SHA-256(`signer|key`) mod [`REPLAY_SHARDS`] ([`shard_of`]). One
//! identifier always meets the same object, so uniqueness stays exact, and no signer (not even
//! the largest partner) has an object of its own to overload. Each shard stores the signer with
//! the key: the same key under two signers is two entries.
//!
//! Before issue 13 there was one object per signer, `replay:{signer}` ([`legacy_object_name`]),
//! with a `seen (key, expires_at)` table; its commands [`Claim`] and [`Check`] keep their wire
//! form, so those objects still answer them. Until `REPLAY_LEGACY_UNTIL` the Worker asks the old
//! object [`Check`] next to every claim, so what was used before the upgrade stays refused.

use crate::protocol::error::ApiError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How many replay shards there are. Changing it moves identifiers to other shards (a replay
/// window like the upgrade's), so it is fixed; docs/storage.md has the arithmetic: at 10x the
/// peak no shard takes more than about 400 calls a second.
pub const REPLAY_SHARDS: u32 = 1024;

/// Expired rows one claim deletes at most: more than it adds (one), so a shard's table stays at
/// about its claims a second times the longest lifetime, and no claim pays for a full scan.
pub const PRUNE_BATCH: u32 = 64;

/// The shard that decides `key` for `signer`: the first 8 bytes of SHA-256(`signer|key`), big
/// endian, mod [`REPLAY_SHARDS`].
pub fn shard_of(signer: &str, key: &str) -> u32 {
    let digest = Sha256::new()
        .chain_update(signer.as_bytes())
        .chain_update(b"|")
        .chain_update(key.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
    let n = u64::from_be_bytes(first) % u64::from(REPLAY_SHARDS);
    u32::try_from(n).unwrap_or(0)
}

/// The name of replay shard `n`.
pub fn shard_name(n: u32) -> String {
    format!("replay:v2:{n}")
}

/// The object that decides `key` for `signer`.
pub fn object_name(signer: &str, key: &str) -> String {
    shard_name(shard_of(signer, key))
}

/// The per-signer object of the layout before issue 13, asked [`Check`] until
/// `REPLAY_LEGACY_UNTIL`.
pub fn legacy_object_name(signer: &str) -> String {
    format!("replay:{signer}")
}

/// Whether a claim at `now` must also ask the old per-signer object: only before
/// `legacy_until` (the `REPLAY_LEGACY_UNTIL` var; `None` when there are no old objects).
pub fn asks_legacy(legacy_until: Option<u64>, now: u64) -> bool {
    legacy_until.is_some_and(|until| now < until)
}

/// Reads the `REPLAY_LEGACY_UNTIL` var: empty (or unset) is `Ok(None)`, no old objects;
/// seconds since the epoch is `Ok(Some(until))`; anything else is an error, so a mistyped value
/// fails closed (503) instead of silently skipping the old objects.
pub fn parse_legacy_until(raw: &str) -> Result<Option<u64>, ApiError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    raw.parse::<u64>().map(Some).map_err(|_| {
        ApiError::unavailable("REPLAY_LEGACY_UNTIL is neither empty nor a number of seconds")
    })
}

crate::commands! {
    pub enum ReplayCommand, trait ReplayHandler {
        ClaimKey(ClaimKey) -> ClaimOutcome, once, claim_key;
        CheckKey(CheckKey) -> CheckOutcome, once, check_key;
        Claim(Claim) -> ClaimOutcome, once, claim;
        Check(Check) -> CheckOutcome, once, check;
    }
}

/// Marks `key` used by `signer` until `expires_at`, in its shard; answers whether it was fresh.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimKey {
    pub signer: String,
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

/// Whether `key` is still unused for `signer` in its shard, without using it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckKey {
    pub signer: String,
    pub key: String,
    pub now: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckOutcome {
    Unused,
    Used,
}

/// The old layout's claim, in a per-signer object (no signer in the row). The Worker no longer
/// sends it; the old objects still answer it (an upgrade test seeds them with it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub key: String,
    pub expires_at: u64,
    pub now: u64,
}

/// The old layout's check, in a per-signer object: sent until `REPLAY_LEGACY_UNTIL`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub key: String,
    pub now: u64,
}

/// A shard's table, and the index that lets a claim delete a few expired rows without a scan.
pub const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS claims (signer TEXT NOT NULL, key TEXT NOT NULL, expires_at INTEGER NOT NULL, PRIMARY KEY (signer, key));
CREATE INDEX IF NOT EXISTS claims_by_expiry ON claims (expires_at)";

/// The per-signer objects' table (the layout before issue 13), with the same index.
pub const LEGACY_SCHEMA: &str =
    "CREATE TABLE IF NOT EXISTS seen (key TEXT PRIMARY KEY, expires_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS seen_by_expiry ON seen (expires_at)";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Command;

    #[test]
    fn a_command_keeps_its_wire_tag_and_round_trips() {
        let claim = ClaimKey {
            signer: "partner:acme".into(),
            key: "k".into(),
            expires_at: 9,
            now: 1,
        };
        let json = serde_json::to_string(&ReplayCommand::from(claim.clone())).unwrap();
        assert_eq!(
            json,
            r#"{"claim_key":{"signer":"partner:acme","key":"k","expires_at":9,"now":1}}"#
        );
        assert_eq!(
            serde_json::from_str::<ReplayCommand>(&json).unwrap(),
            ReplayCommand::ClaimKey(claim)
        );
        let check = serde_json::to_string(&ReplayCommand::from(CheckKey {
            signer: "s".into(),
            key: "k".into(),
            now: 1,
        }))
        .unwrap();
        assert!(check.starts_with(r#"{"check_key":"#));
        const { assert!(!ClaimKey::IDEMPOTENT && !CheckKey::IDEMPOTENT) };
    }

    #[test]
    fn the_old_layouts_commands_keep_their_wire_form() {
        // What a Worker before issue 13 sent to `replay:{signer}`: still decoded the same way.
        let old = r#"{"claim":{"key":"k","expires_at":9,"now":1}}"#;
        assert_eq!(
            serde_json::from_str::<ReplayCommand>(old).unwrap(),
            ReplayCommand::Claim(Claim {
                key: "k".into(),
                expires_at: 9,
                now: 1
            })
        );
        let check = serde_json::to_string(&ReplayCommand::from(Check {
            key: "k".into(),
            now: 1,
        }))
        .unwrap();
        assert_eq!(check, r#"{"check":{"key":"k","now":1}}"#);
    }

    #[test]
    fn one_identifier_always_meets_the_same_shard() {
        let a = shard_of("partner:acme", "abc");
        for _ in 0..10 {
            assert_eq!(shard_of("partner:acme", "abc"), a);
        }
        assert_eq!(object_name("partner:acme", "abc"), format!("replay:v2:{a}"));
        assert!(a < REPLAY_SHARDS);
    }

    #[test]
    fn the_shard_is_sha256_of_signer_bar_key_mod_the_shard_count() {
        // Worked out from the digest directly, not through shard_of.
        let digest = Sha256::digest(b"s|k");
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        let expected = (u64::from_be_bytes(first) % 1024) as u32;
        assert_eq!(shard_of("s", "k"), expected);
        assert_eq!(shard_name(7), "replay:v2:7");
    }

    #[test]
    fn the_signer_takes_part_in_the_shard_and_keys_spread_evenly() {
        // One signer's keys (the largest partner's) spread over every shard: no shard of its own.
        let mut counts = vec![0u32; REPLAY_SHARDS as usize];
        let n = 200_000u32;
        for i in 0..n {
            counts[shard_of("partner:largest", &format!("jti-{i}")) as usize] += 1;
        }
        let mean = n / REPLAY_SHARDS;
        let max = *counts.iter().max().unwrap();
        let min = *counts.iter().min().unwrap();
        assert!(
            max < mean * 3 / 2,
            "the busiest shard has {max}, the mean is {mean}"
        );
        assert!(
            min > mean / 2,
            "the idlest shard has {min}, the mean is {mean}"
        );
        // The same key under two signers lands independently (and is two rows anyway).
        let differ = (0..64)
            .filter(|i| shard_of("a", &format!("k{i}")) != shard_of("b", &format!("k{i}")))
            .count();
        assert!(differ > 48);
    }

    #[test]
    fn the_old_layout_is_asked_only_before_the_legacy_deadline() {
        assert!(!asks_legacy(None, 0));
        assert!(asks_legacy(Some(1_000), 999));
        assert!(!asks_legacy(Some(1_000), 1_000));
        assert!(!asks_legacy(Some(1_000), 5_000));
        assert_eq!(legacy_object_name("partner:acme"), "replay:partner:acme");
        assert_eq!(parse_legacy_until("").unwrap(), None);
        assert_eq!(
            parse_legacy_until(" 1700000000 ").unwrap(),
            Some(1_700_000_000)
        );
        assert!(parse_legacy_until("tomorrow").is_err());
        assert!(parse_legacy_until("-5").is_err());
    }
}
