//! Platform users: checked usernames, the admin input a user is made from, and the stored record.
//! The password hash never leaves the record's Durable Object; [`UserView`] is what is shown.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::error::ApiError;
use super::region::Region;

pub const MAX_USERNAME_LEN: usize = 64;
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Long passphrases are welcome; a bound keeps one login's work bounded.
pub const MAX_PASSWORD_BYTES: usize = 1024;
pub const MAX_ROLES: usize = 16;

/// `[a-z0-9][a-z0-9._-]{0,63}`. Login lowercases what a person types; the admin API takes only
/// the canonical form.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Username(String);

fn username_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_USERNAME_LEN
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
}

impl Username {
    pub fn parse(s: &str) -> Result<Username, ApiError> {
        if username_ok(s) {
            Ok(Username(s.to_owned()))
        } else {
            Err(ApiError::invalid_field(
                "username",
                "must be 1-64 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit",
            ))
        }
    }

    /// What a person typed into the login form: trimmed and lowercased, `None` if it cannot be
    /// a username (the login page then says only that the credentials are wrong).
    pub fn from_login(s: &str) -> Option<Username> {
        let s = s.trim().to_ascii_lowercase();
        username_ok(&s).then_some(Username(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Username {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Username::parse(&s).map_err(|e| serde::de::Error::custom(e.description))
    }
}

/// What an operator asks for in `PUT /admin/users/{username}`, checked. `password` is absent on
/// a replace that keeps the current password.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSpec {
    pub password: Option<String>,
    pub name: String,
    pub email: Option<String>,
    /// The platform checked that the user controls `email` (OpenID Connect Core §5.1
    /// `email_verified`); the operator says so, and it is `false` unless it does.
    #[serde(default)]
    pub email_verified: bool,
    pub roles: Vec<String>,
    /// The region a new user is created in (the edge fills in its default when the body names
    /// none). Fixed at creation: a replace keeps the user's region.
    #[serde(default)]
    pub region: Option<Region>,
}

/// The stored user, hash included. Lives only inside the user's Durable Object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub username: Username,
    /// Random, never shown: pairwise subject identifiers are derived from it.
    pub subject_seed: String,
    pub name: String,
    pub email: Option<String>,
    #[serde(default)]
    pub email_verified: bool,
    pub roles: Vec<String>,
    pub password_hash: String,
    pub created_at: u64,
    pub updated_at: u64,
    /// Counts the times a new password was set on this user. A grant remembers the count it was
    /// issued under, and is over once it changes, whether or not the revocation that followed
    /// reached it (grants from before such revocations existed, races with it).
    #[serde(default)]
    pub password_epoch: u32,
    /// The user's region, fixed at creation; `None` for a user created before regions (legacy
    /// placement). The object only records it: which object is reached is decided by the edge
    /// (the directory, the session cookie, the grant id), before the first call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<Region>,
}

/// A user as the admin API and the token claims see it: no hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserView {
    pub username: Username,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default)]
    pub email_verified: bool,
    pub roles: Vec<String>,
    pub created_at: u64,
    pub updated_at: u64,
    /// `null` for a user created before regions.
    #[serde(default)]
    pub region: Option<Region>,
}

impl From<&UserRecord> for UserView {
    fn from(r: &UserRecord) -> UserView {
        UserView {
            username: r.username.clone(),
            name: r.name.clone(),
            email: r.email.clone(),
            email_verified: r.email_verified,
            roles: r.roles.clone(),
            created_at: r.created_at,
            updated_at: r.updated_at,
            region: r.region,
        }
    }
}

fn text_field(
    obj: &Map<String, Value>,
    field: &str,
    max_chars: usize,
) -> Result<Option<String>, ApiError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            let s = s.trim();
            if s.is_empty() {
                return Err(ApiError::invalid_field(field, "must not be empty"));
            }
            if s.chars().count() > max_chars {
                return Err(ApiError::invalid_field(
                    field,
                    format!("must be at most {max_chars} characters"),
                ));
            }
            if !super::text::displayable(s) {
                return Err(ApiError::invalid_field(field, super::text::NOT_DISPLAYABLE));
            }
            Ok(Some(s.to_owned()))
        }
        Some(_) => Err(ApiError::invalid_field(field, "must be a string")),
    }
}

