//! The audit log's command protocol. One object (named `audit`): security events are rare next to
//! requests; the high-volume kinds are throttled per isolate before they get here.

use serde::{Deserialize, Serialize};

use crate::protocol::audit::AuditEvent;
use crate::protocol::error::ApiError;

pub const AUDIT_OBJECT: &str = "audit";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditCommand {
    Record {
        event: AuditEvent,
    },
    /// Events with `seq` above `cursor`, oldest first.
    Query {
        since: Option<u64>,
        partner: Option<String>,
        kind: Option<String>,
        cursor: Option<u64>,
        limit: usize,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditReply {
    Recorded,
    Events { events: Vec<AuditEvent> },
    Failed { error: ApiError },
}

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, ts INTEGER NOT NULL, kind TEXT NOT NULL, partner TEXT, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_by_ts ON events (ts);
";
