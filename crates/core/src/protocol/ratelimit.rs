//! Rate limits: fixed windows counted by Durable Objects (exact: never more than the limit is
//! admitted per window, wherever requests come from), handed to isolates in leases so that the
//! hot path asks an object about once per lease period, not once per request. Time and the
//! isolate's random seed are passed in.
//!
//! The rules, each unit-tested below (docs/storage.md, `RateLimiter`, gives the numbers):
//! - **Staggered windows.** A key's windows start at an offset of its own ([`window_offset_ms`],
//!   from a hash of the key), so keys do not all roll over in the same second; and an isolate
//!   that sees a key often takes its lease of the next window at a moment of its own in the
//!   last seconds before the edge ([`Leases::early_at_ms`]), so one key's isolates do not all
//!   ask at its edge either.
//! - **Leases sized by demand and by what remains.** An isolate asks for about what it saw in
//!   the last lease period ([`want`]: 1 when it sees the key rarely, so a small partner's
//!   requests are counted one by one, exactly), and the object grants at most a sixteenth of
//!   what remains ([`Counter::take`]). A lease is never given back to the object: what an
//!   isolate holds unspent when the window ends counts as spent (the strict side). So the
//!   admitted count never exceeds the limit, and falls short of it (for demand above it) by at
//!   most what isolates hold unspent: each isolate's lease minus the request that took it,
//!   at most about twice what that isolate saw in the lease period before, and with `K`
//!   isolates holding leases at most `limit * (1 - (15/16)^K)` in all.
//! - **Hot keys sharded.** A key whose limit allows more than [`SHARD_RATE_PER_S`] a second is
//!   counted in [`shard_count`] sub-limiters `{key}:{s}` whose limits add up to the limit; an
//!   isolate asks its home shard (from its seed) and, after a refusal, another shard of its own
//!   choosing at once, then at most one more shard a lease period.
use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::error::{ApiError, Detail, ErrorCode};

/// The window of the API and token-endpoint limits.
pub const MINUTE_MS: u64 = 60_000;
/// Most requests an isolate leases at once.
pub const MAX_LEASE: u32 = 4_096;
/// Largest limit an operator may set (per minute): room for the largest partner at 10x the
/// peak (25% of 1,500,000 gateway calls a second is 22,500,000 a minute).
pub const MAX_LIMIT: u32 = 100_000_000;

/// Limits per minute a partner gets when its record names none.
pub const DEFAULT_LIMITS: RateLimits = RateLimits {
    api_per_minute: 6_000,
    api_per_client_per_minute: 3_000,
    token_per_minute: 600,
    token_per_client_per_minute: 300,
};

/// A partner's limits, per minute: all of its clients together, and each client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimits {
    pub api_per_minute: u32,
    pub api_per_client_per_minute: u32,
    pub token_per_minute: u32,
    pub token_per_client_per_minute: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        DEFAULT_LIMITS
    }
}

const LIMIT_FIELDS: [&str; 4] = [
    "api_per_minute",
    "api_per_client_per_minute",
    "token_per_minute",
    "token_per_client_per_minute",
];

/// Parses the `rate_limits` member of a partner's admin input: an object with any of the four
/// limits (the others keep their defaults); `null` or absent means the defaults.
pub fn parse_limits(value: Option<&Value>) -> Result<Option<RateLimits>, ApiError> {
    let obj: &Map<String, Value> = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(o)) => o,
        Some(_) => {
            return Err(ApiError::invalid_field(
                "rate_limits",
                "must be an object of limits per minute",
            ))
        }
    };
    if obj.keys().any(|k| !LIMIT_FIELDS.contains(&k.as_str())) {
        return Err(super::json::unknown_member(
            Some("rate_limits"),
            &LIMIT_FIELDS,
        ));
    }
    let get = |name: &str, default: u32| -> Result<u32, ApiError> {
        match obj.get(name) {
            None => Ok(default),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    ApiError::invalid_field(
                        format!("rate_limits.{name}"),
                        format!("must be a whole number from 1 to {MAX_LIMIT}"),
                    )
                }),
        }
    };
    let d = DEFAULT_LIMITS;
    Ok(Some(RateLimits {
        api_per_minute: get("api_per_minute", d.api_per_minute)?,
        api_per_client_per_minute: get("api_per_client_per_minute", d.api_per_client_per_minute)?,
        token_per_minute: get("token_per_minute", d.token_per_minute)?,
        token_per_client_per_minute: get(
            "token_per_client_per_minute",
            d.token_per_client_per_minute,
        )?,
    }))
}

/// One fixed window of a limit, as the isolate and the object both compute it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// Start of the window, in ms since the epoch.
    pub start_ms: u64,
    pub len_ms: u64,
    pub limit: u32,
}

impl Window {
    /// The window of `len_ms` containing `now_ms` whose starts fall at `offset_ms` past a
    /// multiple of `len_ms` (taken modulo `len_ms`).
    pub fn at_offset(now_ms: u64, len_ms: u64, offset_ms: u64, limit: u32) -> Window {
        let len_ms = len_ms.max(1);
        let into = (now_ms % len_ms + len_ms - offset_ms % len_ms) % len_ms;
        Window {
            start_ms: now_ms.saturating_sub(into),
            len_ms,
            limit,
        }
    }

    /// The window of `key`: its edges are staggered by [`window_offset_ms`], so the keys of a
    /// busy service do not all start a new window in the same second.
    pub fn of_key(key: &str, now_ms: u64, len_ms: u64, limit: u32) -> Window {
        Window::at_offset(now_ms, len_ms, window_offset_ms(key, len_ms), limit)
    }

    pub fn end_ms(&self) -> u64 {
        self.start_ms.saturating_add(self.len_ms)
    }

    /// The window after this one.
    pub fn next(&self) -> Window {
        Window {
            start_ms: self.end_ms(),
            ..*self
        }
    }

    /// Whole seconds until the window ends (at least 1): `Retry-After` and `RateLimit-Reset`.
    pub fn reset_s(&self, now_ms: u64) -> u64 {
        self.end_ms().saturating_sub(now_ms).div_ceil(1000).max(1)
    }
}

/// A stable 64-bit hash of a limited key: the first 8 bytes (big-endian) of its SHA-256.
pub fn key_hash(key: &str) -> u64 {
    let digest = Sha256::digest(key.as_bytes());
    let mut first = [0u8; 8];
    for (to, from) in first.iter_mut().zip(digest.iter()) {
        *to = *from;
    }
    u64::from_be_bytes(first)
}

/// Where in a `len_ms` period the windows of `key` start: its hash modulo `len_ms`. Tests that
/// need a fresh window compute the same (`tests/e2e/ratelimit.test.mjs`, `windowOffset`).
pub fn window_offset_ms(key: &str, len_ms: u64) -> u64 {
    key_hash(key) % len_ms.max(1)
}

/// How long an isolate's lease is meant to last: it asks for about what it saw in this long.
pub const LEASE_PERIOD_MS: u64 = 1_000;
/// An isolate that saw at least two requests of a key in a lease period takes its lease of the
/// next window early, at a moment of its own in the last this-many ms of the window (at most a
/// quarter of the window): its refill is not at the edge.
pub const PREFETCH_SPAN_MS: u64 = 10_000;
/// An isolate that saw a key at most this many times a lease period on average in the window so
/// far sees it rarely: it keeps one spare in its lease and takes the next window's lease as one
/// request ahead, in a call it makes anyway; one that saw it more often takes an early lease
/// sized by its demand (see [`Leases::plan`]).
pub const RARE_DEMAND: u32 = 3;
/// The object grants at most this fraction of what remains in the window (and at least 1).
pub const GRANT_DIVISOR: u32 = 16;
/// A key whose limit admits more than this many requests a second is split into shards: even
/// if every request were its own take (isolates that each see the key less than once a lease
/// period), a shard is asked for at most this many grants a second, under half an object's
/// ceiling.
pub const SHARD_RATE_PER_S: u64 = 400;
/// Most shards a key is split into (the largest limit, 100,000,000 a minute, is 4,167 shards'
/// worth: its shards admit up to 407 a second each).
pub const MAX_SHARDS: u32 = 4_096;

/// How many sub-limiters a limit is counted in: one per [`SHARD_RATE_PER_S`] requests a second
/// the limit allows (rounded up), from 1 to [`MAX_SHARDS`]. A limit of 24,000 a minute or less
/// (the defaults are 6,000 and 3,000) is one object; 22,500,000 a minute (the largest partner at
/// 10x the peak) is 938.
pub fn shard_count(limit: u32, len_ms: u64) -> u32 {
    let per_s_times_len = u64::from(limit).saturating_mul(1000);
    let shards = per_s_times_len.div_ceil(SHARD_RATE_PER_S.saturating_mul(len_ms.max(1)));
    u32::try_from(shards)
        .unwrap_or(MAX_SHARDS)
        .clamp(1, MAX_SHARDS)
}

/// The limit of shard `s` of `shards`: the limit split as evenly as whole numbers allow, so the
/// shards' limits add up to the limit exactly.
pub fn shard_limit(limit: u32, s: u32, shards: u32) -> u32 {
    let shards = shards.max(1);
    limit / shards + u32::from(s < limit % shards)
}

/// The limiter key of shard `s`: the key itself when it is not split (`shards` 1), else
/// `{key}:{s}` (object `limit:{key}:{s}`).
pub fn shard_key(key: &str, s: u32, shards: u32) -> String {
    if shards <= 1 {
        key.to_owned()
    } else {
        format!("{key}:{s}")
    }
}

