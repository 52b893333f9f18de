//! `otpgate sms ...` and `otpgate app-hash` (being written).

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// `otpgate app-hash`.
#[derive(Debug, Clone, Args)]
pub struct AppHashArgs {
    /// The Android package name.
    #[arg(long)]
    pub package: String,
    /// The signing certificate, PEM or DER.
    #[arg(long)]
    pub cert: PathBuf,
}

/// `otpgate sms ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum SmsCommand {
    /// Reads the message from stdin and prints what a phone or browser would extract.
    Parse,
    /// Reads the message from stdin and prints its encoding and segment count.
    Segments,
}

/// Runs an `sms` command.
///
/// # Errors
/// Bad input.
pub fn run(_cmd: SmsCommand) -> anyhow::Result<()> {
    anyhow::bail!("not yet implemented")
}

/// Runs `app-hash`.
///
/// # Errors
/// Bad input.
pub fn app_hash(_args: &AppHashArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet implemented")
}
