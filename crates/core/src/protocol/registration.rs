//! Dynamic Client Registration (RFC 7591) and its management protocol (RFC 7592), never open
//! to the world: an operator gives a partner an initial access token, which registers clients
//! for that partner only, on its origins, with the grant types and scopes the operator allowed.
//! Each registered client gets a registration access token for its configuration endpoint.
//! Every token here is stored as a SHA-256 hash; the rules are the admin API's
//! ([`parse_client_spec`]), applied to RFC 7591's names.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::client::{
    check_redirects_on_partner, check_signing_keys, checked_web_uri, parse_client_spec,
    scope_token_ok, ClientRecord, ClientSpec, GrantType, MAX_SCOPES,
};
use super::discovery::Issuer;
use super::error::{ApiError, ErrorCode};
use super::jwk::SigningAlg;
use super::partner::{Partner, PartnerId, PartnerStatus};
use crate::routes;

/// How long an initial access token lives when the operator does not say: a week.
pub const DEFAULT_TOKEN_LIFETIME_S: u64 = 7 * 24 * 3600;
/// The longest an initial access token may live: 90 days.
pub const MAX_TOKEN_LIFETIME_S: u64 = 90 * 24 * 3600;
/// The most clients one initial access token may be allowed to register.
pub const MAX_REGISTRATIONS: u32 = 10_000;

/// What clients registered with one initial access token may be.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub grant_types: Vec<GrantType>,
    pub scopes: Vec<String>,
    /// Clients must use PKCE; when `false`, a confidential client may be registered without it
    /// (it then sends a `nonce`, RFC 9700 §2.1.1).
    pub require_pkce: bool,
}

/// An initial access token as stored (its hash is the key) and as the admin API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationToken {
    /// A public name for the token, to list and revoke it by; not the token.
    pub id: String,
    pub partner_id: PartnerId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub policy: Policy,
    pub expires_at: u64,
    /// How many clients it may register (`None`: any number until it expires).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_registrations: Option<u32>,
    pub registrations: u32,
    pub created_at: u64,
}

/// What the edge may read of an initial access token before it troubles the registry:
/// published to KV under [`edge_key`], so a guessed token is refused without an object call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeToken {
    pub partner_id: PartnerId,
    pub expires_at: u64,
}

/// The KV key of an initial access token's [`EdgeToken`], by the token's hash.
pub fn edge_key(token_hash: &str) -> String {
    format!("registration-token:{token_hash}")
}

/// The admin input of `POST /admin/partners/{id}/registration-tokens`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenSpec {
    pub label: Option<String>,
    pub policy: Policy,
    pub expires_in: u64,
    pub max_registrations: Option<u32>,
}

/// Parses `POST /admin/partners/{id}/registration-tokens`.
pub fn parse_token_spec(body: &[u8]) -> Result<TokenSpec, ApiError> {
    const FIELDS: &[&str] = &[
        "label",
        "grant_types",
        "scopes",
        "require_pkce",
        "expires_in",
        "max_registrations",
    ];
    let obj = super::json::parse_object(body)?;
    if obj.keys().any(|k| !FIELDS.contains(&k.as_str())) {
        return Err(super::json::unknown_member(None, FIELDS));
    }
    // The grant types and scopes are checked by the client rules themselves: a policy is the
    // set of clients it could register, so it must be a valid registration of its own.
    let mut probe = Map::new();
    probe.insert("name".into(), "probe".into());
    probe.insert(
        "redirect_uris".into(),
        json!(["https://registration.invalid/cb"]),
    );
    for f in ["grant_types", "scopes"] {
        if let Some(v) = obj.get(f).filter(|v| !v.is_null()) {
            probe.insert(f.into(), v.clone());
        }
    }
    let probe = parse_client_spec(Value::Object(probe).to_string().as_bytes())?;
    let require_pkce = match obj.get("require_pkce") {
        None | Some(Value::Null) | Some(Value::Bool(true)) => true,
        Some(Value::Bool(false)) => false,
        Some(_) => return Err(ApiError::invalid_field("require_pkce", "must be a boolean")),
    };
    let expires_in = match obj.get("expires_in") {
        None | Some(Value::Null) => DEFAULT_TOKEN_LIFETIME_S,
        Some(v) => v
            .as_u64()
            .filter(|s| (60..=MAX_TOKEN_LIFETIME_S).contains(s))
            .ok_or_else(|| {
                ApiError::invalid_field(
                    "expires_in",
                    format!("must be whole seconds from 60 to {MAX_TOKEN_LIFETIME_S}"),
                )
            })?,
    };
    let max_registrations = match obj.get("max_registrations") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|n| (1..=u64::from(MAX_REGISTRATIONS)).contains(n))
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    ApiError::invalid_field(
                        "max_registrations",
                        format!("must be a whole number from 1 to {MAX_REGISTRATIONS}"),
                    )
                })?,
        ),
    };
    let label = match obj.get("label") {
        None | Some(Value::Null) => None,
        Some(Value::String(s))
            if !s.trim().is_empty() && s.chars().count() <= 100 && super::text::displayable(s) =>
        {
            Some(s.trim().to_owned())
        }
        Some(_) => {
            return Err(ApiError::invalid_field(
                "label",
                "must be 1-100 displayable characters",
            ))
        }
    };
    Ok(TokenSpec {
        label,
        policy: Policy {
            grant_types: probe.grant_types,
            scopes: probe.scopes,
            require_pkce,
        },
        expires_in,
        max_registrations,
    })
}

