//! The grant Durable Object's command protocol. One object per grant (named `grant:{grant_id}`),
//! so a code is redeemed at most once and a refresh family rotates without races, wherever the
//! requests come from; no object is hot.

use serde::{Deserialize, Serialize};

use crate::protocol::client::ClientId;
use crate::protocol::error::ApiError;
use crate::protocol::grant::{Grant, Issue, Refusal};

pub fn object_name(grant_id: &str) -> String {
    format!("grant:{grant_id}")
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantCommand {
    Create {
        grant: Box<Grant>,
    },
    Redeem {
        code_hash: String,
        /// A random id of this redemption attempt: sent again after a lost reply, it is not a
        /// replay.
        #[serde(default)]
        attempt: String,
        client_id: ClientId,
        redirect_uri: Option<String>,
        code_verifier: Option<String>,
        new_refresh_hash: Option<String>,
        now: u64,
    },
    Refresh {
        refresh_hash: String,
        client_id: ClientId,
        scopes: Option<Vec<String>>,
        new_refresh_hash: String,
        now: u64,
    },
    /// Revokes the grant if it belongs to `client_id` (RFC 7009: only the client's own tokens).
    Revoke {
        client_id: ClientId,
    },
    /// Revokes the grant whoever its client (unlinking, user removal).
    RevokeAll,
    /// The grant if it is active; with `refresh_hash`, only if that is its current refresh token.
    Status {
        now: u64,
        refresh_hash: Option<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantReply {
    Created,
    Issued {
        issue: Issue,
    },
    /// A redemption or refresh refused by the grant's rules (stored first if it revoked the grant).
    Refused {
        refusal: Refusal,
    },
    Revoked,
    Active {
        grant: Grant,
    },
    Inactive,
    Failed {
        error: ApiError,
    },
}
