//! Grants: what one user authorization (a consented code flow, or a partner's jwt-bearer grant
//! through a link) may still produce; client-credentials tokens have no grant. One grant lives in one Durable Object, so its code is redeemed at most once and
//! its refresh tokens rotate without races. This module holds the state transitions; the object
//! only loads and stores.
//!
//! Codes and refresh tokens are `{grant_id}.{secret}`: the grant id names the object, the
//! secret is stored only as its SHA-256.

use base64ct::{Base64UrlUnpadded, Encoding};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::claims::ClaimsRequest;
use super::client::{ClientId, RedirectUri};
use super::error::{ApiError, ErrorCode};
use super::partner::PartnerId;
use super::pkce;
use super::region::{Home, Region};
use super::user::Username;

/// RFC 9700 §2.1.1 / OAuth 2.1: short-lived codes.
pub const CODE_TTL_S: u64 = 60;
/// Refresh tokens: unused for this long, they expire...
pub const REFRESH_IDLE_S: u64 = 14 * 24 * 3600;
/// ...and no grant outlives this, however often it is refreshed.
pub const GRANT_ABSOLUTE_S: u64 = 30 * 24 * 3600;
/// Superseded refresh-token hashes kept in the grant record; older ones are spilled to the
/// object's storage (see [`RefreshState::spilled`]), so reuse is detected however many rotations
/// ago a token was superseded.
pub const KEEP_OLD_REFRESH: usize = 64;

pub const ID_LEN: usize = 16;
pub const SECRET_LEN: usize = 32;

/// Characters of a bare grant id (16 random bytes, base64url).
pub const BARE_ID_CHARS: usize = 22;

/// A grant id: 16 random bytes, base64url, bare (a legacy user's grant, and every grant from
/// before regions) or prefixed with the user's region (`{region}_{bare}`,
/// [`grant_id_in`]).
pub fn is_grant_id(s: &str) -> bool {
    is_bare_grant_id(s) || is_regional_grant_id(s)
}