/// A step from 1 to `shards - 1` sharing no factor with `shards`, chosen by `random`: walking by
/// it from any shard visits all of them.
fn walk_stride(random: u64, shards: u32) -> u32 {
    fn gcd(a: u32, b: u32) -> u32 {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    if shards <= 2 {
        return 1;
    }
    let mut stride = u32::try_from(random % u64::from(shards - 1)).unwrap_or(0) + 1;
    while gcd(stride, shards) != 1 {
        stride -= 1;
    }
    stride
}

/// Whether an isolate that saw `key` far over its limit holds its asks in the next window (see
/// [`Leases::plan`]): the clients' and partners' limits, which thousands of isolates may all
/// refuse at once. Never the sign-in counters (`login:`): few isolates see one network or
/// username, and a school's network that was over its limit must get in as soon as its window
/// allows.
pub fn holds_when_far_over(key: &str) -> bool {
    !key.starts_with("login:")
}

/// Mixes an isolate's random seed with a key's hash: a stable value per (isolate, key).
fn mix(seed: u64, hash: u64) -> u64 {
    // splitmix64's finaliser: every bit of the input reaches every bit of the output.
    let mut z = seed ^ hash;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The object's count for one key: how many requests it granted in a window and in the one
/// after it (leases of the next window are taken before its edge). One row that cannot grow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    pub start_ms: u64,
    pub used: u32,
    /// The window length `next_used` belongs to; 0 in counters stored before there was one.
    #[serde(default)]
    pub len_ms: u64,
    /// Granted in the window starting at `start_ms + len_ms`.
    #[serde(default)]
    pub next_used: u32,
}

impl Counter {
    /// Which count a request of `window` goes to, moving the counter on to later windows. A
    /// window before the counter's (a slow isolate's clock) is counted against the counter's
    /// first window, never against a fresh one.
    fn slot(&mut self, window: Window) -> &mut u32 {
        let len = window.len_ms;
        let w = window.start_ms;
        let a = self.start_ms;
        if self.len_ms == len && w == a.saturating_add(len) {
            return &mut self.next_used;
        }
        if self.len_ms == len && w == a.saturating_add(2 * len) {
            *self = Counter {
                start_ms: a.saturating_add(len),
                used: self.next_used,
                len_ms: len,
                next_used: 0,
            };
            return &mut self.next_used;
        }
        if w > a {
            *self = Counter {
                start_ms: w,
                used: 0,
                len_ms: len,
                next_used: 0,
            };
        }
        &mut self.used
    }

    /// Grants up to `want` requests of `window`, and never more than a [`GRANT_DIVISOR`]th of
    /// what remains in it (at least 1 while anything remains): none when the limit is reached.
    pub fn take(&mut self, window: Window, want: u32) -> u32 {
        let used = self.slot(window);
        let remaining = window.limit.saturating_sub(*used);
        let granted = want.min(remaining).min((remaining / GRANT_DIVISOR).max(1));
        *used += granted;
        granted
    }

    /// [`Self::take`] of `want` in `window`, then of `ahead` in the window after it (the one
    /// ahead of an isolate that sees the key rarely): what each granted.
    pub fn take_ahead(&mut self, window: Window, want: u32, ahead: u32) -> (u32, u32) {
        let n = self.take(window, want);
        let a = if ahead > 0 {
            self.take(window.next(), ahead)
        } else {
            0
        };
        (n, a)
    }

    /// Gives back requests taken in `window` and not used (sent by Workers of earlier releases).
    pub fn give_back(&mut self, window: Window, n: u32) {
        if self.len_ms == window.len_ms
            && window.start_ms == self.start_ms.saturating_add(self.len_ms)
        {
            self.next_used = self.next_used.saturating_sub(n);
        } else if window.start_ms == self.start_ms {
            self.used = self.used.saturating_sub(n);
        }
    }

    /// When everything this counter counts has ended: after that the object can forget it.
    pub fn ends_ms(&self) -> u64 {
        let len = self.len_ms.max(1);
        if self.next_used > 0 {
            self.start_ms.saturating_add(2 * len)
        } else {
            self.start_ms.saturating_add(len)
        }
    }
}

/// What an isolate asks an object for: `want` requests of `window` (a shard's limit) from the
/// limiter of `key` (a shard key, see [`shard_key`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ask {
    pub key: String,
    pub window: Window,
    pub want: u32,
    /// Requests of the next window to take in the same call (the one ahead of an isolate that
    /// sees the key rarely but steadily, see [`Leases::plan`]); their answer goes to
    /// [`Leases::took_ahead`].
    pub ahead: u32,
}

/// A request admitted under a key: what a sign-in gives back when it succeeds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    pub key: String,
    pub window: Window,
}

/// The isolate's decision before asking the object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Local {
    Admit,
    Refuse,
    /// Ask the object; the request is admitted if it grants at least one.
    Ask(Ask),
}

/// What [`Leases::plan`] decided for one request: the key's window (for the 429), the decision,
/// and perhaps an early lease of the next window to take alongside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub window: Window,
    pub local: Local,
    pub prefetch: Option<Ask>,
    /// A lease running low, to refill off the request's path (`waitUntil`): the request itself
    /// was admitted from the lease. Its answer goes to [`Leases::refilled`].
    pub refill: Option<Ask>,
}

impl Lease {
    /// Whether the isolate may leave its shard for another now: one is left to try in this
    /// window, and it did not move in the last lease period.
    fn may_move(&self, now_ms: u64) -> bool {
        self.tried + 1 < self.shards
            && self
                .moved_ms
                .is_none_or(|t| now_ms >= t.saturating_add(LEASE_PERIOD_MS))
    }

    /// Moves on to the next shard of the isolate's walk: a stride of its own (from `seed`),
    /// prime to the number of shards, so that the walk visits every shard once and the excess
    /// of a busy shard spreads over all the others instead of piling onto its neighbour.
    fn move_on(&mut self, seed: u64, now_ms: u64) {
        self.tried += 1;
        self.moved_ms = Some(now_ms);
        let stride = walk_stride(mix(seed.rotate_left(48), self.hash), self.shards);
        self.shard = (self.shard + stride) % self.shards;
        self.exhausted = false;
    }
}

/// An isolate's lease of a key's next window, taken before its edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Early {
    start_ms: u64,
    shard: u32,
    left: u32,
    exhausted: bool,
    /// Taken one request ahead by an isolate that sees the key rarely but steadily: used like
    /// the one ahead within a window (refilled off the path once spent), not like an early
    /// lease sized by demand.
    ahead: bool,
}

/// What an isolate knows of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Lease {
    /// The key's [`key_hash`], computed once.
    hash: u64,
    start_ms: u64,
    /// Requests of the current window this isolate may still admit on its own.
    left: u32,
    /// The current shard granted nothing: refuse without asking (see [`Leases::plan`]).
    exhausted: bool,
    /// The shard asked now, how many others were tried this window, and when the isolate last
    /// moved on to another.
    shard: u32,
    shards: u32,
    tried: u32,
    moved_ms: Option<u64>,
    /// When this isolate last asked, and how many requests it saw since (the demand).
    asked_ms: Option<u64>,
    seen: u32,
    /// Requests of the current window this isolate saw, and of the window before it (0 if this
    /// isolate did not see the key then).
    window_seen: u32,
    before_seen: u32,
    /// When this isolate first saw the key in the current window.
    first_ms: u64,
    early: Option<Early>,
    /// A refill of this window's lease is on its way.
    refilling: bool,
    /// The lease is the early one taken for this window: it runs out at a moment of the
    /// isolate's own (its size says when), and is then asked for as before, not refilled, so
    /// that the first asks of a window stay spread as early leases spread them.
    on_early: bool,
    /// Requests of this window the object granted this isolate, and requests it refused
    /// (locally or by the object): an isolate that refused more than it was granted saw the
    /// key far over its limit.
    granted_n: u32,
    refused_n: u32,
    /// The isolate asks nothing of this window before this moment (see [`Leases::plan`]).
    hold_until_ms: u64,
    /// The isolate was granted the key again and again in the window just before this one.
    steady_before: bool,
}

/// How many to ask for: about the requests seen in the last lease period (`seen` since the last
/// ask, `elapsed_ms` ago), at most twice `seen` (a lease grows by doubling), 1 to [`MAX_LEASE`].
/// An isolate that never asked before asks for 1, so rare requests are counted one by one.
pub fn want(seen: u32, elapsed_ms: Option<u64>) -> u32 {
    want_within(seen, elapsed_ms, LEASE_PERIOD_MS)
}

/// [`want`] for the next `period_ms` only: near a window's end an isolate asks for what it
/// can use before the end, so little is left unspent when the window closes.
pub fn want_within(seen: u32, elapsed_ms: Option<u64>, period_ms: u64) -> u32 {
    let Some(elapsed) = elapsed_ms else {
        return 1;
    };
    let per_period = u64::from(seen)
        .saturating_mul(period_ms)
        .div_ceil(elapsed.max(1));
    let cap = seen.saturating_mul(2).clamp(1, MAX_LEASE);
    u32::try_from(per_period).unwrap_or(u32::MAX).clamp(1, cap)
}

/// The leases an isolate holds, bounded: when full, leases of past windows go first, then all.
pub struct Leases {
    leases: HashMap<String, Lease>,
    capacity: usize,
    /// The isolate's random value: its home shard of each key and its moment to take the next
    /// window's lease.
    seed: u64,
}

impl Leases {
    pub fn new(capacity: usize, seed: u64) -> Leases {
        Leases {
            leases: HashMap::new(),
            capacity,
            seed,
        }
    }

    /// The shard of a split key this isolate asks first.
    pub fn home_shard(&self, key: &str, shards: u32) -> u32 {
        self.home_of(key_hash(key), shards)
    }

    fn home_of(&self, hash: u64, shards: u32) -> u32 {
        u32::try_from(mix(self.seed, hash) % u64::from(shards.max(1))).unwrap_or(0)
    }

    /// When, in `window`, this isolate takes its lease of the next window of `key`: a moment
    /// of its own in the last [`PREFETCH_SPAN_MS`] (at most a quarter of the window).
    pub fn early_at_ms(&self, key: &str, window: Window) -> u64 {
        self.early_at(key_hash(key), window)
    }

    fn early_at(&self, hash: u64, window: Window) -> u64 {
        let span = PREFETCH_SPAN_MS.min(window.len_ms / 4).max(1);
        let at = mix(self.seed.rotate_left(32), hash) % span;
        window.end_ms().saturating_sub(span).saturating_add(at)
    }

