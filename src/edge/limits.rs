//! Rate limits at the edge: the isolate's leases first, the key's `RateLimiter` object when a
//! lease runs out (see `protocol::ratelimit`). A limiter that cannot be reached is a 503: the
//! limit fails closed like every other check.

use std::cell::RefCell;

use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

use super::{config, objects};
use crate::protocol::error::ApiError;
use crate::protocol::partner::PartnerId;
use crate::protocol::ratelimit::{limited, Counter, Leases, Local, RateLimits, Window, MINUTE_MS};
use crate::store::limits::{object_name, LimitCommand, LimitReply};

/// Bounded: a flood of invented keys cannot grow an isolate's memory.
const LEASE_CAPACITY: usize = 4096;

thread_local! {
    static LEASES: RefCell<Leases> = RefCell::new(Leases::new(LEASE_CAPACITY));
}

async fn call(
    env: &Env,
    key: &str,
    cmd: &LimitCommand,
) -> std::result::Result<LimitReply, ApiError> {
    objects::call(env, config::LIMITS_DO, &object_name(key), cmd).await
}

/// Takes `want` requests of `window` from the object for `key`: how many it granted.
pub async fn take(
    env: &Env,
    key: &str,
    window: Window,
    want: u32,
) -> std::result::Result<u32, ApiError> {
    match call(env, key, &LimitCommand::Take { window, want }).await? {
        LimitReply::Granted { n } => Ok(n),
        LimitReply::Failed { error } => Err(error),
        LimitReply::Done => Err(ApiError::unavailable("unexpected limiter reply")),
    }
}

/// Gives back requests taken and not spent.
pub async fn give_back(
    env: &Env,
    key: &str,
    window: Window,
    n: u32,
) -> std::result::Result<(), ApiError> {
    match call(env, key, &LimitCommand::GiveBack { window, n }).await? {
        LimitReply::Failed { error } => Err(error),
        _ => Ok(()),
    }
}

/// Admits one request under `key`'s limit in `window`, or answers 429 naming `what`.
pub async fn admit(
    env: &Env,
    key: &str,
    what: &str,
    window: Window,
    now_ms: u64,
) -> std::result::Result<(), ApiError> {
    let admitted = match LEASES.with(|l| l.borrow_mut().try_local(key, window)) {
        Local::Admit => true,
        Local::Refuse => false,
        Local::Ask(want) => {
            let granted = take(env, key, window, want).await?;
            LEASES.with(|l| l.borrow_mut().granted(key, window, granted))
        }
    };
    if admitted {
        Ok(())
    } else {
        Err(limited(what, window, now_ms))
    }
}

/// Which limits a call counts against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bucket {
    Api,
    Token,
}

/// Admits one call of `client_id` (of `partner`) against the client's and the partner's
/// per-minute limits for `bucket`.
pub async fn admit_client(
    env: &Env,
    bucket: Bucket,
    partner: &PartnerId,
    client_id: &str,
    limits: &RateLimits,
    now_ms: u64,
) -> std::result::Result<(), ApiError> {
    let (name, per_client, per_partner) = match bucket {
        Bucket::Api => (
            "api",
            limits.api_per_client_per_minute,
            limits.api_per_minute,
        ),
        Bucket::Token => (
            "token",
            limits.token_per_client_per_minute,
            limits.token_per_minute,
        ),
    };
    admit(
        env,
        &format!("{name}:client:{client_id}"),
        "this client's limit",
        Window::at(now_ms, MINUTE_MS, per_client),
        now_ms,
    )
    .await?;
    admit(
        env,
        &format!("{name}:partner:{partner}"),
        "this partner's limit",
        Window::at(now_ms, MINUTE_MS, per_partner),
        now_ms,
    )
    .await
}

/// The `RateLimiter` Durable Object: one counter, kept in memory and in storage (so an object
/// that is evicted and recreated within a window does not start the count again).
#[durable_object(fetch)]
pub struct RateLimiter {
    state: State,
    counter: RefCell<Option<Counter>>,
}

const COUNTER: &str = "counter";

impl DurableObject for RateLimiter {
    fn new(state: State, _env: Env) -> Self {
        RateLimiter {
            state,
            counter: RefCell::new(None),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        objects::serve(req, "rate limiter", |cmd: LimitCommand| self.execute(cmd)).await
    }
}

impl RateLimiter {
    async fn execute(&self, cmd: LimitCommand) -> std::result::Result<LimitReply, ApiError> {
        let storage_err = |e: worker::Error| ApiError::unavailable(format!("limiter storage: {e}"));
        let loaded = *self.counter.borrow();
        let mut counter = match loaded {
            Some(c) => c,
            None => self
                .state
                .storage()
                .get::<Counter>(COUNTER)
                .await
                .map_err(storage_err)?
                .unwrap_or_default(),
        };
        let reply = match cmd {
            LimitCommand::Take { window, want } => LimitReply::Granted {
                n: counter.take(window, want),
            },
            LimitCommand::GiveBack { window, n } => {
                counter.give_back(window, n);
                LimitReply::Done
            }
        };
        // Stored before answering: a grant is never handed out twice.
        self.state
            .storage()
            .put(COUNTER, counter)
            .await
            .map_err(storage_err)?;
        *self.counter.borrow_mut() = Some(counter);
        Ok(reply)
    }
}
