//! Calls to the `UserStore` objects (one per user, named by the username).

use crate::edge::rt::{config, objects};
use crate::protocol::error::ApiError;
use crate::protocol::user::Username;
use crate::store::users::{object_name, UserCommand};
use crate::store::Command;
use worker::Env;

/// Sends `cmd` to the user store of `username`. Every user command is sent once: none is safe
/// to run twice (a login or a new password would be done again).
pub async fn call<C: Command<Kind = UserCommand>>(
    env: &Env,
    username: &Username,
    cmd: C,
) -> std::result::Result<C::Reply, ApiError> {
    objects::call_command(env, config::USERS_DO, &object_name(username), cmd).await
}
