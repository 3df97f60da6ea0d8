//! Usage counters: recorded per request into the isolate's outbox, sent to the usage queue
//! (`USAGE_QUEUE`) through `waitUntil` when the buffer is due, applied to D1 by the queue's
//! consumer, and queried by `GET /admin/usage` from D1. Counting never fails or slows a
//! request; an isolate that is evicted before it sends its buffer loses at most
//! `USAGE_FLUSH_SECONDS` of its counts. A send that fails keeps its message (same batch id) for
//! the next flush, within bounds (`protocol::usage::Outbox`).
//!
//! The old home of the counts, the `UsageLog` object, is reached here too: only to move its
//! rows into D1 (`migrate_page`), and, for that move's test, to seed it.

use crate::edge::rt::respond::Outcome;
use crate::edge::rt::{clock, config, counts, d1, objects, queue, random, respond};
use crate::protocol::error::ApiError;
use crate::protocol::form::Params;
use crate::protocol::usage::{batch_id, Outbox, UsageBatch, UsageRow, QUERY_LIMIT};
use crate::store::usage::{
    applied_id, applied_queries, apply_statements, d1_schema, groups, query_statement, row_from_d1,
    Add, Applying, Export, Query, UsageCommand, UsageKey, USAGE_OBJECT,
};
use crate::store::Command;
use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use worker::{console_error, console_log, Context, Env};

/// How often one isolate deletes expired rows and batch ids (inside an apply transaction).
const PRUNE_EVERY_MS: u64 = 5 * 60_000;

thread_local! {
    static OUTBOX: RefCell<Outbox> = RefCell::new(Outbox::default());
    /// The D1 schema was created (or found) by this isolate.
    static SCHEMA_READY: Cell<bool> = const { Cell::new(false) };
    /// When this isolate last pruned (ms; 0: never).
    static LAST_PRUNE_MS: Cell<u64> = const { Cell::new(0) };
}

/// Sends `cmd` to the old usage log object (one object).
pub async fn call<C: Command<Kind = UsageCommand>>(
    env: &Env,
    cmd: C,
) -> std::result::Result<C::Reply, ApiError> {
    objects::call_command(env, config::USAGE_DO, USAGE_OBJECT, cmd).await
}

/// One partner-facing request, as the usage counters see it.
pub struct Counted<'a> {
    pub partner: &'a str,
    pub client: &'a str,
    pub status: u16,
    pub denied: bool,
    pub duration_ms: u64,
}

fn new_batch_id() -> String {
    // Without randomness the message still needs an id: the time and a per-isolate counter.
    random::bytes::<16>().map(batch_id).unwrap_or_else(|_| {
        thread_local!(static N: Cell<u64> = const { Cell::new(0) });
        let n = N.with(|c| {
            c.set(c.get() + 1);
            c.get()
        });
        format!("{:016x}{n:016x}", clock::now_ms())
    })
}

/// Counts a request; sends what is due.
pub fn record(env: &Env, ctx: &Context, now_ms: u64, r: Counted<'_>) {
    let interval = config::usage_flush_ms(env);
    let (messages, lost) = OUTBOX.with(|o| {
        let mut o = o.borrow_mut();
        o.buffer.record(
            now_ms,
            r.partner,
            r.client,
            r.status,
            r.denied,
            r.duration_ms,
        );
        (o.due(now_ms, interval, new_batch_id), o.take_lost())
    });
    if lost > 0 {
        console_error!("usage: {lost} requests not counted (buffer full while sends failed)");
    }
    if !messages.is_empty() {
        ctx.wait_until(counts::background(flush(
            env.clone(),
            messages,
            now_ms,
            interval,
        )));
    }
}

/// Sends the messages in order; from the first that fails on, they are kept for the next flush.
async fn flush(env: Env, mut messages: Vec<UsageBatch>, now_ms: u64, interval: u64) {
    if config::usage_to_legacy_object(&env) {
        return to_legacy_object(&env, messages, now_ms).await;
    }
    while !messages.is_empty() {
        let body = messages.first().map(UsageBatch::encode).unwrap_or_default();
        if let Err(error) = queue::send(&env, config::USAGE_QUEUE, body).await {
            console_error!(
                "usage: send failed, {} messages kept for the next flush: {}",
                messages.len(),
                error.cause.unwrap_or(error.description)
            );
            OUTBOX.with(|o| o.borrow_mut().failed(now_ms, interval, messages));
            return;
        }
        messages.remove(0);
    }
}

/// The test switch `EDGEWARD_USAGE_TO_LEGACY_OBJECT` (loopback only): counts go to the old
/// object, as before D1, so the migration has something to move.
async fn to_legacy_object(env: &Env, messages: Vec<UsageBatch>, now_ms: u64) {
    let rows: Vec<UsageRow> = messages.into_iter().flat_map(|m| m.rows).collect();
    let n = rows.len();
    match call(
        env,
        Add {
            rows,
            now: now_ms / 1000,
        },
    )
    .await
    {
        Ok(()) => console_log!("usage: {n} rows handed to the legacy object (test switch)"),
        Err(error) => console_error!("usage: {}", error.cause.unwrap_or(error.description)),
    }
}

/// Creates the D1 tables unless this isolate did already.
async fn ensure_schema(env: &Env) -> Result<(), ApiError> {
    if SCHEMA_READY.with(Cell::get) {
        return Ok(());
    }
    d1::exec(env, &d1_schema()).await?;
    SCHEMA_READY.with(|c| c.set(true));
    Ok(())
}

/// What became of one batch handed to `apply`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Its rows were added now.
    Now,
    /// Its batch id was applied before: nothing was added.
    Already,
    /// Not applied (D1 failed): send it again later.
    Failed,
}

