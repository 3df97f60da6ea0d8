//! Request objects (OpenID Connect Core §6, RFC 9101): an authorization request sent as a JWT, by
//! value (`request`) or by reference (`request_uri`, registered by the client, on its partner's
//! origins). An unsigned one (`alg` `none`) says no more than the query could, and is taken
//! unless the client registered a signing algorithm; a signed one must verify against the
//! client's keys and name the client as `iss` and us as `aud`. Its parameters take the place of
//! the query's (§6.1); `client_id` and `response_type` must agree with the query's.

use base64ct::{Base64UrlUnpadded, Encoding};
use serde_json::{Map, Value};

use super::client::ClientRecord;
use super::error::{ApiError, ErrorCode};
use super::form::Params;
use super::jwk::SigningAlg;

/// Largest request object accepted, by value or fetched.
pub const MAX_REQUEST_OBJECT_BYTES: usize = 16 * 1024;

/// The claims of a JWT that carry no authorization parameter.
const JWT_CLAIMS: &[&str] = &["iss", "aud", "exp", "iat", "nbf", "jti"];

/// The longest a signed request object may be valid for (RFC 9101 §10.2: short-lived).
pub const MAX_LIFETIME_S: u64 = 3600;

pub fn invalid_object(why: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequestObject, why)
}

pub fn invalid_uri(why: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequestUri, why)
}

/// How a request object is sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sent<'a> {
    None,
    ByValue(&'a str),
    ByReference(&'a str),
}

/// Whether the request carries a request object, and how. Both at once is refused.
pub fn sent(params: &Params) -> Result<Sent<'_>, ApiError> {
    match (params.get("request"), params.get("request_uri")) {
        (None, None) => Ok(Sent::None),
        (Some(jwt), None) => Ok(Sent::ByValue(jwt)),
        (None, Some(uri)) => Ok(Sent::ByReference(uri)),
        (Some(_), Some(_)) => Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "send request or request_uri, not both",
        )),
    }
}

/// A `request_uri` the client registered (compared exactly, fragment included).
pub fn check_request_uri(client: &ClientRecord, uri: &str) -> Result<(), ApiError> {
    if client.request_uris.iter().any(|r| r == uri) {
        Ok(())
    } else {
        Err(invalid_uri("request_uri is not registered for this client"))
    }
}

/// What the JWT's header says of its signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Signing {
    /// `alg` `none`, with an empty signature: the payload as it is.
    Unsigned(Map<String, Value>),
    /// Signed: to verify against the client's keys, then [`signed_claims`].
    Signed { alg: String },
}

fn decode_part(part: &str) -> Option<Value> {
    serde_json::from_slice(&Base64UrlUnpadded::decode_vec(part).ok()?).ok()
}

/// Reads the request object's header (and, when unsigned, its payload), within the client's
/// registered `request_object_signing_alg`.
pub fn signing(jwt: &str, client: &ClientRecord) -> Result<Signing, ApiError> {
    if jwt.len() > MAX_REQUEST_OBJECT_BYTES {
        return Err(invalid_object("the request object is too large"));
    }
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header, payload, signature] = parts.as_slice() else {
        return Err(invalid_object(
            "the request object is not a JWT (encrypted ones are not supported)",
        ));
    };
    let header = decode_part(header)
        .and_then(|h| h.as_object().cloned())
        .ok_or_else(|| invalid_object("the request object's header is not JSON"))?;
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid_object("the request object's header has no alg"))?;
    // RFC 9101 §10.8: a request object is never a client assertion (which names a `sub`) or
    // any other JWT of the client's; an explicit `typ` must say so.
    match header.get("typ").and_then(Value::as_str) {
        None | Some("oauth-authz-req+jwt") | Some("JWT") | Some("jwt") => {}
        Some(_) => {
            return Err(invalid_object(
                "the request object's typ is not oauth-authz-req+jwt",
            ))
        }
    }
    if let Some(registered) = &client.request_object_signing_alg {
        let same = registered == alg
            || matches!(
                (SigningAlg::parse(registered), SigningAlg::parse(alg)),
                (Some(a), Some(b)) if a.same_key_as(b)
            );
        if !same {
            return Err(invalid_object(
                "the request object is not signed with the client's registered algorithm",
            ));
        }
    }
    if alg != "none" {
        return Ok(Signing::Signed {
            alg: alg.to_owned(),
        });
    }
    if !signature.is_empty() {
        return Err(invalid_object(
            "an unsigned request object has no signature",
        ));
    }
    let claims = decode_part(payload)
        .and_then(|p| p.as_object().cloned())
        .ok_or_else(|| invalid_object("the request object's payload is not a JSON object"))?;
    no_subject(&claims)?;
    Ok(Signing::Unsigned(claims))
}

