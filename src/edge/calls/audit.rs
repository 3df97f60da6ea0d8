//! The audit trail: recording security events (to a random `AuditBuffer` shard, which hands
//! them to the audit queue; its consumer archives them in R2), the admin query over the archive,
//! and the move of the old single `AuditLog` object's events into it. Events are recorded after
//! the response, through `waitUntil`; a failed write is logged, never turned into a failed
//! request.

use crate::edge::rt::respond::Outcome;
use crate::edge::rt::{config, objects, queue, r2, random, respond};
use crate::protocol::audit::{AuditEvent, PAGE_LIMIT, RETENTION_S};
use crate::protocol::cache::TtlCache;
use crate::protocol::error::ApiError;
use crate::protocol::form::Params;
use crate::store::audit::{
    group, key_may_match, legacy_block, shard_name, start_position, Append, AuditMessage, Cursor,
    Export, Record, ARCHIVE_PREFIX, AUDIT_OBJECT, LIST_LIMIT, MIGRATE_BLOCK, PAGE_GETS, PAGE_LISTS,
};
use std::cell::RefCell;
use worker::{console_error, Env};

/// Kinds a flood could produce: at most one event per kind and partner per isolate per window.
const THROTTLED: &[&str] = &[
    "origin_denied",
    "client_auth_failed",
    "admin_auth_failed",
    "token_refused",
    "scope_denied",
    "rate_limited",
    "partner_suspended",
    "registration_auth_failed",
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new event's id: 128 random bits in hex. Without randomness, one from the request id and
/// the time (unique enough for deduplication, which is all the id is for).
pub fn new_id(request_id: &str, now_ms: u64) -> String {
    match random::bytes::<16>() {
        Ok(b) => hex(&b),
        Err(_) => {
            let clean: String = request_id
                .bytes()
                .filter(u8::is_ascii_alphanumeric)
                .map(|b| char::from(b.to_ascii_lowercase()))
                .take(40)
                .collect();
            format!("{now_ms:013}{clean}")
        }
    }
}

/// Records one event: appended to a random buffer shard; if that fails, sent to the queue
/// directly as a message of its own; if that fails too, logged.
pub async fn record(env: Env, event: AuditEvent) {
    if config::legacy_audit_writes(&env) {
        let old = objects::call_command(&env, config::AUDIT_DO, AUDIT_OBJECT, Record { event });
        if let Err(e) = old.await {
            console_error!("audit (legacy): {}", e.cause.unwrap_or(e.description));
        }
        return;
    }
    let shard = random::bytes::<4>().map_or(0, u32::from_le_bytes);
    let events = vec![event];
    let appended = objects::call_command(
        &env,
        config::AUDIT_BUFFER_DO,
        &shard_name(shard),
        Append {
            events: events.clone(),
        },
    )
    .await;
    let Err(e) = appended else { return };
    console_error!(
        "audit buffer: {}; sending the event directly",
        e.cause.unwrap_or(e.description)
    );
    let direct = match serde_json::to_string(&AuditMessage { events }) {
        Ok(body) => queue::send(&env, config::AUDIT_QUEUE, body).await,
        Err(e) => Err(ApiError::unavailable(format!("encode: {e}"))),
    };
    if let Err(e) = direct {
        console_error!("audit: event lost: {}", e.cause.unwrap_or(e.description));
    }
}

/// Writes one queue message's events to the archive: one object per hour and partner, under
/// a key derived from its content (a second delivery overwrites the same objects). Answers
/// how many objects were written.
pub async fn archive(env: &Env, events: Vec<AuditEvent>) -> Result<usize, ApiError> {
    let objects = group(events);
    for o in &objects {
        r2::put(env, config::AUDIT_ARCHIVE_R2, &o.key, o.body.clone()).await?;
    }
    Ok(objects.len())
}

struct Filter {
    floor: u64,
    partner: Option<String>,
    kind: Option<String>,
}

impl Filter {
    fn keeps(&self, e: &AuditEvent) -> bool {
        e.ts >= self.floor
            && self.kind.as_ref().is_none_or(|k| &e.kind == k)
            && self
                .partner
                .as_ref()
                .is_none_or(|p| e.partner.as_ref() == Some(p))
    }
}

enum Page {
    /// Stopped at this position (full page, or the work bound): more may follow.
    More(Cursor),
    /// The archive has nothing after what was answered.
    End,
}

/// Reads one page from the archive: from `pos`, at most `limit` events passing `filter`, with
/// at most `PAGE_LISTS` listings and `PAGE_GETS` object reads.
async fn read_page(
    env: &Env,
    mut pos: Cursor,
    filter: &Filter,
    limit: usize,
    out: &mut Vec<AuditEvent>,
) -> Result<Page, ApiError> {
    let mut gets = 0usize;
    let mut lists = 0usize;
    // Lines `from..` of `key` into `out`; the position to resume from if the page filled.
    let take = |key: &str, body: &str, from: usize, out: &mut Vec<AuditEvent>| {
        let lines: Vec<&str> = body.lines().filter(|l| !l.trim().is_empty()).collect();
        for (i, line) in lines.iter().enumerate().skip(from) {
            let event: AuditEvent = serde_json::from_str(line)
                .map_err(|e| ApiError::unavailable(format!("corrupt archive object {key}: {e}")))?;
            if filter.keeps(&event) {
                out.push(event);
                if out.len() >= limit {
                    let next = i.saturating_add(1);
                    let line = if next < lines.len() { next } else { 0 };
                    return Ok::<_, ApiError>(Some(Cursor {
                        after: key.to_owned(),
                        line: u32::try_from(line).unwrap_or(0),
                    }));
                }
            }
        }
        Ok(None)
    };
    if pos.line > 0 {
        gets += 1;
        if let Some(body) = r2::get(env, config::AUDIT_ARCHIVE_R2, &pos.after).await? {
            let from = usize::try_from(pos.line).unwrap_or(usize::MAX);
            if let Some(next) = take(&pos.after, &body, from, out)? {
                return Ok(Page::More(next));
            }
        }
        pos.line = 0;
    }
    loop {
        if lists >= PAGE_LISTS {
            return Ok(Page::More(pos));
        }
        lists += 1;
        let (keys, truncated) = r2::list(
            env,
            config::AUDIT_ARCHIVE_R2,
            ARCHIVE_PREFIX,
            &pos.after,
            LIST_LIMIT,
        )
        .await?;
        for key in keys {
            if !key_may_match(&key, filter.partner.as_deref()) {
                pos = Cursor {
                    after: key,
                    line: 0,
                };
                continue;
            }
            if gets >= PAGE_GETS {
                return Ok(Page::More(pos));
            }
            gets += 1;
            if let Some(body) = r2::get(env, config::AUDIT_ARCHIVE_R2, &key).await? {
                if let Some(next) = take(&key, &body, 0, out)? {
                    return Ok(Page::More(next));
                }
            }
            pos = Cursor {
                after: key,
                line: 0,
            };
        }
        if !truncated {
            return Ok(Page::End);
        }
    }
}

/// `GET /admin/audit?since=&partner=&type=&cursor=&limit=`: a page of events of the last 90
/// days from the archive (oldest first by hour, then by object: see docs/storage.md), and the
/// opaque cursor of the next page (null at the end).
pub async fn query(env: &Env, query: &str, now: u64) -> Outcome {
    let result = async {
        let params = Params::parse(query.as_bytes())?;
        let num = |name: &str| params.number(name, "must be a whole number");
        let limit = num("limit")?.map_or(PAGE_LIMIT, |l| {
            usize::try_from(l)
                .unwrap_or(PAGE_LIMIT)
                .clamp(1, PAGE_LIMIT)
        });
        let since = num("since")?;
        let cursor = params.get("cursor").map(Cursor::decode).transpose()?;
        let filter = Filter {
            floor: since.unwrap_or(0).max(now.saturating_sub(RETENTION_S)),
            partner: params.get("partner").map(str::to_owned),
            kind: params.get("type").map(str::to_owned),
        };
        let start = start_position(cursor, filter.floor);
        let mut events = Vec::with_capacity(limit);
        let page = read_page(env, start, &filter, limit, &mut events).await?;
        let next = match page {
            Page::More(c) => Some(c.encode()),
            Page::End => None,
        };
        Ok::<_, ApiError>(serde_json::json!({ "events": events, "next_cursor": next }))
    }
    .await;
    match result {
        Ok(body) => Outcome::new(respond::json(200, &body, &[]), "ok"),
        Err(e) => Outcome::error(e),
    }
}

/// Where the migration keeps its progress (the old log's last moved `seq`), in the archive's
/// bucket but outside `events/`.
const MIGRATION_PROGRESS: &str = "migration/audit-log-progress";

/// `POST /admin/audit/migrate[?from=SEQ]`: moves one block of the old `AuditLog` object's events
/// into the archive, in its layout, with ids and keys derived from their old `seq` (a step run
/// again writes the same objects); answers the progress and whether everything is moved.
/// `from` restarts from a `seq` (0: from the start); otherwise the stored progress is used.
pub async fn migrate(env: &Env, query: &str, now: u64) -> Outcome {
    let result = async {
        let params = Params::parse(query.as_bytes())?;
        let from = params.number("from", "must be a whole number")?;
        let after = match from {
            Some(f) => f,
            None => r2::get(env, config::AUDIT_ARCHIVE_R2, MIGRATION_PROGRESS)
                .await?
                .and_then(|t| t.trim().parse::<u64>().ok())
                .unwrap_or(0),
        };
        let limit = usize::try_from(MIGRATE_BLOCK).unwrap_or(200);
        let found = objects::call_command(
            env,
            config::AUDIT_DO,
            AUDIT_OBJECT,
            Export {
                after_seq: after,
                limit,
            },
        )
        .await?;
        let exported = found.len();
        let (block, next) = legacy_block(found, after);
        let in_block = block.len();
        let floor = now.saturating_sub(RETENTION_S);
        let moved: Vec<AuditEvent> = block.into_iter().filter(|e| e.ts >= floor).collect();
        let count = moved.len();
        let written = archive(env, moved).await?;
        r2::put(
            env,
            config::AUDIT_ARCHIVE_R2,
            MIGRATION_PROGRESS,
            next.to_string(),
        )
        .await?;
        let done = exported < limit && in_block == exported;
        Ok::<_, ApiError>(serde_json::json!({
            "moved": count,
            "expired": in_block.saturating_sub(count),
            "objects": written,
            "after_seq": next,
            "done": done,
        }))
    }
    .await;
    match result {
        Ok(body) => Outcome::new(respond::json(200, &body, &[]), "ok"),
        Err(e) => Outcome::error(e),
    }
}
