//! The audit log's command protocol. One object (named `audit`): security events are rare next to
//! requests; the high-volume kinds are throttled per isolate before they get here.

use serde::{Deserialize, Serialize};

use crate::protocol::audit::AuditEvent;

pub const AUDIT_OBJECT: &str = "audit";

crate::commands! {
    pub enum AuditCommand, trait AuditHandler {
        Record(Record) -> (), once, record;
        Query(Query) -> Vec<AuditEvent>, once, query;
    }
}

/// Keeps one event.
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

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, ts INTEGER NOT NULL, kind TEXT NOT NULL, partner TEXT, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_by_ts ON events (ts);
";

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
