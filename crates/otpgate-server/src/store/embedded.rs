//! The embedded store: one crash-safe redb file behind a write-ahead log, the default
//! backend of a single issuer.
//!
//! # Durability
//! Every change is acknowledged only after it is on disk: the batch that holds it was
//! appended to the write-ahead log (`<file>.wal`) and the log was `fdatasync`'d. An
//! acknowledged write survives `kill -9` or a power cut.
//!
//! The redb file itself is committed without a sync after each batch (readers see the batch
//! at once) and durably ([`Durability::Immediate`]) at a checkpoint: every
//! [`EmbeddedOptions::checkpoint_every`], when the log passes
//! [`EmbeddedOptions::checkpoint_bytes`], and on close. A checkpoint empties the log. After
//! a crash, redb comes back at its last checkpoint and [`EmbeddedStore::open`] replays the
//! batches logged since (each batch carries a sequence number; the checkpoint records the
//! last one it holds), so the state is the one that was acknowledged. Replaying is exact
//! because applying a batch depends only on the state, the batch and the batch's `now`,
//! which the log records.
//!
//! Why a log: a durable redb commit rewrites every B-tree page a batch touched and syncs
//! twice (~4 ms per batch on the reference machine); an append and one `fdatasync` of the
//! log costs ~0.2 ms, so a batch is durable ~20 times sooner and the writer serves
//! many times more operations per second.
//!
//! # Group commit
//! One writer thread owns the write side. Operations arrive over a channel; the writer
//! takes every operation waiting (up to [`EmbeddedOptions::max_batch`]), applies them one
//! after the other in ONE write transaction (each sees the effects of the previous ones, so
//! every operation is atomic and they are serialised), logs the batch (one sync), commits
//! the transaction, then answers each caller. If the log cannot be written, the transaction
//! is dropped: every operation of the batch fails with [`StoreError::Unavailable`] and none
//! of them took effect. After a failed sync (the file's contents are then unknown) or a
//! failed commit of a logged batch, the store refuses every further write and
//! [`Store::ping`] fails, until a restart recovers from the log. Under load the queue fills
//! during a sync, so batches grow with the load.
//!
//! Reads (`get`, `budget_used`) use their own read transactions, concurrently with the
//! writer; they see every committed batch.
//!
//! # Retention
//! The store has no clock of its own: its notion of "now" is the latest `now_ms` a call
//! passed (persisted with each batch). A record is forgotten at its expiry plus
//! [`RETENTION_GRACE_MS`](super::RETENTION_GRACE_MS) (reads stop returning it at once,
//! and the writer's periodic sweep deletes it through an index ordered by purge time), a
//! budget counter one window length after its window, a `once` key at its TTL.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, Table, TableDefinition, WriteTransaction,
};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::wal::Wal;
use super::{
    Budget, BudgetRequest, Budgets, CheckOutcome, DeliveryRecord, Guess, Record, RotateOutcome,
    Rotation, Store, StoreError, codec, logic,
};

/// id → encoded record.
const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records");
/// (purge at, id): the records in the order they are forgotten.
const RECORD_PURGE: TableDefinition<(i64, &str), ()> = TableDefinition::new("record_purge");
/// (purge at, window length, key) → count; the purge time identifies the window.
const BUDGETS: TableDefinition<(i64, i64, &str), u32> = TableDefinition::new("budgets");
/// key → until (exclusive).
const ONCE: TableDefinition<&str, i64> = TableDefinition::new("once");
/// (until, key).
const ONCE_PURGE: TableDefinition<(i64, &str), ()> = TableDefinition::new("once_purge");
/// Store-wide values: `format`, `now_ms`, `wal_seq` (the last logged batch applied).
const META: TableDefinition<&str, i64> = TableDefinition::new("meta");

/// The layout version of the file.
const LAYOUT: i64 = 1;

/// Tuning of the [`EmbeddedStore`].
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// Most operations committed together.
    pub max_batch: usize,
    /// How often the writer deletes what is past its retention.
    pub sweep_every: Duration,
    /// Most entries deleted per table by one sweep (keeps a sweep short; the next one goes
    /// on).
    pub sweep_limit: usize,
    /// redb page cache, bytes.
    pub cache_bytes: usize,
    /// Longest time between two durable checkpoints of the redb file (the write-ahead log
    /// holds what came since; a longer time means a longer replay after a crash).
    pub checkpoint_every: Duration,
    /// Log size that triggers a checkpoint sooner.
    pub checkpoint_bytes: u64,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            max_batch: 4096,
            sweep_every: Duration::from_secs(10),
            sweep_limit: 10_000,
            cache_bytes: 256 << 20,
            checkpoint_every: Duration::from_secs(1),
            checkpoint_bytes: 64 << 20,
        }
    }
}

/// Counters of the writer since the store was opened (for metrics and benchmarks).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct EmbeddedStats {
    /// Batches committed (each one log append and one `fdatasync`).
    pub batches: u64,
    /// Operations applied in them.
    pub ops: u64,
    /// Time spent applying operations, microseconds.
    pub apply_micros: u64,
    /// Time spent logging (append and sync) and committing batches, microseconds.
    pub commit_micros: u64,
    /// Durable checkpoints of the redb file.
    pub checkpoints: u64,
    /// Batches replayed from the log when the store was opened.
    pub replayed: u64,
}

#[derive(Debug, Default)]
struct Counters {
    batches: AtomicU64,
    ops: AtomicU64,
    apply_micros: AtomicU64,
    commit_micros: AtomicU64,
    checkpoints: AtomicU64,
    replayed: AtomicU64,
}