/// A request object names no `sub`: so no client assertion (which must) is ever one.
fn no_subject(claims: &Map<String, Value>) -> Result<(), ApiError> {
    if claims.contains_key("sub") {
        return Err(invalid_object(
            "a request object does not name a subject (sub)",
        ));
    }
    Ok(())
}

/// The verified claims of a signed request object: from the client (`iss`), for us (`aud`),
/// not expired and not before its time.
pub fn signed_claims(
    payload: Value,
    client: &ClientRecord,
    issuer: &str,
    now: u64,
) -> Result<Map<String, Value>, ApiError> {
    let claims = payload
        .as_object()
        .cloned()
        .ok_or_else(|| invalid_object("the request object's payload is not a JSON object"))?;
    if claims.get("iss").and_then(Value::as_str) != Some(client.client_id.as_str()) {
        return Err(invalid_object("the request object's iss is not the client"));
    }
    let for_us = match claims.get("aud") {
        Some(Value::String(a)) => a == issuer,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(issuer)),
        _ => false,
    };
    if !for_us {
        return Err(invalid_object(
            "the request object's aud is not this server",
        ));
    }
    no_subject(&claims)?;
    let time = |k: &str| claims.get(k).and_then(Value::as_u64);
    let Some(exp) = time("exp") else {
        return Err(invalid_object("a signed request object must have an exp"));
    };
    if exp <= now {
        return Err(invalid_object("the request object has expired"));
    }
    if exp > now + MAX_LIFETIME_S {
        return Err(invalid_object(
            "the request object is valid for too long (at most an hour)",
        ));
    }
    if time("nbf").is_some_and(|nbf| nbf > now + 60) {
        return Err(invalid_object("the request object is not valid yet"));
    }
    Ok(claims)
}

