//! The user account's rules: what the user's Durable Object keeps (profile, sessions, trusted
//! devices, consents, listed grants, links), and what each command changes. Pure: the object
//! loads what a rule needs, passes it in with the time (and any hash or random value it made),
//! stores the [`Changes`] returned, and answers. Password hashing stays in the object; the
//! login rule only says when it runs.
//!
//! Storage layout (one object per user): `profile` ([`UserRecord`]), `links` (a list of
//! [`LinkEntry`]), `session:{hash}` ([`SessionRecord`]), `device:{hash}` (its expiry),
//! `consent:v2:{client_id}` (the scopes consented), `grant:{client_id}:{grant_id}` (its expiry).

use super::client::ClientId;
use super::link::recently_logged_in;
use super::partner::PartnerId;
use super::tokens::pairwise_sub;
use super::user::{
    self, link_state, pause_links, LinkEntry, LinkState, LinkVia, SessionRecord, UserRecord,
    UserSpec, UserView, Username, DEVICE_TTL_S, MAX_DEVICES, MAX_LINK_SESSIONS, MAX_LIVE_GRANTS,
    MAX_SESSIONS, SESSION_TTL_S,
};

pub const PROFILE: &str = "profile";
/// The user's links, one list (a user has few).
pub const LINKS: &str = "links";
pub const SESSION_PREFIX: &str = "session:";
pub const DEVICE_PREFIX: &str = "device:";
/// Every version of consent: a new password ends them all.
pub const CONSENT_PREFIX: &str = "consent:";
pub const GRANT_PREFIX: &str = "grant:";

pub fn session_key(hash: &str) -> String {
    format!("{SESSION_PREFIX}{hash}")
}

pub fn device_key(hash: &str) -> String {
    format!("{DEVICE_PREFIX}{hash}")
}

/// Consent given with the password (v2: earlier versions also stored consent given in a session
/// from automatic login, which is not the user's word).
pub fn consent_key(client_id: &str) -> String {
    format!("{CONSENT_PREFIX}v2:{client_id}")
}

/// A listed grant, under its client: `grant:{client_id}:{grant_id}` (the cap is per client).
pub fn grant_key(client_id: &str, grant_id: &str) -> String {
    format!("{}{grant_id}", client_grants(client_id))
}

/// The prefix of one client's listed grants.
pub fn client_grants(client_id: &str) -> String {
    format!("{GRANT_PREFIX}{client_id}:")
}

/// The grant id of a listed grant's key.
pub fn listed_grant_id(key: &str) -> &str {
    key.rsplit(':').next().unwrap_or("")
}

/// A stored entry as listed: its key, its expiry (the value itself if it is a number, else its
/// `expires_at`), and for sessions the partner whose automatic login started it.
#[derive(Clone, Debug, PartialEq)]
pub struct Listed {
    pub key: String,
    pub expires_at: Option<f64>,
    pub via_partner: Option<String>,
}

/// One value to store.
#[derive(Clone, Debug, PartialEq)]
pub enum Put {
    Profile(UserRecord),
    Links(Vec<LinkEntry>),
    Session {
        hash: String,
        session: SessionRecord,
    },
    Device {
        hash: String,
        expires_at: u64,
    },
    Consent {
        client_id: String,
        scopes: Vec<String>,
    },
    Grant {
        client_id: String,
        grant_id: String,
        expires_at: u64,
    },
}

impl Put {
    pub fn key(&self) -> String {
        match self {
            Put::Profile(_) => PROFILE.to_owned(),
            Put::Links(_) => LINKS.to_owned(),
            Put::Session { hash, .. } => session_key(hash),
            Put::Device { hash, .. } => device_key(hash),
            Put::Consent { client_id, .. } => consent_key(client_id),
            Put::Grant {
                client_id,
                grant_id,
                ..
            } => grant_key(client_id, grant_id),
        }
    }
}

/// What to store: the deletes first, then the puts in order (a new password ends sessions
/// before the profile with the new hash is saved, so a failure in between leaves the old
/// password working, not the new one with old sessions).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Changes {
    pub delete: Vec<String>,
    pub put: Vec<Put>,
}

impl Changes {
    fn put(put: Put) -> Changes {
        Changes {
            delete: Vec::new(),
            put: vec![put],
        }
    }

    /// These changes, then `other`'s.
    pub fn and(mut self, other: Changes) -> Changes {
        self.delete.extend(other.delete);
        self.put.extend(other.put);
        self
    }
}

/// Why a command does nothing for the caller. The object maps each to its reply in one place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// There is no such user.
    NoUser,
    /// A new user is made only with a password.
    PasswordRequired,
    /// No live session: never was, expired, logged out, or the user is gone.
    NoSession,
    /// The password changed since the grant being recorded was issued (another password epoch).
    PasswordChanged,
    /// The password did not match, or there is no such user: callers cannot tell which.
    BadCredentials,
    /// The browser is not one of this user's trusted devices.
    UntrustedDevice,
    /// The link is paused, gone, or to another person.
    NotLinked,
    /// Agreed under another password, or by another person with this username.
    ConsentVoid,
    /// No link with that partner to confirm.
    NoLink,
    /// The client has `MAX_LIVE_GRANTS` grants of this user that may still be live.
    TooManyGrants,
}

/// The user's pairwise subject for `partner`.
pub fn subject(record: &UserRecord, partner: &PartnerId, salt: Option<&str>) -> String {
    pairwise_sub(&record.subject_seed, partner, salt)
}

// ---- Sessions and devices

