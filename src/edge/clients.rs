//! Client authentication for the token, revocation and introspection endpoints.

use worker::{Env, Request};

use super::kvcache;
use crate::protocol::client::{AuthMethod, ClientRecord};
use crate::protocol::client_auth::{self, Presented};
use crate::protocol::error::{ApiError, ErrorCode};
use crate::protocol::form::Params;
use crate::protocol::partner::{keys as kv_keys, Partner, PartnerStatus};

/// Who is calling: authenticated as registered, partner still active.
pub async fn authenticate(
    env: &Env,
    req: &Request,
    params: &Params,
    now_ms: u64,
) -> Result<ClientRecord, ApiError> {
    let auth = req.headers().get("authorization").ok().flatten();
    let presented = client_auth::presented(auth.as_deref(), params)?;
    let unknown = || ApiError::new(ErrorCode::InvalidClient, "client authentication failed");
    let client_id = presented.client_id().map_err(|_| unknown())?;
    let client: ClientRecord = kvcache::get_json(env, &kv_keys::client(&client_id), now_ms)
        .await?
        .ok_or_else(unknown)?;
    client_auth::authenticate(&presented, &client)?;
    if let (Presented::Assertion { .. }, AuthMethod::PrivateKeyJwt) =
        (&presented, client.token_endpoint_auth_method)
    {
        return Err(ApiError::new(
            ErrorCode::InvalidClient,
            "private_key_jwt client authentication is not available yet",
        ));
    }
    let partner: Option<Partner> =
        kvcache::get_json(env, &kv_keys::partner(&client.partner_id), now_ms).await?;
    if !partner.is_some_and(|p| p.status == PartnerStatus::Active) {
        return Err(ApiError::new(
            ErrorCode::InvalidClient,
            "the client's partner is suspended",
        ));
    }
    Ok(client)
}
