//! The `UserStore` Durable Object (one per user). Password hashes
//! are made and checked inside the object and never leave it; sessions and consents live here
//! too, so one call answers "who is this, since when, and did they agree".

use crate::edge::rt::{objects, random};
use crate::protocol::error::{ApiError, ErrorCode};
use crate::protocol::link::recently_logged_in;
use crate::protocol::partner::PartnerId;
use crate::protocol::password::{self, OWASP_ARGON2ID};
use crate::protocol::tokens::pairwise_sub;
use crate::protocol::user::{
    link_state, pause_links, record_link, LinkEntry, LinkState, SessionRecord, UserRecord,
    UserView, DEVICE_TTL_S, MAX_DEVICES, MAX_LINK_SESSIONS, MAX_LIVE_GRANTS, MAX_SESSIONS,
    SESSION_TTL_S,
};
use crate::store::users::{UserCommand, UserReply};
use base64ct::{Base64UrlUnpadded, Encoding};
use serde::de::DeserializeOwned;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

const PROFILE: &str = "profile";

#[durable_object(fetch)]
pub struct UserStore {
    state: State,
}

fn storage_err(e: worker::Error) -> ApiError {
    ApiError::unavailable(format!("user storage: {e}"))
}

fn session_key(hash: &str) -> String {
    format!("{SESSION_PREFIX}{hash}")
}

/// Consent given with the password (v2: earlier versions also stored consent given in a session
/// from automatic login, which is not the user's word).
fn consent_key(client: &str) -> String {
    format!("{CONSENT_PREFIX}v2:{client}")
}

/// Every version of consent: a new password ends them all.
const CONSENT_PREFIX: &str = "consent:";

const SESSION_PREFIX: &str = "session:";

/// A stored entry as listed: its key, its expiry, and (sessions) the partner whose automatic
/// login started it.
struct Entry {
    key: String,
    expires_at: Option<f64>,
    via_partner: Option<String>,
}

const GRANT_PREFIX: &str = "grant:";

const DEVICE_PREFIX: &str = "device:";

fn device_key(hash: &str) -> String {
    format!("{DEVICE_PREFIX}{hash}")
}

/// A listed grant, under its client: `grant:{client_id}:{grant_id}` (the cap is per client).
fn grant_key(client_id: &str, grant_id: &str) -> String {
    format!("{GRANT_PREFIX}{client_id}:{grant_id}")
}

/// The grant id of a listed grant's key.
fn listed_grant_id(key: &str) -> &str {
    key.rsplit(':').next().unwrap_or("")
}

/// The user's links, one list (a user has few).
const LINKS: &str = "links";

impl DurableObject for UserStore {
    fn new(state: State, _env: Env) -> Self {
        UserStore { state }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        objects::serve(req, "user store", |cmd: UserCommand| self.execute(cmd)).await
    }
}

impl UserStore {
    async fn get<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> std::result::Result<Option<T>, ApiError> {
        self.state
            .storage()
            .get::<T>(key)
            .await
            .map_err(storage_err)
    }

    async fn put<T: serde::Serialize>(
        &self,
        key: &str,
        value: &T,
    ) -> std::result::Result<(), ApiError> {
        self.state
            .storage()
            .put(key, value)
            .await
            .map_err(storage_err)
    }

    /// The stored entries whose keys start with `prefix`: the key, its expiry (the value itself
    /// if it is a number, else its `expires_at`), and for sessions the partner whose automatic
    /// login started it.
    async fn entries(&self, prefix: &str) -> std::result::Result<Vec<Entry>, ApiError> {
        let map = self
            .state
            .storage()
            .list_with_options(worker::ListOptions::new().prefix(prefix))
            .await
            .map_err(storage_err)?;
        let field =
            |v: &wasm_bindgen::JsValue, name: &str| js_sys::Reflect::get(v, &name.into()).ok();
        let mut out = Vec::new();
        map.for_each(&mut |value, key| {
            if let Some(key) = key.as_string() {
                let expires_at = value
                    .as_f64()
                    .or_else(|| field(&value, "expires_at").and_then(|v| v.as_f64()));
                let via_partner = field(&value, "via_link")
                    .filter(|v| v.is_object())
                    .and_then(|v| field(&v, "partner_id"))
                    .and_then(|v| v.as_string());
                out.push(Entry {
                    key,
                    expires_at,
                    via_partner,
                });
            }
        });
        Ok(out)
    }

