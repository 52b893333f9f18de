//! Private files (mode 0600) written whole: to a temporary file, synced, then linked or
//! renamed into place.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use zeroize::Zeroizing;

use super::secrets::random_bytes;

/// Writes `bytes` to a new temporary file in the directory of `path` with mode 0600 and
/// syncs it; returns its path.
pub(super) fn write_temp(path: &Path, bytes: &[u8]) -> anyhow::Result<PathBuf> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("key");
    let tmp = dir.join(format!(
        ".{name}.{}.tmp",
        hex::encode(&random_bytes(8)?[..])
    ));
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    Ok(tmp)
}

pub(super) fn sync_dir(dir: &Path) {
    // Best effort: makes the rename durable on filesystems that need it.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Atomically replaces `path` with `bytes` (temporary file + rename), mode 0600.
pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = write_temp(path, bytes)?;
    fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir);
    }
    Ok(())
}

/// Creates `path` with `bytes` unless it exists. Returns `false` when another writer was
/// first (the existing file is kept). Atomic: readers never see a partial file.
pub(super) fn create_exclusive(path: &Path, bytes: &[u8]) -> anyhow::Result<bool> {
    let tmp = write_temp(path, bytes)?;
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            if let Some(dir) = path.parent() {
                sync_dir(dir);
            }
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
    }
}

pub(super) fn read_file(path: &Path) -> anyhow::Result<Zeroizing<String>> {
    Ok(Zeroizing::new(fs::read_to_string(path).with_context(
        || format!("cannot read key file {}", path.display()),
    )?))
}
