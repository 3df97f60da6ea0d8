//! The `GrantStore` Durable Object: one grant per object. Each command loads the grant, applies a
//! pure transition from `protocol::grant`, and stores the result before answering, with no other
//! I/O in between: concurrent redemptions are serialized by the object and exactly one wins.

use crate::edge::rt::{objects, revoked};
use crate::protocol::error::{ApiError, ErrorCode};
use crate::protocol::grant::{Grant, Step, GRANT_ABSOLUTE_S};
use crate::store::grants::{
    Create, Created, GrantCommand, GrantHandler, Redeem, Refresh, Revoke, RevokeAll, Status,
    REVOKED_FIRST_KEPT_S,
};
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

const GRANT: &str = "grant";

/// Present once the grant's revocation marker (`revoked:{grant_id}`) has been written to KV:
/// every later revoking command (a replay, a revocation again) then leaves KV alone. Written only
/// after the KV write succeeded, so a failed publication is tried again by the next one.
const PUBLISHED: &str = "revocation_published";

/// Present in an object revoked before its grant was created (`RevokeAll` found nothing): the
/// creation, sent in parallel with the grant's listing, is refused when it arrives. The object
/// empties itself `REVOKED_FIRST_KEPT_S` later.
const REVOKED_FIRST: &str = "revoked_first";

/// A superseded refresh-token hash that no longer fits in the grant record.
fn spilled_key(hash: &str) -> String {
    format!("superseded:{hash}")
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
        objects::serve_commands(req, "grant store", |cmd: GrantCommand| self.handle(cmd)).await
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
    async fn settle(&self, grant: &Grant, step: Step) -> std::result::Result<Step, ApiError> {
        match step {
            Ok(issue) => {
                self.store(grant).await?;
                Ok(Ok(issue))
            }
            Err(refusal) => {
                if refusal.revokes_grant() {
                    self.store(grant).await?;
                    if grant.revoked {
                        self.publish_revocation(grant).await?;
                    }
                }
                Ok(Err(refusal))
            }
        }
    }

    /// Revokes the grant and tells the gateway. Revoking again publishes again until a
    /// publication has succeeded, so a retry after a failed one completes it.
    async fn end(&self, mut grant: Grant) -> std::result::Result<(), ApiError> {
        if !grant.revoked {
            grant.revoked = true;
            self.store(&grant).await?;
        }
        self.publish_revocation(&grant).await
    }

    /// Writes the revocation marker once: not again once recorded as published. Commands that
    /// arrive while the write is under way wait for it (`revoked::publish` shares it in the
    /// isolate) and share its outcome, so of many parallel replays the key is written once, and
    /// if that write fails every one of them is a 503.
    async fn publish_revocation(&self, grant: &Grant) -> std::result::Result<(), ApiError> {
        let storage = self.state.storage();
        if storage
            .get::<u8>(PUBLISHED)
            .await
            .map_err(storage_err)?
            .is_some()
        {
            return Ok(());
        }
        revoked::publish(&self.env, &grant.grant_id, crate::edge::rt::clock::now_ms()).await?;
        storage.put(PUBLISHED, 1u8).await.map_err(storage_err)
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
            .saturating_sub(i64::try_from(crate::edge::rt::clock::now_ms()).unwrap_or(0));
        self.state
            .storage()
            .set_alarm(offset_ms)
            .await
            .map_err(storage_err)
    }

    async fn revoked_first(&self) -> std::result::Result<bool, ApiError> {
        let mark = self.state.storage().get::<u8>(REVOKED_FIRST).await;
        Ok(mark.map_err(storage_err)?.is_some())
    }

    /// Marks an object without a grant revoked, and has it empty itself later (the mark written
    /// again changes neither).
    async fn mark_revoked_first(&self) -> std::result::Result<(), ApiError> {
        if self.revoked_first().await? {
            return Ok(());
        }
        let storage = self.state.storage();
        storage.put(REVOKED_FIRST, 1u8).await.map_err(storage_err)?;
        let kept = std::time::Duration::from_secs(REVOKED_FIRST_KEPT_S);
        storage.set_alarm(kept).await.map_err(storage_err)
    }

    async fn load(&self) -> std::result::Result<Option<Grant>, ApiError> {
        self.state.storage().get(GRANT).await.map_err(storage_err)
    }
}

fn unknown() -> ApiError {
    ApiError::new(ErrorCode::InvalidGrant, "unknown or expired grant")
}

impl GrantHandler for GrantStore {
    async fn create(&self, Create { grant }: Create) -> std::result::Result<Created, ApiError> {
        match self.load().await? {
            // The same creation sent again after its reply was lost.
            Some(g) if g == *grant => Ok(Created::Stored),
            Some(_) => Err(ApiError::unavailable("grant id collision")),
            None if self.revoked_first().await? => Ok(Created::RevokedFirst),
            None => {
                self.store(grant.as_ref()).await?;
                Ok(Created::Stored)
            }
        }
    }

    async fn redeem(
        &self,
        Redeem {
            code_hash,
            attempt,
            client_id,
            redirect_uri,
            code_verifier,
            new_refresh_hash,
            now,
        }: Redeem,
    ) -> std::result::Result<Step, ApiError> {
        let mut grant = self.load().await?.ok_or_else(unknown)?;
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

    async fn refresh(
        &self,
        Refresh {
            refresh_hash,
            client_id,
            scopes,
            new_refresh_hash,
            now,
        }: Refresh,
    ) -> std::result::Result<Step, ApiError> {
        let mut grant = self.load().await?.ok_or_else(unknown)?;
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

    async fn revoke(&self, Revoke { client_id }: Revoke) -> std::result::Result<(), ApiError> {
        match self.load().await?.filter(|g| g.client_id == client_id) {
            Some(grant) => self.end(grant).await,
            None => Ok(()),
        }
    }

    async fn revoke_all(&self, _: RevokeAll) -> std::result::Result<(), ApiError> {
        match self.load().await? {
            Some(grant) => self.end(grant).await,
            // Its creation may still be on its way: it is refused when it arrives.
            None => self.mark_revoked_first().await,
        }
    }

    async fn status(
        &self,
        Status { now, refresh_hash }: Status,
    ) -> std::result::Result<Option<Grant>, ApiError> {
        Ok(self.load().await?.filter(|grant| {
            grant.active(now)
                && refresh_hash
                    .as_deref()
                    .is_none_or(|h| grant.is_current_refresh(h))
        }))
    }
}
