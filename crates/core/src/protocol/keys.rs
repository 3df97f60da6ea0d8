//! edgeward's own signing keys: the `SIGNING_KEYS` JWK Set of private keys, the public JWK Set
//! published from it, and signing and verifying of the JWTs we issue.
//!
//! Every key signs in the runtime's WebCrypto: this module builds the token (its header and its
//! claims, with jwt-compact) up to the signing input, and the edge signs it. WebCrypto's native
//! Ed25519 and P-256 cost a small part of the same arithmetic in WebAssembly (issue 15's profile:
//! Ed25519 signing was a fifth of the token endpoint), and its RSA private-key operations are
//! constant-time (the `rsa` crate's are not: RUSTSEC-2023-0071). Verifying is split the same
//! way: `to_verify` checks a token's header against our keys, the edge verifies its signature in
//! WebCrypto, and `accept` reads and checks its claims (`verify` does all three natively, for
//! an `id_token_hint` and the tests). Access tokens are signed with the first Ed25519
//! or P-256 key of the set; ID tokens with the first key of the client's algorithm. Keys later
//! in the set are published, so tokens they signed stay verifiable through a rotation.

use base64ct::{Base64UrlUnpadded, Encoding};
use chrono::{DateTime, Utc};
use jwt_compact::alg::{Ed25519, Es256};
use jwt_compact::jwk::JsonWebKey;
/// A verified token's claims: `custom` and the time claims (what `accept` gives the edge).
pub use jwt_compact::Claims;
use jwt_compact::{AlgorithmExt, UntrustedToken};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::{json, Map, Value};
use sha2::Sha256;

use super::jwk::SigningAlg;

/// What verifies our own tokens here (the public half is enough).
enum Material {
    Ed25519(ed25519_compact::SecretKey),
    Es256(p256::ecdsa::SigningKey),
    /// RS256 tokens are verified through WebCrypto only (`rsa_check`).
    Rsa,
}

pub struct SigningKey {
    pub kid: String,
    pub alg: SigningAlg,
    material: Material,
    /// The private key as WebCrypto imports it: only the members of its key type.
    private_jwk: Value,
    /// Its public half as WebCrypto imports it, as JSON text: made once, it is also what names
    /// the key's imports in the edge's caches (an alias of an Ed25519 key shares it).
    pub public_jwk: String,
}

/// The JWK members WebCrypto's import reads, per key type (RFC 7518 §6, RFC 8037 §2): the
/// public ones, then the private ones. `alg`, `use` and `kid` are left out, so an import never
/// trips over a name WebCrypto spells otherwise.
fn webcrypto_members(kty: &str) -> (&'static [&'static str], &'static [&'static str]) {
    match kty {
        "OKP" => (&["kty", "crv", "x"], &["d"]),
        "EC" => (&["kty", "crv", "x", "y"], &["d"]),
        _ => (&["kty", "n", "e"], &["d", "p", "q", "dp", "dq", "qi"]),
    }
}

pub struct KeySet {
    keys: Vec<SigningKey>,
    public_jwks: Value,
}

/// Debug output names keys, never their material.
impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<(&str, &str)> = self
            .keys
            .iter()
            .map(|k| (k.kid.as_str(), k.alg.as_str()))
            .collect();
        f.debug_struct("KeySet").field("keys", &kids).finish()
    }
}

fn b64(bytes: &[u8]) -> String {
    Base64UrlUnpadded::encode_string(bytes)
}

/// The RFC 7638 thumbprint of a key, as a default `kid`.
fn thumbprint(jwk: &JsonWebKey<'_>) -> String {
    b64(&jwk.thumbprint::<Sha256>())
}

const RSA_PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi"];

/// The length of a big-endian integer without its leading zero bytes: an RSA modulus padded
/// with zeros is as weak as it is without them.
pub fn significant_len(be: &[u8]) -> usize {
    be.len() - be.iter().take_while(|b| **b == 0).count()
}

