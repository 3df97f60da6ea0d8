//! The API gateway's rules, apart from HTTP: which scope a route needs, which paths are refused
//! as ambiguous, which headers never cross the edge, what a request body may be, and what the
//! origin is told about the caller.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::client::scope_token_ok;
use super::error::{ApiError, ErrorCode};
use super::grant::is_grant_id;
use super::tokens::AccessClaims;
use crate::routes::Method;

/// The identity headers: every `x-edgeward-*` spelling is ours (see [`forward_request_header`]).
pub const HEADER_SUB: &str = "x-edgeward-sub";
pub const HEADER_CLIENT: &str = "x-edgeward-client";
pub const HEADER_PARTNER: &str = "x-edgeward-partner";
pub const HEADER_SCOPE: &str = "x-edgeward-scope";
/// The signed statement of the same identity, for origins that verify rather than trust.
pub const HEADER_IDENTITY: &str = "x-edgeward-identity";
/// `typ` of the identity JWT: no other token of ours can stand in for it, nor it for them.
pub const IDENTITY_TYP: &str = "edgeward-identity+jwt";
/// Lifetime of the identity JWT. The gateway reuses one for at most half of it.
pub const IDENTITY_TTL_S: u64 = 60;

/// Longest an isolate trusts an admitted token without looking at revocations and the registry
/// again (the gateway's cache TTL and the token's `exp` may make it shorter).
pub const ADMITTED_TTL_MS: u64 = 30_000;

/// When a token admitted at `checked_ms` for `ttl_ms`, used again, is checked again off the
/// request's path: two thirds of the way through its entry's life, so that a token used at
/// least once in the last third (every 10 s at the default) never waits on storage again.
pub fn recheck_at_ms(checked_ms: u64, ttl_ms: u64) -> u64 {
    checked_ms.saturating_add(ttl_ms.saturating_mul(2) / 3)
}

/// Default request-body limit on `/api/*` (the var `API_MAX_BODY_BYTES` changes it).
pub const DEFAULT_MAX_BODY_BYTES: u64 = 8 * 1024 * 1024;
/// Most routes a scope map may hold: it is read on every request.
pub const MAX_SCOPE_RULES: usize = 256;
const MAX_PREFIX_LEN: usize = 512;

/// One line of the scope map: requests to `prefix` (with `method`, or any) need `scope`
/// (`None`: any valid access token).
#[derive(Clone, Debug, PartialEq, Eq)]
struct ScopeRule {
    method: Option<Method>,
    prefix: String,
    scope: Option<String>,
}

/// The route-prefix → scope map of the var `API_SCOPES`: a JSON object whose keys are a path
/// prefix under `/api`, optionally preceded by a method (`"POST /api/v1/grades"`), and whose
/// values are the scope a token needs, or `null` for none. The longest matching prefix wins, a
/// method-specific rule before a general one; a path no rule covers is not forwarded at all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScopeMap {
    rules: Vec<ScopeRule>,
}

/// What the scope map says about a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs<'a> {
    /// Any valid access token will do.
    Token,
    /// A token holding this scope.
    Scope(&'a str),
}

impl ScopeMap {
    pub fn parse(json: &str) -> Result<ScopeMap, String> {
        let obj: serde_json::Map<String, Value> = serde_json::from_str(json)
            .map_err(|e| format!("API_SCOPES is not a JSON object: {e}"))?;
        if obj.len() > MAX_SCOPE_RULES {
            return Err(format!("API_SCOPES has more than {MAX_SCOPE_RULES} routes"));
        }
        let mut rules = Vec::with_capacity(obj.len());
        for (key, value) in obj {
            let (method, prefix) = match key.split_once(' ') {
                Some((m, p)) => (
                    Some(
                        Method::parse(m)
                            .filter(|m| *m != Method::Options)
                            .ok_or_else(|| format!("API_SCOPES: unknown method in {key:?}"))?,
                    ),
                    p,
                ),
                None => (None, key.as_str()),
            };
            let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
            let under_api = prefix == "/api" || prefix.starts_with("/api/");
            if !under_api || prefix.len() > MAX_PREFIX_LEN || path_refusal(prefix).is_some() {
                return Err(format!(
                    "API_SCOPES: {key:?} is not a plain path prefix under /api"
                ));
            }
            let scope = match value {
                Value::Null => None,
                Value::String(s) if scope_token_ok(&s) => Some(s),
                _ => {
                    return Err(format!(
                        "API_SCOPES: the scope of {key:?} is not a scope token"
                    ))
                }
            };
            rules.push(ScopeRule {
                method,
                // Matched without regard to case: an origin that folds case must not reach a
                // stricter route through a spelling the map does not list.
                prefix: prefix.to_ascii_lowercase(),
                scope,
            });
        }
        // Longest prefix first; at equal length, the method-specific rule first.
        rules.sort_by(|a, b| {
            b.prefix
                .len()
                .cmp(&a.prefix.len())
                .then(b.method.is_some().cmp(&a.method.is_some()))
        });
        Ok(ScopeMap { rules })
    }

