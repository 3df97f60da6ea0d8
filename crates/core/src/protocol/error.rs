//! The one error type that reaches the wire, mapped in one place to status, headers and JSON.
//!
//! The JSON body always has `error` (a stable code) and `error_description` (for people), the field
//! names of RFC 6749 §5.2; input errors add `field`, the JSON path of the offending value. Internal
//! causes ride along in `cause` for the log line and are never serialized.

use serde::{Deserialize, Serialize};

use crate::routes::Method;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidRequest,
    /// No credentials were presented (RFC 6750 §3.1: no error code in the challenge).
    #[serde(rename = "unauthorized")]
    MissingToken,
    InvalidToken,
    NotFound,
    MethodNotAllowed,
    OriginConflict,
    IssuerConflict,
    LengthRequired,
    PayloadTooLarge,
    UnsupportedMediaType,
    RateLimited,
    BadGateway,
    OriginNotAllowed,
    PartnerSuspended,
    TemporarilyUnavailable,
    /// The admin API has no (or too weak an) `ADMIN_TOKEN`: it stays closed.
    AdminDisabled,
    ServerError,
    // OAuth 2.0 (RFC 6749 §4.1.2.1, §5.2), OpenID Connect Core §3.1.2.6, RFC 6750 §3.1.
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    UnsupportedResponseType,
    InvalidScope,
    AccessDenied,
    LoginRequired,
    ConsentRequired,
    InteractionRequired,
    RequestNotSupported,
    RequestUriNotSupported,
    InsufficientScope,
    // Dynamic Client Registration (RFC 7591 §3.2.2).
    InvalidRedirectUri,
    InvalidClientMetadata,
    UnapprovedSoftwareStatement,
    // Request objects (OpenID Connect Core §3.1.2.6).
    InvalidRequestObject,
    InvalidRequestUri,
}

impl ErrorCode {
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::InvalidRequest
            | ErrorCode::InvalidGrant
            | ErrorCode::UnauthorizedClient
            | ErrorCode::UnsupportedGrantType
            | ErrorCode::UnsupportedResponseType
            | ErrorCode::InvalidScope
            | ErrorCode::LoginRequired
            | ErrorCode::ConsentRequired
            | ErrorCode::InteractionRequired
            | ErrorCode::RequestNotSupported
            | ErrorCode::RequestUriNotSupported
            | ErrorCode::InvalidRedirectUri
            | ErrorCode::InvalidClientMetadata
            | ErrorCode::UnapprovedSoftwareStatement
            | ErrorCode::InvalidRequestObject
            | ErrorCode::InvalidRequestUri => 400,
            ErrorCode::InvalidClient => 401,
            ErrorCode::AccessDenied | ErrorCode::InsufficientScope => 403,
            ErrorCode::MissingToken | ErrorCode::InvalidToken => 401,
            ErrorCode::OriginNotAllowed | ErrorCode::PartnerSuspended => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::OriginConflict | ErrorCode::IssuerConflict => 409,
            ErrorCode::LengthRequired => 411,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::RateLimited => 429,
            ErrorCode::BadGateway => 502,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::ServerError => 500,
            ErrorCode::TemporarilyUnavailable | ErrorCode::AdminDisabled => 503,
        }
    }

    /// The code as it appears in the `error` member.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::MissingToken => "unauthorized",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::OriginConflict => "origin_conflict",
            ErrorCode::IssuerConflict => "issuer_conflict",
            ErrorCode::LengthRequired => "length_required",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::BadGateway => "bad_gateway",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::OriginNotAllowed => "origin_not_allowed",
            ErrorCode::PartnerSuspended => "partner_suspended",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
            ErrorCode::AdminDisabled => "admin_disabled",
            ErrorCode::ServerError => "server_error",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::UnsupportedResponseType => "unsupported_response_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::LoginRequired => "login_required",
            ErrorCode::ConsentRequired => "consent_required",
            ErrorCode::InteractionRequired => "interaction_required",
            ErrorCode::RequestNotSupported => "request_not_supported",
            ErrorCode::RequestUriNotSupported => "request_uri_not_supported",
            ErrorCode::InsufficientScope => "insufficient_scope",
            ErrorCode::InvalidRedirectUri => "invalid_redirect_uri",
            ErrorCode::InvalidClientMetadata => "invalid_client_metadata",
            ErrorCode::UnapprovedSoftwareStatement => "unapproved_software_statement",
            ErrorCode::InvalidRequestObject => "invalid_request_object",
            ErrorCode::InvalidRequestUri => "invalid_request_uri",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    #[serde(rename = "error")]
    pub code: ErrorCode,
    #[serde(rename = "error_description")]
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What a status's headers need besides the code (`Allow`, a scope challenge).
    #[serde(skip)]
    pub detail: Detail,
    /// What went wrong inside, for the log line only.
    #[serde(skip)]
    pub cause: Option<String>,
}