fn token_refused(why: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidToken, why)
}

/// Registers a client with `token` for `partner` from the RFC 7591 `metadata`: the token must be
/// live and not used up, the partner active, and the client within the token's policy and on
/// the partner's origins. `signing_algs` are the algorithms we hold keys for.
pub fn register(
    token: &RegistrationToken,
    partner: &Partner,
    metadata: &[u8],
    checks: &Checked,
    now: u64,
) -> Result<ClientSpec, ApiError> {
    if now >= token.expires_at {
        return Err(token_refused("the initial access token has expired"));
    }
    if token
        .max_registrations
        .is_some_and(|max| token.registrations >= max)
    {
        return Err(token_refused(
            "the initial access token has registered all the clients it may",
        ));
    }
    if partner.id != token.partner_id {
        return Err(token_refused("the initial access token is not valid"));
    }
    client_for(&token.policy, partner, metadata, checks)
}

/// What the edge established before a registration reaches the registry: the algorithms it
/// holds keys for, and the `sector_identifier_uri` whose document it fetched and found to list
/// every redirect URI ([`check_sector`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checked {
    pub signing_algs: Vec<SigningAlg>,
    pub sector_identifier_uri: Option<String>,
}

fn metadata_object(metadata: &[u8]) -> Result<Map<String, Value>, ApiError> {
    super::json::parse_object(metadata).map_err(|e| ApiError {
        code: ErrorCode::InvalidClientMetadata,
        ..e
    })
}

/// The `sector_identifier_uri` a registration names (OpenID Connect Registration §5), which we
/// are to fetch: https (http only on loopback), on one of `partner`'s origins.
pub fn sector_uri(metadata: &[u8], partner: &Partner) -> Result<Option<String>, ApiError> {
    let obj = metadata_object(metadata)?;
    let Some(v) = obj.get("sector_identifier_uri").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let uri = v
        .as_str()
        .ok_or_else(|| metadata_error("sector_identifier_uri", "must be a string"))?;
    checked_web_uri("sector_identifier_uri", uri, false).map_err(as_metadata_error)?;
    let on_partner =
        super::origin::Origin::from_referer(uri).is_some_and(|o| partner.origins.contains(&o));
    if !on_partner {
        return Err(metadata_error(
            "sector_identifier_uri",
            "must be on one of the partner's origins",
        ));
    }
    // As sent: the registry compares it with the metadata's own.
    Ok(Some(uri.to_owned()))
}

/// The sector document (a JSON array of URIs) lists every one of the registration's
/// `redirect_uris` (OpenID Connect Registration §5), compared as they would be registered.
pub fn check_sector(document: &Value, metadata: &[u8]) -> Result<(), ApiError> {
    let refused = |why: &str| metadata_error("sector_identifier_uri", why);
    let listed: Vec<String> = document
        .as_array()
        .ok_or_else(|| refused("the document is not a JSON array of URIs"))?
        .iter()
        .filter_map(Value::as_str)
        .filter_map(|u| super::client::RedirectUri::parse(u).ok())
        .map(|u| u.as_str().to_owned())
        .collect();
    let obj = metadata_object(metadata)?;
    let uris = obj
        .get("redirect_uris")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for uri in &uris {
        let normalized = uri
            .as_str()
            .and_then(|u| super::client::RedirectUri::parse(u).ok())
            .map(|u| u.as_str().to_owned());
        if !normalized.is_some_and(|u| listed.contains(&u)) {
            return Err(refused("its document does not list every redirect URI"));
        }
    }
    Ok(())
}

