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
//! The staged steps ([`Store::check_staged`], [`Store::open_staged`]) are answered as soon
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
//! every further read and write ([`Store::ping`] fails too) until a restart recovers from
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

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::wal::Wal;
use super::{
    Budget, BudgetRequest, Budgets, CheckOutcome, DeliveryRecord, Durability, Durable, Guess,
    Record, RotateOutcome, Rotation, Staged, Store, StoreError, codec, logic,
};

/// id → encoded record.
const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records");
/// (purge at, window length, key) → count; the purge time identifies the window.
const BUDGETS: TableDefinition<(i64, i64, &str), u32> = TableDefinition::new("budgets");
/// key → until (exclusive).
const ONCE: TableDefinition<&str, i64> = TableDefinition::new("once");
/// Store-wide values: `format`, `now_ms`, `wal_seq` (the last logged batch the file holds).
const META: TableDefinition<&str, i64> = TableDefinition::new("meta");
/// Purge indexes of layout 1 (dropped when such a file is opened).
const OLD_INDEXES: [&str; 2] = ["record_purge", "once_purge"];

/// The layout version of the file.
const LAYOUT: i64 = 2;

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

/// The embedded [`Store`] (see the module docs for durability and batching).
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
    Add {
        key: String,
        n: u32,
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
            | Op::Add { now, .. }
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

/// Where an operation's answer goes.
type Reply = oneshot::Sender<Result<Answer, StoreError>>;

/// Where a staged operation learns that its batch is durable.
type Settle = oneshot::Sender<Result<(), StoreError>>;

struct Msg {
    op: Op,
    reply: Reply,
    /// A staged operation ([`Store::check_staged`]): answered once its batch is written,
    /// told here when the batch is synced. `None`: answered when it is durable.
    settle: Option<Settle>,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("embedded store: {e}"))
}

fn refused() -> StoreError {
    unavailable(
        "a write to disk failed; restart otpgate to recover from the store file and its log",
    )
}

/// A budget counter: (purge at, window length, key).
type BudgetKey = (i64, i64, String);

/// The budget counter of `key` in the window holding `now`.
fn budget_key(key: &str, window_ms: i64, now: i64) -> BudgetKey {
    let (w, start) = (
        logic::window_len(window_ms),
        logic::window_start(now, window_ms),
    );
    (logic::budget_purge_at(start, w), w, key.to_owned())
}

