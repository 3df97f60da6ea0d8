//! The link store's command protocol. A partner's links are spread over hash shards in each
//! region (named by [`object_name`]): every command about one partner account
//! (`partner_sub`) meets the same shard of the user's region, so the rule that one partner
//! account links to one platform user holds exactly within a shard, SQLite-backed; a link is
//! checked against the other regions when it is made (`edge::endpoints::link`), and the rule
//! that a platform user has one linked account per partner is the user's object's
//! (`store::users::RecordLink`). A link the user agreed to waits in its shard, under the hash of
//! its link code, until the partner confirms it.
//!
//! Before issue 13 a partner had one store (`links:{partner}[:{salt}]`, [`legacy_name`]);
//! [`Export`] and [`Import`] move its links into the shards.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::protocol::link::PendingLink;
use crate::protocol::partner::PartnerId;
use crate::protocol::region::Home;
use crate::protocol::user::Username;

/// Shards of one partner in one region. At 10x the peak of SCALE.md the largest partner (25%
/// of the traffic) sends about 13,000 link-store calls a second, 35% of them in the busiest
/// region: about 142 a second per shard, and its 2 GB of links and listed grants are about
/// 22 MB per shard. Fixed: a link is found by its shard.
pub const LINK_SHARDS: u32 = 32;

/// The shard of partner account `partner_sub`: the first 8 bytes of SHA-256(`partner_sub`),
/// big endian, mod [`LINK_SHARDS`].
pub fn shard_of(partner_sub: &str) -> u32 {
    let digest = Sha256::digest(partner_sub.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
    let n = u64::from_be_bytes(first) % u64::from(LINK_SHARDS);
    u32::try_from(n).unwrap_or(0)
}

/// `links:v2:{partner_id}:{subject_salt or -}:{region or any}:{n}`. A partner created again
/// under a removed one's id has a new salt, so shards of its own that hold none of the old
/// links; `any` holds the links of users created before regions (global placement).
pub fn shard_name(partner: &PartnerId, salt: Option<&str>, home: Home, n: u32) -> String {
    let region = home.map_or("any", |r| r.as_str());
    format!("links:v2:{partner}:{}:{region}:{n}", salt.unwrap_or("-"))
}

/// The shard that decides partner account `partner_sub` for users of `home`.
pub fn object_name(
    partner: &PartnerId,
    salt: Option<&str>,
    home: Home,
    partner_sub: &str,
) -> String {
    shard_name(partner, salt, home, shard_of(partner_sub))
}

/// Where a link lives: shard `shard` of its user's region `home`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Place {
    pub home: Home,
    pub shard: u32,
}

impl Place {
    /// The place of partner account `partner_sub`'s link with a user of `home`.
    pub fn of(home: Home, partner_sub: &str) -> Place {
        Place {
            home,
            shard: shard_of(partner_sub),
        }
    }

    /// The name of this place's shard of `partner`.
    pub fn name(&self, partner: &PartnerId, salt: Option<&str>) -> String {
        shard_name(partner, salt, self.home, self.shard)
    }

    /// A link code names the place of its pending link: `{region or any}.{n}.{secret}`, so the
    /// partner's confirmation (which names no user) goes straight to it. The prefix is not a
    /// secret; the code's hash covers it, so a code with another prefix is unknown everywhere.
    pub fn code_prefix(&self) -> String {
        format!(
            "{}.{}.",
            self.home.map_or("any", |r| r.as_str()),
            self.shard
        )
    }

    /// The place a link code names. `None`: a code of the layout before issue 13 (no prefix),
    /// or one that names no place (unknown anyway).
    pub fn of_code(code: &str) -> Option<Place> {
        let mut parts = code.splitn(3, '.');
        let (tag, n, _secret) = (parts.next()?, parts.next()?, parts.next()?);
        let home = match tag {
            "any" => None,
            other => Some(crate::protocol::region::Region::from_tag(other)?),
        };
        let shard: u32 = n.parse().ok().filter(|n: &u32| *n < LINK_SHARDS)?;
        // Canonical digits only: `07` and `+7` name no place.
        (shard.to_string() == n).then_some(Place { home, shard })
    }
}

/// Every place a partner account's link may be in: its shard in each region, and among users
/// created before regions.
pub fn places_of(partner_sub: &str) -> [Place; 5] {
    let shard = shard_of(partner_sub);
    let homes = crate::protocol::region::REGIONS.map(Some);
    let [a, b, c, d] = homes;
    [a, b, c, d, None].map(|home| Place { home, shard })
}

