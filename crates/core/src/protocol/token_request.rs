//! The token endpoint's request (RFC 6749 §3.2): one variant per grant type, with the parameters
//! its rules need, checked before any storage is asked; and the two ways such a request fails.

use super::client::{ClientRecord, GrantType};
use super::error::{ApiError, ErrorCode};
use super::form::Params;
use super::grant::{self, Refusal};

/// A token request, by grant type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenRequest {
    /// RFC 6749 §4.1.3: a code, named by its grant and the hash of its secret.
    AuthorizationCode {
        grant_id: String,
        code_hash: String,
        redirect_uri: Option<String>,
        code_verifier: Option<String>,
    },
    /// RFC 6749 §6.
    RefreshToken {
        grant_id: String,
        refresh_hash: String,
        scope: Option<Vec<String>>,
    },
    /// RFC 6749 §4.4.
    ClientCredentials { scope: Option<Vec<String>> },
    /// RFC 7523 §2.1: a partner's assertion about a linked user.
    JwtBearer {
        assertion: String,
        scope: Option<Vec<String>>,
    },
}

fn invalid_request(why: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, why)
}

fn invalid_grant(why: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidGrant, why)
}

/// The `scope` parameter as a list; `None` when absent (not the same as present and empty).
fn scope_param(params: &Params) -> Option<Vec<String>> {
    params.get("scope").map(|s| {
        s.split(' ')
            .filter(|x| !x.is_empty())
            .map(str::to_owned)
            .collect()
    })
}

impl TokenRequest {
    /// Parses the form of an authenticated client registered for `allowed` grant types. A grant
    /// type the client may not use is refused before its parameters are read.
    pub fn parse(params: &Params, allowed: &[GrantType]) -> Result<TokenRequest, ApiError> {
        let grant_type = match params.get("grant_type") {
            None => return Err(invalid_request("grant_type is missing")),
            Some(g) => GrantType::parse(g).ok_or_else(|| {
                ApiError::new(ErrorCode::UnsupportedGrantType, "unsupported grant_type")
            })?,
        };
        if !allowed.contains(&grant_type) {
            return Err(ApiError::new(
                ErrorCode::UnauthorizedClient,
                "this client may not use this grant type",
            ));
        }
        Ok(match grant_type {
            GrantType::AuthorizationCode => {
                let code = params
                    .get("code")
                    .ok_or_else(|| invalid_request("code is missing"))?;
                let (grant_id, code_hash) = grant::split_handle(code)
                    .ok_or_else(|| invalid_grant("unknown authorization code"))?;
                TokenRequest::AuthorizationCode {
                    grant_id,
                    code_hash,
                    redirect_uri: params.get("redirect_uri").map(str::to_owned),
                    code_verifier: params.get("code_verifier").map(str::to_owned),
                }
            }
            GrantType::RefreshToken => {
                let presented = params
                    .get("refresh_token")
                    .ok_or_else(|| invalid_request("refresh_token is missing"))?;
                let (grant_id, refresh_hash) = grant::split_handle(presented)
                    .ok_or_else(|| invalid_grant("unknown refresh token"))?;
                TokenRequest::RefreshToken {
                    grant_id,
                    refresh_hash,
                    scope: scope_param(params),
                }
            }
            GrantType::ClientCredentials => TokenRequest::ClientCredentials {
                scope: scope_param(params),
            },
            GrantType::JwtBearer => TokenRequest::JwtBearer {
                assertion: params
                    .get("assertion")
                    .ok_or_else(|| invalid_request("assertion is missing"))?
                    .to_owned(),
                scope: scope_param(params),
            },
        })
    }
}

