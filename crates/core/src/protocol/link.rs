//! Account linking and automatic login: what a partner's link request, login assertion and
//! jwt-bearer grant assertion must say, and the link token we answer with. Signatures are checked
//! with the partner's keys by [`super::assertion`]; this module holds the rules that follow.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::assertion::{check_claims, AssertionError, Checked, Rules};
use super::discovery::Issuer;
use super::error::{ApiError, ErrorCode};
use super::origin::Origin;
use super::partner::{Partner, PartnerId};
use super::user::LinkVia;

/// A link request lives at most five minutes...
pub const LINK_REQUEST_MAX_LIFETIME_S: u64 = 300;
/// ...an automatic-login assertion at most two.
pub const AUTO_LOGIN_MAX_LIFETIME_S: u64 = 120;
/// Clock skew tolerated on partners' `exp`, `nbf` and `iat`.
pub const CLOCK_SKEW_S: u64 = 60;
/// How long our link token lives.
pub const LINK_TOKEN_TTL_S: u64 = 300;
/// Linking needs a login at the platform this recent.
pub const RECENT_LOGIN_S: u64 = 300;
pub const MAX_PARTNER_SUB_LEN: usize = 256;
pub const MAX_STATE_LEN: usize = 1024;

/// The `typ` a link request must carry (RFC 8725 §3.11: explicit typing).
pub const LINK_REQUEST_TYP: &str = "edgeward-link+jwt";
/// The `typ` an automatic-login assertion must carry.
pub const LOGIN_ASSERTION_TYP: &str = "edgeward-login+jwt";
/// The `typ` of the partner's server-to-server confirmation of a link.
pub const LINK_CONFIRMATION_TYP: &str = "edgeward-link-confirm+jwt";
/// How long a link code lives: the partner redeems it as soon as the browser is back, as with
/// an authorization code (RFC 6749 §4.1.2 recommends at most ten minutes; we need far less).
pub const LINK_CODE_TTL_S: u64 = 120;
/// A link confirmation lives at most two minutes, like a login assertion.
pub const LINK_CONFIRMATION_MAX_LIFETIME_S: u64 = AUTO_LOGIN_MAX_LIFETIME_S;
/// The partner's label for its account, shown on the consent page.
pub const MAX_ACCOUNT_LABEL_CHARS: usize = 64;
/// Unconfirmed links kept per user and partner: more push out the oldest.
pub const MAX_PENDING_LINKS_PER_USER: u64 = 4;

/// What a partner's JWT is for. The three kinds are signed with the same keys and have the same
/// `iss` and `aud`, so each names its purpose in its `typ` header, and none passes for another:
/// a login assertion, which travels in a browser URL, is not a grant assertion, and a link request
/// is not a login assertion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartnerJwt {
    LinkRequest,
    LoginAssertion,
    /// RFC 7523 §2.1 (the jwt-bearer grant): `typ` absent or `JWT`, as that RFC's clients send.
    GrantAssertion,
    /// The partner's server confirms a link it asked for (`/link/confirm`).
    LinkConfirmation,
}

impl PartnerJwt {
    /// Checks the JWT header's `typ`: a media type, so compared without case and with an
    /// optional `application/` prefix (RFC 7515 §4.1.9).
    pub fn check_typ(self, typ: Option<&str>) -> Result<(), AssertionError> {
        let typ = typ.map(|t| {
            let t = t.to_ascii_lowercase();
            match t.strip_prefix("application/") {
                Some(rest) => rest.to_owned(),
                None => t,
            }
        });
        let (ok, why) = match self {
            PartnerJwt::LinkRequest => (
                typ.as_deref() == Some(LINK_REQUEST_TYP),
                "a link request's typ header must be edgeward-link+jwt",
            ),
            PartnerJwt::LoginAssertion => (
                typ.as_deref() == Some(LOGIN_ASSERTION_TYP),
                "a login assertion's typ header must be edgeward-login+jwt",
            ),
            PartnerJwt::GrantAssertion => (
                matches!(typ.as_deref(), None | Some("jwt")),
                "a jwt-bearer assertion's typ header must be JWT or absent",
            ),
            PartnerJwt::LinkConfirmation => (
                typ.as_deref() == Some(LINK_CONFIRMATION_TYP),
                "a link confirmation's typ header must be edgeward-link-confirm+jwt",
            ),
        };
        if ok {
            Ok(())
        } else {
            Err(claim(why))
        }
    }
}

