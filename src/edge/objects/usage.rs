//! The `UsageLog` Durable Object: the old home of the usage counts (per partner, client and hour
//! in SQLite), before D1. Kept so deployments can move its rows into D1 (`Export`, read by
//! `POST /admin/usage/migrate`); `Add` and `Query` remain for that move's tests.

use crate::edge::rt::objects;
use crate::protocol::error::ApiError;
use crate::protocol::usage::{Counts, UsageRow, RETENTION_S};
use crate::store::usage::{Add, Export, Query, UsageCommand, UsageHandler, SCHEMA};
use serde::Deserialize;
use std::cell::Cell;
use worker::{
    durable_object, DurableObject, Env, Request, Response, Result, SqlStorage, SqlStorageValue,
    State,
};

#[durable_object(fetch)]
pub struct UsageLog {
    state: State,
    schema_ready: Cell<bool>,
}

#[derive(Deserialize)]
struct Row {
    hour: f64,
    partner: String,
    client: String,
    counts: String,
}

fn err(e: worker::Error) -> ApiError {
    ApiError::unavailable(format!("usage storage: {e}"))
}

fn corrupt(e: serde_json::Error) -> ApiError {
    ApiError::unavailable(format!("corrupt usage row: {e}"))
}

impl DurableObject for UsageLog {
    fn new(state: State, _env: Env) -> Self {
        UsageLog {
            state,
            schema_ready: Cell::new(false),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        objects::serve_commands(req, "usage log", |cmd: UsageCommand| self.handle(cmd)).await
    }
}

impl UsageLog {
    fn sql(&self) -> std::result::Result<SqlStorage, ApiError> {
        objects::sql(&self.state, &self.schema_ready, SCHEMA)
    }
}

impl UsageHandler for UsageLog {
    async fn add(&self, Add { rows, now }: Add) -> std::result::Result<(), ApiError> {
        let sql = self.sql()?;
        sql.exec(
            "DELETE FROM usage WHERE hour < ?",
            vec![objects::sql_int(now.saturating_sub(RETENTION_S))],
        )
        .map_err(err)?;
        // One synchronous stretch: the reads and writes of a merge are one transaction.
        for row in rows {
            let existing: Vec<Row> = sql
                .exec(
                    "SELECT hour, partner, client, counts FROM usage WHERE hour = ? AND partner = ? AND client = ?",
                    vec![
                        objects::sql_int(row.hour),
                        SqlStorageValue::String(row.partner_id.clone()),
                        SqlStorageValue::String(row.client_id.clone()),
                    ],
                )
                .and_then(|c| c.to_array())
                .map_err(err)?;
            let mut counts = row.counts;
            if let Some(old) = existing.first() {
                let old: Counts = serde_json::from_str(&old.counts).map_err(corrupt)?;
                counts.merge(&old);
            }
            let body = serde_json::to_string(&counts).map_err(corrupt)?;
            sql.exec(
                "INSERT OR REPLACE INTO usage (hour, partner, client, counts) VALUES (?, ?, ?, ?)",
                vec![
                    objects::sql_int(row.hour),
                    SqlStorageValue::String(row.partner_id),
                    SqlStorageValue::String(row.client_id),
                    SqlStorageValue::String(body),
                ],
            )
            .map_err(err)?;
        }
        Ok(())
    }

    async fn query(
        &self,
        Query {
            partner,
            client,
            since,
            until,
            limit,
        }: Query,
    ) -> std::result::Result<Vec<UsageRow>, ApiError> {
        let sql = self.sql()?;
        let found: Vec<Row> = sql
            .exec(
                "SELECT hour, partner, client, counts FROM usage WHERE hour >= ? AND hour <= ? \
                 AND (? IS NULL OR partner = ?) AND (? IS NULL OR client = ?) \
                 ORDER BY hour, partner, client LIMIT ?",
                vec![
                    objects::sql_int(since - since % 3_600),
                    objects::sql_int(until),
                    objects::sql_opt_text(partner.clone()),
                    objects::sql_opt_text(partner),
                    objects::sql_opt_text(client.clone()),
                    objects::sql_opt_text(client),
                    objects::sql_int(limit as u64),
                ],
            )
            .and_then(|c| c.to_array())
            .map_err(err)?;
        found.into_iter().map(into_row).collect()
    }

    async fn export(
        &self,
        Export { after, limit }: Export,
    ) -> std::result::Result<Vec<UsageRow>, ApiError> {
        let sql = self.sql()?;
        let (hour, partner, client) = match after {
            Some(k) => (Some(k.hour), Some(k.partner_id), Some(k.client_id)),
            None => (None, None, None),
        };
        let found: Vec<Row> = sql
            .exec(
                "SELECT hour, partner, client, counts FROM usage WHERE ? IS NULL \
                 OR hour > ? OR (hour = ? AND (partner > ? OR (partner = ? AND client > ?))) \
                 ORDER BY hour, partner, client LIMIT ?",
                vec![
                    hour.map_or(SqlStorageValue::Null, objects::sql_int),
                    hour.map_or(SqlStorageValue::Null, objects::sql_int),
                    hour.map_or(SqlStorageValue::Null, objects::sql_int),
                    objects::sql_opt_text(partner.clone()),
                    objects::sql_opt_text(partner),
                    objects::sql_opt_text(client),
                    objects::sql_int(limit as u64),
                ],
            )
            .and_then(|c| c.to_array())
            .map_err(err)?;
        found.into_iter().map(into_row).collect()
    }
}

fn into_row(r: Row) -> std::result::Result<UsageRow, ApiError> {
    Ok(UsageRow {
        hour: r.hour as u64,
        partner_id: r.partner,
        client_id: r.client,
        counts: serde_json::from_str(&r.counts).map_err(corrupt)?,
    })
}
