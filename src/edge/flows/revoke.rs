//! Revoking grants whoever their client (unlinking, a new password, a removed user), and telling
//! this isolate's gateway at once.

use crate::edge::calls::grants;
use crate::edge::flows::admission;
use crate::edge::rt::kvcache;
use crate::protocol::api::revoked_key;
use crate::protocol::error::ApiError;
use crate::protocol::region::Home;
use crate::protocol::user::Username;
use crate::store::grants::RevokeAll;
use crate::store::users::ForgetGrants;
use futures_util::future::join_all;
use worker::Env;

/// Grants revoked at once, in parallel.
const REVOKE_BATCH: usize = 16;

/// Revokes grants whoever their client (unlinking, a new password, a removed user), and tells
/// the gateway. A failure is an error once the batch has settled; revoking again is harmless.
pub async fn revoke_all(env: &Env, grant_ids: &[String]) -> std::result::Result<(), ApiError> {
    for batch in grant_ids.chunks(REVOKE_BATCH) {
        revoke_batch(env, batch).await?;
    }
    Ok(())
}

async fn revoke_batch(env: &Env, batch: &[String]) -> std::result::Result<(), ApiError> {
    let replies = join_all(batch.iter().map(|gid| grants::call(env, gid, RevokeAll {}))).await;
    for (gid, reply) in batch.iter().zip(replies) {
        reply?;
        seen_here(gid);
    }
    Ok(())
}

/// Revokes a user's grants batch by batch, and has the user's object forget each batch once it
/// is revoked: after a failure, the same admin request again goes on where this one stopped.
pub async fn revoke_for_user(
    env: &Env,
    username: &Username,
    home: Home,
    grant_ids: &[String],
) -> std::result::Result<(), ApiError> {
    for batch in grant_ids.chunks(REVOKE_BATCH) {
        revoke_batch(env, batch).await?;
        let forget = ForgetGrants {
            grant_ids: batch.to_vec(),
        };
        crate::edge::calls::users::call(env, username, home, forget).await?;
    }
    Ok(())
}

/// Makes this isolate's gateway refuse a revocation at once, without waiting for its caches.
pub fn seen_here(id: &str) {
    kvcache::forget(&revoked_key(id));
    admission::forget_admitted();
}
