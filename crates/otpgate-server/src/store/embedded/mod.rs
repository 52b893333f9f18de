//! The embedded store: the live state in memory, made durable by a write-ahead log and
//! checkpointed into one redb file; the default backend of a single issuer.
//!
//! # Durability
//! By default ([`Durability::Disk`]) every change is acknowledged only after it is on
//! disk: the batch that holds it was written to the write-ahead log and the log was
//! `fdatasync`'d (~0.2–0.5 ms on the reference machine). An acknowledged write survives
//! `kill -9` or a power cut. With [`Durability::Process`] a change is acknowledged once its
//! batch is written to the log (in the OS page cache) and the sync thread syncs at most
//! [`Durability::PROCESS_SYNC_EVERY`] later: an acknowledged write survives a crash or
//! `kill -9` of the process, and a power cut loses at most that last stretch.
//!
//! The staged steps ([`Store::check_staged`](super::Store::check_staged), [`Store::open_staged`](super::Store::open_staged)) are answered as soon
//! as their batch is written, and told when the sync made it durable: the issuer writes
//! the audit line (its own file and sync) meanwhile, so under [`Durability::Disk`] a check
//! waits for the two syncs side by side rather than one after the other, and answers its
//! client only after both.
//!
//! The log is a series of segment files beside the store file (`<file>.wal-<n>`). Every
//! [`EmbeddedOptions::checkpoint_every`] (or when the log passes
//! [`EmbeddedOptions::checkpoint_bytes`]), the writer starts a new segment and hands what
//! changed since the last checkpoint (only the changed keys) to a checkpoint thread, which
//! writes it into the redb file in one durable transaction ([`redb::Durability::Immediate`])
//! together with the sequence number of the last batch it holds; the segment's file is then
//! recycled for a later segment (see `wal.rs`). The writer goes on meanwhile. Closing the
//! store checkpoints everything.
//!
//! Opening loads the redb file into memory, replays the logged batches past its sequence
//! number (each batch carries one; a gap is refused as [`StoreError::Corrupt`]; a torn
//! last entry, never acknowledged, is cut off), checkpoints and starts a fresh segment.
//! Replaying is exact because applying a batch depends only on the state, the batch and the
//! batch's `now`, which the log records.
//!
//! Why this shape: a durable redb commit per batch rewrites every B-tree page the batch
//! touched and syncs twice (~4 ms per batch here), which capped the store near 4,000
//! checks/s; a B-tree updated per batch without sync still writes ~100 kB of pages per
//! batch. With the state in memory the writer only logs; redb sees each changed key once
//! per checkpoint.
//!
//! # Group commit
//! One writer thread owns the write side. Operations arrive over a channel; the writer
//! takes every operation waiting (up to [`EmbeddedOptions::max_batch`]), applies them one
//! after the other to the state (each sees the effects of the previous ones, so every
//! operation is atomic and they are serialised) and writes the batch to the log. Under
//! [`Durability::Disk`] it then runs `fdatasync` on the log itself and answers the batch;
//! what arrives during the sync waits in the channel and makes the next batch, so the
//! number of syncs stays bounded by the disk's latency while batches grow with the load.
//! (A separate sync thread, tried first, cost a hand-off and a wake-up per batch for
//! nothing: about 5 % more issuer CPU per check at the same throughput.) Under
//! [`Durability::Process`] a background thread syncs instead. The log is one sequence: a
//! batch is durable only with every batch before it, so an answer never depends on a write
//! that could be lost.
//!
//! If the log cannot be written or synced (the file's contents are then unknown), the
//! operations not yet answered fail with [`StoreError::Unavailable`] and the store refuses
//! every further read and write ([`Store::ping`](super::Store::ping) fails too) until a restart recovers from
//! the redb file and the log, where those operations are not. A failed checkpoint does the
//! same.
//!
//! Reads (`get`, `budget_used`) take the state's lock briefly: a read may see a write a
//! sync (well under a millisecond) before the write is acknowledged.
//!
//! # Memory
//! Every live entry is held in memory: about 1 kB per verification for its lifetime plus
//! [`RETENTION_GRACE_MS`](super::RETENTION_GRACE_MS), and a few dozen bytes per budget
//! counter and `once` key.
//!
//! # Retention
//! The store has no clock of its own: its notion of "now" is the latest `now_ms` a call
//! passed (persisted with each batch). A record is forgotten at its expiry plus
//! [`RETENTION_GRACE_MS`](super::RETENTION_GRACE_MS) (reads stop returning it at once,
//! and the writer's periodic sweep deletes it), a budget counter one window length after
//! its window, a `once` key at its TTL.
//!
//! # Files
//! The state and its operations are the memory store's too (`store/state.rs`); here:
//! - `writer.rs`: the writer thread (batches, log writes, syncs) and the background sync
//!   thread of [`Durability::Process`];
//! - `checkpoint.rs`: the redb file's layout and the checkpoint thread;
//! - `recovery.rs`: loading the file and replaying the log when the store opens;
//! - `segments.rs`: the log's segment files beside the store file; `wal.rs`: the format of
//!   one segment;
//! - `tests.rs`: restarts, crashes, checkpoints and sweeps.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use redb::Database;
use tokio::sync::oneshot;

