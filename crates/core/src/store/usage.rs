//! The usage object's command protocol. One object (named `usage`): isolates hand it their
//! counts every few seconds (`USAGE_FLUSH_SECONDS`), not per request.

use serde::{Deserialize, Serialize};

use crate::protocol::usage::UsageRow;

pub const USAGE_OBJECT: &str = "usage";

crate::commands! {
    pub enum UsageCommand, trait UsageHandler {
        Add(Add) -> (), once, add;
        Query(Query) -> Vec<UsageRow>, once, query;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
