//! Rate limits: fixed windows counted in one Durable Object per key (exact: never more than the
//! limit is admitted per window, wherever requests come from), handed to isolates in small
//! leases so that the hot path asks the object once per lease, not once per request.
//!
//! A lease is a number of requests an isolate may admit on its own in the current window. The
//! object never grants more than the limit in a window, so leases cannot add up past it; an
//! isolate that holds unused leased requests when another isolate runs dry only makes the limit
//! bite early, never late. Time is passed in.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::{ApiError, Detail, ErrorCode};

/// The window of the API and token-endpoint limits.
pub const MINUTE_MS: u64 = 60_000;
/// Most requests an isolate leases at once.
pub const MAX_LEASE: u32 = 64;
/// Largest limit an operator may set (per minute).
pub const MAX_LIMIT: u32 = 10_000_000;

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
    pub fn at(now_ms: u64, len_ms: u64, limit: u32) -> Window {
        let len_ms = len_ms.max(1);
        Window {
            start_ms: now_ms - now_ms % len_ms,
            len_ms,
            limit,
        }
    }

    /// Whole seconds until the window ends (at least 1): `Retry-After` and `RateLimit-Reset`.
    pub fn reset_s(&self, now_ms: u64) -> u64 {
        let end = self.start_ms.saturating_add(self.len_ms);
        end.saturating_sub(now_ms).div_ceil(1000).max(1)
    }
}

/// How many requests an isolate asks for at once: a sixteenth of the limit, 1 to [`MAX_LEASE`].
pub fn lease_size(limit: u32) -> u32 {
    (limit / 16).clamp(1, MAX_LEASE)
}

/// The object's count for one key: how many requests it granted in the current window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    pub start_ms: u64,
    pub used: u32,
}

impl Counter {
    /// Grants up to `want` requests of `window`: fewer when the limit is near, none when it is
    /// reached. A later window resets the count; an earlier one (a slow isolate's clock) is
    /// counted against the current window, never against a fresh one.
    pub fn take(&mut self, window: Window, want: u32) -> u32 {
        if window.start_ms > self.start_ms {
            *self = Counter {
                start_ms: window.start_ms,
                used: 0,
            };
        }
        let granted = want.min(window.limit.saturating_sub(self.used));
        self.used += granted;
        granted
    }

    /// Gives back requests taken in `window` and not used (a login that succeeded).
    pub fn give_back(&mut self, window: Window, n: u32) {
        if window.start_ms == self.start_ms {
            self.used = self.used.saturating_sub(n);
        }
    }
}

/// What an isolate knows of a key in the current window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Lease {
    start_ms: u64,
    left: u32,
    /// The object granted nothing: refuse until the window ends without asking again.
    exhausted: bool,
}

/// The isolate's decision before asking the object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Local {
    Admit,
    Refuse,
    /// Ask the object for this many.
    Ask(u32),
}

/// The leases an isolate holds, bounded: when full, leases of past windows go first, then all.
pub struct Leases {
    leases: HashMap<String, Lease>,
    capacity: usize,
}

impl Leases {
    pub fn new(capacity: usize) -> Leases {
        Leases {
            leases: HashMap::new(),
            capacity,
        }
    }

    /// Admits one request from the lease of `key`, if it has one left in `window`.
    pub fn try_local(&mut self, key: &str, window: Window) -> Local {
        match self.leases.get_mut(key) {
            Some(l) if l.start_ms == window.start_ms => {
                if l.left > 0 {
                    l.left -= 1;
                    Local::Admit
                } else if l.exhausted {
                    Local::Refuse
                } else {
                    Local::Ask(lease_size(window.limit))
                }
            }
            _ => Local::Ask(lease_size(window.limit)),
        }
    }

