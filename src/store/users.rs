//! The user Durable Object's command protocol. One object per user (named `user:{username}`):
//! a user's record, and later their consents and grants, change atomically in one place, and no
//! object is hot.

use serde::{Deserialize, Serialize};

use crate::protocol::error::ApiError;
use crate::protocol::user::{UserSpec, UserView, Username};

pub fn object_name(username: &Username) -> String {
    format!("user:{username}")
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum UserCommand {
    Put {
        username: Username,
        spec: UserSpec,
        now: u64,
    },
    Get,
    Delete,
    /// Checks a password in constant time; unknown users cost the same as known ones.
    VerifyPassword {
        password: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum UserReply {
    Saved {
        user: UserView,
        created: bool,
    },
    User {
        user: UserView,
    },
    Deleted,
    /// The password did not match, or there is no such user: callers cannot tell which.
    BadCredentials,
    Failed {
        error: ApiError,
    },
}