/// A checked link request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkRequest {
    /// The user's id at the partner.
    pub partner_sub: String,
    pub jti: String,
    pub exp: u64,
    /// Where the browser goes back to, on one of the partner's origins.
    pub return_to: String,
    /// The partner's session binding, sent back unchanged.
    pub state: String,
    /// The partner's own name for the account being linked (its words, shown as such).
    pub account_label: String,
}

fn claim(why: &'static str) -> AssertionError {
    AssertionError::Claim(why)
}

fn partner_rules<'a>(
    partner: &'a Partner,
    audiences: &'a [String],
    now: u64,
    max_lifetime_s: u64,
) -> Rules<'a> {
    Rules {
        iss: &partner.issuer,
        sub: None,
        audiences,
        now,
        max_lifetime_s,
        leeway_s: CLOCK_SKEW_S,
    }
}

/// The claims every partner JWT must have right (`iss`, `aud`, times, `jti`, a partner `sub`),
/// for one that lives at most `max_lifetime_s`.
fn partner_claims(
    payload: &Value,
    partner: &Partner,
    audiences: &[String],
    now: u64,
    max_lifetime_s: u64,
) -> Result<Checked, AssertionError> {
    let checked = check_claims(
        payload,
        &partner_rules(partner, audiences, now, max_lifetime_s),
    )?;
    if checked.sub.is_empty() || checked.sub.len() > MAX_PARTNER_SUB_LEN {
        return Err(claim("the sub is empty or too long"));
    }
    Ok(checked)
}

/// `return_to` must be an absolute URL on one of the partner's allowlisted origins: the browser
/// is only ever sent back to a verified place.
pub fn check_return_to(raw: &str, partner: &Partner) -> Result<String, AssertionError> {
    let url = url::Url::parse(raw).map_err(|_| claim("return_to is not an absolute URL"))?;
    if url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(claim("return_to must not have a fragment or credentials"));
    }
    let on_allowlist = Origin::from_referer(raw).is_some_and(|o| partner.origins.contains(&o));
    if !on_allowlist {
        return Err(claim("return_to is not on the partner's origins"));
    }
    Ok(url.to_string())
}

/// Checks a link request's claims (its signature was checked with the partner's keys).
pub fn check_link_request(
    payload: &Value,
    partner: &Partner,
    us: &Issuer,
    now: u64,
) -> Result<LinkRequest, AssertionError> {
    let audiences = [us.as_str().to_owned()];
    let checked = partner_claims(
        payload,
        partner,
        &audiences,
        now,
        LINK_REQUEST_MAX_LIFETIME_S,
    )?;
    let return_to = payload
        .get("return_to")
        .and_then(Value::as_str)
        .ok_or_else(|| claim("the link request has no return_to"))?;
    let return_to = check_return_to(return_to, partner)?;
    // Required: the partner's check of `state` against the browser session that started the
    // request is what keeps a forwarded request from being confirmed (RFC 6749 §10.12).
    let state = match payload.get("state") {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_STATE_LEN => s.clone(),
        _ => {
            return Err(claim(
                "the link request needs a state of 1 to 1024 characters, bound to the browser session that asked",
            ))
        }
    };
    let account_label = payload
        .get("account_label")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .ok_or_else(|| claim("the link request has no account_label"))?;
    if account_label.chars().count() > MAX_ACCOUNT_LABEL_CHARS
        || !super::text::displayable(account_label)
    {
        return Err(claim(
            "account_label must be at most 64 characters, without control or formatting characters",
        ));
    }
    Ok(LinkRequest {
        partner_sub: checked.sub,
        jti: checked.jti,
        exp: checked.exp,
        return_to,
        state,
        account_label: account_label.to_owned(),
    })
}

