//! The live state of the in-process backends (memory, embedded): verifications, budget
//! counters and `once` keys in hash maps, changed only by applying an [`Op`].
//!
//! Applying an operation depends only on the state, the operation and the store's `now`,
//! so the embedded store can log the operations and replay them exactly after a crash;
//! the memory store applies them under a lock and keeps nothing. The rules of one
//! verification are in `logic.rs`; this file holds what the maps add: retention, budgets
//! taken all or nothing, `once` keys, and (for the embedded store's checkpoints) the keys
//! changed since the last one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use super::logic::{self, Window};
use super::{
    Budget, BudgetRequest, Budgets, CheckOutcome, DeliveryRecord, Guess, OUTBOX_GRACE_MS,
    OutboxMessage, QueuedSend, Record, RotateOutcome, Rotation, SendLease, StoreError,
};

/// One change to the state. The embedded store logs batches of them, so the form is
/// serialised (JSON in the log): changing it changes the log's format.
#[derive(Serialize, Deserialize)]
pub(crate) enum Op {
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
    Enqueue {
        send: Box<QueuedSend>,
        max: u32,
    },
    Dequeue {
        max: u32,
    },
    Claim {
        key: String,
        value: String,
        until: i64,
        now: i64,
    },
    Put {
        key: String,
        value: String,
        until: i64,
        now: i64,
    },
    Forget {
        key: String,
    },
    OutboxPush {
        outbox: String,
        message: Box<OutboxMessage>,
        max: u32,
        now: i64,
    },
    OutboxTake {
        outbox: String,
        max: u32,
        now: i64,
    },
    LeasePut {
        lease: Box<SendLease>,
        now: i64,
    },
    LeaseRenew {
        owner: String,
        keys: Vec<String>,
        until: i64,
        now: i64,
    },
    LeaseRelease {
        key: String,
        owner: String,
    },
    LeaseTake {
        owner: String,
        until: i64,
        max: u32,
        now: i64,
    },
}

impl Op {
    /// The caller's `now`, which moves the store's clock (the issuer's clock only).
    pub(crate) fn now(&self) -> i64 {
        match self {
            Self::Create(r) => r.created_at_ms,
            // A delivery time may come from a phone's clock: it never moves the store's.
            // Neither does the queue (a send queued again keeps its first time).
            Self::Delivery { .. }
            | Self::Enqueue { .. }
            | Self::Dequeue { .. }
            | Self::Forget { .. }
            | Self::LeaseRelease { .. } => i64::MIN,
            Self::Open { now, .. }
            | Self::Check { now, .. }
            | Self::Rotate { now, .. }
            | Self::Cancel { now, .. }
            | Self::Take { now, .. }
            | Self::TakeMany { now, .. }
            | Self::Refund { now, .. }
            | Self::Add { now, .. }
            | Self::Once { now, .. }
            | Self::Claim { now, .. }
            | Self::Put { now, .. }
            | Self::OutboxPush { now, .. }
            | Self::OutboxTake { now, .. }
            | Self::LeasePut { now, .. }
            | Self::LeaseRenew { now, .. }
            | Self::LeaseTake { now, .. } => *now,
        }
    }

