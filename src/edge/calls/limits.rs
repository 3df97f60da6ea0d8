//! Rate limits: the isolate's leases first, the key's `RateLimiter` object (or one shard of it)
//! when a lease runs out (see `protocol::ratelimit`). A limiter that cannot be reached is a 503:
//! the limit fails closed like every other check.

use crate::edge::rt::objects::{self, Placement};
use crate::edge::rt::{config, later, random};
use crate::protocol::error::ApiError;
use crate::protocol::ratelimit::{Ask, Leases, Local, Slot, Window};
use crate::store::limits::{object_name, Take};
use std::cell::RefCell;
use worker::Env;

/// Bounded: a flood of invented keys cannot grow an isolate's memory.
const LEASE_CAPACITY: usize = 4096;

thread_local! {
    /// Made at the isolate's first limited request (randomness is only there to read).
    static LEASES: RefCell<Option<Leases>> = const { RefCell::new(None) };
}

/// Runs `f` on this isolate's leases, making them (with the isolate's random seed) first.
fn with_leases<T>(f: impl FnOnce(&mut Leases) -> T) -> Result<T, ApiError> {
    LEASES.with(|cell| {
        let mut slot = cell.borrow_mut();
        let leases = match &mut *slot {
            Some(l) => l,
            None => slot.insert(Leases::new(
                LEASE_CAPACITY,
                u64::from_le_bytes(random::bytes::<8>()?),
            )),
        };
        Ok(f(leases))
    })
}

/// Asks the limiter named by `ask` (`limit:{key}` or `limit:{key}:{s}`), reached with
/// `placement`, for its requests; what it grants of the next window (the ask's `ahead`) goes
/// into `key`'s early lease here.
async fn take(env: &Env, key: &str, ask: &Ask, placement: Placement) -> Result<u32, ApiError> {
    let cmd = Take {
        window: ask.window,
        want: ask.want,
        ahead: ask.ahead,
    };
    let name = object_name(&ask.key);
    let granted = objects::call_command_in(env, config::LIMITS_DO, &name, placement, cmd).await?;
    if ask.ahead > 0 {
        with_leases(|l| l.took_ahead(key, ask, granted.ahead_n))?;
    }
    Ok(granted.n)
}

/// The outcome of one request under a limit.
pub enum Admission {
    /// Admitted; the slot can be given back ([`give_back`]) if the request is not to count.
    Admitted(Slot),
    /// Refused in this window of the key.
    Refused(Window),
}

/// One request under `key`'s `limit` per `len_ms` window: from the lease, or from the object
/// (reached with `placement`: `Placement::GLOBAL` for a key that names nobody; the user's or
/// the request's region for the sign-in counters). The next window's early lease and a refill
/// of a lease running low, when the plan says so, are taken off the request's path.
pub async fn acquire(
    env: &Env,
    key: &str,
    limit: u32,
    len_ms: u64,
    placement: Placement,
    now_ms: u64,
) -> Result<Admission, ApiError> {
    let plan = with_leases(|l| l.plan(key, limit, len_ms, now_ms))?;
    let current = async {
        match &plan.local {
            Local::Admit => Ok(true),
            Local::Refuse => Ok(false),
            Local::Ask(ask) => {
                let n = take(env, key, ask, placement).await?;
                if with_leases(|l| l.granted(key, ask, n))? {
                    return Ok(true);
                }
                // Its shard ran out: once more at another, if the isolate may move on now.
                match with_leases(|l| l.retry_elsewhere(key, ask, limit, now_ms))? {
                    Some(again) => {
                        let n = take(env, key, &again, placement).await?;
                        with_leases(|l| l.granted(key, &again, n))
                    }
                    None => Ok(false),
                }
            }
        }
    };
    if let Some(ask) = plan.prefetch {
        prefetch_later(env, key, ask, placement);
    }
    if let Some(ask) = plan.refill {
        refill_later(env, key, ask, placement);
    }
    Ok(if current.await? {
        Admission::Admitted(Slot {
            key: key.to_owned(),
            window: plan.window,
        })
    } else {
        Admission::Refused(plan.window)
    })
}

/// Refills `key`'s lease off the request's path (`rt::later`, handed to `waitUntil`): the
/// request was admitted from the lease, which runs low. A refill that cannot be queued or
/// fails leaves the lease as it is; the next request that finds it low asks again.
fn refill_later(env: &Env, key: &str, ask: Ask, placement: Placement) {
    let (env, owned_key, failed) = (env.clone(), key.to_owned(), ask.clone());
    let queued = later::spawn(async move {
        let granted = take(&env, &owned_key, &ask, placement).await.ok();
        let _ = with_leases(|l| l.refilled(&owned_key, &ask, granted));
    });
    if !queued {
        let _ = with_leases(|l| l.refilled(key, &failed, None));
    }
}

/// Takes `key`'s lease of its next window off the request's path. One that fails, cannot be
/// queued or comes after the edge is not this request's failure: the isolate asks after the
/// edge, as one that never took it early (what a late one granted is lost: the strict side).
fn prefetch_later(env: &Env, key: &str, ask: Ask, placement: Placement) {
    let (env, key) = (env.clone(), key.to_owned());
    later::spawn(async move {
        if let Ok(n) = take(&env, &key, &ask, placement).await {
            let _ = with_leases(|l| l.prefetched(&key, &ask, n));
        }
    });
}

/// A request admitted and not to count (a sign-in that succeeded): back into this isolate's
/// lease, never to the object, so a success costs no call.
pub fn give_back(slot: &Slot) {
    let _ = with_leases(|l| l.give_back(&slot.key, slot.window));
}
