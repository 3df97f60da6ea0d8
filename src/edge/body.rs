//! Reading request bodies: a declared size over the limit is refused before anything is read,
//! and the size read is checked again (a body may not declare its length).

use worker::Request;

use crate::protocol::error::{ApiError, ErrorCode};
use crate::protocol::form::{Params, MAX_FORM_BYTES};

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
        return Err(too_large());
    }
    let body = req
        .bytes()
        .await
        .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, format!("unreadable body: {e}")))?;
    if body.len() > max {
        return Err(too_large());
    }
    Ok(body)
}

/// An `application/x-www-form-urlencoded` body (OAuth requests and the pages' forms).
pub async fn form(req: &mut Request) -> Result<Params, ApiError> {
    let ct = req
        .headers()
        .get("content-type")
        .ok()
        .flatten()
        .unwrap_or_default();
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
