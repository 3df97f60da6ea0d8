//! Sending to the Worker's queues: every queue message leaves through here (one place to bound
//! the wait, inject faults in local tests, and count sends). A message is JSON text; its
//! consumer decodes it. A send that fails or does not finish in time is a 503.

use crate::edge::rt::config::{self, Fault};
use crate::edge::rt::objects::within;
use crate::protocol::error::ApiError;
use std::time::Duration;
use worker::Env;

/// How long a send may take before it is a failure.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends `body` (JSON text) to the queue bound as `binding`. Fault injection:
/// `EDGEWARD_INJECT_FAULTS=BINDING:send[:failN|lost|lost_once]` (see `config::injected_fault`;
/// `lost`: the message is sent, the answer is lost).
pub async fn send(env: &Env, binding: &str, body: String) -> Result<(), ApiError> {
    let fault = config::injected_fault(env, binding, "send");
    if fault == Some(Fault::Fail) {
        return Err(ApiError::unavailable(format!("{binding}: injected fault")));
    }
    let _in_flight = crate::edge::rt::counts::call("queue", binding, binding, "send");
    let queue = env
        .queue(binding)
        .map_err(|e| ApiError::unavailable(format!("queue binding {binding}: {e}")))?;
    match within(SEND_TIMEOUT, queue.send(body)).await {
        Some(Ok(())) if fault == Some(Fault::Lost) => Err(ApiError::unavailable(format!(
            "{binding}: injected lost reply"
        ))),
        Some(Ok(())) => Ok(()),
        Some(Err(e)) => Err(ApiError::unavailable(format!("{binding} send: {e}"))),
        None => Err(ApiError::unavailable(format!(
            "{binding} send: no answer within {} s",
            SEND_TIMEOUT.as_secs()
        ))),
    }
}
