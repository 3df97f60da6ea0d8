//! Checking our own access tokens where they are presented: signature and `kid` against our
//! keys, `typ` at+jwt, expiry, issuer and audience (every failure is `invalid_token`); and
//! what the token still stands for ([`standing`]), asked by every endpoint that takes one.

use crate::edge::rt::config::api_audience;
use crate::edge::rt::kvcache::{self, Read};
use crate::edge::rt::request::Request;
use crate::edge::rt::{config, keys};
use crate::protocol::admin_auth::bearer_token;
use crate::protocol::api::revocation_key;
use crate::protocol::client::{ClientId, ClientRecord};
use crate::protocol::error::{ApiError, ErrorCode};
use crate::protocol::keys::VerifyError;
use crate::protocol::partner::{keys as kv_keys, Partner, PartnerStatus};
use crate::protocol::tokens::AccessClaims;
use worker::Env;

fn invalid(why: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidToken, why)
}

/// The bearer token of a request (RFC 6750 §2.1; never from the query string).
pub fn presented(req: &Request) -> Result<String, ApiError> {
    let header = req.headers().get("authorization").ok().flatten();
    match header {
        None => Err(ApiError::new(
            ErrorCode::MissingToken,
            "a bearer access token is required",
        )),
        Some(h) => bearer_token(&h)
            .map(str::to_owned)
            .ok_or_else(|| invalid("the Authorization header is not a Bearer token")),
    }
}

/// Verifies an access token we issued.
pub async fn check(env: &Env, token: &str, now: u64) -> Result<AccessClaims, ApiError> {
    check_with_exp(env, token, now)
        .await
        .map(|(claims, _)| claims)
}

/// Verifies an access token we issued: its claims and its `exp`.
pub async fn check_with_exp(
    env: &Env,
    token: &str,
    now: u64,
) -> Result<(AccessClaims, u64), ApiError> {
    check_with_times(env, token, now)
        .await
        .map(|(c, exp, _)| (c, exp))
}

/// Verifies an access token we issued: its claims, its `exp` and its `iat` (0 if it has none).
pub async fn check_with_times(
    env: &Env,
    token: &str,
    now: u64,
) -> Result<(AccessClaims, u64, u64), ApiError> {
    let keys = keys::key_set(env)?;
    let issuer = config::issuer(env)?;
    // The signature is checked in WebCrypto (natively), the header and claims in Rust.
    let claims = keys::verify_ours::<AccessClaims>(&keys, token, "at+jwt", now, 0)
        .await
        .map_err(|e| {
            invalid(match e {
                VerifyError::Expired => "the access token expired",
                VerifyError::NotYetValid => "the access token is not valid yet",
                _ => "the access token is not valid",
            })
        })?;
    let exp = claims
        .expiration
        .and_then(|t| u64::try_from(t.timestamp()).ok())
        .ok_or_else(|| invalid("the access token has no expiry"))?;
    let iat = claims
        .issued_at
        .and_then(|t| u64::try_from(t.timestamp()).ok())
        .unwrap_or(0);
    let c = claims.custom;
    if c.iss != issuer.as_str() {
        return Err(invalid("the access token is from another issuer"));
    }
    if c.aud != api_audience(&issuer) {
        return Err(invalid("the access token is for another audience"));
    }
    Ok((c, exp, iat))
}

/// Why a valid access token no longer stands for anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unstanding {
    Revoked,
    /// Its client was removed (or the token names none).
    ClientRemoved,
    /// Its partner is suspended or was removed.
    PartnerInactive,
}

impl Unstanding {
    pub fn describe(self) -> &'static str {
        match self {
            Unstanding::Revoked => "the access token was revoked",
            Unstanding::ClientRemoved => "the access token's client no longer exists",
            Unstanding::PartnerInactive => "the token's partner is suspended",
        }
    }

    /// The gateway's answer: `invalid_token`, or `partner_suspended` for an inactive partner.
    pub fn gateway_error(self) -> ApiError {
        match self {
            Unstanding::PartnerInactive => {
                ApiError::new(ErrorCode::PartnerSuspended, self.describe())
            }
            _ => invalid(self.describe()),
        }
    }
}

/// The registry records a token still stands on.
pub struct Standing {
    pub client: ClientRecord,
    pub partner: Partner,
}

/// What a verified access token still stands for: not revoked (as published for the gateway),
/// its client still registered, its partner active. The gateway, userinfo and introspection all
/// ask this one question, so a token one of them refuses none of them accepts. Reads go through
/// the isolate cache; a storage failure is the outer error (a 503), never a standing.
pub async fn standing(
    env: &Env,
    claims: &AccessClaims,
    now_ms: u64,
) -> Result<Result<Standing, Unstanding>, ApiError> {
    standing_read(env, claims, now_ms, Read::Cached).await
}

/// [`standing`], reading KV as `read` says: [`Read::Fresh`] for the gateway's check of a token
/// it holds again, off the request's path.
pub async fn standing_read(
    env: &Env,
    claims: &AccessClaims,
    now_ms: u64,
    read: Read,
) -> Result<Result<Standing, Unstanding>, ApiError> {
    if kvcache::get_text_read(env, &revocation_key(claims), now_ms, read)
        .await?
        .is_some()
    {
        return Ok(Err(Unstanding::Revoked));
    }
    let Some(client_id) = ClientId::parse(&claims.client_id) else {
        return Ok(Err(Unstanding::ClientRemoved));
    };
    let Some(client) =
        kvcache::get_json_read::<ClientRecord>(env, &client_id.kv_key(), now_ms, read).await?
    else {
        return Ok(Err(Unstanding::ClientRemoved));
    };
    let partner: Option<Partner> =
        kvcache::get_json_read(env, &kv_keys::partner(&client.partner_id), now_ms, read).await?;
    Ok(
        match partner.filter(|p| p.status == PartnerStatus::Active) {
            Some(partner) => Ok(Standing { client, partner }),
            None => Err(Unstanding::PartnerInactive),
        },
    )
}
