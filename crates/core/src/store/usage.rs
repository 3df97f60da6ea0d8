//! Usage storage. The home of the counts is D1 (binding `DB`, table `usage`, one column per
//! count): the queue consumer applies each message in a transaction that first records its batch
//! id in `applied_batches` (a batch applied before fails the transaction on that key, so a
//! message delivered twice counts once), then adds its rows in SQL (`ON CONFLICT DO UPDATE SET
//! requests = requests + excluded.requests, ...`, no read). This module builds those statements
//! (pure, tested here); `src/edge/rt/d1.rs` runs them.
//!
//! Before D1, one `UsageLog` object (named `usage`) held the counts; its command protocol stays
//! for the move of that data into D1 (`Export`, `POST /admin/usage/migrate`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::protocol::usage::{Counts, UsageRow, BUCKETS, RETENTION_S};

pub const USAGE_OBJECT: &str = "usage";

crate::commands! {
    pub enum UsageCommand, trait UsageHandler {
        Add(Add) -> (), once, add;
        Query(Query) -> Vec<UsageRow>, once, query;
        Export(Export) -> Vec<UsageRow>, retried, export;
    }
}

/// The key of a usage row, in its order (hour, partner, client): the migration's cursor.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct UsageKey {
    pub hour: u64,
    pub partner_id: String,
    pub client_id: String,
}

impl UsageKey {
    pub fn of(row: &UsageRow) -> UsageKey {
        UsageKey {
            hour: row.hour,
            partner_id: row.partner_id.clone(),
            client_id: row.client_id.clone(),
        }
    }

    /// The batch id a migrated row is applied under: the same on every run, so a second run of
    /// the migration adds nothing.
    pub fn migration_batch(&self) -> String {
        format!(
            "{MIGRATION_PREFIX}{}:{}:{}",
            self.hour, self.partner_id, self.client_id
        )
    }
}

/// Batch ids of migrated rows start with this (queue batch ids are hex digits).
pub const MIGRATION_PREFIX: &str = "migrate:";

/// Rows one migration page moves by default, and at most.
pub const MIGRATE_PAGE: usize = 100;
pub const MAX_MIGRATE_PAGE: usize = 500;

/// The body of `POST /admin/usage/migrate`: `{"after": UsageKey | null, "limit": 1-500}`, both
/// optional (from the start, `MIGRATE_PAGE` rows).
pub fn parse_migrate_request(
    body: &[u8],
) -> Result<(Option<UsageKey>, usize), crate::protocol::error::ApiError> {
    use crate::protocol::error::ApiError;
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        after: Option<UsageKey>,
        limit: Option<usize>,
    }
    let b: Body = serde_json::from_slice(body).map_err(|_| {
        ApiError::invalid_field(
            "after",
            "the body is {\"after\": {\"hour\", \"partner_id\", \"client_id\"} or null, \"limit\": 1-500}",
        )
    })?;
    let limit = b.limit.unwrap_or(MIGRATE_PAGE);
    if !(1..=MAX_MIGRATE_PAGE).contains(&limit) {
        return Err(ApiError::invalid_field("limit", "must be 1-500"));
    }
    Ok((b.after, limit))
}

/// Rows after `after` (all from the start when `None`), in key order, at most `limit`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Export {
    pub after: Option<UsageKey>,
    pub limit: usize,
}

/// Adds counts to their rows (rows merge; nothing is overwritten).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Add {
    pub rows: Vec<UsageRow>,
    pub now: u64,
}

/// Rows of hours `since..until` (seconds), optionally of one partner and client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    pub partner: Option<String>,
    pub client: Option<String>,
    pub since: u64,
    pub until: u64,
    pub limit: usize,
}

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS usage (hour INTEGER NOT NULL, partner TEXT NOT NULL, client TEXT NOT NULL, counts TEXT NOT NULL, PRIMARY KEY (hour, partner, client));
";

/// How long a batch id is remembered in D1 (`applied_batches`): a message delivered again
/// within this long after it was applied counts once. The queue's redeliveries come within
/// seconds to minutes (retries without delay, 1 s batches, then the dead-letter queue); see
/// docs/storage.md for why this is not the queue's full retention (the table would outgrow D1).
pub const DEDUPE_S: u64 = 2 * 3_600;

/// Migrated rows' batch ids are kept as long as the rows themselves.
pub const MIGRATION_DEDUPE_S: u64 = RETENTION_S;

/// Most bound parameters of one D1 statement.
pub const MAX_PARAMS: usize = 100;