/// The one store per partner of the layout before issue 13: `links:{partner_id}:{subject_salt}`,
/// or `links:{partner_id}` for a partner without a salt.
pub fn legacy_name(partner: &PartnerId, salt: Option<&str>) -> String {
    match salt {
        Some(salt) => format!("links:{partner}:{salt}"),
        None => format!("links:{partner}"),
    }
}

crate::commands! {
    pub enum LinkCommand, trait LinkHandler {
        Propose(Propose) -> Proposed, once, propose;
        Confirm(Confirm) -> Confirmed, retried, confirm;
        Lookup(Lookup) -> Option<LinkedAccount>, once, lookup;
        LookupUse(LookupUse) -> LinkUse, once, lookup_use;
        Unlink(Unlink) -> Vec<String>, once, unlink;
        AddGrant(AddGrant) -> GrantListed, once, add_grant;
        ForgetGrants(ForgetGrants) -> (), once, forget_grants;
        Retire(Retire) -> Vec<Username>, once, retire;
        Retired(Retired) -> (), once, finish_retiring;
        Export(Export) -> Exported, once, export;
        Import(Import) -> Imported, once, import;
        Moved(Moved) -> (), once, moved;
        Undo(Undo) -> (), once, undo;
    }
}

/// Keeps a link the user agreed to until `pending.expires_at`, under `code_hash`, if it could
/// be made now. Nothing is linked yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Propose {
    pub code_hash: String,
    pub pending: PendingLink,
    pub now: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Proposed {
    /// Kept until the partner confirms it.
    Kept,
    Refused(LinkRefusal),
}

/// Why a link cannot be made: the one-to-one rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkRefusal {
    /// The partner account is linked to another platform user.
    PartnerAccountTaken,
    /// This platform user is linked to another account at the partner.
    UserAlreadyLinked,
}

/// The partner confirms the link of `code_hash` for `partner_sub` and the request whose `jti`
/// hashes to `request_jti_hash`. `attempt` names this redemption, so our own retry after a lost
/// reply is answered again rather than taken for a replay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirm {
    pub code_hash: String,
    pub partner_sub: String,
    pub request_jti_hash: String,
    pub attempt: String,
    pub now: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Confirmed {
    /// Linked now, or already linked the same way (idempotent). `pending` is what the user
    /// agreed to.
    Linked { created: bool, pending: PendingLink },
    /// The link code is unknown, expired, or not for this request or account.
    CodeInvalid,
    /// The link code was redeemed before: the link made then has been removed here; the rest
    /// of unlinking (`username`'s grants and sessions) is the caller's.
    CodeReplayed { username: Username },
    /// The link cannot be made now (the code is used up).
    Refused(LinkRefusal),
}

/// The platform user linked to a partner account (`None`: nobody).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lookup {
    pub partner_sub: String,
}

/// The platform user linked to a partner account, and a login assertion about it used (or only
/// checked): the assertion's `jti` is kept in the shard of the link it signs in, which every
/// replay of it meets while the link stands, so the automatic sign-in makes no call outside the
/// user's region. Nothing is used when the account is not linked here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupUse {
    pub partner_sub: String,
    /// SHA-256 of the assertion's `jti`.
    pub key_hash: String,
    /// Until when it is kept: the assertion's `exp` plus the clock leeway.
    pub expires_at: u64,
    /// `false`: only whether it was used (the page that asks the person first).
    pub use_it: bool,
    pub now: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkUse {
    NotLinked,
    /// Linked; the assertion is used now (or, with `use_it` false, unused).
    Found(LinkedAccount),
    /// Linked, and the assertion was used before.
    Used,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkedAccount {
    pub username: Username,
    pub user_sub: String,
}

/// With `remove`, removes the link (if still there); answers up to `UNLINK_BATCH` of the grants
/// issued through it that may still be live: they are still to be revoked and then forgotten
/// (`ForgetGrants`), so a retry after a failure finds them again. Later batches of the same
/// unlinking leave `remove` off, so a link made again meanwhile stays.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unlink {
    pub username: Username,
    pub now: u64,
    #[serde(default = "yes")]
    pub remove: bool,
}

/// Remembers a grant issued through the link (until `expires_at`), so unlinking can end it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddGrant {
    pub username: Username,
    pub grant_id: String,
    pub expires_at: u64,
    pub now: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantListed {
    Listed,
    /// The user is not linked (any more): the grant is not to be handed out.
    NotLinked,
}