/// Per-code extras for the headers of an error response.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Detail {
    #[default]
    None,
    /// Methods for the `Allow` header of a 405.
    Allow(&'static [Method]),
    /// The scope an `insufficient_scope` challenge names (RFC 6750 §3).
    Scope(Box<str>),
    /// A used-up rate limit: its size and the seconds until its window ends.
    RateLimit { limit: u32, reset_s: u64 },
}

/// A response as plain data: the edge adapter turns it into a `worker::Response`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireError {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, description: impl Into<String>) -> ApiError {
        ApiError {
            code,
            description: description.into(),
            field: None,
            detail: Detail::None,
            cause: None,
        }
    }

    pub fn invalid_field(field: impl Into<String>, description: impl Into<String>) -> ApiError {
        let field = field.into();
        let description = format!("{field}: {}", description.into());
        ApiError {
            field: Some(field),
            ..ApiError::new(ErrorCode::InvalidRequest, description)
        }
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    pub fn method_not_allowed(allow: &'static [Method]) -> ApiError {
        ApiError {
            detail: Detail::Allow(allow),
            ..ApiError::new(
                ErrorCode::MethodNotAllowed,
                "method not allowed on this route",
            )
        }
    }

    /// Storage or a dependency failed: answer 503 and log the cause. Never fail open.
    pub fn unavailable(cause: impl Into<String>) -> ApiError {
        ApiError {
            cause: Some(cause.into()),
            ..ApiError::new(
                ErrorCode::TemporarilyUnavailable,
                "the service is temporarily unavailable, try again shortly",
            )
        }
    }

    /// A 403 `insufficient_scope` whose challenge names the scope the request needed.
    pub fn insufficient_scope(scope: &str) -> ApiError {
        ApiError {
            detail: Detail::Scope(scope.into()),
            ..ApiError::new(
                ErrorCode::InsufficientScope,
                format!("this route needs the scope {scope}"),
            )
        }
    }

    pub fn with_cause(mut self, cause: impl Into<String>) -> ApiError {
        self.cause = Some(cause.into());
        self
    }

    /// The description as it may leave us (JSON body, redirect query, error page): only the
    /// characters RFC 6749 §4.1.2.1 allows (%x20-21 / %x23-5B / %x5D-7E), any other one
    /// replaced by `?`. Descriptions are our own words; this holds even if one ever is not.
    pub fn wire_description(&self) -> String {
        wire_text(&self.description)
    }

    /// The single mapping from error to status, headers and body.
    pub fn to_wire(&self) -> WireError {
        let mut headers = vec![
            ("content-type", "application/json".to_owned()),
            ("cache-control", "no-store".to_owned()),
        ];
        match self.code {
            ErrorCode::MissingToken => {
                headers.push(("www-authenticate", "Bearer realm=\"edgeward\"".to_owned()))
            }
            ErrorCode::InvalidToken => headers.push((
                "www-authenticate",
                "Bearer realm=\"edgeward\", error=\"invalid_token\"".to_owned(),
            )),
            ErrorCode::MethodNotAllowed => {
                let methods: &[Method] = match &self.detail {
                    Detail::Allow(m) => m,
                    _ => &[],
                };
                let allow: Vec<&str> = methods.iter().map(|m| m.as_str()).collect();
                headers.push(("allow", allow.join(", ")));
            }
            ErrorCode::TemporarilyUnavailable => headers.push(("retry-after", "5".to_owned())),
            // RFC 6585 §4 with Retry-After, and the RateLimit-* fields most clients know.
            ErrorCode::RateLimited => {
                if let Detail::RateLimit { limit, reset_s } = &self.detail {
                    headers.push(("retry-after", reset_s.to_string()));
                    headers.push(("ratelimit-limit", limit.to_string()));
                    headers.push(("ratelimit-remaining", "0".to_owned()));
                    headers.push(("ratelimit-reset", reset_s.to_string()));
                }
            }
            // RFC 6749 §5.2: a 401 invalid_client carries a challenge.
            ErrorCode::InvalidClient => {
                headers.push(("www-authenticate", "Basic realm=\"edgeward\"".to_owned()))
            }
            ErrorCode::InsufficientScope => headers.push((
                "www-authenticate",
                match &self.detail {
                    Detail::Scope(scope) => format!(
                        "Bearer realm=\"edgeward\", error=\"insufficient_scope\", scope=\"{scope}\""
                    ),
                    _ => "Bearer realm=\"edgeward\", error=\"insufficient_scope\"".to_owned(),
                },
            )),
            _ => {}
        }
        let shown = ApiError {
            description: self.wire_description(),
            field: self.field.as_deref().map(wire_text),
            ..self.clone()
        };
        let body = serde_json::to_string(&shown).unwrap_or_else(|_| {
            // Serializing a struct of strings cannot fail; keep a well-formed body regardless.
            format!("{{\"error\":\"{}\"}}", self.code.as_str())
        });
        WireError {
            status: self.code.status(),
            headers,
            body,
        }
    }
}

