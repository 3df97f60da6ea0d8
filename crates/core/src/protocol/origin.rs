//! Web origins (RFC 6454): as operators register them, and as browsers send them.
//!
//! A registered origin is normalized once, when it is stored: lowercase host, international names
//! as punycode, the default port dropped. A browser always sends an origin in that same canonical
//! serialization, so the gate compares bytes: a header that is not already canonical (upper case,
//! a trailing slash, a default port spelled out) is not a browser's, and matches nothing.
//! Wildcards are not supported: every origin a partner uses is listed.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use url::{Host, Url};

/// Longest origin accepted anywhere: well under the 512-byte KV key limit with its prefix.
pub const MAX_ORIGIN_LEN: usize = 300;
/// Longest `Referer` considered; longer ones match nothing.
pub const MAX_REFERER_LEN: usize = 4096;

/// A canonical, tuple origin: `scheme "://" host [ ":" port ]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Origin(String);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OriginError {
    Empty,
    TooLong,
    Wildcard,
    NotAUrl,
    Scheme,
    PlainHttpNotLoopback,
    Userinfo,
    Path,
    Query,
    Fragment,
    NoHost,
    TrailingDot,
    NotAscii,
}

impl fmt::Display for OriginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OriginError::Empty => "must not be empty",
            OriginError::TooLong => "is too long",
            OriginError::Wildcard => "wildcards are not supported: list each origin",
            OriginError::NotAUrl => "is not an absolute URL such as https://app.partner.example",
            OriginError::Scheme => "must use https",
            OriginError::PlainHttpNotLoopback => {
                "plain http is allowed only for localhost, 127.0.0.1 and [::1]"
            }
            OriginError::Userinfo => "must not contain a user name or password",
            OriginError::Path => "must not have a path",
            OriginError::Query => "must not have a query",
            OriginError::Fragment => "must not have a fragment",
            OriginError::NoHost => "must have a host",
            OriginError::TrailingDot => "must not end the host with a dot",
            OriginError::NotAscii => {
                "must be ASCII: write an international domain name in its punycode form, such as https://xn--bcher-kva.example"
            }
        })
    }
}

fn is_loopback(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(d) => *d == "localhost",
        Host::Ipv4(ip) => ip.octets() == [127, 0, 0, 1],
        Host::Ipv6(ip) => ip.is_loopback(),
    }
}