    /// The keys with `prefix` and their expiry.
    async fn keys_with_prefix(
        &self,
        prefix: &str,
    ) -> std::result::Result<Vec<(String, Option<f64>)>, ApiError> {
        Ok(self
            .entries(prefix)
            .await?
            .into_iter()
            .map(|e| (e.key, e.expires_at))
            .collect())
    }

    async fn delete_keys(&self, keys: Vec<String>) -> std::result::Result<(), ApiError> {
        // Storage deletes at most 128 keys per call.
        for chunk in keys.chunks(128) {
            self.state
                .storage()
                .delete_multiple(chunk.to_vec())
                .await
                .map_err(storage_err)?;
        }
        Ok(())
    }

    /// Everything stored for the user, listed once: the ids of listed grants that may still be
    /// live, and the keys to delete (expired grant entries, and every key `drop` picks).
    async fn sort_out(
        &self,
        now: u64,
        drop: impl Fn(&str) -> bool,
    ) -> std::result::Result<(Vec<String>, Vec<String>), ApiError> {
        let (mut live, mut gone) = (Vec::new(), Vec::new());
        for e in self.entries("").await? {
            if e.key.starts_with(GRANT_PREFIX) {
                // An entry that does not read as a time is kept live: revoking too much is safe.
                if e.expires_at.is_some_and(|t| t <= now as f64) {
                    gone.push(e.key);
                } else {
                    live.push(listed_grant_id(&e.key).to_owned());
                }
            } else if drop(&e.key) {
                gone.push(e.key);
            }
        }
        Ok((live, gone))
    }

    /// The keys of listed grants under `prefix` that may still be live; expired ones are
    /// dropped on the way.
    async fn live_grant_keys(
        &self,
        prefix: &str,
        now: u64,
    ) -> std::result::Result<Vec<String>, ApiError> {
        let (mut live, mut expired) = (Vec::new(), Vec::new());
        for (key, expires_at) in self.keys_with_prefix(prefix).await? {
            // An entry that does not read as a time is kept live: revoking too much is safe.
            if expires_at.is_some_and(|t| t <= now as f64) {
                expired.push(key);
            } else {
                live.push(key);
            }
        }
        self.delete_keys(expired).await?;
        Ok(live)
    }

    /// Lists a grant of `client_id` until `expires_at`, if the client has room (or the grant is
    /// listed already): at most `MAX_LIVE_GRANTS` per client, so neither one partner's flood
    /// nor the work of revoking grows without bound, and no partner blocks another.
    async fn list_grant(
        &self,
        client_id: &str,
        grant_id: &str,
        expires_at: u64,
        now: u64,
    ) -> std::result::Result<(), ApiError> {
        let key = grant_key(client_id, grant_id);
        let listed = self
            .live_grant_keys(&format!("{GRANT_PREFIX}{client_id}:"), now)
            .await?;
        if !listed.contains(&key) && listed.len() >= MAX_LIVE_GRANTS {
            return Err(ApiError::new(
                ErrorCode::TemporarilyUnavailable,
                "too many authorizations of this app for this user in the last minutes; try again later",
            ));
        }
        self.put(&key, &expires_at).await
    }

