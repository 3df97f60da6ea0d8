//! Calls to the `Registry` object (one, the partner registry's source of truth).

use crate::edge::rt::config;
use crate::protocol::error::ApiError;
use crate::store::registry::{RegistryCommand, RegistryReply, REGISTRY_OBJECT};
use worker::Env;

/// Sends a command to the registry object and returns its reply.
pub async fn call(
    env: &Env,
    cmd: &RegistryCommand,
) -> std::result::Result<RegistryReply, ApiError> {
    crate::edge::rt::objects::call(env, config::REGISTRY_DO, REGISTRY_OBJECT, cmd).await
}
