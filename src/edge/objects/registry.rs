//! The `Registry` Durable Object: the partner registry's source of truth, and its publisher to KV.
//!
//! Commands are serialized by an async lock, so a command's KV publication never interleaves
//! with another's. Each change is written to SQLite in one synchronous stretch (one implicit
//! transaction) together with the KV writes it implies (the outbox); the outbox is then drained
//! in order. A failed KV write stays in the outbox and is retried by an alarm and by the next
//! command, so the edge converges and nothing is lost.

use crate::edge::rt::objects::sql_text as text;
use crate::edge::rt::{config, counts, objects, random};
use crate::protocol::client::{check_redirects_on_partner, ClientId, ClientRecord};
use crate::protocol::error::{ApiError, ErrorCode};
use crate::protocol::origin::Origin;
use crate::protocol::partner::{
    plan_delete, plan_put, resolved_issuer, EdgeWrite, Partner, PartnerId,
};
use crate::protocol::registration::{self, edge_key, EdgeToken, Policy, RegistrationToken};
use crate::store::registry::{
    CreateClient, CreateRegistrationToken, Delete, DeleteClient, DeleteRegistration,
    EndRegistrationAccess, Get, GetClient, List, ListClients, ListRegistrationTokens, Put,
    ReadRegistration, Register, Registered, RegistryCommand, RegistryHandler, RemovalDone,
    RevokeRegistrationToken, Saved, UpdateRegistration, SCHEMA,
};
use base64ct::{Base64UrlUnpadded, Encoding};
use futures_util::lock::Mutex;
use serde::Deserialize;
use std::cell::Cell;
use std::time::Duration;
use worker::{
    console_error, durable_object, DurableObject, Env, Request, Response, Result, SqlStorage,
    SqlStorageValue, State,
};

/// How soon an alarm retries a publication that failed.
const RETRY_AFTER: Duration = Duration::from_secs(5);

#[durable_object(alarm)]
pub struct Registry {
    state: State,
    env: Env,
    lock: Mutex<()>,
    schema_ready: Cell<bool>,
}

#[derive(Deserialize)]
struct RecordRow {
    record: String,
}

#[derive(Deserialize)]
struct OwnerRow {
    partner_id: String,
}

#[derive(Deserialize)]
struct TokenRow {
    hash: String,
    record: String,
}

#[derive(Deserialize)]
struct AccessRow {
    access_hash: String,
    policy: String,
}

#[derive(Deserialize)]
struct OutboxRow {
    key: String,
    value: Option<String>,
    seq: f64,
}

#[derive(Deserialize)]
struct MaxRow {
    n: f64,
}

fn storage_err(e: worker::Error) -> ApiError {
    ApiError::unavailable(format!("registry storage: {e}"))
}

impl DurableObject for Registry {
    fn new(state: State, env: Env) -> Self {
        Registry {
            state,
            env,
            lock: Mutex::new(()),
            schema_ready: Cell::new(false),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        objects::serve_commands(req, "registry", |cmd: RegistryCommand| async move {
            let _serial = self.lock.lock().await;
            self.handle(cmd).await
        })
        .await
    }

    async fn alarm(&self) -> Result<Response> {
        let _serial = self.lock.lock().await;
        if let Err(e) = self.sql() {
            console_error!("registry alarm: {}", e.description);
        } else if let Err(e) = counts::background(self.publish()).await {
            console_error!("registry alarm: {}", e.cause.unwrap_or(e.description));
        }
        Response::ok("")
    }
}

impl Registry {
    fn sql(&self) -> std::result::Result<SqlStorage, ApiError> {
        objects::sql(&self.state, &self.schema_ready, SCHEMA)
    }
}

impl RegistryHandler for Registry {
    async fn get(&self, Get { id }: Get) -> std::result::Result<Partner, ApiError> {
        let sql = self.sql()?;
        match read_partner(&sql, &id)? {
            Some(partner) => Ok(partner),
            None => Err(ApiError::not_found("partner")),
        }
    }

    async fn list(&self, _: List) -> std::result::Result<Vec<Partner>, ApiError> {
        let sql = self.sql()?;
        let rows: Vec<RecordRow> = sql
            .exec("SELECT record FROM partners ORDER BY id", None)
            .and_then(|c| c.to_array())
            .map_err(storage_err)?;
        let partners = rows
            .iter()
            .map(|r| decode_record(&r.record))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(partners)
    }

