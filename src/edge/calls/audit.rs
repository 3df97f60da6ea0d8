//! Recording security events in the `AuditLog` object, and the admin query over it. Events are
//! written after the response, through `waitUntil`; a failed write is logged, never turned into a
//! failed request.

use crate::edge::rt::respond::Outcome;
use crate::edge::rt::{config, objects, respond};
use crate::protocol::audit::{AuditEvent, PAGE_LIMIT};
use crate::protocol::cache::TtlCache;
use crate::protocol::error::ApiError;
use crate::protocol::form::Params;
use crate::store::audit::{AuditCommand, Query, Record, AUDIT_OBJECT};
use crate::store::Command;
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

/// Sends `cmd` to the audit log (one object).
pub async fn call<C: Command<Kind = AuditCommand>>(
    env: &Env,
    cmd: C,
) -> std::result::Result<C::Reply, ApiError> {
    objects::call_command(env, config::AUDIT_DO, AUDIT_OBJECT, cmd).await
}

pub async fn record(env: Env, event: AuditEvent) {
    if let Err(e) = call(&env, Record { event }).await {
        console_error!("audit: {}", e.cause.unwrap_or(e.description));
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
        let cmd = Query {
            since: num("since")?,
            partner: params.get("partner").map(str::to_owned),
            kind: params.get("type").map(str::to_owned),
            cursor: num("cursor")?,
            limit,
        };
        let events = call(env, cmd).await?;
        let next = (events.len() == limit)
            .then(|| events.last().map(|e| e.seq))
            .flatten();
        Ok::<_, ApiError>(serde_json::json!({ "events": events, "next_cursor": next }))
    }
    .await;
    match result {
        Ok(body) => Outcome::new(respond::json(200, &body, &[]), "ok"),
        Err(e) => Outcome::error(e),
    }
}
