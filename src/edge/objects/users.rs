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
use crate::store::users::{
    AddGrant, AutoLogin, AutoLoginOutcome, ConfirmLink, Consent, Consented, Delete, Deleted,
    EndLinkSessions, ForgetGrants, ForgetLink, Get, GrantAdded, LinkConfirmed, LinkRecorded, Links,
    Login, LoginOutcome, Logout, NoteLinkAccount, RecordLink, Saved, Session, SessionState,
    Subject, SubjectState, UserCommand, UserHandler, UserLinks, Whoami,
};

#[durable_object(fetch)]
pub struct UserStore {
    state: State,
}

fn storage_err(e: worker::Error) -> ApiError {
    ApiError::unavailable(format!("user storage: {e}"))
}

/// The refusals that are errors on the wire, in one place. The others (no session, bad
/// credentials, an untrusted device, not linked, consent void) are a command's own outcome and
/// are matched where a rule gives them; one that reached here would be a rule refusing a
/// command in a way that command does not answer, a server error.
fn refused(r: Refusal) -> ApiError {
    match r {
        Refusal::NoUser => ApiError::not_found("user"),
        Refusal::PasswordRequired => ApiError::invalid_field("password", "is required for a new user"),
        Refusal::NoLink => ApiError::not_found("link"),
        Refusal::TooManyGrants => ApiError::new(
            ErrorCode::TemporarilyUnavailable,
            "too many authorizations of this app for this user in the last minutes; try again later",
        ),
        Refusal::NoSession
        | Refusal::PasswordChanged
        | Refusal::BadCredentials
        | Refusal::UntrustedDevice
        | Refusal::NotLinked
        | Refusal::ConsentVoid => ApiError::new(ErrorCode::ServerError, "the account refused a command")
            .with_cause(format!("user store: refusal {r:?} is no answer of this command")),
    }
}

/// A live session as the `Session` and `Whoami` commands answer it.
fn session_state(
    record: &UserRecord,
    session: SessionRecord,
    partner_id: &PartnerId,
    partner_salt: Option<&str>,
    consented: bool,
) -> SessionState {
    SessionState {
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
        objects::serve_commands(req, "user store", |cmd: UserCommand| self.handle(cmd)).await
    }
}

/// The object loads what a command needs, asks `protocol::account` what it changes, stores
/// that, and answers.
impl UserStore {
    async fn read<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> std::result::Result<Option<T>, ApiError> {
        self.state
            .storage()
            .get::<T>(key)
            .await
            .map_err(storage_err)
    }

    async fn write<T: serde::Serialize>(
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
                Put::Profile(record) => self.write(&key, &record).await?,
                Put::Links(links) => self.write(&key, &links).await?,
                Put::Session { session, .. } => self.write(&key, &session).await?,
                Put::Device { expires_at, .. } => self.write(&key, &expires_at).await?,
                Put::Consent { scopes, .. } => self.write(&key, &scopes).await?,
                Put::Grant { expires_at, .. } => self.write(&key, &expires_at).await?,
            }
        }
        Ok(())
    }

    async fn stored_links(&self) -> std::result::Result<Vec<LinkEntry>, ApiError> {
        Ok(self.read(LINKS).await?.unwrap_or_default())
    }

    /// A live session, or None (an expired one is removed).
    async fn live(
        &self,
        hash: &str,
        now: u64,
    ) -> std::result::Result<Option<SessionRecord>, ApiError> {
        let stored = self.read::<SessionRecord>(&session_key(hash)).await?;
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
    ) -> std::result::Result<(), ApiError> {
        let listed = self.entries(&client_grants(client_id)).await?;
        let (changes, outcome) = account::list_grant(&listed, client_id, grant_id, expires_at, now);
        self.apply(changes).await?;
        outcome.map_err(refused)
    }

    async fn profile(&self) -> std::result::Result<Option<UserRecord>, ApiError> {
        self.read(PROFILE).await
    }
}

/// Each command: load what it needs, ask `protocol::account` what changes, store that, answer.
impl UserHandler for UserStore {
    async fn get(&self, _cmd: Get) -> std::result::Result<UserView, ApiError> {
        let existing = self.profile().await?;
        Ok(UserView::from(
            existing.as_ref().ok_or_else(|| refused(Refusal::NoUser))?,
        ))
    }

    async fn delete(&self, _cmd: Delete) -> std::result::Result<Deleted, ApiError> {
        let existing = self.profile().await?;
        // The command carries no time (as before grant lists existed): the object reads it.
        let now = crate::edge::rt::clock::now_ms() / 1000;
        let everything = self.entries("").await?;
        let (revoke, changes) =
            account::delete_user(existing.is_some(), &everything, now).map_err(refused)?;
        self.apply(changes).await?;
        Ok(Deleted { revoke })
    }

