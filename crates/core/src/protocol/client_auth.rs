//! Client authentication at the token endpoint (RFC 6749 §2.3, RFC 7523 §2.2): which method the
//! request used, and whether it is the one the client registered.

use base64ct::{Base64, Encoding};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::client::{AuthMethod, ClientId, ClientRecord};
use super::error::{ApiError, ErrorCode};
use super::form::Params;

pub const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The credentials a request presented.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Presented {
    Basic {
        client_id: String,
        secret: String,
    },
    Post {
        client_id: String,
        secret: String,
    },
    Assertion {
        assertion: String,
        client_id: Option<String>,
    },
    /// Only a `client_id`: a public client.
    None {
        client_id: String,
    },
}

fn invalid_client(why: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidClient, why)
}

fn form_decode(s: &str) -> Option<String> {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
}

/// Reads the credentials. More than one method in one request is `invalid_request` (§2.3).
pub fn presented(authorization: Option<&str>, form: &Params) -> Result<Presented, ApiError> {
    let basic = match authorization {
        None => None,
        Some(h) => {
            let (scheme, value) = h
                .split_once(' ')
                .ok_or_else(|| invalid_client("malformed Authorization header"))?;
            if !scheme.eq_ignore_ascii_case("basic") {
                return Err(invalid_client(
                    "the token endpoint takes Basic authentication only",
                ));
            }
            let decoded = Base64::decode_vec(value.trim())
                .map_err(|_| invalid_client("malformed Basic credentials"))?;
            let decoded = String::from_utf8(decoded)
                .map_err(|_| invalid_client("malformed Basic credentials"))?;
            let (id, secret) = decoded
                .split_once(':')
                .ok_or_else(|| invalid_client("malformed Basic credentials"))?;
            // §2.3.1: both parts are form-encoded before Basic encoding.
            let id =
                form_decode(id).ok_or_else(|| invalid_client("malformed Basic credentials"))?;
            let secret =
                form_decode(secret).ok_or_else(|| invalid_client("malformed Basic credentials"))?;
            Some((id, secret))
        }
    };
    let body_secret = form.get("client_secret");
    let assertion = form.get("client_assertion");
    let methods = usize::from(basic.is_some())
        + usize::from(body_secret.is_some())
        + usize::from(assertion.is_some());
    if methods > 1 {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "use exactly one client authentication method",
        ));
    }
    let body_id = form.get("client_id").map(str::to_owned);
    if let Some((client_id, secret)) = basic {
        if body_id.as_ref().is_some_and(|b| *b != client_id) {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "client_id does not match the credentials",
            ));
        }
        return Ok(Presented::Basic { client_id, secret });
    }
    if let Some(secret) = body_secret {
        let client_id = body_id.ok_or_else(|| invalid_client("client_id is missing"))?;
        return Ok(Presented::Post {
            client_id,
            secret: secret.to_owned(),
        });
    }
    if let Some(assertion) = assertion {
        if form.get("client_assertion_type") != Some(JWT_BEARER_ASSERTION) {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ));
        }
        return Ok(Presented::Assertion {
            assertion: assertion.to_owned(),
            client_id: body_id,
        });
    }
    match body_id {
        Some(client_id) => Ok(Presented::None { client_id }),
        None => Err(invalid_client("client authentication is required")),
    }
}

impl Presented {
    /// The client the request claims to be, if it says so outside an assertion.
    pub fn claimed_id(&self) -> Option<&str> {
        match self {
            Presented::Basic { client_id, .. }
            | Presented::Post { client_id, .. }
            | Presented::None { client_id } => Some(client_id),
            Presented::Assertion { client_id, .. } => client_id.as_deref(),
        }
    }

    pub fn client_id(&self) -> Result<ClientId, ApiError> {
        self.claimed_id()
            .and_then(ClientId::parse)
            .ok_or_else(|| invalid_client("unknown client"))
    }
}