fn open_op(record: &Record, budgets: &[BudgetRequest<'_>], now: i64) -> Op {
    Op::Open {
        record: Box::new(record.clone()),
        budgets: owned_budgets(budgets),
        now,
    }
}

fn check_op(id: &str, guess: &Guess, budget: Option<BudgetRequest<'_>>, now: i64) -> Op {
    Op::Check {
        id: id.to_owned(),
        guess: guess.clone(),
        budget: budget.map(|b| (b.key.to_owned(), b.limit, b.window_ms)),
        now,
    }
}

fn owned_budgets(budgets: &[BudgetRequest<'_>]) -> Vec<(String, u32, i64)> {
    budgets
        .iter()
        .map(|b| (b.key.to_owned(), b.limit, b.window_ms))
        .collect()
}

/// The keys changed since the last checkpoint.
#[derive(Debug, Default)]
struct Dirty {
    records: HashSet<String>,
    budgets: HashSet<BudgetKey>,
    once: HashSet<String>,
}

impl Dirty {
    fn is_empty(&self) -> bool {
        self.records.is_empty() && self.budgets.is_empty() && self.once.is_empty()
    }
}

/// The live state.
#[derive(Debug, Default)]
struct State {
    records: HashMap<String, Record>,
    budgets: HashMap<BudgetKey, u32>,
    once: HashMap<String, i64>,
    /// The store's clock: the latest `now` of a batch.
    now_ms: i64,
    dirty: Dirty,
}

impl State {
    /// A live record (not past its retention at `now`).
    fn live(&self, id: &str, now: i64) -> Option<&Record> {
        self.records.get(id).filter(|r| logic::purge_at(r) > now)
    }

    /// Lets `f` change the live record `id`; `f` says whether it changed it.
    fn update<T>(
        &mut self,
        id: &str,
        now: i64,
        missing: T,
        f: impl FnOnce(&mut Record) -> (T, bool),
    ) -> T {
        let Some(rec) = self
            .records
            .get_mut(id)
            .filter(|r| logic::purge_at(r) > now)
        else {
            return missing;
        };
        let (answer, changed) = f(rec);
        if changed {
            self.dirty.records.insert(id.to_owned());
        }
        answer
    }

    /// Whether `id` is free (unknown, or past its retention).
    fn vacant(&self, id: &str, now: i64) -> Result<(), StoreError> {
        match self.live(id, now) {
            Some(_) => Err(StoreError::Duplicate),
            None => Ok(()),
        }
    }

    fn put(&mut self, rec: &Record) {
        self.records.insert(rec.id.clone(), rec.clone());
        self.dirty.records.insert(rec.id.clone());
    }

    /// The counter of budget `key` in the window holding `at`, and its count.
    fn counter(&self, key: &str, window: i64, at: i64) -> (BudgetKey, u32) {
        let k = budget_key(key, window, at);
        let count = self.budgets.get(&k).copied().unwrap_or(0);
        (k, count)
    }

    fn set_budget(&mut self, k: BudgetKey, count: u32) {
        self.budgets.insert(k.clone(), count);
        self.dirty.budgets.insert(k);
    }

    /// Takes one unit of each budget, all or nothing.
    fn take_many(&mut self, budgets: &[(String, u32, i64)], at: i64) -> Budgets {
        // Counted on a copy first, written only when every budget allowed it (the same key
        // may appear twice).
        let mut next: Vec<(BudgetKey, u32)> = Vec::with_capacity(budgets.len());
        let mut remaining = Vec::with_capacity(budgets.len());
        for (index, (key, limit, window)) in budgets.iter().enumerate() {
            let k = budget_key(key, *window, at);
            let count = match next.iter().rev().find(|(nk, _)| *nk == k) {
                Some((_, c)) => *c,
                None => self.budgets.get(&k).copied().unwrap_or(0),
            };
            if count >= *limit {
                let (w, start) = (logic::window_len(*window), logic::window_start(at, *window));
                return Budgets::Exhausted {
                    index,
                    retry_after_ms: start + w - at,
                };
            }
            remaining.push(limit - count - 1);
            next.push((k, count + 1));
        }
        for (k, c) in next {
            self.set_budget(k, c);
        }
        Budgets::Allowed { remaining }
    }

    /// Applies one operation with the batch's `now` (the store's clock for retention) and
    /// the operation's own time `at` (windows, expiry).
    fn apply(&mut self, op: &Op, now: i64) -> Result<Answer, StoreError> {
        Ok(match op {
            Op::Create(rec) => {
                self.vacant(&rec.id, now)?;
                self.put(rec);
                Answer::Unit
            }
            Op::Open {
                record,
                budgets,
                now: at,
            } => {
                // The id first: a refused insert must not count anything.
                self.vacant(&record.id, now)?;
                let taken = self.take_many(budgets, *at);
                if matches!(taken, Budgets::Allowed { .. }) {
                    self.put(record);
                }
                Answer::Budgets(taken)
            }
            Op::Check {
                id,
                guess,
                budget,
                now: at,
            } => {
                if let Some(b) = budget
                    && let Budgets::Exhausted { retry_after_ms, .. } =
                        self.take_many(std::slice::from_ref(b), *at)
                {
                    return Ok(Answer::Check(CheckOutcome::RateLimited { retry_after_ms }));
                }
                Answer::Check(self.update(id, now, CheckOutcome::NotFound, |r| {
                    logic::check(r, guess, *at)
                }))
            }
            Op::Rotate {
                id,
                rotation,
                now: at,
            } => Answer::Rotate(self.update(id, now, RotateOutcome::NotFound, |r| {
                let o = logic::rotate(r, rotation, *at);
                let changed = matches!(o, RotateOutcome::Rotated(_));
                (o, changed)
            })),
            Op::Cancel { id, .. } => Answer::Record(self.update(id, now, None, |r| {
                let changed = logic::cancel(r);
                (Some(Box::new(r.clone())), changed)
            })),
            Op::Delivery {
                id,
                version,
                delivery,
            } => Answer::Bool(self.update(id, now, false, |r| {
                let ok = logic::update_delivery(r, *version, delivery);
                (ok, ok)
            })),
            Op::Take {
                key,
                limit,
                window,
                now: at,
            } => {
                let (k, count) = self.counter(key, *window, *at);
                if count >= *limit {
                    let (w, start) = (
                        logic::window_len(*window),
                        logic::window_start(*at, *window),
                    );
                    Answer::Budget(Budget::Exhausted {
                        retry_after_ms: start + w - at,
                    })
                } else {
                    self.set_budget(k, count + 1);
                    Answer::Budget(Budget::Allowed {
                        remaining: limit - count - 1,
                    })
                }
            }
            Op::TakeMany { budgets, now: at } => Answer::Budgets(self.take_many(budgets, *at)),
            Op::Add {
                key,
                n,
                window,
                now: at,
            } => {
                let (k, count) = self.counter(key, *window, *at);
                self.set_budget(k, count.saturating_add(*n));
                Answer::Unit
            }
            Op::Refund {
                key,
                window,
                now: at,
            } => {
                let (k, count) = self.counter(key, *window, *at);
                if count > 0 {
                    self.set_budget(k, count - 1);
                }
                Answer::Unit
            }
            Op::Once { key, ttl, now: at } => match self.once.get(key.as_str()) {
                Some(u) if *u > *at => Answer::Bool(false),
                _ => {
                    self.once
                        .insert(key.clone(), at.saturating_add((*ttl).max(1)));
                    self.dirty.once.insert(key.clone());
                    Answer::Bool(true)
                }
            },
        })
    }

    /// Forgets everything past its retention at `now`.
    fn sweep(&mut self, now: i64) {
        let Self {
            records,
            budgets,
            once,
            dirty,
            ..
        } = self;
        let before = (records.len(), budgets.len(), once.len());
        records.retain(|id, r| {
            let keep = logic::purge_at(r) > now;
            if !keep {
                dirty.records.insert(id.clone());
            }
            keep
        });
        budgets.retain(|k, _| {
            let keep = k.0 > now;
            if !keep {
                dirty.budgets.insert(k.clone());
            }
            keep
        });
        once.retain(|k, until| {
            let keep = *until > now;
            if !keep {
                dirty.once.insert(k.clone());
            }
            keep
        });
        let swept = (
            before.0 - records.len(),
            before.1 - budgets.len(),
            before.2 - once.len(),
        );
        if swept != (0, 0, 0) {
            tracing::debug!(
                records = swept.0,
                budgets = swept.1,
                once = swept.2,
                "embedded store: swept"
            );
        }
    }

    /// The changed keys with their values (`None`: deleted), and a fresh dirty set.
    fn take_changes(&mut self) -> Changes {
        let dirty = std::mem::take(&mut self.dirty);
        Changes {
            records: dirty
                .records
                .into_iter()
                .map(|id| {
                    let r = self.records.get(&id).cloned();
                    (id, r)
                })
                .collect(),
            budgets: dirty
                .budgets
                .into_iter()
                .map(|k| {
                    let c = self.budgets.get(&k).copied();
                    (k, c)
                })
                .collect(),
            once: dirty
                .once
                .into_iter()
                .map(|k| {
                    let u = self.once.get(&k).copied();
                    (k, u)
                })
                .collect(),
            now_ms: self.now_ms,
        }
    }
}

/// What a checkpoint writes into the redb file.
struct Changes {
    records: Vec<(String, Option<Record>)>,
    budgets: Vec<(BudgetKey, Option<u32>)>,
    once: Vec<(String, Option<i64>)>,
    now_ms: i64,
}

/// Writes `changes` and the sequence number `seq` into the file in one durable
/// transaction.
fn write_checkpoint(db: &Database, changes: &Changes, seq: u64) -> Result<(), redb::Error> {
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
        let mut meta = txn.open_table(META)?;
        meta.insert("now_ms", changes.now_ms)?;
        meta.insert("wal_seq", i64::try_from(seq).unwrap_or(i64::MAX))?;
    }
    txn.commit()?;
    Ok(())
}

/// A batch as it is logged.
#[derive(Serialize)]
struct LogEntry<'a> {
    seq: u64,
    now: i64,
    sweep: bool,
    ops: Vec<&'a Op>,
}