impl Origin {
    /// Parses and normalizes an origin that an operator registers.
    pub fn parse(input: &str) -> Result<Origin, OriginError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(OriginError::Empty);
        }
        if input.len() > MAX_ORIGIN_LEN {
            return Err(OriginError::TooLong);
        }
        if input.contains('*') {
            return Err(OriginError::Wildcard);
        }
        if !input.is_ascii() {
            return Err(OriginError::NotAscii);
        }
        let url = Url::parse(input).map_err(|_| OriginError::NotAUrl)?;
        // `Url` drops an empty query or fragment marker silently only from the serialization;
        // the raw input tells whether one was written.
        if url.fragment().is_some() || input.contains('#') {
            return Err(OriginError::Fragment);
        }
        if url.query().is_some() {
            return Err(OriginError::Query);
        }
        Self::from_url(&url, url.path() != "/")
    }

    /// Checks a URL's scheme, host and credentials and returns its origin. `has_path` is whether
    /// the caller considers the URL to carry a path (origins must not; Referers may).
    fn from_url(url: &Url, has_path: bool) -> Result<Origin, OriginError> {
        let host = url.host().ok_or(OriginError::NoHost)?;
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&host) => {}
            "http" => return Err(OriginError::PlainHttpNotLoopback),
            _ => return Err(OriginError::Scheme),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(OriginError::Userinfo);
        }
        if has_path {
            return Err(OriginError::Path);
        }
        if let Host::Domain(d) = host {
            if d.is_empty() {
                return Err(OriginError::NoHost);
            }
            if d.ends_with('.') {
                return Err(OriginError::TrailingDot);
            }
            // Host names only: letters, digits, '-', '_' and dots. The URL parser percent-decodes
            // hosts, so `https:e%2a` would otherwise become `https://e*`, an origin that does not
            // parse again (fuzz finding).
            if d.contains('*') {
                return Err(OriginError::Wildcard);
            }
            if !d
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            {
                return Err(OriginError::NotAUrl);
            }
        }
        let serialized = url.origin().ascii_serialization();
        if serialized.len() > MAX_ORIGIN_LEN {
            return Err(OriginError::TooLong);
        }
        Ok(Origin(serialized))
    }

    /// The origin a browser sent in `Origin`, if it is one we could have registered, in canonical
    /// form. `null`, non-canonical spellings and anything unparsable give `None`.
    pub fn from_header(value: &str) -> Option<Origin> {
        if value.len() > MAX_ORIGIN_LEN {
            return None;
        }
        let origin = Origin::parse(value).ok()?;
        (origin.0 == value).then_some(origin)
    }

    /// The origin of a `Referer` URL (used only when `Origin` is absent).
    pub fn from_referer(value: &str) -> Option<Origin> {
        if value.len() > MAX_REFERER_LEN || value.contains('*') {
            return None;
        }
        let url = Url::parse(value).ok()?;
        Self::from_url(&url, false).ok()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn host(&self) -> &str {
        let rest = self.0.split_once("://").map(|(_, r)| r).unwrap_or(&self.0);
        match rest.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(v6),
            None => rest.split(':').next().unwrap_or(rest),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Stored origins are re-checked when read back, so a corrupted record cannot widen the gate.
impl<'de> Deserialize<'de> for Origin {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Origin::from_header(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("not a canonical origin: {s}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> String {
        Origin::parse(s).unwrap().0
    }

    #[test]
    fn parse_normalizes_case_default_port_and_idn() {
        assert_eq!(
            ok("https://App.Partner.Example"),
            "https://app.partner.example"
        );
        assert_eq!(ok("https://a.example:443"), "https://a.example");
        assert_eq!(ok("https://a.example:8443"), "https://a.example:8443");
        assert_eq!(ok("https://a.example/"), "https://a.example");
        assert_eq!(
            ok("https://XN--BCHER-KVA.example"),
            "https://xn--bcher-kva.example"
        );
        assert_eq!(
            Origin::parse("https://bücher.example"),
            Err(OriginError::NotAscii),
            "international names arrive in punycode"
        );
        assert_eq!(ok("http://localhost:3000"), "http://localhost:3000");
        assert_eq!(ok("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
        assert_eq!(ok("http://[::1]:8080"), "http://[::1]:8080");
        assert_eq!(ok("  https://a.example  "), "https://a.example");
    }

    #[test]
    fn parse_rejects_each_kind_of_non_origin() {
        let cases = [
            ("", OriginError::Empty),
            ("https://*.partner.example", OriginError::Wildcard),
            ("partner.example", OriginError::NotAUrl),
            ("ftp://partner.example", OriginError::Scheme),
            ("javascript:alert(1)", OriginError::NoHost),
            ("http://partner.example", OriginError::PlainHttpNotLoopback),
            (
                "http://localhost.evil.test",
                OriginError::PlainHttpNotLoopback,
            ),
            ("https://user:pw@partner.example", OriginError::Userinfo),
            ("https://user@partner.example", OriginError::Userinfo),
            ("https://partner.example/app", OriginError::Path),
            ("https://partner.example?x=1", OriginError::Query),
            ("https://partner.example/?", OriginError::Query),
            ("https://partner.example#top", OriginError::Fragment),
            ("https://partner.example#", OriginError::Fragment),
            ("https://partner.example.", OriginError::TrailingDot),
        ];
        for (input, want) in cases {
            assert_eq!(Origin::parse(input), Err(want), "{input:?}");
        }
        let long = format!("https://{}.example", "a".repeat(MAX_ORIGIN_LEN));
        assert_eq!(Origin::parse(&long), Err(OriginError::TooLong));
    }

    #[test]
    fn from_header_accepts_only_canonical_serializations() {
        assert_eq!(
            Origin::from_header("https://app.partner.example").map(|o| o.0),
            Some("https://app.partner.example".to_owned())
        );
        for bad in [
            "null",
            "",
            "HTTPS://APP.PARTNER.EXAMPLE",
            "https://App.partner.example",
            "https://app.partner.example/",
            "https://app.partner.example:443",
            "https://app.partner.example.",
            "https://u@app.partner.example",
            "http://app.partner.example",
            "https://app.partner.example/path",
            " https://app.partner.example",
        ] {
            assert_eq!(Origin::from_header(bad), None, "{bad:?}");
        }
        assert_eq!(Origin::from_header(&"h".repeat(10_000)), None);
    }

    #[test]
    fn from_referer_takes_the_origin_of_the_url() {
        assert_eq!(
            Origin::from_referer("https://app.partner.example/page?q=1#x").map(|o| o.0),
            Some("https://app.partner.example".to_owned())
        );
        assert_eq!(
            Origin::from_referer("https://u:p@app.partner.example/"),
            None
        );
        assert_eq!(Origin::from_referer("about:blank"), None);
        assert_eq!(Origin::from_referer("/relative"), None);
    }

    #[test]
    fn host_extracts_the_host_part() {
        assert_eq!(
            Origin::parse("https://a.example:8443").unwrap().host(),
            "a.example"
        );
        assert_eq!(Origin::parse("http://[::1]:80").unwrap().host(), "::1");
    }

    #[test]
    fn deserialize_rechecks_stored_origins() {
        let ok: Result<Origin, _> = serde_json::from_str("\"https://a.example\"");
        assert!(ok.is_ok());
        let bad: Result<Origin, _> = serde_json::from_str("\"https://A.example/x\"");
        assert!(bad.is_err());
    }

    #[test]
    fn percent_encoded_hosts_cannot_smuggle_a_wildcard_or_odd_characters() {
        // Fuzz finding (origin target): the host is percent-decoded by the URL parser.
        assert_eq!(
            Origin::parse("https:e%2a\t\r\0"),
            Err(OriginError::Wildcard)
        );
        assert_eq!(
            Origin::parse("https://a%2ab.example"),
            Err(OriginError::Wildcard)
        );
        assert!(Origin::parse("https://a%21b.example").is_err());
        assert!(Origin::parse("https://under_score.example").is_ok());
    }
}