    /// Makes room for one more entry under `prefix` of the kind `same`: drops `also`, every
    /// expired entry, and the oldest entries of that kind beyond `max - 1`, so a user never has
    /// more than `max` of a kind (devices; password sessions; one partner's automatic-login
    /// sessions, which therefore never push out the user's own).
    async fn make_room(
        &self,
        prefix: &str,
        same: impl Fn(&Entry) -> bool,
        max: usize,
        also: Option<String>,
        now: u64,
    ) -> std::result::Result<(), ApiError> {
        let mut stale: Vec<String> = also.into_iter().collect();
        let mut kept: Vec<(String, f64)> = Vec::new();
        for e in self.entries(prefix).await? {
            let t = e.expires_at.unwrap_or(0.0);
            if stale.contains(&e.key) {
                continue;
            }
            if t <= now as f64 {
                stale.push(e.key);
            } else if same(&e) {
                kept.push((e.key, t));
            }
        }
        kept.sort_by(|a, b| b.1.total_cmp(&a.1));
        stale.extend(
            kept.into_iter()
                .enumerate()
                .filter(|(i, _)| *i + 1 >= max)
                .map(|(_, (k, _))| k),
        );
        self.delete_keys(stale).await
    }

    /// Trusts the browser holding the device secret `new` (replacing `old`, the one it signed in
    /// with): at most `MAX_DEVICES` per user, the oldest dropped.
    async fn trust_device(
        &self,
        old: Option<String>,
        new: &str,
        now: u64,
    ) -> std::result::Result<(), ApiError> {
        self.make_room(
            DEVICE_PREFIX,
            |_| true,
            MAX_DEVICES,
            old.map(|h| device_key(&h)),
            now,
        )
        .await?;
        self.put(&device_key(new), &(now + DEVICE_TTL_S)).await
    }

    /// Stores a new session, ending the oldest of its kind beyond the limit: `MAX_SESSIONS`
    /// password sessions, `MAX_LINK_SESSIONS` per partner from automatic login. However many
    /// sign-ins there are, the user's storage stays small, and a partner that signs the user in
    /// often never ends the user's own sessions.
    async fn start_session(
        &self,
        hash: &str,
        session: &SessionRecord,
        now: u64,
    ) -> std::result::Result<(), ApiError> {
        let via = session
            .via_link
            .as_ref()
            .map(|v| v.partner_id.as_str().to_owned());
        let max = if via.is_some() {
            MAX_LINK_SESSIONS
        } else {
            MAX_SESSIONS
        };
        self.make_room(SESSION_PREFIX, |e| e.via_partner == via, max, None, now)
            .await?;
        self.put(&session_key(hash), session).await
    }

    /// Ends the sessions that automatic login through `partner`'s link started.
    async fn end_link_sessions(&self, partner: &PartnerId) -> std::result::Result<(), ApiError> {
        let ended = self
            .entries(SESSION_PREFIX)
            .await?
            .into_iter()
            .filter(|e| e.via_partner.as_deref() == Some(partner.as_str()))
            .map(|e| e.key)
            .collect();
        self.delete_keys(ended).await
    }

    /// A live session, or None (an expired one is removed).
    async fn session(
        &self,
        hash: &str,
        now: u64,
    ) -> std::result::Result<Option<SessionRecord>, ApiError> {
        let Some(s) = self.get::<SessionRecord>(&session_key(hash)).await? else {
            return Ok(None);
        };
        if now >= s.expires_at {
            self.state
                .storage()
                .delete(&session_key(hash))
                .await
                .map_err(storage_err)?;
            return Ok(None);
        }
        Ok(Some(s))
    }