    async fn put(&self, Put { id, spec, now }: Put) -> std::result::Result<Saved, ApiError> {
        let sql = self.sql()?;
        let new_salt = Base64UrlUnpadded::encode_string(&random::bytes::<16>()?);
        // From here to `publish` nothing awaits: SQLite commits these writes together.
        let existing = read_partner(&sql, &id)?;
        if existing.is_none() && read_removal(&sql, &id)?.is_some() {
            return Err(ApiError::new(
                ErrorCode::TemporarilyUnavailable,
                "a partner with this id was removed and its links are still being ended: \
                 repeat its DELETE until it answers 204, then create it again",
            ));
        }
        let mut owners = Vec::new();
        for origin in &spec.origins {
            if let Some(owner) = read_owner(&sql, origin)? {
                owners.push((origin.clone(), owner));
            }
        }
        let issuer_owner = read_issuer_owner(&sql, &resolved_issuer(&spec))?;
        let plan = plan_put(
            id,
            spec,
            existing,
            &owners,
            issuer_owner.as_ref(),
            now,
            &new_salt,
        )?;
        let record = serde_json::to_string(&plan.record)
            .map_err(|e| ApiError::unavailable(format!("encode record: {e}")))?;
        exec(
            &sql,
            "INSERT INTO partners (id, record) VALUES (?, ?) \
             ON CONFLICT(id) DO UPDATE SET record = excluded.record",
            vec![
                text(plan.record.id.as_str()),
                SqlStorageValue::String(record),
            ],
        )?;
        for origin in &plan.released {
            exec(
                &sql,
                "DELETE FROM partner_origins WHERE origin = ?",
                vec![text(origin.as_str())],
            )?;
        }
        for origin in &plan.claimed {
            exec(
                &sql,
                "INSERT INTO partner_origins (origin, partner_id) VALUES (?, ?)",
                vec![text(origin.as_str()), text(plan.record.id.as_str())],
            )?;
        }
        exec(
            &sql,
            "DELETE FROM partner_issuers WHERE partner_id = ?",
            vec![text(plan.record.id.as_str())],
        )?;
        exec(
            &sql,
            "INSERT INTO partner_issuers (issuer, partner_id) VALUES (?, ?)",
            vec![text(&plan.record.issuer), text(plan.record.id.as_str())],
        )?;
        enqueue(&sql, &plan.edge_writes)?;
        self.publish().await?;
        Ok(Saved {
            partner: plan.record,
            created: plan.created,
        })
    }

    async fn delete(&self, Delete { id }: Delete) -> std::result::Result<Partner, ApiError> {
        let sql = self.sql()?;
        let Some(existing) = read_partner(&sql, &id)? else {
            // Removed before, but what it held is not all ended yet: the caller goes on.
            return match read_removal(&sql, &id)? {
                Some(partner) => Ok(partner),
                None => Err(ApiError::not_found("partner")),
            };
        };
        let clients = read_clients(&sql, &id)?;
        exec(
            &sql,
            "DELETE FROM partner_origins WHERE partner_id = ?",
            vec![text(id.as_str())],
        )?;
        exec(
            &sql,
            "DELETE FROM clients WHERE partner_id = ?",
            vec![text(id.as_str())],
        )?;
        exec(
            &sql,
            "DELETE FROM client_registrations WHERE partner_id = ?",
            vec![text(id.as_str())],
        )?;
        let tokens = read_tokens(&sql, &id)?;
        exec(
            &sql,
            "DELETE FROM registration_tokens WHERE partner_id = ?",
            vec![text(id.as_str())],
        )?;
        exec(
            &sql,
            "DELETE FROM partner_issuers WHERE partner_id = ?",
            vec![text(id.as_str())],
        )?;
        exec(
            &sql,
            "DELETE FROM partners WHERE id = ?",
            vec![text(id.as_str())],
        )?;
        let record = serde_json::to_string(&existing)
            .map_err(|e| ApiError::unavailable(format!("encode record: {e}")))?;
        exec(
            &sql,
            "INSERT INTO partner_removals (id, record) VALUES (?, ?) \
             ON CONFLICT(id) DO UPDATE SET record = excluded.record",
            vec![text(id.as_str()), SqlStorageValue::String(record)],
        )?;
        // Clients first: nothing of the partner stays usable while the rest is removed.
        let mut writes: Vec<EdgeWrite> = clients
            .iter()
            .map(|c| EdgeWrite {
                key: c.client_id.kv_key(),
                value: None,
            })
            .collect();
        writes.extend(tokens.iter().map(|(hash, _)| EdgeWrite {
            key: edge_key(hash),
            value: None,
        }));
        writes.extend(plan_delete(&existing));
        enqueue(&sql, &writes)?;
        self.publish().await?;
        Ok(existing)
    }

