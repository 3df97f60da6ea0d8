//! The usage object's command protocol. One object (named `usage`): isolates hand it their
//! counts every few seconds (`USAGE_FLUSH_SECONDS`), not per request.

use serde::{Deserialize, Serialize};

use crate::protocol::error::ApiError;
use crate::protocol::usage::UsageRow;

pub const USAGE_OBJECT: &str = "usage";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageCommand {
    /// Adds counts to their rows (rows merge; nothing is overwritten).
    Add { rows: Vec<UsageRow>, now: u64 },
    /// Rows of hours `since..until` (seconds), optionally of one partner and client.
    Query {
        partner: Option<String>,
        client: Option<String>,
        since: u64,
        until: u64,
        limit: usize,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageReply {
    Added,
    Rows { rows: Vec<UsageRow> },
    Failed { error: ApiError },
}

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS usage (hour INTEGER NOT NULL, partner TEXT NOT NULL, client TEXT NOT NULL, counts TEXT NOT NULL, PRIMARY KEY (hour, partner, client));
";
