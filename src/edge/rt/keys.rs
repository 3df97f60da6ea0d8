//! Our signing keys at the edge: `SIGNING_KEYS` parsed once per isolate, every signature made by
//! the runtime's WebCrypto (each key imported once per isolate), and RS256 verification.

use crate::protocol::error::ApiError;
use crate::protocol::jwk::SigningAlg;
use crate::protocol::keys::{finish, KeySet, SigningKey, Times, VerifyError};
use js_sys::{Array, Object, Reflect, Uint8Array, JSON};
use serde::Serialize;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{CryptoKey, SubtleCrypto};
use worker::Env;

thread_local! {
    // Parsed once: a secret does not change in an isolate's life (a new secret is a new
    // version of the Worker, in new isolates).
    static KEYS: RefCell<Option<Rc<KeySet>>> = const { RefCell::new(None) };
    // Imported private keys, named by their public half (what they are, not what they are
    // called, so an import that lands after the secret changed never signs under a reused kid).
    static PRIVATE_KEYS: RefCell<HashMap<String, CryptoKey>> = RefCell::new(HashMap::new());
    // Imported public keys, named by their JWK text (what they are, not what they are called).
    static PUBLIC_KEYS: RefCell<HashMap<String, CryptoKey>> = RefCell::new(HashMap::new());
}

/// The parsed key set. Missing or invalid keys close everything that signs or verifies (503).
pub fn key_set(env: &Env) -> Result<Rc<KeySet>, ApiError> {
    if let Some(hit) = KEYS.with(|k| k.borrow().clone()) {
        return Ok(hit);
    }
    let raw = env
        .secret("SIGNING_KEYS")
        .map(|s| s.to_string())
        .map_err(|_| ApiError::unavailable("SIGNING_KEYS is not set"))?;
    let set = Rc::new(KeySet::parse(&raw).map_err(ApiError::unavailable)?);
    KEYS.with(|k| *k.borrow_mut() = Some(set.clone()));
    Ok(set)
}

fn js_err(what: &str) -> impl Fn(JsValue) -> ApiError + '_ {
    move |e| ApiError::unavailable(format!("webcrypto {what}: {e:?}"))
}

fn subtle() -> Result<SubtleCrypto, ApiError> {
    let crypto =
        Reflect::get(&js_sys::global(), &JsValue::from_str("crypto")).map_err(js_err("crypto"))?;
    let subtle = Reflect::get(&crypto, &JsValue::from_str("subtle")).map_err(js_err("subtle"))?;
    Ok(subtle.unchecked_into())
}

/// A WebCrypto algorithm object: `{name}`, with `hash` or `namedCurve` when given.
fn algorithm(name: &str, extra: Option<(&str, &str)>) -> Result<Object, ApiError> {
    let algo = Object::new();
    Reflect::set(&algo, &"name".into(), &name.into()).map_err(js_err("algorithm"))?;
    if let Some((k, v)) = extra {
        Reflect::set(&algo, &k.into(), &v.into()).map_err(js_err("algorithm"))?;
    }
    Ok(algo)
}

/// How WebCrypto imports a key of `alg`, and how it signs with it. Its signatures are already
/// in JWS form: 64 bytes for Ed25519, r‖s for ECDSA (RFC 7518 §3.4).
fn webcrypto_algorithms(alg: SigningAlg) -> Result<(Object, Object), ApiError> {
    Ok(match alg {
        SigningAlg::EdDSA | SigningAlg::Ed25519 => {
            (algorithm("Ed25519", None)?, algorithm("Ed25519", None)?)
        }
        SigningAlg::ES256 => (
            algorithm("ECDSA", Some(("namedCurve", "P-256")))?,
            algorithm("ECDSA", Some(("hash", "SHA-256")))?,
        ),
        SigningAlg::RS256 => {
            let rsa = algorithm("RSASSA-PKCS1-v1_5", Some(("hash", "SHA-256")))?;
            (rsa.clone(), rsa)
        }
    })
}

/// Most keys kept imported per isolate in each cache (ours, partners', clients'); past it, the
/// imports start over.
const MAX_IMPORTED: usize = 512;

