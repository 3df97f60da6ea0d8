//! Usage counters per partner and client per hour: requests, refusals at the edge, 4xx, 5xx and
//! a latency histogram (for the p50). Isolates add up their requests in a small buffer and hand
//! it to the usage object every few seconds; histograms merge exactly, so the p50 of an hour is
//! the p50 of all its requests, to the resolution of the buckets. Time is passed in.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::dates::ymd;

/// Upper bounds (ms, inclusive) of the latency buckets; one more bucket holds everything above.
pub const LATENCY_BOUNDS_MS: [u64; 23] = [
    1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100, 150, 200, 300, 500, 700, 1_000, 1_500, 2_000,
    3_000, 5_000, 10_000,
];
const BUCKETS: usize = LATENCY_BOUNDS_MS.len() + 1;
/// How long usage rows are kept.
pub const RETENTION_S: u64 = 90 * 86_400;
/// Most rows one query returns.
pub const QUERY_LIMIT: usize = 1_000;
/// Most rows an isolate buffers before it hands them over, whatever the interval.
pub const BUFFER_ROWS: usize = 256;

/// The counts of one partner, client and hour.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub requests: u64,
    /// Refused at the edge (token, scope, origin, partner, rate limit, bad input): never forwarded.
    pub denied: u64,
    pub status_4xx: u64,
    pub status_5xx: u64,
    /// Requests per latency bucket (see [`LATENCY_BOUNDS_MS`]).
    pub latency: Vec<u64>,
}

impl Counts {
    pub fn add(&mut self, status: u16, denied: bool, duration_ms: u64) {
        self.requests += 1;
        self.denied += u64::from(denied);
        self.status_4xx += u64::from((400..500).contains(&status));
        self.status_5xx += u64::from(status >= 500);
        let bucket = LATENCY_BOUNDS_MS
            .iter()
            .position(|b| duration_ms <= *b)
            .unwrap_or(LATENCY_BOUNDS_MS.len());
        self.latency.resize(BUCKETS, 0);
        if let Some(n) = self.latency.get_mut(bucket) {
            *n += 1;
        }
    }

    pub fn merge(&mut self, other: &Counts) {
        self.requests += other.requests;
        self.denied += other.denied;
        self.status_4xx += other.status_4xx;
        self.status_5xx += other.status_5xx;
        if self.latency.len() < other.latency.len() {
            self.latency.resize(other.latency.len(), 0);
        }
        for (mine, theirs) in self.latency.iter_mut().zip(&other.latency) {
            *mine += theirs;
        }
    }

    /// The upper bound of the bucket that holds the median request (for the last bucket, its
    /// lower bound): "half the requests took at most this long". `None` without requests.
    pub fn p50_ms(&self) -> Option<u64> {
        let total: u64 = self.latency.iter().sum();
        if total == 0 {
            return None;
        }
        let half = total.div_ceil(2);
        let mut seen = 0;
        for (i, n) in self.latency.iter().enumerate() {
            seen += n;
            if seen >= half {
                return LATENCY_BOUNDS_MS
                    .get(i)
                    .or(LATENCY_BOUNDS_MS.last())
                    .copied();
            }
        }
        LATENCY_BOUNDS_MS.last().copied()
    }
}

/// The start of the hour of `now_s`.
pub fn hour_of(now_s: u64) -> u64 {
    now_s - now_s % 3_600
}

/// One row: an hour (its start, in seconds since the epoch), a partner, a client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRow {
    pub hour: u64,
    pub partner_id: String,
    /// `-` for requests whose client is not known (a partner's page refused before a token was
    /// admitted).
    pub client_id: String,
    pub counts: Counts,
}

