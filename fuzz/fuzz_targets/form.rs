//! Query strings and form bodies (each parameter once), client authentication parameters,
//! PKCE values and scope strings.
#![no_main]

use edgeward::protocol::client_auth::presented;
use edgeward::protocol::form::Params;
use edgeward::protocol::pkce;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(params) = Params::parse(data) {
        // Each name at most once, whatever the encoding tricks.
        let names: Vec<&str> = params.iter().map(|(k, _)| k).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            names.len(),
            "a repeated parameter was accepted"
        );
        let auth = params.get("authorization");
        let _ = presented(auth, &params);
        if let (Some(v), Some(c)) = (params.get("code_verifier"), params.get("code_challenge")) {
            if pkce::verify(v, c) {
                assert!(pkce::verifier_ok(v) && pkce::challenge_ok(c));
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = presented(Some(text), &Params::default());
        let _ = pkce::challenge_ok(text);
        let _ = pkce::verifier_ok(text);
    }
});
