//! JWTs signed by others with their public keys: client assertions (`private_key_jwt`, RFC 7523)
//! now, partners' link requests and login assertions later. The key set is the signer's; the
//! header picks a key by `kid`, and the token's `alg` must be that key's own algorithm, so
//! `alg: none`, HMAC with a public key and algorithm confusion all fail.

use base64ct::{Base64UrlUnpadded, Encoding};
use jwt_compact::jwk::JsonWebKey;
use jwt_compact::UntrustedToken;
use serde_json::{json, Value};

use super::jwk::SigningAlg;
use super::keys::{check_crit, VerifyError};

/// A signer's public key. Its point is checked when the set is parsed; signatures are verified
/// by the runtime's WebCrypto (issue 15: natively, not in WebAssembly), from `public_jwk`.
pub struct PublicKey {
    pub kid: Option<String>,
    pub alg: SigningAlg,
    /// The members WebCrypto imports, as JSON text: `kty`, `crv`, `x` (and `y`), or `kty`,
    /// `n`, `e`. It also names the key's import in the edge's cache.
    public_jwk: String,
}

/// Parses a public JWK Set. Keys of other types, and private keys, are refused.
pub fn parse_public_jwks(jwks: &Value) -> Result<Vec<PublicKey>, String> {
    let keys = jwks
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("not a JWK Set")?;
    let mut out = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let obj = k
            .as_object()
            .ok_or_else(|| format!("key {i} is not an object"))?;
        if obj.contains_key("d") {
            return Err(format!("key {i} is a private key"));
        }
        let kid = obj.get("kid").and_then(Value::as_str).map(str::to_owned);
        let jwk: JsonWebKey<'_> =
            serde_json::from_value(k.clone()).map_err(|e| format!("key {i}: {e}"))?;
        let member = |m: &str| obj.get(m).cloned().unwrap_or(Value::Null);
        let (alg, public_jwk) = match &jwk {
            JsonWebKey::KeyPair { curve, .. } if curve == "Ed25519" => {
                // A canonical point of large order: WebCrypto's Ed25519 verification does not
                // refuse weak keys itself (with the identity point as key, one signature would
                // verify every message), so they are refused here.
                ed25519_compact::PublicKey::try_from(&jwk)
                    .map_err(|e| format!("key {i}: {e}"))?
                    .validate()
                    .map_err(|e| format!("key {i}: {e}"))?;
                (
                    SigningAlg::EdDSA,
                    json!({ "kty": "OKP", "crv": "Ed25519", "x": member("x") }),
                )
            }
            JsonWebKey::EllipticCurve { curve, .. } if curve == "P-256" => {
                // The point must be on the curve: a key set with a bad key is refused whole.
                p256::ecdsa::VerifyingKey::try_from(&jwk).map_err(|e| format!("key {i}: {e}"))?;
                (
                    SigningAlg::ES256,
                    json!({ "kty": "EC", "crv": "P-256", "x": member("x"), "y": member("y") }),
                )
            }
            JsonWebKey::Rsa { modulus, .. } => {
                if super::keys::significant_len(modulus) < 256 {
                    return Err(format!("key {i}: RSA keys must be at least 2048 bits"));
                }
                (
                    SigningAlg::RS256,
                    json!({ "kty": "RSA", "n": member("n"), "e": member("e") }),
                )
            }
            _ => {
                return Err(format!(
                    "key {i}: only Ed25519, P-256 and RSA keys are accepted"
                ))
            }
        };
        if let Some(declared) = obj.get("alg").and_then(Value::as_str) {
            if !SigningAlg::parse(declared).is_some_and(|d| d.same_key_as(alg)) {
                return Err(format!("key {i}: alg {declared} does not fit the key"));
            }
        }
        out.push(PublicKey {
            kid,
            alg,
            public_jwk: public_jwk.to_string(),
        });
    }
    Ok(out)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AssertionError {
    Malformed,
    UnsupportedAlg,
    UnknownKey,
    BadSignature,
    /// The header's `crit` names extensions we do not understand (RFC 7515 §4.1.11).
    UnknownCritical,
    Claim(&'static str),
    Replayed,
}

impl AssertionError {
    pub fn describe(&self) -> &'static str {
        match self {
            AssertionError::Malformed => "the assertion is not a well-formed JWT",
            AssertionError::UnsupportedAlg => "the assertion's alg is not EdDSA, ES256 or RS256",
            AssertionError::UnknownKey => "the assertion's key is not in the signer's key set",
            AssertionError::BadSignature => "the assertion's signature is not valid",
            AssertionError::UnknownCritical => {
                "the assertion's header names critical extensions (crit) that are not supported"
            }
            AssertionError::Claim(why) => why,
            AssertionError::Replayed => "the assertion was already used",
        }
    }
}