/// The authorization request the query and the request object make together, the JWT's own
/// claims left out: for an unsigned object, its parameters in place of the query's (OpenID
/// Connect Core §6.1); for a signed one, its parameters only, with the query's `client_id` and
/// `response_type` (RFC 9101 §5: nothing unsigned is added to a signed request).
pub fn merge(
    query: &Params,
    object: &Map<String, Value>,
    signed: bool,
) -> Result<Params, ApiError> {
    for k in ["request", "request_uri"] {
        if object.contains_key(k) {
            return Err(invalid_object("a request object may not hold another"));
        }
    }
    for k in ["client_id", "response_type"] {
        if let Some(v) = object.get(k) {
            if v.as_str() != query.get(k) {
                return Err(invalid_object(
                    "the request object's client_id and response_type must be the query's",
                ));
            }
        }
    }
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (k, v) in object {
        if JWT_CLAIMS.contains(&k.as_str()) {
            continue;
        }
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            // `claims` is a JSON object in a request object, a JSON string in a query.
            Value::Object(_) => v.to_string(),
            Value::Null => continue,
            Value::Array(_) => {
                return Err(invalid_object(&format!(
                    "the request object's {k} is not a single value"
                )))
            }
        };
        pairs.push((k.clone(), text));
    }
    for (k, v) in query.iter() {
        if k == "request" || k == "request_uri" || object.contains_key(k) {
            continue;
        }
        if signed && k != "client_id" && k != "response_type" {
            continue;
        }
        pairs.push((k.to_owned(), v.to_owned()));
    }
    Ok(Params::from_pairs(pairs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn client(alg: Option<&str>) -> ClientRecord {
        let mut c: ClientRecord = serde_json::from_value(json!({
            "client_id": "client-0001", "partner_id": "acme", "name": "App",
            "redirect_uris": ["https://app.acme.example/cb"], "grant_types": ["authorization_code"],
            "scopes": ["openid"], "token_endpoint_auth_method": "private_key_jwt",
            "id_token_signed_response_alg": "RS256", "created_at": 0,
            "request_uris": ["https://app.acme.example/ro#abc"],
        }))
        .unwrap();
        c.request_object_signing_alg = alg.map(str::to_owned);
        c
    }

    fn enc(v: &Value) -> String {
        Base64UrlUnpadded::encode_string(v.to_string().as_bytes())
    }

    #[test]
    fn an_unsigned_request_object_is_read_unless_the_client_registered_an_algorithm() {
        let jwt = format!(
            "{}.{}.",
            enc(&json!({"alg":"none"})),
            enc(&json!({"state":"s"}))
        );
        let Signing::Unsigned(claims) = signing(&jwt, &client(None)).unwrap() else {
            panic!("unsigned")
        };
        assert_eq!(claims["state"], "s");
        let e = signing(&jwt, &client(Some("RS256"))).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequestObject);
        // "none" with a signature, not a JWT, a header without alg.
        let forged = format!("{}.{}.c2ln", enc(&json!({"alg":"none"})), enc(&json!({})));
        assert!(signing(&forged, &client(None)).is_err());
        assert!(signing("abc", &client(None)).is_err());
        assert!(signing(
            &format!("{}.{}.", enc(&json!({})), enc(&json!({}))),
            &client(None)
        )
        .is_err());
        let signed = format!("{}.{}.sig", enc(&json!({"alg":"RS256"})), enc(&json!({})));
        assert_eq!(
            signing(&signed, &client(Some("RS256"))).unwrap(),
            Signing::Signed {
                alg: "RS256".into()
            }
        );
        // EdDSA and its RFC 9864 name are one algorithm.
        let ed = format!("{}.{}.sig", enc(&json!({"alg":"Ed25519"})), enc(&json!({})));
        assert!(signing(&ed, &client(Some("EdDSA"))).is_ok());
        let typed = format!(
            "{}.{}.sig",
            enc(&json!({"alg":"RS256","typ":"client-authentication+jwt"})),
            enc(&json!({}))
        );
        assert!(signing(&typed, &client(None)).is_err());
        let with_sub = format!(
            "{}.{}.",
            enc(&json!({"alg":"none"})),
            enc(&json!({"sub":"x"}))
        );
        assert!(signing(&with_sub, &client(None)).is_err());
    }

    #[test]
    fn a_signed_request_object_is_from_the_client_for_us_and_in_time() {
        let c = client(None);
        let ok = json!({"iss":"client-0001","aud":"https://id.example","exp":200});
        assert!(signed_claims(ok.clone(), &c, "https://id.example", 100).is_ok());
        for bad in [
            json!({"iss":"other","aud":"https://id.example","exp":200}),
            json!({"iss":"client-0001","aud":"https://elsewhere.example","exp":200}),
            json!({"iss":"client-0001","aud":["https://id.example"],"exp":100}),
            json!({"iss":"client-0001","aud":"https://id.example","nbf":500,"exp":200}),
            json!({"iss":"client-0001","aud":"https://id.example"}),
            json!({"iss":"client-0001","aud":"https://id.example","exp":100_000}),
            // What a client assertion is: never a request object.
            json!({"iss":"client-0001","sub":"client-0001","aud":"https://id.example","exp":200}),
        ] {
            let e = signed_claims(bad.clone(), &c, "https://id.example", 100).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidRequestObject, "{bad}");
        }
    }

    #[test]
    fn request_object_parameters_take_the_place_of_the_querys() {
        let query = Params::parse(b"client_id=client-0001&response_type=code&scope=openid&redirect_uri=https%3A%2F%2Fbad.example&request=x").unwrap();
        let object = json!({"redirect_uri":"https://app.acme.example/cb","state":"s","max_age":10,
            "claims":{"userinfo":{"name":null}},"iss":"client-0001","aud":"x","client_id":"client-0001"});
        let merged = merge(&query, object.as_object().unwrap(), false).unwrap();
        assert_eq!(
            merged.get("redirect_uri"),
            Some("https://app.acme.example/cb")
        );
        assert_eq!(merged.get("state"), Some("s"));
        assert_eq!(merged.get("max_age"), Some("10"));
        assert_eq!(merged.get("claims"), Some(r#"{"userinfo":{"name":null}}"#));
        assert_eq!(merged.get("scope"), Some("openid"));
        assert_eq!(merged.get("iss"), None);
        assert_eq!(merged.get("request"), None);
        let other = json!({"client_id":"someone-else"});
        assert_eq!(
            merge(&query, other.as_object().unwrap(), false)
                .unwrap_err()
                .code,
            ErrorCode::InvalidRequestObject
        );
        let nested = json!({"request_uri":"https://x"});
        assert!(merge(&query, nested.as_object().unwrap(), false).is_err());
        // Signed: nothing of the query but client_id and response_type.
        let signed = merge(&query, json!({"state":"s"}).as_object().unwrap(), true).unwrap();
        assert_eq!(signed.get("scope"), None);
        assert_eq!(signed.get("redirect_uri"), None);
        assert_eq!(signed.get("client_id"), Some("client-0001"));
        assert_eq!(signed.get("response_type"), Some("code"));
    }

    #[test]
    fn a_request_uri_must_be_registered_exactly() {
        let c = client(None);
        assert!(check_request_uri(&c, "https://app.acme.example/ro#abc").is_ok());
        for bad in [
            "https://app.acme.example/ro",
            "https://app.acme.example/ro#abd",
            "https://evil.example/ro#abc",
        ] {
            assert_eq!(
                check_request_uri(&c, bad).unwrap_err().code,
                ErrorCode::InvalidRequestUri
            );
        }
        let query = Params::parse(b"request=a&request_uri=b").unwrap();
        assert!(sent(&query).is_err());
    }
}
