//! Usage counters: recorded per request into the isolate's buffer, handed to the `UsageLog`
//! object through `waitUntil` when the buffer is due, and queried by `GET /admin/usage`.
//! Counting never fails or slows a request; an isolate that is evicted before it hands its
//! buffer over loses at most `USAGE_FLUSH_SECONDS` of its counts.

use crate::edge::rt::respond::Outcome;
use crate::edge::rt::{config, counts, objects, respond};
use crate::protocol::error::ApiError;
use crate::protocol::form::Params;
use crate::protocol::usage::{Buffer, UsageRow, QUERY_LIMIT};
use crate::store::usage::{Add, Query, UsageCommand, USAGE_OBJECT};
use crate::store::Command;
use std::cell::RefCell;
use worker::{console_error, Context, Env};

thread_local! {
    static BUFFER: RefCell<Buffer> = RefCell::new(Buffer::default());
}

/// Sends `cmd` to the usage log (one object).
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
        ctx.wait_until(counts::background(async move {
            let cmd = Add {
                rows,
                now: now_ms / 1000,
            };
            if let Err(error) = call(&env, cmd).await {
                console_error!("usage: {}", error.cause.unwrap_or(error.description));
            }
        }));
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
        let cmd = Query {
            partner: params.get("partner").map(str::to_owned),
            client: params.get("client").map(str::to_owned),
            since,
            until,
            limit: QUERY_LIMIT,
        };
        let rows = call(env, cmd).await?;
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