    /// The budgets of a [`super::Store::take_budgets`] or [`super::Store::open`] call, in
    /// their logged form.
    pub(crate) fn budgets(budgets: &[BudgetRequest<'_>]) -> Vec<(String, u32, i64)> {
        budgets.iter().map(|b| Self::budget(*b)).collect()
    }

    /// One budget in its logged form.
    pub(crate) fn budget(b: BudgetRequest<'_>) -> (String, u32, i64) {
        (b.key.to_owned(), b.limit, b.window_ms)
    }
}

/// The answer to an [`Op`] (each operation has one kind).
pub(crate) enum Answer {
    Unit,
    Bool(bool),
    Check(CheckOutcome),
    Rotate(RotateOutcome),
    Record(Option<Box<Record>>),
    Budget(Budget),
    Budgets(Budgets),
    Sends(Vec<QueuedSend>),
    Text(Option<String>),
    Outbox(Vec<OutboxMessage>),
    Keys(Vec<String>),
    Leases(Vec<SendLease>),
}

/// A budget counter: (purge at, window length, key); the purge time identifies the window.
pub(crate) type BudgetKey = (i64, i64, String);

/// A queued send's place: (priority, queued at, key), the order it is handed out in.
pub(crate) type QueueKey = (u16, i64, String);

/// An outbox message's place: (outbox, queued at, id), the order it is handed out in.
pub(crate) type OutboxKey = (String, i64, String);

/// The `once` key that remembers a message id put in an outbox.
fn outbox_seen(outbox: &str, id: &str) -> String {
    format!("outbox:{}:{outbox}:{id}", outbox.len())
}

/// How long past its deadline a queued send is kept for a dequeue to report it.
const QUEUE_GRACE_MS: i64 = 10 * 60 * 1000;

fn queue_key(send: &QueuedSend) -> QueueKey {
    (send.priority, send.queued_at_ms, send.key.clone())
}

/// The budget counter of `key` in the window of `window_ms` holding `at`.
fn budget_key(key: &str, window_ms: i64, at: i64) -> BudgetKey {
    let w = Window::of(at, window_ms);
    (w.purge_at(), w.len, key.to_owned())
}

/// One more unit on a counter at `count`: what remains after it, or, when `limit` is
/// reached, the milliseconds until the window frees up.
fn admit(count: u32, limit: u32, window_ms: i64, at: i64) -> Result<u32, i64> {
    if count >= limit {
        Err(Window::of(at, window_ms).retry_after(at))
    } else {
        Ok(limit - count - 1)
    }
}

/// A logged budget as a request.
fn request((key, limit, window_ms): &(String, u32, i64)) -> BudgetRequest<'_> {
    BudgetRequest {
        key,
        limit: *limit,
        window_ms: *window_ms,
    }
}

/// The keys changed since the last checkpoint.
#[derive(Debug, Default)]
pub(crate) struct Dirty {
    records: HashSet<String>,
    budgets: HashSet<BudgetKey>,
    once: HashSet<String>,
    queue: HashSet<QueueKey>,
    kv: HashSet<String>,
    outbox: HashSet<OutboxKey>,
    leases: HashSet<String>,
}

impl Dirty {
    fn is_empty(&self) -> bool {
        self.records.is_empty()
            && self.budgets.is_empty()
            && self.once.is_empty()
            && self.queue.is_empty()
            && self.kv.is_empty()
            && self.outbox.is_empty()
            && self.leases.is_empty()
    }
}

/// Keeps the entries of `map` that `keep` accepts, noting the others in `deleted`.
fn retain_noting<K: Clone + Eq + std::hash::Hash, V>(
    map: &mut HashMap<K, V>,
    mut deleted: Option<&mut HashSet<K>>,
    keep: impl Fn(&K, &V) -> bool,
) {
    map.retain(|k, v| {
        let kept = keep(k, v);
        if !kept && let Some(d) = deleted.as_deref_mut() {
            d.insert(k.clone());
        }
        kept
    });
}

/// The changed keys with their values (`None`: deleted): what a checkpoint writes.
pub(crate) struct Changes {
    pub(crate) records: Vec<(String, Option<Record>)>,
    pub(crate) budgets: Vec<(BudgetKey, Option<u32>)>,
    pub(crate) once: Vec<(String, Option<i64>)>,
    pub(crate) queue: Vec<(QueueKey, Option<QueuedSend>)>,
    pub(crate) kv: Vec<(String, Option<(i64, String)>)>,
    pub(crate) outbox: Vec<(OutboxKey, Option<OutboxMessage>)>,
    pub(crate) leases: Vec<(String, Option<SendLease>)>,
    pub(crate) now_ms: i64,
}

