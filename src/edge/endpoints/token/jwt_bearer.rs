//! The JWT bearer grant (RFC 7523 §2.1): a partner's assertion about a linked user, from a
//! confidential client of that partner. An access token for that user, under a grant of its
//! own; no refresh token.

use super::{access_token, Ctx, Subject};
use crate::edge::flows::{linked, user_grant};
use crate::edge::rt::random;
use crate::protocol::error::{ApiError, ErrorCode};
use crate::protocol::grant::{self, Grant};
use crate::protocol::link::{linked_scopes, PartnerJwt};
use crate::protocol::token_request::requested_scopes;
use crate::protocol::tokens::{TokenResponse, ACCESS_TOKEN_TTL_S};
use base64ct::{Base64UrlUnpadded, Encoding};

pub(super) async fn issue(
    cx: &Ctx<'_>,
    assertion: &str,
    scope: Option<Vec<String>>,
    visitor: crate::protocol::region::Home,
) -> Result<TokenResponse, ApiError> {
    let (env, client, now) = (cx.env, cx.client, cx.now);
    let audiences = [
        cx.issuer.as_str().to_owned(),
        cx.issuer.url(crate::routes::TOKEN),
    ];
    let invalid = |why: &str| ApiError::new(ErrorCode::InvalidGrant, why);
    let (partner, linked, partner_sub) = linked::linked_user(
        env,
        assertion,
        PartnerJwt::GrantAssertion,
        &audiences,
        Some(client.client_id.clone()),
        visitor,
        cx.now_ms,
    )
    .await
    .map_err(|e| {
        if e.code == ErrorCode::TemporarilyUnavailable {
            e
        } else {
            invalid(&e.description)
        }
    })?;
    if partner.id != client.partner_id {
        return Err(invalid(
            "the assertion is from another partner than the client's",
        ));
    }
    let linked::Linked {
        username,
        home,
        user: _,
        sub,
        consented,
        password_epoch,
    } = linked.ok_or_else(|| invalid("the partner account is not linked"))?;
    let requested = requested_scopes(scope.as_deref(), client, true)?;
    // The link lets the partner recognise the user (openid); anything more only as far as the
    // user consented to it for this client.
    let scopes = linked_scopes(requested, scope.is_some(), &consented)?;
    // A grant of its own, so userinfo, introspection and revocation work as for any token.
    // The grant lives with its user: its id names the user's region.
    let random_id = Base64UrlUnpadded::encode_string(&random::bytes::<{ grant::ID_LEN }>()?);
    let grant_id = crate::protocol::grant::grant_id_in(home, &random_id);
    let g = Grant {
        grant_id: grant_id.clone(),
        client_id: client.client_id.clone(),
        partner_id: partner.id.clone(),
        username: Some(username.clone()),
        sub: sub.clone(),
        scopes: scopes.clone(),
        nonce: None,
        auth_time: None,
        // The scopes' claims are released at the UserInfo endpoint, not in the ID token.
        id_claims: Default::default(),
        claims: Default::default(),
        created_at: now,
        code: None,
        refresh: None,
        revoked: false,
        password_epoch,
    };
    // The grant ends with the user's password or account, as well as with the link it was
    // issued through, and lives as long as its one access token.
    let via = user_grant::ViaLink {
        partner: &partner,
        linked_with: &partner.id,
        partner_sub: &partner_sub,
        until: now + ACCESS_TOKEN_TTL_S,
        gone: invalid("the partner account is not linked"),
    };
    user_grant::issue(env, &g, ACCESS_TOKEN_TTL_S, None, Some(via)).await?;
    let who = Subject {
        sub: &sub,
        gid: &grant_id,
        auth_time: None,
    };
    let at = access_token(cx, who, &scopes).await?;
    Ok(TokenResponse::bearer(at, &scopes))
}
