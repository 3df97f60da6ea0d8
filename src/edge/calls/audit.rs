//! Recording security events in the `AuditLog` object, and the admin query over it. Events are
//! written after the response, through `waitUntil`; a failed write is logged, never turned into a
//! failed request.

use crate::edge::rt::respond::Outcome;
use crate::edge::rt::{config, objects, respond};
use crate::protocol::audit::{AuditEvent, PAGE_LIMIT};
use crate::protocol::cache::TtlCache;
use crate::protocol::error::ApiError;
use crate::protocol::form::Params;
use crate::store::audit::{AuditCommand, AuditReply, AUDIT_OBJECT};
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