/// The live state.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) records: HashMap<String, Record>,
    pub(crate) budgets: HashMap<BudgetKey, u32>,
    /// key → until (Unix ms, exclusive).
    pub(crate) once: HashMap<String, i64>,
    /// Sends waiting for phone capacity, in the order they are handed out.
    pub(crate) queue: BTreeMap<QueueKey, QueuedSend>,
    /// key → (until, exclusive; value): [`super::Store::claim`] and `put`.
    pub(crate) kv: HashMap<String, (i64, String)>,
    /// Messages waiting for phones that poll ([`super::Store::outbox_push`]).
    pub(crate) outbox: BTreeMap<OutboxKey, OutboxMessage>,
    /// In-flight sends by key ([`super::Store::lease_put`]).
    pub(crate) leases: BTreeMap<String, SendLease>,
    /// The store's clock: the latest `now` applied.
    pub(crate) now_ms: i64,
    /// The keys changed since the last [`State::take_changes`], when tracked.
    dirty: Option<Dirty>,
}

/// Locks a state. Every change is computed before it is written (none panics midway), so
/// a lock poisoned by a panic elsewhere still guards a consistent state.
pub(crate) fn lock<T>(state: &Mutex<T>) -> MutexGuard<'_, T> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl State {
    /// An empty state that tracks the keys it changes (for [`State::take_changes`]).
    pub(crate) fn tracked() -> Self {
        Self {
            dirty: Some(Dirty::default()),
            ..Self::default()
        }
    }

    /// A live record (not past its retention at `now`).
    pub(crate) fn live(&self, id: &str, now: i64) -> Option<&Record> {
        self.records.get(id).filter(|r| logic::purge_at(r) > now)
    }

    /// The count of budget `key` in the window of `window_ms` holding `at`.
    pub(crate) fn budget_used(&self, key: &str, window_ms: i64, at: i64) -> u32 {
        self.count(&budget_key(key, window_ms, at))
    }

    fn count(&self, k: &BudgetKey) -> u32 {
        self.budgets.get(k).copied().unwrap_or(0)
    }

    fn mark(&mut self, f: impl FnOnce(&mut Dirty)) {
        if let Some(d) = &mut self.dirty {
            f(d);
        }
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
            self.mark(|d| {
                d.records.insert(id.to_owned());
            });
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
        self.mark(|d| {
            d.records.insert(rec.id.clone());
        });
    }

    /// The counter of budget `key` in the window holding `at`, and its count.
    fn counter(&self, key: &str, window: i64, at: i64) -> (BudgetKey, u32) {
        let k = budget_key(key, window, at);
        let count = self.count(&k);
        (k, count)
    }

    fn set_budget(&mut self, k: BudgetKey, count: u32) {
        self.mark(|d| {
            d.budgets.insert(k.clone());
        });
        self.budgets.insert(k, count);
    }

    /// Takes one unit of `key` unless its count reached `limit`.
    fn take_budget(&mut self, key: &str, limit: u32, window: i64, at: i64) -> Budget {
        let (k, count) = self.counter(key, window, at);
        match admit(count, limit, window, at) {
            Ok(remaining) => {
                self.set_budget(k, count + 1);
                Budget::Allowed { remaining }
            }
            Err(retry_after_ms) => Budget::Exhausted { retry_after_ms },
        }
    }

    /// Takes one unit of each budget, all or nothing.
    fn take_budgets<'a>(
        &mut self,
        budgets: impl IntoIterator<Item = BudgetRequest<'a>>,
        at: i64,
    ) -> Budgets {
        // Counted on a copy first, written only when every budget allowed it (the same key
        // may appear twice).
        let mut next: Vec<(BudgetKey, u32)> = Vec::new();
        let mut remaining = Vec::new();
        for (index, b) in budgets.into_iter().enumerate() {
            let k = budget_key(b.key, b.window_ms, at);
            let count = match next.iter().rev().find(|(nk, _)| *nk == k) {
                Some((_, c)) => *c,
                None => self.count(&k),
            };
            match admit(count, b.limit, b.window_ms, at) {
                Ok(left) => {
                    remaining.push(left);
                    next.push((k, count + 1));
                }
                Err(retry_after_ms) => {
                    return Budgets::Exhausted {
                        index,
                        retry_after_ms,
                    };
                }
            }
        }
        for (k, c) in next {
            self.set_budget(k, c);
        }
        Budgets::Allowed { remaining }
    }

    /// Applies one operation with the store's `now` (retention) and the operation's own
    /// time `at` (windows, expiry).
    pub(crate) fn apply(&mut self, op: &Op, now: i64) -> Result<Answer, StoreError> {
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
                let taken = self.take_budgets(budgets.iter().map(request), *at);
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
                    && let Budget::Exhausted { retry_after_ms } =
                        self.take_budget(&b.0, b.1, b.2, *at)
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
            } => Answer::Budget(self.take_budget(key, *limit, *window, *at)),
            Op::TakeMany { budgets, now: at } => {
                Answer::Budgets(self.take_budgets(budgets.iter().map(request), *at))
            }
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
            Op::Enqueue { send, max, .. } => {
                let k = queue_key(send);
                if self.queue.contains_key(&k) {
                    Answer::Bool(true)
                } else if self.queue.len() >= usize::try_from(*max).unwrap_or(usize::MAX) {
                    Answer::Bool(false)
                } else {
                    self.mark(|d| {
                        d.queue.insert(k.clone());
                    });
                    self.queue.insert(k, (**send).clone());
                    Answer::Bool(true)
                }
            }
            Op::Dequeue { max, .. } => {
                let mut taken = Vec::new();
                while taken.len() < usize::try_from(*max).unwrap_or(usize::MAX)
                    && let Some((k, send)) = self.queue.pop_first()
                {
                    self.mark(|d| {
                        d.queue.insert(k);
                    });
                    taken.push(send);
                }
                Answer::Sends(taken)
            }
            Op::Claim {
                key,
                value,
                until,
                now: at,
            } => match self.kv.get(key.as_str()) {
                Some((u, v)) if *u > *at => Answer::Text(Some(v.clone())),
                _ => {
                    self.set_kv(key, *until, value);
                    Answer::Text(None)
                }
            },
            Op::Put {
                key, value, until, ..
            } => {
                self.set_kv(key, *until, value);
                Answer::Unit
            }
            Op::Forget { key } => {
                if self.kv.remove(key.as_str()).is_some() {
                    self.mark(|d| {
                        d.kv.insert(key.clone());
                    });
                }
                Answer::Unit
            }
            Op::OutboxPush {
                outbox,
                message,
                max,
                now: at,
            } => {
                let seen = outbox_seen(outbox, &message.id);
                if self.once.get(&seen).is_some_and(|u| *u > *at) {
                    Answer::Bool(true)
                } else if self.outbox_len(outbox) >= usize::try_from(*max).unwrap_or(usize::MAX) {
                    Answer::Bool(false)
                } else {
                    let until = message.expires_at_ms.saturating_add(OUTBOX_GRACE_MS);
                    self.once
                        .insert(seen.clone(), until.max(at.saturating_add(1)));
                    let k = (outbox.clone(), message.queued_at_ms, message.id.clone());
                    self.mark(|d| {
                        d.once.insert(seen);
                        d.outbox.insert(k.clone());
                    });
                    self.outbox.insert(k, (**message).clone());
                    Answer::Bool(true)
                }
            }
            Op::OutboxTake { outbox, max, .. } => {
                let keys: Vec<OutboxKey> = self
                    .outbox_range(outbox)
                    .take(usize::try_from(*max).unwrap_or(usize::MAX))
                    .map(|(k, _)| k.clone())
                    .collect();
                let mut taken = Vec::with_capacity(keys.len());
                for k in keys {
                    if let Some(m) = self.outbox.remove(&k) {
                        taken.push(m);
                    }
                    self.mark(|d| {
                        d.outbox.insert(k);
                    });
                }
                Answer::Outbox(taken)
            }
            Op::LeasePut { lease, now: at } => match self.leases.get(&lease.key) {
                Some(cur) if cur.owner != lease.owner && cur.until_ms > *at => Answer::Bool(false),
                _ => {
                    self.set_lease((**lease).clone());
                    Answer::Bool(true)
                }
            },
            Op::LeaseRenew {
                owner, keys, until, ..
            } => {
                let mut lost = Vec::new();
                for key in keys {
                    match self.leases.get(key) {
                        Some(cur) if cur.owner == *owner => {
                            let mut l = cur.clone();
                            l.until_ms = *until;
                            self.set_lease(l);
                        }
                        _ => lost.push(key.clone()),
                    }
                }
                Answer::Keys(lost)
            }
            Op::LeaseRelease { key, owner } => {
                if self.leases.get(key).is_some_and(|l| l.owner == *owner) {
                    self.leases.remove(key);
                    self.mark(|d| {
                        d.leases.insert(key.clone());
                    });
                }
                Answer::Unit
            }
            Op::LeaseTake {
                owner,
                until,
                max,
                now: at,
            } => {
                let mut expired: Vec<(i64, String)> = self
                    .leases
                    .values()
                    .filter(|l| l.until_ms <= *at)
                    .map(|l| (l.until_ms, l.key.clone()))
                    .collect();
                expired.sort();
                let mut taken = Vec::new();
                for (_, key) in expired {
                    if taken.len() >= usize::try_from(*max).unwrap_or(usize::MAX) {
                        break;
                    }
                    let Some(mut l) = self.leases.remove(&key) else {
                        continue;
                    };
                    self.mark(|d| {
                        d.leases.insert(key.clone());
                    });
                    if l.deadline_ms <= *at {
                        continue;
                    }
                    l.owner.clone_from(owner);
                    l.until_ms = *until;
                    self.leases.insert(key, l.clone());
                    taken.push(l);
                }
                Answer::Leases(taken)
            }
            Op::Once { key, ttl, now: at } => match self.once.get(key.as_str()) {
                Some(u) if *u > *at => Answer::Bool(false),
                _ => {
                    self.once
                        .insert(key.clone(), at.saturating_add((*ttl).max(1)));
                    self.mark(|d| {
                        d.once.insert(key.clone());
                    });
                    Answer::Bool(true)
                }
            },
        })
    }

    fn set_lease(&mut self, lease: SendLease) {
        self.mark(|d| {
            d.leases.insert(lease.key.clone());
        });
        self.leases.insert(lease.key.clone(), lease);
    }

    /// The messages of one outbox, in order.
    fn outbox_range<'a>(
        &'a self,
        outbox: &'a str,
    ) -> impl Iterator<Item = (&'a OutboxKey, &'a OutboxMessage)> + 'a {
        self.outbox
            .range((outbox.to_owned(), i64::MIN, String::new())..)
            .take_while(move |(k, _)| k.0 == outbox)
    }

    fn outbox_len(&self, outbox: &str) -> usize {
        self.outbox_range(outbox).count()
    }

    fn set_kv(&mut self, key: &str, until: i64, value: &str) {
        self.kv.insert(key.to_owned(), (until, value.to_owned()));
        self.mark(|d| {
            d.kv.insert(key.to_owned());
        });
    }

    /// A live value of the key-value map at `now`.
    pub(crate) fn kv_get(&self, key: &str, now: i64) -> Option<&str> {
        self.kv
            .get(key)
            .filter(|(until, _)| *until > now)
            .map(|(_, v)| v.as_str())
    }

    /// Forgets everything past its retention at `now`.
    pub(crate) fn sweep(&mut self, now: i64) {
        let Self {
            records,
            budgets,
            once,
            queue,
            kv,
            outbox,
            leases,
            dirty,
            ..
        } = self;
        let before = (records.len(), budgets.len(), once.len());
        let (d_records, d_budgets, d_once, mut d_queue, d_kv, mut d_outbox, mut d_leases) =
            match dirty {
                Some(d) => (
                    Some(&mut d.records),
                    Some(&mut d.budgets),
                    Some(&mut d.once),
                    Some(&mut d.queue),
                    Some(&mut d.kv),
                    Some(&mut d.outbox),
                    Some(&mut d.leases),
                ),
                None => (None, None, None, None, None, None, None),
            };
        retain_noting(records, d_records, |_, r| logic::purge_at(r) > now);
        retain_noting(budgets, d_budgets, |k, _| k.0 > now);
        retain_noting(once, d_once, |_, until| *until > now);
        retain_noting(kv, d_kv, |_, (until, _)| *until > now);
        queue.retain(|k, send| {
            let kept = send.deadline_ms.saturating_add(QUEUE_GRACE_MS) > now;
            if !kept && let Some(d) = d_queue.as_deref_mut() {
                d.insert(k.clone());
            }
            kept
        });
        outbox.retain(|k, m| {
            let kept = m.expires_at_ms.saturating_add(OUTBOX_GRACE_MS) > now;
            if !kept && let Some(d) = d_outbox.as_deref_mut() {
                d.insert(k.clone());
            }
            kept
        });
        leases.retain(|k, l| {
            let kept = l.deadline_ms > now;
            if !kept && let Some(d) = d_leases.as_deref_mut() {
                d.insert(k.clone());
            }
            kept
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
                "store: swept"
            );
        }
    }

    /// Whether anything changed since the last [`State::take_changes`].
    pub(crate) fn has_changes(&self) -> bool {
        self.dirty.as_ref().is_some_and(|d| !d.is_empty())
    }

    /// The keys changed since the last call with their values, starting a fresh set
    /// (nothing when the state does not track them).
    pub(crate) fn take_changes(&mut self) -> Changes {
        let dirty = self.dirty.as_mut().map(std::mem::take).unwrap_or_default();
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
            queue: dirty
                .queue
                .into_iter()
                .map(|k| {
                    let q = self.queue.get(&k).cloned();
                    (k, q)
                })
                .collect(),
            kv: dirty
                .kv
                .into_iter()
                .map(|k| {
                    let v = self.kv.get(&k).cloned();
                    (k, v)
                })
                .collect(),
            outbox: dirty
                .outbox
                .into_iter()
                .map(|k| {
                    let m = self.outbox.get(&k).cloned();
                    (k, m)
                })
                .collect(),
            leases: dirty
                .leases
                .into_iter()
                .map(|k| {
                    let l = self.leases.get(&k).cloned();
                    (k, l)
                })
                .collect(),
            now_ms: self.now_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fixtures::sample_record;

    fn take_many(budgets: Vec<(String, u32, i64)>, now: i64) -> Op {
        Op::TakeMany { budgets, now }
    }

    #[test]
    fn budgets_are_taken_all_or_nothing_even_on_one_key_twice() {
        let mut st = State::default();
        let b = |limit| ("k".to_owned(), limit, 60_000);
        let at = 61_000;
        match st.apply(&take_many(vec![b(1), b(1)], at), at) {
            Ok(Answer::Budgets(Budgets::Exhausted {
                index,
                retry_after_ms,
            })) => assert_eq!((index, retry_after_ms), (1, 59_000)),
            _ => panic!("the second unit of a limit of one is refused"),
        }
        assert_eq!(st.budget_used("k", 60_000, at), 0, "nothing stays counted");
        match st.apply(&take_many(vec![b(2), b(2)], at), at) {
            Ok(Answer::Budgets(Budgets::Allowed { remaining })) => {
                assert_eq!(remaining, vec![1, 0]);
            }
            _ => panic!("two units of a limit of two are allowed"),
        }
        assert_eq!(st.budget_used("k", 60_000, at), 2);
    }

    #[test]
    fn only_a_tracked_state_notes_its_changes() {
        let t = 1_764_000_000_000;
        let create = Op::Create(Box::new(sample_record("v_a", t)));
        let mut plain = State::default();
        assert!(plain.apply(&create, t).is_ok());
        assert!(!plain.has_changes());
        let mut tracked = State::tracked();
        assert!(tracked.apply(&create, t).is_ok());
        assert!(tracked.has_changes());
        let changes = tracked.take_changes();
        assert_eq!(changes.records.len(), 1);
        assert!(!tracked.has_changes(), "a fresh set after taking them");
        // Forgetting is a change too.
        tracked.sweep(i64::MAX);
        let changes = tracked.take_changes();
        assert_eq!(changes.records, vec![("v_a".to_owned(), None)]);
    }
}
