//! State: one trait, two real backends (embedded redb file, Redis), one conformance suite.
//!
//! Every operation that guards a security property is atomic inside the backend:
//! [`Store::check`] takes the check budget, counts the attempt before the code is compared
//! and consumes the code at most once, [`Store::open`] creates a verification together with
//! its budgets, [`Store::rotate`] enforces the resend cooldown, and [`Store::take_budget`]
//! never lets a counter pass its limit, even with many issuer instances on one Redis.
//!
//! # Layout
//! - [`MemoryStore`] (`memory.rs`): in process, for tests and development.
//! - [`EmbeddedStore`] (`embedded/`): one crash-safe redb file behind a write-ahead log,
//!   group commit.
//! - [`RedisStore`] (`redis.rs`): one Lua script per operation on one
//!   Redis server (keys hash-tagged per script).
//! - [`Observed`] (`observed.rs`): any of them, each operation's latency and failures
//!   reported to the issuer's metrics.
//! - `logic.rs`: the rules of one verification and of budget windows, shared by all three
//!   (Redis states the record rules again in Lua); `state.rs`: the in-memory state the memory
//!   and embedded stores share, changed by operations; `in_process.rs`: their one [`Store`]
//!   implementation over it; `codec.rs`: the versioned stored form of a [`Record`].
//! - The conformance suite all three pass lives in the dev-only `otpgate-test-support`
//!   crate (run by `tests/store/store_conformance.rs`); `fixtures.rs` holds the unit tests' samples.
//!
//! # Time
//! Every time is Unix ms from the caller's clock (`now_ms` arguments). The in-process
//! stores have no clock: they forget entries relative to the latest `now_ms` seen
//! (delivery times, which may come from a phone, do not count). Redis
//! expires keys relative to the caller's `now_ms` at write time (`once` on its own clock).

use async_trait::async_trait;
use otpgate_core::wire::{DeliveryState, Status};
use serde::{Deserialize, Serialize};

mod codec;
mod embedded;
#[cfg(test)]
mod fixtures;
mod in_process;
mod logic;
mod memory;
mod observed;
mod redis;
mod state;

pub use embedded::{EmbeddedOptions, EmbeddedStats, EmbeddedStore};
pub use memory::MemoryStore;
pub use observed::{Observed, Observer, failure_kind};
pub use redis::{RedisMode, RedisOptions, RedisStore, RedisTarget, RedisTls};

/// How long a verification stays readable after its code expired (status answers
/// `expired` meanwhile); every backend forgets it afterwards.
pub const RETENTION_GRACE_MS: i64 = 60 * 60 * 1000;

/// When a write to a local file (the embedded store's log, the audit log) is acknowledged.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Durability {
    /// After `fdatasync` (shared by the writes of one group commit): an acknowledged
    /// write survives a crash of the process, of the kernel, or a power cut. The default.
    #[default]
    Disk,
    /// After the write to the operating system; a background `fdatasync` follows within
    /// [`Durability::PROCESS_SYNC_EVERY`]. An acknowledged write survives a crash or
    /// `kill -9` of otpgate; a kernel crash or power cut may lose the writes of about the
    /// last [`Durability::PROCESS_SYNC_EVERY`] (attempt counts, approvals, audit lines).
    Process,
}

impl Durability {
    /// The most time between a write and its `fdatasync` under [`Durability::Process`].
    pub const PROCESS_SYNC_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

    /// The configuration name (`disk`, `process`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disk => "disk",
            Self::Process => "process",
        }
    }
}

/// The digest of the current code and what it was made with.
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
pub struct StoredCode {
    /// `HMAC-SHA-256(key, id ‖ 0 ‖ code)`, 32 bytes.
    pub digest: Vec<u8>,
    /// The id of the code key.
    pub key_id: String,
    /// 1 for the first code, +1 on each resend; binds checks and delivery events to one code.
    pub version: u32,
}

/// Delivery of the current code as stored.
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    /// The state.
    pub state: DeliveryState,
    /// The gateway (device) that carries it.
    pub gateway: Option<String>,
    /// The message id used with the gateway.
    pub message_id: Option<String>,
    /// Last change, Unix ms.
    pub updated_at_ms: i64,
    /// A short reason on failure (never the text or the number).
    pub detail: Option<String>,
}