/// The embedded [`Store`] (see the module docs for durability and batching).
pub struct EmbeddedStore {
    counters: Arc<Counters>,
    db: Arc<Database>,
    tx: Option<mpsc::Sender<Msg>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    now_ms: Arc<AtomicI64>,
    /// Set when the writer refuses writes until a restart.
    failed: Arc<AtomicBool>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("now_ms", &self.now_ms.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// One write; batches of them are logged, so the form is serialised (JSON in the log).
#[derive(Serialize, Deserialize)]
enum Op {
    Create(Box<Record>),
    Open {
        record: Box<Record>,
        budgets: Vec<(String, u32, i64)>,
        now: i64,
    },
    Check {
        id: String,
        guess: Guess,
        budget: Option<(String, u32, i64)>,
        now: i64,
    },
    Rotate {
        id: String,
        rotation: Box<Rotation>,
        now: i64,
    },
    Cancel {
        id: String,
        now: i64,
    },
    Delivery {
        id: String,
        version: u32,
        delivery: Box<DeliveryRecord>,
    },
    Take {
        key: String,
        limit: u32,
        window: i64,
        now: i64,
    },
    TakeMany {
        budgets: Vec<(String, u32, i64)>,
        now: i64,
    },
    Refund {
        key: String,
        window: i64,
        now: i64,
    },
    Once {
        key: String,
        ttl: i64,
        now: i64,
    },
}

impl Op {
    /// The caller's `now`, which moves the store's clock (the issuer's clock only).
    fn now(&self) -> i64 {
        match self {
            Op::Create(r) => r.created_at_ms,
            // A delivery time may come from a phone's clock: it never moves the store's.
            Op::Delivery { .. } => i64::MIN,
            Op::Open { now, .. }
            | Op::Check { now, .. }
            | Op::Rotate { now, .. }
            | Op::Cancel { now, .. }
            | Op::Take { now, .. }
            | Op::TakeMany { now, .. }
            | Op::Refund { now, .. }
            | Op::Once { now, .. } => *now,
        }
    }
}

enum Answer {
    Unit,
    Bool(bool),
    Check(CheckOutcome),
    Rotate(RotateOutcome),
    Record(Option<Box<Record>>),
    Budget(Budget),
    Budgets(Budgets),
}

struct Msg {
    op: Op,
    reply: oneshot::Sender<Result<Answer, StoreError>>,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("embedded store: {e}"))
}

impl EmbeddedStore {
    /// Opens (or creates) the store file at `path` with default options. After a crash,
    /// redb repairs the file on open (the last committed batch is the state).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the file cannot be opened or created (including
    /// when another process has it open), [`StoreError::Corrupt`] when it has another
    /// layout.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, EmbeddedOptions::default())
    }

