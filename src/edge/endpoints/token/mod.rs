//! The token endpoint (RFC 6749 §3.2, §4.1.3, §4.4, §6): client authentication, then the
//! grant type's rules, one module per grant type, then signed tokens. Every answer is
//! `Cache-Control: no-store`.

mod authorization_code;
mod client_credentials;
mod jwt_bearer;
mod refresh_token;

use crate::edge::flows::client_auth;
use crate::edge::flows::limits::{self, Bucket};
use crate::edge::rt::body::read_form;
use crate::edge::rt::config::api_audience;
use crate::edge::rt::request::Request;
use crate::edge::rt::respond::Outcome;
use crate::edge::rt::{config, keys, random, respond};
use crate::protocol::client::ClientRecord;
use crate::protocol::discovery::Issuer;
use crate::protocol::error::ApiError;
use crate::protocol::grant::{self, Issue, Step};
use crate::protocol::keys::{KeySet, Times};
use crate::protocol::partner::PartnerId;
use crate::protocol::token_request::{TokenError, TokenRequest};
use crate::protocol::tokens::{
    at_hash, AccessClaims, IdClaims, TokenResponse, ACCESS_TOKEN_TTL_S, ID_TOKEN_TTL_S,
};
use base64ct::{Base64UrlUnpadded, Encoding};
use worker::Env;

/// What every grant type's handler works with: the authenticated client, the keys to sign
/// with, and the time.
struct Ctx<'a> {
    env: &'a Env,
    issuer: &'a Issuer,
    keys: &'a KeySet,
    client: &'a ClientRecord,
    now_ms: u64,
    /// `now_ms` in seconds, as tokens and grants count time.
    now: u64,
}

fn new_token_id() -> Result<String, ApiError> {
    Ok(Base64UrlUnpadded::encode_string(&random::bytes::<16>()?))
}

/// A new refresh token of grant `gid`, and the hash its grant stores.
fn new_refresh(gid: &str) -> Result<(String, String), ApiError> {
    Ok(grant::handle(
        gid,
        &random::bytes::<{ grant::SECRET_LEN }>()?,
    ))
}

/// Whom an access token speaks for.
struct Subject<'a> {
    sub: &'a str,
    gid: &'a str,
    auth_time: Option<u64>,
}

async fn access_token(
    cx: &Ctx<'_>,
    who: Subject<'_>,
    scopes: &[String],
) -> Result<String, ApiError> {
    let key = cx
        .keys
        .access_token_key()
        .ok_or_else(|| ApiError::unavailable("no access-token signing key"))?;
    let claims = AccessClaims {
        iss: cx.issuer.as_str().to_owned(),
        sub: who.sub.to_owned(),
        aud: api_audience(cx.issuer),
        client_id: cx.client.client_id.as_str().to_owned(),
        scope: scopes.join(" "),
        jti: new_token_id()?,
        gid: who.gid.to_owned(),
        auth_time: who.auth_time,
    };
    let times = Times {
        iat: cx.now,
        exp: cx.now + ACCESS_TOKEN_TTL_S,
    };
    keys::sign(key, "at+jwt", times, claims).await
}

/// The tokens for a redeemed code or a refresh: an access token, the refresh token if one was
/// stored, and an ID token when `openid` is among the issue's scopes.
async fn mint(
    cx: &Ctx<'_>,
    issue: Issue,
    refresh_token: Option<String>,
) -> Result<TokenResponse, ApiError> {
    let g = &issue.grant;
    let who = Subject {
        sub: &g.sub,
        gid: &g.grant_id,
        auth_time: g.auth_time,
    };
    let at = access_token(cx, who, &issue.scopes).await?;
    let id_token = if issue.scopes.iter().any(|s| s == "openid") {
        let client = cx.client;
        let alg = client.id_token_signed_response_alg;
        let key = cx.keys.for_alg(alg).ok_or_else(|| {
            ApiError::unavailable(format!("no {} key for ID tokens", alg.as_str()))
        })?;
        let claims = IdClaims {
            iss: cx.issuer.as_str().to_owned(),
            sub: g.sub.clone(),
            aud: client.client_id.as_str().to_owned(),
            azp: client.client_id.as_str().to_owned(),
            nonce: g.nonce.clone(),
            auth_time: g.auth_time,
            at_hash: at_hash(&at, alg),
            profile: g.id_claims.clone(),
        };
        let times = Times {
            iat: cx.now,
            exp: cx.now + ID_TOKEN_TTL_S,
        };
        Some(keys::sign(key, "JWT", times, claims).await?)
    } else {
        None
    };
    Ok(TokenResponse {
        id_token,
        refresh_token,
        ..TokenResponse::bearer(at, &issue.scopes)
    })
}

