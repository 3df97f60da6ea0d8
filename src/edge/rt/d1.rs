//! D1 (the `DB` binding): every D1 operation goes through here, one function per kind (a
//! transaction of statements, a read, the schema), to bound the wait, inject faults in local
//! tests, and count calls. A failure or a time-out is a 503.

use crate::edge::rt::config::{self, Fault};
use crate::edge::rt::counts;
use crate::edge::rt::objects::within;
use crate::protocol::error::ApiError;
use crate::store::usage::{Param, Statement};
use std::time::Duration;
use wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement, Delay, Env};

pub const DB: &str = "DB";

/// How long one D1 operation may take before it is a failure.
pub const TIMEOUT: Duration = Duration::from_secs(10);

fn db(env: &Env) -> Result<D1Database, ApiError> {
    env.d1(DB)
        .map_err(|e| ApiError::unavailable(format!("D1 binding {DB}: {e}")))
}

fn failed(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::unavailable(format!("{DB} {what}: {e}"))
}

fn value(p: &Param) -> JsValue {
    match p {
        // Counts and times stay far below 2^53: exact as JavaScript numbers.
        Param::Int(n) => JsValue::from_f64(*n as f64),
        Param::Text(s) => JsValue::from_str(s),
        Param::Null => JsValue::null(),
    }
}

fn prepare(db: &D1Database, s: &Statement) -> Result<D1PreparedStatement, ApiError> {
    let values: Vec<JsValue> = s.params.iter().map(value).collect();
    db.prepare(s.sql.as_str())
        .bind(&values)
        .map_err(|e| failed("bind", e))
}

/// Waits out an injected hang: the caller's time-out, then a failure.
async fn hang(what: &str) -> ApiError {
    Delay::from(TIMEOUT).await;
    failed(what, "injected hang")
}

/// Runs `statements` as one transaction (D1 `batch()`): all of them or none. Fault injection:
/// `EDGEWARD_INJECT_FAULTS=DB:batch[:failN|hang|lost|lost_once]` (`lost`: it runs, the answer
/// is lost).
pub async fn batch(env: &Env, statements: &[Statement]) -> Result<(), ApiError> {
    let _in_flight = counts::call("d1", DB, DB, "batch");
    let fault = config::injected_fault(env, DB, "batch");
    match fault {
        Some(Fault::Fail) => return Err(failed("batch", "injected fault")),
        Some(Fault::Hang) => return Err(hang("batch").await),
        _ => {}
    }
    let db = db(env)?;
    let prepared = statements
        .iter()
        .map(|s| prepare(&db, s))
        .collect::<Result<Vec<_>, _>>()?;
    match within(TIMEOUT, db.batch(prepared)).await {
        Some(Ok(_)) if fault == Some(Fault::Lost) => Err(failed("batch", "injected lost reply")),
        Some(Ok(_)) => Ok(()),
        Some(Err(e)) => Err(failed("batch", e)),
        None => Err(failed("batch", "no answer in time")),
    }
}

/// The rows of one read, each a JSON object of its columns. Fault injection:
/// `EDGEWARD_INJECT_FAULTS=DB:query[:failN|hang]`.
pub async fn query(env: &Env, statement: &Statement) -> Result<Vec<serde_json::Value>, ApiError> {
    let _in_flight = counts::call("d1", DB, DB, "query");
    match config::injected_fault(env, DB, "query") {
        Some(Fault::Hang) => return Err(hang("query").await),
        Some(_) => return Err(failed("query", "injected fault")),
        None => {}
    }
    let db = db(env)?;
    let stmt = prepare(&db, statement)?;
    match within(TIMEOUT, stmt.all()).await {
        Some(Ok(result)) => result.results().map_err(|e| failed("query", e)),
        Some(Err(e)) => Err(failed("query", e)),
        None => Err(failed("query", "no answer in time")),
    }
}

/// Runs schema statements (`CREATE ... IF NOT EXISTS`, one per line) with D1 `exec`. Fault
/// injection: `EDGEWARD_INJECT_FAULTS=DB:exec[:failN]`.
pub async fn exec(env: &Env, statements: &[String]) -> Result<(), ApiError> {
    let _in_flight = counts::call("d1", DB, DB, "exec");
    if config::injected_fault(env, DB, "exec").is_some() {
        return Err(failed("exec", "injected fault"));
    }
    let db = db(env)?;
    let sql = statements.join("\n");
    match within(TIMEOUT, db.exec(&sql)).await {
        Some(Ok(_)) => Ok(()),
        Some(Err(e)) => Err(failed("exec", e)),
        None => Err(failed("exec", "no answer in time")),
    }
}