    /// The rule for `method` on `path`, or `None` when no route covers it. A `HEAD` request
    /// follows the rules for `GET`.
    pub fn needs(&self, method: Method, path: &str) -> Option<Needs<'_>> {
        let method = if method == Method::Head {
            Method::Get
        } else {
            method
        };
        // Prefixes are lowercased when parsed: compare without case, and without copying.
        let covers = |prefix: &str| {
            path.get(..prefix.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
                && path
                    .get(prefix.len()..)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        };
        self.rules
            .iter()
            .find(|r| r.method.is_none_or(|m| m == method) && covers(&r.prefix))
            .map(|r| r.scope.as_deref().map_or(Needs::Token, Needs::Scope))
    }
}

/// Why a path is refused before any rule is consulted: spellings that an origin might read as
/// a different path than the prefix match did (encoded slashes and dots, backslashes, double
/// encoding, path parameters, empty segments). `None` when the path is plain.
pub fn path_refusal(path: &str) -> Option<&'static str> {
    // An origin that decodes before routing reads these as the character itself, so each is
    // refused as that character would be; `?` and `#` would end the path there.
    if encoded_bytes(path).any(|c| matches!(c, b'/' | b'\\' | b'.' | b'%' | 0)) {
        return Some("the path encodes a slash, dot, percent or NUL");
    }
    if encoded_bytes(path).any(|c| matches!(c, b';' | b'?' | b'#')) {
        return Some("the path encodes a ';', '?' or '#' (read differently by origins)");
    }
    if encoded_bytes(path).any(|c| c.is_ascii_control()) {
        return Some("the path encodes a control character");
    }
    // RFC 3986 §2.3: an encoded unreserved character means the same as the character itself, so
    // an origin may read `cl%61sses` as `classes` where the prefix match did not.
    if encoded_bytes(path).any(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'~')) {
        return Some("the path percent-encodes a character that needs no encoding");
    }
    if path.contains(';') {
        return Some("the path has a ';' (path parameters are read differently by origins)");
    }
    if path.contains('\\') || path.contains("//") {
        return Some("the path has a backslash or an empty segment");
    }
    if path.split('/').any(|seg| seg == "." || seg == "..") {
        return Some("the path has a dot segment");
    }
    if path.bytes().any(|b| b.is_ascii_control()) {
        return Some("the path has a control character");
    }
    None
}

/// The bytes a path percent-encodes (`%XX`, either case of hex digit).
fn encoded_bytes(path: &str) -> impl Iterator<Item = u8> + '_ {
    path.as_bytes().windows(3).filter_map(|w| match w {
        [b'%', h, l] => {
            let hex = |c: u8| (c as char).to_digit(16);
            let (h, l) = (hex(*h)?, hex(*l)?);
            u8::try_from(h * 16 + l).ok()
        }
        _ => None,
    })
}

/// Whether `scope` is among the space-separated scopes a token carries.
pub fn has_scope(token_scope: &str, scope: &str) -> bool {
    token_scope.split(' ').any(|s| s == scope)
}

/// Hop-by-hop headers (RFC 9110 §7.6.1, plus the unofficial `proxy-connection` and
/// `keep-alive`): they describe one connection and are never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// A header name as an origin may read it: lowercase, `_` as `-`. CGI-style servers and many
/// frameworks turn both `X-Edgeward-Sub` and `X_Edgeward_Sub` into `HTTP_X_EDGEWARD_SUB`, so a
/// rule about one spelling must hold for every spelling.
pub fn normalized_header(name: &str) -> String {
    name.trim()
        .bytes()
        .map(|b| match b {
            b'_' => '-',
            b => char::from(b.to_ascii_lowercase()),
        })
        .collect()
}

