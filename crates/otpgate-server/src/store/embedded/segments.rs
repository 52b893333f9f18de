//! The log's segment files beside the store file (`<file>.wal-<n>`): finding, naming and
//! starting them (the format of one segment is `wal.rs`).

use std::path::{Path, PathBuf};

use super::unavailable;
use super::wal::Wal;
use crate::store::StoreError;

/// The log segments of the store file `path`, in order: (number, path).
pub(super) fn segments(path: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let prefix = format!(
        "{}.wal-",
        path.file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    );
    let mut found = Vec::new();
    for entry in
        std::fs::read_dir(dir).map_err(|e| unavailable(format!("{}: {e}", dir.display())))?
    {
        let entry = entry.map_err(unavailable)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(n) = name
            .strip_prefix(&prefix)
            .and_then(|n| n.parse::<u64>().ok())
        {
            found.push((n, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

pub(super) fn segment_path(path: &Path, n: u64) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".wal-{n:020}"));
    PathBuf::from(p)
}

/// Starts segment `n` of the log, in the file of a checkpointed segment when there is one.
pub(super) fn new_segment(
    path: &Path,
    n: u64,
    recycled: Option<PathBuf>,
) -> Result<Wal, StoreError> {
    let p = segment_path(path, n);
    if let Some(old) = recycled {
        match Wal::start(&p, n, Some(&old)) {
            Ok(wal) => return Ok(wal),
            Err(e) => {
                tracing::warn!(error = %e, "embedded store: could not recycle a log segment; starting a new file");
                let _ = std::fs::remove_file(&old);
            }
        }
    }
    Wal::start(&p, n, None).map_err(|e| unavailable(format!("{}: {e}", p.display())))
}
