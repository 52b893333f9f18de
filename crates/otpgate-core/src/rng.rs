//! The injected source of randomness.

/// The random source failed; nothing secret can be generated safely.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[error("the secure random source is unavailable")]
pub struct RngUnavailable;

/// A cryptographically secure random source, injected by the caller.
///
/// The issuer passes the operating system's CSPRNG, the wasm client the browser's
/// `crypto.getRandomValues`, tests a seeded generator.
pub trait SecureRandom {
    /// Fills `dest` with random bytes.
    ///
    /// # Errors
    /// [`RngUnavailable`] when the source cannot produce bytes.
    fn fill(&mut self, dest: &mut [u8]) -> Result<(), RngUnavailable>;
}

impl<R: SecureRandom + ?Sized> SecureRandom for &mut R {
    fn fill(&mut self, dest: &mut [u8]) -> Result<(), RngUnavailable> {
        (**self).fill(dest)
    }
}
