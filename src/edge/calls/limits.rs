//! Rate limits: the isolate's leases first, the key's `RateLimiter` object when a lease runs out
//! (see `protocol::ratelimit`). A limiter that cannot be reached is a 503: the limit fails closed
//! like every other check.

use crate::edge::rt::{config, objects};
use crate::protocol::error::ApiError;
use crate::protocol::ratelimit::{limited, Leases, Local, Window};
use crate::store::limits::{object_name, GiveBack, LimitCommand, Take};
use crate::store::Command;
use std::cell::RefCell;
use worker::Env;

/// Bounded: a flood of invented keys cannot grow an isolate's memory.
const LEASE_CAPACITY: usize = 4096;

thread_local! {
    static LEASES: RefCell<Leases> = RefCell::new(Leases::new(LEASE_CAPACITY));
}

/// Sends `cmd` to the limiter of `key` (`limit:{key}`).
pub async fn call<C: Command<Kind = LimitCommand>>(
    env: &Env,
    key: &str,
    cmd: C,
) -> std::result::Result<C::Reply, ApiError> {
    objects::call_command(env, config::LIMITS_DO, &object_name(key), cmd).await
}

/// Takes `want` requests of `window` from the object for `key`: how many it granted.
pub async fn take(
    env: &Env,
    key: &str,
    window: Window,
    want: u32,
) -> std::result::Result<u32, ApiError> {
    Ok(call(env, key, Take { window, want }).await?.n)
}

/// Gives back requests taken and not spent.
pub async fn give_back(
    env: &Env,
    key: &str,
    window: Window,
    n: u32,
) -> std::result::Result<(), ApiError> {
    call(env, key, GiveBack { window, n }).await
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
