//! Building `worker::Response`s: the only place protocol replies become HTTP.

use crate::protocol::error::ApiError;
use crate::protocol::partner::PartnerId;
use serde::Serialize;
use worker::{Headers, Response};

/// A response and what the log line says about it.
pub struct Outcome {
    pub response: Response,
    pub outcome: &'static str,
    pub partner: Option<PartnerId>,
    /// The client the request was made for, when known (usage counters).
    pub client: Option<String>,
    pub cause: Option<String>,
    /// Our description of a refusal, for the audit log (never user input).
    pub reason: Option<String>,
}

impl Outcome {
    pub fn new(response: Response, outcome: &'static str) -> Outcome {
        Outcome {
            response,
            outcome,
            partner: None,
            client: None,
            cause: None,
            reason: None,
        }
    }

    pub fn error(err: ApiError) -> Outcome {
        Outcome {
            response: error(&err),
            outcome: err.code.as_str(),
            partner: None,
            client: None,
            cause: err.cause,
            reason: Some(err.description),
        }
    }

    pub fn partner(mut self, partner: PartnerId) -> Outcome {
        self.partner = Some(partner);
        self
    }
}

/// A response that cannot be built is itself answered with a bare 500: the Worker never panics
/// and never throws back to the runtime.
fn or_500(r: worker::Result<Response>) -> Response {
    r.unwrap_or_else(|_| {
        Response::empty()
            .map(|r| r.with_status(500))
            .unwrap_or_else(|_| fallback())
    })
}

fn fallback() -> Response {
    // `Response::empty` only fails if the JS runtime cannot allocate a Response at all.
    Response::builder().with_status(500).empty()
}

pub fn headers(pairs: &[(&str, String)]) -> Headers {
    let h = Headers::new();
    for (k, v) in pairs {
        // Names and values here are ours and valid; a failure would only drop one header.
        let _ = h.append(k, v);
    }
    h
}

pub fn json<T: Serialize>(status: u16, body: &T, extra: &[(&str, String)]) -> Response {
    let h = headers(extra);
    let _ = h.set("content-type", "application/json");
    if !extra
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("cache-control"))
    {
        let _ = h.set("cache-control", "no-store");
    }
    or_500(
        serde_json::to_string(body)
            .map_err(|e| worker::Error::RustError(e.to_string()))
            .and_then(Response::ok)
            .map(|r| r.with_status(status).with_headers(h)),
    )
}

pub fn empty(status: u16, extra: &[(&str, String)]) -> Response {
    or_500(Response::empty().map(|r| r.with_status(status).with_headers(headers(extra))))
}

pub fn text(status: u16, body: &str) -> Response {
    let h = headers(&[("content-type", "text/plain; charset=utf-8".to_owned())]);
    or_500(Response::ok(body).map(|r| r.with_status(status).with_headers(h)))
}

/// A body of `content_type` that no cache may keep (a signed userinfo answer).
pub fn body(status: u16, content_type: &str, body: String) -> Response {
    let h = headers(&[
        ("content-type", content_type.to_owned()),
        ("cache-control", "no-store".to_owned()),
    ]);
    or_500(Response::ok(body).map(|r| r.with_status(status).with_headers(h)))
}

pub fn error(err: &ApiError) -> Response {
    let wire = err.to_wire();
    let h = headers(&wire.headers);
    or_500(Response::ok(wire.body).map(|r| r.with_status(wire.status).with_headers(h)))
}
