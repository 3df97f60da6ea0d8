//! Dynamic Client Registration (RFC 7591) with an initial access token, and each registered
//! client's configuration endpoint (RFC 7592) with its registration access token. What a
//! registration may be is decided by `protocol::registration`, in the registry object, in one
//! stretch with the token's count; this module authenticates, limits and answers.

use crate::edge::calls::registry;
use crate::edge::flows::{bearer, limits};
use crate::edge::rt::kvcache;
use crate::edge::rt::outbound;
use crate::edge::rt::request::Request;
use crate::edge::rt::respond::Outcome;
use crate::edge::rt::{body, config, keys, random, respond};
use crate::protocol::address::{address_group, client_address};
use crate::protocol::client::{ClientId, ClientRecord};
use crate::protocol::client_auth::secret_hash;
use crate::protocol::error::{ApiError, ErrorCode};
use crate::protocol::partner::{keys::partner as partner_key, Partner, PartnerId, PartnerStatus};
use crate::protocol::registration::{
    check_sector, client_information, edge_key, sector_uri, update_identity, Checked, EdgeToken,
};
use crate::routes::Method;
use crate::store::registry::{
    DeleteRegistration, ReadRegistration, Register, Registered, UpdateRegistration,
};
use base64ct::{Base64UrlUnpadded, Encoding};
use worker::Env;

/// Largest registration request body (a JWK set of a few RSA keys fits many times over).
pub const MAX_BODY: usize = 64 * 1024;

/// RFC 7591 §3.2.1: the response carries credentials, so nothing may keep it.
const NO_STORE: [(&str, &str); 1] = [("pragma", "no-cache")];

fn headers() -> Vec<(&'static str, String)> {
    NO_STORE
        .iter()
        .map(|(k, v)| (*k, (*v).to_owned()))
        .collect()
}

fn invalid_token(why: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidToken, why)
}

/// A new random credential: 32 bytes, base64url.
fn credential() -> Result<String, ApiError> {
    Ok(Base64UrlUnpadded::encode_string(&random::bytes::<32>()?))
}

/// What the registry is to rely on: the algorithms we hold keys for (a client may register only
/// for one of them), and, when the metadata names a `sector_identifier_uri` on one of
/// `partner`'s origins, that its document lists every redirect URI (fetched here, bounded).
async fn checks(
    env: &Env,
    metadata: &[u8],
    partner: Option<&PartnerId>,
    now_ms: u64,
) -> Result<Checked, ApiError> {
    let signing_algs = keys::key_set(env)?.signing_algs();
    let mut sector_identifier_uri = None;
    let partner = match partner {
        Some(id) => kvcache::get_json::<Partner>(env, &partner_key(id), now_ms)
            .await?
            .filter(|p| p.status == PartnerStatus::Active),
        None => None,
    };
    if let Some(partner) = partner {
        if let Some(uri) = sector_uri(metadata, &partner)? {
            let document = outbound::fetch_json(&uri, "application/json")
                .await
                .map_err(|why| {
                    ApiError {
                        code: ErrorCode::InvalidClientMetadata,
                        ..ApiError::invalid_field(
                            "sector_identifier_uri",
                            "its document could not be fetched",
                        )
                    }
                    .with_cause(format!("sector_identifier_uri: {why}"))
                })?;
            check_sector(&document, metadata)?;
            sector_identifier_uri = Some(uri);
        }
    }
    Ok(Checked {
        signing_algs,
        sector_identifier_uri,
    })
}

/// The client metadata of a registration or an update: JSON, UTF-8, within [`MAX_BODY`].
async fn metadata_body(req: &mut Request) -> Result<String, ApiError> {
    let raw = body::json(req, MAX_BODY).await?;
    String::from_utf8(raw)
        .map_err(|_| ApiError::new(ErrorCode::InvalidClientMetadata, "the body is not UTF-8"))
}

