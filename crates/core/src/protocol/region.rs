//! Regions: where a user's data lives. A user gets one at creation; their objects (the user
//! object, their grants) are created in it and reached through it, and the region travels with
//! the session cookie and the grant id so a later request does not have to look it up.
//!
//! Each region has the Durable Object location hint its objects are created with, and EU users'
//! objects are created in the `eu` jurisdiction, which keeps their data inside the EU. The UK is
//! not in the `eu` jurisdiction: it left the EU, so the jurisdiction (which Cloudflare defines as
//! the EU) does not cover it, and UK data needs no EU residency; UK users get the western-Europe
//! hint only. `fedramp` is a US-government compliance boundary, not a residency choice for a
//! school platform, and is not used.

use serde::{Deserialize, Serialize};

use super::error::ApiError;

/// A user's region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Region {
    Eu,
    Uk,
    Us,
    Apac,
}

/// Where a user's objects live: in a region, or `None` for a user created before regions
/// existed ("legacy" placement: the global namespace, no hint, as every object was before).
pub type Home = Option<Region>;

/// Every region, in the order they are documented.
pub const REGIONS: [Region; 4] = [Region::Eu, Region::Uk, Region::Us, Region::Apac];

impl Region {
    /// Strict: exactly one of `eu`, `uk`, `us`, `apac` (lower case). Anything else is a 400
    /// `invalid_request` naming the field `region`.
    pub fn parse(s: &str) -> Result<Region, ApiError> {
        Region::from_tag(s).ok_or_else(Region::invalid)
    }

    /// The refusal of a value that is not a region.
    pub fn invalid() -> ApiError {
        ApiError::invalid_field("region", "must be one of eu, uk, us, apac")
    }

    /// The region of exactly this tag, if any.
    pub fn from_tag(s: &str) -> Option<Region> {
        REGIONS.into_iter().find(|r| r.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Region::Eu => "eu",
            Region::Uk => "uk",
            Region::Us => "us",
            Region::Apac => "apac",
        }
    }

    /// The Durable Object location hint new objects of this region are created with (honoured
    /// only at an object's creation; best effort). Western Europe for the EU (most of its users
    /// and the hint's data centres are there; the jurisdiction keeps the data in the EU either
    /// way) and for the UK; eastern North America for the US (the larger share of its schools);
    /// Asia-Pacific for APAC.
    pub fn location_hint(self) -> &'static str {
        match self {
            Region::Eu | Region::Uk => "weur",
            Region::Us => "enam",
            Region::Apac => "apac",
        }
    }

    /// The jurisdiction the region's objects are created in: `eu` for the EU, none otherwise.
    pub fn jurisdiction(self) -> Option<&'static str> {
        match self {
            Region::Eu => Some("eu"),
            Region::Uk | Region::Us | Region::Apac => None,
        }
    }
}

impl std::fmt::Display for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The region a request most likely comes from, from Cloudflare's geolocation of the client
/// (`request.cf`: ISO country, continent code): a guess, used only to ask the nearest shard
/// first when nothing says where the user lives (a partner's automatic-login assertion names
/// a partner account, not a user). A wrong guess costs a second round trip, never a wrong
/// answer. The UK by country; Europe and Africa to the EU; the Americas to the US; Asia and
/// Oceania to APAC; anything else, no guess.
pub fn of_visitor(country: Option<&str>, continent: Option<&str>) -> Option<Region> {
    if matches!(country, Some("GB") | Some("GG") | Some("JE") | Some("IM")) {
        return Some(Region::Uk);
    }
    match continent? {
        "EU" | "AF" => Some(Region::Eu),
        "NA" | "SA" => Some(Region::Us),
        "AS" | "OC" => Some(Region::Apac),
        _ => None,
    }
}

/// KV key of the user-region directory: `user-region:{SHA-256(username), base64url}`. The
/// username is hashed so the directory lists no names.
pub fn directory_key(username: &str) -> String {
    use base64ct::{Base64UrlUnpadded, Encoding};
    use sha2::{Digest, Sha256};
    format!(
        "user-region:{}",
        Base64UrlUnpadded::encode_string(&Sha256::digest(username.as_bytes()))
    )
}

/// A directory value: a region tag. Anything else is `None` (the caller treats it as corrupt).
pub fn parse_directory_value(value: &str) -> Option<Region> {
    Region::from_tag(value.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::error::ErrorCode;

    #[test]
    fn a_visitor_is_guessed_into_the_region_nearest_them() {
        assert_eq!(of_visitor(Some("GB"), Some("EU")), Some(Region::Uk));
        assert_eq!(of_visitor(Some("FR"), Some("EU")), Some(Region::Eu));
        assert_eq!(of_visitor(Some("NG"), Some("AF")), Some(Region::Eu));
        assert_eq!(of_visitor(Some("US"), Some("NA")), Some(Region::Us));
        assert_eq!(of_visitor(Some("BR"), Some("SA")), Some(Region::Us));
        assert_eq!(of_visitor(Some("AU"), Some("OC")), Some(Region::Apac));
        assert_eq!(of_visitor(Some("JP"), Some("AS")), Some(Region::Apac));
        assert_eq!(of_visitor(Some("AQ"), Some("AN")), None);
        assert_eq!(of_visitor(None, None), None);
    }

    #[test]
    fn regions_parse_strictly() {
        for r in REGIONS {
            assert_eq!(Region::parse(r.as_str()).unwrap(), r);
        }
        for bad in [
            "", "EU", "Eu", " eu", "eu ", "europe", "gb", "au", "fedramp", "legacy",
        ] {
            let e = Region::parse(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidRequest, "{bad:?}");
            assert_eq!(e.field.as_deref(), Some("region"));
            assert_eq!(e.description, "region: must be one of eu, uk, us, apac");
        }
    }

    #[test]
    fn only_the_eu_is_in_a_jurisdiction_and_every_region_has_a_hint() {
        assert_eq!(Region::Eu.jurisdiction(), Some("eu"));
        assert_eq!(Region::Uk.jurisdiction(), None);
        assert_eq!(Region::Us.jurisdiction(), None);
        assert_eq!(Region::Apac.jurisdiction(), None);
        assert_eq!(Region::Eu.location_hint(), "weur");
        assert_eq!(Region::Uk.location_hint(), "weur");
        assert_eq!(Region::Us.location_hint(), "enam");
        assert_eq!(Region::Apac.location_hint(), "apac");
    }

    #[test]
    fn regions_serialize_as_their_tags() {
        assert_eq!(serde_json::to_string(&Region::Apac).unwrap(), "\"apac\"");
        assert!(serde_json::from_str::<Region>("\"mars\"").is_err());
    }

    #[test]
    fn the_directory_key_names_no_username() {
        let key = directory_key("ada");
        assert!(key.starts_with("user-region:"));
        assert!(!key.contains("ada"));
        assert_eq!(key.len(), "user-region:".len() + 43);
        assert_eq!(parse_directory_value("eu"), Some(Region::Eu));
        assert_eq!(parse_directory_value("mars"), None);
    }
}
