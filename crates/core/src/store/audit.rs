//! The audit trail's storage: buffer shards, the queue message, the R2 archive's layout and the
//! query cursor over it; and the old single `AuditLog` object, kept so its events can be moved.
//!
//! An event goes to one of [`AUDIT_SHARDS`] `AuditBuffer` objects (`audit:{n}`, `n` uniform at
//! random), which hands its pending events to the audit queue in batches of at most
//! [`FLUSH_EVENTS`] within about [`FLUSH_MS`]; the queue's consumer writes each message as one
//! NDJSON object per hour and partner to the archive, under a key derived from the content
//! ([`archive_key`]), so a redelivered message overwrites what it wrote the first time.

use std::collections::BTreeMap;

use base64ct::{Base64UrlUnpadded, Encoding};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::protocol::audit::AuditEvent;
use crate::protocol::error::ApiError;

/// The old audit log's one object (read only by the migration now).
pub const AUDIT_OBJECT: &str = "audit";

/// How many `AuditBuffer` shards share the events.
pub const AUDIT_SHARDS: u32 = 512;

/// How long a buffer holds its first pending event before it sends (milliseconds).
pub const FLUSH_MS: u64 = 1_000;

/// At most this many events in one queue message.
pub const FLUSH_EVENTS: usize = 200;

/// At most this many bytes of events in one queue message (the queue takes up to 128 KB).
pub const FLUSH_BYTES: usize = 96 * 1024;

/// First and longest wait before a buffer sends again after a failed send (milliseconds).
pub const RETRY_MIN_MS: u64 = 500;
pub const RETRY_MAX_MS: u64 = 60_000;

/// The buffer shard for a random number: `audit:{n}`, `n` in `0..AUDIT_SHARDS` (uniform, as
/// `AUDIT_SHARDS` divides 2^32).
pub fn shard_name(random: u32) -> String {
    format!("audit:{}", random % AUDIT_SHARDS)
}

/// How long a buffer waits before its next attempt after `failures` failed sends in a row.
pub fn retry_delay_ms(failures: u32) -> u64 {
    RETRY_MIN_MS
        .saturating_mul(1u64 << failures.saturating_sub(1).min(16))
        .min(RETRY_MAX_MS)
}

crate::commands! {
    pub enum AuditCommand, trait AuditHandler {
        Record(Record) -> (), once, record;
        Query(Query) -> Vec<AuditEvent>, once, query;
        Export(Export) -> Vec<AuditEvent>, retried, export;
    }
}

/// Keeps one event (the old path; local tests use it to seed a log to migrate).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub event: AuditEvent,
}

/// Events with `seq` above `cursor`, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    pub since: Option<u64>,
    pub partner: Option<String>,
    pub kind: Option<String>,
    pub cursor: Option<u64>,
    pub limit: usize,
}

/// Up to `limit` events with `seq` above `after_seq`, in `seq` order, each with its `seq`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Export {
    pub after_seq: u64,
    pub limit: usize,
}

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, ts INTEGER NOT NULL, kind TEXT NOT NULL, partner TEXT, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_by_ts ON events (ts);
";

crate::commands! {
    pub enum AuditBufferCommand, trait AuditBufferHandler {
        Append(Append) -> (), retried, append;
    }
}

/// Holds events until the next flush; an id already pending is kept once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Append {
    pub events: Vec<AuditEvent>,
}

/// `batch` is 1 on the rows of the message in flight (sent again, unchanged, until a send
/// succeeds), 0 on the others.
pub const BUFFER_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS pending (id TEXT PRIMARY KEY, body TEXT NOT NULL, batch INTEGER NOT NULL DEFAULT 0);
";

/// One audit queue message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditMessage {
    pub events: Vec<AuditEvent>,
}

/// How many of `sizes` (the JSON lengths of pending events, oldest first) go into one message:
/// at most [`FLUSH_EVENTS`] and [`FLUSH_BYTES`], and at least one.
pub fn batch_len(sizes: &[usize]) -> usize {
    let mut total = 0usize;
    let mut n = 0usize;
    for size in sizes.iter().take(FLUSH_EVENTS) {
        total = total.saturating_add(size.saturating_add(1));
        if n > 0 && total > FLUSH_BYTES {
            break;
        }
        n += 1;
    }
    n
}

