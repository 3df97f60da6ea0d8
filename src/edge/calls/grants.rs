//! Calls to the `GrantStore` objects (one per grant, named by the grant id, in the region its id
//! names: a region user's grant lives with the user).

use crate::edge::rt::config;
use crate::edge::rt::objects::{self, Placement};
use crate::protocol::error::ApiError;
use crate::protocol::grant::home_of_grant;
use crate::protocol::grant::Grant;
use crate::store::grants::{object_name, Create, Created, GrantCommand};
use crate::store::Command;
use worker::Env;

/// Sends `cmd` to the object of grant `grant_id` (every grant command is safe to send twice).
/// The id itself says where the object is: `{region}_{…}` in that region, a bare id (a legacy
/// user's, or any grant from before regions) in the global namespace.
pub async fn call<C: Command<Kind = GrantCommand>>(
    env: &Env,
    grant_id: &str,
    cmd: C,
) -> std::result::Result<C::Reply, ApiError> {
    let placement = Placement::of(home_of_grant(grant_id));
    objects::call_command_in(
        env,
        config::GRANTS_DO,
        &object_name(grant_id),
        placement,
        cmd,
    )
    .await
}

/// Stores a new grant in its own object, unless it was revoked first.
pub async fn create(env: &Env, grant: &Grant) -> std::result::Result<Created, ApiError> {
    let cmd = Create {
        grant: Box::new(grant.clone()),
    };
    call(env, &grant.grant_id, cmd).await
}