/// `s` within the characters RFC 6749 §4.1.2.1 allows in `error_description`.
fn wire_text(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\x20'..='\x21' | '\x23'..='\x5b' | '\x5d'..='\x7e' => c,
            _ => '?',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6749 §4.1.2.1's set for `error_description`.
    fn allowed(c: char) -> bool {
        matches!(c, '\x20'..='\x21' | '\x23'..='\x5b' | '\x5d'..='\x7e')
    }

    const ALL_CODES: [ErrorCode; 35] = [
        ErrorCode::InvalidRequest,
        ErrorCode::MissingToken,
        ErrorCode::InvalidToken,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::OriginConflict,
        ErrorCode::IssuerConflict,
        ErrorCode::LengthRequired,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::RateLimited,
        ErrorCode::BadGateway,
        ErrorCode::OriginNotAllowed,
        ErrorCode::PartnerSuspended,
        ErrorCode::TemporarilyUnavailable,
        ErrorCode::AdminDisabled,
        ErrorCode::ServerError,
        ErrorCode::InvalidClient,
        ErrorCode::InvalidGrant,
        ErrorCode::UnauthorizedClient,
        ErrorCode::UnsupportedGrantType,
        ErrorCode::UnsupportedResponseType,
        ErrorCode::InvalidScope,
        ErrorCode::AccessDenied,
        ErrorCode::LoginRequired,
        ErrorCode::ConsentRequired,
        ErrorCode::InteractionRequired,
        ErrorCode::RequestNotSupported,
        ErrorCode::RequestUriNotSupported,
        ErrorCode::InsufficientScope,
        ErrorCode::InvalidRedirectUri,
        ErrorCode::InvalidClientMetadata,
        ErrorCode::UnapprovedSoftwareStatement,
        ErrorCode::InvalidRequestObject,
        ErrorCode::InvalidRequestUri,
    ];

    /// Fails to compile when a code is added, so `ALL_CODES` is kept whole.
    #[allow(dead_code)]
    fn all_codes_is_exhaustive(code: ErrorCode) {
        match code {
            ErrorCode::InvalidRequest
            | ErrorCode::MissingToken
            | ErrorCode::InvalidToken
            | ErrorCode::NotFound
            | ErrorCode::MethodNotAllowed
            | ErrorCode::OriginConflict
            | ErrorCode::IssuerConflict
            | ErrorCode::LengthRequired
            | ErrorCode::PayloadTooLarge
            | ErrorCode::UnsupportedMediaType
            | ErrorCode::RateLimited
            | ErrorCode::BadGateway
            | ErrorCode::OriginNotAllowed
            | ErrorCode::PartnerSuspended
            | ErrorCode::TemporarilyUnavailable
            | ErrorCode::AdminDisabled
            | ErrorCode::ServerError
            | ErrorCode::InvalidClient
            | ErrorCode::InvalidGrant
            | ErrorCode::UnauthorizedClient
            | ErrorCode::UnsupportedGrantType
            | ErrorCode::UnsupportedResponseType
            | ErrorCode::InvalidScope
            | ErrorCode::AccessDenied
            | ErrorCode::LoginRequired
            | ErrorCode::ConsentRequired
            | ErrorCode::InteractionRequired
            | ErrorCode::RequestNotSupported
            | ErrorCode::RequestUriNotSupported
            | ErrorCode::InsufficientScope
            | ErrorCode::InvalidRedirectUri
            | ErrorCode::InvalidClientMetadata
            | ErrorCode::UnapprovedSoftwareStatement
            | ErrorCode::InvalidRequestObject
            | ErrorCode::InvalidRequestUri => {}
        }
    }

    #[test]
    fn wire_description_replaces_every_char_outside_rfc6749_set() {
        let hostile = "a\"b\\c\u{1}d\u{7f}e\u{e9}f\u{1F600}g\nh\ti<script>";
        let err = ApiError::new(ErrorCode::InvalidRequest, hostile);
        assert_eq!(err.wire_description(), "a?b?c?d?e?f?g?h?i<script>");
        let v: serde_json::Value = serde_json::from_str(&err.to_wire().body).unwrap();
        assert_eq!(v["error_description"], "a?b?c?d?e?f?g?h?i<script>");
        // Every allowed character passes unchanged.
        let ok: String = (0x20u8..=0x7e)
            .map(char::from)
            .filter(|c| allowed(*c))
            .collect();
        assert_eq!(
            ApiError::new(ErrorCode::InvalidRequest, ok.clone()).wire_description(),
            ok
        );
    }

    #[test]
    fn every_code_on_the_wire_stays_within_the_allowed_set() {
        // Every code, with a description that tries every char class we could produce.
        let hostile: String = (0u32..0x250)
            .chain([0x2028, 0x202e, 0xfeff, 0x1F600])
            .filter_map(char::from_u32)
            .collect();
        for code in ALL_CODES {
            for description in [hostile.as_str(), "plain words"] {
                let err = ApiError {
                    field: Some(hostile.clone()),
                    detail: Detail::Scope("s".into()),
                    ..ApiError::new(code, description)
                };
                let wire = err.to_wire();
                let v: serde_json::Value = serde_json::from_str(&wire.body).unwrap();
                let shown = v["error_description"].as_str().unwrap();
                assert!(shown.chars().all(allowed), "{code:?}: {shown:?}");
                assert!(
                    v["field"].as_str().unwrap().chars().all(allowed),
                    "{code:?}"
                );
                assert_eq!(v["error"], code.as_str());
                assert!(code.as_str().chars().all(allowed));
            }
        }
    }

    #[test]
    fn wire_names_follow_rfc6749_and_hide_cause() {
        let err = ApiError::invalid_field("origins[1]", "must use https").with_cause("secret");
        let wire = err.to_wire();
        assert_eq!(wire.status, 400);
        let v: serde_json::Value = serde_json::from_str(&wire.body).unwrap();
        assert_eq!(v["error"], "invalid_request");
        assert_eq!(v["error_description"], "origins[1]: must use https");
        assert_eq!(v["field"], "origins[1]");
        assert!(!wire.body.contains("secret"));
    }

    #[test]
    fn every_code_serializes_as_its_wire_name() {
        for code in ALL_CODES {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }

    #[test]
    fn invalid_token_challenge_names_the_error_but_missing_token_does_not() {
        let missing = ApiError::new(ErrorCode::MissingToken, "x").to_wire();
        let invalid = ApiError::new(ErrorCode::InvalidToken, "x").to_wire();
        let header = |w: &WireError| {
            w.headers
                .iter()
                .find(|(k, _)| *k == "www-authenticate")
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            header(&missing).as_deref(),
            Some("Bearer realm=\"edgeward\"")
        );
        assert_eq!(
            header(&invalid).as_deref(),
            Some("Bearer realm=\"edgeward\", error=\"invalid_token\"")
        );
    }

    #[test]
    fn method_not_allowed_lists_allow() {
        let wire = ApiError::method_not_allowed(&[Method::Get, Method::Put]).to_wire();
        assert_eq!(wire.status, 405);
        assert!(wire.headers.contains(&("allow", "GET, PUT".to_owned())));
    }

    #[test]
    fn insufficient_scope_challenge_names_the_scope() {
        let wire = ApiError::insufficient_scope("grades.write").to_wire();
        assert_eq!(wire.status, 403);
        let challenge = wire
            .headers
            .iter()
            .find(|(k, _)| *k == "www-authenticate")
            .map(|(_, v)| v.as_str());
        assert_eq!(
            challenge,
            Some("Bearer realm=\"edgeward\", error=\"insufficient_scope\", scope=\"grades.write\"")
        );
    }
}
