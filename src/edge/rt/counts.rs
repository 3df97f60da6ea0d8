//! Storage-call counters for `scripts/scale.sh`: every Durable Object call (per object name), KV
//! read and write (per key), queue send, D1 and R2 operation, and the sequential round trips on
//! requests' critical paths. Compiled in only with the `io-counts` feature (a local build:
//! `scripts/build.sh --io-counts`); without it every function here is an empty inline function
//! and the production bundle carries none of it. Even when compiled in, the counters answer
//! only on a loopback issuer.
//!
//! A round trip is a moment when the request's code waits on storage: a call that starts while
//! no other critical call is in flight. Calls in flight together (a `join_all`) are one round
//! trip; calls made from work handed to `waitUntil` or a queue consumer are counted as calls but
//! not as round trips (they are off the critical path): such work runs inside [`background`].

use std::future::Future;

/// The path the counters answer on (GET: the counts as JSON; `?reset=1` also clears them).
#[cfg(feature = "io-counts")]
pub const PATH: &str = "/__io-counts";

/// Marks a call in flight until dropped.
pub struct InFlight {
    #[cfg(feature = "io-counts")]
    critical: bool,
}

#[cfg(feature = "io-counts")]
impl Drop for InFlight {
    fn drop(&mut self) {
        if self.critical {
            imp::COUNTS.with(|c| {
                let mut c = c.borrow_mut();
                c.in_flight = c.in_flight.saturating_sub(1);
            });
        }
    }
}

/// A call to the service `kind:binding` (`do`, `queue`, `d1`, `r2`) addressed to `target` (an
/// object name, a queue, a database or bucket) with operation `op`. The parts are passed apart
/// so that a build without the counters builds no string for them.
#[inline]
pub fn call(kind: &str, binding: &str, target: &str, op: &str) -> InFlight {
    #[cfg(feature = "io-counts")]
    {
        imp::call(&format!("{kind}:{binding}"), target, op)
    }
    #[cfg(not(feature = "io-counts"))]
    {
        let _ = (kind, binding, target, op);
        InFlight {}
    }
}

/// Where a call to the service `kind:binding` on a critical path went (a placement's label:
/// jurisdiction and location hint); calls off the critical path are not recorded here.
#[inline]
pub fn placed(kind: &str, binding: &str, label: &str) {
    #[cfg(feature = "io-counts")]
    imp::COUNTS.with(|c| {
        let mut c = c.borrow_mut();
        if c.background > 0 {
            return;
        }
        *c.placements
            .entry(format!("{kind}:{binding}"))
            .or_default()
            .entry(label.to_owned())
            .or_default() += 1;
    });
    #[cfg(not(feature = "io-counts"))]
    let _ = (kind, binding, label);
}

/// A KV operation (`get`, `put`, `delete`, `list`) on `key`.
#[inline]
pub fn kv(op: &str, key: &str) -> InFlight {
    #[cfg(feature = "io-counts")]
    {
        imp::kv(op, key, crate::edge::rt::clock::now_ms())
    }
    #[cfg(not(feature = "io-counts"))]
    {
        let _ = (op, key);
        InFlight {}
    }
}

/// Runs `fut` as work off the critical path (`waitUntil`, queue consumers, alarms).
#[inline]
pub fn background<F: Future>(fut: F) -> impl Future<Output = F::Output> {
    #[cfg(feature = "io-counts")]
    {
        imp::Background {
            inner: Box::pin(fut),
        }
    }
    #[cfg(not(feature = "io-counts"))]
    {
        fut
    }
}

#[cfg(feature = "io-counts")]
pub mod imp {
    use super::InFlight;
    use serde::Serialize;
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    #[derive(Default, Serialize)]
    pub struct KeyWrites {
        pub n: u64,
        /// The most writes this key took within one second.
        pub max_per_s: u64,
        #[serde(skip)]
        second: u64,
        #[serde(skip)]
        in_second: u64,
    }

    #[derive(Default, Serialize)]
    pub struct Counts {
        /// service -> target -> op -> calls
        pub calls: BTreeMap<String, BTreeMap<String, BTreeMap<String, u64>>>,
        /// service -> placement label -> calls
        pub placements: BTreeMap<String, BTreeMap<String, u64>>,
        pub kv_reads: BTreeMap<String, u64>,
        pub kv_writes: BTreeMap<String, KeyWrites>,
        /// Sequential storage round trips on critical paths since the last reset.
        pub round_trips: u64,
        #[serde(skip)]
        pub in_flight: u32,
        #[serde(skip)]
        pub background: u32,
    }

    thread_local! {
        pub static COUNTS: RefCell<Counts> = RefCell::new(Counts::default());
    }

    fn start(c: &mut Counts) -> InFlight {
        let critical = c.background == 0;
        if critical {
            if c.in_flight == 0 {
                c.round_trips += 1;
            }
            c.in_flight += 1;
        }
        InFlight { critical }
    }

    pub fn call(service: &str, target: &str, op: &str) -> InFlight {
        COUNTS.with(|c| {
            let mut c = c.borrow_mut();
            *c.calls
                .entry(service.to_owned())
                .or_default()
                .entry(target.to_owned())
                .or_default()
                .entry(op.to_owned())
                .or_default() += 1;
            start(&mut c)
        })
    }

    pub fn kv(op: &str, key: &str, now_ms: u64) -> InFlight {
        COUNTS.with(|c| {
            let mut c = c.borrow_mut();
            if op == "get" || op == "list" {
                *c.kv_reads.entry(key.to_owned()).or_default() += 1;
            } else {
                let w = c.kv_writes.entry(key.to_owned()).or_default();
                let second = now_ms / 1000;
                if w.second != second {
                    w.second = second;
                    w.in_second = 0;
                }
                w.n += 1;
                w.in_second += 1;
                w.max_per_s = w.max_per_s.max(w.in_second);
            }
            start(&mut c)
        })
    }

    pub struct Background<F> {
        pub inner: Pin<Box<F>>,
    }

    impl<F: Future> Future for Background<F> {
        type Output = F::Output;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
            COUNTS.with(|c| c.borrow_mut().background += 1);
            let out = self.inner.as_mut().poll(cx);
            COUNTS.with(|c| {
                let mut c = c.borrow_mut();
                c.background = c.background.saturating_sub(1);
            });
            out
        }
    }

    /// The counts as JSON; `reset` clears them afterwards (calls in flight stay in flight).
    pub fn snapshot(reset: bool) -> String {
        COUNTS.with(|c| {
            let mut c = c.borrow_mut();
            let json = serde_json::to_string(&*c).unwrap_or_else(|_| "{}".to_owned());
            if reset {
                let (in_flight, background) = (c.in_flight, c.background);
                *c = Counts {
                    in_flight,
                    background,
                    ..Counts::default()
                };
            }
            json
        })
    }
}
