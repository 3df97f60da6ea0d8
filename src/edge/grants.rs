//! The `GrantStore` Durable Object: one grant per object. Each command loads the grant, applies a
//! pure transition from `protocol::grant`, and stores the result before answering, with no other
//! I/O in between: concurrent redemptions are serialized by the object and exactly one wins.

use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

use super::{config, objects, revocation};
use crate::protocol::error::{ApiError, ErrorCode};
use crate::protocol::grant::{Grant, Step, GRANT_ABSOLUTE_S};
use crate::protocol::user::Username;
use crate::store::grants::{object_name, GrantCommand, GrantReply};
use crate::store::users::{UserCommand, UserReply};
use futures_util::future::join_all;

const GRANT: &str = "grant";

/// A superseded refresh-token hash that no longer fits in the grant record.
fn spilled_key(hash: &str) -> String {
    format!("superseded:{hash}")
}

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
    let replies = join_all(
        batch
            .iter()
            .map(|gid| call(env, gid, &GrantCommand::RevokeAll)),
    )
    .await;
    for (gid, reply) in batch.iter().zip(replies) {
        if let GrantReply::Failed { error } = reply? {
            return Err(error);
        }
        revocation::seen_here(gid);
    }
    Ok(())
}

/// Revokes a user's grants batch by batch, and has the user's object forget each batch once it
/// is revoked: after a failure, the same admin request again goes on where this one stopped.
pub async fn revoke_for_user(
    env: &Env,
    username: &Username,
    grant_ids: &[String],
) -> std::result::Result<(), ApiError> {
    for batch in grant_ids.chunks(REVOKE_BATCH) {
        revoke_batch(env, batch).await?;
        let forget = UserCommand::ForgetGrants {
            grant_ids: batch.to_vec(),
        };
        if let UserReply::Failed { error } = super::users::call(env, username, &forget).await? {
            return Err(error);
        }
    }
    Ok(())
}

/// Remembers a new user grant with its user, so that a new password or the user's removal
/// revokes it, for as long as it can be used (`lives_s`: a grant without refresh tokens ends
/// with its last access token). With `session_hash`, only while that session lives; otherwise
/// (or on failure) the grant is revoked again before the error, so nothing is issued from it.
pub async fn record_with_user(
    env: &Env,
    grant: &Grant,
    lives_s: u64,
    session_hash: Option<String>,
) -> std::result::Result<(), ApiError> {
    let Some(username) = &grant.username else {
        return Ok(());
    };
    let in_session = session_hash.is_some();
    let cmd = UserCommand::AddGrant {
        grant_id: grant.grant_id.clone(),
        client_id: grant.client_id.clone(),
        expires_at: grant.created_at + lives_s.min(GRANT_ABSOLUTE_S),
        session_hash,
        password_epoch: grant.password_epoch,
        now: grant.created_at,
    };
    let refused = match super::users::call(env, username, &cmd).await {
        Ok(UserReply::Done) => return Ok(()),
        Ok(UserReply::NoSession) if in_session => ApiError::new(
            ErrorCode::LoginRequired,
            "the session or password changed while the grant was issued; sign in again",
        ),
        Ok(UserReply::NoSession) => ApiError::new(
            ErrorCode::InvalidGrant,
            "the user's password changed while the grant was issued; ask again",
        ),
        Ok(UserReply::Failed { error }) if error.code == ErrorCode::NotFound => {
            ApiError::new(ErrorCode::InvalidGrant, "the user no longer exists")
        }
        Ok(UserReply::Failed { error }) => error,
        Ok(_) => ApiError::unavailable("unexpected user reply"),
        Err(e) => e,
    };
    // Best effort: the grant's code or token has not been handed out, so it is unusable anyway.
    let _ = revoke_all(env, std::slice::from_ref(&grant.grant_id)).await;
    Err(refused)
}

/// A grant object empties itself this long after its creation: past the absolute lifetime of any
/// grant, with a day to spare, nothing in it can be used or needs remembering.
const FORGET_AFTER: std::time::Duration =
    std::time::Duration::from_secs(GRANT_ABSOLUTE_S + 24 * 3600);

#[durable_object(alarm)]
pub struct GrantStore {
    state: State,
    env: Env,
}

fn storage_err(e: worker::Error) -> ApiError {
    ApiError::unavailable(format!("grant storage: {e}"))
}

impl DurableObject for GrantStore {
    fn new(state: State, env: Env) -> Self {
        GrantStore { state, env }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        objects::serve(req, "grant store", |cmd: GrantCommand| self.execute(cmd)).await
    }

    /// The grant's end: the record, and every superseded hash kept apart, go.
    async fn alarm(&self) -> Result<Response> {
        // A failure is an error, so the runtime tries the alarm again.
        self.state.storage().delete_all().await?;
        Response::ok("")
    }
}

