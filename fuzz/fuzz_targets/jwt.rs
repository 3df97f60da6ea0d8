//! JWT parsing and verification: our access-token verifier, and the verifier of JWTs signed by
//! others (client assertions, partners' link requests and login assertions), on arbitrary input
//! and on mutations of a real token. No input may panic, and no mutation of a signed token may
//! verify with claims other than the signed ones.
#![no_main]

use std::sync::OnceLock;

use base64ct::{Base64UrlUnpadded, Encoding};
use edgeward::protocol::assertion;
use edgeward::protocol::keys::{verify, KeySet, Times};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

struct Fixture {
    keys: KeySet,
    partner_keys: Vec<assertion::PublicKey>,
    token: String,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let kp = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([7; 32]));
        let x = Base64UrlUnpadded::encode_string(&kp.pk[..]);
        let d = Base64UrlUnpadded::encode_string(&kp.sk[..32]);
        let jwk =
            json!({"kty": "OKP", "crv": "Ed25519", "x": x, "d": d, "kid": "k1", "alg": "EdDSA"});
        let keys = KeySet::parse(&json!({ "keys": [jwk] }).to_string()).expect("fixture key");
        let public = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "k1"}]});
        let partner_keys = assertion::parse_public_jwks(&public).expect("fixture public key");
        let claims = json!({"sub": "pupil", "scope": "api", "aud": "https://edge.example/api"});
        let signed = keys
            .access_token_key()
            .expect("signing key")
            .sign(
                "at+jwt",
                Times {
                    iat: 1_000,
                    exp: 2_000,
                },
                claims,
            )
            .expect("sign");
        let token = match signed {
            edgeward::protocol::keys::Signed::Token(t) => t,
            edgeward::protocol::keys::Signed::NeedsRsa { .. } => unreachable!("Ed25519 key"),
        };
        Fixture {
            keys,
            partner_keys,
            token,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    // 1. Arbitrary text as a token.
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = verify::<Value>(&f.keys, text, "at+jwt", 1_500, 0);
        let _ = assertion::unverified_claims(text);
        let _ = assertion::check_signature(&f.partner_keys, text);
    }
    // 2. The real token with bytes overwritten: it may still verify only if it is the same token
    //    in substance (base64 has spare bits), never with other claims.
    if data.len() >= 2 {
        let mut bytes = f.token.clone().into_bytes();
        for pair in data.chunks_exact(2) {
            let i = usize::from(pair[0]) * bytes.len() / 256;
            bytes[i] = pair[1];
        }
        if let Ok(mutated) = String::from_utf8(bytes) {
            if let Ok(claims) = verify::<Value>(&f.keys, &mutated, "at+jwt", 1_500, 0) {
                assert_eq!(claims.custom["sub"], "pupil", "a forged token verified");
                assert_eq!(claims.custom["scope"], "api", "a forged token verified");
            }
            if let Ok(sig) = assertion::check_signature(&f.partner_keys, &mutated) {
                let _ = sig;
                let claims = assertion::unverified_claims(&mutated).expect("verified JSON");
                assert_eq!(claims["sub"], "pupil", "a forged partner JWT verified");
            }
        }
    }
});
