//! Records and storage contracts: what lives where, what must be atomic, what may be stale.
//!
//! - The partner registry's source of truth is the `Registry` Durable Object (SQLite): admin
//!   writes are serialized there, so "one origin, one partner" holds under concurrent writes.
//! - The edge reads a published copy in KV (`PARTNERS`): `origin:{origin}` → [`GateEntry`],
//!   `partner:{id}` → [`Partner`], `issuer:{iss}` → the partner id, `client:{id}` → the client
//!   record; and revocation markers, `revoked:{id}` (docs/storage.md lists every key). KV is eventually consistent (up to ~60 s between locations), so
//!   nothing that must be used once or atomically is ever decided from KV.
//! - Publication goes through an outbox in the same SQLite transaction as the change: a KV write
//!   that fails is retried (on the next command and by an alarm) until it lands.
//!
//! [`GateEntry`]: crate::protocol::partner::GateEntry
//! [`Partner`]: crate::protocol::partner::Partner

pub mod audit;
pub mod grants;
pub mod limits;
pub mod links;
pub mod registry;
pub mod replay;
pub mod usage;
pub mod users;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::protocol::error::{ApiError, ErrorCode};

/// One command to an object kind: its own reply type, so a call cannot receive the answer of
/// another command, and whether it is safe to send twice. On the wire a command travels as its
/// kind's enum (`Kind`, tagged with the command's name) and its answer as
/// `Result<Reply, ApiError>`.
pub trait Command: Serialize + DeserializeOwned + Into<Self::Kind> {
    /// The object kind's wire enum.
    type Kind: Serialize + DeserializeOwned;
    /// What the object answers when the command succeeds.
    type Reply: Serialize + DeserializeOwned;
    /// Safe to run twice: sent again when the exchange fails (its reply may have been lost).
    const IDEMPOTENT: bool;
}

/// An object's answer encoded for the wire, and the internal cause of a failure, for the
/// object's log only (a cause never travels: `ApiError` does not serialize it).
#[derive(Debug)]
pub struct Encoded {
    pub body: String,
    pub cause: Option<String>,
}

/// Encodes one command's answer as `Result<Reply, ApiError>`.
pub fn encode<R: Serialize>(result: Result<R, ApiError>) -> Encoded {
    let cause = result.as_ref().err().and_then(|e| e.cause.clone());
    match serde_json::to_string(&result) {
        Ok(body) => Encoded { body, cause },
        Err(e) => {
            let error = ApiError::new(ErrorCode::ServerError, "reply could not be encoded");
            Encoded {
                body: serde_json::to_string(&Err::<(), _>(error)).unwrap_or_default(),
                cause: Some(format!("encode reply: {e}")),
            }
        }
    }
}

/// Declares an object kind's commands once: the wire enum `$kind` (one newtype variant per
/// command struct, tagged in snake_case with the command's name), `From` and [`Command`] for
/// each command, and the handler trait `$handler` the object implements, one method per command,
/// with `handle`, which runs a decoded command and encodes its answer.
///
/// ```text
/// commands! {
///     pub enum ReplayCommand, trait ReplayHandler {
///         Claim(Claim) -> ClaimOutcome, once, claim;
///         Check(Check) -> CheckOutcome, once, check;
///     }
/// }
/// ```
/// `once` commands are sent once; `retried` ones again when the exchange fails.
#[macro_export]
macro_rules! commands {
    (@idempotent once) => { false };
    (@idempotent retried) => { true };
    (
        $(#[$meta:meta])*
        pub enum $kind:ident, trait $handler:ident {
            $( $variant:ident($cmd:ident) -> $reply:ty, $policy:ident, $method:ident; )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $kind {
            $( $variant($cmd), )*
        }

        $(
            impl From<$cmd> for $kind {
                fn from(cmd: $cmd) -> Self {
                    $kind::$variant(cmd)
                }
            }

            impl $crate::store::Command for $cmd {
                type Kind = $kind;
                type Reply = $reply;
                const IDEMPOTENT: bool = $crate::commands!(@idempotent $policy);
            }
        )*

        /// What the object kind does with each of its commands.
        #[allow(async_fn_in_trait)]
        pub trait $handler {
            $(
                async fn $method(
                    &self,
                    cmd: $cmd,
                ) -> ::core::result::Result<$reply, $crate::protocol::error::ApiError>;
            )*

            /// Runs one decoded command and encodes its answer.
            async fn handle(&self, cmd: $kind) -> $crate::store::Encoded {
                match cmd {
                    $( $kind::$variant(cmd) => $crate::store::encode(self.$method(cmd).await), )*
                }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_encoded_as_err_without_its_cause() {
        let encoded = encode::<u32>(Err(ApiError::not_found("partner").with_cause("dropped")));
        assert_eq!(encoded.cause.as_deref(), Some("dropped"));
        assert!(!encoded.body.contains("dropped"));
        let back: Result<u32, ApiError> = serde_json::from_str(&encoded.body).unwrap();
        assert_eq!(back.unwrap_err().code, ErrorCode::NotFound);
        let ok = encode::<u32>(Ok(7));
        assert_eq!(ok.body, r#"{"Ok":7}"#);
        assert!(ok.cause.is_none());
    }
}