fn parse_key(i: usize, obj: &Map<String, Value>) -> Result<(SigningKey, Value), String> {
    let at = |m: &str| format!("SIGNING_KEYS key {i}: {m}");
    let raw = Value::Object(obj.clone());
    let jwk: JsonWebKey<'_> =
        serde_json::from_value(raw).map_err(|e| at(&format!("not a JWK: {e}")))?;
    let declared_kid = obj.get("kid").and_then(Value::as_str).map(str::to_owned);
    let public = jwk.to_verifying_key();
    let kid = declared_kid.unwrap_or_else(|| thumbprint(&public));
    if !jwk.is_signing_key() {
        return Err(at("is a public key: SIGNING_KEYS holds private keys"));
    }
    let (alg, material) = match &jwk {
        JsonWebKey::KeyPair { curve, .. } if curve == "Ed25519" => {
            let sk = ed25519_compact::SecretKey::try_from(&jwk).map_err(|e| at(&e.to_string()))?;
            (SigningAlg::EdDSA, Material::Ed25519(sk))
        }
        JsonWebKey::EllipticCurve { curve, .. } if curve == "P-256" => {
            let sk = p256::ecdsa::SigningKey::try_from(&jwk).map_err(|e| at(&e.to_string()))?;
            (SigningAlg::ES256, Material::Es256(sk))
        }
        JsonWebKey::Rsa { modulus, .. } => {
            if RSA_PRIVATE_MEMBERS.iter().any(|m| !obj.contains_key(*m)) {
                return Err(at("RSA keys need all of d, p, q, dp, dq, qi"));
            }
            if significant_len(modulus) < 256 {
                return Err(at("RSA keys must be at least 2048 bits"));
            }
            (SigningAlg::RS256, Material::Rsa)
        }
        _ => {
            return Err(at(
                "only Ed25519 (OKP), P-256 (EC) and RSA keys are supported",
            ))
        }
    };
    // An Ed25519 key may be declared by either name (RFC 9864); it signs under both.
    let alg = match obj.get("alg").and_then(Value::as_str) {
        Some(declared) => match SigningAlg::parse(declared).filter(|d| d.same_key_as(alg)) {
            Some(d) => d,
            None => {
                return Err(at(&format!(
                    "alg {declared} does not fit the key type ({})",
                    alg.as_str()
                )))
            }
        },
        None => alg,
    };
    let mut published = serde_json::to_value(&public).map_err(|e| at(&e.to_string()))?;
    if let Some(p) = published.as_object_mut() {
        p.insert("kid".into(), kid.clone().into());
        p.insert("alg".into(), alg.as_str().into());
        p.insert("use".into(), "sig".into());
    }
    let kty = obj.get("kty").and_then(Value::as_str).unwrap_or_default();
    let (public_members, private_members) = webcrypto_members(kty);
    let members = |names: &mut dyn Iterator<Item = &&str>| {
        Value::Object(
            names
                .filter_map(|m| obj.get(*m).map(|v| ((*m).to_owned(), v.clone())))
                .collect(),
        )
    };
    let key = SigningKey {
        kid,
        alg,
        material,
        private_jwk: members(&mut public_members.iter().chain(private_members)),
        public_jwk: members(&mut public_members.iter()).to_string(),
    };
    Ok((key, published))
}

impl KeySet {
    /// Parses the `SIGNING_KEYS` secret. Every key must be a usable private key.
    pub fn parse(json: &str) -> Result<KeySet, String> {
        let value: Value =
            serde_json::from_str(json).map_err(|e| format!("SIGNING_KEYS is not JSON: {e}"))?;
        let list = value
            .get("keys")
            .and_then(Value::as_array)
            .filter(|k| !k.is_empty())
            .ok_or("SIGNING_KEYS must be a JWK Set with at least one key")?;
        let mut keys = Vec::new();
        let mut published = Vec::new();
        for (i, k) in list.iter().enumerate() {
            let obj = k
                .as_object()
                .ok_or_else(|| format!("SIGNING_KEYS key {i}: not an object"))?;
            let (key, public) = parse_key(i, obj)?;
            if keys.iter().any(|other: &SigningKey| other.kid == key.kid) {
                return Err(format!("SIGNING_KEYS key {i}: duplicate kid {}", key.kid));
            }
            keys.push(key);
            published.push(public);
        }
        // Each Ed25519 key also signs under its other name (`EdDSA` / `Ed25519`, RFC 9864), as
        // its own JWK with its own `kid`, so that a client checks a token's `alg` against the
        // JWK's. After the keys of the set, so the set's order still chooses.
        let mut aliases = Vec::new();
        for k in &keys {
            if let Material::Ed25519(sk) = &k.material {
                let other = if k.alg == SigningAlg::Ed25519 {
                    SigningAlg::EdDSA
                } else {
                    SigningAlg::Ed25519
                };
                let kid = format!("{}.{}", k.kid, other.as_str());
                let mut public = published
                    .iter()
                    .find(|p| p.get("kid").and_then(Value::as_str) == Some(k.kid.as_str()))
                    .cloned()
                    .unwrap_or_default();
                if let Some(p) = public.as_object_mut() {
                    p.insert("kid".into(), kid.clone().into());
                    p.insert("alg".into(), other.as_str().into());
                }
                aliases.push((
                    SigningKey {
                        kid,
                        alg: other,
                        material: Material::Ed25519(sk.clone()),
                        private_jwk: k.private_jwk.clone(),
                        public_jwk: k.public_jwk.clone(),
                    },
                    public,
                ));
            }
        }
        for (key, public) in aliases {
            if keys.iter().any(|other: &SigningKey| other.kid == key.kid) {
                return Err(format!("SIGNING_KEYS: kid {} is taken", key.kid));
            }
            keys.push(key);
            published.push(public);
        }
        if !keys.iter().any(|k| k.alg != SigningAlg::RS256) {
            return Err("SIGNING_KEYS needs an Ed25519 or P-256 key to sign access tokens".into());
        }
        Ok(KeySet {
            keys,
            public_jwks: json!({ "keys": published }),
        })
    }

