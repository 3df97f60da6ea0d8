//! Verifying a JWT a partner signed (link requests, login and jwt-bearer assertions, link
//! confirmations): the partner its `iss` names, its `typ`, its signature against the partner's
//! keys, and the single use of its `jti`.

use crate::edge::calls::replay;
use crate::edge::flows::partner_keys;
use crate::edge::rt::{keys, kvcache};
use crate::protocol::assertion;
use crate::protocol::assertion::Checked;
use crate::protocol::error::{ApiError, ErrorCode};
use crate::protocol::link::{check_login_assertion, PartnerJwt};
use crate::protocol::partner::{
    keys as kv_keys, Partner, PartnerId, PartnerStatus, MAX_ISSUER_LEN,
};
use base64ct::{Base64UrlUnpadded, Encoding};
use serde_json::Value;
use worker::Env;

/// Verifies a partner's assertion of `kind` (a login assertion, or a jwt-bearer grant assertion)
/// for `audiences`: the partner it names, and its checked claims. Its `jti` is not used yet.
pub async fn verify_assertion(
    env: &Env,
    assertion: &str,
    kind: PartnerJwt,
    audiences: &[String],
    now_ms: u64,
) -> Result<(Partner, Checked), ApiError> {
    let (partner, payload) = partner_jwt(env, assertion, kind, now_ms).await?;
    let checked =
        check_login_assertion(&payload, &partner, audiences, now_ms / 1000).map_err(|e| {
            refused(&format!(
                "The login assertion is not valid: {}.",
                e.describe()
            ))
        })?;
    Ok((partner, checked))
}

/// Uses the assertion's `jti`: only the first use wins.
pub async fn claim_once(
    env: &Env,
    partner: &Partner,
    checked: &Checked,
    now: u64,
) -> Result<(), ApiError> {
    if !replay::claim_partner_jti(env, &partner.id, &checked.jti, checked.exp, now).await? {
        return Err(refused("The login assertion was already used."));
    }
    Ok(())
}

pub fn refused(why: &str) -> ApiError {
    ApiError::new(ErrorCode::AccessDenied, why)
}

/// A JWT from a partner, of the `kind` its `typ` names: the partner named by its `iss` (active),
/// and the payload, once the signature checked out against the partner's keys. Claims are the
/// caller's to check.
pub async fn partner_jwt(
    env: &Env,
    token: &str,
    kind: PartnerJwt,
    now_ms: u64,
) -> Result<(Partner, Value), ApiError> {
    let bad = |e: assertion::AssertionError| {
        refused(&format!(
            "The partner's token is not valid: {}.",
            e.describe()
        ))
    };
    let header = jwt_header(token).ok_or_else(|| bad(assertion::AssertionError::Malformed))?;
    kind.check_typ(header.get("typ").and_then(Value::as_str))
        .map_err(bad)?;
    let claims = assertion::unverified_claims(token)
        .ok_or_else(|| bad(assertion::AssertionError::Malformed))?;
    // No partner has an `iss` this long (and it could not be a storage key): unknown.
    let iss = claims
        .get("iss")
        .and_then(Value::as_str)
        .filter(|iss| iss.len() <= MAX_ISSUER_LEN)
        .ok_or_else(|| refused("The token comes from an unknown partner."))?;
    let partner_id: Option<String> = kvcache::get_text(env, &kv_keys::issuer(iss), now_ms)
        .await?
        .map(|s| s.to_string());
    let partner_id = partner_id
        .and_then(|p| PartnerId::parse(&p).ok())
        .ok_or_else(|| refused("The token comes from an unknown partner."))?;
    let partner: Partner = kvcache::get_json(env, &kv_keys::partner(&partner_id), now_ms)
        .await?
        .ok_or_else(|| refused("The token comes from an unknown partner."))?;
    if partner.status != PartnerStatus::Active {
        return Err(refused("This partner is suspended."));
    }
    let kid = header.get("kid").and_then(Value::as_str);
    let keys = partner_keys::keys_for(&partner, kid, now_ms).await?;
    let payload = keys::verify_external(&keys[..], token).await.map_err(bad)?;
    Ok((partner, payload))
}

fn jwt_header(token: &str) -> Option<Value> {
    let header = token.split('.').next()?;
    serde_json::from_slice(&Base64UrlUnpadded::decode_vec(header).ok()?).ok()
}