    /// Opens (or creates) the store file at `path` and its write-ahead log `<path>.wal`,
    /// replaying what the log holds past the file's last checkpoint.
    ///
    /// # Errors
    /// As [`EmbeddedStore::open`]; also [`StoreError::Corrupt`] when the log does not follow
    /// on from the file (a batch is missing).
    pub fn open_with(path: impl AsRef<Path>, opts: EmbeddedOptions) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let db = Database::builder()
            .set_cache_size(opts.cache_bytes)
            .create(path)
            .map_err(|e| unavailable(format!("{}: {e}", path.display())))?;
        let (now, checkpoint) = init(&db)?;
        let wal_path = {
            let mut p = path.as_os_str().to_owned();
            p.push(".wal");
            std::path::PathBuf::from(p)
        };
        let (mut wal, entries, dropped) = Wal::open(&wal_path)
            .map_err(|e| unavailable(format!("{}: {e}", wal_path.display())))?;
        if dropped > 0 {
            tracing::warn!(
                bytes = dropped,
                "embedded store: cut a torn entry off the end of the log (never acknowledged)"
            );
        }
        let counters = Arc::new(Counters::default());
        let (now, seq) = replay(&db, &entries, now, checkpoint)?;
        if seq > checkpoint {
            tracing::info!(
                batches = seq - checkpoint,
                "embedded store: replayed the log since the last checkpoint"
            );
            counters.replayed.store(seq - checkpoint, Ordering::Relaxed);
        }
        if !entries.is_empty() {
            wal.reset()
                .map_err(|e| unavailable(format!("{}: {e}", wal_path.display())))?;
        }
        let db = Arc::new(db);
        let now_ms = Arc::new(AtomicI64::new(now));
        let failed = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let writer = {
            let mut w = Writer {
                db: Arc::clone(&db),
                wal,
                seq,
                now_ms: Arc::clone(&now_ms),
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
            db,
            tx: Some(tx),
            writer: Mutex::new(Some(writer)),
            now_ms,
            failed,
        })
    }

    async fn submit(&self, op: Op) -> Result<Answer, StoreError> {
        let (reply, answer) = oneshot::channel();
        let tx = self.tx.as_ref().ok_or_else(|| unavailable("closed"))?;
        tx.send(Msg { op, reply })
            .map_err(|_| unavailable("writer stopped"))?;
        answer.await.map_err(|_| unavailable("writer stopped"))?
    }

    fn now(&self) -> i64 {
        self.now_ms.load(Ordering::Acquire)
    }

    /// The writer's counters so far.
    pub fn stats(&self) -> EmbeddedStats {
        let c = &self.counters;
        EmbeddedStats {
            batches: c.batches.load(Ordering::Relaxed),
            ops: c.ops.load(Ordering::Relaxed),
            apply_micros: c.apply_micros.load(Ordering::Relaxed),
            commit_micros: c.commit_micros.load(Ordering::Relaxed),
            checkpoints: c.checkpoints.load(Ordering::Relaxed),
            replayed: c.replayed.load(Ordering::Relaxed),
        }
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        // Closing the channel lets the writer finish the queued operations and stop; joining
        // it releases the file before the store is gone (so it can be reopened at once).
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

/// Creates the tables, checks the layout, returns the persisted clock and the sequence
/// number of the last logged batch the file holds.
fn init(db: &Database) -> Result<(i64, u64), StoreError> {
    let txn = db.begin_write().map_err(unavailable)?;
    let state = {
        let mut meta = txn.open_table(META).map_err(unavailable)?;
        let layout = meta.get("format").map_err(unavailable)?.map(|g| g.value());
        match layout {
            None => {
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
        let (now, seq) = (get("now_ms")?, get("wal_seq")?);
        txn.open_table(RECORDS).map_err(unavailable)?;
        txn.open_table(RECORD_PURGE).map_err(unavailable)?;
        txn.open_table(BUDGETS).map_err(unavailable)?;
        txn.open_table(ONCE).map_err(unavailable)?;
        txn.open_table(ONCE_PURGE).map_err(unavailable)?;
        let seq = u64::try_from(seq)
            .map_err(|_| StoreError::Corrupt(format!("log sequence number {seq}")))?;
        (now, seq)
    };
    txn.commit().map_err(unavailable)?;
    Ok(state)
}

/// A batch as it is logged.
#[derive(Serialize)]
struct LogEntry<'a> {
    seq: u64,
    now: i64,
    sweep: Option<usize>,
    ops: Vec<&'a Op>,
}

/// A batch as it is read back from the log.
#[derive(Deserialize)]
struct LoggedBatch {
    seq: u64,
    now: i64,
    sweep: Option<usize>,
    ops: Vec<Op>,
}

/// Applies the logged batches past `checkpoint` in one durable transaction; returns the
/// store's clock and the last sequence number applied.
fn replay(
    db: &Database,
    entries: &[Vec<u8>],
    mut now_ms: i64,
    checkpoint: u64,
) -> Result<(i64, u64), StoreError> {
    let corrupt = |e: &dyn std::fmt::Display| StoreError::Corrupt(format!("store log: {e}"));
    let mut seq = checkpoint;
    if entries.is_empty() {
        return Ok((now_ms, seq));
    }
    let mut txn = db.begin_write().map_err(unavailable)?;
    txn.set_durability(Durability::Immediate)
        .map_err(unavailable)?;
    {
        let mut t = Tables::open(&txn).map_err(unavailable)?;
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
            for op in &batch.ops {
                // An operation's own answer (an error included) was given before the crash;
                // only its effect matters here.
                let _ = t.apply(op, batch.now).map_err(unavailable)?;
            }
            if let Some(limit) = batch.sweep {
                t.sweep(batch.now, limit).map_err(unavailable)?;
            }
            seq = batch.seq;
            now_ms = now_ms.max(batch.now);
        }
        t.meta.insert("now_ms", now_ms).map_err(unavailable)?;
        t.meta
            .insert("wal_seq", i64::try_from(seq).map_err(|e| corrupt(&e))?)
            .map_err(unavailable)?;
    }
    txn.commit().map_err(unavailable)?;
    Ok((now_ms, seq))
}

/// The write side: owns the log and applies batches.
struct Writer {
    db: Arc<Database>,
    wal: Wal,
    /// The sequence number of the last logged batch.
    seq: u64,
    now_ms: Arc<AtomicI64>,
    counters: Arc<Counters>,
    failed: Arc<AtomicBool>,
    opts: EmbeddedOptions,
}

impl Writer {
    fn run(&mut self, rx: &mpsc::Receiver<Msg>) {
        let mut last_sweep = Instant::now();
        let mut last_checkpoint = Instant::now();
        loop {
            let mut wait = self.opts.sweep_every.saturating_sub(last_sweep.elapsed());
            if self.wal.len() > 0 {
                wait = wait.min(
                    self.opts
                        .checkpoint_every
                        .saturating_sub(last_checkpoint.elapsed()),
                );
            }
            let mut batch = Vec::new();
            match rx.recv_timeout(wait.max(Duration::from_millis(1))) {
                Ok(m) => batch.push(m),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            while batch.len() < self.opts.max_batch.max(1) {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            let sweep = last_sweep.elapsed() >= self.opts.sweep_every;
            if sweep {
                last_sweep = Instant::now();
            }
            if !batch.is_empty() || sweep {
                self.serve(batch, sweep);
            }
            if self.wal.len() > 0
                && (last_checkpoint.elapsed() >= self.opts.checkpoint_every
                    || self.wal.len() >= self.opts.checkpoint_bytes)
            {
                last_checkpoint = Instant::now();
                self.checkpoint();
            }
        }
        if self.wal.len() > 0 {
            self.checkpoint();
        }
    }

    /// Applies, logs and commits one batch, then answers its callers.
    fn serve(&mut self, batch: Vec<Msg>, sweep: bool) {
        if self.failed.load(Ordering::Acquire) {
            for m in batch {
                let _ = m.reply.send(Err(unavailable(
                    "a write failed earlier; restart otpgate to recover from the log",
                )));
            }
            return;
        }
        for m in &batch {
            self.now_ms.fetch_max(m.op.now(), Ordering::AcqRel);
        }
        let now = self.now_ms.load(Ordering::Acquire);
        let sweep_limit = sweep.then_some(self.opts.sweep_limit);
        match self.run_batch(&batch, sweep_limit, now) {
            Ok(answers) => {
                for (m, a) in batch.into_iter().zip(answers) {
                    // A caller that gave up does not take the change back: it was committed.
                    let _ = m.reply.send(a);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, ops = batch.len(), "embedded store: batch not committed");
                for m in batch {
                    let _ = m.reply.send(Err(unavailable(&e)));
                }
            }
        }
        if self.wal.is_broken() {
            self.failed.store(true, Ordering::Release);
        }
    }

    /// Applies `batch` in one transaction, logs it durably, commits it. An error means
    /// nothing of the batch took effect.
    fn run_batch(
        &mut self,
        batch: &[Msg],
        sweep_limit: Option<usize>,
        now: i64,
    ) -> Result<Vec<Result<Answer, StoreError>>, String> {
        let started = Instant::now();
        let seq = self.seq + 1;
        let mut txn: WriteTransaction = self.db.begin_write().map_err(|e| e.to_string())?;
        txn.set_durability(Durability::None)
            .map_err(|e| e.to_string())?;
        let mut answers = Vec::with_capacity(batch.len());
        {
            let mut t = Tables::open(&txn).map_err(|e| e.to_string())?;
            for m in batch {
                answers.push(t.apply(&m.op, now).map_err(|e| e.to_string())?);
            }
            if let Some(limit) = sweep_limit {
                t.sweep(now, limit).map_err(|e| e.to_string())?;
            }
            let seq_value = i64::try_from(seq).map_err(|e| e.to_string())?;
            t.meta.insert("now_ms", now).map_err(|e| e.to_string())?;
            t.meta
                .insert("wal_seq", seq_value)
                .map_err(|e| e.to_string())?;
        }
        let applied = Instant::now();
        let entry = LogEntry {
            seq,
            now,
            sweep: sweep_limit,
            ops: batch.iter().map(|m| &m.op).collect(),
        };
        let bytes = serde_json::to_vec(&entry).map_err(|e| e.to_string())?;
        // Dropping `txn` on an error below rolls the batch back.
        self.wal
            .append(&bytes)
            .map_err(|e| format!("write-ahead log: {e}"))?;
        self.seq = seq;
        if let Err(e) = txn.commit() {
            // Logged, hence durable, but not in the file: later batches would not see it.
            // The callers get their answers (a restart applies the batch from the log);
            // every later write is refused until then.
            tracing::error!(error = %e, "embedded store: a logged batch could not be committed; refusing writes until restart");
            self.failed.store(true, Ordering::Release);
        }
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let c = &self.counters;
        c.batches.fetch_add(1, Ordering::Relaxed);
        c.ops.fetch_add(batch.len() as u64, Ordering::Relaxed);
        c.apply_micros
            .fetch_add(micros(applied - started), Ordering::Relaxed);
        c.commit_micros
            .fetch_add(micros(applied.elapsed()), Ordering::Relaxed);
        Ok(answers)
    }

    /// Commits the file durably and empties the log. A failure keeps the log (it is tried
    /// again at the next checkpoint).
    fn checkpoint(&mut self) {
        if self.failed.load(Ordering::Acquire) {
            return;
        }
        let commit = || -> Result<(), redb::Error> {
            let mut txn = self.db.begin_write()?;
            txn.set_durability(Durability::Immediate)?;
            {
                let mut meta = txn.open_table(META)?;
                let seq = i64::try_from(self.seq).unwrap_or(i64::MAX);
                meta.insert("wal_seq", seq)?;
            }
            txn.commit()?;
            Ok(())
        };
        if let Err(e) = commit() {
            tracing::error!(error = %e, "embedded store: checkpoint failed; the log keeps every batch");
            return;
        }
        if let Err(e) = self.wal.reset() {
            tracing::error!(error = %e, "embedded store: could not empty the log after a checkpoint; refusing writes until restart");
            self.failed.store(true, Ordering::Release);
            return;
        }
        self.counters.checkpoints.fetch_add(1, Ordering::Relaxed);
    }
}

struct Tables<'txn> {
    records: Table<'txn, &'static str, &'static [u8]>,
    record_purge: Table<'txn, (i64, &'static str), ()>,
    budgets: Table<'txn, (i64, i64, &'static str), u32>,
    once: Table<'txn, &'static str, i64>,
    once_purge: Table<'txn, (i64, &'static str), ()>,
    meta: Table<'txn, &'static str, i64>,
}