impl GrantStore {
    /// Stores the outcome of a transition before answering: an issue, or a refusal that still
    /// changed the grant (a replay that revoked it).
    async fn settle(&self, grant: &Grant, step: Step) -> std::result::Result<GrantReply, ApiError> {
        match step {
            Ok(issue) => {
                self.store(grant).await?;
                Ok(GrantReply::Issued { issue })
            }
            Err((error, changed)) => {
                if changed {
                    self.store(grant).await?;
                    if grant.revoked {
                        revocation::publish(&self.env, &grant.grant_id).await?;
                    }
                }
                Err(error)
            }
        }
    }

    /// Revokes the grant and tells the gateway. Revoking again publishes again, so a retry
    /// after a failed publication completes it.
    async fn revoke(&self, mut grant: Grant) -> std::result::Result<(), ApiError> {
        grant.revoked = true;
        self.store(&grant).await?;
        revocation::publish(&self.env, &grant.grant_id).await
    }

    /// Stores the grant, and (again) the alarm that empties the object at the grant's end: a
    /// fixed time, so setting it again never postpones it, and grants stored before alarms
    /// existed get one at their next change.
    async fn store(&self, grant: &Grant) -> std::result::Result<(), ApiError> {
        self.state
            .storage()
            .put(GRANT, grant)
            .await
            .map_err(storage_err)?;
        let end_ms = grant
            .created_at
            .saturating_add(FORGET_AFTER.as_secs())
            .saturating_mul(1000);
        let offset_ms = i64::try_from(end_ms)
            .unwrap_or(i64::MAX)
            .saturating_sub(i64::try_from(super::now_ms()).unwrap_or(0));
        self.state
            .storage()
            .set_alarm(offset_ms)
            .await
            .map_err(storage_err)
    }

    async fn execute(&self, cmd: GrantCommand) -> std::result::Result<GrantReply, ApiError> {
        let existing: Option<Grant> = self.state.storage().get(GRANT).await.map_err(storage_err)?;
        let unknown = || ApiError::new(ErrorCode::InvalidGrant, "unknown or expired grant");
        match cmd {
            GrantCommand::Create { grant } => {
                match existing {
                    // The same creation sent again after its reply was lost.
                    Some(g) if g == *grant => {}
                    Some(_) => return Err(ApiError::unavailable("grant id collision")),
                    None => self.store(grant.as_ref()).await?,
                }
                Ok(GrantReply::Created)
            }
            GrantCommand::Redeem {
                code_hash,
                attempt,
                client_id,
                redirect_uri,
                code_verifier,
                new_refresh_hash,
                now,
            } => {
                let mut grant = existing.ok_or_else(unknown)?;
                let step = grant.redeem(
                    &code_hash,
                    &attempt,
                    &client_id,
                    redirect_uri.as_deref(),
                    code_verifier.as_deref(),
                    new_refresh_hash,
                    now,
                );
                self.settle(&grant, step).await
            }
            GrantCommand::Refresh {
                refresh_hash,
                client_id,
                scopes,
                new_refresh_hash,
                now,
            } => {
                let mut grant = existing.ok_or_else(unknown)?;
                let spilled_before = !grant.knows_refresh(&refresh_hash)
                    && self
                        .state
                        .storage()
                        .get::<u8>(&spilled_key(&refresh_hash))
                        .await
                        .map_err(storage_err)?
                        .is_some();
                let step = grant.refresh(
                    &refresh_hash,
                    &client_id,
                    scopes,
                    new_refresh_hash,
                    now,
                    spilled_before,
                );
                // Kept apart before the record is stored: at worst it is in both places.
                if let Some(old) = grant.refresh.as_mut().and_then(|r| r.spilled.take()) {
                    self.state
                        .storage()
                        .put(&spilled_key(&old), 1u8)
                        .await
                        .map_err(storage_err)?;
                }
                self.settle(&grant, step).await
            }
            GrantCommand::Revoke { client_id } => {
                if let Some(grant) = existing.filter(|g| g.client_id == client_id) {
                    self.revoke(grant).await?;
                }
                Ok(GrantReply::Revoked)
            }
            GrantCommand::RevokeAll => {
                if let Some(grant) = existing {
                    self.revoke(grant).await?;
                }
                Ok(GrantReply::Revoked)
            }
            GrantCommand::Status { now, refresh_hash } => Ok(match existing {
                Some(grant)
                    if grant.active(now)
                        && refresh_hash
                            .as_deref()
                            .is_none_or(|h| grant.is_current_refresh(h)) =>
                {
                    GrantReply::Active { grant }
                }
                _ => GrantReply::Inactive,
            }),
        }
    }
}