/// Drops `also`, every expired entry under `prefix` (an expiry that does not read counts as
/// expired), and the oldest entries of the kind `same` beyond `max - 1`: room for one more, so
/// a user never has more than `max` of a kind.
fn make_room(
    listed: &[Listed],
    prefix: &str,
    same: impl Fn(&Listed) -> bool,
    max: usize,
    also: Option<String>,
    now: u64,
) -> Vec<String> {
    let mut stale: Vec<String> = also.into_iter().collect();
    let mut kept: Vec<(String, f64)> = Vec::new();
    for e in listed.iter().filter(|e| e.key.starts_with(prefix)) {
        let t = e.expires_at.unwrap_or(0.0);
        if stale.contains(&e.key) {
            continue;
        }
        if t <= now as f64 {
            stale.push(e.key.clone());
        } else if same(e) {
            kept.push((e.key.clone(), t));
        }
    }
    kept.sort_by(|a, b| b.1.total_cmp(&a.1));
    stale.extend(
        kept.into_iter()
            .enumerate()
            .filter(|(i, _)| *i + 1 >= max)
            .map(|(_, (k, _))| k),
    );
    stale
}

/// A session that starts now, from the password (`via` None) or a partner's automatic login.
pub fn new_session(now: u64, via: Option<LinkVia>) -> SessionRecord {
    SessionRecord {
        auth_time: now,
        expires_at: now + SESSION_TTL_S,
        via_link: via,
    }
}

/// Stores a new session among `sessions` (the user's, as listed), ending the oldest of its kind
/// beyond the limit: `MAX_SESSIONS` password sessions, `MAX_LINK_SESSIONS` per partner from
/// automatic login. However many sign-ins there are, the user's storage stays small, and a
/// partner that signs the user in often never ends the user's own sessions.
pub fn start_session(sessions: &[Listed], hash: &str, session: SessionRecord, now: u64) -> Changes {
    let via = session
        .via_link
        .as_ref()
        .map(|v| v.partner_id.as_str().to_owned());
    let max = if via.is_some() {
        MAX_LINK_SESSIONS
    } else {
        MAX_SESSIONS
    };
    let delete = make_room(
        sessions,
        SESSION_PREFIX,
        |e| e.via_partner == via,
        max,
        None,
        now,
    );
    Changes {
        delete,
        put: vec![Put::Session {
            hash: hash.to_owned(),
            session,
        }],
    }
}

/// The session stored under `hash` if it is still live; an expired one is removed.
pub fn live_session(
    hash: &str,
    stored: Option<SessionRecord>,
    now: u64,
) -> (Option<SessionRecord>, Changes) {
    match stored {
        Some(s) if now >= s.expires_at => (
            None,
            Changes {
                delete: vec![session_key(hash)],
                put: Vec::new(),
            },
        ),
        s => (s, Changes::default()),
    }
}

/// Ends the sessions that automatic login through `partner`'s link started.
pub fn end_link_sessions(sessions: &[Listed], partner: &PartnerId) -> Changes {
    Changes {
        delete: sessions
            .iter()
            .filter(|e| {
                e.key.starts_with(SESSION_PREFIX)
                    && e.via_partner.as_deref() == Some(partner.as_str())
            })
            .map(|e| e.key.clone())
            .collect(),
        put: Vec::new(),
    }
}

pub fn logout(hash: &str) -> Changes {
    Changes {
        delete: vec![session_key(hash)],
        put: Vec::new(),
    }
}

/// Whether a device stored until `expires_at` (None: not stored) is trusted at `now`.
pub fn device_trusted(expires_at: Option<u64>, now: u64) -> bool {
    expires_at.is_some_and(|t| now < t)
}

/// Trusts the browser holding the device secret `new` (replacing `old`, the one it signed in
/// with): at most `MAX_DEVICES` per user, the oldest dropped.
pub fn trust_device(devices: &[Listed], old: Option<&str>, new: &str, now: u64) -> Changes {
    let delete = make_room(
        devices,
        DEVICE_PREFIX,
        |_| true,
        MAX_DEVICES,
        old.map(device_key),
        now,
    );
    Changes {
        delete,
        put: vec![Put::Device {
            hash: new.to_owned(),
            expires_at: now + DEVICE_TTL_S,
        }],
    }
}

/// Who a login is, before anything is stored. `device`: asked with a device cookie, the stored
/// expiry of that device (None if not stored). `verify` checks the password against the stored
/// hash, or with `None` does the same work against nothing: it runs exactly once unless the
/// device is refused (at once, before any password work), so no timing tells whether the
/// username exists.
pub fn check_login(
    profile: Option<&UserRecord>,
    device: Option<Option<u64>>,
    verify: impl FnOnce(Option<&str>) -> bool,
    now: u64,
) -> Result<&UserRecord, Refusal> {
    if let Some(expires_at) = device {
        if !device_trusted(expires_at, now) {
            return Err(Refusal::UntrustedDevice);
        }
    }
    let Some(record) = profile else {
        verify(None);
        return Err(Refusal::BadCredentials);
    };
    if !verify(Some(&record.password_hash)) {
        return Err(Refusal::BadCredentials);
    }
    Ok(record)
}

// ---- Consent

/// Whether what was consented covers every scope asked.
pub fn consent_covers(consented: &[String], asked: &[String]) -> bool {
    asked.iter().all(|s| consented.contains(s))
}

/// Consent to `scopes` for `client_id`, added to what was consented before.
pub fn add_consent(
    client_id: &ClientId,
    mut consented: Vec<String>,
    scopes: Vec<String>,
) -> Changes {
    for s in scopes {
        if !consented.contains(&s) {
            consented.push(s);
        }
    }
    Changes::put(Put::Consent {
        client_id: client_id.as_str().to_owned(),
        scopes: consented,
    })
}

// ---- Links