/// The issue of a redemption or refresh, or its typed refusal.
fn issued(step: Step) -> Result<Issue, TokenError> {
    step.map_err(TokenError::from)
}

/// Runs a token request; `caller` learns the authenticated client (for the log and usage) even
/// when the request fails afterwards.
async fn run(
    req: Request,
    env: &Env,
    now_ms: u64,
    caller: &mut Option<(PartnerId, String)>,
) -> Result<TokenResponse, TokenError> {
    let now = now_ms / 1000;
    let issuer = config::issuer(env)?;
    let (req, params) = read_form(req).await?;
    let (client, partner) =
        client_auth::authenticate(env, &req, &params, crate::routes::TOKEN, now_ms).await?;
    *caller = Some((
        client.partner_id.clone(),
        client.client_id.as_str().to_owned(),
    ));
    let limits = partner.rate_limits.unwrap_or_default();
    limits::admit_client(
        env,
        Bucket::Token,
        &client.partner_id,
        client.client_id.as_str(),
        &limits,
        now_ms,
    )
    .await?;
    // Keys first: a code is never spent when tokens could not be signed.
    let keys = keys::key_set(env)?;
    if keys.for_alg(client.id_token_signed_response_alg).is_none() {
        return Err(ApiError::unavailable(format!(
            "no {} signing key for this client's ID tokens",
            client.id_token_signed_response_alg.as_str()
        ))
        .into());
    }
    let request = TokenRequest::parse(&params, &client.grant_types)?;
    let cx = Ctx {
        env,
        issuer: &issuer,
        keys: &keys,
        client: &client,
        now_ms,
        now,
    };
    match request {
        TokenRequest::AuthorizationCode {
            grant_id,
            code_hash,
            redirect_uri,
            code_verifier,
        } => {
            authorization_code::redeem(&cx, grant_id, code_hash, redirect_uri, code_verifier).await
        }
        TokenRequest::RefreshToken {
            grant_id,
            refresh_hash,
            scope,
        } => refresh_token::refresh(&cx, grant_id, refresh_hash, scope).await,
        TokenRequest::ClientCredentials { scope } => {
            Ok(client_credentials::issue(&cx, scope).await?)
        }
        TokenRequest::JwtBearer { assertion, scope } => {
            // Where the request most likely comes from (a partner's server): read only here.
            let visitor = crate::edge::rt::config::visitor_region(&req, env);
            Ok(jwt_bearer::issue(&cx, &assertion, scope, visitor).await?)
        }
    }
}

pub async fn token(req: Request, env: &Env, now_ms: u64) -> Outcome {
    let mut caller = None;
    let mut out = match run(req, env, now_ms, &mut caller).await {
        Ok(body) => {
            let headers = [("pragma", "no-cache".to_owned())];
            Outcome::new(respond::json(200, &body, &headers), "tokens_issued")
        }
        Err(e) => {
            let replay = e.replay_outcome();
            let mut out = Outcome::error(e.into_error());
            if let Some(outcome) = replay {
                out.outcome = outcome;
            }
            out
        }
    };
    if let Some((partner, client)) = caller {
        out.partner = Some(partner);
        out.client = Some(client);
    }
    out
}
