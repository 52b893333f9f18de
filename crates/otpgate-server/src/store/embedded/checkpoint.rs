//! Checkpoints: the layout of the redb file, and the thread that writes the changes the
//! writer hands it into the file in one durable transaction, then gives the log segment
//! they cover back for recycling.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use redb::{Database, TableDefinition};

use super::{Counters, micros};
use crate::store::codec;
use crate::store::state::Changes;

/// id → encoded record.
pub(super) const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records");
/// (purge at, window length, key) → count; the purge time identifies the window.
pub(super) const BUDGETS: TableDefinition<(i64, i64, &str), u32> = TableDefinition::new("budgets");
/// key → until (exclusive).
pub(super) const ONCE: TableDefinition<&str, i64> = TableDefinition::new("once");
/// (priority, queued at, key) → the queued send as JSON.
pub(super) const QUEUE: TableDefinition<(u16, i64, &str), &[u8]> =
    TableDefinition::new("send_queue");
/// key → (until, value): claims and stored answers (idempotency keys).
pub(super) const KV: TableDefinition<&str, (i64, &str)> = TableDefinition::new("kv");
/// (outbox, queued at, id) → the outbox message as JSON.
pub(super) const OUTBOX: TableDefinition<(&str, i64, &str), &[u8]> = TableDefinition::new("outbox");
/// key → the in-flight send's lease as JSON.
pub(super) const LEASES: TableDefinition<&str, &[u8]> = TableDefinition::new("leases");
/// Store-wide values: `format`, `now_ms`, `wal_seq` (the last logged batch the file holds).
pub(super) const META: TableDefinition<&str, i64> = TableDefinition::new("meta");
/// Purge indexes of layout 1 (dropped when such a file is opened).
pub(super) const OLD_INDEXES: [&str; 2] = ["record_purge", "once_purge"];

/// The layout version of the file.
pub(super) const LAYOUT: i64 = 2;

/// Writes `changes` and the sequence number `seq` into the file in one durable
/// transaction.
pub(super) fn write_checkpoint(
    db: &Database,
    changes: &Changes,
    seq: u64,
) -> Result<(), redb::Error> {
    let mut txn = db.begin_write()?;
    txn.set_durability(redb::Durability::Immediate)?;
    {
        let mut records = txn.open_table(RECORDS)?;
        for (id, rec) in &changes.records {
            match rec {
                Some(r) => {
                    records.insert(id.as_str(), codec::encode(r).as_bytes())?;
                }
                None => {
                    records.remove(id.as_str())?;
                }
            }
        }
        let mut budgets = txn.open_table(BUDGETS)?;
        for ((at, w, key), count) in &changes.budgets {
            match count {
                Some(c) => {
                    budgets.insert((*at, *w, key.as_str()), *c)?;
                }
                None => {
                    budgets.remove((*at, *w, key.as_str()))?;
                }
            }
        }
        let mut once = txn.open_table(ONCE)?;
        for (key, until) in &changes.once {
            match until {
                Some(u) => {
                    once.insert(key.as_str(), *u)?;
                }
                None => {
                    once.remove(key.as_str())?;
                }
            }
        }
        let mut queue = txn.open_table(QUEUE)?;
        for ((priority, at, key), send) in &changes.queue {
            match send {
                Some(q) => {
                    // Serialising plain fields and strings cannot fail.
                    let json = serde_json::to_vec(q).unwrap_or_default();
                    queue.insert((*priority, *at, key.as_str()), json.as_slice())?;
                }
                None => {
                    queue.remove((*priority, *at, key.as_str()))?;
                }
            }
        }
        let mut kv = txn.open_table(KV)?;
        for (key, entry) in &changes.kv {
            match entry {
                Some((until, value)) => {
                    kv.insert(key.as_str(), (*until, value.as_str()))?;
                }
                None => {
                    kv.remove(key.as_str())?;
                }
            }
        }
        let mut outbox = txn.open_table(OUTBOX)?;
        for ((name, at, id), message) in &changes.outbox {
            match message {
                Some(m) => {
                    let json = serde_json::to_vec(m).unwrap_or_default();
                    outbox.insert((name.as_str(), *at, id.as_str()), json.as_slice())?;
                }
                None => {
                    outbox.remove((name.as_str(), *at, id.as_str()))?;
                }
            }
        }
        let mut leases = txn.open_table(LEASES)?;
        for (key, lease) in &changes.leases {
            match lease {
                Some(l) => {
                    let json = serde_json::to_vec(l).unwrap_or_default();
                    leases.insert(key.as_str(), json.as_slice())?;
                }
                None => {
                    leases.remove(key.as_str())?;
                }
            }
        }
        let mut meta = txn.open_table(META)?;
        meta.insert("now_ms", changes.now_ms)?;
        meta.insert("wal_seq", i64::try_from(seq).unwrap_or(i64::MAX))?;
    }
    txn.commit()?;
    Ok(())
}

/// A checkpoint for the checkpoint thread.
pub(super) struct Job {
    pub(super) changes: Changes,
    pub(super) seq: u64,
    /// The segment wholly covered by this checkpoint, recycled once it is durable.
    pub(super) sealed: PathBuf,
    pub(super) done: mpsc::Sender<()>,
}

/// Writes the checkpoints it is handed, one at a time, and deletes the log segments they
/// cover. A failure leaves the segments and makes the store refuse everything (a restart
/// replays them).
pub(super) fn checkpointer(
    db: &Database,
    jobs: &mpsc::Receiver<Job>,
    spares: &mpsc::Sender<PathBuf>,
    counters: &Counters,
    failed: &AtomicBool,
) {
    while let Ok(job) = jobs.recv() {
        let started = Instant::now();
        match write_checkpoint(db, &job.changes, job.seq) {
            Ok(()) => {
                // The segment's entries are all in the file now: its blocks carry a later
                // segment (or it goes, when the writer has stopped).
                if let Err(mpsc::SendError(p)) = spares.send(job.sealed) {
                    let _ = std::fs::remove_file(p);
                }
                counters.checkpoints.fetch_add(1, Ordering::Relaxed);
                counters
                    .checkpoint_micros
                    .fetch_add(micros(started.elapsed()), Ordering::Relaxed);
            }
            Err(e) => {
                tracing::error!(error = %e, "embedded store: checkpoint failed; refusing reads and writes until restart (the log keeps every batch)");
                failed.store(true, Ordering::Release);
            }
        }
        let _ = job.done.send(());
    }
}