/// Automatic login starts a session only while the link with the partner is active and still
/// to this person (`user_sub`): a new password or an unlinking since the lookup wins.
pub fn may_auto_login(
    record: &UserRecord,
    links: &[LinkEntry],
    via: &LinkVia,
    partner_salt: Option<&str>,
    user_sub: &str,
) -> bool {
    let same_account = links
        .iter()
        .find(|l| l.partner_id == via.partner_id)
        .and_then(|l| l.partner_sub.as_deref())
        .is_none_or(|sub| sub == via.partner_sub);
    link_state(links, &via.partner_id) == LinkState::Active
        && same_account
        && subject(record, &via.partner_id, partner_salt) == user_sub
}

/// A link agreed to stands only for the same person (`user_sub` for the partner, with its salt)
/// under the same password.
pub fn agreement_stands(
    record: &UserRecord,
    partner: &PartnerId,
    user_sub: &str,
    partner_salt: Option<&str>,
    password_epoch: u32,
) -> bool {
    password_epoch == record.password_epoch && subject(record, partner, partner_salt) == user_sub
}

/// Records the link with `partner` (a paused one is active again); see [`user::record_link`].
/// `None`: the user is linked to another account of the partner (nothing changes).
pub fn record_link(
    mut links: Vec<LinkEntry>,
    partner: &PartnerId,
    partner_sub: Option<&str>,
    account_label: Option<String>,
    now: u64,
) -> Option<Changes> {
    user::record_link(&mut links, partner, partner_sub, account_label, now)
        .then(|| Changes::put(Put::Links(links)))
}

/// Notes the partner account of a link moved from the earlier layout; see
/// [`user::note_link_account`]. `None`: nothing to note.
pub fn note_link_account(
    mut links: Vec<LinkEntry>,
    partner: &PartnerId,
    partner_sub: &str,
) -> Option<Changes> {
    user::note_link_account(&mut links, partner, partner_sub)
        .then(|| Changes::put(Put::Links(links)))
}

/// A paused link is confirmed only with the password, signed in within the last minutes (as
/// for linking): a session from automatic login, or one left open on a shared computer, cannot.
pub fn may_confirm_link(
    profile: Option<&UserRecord>,
    session: Option<&SessionRecord>,
    now: u64,
) -> bool {
    match (profile, session) {
        (Some(_), Some(s)) => s.via_link.is_none() && recently_logged_in(s.auth_time, now),
        _ => false,
    }
}

/// Confirms the link with `partner`, which must exist.
pub fn confirm_link(
    links: Vec<LinkEntry>,
    partner: &PartnerId,
    now: u64,
) -> Result<Changes, Refusal> {
    if link_state(&links, partner) == LinkState::Absent {
        return Err(Refusal::NoLink);
    }
    record_link(links, partner, None, None, now).ok_or(Refusal::NoLink)
}

/// Forgets the link with `partner`; the sessions that came through it end with it (again, if
/// one was started since they were ended).
pub fn forget_link(sessions: &[Listed], mut links: Vec<LinkEntry>, partner: &PartnerId) -> Changes {
    links.retain(|l| l.partner_id != *partner);
    end_link_sessions(sessions, partner).and(Changes::put(Put::Links(links)))
}

// ---- Grants

/// Lists a grant of `client_id` until `expires_at`, among `listed` (the client's listed grants):
/// expired entries are forgotten on the way (an entry whose expiry does not read is kept:
/// revoking too much is safe), and a grant not listed yet is refused once the client has
/// `MAX_LIVE_GRANTS` (so neither one partner's flood nor the work of revoking grows without
/// bound, and no partner blocks another). The changes apply either way.
pub fn list_grant(
    listed: &[Listed],
    client_id: &str,
    grant_id: &str,
    expires_at: u64,
    now: u64,
) -> (Changes, Result<(), Refusal>) {
    let prefix = client_grants(client_id);
    let (mut live, mut expired) = (Vec::new(), Vec::new());
    for e in listed.iter().filter(|e| e.key.starts_with(&prefix)) {
        if e.expires_at.is_some_and(|t| t <= now as f64) {
            expired.push(e.key.clone());
        } else {
            live.push(e.key.as_str());
        }
    }
    let key = grant_key(client_id, grant_id);
    let mut changes = Changes {
        delete: expired,
        put: Vec::new(),
    };
    if !live.contains(&key.as_str()) && live.len() >= MAX_LIVE_GRANTS {
        return (changes, Err(Refusal::TooManyGrants));
    }
    changes.put.push(Put::Grant {
        client_id: client_id.to_owned(),
        grant_id: grant_id.to_owned(),
        expires_at,
    });
    (changes, Ok(()))
}

/// Whether a grant (issued to `grant_sub` under `password_epoch`) is still this user's: the same
/// person for the partner, under the same password. Only such a grant is listed again.
pub fn still_theirs(record: &UserRecord, sub: &str, grant_sub: &str, password_epoch: u32) -> bool {
    grant_sub == sub && password_epoch == record.password_epoch
}

/// A grant is listed only for an existing user, and only if it was issued under the current
/// password (else the password changed in between, and the grant is over).
pub fn check_add_grant(profile: Option<&UserRecord>, password_epoch: u32) -> Result<(), Refusal> {
    match profile {
        None => Err(Refusal::NoUser),
        Some(r) if r.password_epoch != password_epoch => Err(Refusal::PasswordChanged),
        Some(_) => Ok(()),
    }
}

/// Forgets the listed grants named (revoked).
pub fn forget_grants(listed: &[Listed], grant_ids: &[String]) -> Changes {
    Changes {
        delete: listed
            .iter()
            .filter(|e| e.key.starts_with(GRANT_PREFIX))
            .filter(|e| grant_ids.iter().any(|g| g == listed_grant_id(&e.key)))
            .map(|e| e.key.clone())
            .collect(),
        put: Vec::new(),
    }
}

