//! Request objects at the authorization endpoint (`protocol::request_object`): the JWT by value
//! or fetched from a `request_uri` the client registered on its partner's origins (bounded,
//! `rt::outbound`), verified against the client's keys when signed, and merged with the query.
//! Every failure is shown to the person, never sent to a redirect URI the object may name.

use crate::edge::flows::partner_keys;
use crate::edge::rt::{keys, kvcache, outbound};
use crate::protocol::authorize;
use crate::protocol::client::ClientRecord;
use crate::protocol::discovery::Issuer;
use crate::protocol::error::ApiError;
use crate::protocol::form::Params;
use crate::protocol::origin::Origin;
use crate::protocol::partner::{keys as kv_keys, Partner, PartnerStatus};
use crate::protocol::request_object::{
    check_request_uri, invalid_object, invalid_uri, merge, sent, signed_claims, signing, Sent,
    Signing,
};
use worker::Env;

/// The authorization request `params` make, with their request object resolved (unchanged when
/// they carry none).
pub async fn resolve(
    env: &Env,
    params: Params,
    issuer: &Issuer,
    now_ms: u64,
) -> Result<Params, ApiError> {
    let how = sent(&params)?;
    if how == Sent::None {
        return Ok(params);
    }
    let client_id = authorize::client_id(&params)?;
    let client: ClientRecord = kvcache::get_json(env, &client_id.kv_key(), now_ms)
        .await?
        .ok_or_else(|| invalid_object("client_id is not a known client"))?;
    let partner: Partner = kvcache::get_json(env, &kv_keys::partner(&client.partner_id), now_ms)
        .await?
        .filter(|p: &Partner| p.status == PartnerStatus::Active)
        .ok_or_else(|| invalid_object("this app is not allowed to sign users in at the moment"))?;
    let jwt = match how {
        Sent::ByValue(jwt) => jwt.to_owned(),
        Sent::ByReference(uri) => {
            check_request_uri(&client, uri)?;
            // An origin the partner gave up may belong to someone else by now.
            if !Origin::from_referer(uri).is_some_and(|o| partner.origins.contains(&o)) {
                return Err(invalid_uri(
                    "request_uri is no longer on the partner's origins",
                ));
            }
            outbound::fetch_text(uri, "application/oauth-authz-req+jwt, application/jwt")
                .await
                .map_err(|why| {
                    invalid_uri("the request object could not be fetched")
                        .with_cause(format!("request_uri: {why}"))
                })?
        }
        Sent::None => return Ok(params),
    };
    let (claims, signed) = match signing(&jwt, &client)? {
        Signing::Unsigned(claims) => (claims, false),
        Signing::Signed { .. } => {
            let kid = crate::protocol::assertion::unverified_kid(&jwt);
            let keys = partner_keys::client_keys(&client, &partner, kid.as_deref(), now_ms)
                .await
                .map_err(|e| invalid_object(&e.description))?;
            let payload = keys::verify_external(&keys, &jwt).await.map_err(|e| {
                invalid_object(&format!(
                    "the request object could not be verified: {}",
                    e.describe()
                ))
            })?;
            (
                signed_claims(payload, &client, issuer.as_str(), now_ms / 1000)?,
                true,
            )
        }
    };
    merge(&params, &claims, signed)
}