    async fn execute(&self, cmd: UserCommand) -> std::result::Result<UserReply, ApiError> {
        let existing: Option<UserRecord> = self.get(PROFILE).await?;
        match cmd {
            UserCommand::Get => existing
                .map(|r| UserReply::User {
                    user: UserView::from(&r),
                })
                .ok_or_else(|| ApiError::not_found("user")),
            UserCommand::Delete => {
                // A unit command, as before grant lists existed: the object reads the time.
                // Everything but the grant list goes, in one command: from here on no session,
                // sign-in or new grant exists for this user.
                let now = crate::edge::rt::clock::now_ms() / 1000;
                let (revoke, gone) = self.sort_out(now, |k| !k.starts_with(GRANT_PREFIX)).await?;
                if existing.is_none() && revoke.is_empty() {
                    return Err(ApiError::not_found("user"));
                }
                self.delete_keys(gone).await?;
                Ok(UserReply::Deleted { revoke })
            }
            UserCommand::Put {
                username,
                spec,
                now,
            } => {
                // The hash, the password epoch, and whether a new password replaces an old one.
                let (password_hash, password_epoch, new_password) =
                    match (&spec.password, &existing) {
                        (Some(pw), _) => {
                            let salt = random::bytes::<{ password::SALT_LEN }>()?;
                            let hash = password::hash_password(pw, &salt, OWASP_ARGON2ID)
                                .ok_or_else(|| ApiError::unavailable("password hashing failed"))?;
                            match &existing {
                                Some(old) => (hash, old.password_epoch.wrapping_add(1), true),
                                None => (hash, 0, false),
                            }
                        }
                        (None, Some(old)) => (old.password_hash.clone(), old.password_epoch, false),
                        (None, None) => {
                            return Err(ApiError::invalid_field(
                                "password",
                                "is required for a new user",
                            ))
                        }
                    };
                let subject_seed = match &existing {
                    Some(old) => old.subject_seed.clone(),
                    None => Base64UrlUnpadded::encode_string(&random::bytes::<16>()?),
                };
                let record = UserRecord {
                    username,
                    subject_seed,
                    name: spec.name,
                    email: spec.email,
                    roles: spec.roles,
                    password_hash,
                    created_at: existing.as_ref().map_or(now, |r| r.created_at),
                    updated_at: now,
                    password_epoch,
                };
                // A new password ends every session and device first (should saving the
                // password then fail, the user signs in again with the old one), and the grants
                // are handed back to be revoked: whoever knew the old password is cut off.
                // Consent given with the old password goes too, and every link waits for the
                // user to confirm it again: nothing the old password agreed to acts any more.
                let revoke = if new_password {
                    let (revoke, ended) = self
                        .sort_out(now, |k| {
                            k.starts_with(SESSION_PREFIX)
                                || k.starts_with(DEVICE_PREFIX)
                                || k.starts_with(CONSENT_PREFIX)
                        })
                        .await?;
                    self.delete_keys(ended).await?;
                    let mut links: Vec<LinkEntry> = self.get(LINKS).await?.unwrap_or_default();
                    if !links.is_empty() {
                        pause_links(&mut links);
                        self.put(LINKS, &links).await?;
                    }
                    revoke
                } else {
                    Vec::new()
                };
                self.put(PROFILE, &record).await?;
                Ok(UserReply::Saved {
                    user: UserView::from(&record),
                    created: existing.is_none(),
                    revoke,
                })
            }
            UserCommand::Login {
                password,
                session_hash,
                now,
                device_hash,
                new_device_hash,
            } => {
                // Checked before anything else, and as fast for unknown users: no timing tells
                // whether the username exists.
                if let Some(hash) = &device_hash {
                    let live = self
                        .get::<u64>(&device_key(hash))
                        .await?
                        .is_some_and(|expires_at| now < expires_at);
                    if !live {
                        return Ok(UserReply::UntrustedDevice);
                    }
                }
                let Some(record) = existing else {
                    password::verify_against_nothing(&password, OWASP_ARGON2ID);
                    return Ok(UserReply::BadCredentials);
                };
                if !password::verify_password(&password, &record.password_hash) {
                    return Ok(UserReply::BadCredentials);
                }
                let session = SessionRecord {
                    auth_time: now,
                    expires_at: now + SESSION_TTL_S,
                    via_link: None,
                };
                self.start_session(&session_hash, &session, now).await?;
                if let Some(new) = new_device_hash {
                    self.trust_device(device_hash, &new, now).await?;
                }
                Ok(UserReply::User {
                    user: UserView::from(&record),
                })
            }
            UserCommand::Session {
                session_hash,
                partner_id,
                partner_salt,
                client_id,
                scopes,
                now,
            } => {
                let (Some(record), Some(session)) =
                    (existing, self.session(&session_hash, now).await?)
                else {
                    return Ok(UserReply::NoSession);
                };
                let consented_scopes: Vec<String> = self
                    .get(&consent_key(client_id.as_str()))
                    .await?
                    .unwrap_or_default();
                Ok(UserReply::SessionState {
                    sub: pairwise_sub(&record.subject_seed, &partner_id, partner_salt.as_deref()),
                    user: UserView::from(&record),
                    auth_time: session.auth_time,
                    consented: scopes.iter().all(|s| consented_scopes.contains(s)),
                    via_link: session.via_link,
                    password_epoch: record.password_epoch,
                })
            }
            UserCommand::AutoLogin {
                session_hash,
                via,
                partner_salt,
                user_sub,
                now,
            } => {
                let record = existing.ok_or_else(|| ApiError::not_found("user"))?;
                // Checked again here, in the call that starts the session: the lookup before it
                // may have raced a new password (which pauses links) or an unlinking.
                let links: Vec<LinkEntry> = self.get(LINKS).await?.unwrap_or_default();
                let same_person = pairwise_sub(
                    &record.subject_seed,
                    &via.partner_id,
                    partner_salt.as_deref(),
                ) == user_sub;
                if link_state(&links, &via.partner_id) != LinkState::Active || !same_person {
                    return Ok(UserReply::NotLinked);
                }
                let session = SessionRecord {
                    auth_time: now,
                    expires_at: now + SESSION_TTL_S,
                    via_link: Some(via),
                };
                self.start_session(&session_hash, &session, now).await?;
                Ok(UserReply::User {
                    user: UserView::from(&record),
                })
            }
            UserCommand::Whoami {
                session_hash,
                partner_id,
                partner_salt,
                now,
            } => {
                let (Some(record), Some(session)) =
                    (existing, self.session(&session_hash, now).await?)
                else {
                    return Ok(UserReply::NoSession);
                };
                Ok(UserReply::SessionState {
                    sub: pairwise_sub(&record.subject_seed, &partner_id, partner_salt.as_deref()),
                    user: UserView::from(&record),
                    auth_time: session.auth_time,
                    consented: false,
                    via_link: session.via_link,
                    password_epoch: record.password_epoch,
                })
            }
            UserCommand::Consent {
                session_hash,
                client_id,
                scopes,
                now,
            } => {
                if existing.is_none() || self.session(&session_hash, now).await?.is_none() {
                    return Ok(UserReply::NoSession);
                }
                let key = consent_key(client_id.as_str());
                let mut consented: Vec<String> = self.get(&key).await?.unwrap_or_default();
                for s in scopes {
                    if !consented.contains(&s) {
                        consented.push(s);
                    }
                }
                self.put(&key, &consented).await?;
                Ok(UserReply::Done)
            }
            UserCommand::Subject {
                partner_id,
                partner_salt,
                client_id,
                renew_grant,
                link,
            } => {
                let record = existing.ok_or_else(|| ApiError::not_found("user"))?;
                let sub = pairwise_sub(&record.subject_seed, &partner_id, partner_salt.as_deref());
                // Only a grant that is still this person's, under this password, is listed.
                if let Some(r) = renew_grant
                    .filter(|r| r.sub == sub && r.password_epoch == record.password_epoch)
                {
                    self.list_grant(r.client_id.as_str(), &r.grant_id, r.until, r.now)
                        .await?;
                }
                let consented = match client_id {
                    Some(c) => self
                        .get(&consent_key(c.as_str()))
                        .await?
                        .unwrap_or_default(),
                    None => Vec::new(),
                };
                let link = if link {
                    let links: Vec<LinkEntry> = self.get(LINKS).await?.unwrap_or_default();
                    Some(link_state(&links, &partner_id))
                } else {
                    None
                };
                Ok(UserReply::Subject {
                    sub,
                    user: UserView::from(&record),
                    consented,
                    password_epoch: record.password_epoch,
                    link,
                })
            }
            UserCommand::RecordLink {
                partner_id,
                agreed,
                account_label,
                now,
            } => {
                let record = existing.ok_or_else(|| ApiError::not_found("user"))?;
                if let Some(a) = agreed {
                    let sub =
                        pairwise_sub(&record.subject_seed, &partner_id, a.partner_salt.as_deref());
                    if a.password_epoch != record.password_epoch || sub != a.user_sub {
                        return Ok(UserReply::ConsentVoid);
                    }
                }
                let mut links: Vec<LinkEntry> = self.get(LINKS).await?.unwrap_or_default();
                record_link(&mut links, &partner_id, account_label, now);
                self.put(LINKS, &links).await?;
                Ok(UserReply::Done)
            }
            UserCommand::ConfirmLink {
                session_hash,
                partner_id,
                now,
            } => {
                // Only with the password, signed in within the last minutes (as for linking): a
                // session from automatic login, or one left open on a shared computer, cannot.
                let live = match (&existing, self.session(&session_hash, now).await?) {
                    (Some(_), Some(s)) => {
                        s.via_link.is_none() && recently_logged_in(s.auth_time, now)
                    }
                    _ => false,
                };
                if !live {
                    return Ok(UserReply::NoSession);
                }
                let mut links: Vec<LinkEntry> = self.get(LINKS).await?.unwrap_or_default();
                if link_state(&links, &partner_id) == LinkState::Absent {
                    return Err(ApiError::not_found("link"));
                }
                record_link(&mut links, &partner_id, None, now);
                self.put(LINKS, &links).await?;
                Ok(UserReply::Done)
            }
            UserCommand::EndLinkSessions { partner_id } => {
                self.end_link_sessions(&partner_id).await?;
                Ok(UserReply::Done)
            }
            UserCommand::ForgetLink { partner_id } => {
                // Sessions that came through the link end with it (again, if one was started
                // in between).
                self.end_link_sessions(&partner_id).await?;
                let mut links: Vec<LinkEntry> = self.get(LINKS).await?.unwrap_or_default();
                links.retain(|l| l.partner_id != partner_id);
                self.put(LINKS, &links).await?;
                Ok(UserReply::Done)
            }
            UserCommand::Links { session_hash, now } => {
                let record = existing.ok_or_else(|| ApiError::not_found("user"))?;
                let mut via_link = None;
                if let Some(hash) = session_hash {
                    match self.session(&hash, now).await? {
                        Some(session) => via_link = session.via_link,
                        None => return Ok(UserReply::NoSession),
                    }
                }
                let links: Vec<LinkEntry> = self.get(LINKS).await?.unwrap_or_default();
                Ok(UserReply::Links {
                    user: UserView::from(&record),
                    links,
                    via_link,
                })
            }
            UserCommand::AddGrant {
                grant_id,
                client_id,
                expires_at,
                session_hash,
                password_epoch,
                now,
            } => {
                let Some(record) = existing else {
                    return Err(ApiError::not_found("user"));
                };
                // Issued under an earlier password (the password changed in between): over.
                if record.password_epoch != password_epoch {
                    return Ok(UserReply::NoSession);
                }
                if let Some(hash) = session_hash {
                    if self.session(&hash, now).await?.is_none() {
                        return Ok(UserReply::NoSession);
                    }
                }
                self.list_grant(client_id.as_str(), &grant_id, expires_at, now)
                    .await?;
                Ok(UserReply::Done)
            }
            UserCommand::ForgetGrants { grant_ids } => {
                let forget: Vec<String> = self
                    .keys_with_prefix(GRANT_PREFIX)
                    .await?
                    .into_iter()
                    .map(|(k, _)| k)
                    .filter(|k| grant_ids.iter().any(|g| g == listed_grant_id(k)))
                    .collect();
                self.delete_keys(forget).await?;
                Ok(UserReply::Done)
            }
            UserCommand::Logout { session_hash } => {
                self.state
                    .storage()
                    .delete(&session_key(&session_hash))
                    .await
                    .map_err(storage_err)?;
                Ok(UserReply::Done)
            }
        }
    }
}