/// Sorts out everything stored: the ids of listed grants that may still be live (an expiry that
/// does not read counts as live: revoking too much is safe), and the keys to delete (expired
/// grant entries, and every other key `drop` picks).
fn sort_out(
    everything: &[Listed],
    now: u64,
    drop: impl Fn(&str) -> bool,
) -> (Vec<String>, Vec<String>) {
    let (mut live, mut gone) = (Vec::new(), Vec::new());
    for e in everything {
        if e.key.starts_with(GRANT_PREFIX) {
            if e.expires_at.is_some_and(|t| t <= now as f64) {
                gone.push(e.key.clone());
            } else {
                live.push(listed_grant_id(&e.key).to_owned());
            }
        } else if drop(&e.key) {
            gone.push(e.key.clone());
        }
    }
    (live, gone)
}

// ---- The user itself

/// What removing the user does, with `everything` stored listed: all but the grant list goes at
/// once (from here on no session, sign-in or new grant exists), and the grants that may still
/// be live are handed back to revoke (then forgotten), so a retry finishes the job. Not found
/// only when there is neither a user nor anything left to revoke.
pub fn delete_user(
    profile_exists: bool,
    everything: &[Listed],
    now: u64,
) -> Result<(Vec<String>, Changes), Refusal> {
    let (revoke, gone) = sort_out(everything, now, |k| !k.starts_with(GRANT_PREFIX));
    if !profile_exists && revoke.is_empty() {
        return Err(Refusal::NoUser);
    }
    Ok((
        revoke,
        Changes {
            delete: gone,
            put: Vec::new(),
        },
    ))
}

/// What an admin `Put` does with the password, decided before any hashing or loading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasswordPlan<'a> {
    /// A replace without a password keeps the current one.
    Keep(&'a UserRecord),
    /// A new user, with this password.
    First(&'a str),
    /// A new password for an existing user.
    Replace(&'a UserRecord, &'a str),
}

pub fn password_plan<'a>(
    existing: Option<&'a UserRecord>,
    password: Option<&'a str>,
) -> Result<PasswordPlan<'a>, Refusal> {
    match (existing, password) {
        (Some(old), None) => Ok(PasswordPlan::Keep(old)),
        (None, Some(pw)) => Ok(PasswordPlan::First(pw)),
        (Some(old), Some(pw)) => Ok(PasswordPlan::Replace(old, pw)),
        (None, None) => Err(Refusal::PasswordRequired),
    }
}

/// The plan carried out: what the object hashed, made, or loaded for it.
#[derive(Clone, Debug)]
pub enum Password<'a> {
    Keep(&'a UserRecord),
    First {
        hash: String,
        subject_seed: String,
    },
    Replace {
        old: &'a UserRecord,
        hash: String,
        /// Everything stored, listed.
        everything: &'a [Listed],
        links: Vec<LinkEntry>,
    },
}

/// A saved user: the reply's parts and what to store.
#[derive(Clone, Debug, PartialEq)]
pub struct Saved {
    pub user: UserView,
    pub created: bool,
    /// With a new password: the grants to revoke.
    pub revoke: Vec<String>,
    pub changes: Changes,
}