/// Forgets grants of `username` that unlinking has revoked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgetGrants {
    pub username: Username,
    pub grant_ids: Vec<String>,
}

/// The partner was removed: from now on the store makes no link, finds none and lists no grant
/// (for good); answers up to `RETIRE_BATCH` users whose links are still to be ended (each by
/// unlinking, then `Retired`; none: all are), so a removal is finished batch by batch. A user
/// stays on that list until `Retired`, even once the link itself is gone here: their own object
/// may not have ended its sessions and forgotten the link yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retire {}

/// Unlinking `username` for the partner's removal is finished.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retired {
    pub username: Username,
}

/// Grants answered by one `Unlink`: revoked and forgotten before the next is asked for.
pub const UNLINK_BATCH: u32 = 64;
/// Grants listed per linked user: more are refused, so unlinking stays bounded work (eight
/// batches).
pub const MAX_LINK_GRANTS: u32 = 512;

/// Users answered by one `Retire`: each unlinked before the next batch is asked for.
pub const RETIRE_BATCH: u32 = 16;

/// The oldest links of a store of the earlier layout, up to `limit` (at most
/// [`MOVE_BATCH`]), each with the grants listed for it: to be imported into their shards, then
/// forgotten here ([`Moved`]), so the next `Export` answers the next ones.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Export {
    pub limit: u32,
    pub now: u64,
}

/// What an `Export` answers: the links, and the store's login assertions not yet expired.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exported {
    pub links: Vec<MovedLink>,
    pub used: Vec<(String, u64)>,
}

/// Links one `Export` answers at most.
pub const MOVE_BATCH: u32 = 64;

/// A link on its way to its shard, with what unlinking it will need.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovedLink {
    pub partner_sub: String,
    pub username: Username,
    pub user_sub: String,
    pub created_at: u64,
    /// Grants issued through the link that may still be live, with their expiry.
    pub grants: Vec<(String, u64)>,
}

/// Takes links moved from the earlier layout into this shard. A partner account linked here
/// since the upgrade keeps that link (the moved one is `skipped`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Import {
    pub links: Vec<MovedLink>,
    /// Login assertions used in the old store (hash of the `jti`, until when), so that none is
    /// used again in the shard the link moves to.
    #[serde(default)]
    pub used: Vec<(String, u64)>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Imported {
    pub imported: u32,
    pub skipped: u32,
}

/// Undoes a link a confirmation just made that may not stand (another region has the account,
/// the user's record refused it, or could not be asked): removes only that row (this partner
/// account, this user, this person) and burns the link code, so a later redemption of it is
/// unknown, never a replay that would unlink what the user had before.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Undo {
    pub code_hash: String,
    pub partner_sub: String,
    pub username: Username,
    pub user_sub: String,
}

/// Forgets moved links (and their listed grants) in a store of the earlier layout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moved {
    pub partner_subs: Vec<String>,
}

/// Reads the body of `POST /admin/links/migrate`: exactly `{"partner": "<partner id>"}`.
pub fn parse_migrate_request(body: &[u8]) -> Result<PartnerId, crate::protocol::error::ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        partner: String,
    }
    let b: Body = serde_json::from_slice(body).map_err(|_| {
        crate::protocol::error::ApiError::invalid_field(
            "partner",
            "the body is {\"partner\": \"<partner id>\"}",
        )
    })?;
    PartnerId::parse(&b.partner)
}

fn yes() -> bool {
    true
}

