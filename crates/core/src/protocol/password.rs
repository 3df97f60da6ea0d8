//! Password hashing: Argon2id with OWASP's first recommended setting (m = 19 MiB, t = 2, p = 1),
//! stored in the PHC string format. Verification reads the parameters from the stored string,
//! so the setting can be raised later without invalidating existing hashes.
//!
//! Cost: one hash is tens of milliseconds of CPU in WebAssembly, so logins need the Workers Paid
//! plan's CPU limits; no setting that OWASP recommends fits in the free plan's 10 ms.

use argon2::{Algorithm, Argon2, Params, Version};
use base64ct::{Base64Unpadded, Encoding};
use subtle::ConstantTimeEq;

pub const SALT_LEN: usize = 16;
const OUTPUT_LEN: usize = 32;

/// The parameters new hashes are made with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashCost {
    pub m_kib: u32,
    pub t: u32,
    pub p: u32,
}

pub const OWASP_ARGON2ID: HashCost = HashCost {
    m_kib: 19_456,
    t: 2,
    p: 1,
};

/// Stored hashes with a higher cost than this are refused rather than computed (a corrupted or
/// planted record must not make one login burn the isolate's memory).
const MAX_M_KIB: u32 = 65_536;
const MAX_T: u32 = 10;

fn argon2(cost: HashCost) -> Option<Argon2<'static>> {
    let params = Params::new(cost.m_kib, cost.t, cost.p, Some(OUTPUT_LEN)).ok()?;
    Some(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn derive(password: &[u8], salt: &[u8], cost: HashCost) -> Option<[u8; OUTPUT_LEN]> {
    let mut out = [0u8; OUTPUT_LEN];
    argon2(cost)?
        .hash_password_into(password, salt, &mut out)
        .ok()?;
    Some(out)
}

/// Hashes `password` with `salt` (random, from the caller) into a PHC string.
pub fn hash_password(password: &str, salt: &[u8; SALT_LEN], cost: HashCost) -> Option<String> {
    let out = derive(password.as_bytes(), salt, cost)?;
    Some(format!(
        "$argon2id$v=19$m={},t={},p={}${}${}",
        cost.m_kib,
        cost.t,
        cost.p,
        Base64Unpadded::encode_string(salt),
        Base64Unpadded::encode_string(&out)
    ))
}

struct Parsed {
    cost: HashCost,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

fn parse_phc(phc: &str) -> Option<Parsed> {
    let mut parts = phc.split('$');
    if !parts.next()?.is_empty() || parts.next()? != "argon2id" || parts.next()? != "v=19" {
        return None;
    }
    let mut cost = HashCost {
        m_kib: 0,
        t: 0,
        p: 0,
    };
    for kv in parts.next()?.split(',') {
        let (k, v) = kv.split_once('=')?;
        let v: u32 = v.parse().ok()?;
        match k {
            "m" => cost.m_kib = v,
            "t" => cost.t = v,
            "p" => cost.p = v,
            _ => return None,
        }
    }
    if cost.m_kib > MAX_M_KIB || cost.t > MAX_T || cost.t == 0 || cost.p != 1 {
        return None;
    }
    let salt = Base64Unpadded::decode_vec(parts.next()?).ok()?;
    let hash = Base64Unpadded::decode_vec(parts.next()?).ok()?;
    if parts.next().is_some() || hash.len() != OUTPUT_LEN || salt.len() < 8 {
        return None;
    }
    Some(Parsed { cost, salt, hash })
}

/// Whether `password` matches the stored PHC string, compared in constant time. A malformed
/// stored hash never matches.
pub fn verify_password(password: &str, phc: &str) -> bool {
    let Some(parsed) = parse_phc(phc) else {
        return false;
    };
    match derive(password.as_bytes(), &parsed.salt, parsed.cost) {
        Some(out) => bool::from(out.as_slice().ct_eq(parsed.hash.as_slice())),
        None => false,
    }
}

/// Spends the same work as a real verification, for a user that does not exist, so the answer
/// time does not tell whether a username is known.
pub fn verify_against_nothing(password: &str, cost: HashCost) -> bool {
    let _ = derive(password.as_bytes(), &[0u8; SALT_LEN], cost);
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    // Cheap parameters keep native tests fast; the format and logic are the same.
    const CHEAP: HashCost = HashCost {
        m_kib: 64,
        t: 1,
        p: 1,
    };

    #[test]
    fn hash_then_verify_round_trips() {
        let phc = hash_password("correct horse", &[7; SALT_LEN], CHEAP).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        assert!(verify_password("correct horse", &phc));
        assert!(!verify_password("correct horsE", &phc));
        assert!(!verify_password("", &phc));
    }

    #[test]
    fn same_password_different_salt_differs() {
        let a = hash_password("pw", &[1; SALT_LEN], CHEAP).unwrap();
        let b = hash_password("pw", &[2; SALT_LEN], CHEAP).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn owasp_parameters_are_what_new_hashes_use() {
        assert_eq!(
            OWASP_ARGON2ID,
            HashCost {
                m_kib: 19_456,
                t: 2,
                p: 1
            }
        );
    }

    #[test]
    fn malformed_or_too_costly_stored_hashes_never_match() {
        let good = hash_password("pw", &[3; SALT_LEN], CHEAP).unwrap();
        let tampered = [
            good.replace("argon2id", "argon2i"),
            good.replace("v=19", "v=16"),
            good.replace("m=64", "m=10000000"),
            good.replace("t=1", "t=0"),
            good.replace("p=1", "p=4"),
            format!("{good}$extra"),
            good[..good.len() - 4].to_owned(),
            String::new(),
            "plaintext".to_owned(),
        ];
        for t in tampered {
            assert!(!verify_password("pw", &t), "{t}");
        }
    }

    #[test]
    fn unknown_user_verification_is_always_false() {
        assert!(!verify_against_nothing("pw", CHEAP));
    }
}