/// A checked link confirmation: the partner account and the link request it confirms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkConfirmation {
    pub partner_sub: String,
    /// The confirmation's own `jti` (used once) and `exp`.
    pub jti: String,
    pub exp: u64,
    /// The `jti` of the link request this confirms.
    pub link_request: String,
}

/// Checks a link confirmation's claims: from the partner, to us, short-lived, naming the
/// partner account (`sub`) and the link request (`link_request`, its `jti`).
pub fn check_link_confirmation(
    payload: &Value,
    partner: &Partner,
    us: &Issuer,
    now: u64,
) -> Result<LinkConfirmation, AssertionError> {
    let audiences = [us.as_str().to_owned()];
    let max = LINK_CONFIRMATION_MAX_LIFETIME_S;
    let checked = partner_claims(payload, partner, &audiences, now, max)?;
    let link_request = payload
        .get("link_request")
        .and_then(Value::as_str)
        .filter(|j| !j.is_empty() && j.len() <= 256)
        .ok_or_else(|| claim("the confirmation has no link_request (the link request's jti)"))?;
    Ok(LinkConfirmation {
        partner_sub: checked.sub,
        jti: checked.jti,
        exp: checked.exp,
        link_request: link_request.to_owned(),
    })
}

/// A link the user agreed to, waiting for the partner's confirmation. Stored by the hash of its
/// link code; it signs nobody in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingLink {
    pub partner_sub: String,
    /// Hash of the link request's `jti`: only a confirmation naming that request redeems it.
    pub request_jti_hash: String,
    pub username: super::user::Username,
    pub user_sub: String,
    /// The user's password epoch when they consented: a new password since voids the consent.
    pub password_epoch: u32,
    pub expires_at: u64,
    /// The attempt that redeemed the code, once one has...
    pub confirmed_by: Option<String>,
    /// ...and whether that redemption created the link (it may have been there already).
    #[serde(default)]
    pub created: bool,
    /// The partner's label for its account, kept with the link for the account page.
    #[serde(default)]
    pub account_label: String,
}

/// What a confirmation does to a pending link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Redemption {
    /// The first valid confirmation: the link is made.
    Confirm,
    /// The same attempt again (its reply was lost): answered as before, nothing changes.
    Again,
    /// A second use of a redeemed code: refused, and the link made from it is undone
    /// (RFC 6749 §4.1.2, as for an authorization code).
    Replay,
    /// Expired, or not for this request or partner account: refused, and the code is burnt.
    Refuse,
}

/// Decides a confirmation `attempt` (random per request, repeated only by our own retries) of
/// `pending`, which names `partner_sub` and the request whose `jti` hashes to
/// `request_jti_hash`.
pub fn redeem(
    pending: &PendingLink,
    partner_sub: &str,
    request_jti_hash: &str,
    attempt: &str,
    now: u64,
) -> Redemption {
    match &pending.confirmed_by {
        Some(a) if a == attempt => Redemption::Again,
        Some(_) => Redemption::Replay,
        None if now >= pending.expires_at => Redemption::Refuse,
        None if pending.partner_sub != partner_sub
            || pending.request_jti_hash != request_jti_hash =>
        {
            Redemption::Refuse
        }
        None => Redemption::Confirm,
    }
}

/// Checks an automatic-login (or jwt-bearer grant) assertion's claims.
pub fn check_login_assertion(
    payload: &Value,
    partner: &Partner,
    audiences: &[String],
    now: u64,
) -> Result<Checked, AssertionError> {
    partner_claims(payload, partner, audiences, now, AUTO_LOGIN_MAX_LIFETIME_S)
}

