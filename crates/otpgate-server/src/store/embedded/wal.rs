//! The write-ahead log of the embedded store: checksummed entries appended to segment
//! files ([`Wal::write`], one per batch) and made durable with `fdatasync` ([`Wal::sync`],
//! which may cover several entries).
//!
//! Entry: `len: u32 LE`, `crc32(salt, len, payload): u32 LE`, `payload` (`len` bytes). The
//! salt is the segment's number. A crash while an entry was being written leaves a torn
//! last entry; [`Wal::read`] returns the entries up to the first one that is incomplete or
//! fails its checksum (that entry was never acknowledged: acknowledgement comes after the
//! sync).
//!
//! Segments are recycled: a segment whose entries are all in a checkpoint becomes the file
//! of a later segment, overwritten from its start. Overwriting blocks a file already has
//! changes no file-system metadata, so each `fdatasync` is a plain data flush instead of a
//! journal commit (which it would share with the audit log's syncs). Entries left from the
//! file's earlier life fail the checksum under the new salt, so they end the log.
//!
//! A failed append is cut off again, so the log never holds a torn entry before a good one;
//! when that is impossible (or a sync failed, after which the file's contents are unknown)
//! the log refuses every further append.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Bytes before the payload of an entry.
const HEADER: usize = 8;
/// Largest payload accepted when reading (a length above it is a torn or foreign entry).
const MAX_ENTRY: usize = 1 << 30;

/// An open log segment, written from its start.
#[derive(Debug)]
pub(crate) struct Wal {
    file: Arc<File>,
    path: PathBuf,
    salt: u64,
    len: u64,
    broken: bool,
}

fn checksum(salt: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&salt.to_le_bytes());
    h.update(&(payload.len() as u64).to_le_bytes());
    h.update(payload);
    h.finalize()
}

impl Wal {
    /// The payloads of the entries of the segment at `path` written with `salt`, in order,
    /// and where they end.
    pub(crate) fn read(path: &Path, salt: u64) -> io::Result<(Vec<Vec<u8>>, u64)> {
        let mut bytes = Vec::new();
        File::open(path)?.read_to_end(&mut bytes)?;
        Ok(parse(&bytes, salt))
    }

    /// Starts segment `salt` at `path`: in `recycled` (an older segment's file, renamed to
    /// `path` and overwritten from its start) or in a new file.
    pub(crate) fn start(path: &Path, salt: u64, recycled: Option<&Path>) -> io::Result<Self> {
        let file = match recycled {
            Some(old) => {
                std::fs::rename(old, path)?;
                OpenOptions::new().write(true).open(path)?
            }
            None => {
                let mut opts = OpenOptions::new();
                opts.write(true).create(true).truncate(true);
                // The log holds numbers and code digests: owner only.
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt as _;
                    opts.mode(0o600);
                }
                opts.open(path)?
            }
        };
        sync_dir(path)?;
        Ok(Self {
            file: Arc::new(file),
            path: path.to_owned(),
            salt,
            len: 0,
            broken: false,
        })
    }

    /// Appends one entry without syncing it. On error nothing of it stays in the log, or
    /// the log refuses every later write.
    pub(crate) fn write(&mut self, payload: &[u8]) -> io::Result<()> {
        if self.broken {
            return Err(io::Error::other(format!(
                "{}: the log failed earlier; restart to recover",
                self.path.display()
            )));
        }
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|&l| l as usize <= MAX_ENTRY)
            .ok_or_else(|| io::Error::other("log entry too large"))?;
        let mut entry = Vec::with_capacity(HEADER + payload.len());
        entry.extend_from_slice(&len.to_le_bytes());
        entry.extend_from_slice(&checksum(self.salt, payload).to_le_bytes());
        entry.extend_from_slice(payload);
        let mut file = &*self.file;
        if let Err(e) = file.write_all(&entry) {
            // Cut the partial entry off so that the next one follows a whole one.
            if file.set_len(self.len).is_err() || file.seek(SeekFrom::Start(self.len)).is_err() {
                self.broken = true;
            }
            return Err(e);
        }
        self.len += entry.len() as u64;
        Ok(())
    }

    /// Makes every entry written so far durable. After a failure the kernel may have
    /// dropped the written pages: what the file holds is unknown, so it refuses every later
    /// write.
    pub(crate) fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data().inspect_err(|_| self.broken = true)
    }

    /// Appends one entry and syncs it.
    #[cfg(test)]
    pub(crate) fn append(&mut self, payload: &[u8]) -> io::Result<()> {
        self.write(payload)?;
        self.sync()
    }

    /// The file, for syncing on another thread ([`File::sync_data`] covers every entry
    /// written before the call).
    pub(crate) fn handle(&self) -> Arc<File> {
        Arc::clone(&self.file)
    }

    /// Bytes of entries in the segment.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// The segment's file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// Makes the directory entry of `path` durable (after creating or renaming the file).