    /// What `/.well-known/jwks.json` publishes: public parts only.
    pub fn public_jwks(&self) -> &Value {
        &self.public_jwks
    }

    /// The key that signs access tokens: the first Ed25519 or P-256 key.
    pub fn access_token_key(&self) -> Option<&SigningKey> {
        self.keys.iter().find(|k| k.alg != SigningAlg::RS256)
    }

    /// The key that signs ID tokens for a client registered with `alg`.
    pub fn for_alg(&self, alg: SigningAlg) -> Option<&SigningKey> {
        self.keys.iter().find(|k| k.alg == alg)
    }

    /// Algorithms this key set can sign with, for the discovery documents.
    /// The algorithms some key signs with: what a client may register for.
    pub fn signing_algs(&self) -> Vec<SigningAlg> {
        let mut out: Vec<SigningAlg> = Vec::new();
        for k in &self.keys {
            if !out.contains(&k.alg) {
                out.push(k.alg);
            }
        }
        out
    }

    pub fn algs(&self) -> Vec<&'static str> {
        self.signing_algs().iter().map(|a| a.as_str()).collect()
    }

    pub fn by_kid(&self, kid: &str) -> Option<&SigningKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }
}

fn at(secs: u64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(i64::try_from(secs).ok()?, 0)
}

/// Standard time claims, in seconds since the epoch.
#[derive(Clone, Copy, Debug)]
pub struct Times {
    pub iat: u64,
    pub exp: u64,
}

/// A token up to its signature: what WebCrypto signs, with which algorithm and key.
pub struct ToSign<'k> {
    /// `base64url(header).base64url(claims)` (RFC 7515 §5.1).
    pub signing_input: String,
    pub alg: SigningAlg,
    /// The private key to import (`SigningKey::private_jwk`), borrowed: never copied per token.
    pub private_jwk: &'k Value,
    /// What names the key's import (`SigningKey::public_jwk`).
    pub key_name: &'k str,
}

impl SigningKey {
    /// Builds `claims` as a JWT of type `typ` (`at+jwt` for access tokens, `JWT` otherwise) up to
    /// its signature; `finish` appends the signature WebCrypto made over `signing_input`.
    pub fn to_sign<T: Serialize>(
        &self,
        typ: &str,
        times: Times,
        claims: T,
    ) -> Result<ToSign<'_>, String> {
        let mut c = Claims::new(claims);
        c.issued_at = at(times.iat);
        c.expiration = at(times.exp);
        let header = json!({ "alg": self.alg.as_str(), "kid": self.kid, "typ": typ });
        let h = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
        let p = serde_json::to_vec(&c).map_err(|e| e.to_string())?;
        Ok(ToSign {
            signing_input: format!("{}.{}", b64(&h), b64(&p)),
            alg: self.alg,
            private_jwk: &self.private_jwk,
            key_name: &self.public_jwk,
        })
    }

    /// Signs natively, as WebCrypto does at the edge: for this crate's tests only.
    #[cfg(test)]
    pub fn sign<T: Serialize>(&self, typ: &str, times: Times, claims: T) -> Result<String, String> {
        use p256::ecdsa::signature::Signer;
        let input = self.to_sign(typ, times, claims)?.signing_input;
        let signature = match &self.material {
            Material::Ed25519(sk) => sk.sign(input.as_bytes(), None).to_vec(),
            Material::Es256(sk) => {
                let sig: p256::ecdsa::Signature = sk.sign(input.as_bytes());
                sig.to_bytes().to_vec()
            }
            Material::Rsa => return Err("RSA signs in WebCrypto only".into()),
        };
        Ok(finish(&input, &signature))
    }
}