/// Most rows (before merging) one D1 transaction applies: the consumer groups messages up to
/// this, so a transaction stays short.
pub const MAX_GROUP_ROWS: usize = 8_192;

/// A value bound to a statement parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Param {
    Int(u64),
    Text(String),
    Null,
}

impl Param {
    fn text(v: Option<String>) -> Param {
        v.map_or(Param::Null, Param::Text)
    }
}

/// One SQL statement and its parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    pub sql: String,
    pub params: Vec<Param>,
}

/// The latency columns: `lat_00` .. `lat_23`, one per bucket of `LATENCY_BOUNDS_MS`.
fn latency_columns() -> Vec<String> {
    (0..BUCKETS).map(|i| format!("lat_{i:02}")).collect()
}

/// The D1 schema, one statement each, run once per isolate before first use
/// (`CREATE ... IF NOT EXISTS`: the first run creates, later ones do nothing).
pub fn d1_schema() -> Vec<String> {
    let lat: String = latency_columns()
        .iter()
        .map(|c| format!(", {c} INTEGER NOT NULL DEFAULT 0"))
        .collect();
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS usage (hour INTEGER NOT NULL, partner TEXT NOT NULL, \
             client TEXT NOT NULL, requests INTEGER NOT NULL, denied INTEGER NOT NULL, \
             status_4xx INTEGER NOT NULL, status_5xx INTEGER NOT NULL{lat}, \
             PRIMARY KEY (hour, partner, client)) WITHOUT ROWID"
        ),
        "CREATE TABLE IF NOT EXISTS applied_batches (id TEXT PRIMARY KEY, at INTEGER NOT NULL) WITHOUT ROWID".to_owned(),
        "CREATE INDEX IF NOT EXISTS applied_batches_at ON applied_batches (at)".to_owned(),
    ]
}

fn count_columns() -> Vec<String> {
    let mut cols: Vec<String> = ["requests", "denied", "status_4xx", "status_5xx"]
        .iter()
        .map(|c| (*c).to_owned())
        .collect();
    cols.extend(latency_columns());
    cols
}

/// The upsert of one row: its counts are added to the row's (or start it).
fn upsert_sql() -> String {
    let counts = count_columns();
    let names = counts.join(", ");
    let marks = vec!["?"; counts.len() + 3].join(", ");
    let adds = counts
        .iter()
        .map(|c| format!("{c} = {c} + excluded.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO usage (hour, partner, client, {names}) VALUES ({marks}) \
         ON CONFLICT (hour, partner, client) DO UPDATE SET {adds}"
    )
}

/// The parameters of a row's upsert: its key, then its counts in column order. A histogram
/// longer than `BUCKETS` (none is made so) has its extra buckets added to the last one, which
/// holds everything above the bounds.
pub fn row_params(row: &UsageRow) -> Vec<Param> {
    let c = &row.counts;
    let mut lat = [0u64; BUCKETS];
    for (i, n) in c.latency.iter().enumerate() {
        let at = i.min(BUCKETS - 1);
        if let Some(slot) = lat.get_mut(at) {
            *slot += n;
        }
    }
    let mut params = vec![
        Param::Int(row.hour),
        Param::Text(row.partner_id.clone()),
        Param::Text(row.client_id.clone()),
        Param::Int(c.requests),
        Param::Int(c.denied),
        Param::Int(c.status_4xx),
        Param::Int(c.status_5xx),
    ];
    params.extend(lat.iter().map(|n| Param::Int(*n)));
    params
}

/// One batch to apply: its id and its rows.
pub struct Applying<'a> {
    pub batch: &'a str,
    pub rows: &'a [UsageRow],
}

