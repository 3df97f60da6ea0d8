//! R2: every bucket operation goes through here (one function per operation kind), bounded in
//! time, with fault injection for local tests (`EDGEWARD_INJECT_FAULTS=BINDING:put|list|get`).
//! A failure or time-out is a 503.

use crate::edge::rt::config::{self, Fault};
use crate::edge::rt::counts;
use crate::edge::rt::objects::within;
use crate::protocol::error::ApiError;
use std::time::Duration;
use worker::{Bucket, Env};

/// How long one R2 operation may take before it is a failure.
pub const R2_TIMEOUT: Duration = Duration::from_secs(10);

fn bucket(env: &Env, binding: &str, op: &str) -> Result<Bucket, ApiError> {
    if config::injected_fault(env, binding, op) == Some(Fault::Fail) {
        return Err(ApiError::unavailable(format!(
            "{binding} {op}: injected fault"
        )));
    }
    env.bucket(binding)
        .map_err(|e| ApiError::unavailable(format!("r2 binding {binding}: {e}")))
}

async fn bounded<T>(
    binding: &str,
    op: &str,
    fut: impl std::future::Future<Output = worker::Result<T>>,
) -> Result<T, ApiError> {
    match within(R2_TIMEOUT, fut).await {
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => Err(ApiError::unavailable(format!("{binding} {op}: {e}"))),
        None => Err(ApiError::unavailable(format!(
            "{binding} {op}: no answer within {} s",
            R2_TIMEOUT.as_secs()
        ))),
    }
}

/// Writes `body` under `key` (replacing what was there).
pub async fn put(env: &Env, binding: &str, key: &str, body: String) -> Result<(), ApiError> {
    let _in_flight = counts::call("r2", binding, binding, "put");
    let bucket = bucket(env, binding, "put")?;
    bounded(binding, "put", bucket.put(key, body).execute()).await?;
    Ok(())
}

/// One page of keys listing: keys under `prefix` sorting after `start_after`, at most `limit`,
/// in key order; and whether more follow.
pub async fn list(
    env: &Env,
    binding: &str,
    prefix: &str,
    start_after: &str,
    limit: u32,
) -> Result<(Vec<String>, bool), ApiError> {
    let _in_flight = counts::call("r2", binding, binding, "list");
    let bucket = bucket(env, binding, "list")?;
    let objects = bounded(
        binding,
        "list",
        bucket
            .list()
            .prefix(prefix)
            .start_after(start_after)
            .limit(limit)
            .execute(),
    )
    .await?;
    let keys = objects.objects().iter().map(|o| o.key()).collect();
    Ok((keys, objects.truncated()))
}

/// The text stored under `key`, if any.
pub async fn get(env: &Env, binding: &str, key: &str) -> Result<Option<String>, ApiError> {
    let _in_flight = counts::call("r2", binding, binding, "get");
    let bucket = bucket(env, binding, "get")?;
    let Some(object) = bounded(binding, "get", bucket.get(key).execute()).await? else {
        return Ok(None);
    };
    let Some(body) = object.body() else {
        return Ok(None);
    };
    bounded(binding, "get", body.text()).await.map(Some)
}
