//! Receipt signing keys and code keys (being written).

/// Runs `otpgate keys ...`.
///
/// # Errors
/// I/O failures.
pub fn run_cli(_cmd: crate::cli::KeysCommand) -> anyhow::Result<()> {
    anyhow::bail!("not yet implemented")
}
