//! Client authentication for the token, revocation and introspection endpoints: secrets,
//! public clients, and `private_key_jwt` assertions (RFC 7523 §2.2, §3) with single-use `jti`.

use crate::edge::calls::replay;
use crate::edge::flows::partner_keys;
use crate::edge::rt::request::Request;
use crate::edge::rt::{config, keys, kvcache};
use crate::protocol::assertion::{self, check_claims, Rules};
use crate::protocol::client::ClientRecord;
use crate::protocol::client_auth::{self, Presented};
use crate::protocol::error::{ApiError, ErrorCode};
use crate::protocol::form::Params;
use crate::protocol::grant::hash_secret;
use crate::protocol::partner::{keys as kv_keys, Partner, PartnerStatus};
use crate::routes;
use serde_json::Value;
use worker::Env;

/// Longest lifetime accepted for a client assertion.
pub const ASSERTION_MAX_LIFETIME_S: u64 = 300;

/// Clock skew tolerated on assertion times.
pub const ASSERTION_LEEWAY_S: u64 = 60;

fn invalid_client(why: &str) -> ApiError {
    ApiError::new(ErrorCode::InvalidClient, why)
}

/// Who is calling: authenticated as registered, partner still active (answered with the
/// client, so the caller need not read the partner again). `endpoint` is the path being called
/// (an assertion may name its URL as audience).
pub async fn authenticate(
    env: &Env,
    req: &Request,
    params: &Params,
    endpoint: &str,
    now_ms: u64,
) -> Result<(ClientRecord, Partner), ApiError> {
    let auth = req.headers().get("authorization").ok().flatten();
    let presented = client_auth::presented(auth.as_deref(), params)?;
    let unknown = || invalid_client("client authentication failed");
    let client_id = match &presented {
        // RFC 7523 §3: without client_id, the assertion's subject names the client.
        Presented::Assertion {
            assertion,
            client_id: None,
        } => assertion::unverified_claims(assertion)
            .and_then(|c| c.get("sub").and_then(Value::as_str).map(str::to_owned))
            .and_then(|s| crate::protocol::client::ClientId::parse(&s))
            .ok_or_else(unknown)?,
        _ => presented.client_id().map_err(|_| unknown())?,
    };
    let client: ClientRecord = kvcache::get_json(env, &client_id.kv_key(), now_ms)
        .await?
        .ok_or_else(unknown)?;
    client_auth::authenticate(&presented, &client)?;
    let partner: Option<Partner> =
        kvcache::get_json(env, &kv_keys::partner(&client.partner_id), now_ms).await?;
    let partner = match partner {
        Some(p) if p.status == PartnerStatus::Active => p,
        _ => return Err(invalid_client("the client's partner is suspended")),
    };
    if let Presented::Assertion { assertion, .. } = &presented {
        verify_assertion(env, &client, &partner, assertion, endpoint, now_ms).await?;
    }
    Ok((client, partner))
}

async fn verify_assertion(
    env: &Env,
    client: &ClientRecord,
    partner: &Partner,
    token: &str,
    endpoint: &str,
    now_ms: u64,
) -> Result<(), ApiError> {
    let now = now_ms / 1000;
    let fail = |e: assertion::AssertionError| invalid_client(e.describe());
    let kid = assertion::unverified_kid(token);
    let keys = partner_keys::client_keys(client, partner, kid.as_deref(), now_ms).await?;
    let payload = keys::verify_external(&keys, token).await.map_err(fail)?;
    let issuer = config::issuer(env)?;
    let audiences = [
        issuer.url(routes::TOKEN),
        issuer.as_str().to_owned(),
        issuer.url(endpoint),
    ];
    let id = client.client_id.as_str();
    let rules = Rules {
        iss: id,
        sub: Some(id),
        audiences: &audiences,
        now,
        max_lifetime_s: ASSERTION_MAX_LIFETIME_S,
        leeway_s: ASSERTION_LEEWAY_S,
    };
    let checked = check_claims(&payload, &rules).map_err(fail)?;
    let fresh = replay::claim(
        env,
        id,
        &hash_secret(&checked.jti),
        checked.exp + ASSERTION_LEEWAY_S,
        now,
    )
    .await?;
    if !fresh {
        return Err(invalid_client("the assertion was already used"));
    }
    Ok(())
}