/// Saves the user from `spec` (its password already planned and hashed into `password`).
/// A new password counts one more password epoch and ends every session and device first, and
/// the grants are handed back to be revoked: whoever knew the old password is cut off. Consent
/// given with the old password goes too (every version), and every link waits for the user to
/// confirm it again: nothing the old password agreed to acts any more.
pub fn put_user(username: Username, spec: UserSpec, password: Password<'_>, now: u64) -> Saved {
    let (old, password_hash, password_epoch, subject_seed) = match &password {
        Password::Keep(old) => (
            Some(*old),
            old.password_hash.clone(),
            old.password_epoch,
            old.subject_seed.clone(),
        ),
        Password::First { hash, subject_seed } => (None, hash.clone(), 0, subject_seed.clone()),
        Password::Replace { old, hash, .. } => (
            Some(*old),
            hash.clone(),
            old.password_epoch.wrapping_add(1),
            old.subject_seed.clone(),
        ),
    };
    let record = UserRecord {
        username,
        subject_seed,
        name: spec.name,
        email: spec.email,
        email_verified: spec.email_verified,
        roles: spec.roles,
        password_hash,
        created_at: old.map_or(now, |r| r.created_at),
        updated_at: now,
        password_epoch,
        // Fixed at creation: the object a replace reaches is already the user's.
        region: old.map_or(spec.region, |r| r.region),
    };
    let (revoke, mut changes) = match password {
        Password::Replace {
            everything,
            mut links,
            ..
        } => {
            let (revoke, ended) = sort_out(everything, now, |k| {
                k.starts_with(SESSION_PREFIX)
                    || k.starts_with(DEVICE_PREFIX)
                    || k.starts_with(CONSENT_PREFIX)
            });
            let mut changes = Changes {
                delete: ended,
                put: Vec::new(),
            };
            if !links.is_empty() {
                pause_links(&mut links);
                changes.put.push(Put::Links(links));
            }
            (revoke, changes)
        }
        Password::Keep(_) | Password::First { .. } => (Vec::new(), Changes::default()),
    };
    let user = UserView::from(&record);
    changes.put.push(Put::Profile(record));
    Saved {
        user,
        created: old.is_none(),
        revoke,
        changes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_000_000;

    fn record(epoch: u32) -> UserRecord {
        UserRecord {
            username: Username::parse("lena").unwrap(),
            subject_seed: "seed".into(),
            name: "Lena".into(),
            email: None,
            email_verified: false,
            roles: vec!["pupil".into()],
            password_hash: "$argon2id$old".into(),
            created_at: 10,
            updated_at: 20,
            password_epoch: epoch,
            region: None,
        }
    }

    fn partner(id: &str) -> PartnerId {
        PartnerId::parse(id).unwrap()
    }

    fn via(id: &str) -> LinkVia {
        LinkVia {
            partner_id: partner(id),
            partner_sub: "p-123".into(),
        }
    }

    fn entry(key: &str, expires_at: Option<u64>) -> Listed {
        Listed {
            key: key.into(),
            expires_at: expires_at.map(|t| t as f64),
            via_partner: None,
        }
    }

    /// Live sessions `{tag}{i}` expiring one second apart (the first is the oldest).
    fn sessions(tag: &str, n: usize, via_partner: Option<&str>) -> Vec<Listed> {
        (0..n)
            .map(|i| Listed {
                key: session_key(&format!("{tag}{i}")),
                expires_at: Some((NOW + 100 + i as u64) as f64),
                via_partner: via_partner.map(str::to_owned),
            })
            .collect()
    }

    fn link(id: &str, paused: bool) -> LinkEntry {
        LinkEntry {
            partner_id: partner(id),
            linked_at: 5,
            paused,
            account_label: None,
            partner_sub: None,
        }
    }

    fn spec() -> UserSpec {
        UserSpec {
            password: None,
            name: "Lena B".into(),
            email: None,
            email_verified: false,
            roles: vec![],
            region: None,
        }
    }

    fn put_keys(c: &Changes) -> Vec<String> {
        c.put.iter().map(Put::key).collect()
    }

    #[test]
    fn stored_keys_keep_their_layout() {
        assert_eq!(session_key("h"), "session:h");
        assert_eq!(device_key("h"), "device:h");
        assert_eq!(consent_key("client-1"), "consent:v2:client-1");
        assert_eq!(grant_key("client-1", "g1"), "grant:client-1:g1");
        assert_eq!(listed_grant_id("grant:client-1:g1"), "g1");
        assert_eq!(PROFILE, "profile");
        assert_eq!(LINKS, "links");
    }

    #[test]
    fn sessions_beyond_the_cap_make_room_by_ending_the_oldest() {
        let listed = sessions("s", MAX_SESSIONS, None);
        let c = start_session(&listed, "new", new_session(NOW, None), NOW);
        assert_eq!(c.delete, vec![session_key("s0")], "only the oldest ends");
        assert_eq!(put_keys(&c), vec![session_key("new")]);
        // Below the cap, nothing ends.
        let c = start_session(&listed[1..], "new", new_session(NOW, None), NOW);
        assert!(c.delete.is_empty());
    }

    #[test]
    fn link_sessions_have_their_own_cap() {
        let listed = sessions("a", MAX_LINK_SESSIONS, Some("acme"));
        let c = start_session(&listed, "new", new_session(NOW, Some(via("acme"))), NOW);
        assert_eq!(c.delete, vec![session_key("a0")]);
        let below = &listed[..MAX_LINK_SESSIONS - 1];
        let c = start_session(below, "new", new_session(NOW, Some(via("acme"))), NOW);
        assert!(c.delete.is_empty());
    }

    #[test]
    fn a_partner_signing_in_often_never_ends_the_users_own_sessions() {
        let mut listed = sessions("own", MAX_SESSIONS - 1, None);
        listed.extend(sessions("beta", MAX_LINK_SESSIONS - 1, Some("beta")));
        listed.extend(sessions("acme", MAX_LINK_SESSIONS, Some("acme")));
        let c = start_session(&listed, "new", new_session(NOW, Some(via("acme"))), NOW);
        assert_eq!(c.delete, vec![session_key("acme0")], "only acme's own");
        // And the user's password sessions count only themselves.
        let c = start_session(&listed, "new", new_session(NOW, None), NOW);
        assert!(c.delete.is_empty(), "{:?}", c.delete);
    }

    #[test]
    fn making_room_ends_expired_sessions_of_every_kind_and_unreadable_ones() {
        let mut listed = sessions("own", 2, None);
        listed.push(Listed {
            key: session_key("old-link"),
            expires_at: Some(NOW as f64),
            via_partner: Some("beta".into()),
        });
        listed.push(entry(&session_key("garbled"), None));
        let c = start_session(&listed, "new", new_session(NOW, None), NOW);
        assert_eq!(
            c.delete,
            vec![session_key("old-link"), session_key("garbled")]
        );
    }

    #[test]
    fn a_session_lasts_the_session_ttl_from_its_login() {
        let s = new_session(NOW, Some(via("acme")));
        assert_eq!(s.auth_time, NOW);
        assert_eq!(s.expires_at, NOW + SESSION_TTL_S);
        assert_eq!(s.via_link, Some(via("acme")));
    }

    #[test]
    fn an_expired_session_is_no_session_and_is_removed() {
        let s = new_session(NOW, None);
        let (live, c) = live_session("h", Some(s.clone()), s.expires_at - 1);
        assert_eq!(live, Some(s.clone()));
        assert_eq!(c, Changes::default());
        let (live, c) = live_session("h", Some(s.clone()), s.expires_at);
        assert_eq!(live, None);
        assert_eq!(c.delete, vec![session_key("h")]);
        assert_eq!(live_session("h", None, NOW), (None, Changes::default()));
    }

    #[test]
    fn devices_beyond_the_cap_forget_the_oldest_and_the_one_replaced() {
        let listed: Vec<Listed> = (0..MAX_DEVICES)
            .map(|i| entry(&device_key(&format!("d{i}")), Some(NOW + 100 + i as u64)))
            .collect();
        let c = trust_device(&listed, None, "new", NOW);
        assert_eq!(c.delete, vec![device_key("d0")]);
        assert_eq!(
            c.put,
            vec![Put::Device {
                hash: "new".into(),
                expires_at: NOW + DEVICE_TTL_S
            }]
        );
        // Replacing the device it signed in with makes the room itself.
        let c = trust_device(&listed, Some("d5"), "new", NOW);
        assert_eq!(c.delete, vec![device_key("d5")]);
    }

    #[test]
    fn an_untrusted_device_is_refused_before_any_password_work() {
        let rec = record(0);
        for device in [None, Some(NOW), Some(NOW - 1)] {
            let mut checked = false;
            let out = check_login(
                Some(&rec),
                Some(device),
                |_| {
                    checked = true;
                    true
                },
                NOW,
            );
            assert_eq!(out, Err(Refusal::UntrustedDevice), "{device:?}");
            assert!(!checked, "no password work");
        }
        let out = check_login(Some(&rec), Some(Some(NOW + 1)), |_| true, NOW);
        assert_eq!(out, Ok(&rec));
    }

    #[test]
    fn an_unknown_user_costs_a_password_check_like_a_known_one() {
        let mut asked = Vec::new();
        let out = check_login(
            None,
            None,
            |h: Option<&str>| {
                asked.push(h.map(str::to_owned));
                true
            },
            NOW,
        );
        assert_eq!(
            out,
            Err(Refusal::BadCredentials),
            "even if the check says yes"
        );
        assert_eq!(asked, vec![None], "the work is done once, against nothing");
    }

    #[test]
    fn a_wrong_password_is_bad_credentials_and_the_right_one_signs_in() {
        let rec = record(0);
        let mut asked = Vec::new();
        let out = check_login(
            Some(&rec),
            None,
            |h: Option<&str>| {
                asked.push(h.map(str::to_owned));
                false
            },
            NOW,
        );
        assert_eq!(out, Err(Refusal::BadCredentials));
        assert_eq!(asked, vec![Some("$argon2id$old".to_owned())]);
        assert_eq!(check_login(Some(&rec), None, |_| true, NOW), Ok(&rec));
    }

    #[test]
    fn consent_adds_to_what_was_consented() {
        let client = ClientId::parse("client-123").unwrap();
        let c = add_consent(
            &client,
            vec!["openid".into(), "profile".into()],
            vec!["profile".into(), "email".into()],
        );
        assert_eq!(
            c.put,
            vec![Put::Consent {
                client_id: "client-123".into(),
                scopes: vec!["openid".into(), "profile".into(), "email".into()],
            }]
        );
        assert!(c.delete.is_empty());
        assert_eq!(put_keys(&c), vec!["consent:v2:client-123".to_owned()]);
    }

    #[test]
    fn consent_covers_a_request_only_if_every_scope_was_consented() {
        let consented = vec!["openid".to_owned(), "profile".to_owned()];
        assert!(consent_covers(&consented, &["openid".into()]));
        assert!(consent_covers(&consented, &[]));
        assert!(!consent_covers(
            &consented,
            &["openid".into(), "email".into()]
        ));
        assert!(!consent_covers(&[], &["openid".into()]));
    }

    fn everything() -> Vec<Listed> {
        vec![
            entry(&consent_key("client-123"), None),
            entry("consent:client-123", None),
            entry(&device_key("d1"), Some(NOW + 10)),
            entry(&grant_key("client-123", "expired"), Some(NOW)),
            entry(&grant_key("client-123", "live"), Some(NOW + 1)),
            entry(&grant_key("client-456", "garbled"), None),
            entry(LINKS, None),
            entry(PROFILE, None),
            entry(&session_key("s1"), Some(NOW + 10)),
        ]
    }

    #[test]
    fn a_new_password_ends_every_session_and_lists_every_grant_for_revocation() {
        let old = record(3);
        let stored = everything();
        let saved = put_user(
            old.username.clone(),
            spec(),
            Password::Replace {
                old: &old,
                hash: "$argon2id$new".into(),
                everything: &stored,
                links: vec![],
            },
            NOW,
        );
        assert_eq!(saved.revoke, vec!["live".to_owned(), "garbled".to_owned()]);
        assert_eq!(
            saved.changes.delete,
            vec![
                consent_key("client-123"),
                "consent:client-123".to_owned(),
                device_key("d1"),
                grant_key("client-123", "expired"),
                session_key("s1"),
            ],
            "sessions, devices, every version of consent, and expired grant entries"
        );
        assert!(!saved.created);
        let [Put::Profile(new)] = saved.changes.put.as_slice() else {
            panic!("{:?}", saved.changes.put)
        };
        assert_eq!(new.password_epoch, 4, "one more password epoch");
        assert_eq!(new.password_hash, "$argon2id$new");
        assert_eq!(new.subject_seed, old.subject_seed, "the same person");
        assert_eq!((new.created_at, new.updated_at), (old.created_at, NOW));
        assert_eq!(new.name, "Lena B");
    }

    #[test]
    fn a_new_password_pauses_every_link_before_the_profile_is_saved() {
        let old = record(0);
        let saved = put_user(
            old.username.clone(),
            spec(),
            Password::Replace {
                old: &old,
                hash: "$argon2id$new".into(),
                everything: &[],
                links: vec![link("acme", false), link("beta", true)],
            },
            NOW,
        );
        assert_eq!(put_keys(&saved.changes), vec![LINKS, PROFILE]);
        let Some(Put::Links(links)) = saved.changes.put.first() else {
            panic!("{:?}", saved.changes.put)
        };
        assert!(links.iter().all(|l| l.paused), "{links:?}");
    }

    #[test]
    fn keeping_the_password_ends_nothing() {
        let old = record(2);
        let saved = put_user(old.username.clone(), spec(), Password::Keep(&old), NOW);
        assert!(saved.revoke.is_empty());
        assert!(saved.changes.delete.is_empty());
        let [Put::Profile(new)] = saved.changes.put.as_slice() else {
            panic!("{:?}", saved.changes.put)
        };
        assert_eq!(new.password_epoch, 2);
        assert_eq!(new.password_hash, old.password_hash);
        assert_eq!(new.created_at, old.created_at);
        assert!(!saved.created);
        assert_eq!(saved.user, UserView::from(new));
    }

    #[test]
    fn a_user_keeps_the_region_of_their_creation_whatever_a_replace_asks() {
        use crate::protocol::region::Region;
        let first = put_user(
            Username::parse("max").unwrap(),
            UserSpec {
                region: Some(Region::Apac),
                ..spec()
            },
            Password::First {
                hash: "$argon2id$first".into(),
                subject_seed: "fresh".into(),
            },
            NOW,
        );
        assert_eq!(first.user.region, Some(Region::Apac));
        let mut old = record(0);
        old.region = Some(Region::Apac);
        for asked in [None, Some(Region::Eu)] {
            let again = put_user(
                old.username.clone(),
                UserSpec {
                    region: asked,
                    ..spec()
                },
                Password::Keep(&old),
                NOW,
            );
            assert_eq!(again.user.region, Some(Region::Apac), "{asked:?}");
        }
        // A legacy user stays legacy: their object is in the global namespace.
        let legacy = record(0);
        let again = put_user(
            legacy.username.clone(),
            UserSpec {
                region: Some(Region::Eu),
                ..spec()
            },
            Password::Keep(&legacy),
            NOW,
        );
        assert_eq!(again.user.region, None);
    }

    #[test]
    fn a_new_user_starts_at_password_epoch_zero_with_its_own_subject_seed() {
        let saved = put_user(
            Username::parse("max").unwrap(),
            spec(),
            Password::First {
                hash: "$argon2id$first".into(),
                subject_seed: "fresh".into(),
            },
            NOW,
        );
        assert!(saved.created);
        let [Put::Profile(new)] = saved.changes.put.as_slice() else {
            panic!("{:?}", saved.changes.put)
        };
        assert_eq!(new.password_epoch, 0);
        assert_eq!(new.subject_seed, "fresh");
        assert_eq!((new.created_at, new.updated_at), (NOW, NOW));
    }

    #[test]
    fn a_password_is_planned_before_anything_is_hashed() {
        let old = record(0);
        assert_eq!(password_plan(None, None), Err(Refusal::PasswordRequired));
        assert_eq!(
            password_plan(None, Some("pw")),
            Ok(PasswordPlan::First("pw"))
        );
        assert_eq!(
            password_plan(Some(&old), None),
            Ok(PasswordPlan::Keep(&old))
        );
        assert_eq!(
            password_plan(Some(&old), Some("pw")),
            Ok(PasswordPlan::Replace(&old, "pw"))
        );
    }

    #[test]
    fn a_grant_issued_under_an_old_password_epoch_is_refused() {
        assert_eq!(
            check_add_grant(Some(&record(2)), 1),
            Err(Refusal::PasswordChanged)
        );
        assert_eq!(check_add_grant(Some(&record(2)), 2), Ok(()));
        assert_eq!(check_add_grant(None, 0), Err(Refusal::NoUser));
    }

    #[test]
    fn a_grant_is_listed_again_only_for_the_same_person_under_the_same_password() {
        let rec = record(1);
        assert!(still_theirs(&rec, "sub", "sub", 1));
        assert!(!still_theirs(&rec, "sub", "other", 1), "another person");
        assert!(!still_theirs(&rec, "sub", "sub", 0), "an old password");
    }

    fn grants(client: &str, n: usize) -> Vec<Listed> {
        (0..n)
            .map(|i| entry(&grant_key(client, &format!("g{i}")), Some(NOW + 60)))
            .collect()
    }

    #[test]
    fn grants_beyond_the_cap_are_refused_after_forgetting_expired_ones() {
        let mut listed = grants("client-123", MAX_LIVE_GRANTS);
        listed.push(entry(&grant_key("client-123", "old"), Some(NOW)));
        let (c, out) = list_grant(&listed, "client-123", "new", NOW + 60, NOW);
        assert_eq!(out, Err(Refusal::TooManyGrants));
        assert_eq!(
            c.delete,
            vec![grant_key("client-123", "old")],
            "forgotten anyway"
        );
        assert!(c.put.is_empty());
        // One fewer live grant, and there is room.
        let (c, out) = list_grant(&listed[1..], "client-123", "new", NOW + 60, NOW);
        assert_eq!(out, Ok(()));
        assert_eq!(put_keys(&c), vec![grant_key("client-123", "new")]);
    }

    #[test]
    fn a_listed_grant_is_renewed_even_at_the_cap() {
        let listed = grants("client-123", MAX_LIVE_GRANTS);
        let (c, out) = list_grant(&listed, "client-123", "g7", NOW + 900, NOW);
        assert_eq!(out, Ok(()));
        assert_eq!(
            c.put,
            vec![Put::Grant {
                client_id: "client-123".into(),
                grant_id: "g7".into(),
                expires_at: NOW + 900,
            }]
        );
    }

    #[test]
    fn the_grant_cap_is_per_client() {
        let listed = grants("client-456", MAX_LIVE_GRANTS);
        let (c, out) = list_grant(&listed, "client-123", "new", NOW + 60, NOW);
        assert_eq!(out, Ok(()));
        assert!(c.delete.is_empty());
    }

    #[test]
    fn a_grant_entry_whose_expiry_does_not_read_counts_as_live() {
        let mut listed = grants("client-123", MAX_LIVE_GRANTS - 1);
        listed.push(entry(&grant_key("client-123", "garbled"), None));
        let (c, out) = list_grant(&listed, "client-123", "new", NOW + 60, NOW);
        assert_eq!(out, Err(Refusal::TooManyGrants), "it fills a place");
        assert!(c.delete.is_empty(), "and is not forgotten");
    }

    #[test]
    fn forgetting_grants_removes_only_those_named() {
        let listed = grants("client-123", 3);
        let c = forget_grants(&listed, &["g1".into(), "unknown".into()]);
        assert_eq!(c.delete, vec![grant_key("client-123", "g1")]);
    }

    #[test]
    fn removing_a_user_keeps_only_the_grant_list_and_hands_back_live_grants() {
        let (revoke, c) = delete_user(true, &everything(), NOW).unwrap();
        assert_eq!(revoke, vec!["live".to_owned(), "garbled".to_owned()]);
        assert_eq!(
            c.delete,
            vec![
                consent_key("client-123"),
                "consent:client-123".to_owned(),
                device_key("d1"),
                grant_key("client-123", "expired"),
                LINKS.to_owned(),
                PROFILE.to_owned(),
                session_key("s1"),
            ]
        );
        assert!(c.put.is_empty());
    }

    #[test]
    fn removing_a_user_again_finishes_revoking_and_is_then_not_found() {
        let left = grants("client-123", 1);
        let (revoke, _) = delete_user(false, &left, NOW).unwrap();
        assert_eq!(revoke, vec!["g0".to_owned()]);
        assert_eq!(delete_user(false, &[], NOW), Err(Refusal::NoUser));
        let expired = vec![entry(&grant_key("client-123", "g"), Some(NOW))];
        assert_eq!(delete_user(false, &expired, NOW), Err(Refusal::NoUser));
    }

    #[test]
    fn automatic_login_needs_an_active_link_to_the_same_person() {
        let rec = record(0);
        let sub = subject(&rec, &partner("acme"), Some("salt"));
        let active = [link("acme", false)];
        assert!(may_auto_login(
            &rec,
            &active,
            &via("acme"),
            Some("salt"),
            &sub
        ));
        assert!(
            !may_auto_login(&rec, &active, &via("acme"), None, &sub),
            "another subject salt: another person"
        );
        assert!(!may_auto_login(
            &rec,
            &active,
            &via("acme"),
            Some("salt"),
            "x"
        ));
        assert!(!may_auto_login(
            &rec,
            &[link("acme", true)],
            &via("acme"),
            Some("salt"),
            &sub
        ));
        assert!(!may_auto_login(&rec, &[], &via("acme"), Some("salt"), &sub));
        // A link that names its partner account signs in that account only.
        let mut named = link("acme", false);
        named.partner_sub = Some(via("acme").partner_sub);
        assert!(may_auto_login(
            &rec,
            &[named.clone()],
            &via("acme"),
            Some("salt"),
            &sub
        ));
        named.partner_sub = Some("another-account".into());
        assert!(
            !may_auto_login(&rec, &[named], &via("acme"), Some("salt"), &sub),
            "another account of the partner"
        );
    }

    #[test]
    fn a_link_agreed_under_another_password_or_by_another_person_is_void() {
        let rec = record(1);
        let acme = partner("acme");
        let sub = subject(&rec, &acme, None);
        assert!(agreement_stands(&rec, &acme, &sub, None, 1));
        assert!(!agreement_stands(&rec, &acme, &sub, None, 0));
        assert!(!agreement_stands(&rec, &acme, "someone-else", None, 1));
    }

    #[test]
    fn only_a_recent_password_session_confirms_a_link() {
        let rec = record(0);
        let fresh = new_session(NOW, None);
        assert!(may_confirm_link(Some(&rec), Some(&fresh), NOW + 300));
        assert!(
            !may_confirm_link(Some(&rec), Some(&fresh), NOW + 301),
            "too old"
        );
        let auto = new_session(NOW, Some(via("acme")));
        assert!(
            !may_confirm_link(Some(&rec), Some(&auto), NOW),
            "automatic login"
        );
        assert!(!may_confirm_link(None, Some(&fresh), NOW), "no user");
        assert!(!may_confirm_link(Some(&rec), None, NOW), "no session");
    }

    #[test]
    fn confirming_a_link_activates_it_and_one_that_is_gone_is_refused() {
        let acme = partner("acme");
        assert_eq!(confirm_link(vec![], &acme, NOW), Err(Refusal::NoLink));
        let c = confirm_link(vec![link("acme", true), link("beta", true)], &acme, NOW).unwrap();
        assert_eq!(
            c.put,
            vec![Put::Links(vec![link("acme", false), link("beta", true)])]
        );
    }

    #[test]
    fn recording_a_link_keeps_its_date_and_takes_a_new_label() {
        let acme = partner("acme");
        let c = record_link(
            vec![link("acme", true)],
            &acme,
            None,
            Some("lena@acme".into()),
            NOW,
        )
        .unwrap();
        let mut want = link("acme", false);
        want.account_label = Some("lena@acme".into());
        assert_eq!(c.put, vec![Put::Links(vec![want])]);
        let c = record_link(vec![], &acme, None, None, NOW).unwrap();
        let Some(Put::Links(links)) = c.put.first() else {
            panic!("{:?}", c.put)
        };
        assert_eq!(links.first().map(|l| l.linked_at), Some(NOW));
    }

    #[test]
    fn unlinking_ends_only_the_sessions_that_came_through_the_link() {
        let mut listed = sessions("own", 2, None);
        listed.extend(sessions("acme", 2, Some("acme")));
        listed.extend(sessions("beta", 1, Some("beta")));
        let acme = partner("acme");
        let ended = vec![session_key("acme0"), session_key("acme1")];
        assert_eq!(end_link_sessions(&listed, &acme).delete, ended);
        let c = forget_link(
            &listed,
            vec![link("acme", false), link("beta", false)],
            &acme,
        );
        assert_eq!(c.delete, ended);
        assert_eq!(c.put, vec![Put::Links(vec![link("beta", false)])]);
        // The list is written even when it ends empty.
        let c = forget_link(&[], vec![], &acme);
        assert_eq!(c.put, vec![Put::Links(vec![])]);
    }

    #[test]
    fn logging_out_ends_that_session() {
        assert_eq!(logout("h").delete, vec![session_key("h")]);
    }
}