/// Applies batches to D1: each group of batches (up to `MAX_GROUP_ROWS` rows) in one
/// transaction. A transaction that fails is looked into: the batches whose id is recorded are
/// `Already` (applied before, or by this very transaction whose answer was lost), the others
/// are applied again once without them, or are `Failed`.
pub async fn apply(env: &Env, batches: &[Applying<'_>], now_ms: u64) -> Vec<Applied> {
    let mut out = vec![Applied::Failed; batches.len()];
    if let Err(e) = ensure_schema(env).await {
        console_error!("usage: schema: {}", e.cause.unwrap_or(e.description));
        return out;
    }
    let sizes: Vec<usize> = batches.iter().map(|b| b.rows.len()).collect();
    for range in groups(&sizes) {
        if let (Some(group), Some(status)) = (batches.get(range.clone()), out.get_mut(range)) {
            apply_group(env, group, now_ms, status).await;
        }
    }
    out
}

async fn apply_group(env: &Env, group: &[Applying<'_>], now_ms: u64, out: &mut [Applied]) {
    let now = now_ms / 1000;
    let prune = now_ms.saturating_sub(LAST_PRUNE_MS.with(Cell::get)) >= PRUNE_EVERY_MS;
    let first = d1::batch(env, &apply_statements(group, now, prune)).await;
    let cause = match first {
        Ok(()) => {
            out.fill(Applied::Now);
            if prune {
                LAST_PRUNE_MS.with(|c| c.set(now_ms));
            }
            return;
        }
        Err(e) => e.cause.unwrap_or(e.description),
    };
    let ids: Vec<&str> = group
        .iter()
        .map(|b| b.batch)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let known = match applied(env, &ids).await {
        Ok(known) => known,
        Err(e) => {
            console_error!(
                "usage: apply failed ({cause}); which were applied is not known: {}",
                e.cause.unwrap_or(e.description)
            );
            return;
        }
    };
    let mut rest = Vec::new();
    let mut rest_at = Vec::new();
    for (i, b) in group.iter().enumerate() {
        if known.contains(b.batch) {
            if let Some(s) = out.get_mut(i) {
                *s = Applied::Already;
            }
        } else {
            rest.push(Applying {
                batch: b.batch,
                rows: b.rows,
            });
            rest_at.push(i);
        }
    }
    if rest.len() == group.len() {
        console_error!("usage: apply failed: {cause}");
        return;
    }
    if rest.is_empty() {
        return;
    }
    match d1::batch(env, &apply_statements(&rest, now, false)).await {
        Ok(()) => {
            for i in rest_at {
                if let Some(s) = out.get_mut(i) {
                    *s = Applied::Now;
                }
            }
        }
        Err(e) => console_error!("usage: apply failed: {}", e.cause.unwrap_or(e.description)),
    }
}

/// Which of `ids` D1 records as applied.
async fn applied(env: &Env, ids: &[&str]) -> Result<BTreeSet<String>, ApiError> {
    let mut known = BTreeSet::new();
    for q in applied_queries(ids) {
        known.extend(d1::query(env, &q).await?.iter().filter_map(applied_id));
    }
    Ok(known)
}

/// One page of the move of the old object's rows into D1.
pub struct MigratedPage {
    /// Rows added to D1 now.
    pub moved: usize,
    /// Rows found moved by an earlier run (nothing added).
    pub already: usize,
    /// The last row of the page: where the next page starts.
    pub next: Option<UsageKey>,
    /// No rows after this page.
    pub done: bool,
}

/// Moves the rows after `after` (at most `limit`) from the `UsageLog` object into D1, each
/// under its own batch id (`UsageKey::migration_batch`): running it again adds nothing.
pub async fn migrate_page(
    env: &Env,
    after: Option<UsageKey>,
    limit: usize,
    now_ms: u64,
) -> Result<MigratedPage, ApiError> {
    let rows = call(env, Export { after, limit }).await?;
    let ids: Vec<String> = rows
        .iter()
        .map(|r| UsageKey::of(r).migration_batch())
        .collect();
    let batches: Vec<Applying<'_>> = rows
        .iter()
        .zip(&ids)
        .map(|(row, id)| Applying {
            batch: id,
            rows: std::slice::from_ref(row),
        })
        .collect();
    let results = apply(env, &batches, now_ms).await;
    if results.contains(&Applied::Failed) {
        return Err(ApiError::unavailable(
            "usage migration: D1 failed; run the same page again",
        ));
    }
    Ok(MigratedPage {
        moved: results.iter().filter(|r| **r == Applied::Now).count(),
        already: results.iter().filter(|r| **r == Applied::Already).count(),
        next: rows.last().map(UsageKey::of),
        done: rows.len() < limit,
    })
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
        let q = Query {
            partner: params.get("partner").map(str::to_owned),
            client: params.get("client").map(str::to_owned),
            since,
            until,
            limit: QUERY_LIMIT,
        };
        ensure_schema(env).await?;
        let found = d1::query(env, &query_statement(q)).await?;
        let rows = found
            .iter()
            .map(|v| row_from_d1(v).ok_or_else(|| ApiError::unavailable("corrupt usage row")))
            .collect::<Result<Vec<_>, _>>()?;
        let views: Vec<_> = rows.iter().map(UsageRow::view).collect();
        Ok::<_, ApiError>(serde_json::json!({
            "since": since,
            "until": until,
            "truncated": rows.len() == QUERY_LIMIT,
            "usage": views,
        }))
    }
    .await;
    match result {
        Ok(body) => Outcome::new(respond::json(200, &body, &[]), "ok"),
        Err(e) => Outcome::error(e),
    }
}
