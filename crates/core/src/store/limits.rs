//! The rate limiter's command protocol. One object per limited key (named `limit:{key}`, keys
//! such as `api:client:{client_id}`), or per shard of a key whose limit is split
//! (`limit:{key}:{s}`, see `protocol::ratelimit::shard_count`): it counts what it granted in the
//! current window and the next, so isolates everywhere together never admit more than the limit.

use serde::{Deserialize, Serialize};

use crate::protocol::ratelimit::Window;

pub fn object_name(key: &str) -> String {
    format!("limit:{key}")
}

crate::commands! {
    pub enum LimitCommand, trait LimitHandler {
        Take(Take) -> Granted, once, take;
        GiveBack(GiveBack) -> (), once, give_back;
    }
}

/// Up to `want` requests of `window`, and up to `ahead` of the window after it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Take {
    pub window: Window,
    pub want: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ahead: u32,
}

/// How many requests of the window the object granted (up to the `want` of a [`Take`]), and
/// of the window after it (up to its `ahead`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Granted {
    pub n: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ahead_n: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Requests taken in `window` and not spent. Workers of this release give back to their own
/// lease, never to the object; the command stays for Workers of earlier releases.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GiveBack {
    pub window: Window,
    pub n: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_keep_their_wire_tags() {
        let window = Window::at_offset(0, 60_000, 0, 10);
        let take = LimitCommand::from(Take {
            window,
            want: 3,
            ahead: 0,
        });
        let json = serde_json::to_string(&take).unwrap();
        assert!(json.starts_with(r#"{"take":{"window":"#), "{json}");
        assert_eq!(serde_json::from_str::<LimitCommand>(&json).unwrap(), take);
        let back = serde_json::to_string(&LimitCommand::from(GiveBack { window, n: 1 })).unwrap();
        assert!(back.starts_with(r#"{"give_back":{"#), "{back}");
    }
}