/// The client `metadata` describes (RFC 7591 §2), within `policy`, on `partner`'s origins:
/// a registration, or the full replacement of one (RFC 7592 §2.2).
pub fn client_for(
    policy: &Policy,
    partner: &Partner,
    metadata: &[u8],
    checks: &Checked,
) -> Result<ClientSpec, ApiError> {
    if partner.status != PartnerStatus::Active {
        return Err(ApiError::new(
            ErrorCode::PartnerSuspended,
            "the partner is suspended: it cannot register clients",
        ));
    }
    let spec = parse_metadata(metadata, policy, checks.sector_identifier_uri.as_deref())?;
    check_redirects_on_partner(&spec, partner).map_err(as_metadata_error)?;
    check_policy(&spec, policy)?;
    check_signing_keys(&spec, &checks.signing_algs).map_err(as_metadata_error)?;
    Ok(spec)
}

fn metadata_error(field: &str, why: impl Into<String>) -> ApiError {
    as_metadata_error(ApiError::invalid_field(field, why))
}

/// RFC 7591 §3.2.2's codes for a refused field: `invalid_redirect_uri` for a redirect URI,
/// `invalid_client_metadata` for any other; fields by their RFC 7591 names.
fn as_metadata_error(e: ApiError) -> ApiError {
    if e.code != ErrorCode::InvalidRequest {
        return e;
    }
    let Some(field) = e.field.clone() else {
        return ApiError {
            code: ErrorCode::InvalidClientMetadata,
            ..e
        };
    };
    let (admin, rfc) = match field.split(['[', '.']).next().unwrap_or("") {
        "name" => ("name", "client_name"),
        "scopes" => ("scopes", "scope"),
        _ => ("", ""),
    };
    let (field, description) = if admin.is_empty() {
        (field, e.description)
    } else {
        let renamed = |s: &str| format!("{rfc}{}", &s[admin.len().min(s.len())..]);
        (renamed(&field), renamed(&e.description))
    };
    let code =
        if field.starts_with("redirect_uris") || field.starts_with("post_logout_redirect_uris") {
            ErrorCode::InvalidRedirectUri
        } else {
            ErrorCode::InvalidClientMetadata
        };
    ApiError {
        code,
        field: Some(field),
        description,
        ..e
    }
}

/// Metadata we understand but do not offer: refused rather than ignored, so a client never
/// believes it has, say, signed userinfo when it has not.
const NOT_OFFERED: &[&str] = &[
    "request_object_encryption_alg",
    "request_object_encryption_enc",
    "userinfo_encrypted_response_alg",
    "userinfo_encrypted_response_enc",
    "id_token_encrypted_response_alg",
    "id_token_encrypted_response_enc",
    "token_endpoint_auth_signing_alg",
    "default_max_age",
    "default_acr_values",
    "initiate_login_uri",
    "tls_client_auth_subject_dn",
    "backchannel_logout_uri",
    "frontchannel_logout_uri",
];

