//! Back-off after failures of a remote endpoint we depend on (a partner's `jwks_uri`): after the
//! first failure in a row nothing is tried for 5 s, after each further one twice as long, at
//! most 5 minutes; a success forgets the failures. Forged requests that name a partner whose
//! endpoint fails thus cost that endpoint one fetch per back-off period, not one per request.

/// The wait after the first failure in a row...
pub const FIRST_WAIT_MS: u64 = 5_000;
/// ...doubling with each further failure, up to this.
pub const MAX_WAIT_MS: u64 = 5 * 60 * 1000;

/// Failures in a row of one endpoint, and until when it is left alone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backoff {
    failures: u32,
    until_ms: u64,
}

impl Backoff {
    /// How long to wait after `failures` failures in a row (at least one).
    pub fn wait_ms(failures: u32) -> u64 {
        // 5 s · 2^(n-1); past 2^6 the cap holds anyway, so the shift never overflows.
        let doublings = failures.saturating_sub(1).min(16);
        FIRST_WAIT_MS
            .saturating_mul(1u64 << doublings)
            .min(MAX_WAIT_MS)
    }

    /// The state after another failure at `now_ms`.
    pub fn failed(self, now_ms: u64) -> Backoff {
        let failures = self.failures.saturating_add(1);
        Backoff {
            failures,
            until_ms: now_ms.saturating_add(Backoff::wait_ms(failures)),
        }
    }

    /// Whether the endpoint is to be left alone at `now_ms`.
    pub fn waiting(&self, now_ms: u64) -> bool {
        now_ms < self.until_ms
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_five_seconds_to_five_minutes() {
        let waits: Vec<u64> = (1..=9).map(Backoff::wait_ms).collect();
        assert_eq!(
            waits,
            [5, 10, 20, 40, 80, 160, 300, 300, 300].map(|s| s * 1000)
        );
        assert_eq!(
            Backoff::wait_ms(0),
            FIRST_WAIT_MS,
            "never less than the first wait"
        );
        assert_eq!(Backoff::wait_ms(u32::MAX), MAX_WAIT_MS, "no overflow");
    }

    #[test]
    fn backoff_leaves_the_endpoint_alone_until_its_wait_is_over() {
        let fresh = Backoff::default();
        assert!(!fresh.waiting(0), "nothing failed yet: try");
        let once = fresh.failed(1_000);
        assert_eq!(once.failures(), 1);
        assert!(once.waiting(1_000));
        assert!(once.waiting(5_999));
        assert!(!once.waiting(6_000), "5 s after the first failure");
        // The next attempt fails too: twice as long, counted from that failure.
        let twice = once.failed(6_000);
        assert!(twice.waiting(15_999));
        assert!(!twice.waiting(16_000));
        // Many failures later the wait stays at five minutes.
        let mut many = twice;
        for i in 0..20 {
            many = many.failed(100_000 * i);
        }
        let at = 100_000 * 19;
        assert!(many.waiting(at + MAX_WAIT_MS - 1));
        assert!(!many.waiting(at + MAX_WAIT_MS));
    }
}
