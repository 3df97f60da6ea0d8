//! The `ReplayStore` Durable Object: the first claim of an identifier wins, every later one is
//! a replay. Claims are one synchronous SQLite statement, so concurrent claims cannot both win.

use std::cell::Cell;

use worker::{
    durable_object, DurableObject, Env, Request, Response, Result, SqlStorageValue, State,
};

use super::{config, objects};
use crate::protocol::error::ApiError;
use crate::protocol::grant::hash_secret;
use crate::protocol::link::CLOCK_SKEW_S;
use crate::protocol::partner::PartnerId;
use crate::store::replay::{object_name, ReplayCommand, ReplayReply, SCHEMA};

/// Claims `key` (already hashed or otherwise safe to store) for `signer` until `expires_at`.
pub async fn claim(
    env: &Env,
    signer: &str,
    key: &str,
    expires_at: u64,
    now: u64,
) -> std::result::Result<bool, ApiError> {
    let cmd = ReplayCommand::Claim {
        key: key.to_owned(),
        expires_at,
        now,
    };
    ask(env, signer, &cmd).await
}

/// The signer under which a partner's JWTs are claimed (all three kinds share it: a `jti` is
/// used once across them).
pub fn partner_scope(partner: &PartnerId) -> String {
    format!("partner:{partner}")
}

/// Claims a partner JWT's `jti` (stored hashed) until its `exp` plus the clock skew.
pub async fn claim_partner_jti(
    env: &Env,
    partner: &PartnerId,
    jti: &str,
    exp: u64,
    now: u64,
) -> std::result::Result<bool, ApiError> {
    let key = hash_secret(jti);
    claim(env, &partner_scope(partner), &key, exp + CLOCK_SKEW_S, now).await
}

/// Whether `key` is still unused for `signer`, without using it: a page that only asks the
/// person refuses a used identifier at once; the claim that counts comes later.
pub async fn unused(
    env: &Env,
    signer: &str,
    key: &str,
    now: u64,
) -> std::result::Result<bool, ApiError> {
    let cmd = ReplayCommand::Check {
        key: key.to_owned(),
        now,
    };
    ask(env, signer, &cmd).await
}

/// Whether a partner JWT's `jti` is still unused, without using it.
pub async fn partner_jti_unused(
    env: &Env,
    partner: &PartnerId,
    jti: &str,
    now: u64,
) -> std::result::Result<bool, ApiError> {
    unused(env, &partner_scope(partner), &hash_secret(jti), now).await
}

async fn ask(env: &Env, signer: &str, cmd: &ReplayCommand) -> std::result::Result<bool, ApiError> {
    match objects::call(env, config::REPLAY_DO, &object_name(signer), cmd).await? {
        ReplayReply::Fresh => Ok(true),
        ReplayReply::Seen => Ok(false),
        ReplayReply::Failed { error } => Err(error),
    }
}

#[durable_object(fetch)]
pub struct ReplayStore {
    state: State,
    schema_ready: Cell<bool>,
}

impl DurableObject for ReplayStore {
    fn new(state: State, _env: Env) -> Self {
        ReplayStore {
            state,
            schema_ready: Cell::new(false),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        objects::serve(req, "replay store", |cmd: ReplayCommand| async move {
            match cmd {
                ReplayCommand::Claim {
                    key,
                    expires_at,
                    now,
                } => self.claim(&key, expires_at, now),
                ReplayCommand::Check { key, now } => self.check(&key, now),
            }
        })
        .await
    }
}

impl ReplayStore {
    fn check(&self, key: &str, now: u64) -> std::result::Result<ReplayReply, ApiError> {
        let err = |e: worker::Error| ApiError::unavailable(format!("replay storage: {e}"));
        let sql = objects::sql(&self.state, &self.schema_ready, SCHEMA)?;
        let found: Vec<serde_json::Value> = sql
            .exec(
                "SELECT key FROM seen WHERE key = ? AND expires_at >= ?",
                vec![
                    SqlStorageValue::String(key.to_owned()),
                    objects::sql_int(now),
                ],
            )
            .and_then(|c| c.to_array())
            .map_err(err)?;
        Ok(if found.is_empty() {
            ReplayReply::Fresh
        } else {
            ReplayReply::Seen
        })
    }

    fn claim(
        &self,
        key: &str,
        expires_at: u64,
        now: u64,
    ) -> std::result::Result<ReplayReply, ApiError> {
        let err = |e: worker::Error| ApiError::unavailable(format!("replay storage: {e}"));
        let sql = objects::sql(&self.state, &self.schema_ready, SCHEMA)?;
        // Forget what can no longer be replayed; the rest decides.
        sql.exec(
            "DELETE FROM seen WHERE expires_at < ?",
            vec![objects::sql_int(now)],
        )
        .map_err(err)?;
        // RETURNING yields the row only when this claim inserted it.
        let inserted: Vec<serde_json::Value> = sql
            .exec(
                "INSERT INTO seen (key, expires_at) VALUES (?, ?) ON CONFLICT(key) DO NOTHING RETURNING key",
                vec![SqlStorageValue::String(key.to_owned()), objects::sql_int(expires_at)],
            )
            .and_then(|c| c.to_array())
            .map_err(err)?;
        Ok(if inserted.is_empty() {
            ReplayReply::Seen
        } else {
            ReplayReply::Fresh
        })
    }
}