fn email_ok(e: &str) -> bool {
    let Some((local, domain)) = e.rsplit_once('@') else {
        return false;
    };
    e.len() <= 254
        && !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !e
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '<' | '>' | '"' | ','))
}

fn role_ok(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 32
        && r.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && r.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Parses the body of `PUT /admin/users/{username}`. `creating`: the password is required.
pub fn parse_user_spec(body: &[u8], creating: bool) -> Result<UserSpec, ApiError> {
    let obj = super::json::parse_object(body)?;
    const FIELDS: &[&str] = &[
        "password",
        "name",
        "email",
        "email_verified",
        "roles",
        "region",
    ];
    if obj.keys().any(|k| !FIELDS.contains(&k.as_str())) {
        return Err(super::json::unknown_member(None, FIELDS));
    }
    let password = match obj.get("password") {
        None | Some(Value::Null) if creating => {
            return Err(ApiError::invalid_field(
                "password",
                "is required for a new user",
            ))
        }
        None | Some(Value::Null) => None,
        Some(Value::String(p)) => {
            if p.chars().count() < MIN_PASSWORD_CHARS {
                return Err(ApiError::invalid_field(
                    "password",
                    format!("must be at least {MIN_PASSWORD_CHARS} characters"),
                ));
            }
            if p.len() > MAX_PASSWORD_BYTES {
                return Err(ApiError::invalid_field(
                    "password",
                    format!("must be at most {MAX_PASSWORD_BYTES} bytes"),
                ));
            }
            Some(p.clone())
        }
        Some(_) => return Err(ApiError::invalid_field("password", "must be a string")),
    };
    let name = text_field(&obj, "name", 200)?
        .ok_or_else(|| ApiError::invalid_field("name", "is required"))?;
    let email = text_field(&obj, "email", 254)?;
    if let Some(e) = &email {
        if !email_ok(e) {
            return Err(ApiError::invalid_field("email", "is not an email address"));
        }
    }
    let email_verified = match obj.get("email_verified") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(ApiError::invalid_field(
                "email_verified",
                "must be a boolean",
            ))
        }
    };
    if email_verified && email.is_none() {
        return Err(ApiError::invalid_field("email_verified", "needs an email"));
    }
    let roles = match obj.get("roles") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => {
            if items.len() > MAX_ROLES {
                return Err(ApiError::invalid_field(
                    "roles",
                    format!("must list at most {MAX_ROLES} roles"),
                ));
            }
            let mut roles: Vec<String> = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let field = format!("roles[{i}]");
                match item {
                    Value::String(r) if role_ok(r) => {
                        if !roles.contains(r) {
                            roles.push(r.clone());
                        }
                    }
                    _ => return Err(ApiError::invalid_field(
                        field,
                        "must be a role name: a-z first, then a-z, 0-9, '_' or '-' (at most 32)",
                    )),
                }
            }
            roles
        }
        Some(_) => {
            return Err(ApiError::invalid_field(
                "roles",
                "must be an array of strings",
            ))
        }
    };
    let region = match obj.get("region") {
        None | Some(Value::Null) => None,
        Some(Value::String(r)) => Some(Region::parse(r)?),
        Some(_) => return Err(Region::invalid()),
    };
    Ok(UserSpec {
        password,
        name,
        email,
        email_verified,
        roles,
        region,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_spec_takes_a_region_strictly() {
        let spec = |body: &str| parse_user_spec(body.as_bytes(), true);
        let ok = spec(r#"{"password":"long enough pw","name":"A","region":"apac"}"#).unwrap();
        assert_eq!(ok.region, Some(Region::Apac));
        let none = spec(r#"{"password":"long enough pw","name":"A","region":null}"#).unwrap();
        assert_eq!(none.region, None);
        for bad in [r#""mars""#, r#""EU""#, "5", "[]", r#""""#] {
            let body = format!(r#"{{"password":"long enough pw","name":"A","region":{bad}}}"#);
            let e = spec(&body).unwrap_err();
            assert_eq!(
                e.code,
                crate::protocol::error::ErrorCode::InvalidRequest,
                "{bad}"
            );
            assert_eq!(
                e.description, "region: must be one of eu, uk, us, apac",
                "{bad}"
            );
        }
    }

    #[test]
    fn a_new_password_pauses_every_link_until_it_is_recorded_again() {
        use crate::protocol::partner::PartnerId;
        let acme = PartnerId::parse("acme").unwrap();
        let beta = PartnerId::parse("beta").unwrap();
        let mut links = Vec::new();
        assert_eq!(link_state(&links, &acme), LinkState::Absent);
        assert!(record_link(
            &mut links,
            &acme,
            None,
            Some("lena@acme".into()),
            100
        ));
        assert!(record_link(&mut links, &beta, None, None, 200));
        assert_eq!(link_state(&links, &acme), LinkState::Active);
        pause_links(&mut links);
        assert_eq!(link_state(&links, &acme), LinkState::Paused);
        assert_eq!(link_state(&links, &beta), LinkState::Paused);
        assert!(record_link(&mut links, &acme, None, None, 300));
        assert_eq!(link_state(&links, &acme), LinkState::Active);
        assert_eq!(
            link_state(&links, &beta),
            LinkState::Paused,
            "only the one confirmed"
        );
        assert_eq!(links[0].linked_at, 100, "the link keeps its date");
        assert_eq!(
            links[0].account_label.as_deref(),
            Some("lena@acme"),
            "and its label"
        );
        assert_eq!(links.len(), 2);
    }

    #[test]
    fn a_user_links_one_account_per_partner_and_a_moved_link_learns_its_account() {
        use crate::protocol::partner::PartnerId;
        let acme = PartnerId::parse("acme").unwrap();
        let mut links = Vec::new();
        assert!(record_link(&mut links, &acme, Some("x-1"), None, 100));
        assert!(
            record_link(&mut links, &acme, Some("x-1"), None, 150),
            "the same account again"
        );
        assert!(
            !record_link(&mut links, &acme, Some("x-2"), None, 200),
            "another account of the partner"
        );
        let mut unknown = vec![LinkEntry {
            partner_id: acme.clone(),
            linked_at: 5,
            paused: false,
            account_label: None,
            partner_sub: None,
        }];
        assert!(
            !record_link(&mut unknown, &acme, Some("x-3"), None, 300),
            "a link recorded before accounts were may be to another one: refused until noted"
        );
        assert_eq!(unknown[0].partner_sub, None);
        assert_eq!(links.len(), 1);
        assert_eq!(links[0].partner_sub.as_deref(), Some("x-1"));
        // A link recorded before accounts were: the move notes it once, and nothing else changes.
        let mut old = vec![LinkEntry {
            partner_id: acme.clone(),
            linked_at: 5,
            paused: true,
            account_label: None,
            partner_sub: None,
        }];
        assert!(note_link_account(&mut old, &acme, "x-9"));
        assert!(!note_link_account(&mut old, &acme, "x-10"), "noted once");
        assert_eq!(old[0].partner_sub.as_deref(), Some("x-9"));
        assert!(old[0].paused, "a paused link stays paused");
        assert!(!note_link_account(
            &mut old,
            &PartnerId::parse("beta").unwrap(),
            "x"
        ));
    }

    #[test]
    fn username_is_canonical_lowercase() {
        for good in ["alice", "j.smith", "pupil_07", "a-b", "7years"] {
            assert!(Username::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Alice",
            ".alice",
            "al ice",
            "alice@school",
            "ålice",
            &"a".repeat(65),
        ] {
            assert_eq!(
                Username::parse(bad).unwrap_err().field.as_deref(),
                Some("username"),
                "{bad}"
            );
        }
        assert_eq!(
            Username::from_login("  J.Smith ").unwrap().as_str(),
            "j.smith"
        );
        assert_eq!(Username::from_login("no spaces allowed"), None);
    }

    #[test]
    fn user_spec_requires_password_only_when_creating() {
        let body = br#"{"name":"Alice","email":"alice@school.example","roles":["pupil","pupil"]}"#;
        assert_eq!(
            parse_user_spec(body, true).unwrap_err().field.as_deref(),
            Some("password")
        );
        let spec = parse_user_spec(body, false).unwrap();
        assert_eq!(spec.password, None);
        assert_eq!(spec.roles, vec!["pupil".to_owned()]);
    }

    #[test]
    fn user_spec_names_the_offending_field() {
        let cases: &[(&[u8], &str)] = &[
            (br#"{"password":"short","name":"A"}"#, "password"),
            (br#"{"password":12345678,"name":"A"}"#, "password"),
            (br#"{"password":"longenough"}"#, "name"),
            (br#"{"password":"longenough","name":" "}"#, "name"),
            (
                br#"{"password":"longenough","name":"A","email":"not-an-email"}"#,
                "email",
            ),
            (
                br#"{"password":"longenough","name":"A","email":"a@b"}"#,
                "email",
            ),
            (
                br#"{"password":"longenough","name":"A","roles":"teacher"}"#,
                "roles",
            ),
            (
                br#"{"password":"longenough","name":"A","roles":["Teacher"]}"#,
                "roles[0]",
            ),
            (
                br#"{"password":"longenough","name":"A","roles":["ok",1]}"#,
                "roles[1]",
            ),
        ];
        for (body, field) in cases {
            let err = parse_user_spec(body, true).unwrap_err();
            assert_eq!(
                err.field.as_deref(),
                Some(*field),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        // An unknown member is refused without naming it back: it is the caller's text.
        let err = parse_user_spec(
            br#"{"password":"longenough","name":"A","password_hash":"x"}"#,
            true,
        )
        .unwrap_err();
        assert_eq!(err.field, None);
        assert!(
            !err.description.contains("password_hash"),
            "{}",
            err.description
        );
        let long = format!(
            "{{\"password\":\"{}\",\"name\":\"A\"}}",
            "p".repeat(MAX_PASSWORD_BYTES + 1)
        );
        assert_eq!(
            parse_user_spec(long.as_bytes(), true)
                .unwrap_err()
                .field
                .as_deref(),
            Some("password")
        );
    }

    #[test]
    fn user_view_has_no_hash() {
        let rec = UserRecord {
            username: Username::parse("alice").unwrap(),
            subject_seed: "seed".into(),
            name: "Alice".into(),
            email: None,
            email_verified: false,
            roles: vec![],
            password_hash: "$argon2id$secret".into(),
            created_at: 1,
            updated_at: 2,
            password_epoch: 1,
            region: None,
        };
        let json = serde_json::to_string(&UserView::from(&rec)).unwrap();
        assert!(!json.contains("argon2"));
        assert!(!json.contains("password"));
    }
}

/// A browser session lives at most this long after the login that made it.
pub const SESSION_TTL_S: u64 = 12 * 3600;
/// A browser where a user signed in is trusted this long for that user's sign-ins (OWASP's
/// device cookies): failed sign-ins elsewhere do not lock it out.
pub const DEVICE_TTL_S: u64 = 180 * 24 * 3600;
/// Devices remembered per user; the oldest goes first.
pub const MAX_DEVICES: usize = 16;
/// Password sessions per user; a new one ends the oldest beyond this.
pub const MAX_SESSIONS: usize = 32;
/// Sessions from one partner's automatic login per user: kept apart from the user's own, so a
/// partner that signs the user in often never ends those.
pub const MAX_LINK_SESSIONS: usize = 8;
/// Grants per user whose access tokens may still be live (issued in the last minutes): more are
/// refused, so a flood of authorizations cannot make revoking them unbounded work.
pub const MAX_LIVE_GRANTS: usize = 256;

/// A login session, stored under the SHA-256 of its cookie secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub auth_time: u64,
    pub expires_at: u64,
    /// Set when a partner's automatic login started the session: grants issued in it belong
    /// to that link, and end with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via_link: Option<LinkVia>,
}

/// The account link a session came through.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkVia {
    pub partner_id: crate::protocol::partner::PartnerId,
    pub partner_sub: String,
}

/// What a user's own object remembers of their links, for the account page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkEntry {
    pub partner_id: crate::protocol::partner::PartnerId,
    pub linked_at: u64,
    /// A new password was set after the link was made (or last confirmed): it signs nobody in
    /// and issues nothing until the user, signed in with the new password, confirms it again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// The partner's name for the account linked (its words), shown on the account page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_label: Option<String>,
    /// The partner account linked (`partner_sub`): it names the link's shard, and no other
    /// account of the partner signs this user in. `None` only for a link recorded before
    /// issue 13 that the move of links (`/admin/links/migrate`) has not reached yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner_sub: Option<String>,
}

/// Whether a user's link with a partner may act for them, as the user's object records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    Active,
    /// Waiting for the user to confirm it after a new password.
    Paused,
    Absent,
}

/// The state of the link with `partner` among `links`.
pub fn link_state(links: &[LinkEntry], partner: &crate::protocol::partner::PartnerId) -> LinkState {
    match links.iter().find(|l| l.partner_id == *partner) {
        Some(l) if l.paused => LinkState::Paused,
        Some(_) => LinkState::Active,
        None => LinkState::Absent,
    }
}

/// Records a link the user just made (or made again) with their current password: a paused one
/// is active again, a new one is added. The date of a link made before is kept. With
/// `partner_sub`, the link is to that partner account: if the user is linked to another account
/// of the partner, nothing changes and the answer is `false` (one linked account per partner).
pub fn record_link(
    links: &mut Vec<LinkEntry>,
    partner: &crate::protocol::partner::PartnerId,
    partner_sub: Option<&str>,
    account_label: Option<String>,
    now: u64,
) -> bool {
    match links.iter_mut().find(|l| l.partner_id == *partner) {
        Some(l) => {
            // A link recorded before accounts were (`None`) may be to any account: only the
            // same call without an account (the earlier layout's) records over it.
            match (l.partner_sub.as_deref(), partner_sub) {
                (Some(have), Some(new)) if have != new => return false,
                (None, Some(_)) => return false,
                _ => {}
            }
            l.paused = false;
            if account_label.is_some() {
                l.account_label = account_label;
            }
            if l.partner_sub.is_none() {
                l.partner_sub = partner_sub.map(str::to_owned);
            }
        }
        None => links.push(LinkEntry {
            partner_id: partner.clone(),
            linked_at: now,
            paused: false,
            account_label,
            partner_sub: partner_sub.map(str::to_owned),
        }),
    }
    true
}

/// Notes which partner account a link recorded before issue 13 is to (the move of links): only
/// on a link that does not say yet; nothing else changes (a paused link stays paused).
pub fn note_link_account(
    links: &mut [LinkEntry],
    partner: &crate::protocol::partner::PartnerId,
    partner_sub: &str,
) -> bool {
    match links.iter_mut().find(|l| l.partner_id == *partner) {
        Some(l) if l.partner_sub.is_none() => {
            l.partner_sub = Some(partner_sub.to_owned());
            true
        }
        _ => false,
    }
}

/// What a new password does to the user's links: every one waits for the user to confirm it,
/// so a link that whoever knew the old password made (or a partner account they control) stops
/// signing anyone in.
pub fn pause_links(links: &mut [LinkEntry]) {
    for l in links {
        l.paused = true;
    }
}
