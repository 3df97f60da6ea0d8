//! The partner gate: which origin a request comes from, whether that origin belongs to an active
//! partner, and the CORS headers that follow from the answer.

use super::error::{ApiError, ErrorCode};
use super::origin::Origin;
use super::partner::{GateEntry, PartnerId, PartnerStatus};
use crate::routes::Method;
#[cfg(test)]
use crate::routes::API_METHODS;

/// Request headers a partner's browser code may send cross-origin.
pub const ALLOWED_HEADERS: &str = "authorization, content-type";
/// How long a browser may cache a preflight answer, in seconds.
pub const PREFLIGHT_MAX_AGE: &str = "600";

/// Where a request says it comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// A browser request from this origin.
    Browser(Origin),
    /// `Origin` (or, in its absence, `Referer`) is present but names nothing we could register:
    /// `null`, a non-canonical spelling, plain http, an oversized value.
    Unrecognized,
    /// Neither header: a server-to-server request.
    Server,
}

/// `Referer` counts only when `Origin` is absent: a present but unusable `Origin` never falls
/// back to a more convenient `Referer`. `from_header` is [`Origin::from_header`], or a memo of
/// it.
pub fn caller(
    origin: Option<&str>,
    referer: Option<&str>,
    from_header: impl FnOnce(&str) -> Option<Origin>,
) -> Caller {
    let parsed = match (origin, referer) {
        (Some(o), _) => from_header(o),
        (None, Some(r)) => Origin::from_referer(r),
        (None, None) => return Caller::Server,
    };
    parsed.map_or(Caller::Unrecognized, Caller::Browser)
}

pub fn origin_not_allowed(why: &str) -> ApiError {
    ApiError::new(ErrorCode::OriginNotAllowed, why)
}

/// The decision for a browser origin, given what the registry published for it.
pub fn admit(entry: Option<&GateEntry>) -> Result<&PartnerId, ApiError> {
    match entry {
        None => Err(origin_not_allowed(
            "this origin is not on the partner allowlist",
        )),
        Some(e) if e.status == PartnerStatus::Suspended => Err(ApiError::new(
            ErrorCode::PartnerSuspended,
            "this partner is suspended",
        )),
        Some(e) => Ok(&e.partner_id),
    }
}

/// Headers on an admitted cross-origin response.
pub fn cors_headers(origin: &Origin) -> [(&'static str, String); 2] {
    [
        ("access-control-allow-origin", origin.as_str().to_owned()),
        ("vary", "Origin".to_owned()),
    ]
}

/// `Vary` naming both what `existing` (the origin's `Vary`, if any) names and `ours`: a cache
/// must keep apart every answer either of us varies. `*` stays `*`; names already there (in
/// any case) are not repeated.
pub fn merge_vary(existing: Option<&str>, ours: &str) -> String {
    let mut names: Vec<&str> = existing
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    if names.contains(&"*") {
        return "*".to_owned();
    }
    for n in ours.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if !names.iter().any(|m| m.eq_ignore_ascii_case(n)) {
            names.push(n);
        }
    }
    names.join(", ")
}

/// Headers on an admitted preflight (answered at the edge, 204) for a route answering
/// `allowed`, or the refusal when the requested method is not one of them.
pub fn preflight_headers(
    origin: &Origin,
    requested_method: Option<&str>,
    allowed: &'static [Method],
) -> Result<Vec<(&'static str, String)>, ApiError> {
    let method = requested_method.and_then(Method::parse);
    if !method.is_some_and(|m| m != Method::Options && allowed.contains(&m)) {
        return Err(ApiError::method_not_allowed(allowed));
    }
    let methods: Vec<&str> = allowed.iter().map(|m| m.as_str()).collect();
    Ok(vec![
        ("access-control-allow-origin", origin.as_str().to_owned()),
        ("access-control-allow-methods", methods.join(", ")),
        ("access-control-allow-headers", ALLOWED_HEADERS.to_owned()),
        ("access-control-max-age", PREFLIGHT_MAX_AGE.to_owned()),
        (
            "vary",
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers".to_owned(),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(status: PartnerStatus) -> GateEntry {
        GateEntry {
            partner_id: PartnerId::parse("acme").unwrap(),
            status,
        }
    }

    #[test]
    fn vary_of_the_origin_is_merged_with_ours_never_replaced() {
        assert_eq!(merge_vary(None, "Origin"), "Origin");
        assert_eq!(
            merge_vary(Some("Accept-Encoding, Accept-Language"), "Origin"),
            "Accept-Encoding, Accept-Language, Origin"
        );
        assert_eq!(
            merge_vary(Some("origin, Accept"), "Origin"),
            "origin, Accept"
        );
        assert_eq!(merge_vary(Some("*"), "Origin"), "*");
        assert_eq!(merge_vary(Some(" , Accept ,"), "Origin"), "Accept, Origin");
    }

    #[test]
    fn caller_prefers_origin_and_never_falls_back_from_a_bad_one() {
        let good = "https://app.acme.example";
        let caller = |o, r| caller(o, r, Origin::from_header);
        assert_eq!(
            caller(Some(good), None),
            Caller::Browser(Origin::parse(good).unwrap())
        );
        assert_eq!(caller(Some("null"), Some(good)), Caller::Unrecognized);
        assert_eq!(
            caller(None, Some("https://app.acme.example/page?x=1")),
            Caller::Browser(Origin::parse(good).unwrap())
        );
        assert_eq!(caller(None, Some("garbage")), Caller::Unrecognized);
        assert_eq!(caller(None, None), Caller::Server);
    }

    #[test]
    fn admit_denies_unknown_and_suspended() {
        assert_eq!(admit(None).unwrap_err().code, ErrorCode::OriginNotAllowed);
        assert_eq!(
            admit(Some(&entry(PartnerStatus::Suspended)))
                .unwrap_err()
                .code,
            ErrorCode::PartnerSuspended
        );
        assert_eq!(
            admit(Some(&entry(PartnerStatus::Active))).unwrap().as_str(),
            "acme"
        );
    }

    #[test]
    fn preflight_names_exactly_the_origin_and_refuses_other_methods() {
        let o = Origin::parse("https://app.acme.example").unwrap();
        let h = preflight_headers(&o, Some("PUT"), API_METHODS).unwrap();
        assert!(h.contains(&(
            "access-control-allow-origin",
            "https://app.acme.example".to_owned()
        )));
        for bad in [None, Some("TRACE"), Some("OPTIONS"), Some("put")] {
            assert_eq!(
                preflight_headers(&o, bad, API_METHODS).unwrap_err().code,
                ErrorCode::MethodNotAllowed,
                "{bad:?}"
            );
        }
    }
}
