//! Randomness, read only here and only inside a request (Workers forbid it at start-up).

use crate::protocol::error::ApiError;

pub fn bytes<const N: usize>() -> Result<[u8; N], ApiError> {
    let mut out = [0u8; N];
    getrandom::getrandom(&mut out).map_err(|e| ApiError::unavailable(format!("getrandom: {e}")))?;
    Ok(out)
}
