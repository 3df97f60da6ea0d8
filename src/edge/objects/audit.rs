//! The `AuditLog` Durable Object: the old single home of security events (SQLite, kept for
//! `RETENTION_S`). Events now go to the archive (`AuditBuffer` → queue → R2); this object stays
//! so that its events can be moved there (`AuditCommand::Export`, `POST /admin/audit/migrate`).

use crate::edge::rt::objects;
use crate::protocol::audit::{AuditEvent, RETENTION_S};
use crate::protocol::error::ApiError;
use crate::store::audit::{AuditCommand, AuditHandler, Export, Query, Record, SCHEMA};
use serde::Deserialize;
use std::cell::Cell;
use worker::{
    durable_object, DurableObject, Env, Request, Response, Result, SqlStorage, SqlStorageValue,
    State,
};

#[durable_object(fetch)]
pub struct AuditLog {
    state: State,
    schema_ready: Cell<bool>,
}

#[derive(Deserialize)]
struct Row {
    seq: f64,
    body: String,
}

/// Stored rows as events, each with its `seq`. A row that does not parse is a 503.
fn decode(rows: Vec<Row>) -> std::result::Result<Vec<AuditEvent>, ApiError> {
    rows.into_iter()
        .map(|r| {
            let mut e: AuditEvent = serde_json::from_str(&r.body)
                .map_err(|e| ApiError::unavailable(format!("corrupt event: {e}")))?;
            e.seq = r.seq as u64;
            Ok(e)
        })
        .collect()
}

fn err(e: worker::Error) -> ApiError {
    ApiError::unavailable(format!("audit storage: {e}"))
}

impl DurableObject for AuditLog {
    fn new(state: State, _env: Env) -> Self {
        AuditLog {
            state,
            schema_ready: Cell::new(false),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        objects::serve_commands(req, "audit log", |cmd: AuditCommand| self.handle(cmd)).await
    }
}

impl AuditLog {
    fn sql(&self) -> std::result::Result<SqlStorage, ApiError> {
        objects::sql(&self.state, &self.schema_ready, SCHEMA)
    }
}

impl AuditHandler for AuditLog {
    async fn record(&self, Record { event }: Record) -> std::result::Result<(), ApiError> {
        let sql = self.sql()?;
        sql.exec(
            "DELETE FROM events WHERE ts < ?",
            vec![objects::sql_int(event.ts.saturating_sub(RETENTION_S))],
        )
        .map_err(err)?;
        let body =
            serde_json::to_string(&event).map_err(|e| ApiError::unavailable(e.to_string()))?;
        sql.exec(
            "INSERT INTO events (ts, kind, partner, body) VALUES (?, ?, ?, ?)",
            vec![
                objects::sql_int(event.ts),
                SqlStorageValue::String(event.kind.clone()),
                objects::sql_opt_text(event.partner.clone()),
                SqlStorageValue::String(body),
            ],
        )
        .map_err(err)?;
        Ok(())
    }

    async fn query(
        &self,
        Query {
            since,
            partner,
            kind,
            cursor,
            limit,
        }: Query,
    ) -> std::result::Result<Vec<AuditEvent>, ApiError> {
        let sql = self.sql()?;
        let rows: Vec<Row> = sql
            .exec(
                "SELECT seq, body FROM events WHERE seq > ? AND ts >= ? \
                 AND (? IS NULL OR partner = ?) AND (? IS NULL OR kind = ?) ORDER BY seq LIMIT ?",
                vec![
                    objects::sql_int(cursor.unwrap_or(0)),
                    objects::sql_int(since.unwrap_or(0)),
                    objects::sql_opt_text(partner.clone()),
                    objects::sql_opt_text(partner),
                    objects::sql_opt_text(kind.clone()),
                    objects::sql_opt_text(kind),
                    objects::sql_int(limit as u64),
                ],
            )
            .and_then(|c| c.to_array())
            .map_err(err)?;
        decode(rows)
    }

    async fn export(
        &self,
        Export { after_seq, limit }: Export,
    ) -> std::result::Result<Vec<AuditEvent>, ApiError> {
        let sql = self.sql()?;
        let rows: Vec<Row> = sql
            .exec(
                "SELECT seq, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                vec![objects::sql_int(after_seq), objects::sql_int(limit as u64)],
            )
            .and_then(|c| c.to_array())
            .map_err(err)?;
        decode(rows)
    }
}
