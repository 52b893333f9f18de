//! Owner-only permissions for what the issuer keeps on disk: the data directory is 0700,
//! the store (its file and write-ahead log segments), the audit log and the key files are
//! 0600. New files are created so; files left more open by an earlier version, a restore or
//! a hand copy are tightened at start, each with a log line.
//!
//! On platforms without Unix permissions these functions do nothing.

use std::io;
use std::path::{Path, PathBuf};

/// The mode of the data directory.
pub const PRIVATE_DIR: u32 = 0o700;
/// The mode of every file the issuer keeps.
pub const PRIVATE_FILE: u32 = 0o600;

/// Sets `path`'s permission bits to `mode` when they differ; returns the old bits when it
/// changed them.
///
/// # Errors
/// The file cannot be read or changed.
pub fn tighten(path: &Path, mode: u32) -> io::Result<Option<u32>> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let old = std::fs::metadata(path)?.permissions().mode() & 0o7777;
        if old == mode {
            return Ok(None);
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        Ok(Some(old))
    }
    #[cfg(not(unix))]
    {
        let _ = (path, mode);
        Ok(None)
    }
}

/// Creates `dir` (and its parents) when missing, the last one with mode 0700.
///
/// # Errors
/// The directory cannot be created.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        b.mode(PRIVATE_DIR);
    }
    b.create(dir)
}

/// Creates `path` empty with mode 0600 when it does not exist (so a library that creates it
/// later finds it private); leaves an existing file alone.
///
/// # Errors
/// The file cannot be created.
pub fn ensure_private_file(path: &Path) -> io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(PRIVATE_FILE);
    }
    match opts.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Tightens the data directory to 0700 and `files` (those that exist), every regular file
/// directly in the data directory and in its `keys/` to 0600, logging each change.
///
/// # Errors
/// A permission that cannot be changed (the issuer must not run with its secrets open).
pub fn tighten_data(data_dir: &Path, files: &[PathBuf]) -> io::Result<Vec<PathBuf>> {
    let mut changed = Vec::new();
    let mut note = |path: &Path, mode: u32| -> io::Result<()> {
        if let Some(old) = tighten(path, mode)? {
            tracing::warn!(
                path = %path.display(),
                was = format!("{old:o}"),
                now = format!("{mode:o}"),
                "tightened permissions: only the owner may read the issuer's data"
            );
            changed.push(path.to_owned());
        }
        Ok(())
    };
    note(data_dir, PRIVATE_DIR)?;
    let mut all: Vec<PathBuf> = files.iter().filter(|p| p.exists()).cloned().collect();
    for dir in [data_dir.to_owned(), data_dir.join("keys")] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_file()) {
                all.push(e.path());
            }
        }
    }
    all.sort();
    all.dedup();
    for f in &all {
        note(f, PRIVATE_FILE)?;
    }
    Ok(changed)
}

/// The store file's write-ahead log segments beside it (`store.redb.wal-N`).
pub fn wal_segments(store: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (store.parent(), store.file_name()) else {
        return Vec::new();
    };
    let prefix = format!("{}.wal-", name.to_string_lossy());
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    std::fs::read_dir(dir)
        .map(|it| {
            it.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
#[cfg(unix)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).expect("meta").permissions().mode() & 0o7777
    }

    #[test]
    fn open_files_and_dirs_are_tightened_once() {
        let tmp = tempfile::tempdir().expect("tmp");
        let data = tmp.path().join("data");
        create_private_dir(&data).expect("dir");
        assert_eq!(mode(&data), PRIVATE_DIR);
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let store = data.join("store.redb");
        std::fs::write(&store, b"").expect("write");
        std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        std::fs::write(data.join("store.redb.wal-0"), b"").expect("write");
        let elsewhere = tmp.path().join("audit.jsonl");
        std::fs::write(&elsewhere, b"").expect("write");
        std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o666))
            .expect("chmod");
        let mut files = wal_segments(&store);
        files.push(elsewhere.clone());
        let changed = tighten_data(&data, &files).expect("tighten");
        assert!(
            changed.contains(&data) && changed.contains(&store) && changed.contains(&elsewhere)
        );
        for p in [&store, &elsewhere, &data.join("store.redb.wal-0")] {
            assert_eq!(mode(p), PRIVATE_FILE, "{}", p.display());
        }
        assert_eq!(mode(&data), PRIVATE_DIR);
        assert!(tighten_data(&data, &files).expect("again").is_empty());
        let fresh = data.join("new.redb");
        ensure_private_file(&fresh).expect("create");
        assert_eq!(mode(&fresh), PRIVATE_FILE);
        ensure_private_file(&fresh).expect("exists: left alone");
    }
}
