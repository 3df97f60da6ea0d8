//! The grant Durable Object's command protocol. One object per grant (named `grant:{grant_id}`),
//! so a code is redeemed at most once and a refresh family rotates without races, wherever the
//! requests come from; no object is hot.

use serde::{Deserialize, Serialize};

use crate::protocol::client::ClientId;
use crate::protocol::grant::{Grant, Step};

/// How long an empty grant object remembers that it was revoked: far longer than a creation can
/// trail the listing sent with it (both are sent together, each call bounded to seconds).
pub const REVOKED_FIRST_KEPT_S: u64 = 3600;

pub fn object_name(grant_id: &str) -> String {
    format!("grant:{grant_id}")
}

// A redemption or refresh answers the grant transition's own result: the issue, or the typed
// refusal (stored first when it revoked the grant).
// Every grant command is safe to send twice: a creation sent again finds its own grant, a
// redemption names its attempt, a refresh sent again after a lost reply is answered from the
// rotation it made, and revoking or asking again changes nothing.
crate::commands! {
    pub enum GrantCommand, trait GrantHandler {
        Create(Create) -> Created, retried, create;
        Redeem(Redeem) -> Step, retried, redeem;
        Refresh(Refresh) -> Step, retried, refresh;
        Revoke(Revoke) -> (), retried, revoke;
        RevokeAll(RevokeAll) -> (), retried, revoke_all;
        Status(Status) -> Option<Grant>, retried, status;
    }
}

/// Stores a new grant in its own object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Create {
    pub grant: Box<Grant>,
}

/// What a creation found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Created {
    /// Stored (or, sent again, found stored).
    Stored,
    /// Revoked before it arrived: the grant is issued in parallel with its listing at its user
    /// and its link, so a new password, the user's removal or an unlink may revoke it first
    /// ([`RevokeAll`] on an empty object leaves a mark). Nothing may be issued from it.
    RevokedFirst,
}

/// Redeems the grant's authorization code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redeem {
    pub code_hash: String,
    /// A random id of this redemption attempt: sent again after a lost reply, it is not a
    /// replay.
    #[serde(default)]
    pub attempt: String,
    pub client_id: ClientId,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    pub new_refresh_hash: Option<String>,
    pub now: u64,
}

/// Rotates the grant's refresh token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refresh {
    pub refresh_hash: String,
    pub client_id: ClientId,
    pub scopes: Option<Vec<String>>,
    pub new_refresh_hash: String,
    pub now: u64,
}

/// Revokes the grant if it belongs to `client_id` (RFC 7009: only the client's own tokens).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revoke {
    pub client_id: ClientId,
}

/// Revokes the grant whoever its client (unlinking, a new password, user removal). An object
/// that holds no grant yet is marked revoked for a while ([`REVOKED_FIRST_KEPT_S`]), so a
/// creation still on its way is refused ([`Created::RevokedFirst`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeAll {}

/// The grant if it is active (`None`: unknown, expired or revoked); with `refresh_hash`, only
/// if that is its current refresh token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub now: u64,
    pub refresh_hash: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Command;

    #[test]
    fn commands_keep_their_wire_tags_and_all_are_retried() {
        let json = serde_json::to_string(&GrantCommand::from(RevokeAll {})).unwrap();
        assert_eq!(json, r#"{"revoke_all":{}}"#);
        let status = GrantCommand::from(Status {
            now: 1,
            refresh_hash: None,
        });
        let json = serde_json::to_string(&status).unwrap();
        assert_eq!(json, r#"{"status":{"now":1,"refresh_hash":null}}"#);
        assert_eq!(serde_json::from_str::<GrantCommand>(&json).unwrap(), status);
        let old: GrantCommand = serde_json::from_str(
            r#"{"redeem":{"code_hash":"h","client_id":"client-01","redirect_uri":null,"code_verifier":null,"new_refresh_hash":null,"now":2}}"#,
        )
        .unwrap();
        assert!(matches!(old, GrantCommand::Redeem(r) if r.attempt.is_empty()));
        const {
            assert!(
                Create::IDEMPOTENT
                    && Redeem::IDEMPOTENT
                    && Refresh::IDEMPOTENT
                    && Revoke::IDEMPOTENT
                    && RevokeAll::IDEMPOTENT
                    && Status::IDEMPOTENT
            )
        };
    }
}