/// The scopes a jwt-bearer grant may carry for a linked user. Linking lets the partner recognise
/// the user (`openid`) and nothing more; other scopes only as far as the user consented to them
/// for this client in the code flow. `requested` is what the client asked for (`explicit`) or,
/// without a `scope` parameter, everything registered for it: then the grant is narrowed to what
/// is allowed, while an explicit request for more is refused.
pub fn linked_scopes(
    requested: Vec<String>,
    explicit: bool,
    consented: &[String],
) -> Result<Vec<String>, ApiError> {
    let allowed = |s: &String| s == "openid" || consented.contains(s);
    if explicit && !requested.iter().all(&allowed) {
        return Err(ApiError::new(
            ErrorCode::InvalidScope,
            "the user has not consented to a requested scope for this client; it can be \
             asked for in the authorization code flow",
        ));
    }
    let scopes: Vec<String> = requested.into_iter().filter(allowed).collect();
    if scopes.is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidScope,
            "no requested scope is covered by the link or by the user's consent",
        ));
    }
    Ok(scopes)
}

/// What a session is used for, when deciding whether one started by automatic login will do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionUse<'a> {
    /// Authorizing a client of `partner`, for scopes the user has (`consented`) or has not yet
    /// agreed to.
    Authorize {
        partner: &'a PartnerId,
        consented: bool,
    },
    /// Linking or unlinking accounts.
    Links,
}

/// Whether a session serves `purpose`. A password login serves everything. A session that a
/// partner's automatic login started (`via`) only lets that partner's own clients use what the
/// user agreed to before: whoever holds the partner's signing key, or a browser signed in
/// through someone else's login URL, can neither give new consent in the user's name, nor reach
/// other partners' clients, nor link or unlink accounts. For those, the user signs in with their
/// password.
pub fn session_serves(via: Option<&LinkVia>, purpose: SessionUse<'_>) -> bool {
    match (via, purpose) {
        (None, _) => true,
        (Some(via), SessionUse::Authorize { partner, consented }) => {
            via.partner_id == *partner && consented
        }
        (Some(_), SessionUse::Links) => false,
    }
}

/// Whether a session's login is recent enough to link an account.
pub fn recently_logged_in(auth_time: u64, now: u64) -> bool {
    now.saturating_sub(auth_time) <= RECENT_LOGIN_S
}

/// The link token's claims (`exp` and `iat` are set by the signer): for the partner, about the
/// user's pairwise subject and the partner's own user id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkTokenClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub partner_sub: String,
    pub jti: String,
}

#[cfg(test)]
mod tests {
    use super::PartnerJwt::*;

