//! The user Durable Object's command protocol. One object per user (named `user:{username}`,
//! in the namespace of the user's region: `protocol::region`):
//! a user's record, sessions, devices, consents, grants and links change atomically in one
//! place, and no object is hot.

use serde::{Deserialize, Serialize};

use crate::protocol::client::ClientId;
use crate::protocol::partner::PartnerId;
use crate::protocol::user::{LinkEntry, LinkState, LinkVia, UserSpec, UserView, Username};

pub fn object_name(username: &Username) -> String {
    format!("user:{username}")
}

crate::commands! {
    pub enum UserCommand, trait UserHandler {
        Put(Put) -> Saved, once, put;
        Get(Get) -> UserView, once, get;
        Delete(Delete) -> Deleted, once, delete;
        Login(Login) -> LoginOutcome, once, login;
        Session(Session) -> Option<SessionState>, once, session;
        EndLinkSessions(EndLinkSessions) -> (), once, end_link_sessions;
        AutoLogin(AutoLogin) -> AutoLoginOutcome, once, auto_login;
        RecordLink(RecordLink) -> LinkRecorded, once, record_link;
        ConfirmLink(ConfirmLink) -> LinkConfirmed, once, confirm_link;
        ForgetLink(ForgetLink) -> (), once, forget_link;
        NoteLinkAccount(NoteLinkAccount) -> (), once, note_link_account;
        Links(Links) -> Option<UserLinks>, once, links;
        Whoami(Whoami) -> Option<SessionState>, once, whoami;
        Consent(Consent) -> Consented, once, consent;
        Logout(Logout) -> (), once, logout;
        Subject(Subject) -> SubjectState, once, subject;
        AddGrant(AddGrant) -> GrantAdded, once, add_grant;
        ForgetGrants(ForgetGrants) -> (), once, forget_grants;
    }
}

/// Creates or replaces the user. Without a password, only an existing user (who keeps theirs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Put {
    pub username: Username,
    pub spec: UserSpec,
    pub now: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    pub user: UserView,
    pub created: bool,
    /// A new password was set: every session has ended, and these grants are to be revoked
    /// (then forgotten with `ForgetGrants`).
    pub revoke: Vec<String>,
}

/// The user (no such user: a `not_found` error).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Get {}

/// Removes the user: profile, sessions, consents, devices and links go at once; the list of
/// grants stays until they are revoked (`ForgetGrants`), so a retry finishes the job. It carries
/// no time, as before grant lists existed: the object reads it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delete {}

/// The user is gone; these grants are still to be revoked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    pub revoke: Vec<String>,
}

/// Checks a password in constant time (unknown users cost the same as known ones) and, if
/// it matches, starts a session stored under `session_hash`.
/// With `device_hash`, only from a trusted device of this user: one that is not is answered
/// `UntrustedDevice` at once, before any password work. On success the device (if any) is
/// replaced by `new_device_hash`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Login {
    pub password: String,
    pub session_hash: String,
    pub now: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_device_hash: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginOutcome {
    /// The session is started.
    LoggedIn { user: UserView },
    /// The password did not match, or there is no such user: callers cannot tell which.
    BadCredentials,
    /// The device cookie is not one of this user's trusted devices (or there is no such user).
    UntrustedDevice,
}

/// The session's user, their subject for `partner_id`, and whether they consented to
/// `scopes` for `client_id`. `None`: no such session (never was, expired, logged out, or the
/// user is gone).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub session_hash: String,
    pub partner_id: PartnerId,
    /// The partner's subject salt (`Partner::subject_salt`), which the subject is derived
    /// with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner_salt: Option<String>,
    pub client_id: ClientId,
    pub scopes: Vec<String>,
    pub now: u64,
}

/// A live session, as `Session` and `Whoami` answer it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionState {
    pub user: UserView,
    pub sub: String,
    pub auth_time: u64,
    /// `Session` only: whether the user consented to the scopes asked about (`Whoami`: false).
    pub consented: bool,
    pub via_link: Option<LinkVia>,
    /// The user's password epoch (a live session is always of the current one).
    pub password_epoch: u32,
}

