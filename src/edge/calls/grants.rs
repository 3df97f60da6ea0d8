//! Calls to the `GrantStore` objects (one per grant, named by the grant id).

use crate::edge::rt::{config, objects};
use crate::protocol::error::ApiError;
use crate::protocol::grant::Grant;
use crate::store::grants::{object_name, Create, GrantCommand};
use crate::store::Command;
use worker::Env;

/// Sends `cmd` to the object of grant `grant_id` (every grant command is safe to send twice).
pub async fn call<C: Command<Kind = GrantCommand>>(
    env: &Env,
    grant_id: &str,
    cmd: C,
) -> std::result::Result<C::Reply, ApiError> {
    objects::call_command(env, config::GRANTS_DO, &object_name(grant_id), cmd).await
}

/// Stores a new grant in its own object.
pub async fn create(env: &Env, grant: &Grant) -> std::result::Result<(), ApiError> {
    let cmd = Create {
        grant: Box::new(grant.clone()),
    };
    call(env, &grant.grant_id, cmd).await
}