    /// When, in `window`, an isolate that sees `key` rarely takes the next window's one ahead on
    /// its own (when no call of its own carries it): a moment of its own in the first half of
    /// the last [`PREFETCH_SPAN_MS`], so that a request of its own usually comes after it.
    fn ahead_at(&self, hash: u64, window: Window) -> u64 {
        let span = PREFETCH_SPAN_MS.min(window.len_ms / 4).max(1);
        let at = mix(self.seed.rotate_left(32), hash) % span.div_ceil(2);
        window.end_ms().saturating_sub(span).saturating_add(at)
    }

    /// The size of an early lease: the demand scaled by a fraction of the isolate's own (0 to 1],
    /// so that isolates starting the window on early leases run out, and ask, at moments spread
    /// over a lease period rather than together.
    fn early_want(phase: u64, demand: u32) -> u32 {
        let scaled = u64::from(demand).saturating_mul(phase).div_ceil(1000);
        u32::try_from(scaled)
            .unwrap_or(demand)
            .clamp(1, demand.max(1))
    }

    /// Decides one request of `key` under `limit` per `len_ms` at `now_ms`: admitted from the
    /// lease, refused (the shard, or every shard tried, granted nothing this window), or an ask.
    ///
    /// A split key (see [`shard_count`]) is asked at the isolate's home shard; when a shard
    /// refuses, the isolate asks another of its own choosing at once, and moves on again at
    /// most once a lease period (refusing meanwhile), until it has tried as many as there are
    /// in this window. So one busy isolate far under the key's limit is not refused when its
    /// shard runs out (it asks one shard more), the moves of an isolate refused everywhere
    /// stay at one per lease period, and a shard with room left is found by the isolates of a
    /// busier one.
    pub fn plan(&mut self, key: &str, limit: u32, len_ms: u64, now_ms: u64) -> Plan {
        let hash = self
            .leases
            .get(key)
            .map_or_else(|| key_hash(key), |l| l.hash);
        let window = Window::at_offset(now_ms, len_ms, hash % len_ms.max(1), limit);
        let shards = shard_count(limit, len_ms);
        let home = self.home_of(hash, shards);
        let early_at = self.early_at(hash, window);
        let ahead_at = self.ahead_at(hash, window);
        let phase = mix(self.seed.rotate_left(16), hash) % 1000 + 1;
        let fresh = Lease {
            hash,
            start_ms: window.start_ms,
            left: 0,
            exhausted: false,
            shard: home,
            shards,
            tried: 0,
            moved_ms: None,
            asked_ms: None,
            seen: 0,
            window_seen: 0,
            before_seen: 0,
            first_ms: now_ms,
            early: None,
            refilling: false,
            on_early: false,
            granted_n: 0,
            refused_n: 0,
            hold_until_ms: 0,
            steady_before: false,
        };
        self.make_room(key, window);
        let l = self.leases.entry(key.to_owned()).or_insert(fresh);
        if l.start_ms != window.start_ms || l.shards != shards {
            let (left, exhausted, shard, ahead) = match l.early {
                Some(e) if e.start_ms == window.start_ms => (e.left, e.exhausted, e.shard, e.ahead),
                _ => (0, false, home, false),
            };
            // A key far over its limit in the window just ended (this isolate refused more
            // of it than it was granted): the isolate asks in this one only from a moment of
            // its own in its first half, so the isolates that all refuse it do not all ask at
            // the edge; the requests before that moment are refused here.
            let far_over = l.refused_n > l.granted_n
                && l.start_ms.saturating_add(len_ms) == window.start_ms
                && l.shards == shards
                && holds_when_far_over(key);
            let hold = mix(self.seed.rotate_left(8), hash) % (len_ms / 2).max(1);
            let consecutive = l.start_ms.saturating_add(len_ms) == window.start_ms;
            *l = Lease {
                granted_n: left,
                steady_before: consecutive && l.granted_n >= 2,
                before_seen: if consecutive { l.window_seen } else { 0 },
                hold_until_ms: if far_over {
                    window.start_ms.saturating_add(hold)
                } else {
                    0
                },
                left,
                exhausted,
                shard,
                asked_ms: l.asked_ms,
                seen: l.seen,
                on_early: left > 0 && !ahead,
                ..fresh
            };
        }
        l.seen = l.seen.saturating_add(1);
        l.window_seen = l.window_seen.saturating_add(1);
        // Rare: the requests of this window so far and of the one before came at most
        // `RARE_DEMAND` a lease period on average (steadier than the last gap alone).
        let since_ms = if l.before_seen > 0 {
            now_ms
                .saturating_sub(window.start_ms)
                .saturating_add(len_ms)
        } else {
            now_ms.saturating_sub(l.first_ms)
        }
        .max(1);
        let rare = u64::from(l.window_seen.saturating_add(l.before_seen))
            .saturating_mul(LEASE_PERIOD_MS)
            <= u64::from(RARE_DEMAND).saturating_mul(since_ms);
        let elapsed = l.asked_ms.map(|t| now_ms.saturating_sub(t));
        let demand = want(l.seen, elapsed);
        let until_end = LEASE_PERIOD_MS.min(window.end_ms().saturating_sub(now_ms));
        let mut now_want = want_within(l.seen, elapsed, until_end);
        // A key this isolate sees less than once a lease period but again and again within the
        // window (it was granted before in this window): one request is asked ahead, so that the
        // next is admitted from the lease (and refilled off the path after it), if the next is
        // due before the window ends. What this holds unspent at the end is at most one.
        let left_in_window = window.end_ms().saturating_sub(now_ms);
        let steady = demand >= 2 || l.granted_n >= 2 || l.steady_before;
        if (l.granted_n >= 1 || l.steady_before) && elapsed.is_some_and(|e| e < left_in_window) {
            now_want = now_want.max(2);
        }
        let ask = |l: &mut Lease, shard: u32| {
            l.asked_ms = Some(now_ms);
            l.seen = 0;
            l.on_early = false;
            Local::Ask(Ask {
                key: shard_key(key, shard, shards),
                window: Window {
                    limit: shard_limit(limit, shard, shards),
                    ..window
                },
                want: now_want,
                ahead: 0,
            })
        };
        let mut refill = None;
        let mut local = if l.left > 0 {
            l.left -= 1;
            // An isolate that sees the key more than once a lease period refills its lease
            // off the request's path before it runs out, so its requests keep being admitted
            // from the lease and none waits on the object: when what is left would last less
            // than a fraction of a period of its own (`phase`, up to half a period), so that
            // isolates starting a window on early leases of their own sizes refill at moments
            // spread over the period, not all at the edge.
            // One that sees it rarely keeps one spare, so that two requests closer together than
            // a refill takes to come back do not wait either.
            let low = u64::from(l.left).saturating_mul(2000)
                < u64::from(demand).saturating_mul(phase)
                || (l.left <= 1 && rare);
            if steady && !l.on_early && !l.refilling && !l.exhausted && (l.left == 0 || low) {
                l.refilling = true;
                l.asked_ms = Some(now_ms);
                l.seen = 0;
                refill = Some(Ask {
                    key: shard_key(key, l.shard, shards),
                    window: Window {
                        limit: shard_limit(limit, l.shard, shards),
                        ..window
                    },
                    // A rare one's refill brings its lease back to two: one and its spare.
                    want: if rare {
                        demand.max(2 - l.left.min(1))
                    } else {
                        demand.max(1)
                    },
                    ahead: 0,
                });
            }
            Local::Admit
        } else if now_ms < l.hold_until_ms {
            l.refused_n = l.refused_n.saturating_add(1);
            Local::Refuse
        } else if !l.exhausted {
            ask(l, l.shard)
        } else if l.may_move(now_ms) {
            l.move_on(self.seed, now_ms);
            ask(l, l.shard)
        } else {
            l.refused_n = l.refused_n.saturating_add(1);
            Local::Refuse
        };
        // Only an isolate that sees the key more often than once a lease period takes the next
        // window's lease early: one that sees it rarely asks after the edge at a moment its own
        // traffic spreads, and taking early would hold a request it may never use.
        let next = window.next();
        let mut prefetch = None;
        // Nor one that sees the key far over its limit: it would ask for nothing there is.
        let far_over = l.exhausted && l.refused_n > l.granted_n;
        let early_free = !far_over && l.early.is_none_or(|e| e.start_ms != next.start_ms);
        if !rare && demand >= 2 && now_ms >= early_at && early_free {
            l.early = Some(Early {
                start_ms: next.start_ms,
                shard: home,
                left: 0,
                exhausted: false,
                ahead: false,
            });
            prefetch = Some(Ask {
                key: shard_key(key, home, shards),
                window: Window {
                    limit: shard_limit(limit, home, shards),
                    ..next
                },
                want: Leases::early_want(phase, demand),
                ahead: 0,
            });
        }
        // One that sees the key rarely but again and again (granted twice in this window, or
        // steadily in the one before) takes one request of the next window ahead in the last
        // span, in the call it makes anyway (its refill, or its ask): its first request after
        // the edge is then admitted from the lease like the others, at no call of its own. What
        // it holds unspent is at most that one.
        let rare_steady = rare && (l.granted_n >= 2 || l.steady_before) && !l.exhausted;
        let span = PREFETCH_SPAN_MS.min(len_ms / 4).max(1);
        let in_span = now_ms >= window.end_ms().saturating_sub(span);
        if rare_steady && in_span && early_free {
            let call = match (&mut refill, &mut local) {
                (Some(ask), _) | (None, Local::Ask(ask)) => Some(ask),
                _ => None,
            };
            let early = Some(Early {
                start_ms: next.start_ms,
                shard: l.shard,
                left: 0,
                exhausted: false,
                ahead: true,
            });
            if let Some(ask) = call {
                ask.ahead = 1;
                l.early = early;
            } else if now_ms >= ahead_at {
                // No call to ride on (its lease has a spare): from its own moment in the span,
                // the one ahead is taken on its own, off the path.
                l.early = early;
                prefetch = Some(Ask {
                    key: shard_key(key, l.shard, shards),
                    window: Window {
                        limit: shard_limit(limit, l.shard, shards),
                        ..next
                    },
                    want: 1,
                    ahead: 0,
                });
            }
        }
        Plan {
            window,
            local,
            prefetch,
            refill,
        }
    }