/// The key of `jwk` (JSON text, made only when it is not cached) imported for `usage` ("sign" or "verify"), non-extractable, from
/// `cache` when it was imported before. A key is named by its public half, which `protocol`
/// makes once per key: nothing is serialized per signature.
async fn imported(
    cache: &'static std::thread::LocalKey<RefCell<HashMap<String, CryptoKey>>>,
    name: &str,
    jwk: impl FnOnce() -> String,
    import: &Object,
    usage: &str,
) -> Result<CryptoKey, JsValue> {
    if let Some(k) = cache.with(|m| m.borrow().get(name).cloned()) {
        return Ok(k);
    }
    let jwk = JSON::parse(&jwk())?;
    let promise = subtle()
        .map_err(|e| JsValue::from_str(&e.description))?
        .import_key_with_object(
            "jwk",
            &jwk.unchecked_into(),
            import,
            false,
            &Array::of1(&usage.into()),
        )?;
    let key: CryptoKey = JsFuture::from(promise).await?.unchecked_into();
    cache.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() >= MAX_IMPORTED {
            m.clear();
        }
        m.insert(name.to_owned(), key.clone());
    });
    Ok(key)
}

/// Signs claims with `key` in WebCrypto: the token is built by `protocol::keys`, signed here.
pub async fn sign<T: Serialize>(
    key: &SigningKey,
    typ: &str,
    times: Times,
    claims: T,
) -> Result<String, ApiError> {
    let to_sign = key
        .to_sign(typ, times, claims)
        .map_err(|e| ApiError::unavailable(format!("sign: {e}")))?;
    let (import, with) = webcrypto_algorithms(to_sign.alg)?;
    let private = || to_sign.private_jwk.to_string();
    let crypto_key = imported(&PRIVATE_KEYS, to_sign.key_name, private, &import, "sign")
        .await
        .map_err(js_err("importKey"))?;
    let promise = subtle()?
        .sign_with_object_and_u8_array(&with, &crypto_key, to_sign.signing_input.as_bytes())
        .map_err(js_err("sign"))?;
    let sig = JsFuture::from(promise).await.map_err(js_err("sign"))?;
    Ok(finish(
        &to_sign.signing_input,
        &Uint8Array::new(&sig).to_vec(),
    ))
}

/// Verifies a signature of `alg` by the key `public_jwk` (JSON text) with WebCrypto. `Some(())`
/// only when it is valid; a key WebCrypto cannot import verifies nothing.
pub async fn webcrypto_verify(
    alg: SigningAlg,
    public_jwk: &str,
    input: &str,
    signature: &[u8],
) -> Option<()> {
    let (import, with) = webcrypto_algorithms(alg).ok()?;
    let key = imported(
        &PUBLIC_KEYS,
        public_jwk,
        || public_jwk.to_owned(),
        &import,
        "verify",
    )
    .await
    .ok()?;
    let sig = Uint8Array::from(signature);
    let promise = subtle()
        .ok()?
        .verify_with_object_and_buffer_source_and_u8_array(&with, &key, &sig, input.as_bytes())
        .ok()?;
    let ok = JsFuture::from(promise).await.ok()?;
    ok.as_bool().filter(|v| *v).map(|_| ())
}

/// Verifies one of our own tokens (Ed25519 or P-256): the header checks of `protocol::keys`,
/// the signature in WebCrypto, then its claims and times.
pub async fn verify_ours<T: serde::de::DeserializeOwned + Clone>(
    keys: &KeySet,
    token: &str,
    typ: &str,
    now: u64,
    leeway_s: u64,
) -> Result<crate::protocol::keys::Claims<T>, VerifyError> {
    let checked = crate::protocol::keys::to_verify(keys, token, typ)?;
    webcrypto_verify(
        checked.key.alg,
        &checked.key.public_jwk,
        checked.signing_input,
        checked.signature(),
    )
    .await
    .ok_or(VerifyError::BadSignature)?;
    crate::protocol::keys::accept(checked, now, leeway_s)
}

/// Verifies a JWT signed with someone else's public keys (a client's or a partner's): the key
/// chosen and the header checked by `protocol::assertion`, the signature in WebCrypto. The
/// payload, once the signature is good.
pub async fn verify_external(
    keys: &[crate::protocol::assertion::PublicKey],
    token: &str,
) -> Result<serde_json::Value, crate::protocol::assertion::AssertionError> {
    use crate::protocol::assertion::{signature_to_verify, AssertionError};
    let s = signature_to_verify(keys, token)?;
    webcrypto_verify(s.alg, s.public_jwk, &s.signing_input, &s.signature)
        .await
        .map(|()| s.payload)
        .ok_or(AssertionError::BadSignature)
}
