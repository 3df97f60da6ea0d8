//! PKCE (RFC 7636) with S256 only: `plain` and missing challenges are refused (RFC 9700 §2.1.1).

use base64ct::{Base64UrlUnpadded, Encoding};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A code challenge as the authorize endpoint accepts it: S256, 43 base64url characters.
pub fn challenge_ok(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// RFC 7636 §4.1: 43-128 characters of `[A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~"`.
pub fn verifier_ok(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

pub fn s256(verifier: &str) -> String {
    Base64UrlUnpadded::encode_string(&Sha256::digest(verifier.as_bytes()))
}

/// Whether `verifier` matches the S256 `challenge`, compared in constant time.
pub fn verify(verifier: &str, challenge: &str) -> bool {
    verifier_ok(verifier) && bool::from(s256(verifier).as_bytes().ct_eq(challenge.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b_example() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert_eq!(s256(verifier), challenge);
        assert!(verify(verifier, challenge));
        assert!(challenge_ok(challenge));
    }

    #[test]
    fn pkce_wrong_or_malformed_verifier_fails() {
        let challenge = s256(&"a".repeat(43));
        assert!(!verify(&"b".repeat(43), &challenge));
        assert!(
            !verify(&"a".repeat(42), &s256(&"a".repeat(42))),
            "too short"
        );
        assert!(
            !verify(&"a".repeat(129), &s256(&"a".repeat(129))),
            "too long"
        );
        assert!(!verify("a b", &s256("a b")));
        // a plain challenge (the verifier itself) never verifies
        let v = "a".repeat(43);
        assert!(!verify(&v, &v));
    }

    #[test]
    fn challenge_shape_is_s256() {
        assert!(!challenge_ok("short"));
        assert!(!challenge_ok(&"a".repeat(44)));
        assert!(!challenge_ok(&format!("{}=", "a".repeat(42))));
    }
}
