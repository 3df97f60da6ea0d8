//! How often a gateway call with an admitted token waits on storage, simulated through the
//! rules the Worker runs: one isolate's calls of one client's token arrive at random (Poisson)
//! at a given rate, through the isolate's admitted-token entry (`protocol::api::ADMITTED_TTL_MS`,
//! checked again off the path at `recheck_at_ms`) and its leases of the client's and the
//! partner's rate-limit keys (`protocol::ratelimit::Leases`, the same code as the Worker's).
//! Work the Worker hands to `waitUntil` (a lease refill, an early lease, a token's check
//! again) completes `LATENCY_MS` after the call that started it, and calls in between see the
//! isolate as it was.
//!
//! `scripts/scale.mjs` runs it with the per-isolate rates of its model and weighs the answers:
//!   cargo run -q -p edgeward-core --example gateway_model -- RATE [RATE ...]
//! prints, per rate (calls a second in one isolate), one JSON line: the share of calls that
//! waited on storage, on the token, and on a lease.

use edgeward_core::protocol::api::{recheck_at_ms, ADMITTED_TTL_MS};
use edgeward_core::protocol::ratelimit::{Ask, Counter, Leases, Local, MINUTE_MS};
use std::collections::HashMap;

/// How long work off the path takes to come back (a Durable Object call or a KV read).
const LATENCY_MS: u64 = 50;
/// Calls simulated per rate (after the first ten minutes, which are not counted).
const CALLS: u64 = 200_000;
/// The limits are far above the rate: the model is of calls that are admitted.
const LIMIT: u32 = 100_000_000;
const KEYS: [&str; 2] = ["api:client:model", "api:partner:model"];

/// A deterministic generator (xorshift64*): the same answers on every run.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
        (x as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// A gap of a Poisson stream of `rate` a second, in ms.
    fn gap_ms(&mut self, rate: f64) -> u64 {
        (-self.unit().ln() / rate * 1000.0).round() as u64
    }
}

/// What comes back later: a lease's refill, an early lease, a token's check again.
enum Later {
    Refill(usize, Ask),
    Prefetch(usize, Ask),
    Recheck(u64),
}

struct Entry {
    expires_ms: u64,
    recheck_ms: u64,
    rechecking: bool,
}

struct Isolate {
    leases: Leases,
    objects: HashMap<String, Counter>,
    entry: Option<Entry>,
    later: Vec<(u64, Later)>,
}

impl Isolate {
    fn take(&mut self, key: usize, ask: &Ask) -> u32 {
        let (n, ahead) = self
            .objects
            .entry(ask.key.clone())
            .or_default()
            .take_ahead(ask.window, ask.want, ask.ahead);
        self.leases.took_ahead(KEYS[key], ask, ahead);
        n
    }

    /// Work whose answer is back by `now_ms`.
    fn settle(&mut self, now_ms: u64) {
        let (done, waiting): (Vec<_>, Vec<_>) =
            self.later.drain(..).partition(|(at, _)| *at <= now_ms);
        self.later = waiting;
        for (_, work) in done {
            match work {
                Later::Refill(k, ask) => {
                    let n = self.take(k, &ask);
                    self.leases.refilled(KEYS[k], &ask, Some(n));
                }
                Later::Prefetch(k, ask) => {
                    let n = self.take(k, &ask);
                    self.leases.prefetched(KEYS[k], &ask, n);
                }
                Later::Recheck(started_ms) => {
                    self.entry = Some(Entry {
                        expires_ms: started_ms + ADMITTED_TTL_MS,
                        recheck_ms: recheck_at_ms(started_ms, ADMITTED_TTL_MS),
                        rechecking: false,
                    });
                }
            }
        }
    }

    /// One call at `now_ms`: whether it waited on the token, on a lease.
    fn call(&mut self, now_ms: u64) -> (bool, bool) {
        self.settle(now_ms);
        let token_waits = match &mut self.entry {
            Some(e) if now_ms < e.expires_ms => {
                if now_ms >= e.recheck_ms && !e.rechecking {
                    e.rechecking = true;
                    self.later
                        .push((now_ms + LATENCY_MS, Later::Recheck(now_ms)));
                }
                false
            }
            _ => {
                self.entry = Some(Entry {
                    expires_ms: now_ms + ADMITTED_TTL_MS,
                    recheck_ms: recheck_at_ms(now_ms, ADMITTED_TTL_MS),
                    rechecking: false,
                });
                true
            }
        };
        let mut lease_waits = false;
        for (k, key) in KEYS.iter().enumerate() {
            let plan = self.leases.plan(key, LIMIT, MINUTE_MS, now_ms);
            if let Local::Ask(ask) = &plan.local {
                lease_waits = true;
                let n = self.take(k, ask);
                self.leases.granted(key, ask, n);
            }
            if let Some(ask) = plan.refill {
                self.later
                    .push((now_ms + LATENCY_MS, Later::Refill(k, ask)));
            }
            if let Some(ask) = plan.prefetch {
                self.later
                    .push((now_ms + LATENCY_MS, Later::Prefetch(k, ask)));
            }
        }
        (token_waits, lease_waits)
    }
}

fn simulate(rate: f64, seed: u64) -> (f64, f64, f64) {
    let mut isolate = Isolate {
        leases: Leases::new(64, seed),
        objects: HashMap::new(),
        entry: None,
        later: Vec::new(),
    };
    let mut rng = Rng(seed | 1);
    let start = 1_700_000_000_000u64;
    let counted_from = start + 600_000;
    let mut now = start;
    let (mut calls, mut waits, mut token, mut lease) = (0u64, 0u64, 0u64, 0u64);
    while calls < CALLS {
        now += rng.gap_ms(rate).max(1);
        let (t, l) = isolate.call(now);
        if now >= counted_from {
            calls += 1;
            waits += u64::from(t || l);
            token += u64::from(t);
            lease += u64::from(l);
        }
    }
    let share = |n: u64| n as f64 / calls as f64;
    (share(waits), share(token), share(lease))
}

fn main() {
    let rates: Vec<f64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .filter(|r: &f64| *r > 0.0)
        .collect();
    if rates.is_empty() {
        eprintln!("usage: gateway_model RATE [RATE ...] (calls a second in one isolate)");
        std::process::exit(2);
    }
    for rate in rates {
        let (wait, token, lease) = simulate(rate, 0x9e37_79b9_7f4a_7c15);
        println!(
            "{{\"rate\":{rate},\"calls\":{CALLS},\"wait\":{wait},\"token\":{token},\"lease\":{lease}}}"
        );
    }
}
