//! Calling Durable Objects: one JSON command in, one JSON reply out. Transport failures are 503s.

use serde::{de::DeserializeOwned, Serialize};
use worker::{Env, Method, Request, RequestInit};

use crate::protocol::error::ApiError;

pub async fn call<C: Serialize, R: DeserializeOwned>(
    env: &Env,
    binding: &str,
    object: &str,
    cmd: &C,
) -> Result<R, ApiError> {
    let unavailable =
        |what: &str, e: worker::Error| ApiError::unavailable(format!("{binding} {what}: {e}"));
    let stub = env
        .durable_object(binding)
        .and_then(|ns| ns.get_by_name(object))
        .map_err(|e| unavailable("binding", e))?;
    let body =
        serde_json::to_string(cmd).map_err(|e| ApiError::unavailable(format!("encode: {e}")))?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_body(Some(body.into()));
    let req = Request::new_with_init("https://object.internal/command", &init)
        .map_err(|e| unavailable("request", e))?;
    let mut resp = stub
        .fetch_with_request(req)
        .await
        .map_err(|e| unavailable("fetch", e))?;
    resp.json::<R>().await.map_err(|e| unavailable("reply", e))
}
