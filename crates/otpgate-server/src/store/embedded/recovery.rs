//! Opening: the redb file is loaded into memory (its layout checked, layout 1 upgraded),
//! then the logged batches past its checkpoint are replayed, checkpointed, and a fresh log
//! segment started.

use std::path::Path;

use redb::{Database, ReadableTable, TableDefinition};
use serde::Deserialize;

use super::checkpoint::{
    BUDGETS, KV, LAYOUT, LEASES, META, OLD_INDEXES, ONCE, OUTBOX, QUEUE, RECORDS, write_checkpoint,
};
use super::segments::{new_segment, segments};
use super::unavailable;
use super::wal::Wal;
use crate::store::StoreError;
use crate::store::codec;
use crate::store::state::{Op, State};

/// The state as the file and the log leave it, ready for the writer.
pub(super) struct Recovered {
    pub(super) state: State,
    /// The sequence number of the last logged batch.
    pub(super) seq: u64,
    /// The number of the fresh log segment.
    pub(super) segment: u64,
    /// The fresh log segment.
    pub(super) wal: Wal,
    /// Batches replayed from the log.
    pub(super) replayed: u64,
}

/// Loads the store file `path` (open as `db`), replays its log, checkpoints what the log
/// added, deletes the replayed segments and starts a fresh one.
pub(super) fn recover(db: &Database, path: &Path) -> Result<Recovered, StoreError> {
    let (mut state, checkpoint) = load(db)?;
    let found = segments(path)?;
    let mut seq = checkpoint;
    for (n, p) in &found {
        let (entries, end) =
            Wal::read(p, *n).map_err(|e| unavailable(format!("{}: {e}", p.display())))?;
        tracing::debug!(
            segment = %p.display(),
            entries = entries.len(),
            end,
            "embedded store: read a log segment"
        );
        seq = replay(&mut state, &entries, seq, checkpoint)?;
    }
    if seq > checkpoint {
        tracing::info!(
            batches = seq - checkpoint,
            "embedded store: replayed the log since the last checkpoint"
        );
    }
    if state.has_changes() || seq > checkpoint {
        write_checkpoint(db, &state.take_changes(), seq).map_err(unavailable)?;
    }
    for (_, p) in &found {
        std::fs::remove_file(p).map_err(|e| unavailable(format!("{}: {e}", p.display())))?;
    }
    let segment = found.last().map_or(0, |(n, _)| n + 1);
    let wal = new_segment(path, segment, None)?;
    Ok(Recovered {
        state,
        seq,
        segment,
        wal,
        replayed: seq - checkpoint,
    })
}

/// A batch as it is read back from the log (written as `writer::LogEntry`).
#[derive(Deserialize)]
struct LoggedBatch {
    seq: u64,
    now: i64,
    sweep: bool,
    ops: Vec<Op>,
}

/// Checks the layout (upgrading layout 1) and loads the file: the state and the sequence
/// number of the last logged batch it holds.
fn load(db: &Database) -> Result<(State, u64), StoreError> {
    let corrupt = |e: &dyn std::fmt::Display| StoreError::Corrupt(format!("store file: {e}"));
    let txn = db.begin_write().map_err(unavailable)?;
    let mut state = State::tracked();
    let seq = {
        let mut meta = txn.open_table(META).map_err(unavailable)?;
        let layout = meta.get("format").map_err(unavailable)?.map(|g| g.value());
        match layout {
            None | Some(1) => {
                meta.insert("format", LAYOUT).map_err(unavailable)?;
            }
            Some(LAYOUT) => {}
            Some(other) => {
                return Err(StoreError::Corrupt(format!(
                    "store layout {other} (expected {LAYOUT})"
                )));
            }
        }
        let get = |key: &str| -> Result<i64, StoreError> {
            Ok(meta.get(key).map_err(unavailable)?.map_or(0, |g| g.value()))
        };
        state.now_ms = get("now_ms")?;
        let seq = get("wal_seq")?;
        drop(meta);
        for name in OLD_INDEXES {
            let def: TableDefinition<(i64, &str), ()> = TableDefinition::new(name);
            txn.delete_table(def).map_err(unavailable)?;
        }
        each_row(&txn, RECORDS, |id, bytes| {
            let rec = codec::decode(bytes).map_err(|e| corrupt(&format!("record {id}: {e}")))?;
            state.records.insert(id.to_owned(), rec);
            Ok(())
        })?;
        each_row(&txn, BUDGETS, |(at, w, key), count| {
            state.budgets.insert((at, w, key.to_owned()), count);
            Ok(())
        })?;
        each_row(&txn, ONCE, |key, until| {
            state.once.insert(key.to_owned(), until);
            Ok(())
        })?;
        each_row(&txn, KV, |key, (until, value)| {
            state.kv.insert(key.to_owned(), (until, value.to_owned()));
            Ok(())
        })?;
        each_row(&txn, QUEUE, |(priority, at, key), json| {
            let send = serde_json::from_slice(json)
                .map_err(|e| corrupt(&format!("queued send {key}: {e}")))?;
            state.queue.insert((priority, at, key.to_owned()), send);
            Ok(())
        })?;
        each_row(&txn, OUTBOX, |(name, at, id), json| {
            let m = serde_json::from_slice(json)
                .map_err(|e| corrupt(&format!("outbox message {id}: {e}")))?;
            state.outbox.insert((name.to_owned(), at, id.to_owned()), m);
            Ok(())
        })?;
        each_row(&txn, LEASES, |key, json| {
            let l = serde_json::from_slice(json)
                .map_err(|e| corrupt(&format!("send lease {key}: {e}")))?;
            state.leases.insert(key.to_owned(), l);
            Ok(())
        })?;
        u64::try_from(seq).map_err(|_| corrupt(&format!("log sequence number {seq}")))?
    };
    txn.commit().map_err(unavailable)?;
    // What the file holds is past its retention or not; the first sweep tells.
    let now = state.now_ms;
    state.sweep(now);
    Ok((state, seq))
}

/// Calls `f` with every row of the table `def`.
fn each_row<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &redb::WriteTransaction,
    def: TableDefinition<K, V>,
    mut f: impl for<'a> FnMut(K::SelfType<'a>, V::SelfType<'a>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let table = txn.open_table(def).map_err(unavailable)?;
    for entry in table.iter().map_err(unavailable)? {
        let (k, v) = entry.map_err(unavailable)?;
        f(k.value(), v.value())?;
    }
    Ok(())
}

/// Applies the logged batches past `checkpoint` that follow batch `seq`; returns the last
/// sequence number applied.
fn replay(
    state: &mut State,
    entries: &[Vec<u8>],
    mut seq: u64,
    checkpoint: u64,
) -> Result<u64, StoreError> {
    let corrupt = |e: &dyn std::fmt::Display| StoreError::Corrupt(format!("store log: {e}"));
    for bytes in entries {
        let batch: LoggedBatch = serde_json::from_slice(bytes).map_err(|e| corrupt(&e))?;
        if batch.seq <= checkpoint {
            continue;
        }
        if batch.seq != seq + 1 {
            return Err(corrupt(&format!(
                "batch {} follows batch {seq}: the log does not continue the store file",
                batch.seq
            )));
        }
        state.now_ms = state.now_ms.max(batch.now);
        for op in &batch.ops {
            // An operation's own answer (an error included) was given before the crash;
            // only its effect matters here.
            let _ = state.apply(op, batch.now);
        }
        if batch.sweep {
            state.sweep(batch.now);
        }
        seq = batch.seq;
    }
    Ok(seq)
}