/// The scopes a grant without a user's consent asks for: a subset of the client's registered
/// scopes (all of them when none are named), `openid` only where a user is involved.
pub fn requested_scopes(
    scope: Option<&[String]>,
    client: &ClientRecord,
    with_openid: bool,
) -> Result<Vec<String>, ApiError> {
    let allowed = |s: &String| client.scopes.contains(s) && (with_openid || s != "openid");
    match scope {
        Some(req) => match req.iter().find(|s| !allowed(s)) {
            Some(_) => Err(ApiError::new(
                ErrorCode::InvalidScope,
                "a requested scope is not allowed for this client and grant",
            )),
            None => Ok(req.to_vec()),
        },
        None => Ok(client
            .scopes
            .iter()
            .filter(|s| allowed(s))
            .cloned()
            .collect()),
    }
}

/// Why a token request failed: a grant's own refusal, typed, or any other error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenError {
    Refused(Refusal),
    Error(ApiError),
}

impl From<ApiError> for TokenError {
    fn from(e: ApiError) -> Self {
        TokenError::Error(e)
    }
}

impl From<Refusal> for TokenError {
    fn from(r: Refusal) -> Self {
        TokenError::Refused(r)
    }
}

impl TokenError {
    /// The outcome to log and audit instead of the error code: a replay that revoked a grant.
    pub fn replay_outcome(&self) -> Option<&'static str> {
        match self {
            TokenError::Refused(r) => r.replay_outcome(),
            TokenError::Error(_) => None,
        }
    }

    /// The error the client is answered with.
    pub fn into_error(self) -> ApiError {
        match self {
            TokenError::Refused(r) => r.error(),
            TokenError::Error(e) => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HANDLE: &str = "AAAAAAAAAAAAAAAAAAAAAA.AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE";
    const ALL: &[GrantType] = &[
        GrantType::AuthorizationCode,
        GrantType::RefreshToken,
        GrantType::ClientCredentials,
        GrantType::JwtBearer,
    ];

    fn parse(form: &str, allowed: &[GrantType]) -> Result<TokenRequest, ApiError> {
        TokenRequest::parse(&Params::parse(form.as_bytes()).unwrap(), allowed)
    }

    fn refused(form: &str, allowed: &[GrantType]) -> (ErrorCode, String) {
        let e = parse(form, allowed).unwrap_err();
        (e.code, e.description)
    }

    fn client(scopes: &[&str]) -> ClientRecord {
        let mut c: ClientRecord = serde_json::from_value(serde_json::json!({
            "client_id": "client-0001",
            "partner_id": "acme",
            "name": "App",
            "redirect_uris": [],
            "grant_types": ["client_credentials"],
            "scopes": [],
            "token_endpoint_auth_method": "client_secret_basic",
            "id_token_signed_response_alg": "RS256",
            "created_at": 0,
        }))
        .unwrap();
        c.scopes = scopes.iter().map(|s| s.to_string()).collect();
        c
    }

    #[test]
    fn token_request_missing_or_unknown_grant_type_is_refused_first() {
        assert_eq!(
            refused("code=x", ALL),
            (ErrorCode::InvalidRequest, "grant_type is missing".into())
        );
        assert_eq!(
            refused("grant_type=&code=x", ALL),
            (ErrorCode::InvalidRequest, "grant_type is missing".into())
        );
        assert_eq!(
            refused("grant_type=password", &[]),
            (
                ErrorCode::UnsupportedGrantType,
                "unsupported grant_type".into()
            )
        );
    }

    #[test]
    fn token_request_grant_type_the_client_may_not_use_is_refused_before_its_parameters() {
        for form in [
            "grant_type=authorization_code",
            "grant_type=refresh_token",
            "grant_type=client_credentials",
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer",
        ] {
            assert_eq!(
                refused(form, &[]),
                (
                    ErrorCode::UnauthorizedClient,
                    "this client may not use this grant type".into()
                ),
                "{form}"
            );
        }
    }

    #[test]
    fn token_request_missing_or_malformed_secrets_are_refused_as_today() {
        let cases = [
            (
                "grant_type=authorization_code",
                ErrorCode::InvalidRequest,
                "code is missing",
            ),
            (
                "grant_type=authorization_code&code=",
                ErrorCode::InvalidRequest,
                "code is missing",
            ),
            (
                "grant_type=authorization_code&code=garbage",
                ErrorCode::InvalidGrant,
                "unknown authorization code",
            ),
            (
                "grant_type=refresh_token",
                ErrorCode::InvalidRequest,
                "refresh_token is missing",
            ),
            (
                "grant_type=refresh_token&refresh_token=x.y",
                ErrorCode::InvalidGrant,
                "unknown refresh token",
            ),
            (
                "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer",
                ErrorCode::InvalidRequest,
                "assertion is missing",
            ),
        ];
        for (form, code, why) in cases {
            assert_eq!(refused(form, ALL), (code, why.to_owned()), "{form}");
        }
        let repeated = Params::parse(b"grant_type=refresh_token&grant_type=refresh_token");
        assert_eq!(
            repeated.unwrap_err().description,
            "a parameter is repeated",
            "a repeated parameter never reaches the grant rules"
        );
    }

    #[test]
    fn token_request_parses_each_grant_type_into_its_variant() {
        let form = format!(
            "grant_type=authorization_code&code={HANDLE}&redirect_uri=https%3A%2F%2Fa.example%2Fcb&code_verifier=v"
        );
        let (gid, hash) = grant::split_handle(HANDLE).unwrap();
        assert_eq!(
            parse(&form, ALL).unwrap(),
            TokenRequest::AuthorizationCode {
                grant_id: gid.clone(),
                code_hash: hash.clone(),
                redirect_uri: Some("https://a.example/cb".into()),
                code_verifier: Some("v".into()),
            }
        );
        let form = format!("grant_type=refresh_token&refresh_token={HANDLE}&scope=openid++email");
        assert_eq!(
            parse(&form, ALL).unwrap(),
            TokenRequest::RefreshToken {
                grant_id: gid,
                refresh_hash: hash,
                scope: Some(vec!["openid".into(), "email".into()]),
            }
        );
        assert_eq!(
            parse("grant_type=client_credentials&scope=", ALL).unwrap(),
            TokenRequest::ClientCredentials { scope: None },
            "an empty scope is an absent one"
        );
        assert_eq!(
            parse(
                "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=a.b.c&scope=+",
                ALL
            )
            .unwrap(),
            TokenRequest::JwtBearer {
                assertion: "a.b.c".into(),
                scope: Some(vec![]),
            },
            "a blank scope is present and names nothing"
        );
    }

    #[test]
    fn token_requested_scopes_are_the_clients_and_openid_only_with_a_user() {
        let c = client(&["openid", "api.read", "api.write"]);
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            requested_scopes(None, &c, false).unwrap(),
            v(&["api.read", "api.write"])
        );
        assert_eq!(
            requested_scopes(None, &c, true).unwrap(),
            v(&["openid", "api.read", "api.write"])
        );
        assert_eq!(
            requested_scopes(Some(&v(&["api.read"])), &c, false).unwrap(),
            v(&["api.read"])
        );
        for (req, with_openid) in [(v(&["openid"]), false), (v(&["admin"]), true)] {
            let e = requested_scopes(Some(&req), &c, with_openid).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidScope, "{req:?}");
        }
    }

    #[test]
    fn token_error_outcome_follows_the_refusal_type_not_its_text() {
        let replay = TokenError::from(Refusal::CodeReplayed);
        assert_eq!(replay.replay_outcome(), Some("code_replay"));
        assert_eq!(
            TokenError::from(Refusal::RefreshReused).replay_outcome(),
            Some("refresh_reuse")
        );
        // Another error with the very same text is not a replay.
        let same_text = TokenError::from(Refusal::CodeReplayed.error());
        assert_eq!(same_text.replay_outcome(), None);
        assert_eq!(replay.into_error(), same_text.into_error());
        assert_eq!(
            TokenError::from(Refusal::CodeExpired).replay_outcome(),
            None
        );
    }
}
