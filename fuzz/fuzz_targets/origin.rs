//! Origin, Referer and redirect-URI parsing and matching, the gateway's path rules and scope
//! map. Parsing is deterministic and canonical: whatever parses re-parses to itself.
#![no_main]

use edgeward::protocol::api::{path_refusal, ScopeMap};
use edgeward::protocol::authorize::safe_return_path;
use edgeward::protocol::client::RedirectUri;
use edgeward::protocol::gate::caller;
use edgeward::protocol::origin::Origin;
use edgeward::routes::Method;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(o) = Origin::parse(text) {
        assert_eq!(
            Origin::parse(o.as_str()).ok().as_ref(),
            Some(&o),
            "not canonical: {text:?}"
        );
        assert_eq!(Origin::from_header(o.as_str()).as_ref(), Some(&o));
    }
    if let Some(o) = Origin::from_header(text) {
        // A header is admitted only in its canonical spelling.
        assert_eq!(o.as_str(), text);
    }
    let _ = Origin::from_referer(text);
    let mid = text.len() / 2;
    if text.is_char_boundary(mid) {
        let (a, b) = text.split_at(mid);
        let _ = caller(Some(a), Some(b));
        let _ = caller(None, Some(b));
    }
    if let Ok(r) = RedirectUri::parse(text) {
        let again = RedirectUri::parse(r.as_str()).expect("a parsed redirect URI re-parses");
        assert_eq!(again.as_str(), r.as_str());
        let _ = r.origin();
    }
    if let Some(p) = safe_return_path(text, &["/oauth2/authorize", "/account"]) {
        assert!(
            p.starts_with('/') && !p.starts_with("//"),
            "unsafe return path {p:?}"
        );
        assert!(!p.contains('\\'), "backslash in return path {p:?}");
    }
    let _ = path_refusal(text);
    if let Ok(map) = ScopeMap::parse(text) {
        for m in [Method::Get, Method::Post, Method::Head] {
            let _ = map.needs(m, "/api/v1/classes/7");
        }
    }
    let map = ScopeMap::parse(r#"{"/api": "api", "POST /api/v1/classes": "classes.write"}"#)
        .expect("fixed map");
    if text.starts_with("/api") {
        let _ = map.needs(Method::Post, text);
    }
});