/// The terminal decision recorded on a verification.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Still open.
    Open,
    /// The code was accepted (once).
    Approved,
    /// Cancelled.
    Cancelled,
}

/// A verification as stored.
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The id.
    pub id: String,
    /// The app name.
    pub app: String,
    /// The destination, E.164.
    pub phone: String,
    /// The template locale.
    pub locale: Option<String>,
    /// Open, approved or cancelled.
    pub outcome: Outcome,
    /// The current code.
    pub code: StoredCode,
    /// Creation, Unix ms.
    pub created_at_ms: i64,
    /// Expiry of the current code, Unix ms.
    pub expires_at_ms: i64,
    /// Checks spent on the current code.
    pub attempts: u32,
    /// Checks allowed per code.
    pub max_attempts: u32,
    /// SMS sent so far (first send included).
    pub sends: u32,
    /// No resend before this, Unix ms.
    pub resend_at_ms: i64,
    /// Delivery of the current code.
    pub delivery: DeliveryRecord,
    /// A configured test number: fixed code, never sent.
    pub test_number: bool,
    /// Started by a trusted caller (API key): its approval does not feed the abuse signal.
    pub trusted: bool,
}

impl Record {
    /// The state the API shows at `now_ms`.
    pub fn status(&self, now_ms: i64) -> Status {
        match self.outcome {
            Outcome::Approved => Status::Approved,
            Outcome::Cancelled => Status::Cancelled,
            Outcome::Open if self.attempts >= self.max_attempts => Status::MaxAttemptsReached,
            Outcome::Open if now_ms >= self.expires_at_ms => Status::Expired,
            Outcome::Open => Status::Pending,
        }
    }

    /// Checks left on the current code.
    pub fn attempts_left(&self) -> u32 {
        self.max_attempts.saturating_sub(self.attempts)
    }
}

/// What a typed code is compared with: its digest under every code key the issuer holds
/// (`HMAC-SHA-256(key, id ‖ 0 ‖ code)` by key id), so a backend compares without any key
/// and a code made before a key rotation still checks.
#[derive(Clone, Eq, PartialEq, Serialize, Deserialize)]
pub struct Guess {
    /// (key id, digest of the typed code under that key).
    pub digests: Vec<(String, Vec<u8>)>,
}

impl Guess {
    /// The digest made with key `key_id`, if the issuer holds that key.
    pub fn digest_for(&self, key_id: &str) -> Option<&[u8]> {
        self.digests
            .iter()
            .find(|(k, _)| k == key_id)
            .map(|(_, d)| d.as_slice())
    }

    /// Whether the guess matches `code`, in constant time.
    pub fn matches(&self, code: &StoredCode) -> bool {
        self.digest_for(&code.key_id)
            .is_some_and(|d| otpgate_core::code::ct_eq(d, &code.digest))
    }
}

impl std::fmt::Debug for Guess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.digests.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Guess")
            .field("key_ids", &ids)
            .field("digests", &"[redacted]")
            .finish()
    }
}

/// The answer of [`Store::check`].
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum CheckOutcome {
    /// The attempt was counted and the code matched: this call approved the verification
    /// (the record as now stored).
    Approved(Box<Record>),
    /// The attempt was counted and the code did not match.
    Wrong {
        /// Attempts left after this one.
        attempts_left: u32,
        /// The version of the code compared against.
        code_version: u32,
    },
    /// The check budget is spent: nothing was counted, nothing compared.
    RateLimited {
        /// Milliseconds until the budget's window frees up.
        retry_after_ms: i64,
    },
    /// No such verification.
    NotFound,
    /// Approved before: the code is single use.
    AlreadyUsed,
    /// Cancelled.
    Cancelled,
    /// The code's lifetime is over.
    Expired,
    /// Every attempt is spent.
    NoAttemptsLeft,
}

/// What a resend replaces.
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
pub struct Rotation {
    /// The new code's digest, key id and version (must be the stored version + 1).
    pub code: StoredCode,
    /// New expiry, Unix ms.
    pub expires_at_ms: i64,
    /// Next allowed resend, Unix ms.
    pub resend_at_ms: i64,
    /// Most sends a verification may have.
    pub max_sends: u32,
}