    /// Records what the object granted for a [`Plan::refill`] (`None`: the refill failed; the
    /// next request that finds the lease low tries again).
    pub fn refilled(&mut self, key: &str, ask: &Ask, granted: Option<u32>) {
        let Some(l) = self.leases.get_mut(key) else {
            return;
        };
        if l.start_ms != ask.window.start_ms {
            // A refill of an ended window: what it granted is lost (strict side), and the new
            // window's lease was never waiting on it.
            return;
        }
        l.refilling = false;
        match granted {
            Some(0) if shard_key(key, l.shard, l.shards) == ask.key => {
                l.exhausted = true;
            }
            Some(n) => {
                l.granted_n = l.granted_n.saturating_add(n);
                l.left = l.left.saturating_add(n);
            }
            None => {}
        }
    }

    /// Records what the object granted for `ask` (of [`Plan::local`]); the caller's own
    /// request takes one of them. Returns whether that request is admitted.
    pub fn granted(&mut self, key: &str, ask: &Ask, granted: u32) -> bool {
        let Some(l) = self.leases.get_mut(key) else {
            return granted > 0;
        };
        if l.start_ms != ask.window.start_ms {
            // The window moved on while the object answered: the grant of an ended window is
            // spent on this request only (it was admitted in that window).
            return granted > 0;
        }
        if granted == 0 {
            l.refused_n = l.refused_n.saturating_add(1);
            // A late refusal from a shard the isolate has moved on from does not stop it.
            if shard_key(key, l.shard, l.shards) == ask.key {
                l.exhausted = true;
            }
            return false;
        }
        l.granted_n = l.granted_n.saturating_add(granted);
        l.left = l.left.saturating_add(granted - 1);
        true
    }

    /// After `ask` (a [`Plan::local`] ask of `key` under `limit`) was refused by its shard: the
    /// same request's ask of another shard, its answer going to [`Leases::granted`] too. That
    /// is the shard the isolate has moved on to meanwhile (several of its requests may ask a
    /// shard at once and all find it empty), or the next of its walk when it may move on now
    /// (see [`Leases::plan`]). So a request is not refused by a shard that ran out while the
    /// key's other shards have room.
    pub fn retry_elsewhere(
        &mut self,
        key: &str,
        ask: &Ask,
        limit: u32,
        now_ms: u64,
    ) -> Option<Ask> {
        let seed = self.seed;
        let l = self.leases.get_mut(key)?;
        if l.start_ms != ask.window.start_ms {
            return None;
        }
        if shard_key(key, l.shard, l.shards) == ask.key {
            if !l.exhausted || !l.may_move(now_ms) {
                return None;
            }
            l.move_on(seed, now_ms);
        } else if l.exhausted {
            // The shard it moved on to ran out as well.
            return None;
        }
        // The request is asked for again: its refusal is not the window's yet.
        l.refused_n = l.refused_n.saturating_sub(1);
        l.asked_ms = Some(now_ms);
        Some(Ask {
            key: shard_key(key, l.shard, l.shards),
            window: Window {
                limit: shard_limit(limit, l.shard, l.shards),
                ..ask.window
            },
            want: ask.want,
            ahead: 0,
        })
    }

    /// Records what the object granted of the next window for an ask's [`Ask::ahead`].
    pub fn took_ahead(&mut self, key: &str, ask: &Ask, granted: u32) {
        if ask.ahead == 0 {
            return;
        }
        if let Some(e) = self
            .leases
            .get_mut(key)
            .and_then(|l| l.early.as_mut())
            .filter(|e| e.start_ms == ask.window.next().start_ms)
        {
            e.left = e.left.saturating_add(granted);
            e.exhausted = granted == 0;
        }
    }

    /// Records what the object granted for a [`Plan::prefetch`].
    pub fn prefetched(&mut self, key: &str, ask: &Ask, granted: u32) {
        if let Some(e) = self
            .leases
            .get_mut(key)
            .and_then(|l| l.early.as_mut())
            .filter(|e| e.start_ms == ask.window.start_ms)
        {
            e.left = e.left.saturating_add(granted);
            e.exhausted = granted == 0;
        }
    }

    /// A request admitted under `key` in `window` that is not to count (a sign-in that
    /// succeeded): back into the lease, if the lease is still of that window.
    pub fn give_back(&mut self, key: &str, window: Window) {
        if let Some(l) = self
            .leases
            .get_mut(key)
            .filter(|l| l.start_ms == window.start_ms)
        {
            l.left = l.left.saturating_add(1);
            // A request that does not count is not demand: the next lease is not sized for it.
            l.seen = l.seen.saturating_sub(1);
        }
    }

    fn make_room(&mut self, key: &str, window: Window) {
        if self.leases.len() >= self.capacity && !self.leases.contains_key(key) {
            self.leases.retain(|_, l| l.start_ms >= window.start_ms);
            if self.leases.len() >= self.capacity {
                self.leases.clear();
            }
        }
    }

    /// Unspent requests of the current window this isolate holds for `key`.
    pub fn held(&self, key: &str) -> u32 {
        self.leases.get(key).map_or(0, |l| l.left)
    }
}

/// The 429 for a key whose window is used up.
pub fn limited(what: &str, window: Window, now_ms: u64) -> ApiError {
    let reset_s = window.reset_s(now_ms);
    ApiError {
        detail: Detail::RateLimit {
            limit: window.limit,
            reset_s,
        },
        ..ApiError::new(
            ErrorCode::RateLimited,
            format!("too many requests ({what}): try again in {reset_s} s"),
        )
    }
}

/// Failed password sign-ins allowed per window, by what they are counted against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginLimits {
    /// From one network (address group), whatever the usernames: a school's pupils may share one.
    pub per_network: u32,
    /// For one username from one network, or from one browser the user signed in with before.
    pub per_network_user: u32,
    /// For one username from all networks together: bounds guessing spread over many networks.
    /// Much larger than `per_network_user`, so that locking the user out of new browsers takes
    /// many networks, and never counted for the user's own browsers.
    pub per_user: u32,
}

/// One counter a sign-in attempt takes a slot from: its limiter key, its limit, and what the
/// refusal says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginSlot {
    pub key: String,
    pub limit: u32,
    pub why: &'static str,
    /// The counter is about the user (their username or their browser): it lives in the user's
    /// region. A network's counter lives in the region the request comes from.
    pub of_user: bool,
}

