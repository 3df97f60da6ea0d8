//! The `ReplayStore` Durable Object: the first claim of an identifier wins, every later one is
//! a replay. Claims are one synchronous SQLite statement, so concurrent claims cannot both win.
//! A shard (`replay:v2:{n}`) keeps `claims`, by signer and key; an object of the old per-signer
//! layout (`replay:{signer}`) keeps `seen`, by key, and is only asked `Check` until
//! `REPLAY_LEGACY_UNTIL`.

use crate::edge::rt::objects;
use crate::protocol::error::ApiError;
use crate::store::replay::{
    Check, CheckKey, CheckOutcome, Claim, ClaimKey, ClaimOutcome, ReplayCommand, ReplayHandler,
    LEGACY_SCHEMA, PRUNE_BATCH, SCHEMA,
};
use std::cell::Cell;
use worker::{
    durable_object, DurableObject, Env, Request, Response, Result, SqlStorage, SqlStorageValue,
    State,
};

#[durable_object(fetch)]
pub struct ReplayStore {
    state: State,
    schema_ready: Cell<bool>,
    legacy_ready: Cell<bool>,
}

impl DurableObject for ReplayStore {
    fn new(state: State, _env: Env) -> Self {
        ReplayStore {
            state,
            schema_ready: Cell::new(false),
            legacy_ready: Cell::new(false),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        objects::serve_commands(req, "replay store", |cmd: ReplayCommand| self.handle(cmd)).await
    }
}

fn storage_err(e: worker::Error) -> ApiError {
    ApiError::unavailable(format!("replay storage: {e}"))
}

/// Runs a statement and answers whether it yielded any row.
fn any_row(
    sql: &SqlStorage,
    query: &str,
    args: Vec<SqlStorageValue>,
) -> std::result::Result<bool, ApiError> {
    let rows: Vec<serde_json::Value> = sql
        .exec(query, args)
        .and_then(|c| c.to_array())
        .map_err(storage_err)?;
    Ok(!rows.is_empty())
}

/// Forgets at most `PRUNE_BATCH` rows that can no longer be replayed, found through the expiry
/// index: a bounded cost per claim, and more rows go than a claim adds.
fn prune(sql: &SqlStorage, table: &str, now: u64) -> std::result::Result<(), ApiError> {
    let query = format!(
        "DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE expires_at < ? ORDER BY expires_at LIMIT {PRUNE_BATCH})"
    );
    sql.exec(&query, vec![objects::sql_int(now)])
        .map_err(storage_err)?;
    Ok(())
}

fn claimed(inserted: bool) -> ClaimOutcome {
    if inserted {
        ClaimOutcome::Claimed
    } else {
        ClaimOutcome::Replayed
    }
}

fn checked(found: bool) -> CheckOutcome {
    if found {
        CheckOutcome::Used
    } else {
        CheckOutcome::Unused
    }
}

impl ReplayHandler for ReplayStore {
    async fn claim_key(
        &self,
        ClaimKey {
            signer,
            key,
            expires_at,
            now,
        }: ClaimKey,
    ) -> std::result::Result<ClaimOutcome, ApiError> {
        let sql = objects::sql(&self.state, &self.schema_ready, SCHEMA)?;
        prune(&sql, "claims", now)?;
        // An expired row not pruned yet is replaced: it can no longer be replayed.
        // RETURNING yields the row only when this claim inserted or replaced it.
        let inserted = any_row(
            &sql,
            "INSERT INTO claims (signer, key, expires_at) VALUES (?, ?, ?) ON CONFLICT(signer, key) DO UPDATE SET expires_at = excluded.expires_at WHERE claims.expires_at < ? RETURNING key",
            vec![
                SqlStorageValue::String(signer),
                SqlStorageValue::String(key),
                objects::sql_int(expires_at),
                objects::sql_int(now),
            ],
        )?;
        Ok(claimed(inserted))
    }

    async fn check_key(
        &self,
        CheckKey { signer, key, now }: CheckKey,
    ) -> std::result::Result<CheckOutcome, ApiError> {
        let sql = objects::sql(&self.state, &self.schema_ready, SCHEMA)?;
        let found = any_row(
            &sql,
            "SELECT key FROM claims WHERE signer = ? AND key = ? AND expires_at >= ?",
            vec![
                SqlStorageValue::String(signer),
                SqlStorageValue::String(key),
                objects::sql_int(now),
            ],
        )?;
        Ok(checked(found))
    }

    async fn claim(
        &self,
        Claim {
            key,
            expires_at,
            now,
        }: Claim,
    ) -> std::result::Result<ClaimOutcome, ApiError> {
        let sql = objects::sql(&self.state, &self.legacy_ready, LEGACY_SCHEMA)?;
        prune(&sql, "seen", now)?;
        let inserted = any_row(
            &sql,
            "INSERT INTO seen (key, expires_at) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET expires_at = excluded.expires_at WHERE seen.expires_at < ? RETURNING key",
            vec![
                SqlStorageValue::String(key),
                objects::sql_int(expires_at),
                objects::sql_int(now),
            ],
        )?;
        Ok(claimed(inserted))
    }

    async fn check(
        &self,
        Check { key, now }: Check,
    ) -> std::result::Result<CheckOutcome, ApiError> {
        let sql = objects::sql(&self.state, &self.legacy_ready, LEGACY_SCHEMA)?;
        let found = any_row(
            &sql,
            "SELECT key FROM seen WHERE key = ? AND expires_at >= ?",
            vec![SqlStorageValue::String(key), objects::sql_int(now)],
        )?;
        Ok(checked(found))
    }
}
