//! The registry Durable Object's command protocol: what the Worker asks of it and what it answers.

use serde::{Deserialize, Serialize};

use crate::protocol::client::{ClientId, ClientRecord, ClientSpec};
use crate::protocol::partner::{Partner, PartnerId, PartnerSpec};
use crate::protocol::registration::{Checked, RegistrationToken, TokenSpec};

/// The single registry object's name: admin writes are rare, so one object serializes them all.
pub const REGISTRY_OBJECT: &str = "registry";

crate::commands! {
    pub enum RegistryCommand, trait RegistryHandler {
        Put(Put) -> Saved, once, put;
        Get(Get) -> Partner, once, get;
        List(List) -> Vec<Partner>, once, list;
        Delete(Delete) -> Partner, once, delete;
        RemovalDone(RemovalDone) -> (), once, removal_done;
        CreateClient(CreateClient) -> ClientRecord, once, create_client;
        GetClient(GetClient) -> ClientRecord, once, get_client;
        ListClients(ListClients) -> Vec<ClientRecord>, once, list_clients;
        DeleteClient(DeleteClient) -> (), once, delete_client;
        CreateRegistrationToken(CreateRegistrationToken) -> RegistrationToken, once, create_registration_token;
        ListRegistrationTokens(ListRegistrationTokens) -> Vec<RegistrationToken>, once, list_registration_tokens;
        RevokeRegistrationToken(RevokeRegistrationToken) -> (), once, revoke_registration_token;
        Register(Register) -> Registered, once, register;
        ReadRegistration(ReadRegistration) -> ClientRecord, once, read_registration;
        UpdateRegistration(UpdateRegistration) -> Registered, once, update_registration;
        DeleteRegistration(DeleteRegistration) -> (), once, delete_registration;
        EndRegistrationAccess(EndRegistrationAccess) -> (), once, end_registration_access;
    }
}

/// Creates or replaces a partner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Put {
    pub id: PartnerId,
    pub spec: PartnerSpec,
    /// Seconds since the Unix epoch, read by the caller.
    pub now: u64,
}

/// The partner as stored, and whether this `Put` created it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    pub partner: Partner,
    pub created: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Get {
    pub id: PartnerId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct List {}

/// Deleting a partner deletes its clients too, and remembers the record until its links are
/// ended (`RemovalDone`); asked again meanwhile, it answers the same record, so the caller goes
/// on ending them. A partner with a removal pending cannot be created again. Answers the
/// removed partner: gone from the registry and the edge; what it held (its links, and what came
/// through them) is still to be ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delete {
    pub id: PartnerId,
}

/// The removed partner's links are all ended: the registry forgets the removal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovalDone {
    pub id: PartnerId,
}

/// Registers a client; the caller generated its id and the hash of its secret. Client records
/// answered by the registry never carry the secret's hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateClient {
    pub partner_id: PartnerId,
    pub client_id: ClientId,
    pub spec: ClientSpec,
    pub secret_hash: Option<String>,
    pub now: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetClient {
    pub client_id: ClientId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListClients {
    pub partner_id: PartnerId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteClient {
    pub client_id: ClientId,
}

/// Creates an initial access token for a partner; the caller generated it and sends its hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateRegistrationToken {
    pub partner_id: PartnerId,
    pub id: String,
    pub token_hash: String,
    pub spec: TokenSpec,
    pub now: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListRegistrationTokens {
    pub partner_id: PartnerId,
}

/// Ends an initial access token by its public id. The clients it registered stay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeRegistrationToken {
    pub id: String,
}

/// Registers a client with an initial access token (RFC 7591): the registry finds the token by
/// its hash, applies its policy to `metadata` and counts the registration, in one stretch.
/// The caller generated the client's id, a secret (used only if the client's method takes
/// one) and its registration access token, and sends their hashes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Register {
    pub token_hash: String,
    pub metadata: String,
    /// What the Worker checked: the algorithms it holds keys for, the sector document.
    pub checks: Checked,
    pub client_id: ClientId,
    pub secret_hash: String,
    pub access_hash: String,
    pub now: u64,
}

/// The client as registered, and whether the secret the caller offered was given to it (the
/// caller shows it once).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registered {
    pub client: ClientRecord,
    pub secret_issued: bool,
}

/// A registered client, read with its registration access token (RFC 7592 §2.1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadRegistration {
    pub client_id: ClientId,
    pub access_hash: String,
}

/// Replaces a registered client's metadata (RFC 7592 §2.2) within the policy it was registered
/// under; its registration access token is replaced by `new_access_hash`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateRegistration {
    pub client_id: ClientId,
    pub access_hash: String,
    pub metadata: String,
    pub checks: Checked,
    /// The hash of the `client_secret` the update repeated, which must be the client's.
    pub presented_secret_hash: Option<String>,
    /// A secret for a client that takes one and has none yet.
    pub new_secret_hash: String,
    pub new_access_hash: String,
}

/// Removes a registered client (RFC 7592 §2.3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteRegistration {
    pub client_id: ClientId,
    pub access_hash: String,
}

/// The operator ends a client's registration access token: the client stays, and is managed
/// through the admin API only from then on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndRegistrationAccess {
    pub client_id: ClientId,
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
CREATE TABLE IF NOT EXISTS registration_tokens (hash TEXT PRIMARY KEY, id TEXT NOT NULL UNIQUE, partner_id TEXT NOT NULL, record TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS registration_tokens_by_partner ON registration_tokens (partner_id);
CREATE TABLE IF NOT EXISTS client_registrations (client_id TEXT PRIMARY KEY, partner_id TEXT NOT NULL, access_hash TEXT NOT NULL, policy TEXT NOT NULL);
";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::error::{ApiError, ErrorCode};
    use crate::protocol::partner::parse_partner_spec;
    use crate::store::encode;

    #[test]
    fn commands_and_replies_round_trip_as_json() {
        let cmd = RegistryCommand::from(Put {
            id: PartnerId::parse("acme").unwrap(),
            spec: parse_partner_spec(br#"{"name":"A","origins":["https://a.example"]}"#).unwrap(),
            now: 5,
        });
        let json = serde_json::to_string(&cmd).unwrap();
        assert!(json.starts_with(r#"{"put":{"id":"acme","#), "{json}");
        assert_eq!(serde_json::from_str::<RegistryCommand>(&json).unwrap(), cmd);
        let list = serde_json::to_string(&RegistryCommand::from(List {})).unwrap();
        assert_eq!(list, r#"{"list":{}}"#);

        let reply = encode::<Saved>(Err(ApiError::not_found("partner").with_cause("dropped")));
        assert!(!reply.body.contains("dropped"));
        let back: Result<Saved, ApiError> = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(back.unwrap_err().code, ErrorCode::NotFound);
    }
}