    async fn removal_done(
        &self,
        RemovalDone { id }: RemovalDone,
    ) -> std::result::Result<(), ApiError> {
        let sql = self.sql()?;
        exec(
            &sql,
            "DELETE FROM partner_removals WHERE id = ?",
            vec![text(id.as_str())],
        )?;
        Ok(())
    }

    async fn create_client(
        &self,
        CreateClient {
            partner_id,
            client_id,
            spec,
            secret_hash,
            now,
        }: CreateClient,
    ) -> std::result::Result<ClientRecord, ApiError> {
        let sql = self.sql()?;
        let Some(partner) = read_partner(&sql, &partner_id)? else {
            return Err(ApiError::not_found("partner"));
        };
        check_redirects_on_partner(&spec, &partner)?;
        if read_client(&sql, &client_id)?.is_some() {
            return Err(ApiError::unavailable("client id collision"));
        }
        let record = ClientRecord::from_spec(client_id, partner_id, spec, secret_hash, now);
        save_client(&sql, &record)?;
        self.publish().await?;
        Ok(record.view())
    }

    async fn create_registration_token(
        &self,
        CreateRegistrationToken {
            partner_id,
            id,
            token_hash,
            spec,
            now,
        }: CreateRegistrationToken,
    ) -> std::result::Result<RegistrationToken, ApiError> {
        let sql = self.sql()?;
        if read_partner(&sql, &partner_id)?.is_none() {
            return Err(ApiError::not_found("partner"));
        }
        let token = RegistrationToken {
            id,
            partner_id,
            label: spec.label,
            policy: spec.policy,
            expires_at: now.saturating_add(spec.expires_in),
            max_registrations: spec.max_registrations,
            registrations: 0,
            created_at: now,
        };
        let record = encode(&token)?;
        exec(
            &sql,
            "INSERT INTO registration_tokens (hash, id, partner_id, record) VALUES (?, ?, ?, ?)",
            vec![
                text(&token_hash),
                text(&token.id),
                text(token.partner_id.as_str()),
                SqlStorageValue::String(record),
            ],
        )?;
        let edge = EdgeToken {
            partner_id: token.partner_id.clone(),
            expires_at: token.expires_at,
        };
        enqueue(
            &sql,
            &[EdgeWrite {
                key: edge_key(&token_hash),
                value: Some(encode(&edge)?),
            }],
        )?;
        self.publish().await?;
        Ok(token)
    }

    async fn list_registration_tokens(
        &self,
        ListRegistrationTokens { partner_id }: ListRegistrationTokens,
    ) -> std::result::Result<Vec<RegistrationToken>, ApiError> {
        let sql = self.sql()?;
        if read_partner(&sql, &partner_id)?.is_none() {
            return Err(ApiError::not_found("partner"));
        }
        Ok(read_tokens(&sql, &partner_id)?
            .into_iter()
            .map(|(_, t)| t)
            .collect())
    }

    async fn revoke_registration_token(
        &self,
        RevokeRegistrationToken { id }: RevokeRegistrationToken,
    ) -> std::result::Result<(), ApiError> {
        let sql = self.sql()?;
        let rows: Vec<TokenRow> = sql
            .exec(
                "SELECT hash, record FROM registration_tokens WHERE id = ?",
                vec![text(&id)],
            )
            .and_then(|c| c.to_array())
            .map_err(storage_err)?;
        let Some(row) = rows.first() else {
            return Err(ApiError::not_found("registration token"));
        };
        exec(
            &sql,
            "DELETE FROM registration_tokens WHERE hash = ?",
            vec![text(&row.hash)],
        )?;
        enqueue(
            &sql,
            &[EdgeWrite {
                key: edge_key(&row.hash),
                value: None,
            }],
        )?;
        self.publish().await?;
        Ok(())
    }

