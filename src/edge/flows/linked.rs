//! Finding the platform user a partner account is linked to: the link's shard (nearest first),
//! then, for a flow that needs more than the user's own object will check again, the user's
//! object confirms the link is still to this person.

use crate::edge::calls::links::Store;
use crate::edge::calls::{links, users};
use crate::edge::flows::partner_jwt::{
    refused, {claim_once, verify_assertion},
};
use crate::edge::rt::config;
use crate::protocol::assertion::Checked;
use crate::protocol::client::ClientId;
use crate::protocol::error::{ApiError, ErrorCode};
use crate::protocol::grant::hash_secret;
use crate::protocol::link::PartnerJwt;
use crate::protocol::link::CLOCK_SKEW_S;
use crate::protocol::partner::Partner;
use crate::protocol::region::Home;
use crate::protocol::user::{LinkState, UserView, Username};
use crate::store::links::{places_of, LinkUse, LinkedAccount, Lookup, LookupUse, Place};
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

/// A login assertion to use (or only check) in the shard of the link it signs in.
#[derive(Clone, Copy)]
pub struct UseAssertion<'a> {
    pub checked: &'a Checked,
    /// `false`: only refuse it if it was used (the page that asks the person first).
    pub use_it: bool,
}

/// What one store answered.
enum Answer {
    NotLinked,
    Found(LinkedAccount),
    Used,
}

async fn ask(
    env: &Env,
    partner: &Partner,
    store: Store,
    partner_sub: &str,
    using: Option<UseAssertion<'_>>,
    now: u64,
) -> Result<Answer, ApiError> {
    let salt = partner.subject_salt.as_deref();
    match using {
        None => {
            let cmd = Lookup {
                partner_sub: partner_sub.to_owned(),
            };
            Ok(
                match links::send(env, &partner.id, salt, store, cmd).await? {
                    Some(a) => Answer::Found(a),
                    None => Answer::NotLinked,
                },
            )
        }
        Some(UseAssertion { checked, use_it }) => {
            let cmd = LookupUse {
                partner_sub: partner_sub.to_owned(),
                key_hash: hash_secret(&checked.jti),
                expires_at: checked.exp.saturating_add(CLOCK_SKEW_S),
                use_it,
                now,
            };
            Ok(
                match links::send(env, &partner.id, salt, store, cmd).await? {
                    LinkUse::NotLinked => Answer::NotLinked,
                    LinkUse::Found(a) => Answer::Found(a),
                    LinkUse::Used => Answer::Used,
                },
            )
        }
    }
}

/// The link of partner account `partner_sub`, if any. Its shard in `guess` (the region the
/// request most likely comes from: `config::visitor_region`) is asked first, so a pupil's
/// automatic login from their own region stays there; if it has none, the other regions'
/// shards (and, while `LINKS_LEGACY` is set, the partner's store of the earlier layout) are
/// asked at once. No guess: all of them at once. With `using`, the login assertion is used (or
/// checked) in the shard that holds the link: a used one is refused.
pub async fn find_link(
    env: &Env,
    partner: &Partner,
    partner_sub: &str,
    guess: Home,
    using: Option<UseAssertion<'_>>,
    now_ms: u64,
) -> Result<Option<FoundLink>, ApiError> {
    let found = |answer: Answer, home: Home| -> Result<Option<FoundLink>, ApiError> {
        match answer {
            Answer::NotLinked => Ok(None),
            Answer::Used => Err(refused("The login assertion was already used.")),
            Answer::Found(a) => Ok(Some(FoundLink {
                username: a.username,
                user_sub: a.user_sub,
                home,
            })),
        }
    };
    let first = guess.map(|g| Place::of(Some(g), partner_sub));
    if let Some(place) = first {
        let answer = ask(
            env,
            partner,
            Store::Shard(place),
            partner_sub,
            using,
            now_ms / 1000,
        )
        .await?;
        if !matches!(answer, Answer::NotLinked) {
            return found(answer, place.home);
        }
    }
    let rest: Vec<Place> = places_of(partner_sub)
        .into_iter()
        .filter(|p| Some(*p) != first)
        .collect();
    let asked = join_all(rest.iter().map(|place| {
        ask(
            env,
            partner,
            Store::Shard(*place),
            partner_sub,
            using,
            now_ms / 1000,
        )
    }));
    let legacy = async {
        if config::links_legacy(env)? {
            ask(
                env,
                partner,
                Store::Legacy,
                partner_sub,
                using,
                now_ms / 1000,
            )
            .await
        } else {
            Ok(Answer::NotLinked)
        }
    };
    let (answers, legacy) = futures_util::join!(asked, legacy);
    for (place, answer) in rest.iter().zip(answers) {
        let answer = answer?;
        if !matches!(answer, Answer::NotLinked) {
            return found(answer, place.home);
        }
    }
    match legacy? {
        // The earlier layout does not record where the user lives: the directory does.
        Answer::Found(a) => {
            let home = users::home_of(env, &a.username, now_ms).await?;
            found(Answer::Found(a), home)
        }
        other => found(other, None),
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
    using: Option<UseAssertion<'_>>,
    now_ms: u64,
) -> Result<Option<Linked>, ApiError> {
    let Some(FoundLink {
        username,
        user_sub,
        home,
    }) = find_link(env, partner, partner_sub, guess, using, now_ms).await?
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
        // The user's record names the account linked: a stray row of another account (a link
        // being undone) reaches nobody.
        Ok(SubjectState {
            link_account: Some(a),
            ..
        }) if a != partner_sub => Ok(None),
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
            ..
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
        find_linked(env, &partner, &checked.sub, client_id, guess, None, now_ms)
    );
    claimed?;
    Ok((partner, linked?, checked.sub))
}
