//! The rate limiter's command protocol. One object per limited key (named `limit:{key}`, keys
//! such as `api:client:{client_id}`): it counts what it granted in the current window, so
//! isolates everywhere together never admit more than the limit.

use serde::{Deserialize, Serialize};

use crate::protocol::ratelimit::Window;

pub fn object_name(key: &str) -> String {
    format!("limit:{key}")
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitCommand {
    /// Up to `want` requests of `window`.
    Take { window: Window, want: u32 },
    /// Requests taken in `window` and not spent.
    GiveBack { window: Window, n: u32 },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitReply {
    Granted {
        n: u32,
    },
    Done,
    Failed {
        error: crate::protocol::error::ApiError,
    },
}
