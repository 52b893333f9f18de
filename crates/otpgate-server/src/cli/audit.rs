//! `otpgate audit ...`: checks the keyed chain of the audit log ([`crate::audit`]) and,
//! given the anchors `serve` exported, that no line was cut off the end.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use crate::audit::{VerifyError, verify_with_anchors};
use crate::keys::audit_keys_for_verify;

/// The data directory when neither `--data-dir` nor `OTPGATE_DATA_DIR` is given.
const DEFAULT_DATA_DIR: &str = "otpgate-data";

/// `otpgate audit ...`.
#[derive(Debug, Clone, Subcommand)]
pub enum AuditCommand {
    /// Checks every line's MAC and link (with the audit keys of the data directory, or
    /// `OTPGATE_AUDIT_KEY[_FILE]`), and, with `--anchors`, truncation against the exported
    /// anchors; names the first broken line and exits non-zero.
    Verify {
        /// The audit log file (default: DATA_DIR/audit.jsonl).
        #[arg(long)]
        file: Option<PathBuf>,
        /// The data directory, whose `keys/` holds the audit keys (default: the directory
        /// of `--file` if it has `keys/audit.json`, else `otpgate-data`).
        #[arg(long, env = "OTPGATE_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// The anchors `serve` exported (`[audit] anchor = "file:..."`): reports a log cut
        /// short of, or rewritten since, any anchor.
        #[arg(long)]
        anchors: Option<PathBuf>,
    },
}

/// Where the keys are: `--data-dir` / `OTPGATE_DATA_DIR`; else the directory of `--file` if
/// it holds the audit keys (the default layout, `DATA_DIR/audit.jsonl`); else the default.
fn key_dir(data_dir: Option<PathBuf>, file: Option<&Path>) -> PathBuf {
    if let Some(d) = data_dir {
        return d;
    }
    file.and_then(Path::parent)
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .filter(|p| p.join("keys").join("audit.json").is_file())
        .map_or_else(|| PathBuf::from(DEFAULT_DATA_DIR), Path::to_path_buf)
}

/// Runs `otpgate audit ...`.
///
/// # Errors
/// I/O failures, no audit key, a broken chain (naming the first broken line), a bad anchor,
/// or a log truncated or rewritten since an anchor.
pub fn run(cmd: AuditCommand) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::Verify {
            file,
            data_dir,
            anchors,
        } => {
            let explicit = data_dir.is_some();
            let dir = key_dir(data_dir, file.as_deref());
            let path = file.unwrap_or_else(|| dir.join("audit.jsonl"));
            let keys = audit_keys_for_verify(
                (explicit || dir.join("keys").is_dir()).then_some(dir.as_path()),
            )?;
            match verify_with_anchors(&path, &keys, anchors.as_deref()) {
                Ok(v) => {
                    let mut msg = format!(
                        "OK: {} lines, chain intact, every MAC verifies ({}; last seq {}",
                        v.lines,
                        path.display(),
                        v.last_seq
                    );
                    if let Some(seq) = v.purged_through {
                        msg.push_str(&format!(", lines up to seq {seq} purged (checkpoint)"));
                    }
                    msg.push_str(&format!("; audit keys: {})", v.key_ids.join(", ")));
                    println!("{msg}");
                    match (&anchors, &v.last_anchor) {
                        (Some(a), Some((at, seq))) => println!(
                            "OK: {} anchors match ({} name purged lines); the last, of {at}, \
                             saw {seq} lines ({})",
                            v.anchors_checked,
                            v.anchors_purged,
                            a.display()
                        ),
                        (Some(a), None) => println!(
                            "note: no anchor in {}: truncation cannot be checked",
                            a.display()
                        ),
                        (None, _) => println!(
                            "note: no --anchors given: lines cut off the end would not be \
                             detected"
                        ),
                    }
                    Ok(())
                }
                Err(e @ VerifyError::Io { .. }) => Err(e.into()),
                Err(e) => anyhow::bail!("{}: {e}", path.display()),
            }
        }
    }
}