impl UsageRow {
    /// The row as `GET /admin/usage` shows it.
    pub fn view(&self) -> serde_json::Value {
        let c = &self.counts;
        let hh = (self.hour % 86_400) / 3_600;
        serde_json::json!({
            "hour": self.hour,
            "hour_utc": format!("{}T{hh:02}:00Z", ymd(self.hour)),
            "partner_id": self.partner_id,
            "client_id": self.client_id,
            "requests": c.requests,
            "denied": c.denied,
            "status_4xx": c.status_4xx,
            "status_5xx": c.status_5xx,
            "p50_ms": c.p50_ms(),
        })
    }
}

/// An isolate's counts not yet handed over.
#[derive(Debug, Default)]
pub struct Buffer {
    rows: BTreeMap<(u64, String, String), Counts>,
    oldest_ms: Option<u64>,
}

impl Buffer {
    pub fn record(
        &mut self,
        now_ms: u64,
        partner: &str,
        client: &str,
        status: u16,
        denied: bool,
        duration_ms: u64,
    ) {
        let key = (
            hour_of(now_ms / 1000),
            partner.to_owned(),
            client.to_owned(),
        );
        self.rows
            .entry(key)
            .or_default()
            .add(status, denied, duration_ms);
        self.oldest_ms.get_or_insert(now_ms);
    }

    /// Whether the buffer should be handed over: it is older than `interval_ms` or full.
    pub fn due(&self, now_ms: u64, interval_ms: u64) -> bool {
        self.rows.len() >= BUFFER_ROWS
            || self
                .oldest_ms
                .is_some_and(|t| now_ms.saturating_sub(t) >= interval_ms)
    }

    /// Empties the buffer into rows.
    pub fn take(&mut self) -> Vec<UsageRow> {
        self.oldest_ms = None;
        std::mem::take(&mut self.rows)
            .into_iter()
            .map(|((hour, partner_id, client_id), counts)| UsageRow {
                hour,
                partner_id,
                client_id,
                counts,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_classify_statuses_and_denials() {
        let mut c = Counts::default();
        c.add(200, false, 3);
        c.add(401, true, 1);
        c.add(404, false, 12);
        c.add(502, false, 3000);
        assert_eq!(
            (c.requests, c.denied, c.status_4xx, c.status_5xx),
            (4, 1, 2, 1)
        );
        assert_eq!(c.latency.iter().sum::<u64>(), 4);
    }

    #[test]
    fn p50_is_the_bound_of_the_median_bucket_and_merges_exactly() {
        let mut a = Counts::default();
        for ms in [1, 1, 1, 40, 40] {
            a.add(200, false, ms);
        }
        assert_eq!(a.p50_ms(), Some(1));
        let mut b = Counts::default();
        for ms in [40, 40, 40, 40] {
            b.add(200, false, ms);
        }
        a.merge(&b);
        assert_eq!(a.requests, 9);
        assert_eq!(
            a.p50_ms(),
            Some(50),
            "6 of 9 requests in the 31-50 ms bucket"
        );
        let mut slow = Counts::default();
        slow.add(200, false, 60_000);
        assert_eq!(slow.p50_ms(), Some(10_000));
        assert_eq!(Counts::default().p50_ms(), None);
    }

    #[test]
    fn buffer_groups_by_hour_partner_client_and_is_due_by_age_or_size() {
        let t = 1_795_381_189_000;
        let mut b = Buffer::default();
        assert!(!b.due(t, 0), "an empty buffer is never due");
        b.record(t, "acme", "c1", 200, false, 5);
        b.record(t + 1, "acme", "c1", 429, true, 1);
        b.record(t, "acme", "c2", 200, false, 5);
        b.record(t + 3_600_000, "acme", "c1", 200, false, 5);
        assert!(!b.due(t + 9_999, 10_000));
        assert!(b.due(t + 10_000, 10_000));
        let rows = b.take();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].counts.requests, 2);
        assert_eq!(rows[0].hour, hour_of(t / 1000));
        assert!(!b.due(t + 20_000, 10_000), "taken");
        assert_eq!(
            rows[0].view()["hour_utc"],
            format!("{}T{:02}:00Z", ymd(t / 1000), (t / 1000 % 86_400) / 3_600)
        );
    }
}
