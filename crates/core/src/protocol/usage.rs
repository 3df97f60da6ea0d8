//! Usage counters per partner and client per hour: requests, refusals at the edge, 4xx, 5xx and
//! a latency histogram (for the p50). Isolates add up their requests in a small buffer and send
//! it to the usage queue every few seconds ([`Outbox`]); histograms merge exactly, so the p50 of
//! an hour is the p50 of all its requests, to the resolution of the buckets. Time and
//! randomness are passed in.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::dates::ymd;

/// Upper bounds (ms, inclusive) of the latency buckets; one more bucket holds everything above.
pub const LATENCY_BOUNDS_MS: [u64; 23] = [
    1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100, 150, 200, 300, 500, 700, 1_000, 1_500, 2_000,
    3_000, 5_000, 10_000,
];
/// How long usage rows are kept.
pub const RETENTION_S: u64 = 90 * 86_400;
/// Most rows one query returns.
pub const QUERY_LIMIT: usize = 1_000;
/// Most rows an isolate buffers before it hands them over, whatever the interval; also the most
/// rows one queue message carries (a row is at most ~400 bytes of JSON: a message stays well
/// under the queue's 128 KB).
pub const BUFFER_ROWS: usize = 256;
/// Most rows the buffer holds while sends fail: a request of a new (hour, partner, client) past
/// this is not counted (and the loss is logged), so memory stays bounded.
pub const MAX_BUFFER_ROWS: usize = 4 * BUFFER_ROWS;
/// Most messages an isolate keeps for a second try after their send failed.
pub const MAX_PENDING: usize = 4;
/// Number of latency buckets (the bounds and one above them).
pub const BUCKETS: usize = LATENCY_BOUNDS_MS.len() + 1;

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
    /// Requests not counted because the buffer was full (see [`MAX_BUFFER_ROWS`]).
    uncounted: u64,
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
        if self.rows.len() >= MAX_BUFFER_ROWS && !self.rows.contains_key(&key) {
            self.uncounted += 1;
            return;
        }
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
        self.take_up_to(usize::MAX)
    }

    /// Takes at most `limit` rows, the oldest hours first; what is left stays due.
    pub fn take_up_to(&mut self, limit: usize) -> Vec<UsageRow> {
        let rest = match self.rows.keys().nth(limit).cloned() {
            Some(key) => self.rows.split_off(&key),
            None => BTreeMap::new(),
        };
        let taken = std::mem::replace(&mut self.rows, rest);
        if self.rows.is_empty() {
            self.oldest_ms = None;
        }
        taken
            .into_iter()
            .map(|((hour, partner_id, client_id), counts)| UsageRow {
                hour,
                partner_id,
                client_id,
                counts,
            })
            .collect()
    }

    /// How many requests went uncounted since the last call (the buffer was full), and resets it.
    pub fn take_uncounted(&mut self) -> u64 {
        std::mem::take(&mut self.uncounted)
    }
}

/// One queue message of usage counts: a batch id (the consumer applies each id once, so a
/// message delivered twice, or sent again after a send whose answer was lost, counts once) and
/// its rows. On the wire: `{"batch":"<32 hex digits>","rows":[UsageRow, ...]}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageBatch {
    pub batch: String,
    pub rows: Vec<UsageRow>,
}

impl UsageBatch {
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The message, if it is one: a batch id of 1-200 characters and at most `MAX_BUFFER_ROWS`
    /// rows.
    pub fn decode(text: &str) -> Option<UsageBatch> {
        let batch: UsageBatch = serde_json::from_str(text).ok()?;
        let ok = (1..=200).contains(&batch.batch.len()) && batch.rows.len() <= MAX_BUFFER_ROWS;
        ok.then_some(batch)
    }
}

/// A batch id: 128 random bits as 32 lowercase hex digits.
pub fn batch_id(random: [u8; 16]) -> String {
    random.iter().map(|b| format!("{b:02x}")).collect()
}

/// An isolate's usage on its way to the queue: the buffer, and the messages whose send failed,
/// kept with their batch id and sent again as they were (so a send that did arrive although it
/// reported a failure is deduplicated by the consumer, never counted twice).
#[derive(Debug, Default)]
pub struct Outbox {
    pub buffer: Buffer,
    pending: VecDeque<UsageBatch>,
    /// When a failed message may be sent again (not before the next interval).
    retry_at_ms: u64,
    /// Requests of messages given up because `MAX_PENDING` messages were already waiting.
    given_up: u64,
}

impl Outbox {
    /// The messages to send now, in order: those kept from failed sends (once their wait is
    /// over), then the buffer if it is due (one message of at most `BUFFER_ROWS` rows, named by
    /// `new_id`). Normally one message per interval.
    pub fn due(
        &mut self,
        now_ms: u64,
        interval_ms: u64,
        new_id: impl FnOnce() -> String,
    ) -> Vec<UsageBatch> {
        if !self.pending.is_empty() && now_ms < self.retry_at_ms {
            return Vec::new(); // the queue failed a moment ago: the buffer waits too (bounded)
        }
        let mut out: Vec<UsageBatch> = self.pending.drain(..).collect();
        if self.buffer.due(now_ms, interval_ms) {
            let rows = self.buffer.take_up_to(BUFFER_ROWS);
            if !rows.is_empty() {
                out.push(UsageBatch {
                    batch: new_id(),
                    rows,
                });
            }
        }
        out
    }

