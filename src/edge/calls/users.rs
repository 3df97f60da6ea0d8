//! Calls to the `UserStore` objects (one per user, named by the username, in the user's region),
//! and the user-region directory in KV that says which region a username lives in.

use crate::edge::rt::objects::{self, Placement};
use crate::edge::rt::{config, kvcache};
use crate::protocol::error::ApiError;
use crate::protocol::region::{directory_key, parse_directory_value, Home, Region};
use crate::protocol::user::Username;
use crate::store::users::{object_name, UserCommand};
use crate::store::Command;
use worker::Env;

/// Sends `cmd` to the user store of `username` in `home` (from the session cookie, the grant
/// id, or [`home_of`]). Every user command is sent once: none is safe to run twice (a login or
/// a new password would be done again).
pub async fn call<C: Command<Kind = UserCommand>>(
    env: &Env,
    username: &Username,
    home: Home,
    cmd: C,
) -> std::result::Result<C::Reply, ApiError> {
    let placement = Placement::of(home);
    objects::call_command_in(
        env,
        config::USERS_DO,
        &object_name(username),
        placement,
        cmd,
    )
    .await
}

/// Where `username` lives, from the directory (`user-region:{hash}`), read through the isolate
/// cache: for a request that starts from a typed or linked username, with no session or grant
/// to carry the region. No entry: a legacy user (or nobody), reached in the global namespace,
/// as every user was before regions. A value that is not a region is a 503.
pub async fn home_of(env: &Env, username: &Username, now_ms: u64) -> Result<Home, ApiError> {
    let key = directory_key(username.as_str());
    match kvcache::get_text(env, &key, now_ms).await? {
        None => Ok(None),
        Some(v) => parse_directory_value(&v)
            .map(Some)
            .ok_or_else(|| ApiError::unavailable(format!("corrupt record {key}"))),
    }
}

/// The directory entry, read from KV itself (not this isolate's cache): for the admin API, which
/// decides from it whether a username is taken in a region.
pub async fn home_fresh(env: &Env, username: &Username, now_ms: u64) -> Result<Home, ApiError> {
    kvcache::forget(&directory_key(username.as_str()));
    home_of(env, username, now_ms).await
}

/// Records a new user's region: written once, when the user is created (KV takes one write a
/// second per key; this key is written once per user).
pub async fn record_home(env: &Env, username: &Username, region: Region) -> Result<(), ApiError> {
    let key = directory_key(username.as_str());
    let put = env
        .kv(config::PARTNERS_KV)
        .map_err(|e| ApiError::unavailable(format!("kv binding: {e}")))?
        .put(&key, region.as_str())
        .map_err(|e| ApiError::unavailable(format!("kv put: {e}")))?;
    objects::kv_op("put", &key, put.execute()).await?;
    kvcache::forget(&key);
    Ok(())
}

/// Removes a removed user's directory entry, so the username can be created again elsewhere.
pub async fn forget_home(env: &Env, username: &Username) -> Result<(), ApiError> {
    let key = directory_key(username.as_str());
    let kv = env
        .kv(config::PARTNERS_KV)
        .map_err(|e| ApiError::unavailable(format!("kv binding: {e}")))?;
    objects::kv_op("delete", &key, kv.delete(&key)).await?;
    kvcache::forget(&key);
    Ok(())
}