/// A batch as it is read back from the log.
#[derive(Deserialize)]
struct LoggedBatch {
    seq: u64,
    now: i64,
    sweep: bool,
    ops: Vec<Op>,
}

/// The log segments of the store file `path`, in order: (number, path).
fn segments(path: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
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

fn segment_path(path: &Path, n: u64) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".wal-{n:020}"));
    PathBuf::from(p)
}

/// Starts segment `n` of the log, in the file of a checkpointed segment when there is one.
fn new_segment(path: &Path, n: u64, recycled: Option<PathBuf>) -> Result<Wal, StoreError> {
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
        let db = Database::builder()
            .set_cache_size(opts.cache_bytes)
            .create(path)
            .map_err(|e| unavailable(format!("{}: {e}", path.display())))?;
        let (mut state, checkpoint) = load(&db)?;
        let counters = Arc::new(Counters::default());
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
            counters.replayed.store(seq - checkpoint, Ordering::Relaxed);
        }
        if !state.dirty.is_empty() || seq > checkpoint {
            write_checkpoint(&db, &state.take_changes(), seq).map_err(unavailable)?;
        }
        for (_, p) in &found {
            std::fs::remove_file(p).map_err(|e| unavailable(format!("{}: {e}", p.display())))?;
        }
        let next = found.last().map_or(0, |(n, _)| n + 1);
        let wal = new_segment(path, next, None)?;

        let state = Arc::new(Mutex::new(state));
        let failed = Arc::new(AtomicBool::new(false));
        let db = Arc::new(db);
        let (tx, rx) = mpsc::channel();
        let durability = opts.durability;
        let writer = {
            let mut w = Writer {
                state: Arc::clone(&state),
                db,
                path: path.to_owned(),
                wal,
                segment: next,
                spares: None,
                syncer: None,
                seq,
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

    async fn submit(&self, op: Op) -> Result<Answer, StoreError> {
        self.send(op, None).await
    }

    /// Submits `op` for an answer once its batch is written, with the sync to wait for
    /// (under [`Durability::Process`] the written batch is the acknowledged state: settled).
    async fn submit_staged(&self, op: Op) -> Result<(Answer, Durable), StoreError> {
        if self.durability == Durability::Process {
            return Ok((self.submit(op).await?, Durable::ready()));
        }
        let (settle, synced) = oneshot::channel();
        let answer = self.send(op, Some(settle)).await?;
        Ok((answer, Durable::later(synced)))
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

    /// The state for a read, unless the store refuses reads.
    fn read(&self) -> Result<MutexGuard<'_, State>, StoreError> {
        if self.failed.load(Ordering::Acquire) {
            return Err(refused());
        }
        Ok(lock(&self.state))
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

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // The writer changes the state only inside `State::apply`, which does not panic midway
    // through a change, so a poisoned lock still guards a consistent state.
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
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

/// Checks the layout (upgrading layout 1) and loads the file: the state and the sequence
/// number of the last logged batch it holds.
fn load(db: &Database) -> Result<(State, u64), StoreError> {
    let corrupt = |e: &dyn std::fmt::Display| StoreError::Corrupt(format!("store file: {e}"));
    let txn = db.begin_write().map_err(unavailable)?;
    let mut state = State::default();
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
        for entry in txn
            .open_table(RECORDS)
            .map_err(unavailable)?
            .iter()
            .map_err(unavailable)?
        {
            let (id, bytes) = entry.map_err(unavailable)?;
            let rec = codec::decode(bytes.value())
                .map_err(|e| corrupt(&format!("record {}: {e}", id.value())))?;
            state.records.insert(id.value().to_owned(), rec);
        }
        for entry in txn
            .open_table(BUDGETS)
            .map_err(unavailable)?
            .iter()
            .map_err(unavailable)?
        {
            let (k, count) = entry.map_err(unavailable)?;
            let (at, w, key) = k.value();
            state.budgets.insert((at, w, key.to_owned()), count.value());
        }
        for entry in txn
            .open_table(ONCE)
            .map_err(unavailable)?
            .iter()
            .map_err(unavailable)?
        {
            let (k, until) = entry.map_err(unavailable)?;
            state.once.insert(k.value().to_owned(), until.value());
        }
        u64::try_from(seq).map_err(|_| corrupt(&format!("log sequence number {seq}")))?
    };
    txn.commit().map_err(unavailable)?;
    // What the file holds is past its retention or not; the first sweep tells.
    let now = state.now_ms;
    state.sweep(now);
    Ok((state, seq))
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

/// [`Durability::Process`]: syncs the log in the background, at most every
/// [`Durability::PROCESS_SYNC_EVERY`] while the writer goes on (the batches were answered
/// when written; one sync covers every one written before it). After a failed sync the
/// store refuses everything.
fn background_syncer(
    files: &mpsc::Receiver<Arc<std::fs::File>>,
    counters: &Counters,
    failed: &AtomicBool,
) {
    let mut last: Option<Instant> = None;
    while let Ok(first) = files.recv() {
        if let Some(wait) = last.map(|l| Durability::PROCESS_SYNC_EVERY.saturating_sub(l.elapsed()))
            && !wait.is_zero()
        {
            std::thread::sleep(wait);
        }
        let mut group = vec![first];
        while let Ok(f) = files.try_recv() {
            group.push(f);
        }
        let started = Instant::now();
        last = Some(started);
        let mut synced: Vec<&Arc<std::fs::File>> = Vec::with_capacity(1);
        for f in &group {
            if synced.iter().any(|s| Arc::ptr_eq(s, f)) {
                continue;
            }
            if let Err(e) = f.sync_data() {
                tracing::error!(error = %e, "embedded store: log sync failed; refusing reads and writes until restart");
                failed.store(true, Ordering::Release);
                return;
            }
            synced.push(f);
        }
        counters.syncs.fetch_add(1, Ordering::Relaxed);
        counters
            .sync_micros
            .fetch_add(micros(started.elapsed()), Ordering::Relaxed);
    }
}

/// A checkpoint for the checkpoint thread.
struct Job {
    changes: Changes,
    seq: u64,
    /// The segment wholly covered by this checkpoint, recycled once it is durable.
    sealed: PathBuf,
    done: mpsc::Sender<()>,
}

/// The write side: owns the state's changes and the log.
struct Writer {
    state: Arc<Mutex<State>>,
    db: Arc<Database>,
    path: PathBuf,
    wal: Wal,
    /// The current segment's number.
    segment: u64,
    /// Checkpointed segments to recycle, from the checkpoint thread.
    spares: Option<mpsc::Receiver<PathBuf>>,
    /// [`Durability::Process`]: the log segments written to, to the background sync thread.
    syncer: Option<mpsc::Sender<Arc<std::fs::File>>>,
    /// The sequence number of the last logged batch.
    seq: u64,
    counters: Arc<Counters>,
    failed: Arc<AtomicBool>,
    opts: EmbeddedOptions,
}

impl Writer {
    fn run(&mut self, rx: &mpsc::Receiver<Msg>) {
        // Under `disk` the writer syncs each batch itself; under `process` a thread syncs
        // in the background.
        let syncer = if self.opts.durability == Durability::Process {
            let (files_tx, files_rx) = mpsc::channel();
            let (counters, failed) = (Arc::clone(&self.counters), Arc::clone(&self.failed));
            let spawned = std::thread::Builder::new()
                .name("otpgate-store-sync".into())
                .spawn(move || background_syncer(&files_rx, &counters, &failed));
            match spawned {
                Ok(h) => {
                    self.syncer = Some(files_tx);
                    Some(h)
                }
                Err(e) => {
                    tracing::error!(error = %e, "embedded store: no sync thread; refusing writes");
                    self.failed.store(true, Ordering::Release);
                    return;
                }
            }
        } else {
            None
        };
        let (jobs, job_rx) = mpsc::channel::<Job>();
        let (spare_tx, spare_rx) = mpsc::channel();
        self.spares = Some(spare_rx);
        let checkpointer = {
            let (db, counters, failed) = (
                Arc::clone(&self.db),
                Arc::clone(&self.counters),
                Arc::clone(&self.failed),
            );
            std::thread::Builder::new()
                .name("otpgate-store-ckpt".into())
                .spawn(move || checkpointer(&db, &job_rx, &spare_tx, &counters, &failed))
        };
        let checkpointer = match checkpointer {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %e, "embedded store: no checkpoint thread; refusing writes");
                self.failed.store(true, Ordering::Release);
                return;
            }
        };
        let mut last_sweep = Instant::now();
        let mut last_checkpoint = Instant::now();
        // The checkpoint in flight answers on this channel when it is done.
        let mut in_flight: Option<mpsc::Receiver<()>> = None;
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
            if let Some(done) = &in_flight
                && !matches!(done.try_recv(), Err(mpsc::TryRecvError::Empty))
            {
                in_flight = None;
            }
            if in_flight.is_none()
                && self.wal.len() > 0
                && (last_checkpoint.elapsed() >= self.opts.checkpoint_every
                    || self.wal.len() >= self.opts.checkpoint_bytes)
            {
                last_checkpoint = Instant::now();
                in_flight = self.checkpoint(&jobs);
            }
        }
        // Closing: wait for the checkpoint in flight, then write the last one.
        if let Some(done) = in_flight {
            let _ = done.recv();
        }
        if let Some(done) = self.checkpoint(&jobs) {
            let _ = done.recv();
        }
        drop(jobs);
        let _ = checkpointer.join();
        self.syncer = None;
        if let Some(h) = syncer {
            let _ = h.join();
        }
        // Checkpointed segments left to recycle are of no use any more.
        while let Some(p) = self.spares.as_ref().and_then(|r| r.try_recv().ok()) {
            let _ = std::fs::remove_file(p);
        }
        let c = &self.counters;
        let (batches, ops) = (
            c.batches.load(Ordering::Relaxed),
            c.ops.load(Ordering::Relaxed),
        );
        let per_batch =
            |m: &AtomicU64| m.load(Ordering::Relaxed) as f64 / batches.max(1) as f64 / 1e3;
        tracing::info!(
            batches,
            ops,
            ops_per_batch = ops as f64 / batches.max(1) as f64,
            apply_ms_per_batch = per_batch(&c.apply_micros),
            log_ms_per_batch = per_batch(&c.commit_micros),
            syncs = c.syncs.load(Ordering::Relaxed),
            sync_ms = c.sync_micros.load(Ordering::Relaxed) as f64
                / c.syncs.load(Ordering::Relaxed).max(1) as f64
                / 1e3,
            checkpoints = c.checkpoints.load(Ordering::Relaxed),
            "embedded store: closed"
        );
    }

    /// Applies and logs one batch, then answers its callers.
    fn serve(&mut self, batch: Vec<Msg>, sweep: bool) {
        if self.failed.load(Ordering::Acquire) {
            for m in batch {
                let _ = m.reply.send(Err(refused()));
            }
            return;
        }
        let started = Instant::now();
        let (now, answers): (i64, Vec<Result<Answer, StoreError>>) = {
            let mut st = lock(&self.state);
            let now = batch.iter().map(|m| m.op.now()).fold(st.now_ms, i64::max);
            st.now_ms = now;
            let answers = batch.iter().map(|m| st.apply(&m.op, now)).collect();
            if sweep {
                st.sweep(now);
            }
            (now, answers)
        };
        let applied = Instant::now();
        let seq = self.seq + 1;
        let entry = LogEntry {
            seq,
            now,
            sweep,
            ops: batch.iter().map(|m| &m.op).collect(),
        };
        let logged = serde_json::to_vec(&entry)
            .map_err(|e| e.to_string())
            .and_then(|bytes| self.wal.write(&bytes).map_err(|e| e.to_string()));
        if let Err(e) = logged {
            // The state holds the batch, the log does not: nothing is served from this
            // state any more; a restart recovers without the batch.
            tracing::error!(error = %e, ops = batch.len(), "embedded store: batch not logged; refusing reads and writes until restart");
            self.failed.store(true, Ordering::Release);
            for m in batch {
                let _ = m
                    .reply
                    .send(Err(unavailable(format!("write-ahead log: {e}"))));
            }
            return;
        }
        self.seq = seq;
        let c = &self.counters;
        c.batches.fetch_add(1, Ordering::Relaxed);
        c.ops.fetch_add(batch.len() as u64, Ordering::Relaxed);
        c.apply_micros
            .fetch_add(micros(applied - started), Ordering::Relaxed);
        c.commit_micros
            .fetch_add(micros(applied.elapsed()), Ordering::Relaxed);
        match self.opts.durability {
            Durability::Disk => {
                // Staged operations are answered now (their callers write their audit lines
                // during the sync), the others after it.
                let mut replies = Vec::with_capacity(batch.len());
                let mut settles = Vec::new();
                for (m, answer) in batch.into_iter().zip(answers) {
                    match m.settle {
                        Some(settle) => {
                            let _ = m.reply.send(answer);
                            settles.push(settle);
                        }
                        None => replies.push((m.reply, answer)),
                    }
                }
                // Synced here, not on another thread: the operations that arrive meanwhile
                // make the next batch, and no hand-off or wake-up per batch is spent.
                let started = Instant::now();
                let synced = self.wal.sync();
                c.syncs.fetch_add(1, Ordering::Relaxed);
                c.sync_micros
                    .fetch_add(micros(started.elapsed()), Ordering::Relaxed);
                if let Err(e) = &synced {
                    tracing::error!(error = %e, "embedded store: log sync failed; refusing reads and writes until restart");
                    self.failed.store(true, Ordering::Release);
                }
                let failure = || unavailable("write-ahead log sync failed");
                for (reply, answer) in replies {
                    // A caller that gave up does not take the change back: it was logged.
                    let _ = reply.send(synced.as_ref().map_err(|_| failure()).and(answer));
                }
                for settle in settles {
                    let _ = settle.send(synced.as_ref().map(|_| ()).map_err(|_| failure()));
                }
            }
            Durability::Process => {
                // Written: answered now (staged ones settled too); the sync thread makes
                // it durable within PROCESS_SYNC_EVERY.
                for (m, answer) in batch.into_iter().zip(answers) {
                    let _ = m.reply.send(answer);
                    if let Some(settle) = m.settle {
                        let _ = settle.send(Ok(()));
                    }
                }
                if let Some(syncer) = &self.syncer
                    && syncer.send(self.wal.handle()).is_err()
                {
                    tracing::error!(
                        "embedded store: the sync thread stopped; refusing reads and writes until restart"
                    );
                    self.failed.store(true, Ordering::Release);
                }
            }
        }
    }

    /// Starts a new segment and hands the changes since the last checkpoint to the
    /// checkpoint thread; the receiver answers when it is done.
    fn checkpoint(&mut self, jobs: &mpsc::Sender<Job>) -> Option<mpsc::Receiver<()>> {
        if self.failed.load(Ordering::Acquire) || self.wal.len() == 0 {
            return None;
        }
        // Everything in the old segment is durable before the checkpoint covers it and
        // before anything is written to the next one.
        if let Err(e) = self.wal.sync() {
            tracing::error!(error = %e, "embedded store: log sync failed; refusing reads and writes until restart");
            self.failed.store(true, Ordering::Release);
            return None;
        }
        let changes = lock(&self.state).take_changes();
        let next = self.segment + 1;
        // The newest checkpointed segment is recycled; any older one is deleted.
        let mut recycled = None;
        while let Some(p) = self.spares.as_ref().and_then(|r| r.try_recv().ok()) {
            if let Some(older) = recycled.replace(p) {
                let _ = std::fs::remove_file(older);
            }
        }
        let wal = match new_segment(&self.path, next, recycled) {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(error = %e, "embedded store: cannot start a log segment; refusing reads and writes until restart");
                self.failed.store(true, Ordering::Release);
                return None;
            }
        };
        let sealed = std::mem::replace(&mut self.wal, wal).path().to_owned();
        self.segment = next;
        let (done, rx) = mpsc::channel();
        let job = Job {
            changes,
            seq: self.seq,
            sealed,
            done,
        };
        if jobs.send(job).is_err() {
            self.failed.store(true, Ordering::Release);
            return None;
        }
        Some(rx)
    }
}