/// Ends the sessions that automatic login through `partner_id`'s link started (unlinking).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndLinkSessions {
    pub partner_id: PartnerId,
}

/// Starts a session without credentials, for a partner's verified automatic-login assertion
/// about a linked user.
/// Only while the link with `via.partner_id` is active and still to this person
/// (`user_sub`): a new password or an unlinking that ran since the link was looked up wins
/// (`NotLinked`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoLogin {
    pub session_hash: String,
    pub via: LinkVia,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner_salt: Option<String>,
    #[serde(default)]
    pub user_sub: String,
    pub now: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AutoLoginOutcome {
    /// The session is started.
    LoggedIn { user: UserView },
    /// The link is not (or no longer) active for this person, or gone.
    NotLinked,
    /// The link waits for the user to confirm it after a new password.
    Paused,
}

/// Remembers a link for the account page (a paused one is active again), with the
/// partner's label for its account. With `agreed`, only if the account is still the person
/// who agreed, under the same password; else `ConsentVoid`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordLink {
    pub partner_id: PartnerId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreed: Option<Agreed>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_label: Option<String>,
    /// The partner account linked: with it, a user linked to another account of the partner
    /// is `OtherAccount`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner_sub: Option<String>,
    pub now: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkRecorded {
    Recorded,
    /// The user is linked to another account of the partner: nothing was recorded.
    OtherAccount,
    /// What is being recorded was agreed to under another password, or by another person that
    /// had this username: it no longer stands.
    ConsentVoid,
}

/// The user, signed in with their password (`session_hash`), confirms a link that a new
/// password paused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfirmLink {
    pub session_hash: String,
    pub partner_id: PartnerId,
    pub now: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkConfirmed {
    Confirmed,
    /// No such session, or one that may not confirm a link (the user signs in again).
    NoSession,
}

/// Notes the partner account of a link moved from the layout before issue 13
/// (`/admin/links/migrate`), on a link that does not name one yet; nothing else changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoteLinkAccount {
    pub partner_id: PartnerId,
    pub partner_sub: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgetLink {
    pub partner_id: PartnerId,
}

/// The user's links; with `session_hash`, only for a live session (`None`: there is none).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Links {
    pub session_hash: Option<String>,
    pub now: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserLinks {
    pub user: UserView,
    pub links: Vec<LinkEntry>,
    /// With a session asked about: the link it came through, if automatic login started it.
    pub via_link: Option<LinkVia>,
}

/// The session's user and their subject for `partner_id` (no consent question). `None`: no
/// such session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Whoami {
    pub session_hash: String,
    pub partner_id: PartnerId,
    /// The partner's subject salt (`Partner::subject_salt`), which the subject is derived
    /// with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner_salt: Option<String>,
    pub now: u64,
}

/// Remembers consent to `scopes` for `client_id` (added to what was consented before).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    pub session_hash: String,
    pub client_id: ClientId,
    pub scopes: Vec<String>,
    pub now: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consented {
    Recorded,
    /// No such session: nothing is recorded.
    NoSession,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Logout {
    pub session_hash: String,
}

/// The user and their subject for `partner_id`: lets a grant check that its user is the
/// same person, not a new account that reuses the username.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    pub partner_id: PartnerId,
    /// The partner's subject salt (`Partner::subject_salt`), which the subject is derived
    /// with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner_salt: Option<String>,
    /// Also answer the scopes the user consented to for this client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<ClientId>,
    /// Remember (or keep remembering) this grant until then: a refresh is about to issue a
    /// new access token from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_grant: Option<RenewGrant>,
    /// Also answer the state of the user's link with `partner_id`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub link: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectState {
    pub user: UserView,
    pub sub: String,
    /// With `client_id` asked: the scopes the user consented to for that client.
    pub consented: Vec<String>,
    /// The user's password epoch: grants issued under an earlier one are over.
    pub password_epoch: u32,
    /// With `link` asked: the state of the link with the partner...
    pub link: Option<LinkState>,
    /// ...and the partner account it is to (`None`: not asked, no link, or a link recorded
    /// before accounts were).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_account: Option<String>,
}