/// 16 random bytes, base64url.
pub fn is_bare_grant_id(s: &str) -> bool {
    s.len() == BARE_ID_CHARS
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A new grant id in `home`: `{region}_{random}` for a region user, the bare random id (22
/// characters) for a legacy user. The region in the id names the namespace the grant's object
/// is reached through, so the token endpoint reaches it from the code or refresh token alone.
pub fn grant_id_in(home: Home, random_id: &str) -> String {
    match home {
        Some(r) => format!("{}_{random_id}", r.as_str()),
        None => random_id.to_owned(),
    }
}

/// The home a grant id names: the region of `{region}_{random}`, `None` for an id of 22
/// characters (legacy, and every grant from before regions). Only for ids `is_grant_id` took.
pub fn home_of_grant(grant_id: &str) -> Home {
    if grant_id.len() == BARE_ID_CHARS {
        return None;
    }
    grant_id
        .split_once('_')
        .and_then(|(region, _)| Region::from_tag(region))
}

/// Whether `s` is a region-prefixed grant id: a known region, `_`, and a bare id.
pub fn is_regional_grant_id(s: &str) -> bool {
    s.split_once('_')
        .is_some_and(|(region, rest)| Region::from_tag(region).is_some() && is_bare_grant_id(rest))
}

/// Splits `{grant_id}.{secret}` and hashes the secret. `None` for anything else.
pub fn split_handle(token: &str) -> Option<(String, String)> {
    let (gid, secret) = token.split_once('.')?;
    let secret_ok = secret.len() == 43
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (is_grant_id(gid) && secret_ok).then(|| (gid.to_owned(), hash_secret(secret)))
}

pub fn hash_secret(secret: &str) -> String {
    Base64UrlUnpadded::encode_string(&Sha256::digest(secret.as_bytes()))
}

pub fn handle(gid: &str, secret_bytes: &[u8; SECRET_LEN]) -> (String, String) {
    let secret = Base64UrlUnpadded::encode_string(secret_bytes);
    let hash = hash_secret(&secret);
    (format!("{gid}.{secret}"), hash)
}

fn same(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeState {
    pub hash: String,
    pub redirect_uri: RedirectUri,
    /// `None` for a code of a client registered without PKCE (the request carried a nonce).
    #[serde(default)]
    pub code_challenge: Option<String>,
    pub expires_at: u64,
    pub used: bool,
    /// The attempt that redeemed the code: the token endpoint names each redemption with a
    /// random id, so the same attempt sent again (its reply was lost) is not a replay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redeemed_by: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshState {
    pub hash: String,
    pub last_used: u64,
    pub generation: u32,
    pub old_hashes: Vec<String>,
    /// The superseded hash that the last rotation pushed out of `old_hashes`, for the object to
    /// keep apart (one storage key per hash). Never stored in the record.
    #[serde(skip)]
    pub spilled: Option<String>,
}

/// Who and what a grant is for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub grant_id: String,
    pub client_id: ClientId,
    pub partner_id: PartnerId,
    /// The grant's user (every grant issued today has one; `None` is kept so a record without
    /// it still reads).
    pub username: Option<Username>,
    /// The subject tokens name: the user's pairwise id for this partner, or the client id.
    pub sub: String,
    pub scopes: Vec<String>,
    pub nonce: Option<String>,
    pub auth_time: Option<u64>,
    /// ID-token claims released by the consented scopes, fixed when consent was given.
    pub id_claims: serde_json::Map<String, serde_json::Value>,
    /// Claims the app asked for by name (the `claims` parameter), released besides its scopes'.
    #[serde(default, skip_serializing_if = "ClaimsRequest::is_empty")]
    pub claims: ClaimsRequest,
    pub created_at: u64,
    pub code: Option<CodeState>,
    pub refresh: Option<RefreshState>,
    pub revoked: bool,
    /// The user's password epoch when the grant was issued: a new password ends it.
    #[serde(default)]
    pub password_epoch: u32,
}

/// What a successful redemption or refresh hands to the token endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issue {
    pub grant: Grant,
    /// Scopes of this issue (a refresh may narrow them).
    pub scopes: Vec<String>,
    /// Whether a refresh token was stored in this step (its plaintext is the caller's).
    pub refresh_stored: bool,
}

const CODE_REPLAYED: &str = "authorization code was already used; its grant is revoked";
const REFRESH_REUSED: &str = "refresh token was already used; its grant is revoked";

/// Why a redemption or refresh was refused. The caller branches on this, never on the text of
/// the error it answers with ([`Refusal::error`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// The grant holds no authorization code (a client-credentials or jwt-bearer grant).
    NotACode,
    UnknownCode,
    /// The code was redeemed before: a replay, and the grant is now revoked (RFC 6749 §4.1.2).
    CodeReplayed,
    GrantRevoked,
    CodeExpired,
    CodeOfAnotherClient,
    RedirectUriMismatch,
    CodeVerifierMissing,
    CodeVerifierMismatch,
    /// A `code_verifier` for a code issued without PKCE: a downgrade (RFC 9700 §2.1.1).
    CodeVerifierUnexpected,
    UnknownRefreshToken,
    /// A superseded refresh token presented again: it leaked, and the grant is now revoked
    /// (RFC 9700 §4.14.2).
    RefreshReused,
    RefreshOfAnotherClient,
    RefreshExpired,
    ScopeNotGranted,
}

impl Refusal {
    /// The error the client is answered with.
    pub fn error(self) -> ApiError {
        let why = match self {
            Refusal::NotACode => "not an authorization code",
            Refusal::UnknownCode => "unknown authorization code",
            Refusal::CodeReplayed => CODE_REPLAYED,
            Refusal::GrantRevoked => "grant is revoked",
            Refusal::CodeExpired => "authorization code expired",
            Refusal::CodeOfAnotherClient => "authorization code was issued to another client",
            Refusal::RedirectUriMismatch => "redirect_uri does not match the authorization request",
            Refusal::CodeVerifierMissing => {
                return ApiError::new(ErrorCode::InvalidRequest, "code_verifier is required")
            }
            Refusal::CodeVerifierMismatch => "code_verifier does not match the code_challenge",
            Refusal::CodeVerifierUnexpected => {
                "code_verifier was sent, but the authorization request had no code_challenge"
            }
            Refusal::UnknownRefreshToken => "unknown refresh token",
            Refusal::RefreshReused => REFRESH_REUSED,
            Refusal::RefreshOfAnotherClient => "refresh token was issued to another client",
            Refusal::RefreshExpired => "refresh token expired",
            Refusal::ScopeNotGranted => {
                return ApiError::new(ErrorCode::InvalidScope, "a requested scope was not granted")
            }
        };
        ApiError::new(ErrorCode::InvalidGrant, why)
    }