pub fn secret_hash(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Checks secret and public-client credentials against the registration. A client registered
/// with a secret may send it either way (`client_secret_basic` or `client_secret_post`, one per
/// request): the two are the common defaults of client libraries, and they protect the secret
/// alike. Assertions are verified by the caller (they need the client's keys and a replay
/// check).
pub fn authenticate(presented: &Presented, client: &ClientRecord) -> Result<(), ApiError> {
    let registered = client.token_endpoint_auth_method;
    let secret = match (presented, registered) {
        (Presented::Basic { secret, .. } | Presented::Post { secret, .. }, m)
            if m.uses_secret() =>
        {
            secret
        }
        (Presented::None { .. }, AuthMethod::None) => return Ok(()),
        (Presented::Assertion { .. }, AuthMethod::PrivateKeyJwt) => return Ok(()),
        _ => {
            return Err(invalid_client(
                "authentication method does not match the registration",
            ))
        }
    };
    let stored = client.secret_hash.as_deref().unwrap_or("");
    let given = secret_hash(secret);
    if stored.is_empty() || !bool::from(given.as_bytes().ct_eq(stored.as_bytes())) {
        return Err(invalid_client("client authentication failed"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::client::GrantType;
    use crate::protocol::jwk::SigningAlg;
    use crate::protocol::partner::PartnerId;

    fn form(s: &str) -> Params {
        Params::parse(s.as_bytes()).unwrap()
    }

    fn basic(id: &str, secret: &str) -> String {
        format!(
            "Basic {}",
            Base64::encode_string(format!("{id}:{secret}").as_bytes())
        )
    }

    fn client(method: AuthMethod, secret: Option<&str>) -> ClientRecord {
        ClientRecord {
            client_id: ClientId::parse("client-0001").unwrap(),
            partner_id: PartnerId::parse("acme").unwrap(),
            name: "A".into(),
            redirect_uris: vec![],
            grant_types: vec![GrantType::ClientCredentials],
            scopes: vec![],
            token_endpoint_auth_method: method,
            jwks: None,
            jwks_uri: None,
            id_token_signed_response_alg: SigningAlg::EdDSA,
            userinfo_signed_response_alg: None,
            require_pkce: true,
            post_logout_redirect_uris: None,
            about: crate::protocol::client::AppLinks::default(),
            request_uris: vec![],
            request_object_signing_alg: None,
            registered_with: None,
            secret_hash: secret.map(secret_hash),
            created_at: 0,
        }
    }

    #[test]
    fn token_client_secret_basic_and_post() {
        let c = client(AuthMethod::ClientSecretBasic, Some("s3cret"));
        let p = presented(Some(&basic("client-0001", "s3cret")), &form("")).unwrap();
        assert!(authenticate(&p, &c).is_ok());
        let wrong = presented(Some(&basic("client-0001", "s3creT")), &form("")).unwrap();
        assert_eq!(
            authenticate(&wrong, &c).unwrap_err().code,
            ErrorCode::InvalidClient
        );
        let post = presented(None, &form("client_id=client-0001&client_secret=s3cret")).unwrap();
        assert!(
            authenticate(&post, &c).is_ok(),
            "a secret client may post its secret"
        );
        let wrong_post =
            presented(None, &form("client_id=client-0001&client_secret=s3creT")).unwrap();
        assert_eq!(
            authenticate(&wrong_post, &c).unwrap_err().code,
            ErrorCode::InvalidClient
        );
        let c = client(AuthMethod::ClientSecretPost, Some("s3cret"));
        assert!(authenticate(&post, &c).is_ok());
        let p = presented(Some(&basic("client-0001", "s3cret")), &form("")).unwrap();
        assert!(authenticate(&p, &c).is_ok(), "or send it in the header");
        // A client without a secret is not authenticated by one.
        let keyed = client(AuthMethod::PrivateKeyJwt, None);
        assert_eq!(
            authenticate(&post, &keyed).unwrap_err().code,
            ErrorCode::InvalidClient
        );
        let public = client(AuthMethod::None, None);
        assert_eq!(
            authenticate(&p, &public).unwrap_err().code,
            ErrorCode::InvalidClient
        );
    }

    #[test]
    fn token_basic_credentials_are_form_decoded() {
        let c = client(AuthMethod::ClientSecretBasic, Some("a b:c%"));
        let p = presented(Some(&basic("client-0001", "a+b%3Ac%25")), &form("")).unwrap();
        assert!(authenticate(&p, &c).is_ok());
    }

    #[test]
    fn token_both_header_and_body_credentials_are_invalid_request() {
        let err = presented(
            Some(&basic("client-0001", "x")),
            &form("client_id=client-0001&client_secret=x"),
        )
        .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidRequest);
        let err = presented(
            None,
            &form("client_id=c&client_secret=x&client_assertion=y"),
        )
        .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidRequest);
        let err = presented(
            Some(&basic("client-0001", "x")),
            &form("client_id=other-0001"),
        )
        .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidRequest);
    }

    #[test]
    fn token_public_client_cannot_pose_as_confidential() {
        let confidential = client(AuthMethod::ClientSecretBasic, Some("s"));
        let p = presented(None, &form("client_id=client-0001")).unwrap();
        assert_eq!(
            authenticate(&p, &confidential).unwrap_err().code,
            ErrorCode::InvalidClient
        );
        let public = client(AuthMethod::None, None);
        assert!(authenticate(&p, &public).is_ok());
        assert_eq!(
            presented(None, &form("")).unwrap_err().code,
            ErrorCode::InvalidClient
        );
        assert_eq!(
            presented(Some("Bearer x"), &form("")).unwrap_err().code,
            ErrorCode::InvalidClient
        );
    }
}
