//! The client credentials grant (RFC 6749 §4.4): an access token for the client itself, no
//! user, so no `openid`, no refresh token and no grant object.

use super::{access_token, Ctx, Subject};
use crate::protocol::error::ApiError;
use crate::protocol::token_request::requested_scopes;
use crate::protocol::tokens::TokenResponse;

pub(super) async fn issue(
    cx: &Ctx<'_>,
    scope: Option<Vec<String>>,
) -> Result<TokenResponse, ApiError> {
    let scopes = requested_scopes(scope.as_deref(), cx.client, false)?;
    let who = Subject {
        sub: cx.client.client_id.as_str(),
        gid: "",
        auth_time: None,
    };
    let at = access_token(cx, who, &scopes).await?;
    Ok(TokenResponse::bearer(at, &scopes))
}
