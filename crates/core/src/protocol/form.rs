//! Query strings and `application/x-www-form-urlencoded` bodies as OAuth reads them: every
//! parameter at most once (RFC 6749 §3.1, §3.2), empty values treated as absent.

use super::error::{ApiError, ErrorCode};

/// Largest form body or query accepted.
pub const MAX_FORM_BYTES: usize = 16 * 1024;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Parses a query string or form body. A repeated parameter is `invalid_request`.
    pub fn parse(input: &[u8]) -> Result<Params, ApiError> {
        if input.len() > MAX_FORM_BYTES {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "parameters are too large",
            ));
        }
        let mut out: Vec<(String, String)> = Vec::new();
        // A set, not a scan of `out`: thousands of tiny parameters must not cost quadratic time.
        let mut seen = std::collections::HashSet::new();
        for (k, v) in url::form_urlencoded::parse(input) {
            if !seen.insert(k.clone()) {
                return Err(ApiError::new(
                    ErrorCode::InvalidRequest,
                    "a parameter is repeated",
                ));
            }
            out.push((k.into_owned(), v.into_owned()));
        }
        Ok(Params(out))
    }

    /// Parameters assembled from elsewhere (a request object and its query), each name once.
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Params {
        Params(pairs)
    }

    /// The value of `name`, if present and not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// A whole-number parameter, if present, from 0 to [`MAX_NUMBER`]; `what` says what it
    /// must be when it is not. Negative, fractional, exponent and larger values are refused
    /// here, so no later step (SQLite's 64-bit integers, JSON numbers) meets one it cannot hold.
    pub fn number(&self, name: &str, what: &str) -> Result<Option<u64>, ApiError> {
        self.get(name)
            .map(|v| {
                Some(v)
                    .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|v| v.parse::<u64>().ok())
                    .filter(|n| *n <= MAX_NUMBER)
                    .ok_or_else(|| ApiError::invalid_field(name, what))
            })
            .transpose()
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// The largest number a parameter may carry: 2^53 - 1, the largest integer every JSON reader
/// (and JavaScript) holds exactly.
pub const MAX_NUMBER: u64 = (1 << 53) - 1;

/// Serializes pairs as a query string.
pub fn encode(pairs: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_whole_and_within_what_json_holds() {
        let p = |q: &str| Params::parse(q.as_bytes()).unwrap();
        assert_eq!(p("n=0").number("n", "x").unwrap(), Some(0));
        assert_eq!(
            p("n=9007199254740991").number("n", "x").unwrap(),
            Some(MAX_NUMBER)
        );
        assert_eq!(p("").number("n", "x").unwrap(), None);
        assert_eq!(p("n=").number("n", "x").unwrap(), None, "empty is absent");
        for bad in [
            "n=9007199254740992",
            "n=18446744073709551616",
            "n=99999999999999999999999",
            "n=-1",
            "n=1e309",
            "n=1.5",
            "n=%2B1",
            "n=0x10",
        ] {
            let e = p(bad).number("n", "x").unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidRequest, "{bad}");
            assert_eq!(e.field.as_deref(), Some("n"), "{bad}");
        }
    }

    #[test]
    fn params_parse_and_reject_repeats() {
        let p = Params::parse(b"a=1&b=x%20y&c=").unwrap();
        assert_eq!(p.get("a"), Some("1"));
        assert_eq!(p.get("b"), Some("x y"));
        assert_eq!(p.get("c"), None);
        assert!(p.has("c"));
        let err = Params::parse(b"a=1&a=2").unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidRequest);
        assert!(Params::parse(&vec![b'a'; MAX_FORM_BYTES + 1]).is_err());
    }

    #[test]
    fn encode_escapes() {
        assert_eq!(encode(&[("a", "x y"), ("b", "&=")]), "a=x+y&b=%26%3D");
    }
}
