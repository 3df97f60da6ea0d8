//! Calls to the `GrantStore` objects (one per grant, named by the grant id).

use crate::edge::rt::{config, objects};
use crate::protocol::error::ApiError;
use crate::protocol::grant::Grant;
use crate::store::grants::{object_name, GrantCommand, GrantReply};
use worker::Env;

pub async fn call(
    env: &Env,
    grant_id: &str,
    cmd: &GrantCommand,
) -> std::result::Result<GrantReply, ApiError> {
    objects::call_idempotent(env, config::GRANTS_DO, &object_name(grant_id), cmd).await
}

/// Stores a new grant in its own object.
pub async fn create(env: &Env, grant: &Grant) -> std::result::Result<(), ApiError> {
    let cmd = GrantCommand::Create {
        grant: Box::new(grant.clone()),
    };
    match call(env, &grant.grant_id, &cmd).await? {
        GrantReply::Created => Ok(()),
        GrantReply::Failed { error } => Err(error),
        _ => Err(ApiError::unavailable("unexpected grant reply")),
    }
}