    async fn register(
        &self,
        Register {
            token_hash,
            metadata,
            checks,
            client_id,
            secret_hash,
            access_hash,
            now,
        }: Register,
    ) -> std::result::Result<Registered, ApiError> {
        let sql = self.sql()?;
        // From the token's read to the count's write nothing awaits: of concurrent
        // registrations with a token that has one left, exactly one wins.
        let rows: Vec<TokenRow> = sql
            .exec(
                "SELECT hash, record FROM registration_tokens WHERE hash = ?",
                vec![text(&token_hash)],
            )
            .and_then(|c| c.to_array())
            .map_err(storage_err)?;
        let Some(row) = rows.first() else {
            return Err(ApiError::new(
                ErrorCode::InvalidToken,
                "the initial access token is not valid",
            ));
        };
        let mut token: RegistrationToken = decode(&row.record, "registration token")?;
        let Some(partner) = read_partner(&sql, &token.partner_id)? else {
            return Err(ApiError::new(
                ErrorCode::InvalidToken,
                "the initial access token is not valid",
            ));
        };
        let spec = registration::register(&token, &partner, metadata.as_bytes(), &checks, now)?;
        if read_client(&sql, &client_id)?.is_some() {
            return Err(ApiError::unavailable("client id collision"));
        }
        let secret_issued = spec.token_endpoint_auth_method.uses_secret();
        let record = ClientRecord {
            registered_with: Some(token.id.clone()),
            ..ClientRecord::from_spec(
                client_id,
                partner.id.clone(),
                spec,
                secret_issued.then_some(secret_hash),
                now,
            )
        };
        token.registrations = token.registrations.saturating_add(1);
        exec(
            &sql,
            "UPDATE registration_tokens SET record = ? WHERE hash = ?",
            vec![SqlStorageValue::String(encode(&token)?), text(&token_hash)],
        )?;
        exec(
            &sql,
            "INSERT INTO client_registrations (client_id, partner_id, access_hash, policy) \
             VALUES (?, ?, ?, ?)",
            vec![
                text(record.client_id.as_str()),
                text(partner.id.as_str()),
                text(&access_hash),
                SqlStorageValue::String(encode(&token.policy)?),
            ],
        )?;
        save_client(&sql, &record)?;
        self.publish_committed().await;
        Ok(Registered {
            client: record.view(),
            secret_issued,
        })
    }

    async fn read_registration(
        &self,
        ReadRegistration {
            client_id,
            access_hash,
        }: ReadRegistration,
    ) -> std::result::Result<ClientRecord, ApiError> {
        let sql = self.sql()?;
        let (client, _) = managed(&sql, &client_id, &access_hash)?;
        Ok(client.view())
    }

    async fn update_registration(
        &self,
        UpdateRegistration {
            client_id,
            access_hash,
            metadata,
            checks,
            presented_secret_hash,
            new_secret_hash,
            new_access_hash,
        }: UpdateRegistration,
    ) -> std::result::Result<Registered, ApiError> {
        let sql = self.sql()?;
        let (client, policy) = managed(&sql, &client_id, &access_hash)?;
        if let Some(presented) = presented_secret_hash {
            let stored = client.secret_hash.as_deref().unwrap_or("");
            if !registration::hash_matches(stored, &presented) {
                return Err(ApiError {
                    code: ErrorCode::InvalidClientMetadata,
                    ..ApiError::invalid_field("client_secret", "is not the client's secret")
                });
            }
        }
        let Some(partner) = read_partner(&sql, &client.partner_id)? else {
            return Err(ApiError::not_found("partner"));
        };
        let spec = registration::client_for(&policy, &partner, metadata.as_bytes(), &checks)?;
        let (record, secret_issued) = registration::updated(&client, spec, &new_secret_hash);
        exec(
            &sql,
            "UPDATE client_registrations SET access_hash = ? WHERE client_id = ?",
            vec![text(&new_access_hash), text(client_id.as_str())],
        )?;
        save_client(&sql, &record)?;
        self.publish_committed().await;
        Ok(Registered {
            client: record.view(),
            secret_issued,
        })
    }