/// The headers a `Connection` header names as hop-by-hop, normalized.
pub fn connection_named(connection: Option<&str>) -> Vec<String> {
    connection
        .map(|v| {
            v.split(',')
                .map(normalized_header)
                .filter(|t| !t.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

fn hop_by_hop(name: &str, named: &[String]) -> bool {
    HOP_BY_HOP.contains(&name) || named.iter().any(|n| n == name)
}

/// Headers an origin may read as who is calling, from where, or as another method or URL than
/// the one the gateway checked (normalized names). Only the gateway speaks for the caller: these
/// are removed from what callers send, and the gateway sets the ones it vouches for.
const SET_BY_THE_EDGE: &[&str] = &[
    // The client's address, under its many names.
    "forwarded",
    "x-real-ip",
    "true-client-ip",
    "client-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "x-remote-ip",
    "x-remote-addr",
    "x-originating-ip",
    "x-proxyuser-ip",
    "fastly-client-ip",
    "akamai-client-ip",
    "x-host",
    // Another method or URL than the one checked.
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-rewrite-url",
    "x-override-url",
];

/// Prefixes of the same kinds: ours, every `X-Forwarded-*` and `X-Original-*`, and Cloudflare's
/// own `CF-*` (the runtime sets those it means; one from the caller, such as
/// `Cf-Access-Jwt-Assertion`, would be an identity nobody checked).
const SET_BY_THE_EDGE_PREFIXES: &[&str] = &["x-edgeward", "x-forwarded", "x-original-", "cf-"];

/// Whether a caller's request header is passed to the origin. Names are compared normalized
/// ([`normalized_header`]). Besides hop-by-hop headers, the gateway drops every header an
/// origin could read as identity, address or routing ([`SET_BY_THE_EDGE`]), `authorization`
/// (the origin learns the identity from the gateway, and tokens go no further than they must),
/// `cookie` (the edge's own session cookies are not the origin's business), and `host`.
pub fn forward_request_header(name: &str, named: &[String]) -> bool {
    let name = normalized_header(name);
    !(hop_by_hop(&name, named)
        || SET_BY_THE_EDGE.contains(&name.as_str())
        || SET_BY_THE_EDGE_PREFIXES.iter().any(|p| name.starts_with(p))
        || matches!(name.as_str(), "authorization" | "cookie" | "host"))
}

/// Whether an origin's response header is passed back to the caller (`name` in any spelling).
pub fn forward_response_header(name: &str, named: &[String]) -> bool {
    !hop_by_hop(&normalized_header(name), named)
}

/// Whether an origin's `Set-Cookie` (its value) may reach the caller: never one naming our own
/// cookies (session, CSRF, device), which an origin on our host could otherwise plant (session
/// fixation, a CSRF token of its choosing).
pub fn forward_set_cookie(value: &str) -> bool {
    let name = value
        .split('=')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let bare = name
        .strip_prefix("__host-")
        .or_else(|| name.strip_prefix("__secure-"))
        .unwrap_or(&name);
    !bare.starts_with("edgeward")
}

/// Whether a request with this method carries a body to the origin.
pub fn method_has_body(method: Method) -> bool {
    !matches!(method, Method::Get | Method::Head | Method::Options)
}

/// The body rule: a body must declare its length (so the limit applies before a byte is
/// forwarded), and the length must be within `max`. `has_body` is whether the request carries a
/// body at all (a body stream, or `Transfer-Encoding`).
pub fn check_body(content_length: Option<&str>, has_body: bool, max: u64) -> Result<(), ApiError> {
    match content_length {
        None if has_body => Err(ApiError::new(
            ErrorCode::LengthRequired,
            "a request body must declare its Content-Length",
        )),
        None => Ok(()),
        Some(v) => {
            let len: u64 = v.trim().parse().map_err(|_| {
                ApiError::new(ErrorCode::InvalidRequest, "Content-Length is not a number")
            })?;
            if len > max {
                Err(ApiError::new(
                    ErrorCode::PayloadTooLarge,
                    format!("the request body is larger than {max} bytes"),
                ))
            } else {
                Ok(())
            }
        }
    }
}

/// The KV key under which a revocation is published for the gateway: the grant for tokens of a
/// user's grant, the token itself (its `jti`) for client-credentials tokens.
pub fn revocation_key(claims: &AccessClaims) -> String {
    if is_grant_id(&claims.gid) {
        revoked_key(&claims.gid)
    } else {
        revoked_key(&claims.jti)
    }
}

/// `revoked:{id}`, for a grant id or an access token's `jti`.
pub fn revoked_key(id: &str) -> String {
    format!("revoked:{id}")
}

/// What the origin may verify instead of trusting the identity headers: signed by edgeward with
/// its access-token key, audience the origin URL, `typ` [`IDENTITY_TYP`], valid
/// [`IDENTITY_TTL_S`] seconds (`iat`, `exp` are set by the signer).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub client_id: String,
    pub partner_id: String,
    pub scope: String,
    /// The `jti` of the access token presented.
    pub ati: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> ScopeMap {
        ScopeMap::parse(
            r#"{
                "/api": "api",
                "/api/v1/classes": "classes.read",
                "POST /api/v1/classes": "classes.write",
                "/api/v1/me/": null
            }"#,
        )
        .unwrap()
    }

    #[test]
    fn scope_map_takes_the_longest_prefix_and_the_method_rule_first() {
        let m = map();
        assert_eq!(
            m.needs(Method::Get, "/api/v1/classes"),
            Some(Needs::Scope("classes.read"))
        );
        assert_eq!(
            m.needs(Method::Get, "/api/v1/classes/7"),
            Some(Needs::Scope("classes.read"))
        );
        assert_eq!(
            m.needs(Method::Head, "/api/v1/classes/7"),
            Some(Needs::Scope("classes.read"))
        );
        assert_eq!(
            m.needs(Method::Post, "/api/v1/classes/7"),
            Some(Needs::Scope("classes.write"))
        );
        assert_eq!(m.needs(Method::Get, "/api/v1/me"), Some(Needs::Token));
        assert_eq!(
            m.needs(Method::Get, "/api/v1/other"),
            Some(Needs::Scope("api"))
        );
    }

    #[test]
    fn scope_map_ignores_case_so_no_spelling_reaches_a_route_unchecked() {
        let m = map();
        assert_eq!(
            m.needs(Method::Post, "/api/v1/Classes/7"),
            Some(Needs::Scope("classes.write"))
        );
        assert_eq!(
            m.needs(Method::Get, "/API/V1/CLASSES"),
            Some(Needs::Scope("classes.read"))
        );
        let upper = ScopeMap::parse(r#"{"/api/V1/Grades": "grades.read"}"#).unwrap();
        assert_eq!(
            upper.needs(Method::Get, "/api/v1/grades"),
            Some(Needs::Scope("grades.read"))
        );
    }

    #[test]
    fn scope_map_matches_whole_segments_only() {
        let m = map();
        // "/api/v1/classesX" is not under "/api/v1/classes": it falls back to "/api".
        assert_eq!(
            m.needs(Method::Get, "/api/v1/classesX"),
            Some(Needs::Scope("api"))
        );
        let narrow = ScopeMap::parse(r#"{"/api/v1/classes": "classes.read"}"#).unwrap();
        assert_eq!(narrow.needs(Method::Get, "/api/v1/classesX"), None);
        assert_eq!(narrow.needs(Method::Get, "/api/v1"), None);
        assert_eq!(narrow.needs(Method::Get, "/apix/v1/classes"), None);
    }

    #[test]
    fn scope_map_refuses_bad_configuration() {
        for bad in [
            "[]",
            "not json",
            r#"{"/admin": "x"}"#,
            r#"{"/api/%2e%2e": "x"}"#,
            r#"{"TRACE /api": "x"}"#,
            r#"{"OPTIONS /api": "x"}"#,
            r#"{"/api": "two words"}"#,
            r#"{"/api": 7}"#,
        ] {
            assert!(ScopeMap::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        for bad in [
            "/api/public%2F..%2Fadmin",
            "/api/public%2e%2e/admin",
            "/api/a%5Cb",
            "/api/a%252e",
            "/api/a\\b",
            "/api//admin",
            "/api/./x",
            "/api/../x",
            "/api/a%00",
        ] {
            assert!(path_refusal(bad).is_some(), "{bad}");
        }
        for bad in [
            "/api/v1/cl%61sses",
            "/api/v1/classes%7E",
            "/api/v1/classes;x=1",
            "/api/..;/admin",
        ] {
            assert!(path_refusal(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn encoded_path_parameters_queries_and_controls_are_refused_like_their_decoded_form() {
        for bad in [
            "/api/v1/x%3Bjsessionid=1",
            "/api/v1/x%3bjsessionid=1",
            "/api/v1/classes%3F/admin",
            "/api/v1/classes%23x",
            "/api/v1/x%0d%0aX-Edgeward-Sub:%20admin",
            "/api/v1/x%7f",
            "/api/v1/x%09",
        ] {
            assert!(path_refusal(bad).is_some(), "{bad}");
            // The same error as the decoded form: a 400 invalid_request.
        }
        // Encoded characters that mean something else than a path separator stay allowed.
        for ok in [
            "/api/v1/a%2Cb",
            "/api/v1/a%20b",
            "/api/v1/a%3Db",
            "/api/v1/na%C3%AFve",
        ] {
            assert_eq!(path_refusal(ok), None, "{ok}");
        }
        assert_eq!(path_refusal("/api/v1/classes/7"), None);
        assert_eq!(path_refusal("/api/v1/na%C3%AFve"), None);
    }

    #[test]
    fn identity_override_and_address_headers_never_cross_in_any_spelling() {
        for drop in [
            "x-edgeward-sub",
            "X_Edgeward_Sub",
            "x-edgeward_sub",
            "X-EDGEWARD-IDENTITY",
            "x_edgeward_partner",
            "x-edgewardsub",
            "x-http-method-override",
            "X_HTTP_Method_Override",
            "x-http-method",
            "x-method-override",
            "x_method_override",
            "x-original-url",
            "X_Original_URL",
            "x-original-method",
            "x-rewrite-url",
            "x_rewrite_url",
            "x-override-url",
            "x-forwarded-prefix",
            "x_forwarded_prefix",
            "x-forwarded-for",
            "X_Forwarded_For",
            "x-forwarded-host",
            "x-forwarded-proto",
            "x-forwarded",
            "forwarded",
            "x-real-ip",
            "x_real_ip",
            "true-client-ip",
            "x-client-ip",
            "x-cluster-client-ip",
            "cf-connecting-ip",
            "CF_Connecting_IP",
            "cf-access-jwt-assertion",
            "client-ip",
            "x-host",
            "Authorization",
            "cookie",
        ] {
            assert!(!forward_request_header(drop, &[]), "{drop}");
        }
        for keep in [
            "x-request-id",
            "accept-language",
            "x-edge",
            "if-none-match",
            "x_custom",
        ] {
            assert!(forward_request_header(keep, &[]), "{keep}");
        }
    }

    #[test]
    fn connection_named_headers_are_matched_in_any_spelling() {
        let named = connection_named(Some("X_Secret_Hop"));
        assert!(!forward_request_header("x-secret-hop", &named));
        assert!(!forward_response_header("X-Secret-Hop", &named));
    }

    #[test]
    fn identity_and_hop_by_hop_headers_never_cross() {
        let named = connection_named(Some("close, X-Secret-Hop"));
        for drop in [
            "x-edgeward-sub",
            "x-edgeward-anything",
            "authorization",
            "cookie",
            "connection",
            "transfer-encoding",
            "upgrade",
            "x-secret-hop",
            "host",
        ] {
            assert!(!forward_request_header(drop, &named), "{drop}");
        }
        for keep in ["content-type", "accept", "x-custom", "content-length"] {
            assert!(forward_request_header(keep, &named), "{keep}");
        }
        assert!(!forward_response_header("x-secret-hop", &named));
        assert!(forward_response_header("set-cookie", &named));
        assert!(forward_set_cookie("theme=dark; Path=/"));
        for ours in [
            "__Host-edgeward_session=alice.x; Path=/; Secure",
            "__host-EDGEWARD_csrf=planted",
            "__Secure-edgeward_device=x",
            "edgeward_session=x",
            " Edgeward_csrf =x",
        ] {
            assert!(!forward_set_cookie(ours), "{ours}");
        }
    }

    #[test]
    fn bodies_need_a_declared_length_within_the_limit() {
        assert!(check_body(None, false, 10).is_ok());
        assert!(check_body(Some("10"), false, 10).is_ok());
        assert_eq!(
            check_body(Some("11"), false, 10).unwrap_err().code,
            ErrorCode::PayloadTooLarge
        );
        assert_eq!(
            check_body(Some("-1"), false, 10).unwrap_err().code,
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            check_body(None, true, 10).unwrap_err().code,
            ErrorCode::LengthRequired
        );
    }

    #[test]
    fn scopes_match_whole_tokens() {
        assert!(has_scope("openid classes.read", "classes.read"));
        assert!(!has_scope("openid classes.readonly", "classes.read"));
        assert!(!has_scope("", "classes.read"));
    }

    #[test]
    fn revocations_are_keyed_by_grant_or_token() {
        let mut c = AccessClaims {
            iss: "i".into(),
            sub: "s".into(),
            aud: "a".into(),
            client_id: "c".into(),
            scope: "x".into(),
            jti: "tok".into(),
            gid: "AAAAAAAAAAAAAAAAAAAAAA".into(),
            auth_time: None,
        };
        assert_eq!(revocation_key(&c), "revoked:AAAAAAAAAAAAAAAAAAAAAA");
        c.gid = String::new();
        assert_eq!(revocation_key(&c), "revoked:tok");
    }
}
