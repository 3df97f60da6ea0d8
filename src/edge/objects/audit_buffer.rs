//! The `AuditBuffer` Durable Object (`audit:{n}`, one of `AUDIT_SHARDS`): holds security events
//! for about `FLUSH_MS`, then hands them to the audit queue as one message. A message's rows are
//! deleted only after its send succeeded; until then the same rows are sent again (with a
//! growing delay), so nothing is lost and a message is always sent with the same content.

use crate::edge::rt::{config, counts, objects, queue};
use crate::protocol::audit::AuditEvent;
use crate::protocol::error::ApiError;
use crate::store::audit::{
    batch_len, retry_delay_ms, Append, AuditBufferCommand, AuditBufferHandler, AuditMessage,
    BUFFER_SCHEMA, FLUSH_MS,
};
use serde::Deserialize;
use std::cell::Cell;
use std::time::Duration;
use worker::{
    console_error, durable_object, DurableObject, Env, Request, Response, Result, SqlStorage,
    SqlStorageValue, State,
};

#[durable_object(alarm)]
pub struct AuditBuffer {
    state: State,
    env: Env,
    schema_ready: Cell<bool>,
    /// Failed sends in a row (for the back-off; forgotten on eviction, which only shortens it).
    failures: Cell<u32>,
}

#[derive(Deserialize)]
struct PendingRow {
    id: String,
    body: String,
}

#[derive(Deserialize)]
struct CountRow {
    n: f64,
}

fn err(e: worker::Error) -> ApiError {
    ApiError::unavailable(format!("audit buffer storage: {e}"))
}

impl DurableObject for AuditBuffer {
    fn new(state: State, env: Env) -> Self {
        AuditBuffer {
            state,
            env,
            schema_ready: Cell::new(false),
            failures: Cell::new(0),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        objects::serve_commands(req, "audit buffer", |cmd: AuditBufferCommand| {
            self.handle(cmd)
        })
        .await
    }

    async fn alarm(&self) -> Result<Response> {
        let next = match counts::background(self.flush()).await {
            Ok(0) => {
                self.failures.set(0);
                None
            }
            Ok(_) => {
                self.failures.set(0);
                Some(0)
            }
            Err(e) => {
                let failures = self.failures.get().saturating_add(1);
                self.failures.set(failures);
                console_error!(
                    "audit buffer: flush failed ({failures} in a row): {}",
                    e.cause.unwrap_or(e.description)
                );
                Some(retry_delay_ms(failures))
            }
        };
        if let Some(ms) = next {
            if let Err(e) = self.arm(ms).await {
                console_error!("audit buffer: cannot re-arm its alarm: {e}");
                // An error from the handler makes the runtime retry the alarm itself.
                return Err(e);
            }
        }
        Response::ok("")
    }
}

impl AuditBuffer {
    fn sql(&self) -> std::result::Result<SqlStorage, ApiError> {
        objects::sql(&self.state, &self.schema_ready, BUFFER_SCHEMA)
    }

    async fn arm(&self, in_ms: u64) -> Result<()> {
        self.state
            .storage()
            .set_alarm(Duration::from_millis(in_ms))
            .await
    }

    /// Sends the message in flight (or marks the oldest pending events as one and sends it);
    /// answers how many events remain pending after it.
    async fn flush(&self) -> std::result::Result<u64, ApiError> {
        let sql = self.sql()?;
        let select = |batch: i64| -> std::result::Result<Vec<PendingRow>, ApiError> {
            sql.exec(
                "SELECT id, body FROM pending WHERE batch = ? ORDER BY rowid LIMIT ?",
                vec![
                    SqlStorageValue::Integer(batch),
                    objects::sql_int(crate::store::audit::FLUSH_EVENTS as u64),
                ],
            )
            .and_then(|c| c.to_array())
            .map_err(err)
        };
        let mut rows = select(1)?;
        if rows.is_empty() {
            let fresh = select(0)?;
            let sizes: Vec<usize> = fresh.iter().map(|r| r.body.len()).collect();
            let n = batch_len(&sizes);
            if let Some(last) = fresh.get(n.saturating_sub(1)).filter(|_| n > 0) {
                // The oldest `n` rows: every row up to the last one's rowid (all are unmarked).
                sql.exec(
                    "UPDATE pending SET batch = 1 WHERE rowid <= (SELECT rowid FROM pending WHERE id = ?)",
                    vec![objects::sql_text(&last.id)],
                )
                .map_err(err)?;
            }
            rows = select(1)?;
        }
        if !rows.is_empty() {
            let mut events = Vec::with_capacity(rows.len());
            for r in &rows {
                let event: AuditEvent = serde_json::from_str(&r.body)
                    .map_err(|e| ApiError::unavailable(format!("corrupt pending event: {e}")))?;
                events.push(event);
            }
            let body = serde_json::to_string(&AuditMessage { events })
                .map_err(|e| ApiError::unavailable(format!("encode message: {e}")))?;
            queue::send(&self.env, config::AUDIT_QUEUE, body).await?;
            sql.exec("DELETE FROM pending WHERE batch = 1", None)
                .map_err(err)?;
        }
        let left: Vec<CountRow> = sql
            .exec("SELECT COUNT(*) AS n FROM pending", None)
            .and_then(|c| c.to_array())
            .map_err(err)?;
        Ok(left.first().map_or(0, |r| r.n as u64))
    }
}

impl AuditBufferHandler for AuditBuffer {
    async fn append(&self, Append { events }: Append) -> std::result::Result<(), ApiError> {
        let sql = self.sql()?;
        for event in events {
            let body =
                serde_json::to_string(&event).map_err(|e| ApiError::unavailable(e.to_string()))?;
            sql.exec(
                "INSERT OR IGNORE INTO pending (id, body, batch) VALUES (?, ?, 0)",
                vec![objects::sql_text(&event.id), SqlStorageValue::String(body)],
            )
            .map_err(err)?;
        }
        let armed = self.state.storage().get_alarm().await.map_err(err)?;
        if armed.is_none() {
            self.arm(FLUSH_MS).await.map_err(err)?;
        }
        Ok(())
    }
}
