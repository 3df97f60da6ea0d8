//! OAuth clients of partners: checked ids, redirect URIs and scopes, the admin input a client is
//! registered from, and the stored record.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use url::Url;

use super::error::ApiError;
use super::jwk::check_public_jwks;
use super::jwk::SigningAlg;
use super::origin::Origin;
use super::partner::{Partner, PartnerId, PartnerStatus};

pub const MAX_REDIRECT_URIS: usize = 16;
pub const MAX_REDIRECT_URI_LEN: usize = 2000;
pub const MAX_SCOPES: usize = 32;

/// An opaque client identifier: 8-64 characters of base64url's alphabet.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ClientId(String);

impl ClientId {
    pub fn parse(s: &str) -> Option<ClientId> {
        let ok = (8..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| ClientId(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The KV key of the client's published record (`client:{id}`), read by the edge and
    /// written by the registry.
    pub fn kv_key(&self) -> String {
        format!("client:{self}")
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ClientId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ClientId::parse(&s).ok_or_else(|| serde::de::Error::custom("not a client id"))
    }
}

/// A registered redirect URI: absolute, https (plain http only on loopback), no fragment, no
/// userinfo; normalized once when registered. Authorization requests must repeat it exactly
/// (RFC 9700 §4.1.3: exact string matching).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct RedirectUri(String);

impl RedirectUri {
    pub fn parse(s: &str) -> Result<RedirectUri, String> {
        if s.is_empty() || s.len() > MAX_REDIRECT_URI_LEN {
            return Err(format!("must be 1-{MAX_REDIRECT_URI_LEN} characters"));
        }
        let url = Url::parse(s).map_err(|_| "is not an absolute URL".to_owned())?;
        if url.fragment().is_some() || s.contains('#') {
            return Err("must not have a fragment".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not contain a user name or password".into());
        }
        // The origin rules (https, loopback-only http, no trailing dot) are the gate's.
        let origin_part = format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
        let origin_part = match url.port() {
            Some(p) => format!("{origin_part}:{p}"),
            None => origin_part,
        };
        Origin::parse(&origin_part).map_err(|e| e.to_string())?;
        // The normalized form is what is stored and compared: it must itself be within the
        // limit (percent-encoding can triple a URI's length), or the stored client would not
        // load again. Found by the `origin` fuzz target.
        let normalized = url.to_string();
        if normalized.len() > MAX_REDIRECT_URI_LEN {
            return Err(format!(
                "must be 1-{MAX_REDIRECT_URI_LEN} characters once normalized"
            ));
        }
        Ok(RedirectUri(normalized))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn origin(&self) -> Option<Origin> {
        Origin::from_referer(&self.0)
    }
}

impl<'de> Deserialize<'de> for RedirectUri {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let uri = RedirectUri::parse(&s).map_err(serde::de::Error::custom)?;
        if uri.0 != s {
            return Err(serde::de::Error::custom("redirect URI is not normalized"));
        }
        Ok(uri)
    }
}

/// A scope token (RFC 6749 §3.3), restricted to a conservative alphabet.
pub fn scope_token_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'/' | b'-'))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
    /// RFC 7523 §2.1: a partner's assertion about a linked user.
    #[serde(rename = "urn:ietf:params:oauth:grant-type:jwt-bearer")]
    JwtBearer,
}

pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

impl GrantType {
    pub fn parse(s: &str) -> Option<GrantType> {
        Some(match s {
            "authorization_code" => GrantType::AuthorizationCode,
            "refresh_token" => GrantType::RefreshToken,
            "client_credentials" => GrantType::ClientCredentials,
            JWT_BEARER_GRANT => GrantType::JwtBearer,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
    None,
}

impl AuthMethod {
    pub fn parse(s: &str) -> Option<AuthMethod> {
        Some(match s {
            "client_secret_basic" => AuthMethod::ClientSecretBasic,
            "client_secret_post" => AuthMethod::ClientSecretPost,
            "private_key_jwt" => AuthMethod::PrivateKeyJwt,
            "none" => AuthMethod::None,
            _ => return None,
        })
    }

    pub fn uses_secret(self) -> bool {
        matches!(
            self,
            AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost
        )
    }
}

/// A client registration, checked, before the registry assigns it an id and secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientSpec {
    pub name: String,
    pub redirect_uris: Vec<RedirectUri>,
    pub grant_types: Vec<GrantType>,
    pub scopes: Vec<String>,
    pub token_endpoint_auth_method: AuthMethod,
    pub jwks: Option<Value>,
    /// Where the client publishes its keys instead (on one of its partner's origins).
    pub jwks_uri: Option<String>,
    pub id_token_signed_response_alg: SigningAlg,
    /// Userinfo answers as a JWT signed with this (OpenID Connect Core §5.3.2); `None`: JSON.
    pub userinfo_signed_response_alg: Option<SigningAlg>,
    pub require_pkce: bool,
    pub post_logout_redirect_uris: Vec<RedirectUri>,
    /// What the login page shows of the app (OpenID Connect Registration §2).
    pub about: AppLinks,
    /// Where the client's request objects may be fetched from (on its partner's origins).
    pub request_uris: Vec<String>,
    /// The one algorithm its request objects must use (`none` included); `None`: any we verify.
    pub request_object_signing_alg: Option<String>,
}

/// The app's logo (on its partner's origins: the person's browser loads it) and the links to
/// its privacy policy and terms, shown on the login page.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppLinks {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tos_uri: Option<String>,
}

impl AppLinks {
    pub fn is_empty(&self) -> bool {
        self.logo_uri.is_none() && self.policy_uri.is_none() && self.tos_uri.is_none()
    }
}

fn yes() -> bool {
    true
}

/// The stored client. `secret_hash` is the SHA-256 (hex) of the client secret, which is shown
/// once at registration and never stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientRecord {
    pub client_id: ClientId,
    pub partner_id: PartnerId,
    pub name: String,
    pub redirect_uris: Vec<RedirectUri>,
    pub grant_types: Vec<GrantType>,
    pub scopes: Vec<String>,
    pub token_endpoint_auth_method: AuthMethod,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<Value>,
    /// The client's keys are fetched from here (fetched again on an unknown `kid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    pub id_token_signed_response_alg: SigningAlg,
    /// Userinfo answers as a JWT signed with this; `None` (and records of earlier releases): JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userinfo_signed_response_alg: Option<SigningAlg>,
    /// Authorization requests must carry PKCE (`true` unless a confidential client was
    /// registered to send a `nonce` instead, RFC 9700 §2.1.1).
    #[serde(default = "yes")]
    pub require_pkce: bool,
    /// Where its request objects may be fetched from (OpenID Connect Registration §2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_uris: Vec<String>,
    /// The algorithm its request objects must be signed with (`none`: unsigned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_object_signing_alg: Option<String>,
    /// The logo and links the login page shows (none in records of earlier releases).
    #[serde(default, flatten)]
    pub about: AppLinks,
    /// Where logout may send the browser back (OpenID Connect RP-Initiated Logout §3.1).
    /// `None` in records of earlier releases, whose logouts went back to a redirect URI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_logout_redirect_uris: Option<Vec<RedirectUri>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_hash: Option<String>,
    /// The initial access token (its public id) a client that registered itself came with: an
    /// operator who revokes a leaked token finds what it registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_with: Option<String>,
    pub created_at: u64,
}

impl ClientRecord {
    /// The record as the admin API shows it: everything but the secret's hash.
    pub fn view(&self) -> ClientRecord {
        ClientRecord {
            secret_hash: None,
            ..self.clone()
        }
    }