/// A token whose header passed (its `alg` the chosen key's own, no `crit`): what WebCrypto
/// must verify before `payload` may be read as the signer's word.
pub struct Signature<'k> {
    pub alg: SigningAlg,
    /// The chosen key's public half (`PublicKey::public_jwk`).
    pub public_jwk: &'k str,
    pub signing_input: String,
    pub signature: Vec<u8>,
    pub payload: Value,
}

fn payload_of(token: &str) -> Option<Value> {
    let p = token.split('.').nth(1)?;
    serde_json::from_slice(&Base64UrlUnpadded::decode_vec(p).ok()?).ok()
}

/// The claims of a JWT before any check: only to find out who claims to have signed it.
pub fn unverified_claims(token: &str) -> Option<Value> {
    payload_of(token)
}

/// The `kid` a token's header names, unverified: which of a fetched key set to look for.
pub fn unverified_kid(token: &str) -> Option<String> {
    let untrusted = UntrustedToken::new(token).ok()?;
    untrusted.header().key_id.clone()
}

/// Checks the header of `token` (no `crit`, an `alg` we take) and picks the key of `keys` that
/// signed it (its `kid`, and the key's own algorithm): the [`Signature`] WebCrypto verifies next.
pub fn signature_to_verify<'k>(
    keys: &'k [PublicKey],
    token: &str,
) -> Result<Signature<'k>, AssertionError> {
    check_crit(token).map_err(|e| match e {
        VerifyError::UnknownCritical => AssertionError::UnknownCritical,
        _ => AssertionError::Malformed,
    })?;
    let untrusted = UntrustedToken::new(token).map_err(|_| AssertionError::Malformed)?;
    let alg = SigningAlg::parse(untrusted.algorithm()).ok_or(AssertionError::UnsupportedAlg)?;
    let kid = untrusted.header().key_id.as_deref();
    let mut candidates = keys.iter().filter(|k| k.alg.same_key_as(alg));
    let key = match kid {
        Some(kid) => candidates.find(|k| k.kid.as_deref() == Some(kid)),
        // Without a kid, only an unambiguous key set will do.
        None => match (candidates.next(), candidates.next()) {
            (Some(k), None) => Some(k),
            _ => None,
        },
    }
    .ok_or(AssertionError::UnknownKey)?;
    let (input, sig) = token.rsplit_once('.').ok_or(AssertionError::Malformed)?;
    Ok(Signature {
        alg,
        public_jwk: &key.public_jwk,
        signing_input: input.to_owned(),
        signature: Base64UrlUnpadded::decode_vec(sig).map_err(|_| AssertionError::Malformed)?,
        // The rules read the whole payload (jwt-compact keeps exp/nbf/iat apart).
        payload: payload_of(token).ok_or(AssertionError::Malformed)?,
    })
}

/// Verifies a [`Signature`] natively, as WebCrypto does at the edge: for tests only.
#[cfg(test)]
pub fn verify_natively(s: Signature<'_>) -> Result<Value, AssertionError> {
    use p256::ecdsa::signature::Verifier;
    let jwk: Value = serde_json::from_str(s.public_jwk).map_err(|_| AssertionError::Malformed)?;
    let b64 = |m: &str| {
        jwk.get(m)
            .and_then(Value::as_str)
            .and_then(|v| Base64UrlUnpadded::decode_vec(v).ok())
            .ok_or(AssertionError::Malformed)
    };
    let good = match s.alg {
        SigningAlg::EdDSA | SigningAlg::Ed25519 => {
            let pk = ed25519_compact::PublicKey::from_slice(&b64("x")?)
                .map_err(|_| AssertionError::Malformed)?;
            let sig = ed25519_compact::Signature::from_slice(&s.signature)
                .map_err(|_| AssertionError::BadSignature)?;
            pk.verify(s.signing_input.as_bytes(), &sig).is_ok()
        }
        SigningAlg::ES256 => {
            let mut sec1 = vec![4u8];
            sec1.extend(b64("x")?);
            sec1.extend(b64("y")?);
            let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
                .map_err(|_| AssertionError::Malformed)?;
            let sig = p256::ecdsa::Signature::from_slice(&s.signature)
                .map_err(|_| AssertionError::BadSignature)?;
            vk.verify(s.signing_input.as_bytes(), &sig).is_ok()
        }
        SigningAlg::RS256 => return Err(AssertionError::UnsupportedAlg),
    };
    if good {
        Ok(s.payload)
    } else {
        Err(AssertionError::BadSignature)
    }
}

