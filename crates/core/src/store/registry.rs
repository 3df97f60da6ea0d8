//! The registry Durable Object's command protocol: what the Worker asks of it and what it answers.

use serde::{Deserialize, Serialize};

use crate::protocol::client::{ClientId, ClientRecord, ClientSpec};
use crate::protocol::error::ApiError;
use crate::protocol::partner::{Partner, PartnerId, PartnerSpec};

/// The single registry object's name: admin writes are rare, so one object serializes them all.
pub const REGISTRY_OBJECT: &str = "registry";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistryCommand {
    Put {
        id: PartnerId,
        spec: PartnerSpec,
        /// Seconds since the Unix epoch, read by the caller.
        now: u64,
    },
    Get {
        id: PartnerId,
    },
    List,
    /// Deleting a partner deletes its clients too, and remembers the record until its links
    /// are ended (`RemovalDone`); asked again meanwhile, it answers the same record, so the
    /// caller goes on ending them. A partner with a removal pending cannot be created again.
    Delete {
        id: PartnerId,
    },
    /// The removed partner's links are all ended: the registry forgets the removal.
    RemovalDone {
        id: PartnerId,
    },
    /// Registers a client; the caller generated its id and the hash of its secret.
    CreateClient {
        partner_id: PartnerId,
        client_id: ClientId,
        spec: ClientSpec,
        secret_hash: Option<String>,
        now: u64,
    },
    GetClient {
        client_id: ClientId,
    },
    ListClients {
        partner_id: PartnerId,
    },
    DeleteClient {
        client_id: ClientId,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistryReply {
    Saved {
        partner: Partner,
        created: bool,
    },
    Partner {
        partner: Partner,
    },
    Partners {
        partners: Vec<Partner>,
    },
    Deleted,
    /// The partner is removed from the registry and the edge; what it held (its links, and what
    /// came through them) is still to be ended.
    PartnerRemoved {
        partner: Partner,
    },
    /// Client records here never carry the secret's hash.
    Client {
        client: ClientRecord,
    },
    Clients {
        clients: Vec<ClientRecord>,
    },
    Failed {
        error: ApiError,
    },
}

/// The SQLite schema, applied idempotently when the object starts.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS partners (id TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS partner_origins (origin TEXT PRIMARY KEY, partner_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS partner_issuers (issuer TEXT PRIMARY KEY, partner_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS clients (id TEXT PRIMARY KEY, partner_id TEXT NOT NULL, record TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS clients_by_partner ON clients (partner_id);
CREATE TABLE IF NOT EXISTS outbox (key TEXT PRIMARY KEY, value TEXT, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS partner_removals (id TEXT PRIMARY KEY, record TEXT NOT NULL);
";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::error::ErrorCode;
    use crate::protocol::partner::parse_partner_spec;

    #[test]
    fn commands_and_replies_round_trip_as_json() {
        let cmd = RegistryCommand::Put {
            id: PartnerId::parse("acme").unwrap(),
            spec: parse_partner_spec(br#"{"name":"A","origins":["https://a.example"]}"#).unwrap(),
            now: 5,
        };
        let json = serde_json::to_string(&cmd).unwrap();
        assert_eq!(serde_json::from_str::<RegistryCommand>(&json).unwrap(), cmd);

        let reply = RegistryReply::Failed {
            error: ApiError::not_found("partner").with_cause("dropped"),
        };
        let json = serde_json::to_string(&reply).unwrap();
        assert!(!json.contains("dropped"));
        match serde_json::from_str::<RegistryReply>(&json).unwrap() {
            RegistryReply::Failed { error } => assert_eq!(error.code, ErrorCode::NotFound),
            other => panic!("unexpected {other:?}"),
        }
    }
}