impl<'txn> Tables<'txn> {
    fn open(txn: &'txn WriteTransaction) -> Result<Self, redb::Error> {
        Ok(Self {
            records: txn.open_table(RECORDS)?,
            record_purge: txn.open_table(RECORD_PURGE)?,
            budgets: txn.open_table(BUDGETS)?,
            once: txn.open_table(ONCE)?,
            once_purge: txn.open_table(ONCE_PURGE)?,
            meta: txn.open_table(META)?,
        })
    }

    /// A live record (not past its retention at `now`). The outer error aborts the batch;
    /// the inner one is this operation's answer.
    fn load(&self, id: &str, now: i64) -> Result<Result<Option<Record>, StoreError>, redb::Error> {
        let Some(bytes) = self.records.get(id)? else {
            return Ok(Ok(None));
        };
        Ok(codec::decode(bytes.value()).map(|r| (logic::purge_at(&r) > now).then_some(r)))
    }

    fn save(&mut self, rec: &Record, old_purge_at: Option<i64>) -> Result<(), redb::Error> {
        let purge_at = logic::purge_at(rec);
        if old_purge_at != Some(purge_at) {
            if let Some(old) = old_purge_at {
                self.record_purge.remove((old, rec.id.as_str()))?;
            }
            self.record_purge.insert((purge_at, rec.id.as_str()), ())?;
        }
        self.records
            .insert(rec.id.as_str(), codec::encode(rec).as_bytes())?;
        Ok(())
    }