/// RFC 7591 metadata as a [`ClientSpec`], with `policy`'s defaults. Members we do not know are
/// ignored (RFC 7591 §2); members we know but do not offer are refused.
fn parse_metadata(
    body: &[u8],
    policy: &Policy,
    sector_checked: Option<&str>,
) -> Result<ClientSpec, ApiError> {
    let obj = metadata_object(body)?;
    let present = |f: &str| obj.get(f).filter(|v| !v.is_null());
    if present("software_statement").is_some() {
        return Err(ApiError::new(
            ErrorCode::UnapprovedSoftwareStatement,
            "software statements are not accepted: register with an initial access token",
        ));
    }
    if let Some(f) = NOT_OFFERED.iter().find(|f| present(f).is_some()) {
        return Err(metadata_error(f, "is not supported by this server"));
    }
    // Subjects are pairwise per partner whatever the sector; the document was checked to list
    // the redirect URIs before the registration came here.
    match present("sector_identifier_uri") {
        None => {}
        Some(Value::String(s)) if Some(s.as_str()) == sector_checked => {}
        Some(_) => {
            return Err(metadata_error(
                "sector_identifier_uri",
                "was not checked against its document",
            ))
        }
    }
    match present("subject_type") {
        None => {}
        Some(Value::String(s)) if s == "pairwise" => {}
        Some(_) => {
            return Err(metadata_error(
                "subject_type",
                "must be pairwise: subjects are pairwise per partner",
            ))
        }
    }
    match present("require_auth_time") {
        None | Some(Value::Bool(_)) => {}
        Some(_) => return Err(metadata_error("require_auth_time", "must be a boolean")),
    }

    let mut spec = Map::new();
    match present("client_name") {
        Some(v) => spec.insert("name".into(), v.clone()),
        None => return Err(metadata_error("client_name", "is required")),
    };
    // Members RFC 7591 and the admin API name alike.
    for field in [
        "redirect_uris",
        "post_logout_redirect_uris",
        "token_endpoint_auth_method",
        "jwks",
        "jwks_uri",
        "id_token_signed_response_alg",
        "userinfo_signed_response_alg",
        "logo_uri",
        "policy_uri",
        "tos_uri",
        "request_uris",
        "request_object_signing_alg",
    ] {
        if let Some(v) = present(field) {
            spec.insert(field.into(), v.clone());
        }
    }
    // RFC 7591 §2: authorization_code when the client names no grant type.
    let grant_types = present("grant_types")
        .cloned()
        .unwrap_or_else(|| json!(["authorization_code"]));
    spec.insert("grant_types".into(), grant_types);
    let scopes: Vec<String> = match present("scope") {
        None => policy.scopes.clone(),
        Some(Value::String(s)) => {
            let list: Vec<String> = s
                .split(' ')
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect();
            if list.is_empty() || list.len() > MAX_SCOPES || !list.iter().all(|t| scope_token_ok(t))
            {
                return Err(metadata_error(
                    "scope",
                    format!("must be 1-{MAX_SCOPES} scope tokens separated by spaces"),
                ));
            }
            list
        }
        Some(_) => return Err(metadata_error("scope", "must be a string")),
    };
    spec.insert("scopes".into(), json!(scopes));
    let public = present("token_endpoint_auth_method").and_then(Value::as_str) == Some("none");
    let require_pkce = match present("require_pkce") {
        None => policy.require_pkce || public,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(metadata_error("require_pkce", "must be a boolean")),
    };
    if !require_pkce && policy.require_pkce {
        return Err(metadata_error(
            "require_pkce",
            "clients registered with this initial access token must use PKCE",
        ));
    }
    spec.insert("require_pkce".into(), require_pkce.into());

    let spec =
        parse_client_spec(Value::Object(spec).to_string().as_bytes()).map_err(as_metadata_error)?;
    // RFC 7591 §2.1: response types agree with grant types. Only the code flow is offered.
    let code_flow = spec.grant_types.contains(&GrantType::AuthorizationCode);
    match present("response_types") {
        None => {}
        Some(Value::Array(items)) => {
            let codes = items.iter().all(|t| t.as_str() == Some("code"));
            if !codes {
                return Err(metadata_error(
                    "response_types",
                    "only code is supported (the implicit and hybrid flows are not offered)",
                ));
            }
            if items.is_empty() == code_flow {
                return Err(metadata_error(
                    "response_types",
                    "must be [\"code\"] exactly when grant_types has authorization_code",
                ));
            }
        }
        Some(_) => return Err(metadata_error("response_types", "must be an array")),
    }
    Ok(spec)
}

fn check_policy(spec: &ClientSpec, policy: &Policy) -> Result<(), ApiError> {
    if let Some(g) = spec
        .grant_types
        .iter()
        .find(|g| !policy.grant_types.contains(g))
    {
        return Err(metadata_error(
            "grant_types",
            format!(
                "{} is not allowed for this partner's registrations",
                grant_type_name(*g)
            ),
        ));
    }
    if let Some(s) = spec.scopes.iter().find(|s| !policy.scopes.contains(s)) {
        return Err(metadata_error(
            "scope",
            format!("{s} is not allowed for this partner's registrations"),
        ));
    }
    Ok(())
}