/// The archive's key prefix.
pub const ARCHIVE_PREFIX: &str = "events/";

/// Partner part of a key for events without a partner (partner ids never contain `_`).
pub const NO_PARTNER: &str = "_";

/// `events/{hour:010}/{partner}/{first_ts:010}-{first_id}-{digest}.ndjson`: hour is
/// `ts / 3600`; `digest` (16 hex digits, [`content_digest`]) names the group's exact set of
/// events. With it, two different groups that start with the same event (one event in two
/// messages: a buffer's reply lost and the event also sent directly) get two keys, so neither
/// overwrites the other's other events; the same group always gets the same key.
pub fn archive_key(
    hour: u64,
    partner: &str,
    first_ts: u64,
    first_id: &str,
    digest: &str,
) -> String {
    format!("{ARCHIVE_PREFIX}{hour:010}/{partner}/{first_ts:010}-{first_id}-{digest}.ndjson")
}

/// The first 64 bits of SHA-256 over a group's ids (in the group's order), in hex.
pub fn content_digest(ids: &[&str]) -> String {
    let mut h = Sha256::new();
    for id in ids {
        h.update(id.as_bytes());
        h.update(b"\n");
    }
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Where a listing from hour `hour` starts (every key of that hour sorts after it).
pub fn hour_start(hour: u64) -> String {
    format!("{ARCHIVE_PREFIX}{hour:010}")
}

/// The parts of an archive key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveKey<'a> {
    pub hour: u64,
    pub partner: &'a str,
    pub first_ts: u64,
    pub first_id: &'a str,
}

