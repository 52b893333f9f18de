//! `otpgate app-hash`: the 11-character SMS Retriever hash of an Android app, from its
//! package name and app-signing certificate (`otpgate_core::sms::app_hash`).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use otpgate_core::sms;

/// `otpgate app-hash`.
#[derive(Debug, Clone, Args)]
pub struct AppHashArgs {
    /// The Android package name (e.g. com.example.app).
    #[arg(long)]
    pub package: String,
    /// The app-signing certificate, PEM or DER (e.g. the Play Console's deployment_cert.der).
    #[arg(long)]
    pub cert: PathBuf,
}

/// Runs `otpgate app-hash`.
///
/// # Errors
/// An unreadable file, a bad certificate or package name.
pub fn run(args: &AppHashArgs) -> anyhow::Result<()> {
    let cert = std::fs::read(&args.cert)
        .with_context(|| format!("cannot read {}", args.cert.display()))?;
    let hash = sms::app_hash(&args.package, &cert)
        .map_err(|e| anyhow::anyhow!("{}: {e} [{}]", args.cert.display(), e.code()))?;
    println!("{hash}");
    Ok(())
}