    /// Messages whose send failed (the first failed one and all after it): kept for the next
    /// interval, at most `MAX_PENDING`; beyond that the newest are given up (and counted).
    pub fn failed(&mut self, now_ms: u64, interval_ms: u64, unsent: Vec<UsageBatch>) {
        self.retry_at_ms = now_ms.saturating_add(interval_ms.max(1_000));
        for message in unsent {
            if self.pending.len() < MAX_PENDING {
                self.pending.push_back(message);
            } else {
                self.given_up += message.rows.iter().map(|r| r.counts.requests).sum::<u64>();
            }
        }
    }

    /// Requests lost since the last call (buffer full, or too many failed messages), and resets.
    pub fn take_lost(&mut self) -> u64 {
        self.buffer.take_uncounted() + std::mem::take(&mut self.given_up)
    }

    /// Messages waiting for a second try.
    pub fn pending(&self) -> usize {
        self.pending.len()
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

    fn row(hour: u64, client: &str, requests: u64) -> UsageRow {
        UsageRow {
            hour,
            partner_id: "acme".into(),
            client_id: client.into(),
            counts: Counts {
                requests,
                ..Counts::default()
            },
        }
    }

    #[test]
    fn usage_message_round_trips_and_refuses_what_is_not_one() {
        let m = UsageBatch {
            batch: batch_id([0xab; 16]),
            rows: vec![row(3_600, "c1", 2)],
        };
        assert_eq!(m.batch, "ab".repeat(16));
        let text = m.encode();
        assert!(text.starts_with(r#"{"batch":"abababab"#), "{text}");
        assert_eq!(UsageBatch::decode(&text), Some(m));
        assert_eq!(UsageBatch::decode("{}"), None);
        assert_eq!(UsageBatch::decode(r#"{"batch":"","rows":[]}"#), None);
        assert_eq!(UsageBatch::decode("not json"), None);
        let many = UsageBatch {
            batch: "x".into(),
            rows: (0..=MAX_BUFFER_ROWS as u64)
                .map(|i| row(i * 3_600, "c", 1))
                .collect(),
        };
        assert_eq!(UsageBatch::decode(&many.encode()), None, "too many rows");
    }

    #[test]
    fn a_full_message_stays_under_the_queue_limit() {
        let mut b = Buffer::default();
        let partner = "p".repeat(crate::protocol::partner::MAX_PARTNER_ID_LEN);
        for i in 0..BUFFER_ROWS {
            let client = format!("{i:0>64}");
            b.record(1_795_381_189_000, &partner, &client, 200, false, 60_000);
            b.record(1_795_381_189_000, &partner, &client, 200, false, 1);
        }
        let m = UsageBatch {
            batch: batch_id([0xff; 16]),
            rows: b.take_up_to(BUFFER_ROWS),
        };
        assert_eq!(m.rows.len(), BUFFER_ROWS);
        assert!(m.encode().len() < 128_000, "{} bytes", m.encode().len());
    }

    #[test]
    fn a_failed_send_is_sent_again_with_its_batch_id_and_nothing_is_lost() {
        let t = 1_795_381_189_000;
        let mut o = Outbox::default();
        let mut n = 0;
        let mut id = || {
            n += 1;
            format!("id{n}")
        };
        o.buffer.record(t, "acme", "c1", 200, false, 5);
        let first = o.due(t, 0, &mut id);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].batch, "id1");
        o.failed(t, 0, first);
        assert_eq!(o.pending(), 1);
        o.buffer.record(t + 10, "acme", "c1", 200, false, 5);
        assert!(o.due(t + 10, 0, &mut id).is_empty(), "not before the wait");
        let again = o.due(t + 1_000, 0, &mut id);
        assert_eq!(
            again.iter().map(|m| m.batch.as_str()).collect::<Vec<_>>(),
            ["id1", "id2"],
            "the kept message as it was, then the buffer"
        );
        assert_eq!(again[0].rows[0].counts.requests, 1);
        assert_eq!(again[1].rows[0].counts.requests, 1);
        assert_eq!(o.take_lost(), 0);
    }

    #[test]
    fn failed_messages_and_the_buffer_are_bounded_and_the_loss_is_counted() {
        let t = 1_795_381_189_000;
        let mut o = Outbox::default();
        let failed: Vec<_> = (0..MAX_PENDING + 2)
            .map(|i| UsageBatch {
                batch: format!("m{i}"),
                rows: vec![row(0, "c", 3)],
            })
            .collect();
        o.failed(t, 10_000, failed);
        assert_eq!(o.pending(), MAX_PENDING);
        assert_eq!(o.take_lost(), 6, "two messages of 3 requests given up");
        for i in 0..MAX_BUFFER_ROWS + 5 {
            o.buffer.record(t, "acme", &format!("c{i}"), 200, false, 1);
        }
        o.buffer.record(t, "acme", "c0", 200, false, 1);
        assert_eq!(o.take_lost(), 5, "new keys past the bound are not counted");
        assert_eq!(o.take_lost(), 0);
        let sent = o.due(t + 10_000, 10_000, || "new".into());
        assert_eq!(sent.len(), MAX_PENDING + 1);
        assert_eq!(
            sent[MAX_PENDING].rows.len(),
            BUFFER_ROWS,
            "one message at most"
        );
        assert!(o.buffer.due(t + 10_000, 10_000), "the rest stays due");
        assert_eq!(o.buffer.take().len(), MAX_BUFFER_ROWS - BUFFER_ROWS);
    }
}