/// `link_grants` is the table of earlier versions (no user, no expiry): its rows move to
/// `link_grants_by_user` when their link is removed.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS links (partner_sub TEXT PRIMARY KEY, username TEXT NOT NULL UNIQUE, user_sub TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS link_grants (partner_sub TEXT NOT NULL, grant_id TEXT NOT NULL, PRIMARY KEY (partner_sub, grant_id));
CREATE TABLE IF NOT EXISTS link_grants_by_user (username TEXT NOT NULL, grant_id TEXT NOT NULL, expires_at INTEGER NOT NULL, PRIMARY KEY (username, grant_id));
CREATE TABLE IF NOT EXISTS pending_links (code_hash TEXT PRIMARY KEY, username TEXT NOT NULL, expires_at INTEGER NOT NULL, record TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS pending_links_by_expiry ON pending_links (expires_at);
CREATE INDEX IF NOT EXISTS pending_links_by_user ON pending_links (username, expires_at);
CREATE TABLE IF NOT EXISTS retired (one INTEGER PRIMARY KEY CHECK (one = 1));
CREATE TABLE IF NOT EXISTS retiring (username TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS used_assertions (key TEXT PRIMARY KEY, expires_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS used_assertions_by_expiry ON used_assertions (expires_at);
";

/// Expired used assertions one `LookupUse` forgets at most: more than it adds (one).
pub const USED_PRUNE_BATCH: u32 = 16;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Command;

    #[test]
    fn commands_keep_their_wire_tags_and_an_old_unlink_removes() {
        let json = serde_json::to_string(&LinkCommand::from(Lookup {
            partner_sub: "p".into(),
        }))
        .unwrap();
        assert_eq!(json, r#"{"lookup":{"partner_sub":"p"}}"#);
        let old: LinkCommand =
            serde_json::from_str(r#"{"unlink":{"username":"ann","now":3}}"#).unwrap();
        match old {
            LinkCommand::Unlink(u) => assert!(u.remove),
            other => panic!("decoded as {other:?}"),
        }
        let retire = serde_json::to_string(&LinkCommand::from(Retire {})).unwrap();
        assert_eq!(retire, r#"{"retire":{}}"#);
        const { assert!(Confirm::IDEMPOTENT && !Propose::IDEMPOTENT) };
    }

    #[test]
    fn a_partner_account_always_meets_the_same_shard_of_its_region() {
        let p = PartnerId::parse("acme").unwrap();
        let eu = Some(crate::protocol::region::Region::Eu);
        let a = object_name(&p, Some("s1"), eu, "pupil-7");
        assert_eq!(a, object_name(&p, Some("s1"), eu, "pupil-7"));
        assert_eq!(a, format!("links:v2:acme:s1:eu:{}", shard_of("pupil-7")));
        assert_eq!(
            object_name(&p, None, None, "x"),
            format!("links:v2:acme:-:any:{}", shard_of("x"))
        );
        assert_eq!(legacy_name(&p, Some("s1")), "links:acme:s1");
        assert_eq!(legacy_name(&p, None), "links:acme");
    }

    #[test]
    fn a_migrate_request_names_exactly_one_partner() {
        assert_eq!(
            parse_migrate_request(br#"{"partner":"acme"}"#)
                .unwrap()
                .as_str(),
            "acme"
        );
        for bad in [
            &br#"{}"#[..],
            br#"{"partner":"acme","x":1}"#,
            br#"{"partner":7}"#,
            b"acme",
            br#"{"partner":"Not An Id!"}"#,
        ] {
            let e = parse_migrate_request(bad).unwrap_err();
            assert_eq!(
                e.code,
                crate::protocol::error::ErrorCode::InvalidRequest,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_link_code_names_its_place_and_nothing_else_does() {
        let eu = Some(crate::protocol::region::Region::Eu);
        let place = Place { home: eu, shard: 7 };
        let code = format!("{}abcDEF_-", place.code_prefix());
        assert_eq!(code, "eu.7.abcDEF_-");
        assert_eq!(Place::of_code(&code), Some(place));
        assert_eq!(
            Place::of_code("any.31.x"),
            Some(Place {
                home: None,
                shard: 31
            })
        );
        for bad in [
            "abcDEF_-", "eu.7", "eu.32.x", "eu.07.x", "eu.+7.x", "EU.7.x", "xx.7.x", ".7.x",
            "eu..x",
        ] {
            assert_eq!(Place::of_code(bad), None, "{bad}");
        }
        let all = places_of("pupil-7");
        assert_eq!(all.len(), 5);
        assert!(all.iter().all(|p| p.shard == shard_of("pupil-7")));
        assert_eq!(all[4].home, None);
    }

    #[test]
    fn the_shard_is_sha256_of_the_partner_account_mod_the_shard_count_and_spreads_evenly() {
        let digest = Sha256::digest(b"pupil-7");
        let first = u64::from_be_bytes(digest[..8].try_into().unwrap());
        assert_eq!(
            u64::from(shard_of("pupil-7")),
            first % u64::from(LINK_SHARDS)
        );
        let mut counts = vec![0u32; LINK_SHARDS as usize];
        let n = 64_000u32;
        for i in 0..n {
            counts[shard_of(&format!("account-{i}")) as usize] += 1;
        }
        let mean = n / LINK_SHARDS;
        for c in counts {
            assert!(
                c > mean * 8 / 10 && c < mean * 12 / 10,
                "{c} against a mean of {mean}"
            );
        }
    }
}