/// `POST /oauth2/register`: the initial access token is checked against its published record
/// first, so a guessed one costs a KV read and never an object call.
pub async fn register(mut req: Request, env: &Env, now_ms: u64) -> Result<Outcome, ApiError> {
    let now = now_ms / 1000;
    let token = bearer::presented(&req)?;
    let token_hash = secret_hash(&token);
    let published: Option<EdgeToken> =
        kvcache::get_json(env, &edge_key(&token_hash), now_ms).await?;
    let Some(published) = published.filter(|t| now < t.expires_at) else {
        return Err(invalid_token("the initial access token is not valid"));
    };
    let partner = published.partner_id;
    limits::admit_registration(env, &format!("partner:{partner}"), now_ms).await?;
    let metadata = metadata_body(&mut req).await?;
    let checks = checks(env, metadata.as_bytes(), Some(&partner), now_ms).await?;
    let client_id = ClientId::parse(&Base64UrlUnpadded::encode_string(&random::bytes::<16>()?))
        .ok_or_else(|| ApiError::unavailable("client id generation"))?;
    let (secret, access) = (credential()?, credential()?);
    let Registered {
        client,
        secret_issued,
    } = registry::call(
        env,
        Register {
            token_hash,
            metadata,
            checks,
            client_id,
            secret_hash: secret_hash(&secret),
            access_hash: secret_hash(&access),
            now,
        },
    )
    .await?;
    let issuer = config::issuer(env)?;
    let shown = secret_issued.then_some(secret.as_str());
    let body = client_information(&client, &issuer, shown, &access);
    Ok(
        Outcome::new(respond::json(201, &body, &headers()), "registered")
            .partner(client.partner_id),
    )
}

/// `GET`, `PUT` and `DELETE /oauth2/register/{client_id}` (RFC 7592), with the client's
/// registration access token; an update replaces it with a new one.
pub async fn manage(
    mut req: Request,
    env: &Env,
    id: &str,
    method: Method,
    now_ms: u64,
) -> Result<Outcome, ApiError> {
    let access = bearer::presented(&req)?;
    let refused = || invalid_token("the registration access token is not valid for this client");
    let client_id = ClientId::parse(id).ok_or_else(refused)?;
    // An id no client has is refused from KV, so guesses cost no object call.
    let published: Option<ClientRecord> =
        kvcache::get_json(env, &client_id.kv_key(), now_ms).await?;
    if published.is_none() {
        return Err(refused());
    }
    // Limited per client and network: guessing from one network does not lock the client out
    // of its own configuration endpoint elsewhere.
    let network = client_address(
        req.headers()
            .get("cf-connecting-ip")
            .ok()
            .flatten()
            .as_deref(),
    )
    .map_or_else(|| "unknown".to_owned(), address_group);
    limits::admit_registration(env, &format!("client:{client_id}:{network}"), now_ms).await?;
    let access_hash = secret_hash(&access);
    let issuer = config::issuer(env)?;
    match method {
        Method::Get => {
            let client = registry::call(
                env,
                ReadRegistration {
                    client_id,
                    access_hash,
                },
            )
            .await?;
            let body = client_information(&client, &issuer, None, &access);
            Ok(
                Outcome::new(respond::json(200, &body, &headers()), "ok")
                    .partner(client.partner_id),
            )
        }
        Method::Put => {
            let metadata = metadata_body(&mut req).await?;
            let value: serde_json::Value = serde_json::from_str(&metadata).map_err(|_| {
                ApiError::new(
                    ErrorCode::InvalidClientMetadata,
                    "the body is not a JSON object",
                )
            })?;
            let presented_secret_hash =
                update_identity(&value, client_id.as_str())?.map(secret_hash);
            // A sector document is fetched only for a caller whose token the registry knows, and
            // for the client's own partner (the registry checks everything again, and refuses a
            // sector left unchecked).
            let partner = if metadata.contains("sector_identifier_uri") {
                let current = registry::call(
                    env,
                    ReadRegistration {
                        client_id: client_id.clone(),
                        access_hash: access_hash.clone(),
                    },
                )
                .await?;
                Some(current.partner_id)
            } else {
                None
            };
            let checks = checks(env, metadata.as_bytes(), partner.as_ref(), now_ms).await?;
            let (secret, new_access) = (credential()?, credential()?);
            let Registered {
                client,
                secret_issued,
            } = registry::call(
                env,
                UpdateRegistration {
                    client_id,
                    access_hash,
                    metadata,
                    checks,
                    presented_secret_hash,
                    new_secret_hash: secret_hash(&secret),
                    new_access_hash: secret_hash(&new_access),
                },
            )
            .await?;
            // This isolate reads the new record from the next request on (others within the
            // cache lifetime).
            kvcache::forget(&client.client_id.kv_key());
            let shown = secret_issued.then_some(secret.as_str());
            let body = client_information(&client, &issuer, shown, &new_access);
            Ok(
                Outcome::new(respond::json(200, &body, &headers()), "updated")
                    .partner(client.partner_id),
            )
        }
        Method::Delete => {
            let key = client_id.kv_key();
            registry::call(
                env,
                DeleteRegistration {
                    client_id,
                    access_hash,
                },
            )
            .await?;
            kvcache::forget(&key);
            Ok(Outcome::new(respond::empty(204, &[]), "deleted"))
        }
        _ => Err(ApiError::method_not_allowed(&[
            Method::Get,
            Method::Put,
            Method::Delete,
        ])),
    }
}