    async fn delete_registration(
        &self,
        DeleteRegistration {
            client_id,
            access_hash,
        }: DeleteRegistration,
    ) -> std::result::Result<(), ApiError> {
        let sql = self.sql()?;
        managed(&sql, &client_id, &access_hash)?;
        self.remove_client(&sql, &client_id).await
    }

    async fn end_registration_access(
        &self,
        EndRegistrationAccess { client_id }: EndRegistrationAccess,
    ) -> std::result::Result<(), ApiError> {
        let sql = self.sql()?;
        if read_client(&sql, &client_id)?.is_none() {
            return Err(ApiError::not_found("client"));
        }
        exec(
            &sql,
            "DELETE FROM client_registrations WHERE client_id = ?",
            vec![text(client_id.as_str())],
        )?;
        Ok(())
    }

    async fn get_client(
        &self,
        GetClient { client_id }: GetClient,
    ) -> std::result::Result<ClientRecord, ApiError> {
        let sql = self.sql()?;
        match read_client(&sql, &client_id)? {
            Some(c) => Ok(c.view()),
            None => Err(ApiError::not_found("client")),
        }
    }

    async fn list_clients(
        &self,
        ListClients { partner_id }: ListClients,
    ) -> std::result::Result<Vec<ClientRecord>, ApiError> {
        let sql = self.sql()?;
        if read_partner(&sql, &partner_id)?.is_none() {
            return Err(ApiError::not_found("partner"));
        }
        let clients = read_clients(&sql, &partner_id)?
            .iter()
            .map(ClientRecord::view)
            .collect();
        Ok(clients)
    }

    async fn delete_client(
        &self,
        DeleteClient { client_id }: DeleteClient,
    ) -> std::result::Result<(), ApiError> {
        let sql = self.sql()?;
        if read_client(&sql, &client_id)?.is_none() {
            return Err(ApiError::not_found("client"));
        }
        self.remove_client(&sql, &client_id).await
    }
}

impl Registry {
    /// Removes a client, its registration access and its published record.
    async fn remove_client(
        &self,
        sql: &SqlStorage,
        client_id: &ClientId,
    ) -> std::result::Result<(), ApiError> {
        exec(
            sql,
            "DELETE FROM clients WHERE id = ?",
            vec![text(client_id.as_str())],
        )?;
        exec(
            sql,
            "DELETE FROM client_registrations WHERE client_id = ?",
            vec![text(client_id.as_str())],
        )?;
        enqueue(
            sql,
            &[EdgeWrite {
                key: client_id.kv_key(),
                value: None,
            }],
        )?;
        self.publish().await
    }

    /// [`Registry::publish`] after a change whose answer carries credentials shown once (a
    /// registration's secret and access token): committed is committed, so a publication that
    /// fails is left to the alarm (scheduled by `publish`) and the caller still gets them.
    async fn publish_committed(&self) {
        if let Err(e) = self.publish().await {
            console_error!(
                "registry: publish after commit: {}",
                e.cause.unwrap_or(e.description)
            );
        }
    }

    /// Drains the outbox to KV in order. On failure the rest stays queued and an alarm retries.
    async fn publish(&self) -> std::result::Result<(), ApiError> {
        let result = self.try_publish().await;
        if let Err(e) = &result {
            if let Err(alarm_err) = self.state.storage().set_alarm(RETRY_AFTER).await {
                console_error!("registry: cannot schedule publish retry: {alarm_err}");
            }
            return Err(ApiError::new(
                ErrorCode::TemporarilyUnavailable,
                "saved, but publishing to the edge failed; it is retried automatically",
            )
            .with_cause(e.cause.clone().unwrap_or_default()));
        }
        result
    }

