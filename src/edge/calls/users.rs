//! Calls to the `UserStore` objects (one per user, named by the username).

use crate::edge::rt::{config, objects};
use crate::protocol::error::ApiError;
use crate::protocol::user::Username;
use crate::store::users::{object_name, UserCommand, UserReply};
use worker::Env;

pub async fn call(
    env: &Env,
    username: &Username,
    cmd: &UserCommand,
) -> std::result::Result<UserReply, ApiError> {
    objects::call(env, config::USERS_DO, &object_name(username), cmd).await
}
