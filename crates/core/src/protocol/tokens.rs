//! The tokens we issue: access tokens as RFC 9068 JWTs, ID tokens per OpenID Connect Core, and
//! the claims each consented scope releases (nothing more: many users are children).

use base64ct::{Base64UrlUnpadded, Encoding};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256, Sha512};

use super::jwk::SigningAlg;
use super::partner::PartnerId;
use super::user::UserView;

/// Access tokens live five minutes: the bound on how long a revoked grant's tokens still pass
/// checks that do not consult the grant (the gateway, step 4).
pub const ACCESS_TOKEN_TTL_S: u64 = 300;
pub const ID_TOKEN_TTL_S: u64 = 600;

/// The user's identifier for one partner: partners cannot correlate users across partners, and
/// the platform username never leaves edgeward unless a scope releases it. `salt` is the
/// partner's subject salt (`Partner::subject_salt`): a partner created again under the same id
/// gets a new one, so it learns none of the old partner's subjects. A partner without one
/// (created before salts existed) keeps the subjects it always had (the v1 derivation).
pub fn pairwise_sub(subject_seed: &str, partner: &PartnerId, salt: Option<&str>) -> String {
    let mut h = Sha256::new();
    match salt {
        None => h.update(b"edgeward:sub:v1:"),
        Some(_) => h.update(b"edgeward:sub:v2:"),
    }
    h.update(subject_seed.as_bytes());
    h.update(b":");
    h.update(partner.as_str().as_bytes());
    if let Some(salt) = salt {
        h.update(b":");
        h.update(salt.as_bytes());
    }
    Base64UrlUnpadded::encode_string(&h.finalize())
}

/// Claims released by `scopes` alone, from the user's profile (see `protocol::claims`).
pub fn released_claims(scopes: &[String], user: &UserView) -> Map<String, Value> {
    super::claims::released(scopes, &[], user)
}

/// RFC 9068 access-token claims (`exp` and `iat` are set by the signer).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub client_id: String,
    pub scope: String,
    pub jti: String,
    /// The grant the token came from: userinfo, introspection and revocation look it up.
    pub gid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<u64>,
}

/// OpenID Connect ID-token claims.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IdClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub azp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<u64>,
    pub at_hash: String,
    #[serde(flatten)]
    pub profile: Map<String, Value>,
}

/// `at_hash` (OIDC Core §3.1.3.6): the left half of the access token's hash, with the hash of
/// the ID token's algorithm (SHA-512 for Ed25519, as OpenID's EdDSA guidance and common client
/// libraries use).
pub fn at_hash(access_token: &str, alg: SigningAlg) -> String {
    let half = |d: &[u8]| Base64UrlUnpadded::encode_string(d.get(..d.len() / 2).unwrap_or(d));
    match alg {
        SigningAlg::EdDSA | SigningAlg::Ed25519 => half(&Sha512::digest(access_token.as_bytes())),
        SigningAlg::ES256 | SigningAlg::RS256 => half(&Sha256::digest(access_token.as_bytes())),
    }
}

/// A successful token response (RFC 6749 §5.1, OpenID Connect Core §3.1.3.3). The fields are
/// in alphabetical order, the order these answers have always had on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub scope: String,
    pub token_type: &'static str,
}

impl TokenResponse {
    /// A bearer access token for `scopes`, without refresh or ID token.
    pub fn bearer(access_token: String, scopes: &[String]) -> TokenResponse {
        TokenResponse {
            access_token,
            expires_in: ACCESS_TOKEN_TTL_S,
            id_token: None,
            refresh_token: None,
            scope: scopes.join(" "),
            token_type: "Bearer",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::user::Username;

    fn user() -> UserView {
        UserView {
            username: Username::parse("alice").unwrap(),
            name: "Alice".into(),
            email: Some("alice@school.example".into()),
            email_verified: false,
            roles: vec!["pupil".into()],
            created_at: 0,
            updated_at: 0,
            region: None,
        }
    }

    #[test]
    fn pairwise_sub_differs_per_partner_and_is_stable() {
        let a = PartnerId::parse("acme").unwrap();
        let b = PartnerId::parse("beta").unwrap();
        assert_eq!(
            pairwise_sub("seed", &a, None),
            pairwise_sub("seed", &a, None)
        );
        assert_ne!(
            pairwise_sub("seed", &a, None),
            pairwise_sub("seed", &b, None)
        );
        assert_ne!(
            pairwise_sub("seed", &a, None),
            pairwise_sub("seed2", &a, None)
        );
        assert!(!pairwise_sub("seed", &a, None).contains("alice"));
        // Partners created before salts existed keep their subjects (the v1 derivation).
        assert_eq!(
            pairwise_sub("seed", &a, None),
            "UFX1O7By0K0E1tTy0ZFkqgaRzsFWoA0uHSgkLv3lwT0"
        );
    }

    #[test]
    fn pairwise_sub_differs_for_a_partner_created_again_under_the_same_id() {
        let a = PartnerId::parse("acme").unwrap();
        let old = pairwise_sub("seed", &a, Some("salt-1"));
        assert_eq!(old, pairwise_sub("seed", &a, Some("salt-1")), "stable");
        assert_ne!(
            old,
            pairwise_sub("seed", &a, Some("salt-2")),
            "a new partner"
        );
        assert_ne!(old, pairwise_sub("seed", &a, None), "a legacy record");
    }

    #[test]
    fn claims_follow_consented_scopes_only() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(released_claims(&s(&["openid"]), &user()).is_empty());
        let p = released_claims(&s(&["openid", "profile"]), &user());
        assert_eq!(
            p.keys().collect::<Vec<_>>(),
            ["name", "preferred_username", "updated_at"]
        );
        let e = released_claims(&s(&["email"]), &user());
        assert_eq!(e.keys().collect::<Vec<_>>(), ["email", "email_verified"]);
        let r = released_claims(&s(&["roles"]), &user());
        assert_eq!(r["roles"], serde_json::json!(["pupil"]));
    }

    #[test]
    fn at_hash_uses_the_algorithms_hash() {
        // Expected values computed independently (Python's hashlib).
        assert_eq!(
            at_hash(
                "jHkWEdUXMU1BwAsC4vtUsZwnNTKf2JgkpskCUTvSvo4",
                SigningAlg::RS256
            ),
            "DxYOhQPVOjvqfl6CXM5Yqw"
        );
        assert_eq!(
            at_hash("x", SigningAlg::EdDSA),
            "pKvURIxJVi2CgRXROh_M6pJ_UrTVRZKX-LQ-QtqJI4s"
        );
    }

    #[test]
    fn token_response_is_written_as_the_token_endpoint_always_wrote_it() {
        let scopes = vec!["openid".to_owned(), "profile".to_owned()];
        let plain = TokenResponse::bearer("at".into(), &scopes);
        assert_eq!(
            serde_json::to_string(&plain).unwrap(),
            r#"{"access_token":"at","expires_in":300,"scope":"openid profile","token_type":"Bearer"}"#
        );
        let full = TokenResponse {
            id_token: Some("it".into()),
            refresh_token: Some("rt".into()),
            ..plain
        };
        // The same text as the `json!` object it replaces (keys sorted).
        let before = serde_json::json!({
            "access_token": "at",
            "token_type": "Bearer",
            "expires_in": ACCESS_TOKEN_TTL_S,
            "scope": "openid profile",
            "refresh_token": "rt",
            "id_token": "it",
        });
        assert_eq!(
            serde_json::to_string(&full).unwrap(),
            serde_json::to_string(&before).unwrap()
        );
    }
}
