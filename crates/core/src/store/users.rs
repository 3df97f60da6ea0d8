//! The user Durable Object's command protocol. One object per user (named `user:{username}`):
//! a user's record, and later their consents and grants, change atomically in one place, and no
//! object is hot.

use serde::{Deserialize, Serialize};

use crate::protocol::client::ClientId;
use crate::protocol::error::ApiError;
use crate::protocol::partner::PartnerId;
use crate::protocol::user::{LinkEntry, LinkState, LinkVia, UserSpec, UserView, Username};

pub fn object_name(username: &Username) -> String {
    format!("user:{username}")
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserCommand {
    Put {
        username: Username,
        spec: UserSpec,
        now: u64,
    },
    Get,
    /// Removes the user: profile, sessions, consents, devices and links go at once; the list of
    /// grants stays until they are revoked (`ForgetGrants`), so a retry finishes the job.
    Delete,
    /// Checks a password in constant time (unknown users cost the same as known ones) and, if
    /// it matches, starts a session stored under `session_hash`.
    /// With `device_hash`, only from a trusted device of this user: one that is not is answered
    /// `UntrustedDevice` at once, before any password work. On success the device (if any) is
    /// replaced by `new_device_hash`.
    Login {
        password: String,
        session_hash: String,
        now: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        device_hash: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        new_device_hash: Option<String>,
    },
    /// The session's user, their subject for `partner_id`, and whether they consented to
    /// `scopes` for `client_id`.
    Session {
        session_hash: String,
        partner_id: PartnerId,
        /// The partner's subject salt (`Partner::subject_salt`), which the subject is derived
        /// with.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        partner_salt: Option<String>,
        client_id: ClientId,
        scopes: Vec<String>,
        now: u64,
    },
    /// Ends the sessions that automatic login through `partner_id`'s link started (unlinking).
    EndLinkSessions {
        partner_id: PartnerId,
    },
    /// Starts a session without credentials, for a partner's verified automatic-login assertion
    /// about a linked user.
    /// Only while the link with `via.partner_id` is active and still to this person
    /// (`user_sub`): a new password or an unlinking that ran since the link was looked up wins
    /// (`NotLinked`).
    AutoLogin {
        session_hash: String,
        via: LinkVia,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        partner_salt: Option<String>,
        #[serde(default)]
        user_sub: String,
        now: u64,
    },
    /// Remembers a link for the account page (a paused one is active again), with the
    /// partner's label for its account. With `agreed`, only if the account is still the person
    /// who agreed, under the same password; else `ConsentVoid`.
    RecordLink {
        partner_id: PartnerId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agreed: Option<Agreed>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        account_label: Option<String>,
        now: u64,
    },
    /// The user, signed in with their password (`session_hash`), confirms a link that a new
    /// password paused.
    ConfirmLink {
        session_hash: String,
        partner_id: PartnerId,
        now: u64,
    },
    ForgetLink {
        partner_id: PartnerId,
    },
    /// The user's links; with `session_hash`, only for a live session.
    Links {
        session_hash: Option<String>,
        now: u64,
    },
    /// The session's user and their subject for `partner_id` (no consent question).
    Whoami {
        session_hash: String,
        partner_id: PartnerId,
        /// The partner's subject salt (`Partner::subject_salt`), which the subject is derived
        /// with.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        partner_salt: Option<String>,
        now: u64,
    },
    /// Remembers consent to `scopes` for `client_id` (added to what was consented before).
    Consent {
        session_hash: String,
        client_id: ClientId,
        scopes: Vec<String>,
        now: u64,
    },
    Logout {
        session_hash: String,
    },
    /// The user and their subject for `partner_id`: lets a grant check that its user is the
    /// same person, not a new account that reuses the username.
    Subject {
        partner_id: PartnerId,
        /// The partner's subject salt (`Partner::subject_salt`), which the subject is derived
        /// with.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        partner_salt: Option<String>,
        /// Also answer the scopes the user consented to for this client.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<ClientId>,
        /// Remember (or keep remembering) this grant until then: a refresh is about to issue a
        /// new access token from it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        renew_grant: Option<RenewGrant>,
        /// Also answer the state of the user's link with `partner_id`.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        link: bool,
    },
    /// Remembers a grant issued for the user (until `expires_at`), so that a new password or
    /// the user's removal can revoke it. With `session_hash`, only while that session lives: a
    /// grant issued from a session that a new password ended is refused.
    AddGrant {
        grant_id: String,
        client_id: ClientId,
        expires_at: u64,
        session_hash: Option<String>,
        /// The password epoch the grant was issued under: a different one is refused.
        password_epoch: u32,
        now: u64,
    },
    /// Forgets grants that have been revoked.
    ForgetGrants {
        grant_ids: Vec<String>,
    },
}

/// Who agreed to a link, and under which password: the pairwise subject for the partner (with
/// its salt) and the password epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agreed {
    pub user_sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner_salt: Option<String>,
    pub password_epoch: u32,
}

/// Keep a grant of `client_id` listed until `until` (it is `now`), if it is still this user's:
/// the same pairwise `sub` and the same password epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewGrant {
    pub client_id: ClientId,
    pub grant_id: String,
    pub until: u64,
    pub now: u64,
    pub sub: String,
    pub password_epoch: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserReply {
    Saved {
        user: UserView,
        created: bool,
        /// A new password was set: every session has ended, and these grants are to be revoked
        /// (then forgotten with `ForgetGrants`).
        #[serde(default)]
        revoke: Vec<String>,
    },
    User {
        user: UserView,
    },
    /// The user is gone; these grants are still to be revoked.
    Deleted {
        #[serde(default)]
        revoke: Vec<String>,
    },
    /// The password did not match, or there is no such user: callers cannot tell which.
    BadCredentials,
    /// The device cookie is not one of this user's trusted devices (or there is no such user).
    UntrustedDevice,
    SessionState {
        user: UserView,
        sub: String,
        auth_time: u64,
        consented: bool,
        #[serde(default)]
        via_link: Option<LinkVia>,
        /// The user's password epoch (a live session is always of the current one).
        #[serde(default)]
        password_epoch: u32,
    },
    Links {
        user: UserView,
        links: Vec<LinkEntry>,
        /// With a session asked about: the link it came through, if automatic login started it.
        #[serde(default)]
        via_link: Option<LinkVia>,
    },
    /// No such session (never was, expired, logged out, or the user is gone).
    NoSession,
    Subject {
        user: UserView,
        sub: String,
        /// With `client_id` asked: the scopes the user consented to for that client.
        #[serde(default)]
        consented: Vec<String>,
        /// The user's password epoch: grants issued under an earlier one are over.
        #[serde(default)]
        password_epoch: u32,
        /// With `link` asked: the state of the link with the partner.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        link: Option<LinkState>,
    },
    /// What is being recorded was agreed to under another password, or by another person that
    /// had this username: it no longer stands.
    ConsentVoid,
    /// The link is not (or no longer) active for this person: paused or gone.
    NotLinked,
    Done,
    Failed {
        error: ApiError,
    },
}
