//! The one log line written per request. Built from checked values only: never a token, a
//! secret, a query string or a raw path (the route template stands in for the path).

use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct RequestLog<'a> {
    pub ts: u64,
    pub request_id: &'a str,
    pub method: &'a str,
    pub route: &'a str,
    pub status: u16,
    pub outcome: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partner: Option<&'a str>,
    pub duration_ms: u64,
    /// Internal cause of a failure (storage errors and the like), never user input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<&'a str>,
}

impl RequestLog<'_> {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{\"log\":\"unserializable\"}".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_line_has_the_documented_fields_and_omits_empty_ones() {
        let line = RequestLog {
            ts: 1,
            request_id: "r1",
            method: "GET",
            route: "/api/*",
            status: 403,
            outcome: "origin_not_allowed",
            partner: None,
            duration_ms: 2,
            cause: None,
        }
        .to_json();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["route"], "/api/*");
        assert_eq!(v["status"], 403);
        assert!(v.get("partner").is_none());
        assert!(v.get("cause").is_none());
    }
}