    /// Whether the refusal revoked the grant: the grant changed and must be stored (and its
    /// revocation published) even though nothing is issued.
    pub fn revokes_grant(self) -> bool {
        matches!(self, Refusal::CodeReplayed | Refusal::RefreshReused)
    }

    /// The outcome a refusal is logged and audited as when it revoked a grant: a replayed code or
    /// a reused refresh token (both are signs that a secret leaked).
    pub fn replay_outcome(self) -> Option<&'static str> {
        match self {
            Refusal::CodeReplayed => Some("code_replay"),
            Refusal::RefreshReused => Some("refresh_reuse"),
            _ => None,
        }
    }
}

/// The outcome of a transition: an issue, or the refusal (which may have changed the grant, see
/// [`Refusal::revokes_grant`]).
pub type Step = Result<Issue, Refusal>;

impl Grant {
    /// Redeems the authorization code (RFC 6749 §4.1.3). A second redemption revokes the grant and
    /// with it every token issued from the code (§4.1.2). The same `attempt` sent again is not a
    /// second redemption: it answers the same issue again, changing nothing.
    #[allow(clippy::too_many_arguments)]
    pub fn redeem(
        &mut self,
        code_hash: &str,
        attempt: &str,
        client_id: &ClientId,
        redirect_uri: Option<&str>,
        verifier: Option<&str>,
        new_refresh_hash: Option<String>,
        now: u64,
    ) -> Step {
        let Some(code) = self.code.as_mut() else {
            return Err(Refusal::NotACode);
        };
        if !same(&code.hash, code_hash) {
            return Err(Refusal::UnknownCode);
        }
        let retried = code.used
            && !attempt.is_empty()
            && code
                .redeemed_by
                .as_deref()
                .is_some_and(|a| same(a, attempt))
            && self
                .refresh
                .as_ref()
                .map(|r| (r.hash.as_str(), r.generation))
                == new_refresh_hash.as_deref().map(|h| (h, 1));
        if code.used && !retried {
            self.revoked = true;
            return Err(Refusal::CodeReplayed);
        }
        if self.revoked {
            return Err(Refusal::GrantRevoked);
        }
        if now >= code.expires_at {
            return Err(Refusal::CodeExpired);
        }
        if self.client_id != *client_id {
            return Err(Refusal::CodeOfAnotherClient);
        }
        if redirect_uri != Some(code.redirect_uri.as_str()) {
            return Err(Refusal::RedirectUriMismatch);
        }
        match (verifier, code.code_challenge.as_deref()) {
            (Some(v), Some(challenge)) if !pkce::verify(v, challenge) => {
                return Err(Refusal::CodeVerifierMismatch)
            }
            (Some(_), Some(_)) | (None, None) => {}
            (None, Some(_)) => return Err(Refusal::CodeVerifierMissing),
            (Some(_), None) => return Err(Refusal::CodeVerifierUnexpected),
        }
        let refresh_stored = new_refresh_hash.is_some();
        if !retried {
            code.used = true;
            code.redeemed_by = Some(attempt.to_owned());
            self.refresh = new_refresh_hash.map(|hash| RefreshState {
                hash,
                last_used: now,
                generation: 1,
                old_hashes: Vec::new(),
                spilled: None,
            });
        }
        Ok(Issue {
            scopes: self.scopes.clone(),
            grant: self.clone(),
            refresh_stored,
        })
    }