fn grant_type_name(g: GrantType) -> &'static str {
    match g {
        GrantType::AuthorizationCode => "authorization_code",
        GrantType::RefreshToken => "refresh_token",
        GrantType::ClientCredentials => "client_credentials",
        GrantType::JwtBearer => super::client::JWT_BEARER_GRANT,
    }
}

/// The client information response (RFC 7591 §3.2.1, RFC 7592 §3): the registered metadata,
/// the credentials issued now (`secret`: a new client secret; `access_token`: the registration
/// access token the client is to use next), and where to manage the registration.
pub fn client_information(
    client: &ClientRecord,
    issuer: &Issuer,
    secret: Option<&str>,
    access_token: &str,
) -> Value {
    let mut out = Map::new();
    out.insert("client_id".into(), client.client_id.as_str().into());
    out.insert("client_id_issued_at".into(), client.created_at.into());
    if let Some(secret) = secret {
        out.insert("client_secret".into(), secret.into());
    }
    if client.token_endpoint_auth_method.uses_secret() {
        // 0: the secret does not expire (RFC 7591 §3.2.1).
        out.insert("client_secret_expires_at".into(), 0.into());
    }
    out.insert("registration_access_token".into(), access_token.into());
    out.insert(
        "registration_client_uri".into(),
        issuer
            .url(&routes::registration_client_path(client.client_id.as_str()))
            .into(),
    );
    out.insert("client_name".into(), client.name.as_str().into());
    out.insert("redirect_uris".into(), json!(client.redirect_uris));
    out.insert(
        "post_logout_redirect_uris".into(),
        json!(client.post_logout_redirect_uris.clone().unwrap_or_default()),
    );
    out.insert(
        "grant_types".into(),
        json!(client
            .grant_types
            .iter()
            .map(|g| grant_type_name(*g))
            .collect::<Vec<_>>()),
    );
    let response_types: &[&str] = if client.grant_types.contains(&GrantType::AuthorizationCode) {
        &["code"]
    } else {
        &[]
    };
    out.insert("response_types".into(), json!(response_types));
    out.insert(
        "token_endpoint_auth_method".into(),
        json!(client.token_endpoint_auth_method),
    );
    out.insert("scope".into(), client.scopes.join(" ").into());
    if let Some(jwks) = &client.jwks {
        out.insert("jwks".into(), jwks.clone());
    }
    if let Some(uri) = &client.jwks_uri {
        out.insert("jwks_uri".into(), uri.as_str().into());
    }
    out.insert(
        "id_token_signed_response_alg".into(),
        client.id_token_signed_response_alg.as_str().into(),
    );
    for (field, uri) in [
        ("logo_uri", &client.about.logo_uri),
        ("policy_uri", &client.about.policy_uri),
        ("tos_uri", &client.about.tos_uri),
    ] {
        if let Some(uri) = uri {
            out.insert(field.into(), uri.as_str().into());
        }
    }
    if !client.request_uris.is_empty() {
        out.insert("request_uris".into(), json!(client.request_uris));
    }
    if let Some(alg) = &client.request_object_signing_alg {
        out.insert("request_object_signing_alg".into(), alg.as_str().into());
    }
    if let Some(alg) = client.userinfo_signed_response_alg {
        out.insert("userinfo_signed_response_alg".into(), alg.as_str().into());
    }
    out.insert("subject_type".into(), "pairwise".into());
    out.insert("require_pkce".into(), client.require_pkce.into());
    Value::Object(out)
}

/// `client` as an update (RFC 7592 §2.2) replaces it with `spec`: the same id, partner and
/// creation time; the same secret while its method takes one (a secret is shown only when
/// issued, so it is not rotated unasked), `new_secret_hash` when it comes to take one, none
/// when it no longer does. Answers the record and whether the new secret was issued.
pub fn updated(
    client: &ClientRecord,
    spec: ClientSpec,
    new_secret_hash: &str,
) -> (ClientRecord, bool) {
    let registered_with = client.registered_with.clone();
    let (secret_hash, issued) = match (
        spec.token_endpoint_auth_method.uses_secret(),
        &client.secret_hash,
    ) {
        (false, _) => (None, false),
        (true, Some(h)) => (Some(h.clone()), false),
        (true, None) => (Some(new_secret_hash.to_owned()), true),
    };
    let record = ClientRecord {
        registered_with,
        ..ClientRecord::from_spec(
            client.client_id.clone(),
            client.partner_id.clone(),
            spec,
            secret_hash,
            client.created_at,
        )
    };
    (record, issued)
}

