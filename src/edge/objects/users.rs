//! The `UserStore` Durable Object (one per user). Password hashes
//! are made and checked inside the object and never leave it; sessions and consents live here
//! too, so one call answers "who is this, since when, and did they agree".

use base64ct::{Base64UrlUnpadded, Encoding};
use serde::de::DeserializeOwned;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

use crate::edge::rt::{objects, random};
use crate::protocol::account::{
    self, client_grants, consent_key, device_key, session_key, Changes, Listed, Password,
    PasswordPlan, Put, Refusal, DEVICE_PREFIX, GRANT_PREFIX, LINKS, PROFILE, SESSION_PREFIX,
};
use crate::protocol::error::{ApiError, ErrorCode};
use crate::protocol::partner::PartnerId;
use crate::protocol::password::{self, OWASP_ARGON2ID};
use crate::protocol::user::{link_state, LinkEntry, SessionRecord, UserRecord, UserView};
use crate::store::users::{UserCommand, UserReply};

#[durable_object(fetch)]
pub struct UserStore {
    state: State,
}

fn storage_err(e: worker::Error) -> ApiError {
    ApiError::unavailable(format!("user storage: {e}"))
}

/// Why a command stopped early: a rule refused it, or storage failed.
enum Stop {
    Refused(Refusal),
    Failed(ApiError),
}

impl From<Refusal> for Stop {
    fn from(r: Refusal) -> Stop {
        Stop::Refused(r)
    }
}

impl From<ApiError> for Stop {
    fn from(e: ApiError) -> Stop {
        Stop::Failed(e)
    }
}

/// The answer to a refused command: the one place where the account's refusals meet the wire.
fn refused(r: Refusal) -> std::result::Result<UserReply, ApiError> {
    match r {
        Refusal::NoUser => Err(ApiError::not_found("user")),
        Refusal::PasswordRequired => Err(ApiError::invalid_field(
            "password",
            "is required for a new user",
        )),
        Refusal::NoSession => Ok(UserReply::NoSession),
        Refusal::BadCredentials => Ok(UserReply::BadCredentials),
        Refusal::UntrustedDevice => Ok(UserReply::UntrustedDevice),
        Refusal::NotLinked => Ok(UserReply::NotLinked),
        Refusal::ConsentVoid => Ok(UserReply::ConsentVoid),
        Refusal::NoLink => Err(ApiError::not_found("link")),
        Refusal::TooManyGrants => Err(ApiError::new(
            ErrorCode::TemporarilyUnavailable,
            "too many authorizations of this app for this user in the last minutes; try again later",
        )),
    }
}

/// A live session as the `Session` and `Whoami` commands answer it.
fn session_state(
    record: &UserRecord,
    session: SessionRecord,
    partner_id: &PartnerId,
    partner_salt: Option<&str>,
    consented: bool,
) -> UserReply {
    UserReply::SessionState {
        sub: account::subject(record, partner_id, partner_salt),
        user: UserView::from(record),
        auth_time: session.auth_time,
        consented,
        via_link: session.via_link,
        password_epoch: record.password_epoch,
    }
}

/// A new password's hash, with a fresh salt.
fn hash_new(pw: &str) -> std::result::Result<String, ApiError> {
    let salt = random::bytes::<{ password::SALT_LEN }>()?;
    password::hash_password(pw, &salt, OWASP_ARGON2ID)
        .ok_or_else(|| ApiError::unavailable("password hashing failed"))
}

impl DurableObject for UserStore {
    fn new(state: State, _env: Env) -> Self {
        UserStore { state }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        objects::serve(req, "user store", |cmd: UserCommand| self.execute(cmd)).await
    }
}

