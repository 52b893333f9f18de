//! The hash-chained audit log (being written).

/// Runs `otpgate audit ...`.
///
/// # Errors
/// I/O failures or a broken chain.
pub fn run_cli(_cmd: crate::cli::AuditCommand) -> anyhow::Result<()> {
    anyhow::bail!("not yet implemented")
}