/// Whether `presented` (a hash) is `stored`, compared in constant time.
pub fn hash_matches(stored: &str, presented: &str) -> bool {
    use subtle::ConstantTimeEq;
    !stored.is_empty() && bool::from(stored.as_bytes().ct_eq(presented.as_bytes()))
}

/// What an update (RFC 7592 §2.2) must repeat: the client's id, and its secret if it sends one.
/// Answers the secret sent, if any, for the registry to compare with the stored hash.
pub fn update_identity<'a>(
    metadata: &'a Value,
    client_id: &str,
) -> Result<Option<&'a str>, ApiError> {
    match metadata.get("client_id") {
        Some(Value::String(id)) if id == client_id => {}
        _ => {
            return Err(metadata_error(
                "client_id",
                "must be sent, and be the client's id",
            ))
        }
    }
    match metadata.get("client_secret") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(metadata_error("client_secret", "must be a string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::client::AuthMethod;
    use crate::protocol::origin::Origin;

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

    fn token(policy: Policy) -> RegistrationToken {
        RegistrationToken {
            id: "tok1".into(),
            partner_id: PartnerId::parse("acme").unwrap(),
            label: None,
            policy,
            expires_at: 1000,
            max_registrations: Some(2),
            registrations: 0,
            created_at: 0,
        }
    }

    fn policy() -> Policy {
        Policy {
            grant_types: vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
            scopes: vec!["openid".into(), "profile".into(), "email".into()],
            require_pkce: true,
        }
    }

    fn checks() -> Checked {
        Checked {
            signing_algs: vec![SigningAlg::RS256, SigningAlg::EdDSA],
            sector_identifier_uri: None,
        }
    }

    fn reg(t: &RegistrationToken, body: &str) -> Result<ClientSpec, ApiError> {
        register(t, &partner(), body.as_bytes(), &checks(), 10)
    }

    const OK: &str = r#"{"client_name":"App","redirect_uris":["https://app.acme.example/cb"]}"#;

    #[test]
    fn registration_maps_rfc7591_names_and_defaults_onto_the_client_rules() {
        let spec = reg(&token(policy()), OK).unwrap();
        assert_eq!(spec.name, "App");
        // RFC 7591 §2 defaults: authorization_code, client_secret_basic; scopes from the policy.
        assert_eq!(spec.grant_types, vec![GrantType::AuthorizationCode]);
        assert_eq!(
            spec.token_endpoint_auth_method,
            AuthMethod::ClientSecretBasic
        );
        assert_eq!(spec.scopes, policy().scopes);
        assert_eq!(spec.id_token_signed_response_alg, SigningAlg::RS256);
        assert!(spec.require_pkce);
        let narrowed = reg(
            &token(policy()),
            r#"{"client_name":"App","redirect_uris":["https://app.acme.example/cb"],"scope":"openid email","response_types":["code"],"contacts":["x@acme.example"],"unknown_member":1}"#,
        )
        .unwrap();
        assert_eq!(narrowed.scopes, vec!["openid", "email"]);
    }

    #[test]
    fn a_token_that_allows_it_registers_confidential_clients_without_pkce_by_default() {
        let relaxed = token(Policy {
            require_pkce: false,
            ..policy()
        });
        assert!(!reg(&relaxed, OK).unwrap().require_pkce);
        // A public client always uses PKCE, and any client may ask for it.
        let public = r#"{"client_name":"App","redirect_uris":["https://app.acme.example/cb"],"token_endpoint_auth_method":"none"}"#;
        assert!(reg(&relaxed, public).unwrap().require_pkce);
        let asks = r#"{"client_name":"App","redirect_uris":["https://app.acme.example/cb"],"require_pkce":true}"#;
        assert!(reg(&relaxed, asks).unwrap().require_pkce);
        // A strict token refuses a client that asks to go without.
        let without = r#"{"client_name":"App","redirect_uris":["https://app.acme.example/cb"],"require_pkce":false}"#;
        let e = reg(&token(policy()), without).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidClientMetadata);
        assert_eq!(e.field.as_deref(), Some("require_pkce"));
    }

    #[test]
    fn refused_registrations_answer_rfc7591_codes_with_rfc7591_field_names() {
        let t = token(policy());
        let cases = [
            (
                r#"{"client_name":"App","redirect_uris":["https://app.acme.example/cb#foobar"]}"#,
                ErrorCode::InvalidRedirectUri,
                "redirect_uris[0]",
            ),
            (
                r#"{"client_name":"App","redirect_uris":["https://evil.example/cb"]}"#,
                ErrorCode::InvalidRedirectUri,
                "redirect_uris[0]",
            ),
            (
                r#"{"client_name":"App","redirect_uris":["https://app.acme.example/cb"],"post_logout_redirect_uris":["https://evil.example/bye"]}"#,
                ErrorCode::InvalidRedirectUri,
                "post_logout_redirect_uris[0]",
            ),
            (
                r#"{"redirect_uris":["https://app.acme.example/cb"]}"#,
                ErrorCode::InvalidClientMetadata,
                "client_name",
            ),
            (
                r#"{"client_name":"App","redirect_uris":["https://app.acme.example/cb"],"grant_types":["client_credentials"]}"#,
                ErrorCode::InvalidClientMetadata,
                "grant_types",
            ),
            (
                r#"{"client_name":"App","redirect_uris":["https://app.acme.example/cb"],"scope":"openid roles"}"#,
                ErrorCode::InvalidClientMetadata,
                "scope",
            ),
            (
                r#"{"client_name":"App","redirect_uris":["https://app.acme.example/cb"],"scope":"bad\u0000scope"}"#,
                ErrorCode::InvalidClientMetadata,
                "scope",
            ),
            (
                r#"{"client_name":"App","redirect_uris":["https://app.acme.example/cb"],"response_types":["code id_token"]}"#,
                ErrorCode::InvalidClientMetadata,
                "response_types",
            ),
            (
                r#"{"client_name":"App","redirect_uris":["https://app.acme.example/cb"],"jwks_uri":"https://evil.example/jwks"}"#,
                ErrorCode::InvalidClientMetadata,
                "jwks_uri",
            ),
            (
                r#"{"client_name":"App","redirect_uris":["https://app.acme.example/cb"],"userinfo_signed_response_alg":"ES256"}"#,
                ErrorCode::InvalidClientMetadata,
                "userinfo_signed_response_alg",
            ),
            (
                r#"{"client_name":"App","redirect_uris":["https://app.acme.example/cb"],"userinfo_encrypted_response_alg":"RSA-OAEP"}"#,
                ErrorCode::InvalidClientMetadata,
                "userinfo_encrypted_response_alg",
            ),
            (
                r#"{"client_name":"App","redirect_uris":["https://app.acme.example/cb"],"subject_type":"public"}"#,
                ErrorCode::InvalidClientMetadata,
                "subject_type",
            ),
            (
                r#"{"client_name":"App","redirect_uris":["https://app.acme.example/cb"],"id_token_signed_response_alg":"ES256"}"#,
                ErrorCode::InvalidClientMetadata,
                "id_token_signed_response_alg",
            ),
            (
                r#"{"client_name":"App","redirect_uris":["https://app.acme.example/cb"],"token_endpoint_auth_method":"private_key_jwt"}"#,
                ErrorCode::InvalidClientMetadata,
                "jwks",
            ),
        ];
        for (body, code, field) in cases {
            let e = reg(&t, body).unwrap_err();
            assert_eq!((e.code, e.field.as_deref()), (code, Some(field)), "{body}");
            assert!(e.description.starts_with(field), "{}", e.description);
            assert_eq!(e.to_wire().status, 400);
        }
        let e = reg(&t, r#"{"client_name":"App","software_statement":"x.y.z"}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnapprovedSoftwareStatement);
        let e = reg(&t, "not json").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidClientMetadata);
    }

    #[test]
    fn a_token_registers_only_while_live_within_its_count_and_for_its_partner() {
        let mut t = token(policy());
        assert!(reg(&t, OK).is_ok());
        let expired = register(&t, &partner(), OK.as_bytes(), &checks(), 1000).unwrap_err();
        assert_eq!(expired.code, ErrorCode::InvalidToken);
        t.registrations = 2;
        assert_eq!(reg(&t, OK).unwrap_err().code, ErrorCode::InvalidToken);
        t.registrations = 0;
        let other = Partner {
            id: PartnerId::parse("other").unwrap(),
            ..partner()
        };
        let e = register(&t, &other, OK.as_bytes(), &checks(), 10).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidToken);
        let suspended = Partner {
            status: PartnerStatus::Suspended,
            ..partner()
        };
        let e = register(&t, &suspended, OK.as_bytes(), &checks(), 10).unwrap_err();
        assert_eq!(e.code, ErrorCode::PartnerSuspended);
    }

    #[test]
    fn token_specs_are_checked_and_default_to_a_week_and_the_code_flow() {
        let spec = parse_token_spec(b"{}").unwrap();
        assert_eq!(spec.expires_in, DEFAULT_TOKEN_LIFETIME_S);
        assert_eq!(
            spec.policy.grant_types,
            vec![GrantType::AuthorizationCode, GrantType::RefreshToken]
        );
        assert_eq!(spec.policy.scopes, vec!["openid"]);
        assert!(spec.policy.require_pkce);
        assert_eq!(spec.max_registrations, None);
        let full = parse_token_spec(
            br#"{"label":"certification","scopes":["openid","email"],"grant_types":["authorization_code"],"require_pkce":false,"expires_in":3600,"max_registrations":5}"#,
        )
        .unwrap();
        assert_eq!(full.label.as_deref(), Some("certification"));
        assert!(!full.policy.require_pkce);
        assert_eq!(full.max_registrations, Some(5));
        for (bad, field) in [
            (r#"{"expires_in":59}"#, "expires_in"),
            (r#"{"expires_in":99999999}"#, "expires_in"),
            (r#"{"max_registrations":0}"#, "max_registrations"),
            (r#"{"scopes":["bad scope"]}"#, "scopes[0]"),
            (r#"{"grant_types":["password"]}"#, "grant_types[0]"),
            (r#"{"require_pkce":"no"}"#, "require_pkce"),
            (r#"{"label":""}"#, "label"),
        ] {
            let e = parse_token_spec(bad.as_bytes()).unwrap_err();
            assert_eq!(e.field.as_deref(), Some(field), "{bad}");
        }
        assert!(parse_token_spec(br#"{"other":1}"#).is_err());
    }

    #[test]
    fn a_sector_uri_is_on_the_partners_origins_and_its_document_lists_every_redirect_uri() {
        let body = r#"{"client_name":"App","redirect_uris":["https://App.acme.example/cb"],"sector_identifier_uri":"https://app.acme.example/sector.json"}"#;
        let uri = sector_uri(body.as_bytes(), &partner()).unwrap();
        assert_eq!(uri.as_deref(), Some("https://app.acme.example/sector.json"));
        assert!(check_sector(
            &json!(["https://app.acme.example/cb", "https://x.example/y"]),
            body.as_bytes()
        )
        .is_ok());
        for bad in [
            json!(["https://example.com/op"]),
            json!({"redirect_uris": []}),
            json!("x"),
        ] {
            let e = check_sector(&bad, body.as_bytes()).unwrap_err();
            assert_eq!(
                (e.code, e.field.as_deref()),
                (
                    ErrorCode::InvalidClientMetadata,
                    Some("sector_identifier_uri")
                )
            );
        }
        let off = r#"{"client_name":"App","redirect_uris":["https://app.acme.example/cb"],"sector_identifier_uri":"https://evil.example/sector.json"}"#;
        assert_eq!(
            sector_uri(off.as_bytes(), &partner()).unwrap_err().code,
            ErrorCode::InvalidClientMetadata
        );
        // Registered only as checked: a sector the edge did not fetch is refused.
        let t = token(policy());
        let e = reg(&t, body).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("sector_identifier_uri"));
        let checked = Checked {
            sector_identifier_uri: uri,
            ..checks()
        };
        assert!(register(&t, &partner(), body.as_bytes(), &checked, 10).is_ok());
    }

    #[test]
    fn an_update_must_name_the_client_and_may_repeat_its_secret() {
        let ok = json!({"client_id": "abcdefghij", "client_secret": "s"});
        assert_eq!(update_identity(&ok, "abcdefghij").unwrap(), Some("s"));
        let other = json!({"client_id": "zzzzzzzzzz"});
        let e = update_identity(&other, "abcdefghij").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidClientMetadata);
        assert!(update_identity(&json!({}), "abcdefghij").is_err());
    }
}