/// The object loads what a command needs, asks `protocol::account` what it changes, stores
/// that, and answers.
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
    async fn entries(&self, prefix: &str) -> std::result::Result<Vec<Listed>, ApiError> {
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
                out.push(Listed {
                    key,
                    expires_at,
                    via_partner,
                });
            }
        });
        Ok(out)
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

    /// Stores what a rule decided: the deletes first, then the puts in order.
    async fn apply(&self, changes: Changes) -> std::result::Result<(), ApiError> {
        self.delete_keys(changes.delete).await?;
        for p in changes.put {
            let key = p.key();
            match p {
                Put::Profile(record) => self.put(&key, &record).await?,
                Put::Links(links) => self.put(&key, &links).await?,
                Put::Session { session, .. } => self.put(&key, &session).await?,
                Put::Device { expires_at, .. } => self.put(&key, &expires_at).await?,
                Put::Consent { scopes, .. } => self.put(&key, &scopes).await?,
                Put::Grant { expires_at, .. } => self.put(&key, &expires_at).await?,
            }
        }
        Ok(())
    }

    async fn links(&self) -> std::result::Result<Vec<LinkEntry>, ApiError> {
        Ok(self.get(LINKS).await?.unwrap_or_default())
    }

    /// A live session, or None (an expired one is removed).
    async fn session(
        &self,
        hash: &str,
        now: u64,
    ) -> std::result::Result<Option<SessionRecord>, ApiError> {
        let stored = self.get::<SessionRecord>(&session_key(hash)).await?;
        let (live, changes) = account::live_session(hash, stored, now);
        self.apply(changes).await?;
        Ok(live)
    }

    /// Lists a grant of `client_id` (see `account::list_grant`).
    async fn list_grant(
        &self,
        client_id: &str,
        grant_id: &str,
        expires_at: u64,
        now: u64,
    ) -> std::result::Result<(), Stop> {
        let listed = self.entries(&client_grants(client_id)).await?;
        let (changes, outcome) = account::list_grant(&listed, client_id, grant_id, expires_at, now);
        self.apply(changes).await?;
        Ok(outcome?)
    }

    async fn execute(&self, cmd: UserCommand) -> std::result::Result<UserReply, ApiError> {
        match self.run(cmd).await {
            Ok(reply) => Ok(reply),
            Err(Stop::Refused(r)) => refused(r),
            Err(Stop::Failed(e)) => Err(e),
        }
    }

    async fn run(&self, cmd: UserCommand) -> std::result::Result<UserReply, Stop> {
        let existing: Option<UserRecord> = self.get(PROFILE).await?;
        match cmd {
            UserCommand::Get => Ok(UserReply::User {
                user: UserView::from(existing.as_ref().ok_or(Refusal::NoUser)?),
            }),
            UserCommand::Delete => {
                // A unit command, as before grant lists existed: the object reads the time.
                let now = crate::edge::rt::clock::now_ms() / 1000;
                let everything = self.entries("").await?;
                let (revoke, changes) = account::delete_user(existing.is_some(), &everything, now)?;
                self.apply(changes).await?;
                Ok(UserReply::Deleted { revoke })
            }
            UserCommand::Put {
                username,
                mut spec,
                now,
            } => {
                let new_password = spec.password.take();
                let everything: Vec<Listed>;
                let password =
                    match account::password_plan(existing.as_ref(), new_password.as_deref())? {
                        PasswordPlan::Keep(old) => Password::Keep(old),
                        PasswordPlan::First(pw) => Password::First {
                            hash: hash_new(pw)?,
                            subject_seed: Base64UrlUnpadded::encode_string(&random::bytes::<16>()?),
                        },
                        PasswordPlan::Replace(old, pw) => {
                            let hash = hash_new(pw)?;
                            everything = self.entries("").await?;
                            Password::Replace {
                                old,
                                hash,
                                everything: &everything,
                                links: self.links().await?,
                            }
                        }
                    };
                let saved = account::put_user(username, spec, password, now);
                self.apply(saved.changes).await?;
                Ok(UserReply::Saved {
                    user: saved.user,
                    created: saved.created,
                    revoke: saved.revoke,
                })
            }
            UserCommand::Login {
                password,
                session_hash,
                now,
                device_hash,
                new_device_hash,
            } => {
                let device = match &device_hash {
                    Some(hash) => Some(self.get::<u64>(&device_key(hash)).await?),
                    None => None,
                };
                let verify = |hash: Option<&str>| match hash {
                    Some(hash) => password::verify_password(&password, hash),
                    None => password::verify_against_nothing(&password, OWASP_ARGON2ID),
                };
                let record = account::check_login(existing.as_ref(), device, verify, now)?;
                let sessions = self.entries(SESSION_PREFIX).await?;
                let mut changes = account::start_session(
                    &sessions,
                    &session_hash,
                    account::new_session(now, None),
                    now,
                );
                if let Some(new) = new_device_hash {
                    let devices = self.entries(DEVICE_PREFIX).await?;
                    changes = changes.and(account::trust_device(
                        &devices,
                        device_hash.as_deref(),
                        &new,
                        now,
                    ));
                }
                self.apply(changes).await?;
                Ok(UserReply::User {
                    user: UserView::from(record),
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
                let session = self.session(&session_hash, now).await?;
                let (Some(record), Some(session)) = (existing, session) else {
                    return Err(Refusal::NoSession.into());
                };
                let consented: Vec<String> = self
                    .get(&consent_key(client_id.as_str()))
                    .await?
                    .unwrap_or_default();
                Ok(session_state(
                    &record,
                    session,
                    &partner_id,
                    partner_salt.as_deref(),
                    account::consent_covers(&consented, &scopes),
                ))
            }
            UserCommand::AutoLogin {
                session_hash,
                via,
                partner_salt,
                user_sub,
                now,
            } => {
                let record = existing.ok_or(Refusal::NoUser)?;
                // Checked again here, in the call that starts the session: the lookup before it
                // may have raced a new password (which pauses links) or an unlinking.
                let links = self.links().await?;
                if !account::may_auto_login(
                    &record,
                    &links,
                    &via,
                    partner_salt.as_deref(),
                    &user_sub,
                ) {
                    return Err(Refusal::NotLinked.into());
                }
                let sessions = self.entries(SESSION_PREFIX).await?;
                let session = account::new_session(now, Some(via));
                self.apply(account::start_session(
                    &sessions,
                    &session_hash,
                    session,
                    now,
                ))
                .await?;
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
                let session = self.session(&session_hash, now).await?;
                let (Some(record), Some(session)) = (existing, session) else {
                    return Err(Refusal::NoSession.into());
                };
                Ok(session_state(
                    &record,
                    session,
                    &partner_id,
                    partner_salt.as_deref(),
                    false,
                ))
            }
            UserCommand::Consent {
                session_hash,
                client_id,
                scopes,
                now,
            } => {
                if existing.is_none() || self.session(&session_hash, now).await?.is_none() {
                    return Err(Refusal::NoSession.into());
                }
                let consented: Vec<String> = self
                    .get(&consent_key(client_id.as_str()))
                    .await?
                    .unwrap_or_default();
                self.apply(account::add_consent(&client_id, consented, scopes))
                    .await?;
                Ok(UserReply::Done)
            }
            UserCommand::Subject {
                partner_id,
                partner_salt,
                client_id,
                renew_grant,
                link,
            } => {
                let record = existing.ok_or(Refusal::NoUser)?;
                let sub = account::subject(&record, &partner_id, partner_salt.as_deref());
                if let Some(r) = renew_grant
                    .filter(|r| account::still_theirs(&record, &sub, &r.sub, r.password_epoch))
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
                    Some(link_state(&self.links().await?, &partner_id))
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
                let record = existing.ok_or(Refusal::NoUser)?;
                if let Some(a) = agreed {
                    if !account::agreement_stands(
                        &record,
                        &partner_id,
                        &a.user_sub,
                        a.partner_salt.as_deref(),
                        a.password_epoch,
                    ) {
                        return Err(Refusal::ConsentVoid.into());
                    }
                }
                let links = self.links().await?;
                self.apply(account::record_link(links, &partner_id, account_label, now))
                    .await?;
                Ok(UserReply::Done)
            }
            UserCommand::ConfirmLink {
                session_hash,
                partner_id,
                now,
            } => {
                let session = self.session(&session_hash, now).await?;
                if !account::may_confirm_link(existing.as_ref(), session.as_ref(), now) {
                    return Err(Refusal::NoSession.into());
                }
                let links = self.links().await?;
                self.apply(account::confirm_link(links, &partner_id, now)?)
                    .await?;
                Ok(UserReply::Done)
            }
            UserCommand::EndLinkSessions { partner_id } => {
                let sessions = self.entries(SESSION_PREFIX).await?;
                self.apply(account::end_link_sessions(&sessions, &partner_id))
                    .await?;
                Ok(UserReply::Done)
            }
            UserCommand::ForgetLink { partner_id } => {
                let sessions = self.entries(SESSION_PREFIX).await?;
                let links = self.links().await?;
                self.apply(account::forget_link(&sessions, links, &partner_id))
                    .await?;
                Ok(UserReply::Done)
            }
            UserCommand::Links { session_hash, now } => {
                let record = existing.ok_or(Refusal::NoUser)?;
                let mut via_link = None;
                if let Some(hash) = session_hash {
                    match self.session(&hash, now).await? {
                        Some(session) => via_link = session.via_link,
                        None => return Err(Refusal::NoSession.into()),
                    }
                }
                Ok(UserReply::Links {
                    user: UserView::from(&record),
                    links: self.links().await?,
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
                account::check_add_grant(existing.as_ref(), password_epoch)?;
                if let Some(hash) = session_hash {
                    if self.session(&hash, now).await?.is_none() {
                        return Err(Refusal::NoSession.into());
                    }
                }
                self.list_grant(client_id.as_str(), &grant_id, expires_at, now)
                    .await?;
                Ok(UserReply::Done)
            }
            UserCommand::ForgetGrants { grant_ids } => {
                let listed = self.entries(GRANT_PREFIX).await?;
                self.apply(account::forget_grants(&listed, &grant_ids))
                    .await?;
                Ok(UserReply::Done)
            }
            UserCommand::Logout { session_hash } => {
                self.apply(account::logout(&session_hash)).await?;
                Ok(UserReply::Done)
            }
        }
    }
}
