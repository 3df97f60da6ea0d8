//! Finding the platform user a partner account is linked to: the link's shard (nearest first),
//! then, for a flow that needs more than the user's own object will check again, the user's
//! object confirms the link is still to this person.

use crate::edge::calls::{links, users};
use crate::edge::flows::partner_jwt::{
    refused, {claim_once, verify_assertion},
};
use crate::edge::rt::config;
use crate::protocol::client::ClientId;
use crate::protocol::error::{ApiError, ErrorCode};
use crate::protocol::link::PartnerJwt;
use crate::protocol::partner::Partner;
use crate::protocol::region::Home;
use crate::protocol::user::{LinkState, UserView, Username};
use crate::store::links::{places_of, LinkedAccount, Lookup, Place};
use crate::store::users::{Subject, SubjectState};
use futures_util::future::join_all;
use worker::Env;

/// A link as its shard answered it.
pub struct FoundLink {
    pub username: Username,
    /// The user's pairwise subject for the partner, as the link recorded it.
    pub user_sub: String,
    /// Where the user lives: the region of the shard that holds the link.
    pub home: Home,
}

/// The link of partner account `partner_sub`, if any. Its shard in `guess` (the region the
/// request most likely comes from: `config::visitor_region`) is asked first, so a pupil's
/// automatic login from their own region stays there; if it has none, the other regions'
/// shards (and, while `LINKS_LEGACY` is set, the partner's store of the earlier layout) are
/// asked at once. No guess: all of them at once.
pub async fn find_link(
    env: &Env,
    partner: &Partner,
    partner_sub: &str,
    guess: Home,
    now_ms: u64,
) -> Result<Option<FoundLink>, ApiError> {
    let salt = partner.subject_salt.as_deref();
    let lookup = || Lookup {
        partner_sub: partner_sub.to_owned(),
    };
    let found = |a: LinkedAccount, home: Home| FoundLink {
        username: a.username,
        user_sub: a.user_sub,
        home,
    };
    let first = guess.map(|g| Place::of(Some(g), partner_sub));
    if let Some(place) = first {
        if let Some(a) = links::call(env, &partner.id, salt, place, lookup()).await? {
            return Ok(Some(found(a, place.home)));
        }
    }
    let rest: Vec<Place> = places_of(partner_sub)
        .into_iter()
        .filter(|p| Some(*p) != first)
        .collect();
    let asked = join_all(
        rest.iter()
            .map(|place| links::call(env, &partner.id, salt, *place, lookup())),
    );
    let legacy = async {
        if config::links_legacy(env)? {
            links::call_legacy(env, &partner.id, salt, lookup()).await
        } else {
            Ok(None)
        }
    };
    let (answers, legacy) = futures_util::join!(asked, legacy);
    for (place, answer) in rest.iter().zip(answers) {
        if let Some(a) = answer? {
            return Ok(Some(found(a, place.home)));
        }
    }
    match legacy? {
        // The earlier layout does not record where the user lives: the directory does.
        Some(a) => {
            let home = users::home_of(env, &a.username, now_ms).await?;
            Ok(Some(found(a, home)))
        }
        None => Ok(None),
    }
}

/// The platform user a partner account is linked to, as the user's object answered.
pub struct Linked {
    pub username: Username,
    pub home: Home,
    pub user: UserView,
    /// The user's pairwise subject for the partner.
    pub sub: String,
    /// The scopes the user consented to for the client asked about (if one was).
    pub consented: Vec<String>,
    pub password_epoch: u32,
}

/// The platform user the partner account `partner_sub` is linked to (with their consent for
/// `client_id`, if given), with the user's object's word that the link is active and to this
/// person; `None` if it is not linked.
pub async fn find_linked(
    env: &Env,
    partner: &Partner,
    partner_sub: &str,
    client_id: Option<ClientId>,
    guess: Home,
    now_ms: u64,
) -> Result<Option<Linked>, ApiError> {
    let Some(FoundLink {
        username,
        user_sub,
        home,
    }) = find_link(env, partner, partner_sub, guess, now_ms).await?
    else {
        return Ok(None);
    };
    // The link is to a person, not a username: a new account reusing it is not linked.
    let cmd = Subject {
        partner_id: partner.id.clone(),
        partner_salt: partner.subject_salt.clone(),
        client_id,
        renew_grant: None,
        link: true,
    };
    match users::call(env, &username, home, cmd).await {
        Ok(SubjectState {
            sub,
            link: Some(LinkState::Paused),
            ..
        }) if sub == user_sub => Err(paused()),
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

/// The refusal of a link that a new password paused.
pub fn paused() -> ApiError {
    refused(
        "This link is paused because the user set a new password. They confirm it again on \
         their account page.",
    )
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
    guess: Home,
    now_ms: u64,
) -> Result<(Partner, Option<Linked>, String), ApiError> {
    let (partner, checked) = verify_assertion(env, assertion, kind, audiences, now_ms).await?;
    // Together: whatever the link, a used assertion is refused, and a fresh one is used up.
    let (claimed, linked) = futures_util::join!(
        claim_once(env, &partner, &checked, now_ms / 1000),
        find_linked(env, &partner, &checked.sub, client_id, guess, now_ms)
    );
    claimed?;
    Ok((partner, linked?, checked.sub))
}
