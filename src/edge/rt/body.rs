//! Reading request bodies: a declared size over the limit is refused without being kept (up to
//! 1 MiB it is read and dropped first, so the client gets the answer), and the size read is
//! checked again (a body may not declare its length).

use crate::edge::rt::request::Request;
use crate::protocol::error::{ApiError, ErrorCode};
use crate::protocol::form::{Params, MAX_FORM_BYTES};
use futures_util::StreamExt;

/// Largest body that is read (and dropped) before it is refused as too large.
const DRAIN_AT_MOST: u64 = 1 << 20;

pub async fn read_limited(
    req: &mut Request,
    max: usize,
    too_large: impl Fn() -> ApiError,
) -> Result<Vec<u8>, ApiError> {
    let declared = req
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        // A body of a size a client may well send is read to its end first (and dropped): a
        // client still sending when the answer comes may lose the answer to a reset connection.
        if declared.is_some_and(|n| n <= DRAIN_AT_MOST) && req.inner().body().is_some() {
            if let Ok(mut stream) = req.stream() {
                while let Some(Ok(_)) = stream.next().await {}
            }
        }
        return Err(too_large());
    }
    if req.inner().body().is_none() {
        return Ok(Vec::new());
    }
    // A body framed by its declared length (within the limit, and not chunked as well) is read
    // in one call: HTTP framing ends it at that length, so no more than the limit is ever held
    // (the length is checked again, should a runtime ever pass on more). A stream read costs a
    // reader and a promise per chunk (issue 15's profile: a twelfth of the token endpoint).
    let chunked = req.headers().has("transfer-encoding").unwrap_or(true);
    if declared.is_some() && !chunked {
        let body = whole_body(req).await?;
        if body.len() > max {
            return Err(too_large());
        }
        return Ok(body);
    }
    // Read as a stream with a running count: a body that declared no length (or a wrong one)
    // is cut off at the limit, never buffered whole first.
    let mut stream = req.stream().map_err(|e| {
        ApiError::new(ErrorCode::InvalidRequest, "the body could not be read")
            .with_cause(format!("body stream: {e}"))
    })?;
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(ErrorCode::InvalidRequest, "the body could not be read")
                .with_cause(format!("body chunk: {e}"))
        })?;
        if body.len() + chunk.len() > max {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The whole body, in one `arrayBuffer()` call: only for a body of a declared, allowed length.
async fn whole_body(req: &Request) -> Result<Vec<u8>, ApiError> {
    let unreadable = |e: wasm_bindgen::JsValue| {
        ApiError::new(ErrorCode::InvalidRequest, "the body could not be read")
            .with_cause(format!("body: {e:?}"))
    };
    let promise = req.inner().array_buffer().map_err(unreadable)?;
    let buffer = wasm_bindgen_futures::JsFuture::from(promise)
        .await
        .map_err(unreadable)?;
    Ok(js_sys::Uint8Array::new(&buffer).to_vec())
}

/// The request's `Content-Type`, empty when it has none.
fn content_type(req: &Request) -> String {
    req.headers()
        .get("content-type")
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// An `application/json` body of at most `max` bytes (the admin API, client registration):
/// another media type is 415, a larger body 413.
pub async fn json(req: &mut Request, max: usize) -> Result<Vec<u8>, ApiError> {
    let ct = content_type(req);
    let media = ct.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "content-type must be application/json",
        ));
    }
    read_limited(req, max, || {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("body must be at most {max} bytes"),
        )
    })
    .await
}

/// An `application/x-www-form-urlencoded` body (OAuth requests and the pages' forms).
pub async fn form(req: &mut Request) -> Result<Params, ApiError> {
    let ct = content_type(req);
    if !ct
        .to_ascii_lowercase()
        .starts_with("application/x-www-form-urlencoded")
    {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let body = read_limited(req, MAX_FORM_BYTES, || {
        ApiError::new(ErrorCode::InvalidRequest, "the form is too large")
    })
    .await?;
    Params::parse(&body)
}

/// The parameters of a page request: the form body of a POST, the query string otherwise.
pub async fn params(req: &mut Request, posted: bool) -> Result<Params, ApiError> {
    if posted {
        return form(req).await;
    }
    let query = req
        .url()
        .map_err(|_| ApiError::new(ErrorCode::InvalidRequest, "unreadable URL"))?
        .query()
        .map(str::to_owned)
        .unwrap_or_default();
    Params::parse(query.as_bytes())
}

pub async fn read_form(mut req: Request) -> Result<(Request, Params), ApiError> {
    let params = crate::edge::rt::body::form(&mut req).await?;
    Ok((req, params))
}