/// Remembers a grant issued for the user (until `expires_at`), so that a new password or
/// the user's removal can revoke it. With `session_hash`, only while that session lives: a
/// grant issued from a session that a new password ended is refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddGrant {
    pub grant_id: String,
    pub client_id: ClientId,
    pub expires_at: u64,
    pub session_hash: Option<String>,
    /// The password epoch the grant was issued under: a different one is refused.
    pub password_epoch: u32,
    pub now: u64,
}

/// Whether a grant was listed, and if not, which change refused it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantAdded {
    Listed,
    /// The user's password changed since the grant was issued (another password epoch).
    PasswordChanged,
    /// The session it was issued from has ended (logged out, expired, or ended by a new
    /// password).
    SessionEnded,
}

/// Forgets grants that have been revoked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgetGrants {
    pub grant_ids: Vec<String>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Command;

    #[test]
    fn commands_keep_their_wire_tags_and_old_commands_decode() {
        let get = serde_json::to_string(&UserCommand::from(Get {})).unwrap();
        assert_eq!(get, r#"{"get":{}}"#);
        let logout = serde_json::to_string(&UserCommand::from(Logout {
            session_hash: "h".into(),
        }))
        .unwrap();
        assert_eq!(logout, r#"{"logout":{"session_hash":"h"}}"#);
        let end = serde_json::to_string(&UserCommand::from(EndLinkSessions {
            partner_id: PartnerId::parse("acme").unwrap(),
        }))
        .unwrap();
        assert_eq!(end, r#"{"end_link_sessions":{"partner_id":"acme"}}"#);

        // Written before devices, subject salts, link labels and grant renewal existed.
        let login: UserCommand =
            serde_json::from_str(r#"{"login":{"password":"pw","session_hash":"s","now":1}}"#)
                .unwrap();
        match login {
            UserCommand::Login(l) => {
                assert_eq!((l.device_hash, l.new_device_hash), (None, None))
            }
            other => panic!("decoded as {other:?}"),
        }
        let auto: UserCommand = serde_json::from_str(
            r#"{"auto_login":{"session_hash":"s","via":{"partner_id":"acme","partner_sub":"p"},"now":1}}"#,
        )
        .unwrap();
        match auto {
            UserCommand::AutoLogin(a) => {
                assert_eq!((a.partner_salt, a.user_sub.as_str()), (None, ""))
            }
            other => panic!("decoded as {other:?}"),
        }
        let record: UserCommand =
            serde_json::from_str(r#"{"record_link":{"partner_id":"acme","now":1}}"#).unwrap();
        match record {
            UserCommand::RecordLink(r) => assert_eq!((r.agreed, r.account_label), (None, None)),
            other => panic!("decoded as {other:?}"),
        }
        let agreed: Agreed =
            serde_json::from_str(r#"{"user_sub":"u","password_epoch":0}"#).unwrap();
        assert_eq!(agreed.partner_salt, None);
        let subject: UserCommand =
            serde_json::from_str(r#"{"subject":{"partner_id":"acme"}}"#).unwrap();
        match subject {
            UserCommand::Subject(s) => {
                assert_eq!(
                    (s.partner_salt, s.client_id, s.renew_grant),
                    (None, None, None)
                );
                assert!(!s.link);
            }
            other => panic!("decoded as {other:?}"),
        }
        for old in [
            r#"{"session":{"session_hash":"s","partner_id":"acme","client_id":"client-1","scopes":[],"now":1}}"#,
            r#"{"whoami":{"session_hash":"s","partner_id":"acme","now":1}}"#,
            r#"{"links":{"now":1}}"#,
            r#"{"add_grant":{"grant_id":"g","client_id":"client-1","expires_at":2,"password_epoch":0,"now":1}}"#,
        ] {
            serde_json::from_str::<UserCommand>(old).unwrap_or_else(|e| panic!("{old}: {e}"));
        }
        const { assert!(!Login::IDEMPOTENT && !AddGrant::IDEMPOTENT && !Put::IDEMPOTENT) };
    }
}
