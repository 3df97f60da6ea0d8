//! Admin request bodies: one JSON object, read strictly. RFC 8259 leaves duplicate member names
//! to the parser; `serde_json` keeps the last one, so `{"status":"suspended","status":"active"}`
//! would say one thing to a reviewer and do another. Duplicates are refused instead, at any depth.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::error::{ApiError, ErrorCode};

/// Parses `body` as a JSON object whose objects have no duplicate member names.
pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    // serde's message can quote the body (a repeated member's name): say only where it broke.
    let Strict(value) = serde_json::from_slice(body).map_err(|e| {
        let why = if e.is_data() {
            "an object has a duplicate member name"
        } else {
            "it does not parse"
        };
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!(
                "body is not valid JSON: {why} (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    })?;
    match value {
        Value::Object(obj) => Ok(obj),
        _ => Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "body must be a JSON object",
        )),
    }
}

/// A member that is not in our schema: named by the object that holds it (`within`, absent at the
/// top level), never by its own name, which is the caller's text and is not echoed.
pub fn unknown_member(within: Option<&str>, expected: &[&str]) -> ApiError {
    let what = format!("has a member that is not one of {}", expected.join(", "));
    match within {
        Some(field) => ApiError::invalid_field(field, what),
        None => ApiError::new(ErrorCode::InvalidRequest, format!("the body {what}")),
    }
}

/// A `Value` that refuses duplicate member names.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(v) = map.next_value()?;
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate member {key:?}")));
            }
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_members_are_refused_at_any_depth() {
        for body in [
            r#"{"status":"suspended","status":"active"}"#,
            r#"{"jwks":{"keys":[{"kty":"OKP","kty":"EC"}]}}"#,
            r#"{"a":{"b":1,"b":1}}"#,
        ] {
            let err = parse_object(body.as_bytes()).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidRequest);
            assert!(
                err.description.contains("duplicate member"),
                "{body}: {err:?}"
            );
            assert!(
                !err.description.contains('"'),
                "the member name is not echoed"
            );
        }
    }

    #[test]
    fn objects_parse_as_serde_json_would() {
        let body = r#"{"name":"A","n":-1,"f":1.5,"big":18446744073709551615,"ok":true,"none":null,"list":[1,"x",{"k":[]}]}"#;
        let strict = parse_object(body.as_bytes()).unwrap();
        let plain: Value = serde_json::from_str(body).unwrap();
        assert_eq!(Value::Object(strict), plain);
    }

    #[test]
    fn non_objects_and_bad_json_are_refused() {
        for body in ["[]", "1", "\"x\"", "null", "{", "", "{\"a\":1}x"] {
            let err = parse_object(body.as_bytes()).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidRequest, "{body}");
        }
    }
}