/// What an assertion must say, and when.
pub struct Rules<'a> {
    pub iss: &'a str,
    /// Required `sub`, when the rules fix it (client assertions: the client id).
    pub sub: Option<&'a str>,
    /// Acceptable audiences: one of them must be the `aud` (or be in the `aud` array).
    pub audiences: &'a [String],
    pub now: u64,
    /// Longest allowed `exp - now` (and `exp - iat` when `iat` is present).
    pub max_lifetime_s: u64,
    pub leeway_s: u64,
}

/// The checked claims a caller needs next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    pub jti: String,
    pub exp: u64,
    pub sub: String,
}

fn num(v: &Value, name: &str) -> Option<u64> {
    v.get(name).and_then(Value::as_u64)
}

/// Checks `iss`, `sub`, `aud`, `exp`, `nbf`, `iat` and the presence of `jti`.
pub fn check_claims(payload: &Value, rules: &Rules<'_>) -> Result<Checked, AssertionError> {
    let s = |name: &str| payload.get(name).and_then(Value::as_str);
    if s("iss") != Some(rules.iss) {
        return Err(AssertionError::Claim(
            "the assertion's iss is not the expected issuer",
        ));
    }
    let sub = s("sub").ok_or(AssertionError::Claim("the assertion has no sub"))?;
    if rules.sub.is_some_and(|want| want != sub) {
        return Err(AssertionError::Claim(
            "the assertion's sub is not the expected subject",
        ));
    }
    let aud_ok = match payload.get("aud") {
        Some(Value::String(a)) => rules.audiences.iter().any(|x| x == a),
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .any(|a| rules.audiences.iter().any(|x| x == a)),
        _ => false,
    };
    if !aud_ok {
        return Err(AssertionError::Claim(
            "the assertion's aud is not this server",
        ));
    }
    let exp = num(payload, "exp").ok_or(AssertionError::Claim("the assertion has no exp"))?;
    if rules.now >= exp.saturating_add(rules.leeway_s) {
        return Err(AssertionError::Claim("the assertion expired"));
    }
    if exp.saturating_sub(rules.now) > rules.max_lifetime_s + rules.leeway_s {
        return Err(AssertionError::Claim(
            "the assertion lives longer than allowed",
        ));
    }
    if let Some(nbf) = num(payload, "nbf") {
        if rules.now.saturating_add(rules.leeway_s) < nbf {
            return Err(AssertionError::Claim("the assertion is not valid yet"));
        }
    }
    if let Some(iat) = num(payload, "iat") {
        if iat > rules.now.saturating_add(rules.leeway_s) {
            return Err(AssertionError::Claim(
                "the assertion was issued in the future",
            ));
        }
        if exp.saturating_sub(iat) > rules.max_lifetime_s {
            return Err(AssertionError::Claim(
                "the assertion lives longer than allowed",
            ));
        }
    }
    let jti = s("jti")
        .filter(|j| !j.is_empty() && j.len() <= 256)
        .ok_or(AssertionError::Claim("the assertion has no jti"))?;
    Ok(Checked {
        jti: jti.to_owned(),
        exp,
        sub: sub.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jwt_compact::alg::Ed25519;
    use jwt_compact::{AlgorithmExt, Claims, Header};

    /// The edge's two steps, with the native verifier in WebCrypto's place.
    fn checked(keys: &[PublicKey], token: &str) -> Result<Value, AssertionError> {
        signature_to_verify(keys, token).and_then(verify_natively)
    }

    fn ed_key(seed: u8) -> (ed25519_compact::KeyPair, Value) {
        let kp = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([seed; 32]));
        let jwk = json!({
            "kty": "OKP", "crv": "Ed25519", "kid": format!("k{seed}"),
            "x": Base64UrlUnpadded::encode_string(&kp.pk[..]),
        });
        (kp, jwk)
    }

    fn sign(kp: &ed25519_compact::KeyPair, kid: Option<&str>, payload: Value) -> String {
        let mut h = Header::empty();
        if let Some(k) = kid {
            h = h.with_key_id(k);
        }
        Ed25519.token(&h, &Claims::new(payload), &kp.sk).unwrap()
    }

    fn rules(audiences: &[String]) -> Rules<'_> {
        Rules {
            iss: "client-1",
            sub: Some("client-1"),
            audiences,
            now: 1_000,
            max_lifetime_s: 300,
            leeway_s: 60,
        }
    }

    fn good_claims() -> Value {
        json!({"iss":"client-1","sub":"client-1","aud":"https://id.example/oauth2/token","exp":1_100,"iat":990,"jti":"j1"})
    }

    /// A token with exactly this header, signed by `kp`.
    fn sign_with_header(kp: &ed25519_compact::KeyPair, header: Value, payload: Value) -> String {
        let part = |v: &Value| Base64UrlUnpadded::encode_string(&serde_json::to_vec(v).unwrap());
        let input = format!("{}.{}", part(&header), part(&payload));
        let sig = kp.sk.sign(input.as_bytes(), None);
        format!("{input}.{}", Base64UrlUnpadded::encode_string(sig.as_ref()))
    }

    #[test]
    fn assertion_with_any_crit_header_is_refused() {
        let (kp, jwk) = ed_key(1);
        let keys = parse_public_jwks(&json!({ "keys": [jwk] })).unwrap();
        let plain = sign_with_header(&kp, json!({"alg":"EdDSA","kid":"k1"}), good_claims());
        assert!(checked(&keys, &plain).is_ok());
        let crit = |c: Value| {
            let t = sign_with_header(
                &kp,
                json!({"alg":"EdDSA","kid":"k1","crit":c,"exp":1}),
                good_claims(),
            );
            checked(&keys, &t).err()
        };
        assert_eq!(crit(json!(["exp"])), Some(AssertionError::UnknownCritical));
        assert_eq!(crit(json!(["b64"])), Some(AssertionError::UnknownCritical));
        for malformed in [json!([]), json!("exp"), json!([1]), json!(null), json!({})] {
            assert_eq!(
                crit(malformed.clone()),
                Some(AssertionError::Malformed),
                "{malformed}"
            );
        }
    }

    /// WebCrypto's Ed25519 takes a weak key and a signature that then verifies any message: such
    /// keys, and RSA moduli short of 2048 bits behind leading zeros, are refused at parse time.
    #[test]
    fn weak_ed25519_keys_and_zero_padded_rsa_moduli_are_refused() {
        let mut identity = [0u8; 32];
        identity[0] = 1; // the neutral point, of order 1
        let mut order_two = [0u8; 32];
        order_two[0] = 0xec; // (0, -1), of order 2
        order_two[1..31].fill(0xff);
        order_two[31] = 0x7f;
        for x in [identity, order_two] {
            let jwk =
                json!({"kty": "OKP", "crv": "Ed25519", "x": Base64UrlUnpadded::encode_string(&x)});
            assert!(
                parse_public_jwks(&json!({ "keys": [jwk] })).is_err(),
                "{x:?}"
            );
        }
        let (_, good) = ed_key(1);
        assert!(parse_public_jwks(&json!({ "keys": [good] })).is_ok());
        let mut n = vec![0u8; 128];
        n.extend([0xc5u8; 128]); // 1024 bits, padded to 256 bytes
        let rsa = json!({"kty": "RSA", "n": Base64UrlUnpadded::encode_string(&n), "e": "AQAB"});
        let err = parse_public_jwks(&json!({ "keys": [rsa] })).err().unwrap();
        assert!(err.contains("2048"), "{err}");
    }

    #[test]
    fn assertion_signed_by_a_registered_key_verifies() {
        let (kp, jwk) = ed_key(1);
        let keys = parse_public_jwks(&json!({ "keys": [jwk] })).unwrap();
        let token = sign(&kp, Some("k1"), good_claims());
        let Ok(payload) = checked(&keys, &token) else {
            panic!("not verified")
        };
        let aud = vec!["https://id.example/oauth2/token".to_owned()];
        let checked = check_claims(&payload, &rules(&aud)).unwrap();
        assert_eq!(checked.jti, "j1");
    }

    #[test]
    fn assertion_signed_by_another_key_or_unknown_kid_fails() {
        let (_, jwk1) = ed_key(1);
        let (kp2, _) = ed_key(2);
        let keys = parse_public_jwks(&json!({ "keys": [jwk1] })).unwrap();
        assert!(matches!(
            checked(&keys, &sign(&kp2, Some("k1"), good_claims())),
            Err(AssertionError::BadSignature)
        ));
        assert!(matches!(
            checked(&keys, &sign(&kp2, Some("k9"), good_claims())),
            Err(AssertionError::UnknownKey)
        ));
        // no kid: fine with one key, and still checked
        assert!(matches!(
            checked(&keys, &sign(&kp2, None, good_claims())),
            Err(AssertionError::BadSignature)
        ));
    }

    #[test]
    fn assertion_alg_none_and_hmac_are_refused() {
        let (kp, jwk) = ed_key(1);
        let keys = parse_public_jwks(&json!({ "keys": [jwk.clone()] })).unwrap();
        let good = sign(&kp, Some("k1"), good_claims());
        let payload = good.split('.').nth(1).unwrap();
        let enc = |v: Value| Base64UrlUnpadded::encode_string(v.to_string().as_bytes());
        let none = format!("{}.{payload}.", enc(json!({"alg":"none","kid":"k1"})));
        assert!(matches!(
            checked(&keys, &none),
            Err(AssertionError::UnsupportedAlg)
        ));
        let hs = format!("{}.{payload}.c2ln", enc(json!({"alg":"HS256","kid":"k1"})));
        assert!(matches!(
            checked(&keys, &hs),
            Err(AssertionError::UnsupportedAlg)
        ));
        let es = format!("{}.{payload}.c2ln", enc(json!({"alg":"ES256","kid":"k1"})));
        assert!(
            matches!(checked(&keys, &es), Err(AssertionError::UnknownKey)),
            "alg must be the key's"
        );
    }

    #[test]
    fn assertion_claims_are_each_checked() {
        let aud = vec!["https://id.example/oauth2/token".to_owned()];
        let r = rules(&aud);
        let with = |k: &str, v: Value| {
            let mut c = good_claims();
            c[k] = v;
            c
        };
        let without = |k: &str| {
            let mut c = good_claims();
            c.as_object_mut().unwrap().remove(k);
            c
        };
        for (claims, why) in [
            (with("iss", json!("other")), "iss"),
            (with("sub", json!("other")), "sub"),
            (with("aud", json!("https://evil.example")), "aud"),
            (with("aud", json!(["https://evil.example"])), "aud array"),
            (with("exp", json!(1_000 - 61)), "expired"),
            (with("exp", json!(1_000 + 400)), "lifetime"),
            (with("nbf", json!(1_000 + 120)), "not yet valid"),
            (with("iat", json!(1_000 + 120)), "future iat"),
            (without("jti"), "jti"),
            (without("exp"), "exp"),
            (without("sub"), "no sub"),
        ] {
            assert!(check_claims(&claims, &r).is_err(), "{why}");
        }
        assert!(check_claims(
            &with("aud", json!(["x", "https://id.example/oauth2/token"])),
            &r
        )
        .is_ok());
        assert!(
            check_claims(&with("exp", json!(1_000 - 30)), &r).is_ok(),
            "within leeway"
        );
    }

    #[test]
    fn private_or_foreign_keys_are_refused_in_public_sets() {
        assert!(parse_public_jwks(
            &json!({"keys":[{"kty":"OKP","crv":"Ed25519","x":"AA","d":"AA"}]})
        )
        .is_err());
        assert!(parse_public_jwks(&json!({"keys":[{"kty":"oct","k":"c2VjcmV0"}]})).is_err());
        assert!(parse_public_jwks(
            &json!({"keys":[{"kty":"EC","crv":"secp256k1","x":"AA","y":"AA"}]})
        )
        .is_err());
    }
}
