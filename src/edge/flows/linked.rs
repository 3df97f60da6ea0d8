//! Finding the platform user a partner account is linked to, from a verified partner assertion:
//! the link store's lookup, then the user's object confirms the link is still to this person.

use crate::edge::calls::{links, users};
use crate::edge::flows::partner_jwt::{
    refused, {claim_once, verify_assertion},
};
use crate::protocol::client::ClientId;
use crate::protocol::error::{ApiError, ErrorCode};
use crate::protocol::link::PartnerJwt;
use crate::protocol::partner::Partner;
use crate::protocol::region::Home;
use crate::protocol::user::{LinkState, UserView, Username};
use crate::store::links::{LinkedAccount, Lookup};
use crate::store::users::{Subject, SubjectState};
use worker::Env;

/// The platform user a partner account is linked to, as the user's object answered.
pub struct Linked {
    pub username: Username,
    /// Where the user lives (from the directory: a link store does not record it yet).
    pub home: Home,
    pub user: UserView,
    /// The user's pairwise subject for the partner.
    pub sub: String,
    /// The scopes the user consented to for the client asked about (if one was).
    pub consented: Vec<String>,
    pub password_epoch: u32,
}

/// The platform user the partner account `partner_sub` is linked to (with their consent for
/// `client_id`, if given); `None` if it is not linked.
pub async fn find_linked(
    env: &Env,
    partner: &Partner,
    partner_sub: &str,
    client_id: Option<ClientId>,
    now_ms: u64,
) -> Result<Option<Linked>, ApiError> {
    let cmd = Lookup {
        partner_sub: partner_sub.to_owned(),
    };
    match links::call(env, &partner.id, partner.subject_salt.as_deref(), cmd).await? {
        Some(LinkedAccount { username, user_sub }) => {
            // The link is to a person, not a username: a new account reusing it is not linked.
            let cmd = Subject {
                partner_id: partner.id.clone(),
                partner_salt: partner.subject_salt.clone(),
                client_id,
                renew_grant: None,
                link: true,
            };
            let home = users::home_of(env, &username, now_ms).await?;
            match users::call(env, &username, home, cmd).await {
                Ok(SubjectState {
                    sub,
                    link: Some(LinkState::Paused),
                    ..
                }) if sub == user_sub => Err(refused(
                    "This link is paused because the user set a new password. They confirm it \
                     again on their account page.",
                )),
                Ok(SubjectState {
                    user,
                    sub,
                    consented,
                    password_epoch,
                    link: Some(LinkState::Active),
                }) if sub == user_sub => Ok(Some(Linked {
                    username,
                    home,
                    user,
                    sub,
                    consented,
                    password_epoch,
                })),
                Err(error) if error.code != ErrorCode::NotFound => Err(error),
                // Another person, no link, or the user is gone.
                Ok(_) | Err(_) => Ok(None),
            }
        }
        None => Ok(None),
    }
}

/// Verifies a partner's assertion of `kind` for `audiences`, uses its `jti`, and finds the linked
/// platform user (with their consent for `client_id`, if given). `Ok(None)`: valid, but the
/// partner account is not linked.
pub async fn linked_user(
    env: &Env,
    assertion: &str,
    kind: PartnerJwt,
    audiences: &[String],
    client_id: Option<ClientId>,
    now_ms: u64,
) -> Result<(Partner, Option<Linked>, String), ApiError> {
    let (partner, checked) = verify_assertion(env, assertion, kind, audiences, now_ms).await?;
    claim_once(env, &partner, &checked, now_ms / 1000).await?;
    let linked = find_linked(env, &partner, &checked.sub, client_id, now_ms).await?;
    Ok((partner, linked, checked.sub))
}