    async fn try_publish(&self) -> std::result::Result<(), ApiError> {
        let sql = self.sql()?;
        let rows: Vec<OutboxRow> = sql
            .exec("SELECT key, value, seq FROM outbox ORDER BY seq", None)
            .and_then(|c| c.to_array())
            .map_err(storage_err)?;
        if rows.is_empty() {
            return Ok(());
        }
        let kv = self
            .env
            .kv(config::PARTNERS_KV)
            .map_err(|e| ApiError::unavailable(format!("kv binding: {e}")))?;
        for row in rows {
            let kv_err = |e: worker::kv::KvError| ApiError::unavailable(format!("kv write: {e}"));
            // Not bounded by a time-out: a write given up on could still land after a newer
            // one for the same key (a suspension overwritten by an older "active"). The outbox
            // writes in order, each awaited to the end; the caller's object call is bounded.
            let op = if row.value.is_some() { "put" } else { "delete" };
            let _in_flight = counts::kv(op, &row.key);
            match &row.value {
                Some(v) => kv
                    .put(&row.key, v.as_str())
                    .map_err(kv_err)?
                    .execute()
                    .await
                    .map_err(kv_err)?,
                None => kv.delete(&row.key).await.map_err(kv_err)?,
            }
            exec(
                &sql,
                "DELETE FROM outbox WHERE key = ? AND seq = ?",
                vec![text(&row.key), SqlStorageValue::Float(row.seq)],
            )?;
        }
        Ok(())
    }
}

fn exec(
    sql: &SqlStorage,
    query: &str,
    args: Vec<SqlStorageValue>,
) -> std::result::Result<(), ApiError> {
    sql.exec(query, args).map(|_| ()).map_err(storage_err)
}

fn decode_record(raw: &str) -> std::result::Result<Partner, ApiError> {
    serde_json::from_str(raw)
        .map_err(|e| ApiError::unavailable(format!("corrupt partner record: {e}")))
}

fn read_partner(
    sql: &SqlStorage,
    id: &PartnerId,
) -> std::result::Result<Option<Partner>, ApiError> {
    let rows: Vec<RecordRow> = sql
        .exec(
            "SELECT record FROM partners WHERE id = ?",
            vec![text(id.as_str())],
        )
        .and_then(|c| c.to_array())
        .map_err(storage_err)?;
    rows.first().map(|r| decode_record(&r.record)).transpose()
}

/// The record of a removed partner whose links are not all ended yet.
fn read_removal(
    sql: &SqlStorage,
    id: &PartnerId,
) -> std::result::Result<Option<Partner>, ApiError> {
    let rows: Vec<RecordRow> = sql
        .exec(
            "SELECT record FROM partner_removals WHERE id = ?",
            vec![text(id.as_str())],
        )
        .and_then(|c| c.to_array())
        .map_err(storage_err)?;
    rows.first().map(|r| decode_record(&r.record)).transpose()
}

fn read_issuer_owner(
    sql: &SqlStorage,
    issuer: &str,
) -> std::result::Result<Option<PartnerId>, ApiError> {
    let rows: Vec<OwnerRow> = sql
        .exec(
            "SELECT partner_id FROM partner_issuers WHERE issuer = ?",
            vec![text(issuer)],
        )
        .and_then(|c| c.to_array())
        .map_err(storage_err)?;
    rows.first()
        .map(|r| PartnerId::parse(&r.partner_id))
        .transpose()
}

fn read_owner(
    sql: &SqlStorage,
    origin: &Origin,
) -> std::result::Result<Option<PartnerId>, ApiError> {
    let rows: Vec<OwnerRow> = sql
        .exec(
            "SELECT partner_id FROM partner_origins WHERE origin = ?",
            vec![text(origin.as_str())],
        )
        .and_then(|c| c.to_array())
        .map_err(storage_err)?;
    rows.first()
        .map(|r| PartnerId::parse(&r.partner_id))
        .transpose()
}

fn encode<T: serde::Serialize>(value: &T) -> std::result::Result<String, ApiError> {
    serde_json::to_string(value).map_err(|e| ApiError::unavailable(format!("encode: {e}")))
}

fn decode<T: serde::de::DeserializeOwned>(
    raw: &str,
    what: &str,
) -> std::result::Result<T, ApiError> {
    serde_json::from_str(raw).map_err(|e| ApiError::unavailable(format!("corrupt {what}: {e}")))
}

/// Stores a client's record and queues its publication.
fn save_client(sql: &SqlStorage, record: &ClientRecord) -> std::result::Result<(), ApiError> {
    let json = encode(record)?;
    exec(
        sql,
        "INSERT INTO clients (id, partner_id, record) VALUES (?, ?, ?) \
         ON CONFLICT(id) DO UPDATE SET record = excluded.record",
        vec![
            text(record.client_id.as_str()),
            text(record.partner_id.as_str()),
            SqlStorageValue::String(json.clone()),
        ],
    )?;
    enqueue(
        sql,
        &[EdgeWrite {
            key: record.client_id.kv_key(),
            value: Some(json),
        }],
    )
}

/// A partner's initial access tokens, with their hashes.
fn read_tokens(
    sql: &SqlStorage,
    partner: &PartnerId,
) -> std::result::Result<Vec<(String, RegistrationToken)>, ApiError> {
    let rows: Vec<TokenRow> = sql
        .exec(
            "SELECT hash, record FROM registration_tokens WHERE partner_id = ? ORDER BY id",
            vec![text(partner.as_str())],
        )
        .and_then(|c| c.to_array())
        .map_err(storage_err)?;
    rows.iter()
        .map(|r| Ok((r.hash.clone(), decode(&r.record, "registration token")?)))
        .collect()
}

/// A registered client its registration access token (`access_hash`) may manage, and the
/// policy it was registered under. Anything else, an unknown client included, is 401
/// `invalid_token` (RFC 7592 §2.1), the same answer whatever the cause.
fn managed(
    sql: &SqlStorage,
    client_id: &ClientId,
    access_hash: &str,
) -> std::result::Result<(ClientRecord, Policy), ApiError> {
    let refused = || {
        ApiError::new(
            ErrorCode::InvalidToken,
            "the registration access token is not valid for this client",
        )
    };
    let rows: Vec<AccessRow> = sql
        .exec(
            "SELECT access_hash, policy FROM client_registrations WHERE client_id = ?",
            vec![text(client_id.as_str())],
        )
        .and_then(|c| c.to_array())
        .map_err(storage_err)?;
    let Some(row) = rows.first() else {
        return Err(refused());
    };
    if !registration::hash_matches(&row.access_hash, access_hash) {
        return Err(refused());
    }
    let Some(client) = read_client(sql, client_id)? else {
        return Err(refused());
    };
    Ok((client, decode(&row.policy, "registration policy")?))
}

fn decode_client(raw: &str) -> std::result::Result<ClientRecord, ApiError> {
    serde_json::from_str(raw)
        .map_err(|e| ApiError::unavailable(format!("corrupt client record: {e}")))
}

fn read_client(
    sql: &SqlStorage,
    id: &ClientId,
) -> std::result::Result<Option<ClientRecord>, ApiError> {
    let rows: Vec<RecordRow> = sql
        .exec(
            "SELECT record FROM clients WHERE id = ?",
            vec![text(id.as_str())],
        )
        .and_then(|c| c.to_array())
        .map_err(storage_err)?;
    rows.first().map(|r| decode_client(&r.record)).transpose()
}

fn read_clients(
    sql: &SqlStorage,
    partner: &PartnerId,
) -> std::result::Result<Vec<ClientRecord>, ApiError> {
    let rows: Vec<RecordRow> = sql
        .exec(
            "SELECT record FROM clients WHERE partner_id = ? ORDER BY id",
            vec![text(partner.as_str())],
        )
        .and_then(|c| c.to_array())
        .map_err(storage_err)?;
    rows.iter().map(|r| decode_client(&r.record)).collect()
}

/// Queues KV writes after any already queued; a newer write to the same key replaces the older.
fn enqueue(sql: &SqlStorage, writes: &[EdgeWrite]) -> std::result::Result<(), ApiError> {
    let rows: Vec<MaxRow> = sql
        .exec("SELECT COALESCE(MAX(seq), 0) AS n FROM outbox", None)
        .and_then(|c| c.to_array())
        .map_err(storage_err)?;
    let mut seq = rows.first().map_or(0.0, |r| r.n);
    for w in writes {
        seq += 1.0;
        let value = w.value.as_ref().map_or(SqlStorageValue::Null, |v| {
            SqlStorageValue::String(v.clone())
        });
        exec(
            sql,
            "INSERT INTO outbox (key, value, seq) VALUES (?, ?, ?) \
             ON CONFLICT(key) DO UPDATE SET value = excluded.value, seq = excluded.seq",
            vec![text(&w.key), value, SqlStorageValue::Float(seq)],
        )?;
    }
    Ok(())
}