    /// Rotates the refresh token (RFC 9700 §4.14.2). A superseded token presented again means it
    /// leaked: the whole grant is revoked. `spilled_before`: the object found `presented_hash`
    /// among the superseded hashes it keeps apart (asked only when [`Grant::knows_refresh`] is
    /// false), so a thief cannot hide a reuse by rotating many times first.
    pub fn refresh(
        &mut self,
        presented_hash: &str,
        client_id: &ClientId,
        requested_scopes: Option<Vec<String>>,
        new_hash: String,
        now: u64,
        spilled_before: bool,
    ) -> Step {
        let Some(state) = self.refresh.as_mut() else {
            return Err(Refusal::UnknownRefreshToken);
        };
        // The same rotation sent again (its reply was lost): the presented token is the one it
        // superseded, and the current one is the one it stored.
        let retried = same(&state.hash, &new_hash)
            && state
                .old_hashes
                .last()
                .is_some_and(|h| same(h, presented_hash));
        if !retried && (spilled_before || state.old_hashes.iter().any(|h| same(h, presented_hash)))
        {
            self.revoked = true;
            return Err(Refusal::RefreshReused);
        }
        if !retried && !same(&state.hash, presented_hash) {
            return Err(Refusal::UnknownRefreshToken);
        }
        if self.revoked {
            return Err(Refusal::GrantRevoked);
        }
        if self.client_id != *client_id {
            return Err(Refusal::RefreshOfAnotherClient);
        }
        if now.saturating_sub(state.last_used) >= REFRESH_IDLE_S
            || now.saturating_sub(self.created_at) >= GRANT_ABSOLUTE_S
        {
            return Err(Refusal::RefreshExpired);
        }
        let scopes = match requested_scopes {
            None => self.scopes.clone(),
            Some(req) => {
                if req.iter().any(|s| !self.scopes.contains(s)) {
                    return Err(Refusal::ScopeNotGranted);
                }
                req
            }
        };
        if !retried {
            let old = std::mem::replace(&mut state.hash, new_hash);
            state.old_hashes.push(old);
            if state.old_hashes.len() > KEEP_OLD_REFRESH {
                state.spilled = Some(state.old_hashes.remove(0));
            }
            state.last_used = now;
            state.generation = state.generation.saturating_add(1);
        }
        Ok(Issue {
            grant: self.clone(),
            scopes,
            refresh_stored: true,
        })
    }

    /// Whether tokens of this grant are still good at `now` (introspection, userinfo).
    pub fn active(&self, now: u64) -> bool {
        !self.revoked && now.saturating_sub(self.created_at) < GRANT_ABSOLUTE_S
    }

    /// Whether `hash` is the current refresh token or one of the superseded ones the record
    /// keeps: if not, the object looks among the spilled ones before a refresh.
    pub fn knows_refresh(&self, hash: &str) -> bool {
        self.refresh
            .as_ref()
            .is_some_and(|r| same(&r.hash, hash) || r.old_hashes.iter().any(|h| same(h, hash)))
    }