/// The counters a password attempt counts against. Failures are counted per network and per
/// (network, username), so someone failing on purpose from their own networks does not lock the
/// real user out of a browser on another network; a browser with the user's trusted device
/// cookie (`device`, its hash) is counted on its own instead; and a high per-username ceiling
/// over all networks bounds guessing from many networks (own browsers are exempt from it).
pub fn login_slots(
    network: &str,
    username: Option<&str>,
    device: Option<&str>,
    limits: &LoginLimits,
) -> Vec<LoginSlot> {
    let mut slots = vec![LoginSlot {
        key: format!("login:ip:{network}"),
        limit: limits.per_network,
        why: "too many failed sign-ins from this network",
        of_user: false,
    }];
    match (device, username) {
        (Some(d), Some(_)) => slots.push(LoginSlot {
            key: format!("login:device:{d}"),
            limit: limits.per_network_user,
            why: "too many failed sign-ins from this browser",
            of_user: true,
        }),
        (None, Some(u)) => {
            slots.push(LoginSlot {
                key: format!("login:net-user:{network}:{u}"),
                limit: limits.per_network_user,
                why: "too many failed sign-ins for this username from this network",
                of_user: true,
            });
            slots.push(LoginSlot {
                key: format!("login:user:{u}"),
                limit: limits.per_user,
                why: "too many failed sign-ins for this username",
                of_user: true,
            });
        }
        (_, None) => {}
    }
    slots
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_080_000; // 40 s into a minute window aligned to the epoch

    #[test]
    fn windows_are_fixed_and_reset_counts_whole_seconds() {
        let w = Window::at_offset(T0, MINUTE_MS, 0, 10);
        assert_eq!(w.start_ms, 1_700_000_040_000);
        assert_eq!(w.reset_s(T0), 20);
        assert_eq!(w.reset_s(T0 + 19_001), 1);
        assert_eq!(w.reset_s(T0 + 25_000), 1, "never 0");
        let shifted = Window::at_offset(T0, MINUTE_MS, 50_000, 10);
        assert_eq!(shifted.start_ms, 1_700_000_030_000);
        assert_eq!(shifted.reset_s(T0), 10);
        assert_eq!(
            Window::at_offset(T0, MINUTE_MS, 41_000, 10).start_ms,
            1_700_000_081_000 - MINUTE_MS,
            "an offset just ahead of now starts the window a minute before it"
        );
        assert_eq!(
            Window::at_offset(T0, MINUTE_MS, 40_000, 10).start_ms,
            T0,
            "at the offset itself a window starts"
        );
        assert_eq!(shifted.next().start_ms, shifted.end_ms());
    }

    #[test]
    fn a_keys_window_offset_is_its_hash_as_the_tests_compute_it() {
        // tests/e2e/ratelimit.test.mjs computes the same: SHA-256, first 8 bytes big-endian.
        assert_eq!(key_hash("login:ip:192.0.2.7"), 0xc830_0c39_0769_3b24_u64);
        let w = Window::of_key("login:ip:192.0.2.7", T0, 4_000, 5);
        assert_eq!(
            w.start_ms % 4_000,
            window_offset_ms("login:ip:192.0.2.7", 4_000)
        );
        assert!(w.start_ms <= T0 && T0 < w.end_ms());
    }

    #[test]
    fn window_edges_of_many_keys_are_spread_over_the_window() {
        let mut per_second = [0u32; 60];
        for i in 0..6_000 {
            let off = window_offset_ms(&format!("api:client:c{i}"), MINUTE_MS);
            per_second[(off / 1000) as usize] += 1;
        }
        // 100 a second on average; aligned windows would put all 6,000 in one second.
        let most = per_second.iter().max().copied().unwrap();
        assert!(most <= 150, "{per_second:?}");
    }

    #[test]
    fn counter_never_grants_past_the_limit_nor_more_than_a_sixteenth_of_what_remains() {
        let w = Window::at_offset(T0, MINUTE_MS, 0, 100);
        let mut c = Counter::default();
        assert_eq!(c.take(w, 50), 6, "100 / 16");
        assert_eq!(c.take(w, 1), 1);
        let mut granted = 7;
        while granted < 100 {
            let g = c.take(w, 1_000);
            assert!(g >= 1 && g <= ((100 - granted) / 16).max(1), "{g}");
            granted += g;
        }
        assert_eq!(c.take(w, 4), 0);
        let older = Window::at_offset(T0 - MINUTE_MS, MINUTE_MS, 0, 100);
        assert_eq!(
            c.take(older, 4),
            0,
            "a late isolate does not reopen the window"
        );
        let far = Window::at_offset(T0 + 5 * MINUTE_MS, MINUTE_MS, 0, 100);
        assert_eq!(c.take(far, 4), 4);
    }

    #[test]
    fn counter_counts_the_next_window_apart_and_moves_on_to_it() {
        let w = Window::at_offset(T0, MINUTE_MS, 0, 10);
        let mut c = Counter::default();
        assert_eq!(c.take(w, 1), 1);
        assert_eq!(c.take(w.next(), 1), 1, "an early lease of the next window");
        assert_eq!(
            c.ends_ms(),
            w.next().end_ms(),
            "kept until the next window ends"
        );
        for _ in 0..9 {
            assert_eq!(c.take(w, 1), 1);
        }
        assert_eq!(c.take(w, 1), 0, "the current window is full");
        // The window after next: the counter moves on, keeping what the next window was given.
        assert_eq!(c.take(w.next().next(), 1), 1);
        assert_eq!((c.start_ms, c.used, c.next_used), (w.next().start_ms, 1, 1));
        for _ in 0..9 {
            assert_eq!(c.take(w.next(), 1), 1);
        }
        assert_eq!(
            c.take(w.next(), 1),
            0,
            "early grants counted in that window"
        );
    }

    #[test]
    fn counter_stored_before_staggered_windows_errs_strict_for_one_window() {
        // A counter of an earlier release: an aligned start, no length, no next window.
        let old: Counter = serde_json::from_str(r#"{"start_ms":1700000040000,"used":10}"#).unwrap();
        assert_eq!(old.len_ms, 0);
        // A staggered window that started before it is counted against it...
        let mut c = old;
        let before = Window::at_offset(T0, MINUTE_MS, 50_000, 10);
        assert!(before.start_ms < old.start_ms);
        assert_eq!(c.take(before, 1), 0);
        // ...and the window after starts afresh.
        assert_eq!(c.take(before.next(), 1), 1);
        assert_eq!(c.len_ms, MINUTE_MS);
    }

    #[test]
    fn give_back_only_returns_to_the_same_window() {
        let w = Window::at_offset(T0, 300_000, 0, 3);
        let mut c = Counter::default();
        assert_eq!(c.take(w, 3), 1);
        assert_eq!(c.take(w, 3), 1);
        assert_eq!(c.take(w, 3), 1);
        c.give_back(w, 1);
        assert_eq!(c.take(w, 3), 1);
        let later = Window::at_offset(T0 + 900_000, 300_000, 0, 3);
        c.give_back(later, 5);
        assert_eq!(c.used, 3);
    }

    #[test]
    fn demand_sizes_the_lease() {
        assert_eq!(want(1, None), 1, "first ask");
        assert_eq!(want(1, Some(5_000)), 1, "rare requests: one by one");
        assert_eq!(want(3, Some(100)), 6, "at most twice what was seen");
        assert_eq!(want(40, Some(1_000)), 40, "a lease period's worth");
        assert_eq!(want(400, Some(4_000)), 100);
        assert_eq!(want(u32::MAX, Some(1)), MAX_LEASE);
        assert_eq!(
            want_within(40, Some(1_000), 100),
            4,
            "only what fits before the end"
        );
    }

    #[test]
    fn hot_keys_are_split_and_the_shards_add_up_to_the_limit() {
        assert_eq!(shard_count(6_000, MINUTE_MS), 1);
        assert_eq!(shard_count(24_000, MINUTE_MS), 1);
        assert_eq!(shard_count(24_001, MINUTE_MS), 2);
        assert_eq!(shard_count(22_500_000, MINUTE_MS), 938);
        assert_eq!(shard_count(MAX_LIMIT, MINUTE_MS), MAX_SHARDS);
        assert_eq!(shard_count(100, 300_000), 1, "sign-in windows");
        for (limit, shards) in [(22_500_000, 938), (24_001, 2), (7, 3), (MAX_LIMIT, 4_096)] {
            let sum: u64 = (0..shards)
                .map(|s| u64::from(shard_limit(limit, s, shards)))
                .sum();
            assert_eq!(sum, u64::from(limit), "{limit} in {shards}");
        }
        assert_eq!(shard_key("api:client:c", 0, 1), "api:client:c");
        assert_eq!(shard_key("api:client:c", 7, 75), "api:client:c:7");
        // Isolates spread over the shards.
        let mut per_shard = [0u32; 75];
        for seed in 0..7_500u64 {
            let l = Leases::new(4, seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            per_shard[l.home_shard("api:client:big", 75) as usize] += 1;
        }
        assert!(
            per_shard.iter().all(|&n| (60..=140).contains(&n)),
            "{per_shard:?}"
        );
    }

    /// Isolates and limiter objects, run in one thread: every ask answered at once.
    struct Sim {
        isolates: Vec<Leases>,
        objects: HashMap<String, Counter>,
        /// Calls per object per second (ms / 1000).
        calls: HashMap<(String, u64), u32>,
        /// Admitted per window start.
        admitted: HashMap<u64, u32>,
        /// Granted by the objects per window start.
        granted: HashMap<u64, u32>,
    }

    impl Sim {
        fn new(n: usize) -> Sim {
            Sim {
                isolates: (0..n as u64)
                    .map(|i| Leases::new(64, (i + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)))
                    .collect(),
                objects: HashMap::new(),
                calls: HashMap::new(),
                admitted: HashMap::new(),
                granted: HashMap::new(),
            }
        }

        fn take(&mut self, ask: &Ask, now: u64) -> u32 {
            self.take_ahead(ask, now).0
        }

        fn take_ahead(&mut self, ask: &Ask, now: u64) -> (u32, u32) {
            *self.calls.entry((ask.key.clone(), now / 1000)).or_default() += 1;
            let (g, a) = self
                .objects
                .entry(ask.key.clone())
                .or_default()
                .take_ahead(ask.window, ask.want, ask.ahead);
            *self.granted.entry(ask.window.start_ms).or_default() += g;
            *self.granted.entry(ask.window.end_ms()).or_default() += a;
            (g, a)
        }

        fn request(&mut self, i: usize, key: &str, limit: u32, len: u64, now: u64) -> bool {
            let plan = self.isolates[i].plan(key, limit, len, now);
            if let Some(early) = &plan.prefetch {
                let g = self.take(early, now);
                self.isolates[i].prefetched(key, early, g);
            }
            let ok = match &plan.local {
                Local::Admit => true,
                Local::Refuse => false,
                Local::Ask(ask) => {
                    let (g, a) = self.take_ahead(ask, now);
                    self.isolates[i].took_ahead(key, ask, a);
                    self.isolates[i].granted(key, ask, g)
                        || match self.isolates[i].retry_elsewhere(key, ask, limit, now) {
                            Some(again) => {
                                let g = self.take(&again, now);
                                self.isolates[i].granted(key, &again, g)
                            }
                            None => false,
                        }
                }
            };
            if let Some(refill) = &plan.refill {
                let (g, a) = self.take_ahead(refill, now);
                self.isolates[i].took_ahead(key, refill, a);
                self.isolates[i].refilled(key, refill, Some(g));
            }
            if ok {
                *self.admitted.entry(plan.window.start_ms).or_default() += 1;
            }
            ok
        }

        /// Whether isolate `i`'s next request of `key` would wait on the object.
        fn waits(&mut self, i: usize, key: &str, limit: u32, len: u64, now: u64) -> bool {
            let plan = self.isolates[i].plan(key, limit, len, now);
            let waits = matches!(plan.local, Local::Ask(_));
            if let Local::Ask(ask) = &plan.local {
                let (g, a) = self.take_ahead(ask, now);
                self.isolates[i].took_ahead(key, ask, a);
                self.isolates[i].granted(key, ask, g);
            }
            if let Some(refill) = &plan.refill {
                let (g, a) = self.take_ahead(refill, now);
                self.isolates[i].took_ahead(key, refill, a);
                self.isolates[i].refilled(key, refill, Some(g));
            }
            if let Some(early) = &plan.prefetch {
                let g = self.take(early, now);
                self.isolates[i].prefetched(key, early, g);
            }
            waits
        }

        fn most_calls_a_second(&self) -> u32 {
            self.calls.values().max().copied().unwrap_or(0)
        }

        fn held(&self, key: &str) -> u32 {
            self.isolates.iter().map(|l| l.held(key)).sum()
        }
    }

    /// A small deterministic generator for interleavings.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % n
        }
    }

    #[test]
    fn many_isolates_never_admit_more_than_the_limit_in_any_window() {
        for (limit, len, isolates) in [
            (100, MINUTE_MS, 300),
            (1_000, MINUTE_MS, 50),
            (40_000, 10_000, 60), // split into 10 shards
        ] {
            let key = format!("api:client:race{limit}");
            let mut sim = Sim::new(isolates);
            let mut rng = Lcg(limit as u64);
            let mut now = T0;
            let step_us = len * 1000 / (u64::from(limit) * 3); // demand: 3x the limit
            let mut us = 0;
            while now < T0 + 3 * len {
                let i = rng.next(isolates as u64) as usize;
                sim.request(i, &key, limit, len, now);
                us += step_us.max(1);
                now = T0 + us / 1000;
            }
            for (start, n) in &sim.admitted {
                assert!(*n <= limit, "{key}: {n} admitted in the window at {start}");
            }
            let full: Vec<u32> = sim
                .admitted
                .iter()
                .filter(|(s, _)| **s > T0 && **s + len < now)
                .map(|(_, n)| *n)
                .collect();
            assert!(!full.is_empty());
            for n in full {
                // Strict by less than a sixteenth of the limit for each of... far less here.
                assert!(n * 10 >= limit * 9, "{key}: only {n} of {limit} admitted");
            }
        }
    }

    #[test]
    fn a_key_an_isolate_sees_steadily_never_waits_on_the_object_after_its_first_requests() {
        // 50 requests a second in one isolate for three windows: after the first few, every
        // request is admitted from the lease, refilled off the request's path.
        let key = "api:client:steady";
        let mut sim = Sim::new(1);
        let mut waited = Vec::new();
        let mut now = T0;
        while now < T0 + 3 * MINUTE_MS {
            waited.push(sim.waits(0, key, 100_000, MINUTE_MS, now));
            now += 20;
        }
        let late: usize = waited.iter().skip(20).filter(|w| **w).count();
        assert!(
            late * 1000 <= waited.len(),
            "{late} of {} waited",
            waited.len()
        );
        assert!(waited[0], "the first request of a key asks");
    }

    #[test]
    fn a_key_an_isolate_sees_every_few_seconds_waits_only_in_its_first_window_and_holds_at_most_two(
    ) {
        // One request every 2.5 s (a partner's traffic spread over many isolates). The first
        // requests ask; from then on each is admitted from the lease, refilled off the path, and
        // across each edge by the one of the next window taken ahead in the last span, in the
        // refill the isolate makes anyway. Each window's grants are all admitted but two at
        // most (the lease and its spare).
        let key = "api:client:sparse";
        let limit = 100_000;
        let w = Window::of_key(key, T0, MINUTE_MS, limit);
        let mut sim = Sim::new(1);
        let mut waits_per_window: HashMap<u64, u32> = HashMap::new();
        let mut now = w.start_ms;
        let end = w.start_ms + 5 * MINUTE_MS;
        while now < end {
            let start = Window::of_key(key, now, MINUTE_MS, limit).start_ms;
            let plan = sim.isolates[0].plan(key, limit, MINUTE_MS, now);
            if let Local::Ask(ask) = &plan.local {
                *waits_per_window.entry(start).or_default() += 1;
                let (g, a) = sim.take_ahead(ask, now);
                sim.isolates[0].took_ahead(key, ask, a);
                assert!(sim.isolates[0].granted(key, ask, g));
            }
            if let Some(refill) = &plan.refill {
                let (g, a) = sim.take_ahead(refill, now);
                sim.isolates[0].took_ahead(key, refill, a);
                sim.isolates[0].refilled(key, refill, Some(g));
            }
            assert!(
                plan.prefetch.is_none(),
                "no call of its own for the next window"
            );
            *sim.admitted.entry(start).or_default() += 1;
            now += 2_500;
        }
        assert_eq!(waits_per_window.len(), 1, "{waits_per_window:?}");
        assert!(waits_per_window[&w.start_ms] <= 2, "{waits_per_window:?}");
        for k in 1..4 {
            let s = w.start_ms + k * MINUTE_MS;
            let (granted, admitted) = (sim.granted[&s], sim.admitted[&s]);
            assert!(
                granted >= admitted && granted - admitted <= 2,
                "window {k}: granted {granted}, admitted {admitted}"
            );
        }
        assert!(sim.held(key) <= 2, "holds at most one and its spare");
    }

    #[test]
    fn a_key_seen_rarely_keeps_a_spare_so_two_requests_closer_than_a_refill_do_not_wait() {
        // Every 3 s, and then twice 10 ms apart while the refill the first one started is still
        // on its way (it comes back only after the second): neither waits.
        let key = "api:client:spare";
        let limit = 100_000;
        let w = Window::of_key(key, T0, MINUTE_MS, limit);
        let mut l = Leases::new(8, 11);
        let mut objects: HashMap<String, Counter> = HashMap::new();
        let mut take = |ask: &Ask| {
            objects
                .entry(ask.key.clone())
                .or_default()
                .take_ahead(ask.window, ask.want, ask.ahead)
        };
        let mut now = w.start_ms;
        for _ in 0..8 {
            let plan = l.plan(key, limit, MINUTE_MS, now);
            if let Local::Ask(ask) = &plan.local {
                let (g, _) = take(ask);
                l.granted(key, ask, g);
            }
            if let Some(refill) = &plan.refill {
                let (g, _) = take(refill);
                l.refilled(key, refill, Some(g));
            }
            now += 3_000;
        }
        let first = l.plan(key, limit, MINUTE_MS, now);
        assert_eq!(first.local, Local::Admit);
        let second = l.plan(key, limit, MINUTE_MS, now + 10);
        assert_eq!(second.local, Local::Admit, "the spare admits the second");
        assert!(
            first.refill.is_some() || second.refill.is_some(),
            "the lease is refilled"
        );
    }

    #[test]
    fn a_key_seen_rarely_takes_the_next_windows_one_ahead_only_in_its_last_span() {
        // The one ahead of the next window is taken no earlier than the last span and no more
        // than once: an isolate that goes quiet after it holds one request of the next window.
        let key = "api:client:ahead";
        let limit = 100_000;
        let w = Window::of_key(key, T0, MINUTE_MS, limit);
        let mut sim = Sim::new(1);
        let mut now = w.start_ms;
        let mut aheads = Vec::new();
        while now < w.end_ms() {
            let plan = sim.isolates[0].plan(key, limit, MINUTE_MS, now);
            for ask in plan.refill.iter().chain(match &plan.local {
                Local::Ask(a) => Some(a),
                _ => None,
            }) {
                if ask.ahead > 0 {
                    aheads.push(now);
                }
                let (g, a) = sim.take_ahead(ask, now);
                sim.isolates[0].took_ahead(key, ask, a);
                if plan.refill.as_ref() == Some(ask) {
                    sim.isolates[0].refilled(key, ask, Some(g));
                } else {
                    sim.isolates[0].granted(key, ask, g);
                }
            }
            now += 3_000;
        }
        assert_eq!(aheads.len(), 1, "{aheads:?}");
        assert!(aheads[0] >= w.end_ms() - PREFETCH_SPAN_MS, "{aheads:?}");
        assert_eq!(
            sim.granted[&w.end_ms()],
            1,
            "one request of the next window"
        );
    }

    #[test]
    fn a_refill_that_fails_or_comes_after_its_window_changes_nothing_but_the_flag() {
        let key = "api:client:refill";
        let w = Window::of_key(key, T0, MINUTE_MS, 1_000);
        let mut l = Leases::new(8, 7);
        let mut now = w.start_ms;
        let mut refill = None;
        for _ in 0..50 {
            let plan = l.plan(key, 1_000, MINUTE_MS, now);
            if let Local::Ask(ask) = &plan.local {
                l.granted(key, ask, ask.want);
            }
            if plan.refill.is_some() {
                refill = plan.refill;
                break;
            }
            now += 10;
        }
        let refill = refill.expect("a steady key refills");
        let held = l.held(key);
        l.refilled(key, &refill, None);
        assert_eq!(l.held(key), held, "a failed refill adds nothing");
        // The flag is down again: the next low lease refills.
        let mut again = false;
        for _ in 0..10 {
            now += 10;
            let plan = l.plan(key, 1_000, MINUTE_MS, now);
            if let Local::Ask(ask) = &plan.local {
                l.granted(key, ask, ask.want);
            }
            again |= plan.refill.is_some();
        }
        assert!(again, "a failed refill is tried again");
        // A refill answered after its window ended adds nothing to the next window's lease.
        let next = w.end_ms() + 1;
        let _ = l.plan(key, 1_000, MINUTE_MS, next);
        let before = l.held(key);
        l.refilled(key, &refill, Some(500));
        assert_eq!(l.held(key), before);
    }

    #[test]
    fn a_small_partner_is_counted_exactly_across_many_isolates() {
        // 100 a minute; 1,000 isolates each see one request a minute: every request is asked
        // for one by one, so exactly the limit is admitted, whatever the spread.
        let mut sim = Sim::new(1_000);
        let key = "api:client:small";
        let w = Window::of_key(key, T0, MINUTE_MS, 100);
        let mut admitted = 0;
        for k in 0..1_000u64 {
            let now = w.start_ms + k * 59;
            admitted += u32::from(sim.request(k as usize, key, 100, MINUTE_MS, now));
        }
        assert_eq!(admitted, 100);
        assert_eq!(sim.held(key), 0, "nothing held unspent");
    }

    #[test]
    fn idle_isolates_hold_at_most_the_documented_bound() {
        // 40 isolates each see a burst of 3 requests, then go quiet; one isolate then keeps
        // asking. What the quiet ones hold is all that is lost, each at most twice its burst,
        // and all of it under limit * (1 - (15/16)^K).
        let (limit, k) = (1_000u32, 40usize);
        let key = "api:client:bursty";
        let w = Window::of_key(key, T0, MINUTE_MS, limit);
        let mut sim = Sim::new(k + 1);
        let mut admitted = 0;
        for i in 0..k {
            for r in 0..3 {
                let now = w.start_ms + (i as u64) * 100 + r * 10;
                admitted += u32::from(sim.request(i, key, limit, MINUTE_MS, now));
            }
        }
        let mut now = w.start_ms + 10_000;
        while now < w.end_ms() {
            admitted += u32::from(sim.request(k, key, limit, MINUTE_MS, now));
            now += 5;
        }
        let idle: Vec<u32> = (0..k).map(|i| sim.isolates[i].held(key)).collect();
        assert!(idle.iter().all(|&h| h <= 2 * 3), "{idle:?}");
        let lost: u32 = idle.iter().sum();
        assert_eq!(
            admitted + sim.held(key),
            limit,
            "every grant admitted or held"
        );
        let bound = f64::from(limit) * (1.0 - (15.0f64 / 16.0).powi(k as i32));
        assert!(f64::from(lost) <= bound, "{lost} > {bound}");
        assert!(admitted >= limit - 2 * 3 * k as u32, "{admitted}");
    }

    #[test]
    fn one_keys_isolates_do_not_all_ask_at_its_window_edge() {
        // 1,000 isolates each see the key about 5 times a second. Around the edge the object is
        // asked no more often than in the middle of the window.
        let key = "api:client:steady";
        let limit = 1_000_000;
        let w = Window::of_key(key, T0, MINUTE_MS, limit);
        let mut sim = Sim::new(1_000);
        let mut rng = Lcg(7);
        let start = w.start_ms + 20_000;
        let end = w.end_ms() + 20_000;
        let mut us = 0u64;
        loop {
            let now = start + us / 1000;
            if now >= end {
                break;
            }
            sim.request(rng.next(1_000) as usize, key, limit, MINUTE_MS, now);
            us += 200; // 5,000 a second
        }
        // Over all of the key's shards (1,000,000 a minute is 42).
        let per_s = |s: u64| -> u32 {
            sim.calls
                .iter()
                .filter(|((_, t), _)| *t == s)
                .map(|(_, n)| *n)
                .sum()
        };
        let mid: Vec<u32> = (25..35)
            .map(|d| per_s((w.start_ms + d * 1000) / 1000))
            .collect();
        let steady = mid.iter().sum::<u32>() / 10;
        let edge_s = w.end_ms() / 1000;
        let around: Vec<u32> = (edge_s - 12..edge_s + 5).map(per_s).collect();
        let most = around.iter().max().copied().unwrap();
        assert!(
            most * 2 <= steady * 3,
            "around the edge {around:?}, steady {steady}"
        );
        assert!(sim.admitted.values().all(|&n| n <= limit));
    }

    #[test]
    fn a_refused_shard_sends_the_isolate_on_to_the_others() {
        // One isolate, a limit split in 4 (16,000 per 10 s), asked 3,000 times a second: it
        // reaches every shard within the window and is admitted the whole limit, never more.
        let (limit, len) = (16_000u32, 10_000u64);
        assert_eq!(shard_count(limit, len), 4);
        let key = "api:client:one-isolate";
        let w = Window::of_key(key, T0, len, limit);
        let mut sim = Sim::new(1);
        let mut admitted = 0;
        for ms in 0..len {
            for _ in 0..3 {
                admitted += u32::from(sim.request(0, key, limit, len, w.start_ms + ms));
            }
        }
        assert!(admitted <= limit);
        assert!(admitted >= limit - 16, "{admitted}");
        assert_eq!(sim.objects.keys().filter(|k| k.starts_with(key)).count(), 4);
        assert!(
            sim.most_calls_a_second() < 500,
            "{}",
            sim.most_calls_a_second()
        );
    }

    #[test]
    fn a_walk_over_the_shards_visits_each_once() {
        for shards in [1u32, 2, 3, 4, 12, 75, 938, 4_096] {
            for random in [0u64, 1, 7, 12_345, u64::MAX] {
                let stride = walk_stride(random, shards);
                let mut seen = std::collections::HashSet::new();
                let mut s = random as u32 % shards;
                for _ in 0..shards {
                    seen.insert(s);
                    s = (s + stride) % shards;
                }
                assert_eq!(seen.len(), shards as usize, "{shards} by {stride}");
            }
        }
    }

    #[test]
    fn a_shard_is_asked_at_most_its_rate_even_when_every_request_is_a_take() {
        // The worst case of the shard rule: 2,000 isolates each see the key once every 5 s, so
        // each request is its own take; the shard's limit (24,000 a minute, 400 a second) is
        // the most it is asked for a second, plus the refusals once it is spent.
        let key = "api:client:thin:0";
        let limit = 24_000;
        assert_eq!(shard_count(limit, MINUTE_MS), 1);
        let mut sim = Sim::new(2_000);
        let mut rng = Lcg(5);
        let mut us = 0u64;
        while us < 70_000_000 {
            sim.request(
                rng.next(2_000) as usize,
                key,
                limit,
                MINUTE_MS,
                T0 + us / 1000,
            );
            us += 2_500; // 400 a second
        }
        let most = sim.most_calls_a_second();
        assert!(most <= 500, "{most} calls in one second");
        assert!(sim.admitted.values().all(|&n| n <= limit));
    }

    #[test]
    fn the_largest_partners_shard_is_asked_a_few_times_a_second_at_10x() {
        // docs/storage.md: the largest partner's client key at 10x the peak, 22,500,000 a minute,
        // is 938 shards of 24,000 a minute (400 a second), each the home of about 11 of 10,000
        // isolates at 37.5 calls a second, through a window edge.
        let key = "api:client:largest:0";
        let limit = 24_000;
        let mut sim = Sim::new(11);
        let mut rng = Lcg(11);
        let mut us = 0u64;
        while us < 70_000_000 {
            sim.request(rng.next(11) as usize, key, limit, MINUTE_MS, T0 + us / 1000);
            us += 2_424; // 412.5 a second
        }
        // After the first second, in which every isolate's lease grows from 1 by doubling.
        let first_s = T0 / 1000;
        let most = sim
            .calls
            .iter()
            .filter(|((_, s), _)| *s > first_s)
            .map(|(_, n)| *n)
            .max()
            .unwrap();
        assert!(most <= 40, "{most} calls in one second");
        assert!(sim.admitted.values().all(|&n| n <= limit));
    }

    #[test]
    fn a_request_its_shard_refuses_asks_another_at_once_then_one_move_a_lease_period() {
        let (limit, key) = (60_000u32, "api:client:three");
        assert_eq!(shard_count(limit, MINUTE_MS), 3);
        let mut l = Leases::new(4, 7);
        let Local::Ask(first) = l.plan(key, limit, MINUTE_MS, T0).local else {
            panic!("the first request asks")
        };
        assert_eq!(first.key, shard_key(key, l.home_shard(key, 3), 3));
        // Its shard ran out: the same request asks another, and is admitted there.
        assert!(!l.granted(key, &first, 0));
        let again = l.retry_elsewhere(key, &first, limit, T0).unwrap();
        assert_ne!(again.key, first.key);
        assert_eq!(again.window.limit, limit / 3);
        assert!(l.granted(key, &again, 1));
        // That shard refuses too, within the lease period: no third shard yet, a refusal.
        let Local::Ask(second) = l.plan(key, limit, MINUTE_MS, T0 + 10).local else {
            panic!("the lease is spent: an ask")
        };
        assert_eq!(second.key, again.key);
        assert!(!l.granted(key, &second, 0));
        assert_eq!(l.retry_elsewhere(key, &second, limit, T0 + 10), None);
        assert_eq!(l.plan(key, limit, MINUTE_MS, T0 + 20).local, Local::Refuse);
        // A lease period after the move, the next request goes on to the third shard.
        let Local::Ask(third) = l.plan(key, limit, MINUTE_MS, T0 + LEASE_PERIOD_MS).local else {
            panic!("a move after a lease period")
        };
        assert!(third.key != first.key && third.key != again.key);
        // A refusal from a shard the isolate has left (a request that asked it meanwhile) is
        // asked again where the isolate is now, and does not move it on.
        assert!(!l.granted(key, &first, 0));
        let late = l
            .retry_elsewhere(key, &first, limit, T0 + LEASE_PERIOD_MS)
            .unwrap();
        assert_eq!(late.key, third.key);
        assert!(!l.granted(key, &third, 0));
        assert_eq!(
            l.retry_elsewhere(key, &third, limit, T0 + LEASE_PERIOD_MS),
            None
        );
    }

    #[test]
    fn one_busy_isolate_far_under_a_sharded_limit_is_never_refused() {
        // One isolate carries all of a client's calls, 1,400 a second (84,000 a minute), for two
        // minutes: its home shard runs out within each window, and it must move on to another
        // at once rather than refuse for a lease period. 10,000,000 a minute is 417 shards of
        // about 24,000; 100,000 is 5 of 20,000 (the demand is 84% of it).
        for (limit, shards) in [(10_000_000u32, 417u32), (100_000, 5)] {
            assert_eq!(shard_count(limit, MINUTE_MS), shards);
            let key = "api:client:busy";
            let mut sim = Sim::new(1);
            let mut refused = 0u32;
            let mut us = 0u64;
            while us < 120_000_000 {
                if !sim.request(0, key, limit, MINUTE_MS, T0 + us / 1000) {
                    refused += 1;
                }
                us += 714;
            }
            assert_eq!(refused, 0, "limit {limit}");
            // Moving on is one ask more: a shard stays under its rate (as a shard runs dry its
            // grants shrink, a sixteenth of what remains, and the isolate asks more often).
            let most = sim.calls.values().copied().max().unwrap();
            assert!(
                u64::from(most) <= SHARD_RATE_PER_S,
                "limit {limit}: {most} calls to one shard in a second"
            );
        }
    }

    #[test]
    fn uneven_shards_err_strict_by_little_when_isolates_move_on() {
        // 20 shards (80,000 per 10 s), 200 isolates of uneven traffic (1 to 79 a second) and
        // demand 10% above the limit: refused isolates move to other shards, and the window
        // admits nearly the whole limit (99.8% here; lease periods are a tenth of this short
        // window, a sixtieth of a minute's).
        let (limit, len) = (80_000u32, 10_000u64);
        assert_eq!(shard_count(limit, len), 20);
        let key = "api:client:uneven";
        let w = Window::of_key(key, T0, len, limit);
        let mut sim = Sim::new(200);
        let weights: Vec<u64> = (0..200u64).map(|i| 1 + (i * 37) % 79).collect();
        let total: u64 = weights.iter().sum();
        let mut rng = Lcg(3);
        let mut us = 0u64;
        while us < len * 1000 {
            let mut pick = rng.next(total);
            let mut i = 0;
            while pick >= weights[i] {
                pick -= weights[i];
                i += 1;
            }
            sim.request(i, key, limit, len, w.start_ms + us / 1000);
            us += 114; // 8,800 a second
        }
        let admitted = sim.admitted.get(&w.start_ms).copied().unwrap_or(0);
        assert!(admitted <= limit);
        assert!(admitted * 100 >= limit * 99, "{admitted} of {limit}");
    }

    #[test]
    fn a_sign_in_that_succeeds_goes_back_into_the_lease() {
        let mut l = Leases::new(4, 1);
        let key = "login:ip:192.0.2.1";
        let plan = l.plan(key, 3, 300_000, T0);
        let Local::Ask(ask) = plan.local else {
            panic!("{plan:?}")
        };
        assert_eq!(ask.want, 1);
        assert!(l.granted(key, &ask, 1));
        l.give_back(key, plan.window);
        assert_eq!(l.plan(key, 3, 300_000, T0 + 1).local, Local::Admit);
        // A give-back of another window is dropped.
        l.give_back(key, plan.window.next());
        assert_eq!(l.held(key), 0);
    }

    #[test]
    fn a_new_window_asks_again() {
        let mut leases = Leases::new(4, 1);
        let p = leases.plan("k", 1, MINUTE_MS, T0);
        let Local::Ask(ask) = &p.local else {
            panic!("{p:?}")
        };
        assert!(leases.granted("k", ask, 1));
        assert!(matches!(
            leases.plan("k", 1, MINUTE_MS, T0 + 1).local,
            Local::Ask(_)
        ));
        let next = p.window.end_ms();
        assert!(
            matches!(leases.plan("k", 1, MINUTE_MS, next).local, Local::Ask(_)),
            "an isolate that was granted what it refused asks at once in the next window"
        );
    }

    #[test]
    fn an_isolate_that_saw_a_key_far_over_its_limit_asks_in_the_next_window_from_a_moment_of_its_own(
    ) {
        let key = "api:client:far-over";
        let w = Window::of_key(key, T0, MINUTE_MS, 10);
        let mut firsts = Vec::new();
        for seed in 1..=200u64 {
            let mut l = Leases::new(4, seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            // Refused by the object, then locally: more refused than granted.
            let p = l.plan(key, 10, MINUTE_MS, w.start_ms + 1_000);
            let Local::Ask(ask) = &p.local else {
                panic!("{p:?}")
            };
            assert!(!l.granted(key, ask, 0));
            let again = l.plan(key, 10, MINUTE_MS, w.start_ms + 1_500);
            assert_eq!(again.local, Local::Refuse);
            assert_eq!(
                again.prefetch, None,
                "no early lease of a window there is nothing of"
            );
            let mut now = w.end_ms();
            let first = loop {
                match l.plan(key, 10, MINUTE_MS, now).local {
                    Local::Refuse => now += 250,
                    Local::Ask(_) => break now - w.end_ms(),
                    Local::Admit => panic!("nothing was granted"),
                }
            };
            assert!(first <= MINUTE_MS / 2, "asks in the first half: {first}");
            firsts.push(first);
        }
        // The moments are spread over the half window: no second holds a large share of them.
        let mut per_5s = [0u32; 6];
        for f in &firsts {
            per_5s[(*f / 5_000).min(5) as usize] += 1;
        }
        assert!(per_5s.iter().all(|&n| (15..=55).contains(&n)), "{per_5s:?}");
    }

    #[test]
    fn a_sign_in_counter_that_was_far_over_is_asked_at_once_in_the_next_window() {
        let key = "login:ip:192.0.2.7";
        let w = Window::of_key(key, T0, 300_000, 10);
        let mut l = Leases::new(4, 99);
        let p = l.plan(key, 10, 300_000, w.start_ms + 1_000);
        let Local::Ask(ask) = &p.local else {
            panic!("{p:?}")
        };
        assert!(!l.granted(key, ask, 0));
        for k in 0..20 {
            assert_eq!(
                l.plan(key, 10, 300_000, w.start_ms + 2_000 + k).local,
                Local::Refuse
            );
        }
        assert!(
            matches!(l.plan(key, 10, 300_000, w.end_ms()).local, Local::Ask(_)),
            "a school's network gets in as soon as its window allows"
        );
        assert!(holds_when_far_over("api:client:x") && holds_when_far_over("token:partner:y"));
    }

    #[test]
    fn a_key_far_over_a_small_limit_is_asked_a_few_hundred_times_a_second_by_ten_thousand_isolates()
    {
        // Every one of 10,000 isolates sees the key once a second, far over its limit of 600 a
        // minute: after the first window, each isolate asks about once a window, at a moment of
        // its own, and never more than the limit is admitted.
        let key = "api:client:hammered";
        let limit = 600;
        let n = 10_000usize;
        let mut sim = Sim::new(n);
        let start = Window::of_key(key, T0, MINUTE_MS, limit).end_ms();
        let mut rng = Lcg(3);
        let mut us = 0u64;
        loop {
            let now = start + us / 1000;
            if now >= start + 3 * MINUTE_MS {
                break;
            }
            sim.request(rng.next(n as u64) as usize, key, limit, MINUTE_MS, now);
            us += 100; // 10,000 a second
        }
        let busiest = (start / 1000 + 60..start / 1000 + 180)
            .map(|s| {
                sim.calls
                    .iter()
                    .filter(|((_, t), _)| *t == s)
                    .map(|(_, c)| *c)
                    .sum::<u32>()
            })
            .max()
            .unwrap();
        assert!(busiest <= 500, "{busiest} calls in one second");
        assert!(sim.admitted.values().all(|&a| a <= limit));
        let later: Vec<u32> = sim
            .admitted
            .iter()
            .filter(|(s, _)| **s >= start + MINUTE_MS && **s + MINUTE_MS <= start + 3 * MINUTE_MS)
            .map(|(_, a)| *a)
            .collect();
        assert!(
            !later.is_empty() && later.iter().all(|&a| a * 10 >= limit * 9),
            "{later:?}"
        );
    }

    #[test]
    fn leases_are_bounded_in_number() {
        let mut leases = Leases::new(8, 1);
        for i in 0..100 {
            let _ = leases.plan(&format!("k{i}"), 10, MINUTE_MS, T0);
        }
        assert!(leases.leases.len() <= 8);
    }

    #[test]
    fn limited_carries_the_headers_numbers() {
        let w = Window::at_offset(T0, MINUTE_MS, 0, 10);
        let e = limited("client", w, T0);
        assert_eq!(e.code, ErrorCode::RateLimited);
        assert_eq!(
            e.detail,
            Detail::RateLimit {
                limit: 10,
                reset_s: 20
            }
        );
    }

    #[test]
    fn limits_parse_with_defaults_and_name_the_bad_field() {
        assert_eq!(parse_limits(None).unwrap(), None);
        let v: Value = serde_json::json!({"api_per_minute": 10});
        let l = parse_limits(Some(&v)).unwrap().unwrap();
        assert_eq!(l.api_per_minute, 10);
        assert_eq!(l.token_per_minute, DEFAULT_LIMITS.token_per_minute);
        for (bad, field) in [
            (
                serde_json::json!({"api_per_minute": 0}),
                "rate_limits.api_per_minute",
            ),
            (
                serde_json::json!({"api_per_minute": -1}),
                "rate_limits.api_per_minute",
            ),
            (
                serde_json::json!({"api_per_minute": 1.5}),
                "rate_limits.api_per_minute",
            ),
            (
                serde_json::json!({"api_per_minute": "9"}),
                "rate_limits.api_per_minute",
            ),
            (serde_json::json!({"per_hour": 9}), "rate_limits"),
            (serde_json::json!([1]), "rate_limits"),
        ] {
            assert_eq!(
                parse_limits(Some(&bad)).unwrap_err().field.as_deref(),
                Some(field),
                "{bad}"
            );
        }
    }

    const LOGIN: LoginLimits = LoginLimits {
        per_network: 100,
        per_network_user: 10,
        per_user: 100,
    };

    fn keys(slots: &[LoginSlot]) -> Vec<&str> {
        slots.iter().map(|s| s.key.as_str()).collect()
    }

    #[test]
    fn login_failures_are_counted_per_network_and_username() {
        let a = login_slots("192.0.2.7", Some("pupil"), None, &LOGIN);
        assert_eq!(
            keys(&a),
            [
                "login:ip:192.0.2.7",
                "login:net-user:192.0.2.7:pupil",
                "login:user:pupil"
            ]
        );
        assert_eq!(
            a.iter().map(|s| s.limit).collect::<Vec<_>>(),
            [100, 10, 100]
        );
        assert_eq!(
            a.iter().map(|s| s.of_user).collect::<Vec<_>>(),
            [false, true, true],
            "the counters naming the user live in the user's region"
        );
        // Another network counts the same username on a counter of its own...
        let b = login_slots("198.51.100.1", Some("pupil"), None, &LOGIN);
        assert_ne!(a[1].key, b[1].key);
        assert_ne!(a[0].key, b[0].key);
        // ...and only the all-networks ceiling, far above one network's share, is shared.
        assert_eq!(a[2].key, b[2].key);
        assert!(a[2].limit >= 10 * a[1].limit);
    }

    #[test]
    fn login_from_a_trusted_browser_skips_the_username_counters() {
        let s = login_slots("192.0.2.7", Some("pupil"), Some("devhash"), &LOGIN);
        assert_eq!(keys(&s), ["login:ip:192.0.2.7", "login:device:devhash"]);
        assert_eq!(s[1].limit, LOGIN.per_network_user);
    }

    #[test]
    fn login_without_a_username_counts_against_the_network_only() {
        let s = login_slots("unknown", None, Some("devhash"), &LOGIN);
        assert_eq!(keys(&s), ["login:ip:unknown"]);
        assert_eq!(
            keys(&login_slots("unknown", None, None, &LOGIN)),
            ["login:ip:unknown"]
        );
    }
}