fn ten_digits(s: &str) -> Option<u64> {
    (s.len() == 10 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

fn partner_part(s: &str) -> bool {
    s == NO_PARTNER
        || (!s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'))
}

/// An event id as it may appear in a key: 1-64 characters of a-z and 0-9.
fn id_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Reads an archive key; `None` if it is not one.
pub fn parse_archive_key(key: &str) -> Option<ArchiveKey<'_>> {
    let rest = key.strip_prefix(ARCHIVE_PREFIX)?;
    let rest = rest.strip_suffix(".ndjson")?;
    let mut parts = rest.split('/');
    let (hour, partner, file) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    // `{ts}-{id}-{digest}`, or `{ts}-{id}` (hand-made objects, and the documented short form).
    let (ts, id_and_digest) = file.split_once('-')?;
    let id = match id_and_digest.split_once('-') {
        Some((id, digest)) => {
            let hex16 = digest.len() == 16
                && digest
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if !hex16 {
                return None;
            }
            id
        }
        None => id_and_digest,
    };
    let parsed = ArchiveKey {
        hour: ten_digits(hour)?,
        partner,
        first_ts: ten_digits(ts)?,
        first_id: id,
    };
    (partner_part(partner) && id_part(id) && parsed.first_ts / 3_600 == parsed.hour)
        .then_some(parsed)
}

/// One archive object: its key and NDJSON body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveObject {
    pub key: String,
    pub body: String,
    pub events: usize,
}

/// An event id safe for a key; anything else (an old event, a hand-made one) gets one derived
/// from its content, so the key stays deterministic.
fn key_id(event: &AuditEvent) -> String {
    if id_part(&event.id) {
        return event.id.clone();
    }
    let json = serde_json::to_string(event).unwrap_or_default();
    let digest = Sha256::digest(json.as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The objects one message is stored as: its events grouped by hour and partner, each group
/// sorted by time and id (an id repeated within a message is kept once), keyed by its first
/// event. The same events give the same keys and bodies, in key order.
pub fn group(events: Vec<AuditEvent>) -> Vec<ArchiveObject> {
    let mut groups: BTreeMap<(u64, String), Vec<AuditEvent>> = BTreeMap::new();
    for mut event in events {
        event.id = key_id(&event);
        let partner = event
            .partner
            .clone()
            .filter(|p| partner_part(p) && p != NO_PARTNER)
            .unwrap_or_else(|| NO_PARTNER.to_owned());
        groups
            .entry((event.ts / 3_600, partner))
            .or_default()
            .push(event);
    }
    let mut out = Vec::with_capacity(groups.len());
    for ((hour, partner), mut list) in groups {
        list.sort_by(|a, b| (a.ts, &a.id).cmp(&(b.ts, &b.id)));
        list.dedup_by(|a, b| a.id == b.id);
        let Some(first) = list.first() else { continue };
        let ids: Vec<&str> = list.iter().map(|e| e.id.as_str()).collect();
        let key = archive_key(hour, &partner, first.ts, &first.id, &content_digest(&ids));
        let mut body = String::new();
        for e in &list {
            if let Ok(line) = serde_json::to_string(e) {
                body.push_str(&line);
                body.push('\n');
            }
        }
        out.push(ArchiveObject {
            key,
            body,
            events: list.len(),
        });
    }
    out
}

/// Where a query page resumes: after the key `after` (an archive key or an [`hour_start`]),
/// or, when `line` is above 0, inside the object `after`, at its line `line` (0-based; the
/// lines before it were answered already).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub after: String,
    pub line: u32,
}

const CURSOR_TAG: &[u8] = b"edgeward audit cursor v1\n";

fn cursor_check(payload: &str) -> String {
    let mut h = Sha256::new();
    h.update(CURSOR_TAG);
    h.update(payload.as_bytes());
    let digest = h.finalize();
    Base64UrlUnpadded::encode_string(digest.get(..12).unwrap_or_default())
}

fn bad_cursor() -> ApiError {
    ApiError::invalid_field("cursor", "must be the next_cursor of an earlier page")
}

impl Cursor {
    /// Opaque text: `{payload}.{check}`, the payload base64url of `{line}:{after}`, the check a
    /// truncated SHA-256 of it (catches an edited or truncated cursor; it grants nothing: the
    /// caller is an administrator, and `after` must still be a key of the archive's layout).
    pub fn encode(&self) -> String {
        let payload =
            Base64UrlUnpadded::encode_string(format!("{}:{}", self.line, self.after).as_bytes());
        let check = cursor_check(&payload);
        format!("{payload}.{check}")
    }

    /// Reads a cursor; a malformed or altered one is a 400 on `cursor`.
    pub fn decode(text: &str) -> Result<Cursor, ApiError> {
        if text.len() > 600 {
            return Err(bad_cursor());
        }
        let (payload, check) = text.split_once('.').ok_or_else(bad_cursor)?;
        if cursor_check(payload).as_bytes() != check.as_bytes() {
            return Err(bad_cursor());
        }
        let raw = Base64UrlUnpadded::decode_vec(payload).map_err(|_| bad_cursor())?;
        let raw = String::from_utf8(raw).map_err(|_| bad_cursor())?;
        let (line, after) = raw.split_once(':').ok_or_else(bad_cursor)?;
        if line.is_empty() || line.len() > 9 || !line.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad_cursor());
        }
        let line: u32 = line.parse().map_err(|_| bad_cursor())?;
        let is_hour = after
            .strip_prefix(ARCHIVE_PREFIX)
            .and_then(ten_digits)
            .is_some();
        if !(parse_archive_key(after).is_some() || (is_hour && line == 0)) {
            return Err(bad_cursor());
        }
        Ok(Cursor {
            after: after.to_owned(),
            line,
        })
    }

    /// The hour this position is in.
    pub fn hour(&self) -> u64 {
        parse_archive_key(&self.after).map_or_else(
            || {
                self.after
                    .strip_prefix(ARCHIVE_PREFIX)
                    .and_then(ten_digits)
                    .unwrap_or(0)
            },
            |k| k.hour,
        )
    }
}

/// Where a query starts: the cursor's position, but never before the hour of `floor` (the
/// older of `since` and the retention's start).
pub fn start_position(cursor: Option<Cursor>, floor_ts: u64) -> Cursor {
    let floor = Cursor {
        after: hour_start(floor_ts / 3_600),
        line: 0,
    };
    match cursor {
        Some(c) if c.hour() >= floor_ts / 3_600 => c,
        _ => floor,
    }
}

/// Whether a listed key can hold events of `partner` (`None`: any); decided by its name.
pub fn key_may_match(key: &str, partner: Option<&str>) -> bool {
    match parse_archive_key(key) {
        Some(k) => partner.is_none_or(|p| k.partner == p),
        None => false,
    }
}