/// Appends a WebCrypto signature (raw: 64 bytes for Ed25519, r‖s for ES256, RFC 7518 §3.4)
/// to its signing input.
pub fn finish(signing_input: &str, signature: &[u8]) -> String {
    format!("{signing_input}.{}", b64(signature))
}

/// Why one of our own tokens was refused. Callers map every variant to `invalid_token`.
#[derive(Debug, PartialEq, Eq)]
pub enum VerifyError {
    Malformed,
    UnknownKey,
    WrongType,
    BadSignature,
    Expired,
    NotYetValid,
    /// The header's `crit` names extensions we do not understand (RFC 7515 §4.1.11).
    UnknownCritical,
}

/// The `crit` rule of RFC 7515 §4.1.11, for every JWT we verify, ours or others': a recipient
/// must refuse a JWS whose `crit` header parameter names an extension it does not understand,
/// and `crit` must be a non-empty array of names. We understand no extension, so a token with
/// any `crit` is refused before its signature is looked at; `Malformed` when `crit` is not a
/// non-empty array of strings, or the header cannot be read.
pub fn check_crit(token: &str) -> Result<(), VerifyError> {
    let header = token
        .split('.')
        .next()
        .and_then(|h| Base64UrlUnpadded::decode_vec(h).ok())
        .and_then(|h| serde_json::from_slice::<Map<String, Value>>(&h).ok())
        .ok_or(VerifyError::Malformed)?;
    match header.get("crit") {
        None => Ok(()),
        Some(Value::Array(names)) if !names.is_empty() && names.iter().all(Value::is_string) => {
            Err(VerifyError::UnknownCritical)
        }
        Some(_) => Err(VerifyError::Malformed),
    }
}

/// An RSA-signed token of ours, split for a WebCrypto verification.
pub struct RsaCheck<'k> {
    pub kid: String,
    /// The key's public half as WebCrypto imports it (`SigningKey::public_jwk`).
    pub public_jwk: &'k str,
    pub signing_input: String,
    pub signature: Vec<u8>,
    pub payload: Value,
}

/// For tokens whose `kid` is one of our RSA keys: the parts WebCrypto needs to verify them.
/// `None` when the token is not ours, not RS256, malformed or has a `crit` header.
pub fn rsa_check<'k>(keys: &'k KeySet, token: &str) -> Option<RsaCheck<'k>> {
    check_crit(token).ok()?;
    let untrusted = UntrustedToken::new(token).ok()?;
    let kid = untrusted.header().key_id.clone()?;
    let key = keys.by_kid(&kid)?;
    if !matches!(key.material, Material::Rsa) || untrusted.algorithm() != "RS256" {
        return None;
    }
    let (signing_input, sig) = token.rsplit_once('.')?;
    let signature = Base64UrlUnpadded::decode_vec(sig).ok()?;
    let payload_b64 = signing_input.split('.').nth(1)?;
    let payload = serde_json::from_slice(&Base64UrlUnpadded::decode_vec(payload_b64).ok()?).ok()?;
    Some(RsaCheck {
        kid,
        public_jwk: &key.public_jwk,
        signing_input: signing_input.to_owned(),
        signature,
        payload,
    })
}

/// Verifies a JWT we issued (Ed25519 or P-256): known `kid`, the key's own algorithm (no
/// `alg: none`, no algorithm confusion), the expected `typ`, signature, and `exp`/`nbf` at `now`
/// with `leeway_s` of clock skew. Claims such as `iss` and `aud` are the caller's to check.
pub fn verify<T: DeserializeOwned + Clone>(
    keys: &KeySet,
    token: &str,
    typ: &str,
    now: u64,
    leeway_s: u64,
) -> Result<Claims<T>, VerifyError> {
    let claims = verify_signature::<T>(keys, token, typ)?;
    check_times(&claims, now, leeway_s)?;
    Ok(claims)
}

