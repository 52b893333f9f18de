//! The write-ahead log of the embedded store: checksummed entries appended to one file and
//! made durable with one `fdatasync` per entry (an entry holds a whole batch).
//!
//! Entry: `len: u32 LE`, `crc32(payload): u32 LE`, `payload` (`len` bytes). A crash while
//! an entry was being written leaves a torn last entry; [`Wal::open`] reads up to the first
//! entry that is incomplete or fails its checksum and cuts the file there (that entry was
//! never acknowledged: acknowledgement comes after the sync).
//!
//! A failed append is cut off again, so the log never holds a torn entry before a good one;
//! when that is impossible (or a sync failed, after which the file's contents are unknown)
//! the log refuses every further append until the process restarts and recovers from it.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Bytes before the payload of an entry.
const HEADER: usize = 8;
/// Largest payload accepted when reading (a length above it is a torn or foreign entry).
const MAX_ENTRY: usize = 1 << 30;

/// An open log file.
#[derive(Debug)]
pub(crate) struct Wal {
    file: File,
    path: PathBuf,
    len: u64,
    broken: bool,
}

impl Wal {
    /// Opens (or creates) the log at `path` and returns it with the payloads of its entries,
    /// in order. A torn or corrupt tail is cut off (how many bytes is returned as well).
    pub(crate) fn open(path: &Path) -> io::Result<(Self, Vec<Vec<u8>>, u64)> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let (entries, good) = parse(&bytes);
        let dropped = bytes.len() as u64 - good;
        if dropped > 0 {
            file.set_len(good)?;
            file.sync_all()?;
        }
        file.seek(SeekFrom::Start(good))?;
        let wal = Self {
            file,
            path: path.to_owned(),
            len: good,
            broken: false,
        };
        Ok((wal, entries, dropped))
    }

    /// Appends one entry and syncs it. On error nothing of it stays in the log, or the log
    /// refuses every later append.
    pub(crate) fn append(&mut self, payload: &[u8]) -> io::Result<()> {
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
        entry.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        entry.extend_from_slice(payload);
        if let Err(e) = self.file.write_all(&entry) {
            // Cut the partial entry off so that the next one follows a whole one.
            if self.file.set_len(self.len).is_err()
                || self.file.seek(SeekFrom::Start(self.len)).is_err()
            {
                self.broken = true;
            }
            return Err(e);
        }
        if let Err(e) = self.file.sync_data() {
            // After a failed sync the kernel may have dropped the dirty pages: what the file
            // holds is unknown, so nothing more is written to it.
            self.broken = true;
            return Err(e);
        }
        self.len += entry.len() as u64;
        Ok(())
    }

    /// Bytes in the log.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }
}

/// Makes the directory entry of `path` durable (after creating the file).
pub(crate) fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}

/// The payloads of the whole entries at the start of `bytes`, and where they end.
fn parse(bytes: &[u8]) -> (Vec<Vec<u8>>, u64) {
    let mut entries = Vec::new();
    let mut at = 0usize;
    while let Some(head) = bytes.get(at..at + HEADER) {
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        let Some(payload) = bytes.get(at + HEADER..at + HEADER + len) else {
            break;
        };
        if len > MAX_ENTRY || crc32fast::hash(payload) != crc {
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
    fn entries_come_back_in_order_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        {
            let (mut wal, entries, dropped) = Wal::open(&path).expect("open");
            assert!(entries.is_empty());
            assert_eq!(dropped, 0);
            wal.append(b"one").expect("append");
            wal.append(b"").expect("append");
            wal.append(b"three").expect("append");
            assert_eq!(wal.len(), 3 * 8 + 8);
        }
        let whole = std::fs::read(&path).expect("read");
        // A crash mid-append: the last entry is cut short, or its bytes are not the ones
        // checksummed.
        for torn in [
            whole[..whole.len() - 2].to_vec(),
            [whole.as_slice(), &[9, 0, 0, 0, 1]].concat(),
            {
                let mut b = whole.clone();
                let last = b.len() - 1;
                b[last] ^= 1;
                b
            },
        ] {
            std::fs::write(&path, &torn).expect("write");
            let (mut wal, entries, dropped) = Wal::open(&path).expect("open");
            let want: Vec<&[u8]> = if torn.len() > whole.len() {
                vec![b"one", b"", b"three"]
            } else {
                vec![b"one", b""]
            };
            assert_eq!(entries, want, "whole entries before the torn one");
            assert!(dropped > 0);
            // The next entry follows the last whole one.
            wal.append(b"four").expect("append");
            drop(wal);
            let (_, entries, dropped) = Wal::open(&path).expect("reopen");
            assert_eq!(entries.last().map(Vec::as_slice), Some(&b"four"[..]));
            assert_eq!(dropped, 0);
        }
    }
}
