//! The `AuditLog` Durable Object, recording security events, and the admin query over it.
//! Events are written after the response, through `waitUntil`; a failed write is logged, never
//! turned into a failed request.

use std::cell::{Cell, RefCell};

use serde::Deserialize;
use worker::{
    console_error, durable_object, DurableObject, Env, Request, Response, Result, SqlStorage,
    SqlStorageValue, State,
};

use super::{config, objects, respond, Outcome};
use crate::protocol::audit::{AuditEvent, PAGE_LIMIT, RETENTION_S};
use crate::protocol::cache::TtlCache;
use crate::protocol::error::ApiError;
use crate::protocol::form::Params;
use crate::store::audit::{AuditCommand, AuditReply, AUDIT_OBJECT, SCHEMA};

/// Kinds a flood could produce: at most one event per kind and partner per isolate per window.
const THROTTLED: &[&str] = &[
    "origin_denied",
    "client_auth_failed",
    "admin_auth_failed",
    "token_refused",
    "scope_denied",
    "rate_limited",
    "partner_suspended",
];
const THROTTLE_MS: u64 = 10_000;

thread_local! {
    static RECENT: RefCell<TtlCache<()>> = RefCell::new(TtlCache::new(256));
}

/// Whether this event should be written now (throttled kinds are sampled per isolate).
pub fn admit(event: &AuditEvent, now_ms: u64) -> bool {
    if !THROTTLED.contains(&event.kind.as_str()) {
        return true;
    }
    let key = format!("{}|{}", event.kind, event.partner.as_deref().unwrap_or(""));
    RECENT.with(|r| {
        let mut r = r.borrow_mut();
        if r.get(&key, now_ms).is_some() {
            return false;
        }
        r.insert(key, (), now_ms, THROTTLE_MS);
        true
    })
}

pub async fn record(env: Env, event: AuditEvent) {
    let cmd = AuditCommand::Record { event };
    match objects::call::<_, AuditReply>(&env, config::AUDIT_DO, AUDIT_OBJECT, &cmd).await {
        Ok(AuditReply::Recorded) => {}
        Ok(AuditReply::Failed { error }) => {
            console_error!("audit: {}", error.cause.unwrap_or(error.description))
        }
        Ok(_) => console_error!("audit: unexpected reply"),
        Err(e) => console_error!("audit: {}", e.cause.unwrap_or(e.description)),
    }
}

/// `GET /admin/audit?since=&partner=&type=&cursor=`: a page of events, oldest first, and the
/// cursor of the next page.
pub async fn query(env: &Env, query: &str) -> Outcome {
    let result = async {
        let params = Params::parse(query.as_bytes())?;
        let num = |name: &str| params.number(name, "must be a whole number");
        let limit = num("limit")?.map_or(PAGE_LIMIT, |l| {
            usize::try_from(l)
                .unwrap_or(PAGE_LIMIT)
                .clamp(1, PAGE_LIMIT)
        });
        let cmd = AuditCommand::Query {
            since: num("since")?,
            partner: params.get("partner").map(str::to_owned),
            kind: params.get("type").map(str::to_owned),
            cursor: num("cursor")?,
            limit,
        };
        match objects::call::<_, AuditReply>(env, config::AUDIT_DO, AUDIT_OBJECT, &cmd).await? {
            AuditReply::Events { events } => {
                let next = (events.len() == limit)
                    .then(|| events.last().map(|e| e.seq))
                    .flatten();
                Ok(serde_json::json!({ "events": events, "next_cursor": next }))
            }
            AuditReply::Failed { error } => Err(error),
            AuditReply::Recorded => Err(ApiError::unavailable("unexpected audit reply")),
        }
    }
    .await;
    match result {
        Ok(body) => Outcome::new(respond::json(200, &body, &[]), "ok"),
        Err(e) => Outcome::error(e),
    }
}

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
        objects::serve(req, "audit log", |cmd: AuditCommand| async move {
            self.execute(cmd)
        })
        .await
    }
}

impl AuditLog {
    fn sql(&self) -> std::result::Result<SqlStorage, ApiError> {
        objects::sql(&self.state, &self.schema_ready, SCHEMA)
    }

    fn execute(&self, cmd: AuditCommand) -> std::result::Result<AuditReply, ApiError> {
        let sql = self.sql()?;
        match cmd {
            AuditCommand::Record { event } => {
                sql.exec(
                    "DELETE FROM events WHERE ts < ?",
                    vec![objects::sql_int(event.ts.saturating_sub(RETENTION_S))],
                )
                .map_err(err)?;
                let body = serde_json::to_string(&event)
                    .map_err(|e| ApiError::unavailable(e.to_string()))?;
                sql.exec(
                    "INSERT INTO events (ts, kind, partner, body) VALUES (?, ?, ?, ?)",
                    vec![
                        objects::sql_int(event.ts),
                        SqlStorageValue::String(event.kind.clone()),
                        event
                            .partner
                            .clone()
                            .map_or(SqlStorageValue::Null, SqlStorageValue::String),
                        SqlStorageValue::String(body),
                    ],
                )
                .map_err(err)?;
                Ok(AuditReply::Recorded)
            }
            AuditCommand::Query {
                since,
                partner,
                kind,
                cursor,
                limit,
            } => {
                let rows: Vec<Row> = sql
                    .exec(
                        "SELECT seq, body FROM events WHERE seq > ? AND ts >= ? \
                         AND (? IS NULL OR partner = ?) AND (? IS NULL OR kind = ?) ORDER BY seq LIMIT ?",
                        vec![
                            objects::sql_int(cursor.unwrap_or(0)),
                            objects::sql_int(since.unwrap_or(0)),
                            partner.clone().map_or(SqlStorageValue::Null, SqlStorageValue::String),
                            partner.map_or(SqlStorageValue::Null, SqlStorageValue::String),
                            kind.clone().map_or(SqlStorageValue::Null, SqlStorageValue::String),
                            kind.map_or(SqlStorageValue::Null, SqlStorageValue::String),
                            objects::sql_int(limit as u64),
                        ],
                    )
                    .and_then(|c| c.to_array())
                    .map_err(err)?;
                let mut events = Vec::with_capacity(rows.len());
                for r in rows {
                    let mut e: AuditEvent = serde_json::from_str(&r.body)
                        .map_err(|e| ApiError::unavailable(format!("corrupt event: {e}")))?;
                    e.seq = r.seq as u64;
                    events.push(e);
                }
                Ok(AuditReply::Events { events })
            }
        }
    }
}
