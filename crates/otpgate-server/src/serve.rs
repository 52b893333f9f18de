//! `otpgate serve` (being written).

/// Runs the issuer.
///
/// # Errors
/// Configuration or start-up failures.
pub fn run(_args: crate::cli::ServeArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet implemented")
}
