//! The writer thread: takes the operations waiting, applies them to the state, logs the
//! batch and answers it (after the sync under `disk`; a background thread syncs under
//! `process`); now and then it starts a new log segment and hands a checkpoint to the
//! checkpoint thread.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use redb::Database;
use serde::Serialize;
use tokio::sync::oneshot;

use super::checkpoint::{Job, checkpointer};
use super::segments::new_segment;
use super::wal::Wal;
use super::{Counters, EmbeddedOptions, micros, refused, unavailable};
use crate::store::state::{Answer, Op, State, lock};
use crate::store::{Durability, StoreError};

/// Where an operation's answer goes.
pub(super) type Reply = oneshot::Sender<Result<Answer, StoreError>>;

/// Where a staged operation learns that its batch is durable.
pub(super) type Settle = oneshot::Sender<Result<(), StoreError>>;

pub(super) struct Msg {
    pub(super) op: Op,
    pub(super) reply: Reply,
    /// A staged operation ([`Store::check_staged`]): answered once its batch is written,
    /// told here when the batch is synced. `None`: answered when it is durable.
    pub(super) settle: Option<Settle>,
}

/// A batch as it is logged (read back as `recovery::LoggedBatch`).
#[derive(Serialize)]
struct LogEntry<'a> {
    seq: u64,
    now: i64,
    sweep: bool,
    ops: Vec<&'a Op>,
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

/// The write side: owns the state's changes and the log.
pub(super) struct Writer {
    pub(super) state: Arc<Mutex<State>>,
    pub(super) db: Arc<Database>,
    pub(super) path: PathBuf,
    pub(super) wal: Wal,
    /// The current segment's number.
    pub(super) segment: u64,
    /// Checkpointed segments to recycle, from the checkpoint thread.
    pub(super) spares: Option<mpsc::Receiver<PathBuf>>,
    /// [`Durability::Process`]: the log segments written to, to the background sync thread.
    pub(super) syncer: Option<mpsc::Sender<Arc<std::fs::File>>>,
    /// The sequence number of the last logged batch.
    pub(super) seq: u64,
    pub(super) counters: Arc<Counters>,
    pub(super) failed: Arc<AtomicBool>,
    pub(super) opts: EmbeddedOptions,
}

impl Writer {
    /// Serves the operations arriving on `rx` until it closes, then checkpoints and stops.
    pub(super) fn run(&mut self, rx: &mpsc::Receiver<Msg>) {
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