/// The answer of [`Store::rotate`].
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum RotateOutcome {
    /// Replaced; the updated record.
    Rotated(Box<Record>),
    /// No such verification.
    NotFound,
    /// Inside the cooldown: retry at this time (Unix ms).
    CoolingDown {
        /// When a resend becomes possible, Unix ms.
        retry_at_ms: i64,
    },
    /// The verification has had its maximum number of sends.
    TooManySends,
    /// Not pending any more (approved, cancelled, out of attempts).
    NotPending(Status),
    /// Another resend won the race (the version moved).
    Conflict,
}

/// The answer of [`Store::take_budget`].
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Budget {
    /// Counted; this many remain in the window.
    Allowed {
        /// Remaining in this window.
        remaining: u32,
    },
    /// Spent: nothing was counted.
    Exhausted {
        /// Milliseconds until the window frees up.
        retry_after_ms: i64,
    },
}

/// One budget of [`Store::take_budgets`].
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct BudgetRequest<'a> {
    /// The counter.
    pub key: &'a str,
    /// Most units per window.
    pub limit: u32,
    /// The fixed window, ms.
    pub window_ms: i64,
}

/// The answer of [`Store::take_budgets`].
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Budgets {
    /// One unit was counted on every budget; what remains of each, in request order.
    Allowed {
        /// Remaining in each window.
        remaining: Vec<u32>,
    },
    /// A budget was spent: nothing stays counted on any of them.
    Exhausted {
        /// The position of the first spent budget in the request.
        index: usize,
        /// Milliseconds until its window frees up.
        retry_after_ms: i64,
    },
}

/// An answer given as soon as the backend decided it, before the write behind it is
/// durable ([`Store::check_staged`], [`Store::open_staged`]). The caller may act on
/// `value` inside the process at once (write the audit line, sign a receipt: work that
/// then overlaps the store's sync), but answers a client only after [`Durable::wait`]
/// succeeded.
#[derive(Debug)]
pub struct Staged<T> {
    /// The backend's answer.
    pub value: T,
    /// Resolves when the write is durable at the store's level.
    pub durable: Durable,
}

impl<T> Staged<T> {
    /// An answer whose write is durable already.
    pub fn settled(value: T) -> Self {
        Self {
            value,
            durable: Durable::ready(),
        }
    }
}

/// The durability of a [`Staged`] write.
#[derive(Debug)]
#[must_use = "a staged write may not be durable yet: wait for it before answering"]
pub struct Durable(Option<tokio::sync::oneshot::Receiver<Result<(), StoreError>>>);

impl Durable {
    /// Durable already.
    pub fn ready() -> Self {
        Self(None)
    }

    /// Durable when `rx` answers `Ok` (a dropped sender is a failure).
    fn later(rx: tokio::sync::oneshot::Receiver<Result<(), StoreError>>) -> Self {
        Self(Some(rx))
    }

    /// Waits until the write is durable.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the backend could not make it durable (the write
    /// is then lost on a restart, and the store refuses further work until one).
    pub async fn wait(self) -> Result<(), StoreError> {
        match self.0 {
            None => Ok(()),
            Some(rx) => rx.await.unwrap_or_else(|_| {
                Err(StoreError::Unavailable(
                    "the store stopped before the write was durable".into(),
                ))
            }),
        }
    }
}

/// A backend failure (never a client's mistake).
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend cannot be reached or failed to write.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Stored data could not be decoded.
    #[error("store data corrupt: {0}")]
    Corrupt(String),
    /// [`Store::create`] with an id that exists.
    #[error("id already exists")]
    Duplicate,
}

