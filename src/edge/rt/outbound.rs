//! Fetching a JSON document a partner published (its keys, a client's keys, a sector's redirect
//! URIs): where it was registered and nowhere else. Redirects are not followed (a 3xx is a
//! failure: a partner whose document moved registers the new URL), and the whole exchange, body
//! included, is bounded by [`FETCH_TIMEOUT_MS`] and [`MAX_DOCUMENT_BYTES`]. What comes back is
//! hostile input: only JSON, parsed by the caller's rules.

use futures_util::future::{select, Either};
use futures_util::StreamExt;
use serde_json::Value;
use std::time::Duration;
use worker::{Delay, Fetch, Headers, Method, Request, RequestInit, RequestRedirect};

/// For the whole exchange: connection, headers and body.
pub const FETCH_TIMEOUT_MS: u64 = 3_000;

pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;

async fn read(uri: &str, accept: &str) -> Result<Vec<u8>, String> {
    let headers = Headers::new();
    headers.set("accept", accept).map_err(|e| e.to_string())?;
    let mut init = RequestInit::new();
    init.with_method(Method::Get)
        .with_headers(headers)
        .with_redirect(RequestRedirect::Manual);
    let req = Request::new_with_init(uri, &init).map_err(|e| e.to_string())?;
    let mut resp = Fetch::Request(req)
        .send()
        .await
        .map_err(|e| format!("fetch: {e}"))?;
    let status = resp.status_code();
    if (300..400).contains(&status) {
        return Err(format!("redirected ({status}); redirects are not followed"));
    }
    if status != 200 {
        return Err(format!("answered {status}"));
    }
    let declared = resp
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64) {
        return Err("the document is over 64 KiB".into());
    }
    let mut body: Vec<u8> = Vec::new();
    let mut stream = resp.stream().map_err(|e| e.to_string())?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err("the document is over 64 KiB".into());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The body at `uri`, within the time-out; the error says why not (for the log line).
async fn fetch(uri: &str, accept: &str) -> Result<Vec<u8>, String> {
    let read = Box::pin(read(uri, accept));
    let timeout = Box::pin(Delay::from(Duration::from_millis(FETCH_TIMEOUT_MS)));
    match select(read, timeout).await {
        Either::Left((r, _)) => r,
        Either::Right(_) => Err("the fetch timed out".into()),
    }
}

/// The JSON document at `uri`.
pub async fn fetch_json(uri: &str, accept: &str) -> Result<Value, String> {
    let body = fetch(uri, accept).await?;
    serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))
}

/// The text at `uri` (a request object), surrounding whitespace removed.
pub async fn fetch_text(uri: &str, accept: &str) -> Result<String, String> {
    let body = fetch(uri, accept).await?;
    String::from_utf8(body)
        .map(|s| s.trim().to_owned())
        .map_err(|_| "not UTF-8".to_owned())
}