use super::in_process::Engine;
use super::state::{Answer, Op, State, lock};
use super::{Durability, Durable, StoreError};
use writer::{Msg, Settle, Writer};

mod checkpoint;
mod recovery;
mod segments;
mod wal;
mod writer;

/// Tuning of the [`EmbeddedStore`].
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// Most operations logged together.
    pub max_batch: usize,
    /// How often the writer deletes what is past its retention.
    pub sweep_every: Duration,
    /// redb page cache, bytes.
    pub cache_bytes: usize,
    /// Longest time between two checkpoints while there are changes (the log holds what
    /// came since; a longer time means a longer replay after a crash).
    pub checkpoint_every: Duration,
    /// Log size that starts a checkpoint sooner.
    pub checkpoint_bytes: u64,
    /// When a change is acknowledged: after the `fdatasync` of its log batch (the
    /// default), or after the write, with the sync in the background (see [`Durability`]).
    pub durability: Durability,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            max_batch: 4096,
            sweep_every: Duration::from_secs(10),
            cache_bytes: 64 << 20,
            checkpoint_every: Duration::from_secs(1),
            checkpoint_bytes: 64 << 20,
            durability: Durability::Disk,
        }
    }
}

/// Counters of the writer since the store was opened (for metrics and benchmarks).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct EmbeddedStats {
    /// Batches logged (each one write to the log).
    pub batches: u64,
    /// Operations applied in them.
    pub ops: u64,
    /// Time spent applying operations, microseconds.
    pub apply_micros: u64,
    /// Time the writer spent logging (encoding and writing), microseconds.
    pub commit_micros: u64,
    /// Log syncs (each covers every batch written before it).
    pub syncs: u64,
    /// Time spent in them (on the sync thread), microseconds.
    pub sync_micros: u64,
    /// Checkpoints written into the redb file.
    pub checkpoints: u64,
    /// Time the checkpoint thread spent writing them, microseconds.
    pub checkpoint_micros: u64,
    /// Batches replayed from the log when the store was opened.
    pub replayed: u64,
}

#[derive(Debug, Default)]
struct Counters {
    batches: AtomicU64,
    ops: AtomicU64,
    apply_micros: AtomicU64,
    commit_micros: AtomicU64,
    syncs: AtomicU64,
    sync_micros: AtomicU64,
    checkpoints: AtomicU64,
    checkpoint_micros: AtomicU64,
    replayed: AtomicU64,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The embedded [`Store`](super::Store) (see the module docs for durability and batching).
pub struct EmbeddedStore {
    counters: Arc<Counters>,
    state: Arc<Mutex<State>>,
    tx: Option<mpsc::Sender<Msg>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Set when the store refuses everything until a restart.
    failed: Arc<AtomicBool>,
    durability: Durability,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore").finish_non_exhaustive()
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("embedded store: {e}"))
}

fn refused() -> StoreError {
    unavailable(
        "a write to disk failed; restart otpgate to recover from the store file and its log",
    )
}

