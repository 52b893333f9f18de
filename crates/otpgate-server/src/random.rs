//! The operating system's CSPRNG behind [`otpgate_core::SecureRandom`].

use otpgate_core::rng::{RngUnavailable, SecureRandom};

/// The OS CSPRNG (`getrandom`).
#[derive(Clone, Copy, Debug, Default)]
pub struct OsRandom;

impl SecureRandom for OsRandom {
    fn fill(&mut self, dest: &mut [u8]) -> Result<(), RngUnavailable> {
        getrandom::fill(dest).map_err(|_| RngUnavailable)
    }
}

/// `n` random bytes from the OS.
///
/// # Errors
/// [`RngUnavailable`].
pub fn bytes(n: usize) -> Result<Vec<u8>, RngUnavailable> {
    let mut v = vec![0; n];
    OsRandom.fill(&mut v)?;
    Ok(v)
}

/// A random identifier: `prefix` + 22 base64url characters (128 bits).
///
/// # Errors
/// [`RngUnavailable`].
pub fn id(prefix: &str) -> Result<String, RngUnavailable> {
    use base64::Engine as _;
    let b = bytes(16)?;
    Ok(format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    ))
}