/// Work one query page may do before it answers with what it has and a cursor.
pub const PAGE_LISTS: usize = 4;
pub const PAGE_GETS: usize = 20;
/// Keys one listing asks for.
pub const LIST_LIMIT: u32 = 1_000;

/// Events the migration moves per call: one block of the old log's `seq` numbers.
pub const MIGRATE_BLOCK: u64 = 200;

/// The id a moved event gets: from its old `seq`, so a second move names it the same.
pub fn legacy_id(seq: u64) -> String {
    format!("legacy{seq:020}")
}

/// What one migration step moves: of `events` (the old log's events after `after`, in `seq`
/// order), those of the first block of [`MIGRATE_BLOCK`] `seq` numbers that holds any, each
/// with its [`legacy_id`]; and the `after` of the next step. Blocks are fixed by `seq`, so a
/// step run twice (or from the start again) writes the same objects.
pub fn legacy_block(events: Vec<AuditEvent>, after: u64) -> (Vec<AuditEvent>, u64) {
    let Some(first) = events.first().map(|e| e.seq) else {
        return (Vec::new(), after);
    };
    let block_end = (first.saturating_sub(1) / MIGRATE_BLOCK + 1).saturating_mul(MIGRATE_BLOCK);
    let moved = events
        .into_iter()
        .filter(|e| e.seq > after && e.seq <= block_end)
        .map(|mut e| {
            e.id = legacy_id(e.seq);
            e
        })
        .collect();
    (moved, block_end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(ts: u64, id: &str, partner: Option<&str>, kind: &str) -> AuditEvent {
        AuditEvent {
            id: id.into(),
            seq: 0,
            ts,
            kind: kind.into(),
            partner: partner.map(str::to_owned),
            route: "/login".into(),
            status: 401,
            outcome: "login_failed".into(),
            reason: None,
            request_id: "r".into(),
        }
    }

    #[test]
    fn commands_keep_their_wire_tags() {
        let query = AuditCommand::from(Query {
            since: None,
            partner: Some("acme".into()),
            kind: None,
            cursor: Some(4),
            limit: 10,
        });
        let json = serde_json::to_string(&query).unwrap();
        assert_eq!(
            json,
            r#"{"query":{"since":null,"partner":"acme","kind":null,"cursor":4,"limit":10}}"#
        );
        assert_eq!(serde_json::from_str::<AuditCommand>(&json).unwrap(), query);
        let export = serde_json::to_string(&AuditCommand::from(Export {
            after_seq: 7,
            limit: 3,
        }))
        .unwrap();
        assert_eq!(export, r#"{"export":{"after_seq":7,"limit":3}}"#);
        let append =
            serde_json::to_string(&AuditBufferCommand::from(Append { events: vec![] })).unwrap();
        assert_eq!(append, r#"{"append":{"events":[]}}"#);
    }

    #[test]
    fn an_old_row_without_an_id_still_decodes() {
        let old = r#"{"seq":4,"ts":10,"type":"login","route":"/login","status":303,"outcome":"login_ok","request_id":"r"}"#;
        let e: AuditEvent = serde_json::from_str(old).unwrap();
        assert_eq!(e.id, "");
        assert_eq!(e.seq, 4);
        let fresh = serde_json::to_string(&event(1, "ab", None, "login")).unwrap();
        assert!(!fresh.contains("seq"), "a new event shows no seq: {fresh}");
    }

    #[test]
    fn shard_choice_is_uniform_over_all_shards() {
        assert_eq!(shard_name(0), "audit:0");
        assert_eq!(shard_name(511), "audit:511");
        assert_eq!(shard_name(512), "audit:0");
        assert_eq!(shard_name(u32::MAX), "audit:511");
        let mut hits = vec![0u32; AUDIT_SHARDS as usize];
        for r in 0..(AUDIT_SHARDS * 4) {
            let n: usize = shard_name(r.wrapping_mul(2_654_435_761))["audit:".len()..]
                .parse()
                .unwrap();
            hits[n] += 1;
        }
        assert!(hits.iter().all(|&h| h == 4), "every shard equally often");
        // 2^32 is a multiple of the shard count: `%` adds no bias.
        assert_eq!((1u64 << 32) % u64::from(AUDIT_SHARDS), 0);
    }

    #[test]
    fn a_message_stays_within_its_event_and_byte_bounds() {
        assert_eq!(batch_len(&[300; 1_000]), FLUSH_EVENTS);
        assert_eq!(batch_len(&[10_000; 50]), 9, "96 KB of 10 KB events");
        assert_eq!(batch_len(&[200_000]), 1, "one oversized event still moves");
        assert_eq!(batch_len(&[]), 0);
    }

    #[test]
    fn retry_backs_off_and_is_bounded() {
        assert_eq!(retry_delay_ms(1), 500);
        assert_eq!(retry_delay_ms(2), 1_000);
        assert_eq!(retry_delay_ms(3), 2_000);
        assert_eq!(retry_delay_ms(40), RETRY_MAX_MS);
    }

    #[test]
    fn grouping_is_by_hour_and_partner_with_deterministic_keys() {
        let events = vec![
            event(7_300, "cc", Some("acme"), "login"),
            event(7_200, "bb", Some("acme"), "login"),
            event(3_599, "aa", Some("acme"), "login"),
            event(7_250, "dd", None, "login"),
            event(7_200, "bb", Some("acme"), "login"),
        ];
        let objects = group(events.clone());
        let keys: Vec<_> = objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                format!(
                    "events/0000000000/acme/0000003599-aa-{}.ndjson",
                    content_digest(&["aa"])
                ),
                format!(
                    "events/0000000002/_/0000007250-dd-{}.ndjson",
                    content_digest(&["dd"])
                ),
                format!(
                    "events/0000000002/acme/0000007200-bb-{}.ndjson",
                    content_digest(&["bb", "cc"])
                ),
            ]
        );
        let acme = &objects[2];
        assert_eq!(acme.events, 2, "the repeated id is kept once");
        let lines: Vec<AuditEvent> = acme
            .body
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["bb", "cc"]
        );
        let mut reversed = events;
        reversed.reverse();
        assert_eq!(
            group(reversed),
            objects,
            "the same content, the same objects"
        );
        for o in &objects {
            let k = parse_archive_key(&o.key).unwrap();
            assert_eq!(k.hour, o.key[7..17].parse::<u64>().unwrap());
        }
    }

    #[test]
    fn two_messages_sharing_an_event_never_overwrite_each_other() {
        // The same event in a buffer's message (with others) and alone (sent directly after a
        // lost reply): different keys, so the larger object keeps its other events.
        let a = event(7_200, "aa", Some("acme"), "login");
        let b = event(7_201, "bb", Some("acme"), "login");
        let both = group(vec![a.clone(), b]);
        let alone = group(vec![a]);
        assert_ne!(both[0].key, alone[0].key);
        assert_eq!(content_digest(&["aa", "bb"]).len(), 16);
        assert_ne!(content_digest(&["aa", "bb"]), content_digest(&["aab", "b"]));
    }

    #[test]
    fn an_event_without_a_usable_id_gets_one_from_its_content() {
        let a = group(vec![event(10, "", Some("acme"), "x")]);
        let b = group(vec![event(10, "", Some("acme"), "x")]);
        assert_eq!(a, b);
        assert!(parse_archive_key(&a[0].key).is_some(), "{}", a[0].key);
        let odd = group(vec![event(10, "../../x", Some("Bad/Partner"), "x")]);
        assert!(
            odd[0].key.starts_with("events/0000000000/_/0000000010-"),
            "{}",
            odd[0].key
        );
        assert!(parse_archive_key(&odd[0].key).is_some());
    }

    #[test]
    fn archive_keys_parse_and_others_do_not() {
        let k = parse_archive_key("events/0000000002/acme/0000007200-bb.ndjson").unwrap();
        assert_eq!(
            (k.hour, k.partner, k.first_ts, k.first_id),
            (2, "acme", 7_200, "bb")
        );
        for bad in [
            "events/0000000002/acme/0000007200-bb.json",
            "events/000000002/acme/0000007200-bb.ndjson",
            "events/0000000002/acme/x/0000007200-bb.ndjson",
            "events/0000000002/ACME/0000007200-bb.ndjson",
            "events/0000000003/acme/0000007200-bb.ndjson",
            "events/0000000002/acme/0000007200-.ndjson",
            "events/0000000002/acme/0000007200-bb-0123.ndjson",
            "events/0000000002/acme/0000007200-bb-0123456789ABCDEF.ndjson",
            "events/0000000002/acme/0000007200-bb-0123456789abcdef-x.ndjson",
            "migration/progress",
        ] {
            assert!(parse_archive_key(bad).is_none(), "{bad}");
        }
        assert!(key_may_match(
            "events/0000000002/acme/0000007200-bb.ndjson",
            Some("acme")
        ));
        assert!(!key_may_match(
            "events/0000000002/acme/0000007200-bb.ndjson",
            Some("beta")
        ));
        assert!(key_may_match(
            "events/0000000002/_/0000007200-bb.ndjson",
            None
        ));
        assert!(!key_may_match("migration/progress", None));
    }

    #[test]
    fn a_cursor_round_trips() {
        for c in [
            Cursor {
                after: "events/0000000002/acme/0000007200-bb.ndjson".into(),
                line: 17,
            },
            Cursor {
                after: hour_start(5),
                line: 0,
            },
        ] {
            let text = c.encode();
            assert!(text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
            assert_eq!(Cursor::decode(&text).unwrap(), c);
        }
    }

    #[test]
    fn a_tampered_or_malformed_cursor_is_a_400() {
        let good = Cursor {
            after: "events/0000000002/acme/0000007200-bb.ndjson".into(),
            line: 3,
        }
        .encode();
        let (payload, check) = good.split_once('.').unwrap();
        let forged_payload =
            Base64UrlUnpadded::encode_string(b"9:events/0000000002/acme/0000007200-bb.ndjson");
        let mut flipped = payload.to_owned().into_bytes();
        flipped[2] = if flipped[2] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        let outside = {
            let p = Base64UrlUnpadded::encode_string(b"0:migration/progress");
            format!("{p}.{}", cursor_check(&p))
        };
        let inside_hour_mark = {
            let p = Base64UrlUnpadded::encode_string(b"4:events/0000000002");
            format!("{p}.{}", cursor_check(&p))
        };
        for bad in [
            "1".to_owned(),
            String::new(),
            payload.to_owned(),
            format!("{forged_payload}.{check}"),
            format!("{flipped}.{check}"),
            format!("{payload}.{}", &check[1..]),
            format!("{payload}.{check}x"),
            outside,
            inside_hour_mark,
            "x".repeat(700),
        ] {
            let err = Cursor::decode(&bad).unwrap_err();
            assert_eq!(err.code.status(), 400, "{bad}");
            assert_eq!(err.field.as_deref(), Some("cursor"), "{bad}");
        }
    }

    #[test]
    fn a_query_never_starts_before_its_floor() {
        let old = Cursor {
            after: "events/0000000002/acme/0000007200-bb.ndjson".into(),
            line: 1,
        };
        assert_eq!(start_position(Some(old.clone()), 0), old);
        assert_eq!(start_position(Some(old.clone()), 7_200), old);
        assert_eq!(
            start_position(Some(old), 3 * 3_600 + 5),
            Cursor {
                after: hour_start(3),
                line: 0
            }
        );
        assert_eq!(start_position(None, 3_600).after, "events/0000000001");
    }

    #[test]
    fn migration_steps_are_fixed_blocks_of_seq() {
        let with_seq = |seq: u64| {
            let mut e = event(100 + seq, "", Some("acme"), "login");
            e.seq = seq;
            e
        };
        let (moved, next) = legacy_block((1..=250).map(with_seq).collect(), 0);
        assert_eq!(moved.len(), 200);
        assert_eq!(next, 200);
        assert_eq!(moved[0].id, "legacy00000000000000000001");
        let (moved, next) = legacy_block((201..=250).map(with_seq).collect(), 200);
        assert_eq!((moved.len(), next), (50, 400));
        // A gap (old rows deleted by retention): the step jumps to the block of the next event.
        let (moved, next) = legacy_block((950..=1_000).map(with_seq).collect(), 400);
        assert_eq!((moved.len(), next), (51, 1_000));
        // Restarted mid-block, a step writes only that block's tail, and a rerun of the whole
        // block names the same events the same way.
        let (tail, _) = legacy_block((150..=250).map(with_seq).collect(), 149);
        assert_eq!(tail.len(), 51);
        assert_eq!(legacy_block(Vec::new(), 9), (Vec::new(), 9));
    }
}