pub(crate) fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}

/// The payloads of the whole entries under `salt` at the start of `bytes`, and where they
/// end.
fn parse(bytes: &[u8], salt: u64) -> (Vec<Vec<u8>>, u64) {
    let mut entries = Vec::new();
    let mut at = 0usize;
    while let Some(head) = bytes.get(at..at + HEADER) {
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len == 0 || len > MAX_ENTRY {
            break;
        }
        let Some(payload) = bytes.get(at + HEADER..at + HEADER + len) else {
            break;
        };
        if checksum(salt, payload) != crc {
            break;
        }
        entries.push(payload.to_vec());
        at += HEADER + len;
    }
    (entries, at as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_come_back_in_order_up_to_a_torn_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        let mut wal = Wal::start(&path, 7, None).expect("start");
        for e in [&b"one"[..], b"two", b"three"] {
            wal.append(e).expect("append");
        }
        assert_eq!(wal.len(), 3 * 8 + 11);
        drop(wal);
        let whole = std::fs::read(&path).expect("read");
        let all: Vec<Vec<u8>> = vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()];
        assert_eq!(
            Wal::read(&path, 7).expect("read"),
            (all.clone(), whole.len() as u64)
        );
        // Another salt reads nothing: a recycled file's old entries do not count.
        assert_eq!(Wal::read(&path, 8).expect("read").0, Vec::<Vec<u8>>::new());
        // A crash mid-append: the last entry is cut short, its bytes are not the ones
        // checksummed, or garbage follows.
        let mut flipped = whole.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        for (torn, want) in [
            (whole[..whole.len() - 2].to_vec(), 2),
            (flipped, 2),
            ([whole.as_slice(), &[9, 0, 0, 0, 1]].concat(), 3),
            ([whole.as_slice(), &[0; 64]].concat(), 3),
        ] {
            std::fs::write(&path, &torn).expect("write");
            let (entries, _) = Wal::read(&path, 7).expect("read");
            assert_eq!(entries, all[..want].to_vec());
        }
    }

    #[test]
    fn a_recycled_file_holds_only_its_new_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (old, new) = (dir.path().join("wal-1"), dir.path().join("wal-2"));
        let mut wal = Wal::start(&old, 1, None).expect("start");
        for _ in 0..10 {
            wal.append(&[b'x'; 100]).expect("append");
        }
        drop(wal);
        let size = std::fs::metadata(&old).expect("meta").len();
        let mut wal = Wal::start(&new, 2, Some(&old)).expect("recycle");
        assert!(!old.exists());
        wal.append(b"fresh").expect("append");
        drop(wal);
        assert_eq!(
            std::fs::metadata(&new).expect("meta").len(),
            size,
            "overwritten in place"
        );
        assert_eq!(Wal::read(&new, 2).expect("read").0, vec![b"fresh".to_vec()]);
    }
}