/// The statements of one transaction that applies `batches`: each distinct batch id recorded in
/// `applied_batches` first (a repeated id within the group is recorded once: it is the same
/// message), then the rows of those batches, merged by key, one upsert each. With `prune`, the
/// transaction also deletes the hours past `RETENTION_S` and the batch ids past their time.
pub fn apply_statements(batches: &[Applying<'_>], now: u64, prune: bool) -> Vec<Statement> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    let mut merged: BTreeMap<UsageKey, Counts> = BTreeMap::new();
    for b in batches {
        if !seen.insert(b.batch) {
            continue;
        }
        out.push(Statement {
            sql: "INSERT INTO applied_batches (id, at) VALUES (?, ?)".to_owned(),
            params: vec![Param::Text(b.batch.to_owned()), Param::Int(now)],
        });
        for row in b.rows {
            merged
                .entry(UsageKey::of(row))
                .or_default()
                .merge(&row.counts);
        }
    }
    let sql = upsert_sql();
    for (key, counts) in merged {
        let row = UsageRow {
            hour: key.hour,
            partner_id: key.partner_id,
            client_id: key.client_id,
            counts,
        };
        out.push(Statement {
            sql: sql.clone(),
            params: row_params(&row),
        });
    }
    if prune {
        out.extend(prune_statements(now));
    }
    out
}

/// Deletes the hours past `RETENTION_S`, the queue batch ids past `DEDUPE_S` and the migrated
/// rows' ids past `MIGRATION_DEDUPE_S`.
pub fn prune_statements(now: u64) -> Vec<Statement> {
    let migration_end = format!("{}\u{10ffff}", MIGRATION_PREFIX);
    vec![
        Statement {
            sql: "DELETE FROM usage WHERE hour < ?".to_owned(),
            params: vec![Param::Int(now.saturating_sub(RETENTION_S))],
        },
        Statement {
            sql: "DELETE FROM applied_batches WHERE at < ? AND NOT (id >= ? AND id < ?)".to_owned(),
            params: vec![
                Param::Int(now.saturating_sub(DEDUPE_S)),
                Param::Text(MIGRATION_PREFIX.to_owned()),
                Param::Text(migration_end.clone()),
            ],
        },
        Statement {
            sql: "DELETE FROM applied_batches WHERE at < ? AND id >= ? AND id < ?".to_owned(),
            params: vec![
                Param::Int(now.saturating_sub(MIGRATION_DEDUPE_S)),
                Param::Text(MIGRATION_PREFIX.to_owned()),
                Param::Text(migration_end),
            ],
        },
    ]
}

/// Which of `ids` are recorded as applied: one query per chunk of `MAX_PARAMS` ids.
pub fn applied_queries(ids: &[&str]) -> Vec<Statement> {
    ids.chunks(MAX_PARAMS)
        .map(|chunk| Statement {
            sql: format!(
                "SELECT id FROM applied_batches WHERE id IN ({})",
                vec!["?"; chunk.len()].join(", ")
            ),
            params: chunk
                .iter()
                .map(|id| Param::Text((*id).to_owned()))
                .collect(),
        })
        .collect()
}

/// `GET /admin/usage` in D1: the rows of `Query`, in key order.
pub fn query_statement(q: Query) -> Statement {
    let cols = count_columns().join(", ");
    Statement {
        sql: format!(
            "SELECT hour, partner, client, {cols} FROM usage WHERE hour >= ? AND hour <= ? \
             AND (? IS NULL OR partner = ?) AND (? IS NULL OR client = ?) \
             ORDER BY hour, partner, client LIMIT ?"
        ),
        params: vec![
            Param::Int(q.since - q.since % 3_600),
            Param::Int(q.until),
            Param::text(q.partner.clone()),
            Param::text(q.partner),
            Param::text(q.client.clone()),
            Param::text(q.client),
            Param::Int(q.limit as u64),
        ],
    }
}

/// A row of `query_statement`'s result (a JSON object of its columns), or `None` if it is not
/// one. Numbers may arrive as floats (JavaScript numbers).
pub fn row_from_d1(v: &serde_json::Value) -> Option<UsageRow> {
    let num = |name: &str| -> Option<u64> {
        let n = v.get(name)?;
        n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| *f >= 0.0 && f.fract() == 0.0 && *f < 9.007_199_254_740_992e15)
                .map(|f| f as u64)
        })
    };
    let text = |name: &str| v.get(name)?.as_str().map(str::to_owned);
    let latency = latency_columns()
        .iter()
        .map(|c| num(c))
        .collect::<Option<Vec<u64>>>()?;
    Some(UsageRow {
        hour: num("hour")?,
        partner_id: text("partner")?,
        client_id: text("client")?,
        counts: Counts {
            requests: num("requests")?,
            denied: num("denied")?,
            status_4xx: num("status_4xx")?,
            status_5xx: num("status_5xx")?,
            latency,
        },
    })
}

/// The id column of an `applied_queries` result row.
pub fn applied_id(v: &serde_json::Value) -> Option<String> {
    v.get("id")?.as_str().map(str::to_owned)
}

