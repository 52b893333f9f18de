//! The emulated phone (being written).

/// Runs `otpgate emulator`.
///
/// # Errors
/// Start-up failures.
pub fn run_cli(_args: crate::cli::EmulatorArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet implemented")
}
