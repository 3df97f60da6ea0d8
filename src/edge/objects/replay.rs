//! The `ReplayStore` Durable Object: the first claim of an identifier wins, every later one is
//! a replay. Claims are one synchronous SQLite statement, so concurrent claims cannot both win.

use crate::edge::rt::objects;
use crate::protocol::error::ApiError;
use crate::store::replay::{
    Check, CheckOutcome, Claim, ClaimOutcome, ReplayCommand, ReplayHandler, SCHEMA,
};
use std::cell::Cell;
use worker::{
    durable_object, DurableObject, Env, Request, Response, Result, SqlStorageValue, State,
};

#[durable_object(fetch)]
pub struct ReplayStore {
    state: State,
    schema_ready: Cell<bool>,
}

impl DurableObject for ReplayStore {
    fn new(state: State, _env: Env) -> Self {
        ReplayStore {
            state,
            schema_ready: Cell::new(false),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        objects::serve_commands(req, "replay store", |cmd: ReplayCommand| self.handle(cmd)).await
    }
}

impl ReplayHandler for ReplayStore {
    async fn check(
        &self,
        Check { key, now }: Check,
    ) -> std::result::Result<CheckOutcome, ApiError> {
        let err = |e: worker::Error| ApiError::unavailable(format!("replay storage: {e}"));
        let sql = objects::sql(&self.state, &self.schema_ready, SCHEMA)?;
        let found: Vec<serde_json::Value> = sql
            .exec(
                "SELECT key FROM seen WHERE key = ? AND expires_at >= ?",
                vec![SqlStorageValue::String(key), objects::sql_int(now)],
            )
            .and_then(|c| c.to_array())
            .map_err(err)?;
        Ok(if found.is_empty() {
            CheckOutcome::Unused
        } else {
            CheckOutcome::Used
        })
    }

    async fn claim(
        &self,
        Claim {
            key,
            expires_at,
            now,
        }: Claim,
    ) -> std::result::Result<ClaimOutcome, ApiError> {
        let err = |e: worker::Error| ApiError::unavailable(format!("replay storage: {e}"));
        let sql = objects::sql(&self.state, &self.schema_ready, SCHEMA)?;
        // Forget what can no longer be replayed; the rest decides.
        sql.exec(
            "DELETE FROM seen WHERE expires_at < ?",
            vec![objects::sql_int(now)],
        )
        .map_err(err)?;
        // RETURNING yields the row only when this claim inserted it.
        let inserted: Vec<serde_json::Value> = sql
            .exec(
                "INSERT INTO seen (key, expires_at) VALUES (?, ?) ON CONFLICT(key) DO NOTHING RETURNING key",
                vec![SqlStorageValue::String(key), objects::sql_int(expires_at)],
            )
            .and_then(|c| c.to_array())
            .map_err(err)?;
        Ok(if inserted.is_empty() {
            ClaimOutcome::Replayed
        } else {
            ClaimOutcome::Claimed
        })
    }
}
