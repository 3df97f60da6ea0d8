//! Public JWK Sets as partners and clients register them, and the signing algorithms we issue
//! tokens with. A leaf: everything that reads keys builds on it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::ApiError;

/// Signing algorithms edgeward issues tokens with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SigningAlg {
    EdDSA,
    /// RFC 9864's fully specified name for EdDSA with Ed25519: the same keys and signatures as
    /// `EdDSA`, under the name a client that registered for it checks.
    Ed25519,
    ES256,
    RS256,
}

impl SigningAlg {
    pub fn parse(s: &str) -> Option<SigningAlg> {
        Some(match s {
            "EdDSA" => SigningAlg::EdDSA,
            "Ed25519" => SigningAlg::Ed25519,
            "ES256" => SigningAlg::ES256,
            "RS256" => SigningAlg::RS256,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::EdDSA => "EdDSA",
            SigningAlg::Ed25519 => "Ed25519",
            SigningAlg::ES256 => "ES256",
            SigningAlg::RS256 => "RS256",
        }
    }

    /// Whether a key of `self` verifies a signature made as `other` (`EdDSA` and `Ed25519` name
    /// one algorithm).
    pub fn same_key_as(self, other: SigningAlg) -> bool {
        let family = |a: SigningAlg| match a {
            SigningAlg::Ed25519 => SigningAlg::EdDSA,
            a => a,
        };
        family(self) == family(other)
    }
}

/// JWK members that only private keys have: a partner or client key set must never carry them.
const PRIVATE_JWK_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Checks an inline public JWK Set: an object with a non-empty `keys` array of public keys.
pub fn check_public_jwks(jwks: &Value, field: &str) -> Result<(), ApiError> {
    let keys = jwks
        .get("keys")
        .and_then(Value::as_array)
        .filter(|k| !k.is_empty() && k.len() <= 16)
        .ok_or_else(|| ApiError::invalid_field(field, "must be a JWK Set with 1-16 keys"))?;
    for (i, key) in keys.iter().enumerate() {
        let f = format!("{field}.keys[{i}]");
        let obj = key
            .as_object()
            .ok_or_else(|| ApiError::invalid_field(&f, "must be a JWK object"))?;
        if PRIVATE_JWK_MEMBERS.iter().any(|m| obj.contains_key(*m)) {
            return Err(ApiError::invalid_field(
                &f,
                "is a private or symmetric key: register public keys only",
            ));
        }
        match obj.get("kty").and_then(Value::as_str) {
            Some("OKP") | Some("EC") | Some("RSA") => {}
            _ => return Err(ApiError::invalid_field(&f, "kty must be OKP, EC or RSA")),
        }
    }
    Ok(())
}
