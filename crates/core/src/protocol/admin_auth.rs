//! Authorization of the admin API: one bearer token, the `ADMIN_TOKEN` secret.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::{ApiError, ErrorCode};

/// Shorter secrets are treated as unset: a guessable admin token must not open the registry.
pub const MIN_ADMIN_TOKEN_LEN: usize = 32;

/// Checks `Authorization: Bearer <token>` against the configured secret in constant time.
/// Hashing both sides first makes the comparison independent of the token's length too.
pub fn check_admin(configured: Option<&str>, authorization: Option<&str>) -> Result<(), ApiError> {
    let Some(secret) = configured.filter(|s| s.len() >= MIN_ADMIN_TOKEN_LEN) else {
        return Err(ApiError::new(
            ErrorCode::AdminDisabled,
            "the admin API is closed: ADMIN_TOKEN is not set (or shorter than 32 characters)",
        ));
    };
    let Some(presented) = authorization.and_then(bearer_token) else {
        return Err(ApiError::new(
            ErrorCode::MissingToken,
            "admin bearer token required",
        ));
    };
    let a = Sha256::digest(secret.as_bytes());
    let b = Sha256::digest(presented.as_bytes());
    if bool::from(a.ct_eq(&b)) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::InvalidToken,
            "invalid admin token",
        ))
    }
}

/// The token of an `Authorization: Bearer` header (RFC 6750 §2.1; the scheme is case-insensitive).
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.split_once(' ')?;
    let token = token.trim_start_matches(' ');
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' '))
        .then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn admin_without_secret_stays_closed() {
        for configured in [None, Some(""), Some("short")] {
            let err = check_admin(configured, Some("Bearer short")).unwrap_err();
            assert_eq!(err.code, ErrorCode::AdminDisabled);
            assert_eq!(err.to_wire().status, 503);
        }
    }

    #[test]
    fn admin_token_must_match_exactly() {
        assert!(check_admin(Some(SECRET), Some(&format!("Bearer {SECRET}"))).is_ok());
        assert!(check_admin(Some(SECRET), Some(&format!("bearer {SECRET}"))).is_ok());
        assert_eq!(
            check_admin(Some(SECRET), None).unwrap_err().code,
            ErrorCode::MissingToken
        );
        for bad in [
            format!("Basic {SECRET}"),
            format!("Bearer {SECRET}x"),
            format!("Bearer {}", &SECRET[1..]),
            "Bearer".to_owned(),
            format!("Bearer {SECRET} extra"),
        ] {
            let err = check_admin(Some(SECRET), Some(&bad)).unwrap_err();
            assert!(
                matches!(err.code, ErrorCode::InvalidToken | ErrorCode::MissingToken),
                "{bad}"
            );
            assert_eq!(err.to_wire().status, 401);
        }
    }
}
