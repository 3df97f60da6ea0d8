//! Issuing a user grant and checking one later: the grant is remembered with its user (so a new
//! password or the user's removal revokes it) and with the link it came through; a grant's user
//! is checked to be the same person still.

use crate::edge::calls::{grants, links, users};
use crate::edge::flows::revoke;
use crate::protocol::error::{ApiError, ErrorCode};
use crate::protocol::grant::home_of_grant;
use crate::protocol::grant::{Grant, GRANT_ABSOLUTE_S};
use crate::protocol::partner::{Partner, PartnerId};
use crate::protocol::user::UserView;
use crate::store::grants::Created;
use crate::store::links::{AddGrant, GrantListed, Place};
use crate::store::users::{GrantAdded, RenewGrant, Subject, SubjectState};
use futures_util::future::join3;
use worker::Env;

/// The account link a user grant is issued through: unlinking ends the grant.
pub struct ViaLink<'a> {
    /// The link's partner as it is now: its subject salt names its link store.
    pub partner: &'a Partner,
    /// The partner the link was made with; when it is not `partner` (removed and created again
    /// meanwhile), the grant is refused with `gone`.
    pub linked_with: &'a PartnerId,
    /// The partner account linked: with the grant's region, it names the link's shard.
    pub partner_sub: &'a str,
    /// Until when the link keeps the grant listed: as long as a token of it may live.
    pub until: u64,
    /// The error when the link is gone.
    pub gone: ApiError,
}

/// Issues a user grant, the one way both the authorization endpoint (a code) and the token
/// endpoint (jwt-bearer) do: its own object, remembered with its user for `lives_s` (with
/// `session_hash`, only while that session lives; see [`record_with_user`]) and with the link it
/// came through, if any. The three are sent together: a new password, the user's removal or an
/// unlink that lists the grant revoked before its object holds it leaves the object marked, and
/// the creation is refused ([`Created::RevokedFirst`]). Nothing may be handed out from the grant
/// unless all three succeed; otherwise it is revoked again before the error.
pub async fn issue(
    env: &Env,
    grant: &Grant,
    lives_s: u64,
    session_hash: Option<String>,
    via: Option<ViaLink<'_>>,
) -> std::result::Result<(), ApiError> {
    let Some(username) = &grant.username else {
        return Err(ApiError::unavailable("a user grant without its user"));
    };
    if let Some(via) = &via {
        if *via.linked_with != via.partner.id {
            return Err(via.gone.clone());
        }
    }
    let in_session = session_hash.is_some();
    let with_link = async {
        let Some(via) = via else {
            return Ok(());
        };
        let (id, now) = (&grant.grant_id, grant.created_at);
        let place = Place::of(home_of_grant(id), via.partner_sub);
        let cmd = AddGrant {
            username: username.clone(),
            grant_id: id.clone(),
            expires_at: via.until,
            now,
        };
        add_grant(env, via.partner, place, cmd, via.gone).await
    };
    let (created, with_user, with_link) = join3(
        grants::create(env, grant),
        record_with_user(env, grant, lives_s, session_hash),
        with_link,
    )
    .await;
    let refused = match (created, with_user, with_link) {
        (Ok(Created::Stored), Ok(()), Ok(())) => return Ok(()),
        // The user's refusal first: it says what the user does next.
        (_, Err(error), _) | (_, Ok(()), Err(error)) => error,
        (Ok(Created::RevokedFirst), Ok(()), Ok(())) => changed_meanwhile(in_session),
        (Err(error), Ok(()), Ok(())) => error,
    };
    // Best effort: the grant's code or token has not been handed out, so it is unusable anyway.
    let _ = revoke::revoke_all(env, std::slice::from_ref(&grant.grant_id)).await;
    Err(refused)
}

/// The error when the user or the link changed while a grant was issued from them.
fn changed_meanwhile(in_session: bool) -> ApiError {
    if in_session {
        // Issued from a session: whichever ended it, the user signs in again.
        ApiError::new(
            ErrorCode::LoginRequired,
            "the session or password changed while the grant was issued; sign in again",
        )
    } else {
        ApiError::new(
            ErrorCode::InvalidGrant,
            "the user's password changed while the grant was issued; ask again",
        )
    }
}