    async fn put(&self, cmd: crate::store::users::Put) -> std::result::Result<Saved, ApiError> {
        let existing = self.profile().await?;
        let crate::store::users::Put {
            username,
            mut spec,
            now,
        } = cmd;
        let new_password = spec.password.take();
        let everything: Vec<Listed>;
        let password = match account::password_plan(existing.as_ref(), new_password.as_deref())
            .map_err(refused)?
        {
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
                    links: self.stored_links().await?,
                }
            }
        };
        let saved = account::put_user(username, spec, password, now);
        self.apply(saved.changes).await?;
        Ok(Saved {
            user: saved.user,
            created: saved.created,
            revoke: saved.revoke,
        })
    }

    async fn login(&self, cmd: Login) -> std::result::Result<LoginOutcome, ApiError> {
        let existing = self.profile().await?;
        let Login {
            password,
            session_hash,
            now,
            device_hash,
            new_device_hash,
        } = cmd;
        let device = match &device_hash {
            Some(hash) => Some(self.read::<u64>(&device_key(hash)).await?),
            None => None,
        };
        let verify = |hash: Option<&str>| match hash {
            Some(hash) => password::verify_password(&password, hash),
            None => password::verify_against_nothing(&password, OWASP_ARGON2ID),
        };
        let record = match account::check_login(existing.as_ref(), device, verify, now) {
            Ok(record) => record,
            Err(Refusal::BadCredentials) => return Ok(LoginOutcome::BadCredentials),
            Err(Refusal::UntrustedDevice) => return Ok(LoginOutcome::UntrustedDevice),
            Err(r) => return Err(refused(r)),
        };
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
        Ok(LoginOutcome::LoggedIn {
            user: UserView::from(record),
        })
    }

    async fn session(&self, cmd: Session) -> std::result::Result<Option<SessionState>, ApiError> {
        let existing = self.profile().await?;
        let session = self.live(&cmd.session_hash, cmd.now).await?;
        let (Some(record), Some(session)) = (existing, session) else {
            return Ok(None);
        };
        let consented: Vec<String> = self
            .read(&consent_key(cmd.client_id.as_str()))
            .await?
            .unwrap_or_default();
        Ok(Some(session_state(
            &record,
            session,
            &cmd.partner_id,
            cmd.partner_salt.as_deref(),
            account::consent_covers(&consented, &cmd.scopes),
        )))
    }

    async fn auto_login(&self, cmd: AutoLogin) -> std::result::Result<AutoLoginOutcome, ApiError> {
        let record = self
            .profile()
            .await?
            .ok_or_else(|| refused(Refusal::NoUser))?;
        // Checked again here, in the call that starts the session: the lookup before it may
        // have raced a new password (which pauses links) or an unlinking.
        let links = self.stored_links().await?;
        if !account::may_auto_login(
            &record,
            &links,
            &cmd.via,
            cmd.partner_salt.as_deref(),
            &cmd.user_sub,
        ) {
            return Ok(
                if link_state(&links, &cmd.via.partner_id)
                    == crate::protocol::user::LinkState::Paused
                {
                    AutoLoginOutcome::Paused
                } else {
                    AutoLoginOutcome::NotLinked
                },
            );
        }
        let sessions = self.entries(SESSION_PREFIX).await?;
        let session = account::new_session(cmd.now, Some(cmd.via));
        self.apply(account::start_session(
            &sessions,
            &cmd.session_hash,
            session,
            cmd.now,
        ))
        .await?;
        Ok(AutoLoginOutcome::LoggedIn {
            user: UserView::from(&record),
        })
    }

    async fn whoami(&self, cmd: Whoami) -> std::result::Result<Option<SessionState>, ApiError> {
        let existing = self.profile().await?;
        let session = self.live(&cmd.session_hash, cmd.now).await?;
        let (Some(record), Some(session)) = (existing, session) else {
            return Ok(None);
        };
        Ok(Some(session_state(
            &record,
            session,
            &cmd.partner_id,
            cmd.partner_salt.as_deref(),
            false,
        )))
    }

    async fn consent(&self, cmd: Consent) -> std::result::Result<Consented, ApiError> {
        let existing = self.profile().await?;
        if existing.is_none() || self.live(&cmd.session_hash, cmd.now).await?.is_none() {
            return Ok(Consented::NoSession);
        }
        let consented: Vec<String> = self
            .read(&consent_key(cmd.client_id.as_str()))
            .await?
            .unwrap_or_default();
        self.apply(account::add_consent(&cmd.client_id, consented, cmd.scopes))
            .await?;
        Ok(Consented::Recorded)
    }

    async fn subject(&self, cmd: Subject) -> std::result::Result<SubjectState, ApiError> {
        let record = self
            .profile()
            .await?
            .ok_or_else(|| refused(Refusal::NoUser))?;
        let sub = account::subject(&record, &cmd.partner_id, cmd.partner_salt.as_deref());
        if let Some(r) = cmd
            .renew_grant
            .filter(|r| account::still_theirs(&record, &sub, &r.sub, r.password_epoch))
        {
            self.list_grant(r.client_id.as_str(), &r.grant_id, r.until, r.now)
                .await?;
        }
        let consented = match cmd.client_id {
            Some(c) => self
                .read(&consent_key(c.as_str()))
                .await?
                .unwrap_or_default(),
            None => Vec::new(),
        };
        let (link, link_account) = if cmd.link {
            let links = self.stored_links().await?;
            let account = links
                .iter()
                .find(|l| l.partner_id == cmd.partner_id)
                .and_then(|l| l.partner_sub.clone());
            (Some(link_state(&links, &cmd.partner_id)), account)
        } else {
            (None, None)
        };
        Ok(SubjectState {
            sub,
            user: UserView::from(&record),
            consented,
            password_epoch: record.password_epoch,
            link,
            link_account,
        })
    }

    async fn record_link(&self, cmd: RecordLink) -> std::result::Result<LinkRecorded, ApiError> {
        let record = self
            .profile()
            .await?
            .ok_or_else(|| refused(Refusal::NoUser))?;
        if let Some(a) = cmd.agreed {
            if !account::agreement_stands(
                &record,
                &cmd.partner_id,
                &a.user_sub,
                a.partner_salt.as_deref(),
                a.password_epoch,
            ) {
                return Ok(LinkRecorded::ConsentVoid);
            }
        }
        let links = self.stored_links().await?;
        let Some(changes) = account::record_link(
            links,
            &cmd.partner_id,
            cmd.partner_sub.as_deref(),
            cmd.account_label,
            cmd.now,
        ) else {
            return Ok(LinkRecorded::OtherAccount);
        };
        self.apply(changes).await?;
        Ok(LinkRecorded::Recorded)
    }

    async fn note_link_account(&self, cmd: NoteLinkAccount) -> std::result::Result<(), ApiError> {
        let links = self.stored_links().await?;
        if let Some(changes) = account::note_link_account(links, &cmd.partner_id, &cmd.partner_sub)
        {
            self.apply(changes).await?;
        }
        Ok(())
    }

    async fn confirm_link(&self, cmd: ConfirmLink) -> std::result::Result<LinkConfirmed, ApiError> {
        let existing = self.profile().await?;
        let session = self.live(&cmd.session_hash, cmd.now).await?;
        if !account::may_confirm_link(existing.as_ref(), session.as_ref(), cmd.now) {
            return Ok(LinkConfirmed::NoSession);
        }
        let links = self.stored_links().await?;
        let changes = account::confirm_link(links, &cmd.partner_id, cmd.now).map_err(refused)?;
        self.apply(changes).await?;
        Ok(LinkConfirmed::Confirmed)
    }

    async fn end_link_sessions(&self, cmd: EndLinkSessions) -> std::result::Result<(), ApiError> {
        let sessions = self.entries(SESSION_PREFIX).await?;
        self.apply(account::end_link_sessions(&sessions, &cmd.partner_id))
            .await
    }

    async fn forget_link(&self, cmd: ForgetLink) -> std::result::Result<(), ApiError> {
        let sessions = self.entries(SESSION_PREFIX).await?;
        let links = self.stored_links().await?;
        self.apply(account::forget_link(&sessions, links, &cmd.partner_id))
            .await
    }

    async fn links(&self, cmd: Links) -> std::result::Result<Option<UserLinks>, ApiError> {
        let record = self
            .profile()
            .await?
            .ok_or_else(|| refused(Refusal::NoUser))?;
        let mut via_link = None;
        if let Some(hash) = cmd.session_hash {
            match self.live(&hash, cmd.now).await? {
                Some(session) => via_link = session.via_link,
                None => return Ok(None),
            }
        }
        Ok(Some(UserLinks {
            user: UserView::from(&record),
            links: self.stored_links().await?,
            via_link,
        }))
    }

    async fn add_grant(&self, cmd: AddGrant) -> std::result::Result<GrantAdded, ApiError> {
        let existing = self.profile().await?;
        match account::check_add_grant(existing.as_ref(), cmd.password_epoch) {
            Ok(()) => {}
            Err(Refusal::PasswordChanged) => return Ok(GrantAdded::PasswordChanged),
            Err(r) => return Err(refused(r)),
        }
        if let Some(hash) = cmd.session_hash {
            if self.live(&hash, cmd.now).await?.is_none() {
                return Ok(GrantAdded::SessionEnded);
            }
        }
        self.list_grant(
            cmd.client_id.as_str(),
            &cmd.grant_id,
            cmd.expires_at,
            cmd.now,
        )
        .await?;
        Ok(GrantAdded::Listed)
    }

    async fn forget_grants(&self, cmd: ForgetGrants) -> std::result::Result<(), ApiError> {
        let listed = self.entries(GRANT_PREFIX).await?;
        self.apply(account::forget_grants(&listed, &cmd.grant_ids))
            .await
    }

    async fn logout(&self, cmd: Logout) -> std::result::Result<(), ApiError> {
        self.apply(account::logout(&cmd.session_hash)).await
    }
}
