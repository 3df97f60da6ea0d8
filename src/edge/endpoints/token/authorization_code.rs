//! The authorization code grant (RFC 6749 §4.1.3): the code's grant object redeems it once, with
//! PKCE, and stores the first refresh token if the client may refresh.

use super::{issued, mint, new_refresh, new_token_id, Ctx};
use crate::edge::calls::grants;
use crate::protocol::client::GrantType;
use crate::protocol::token_request::TokenError;
use crate::protocol::tokens::TokenResponse;
use crate::store::grants::Redeem;

pub(super) async fn redeem(
    cx: &Ctx<'_>,
    grant_id: String,
    code_hash: String,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
) -> Result<TokenResponse, TokenError> {
    let client = cx.client;
    let refresh = if client.grant_types.contains(&GrantType::RefreshToken) {
        Some(new_refresh(&grant_id)?)
    } else {
        None
    };
    // Names this attempt, so the same one sent again after a lost reply is not a replay.
    let attempt = new_token_id()?;
    let cmd = Redeem {
        code_hash,
        attempt,
        client_id: client.client_id.clone(),
        redirect_uri,
        code_verifier,
        new_refresh_hash: refresh.as_ref().map(|(_, h)| h.clone()),
        now: cx.now,
    };
    let issue = issued(grants::call(cx.env, &grant_id, cmd).await?)?;
    Ok(mint(cx, issue, refresh.map(|(t, _)| t)).await?)
}