/// Remembers a new user grant with its user, so that a new password or the user's removal
/// revokes it, for as long as it can be used (`lives_s`: a grant without refresh tokens ends
/// with its last access token). With `session_hash`, only while that session lives.
async fn record_with_user(
    env: &Env,
    grant: &Grant,
    lives_s: u64,
    session_hash: Option<String>,
) -> std::result::Result<(), ApiError> {
    let Some(username) = &grant.username else {
        return Ok(());
    };
    let in_session = session_hash.is_some();
    let cmd = crate::store::users::AddGrant {
        grant_id: grant.grant_id.clone(),
        client_id: grant.client_id.clone(),
        expires_at: grant.created_at + lives_s.min(GRANT_ABSOLUTE_S),
        session_hash,
        password_epoch: grant.password_epoch,
        now: grant.created_at,
    };
    let home = home_of_grant(&grant.grant_id);
    match crate::edge::calls::users::call(env, username, home, cmd).await {
        Ok(GrantAdded::Listed) => Ok(()),
        Ok(GrantAdded::SessionEnded | GrantAdded::PasswordChanged) => {
            Err(changed_meanwhile(in_session))
        }
        Err(error) if error.code == ErrorCode::NotFound => Err(ApiError::new(
            ErrorCode::InvalidGrant,
            "the user no longer exists",
        )),
        Err(error) => Err(error),
    }
}

/// Lists a grant issued through a user's link with `partner` (in its shard at `place`, or,
/// while `LINKS_LEGACY` is set and the shard has no such link, in the partner's store of the
/// earlier layout), so unlinking ends it. If the link is gone (removed meanwhile), `gone` is the
/// error.
async fn add_grant(
    env: &Env,
    partner: &Partner,
    place: Place,
    cmd: AddGrant,
    gone: ApiError,
) -> std::result::Result<(), ApiError> {
    let salt = partner.subject_salt.as_deref();
    let mut listed = links::send(
        env,
        &partner.id,
        salt,
        links::Store::Shard(place),
        cmd.clone(),
    )
    .await?;
    if listed == GrantListed::NotLinked && crate::edge::rt::config::links_legacy(env)? {
        listed = links::send(env, &partner.id, salt, links::Store::Legacy, cmd).await?;
    }
    match listed {
        GrantListed::Listed => Ok(()),
        GrantListed::NotLinked => Err(gone),
    }
}

/// The grant's user, if it is still the same person and the grant is younger than their
/// password: a deleted user, a new account that reuses the username (a different pairwise
/// subject), a password set after the grant began, or a partner removed (or created again under
/// its id, with another subject salt), is `None`. Storage failures are errors.
/// With `renew: (until, now)`, the user's object keeps the grant on its list until then (a
/// refresh is about to issue an access token that a new password must be able to revoke).
pub async fn grant_user(
    env: &Env,
    grant: &crate::protocol::grant::Grant,
    now_ms: u64,
    renew: Option<(u64, u64)>,
) -> std::result::Result<Option<UserView>, ApiError> {
    let Some(username) = &grant.username else {
        return Ok(None);
    };
    let partner_key = crate::protocol::partner::keys::partner(&grant.partner_id);
    let Some(partner) = crate::edge::rt::kvcache::get_json::<crate::protocol::partner::Partner>(
        env,
        &partner_key,
        now_ms,
    )
    .await?
    else {
        return Ok(None);
    };
    let cmd = Subject {
        partner_id: grant.partner_id.clone(),
        partner_salt: partner.subject_salt,
        client_id: None,
        link: false,
        renew_grant: renew.map(|(until, now)| RenewGrant {
            client_id: grant.client_id.clone(),
            grant_id: grant.grant_id.clone(),
            until,
            now,
            sub: grant.sub.clone(),
            password_epoch: grant.password_epoch,
        }),
    };
    // The grant lives with its user: its id names the user's region.
    let home = home_of_grant(&grant.grant_id);
    match users::call(env, username, home, cmd).await {
        Ok(SubjectState {
            user,
            sub,
            password_epoch,
            ..
        }) if sub == grant.sub && grant.password_epoch == password_epoch => Ok(Some(user)),
        Ok(SubjectState { .. }) => Ok(None),
        Err(error) if error.code == ErrorCode::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}