/// Writes the checkpoints it is handed, one at a time, and deletes the log segments they
/// cover. A failure leaves the segments and makes the store refuse everything (a restart
/// replays them).
fn checkpointer(
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

#[async_trait]
impl Store for EmbeddedStore {
    async fn create(&self, record: &Record) -> Result<(), StoreError> {
        match self.submit(Op::Create(Box::new(record.clone()))).await? {
            Answer::Unit => Ok(()),
            _ => Err(unexpected()),
        }
    }

    async fn get(&self, id: &str) -> Result<Option<Record>, StoreError> {
        let st = self.read()?;
        let now = st.now_ms;
        Ok(st.live(id, now).cloned())
    }

    async fn open(
        &self,
        record: &Record,
        budgets: &[BudgetRequest<'_>],
        now_ms: i64,
    ) -> Result<Budgets, StoreError> {
        match self.submit(open_op(record, budgets, now_ms)).await? {
            Answer::Budgets(b) => Ok(b),
            _ => Err(unexpected()),
        }
    }

    async fn open_staged(
        &self,
        record: &Record,
        budgets: &[BudgetRequest<'_>],
        now_ms: i64,
    ) -> Result<Staged<Budgets>, StoreError> {
        match self.submit_staged(open_op(record, budgets, now_ms)).await? {
            (Answer::Budgets(value), durable) => Ok(Staged { value, durable }),
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
        match self.submit(check_op(id, guess, budget, now_ms)).await? {
            Answer::Check(c) => Ok(c),
            _ => Err(unexpected()),
        }
    }

    async fn check_staged(
        &self,
        id: &str,
        guess: &Guess,
        budget: Option<BudgetRequest<'_>>,
        now_ms: i64,
    ) -> Result<Staged<CheckOutcome>, StoreError> {
        match self
            .submit_staged(check_op(id, guess, budget, now_ms))
            .await?
        {
            (Answer::Check(value), durable) => Ok(Staged { value, durable }),
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

    async fn add_to_budget(
        &self,
        key: &str,
        n: u32,
        window_ms: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let op = Op::Add {
            key: key.to_owned(),
            n,
            window: window_ms,
            now: now_ms,
        };
        match self.submit(op).await? {
            Answer::Unit => Ok(()),
            _ => Err(unexpected()),
        }
    }

    async fn budget_used(&self, key: &str, window_ms: i64, now_ms: i64) -> Result<u32, StoreError> {
        let st = self.read()?;
        Ok(st
            .budgets
            .get(&budget_key(key, window_ms, now_ms))
            .copied()
            .unwrap_or(0))
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
        drop(self.read()?);
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
    use crate::store::fixtures::{right, sample_record, sample_rotation, wrong};

    /// Entries per table of the closed store file at `path`.
    fn file_counts(path: &Path) -> (u64, u64, u64) {
        use redb::{ReadableDatabase, ReadableTableMetadata};
        let db = Database::open(path).expect("db");
        let txn = db.begin_read().expect("read");
        (
            txn.open_table(RECORDS).expect("t").len().expect("len"),
            txn.open_table(BUDGETS).expect("t").len().expect("len"),
            txn.open_table(ONCE).expect("t").len().expect("len"),
        )
    }

    fn log_files(path: &Path) -> Vec<PathBuf> {
        segments(path)
            .expect("segments")
            .into_iter()
            .map(|(_, p)| p)
            .collect()
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
        assert_eq!(file_counts(&path), (2, 1, 1), "closing checkpoints");
        assert_eq!(log_files(&path).len(), 1, "one empty segment left");
        let s = EmbeddedStore::open(&path).expect("reopen");
        assert_eq!(s.stats().replayed, 0);
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

    /// Runs `work` on a store at `path`, then leaves the files as a crash right after it
    /// would: the redb file as it was before `work` (no checkpoint made it), the log as it
    /// was when `work` ended (as the OS holds it: what a killed process leaves).
    async fn crash_after(
        path: &Path,
        durability: Durability,
        work: impl AsyncFnOnce(&EmbeddedStore),
    ) {
        let opts = EmbeddedOptions {
            checkpoint_every: Duration::from_secs(3600),
            durability,
            ..EmbeddedOptions::default()
        };
        let s = EmbeddedStore::open_with(path, opts).expect("open");
        let durable = std::fs::read(path).expect("file before");
        work(&s).await;
        assert_eq!(s.stats().checkpoints, 0);
        let logs: Vec<(PathBuf, Vec<u8>)> = log_files(path)
            .into_iter()
            .map(|p| {
                let b = std::fs::read(&p).expect("log");
                (p, b)
            })
            .collect();
        assert!(
            logs.iter().any(|(_, b)| !b.is_empty()),
            "the writes are in the log"
        );
        drop(s);
        std::fs::write(path, durable).expect("restore file");
        for p in log_files(path) {
            std::fs::remove_file(p).expect("rm");
        }
        for (p, b) in logs {
            std::fs::write(p, b).expect("restore log");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn acknowledged_writes_are_replayed_from_the_log() {
        replays_acknowledged_writes(Durability::Disk).await;
    }

    /// Acknowledged after the write, before the sync: a crash of the process loses none.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_acknowledged_before_their_sync_are_replayed_too() {
        replays_acknowledged_writes(Durability::Process).await;
    }

    async fn replays_acknowledged_writes(durability: Durability) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.redb");
        let t = 1_764_000_000_000;
        let b_code = sample_record("v_b", t).code;
        crash_after(&path, durability, async |s| {
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
            // Staged steps: answered at once, acknowledged when durable.
            let staged = s
                .check_staged("v_a", &wrong(), None, t + 3)
                .await
                .expect("check");
            assert!(matches!(
                staged.value,
                CheckOutcome::Wrong {
                    attempts_left: 3,
                    ..
                }
            ));
            staged.durable.wait().await.expect("durable");
            let opened = s
                .open_staged(&sample_record("v_d", t), &[], t + 3)
                .await
                .expect("open");
            assert!(matches!(opened.value, Budgets::Allowed { .. }));
            opened.durable.wait().await.expect("durable");
        })
        .await;
        // A crash can leave half an entry behind: it was never acknowledged.
        let last = log_files(&path).pop().expect("a segment");
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .open(&last)
            .expect("log");
        std::io::Write::write_all(&mut log, &[200, 0, 0, 0, 1, 2, 3]).expect("torn tail");
        drop(log);

        let s = EmbeddedStore::open(&path).expect("reopen");
        assert_eq!(s.stats().replayed, 7, "{:?}", s.stats());
        assert!(!log_files(&path).contains(&last), "replayed, then deleted");
        let a = s.get("v_a").await.expect("get").expect("v_a kept");
        assert_eq!(a.attempts, 2, "the wrong attempts stay counted");
        assert!(
            s.get("v_d").await.expect("get").is_some(),
            "staged open kept"
        );
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
        crash_after(&path, durability, async |s| {
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
    async fn checkpoints_run_beside_the_writer_and_drop_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.redb");
        let opts = EmbeddedOptions {
            checkpoint_every: Duration::from_millis(20),
            ..EmbeddedOptions::default()
        };
        let s = EmbeddedStore::open_with(&path, opts).expect("open");
        let t = 1_764_000_000_000;
        for i in 0..50 {
            s.create(&sample_record(&format!("v_{i}"), t))
                .await
                .expect("create");
            if i % 10 == 0 {
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let st = s.stats();
        assert!(st.checkpoints >= 2, "{st:?}");
        assert!(
            log_files(&path).len() <= 2,
            "checkpointed segments are deleted"
        );
        // A crash now loses nothing: the file plus what is left of the log hold it all.
        drop(s);
        let s = EmbeddedStore::open(&path).expect("reopen");
        for i in 0..50 {
            assert!(s.get(&format!("v_{i}")).await.expect("get").is_some());
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_log_that_does_not_follow_the_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.redb");
        let t = 1_764_000_000_000;
        crash_after(&path, Durability::Disk, async |s| {
            s.create(&sample_record("v_a", t)).await.expect("create");
            s.create(&sample_record("v_b", t)).await.expect("create");
        })
        .await;
        // Lose the first batch of the log: the second one cannot be applied without it.
        let seg = log_files(&path).pop().expect("segment");
        let n = segments(&path).expect("segments").pop().expect("segment").0;
        let (entries, _) = Wal::read(&seg, n).expect("log");
        assert_eq!(entries.len(), 2);
        std::fs::remove_file(&seg).expect("rm");
        let mut wal = Wal::start(&seg, n, None).expect("log");
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
        let path = dir.path().join("s.redb");
        let opts = EmbeddedOptions {
            sweep_every: Duration::from_millis(50),
            ..EmbeddedOptions::default()
        };
        let s = EmbeddedStore::open_with(&path, opts).expect("open");
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
        assert_eq!(lock(&s.state).records.len(), 21);

        // Moving the store's clock past expiry + grace: reads stop at once, the sweep deletes.
        let later = t + 300_000 + crate::store::RETENTION_GRACE_MS;
        s.once("tick", 1, later).await.expect("tick");
        assert!(s.get("v_0").await.expect("get").is_none());
        tokio::time::sleep(Duration::from_millis(200)).await;
        {
            let st = lock(&s.state);
            assert_eq!(
                (st.records.len(), st.budgets.len(), st.once.len()),
                (1, 0, 1),
                "only v_keep and the fresh tick key"
            );
        }
        assert!(s.get("v_keep").await.expect("get").is_some());
        // A forgotten id may be used again.
        s.create(&sample_record("v_0", later))
            .await
            .expect("create again");
        drop(s);
        assert_eq!(file_counts(&path), (2, 0, 1), "the file forgets them too");
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