    /// Loads the record `id`, lets `f` change it, saves it when `f` says it changed.
    fn update<T>(
        &mut self,
        id: &str,
        now: i64,
        missing: T,
        f: impl FnOnce(&mut Record) -> (T, bool),
    ) -> Result<Result<T, StoreError>, redb::Error> {
        let mut rec = match self.load(id, now)? {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(Ok(missing)),
            Err(e) => return Ok(Err(e)),
        };
        let old_purge_at = logic::purge_at(&rec);
        let (answer, changed) = f(&mut rec);
        if changed {
            self.save(&rec, Some(old_purge_at))?;
        }
        Ok(Ok(answer))
    }

    /// Whether `id` is free (unknown, or past its retention: then the purge time of the
    /// stale record it replaces).
    fn vacant(&self, id: &str, now: i64) -> Result<Result<Option<i64>, StoreError>, redb::Error> {
        Ok(
            match self.records.get(id)?.map(|g| codec::decode(g.value())) {
                Some(Ok(old)) if logic::purge_at(&old) > now => Err(StoreError::Duplicate),
                Some(Ok(old)) => Ok(Some(logic::purge_at(&old))),
                Some(Err(e)) => Err(e),
                None => Ok(None),
            },
        )
    }

    /// Inserts a new record unless its id is taken.
    fn insert(&mut self, rec: &Record, now: i64) -> Result<Result<(), StoreError>, redb::Error> {
        Ok(match self.vacant(&rec.id, now)? {
            Ok(stale) => {
                self.save(rec, stale)?;
                Ok(())
            }
            Err(e) => Err(e),
        })
    }

    /// Takes one unit of each budget, all or nothing.
    fn take_many(
        &mut self,
        budgets: &[(String, u32, i64)],
        at: i64,
    ) -> Result<Budgets, redb::Error> {
        // Counted on a copy first, written only when every budget allowed it (the same key
        // may appear twice).
        let mut next: Vec<((i64, i64, &str), u32)> = Vec::with_capacity(budgets.len());
        let mut remaining = Vec::with_capacity(budgets.len());
        for (index, (key, limit, window)) in budgets.iter().enumerate() {
            let k = budget_key(key, *window, at);
            let count = match next.iter().rev().find(|(nk, _)| *nk == k) {
                Some((_, c)) => *c,
                None => self.budgets.get(k)?.map_or(0, |g| g.value()),
            };
            if count >= *limit {
                let (w, start) = (logic::window_len(*window), logic::window_start(at, *window));
                return Ok(Budgets::Exhausted {
                    index,
                    retry_after_ms: start + w - at,
                });
            }
            remaining.push(limit - count - 1);
            next.push((k, count + 1));
        }
        for (k, c) in next {
            self.budgets.insert(k, c)?;
        }
        Ok(Budgets::Allowed { remaining })
    }

    fn apply(&mut self, op: &Op, now: i64) -> Result<Result<Answer, StoreError>, redb::Error> {
        Ok(match op {
            Op::Create(rec) => self.insert(rec, now)?.map(|()| Answer::Unit),
            Op::Open {
                record,
                budgets,
                now: at,
            } => {
                // The id first: a refused insert must not count anything.
                let stale = match self.vacant(&record.id, now)? {
                    Ok(stale) => stale,
                    Err(e) => return Ok(Err(e)),
                };
                let taken = self.take_many(budgets, *at)?;
                if matches!(taken, Budgets::Allowed { .. }) {
                    self.save(record, stale)?;
                }
                Ok(Answer::Budgets(taken))
            }
            Op::Check {
                id,
                guess,
                budget,
                now: at,
            } => {
                if let Some(b) = budget
                    && let Budgets::Exhausted { retry_after_ms, .. } =
                        self.take_many(std::slice::from_ref(b), *at)?
                {
                    return Ok(Ok(Answer::Check(CheckOutcome::RateLimited {
                        retry_after_ms,
                    })));
                }
                self.update(id, now, CheckOutcome::NotFound, |r| {
                    logic::check(r, guess, *at)
                })?
                .map(Answer::Check)
            }
            Op::Rotate {
                id,
                rotation,
                now: at,
            } => self
                .update(id, now, RotateOutcome::NotFound, |r| {
                    let o = logic::rotate(r, rotation, *at);
                    let changed = matches!(o, RotateOutcome::Rotated(_));
                    (o, changed)
                })?
                .map(Answer::Rotate),
            Op::Cancel { id, .. } => self
                .update(id, now, None, |r| {
                    let changed = logic::cancel(r);
                    (Some(Box::new(r.clone())), changed)
                })?
                .map(Answer::Record),
            Op::Delivery {
                id,
                version,
                delivery,
            } => self
                .update(id, now, false, |r| {
                    let ok = logic::update_delivery(r, *version, delivery);
                    (ok, ok)
                })?
                .map(Answer::Bool),
            Op::Take {
                key,
                limit,
                window,
                now: at,
            } => {
                let k = budget_key(key, *window, *at);
                let count = self.budgets.get(k)?.map_or(0, |g| g.value());
                if count >= *limit {
                    let (w, start) = (
                        logic::window_len(*window),
                        logic::window_start(*at, *window),
                    );
                    Ok(Answer::Budget(Budget::Exhausted {
                        retry_after_ms: start + w - at,
                    }))
                } else {
                    self.budgets.insert(k, count + 1)?;
                    Ok(Answer::Budget(Budget::Allowed {
                        remaining: limit - count - 1,
                    }))
                }
            }
            Op::TakeMany { budgets, now: at } => Ok(Answer::Budgets(self.take_many(budgets, *at)?)),
            Op::Refund {
                key,
                window,
                now: at,
            } => {
                let k = budget_key(key, *window, *at);
                let count = self.budgets.get(k)?.map_or(0, |g| g.value());
                if count > 0 {
                    self.budgets.insert(k, count - 1)?;
                }
                Ok(Answer::Unit)
            }
            Op::Once { key, ttl, now: at } => {
                let until = self.once.get(key.as_str())?.map(|g| g.value());
                match until {
                    Some(u) if u > *at => Ok(Answer::Bool(false)),
                    _ => {
                        if let Some(u) = until {
                            self.once_purge.remove((u, key.as_str()))?;
                        }
                        let new_until = at.saturating_add((*ttl).max(1));
                        self.once.insert(key.as_str(), new_until)?;
                        self.once_purge.insert((new_until, key.as_str()), ())?;
                        Ok(Answer::Bool(true))
                    }
                }
            }
        })
    }