impl EmbeddedStore {
    /// Opens (or creates) the store file at `path` with default options (see the module
    /// docs: the file is loaded into memory and the log replayed).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the file cannot be opened or created (including
    /// when another process has it open), [`StoreError::Corrupt`] when it has another
    /// layout, holds a record that cannot be decoded, or its log does not follow on from it.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, EmbeddedOptions::default())
    }

    /// Opens (or creates) the store file at `path` and its log.
    ///
    /// # Errors
    /// As [`EmbeddedStore::open`].
    pub fn open_with(path: impl AsRef<Path>, opts: EmbeddedOptions) -> Result<Self, StoreError> {
        let path = path.as_ref();
        // Created here first (owner only), so redb finds the file private.
        crate::fsperm::ensure_private_file(path)
            .map_err(|e| unavailable(format!("{}: {e}", path.display())))?;
        let db = Database::builder()
            .set_cache_size(opts.cache_bytes)
            .create(path)
            .map_err(|e| unavailable(format!("{}: {e}", path.display())))?;
        let recovered = recovery::recover(&db, path)?;
        let counters = Arc::new(Counters::default());
        counters
            .replayed
            .store(recovered.replayed, Ordering::Relaxed);
        let state = Arc::new(Mutex::new(recovered.state));
        let failed = Arc::new(AtomicBool::new(false));
        let db = Arc::new(db);
        let (tx, rx) = mpsc::channel();
        let durability = opts.durability;
        let writer = {
            let mut w = Writer {
                state: Arc::clone(&state),
                db,
                path: path.to_owned(),
                wal: recovered.wal,
                segment: recovered.segment,
                spares: None,
                syncer: None,
                seq: recovered.seq,
                counters: Arc::clone(&counters),
                failed: Arc::clone(&failed),
                opts,
            };
            std::thread::Builder::new()
                .name("otpgate-store-writer".into())
                .spawn(move || w.run(&rx))
                .map_err(unavailable)?
        };
        Ok(Self {
            counters,
            state,
            tx: Some(tx),
            writer: Mutex::new(Some(writer)),
            failed,
            durability,
        })
    }

    async fn send(&self, op: Op, settle: Option<Settle>) -> Result<Answer, StoreError> {
        let (reply, answer) = oneshot::channel();
        let tx = self.tx.as_ref().ok_or_else(|| unavailable("closed"))?;
        tx.send(Msg { op, reply, settle })
            .map_err(|_| unavailable("writer stopped"))?;
        answer.await.map_err(|_| unavailable("writer stopped"))?
    }

    #[cfg(test)]
    fn now(&self) -> i64 {
        lock(&self.state).now_ms
    }

    /// The writer's counters so far.
    pub fn stats(&self) -> EmbeddedStats {
        let c = &self.counters;
        EmbeddedStats {
            batches: c.batches.load(Ordering::Relaxed),
            ops: c.ops.load(Ordering::Relaxed),
            apply_micros: c.apply_micros.load(Ordering::Relaxed),
            commit_micros: c.commit_micros.load(Ordering::Relaxed),
            syncs: c.syncs.load(Ordering::Relaxed),
            sync_micros: c.sync_micros.load(Ordering::Relaxed),
            checkpoints: c.checkpoints.load(Ordering::Relaxed),
            checkpoint_micros: c.checkpoint_micros.load(Ordering::Relaxed),
            replayed: c.replayed.load(Ordering::Relaxed),
        }
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        // Closing the channel lets the writer finish the queued operations, checkpoint and
        // stop; joining it releases the file before the store is gone (so it can be
        // reopened at once).
        self.tx = None;
        let handle = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

#[async_trait]
impl Engine for EmbeddedStore {
    async fn apply(&self, op: Op) -> Result<Answer, StoreError> {
        self.send(op, None).await
    }

    /// Answered once its batch is written, with the sync to wait for (under
    /// [`Durability::Process`] the written batch is the acknowledged state: settled).
    async fn apply_staged(&self, op: Op) -> Result<(Answer, Durable), StoreError> {
        if self.durability == Durability::Process {
            return Ok((self.send(op, None).await?, Durable::ready()));
        }
        let (settle, synced) = oneshot::channel();
        let answer = self.send(op, Some(settle)).await?;
        Ok((answer, Durable::later(synced)))
    }

    fn read<R>(&self, f: impl FnOnce(&State) -> R) -> Result<R, StoreError> {
        if self.failed.load(Ordering::Acquire) {
            return Err(refused());
        }
        Ok(f(&lock(&self.state)))
    }

    fn healthy(&self) -> Result<(), StoreError> {
        self.read(|_| ())?;
        let writer = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match writer.as_ref() {
            Some(h) if !h.is_finished() => Ok(()),
            _ => Err(unavailable("writer stopped")),
        }
    }
}

#[cfg(test)]
mod tests;