/// Splits messages (their row counts, in order) into groups of at most `MAX_GROUP_ROWS` rows
/// (a message with more is a group of its own): the index ranges of the groups.
pub fn groups(row_counts: &[usize]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut rows = 0;
    for (i, n) in row_counts.iter().enumerate() {
        if i > start && rows + n > MAX_GROUP_ROWS {
            out.push(start..i);
            start = i;
            rows = 0;
        }
        rows += n;
    }
    if start < row_counts.len() {
        out.push(start..row_counts.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::usage::LATENCY_BOUNDS_MS;

    fn row(hour: u64, client: &str, requests: u64, ms: u64) -> UsageRow {
        let mut counts = Counts::default();
        for _ in 0..requests {
            counts.add(200, false, ms);
        }
        UsageRow {
            hour,
            partner_id: "acme".into(),
            client_id: client.into(),
            counts,
        }
    }

    #[test]
    fn a_row_maps_to_its_upsert_parameters_in_column_order() {
        let r = row(7_200, "c1", 3, 4);
        let p = row_params(&r);
        assert_eq!(p.len(), 7 + BUCKETS);
        assert!(p.len() <= MAX_PARAMS);
        assert_eq!(
            &p[..7],
            &[
                Param::Int(7_200),
                Param::Text("acme".into()),
                Param::Text("c1".into()),
                Param::Int(3),
                Param::Int(0),
                Param::Int(0),
                Param::Int(0)
            ]
        );
        assert_eq!(p[7 + 3], Param::Int(3), "4 ms is the 4-5 ms bucket");
        let sql = upsert_sql();
        assert_eq!(sql.matches('?').count(), p.len());
        assert!(
            sql.contains("requests = requests + excluded.requests"),
            "{sql}"
        );
        assert!(sql.contains("lat_23 = lat_23 + excluded.lat_23"), "{sql}");
        let mut long = r.clone();
        long.counts.latency = vec![1; BUCKETS + 2];
        assert_eq!(
            row_params(&long)[7 + BUCKETS - 1],
            Param::Int(3),
            "extra buckets fold into the last"
        );
        let empty = UsageRow {
            counts: Counts::default(),
            ..r
        };
        assert!(row_params(&empty)[7..].iter().all(|p| *p == Param::Int(0)));
    }

    #[test]
    fn a_group_records_each_batch_once_then_adds_its_rows_merged() {
        let a = [row(0, "c1", 1, 1), row(0, "c2", 2, 1)];
        let b = [row(0, "c1", 5, 1)];
        let s = apply_statements(
            &[
                Applying {
                    batch: "a",
                    rows: &a,
                },
                Applying {
                    batch: "b",
                    rows: &b,
                },
                Applying {
                    batch: "a",
                    rows: &a,
                },
            ],
            100,
            false,
        );
        assert_eq!(s.len(), 4, "{s:?}");
        assert_eq!(s[0].params, [Param::Text("a".into()), Param::Int(100)]);
        assert_eq!(s[1].params, [Param::Text("b".into()), Param::Int(100)]);
        assert!(s[0].sql.starts_with("INSERT INTO applied_batches"));
        assert_eq!(s[2].params[2], Param::Text("c1".into()));
        assert_eq!(
            s[2].params[3],
            Param::Int(6),
            "a's and b's c1 merged; a counted once"
        );
        assert_eq!(s[3].params[3], Param::Int(2));
        let pruned = apply_statements(
            &[Applying {
                batch: "a",
                rows: &a,
            }],
            100,
            true,
        );
        assert_eq!(pruned.len(), 3 + 3);
        assert!(pruned[3].sql.starts_with("DELETE FROM usage"));
    }

    #[test]
    fn prune_keeps_migrated_ids_as_long_as_rows_and_queue_ids_for_the_dedupe_window() {
        let now = RETENTION_S + 10 * DEDUPE_S;
        let s = prune_statements(now);
        assert_eq!(s[0].params, [Param::Int(now - RETENTION_S)]);
        assert_eq!(s[1].params[0], Param::Int(now - DEDUPE_S));
        assert_eq!(s[2].params[0], Param::Int(now - MIGRATION_DEDUPE_S));
        let key = UsageKey {
            hour: 3_600,
            partner_id: "acme".into(),
            client_id: "c".into(),
        };
        let id = key.migration_batch();
        assert_eq!(id, "migrate:3600:acme:c");
        let (Param::Text(lo), Param::Text(hi)) = (&s[1].params[1], &s[1].params[2]) else {
            panic!("text bounds")
        };
        assert!(id.as_str() >= lo.as_str() && id.as_str() < hi.as_str());
        let queue_id = crate::protocol::usage::batch_id([0xff; 16]);
        assert!(
            queue_id.as_str() < lo.as_str(),
            "hex ids are outside the migration range"
        );
    }

    #[test]
    fn applied_ids_are_asked_in_chunks_within_the_parameter_limit() {
        let ids: Vec<String> = (0..250).map(|i| format!("id{i}")).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let q = applied_queries(&refs);
        assert_eq!(
            q.iter().map(|s| s.params.len()).collect::<Vec<_>>(),
            [100, 100, 50]
        );
        assert_eq!(q[2].sql.matches('?').count(), 50);
    }

    #[test]
    fn a_d1_row_reads_back_as_the_row_it_was_and_garbage_is_refused() {
        let r = row(3_600, "c1", 4, 40);
        let mut obj = serde_json::json!({
            "hour": 3_600.0, "partner": "acme", "client": "c1",
            "requests": 4, "denied": 0, "status_4xx": 0, "status_5xx": 0,
        });
        for (i, n) in r.counts.latency.iter().enumerate() {
            obj[format!("lat_{i:02}")] = serde_json::json!(*n as f64);
        }
        assert_eq!(row_from_d1(&obj), Some(r.clone()));
        assert_eq!(row_from_d1(&obj).unwrap().counts.p50_ms(), Some(50));
        assert_eq!(LATENCY_BOUNDS_MS.len() + 1, BUCKETS);
        obj["requests"] = serde_json::json!(-1);
        assert_eq!(row_from_d1(&obj), None);
        obj["requests"] = serde_json::json!(1.5);
        assert_eq!(row_from_d1(&obj), None);
        assert_eq!(row_from_d1(&serde_json::json!({})), None);
        assert_eq!(
            applied_id(&serde_json::json!({"id": "x"})),
            Some("x".into())
        );
    }

    #[test]
    fn query_keeps_the_objects_contract() {
        let s = query_statement(Query {
            partner: Some("acme".into()),
            client: None,
            since: 3_700,
            until: 9_000,
            limit: 1_000,
        });
        assert_eq!(
            s.params[0],
            Param::Int(3_600),
            "the hour that contains since"
        );
        assert_eq!(s.params[2], Param::Text("acme".into()));
        assert_eq!(s.params[4], Param::Null);
        assert_eq!(s.params[6], Param::Int(1_000));
        assert!(s.sql.contains("ORDER BY hour, partner, client LIMIT ?"));
        assert_eq!(s.sql.matches('?').count(), s.params.len());
    }

    #[test]
    fn migrate_request_takes_a_cursor_and_a_bounded_limit() {
        assert_eq!(parse_migrate_request(b"{}").unwrap(), (None, MIGRATE_PAGE));
        let key = UsageKey {
            hour: 3_600,
            partner_id: "a".into(),
            client_id: "-".into(),
        };
        let body = br#"{"after":{"hour":3600,"partner_id":"a","client_id":"-"},"limit":2}"#;
        assert_eq!(parse_migrate_request(body).unwrap(), (Some(key), 2));
        for bad in [
            &b"{\"limit\":0}"[..],
            b"{\"limit\":501}",
            b"{\"after\":5}",
            b"[]",
            b"{\"x\":1}",
            b"",
        ] {
            let e = parse_migrate_request(bad).unwrap_err();
            assert_eq!(
                e.code,
                crate::protocol::error::ErrorCode::InvalidRequest,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn messages_group_up_to_the_row_bound() {
        assert_eq!(groups(&[]), Vec::<std::ops::Range<usize>>::new());
        assert_eq!(
            groups(&[10, 20, 30]),
            vec![std::ops::Range { start: 0, end: 3 }]
        );
        assert_eq!(
            groups(&[MAX_GROUP_ROWS, 1, MAX_GROUP_ROWS - 1, 5]),
            [0..1, 1..3, 3..4]
        );
        assert_eq!(
            groups(&[MAX_GROUP_ROWS + 5]),
            vec![std::ops::Range { start: 0, end: 1 }]
        );
    }

    #[test]
    fn commands_keep_their_wire_tags() {
        let add = UsageCommand::from(Add {
            rows: Vec::new(),
            now: 7,
        });
        let json = serde_json::to_string(&add).unwrap();
        assert_eq!(json, r#"{"add":{"rows":[],"now":7}}"#);
        assert_eq!(serde_json::from_str::<UsageCommand>(&json).unwrap(), add);
    }
}