/// The state of the issuer.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Inserts a new verification, kept until `expires_at_ms` plus
    /// [`RETENTION_GRACE_MS`] (during the grace period it reads with status `expired`;
    /// afterwards it is gone and its id may be used again). `created_at_ms` is the
    /// caller's now.
    ///
    /// # Errors
    /// [`StoreError::Duplicate`] when the id exists.
    async fn create(&self, record: &Record) -> Result<(), StoreError>;

    /// Reads a verification (`None` when unknown or past its retention).
    async fn get(&self, id: &str) -> Result<Option<Record>, StoreError>;

    /// Opens a verification: takes one unit of each budget and inserts `record`, all or
    /// nothing (when a budget is spent nothing is counted and nothing inserted; when the
    /// insert fails the units are given back). The embedded and memory stores do it in one
    /// atomic step (one commit); the default takes the budgets, then creates.
    ///
    /// # Errors
    /// [`StoreError::Duplicate`] when the id exists.
    async fn open(
        &self,
        record: &Record,
        budgets: &[BudgetRequest<'_>],
        now_ms: i64,
    ) -> Result<Budgets, StoreError> {
        let taken = self.take_budgets(budgets, now_ms).await?;
        if matches!(taken, Budgets::Allowed { .. })
            && let Err(e) = self.create(record).await
        {
            refund_all(self, budgets, now_ms).await;
            return Err(e);
        }
        Ok(taken)
    }

    /// [`Store::open`], answered as soon as the outcome is decided (see [`Staged`] and
    /// [`Store::check_staged`]).
    async fn open_staged(
        &self,
        record: &Record,
        budgets: &[BudgetRequest<'_>],
        now_ms: i64,
    ) -> Result<Staged<Budgets>, StoreError> {
        Ok(Staged::settled(self.open(record, budgets, now_ms).await?))
    }

    /// Checks a typed code, atomically: takes one unit of `budget` (when given; a spent
    /// budget answers `RateLimited` and nothing else happens), then, when the verification
    /// is pending at `now_ms` with attempts left, counts one attempt, compares the stored
    /// digest with the guess's digest under the same key in constant time, and on a match
    /// marks it approved. The count is stored with the answer, so a comparison never
    /// happens uncounted, and under any concurrency exactly one call answers `Approved`.
    /// Refusals are checked in the order of [`Record::status`]: approved, cancelled,
    /// attempts spent, expired (`now_ms >= expires_at_ms`).
    ///
    /// The budget may live apart from the record (Redis takes it in its own step first).
    async fn check(
        &self,
        id: &str,
        guess: &Guess,
        budget: Option<BudgetRequest<'_>>,
        now_ms: i64,
    ) -> Result<CheckOutcome, StoreError>;

    /// [`Store::check`], answered as soon as the outcome is decided: the same atomic step,
    /// but the answer may come before its write is durable (see [`Staged`]). Backends
    /// whose answers are durable when given (Redis, memory, the embedded store under
    /// [`Durability::Process`]) answer settled.
    async fn check_staged(
        &self,
        id: &str,
        guess: &Guess,
        budget: Option<BudgetRequest<'_>>,
        now_ms: i64,
    ) -> Result<Staged<CheckOutcome>, StoreError> {
        Ok(Staged::settled(
            self.check(id, guess, budget, now_ms).await?,
        ))
    }

    /// Atomically replaces the code (resend) if the cooldown is over and sends remain.
    ///
    /// Checked in this order: unknown → `NotFound`; approved, cancelled or attempts spent
    /// → `NotPending` (an expired code may be replaced); `rotation.code.version` not the
    /// stored version + 1 → `Conflict`; `sends >= max_sends` → `TooManySends`;
    /// `now_ms < resend_at_ms` → `CoolingDown`. On success: the new code, expiry and
    /// cooldown, attempts 0, sends + 1, delivery `queued` with no route.
    async fn rotate(
        &self,
        id: &str,
        rotation: &Rotation,
        now_ms: i64,
    ) -> Result<RotateOutcome, StoreError>;

    /// Cancels an open verification (outcome `Open`, whatever its expiry or attempts);
    /// approved or cancelled ones are left as they are. Returns the record after the call,
    /// `None` if unknown.
    async fn cancel(&self, id: &str, now_ms: i64) -> Result<Option<Record>, StoreError>;

    /// Records a delivery change for code `version`, if it is still the current code and
    /// the change moves forward ([`DeliveryState::may_become`]). A change naming another
    /// message id than the stored one is a new route (failover): it may start again at
    /// `queued` or `submitted` unless the stored message was delivered or skipped, and any
    /// other change for another message is ignored. A change with no message id or
    /// gateway keeps the stored ones. Returns whether it was applied.
    async fn update_delivery(
        &self,
        id: &str,
        version: u32,
        delivery: &DeliveryRecord,
    ) -> Result<bool, StoreError>;

    /// Counts one unit against `key` (fixed window of `window_ms` aligned on multiples of
    /// the window) unless the count has reached `limit`; an `Exhausted` answer counts
    /// nothing. Each window length is its own counter; a counter is kept one window
    /// length after its window ends.
    async fn take_budget(
        &self,
        key: &str,
        limit: u32,
        window_ms: i64,
        now_ms: i64,
    ) -> Result<Budget, StoreError>;

    /// Adds `n` units to the counter of `key` in the window holding `now_ms`, with no limit:
    /// several events of an abuse signal counted in one step. The default counts them one
    /// by one with [`Store::take_budget`].
    async fn add_to_budget(
        &self,
        key: &str,
        n: u32,
        window_ms: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        for _ in 0..n {
            self.take_budget(key, u32::MAX, window_ms, now_ms).await?;
        }
        Ok(())
    }

    /// Gives back one unit taken by [`Store::take_budget`] in the same window (when a later
    /// check refused the request).
    async fn refund_budget(&self, key: &str, window_ms: i64, now_ms: i64)
    -> Result<(), StoreError>;

    /// Takes one unit from each budget, all or nothing: when one is spent, the units taken
    /// from the others are given back. The embedded and memory stores do it in one atomic
    /// step (one commit instead of one per budget, which is what a start needs to be fast
    /// on the embedded store); the default takes them one by one and refunds on refusal,
    /// so a concurrent reader may briefly see a unit that is then given back.
    async fn take_budgets(
        &self,
        budgets: &[BudgetRequest<'_>],
        now_ms: i64,
    ) -> Result<Budgets, StoreError> {
        let mut remaining = Vec::with_capacity(budgets.len());
        for (index, b) in budgets.iter().enumerate() {
            let taken = match self.take_budget(b.key, b.limit, b.window_ms, now_ms).await {
                Ok(t) => t,
                Err(e) => {
                    refund_all(self, &budgets[..index], now_ms).await;
                    return Err(e);
                }
            };
            match taken {
                Budget::Allowed { remaining: r } => remaining.push(r),
                Budget::Exhausted { retry_after_ms } => {
                    refund_all(self, &budgets[..index], now_ms).await;
                    return Ok(Budgets::Exhausted {
                        index,
                        retry_after_ms,
                    });
                }
            }
        }
        Ok(Budgets::Allowed { remaining })
    }

    /// The count of `key` in the current window.
    async fn budget_used(&self, key: &str, window_ms: i64, now_ms: i64) -> Result<u32, StoreError>;

    /// Returns `true` the first time `key` is seen within `ttl_ms` (webhook event ids,
    /// spent proof-of-work challenges): under any concurrency, exactly one caller gets
    /// `true`. Redis measures the TTL on its own clock.
    async fn once(&self, key: &str, ttl_ms: i64, now_ms: i64) -> Result<bool, StoreError>;

    /// Queues a send waiting for phone capacity, unless `max` sends wait already (answers
    /// `false`, nothing written). Queuing the same entry again (same key, priority and
    /// time) changes nothing.
    async fn enqueue_send(&self, send: &QueuedSend, max: u32) -> Result<bool, StoreError>;

    /// Takes up to `max` queued sends, best first (lowest priority number, then oldest),
    /// removing them: under any concurrency each entry goes to one caller.
    async fn dequeue_sends(&self, max: u32) -> Result<Vec<QueuedSend>, StoreError>;

    /// How many sends wait.
    async fn queued_sends(&self) -> Result<u32, StoreError>;

    /// Stores `value` under `key` until `ttl_ms` from `now_ms`, unless a live value is
    /// there: answers that value (nothing written), or `None` when `value` was stored. Under
    /// any concurrency one caller stores (idempotency keys claim their request with it).
    async fn claim(
        &self,
        key: &str,
        value: &str,
        ttl_ms: i64,
        now_ms: i64,
    ) -> Result<Option<String>, StoreError>;

    /// Stores `value` under `key` until `ttl_ms` from `now_ms`, replacing what is there.
    async fn put(&self, key: &str, value: &str, ttl_ms: i64, now_ms: i64)
    -> Result<(), StoreError>;

    /// Forgets `key` (nothing when it is not there).
    async fn forget(&self, key: &str) -> Result<(), StoreError>;

    /// Whether the backend answers (readiness).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Puts a message in the outbox of a phone that polls for its messages (multiOTP),
    /// unless a message with its id was put there before (answers `true`, nothing
    /// changes, even after it was taken: a message id goes to the phone once) or `max` wait
    /// (answers `false`). An id is remembered until [`OutboxMessage::expires_at_ms`] plus
    /// [`OUTBOX_GRACE_MS`].
    async fn outbox_push(
        &self,
        outbox: &str,
        message: &OutboxMessage,
        max: u32,
        now_ms: i64,
    ) -> Result<bool, StoreError>;

    /// Takes up to `max` messages from the outbox, oldest first, removing them: under any
    /// concurrency each message goes to one caller. Expired ones are handed out too (the
    /// caller drops them).
    async fn outbox_take(
        &self,
        outbox: &str,
        max: u32,
        now_ms: i64,
    ) -> Result<Vec<OutboxMessage>, StoreError>;

    /// Records the in-flight send `lease.key` as held by `lease.owner` until
    /// `lease.until_ms`, replacing what its owner wrote before; answers `false` (nothing
    /// written) while another owner's lease on the key is live (`until_ms > now_ms`).
    async fn lease_put(&self, lease: &SendLease, now_ms: i64) -> Result<bool, StoreError>;

    /// Extends to `until_ms` the leases of `keys` that `owner` holds; answers the keys it
    /// does not hold (any more): taken over, released or forgotten.
    async fn lease_renew(
        &self,
        owner: &str,
        keys: &[String],
        until_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<String>, StoreError>;

    /// Forgets the lease of `key` if `owner` holds it.
    async fn lease_release(&self, key: &str, owner: &str) -> Result<(), StoreError>;

    /// Takes over up to `max` leases whose time ran out (`until_ms <= now_ms`), oldest
    /// first: each becomes `owner`'s until `until_ms` and is answered as now stored. Under
    /// any concurrency each expired lease goes to one caller. Leases past their
    /// [`SendLease::deadline_ms`] are forgotten instead.
    async fn lease_take_expired(
        &self,
        owner: &str,
        until_ms: i64,
        max: u32,
        now_ms: i64,
    ) -> Result<Vec<SendLease>, StoreError>;
}

/// How long an outbox remembers a message id past the message's expiry.
pub const OUTBOX_GRACE_MS: i64 = 10 * 60 * 1000;

/// A message waiting for a phone that polls for it (`gateway::adapter::multiotp`). The
/// store keeps and hands it out; it never reads the sealed message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxMessage {
    /// The message id (`{verification_id}.{version}.{route}`).
    pub id: String,
    /// Pointless to send after this, Unix ms.
    pub expires_at_ms: i64,
    /// Put in the outbox at, Unix ms (the order they are handed out in).
    pub queued_at_ms: i64,
    /// The destination and text, sealed under a key only the issuers hold.
    pub sealed: String,
}

/// An in-flight send held by one issuer instance (`gateway::pool`): when its holder stops
/// renewing it, another instance takes it over.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendLease {
    /// `{verification_id}.{code_version}`: one lease per code.
    pub key: String,
    /// The instance that holds it.
    pub owner: String,
    /// Held until, Unix ms; another instance may take it over after.
    pub until_ms: i64,
    /// Forgotten after this, Unix ms (the code is dead).
    pub deadline_ms: i64,
    /// What the holder needs to go on (its route, the sealed message): opaque to the store.
    pub body: String,
}

/// A send waiting in the store for phone capacity (`gateway::queue`). The store orders and
/// hands out entries; it never reads the sealed message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedSend {
    /// `{verification_id}.{code_version}`: one entry per code.
    pub key: String,
    /// Lower goes first (the gateway's rank of what the send paid), below 2048.
    pub priority: u16,
    /// When it was queued, Unix ms: first in, first out within a priority.
    pub queued_at_ms: i64,
    /// Nothing is sent after this, Unix ms; a backend may forget the entry past it.
    pub deadline_ms: i64,
    /// The message, sealed under a key only the issuers hold.
    pub sealed: String,
}

impl QueuedSend {
    /// The order key: priority, then age, then key.
    pub fn order(&self) -> (u16, i64, &str) {
        (self.priority, self.queued_at_ms, &self.key)
    }
}

/// Gives back one unit of each budget (best effort: a failure leaves a unit counted,
/// which only errs on the safe side).
async fn refund_all<S: Store + ?Sized>(store: &S, budgets: &[BudgetRequest<'_>], now_ms: i64) {
    for b in budgets {
        if let Err(e) = store.refund_budget(b.key, b.window_ms, now_ms).await {
            tracing::warn!(error = %e, "budget refund failed");
        }
    }
}