    /// Whether `hash` is the current refresh token (not a superseded one).
    pub fn is_current_refresh(&self, hash: &str) -> bool {
        self.refresh.as_ref().is_some_and(|r| same(&r.hash, hash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_ids_carry_their_region_and_old_ids_stay_legacy() {
        let bare = "AAAAAAAAAAAAAAAAAAAAAA";
        for r in crate::protocol::region::REGIONS {
            let id = grant_id_in(Some(r), bare);
            assert!(is_grant_id(&id), "{id}");
            assert_eq!(home_of_grant(&id), Some(r));
        }
        assert_eq!(grant_id_in(None, bare), bare);
        assert_eq!(home_of_grant(bare), None);
        // A bare id of 22 characters may itself look like a prefix: it is still legacy.
        assert_eq!(home_of_grant("eu_AAAAAAAAAAAAAAAAAAA"), None);
        assert!(!is_grant_id("mars_AAAAAAAAAAAAAAAAAAAAAA"));
        assert!(!is_grant_id("eu_AAAA"));
        assert!(!is_grant_id("eu_AAAAAAAAAAAAAAAAAAAAAA.x"));
    }

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    const REDIRECT: &str = "https://app.acme.example/cb";

    /// A refusal as the client sees it, and whether it changed (revoked) the grant.
    trait Refused {
        fn refused(self) -> (ApiError, bool);
    }

    impl Refused for Step {
        fn refused(self) -> (ApiError, bool) {
            let refusal = self.unwrap_err();
            (refusal.error(), refusal.revokes_grant())
        }
    }

    fn cid(s: &str) -> ClientId {
        ClientId::parse(s).unwrap()
    }

    fn grant(now: u64) -> (Grant, String) {
        let (code, hash) = handle("AAAAAAAAAAAAAAAAAAAAAA", &[1; SECRET_LEN]);
        let g = Grant {
            grant_id: "AAAAAAAAAAAAAAAAAAAAAA".into(),
            client_id: cid("client-0001"),
            partner_id: PartnerId::parse("acme").unwrap(),
            username: Some(Username::parse("alice").unwrap()),
            sub: "sub".into(),
            scopes: vec!["openid".into(), "profile".into()],
            nonce: None,
            auth_time: Some(now),
            id_claims: Default::default(),
            claims: ClaimsRequest::default(),
            created_at: now,
            code: Some(CodeState {
                hash,
                redirect_uri: RedirectUri::parse(REDIRECT).unwrap(),
                code_challenge: Some(CHALLENGE.into()),
                expires_at: now + CODE_TTL_S,
                used: false,
                redeemed_by: None,
            }),
            refresh: None,
            revoked: false,
            password_epoch: 0,
        };
        (g, code)
    }

    fn code_hash(code: &str) -> String {
        split_handle(code).unwrap().1
    }

    #[test]
    fn token_code_redeems_once_and_replay_revokes_the_grant() {
        let (mut g, code) = grant(100);
        let h = code_hash(&code);
        let ok = g.redeem(
            &h,
            "attempt-1",
            &cid("client-0001"),
            Some(REDIRECT),
            Some(VERIFIER),
            Some("r1".into()),
            110,
        );
        assert!(ok.unwrap().refresh_stored);
        let (err, changed) = g
            .redeem(
                &h,
                "attempt-2",
                &cid("client-0001"),
                Some(REDIRECT),
                Some(VERIFIER),
                None,
                111,
            )
            .refused();
        assert_eq!(err.code, ErrorCode::InvalidGrant);
        assert!(changed && g.revoked);
        // The refresh token issued from the code is dead too.
        let (err, _) = g
            .refresh("r1", &cid("client-0001"), None, "r2".into(), 112, false)
            .refused();
        assert_eq!(err.code, ErrorCode::InvalidGrant);
    }

    #[test]
    fn token_code_checks_expiry_client_redirect_and_pkce() {
        let wrong = "x".repeat(43);
        type Case<'a> = (u64, &'a str, Option<&'a str>, Option<&'a str>, ErrorCode);
        let cases: Vec<Case> = vec![
            (
                160,
                "client-0001",
                Some(REDIRECT),
                Some(VERIFIER),
                ErrorCode::InvalidGrant,
            ),
            (
                110,
                "client-0002",
                Some(REDIRECT),
                Some(VERIFIER),
                ErrorCode::InvalidGrant,
            ),
            (
                110,
                "client-0001",
                Some("https://app.acme.example/cb/"),
                Some(VERIFIER),
                ErrorCode::InvalidGrant,
            ),
            (
                110,
                "client-0001",
                None,
                Some(VERIFIER),
                ErrorCode::InvalidGrant,
            ),
            (
                110,
                "client-0001",
                Some(REDIRECT),
                None,
                ErrorCode::InvalidRequest,
            ),
            (
                110,
                "client-0001",
                Some(REDIRECT),
                Some(&wrong),
                ErrorCode::InvalidGrant,
            ),
            (
                110,
                "client-0001",
                Some(REDIRECT),
                Some(CHALLENGE),
                ErrorCode::InvalidGrant,
            ),
        ];
        for (now, client, redirect, verifier, want) in cases {
            let (mut g, code) = grant(100);
            let (err, changed) = g
                .redeem(
                    &code_hash(&code),
                    "attempt-3",
                    &cid(client),
                    redirect,
                    verifier,
                    None,
                    now,
                )
                .refused();
            assert_eq!(err.code, want, "{now} {client} {redirect:?} {verifier:?}");
            assert!(!changed, "a failed check does not burn the code");
            assert!(!g.code.as_ref().unwrap().used);
        }
        let (mut g, _) = grant(100);
        let (err, _) = g
            .redeem(
                &hash_secret("wrong"),
                "attempt-4",
                &cid("client-0001"),
                Some(REDIRECT),
                Some(VERIFIER),
                None,
                110,
            )
            .refused();
        assert_eq!(err.code, ErrorCode::InvalidGrant);
    }

    #[test]
    fn token_refresh_rotates_and_reuse_revokes_the_family() {
        let (mut g, code) = grant(100);
        g.redeem(
            &code_hash(&code),
            "attempt-5",
            &cid("client-0001"),
            Some(REDIRECT),
            Some(VERIFIER),
            Some("r1".into()),
            110,
        )
        .unwrap();
        assert!(g
            .refresh("r1", &cid("client-0001"), None, "r2".into(), 120, false)
            .is_ok());
        assert!(g
            .refresh("r2", &cid("client-0001"), None, "r3".into(), 130, false)
            .is_ok());
        let (err, changed) = g
            .refresh("r1", &cid("client-0001"), None, "r4".into(), 140, false)
            .refused();
        assert_eq!(err.code, ErrorCode::InvalidGrant);
        assert!(changed && g.revoked, "reuse revokes");
        let (err, _) = g
            .refresh("r3", &cid("client-0001"), None, "r5".into(), 150, false)
            .refused();
        assert_eq!(
            err.code,
            ErrorCode::InvalidGrant,
            "the current token dies with its family"
        );
    }

    #[test]
    fn token_refresh_checks_client_scope_and_lifetimes() {
        let (mut g, code) = grant(100);
        g.redeem(
            &code_hash(&code),
            "attempt-6",
            &cid("client-0001"),
            Some(REDIRECT),
            Some(VERIFIER),
            Some("r1".into()),
            110,
        )
        .unwrap();
        assert_eq!(
            g.refresh("r1", &cid("client-0002"), None, "x".into(), 120, false)
                .refused()
                .0
                .code,
            ErrorCode::InvalidGrant
        );
        assert_eq!(
            g.refresh(
                "r1",
                &cid("client-0001"),
                Some(vec!["email".into()]),
                "x".into(),
                120,
                false,
            )
            .refused()
            .0
            .code,
            ErrorCode::InvalidScope
        );
        let narrowed = g
            .refresh(
                "r1",
                &cid("client-0001"),
                Some(vec!["openid".into()]),
                "r2".into(),
                120,
                false,
            )
            .unwrap();
        assert_eq!(narrowed.scopes, vec!["openid".to_owned()]);
        assert_eq!(
            g.refresh(
                "r2",
                &cid("client-0001"),
                None,
                "r3".into(),
                120 + REFRESH_IDLE_S,
                false,
            )
            .refused()
            .0
            .code,
            ErrorCode::InvalidGrant,
            "idle lifetime"
        );
        let (mut g, code) = grant(100);
        g.redeem(
            &code_hash(&code),
            "attempt-7",
            &cid("client-0001"),
            Some(REDIRECT),
            Some(VERIFIER),
            Some("a".into()),
            110,
        )
        .unwrap();
        let mut t = 110;
        let mut current = "a".to_owned();
        while t < 100 + GRANT_ABSOLUTE_S - 3600 {
            t += REFRESH_IDLE_S - 1;
            let next = format!("t{t}");
            if g.refresh(&current, &cid("client-0001"), None, next.clone(), t, false)
                .is_err()
            {
                break;
            }
            current = next;
        }
        assert!(
            g.refresh(
                &current,
                &cid("client-0001"),
                None,
                "z".into(),
                100 + GRANT_ABSOLUTE_S,
                false,
            )
            .is_err(),
            "absolute lifetime"
        );
    }

    #[test]
    fn handles_split_and_reject_garbage() {
        let (token, hash) = handle("AAAAAAAAAAAAAAAAAAAAAA", &[9; SECRET_LEN]);
        assert_eq!(
            split_handle(&token),
            Some(("AAAAAAAAAAAAAAAAAAAAAA".into(), hash))
        );
        for bad in [
            "",
            "x.y",
            "AAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAA.short",
            "../../x.y",
        ] {
            assert_eq!(split_handle(bad), None, "{bad}");
        }
    }

    fn redeem_as(g: &mut Grant, h: &str, attempt: &str, refresh: Option<&str>) -> Step {
        g.redeem(
            h,
            attempt,
            &cid("client-0001"),
            Some(REDIRECT),
            Some(VERIFIER),
            refresh.map(str::to_owned),
            110,
        )
    }

    #[test]
    fn token_code_without_pkce_redeems_without_a_verifier_and_refuses_one() {
        let without = |g: &mut Grant| {
            if let Some(c) = g.code.as_mut() {
                c.code_challenge = None;
            }
        };
        let (mut g, code) = grant(100);
        without(&mut g);
        let h = code_hash(&code);
        let (err, changed) = redeem_as(&mut g, &h, "attempt-1", None).refused();
        assert_eq!(
            err.code,
            ErrorCode::InvalidGrant,
            "a verifier for no challenge"
        );
        assert_eq!(
            err.description,
            "code_verifier was sent, but the authorization request had no code_challenge"
        );
        assert!(!changed);
        let (mut g, code) = grant(100);
        without(&mut g);
        let h = code_hash(&code);
        let ok = g.redeem(
            &h,
            "a",
            &cid("client-0001"),
            Some(REDIRECT),
            None,
            None,
            110,
        );
        assert!(ok.is_ok());
        // With a challenge, no verifier is still refused.
        let (mut g, code) = grant(100);
        let h = code_hash(&code);
        let (err, _) = g
            .redeem(
                &h,
                "a",
                &cid("client-0001"),
                Some(REDIRECT),
                None,
                None,
                110,
            )
            .refused();
        assert_eq!(err.code, ErrorCode::InvalidRequest);
    }

    #[test]
    fn token_code_same_attempt_again_is_the_same_issue_not_a_replay() {
        let (mut g, code) = grant(100);
        let h = code_hash(&code);
        let first = redeem_as(&mut g, &h, "attempt-1", Some("r1")).unwrap();
        let after_first = g.clone();
        let again = redeem_as(&mut g, &h, "attempt-1", Some("r1")).unwrap();
        assert_eq!(again, first);
        assert_eq!(g, after_first, "a retried attempt changes nothing");
        assert!(!g.revoked);
    }

    #[test]
    fn token_code_other_attempt_is_a_replay_and_revokes() {
        let (mut g, code) = grant(100);
        let h = code_hash(&code);
        redeem_as(&mut g, &h, "attempt-1", Some("r1")).unwrap();
        let (err, changed) = redeem_as(&mut g, &h, "attempt-2", Some("r2")).refused();
        assert_eq!(err.description, CODE_REPLAYED);
        assert!(changed && g.revoked);
    }

    #[test]
    fn token_code_same_attempt_with_another_refresh_token_is_a_replay() {
        let (mut g, code) = grant(100);
        let h = code_hash(&code);
        redeem_as(&mut g, &h, "attempt-1", Some("r1")).unwrap();
        let (err, _) = redeem_as(&mut g, &h, "attempt-1", Some("r2")).refused();
        assert_eq!(err.description, CODE_REPLAYED);
        assert!(g.revoked);
    }

    #[test]
    fn token_code_empty_attempt_never_counts_as_a_retry() {
        let (mut g, code) = grant(100);
        let h = code_hash(&code);
        redeem_as(&mut g, &h, "", None).unwrap();
        let (err, _) = redeem_as(&mut g, &h, "", None).refused();
        assert_eq!(err.description, CODE_REPLAYED);
    }

    #[test]
    fn token_code_retry_after_the_code_was_refreshed_is_a_replay() {
        let (mut g, code) = grant(100);
        let h = code_hash(&code);
        redeem_as(&mut g, &h, "attempt-1", Some("r1")).unwrap();
        g.refresh("r1", &cid("client-0001"), None, "r2".into(), 120, false)
            .unwrap();
        let (err, _) = redeem_as(&mut g, &h, "attempt-1", Some("r1")).refused();
        assert_eq!(err.description, CODE_REPLAYED);
    }

    #[test]
    fn refresh_same_rotation_again_is_the_same_issue_not_a_reuse() {
        let (mut g, code) = grant(100);
        let h = code_hash(&code);
        redeem_as(&mut g, &h, "attempt-1", Some("r1")).unwrap();
        let first = g
            .refresh("r1", &cid("client-0001"), None, "r2".into(), 120, false)
            .unwrap();
        let after_first = g.clone();
        let again = g
            .refresh("r1", &cid("client-0001"), None, "r2".into(), 120, false)
            .unwrap();
        assert_eq!(again, first);
        assert_eq!(g, after_first, "a retried rotation changes nothing");
        // The rotated token is the current one; the superseded one is still a reuse.
        g.refresh("r2", &cid("client-0001"), None, "r3".into(), 130, false)
            .unwrap();
        let (err, changed) = g
            .refresh("r1", &cid("client-0001"), None, "r2".into(), 140, false)
            .refused();
        assert_eq!(err.description, REFRESH_REUSED);
        assert!(changed && g.revoked);
    }

    #[test]
    fn refresh_superseded_token_with_a_new_rotation_is_a_reuse() {
        let (mut g, code) = grant(100);
        let h = code_hash(&code);
        redeem_as(&mut g, &h, "attempt-1", Some("r1")).unwrap();
        g.refresh("r1", &cid("client-0001"), None, "r2".into(), 120, false)
            .unwrap();
        let (err, _) = g
            .refresh("r1", &cid("client-0001"), None, "r9".into(), 121, false)
            .refused();
        assert_eq!(err.description, REFRESH_REUSED);
        assert!(g.revoked);
    }

    #[test]
    fn refresh_retry_of_a_revoked_grant_is_refused() {
        let (mut g, code) = grant(100);
        let h = code_hash(&code);
        redeem_as(&mut g, &h, "attempt-1", Some("r1")).unwrap();
        g.refresh("r1", &cid("client-0001"), None, "r2".into(), 120, false)
            .unwrap();
        g.revoked = true;
        let (err, _) = g
            .refresh("r1", &cid("client-0001"), None, "r2".into(), 120, false)
            .refused();
        assert_eq!(err.code, ErrorCode::InvalidGrant);
    }

    #[test]
    fn refresh_reuse_is_caught_however_many_rotations_ago() {
        let (mut g, code) = grant(100);
        redeem_as(&mut g, &code_hash(&code), "attempt-9", Some("h0")).unwrap();
        let mut spilled = Vec::new();
        for i in 0..100 {
            g.refresh(
                &format!("h{i}"),
                &cid("client-0001"),
                None,
                format!("h{}", i + 1),
                120,
                false,
            )
            .unwrap();
            if let Some(h) = g.refresh.as_mut().and_then(|r| r.spilled.take()) {
                spilled.push(h);
            }
        }
        // The record keeps the last 64; the 36 before them were handed out, oldest first.
        let expect: Vec<String> = (0..36).map(|i| format!("h{i}")).collect();
        assert_eq!(spilled, expect);
        assert!(!g.knows_refresh("h0"), "h0 is no longer in the record");
        assert!(g.knows_refresh("h36") && g.knows_refresh("h100"));
        // Unknown to the record, found among the spilled ones by the object: a reuse.
        let (err, changed) = g
            .refresh("h0", &cid("client-0001"), None, "x".into(), 130, true)
            .refused();
        assert_eq!(err.description, REFRESH_REUSED);
        assert!(changed && g.revoked);
    }

    #[test]
    fn refresh_spilled_hashes_are_never_stored_in_the_record() {
        let (mut g, code) = grant(100);
        redeem_as(&mut g, &code_hash(&code), "attempt-10", Some("h0")).unwrap();
        for i in 0..(KEEP_OLD_REFRESH + 1) {
            g.refresh(
                &format!("h{i}"),
                &cid("client-0001"),
                None,
                format!("h{}", i + 1),
                120,
                false,
            )
            .unwrap();
        }
        let json = serde_json::to_string(&g).unwrap();
        assert!(!json.contains("spilled"));
        let back: Grant = serde_json::from_str(&json).unwrap();
        assert_eq!(back.refresh.unwrap().spilled, None);
    }

    #[test]
    fn refusal_replays_revoke_and_are_logged_as_replays_by_their_type() {
        let all = [
            Refusal::NotACode,
            Refusal::UnknownCode,
            Refusal::CodeReplayed,
            Refusal::GrantRevoked,
            Refusal::CodeExpired,
            Refusal::CodeOfAnotherClient,
            Refusal::RedirectUriMismatch,
            Refusal::CodeVerifierMissing,
            Refusal::CodeVerifierMismatch,
            Refusal::UnknownRefreshToken,
            Refusal::RefreshReused,
            Refusal::RefreshOfAnotherClient,
            Refusal::RefreshExpired,
            Refusal::ScopeNotGranted,
        ];
        for r in all {
            let replay = matches!(r, Refusal::CodeReplayed | Refusal::RefreshReused);
            assert_eq!(r.revokes_grant(), replay, "{r:?}");
            assert_eq!(r.replay_outcome().is_some(), replay, "{r:?}");
            let back: Refusal = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
            assert_eq!(back, r, "a refusal crosses the object boundary as itself");
        }
        assert_eq!(Refusal::CodeReplayed.replay_outcome(), Some("code_replay"));
        assert_eq!(
            Refusal::RefreshReused.replay_outcome(),
            Some("refresh_reuse")
        );
        // The wire error is what it always was.
        assert_eq!(Refusal::CodeReplayed.error().description, CODE_REPLAYED);
        assert_eq!(Refusal::RefreshReused.error().description, REFRESH_REUSED);
        assert_eq!(
            Refusal::CodeVerifierMissing.error().code,
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            Refusal::ScopeNotGranted.error().code,
            ErrorCode::InvalidScope
        );
        assert_eq!(Refusal::GrantRevoked.error().code, ErrorCode::InvalidGrant);
    }
}