    /// Records what the object granted; the caller's own request takes one of them.
    /// Returns whether that request is admitted.
    pub fn granted(&mut self, key: &str, window: Window, granted: u32) -> bool {
        if self.leases.len() >= self.capacity && !self.leases.contains_key(key) {
            self.leases.retain(|_, l| l.start_ms >= window.start_ms);
            if self.leases.len() >= self.capacity {
                self.leases.clear();
            }
        }
        let l = self.leases.entry(key.to_owned()).or_insert(Lease {
            start_ms: window.start_ms,
            left: 0,
            exhausted: false,
        });
        if l.start_ms != window.start_ms {
            *l = Lease {
                start_ms: window.start_ms,
                left: 0,
                exhausted: false,
            };
        }
        if granted == 0 {
            l.exhausted = true;
            return false;
        }
        l.left = l.left.saturating_add(granted - 1);
        true
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
    }];
    match (device, username) {
        (Some(d), Some(_)) => slots.push(LoginSlot {
            key: format!("login:device:{d}"),
            limit: limits.per_network_user,
            why: "too many failed sign-ins from this browser",
        }),
        (None, Some(u)) => {
            slots.push(LoginSlot {
                key: format!("login:net-user:{network}:{u}"),
                limit: limits.per_network_user,
                why: "too many failed sign-ins for this username from this network",
            });
            slots.push(LoginSlot {
                key: format!("login:user:{u}"),
                limit: limits.per_user,
                why: "too many failed sign-ins for this username",
            });
        }
        (_, None) => {}
    }
    slots
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_080_000; // 40 s into a minute window

    #[test]
    fn windows_are_fixed_and_reset_counts_whole_seconds() {
        let w = Window::at(T0, MINUTE_MS, 10);
        assert_eq!(w.start_ms, 1_700_000_040_000);
        assert_eq!(w.reset_s(T0), 20);
        assert_eq!(w.reset_s(T0 + 19_001), 1);
        assert_eq!(w.reset_s(T0 + 25_000), 1, "never 0");
    }

    #[test]
    fn counter_never_grants_past_the_limit_and_resets_with_the_window() {
        let w = Window::at(T0, MINUTE_MS, 10);
        let mut c = Counter::default();
        assert_eq!(c.take(w, 4), 4);
        assert_eq!(c.take(w, 4), 4);
        assert_eq!(c.take(w, 4), 2, "only what is left");
        assert_eq!(c.take(w, 4), 0);
        let older = Window::at(T0 - MINUTE_MS, MINUTE_MS, 10);
        assert_eq!(
            c.take(older, 4),
            0,
            "a late isolate does not reopen the window"
        );
        let next = Window::at(T0 + MINUTE_MS, MINUTE_MS, 10);
        assert_eq!(c.take(next, 4), 4);
    }

    #[test]
    fn give_back_only_returns_to_the_same_window() {
        let w = Window::at(T0, 300_000, 3);
        let mut c = Counter::default();
        assert_eq!(c.take(w, 3), 3);
        c.give_back(w, 1);
        assert_eq!(c.take(w, 3), 1);
        let next = Window::at(T0 + 300_000, 300_000, 3);
        c.give_back(next, 5);
        assert_eq!(c.used, 3);
    }

    #[test]
    fn leases_admit_exactly_the_limit_from_one_isolate() {
        let w = Window::at(T0, MINUTE_MS, 50);
        let mut object = Counter::default();
        let mut leases = Leases::new(16);
        let mut admitted = 0;
        let mut asks = 0;
        for _ in 0..80 {
            let ok = match leases.try_local("k", w) {
                Local::Admit => true,
                Local::Refuse => false,
                Local::Ask(n) => {
                    asks += 1;
                    leases.granted("k", w, object.take(w, n))
                }
            };
            admitted += u32::from(ok);
        }
        assert_eq!(admitted, 50);
        assert_eq!(object.used, 50);
        // 50/16 = 3 per lease: 17 leases, then one refusal from the object, then local refusals.
        assert_eq!(asks, 18);
    }

    #[test]
    fn leases_of_many_isolates_never_add_up_past_the_limit() {
        let w = Window::at(T0, MINUTE_MS, 100);
        let mut object = Counter::default();
        let mut isolates: Vec<Leases> = (0..7).map(|_| Leases::new(16)).collect();
        let mut admitted = 0;
        for i in 0..1000 {
            let l = &mut isolates[i % 7];
            let ok = match l.try_local("k", w) {
                Local::Admit => true,
                Local::Refuse => false,
                Local::Ask(n) => l.granted("k", w, object.take(w, n)),
            };
            admitted += u32::from(ok);
        }
        assert!(admitted <= 100, "{admitted}");
        assert!(admitted >= 100 - 7 * lease_size(100), "{admitted}");
    }

    #[test]
    fn a_new_window_asks_again() {
        let w = Window::at(T0, MINUTE_MS, 1);
        let mut leases = Leases::new(4);
        assert_eq!(leases.try_local("k", w), Local::Ask(1));
        assert!(!leases.granted("k", w, 0));
        assert_eq!(leases.try_local("k", w), Local::Refuse);
        let next = Window::at(T0 + MINUTE_MS, MINUTE_MS, 1);
        assert_eq!(leases.try_local("k", next), Local::Ask(1));
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

    #[test]
    fn limited_carries_the_headers_numbers() {
        let w = Window::at(T0, MINUTE_MS, 10);
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