    /// A new client of `partner_id` registered as `spec` says.
    pub fn from_spec(
        client_id: ClientId,
        partner_id: PartnerId,
        spec: ClientSpec,
        secret_hash: Option<String>,
        now: u64,
    ) -> ClientRecord {
        ClientRecord {
            client_id,
            partner_id,
            name: spec.name,
            redirect_uris: spec.redirect_uris,
            grant_types: spec.grant_types,
            scopes: spec.scopes,
            token_endpoint_auth_method: spec.token_endpoint_auth_method,
            jwks: spec.jwks,
            jwks_uri: spec.jwks_uri,
            id_token_signed_response_alg: spec.id_token_signed_response_alg,
            userinfo_signed_response_alg: spec.userinfo_signed_response_alg,
            require_pkce: spec.require_pkce,
            post_logout_redirect_uris: Some(spec.post_logout_redirect_uris),
            about: spec.about,
            request_uris: spec.request_uris,
            request_object_signing_alg: spec.request_object_signing_alg,
            secret_hash,
            registered_with: None,
            created_at: now,
        }
    }
}

fn obj_field<'a>(obj: &'a Map<String, Value>, f: &str) -> Option<&'a Value> {
    obj.get(f).filter(|v| !v.is_null())
}

fn string_list(obj: &Map<String, Value>, field: &str) -> Result<Option<Vec<String>>, ApiError> {
    match obj_field(obj, field) {
        None => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(ApiError::invalid_field(
                    format!("{field}[{i}]"),
                    "must be a string",
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(ApiError::invalid_field(
            field,
            "must be an array of strings",
        )),
    }
}

/// Parses `POST /admin/partners/{id}/clients`.
pub fn parse_client_spec(body: &[u8]) -> Result<ClientSpec, ApiError> {
    const FIELDS: &[&str] = &[
        "name",
        "redirect_uris",
        "grant_types",
        "scopes",
        "token_endpoint_auth_method",
        "jwks",
        "jwks_uri",
        "id_token_signed_response_alg",
        "userinfo_signed_response_alg",
        "require_pkce",
        "post_logout_redirect_uris",
        "logo_uri",
        "policy_uri",
        "tos_uri",
        "request_uris",
        "request_object_signing_alg",
    ];
    let obj = super::json::parse_object(body)?;
    if obj.keys().any(|k| !FIELDS.contains(&k.as_str())) {
        return Err(super::json::unknown_member(None, FIELDS));
    }
    let name = match obj_field(&obj, "name") {
        Some(Value::String(s))
            if !s.trim().is_empty()
                && s.chars().count() <= 200
                && super::text::displayable(s) =>
        {
            s.trim().to_owned()
        }
        Some(_) => {
            return Err(ApiError::invalid_field(
                "name",
                "must be 1-200 characters, without control, bidirectional formatting or zero-width characters",
            ))
        }
        None => return Err(ApiError::invalid_field("name", "is required")),
    };

    let grant_types = match string_list(&obj, "grant_types")? {
        None => vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
        Some(list) => {
            let mut out = Vec::new();
            for (i, g) in list.iter().enumerate() {
                let g = GrantType::parse(g).ok_or_else(|| {
                    ApiError::invalid_field(
                        format!("grant_types[{i}]"),
                        "must be authorization_code, refresh_token, client_credentials or urn:ietf:params:oauth:grant-type:jwt-bearer",
                    )
                })?;
                if !out.contains(&g) {
                    out.push(g);
                }
            }
            if out.is_empty() {
                return Err(ApiError::invalid_field("grant_types", "must not be empty"));
            }
            out
        }
    };
    let code_flow = grant_types.contains(&GrantType::AuthorizationCode);
    if grant_types.contains(&GrantType::RefreshToken) && !code_flow {
        return Err(ApiError::invalid_field(
            "grant_types",
            "refresh_token needs authorization_code",
        ));
    }

    let token_endpoint_auth_method = match obj_field(&obj, "token_endpoint_auth_method") {
        None => AuthMethod::ClientSecretBasic,
        Some(Value::String(s)) => AuthMethod::parse(s).ok_or_else(|| {
            ApiError::invalid_field(
                "token_endpoint_auth_method",
                "must be client_secret_basic, client_secret_post, private_key_jwt or none",
            )
        })?,
        Some(_) => {
            return Err(ApiError::invalid_field(
                "token_endpoint_auth_method",
                "must be a string",
            ))
        }
    };
    // Grants that act without a user at the browser need a client that proves who it is: an
    // automatic-login assertion travels in a browser URL, and a public client could otherwise
    // trade one it saw for tokens.
    if token_endpoint_auth_method == AuthMethod::None {
        if let Some(g) = grant_types
            .iter()
            .find(|g| matches!(g, GrantType::ClientCredentials | GrantType::JwtBearer))
        {
            let name = if *g == GrantType::JwtBearer {
                JWT_BEARER_GRANT
            } else {
                "client_credentials"
            };
            return Err(ApiError::invalid_field(
                "grant_types",
                format!(
                    "{name} needs an authenticated client, not token_endpoint_auth_method none"
                ),
            ));
        }
    }

    let redirect_uris = uri_list(&obj, "redirect_uris")?;
    let post_logout_redirect_uris = uri_list(&obj, "post_logout_redirect_uris")?;
    if code_flow && redirect_uris.is_empty() {
        return Err(ApiError::invalid_field(
            "redirect_uris",
            "at least one is required for authorization_code",
        ));
    }

    let scopes = match string_list(&obj, "scopes")? {
        None => vec!["openid".to_owned()],
        Some(list) => {
            if list.is_empty() || list.len() > MAX_SCOPES {
                return Err(ApiError::invalid_field(
                    "scopes",
                    format!("must list 1-{MAX_SCOPES} scopes"),
                ));
            }
            let mut out: Vec<String> = Vec::new();
            for (i, s) in list.iter().enumerate() {
                if !scope_token_ok(s) {
                    return Err(ApiError::invalid_field(
                        format!("scopes[{i}]"),
                        "must be 1-64 characters of A-Z, a-z, 0-9, '.', '_', ':', '/' or '-'",
                    ));
                }
                if !out.contains(s) {
                    out.push(s.clone());
                }
            }
            out
        }
    };

    let jwks = obj_field(&obj, "jwks").cloned();
    let jwks_uri = match obj_field(&obj, "jwks_uri") {
        None => None,
        Some(Value::String(s)) => Some(key_set_uri(s)?),
        Some(_) => return Err(ApiError::invalid_field("jwks_uri", "must be a string")),
    };
    match (&jwks, &jwks_uri, token_endpoint_auth_method) {
        (Some(_), Some(_), _) => {
            return Err(ApiError::invalid_field(
                "jwks_uri",
                "give jwks or jwks_uri, not both",
            ))
        }
        (Some(j), None, _) => check_public_jwks(j, "jwks")?,
        (None, None, AuthMethod::PrivateKeyJwt) => {
            return Err(ApiError::invalid_field(
                "jwks",
                "is required for private_key_jwt (or jwks_uri)",
            ))
        }
        _ => {}
    }

    // OpenID Connect Registration §2: RS256 when the client names none.
    let id_token_signed_response_alg = match obj_field(&obj, "id_token_signed_response_alg") {
        None => SigningAlg::RS256,
        Some(Value::String(s)) => SigningAlg::parse(s).ok_or_else(|| {
            ApiError::invalid_field(
                "id_token_signed_response_alg",
                "must be RS256, EdDSA (or its RFC 9864 name Ed25519) or ES256",
            )
        })?,
        Some(_) => {
            return Err(ApiError::invalid_field(
                "id_token_signed_response_alg",
                "must be a string",
            ))
        }
    };

    let userinfo_signed_response_alg = match obj_field(&obj, "userinfo_signed_response_alg") {
        None => None,
        Some(Value::String(s)) => Some(SigningAlg::parse(s).ok_or_else(|| {
            ApiError::invalid_field(
                "userinfo_signed_response_alg",
                "must be RS256, EdDSA (or its RFC 9864 name Ed25519) or ES256",
            )
        })?),
        Some(_) => {
            return Err(ApiError::invalid_field(
                "userinfo_signed_response_alg",
                "must be a string",
            ))
        }
    };

    let require_pkce = match obj_field(&obj, "require_pkce") {
        None | Some(Value::Bool(true)) => true,
        Some(Value::Bool(false)) => {
            if token_endpoint_auth_method == AuthMethod::None {
                return Err(ApiError::invalid_field(
                    "require_pkce",
                    "may be false only for a confidential client (a public client always uses PKCE)",
                ));
            }
            false
        }
        Some(_) => return Err(ApiError::invalid_field("require_pkce", "must be a boolean")),
    };

    let link = |field: &str| match obj_field(&obj, field) {
        None => Ok(None),
        Some(Value::String(s)) => web_uri(field, s).map(Some),
        Some(_) => Err(ApiError::invalid_field(field, "must be a string")),
    };
    let about = AppLinks {
        logo_uri: link("logo_uri")?,
        policy_uri: link("policy_uri")?,
        tos_uri: link("tos_uri")?,
    };

    let mut request_uris: Vec<String> = Vec::new();
    let listed = string_list(&obj, "request_uris")?.unwrap_or_default();
    if listed.len() > MAX_REDIRECT_URIS {
        return Err(ApiError::invalid_field(
            "request_uris",
            format!("must list at most {MAX_REDIRECT_URIS}"),
        ));
    }
    for (i, s) in listed.iter().enumerate() {
        // Kept as sent: a request names it again exactly, fragment included.
        checked_web_uri(&format!("request_uris[{i}]"), s, true)?;
        if !request_uris.contains(s) {
            request_uris.push(s.clone());
        }
    }
    let request_object_signing_alg = match obj_field(&obj, "request_object_signing_alg") {
        None => None,
        Some(Value::String(s)) if s == "none" || SigningAlg::parse(s).is_some() => Some(s.clone()),
        Some(_) => {
            return Err(ApiError::invalid_field(
                "request_object_signing_alg",
                "must be none, RS256, EdDSA, Ed25519 or ES256",
            ))
        }
    };

    Ok(ClientSpec {
        name,
        redirect_uris,
        grant_types,
        scopes,
        token_endpoint_auth_method,
        jwks,
        jwks_uri,
        id_token_signed_response_alg,
        userinfo_signed_response_alg,
        require_pkce,
        post_logout_redirect_uris,
        about,
        request_uris,
        request_object_signing_alg,
    })
}

/// A URL a page may link to or load: absolute, https (plain http only on loopback), without
/// credentials or fragment, normalized.
fn web_uri(field: &str, s: &str) -> Result<String, ApiError> {
    checked_web_uri(field, s, false).map(|url| url.to_string())
}

/// [`web_uri`]'s checks, a fragment allowed only when `fragment_ok` (a `request_uri` may carry
/// its document's hash there); answers the parsed URL.
pub fn checked_web_uri(field: &str, s: &str, fragment_ok: bool) -> Result<Url, ApiError> {
    let bad = |why: &str| ApiError::invalid_field(field, why);
    if s.len() > MAX_REDIRECT_URI_LEN {
        return Err(bad("is too long"));
    }
    let url = Url::parse(s).map_err(|_| bad("is not an absolute URL"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not have credentials"));
    }
    if url.fragment().is_some() && !fragment_ok {
        return Err(bad("must not have a fragment"));
    }
    if Origin::from_referer(s).is_none() {
        return Err(bad("must be https (http only on loopback)"));
    }
    Ok(url)
}

/// A client's `jwks_uri`: absolute, https (plain http only on loopback), without fragment or
/// credentials. Whether it is on the partner's origins is checked with the redirect URIs.
fn key_set_uri(s: &str) -> Result<String, ApiError> {
    web_uri("jwks_uri", s)
}

/// Every algorithm `spec` signs with has a key (`available`): refused when it is registered,
/// never a 503 when a token or userinfo answer is signed.
pub fn check_signing_keys(spec: &ClientSpec, available: &[SigningAlg]) -> Result<(), ApiError> {
    let wanted = [
        (
            "id_token_signed_response_alg",
            Some(spec.id_token_signed_response_alg),
        ),
        (
            "userinfo_signed_response_alg",
            spec.userinfo_signed_response_alg,
        ),
    ];
    for (field, alg) in wanted {
        if let Some(alg) = alg.filter(|a| !available.contains(a)) {
            return Err(ApiError::invalid_field(
                field,
                format!("no {} key is configured to sign with", alg.as_str()),
            ));
        }
    }
    Ok(())
}

/// A list of redirect URIs (`redirect_uris`, `post_logout_redirect_uris`): at most
/// [`MAX_REDIRECT_URIS`], each checked and normalized, repeats dropped.
fn uri_list(obj: &Map<String, Value>, field: &str) -> Result<Vec<RedirectUri>, ApiError> {
    let Some(list) = string_list(obj, field)? else {
        return Ok(Vec::new());
    };
    if list.len() > MAX_REDIRECT_URIS {
        return Err(ApiError::invalid_field(
            field,
            format!("must list at most {MAX_REDIRECT_URIS}"),
        ));
    }
    let mut out: Vec<RedirectUri> = Vec::new();
    for (i, s) in list.iter().enumerate() {
        let uri = RedirectUri::parse(s)
            .map_err(|e| ApiError::invalid_field(format!("{field}[{i}]"), e))?;
        if !out.contains(&uri) {
            out.push(uri);
        }
    }
    Ok(out)
}

/// Every redirect URI must be on one of the partner's allowlisted origins.
pub fn check_redirects_on_partner(spec: &ClientSpec, partner: &Partner) -> Result<(), ApiError> {
    // Fetched by us, or loaded by the person's browser: only from the partner's own origins.
    let mut fetched: Vec<(String, &String)> = vec![];
    if let Some(uri) = &spec.jwks_uri {
        fetched.push(("jwks_uri".into(), uri));
    }
    if let Some(uri) = &spec.about.logo_uri {
        fetched.push(("logo_uri".into(), uri));
    }
    for (i, uri) in spec.request_uris.iter().enumerate() {
        fetched.push((format!("request_uris[{i}]"), uri));
    }
    for (field, uri) in fetched {
        if !Origin::from_referer(uri).is_some_and(|o| partner.origins.contains(&o)) {
            return Err(ApiError::invalid_field(
                field,
                "is not on one of the partner's origins",
            ));
        }
    }
    let lists = [
        ("redirect_uris", &spec.redirect_uris),
        ("post_logout_redirect_uris", &spec.post_logout_redirect_uris),
    ];
    for (field, uris) in lists {
        for (i, uri) in uris.iter().enumerate() {
            let on_allowlist = uri.origin().is_some_and(|o| partner.origins.contains(&o));
            if !on_allowlist {
                return Err(ApiError::invalid_field(
                    format!("{field}[{i}]"),
                    "is not on one of the partner's origins",
                ));
            }
        }
    }
    Ok(())
}

/// Where logout may send the browser back to: `uri` exactly as one of the client's
/// `post_logout_redirect_uris` (its redirect URIs, for a record of an earlier release that has
/// none), while the client's partner is active and still holds the URI's origin. An origin the partner gave
/// up may belong to someone else by now; a suspended partner's apps get no redirects.
pub fn post_logout_destination<'a>(
    client: &'a ClientRecord,
    partner: &Partner,
    uri: &str,
) -> Option<&'a RedirectUri> {
    if partner.id != client.partner_id || partner.status != PartnerStatus::Active {
        return None;
    }
    client
        .post_logout_redirect_uris
        .as_ref()
        .unwrap_or(&client.redirect_uris)
        .iter()
        .find(|r| r.as_str() == uri)
        .filter(|r| r.origin().is_some_and(|o| partner.origins.contains(&o)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn post_logout_destination_needs_registration_an_active_partner_and_its_origin() {
        let client = ClientRecord {
            client_id: ClientId::parse("abcdefghijklmnopqrstuv").unwrap(),
            partner_id: PartnerId::parse("acme").unwrap(),
            name: "App".into(),
            redirect_uris: vec![
                RedirectUri::parse("https://app.acme.example/bye").unwrap(),
                RedirectUri::parse("https://old.acme.example/bye").unwrap(),
            ],
            grant_types: vec![GrantType::AuthorizationCode],
            scopes: vec!["openid".into()],
            token_endpoint_auth_method: AuthMethod::None,
            jwks: None,
            jwks_uri: None,
            id_token_signed_response_alg: SigningAlg::EdDSA,
            userinfo_signed_response_alg: None,
            require_pkce: true,
            post_logout_redirect_uris: None,
            about: AppLinks::default(),
            request_uris: vec![],
            request_object_signing_alg: None,
            registered_with: None,
            secret_hash: None,
            created_at: 0,
        };
        let p = partner();
        assert_eq!(
            post_logout_destination(&client, &p, "https://app.acme.example/bye")
                .map(RedirectUri::as_str),
            Some("https://app.acme.example/bye")
        );
        // Registered, but the partner no longer holds the origin.
        assert!(post_logout_destination(&client, &p, "https://old.acme.example/bye").is_none());
        // Not registered (exact match only).
        assert!(post_logout_destination(&client, &p, "https://app.acme.example/bye/").is_none());
        assert!(post_logout_destination(&client, &p, "https://evil.example/bye").is_none());
        // A suspended partner, or another partner's record.
        let suspended = Partner {
            status: PartnerStatus::Suspended,
            ..partner()
        };
        assert!(
            post_logout_destination(&client, &suspended, "https://app.acme.example/bye").is_none()
        );
        let other = Partner {
            id: PartnerId::parse("other").unwrap(),
            ..partner()
        };
        assert!(post_logout_destination(&client, &other, "https://app.acme.example/bye").is_none());
    }

    fn partner() -> Partner {
        Partner {
            id: PartnerId::parse("acme").unwrap(),
            name: "Acme".into(),
            origins: vec![Origin::parse("https://app.acme.example").unwrap()],
            status: PartnerStatus::Active,
            issuer: "https://app.acme.example".into(),
            jwks: None,
            jwks_uri: None,
            rate_limits: None,
            subject_salt: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn redirect_uri_is_normalized_and_checked() {
        assert_eq!(
            RedirectUri::parse("https://App.Acme.example:443/cb?x=1")
                .unwrap()
                .as_str(),
            "https://app.acme.example/cb?x=1"
        );
        assert!(RedirectUri::parse("http://localhost:8080/cb").is_ok());
        for bad in [
            "/cb",
            "https://app.acme.example/cb#frag",
            "https://u:p@app.acme.example/cb",
            "http://app.acme.example/cb",
            "javascript:alert(1)",
            "https://app.acme.example./cb",
            "custom-scheme:/cb",
        ] {
            assert!(RedirectUri::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn client_spec_defaults() {
        let s =
            parse_client_spec(br#"{"name":"App","redirect_uris":["https://app.acme.example/cb"]}"#)
                .unwrap();
        assert_eq!(
            s.grant_types,
            vec![GrantType::AuthorizationCode, GrantType::RefreshToken]
        );
        assert_eq!(s.token_endpoint_auth_method, AuthMethod::ClientSecretBasic);
        assert_eq!(s.scopes, vec!["openid".to_owned()]);
        assert_eq!(
            s.id_token_signed_response_alg,
            SigningAlg::RS256,
            "OpenID Connect Registration §2"
        );
        assert!(s.require_pkce);
        assert!(s.post_logout_redirect_uris.is_empty());
        assert!(check_redirects_on_partner(&s, &partner()).is_ok());
        let no_pkce = parse_client_spec(
            br#"{"name":"App","redirect_uris":["https://app.acme.example/cb"],"require_pkce":false,"post_logout_redirect_uris":["https://app.acme.example/bye"]}"#,
        )
        .unwrap();
        assert!(!no_pkce.require_pkce);
        assert!(check_redirects_on_partner(&no_pkce, &partner()).is_ok());
        let public = parse_client_spec(
            br#"{"name":"App","redirect_uris":["https://app.acme.example/cb"],"token_endpoint_auth_method":"none","require_pkce":false}"#,
        )
        .unwrap_err();
        assert_eq!(public.field.as_deref(), Some("require_pkce"));
        let elsewhere = parse_client_spec(
            br#"{"name":"App","redirect_uris":["https://app.acme.example/cb"],"post_logout_redirect_uris":["https://evil.example/bye"]}"#,
        )
        .unwrap();
        assert!(check_redirects_on_partner(&elsewhere, &partner()).is_err());
    }

    #[test]
    fn client_spec_names_the_offending_field() {
        let cases: &[(&[u8], &str)] = &[
            (br#"{"redirect_uris":["https://app.acme.example/cb"]}"#, "name"),
            (br#"{"name":"A"}"#, "redirect_uris"),
            (br#"{"name":"A","redirect_uris":["https://app.acme.example/cb#x"]}"#, "redirect_uris[0]"),
            (br#"{"name":"A","redirect_uris":"https://app.acme.example/cb"}"#, "redirect_uris"),
            (br#"{"name":"A","redirect_uris":["https://app.acme.example/cb"],"grant_types":["implicit"]}"#, "grant_types[0]"),
            (br#"{"name":"A","grant_types":["refresh_token"]}"#, "grant_types"),
            (br#"{"name":"A","grant_types":["client_credentials"],"token_endpoint_auth_method":"none"}"#, "grant_types"),
            (br#"{"name":"A","grant_types":["urn:ietf:params:oauth:grant-type:jwt-bearer"],"token_endpoint_auth_method":"none"}"#, "grant_types"),
            (br#"{"name":"A","redirect_uris":["https://app.acme.example/cb"],"token_endpoint_auth_method":"tls"}"#, "token_endpoint_auth_method"),
            (br#"{"name":"A","redirect_uris":["https://app.acme.example/cb"],"token_endpoint_auth_method":"private_key_jwt"}"#, "jwks"),
            (br#"{"name":"A","redirect_uris":["https://app.acme.example/cb"],"scopes":["a b"]}"#, "scopes[0]"),
            (br#"{"name":"A","redirect_uris":["https://app.acme.example/cb"],"scopes":[]}"#, "scopes"),
            (br#"{"name":"A","redirect_uris":["https://app.acme.example/cb"],"id_token_signed_response_alg":"none"}"#, "id_token_signed_response_alg"),
        ];
        for (body, field) in cases {
            let err = parse_client_spec(body).unwrap_err();
            assert_eq!(
                err.field.as_deref(),
                Some(*field),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        // An unknown member is refused without naming it back: it is the caller's text.
        let err = parse_client_spec(br#"{"name":"A","redirect_uris":["https://app.acme.example/cb"],"client_secret":"mine"}"#).unwrap_err();
        assert_eq!(err.field, None);
        assert!(
            !err.description.contains("client_secret"),
            "{}",
            err.description
        );
    }

    #[test]
    fn private_keys_in_jwks_are_refused() {
        let body = br#"{"name":"A","grant_types":["client_credentials"],"token_endpoint_auth_method":"private_key_jwt",
            "jwks":{"keys":[{"kty":"OKP","crv":"Ed25519","x":"abc","d":"secret"}]}}"#;
        assert_eq!(
            parse_client_spec(body).unwrap_err().field.as_deref(),
            Some("jwks.keys[0]")
        );
        let sym = br#"{"name":"A","grant_types":["client_credentials"],"token_endpoint_auth_method":"private_key_jwt",
            "jwks":{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}}"#;
        assert_eq!(
            parse_client_spec(sym).unwrap_err().field.as_deref(),
            Some("jwks.keys[0]")
        );
    }

    #[test]
    fn redirect_off_the_partner_allowlist_is_refused() {
        for uri in [
            "https://evil.example/cb",
            "https://app.acme.example.evil.example/cb",
            "https://app.acme.example:8443/cb",
        ] {
            let body = format!("{{\"name\":\"A\",\"redirect_uris\":[\"{uri}\"]}}");
            let spec = parse_client_spec(body.as_bytes()).unwrap();
            let err = check_redirects_on_partner(&spec, &partner()).unwrap_err();
            assert_eq!(err.field.as_deref(), Some("redirect_uris[0]"), "{uri}");
        }
    }

    #[test]
    fn redirect_uri_normalized_form_stays_within_the_limit_and_reparses() {
        // Fuzz finding (origin target): control characters are percent-encoded on
        // normalization, so a URI under the limit could be stored over it and fail to load.
        let raw = format!(
            "https://app.acme.example/{}",
            "\u{1}x".repeat(MAX_REDIRECT_URI_LEN / 4)
        );
        assert!(raw.len() <= MAX_REDIRECT_URI_LEN);
        assert!(RedirectUri::parse(&raw).is_err());
        let ok = RedirectUri::parse("https://app.acme.example/cb?x=a b").unwrap();
        assert_eq!(RedirectUri::parse(ok.as_str()).unwrap(), ok);
    }
}
