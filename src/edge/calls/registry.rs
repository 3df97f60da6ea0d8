//! Calls to the `Registry` object (one, the partner registry's source of truth).

use crate::edge::rt::{config, objects};
use crate::protocol::error::ApiError;
use crate::store::registry::{RegistryCommand, REGISTRY_OBJECT};
use crate::store::Command;
use worker::Env;

/// Sends `cmd` to the registry object and returns its reply.
pub async fn call<C: Command<Kind = RegistryCommand>>(
    env: &Env,
    cmd: C,
) -> std::result::Result<C::Reply, ApiError> {
    objects::call_command(env, config::REGISTRY_DO, REGISTRY_OBJECT, cmd).await
}