    /// Deletes up to `limit` entries per table that are past their retention at `now`.
    fn sweep(&mut self, now: i64, limit: usize) -> Result<(), redb::Error> {
        let end = now.saturating_add(1);
        let ids: Vec<(i64, String)> = self
            .record_purge
            .range::<(i64, &str)>(..(end, ""))?
            .take(limit)
            .map(|e| e.map(|(k, _)| (k.value().0, k.value().1.to_owned())))
            .collect::<Result<_, _>>()?;
        for (at, id) in &ids {
            self.record_purge.remove((*at, id.as_str()))?;
            self.records.remove(id.as_str())?;
        }
        let budgets: Vec<(i64, i64, String)> = self
            .budgets
            .range::<(i64, i64, &str)>(..(end, i64::MIN, ""))?
            .take(limit)
            .map(|e| e.map(|(k, _)| (k.value().0, k.value().1, k.value().2.to_owned())))
            .collect::<Result<_, _>>()?;
        for (at, w, key) in &budgets {
            self.budgets.remove((*at, *w, key.as_str()))?;
        }
        let once: Vec<(i64, String)> = self
            .once_purge
            .range::<(i64, &str)>(..(end, ""))?
            .take(limit)
            .map(|e| e.map(|(k, _)| (k.value().0, k.value().1.to_owned())))
            .collect::<Result<_, _>>()?;
        for (at, key) in &once {
            self.once_purge.remove((*at, key.as_str()))?;
            self.once.remove(key.as_str())?;
        }
        if !(ids.is_empty() && budgets.is_empty() && once.is_empty()) {
            tracing::debug!(
                records = ids.len(),
                budgets = budgets.len(),
                once = once.len(),
                "embedded store: swept"
            );
        }
        Ok(())
    }
}

