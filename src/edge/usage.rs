//! Usage counters: recorded per request into the isolate's buffer, handed to the `UsageLog`
//! object through `waitUntil` when the buffer is due, and queried by `GET /admin/usage`.
//! Counting never fails or slows a request; an isolate that is evicted before it hands its
//! buffer over loses at most `USAGE_FLUSH_SECONDS` of its counts.

use std::cell::{Cell, RefCell};

use serde::Deserialize;
use worker::{
    console_error, durable_object, Context, DurableObject, Env, Request, Response, Result,
    SqlStorage, SqlStorageValue, State,
};

use super::{config, objects, respond, Outcome};
use crate::protocol::error::ApiError;
use crate::protocol::form::Params;
use crate::protocol::usage::{Buffer, Counts, UsageRow, QUERY_LIMIT, RETENTION_S};
use crate::store::usage::{UsageCommand, UsageReply, SCHEMA, USAGE_OBJECT};

thread_local! {
    static BUFFER: RefCell<Buffer> = RefCell::new(Buffer::default());
}

/// One partner-facing request, as the usage counters see it.
pub struct Counted<'a> {
    pub partner: &'a str,
    pub client: &'a str,
    pub status: u16,
    pub denied: bool,
    pub duration_ms: u64,
}

/// Counts a request; hands the buffer over when it is due.
pub fn record(env: &Env, ctx: &Context, now_ms: u64, r: Counted<'_>) {
    let rows = BUFFER.with(|b| {
        let mut b = b.borrow_mut();
        b.record(
            now_ms,
            r.partner,
            r.client,
            r.status,
            r.denied,
            r.duration_ms,
        );
        b.due(now_ms, config::usage_flush_ms(env)).then(|| b.take())
    });
    if let Some(rows) = rows {
        let env = env.clone();
        ctx.wait_until(async move {
            let cmd = UsageCommand::Add {
                rows,
                now: now_ms / 1000,
            };
            match objects::call::<_, UsageReply>(&env, config::USAGE_DO, USAGE_OBJECT, &cmd).await {
                Ok(UsageReply::Added) => {}
                Ok(UsageReply::Failed { error }) | Err(error) => {
                    console_error!("usage: {}", error.cause.unwrap_or(error.description))
                }
                Ok(_) => console_error!("usage: unexpected reply"),
            }
        });
    }
}

/// `GET /admin/usage?partner=&client=&since=&until=`: rows of the hours from `since` (default:
/// 24 hours ago) to `until` (default: now), in seconds since the epoch, oldest first.
pub async fn query(env: &Env, query: &str, now: u64) -> Outcome {
    let result = async {
        let params = Params::parse(query.as_bytes())?;
        let num =
            |name: &str| params.number(name, "must be a whole number of seconds since the epoch");
        let until = num("until")?.unwrap_or(now);
        let since = num("since")?.unwrap_or(until.saturating_sub(86_400));
        let cmd = UsageCommand::Query {
            partner: params.get("partner").map(str::to_owned),
            client: params.get("client").map(str::to_owned),
            since,
            until,
            limit: QUERY_LIMIT,
        };
        match objects::call::<_, UsageReply>(env, config::USAGE_DO, USAGE_OBJECT, &cmd).await? {
            UsageReply::Rows { rows } => {
                let views: Vec<_> = rows.iter().map(UsageRow::view).collect();
                Ok(serde_json::json!({
                    "since": since,
                    "until": until,
                    "truncated": rows.len() == QUERY_LIMIT,
                    "usage": views,
                }))
            }
            UsageReply::Failed { error } => Err(error),
            UsageReply::Added => Err(ApiError::unavailable("unexpected usage reply")),
        }
    }
    .await;
    match result {
        Ok(body) => Outcome::new(respond::json(200, &body, &[]), "ok"),
        Err(e) => Outcome::error(e),
    }
}

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

fn text(v: Option<String>) -> SqlStorageValue {
    v.map_or(SqlStorageValue::Null, SqlStorageValue::String)
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
        objects::serve(req, "usage log", |cmd: UsageCommand| async move {
            self.execute(cmd)
        })
        .await
    }
}

impl UsageLog {
    fn sql(&self) -> std::result::Result<SqlStorage, ApiError> {
        objects::sql(&self.state, &self.schema_ready, SCHEMA)
    }

    fn execute(&self, cmd: UsageCommand) -> std::result::Result<UsageReply, ApiError> {
        let sql = self.sql()?;
        match cmd {
            UsageCommand::Add { rows, now } => {
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
                Ok(UsageReply::Added)
            }
            UsageCommand::Query {
                partner,
                client,
                since,
                until,
                limit,
            } => {
                let found: Vec<Row> = sql
                    .exec(
                        "SELECT hour, partner, client, counts FROM usage WHERE hour >= ? AND hour <= ? \
                         AND (? IS NULL OR partner = ?) AND (? IS NULL OR client = ?) \
                         ORDER BY hour, partner, client LIMIT ?",
                        vec![
                            objects::sql_int(since - since % 3_600),
                            objects::sql_int(until),
                            text(partner.clone()),
                            text(partner),
                            text(client.clone()),
                            text(client),
                            objects::sql_int(limit as u64),
                        ],
                    )
                    .and_then(|c| c.to_array())
                    .map_err(err)?;
                let rows = found
                    .into_iter()
                    .map(|r| {
                        Ok(UsageRow {
                            hour: r.hour as u64,
                            partner_id: r.partner,
                            client_id: r.client,
                            counts: serde_json::from_str(&r.counts).map_err(corrupt)?,
                        })
                    })
                    .collect::<std::result::Result<Vec<_>, ApiError>>()?;
                Ok(UsageReply::Rows { rows })
            }
        }
    }
}
