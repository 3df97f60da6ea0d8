//! Work a request hands off to run after its response (`waitUntil`) from code that has no
//! `Context`: a lease refill the rate limiter starts deep in a check. The router hands
//! everything queued here to `waitUntil` once the response is made ([`hand_over`]), so the work
//! is never cancelled with the request and never delays it. Bounded: beyond [`CAPACITY`]
//! queued futures, [`spawn`] refuses (the caller treats the work as failed).

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use worker::Context;

type Work = Pin<Box<dyn Future<Output = ()>>>;

/// Futures queued at most (an isolate's concurrent requests hand theirs over as each ends).
pub const CAPACITY: usize = 1024;

thread_local! {
    static QUEUED: RefCell<Vec<Work>> = const { RefCell::new(Vec::new()) };
}

/// Queues `work` for the end of the current request. `false`: the queue is full, nothing was
/// queued.
pub fn spawn(work: impl Future<Output = ()> + 'static) -> bool {
    QUEUED.with(|q| {
        let mut q = q.borrow_mut();
        if q.len() >= CAPACITY {
            return false;
        }
        q.push(Box::pin(work));
        true
    })
}

/// Hands everything queued to `waitUntil` (as work off the critical path, for the counters).
pub fn hand_over(ctx: &Context) {
    let queued = QUEUED.with(|q| std::mem::take(&mut *q.borrow_mut()));
    for work in queued {
        ctx.wait_until(crate::edge::rt::counts::background(work));
    }
}
