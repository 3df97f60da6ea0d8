//! The discovery documents (OpenID Connect Discovery 1.0, RFC 8414), generated from the route
//! table so that they can only name endpoints the router serves.

use serde_json::{json, Map, Value};

use crate::routes::{self, Endpoint};

/// An issuer identifier: an https URL (plain http only on loopback) without query, fragment or
/// trailing slash. Tokens carry it as `iss`; endpoint URLs are built from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issuer(String);

impl Issuer {
    pub fn parse(s: &str) -> Option<Issuer> {
        let s = s.trim();
        let url = url::Url::parse(s).ok()?;
        let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
        let scheme_ok = url.scheme() == "https" || (url.scheme() == "http" && loopback);
        let clean = url.query().is_none()
            && url.fragment().is_none()
            && url.username().is_empty()
            && url.password().is_none()
            && !s.ends_with('/');
        (scheme_ok && clean).then(|| Issuer(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.0)
    }
}

/// `/.well-known/openid-configuration`; the RFC 8414 document is the same metadata.
pub fn document(issuer: &Issuer, signing_algs: &[&str]) -> Value {
    let mut doc = Map::new();
    doc.insert("issuer".into(), issuer.as_str().into());
    for e in routes::ENDPOINTS {
        let Endpoint { metadata, path } = e;
        doc.insert((*metadata).into(), issuer.url(path).into());
    }
    let claims_supported: Vec<&str> = [
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "auth_time",
        "nonce",
        "azp",
        "at_hash",
    ]
    .into_iter()
    .chain(crate::protocol::claims::USER_CLAIMS.iter().copied())
    .collect();
    let extra = json!({
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "form_post"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials",
            "urn:ietf:params:oauth:grant-type:jwt-bearer"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": ["EdDSA", "Ed25519", "ES256", "RS256"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": signing_algs,
        "userinfo_signing_alg_values_supported": signing_algs,
        "scopes_supported": ["openid", "profile", "email", "roles"],
        "claims_supported": claims_supported,
        "claims_parameter_supported": true,
        "acr_values_supported": crate::protocol::claims::ACR_VALUES,
        "prompt_values_supported": ["none", "login", "consent"],
        "authorization_response_iss_parameter_supported": true,
        "request_parameter_supported": true,
        "request_uri_parameter_supported": true,
        "require_request_uri_registration": true,
        "request_object_signing_alg_values_supported": ["none", "RS256", "ES256", "EdDSA", "Ed25519"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
    });
    if let Value::Object(m) = extra {
        doc.extend(m);
    }
    Value::Object(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_must_be_https_or_loopback_without_extras() {
        assert!(Issuer::parse("https://id.school.example").is_some());
        assert!(Issuer::parse("https://id.school.example/tenant").is_some());
        assert!(Issuer::parse("http://127.0.0.1:8787").is_some());
        for bad in [
            "http://id.school.example",
            "https://id.school.example/",
            "https://id.school.example?x=1",
            "https://id.school.example#f",
            "https://u@id.school.example",
            "id.school.example",
            "",
        ] {
            assert_eq!(Issuer::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn document_names_every_served_endpoint_under_the_issuer() {
        let issuer = Issuer::parse("https://id.school.example").unwrap();
        let doc = document(&issuer, &["EdDSA"]);
        assert_eq!(doc["issuer"], "https://id.school.example");
        assert_eq!(
            doc["jwks_uri"],
            "https://id.school.example/.well-known/jwks.json"
        );
        for e in routes::ENDPOINTS {
            let url = doc[e.metadata].as_str().unwrap();
            assert!(url.starts_with("https://id.school.example/"));
            assert!(routes::route(e.path).is_some(), "{} is routed", e.path);
        }
    }
}
