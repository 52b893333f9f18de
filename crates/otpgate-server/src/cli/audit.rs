//! `otpgate audit ...`: checks the hash chain of the audit log ([`crate::audit`]).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;

use crate::audit::verify_file;

/// `otpgate audit ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum AuditCommand {
    /// Checks the hash chain; names the first broken line.
    Verify {
        /// The audit log file (default: DATA_DIR/audit.jsonl).
        #[arg(long)]
        file: Option<PathBuf>,
        /// The data directory.
        #[arg(long, env = "OTPGATE_DATA_DIR", default_value = "otpgate-data")]
        data_dir: PathBuf,
    },
}

/// Runs `otpgate audit ...`.
///
/// # Errors
/// I/O failures or a broken chain (naming the first broken line).
pub fn run(cmd: AuditCommand) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::Verify { file, data_dir } => {
            let path = file.unwrap_or_else(|| data_dir.join("audit.jsonl"));
            match verify_file(&path) {
                Ok(n) => {
                    println!("OK: {n} lines, chain intact ({})", path.display());
                    Ok(())
                }
                Err(Ok(e)) => anyhow::bail!("{}: chain broken at {e}", path.display()),
                Err(Err(e)) => Err(e).with_context(|| format!("cannot read {}", path.display())),
            }
        }
    }
}