/// One of our tokens whose header passed (a `kid` of ours, that key's own `alg`, the expected
/// `typ`, no `crit`): what WebCrypto verifies before [`accept`] reads its claims. Our own Ed25519
/// and P-256 tokens are verified this way at the edge (natively, not in WebAssembly).
pub struct ToVerify<'a> {
    token: UntrustedToken<'a>,
    /// The key that must have signed it (`public_jwk` is what WebCrypto imports).
    pub key: &'a SigningKey,
    /// `base64url(header).base64url(claims)`: what was signed.
    pub signing_input: &'a str,
}

impl ToVerify<'_> {
    pub fn signature(&self) -> &[u8] {
        self.token.signature_bytes()
    }
}

/// The header checks every verification of our tokens makes: no `crit`, a `kid` of ours, the
/// expected `typ`. The token and the key it names.
fn our_header<'a>(
    keys: &'a KeySet,
    token: &'a str,
    typ: &str,
) -> Result<(UntrustedToken<'a>, &'a SigningKey), VerifyError> {
    check_crit(token)?;
    let untrusted = UntrustedToken::new(token).map_err(|_| VerifyError::Malformed)?;
    let header = untrusted.header();
    let kid = header.key_id.as_deref().ok_or(VerifyError::UnknownKey)?;
    let key = keys.by_kid(kid).ok_or(VerifyError::UnknownKey)?;
    if header
        .token_type
        .as_deref()
        .map(|t| t.eq_ignore_ascii_case(typ))
        != Some(true)
    {
        return Err(VerifyError::WrongType);
    }
    Ok((untrusted, key))
}

/// The header checks of [`verify_signature`], for a signature WebCrypto verifies. An RSA `kid`
/// is `UnknownKey`: we never issue RSA-signed tokens of the kinds checked this way.
pub fn to_verify<'a>(
    keys: &'a KeySet,
    token: &'a str,
    typ: &str,
) -> Result<ToVerify<'a>, VerifyError> {
    let (untrusted, key) = our_header(keys, token, typ)?;
    if matches!(key.material, Material::Rsa) {
        return Err(VerifyError::UnknownKey);
    }
    // The key's own algorithm under its own name: no `none`, no confusion, and each kid of an
    // Ed25519 key verifies under one of its two names only.
    if untrusted.algorithm() != key.alg.as_str() {
        return Err(VerifyError::BadSignature);
    }
    let (signing_input, _) = token.rsplit_once('.').ok_or(VerifyError::Malformed)?;
    Ok(ToVerify {
        token: untrusted,
        key,
        signing_input,
    })
}

/// The claims of a token whose signature WebCrypto found good, with `exp`/`nbf` checked at
/// `now` (`leeway_s` of clock skew): the rest of [`verify`].
pub fn accept<T: DeserializeOwned + Clone>(
    verified: ToVerify<'_>,
    now: u64,
    leeway_s: u64,
) -> Result<Claims<T>, VerifyError> {
    let claims = verified
        .token
        .deserialize_claims_unchecked::<T>()
        .map_err(|_| VerifyError::Malformed)?;
    check_times(&claims, now, leeway_s)?;
    Ok(claims)
}

/// Signature, key and type checks only: for hints (such as a logout's `id_token_hint`) that
/// may have expired and still identify who they were issued to.
pub fn verify_signature<T: DeserializeOwned + Clone>(
    keys: &KeySet,
    token: &str,
    typ: &str,
) -> Result<Claims<T>, VerifyError> {
    let (untrusted, key) = our_header(keys, token, typ)?;
    let token = match &key.material {
        Material::Ed25519(sk) if key.alg == SigningAlg::Ed25519 => Ed25519::with_specific_name()
            .validator::<T>(&sk.public_key())
            .validate(&untrusted)
            .map_err(|_| VerifyError::BadSignature)?,
        Material::Ed25519(sk) => Ed25519
            .validator::<T>(&sk.public_key())
            .validate(&untrusted)
            .map_err(|_| VerifyError::BadSignature)?,
        Material::Es256(sk) => Es256
            .validator::<T>(sk.verifying_key())
            .validate(&untrusted)
            .map_err(|_| VerifyError::BadSignature)?,
        // We never issue RSA-signed access tokens; an RSA kid here is a confusion attempt.
        Material::Rsa => return Err(VerifyError::UnknownKey),
    };
    Ok(token.claims().clone())
}