/// Budget requests as the writer thread takes them.
fn owned_budgets(budgets: &[BudgetRequest<'_>]) -> Vec<(String, u32, i64)> {
    budgets
        .iter()
        .map(|b| (b.key.to_owned(), b.limit, b.window_ms))
        .collect()
}

/// The budget table key of `key` in the window holding `now`.
fn budget_key(key: &str, window_ms: i64, now: i64) -> (i64, i64, &str) {
    let (w, start) = (
        logic::window_len(window_ms),
        logic::window_start(now, window_ms),
    );
    (logic::budget_purge_at(start, w), w, key)
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn create(&self, record: &Record) -> Result<(), StoreError> {
        match self.submit(Op::Create(Box::new(record.clone()))).await? {
            Answer::Unit => Ok(()),
            _ => Err(unexpected()),
        }
    }

    async fn get(&self, id: &str) -> Result<Option<Record>, StoreError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        let table = txn.open_table(RECORDS).map_err(unavailable)?;
        let Some(bytes) = table.get(id).map_err(unavailable)? else {
            return Ok(None);
        };
        let rec = codec::decode(bytes.value())?;
        Ok((logic::purge_at(&rec) > self.now()).then_some(rec))
    }

    async fn open(
        &self,
        record: &Record,
        budgets: &[BudgetRequest<'_>],
        now_ms: i64,
    ) -> Result<Budgets, StoreError> {
        let op = Op::Open {
            record: Box::new(record.clone()),
            budgets: owned_budgets(budgets),
            now: now_ms,
        };
        match self.submit(op).await? {
            Answer::Budgets(b) => Ok(b),
            _ => Err(unexpected()),
        }
    }

    async fn check(
        &self,
        id: &str,
        guess: &Guess,
        budget: Option<BudgetRequest<'_>>,
        now_ms: i64,
    ) -> Result<CheckOutcome, StoreError> {
        let op = Op::Check {
            id: id.to_owned(),
            guess: guess.clone(),
            budget: budget.map(|b| (b.key.to_owned(), b.limit, b.window_ms)),
            now: now_ms,
        };
        match self.submit(op).await? {
            Answer::Check(c) => Ok(c),
            _ => Err(unexpected()),
        }
    }

    async fn rotate(
        &self,
        id: &str,
        rotation: &Rotation,
        now_ms: i64,
    ) -> Result<RotateOutcome, StoreError> {
        let op = Op::Rotate {
            id: id.to_owned(),
            rotation: Box::new(rotation.clone()),
            now: now_ms,
        };
        match self.submit(op).await? {
            Answer::Rotate(o) => Ok(o),
            _ => Err(unexpected()),
        }
    }

    async fn cancel(&self, id: &str, now_ms: i64) -> Result<Option<Record>, StoreError> {
        match self
            .submit(Op::Cancel {
                id: id.to_owned(),
                now: now_ms,
            })
            .await?
        {
            Answer::Record(r) => Ok(r.map(|b| *b)),
            _ => Err(unexpected()),
        }
    }

    async fn update_delivery(
        &self,
        id: &str,
        version: u32,
        delivery: &DeliveryRecord,
    ) -> Result<bool, StoreError> {
        let op = Op::Delivery {
            id: id.to_owned(),
            version,
            delivery: Box::new(delivery.clone()),
        };
        match self.submit(op).await? {
            Answer::Bool(b) => Ok(b),
            _ => Err(unexpected()),
        }
    }

    async fn take_budget(
        &self,
        key: &str,
        limit: u32,
        window_ms: i64,
        now_ms: i64,
    ) -> Result<Budget, StoreError> {
        match self
            .submit(Op::Take {
                key: key.to_owned(),
                limit,
                window: window_ms,
                now: now_ms,
            })
            .await?
        {
            Answer::Budget(b) => Ok(b),
            _ => Err(unexpected()),
        }
    }

    async fn take_budgets(
        &self,
        budgets: &[BudgetRequest<'_>],
        now_ms: i64,
    ) -> Result<Budgets, StoreError> {
        let budgets = owned_budgets(budgets);
        match self
            .submit(Op::TakeMany {
                budgets,
                now: now_ms,
            })
            .await?
        {
            Answer::Budgets(b) => Ok(b),
            _ => Err(unexpected()),
        }
    }

    async fn refund_budget(
        &self,
        key: &str,
        window_ms: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        match self
            .submit(Op::Refund {
                key: key.to_owned(),
                window: window_ms,
                now: now_ms,
            })
            .await?
        {
            Answer::Unit => Ok(()),
            _ => Err(unexpected()),
        }
    }

    async fn budget_used(&self, key: &str, window_ms: i64, now_ms: i64) -> Result<u32, StoreError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        let table = txn.open_table(BUDGETS).map_err(unavailable)?;
        Ok(table
            .get(budget_key(key, window_ms, now_ms))
            .map_err(unavailable)?
            .map_or(0, |g| g.value()))
    }

    async fn once(&self, key: &str, ttl_ms: i64, now_ms: i64) -> Result<bool, StoreError> {
        match self
            .submit(Op::Once {
                key: key.to_owned(),
                ttl: ttl_ms,
                now: now_ms,
            })
            .await?
        {
            Answer::Bool(b) => Ok(b),
            _ => Err(unexpected()),
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        if self.failed.load(Ordering::Acquire) {
            return Err(unavailable(
                "a write failed; restart otpgate to recover from the log",
            ));
        }
        let txn = self.db.begin_read().map_err(unavailable)?;
        txn.open_table(META).map_err(unavailable)?;
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

/// The writer answered with the wrong kind (cannot happen: each op has one answer kind).
fn unexpected() -> StoreError {
    StoreError::Unavailable("embedded store: mismatched answer".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::{right, sample_record, sample_rotation, wrong};

    fn table_len<K: redb::Key + 'static, V: redb::Value + 'static>(
        store: &EmbeddedStore,
        def: TableDefinition<K, V>,
    ) -> u64 {
        use redb::ReadableTableMetadata;
        let txn = store.db.begin_read().expect("read");
        txn.open_table(def).expect("table").len().expect("len")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn state_survives_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.redb");
        let t = 1_764_000_000_000;
        {
            let s = EmbeddedStore::open(&path).expect("open");
            s.create(&sample_record("v_a", t)).await.expect("create");
            s.create(&sample_record("v_b", t)).await.expect("create");
            assert!(matches!(
                s.check("v_a", &wrong(), None, t + 1).await.expect("check"),
                CheckOutcome::Wrong { .. }
            ));
            let b = sample_record("v_b", t).code;
            assert!(matches!(
                s.check("v_b", &right(&b), None, t + 2)
                    .await
                    .expect("check"),
                CheckOutcome::Approved(_)
            ));
            let at = t + 30_000;
            assert!(matches!(
                s.rotate("v_a", &sample_rotation(2, at), at)
                    .await
                    .expect("rotate"),
                RotateOutcome::Rotated(_)
            ));
            s.take_budget("k", 10, 60_000, t).await.expect("take");
            s.take_budget("k", 10, 60_000, t).await.expect("take");
            assert!(s.once("evt", 60_000, t).await.expect("once"));
        }
        let s = EmbeddedStore::open(&path).expect("reopen");
        let a = s.get("v_a").await.expect("get").expect("v_a kept");
        assert_eq!((a.code.version, a.sends, a.attempts), (2, 2, 0));
        let b = s.get("v_b").await.expect("get").expect("v_b kept");
        assert_eq!(b.outcome, crate::store::Outcome::Approved);
        assert_eq!(
            s.check("v_b", &right(&b.code), None, t + 3)
                .await
                .expect("check"),
            CheckOutcome::AlreadyUsed,
            "still single use"
        );
        assert_eq!(s.budget_used("k", 60_000, t).await.expect("used"), 2);
        assert!(
            !s.once("evt", 60_000, t + 1).await.expect("once"),
            "once remembered"
        );
        assert_eq!(
            s.create(&sample_record("v_a", t)).await,
            Err(StoreError::Duplicate)
        );
        assert!(s.now() >= t + 30_000, "clock persisted");
    }

    fn wal_of(path: &Path) -> std::path::PathBuf {
        let mut p = path.as_os_str().to_owned();
        p.push(".wal");
        p.into()
    }

    /// Runs `work` on a store at `path` and then leaves the files as a crash right after it
    /// would: the redb file as it was durably before `work` (none of the batches made it
    /// into the file), the log as it was when `work` ended.
    async fn crash_after(path: &Path, work: impl AsyncFnOnce(&EmbeddedStore)) {
        let opts = EmbeddedOptions {
            checkpoint_every: Duration::from_secs(3600),
            ..EmbeddedOptions::default()
        };
        let s = EmbeddedStore::open_with(path, opts).expect("open");
        let durable = std::fs::read(path).expect("file before");
        work(&s).await;
        assert_eq!(s.stats().checkpoints, 0);
        let log = std::fs::read(wal_of(path)).expect("log");
        assert!(!log.is_empty(), "the writes are in the log");
        drop(s);
        std::fs::write(path, durable).expect("restore file");
        std::fs::write(wal_of(path), log).expect("restore log");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn acknowledged_writes_are_replayed_from_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.redb");
        let t = 1_764_000_000_000;
        let b_code = sample_record("v_b", t).code;
        crash_after(&path, async |s| {
            s.create(&sample_record("v_a", t)).await.expect("create");
            s.create(&sample_record("v_b", t)).await.expect("create");
            assert!(matches!(
                s.check("v_b", &right(&b_code), None, t + 2)
                    .await
                    .expect("check"),
                CheckOutcome::Approved(_)
            ));
            assert!(matches!(
                s.check("v_a", &wrong(), None, t + 3).await.expect("check"),
                CheckOutcome::Wrong { .. }
            ));
            s.take_budget("k", 10, 60_000, t).await.expect("take");
        })
        .await;
        // A crash can leave half an entry behind: it was never acknowledged.
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .open(wal_of(&path))
            .expect("log");
        std::io::Write::write_all(&mut log, &[200, 0, 0, 0, 1, 2, 3]).expect("torn tail");
        drop(log);

        let s = EmbeddedStore::open(&path).expect("reopen");
        assert_eq!(s.stats().replayed, 5, "{:?}", s.stats());
        assert_eq!(
            std::fs::metadata(wal_of(&path)).expect("log").len(),
            0,
            "replayed into the file, log emptied"
        );
        let a = s.get("v_a").await.expect("get").expect("v_a kept");
        assert_eq!(a.attempts, 1, "the wrong attempt stays counted");
        assert_eq!(
            s.check("v_b", &right(&b_code), None, t + 4)
                .await
                .expect("check"),
            CheckOutcome::AlreadyUsed,
            "an approval is not undone by a crash"
        );
        assert_eq!(s.budget_used("k", 60_000, t).await.expect("used"), 1);
        assert!(s.now() >= t + 3, "clock replayed");
        // Writes go on after the replayed batches, and survive the next crash as well.
        drop(s);
        crash_after(&path, async |s| {
            s.create(&sample_record("v_c", t + 5))
                .await
                .expect("create");
        })
        .await;
        let s = EmbeddedStore::open(&path).expect("reopen");
        assert_eq!(s.stats().replayed, 1);
        assert!(s.get("v_c").await.expect("get").is_some());
        assert!(s.get("v_a").await.expect("get").is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_log_that_does_not_follow_the_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.redb");
        let t = 1_764_000_000_000;
        crash_after(&path, async |s| {
            s.create(&sample_record("v_a", t)).await.expect("create");
            s.create(&sample_record("v_b", t)).await.expect("create");
        })
        .await;
        // Lose the first batch of the log: the second one cannot be applied without it.
        let (_, entries, _) = Wal::open(&wal_of(&path)).expect("log");
        assert_eq!(entries.len(), 2);
        std::fs::remove_file(wal_of(&path)).expect("rm");
        let (mut wal, _, _) = Wal::open(&wal_of(&path)).expect("log");
        wal.append(&entries[1]).expect("append");
        drop(wal);
        match EmbeddedStore::open(&path) {
            Err(StoreError::Corrupt(msg)) => assert!(msg.contains("does not continue"), "{msg}"),
            other => panic!("expected a corrupt log, got {other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sweep_deletes_what_is_past_retention() {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = EmbeddedOptions {
            sweep_every: Duration::from_millis(50),
            ..EmbeddedOptions::default()
        };
        let s = EmbeddedStore::open_with(dir.path().join("s.redb"), opts).expect("open");
        let t = 1_764_000_000_000;
        for i in 0..20 {
            s.create(&sample_record(&format!("v_{i}"), t))
                .await
                .expect("create");
        }
        let mut keep = sample_record("v_keep", t);
        keep.expires_at_ms = t + 10 * crate::store::RETENTION_GRACE_MS;
        s.create(&keep).await.expect("create");
        s.take_budget("k", 5, 60_000, t).await.expect("take");
        s.once("evt", 1_000, t).await.expect("once");
        assert_eq!(table_len(&s, RECORDS), 21);

        // Moving the store's clock past expiry + grace: reads stop at once, the sweep deletes.
        let later = t + 300_000 + crate::store::RETENTION_GRACE_MS;
        s.once("tick", 1, later).await.expect("tick");
        assert!(s.get("v_0").await.expect("get").is_none());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(table_len(&s, RECORDS), 1);
        assert_eq!(table_len(&s, RECORD_PURGE), 1);
        assert_eq!(table_len(&s, BUDGETS), 0);
        assert_eq!(table_len(&s, ONCE), 1, "only the fresh tick key");
        assert_eq!(table_len(&s, ONCE_PURGE), 1);
        assert!(s.get("v_keep").await.expect("get").is_some());
        // A forgotten id may be used again.
        s.create(&sample_record("v_0", later))
            .await
            .expect("create again");
    }

    #[test]
    fn refuses_a_file_in_use_or_of_another_layout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.redb");
        let s = EmbeddedStore::open(&path).expect("open");
        assert!(matches!(
            EmbeddedStore::open(&path),
            Err(StoreError::Unavailable(_))
        ));
        drop(s);
        {
            let db = Database::create(&path).expect("db");
            let txn = db.begin_write().expect("txn");
            txn.open_table(META)
                .expect("meta")
                .insert("format", 99)
                .expect("insert");
            txn.commit().expect("commit");
        }
        assert!(matches!(
            EmbeddedStore::open(&path),
            Err(StoreError::Corrupt(_))
        ));
        let junk = dir.path().join("junk.redb");
        std::fs::write(&junk, b"not a database at all").expect("write");
        assert!(EmbeddedStore::open(&junk).is_err());
    }
}