    #[test]
    fn linked_scopes_are_openid_plus_what_the_user_consented() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        // Default (everything registered): narrowed to openid and the consented scopes.
        assert_eq!(
            linked_scopes(v(&["openid", "profile", "email"]), false, &v(&["profile"])).unwrap(),
            v(&["openid", "profile"])
        );
        assert_eq!(
            linked_scopes(v(&["openid", "email"]), false, &[]).unwrap(),
            v(&["openid"])
        );
        // Asked for explicitly, an unconsented scope is refused, not silently dropped.
        let err = linked_scopes(v(&["openid", "email"]), true, &v(&["profile"])).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidScope);
        // Our words only: the scope asked for is not echoed.
        assert!(!err.description.contains("email"));
        assert_eq!(
            linked_scopes(v(&["profile"]), true, &v(&["profile"])).unwrap(),
            v(&["profile"])
        );
        // Nothing left: refused.
        let err = linked_scopes(v(&["email"]), false, &[]).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidScope);
    }

    #[test]
    fn auto_login_sessions_use_earlier_consent_for_their_partner_only() {
        let acme = PartnerId::parse("acme").unwrap();
        let beta = PartnerId::parse("beta").unwrap();
        let via = LinkVia {
            partner_id: acme.clone(),
            partner_sub: "acme-user".into(),
        };
        let authorize = |partner, consented| SessionUse::Authorize { partner, consented };
        assert!(session_serves(None, authorize(&beta, false)));
        assert!(session_serves(None, SessionUse::Links));
        assert!(session_serves(Some(&via), authorize(&acme, true)));
        assert!(
            !session_serves(Some(&via), authorize(&acme, false)),
            "no new consent without the user's password"
        );
        assert!(!session_serves(Some(&via), authorize(&beta, true)));
        assert!(!session_serves(Some(&via), SessionUse::Links));
    }

    #[test]
    fn partner_jwt_kinds_are_told_apart_by_typ() {
        let cases: [(PartnerJwt, Option<&str>, bool); 20] = [
            (LinkRequest, Some("edgeward-link+jwt"), true),
            (LinkRequest, Some("application/EDGEWARD-LINK+JWT"), true),
            (LinkRequest, Some("edgeward-login+jwt"), false),
            (LinkRequest, Some("JWT"), false),
            (LinkRequest, None, false),
            (LoginAssertion, Some("edgeward-login+jwt"), true),
            (LoginAssertion, Some("Application/edgeward-login+jwt"), true),
            (LoginAssertion, Some("edgeward-link+jwt"), false),
            (LoginAssertion, Some("JWT"), false),
            (LoginAssertion, None, false),
            (GrantAssertion, None, true),
            (GrantAssertion, Some("jwt"), true),
            (GrantAssertion, Some("edgeward-login+jwt"), false),
            (GrantAssertion, Some("edgeward-link+jwt"), false),
            (LinkConfirmation, Some("edgeward-link-confirm+jwt"), true),
            (LinkConfirmation, Some("edgeward-link+jwt"), false),
            (LinkConfirmation, Some("JWT"), false),
            (LinkConfirmation, None, false),
            (LinkRequest, Some("edgeward-link-confirm+jwt"), false),
            (LoginAssertion, Some("edgeward-link-confirm+jwt"), false),
        ];
        for (kind, typ, ok) in cases {
            assert_eq!(kind.check_typ(typ).is_ok(), ok, "{kind:?} with typ {typ:?}");
        }
    }

    use super::*;
    use crate::protocol::partner::{PartnerId, PartnerStatus};
    use serde_json::json;

    fn partner() -> Partner {
        Partner {
            id: PartnerId::parse("acme").unwrap(),
            name: "Acme".into(),
            origins: vec![Origin::parse("https://app.acme.example").unwrap()],
            status: PartnerStatus::Active,
            issuer: "https://app.acme.example".into(),
            jwks: None,
            jwks_uri: None,
            rate_limits: None,
            subject_salt: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn us() -> Issuer {
        Issuer::parse("https://id.school.example").unwrap()
    }

    fn request() -> Value {
        json!({
            "iss": "https://app.acme.example", "aud": "https://id.school.example", "sub": "partner-user-42",
            "jti": "r1", "iat": 1_000, "exp": 1_200, "return_to": "https://app.acme.example/linked?x=1", "state": "s1",
            "account_label": "lena@acme",
        })
    }

    #[test]
    fn link_request_accepted_when_every_rule_holds() {
        let r = check_link_request(&request(), &partner(), &us(), 1_010).unwrap();
        assert_eq!(r.partner_sub, "partner-user-42");
        assert_eq!(r.return_to, "https://app.acme.example/linked?x=1");
        assert_eq!(r.state, "s1");
        assert_eq!(r.account_label, "lena@acme");
    }

    #[test]
    fn link_request_rules_each_refuse() {
        let with = |k: &str, v: Value| {
            let mut c = request();
            c[k] = v;
            c
        };
        for (claims, now, why) in [
            (
                with("iss", json!("https://evil.example")),
                1_010,
                "wrong iss",
            ),
            (
                with("aud", json!("https://other.example")),
                1_010,
                "wrong aud",
            ),
            (request(), 1_261, "expired beyond the skew"),
            (with("nbf", json!(1_100)), 1_010, "not yet valid"),
            (
                with("exp", json!(1_000 + 301)),
                1_010,
                "lifetime over five minutes",
            ),
            (
                with("return_to", json!("https://evil.example/cb")),
                1_010,
                "return_to off the allowlist",
            ),
            (
                with("return_to", json!("https://app.acme.example.evil.example/")),
                1_010,
                "suffix trick",
            ),
            (
                with("return_to", json!("https://app.acme.example/#x")),
                1_010,
                "fragment",
            ),
            (with("return_to", json!("/relative")), 1_010, "relative"),
            (with("sub", json!("")), 1_010, "empty sub"),
            (with("state", json!(5)), 1_010, "state type"),
            (with("state", Value::Null), 1_010, "no state"),
            (with("state", json!("")), 1_010, "empty state"),
            (
                with("account_label", Value::Null),
                1_010,
                "no account label",
            ),
            (
                with("account_label", json!("  ")),
                1_010,
                "blank account label",
            ),
            (
                with("account_label", json!("x".repeat(65))),
                1_010,
                "label too long",
            ),
            (
                with("account_label", json!("lena\u{202E}moc.live")),
                1_010,
                "bidirectional override in the label",
            ),
            (
                with("account_label", json!("a\nb")),
                1_010,
                "control character in the label",
            ),
            (with("account_label", json!(7)), 1_010, "label type"),
        ] {
            assert!(
                check_link_request(&claims, &partner(), &us(), now).is_err(),
                "{why}"
            );
        }
        assert!(
            check_link_request(&request(), &partner(), &us(), 1_250).is_ok(),
            "within the skew"
        );
    }

    #[test]
    fn login_assertion_lives_at_most_two_minutes() {
        let aud = vec!["https://id.school.example".to_owned()];
        let ok = json!({"iss":"https://app.acme.example","aud":"https://id.school.example","sub":"u1","jti":"a1","exp":1_100});
        assert!(check_login_assertion(&ok, &partner(), &aud, 1_000).is_ok());
        let long = json!({"iss":"https://app.acme.example","aud":"https://id.school.example","sub":"u1","jti":"a1","exp":1_200});
        assert!(check_login_assertion(&long, &partner(), &aud, 1_000).is_err());
    }

    fn pending() -> PendingLink {
        PendingLink {
            partner_sub: "partner-user-42".into(),
            request_jti_hash: "h-r1".into(),
            username: crate::protocol::user::Username::parse("lena").unwrap(),
            user_sub: "sub".into(),
            password_epoch: 0,
            expires_at: 1_120,
            confirmed_by: None,
            created: false,
            account_label: "lena@acme".into(),
        }
    }

    #[test]
    fn link_code_redeems_once_for_its_request_and_account_only() {
        let p = pending();
        assert_eq!(
            redeem(&p, "partner-user-42", "h-r1", "a1", 1_000),
            Redemption::Confirm
        );
        assert_eq!(
            redeem(&p, "partner-user-43", "h-r1", "a1", 1_000),
            Redemption::Refuse,
            "another partner account"
        );
        assert_eq!(
            redeem(&p, "partner-user-42", "h-r2", "a1", 1_000),
            Redemption::Refuse,
            "another link request"
        );
        assert_eq!(
            redeem(&p, "partner-user-42", "h-r1", "a1", 1_120),
            Redemption::Refuse,
            "expired"
        );
        let used = PendingLink {
            confirmed_by: Some("a1".into()),
            ..pending()
        };
        assert_eq!(
            redeem(&used, "partner-user-42", "h-r1", "a1", 1_000),
            Redemption::Again,
            "our own retry of a lost reply"
        );
        assert_eq!(
            redeem(&used, "partner-user-42", "h-r1", "a2", 1_000),
            Redemption::Replay,
            "a second redemption"
        );
    }

    #[test]
    fn link_confirmation_names_its_request() {
        let ok = json!({"iss":"https://app.acme.example","aud":"https://id.school.example",
            "sub":"partner-user-42","jti":"c1","exp":1_100,"link_request":"r1"});
        let c = check_link_confirmation(&ok, &partner(), &us(), 1_000).unwrap();
        assert_eq!(
            (c.partner_sub.as_str(), c.link_request.as_str()),
            ("partner-user-42", "r1")
        );
        let mut none = ok.clone();
        none["link_request"] = Value::Null;
        assert!(check_link_confirmation(&none, &partner(), &us(), 1_000).is_err());
        let mut long = ok.clone();
        long["exp"] = json!(1_200);
        assert!(
            check_link_confirmation(&long, &partner(), &us(), 1_000).is_err(),
            "lives over two minutes"
        );
    }

    #[test]
    fn linking_needs_a_recent_login() {
        assert!(recently_logged_in(1_000, 1_300));
        assert!(!recently_logged_in(1_000, 1_301));
    }
}