fn check_times<T>(claims: &Claims<T>, now: u64, leeway_s: u64) -> Result<(), VerifyError> {
    // RFC 7519 §4.1.4: the token is expired once the time reaches `exp`; `exp` is required.
    let exp = claims.expiration.ok_or(VerifyError::Expired)?.timestamp();
    let now = i64::try_from(now).map_err(|_| VerifyError::Malformed)?;
    let leeway = i64::try_from(leeway_s).unwrap_or(0);
    if now >= exp.saturating_add(leeway) {
        return Err(VerifyError::Expired);
    }
    if let Some(nbf) = claims.not_before {
        if now.saturating_add(leeway) < nbf.timestamp() {
            return Err(VerifyError::NotYetValid);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::borrow::Cow;

    #[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
    struct C {
        sub: String,
    }

    fn set(keys: Vec<Value>) -> Result<KeySet, String> {
        KeySet::parse(&json!({ "keys": keys }).to_string())
    }

    fn ed25519_jwk_from_seed(seed: [u8; 32]) -> Value {
        let kp = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(seed));
        let jwk = JsonWebKey::KeyPair {
            curve: Cow::Borrowed("Ed25519"),
            x: Cow::Borrowed(&kp.pk[..]),
            secret: Some(jwt_compact::alg::SecretBytes::borrowed(&kp.sk[..32])),
        };
        serde_json::to_value(&jwk).unwrap()
    }

    fn ed(seed: u8) -> Value {
        ed25519_jwk_from_seed([seed; 32])
    }

    const T: Times = Times {
        iat: 1_000,
        exp: 1_300,
    };

    fn token(keys: &KeySet, typ: &str) -> String {
        keys.access_token_key()
            .unwrap()
            .sign(
                typ,
                T,
                C {
                    sub: "alice".into(),
                },
            )
            .unwrap()
    }

    /// The edge's steps (`to_verify`, WebCrypto, `accept`) with jwt-compact in WebCrypto's
    /// place agree with `verify` on every token: good, wrong type, unknown kid, forged, expired.
    #[test]
    fn to_verify_then_accept_agrees_with_verify() {
        let keys = set(vec![ed(1)]).unwrap();
        let other = set(vec![ed(2)]).unwrap();
        let good = token(&keys, "at+jwt");
        let mut forged = good.clone();
        forged.replace_range(forged.len() - 3.., "AAA");
        let cases = [
            (good.clone(), "at+jwt", 1_100),
            (good.clone(), "JWT", 1_100),
            (good.clone(), "at+jwt", 1_300),
            (token(&other, "at+jwt"), "at+jwt", 1_100),
            (forged, "at+jwt", 1_100),
            ("not.a.jwt".to_owned(), "at+jwt", 1_100),
        ];
        for (t, typ, now) in cases {
            let edge = to_verify(&keys, &t, typ).and_then(|v| {
                let Material::Ed25519(sk) = &v.key.material else {
                    panic!("an Ed25519 key")
                };
                let sig = ed25519_compact::Signature::from_slice(v.signature())
                    .map_err(|_| VerifyError::BadSignature)?;
                sk.public_key()
                    .verify(v.signing_input.as_bytes(), &sig)
                    .map_err(|_| VerifyError::BadSignature)?;
                let public: Value = serde_json::from_str(&v.key.public_jwk).unwrap();
                assert_eq!(public["kty"], "OKP");
                assert!(public.get("d").is_none(), "no private part");
                accept::<C>(v, now, 0)
            });
            assert_eq!(
                edge.map(|c| c.custom),
                verify::<C>(&keys, &t, typ, now, 0).map(|c| c.custom),
                "{typ} at {now}"
            );
        }
    }

    #[test]
    fn our_tokens_with_a_crit_header_are_refused() {
        let keys = set(vec![ed(1)]).unwrap();
        let kid = keys.access_token_key().unwrap().kid.clone();
        let kp = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([1; 32]));
        let signed = |header: Value| {
            let part = |v: &Value| b64(&serde_json::to_vec(v).unwrap());
            let input = format!(
                "{}.{}",
                part(&header),
                part(&json!({"sub":"alice","iat":1000,"exp":1300}))
            );
            format!(
                "{input}.{}",
                b64(kp.sk.sign(input.as_bytes(), None).as_ref())
            )
        };
        let plain = signed(json!({"alg":"EdDSA","typ":"at+jwt","kid":kid}));
        assert!(verify::<C>(&keys, &plain, "at+jwt", 1_100, 0).is_ok());
        let with = |crit: Value| {
            let t = signed(json!({"alg":"EdDSA","typ":"at+jwt","kid":kid,"crit":crit}));
            verify::<C>(&keys, &t, "at+jwt", 1_100, 0).unwrap_err()
        };
        assert_eq!(with(json!(["exp"])), VerifyError::UnknownCritical);
        assert_eq!(with(json!(["x-anything"])), VerifyError::UnknownCritical);
        for malformed in [json!([]), json!("exp"), json!([7]), json!(null)] {
            assert_eq!(
                with(malformed.clone()),
                VerifyError::Malformed,
                "{malformed}"
            );
        }
    }

    #[test]
    fn signed_access_token_verifies_within_its_lifetime() {
        let keys = set(vec![ed(1)]).unwrap();
        let t = token(&keys, "at+jwt");
        let claims = verify::<C>(&keys, &t, "at+jwt", 1_100, 0).unwrap();
        assert_eq!(claims.custom.sub, "alice");
        assert_eq!(
            verify::<C>(&keys, &t, "at+jwt", 1_300, 0).unwrap_err(),
            VerifyError::Expired
        );
        assert!(
            verify::<C>(&keys, &t, "at+jwt", 1_310, 30).is_ok(),
            "leeway"
        );
        assert_eq!(
            verify::<C>(&keys, &t, "JWT", 1_100, 0).unwrap_err(),
            VerifyError::WrongType
        );
    }

    #[test]
    fn public_jwks_has_no_private_parts() {
        let keys = set(vec![ed(1), ed(2)]).unwrap();
        let jwks = keys.public_jwks().to_string();
        assert!(!jwks.contains("\"d\""));
        // Each Ed25519 key under both of its names, each with its own kid.
        let published = keys.public_jwks()["keys"].as_array().unwrap();
        assert_eq!(published.len(), 4);
        assert_eq!(published[0]["alg"], "EdDSA");
        assert_eq!(published[0]["use"], "sig");
        assert_eq!(published[2]["alg"], "Ed25519");
        assert_eq!(published[2]["x"], published[0]["x"]);
        assert_eq!(
            published[2]["kid"],
            format!("{}.Ed25519", published[0]["kid"].as_str().unwrap())
        );
    }

    #[test]
    fn an_ed25519_key_signs_under_both_names_and_each_verifies_only_as_itself() {
        let keys = set(vec![ed(1)]).unwrap();
        assert_eq!(keys.algs(), vec!["EdDSA", "Ed25519"]);
        assert_eq!(
            keys.access_token_key().unwrap().alg,
            SigningAlg::EdDSA,
            "the set's order"
        );
        let renamed = keys.for_alg(SigningAlg::Ed25519).unwrap();
        let t = renamed
            .sign(
                "at+jwt",
                Times {
                    iat: 1_000,
                    exp: 1_300,
                },
                C { sub: "a".into() },
            )
            .unwrap();
        let header = UntrustedToken::new(&t).unwrap().header().clone();
        assert_eq!(UntrustedToken::new(&t).unwrap().algorithm(), "Ed25519");
        assert_eq!(header.key_id.as_deref(), Some(renamed.kid.as_str()));
        assert!(verify::<C>(&keys, &t, "at+jwt", 1_100, 0).is_ok());
        // A token validly signed by the same key, but naming the other kid than its name's, is
        // refused: each kid verifies under one name only (both ways round).
        for (kid_of, named) in [
            (SigningAlg::EdDSA, SigningAlg::Ed25519),
            (SigningAlg::Ed25519, SigningAlg::EdDSA),
        ] {
            let key = keys.for_alg(kid_of).unwrap();
            let mismatched = SigningKey {
                kid: key.kid.clone(),
                alg: named,
                material: match &key.material {
                    Material::Ed25519(sk) => Material::Ed25519(sk.clone()),
                    _ => panic!("an Ed25519 key"),
                },
                private_jwk: key.private_jwk.clone(),
                public_jwk: key.public_jwk.clone(),
            };
            let forged = mismatched
                .sign(
                    "at+jwt",
                    Times {
                        iat: 1_000,
                        exp: 1_300,
                    },
                    C { sub: "a".into() },
                )
                .unwrap();
            assert_eq!(
                UntrustedToken::new(&forged).unwrap().algorithm(),
                named.as_str()
            );
            assert_eq!(
                verify::<C>(&keys, &forged, "at+jwt", 1_100, 0).unwrap_err(),
                VerifyError::BadSignature,
                "the {kid_of:?} kid does not verify a {named:?} token"
            );
        }
    }

    #[test]
    fn token_from_a_retired_key_is_refused_and_from_a_published_one_accepted() {
        let old = set(vec![ed(1)]).unwrap();
        let t = token(&old, "at+jwt");
        let rotated = set(vec![ed(2), ed(1)]).unwrap();
        assert!(verify::<C>(&rotated, &t, "at+jwt", 1_100, 0).is_ok());
        let retired = set(vec![ed(2)]).unwrap();
        assert_eq!(
            verify::<C>(&retired, &t, "at+jwt", 1_100, 0).unwrap_err(),
            VerifyError::UnknownKey
        );
    }

    #[test]
    fn forged_tokens_are_refused() {
        let keys = set(vec![ed(1)]).unwrap();
        let other = set(vec![ed(9)]).unwrap();
        let good = token(&keys, "at+jwt");
        let kid = keys.access_token_key().unwrap().kid.clone();
        let parts: Vec<&str> = good.split('.').collect();
        let enc = |v: Value| b64(v.to_string().as_bytes());
        // alg: none
        let none = format!(
            "{}.{}.",
            enc(json!({"alg":"none","kid":kid,"typ":"at+jwt"})),
            parts[1]
        );
        assert!(verify::<C>(&keys, &none, "at+jwt", 1_100, 0).is_err());
        // HS256 "signed" with the public key
        let hs = format!(
            "{}.{}.{}",
            enc(json!({"alg":"HS256","kid":kid,"typ":"at+jwt"})),
            parts[1],
            parts[2]
        );
        assert_eq!(
            verify::<C>(&keys, &hs, "at+jwt", 1_100, 0).unwrap_err(),
            VerifyError::BadSignature
        );
        // tampered payload
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            enc(json!({"sub":"mallory","exp":1300})),
            parts[2]
        );
        assert_eq!(
            verify::<C>(&keys, &tampered, "at+jwt", 1_100, 0).unwrap_err(),
            VerifyError::BadSignature
        );
        // signed by another key under our kid
        let foreign = token(&other, "at+jwt");
        let fparts: Vec<&str> = foreign.split('.').collect();
        let swapped = format!("{}.{}.{}", parts[0], fparts[1], fparts[2]);
        assert_eq!(
            verify::<C>(&keys, &swapped, "at+jwt", 1_100, 0).unwrap_err(),
            VerifyError::BadSignature
        );
        // unknown kid
        assert_eq!(
            verify::<C>(&keys, &foreign, "at+jwt", 1_100, 0).unwrap_err(),
            VerifyError::UnknownKey
        );
        assert_eq!(
            verify::<C>(&keys, "garbage", "at+jwt", 1_100, 0).unwrap_err(),
            VerifyError::Malformed
        );
    }

    #[test]
    fn key_set_refuses_public_keys_bad_algs_and_rsa_only_sets() {
        let mut public = ed(1);
        public.as_object_mut().unwrap().remove("d");
        assert!(set(vec![public]).unwrap_err().contains("public key"));
        let mut wrong_alg = ed(1);
        wrong_alg
            .as_object_mut()
            .unwrap()
            .insert("alg".into(), "RS256".into());
        assert!(set(vec![wrong_alg]).is_err());
        assert!(set(vec![]).is_err());
        assert!(KeySet::parse("not json").is_err());
        assert!(set(vec![json!({"kty":"oct","k":"c2VjcmV0"})]).is_err());
        assert!(set(vec![ed(1), ed(1)])
            .unwrap_err()
            .contains("duplicate kid"));
    }

    #[test]
    fn es256_keys_sign_and_verify() {
        let sk = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap();
        let jwk = serde_json::to_value(JsonWebKey::from(&sk)).unwrap();
        let keys = set(vec![jwk]).unwrap();
        assert_eq!(keys.access_token_key().unwrap().alg, SigningAlg::ES256);
        let t = token(&keys, "at+jwt");
        assert!(verify::<C>(&keys, &t, "at+jwt", 1_100, 0).is_ok());
    }
}
