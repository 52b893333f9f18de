//! Sends waiting for phone capacity.
//!
//! When no phone has budget for a send at the moment, the pool queues it in the store
//! (delivery state `queued`) instead of refusing the start, and sends it as soon as a
//! phone's budget frees, within a bound inside the code's lifetime
//! (`[gateways] queue_max_wait_secs`, and never later than [`QUEUE_MIN_LIFE_MS`] before the
//! code expires). Past that bound the send is failed, never sent late.
//!
//! The queue is the store's ([`Store::enqueue_send`]): every issuer on a shared store
//! serves it, and each entry goes to one of them. An entry holds the SMS text (the code),
//! so it is sealed (AES-256-GCM, a key derived from the code key, the entry's key as
//! associated data): the store sees the order, never the message.
//!
//! Entries are handed out by [`Priority`]: when the phones' budget is short it goes first
//! to traffic that paid for it. The same classes also size what a send may take of each
//! budget directly ([`Priority::share`]): anonymous traffic that paid nothing cannot spend
//! a phone's last units.

use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};

use aes_gcm::aead::{Aead as _, KeyInit as _, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{Outgoing, SendJob};
use crate::keys::KeyRing;
use crate::store::{QueuedSend, Store};

/// The least lifetime a code keeps when its queued send leaves: the person still has time
/// to read and type it.
pub const QUEUE_MIN_LIFE_MS: i64 = 30_000;

/// The purpose the queue's sealing keys are derived for.
const PURPOSE: &str = "send queue v1";

/// Who a send serves, in the order the phones' budget goes to them when it is short.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Priority {
    /// Paid for: a trusted API-key caller, or an anonymous one that solved proof of work.
    Paid,
    /// An anonymous number's first verification of the day, no proof of work asked.
    First,
    /// Anything else anonymous: a resend, another start to a number seen today.
    #[default]
    Repeat,
}

impl Priority {
    /// Every class, best first.
    pub const ALL: [Self; 3] = [Self::Paid, Self::First, Self::Repeat];

    /// The stable name (metrics labels, audit lines).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Paid => "paid",
            Self::First => "first",
            Self::Repeat => "repeat",
        }
    }

    /// What a send of this class may take of a budget of `limit` units: all of it for paid
    /// traffic, three quarters for a first verification, half for a repeat (at least one
    /// unit each), so a flood that paid nothing leaves the rest to those who did.
    pub fn share(self, limit: u32) -> u32 {
        let part = match self {
            Self::Paid => return limit,
            Self::First => u64::from(limit) * 3 / 4,
            Self::Repeat => u64::from(limit) / 2,
        };
        u32::try_from(part)
            .unwrap_or(limit)
            .clamp(1.min(limit), limit)
    }
}

/// The work a trusted caller's send counts as (more than any proof of work).
pub const TRUSTED_WORK: u8 = u8::MAX;

/// What a queued send must have paid to leave the queue now. The policy answers it (proof
/// of work asked above its base: anonymous traffic must pay): queued sends that paid less
/// wait, and fail at their bound if the pressure outlasts it. A burst that queued on no or
/// cheap work before the difficulty rose does not drain into the phones after it did.
pub trait Pressure: Send + Sync + 'static {
    /// `None`: any send may leave; `Some(bits)`: only sends that paid at least `bits` of
    /// proof of work (trusted callers always do).
    fn required_work(&self) -> Option<u8>;
}

/// What a sealed entry holds.
#[derive(Serialize, Deserialize)]
struct Sealed {
    vid: String,
    version: u32,
    phone: String,
    text: String,
    segments: u32,
    expires_at_ms: i64,
    priority: Priority,
    work: u8,
}

/// Seals and opens queued sends under keys derived from the code keys (the current one
/// seals; retired ones within their retention still open).
pub struct Sealer {
    keys: Vec<(String, Zeroizing<[u8; 32]>)>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field(
                "key_ids",
                &self.keys.iter().map(|k| &k.0).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// A send's place in the store's queue (lower goes first): by the work it paid, most
/// first, then unpaid first verifications, then unpaid repeats. Under pressure the sends
/// that may leave (enough work) thus all come before those held back.
pub fn queue_rank(job: &SendJob) -> u16 {
    match (job.work, job.priority) {
        (0, Priority::Paid) => 255,
        (0, Priority::First) => 256,
        (0, _) => 257,
        (w, _) => 255 - u16::from(w),
    }
}

/// The entry key of a send: `{verification_id}.{code_version}`.
pub fn entry_key(job: &SendJob) -> String {
    format!("{}.{}", job.verification_id, job.code_version)
}

impl Sealer {
    /// The sealer of an issuer's key ring.
    pub fn new(keys: &KeyRing) -> Self {
        Self {
            keys: keys
                .code_keys()
                .iter()
                .map(|k| (k.id().to_owned(), Zeroizing::new(k.derive(PURPOSE))))
                .collect(),
        }
    }

    /// `{key id}.{base64url(nonce ‖ ciphertext)}`, bound to the entry's key.
    ///
    /// # Errors
    /// The system RNG failed (no nonce).
    pub fn seal(&self, job: &SendJob) -> Result<String, String> {
        let plain = Zeroizing::new(
            serde_json::to_vec(&Sealed {
                vid: job.verification_id.clone(),
                version: job.code_version,
                phone: job.message.phone.clone(),
                text: job.message.text.clone(),
                segments: job.message.segments,
                expires_at_ms: job.expires_at_ms,
                priority: job.priority,
                work: job.work,
            })
            .map_err(|e| e.to_string())?,
        );
        self.seal_bytes(entry_key(job).as_bytes(), &plain)
    }

    /// `plain` sealed under the current key and bound to `aad`:
    /// `{key id}.{base64url(nonce ‖ ciphertext)}`.
    ///
    /// # Errors
    /// No key, or the system RNG failed (no nonce).
    pub fn seal_bytes(&self, aad: &[u8], plain: &[u8]) -> Result<String, String> {
        let (kid, key) = self.keys.first().ok_or("no code key")?;
        let nonce = crate::random::bytes(12).map_err(|e| e.to_string())?;
        let nonce = <[u8; 12]>::try_from(nonce.as_slice()).map_err(|e| e.to_string())?;
        let cipher = Aes256Gcm::new(&(**key).into());
        let sealed = cipher
            .encrypt(&Nonce::from(nonce), Payload { msg: plain, aad })
            .map_err(|_| "seal failed".to_owned())?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(format!("{kid}.{}", B64.encode(out)))
    }

    /// What [`Sealer::seal_bytes`] sealed under `aad`; `None` when it is not sealed under a
    /// key held here, was altered, or was bound to something else.
    pub fn open_bytes(&self, aad: &[u8], sealed: &str) -> Option<Zeroizing<Vec<u8>>> {
        let (kid, body) = sealed.rsplit_once('.')?;
        let (_, key) = self.keys.iter().find(|(id, _)| id == kid)?;
        let bytes = B64.decode(body).ok()?;
        if bytes.len() < 12 + 16 {
            return None;
        }
        let (nonce, ct) = bytes.split_at(12);
        let nonce = <[u8; 12]>::try_from(nonce).ok()?;
        let cipher = Aes256Gcm::new(&(**key).into());
        cipher
            .decrypt(&Nonce::from(nonce), Payload { msg: ct, aad })
            .ok()
            .map(Zeroizing::new)
    }

    /// The send an entry holds; `None` when it is not sealed under a key held here, was
    /// altered, or names another entry.
    pub fn open(&self, entry: &QueuedSend) -> Option<SendJob> {
        self.open_sealed(&entry.key, &entry.sealed)
    }

    /// The send sealed for entry key `key` (as [`Sealer::open`]).
    pub fn open_sealed(&self, key: &str, sealed: &str) -> Option<SendJob> {
        let plain = self.open_bytes(key.as_bytes(), sealed)?;
        let s: Sealed = serde_json::from_slice(&plain).ok()?;
        let version = s.version;
        Some(SendJob {
            message: Outgoing {
                message_id: format!("{}.{version}.0", s.vid),
                phone: s.phone,
                text: s.text,
                ttl_secs: 0,
                segments: s.segments,
            },
            verification_id: s.vid,
            code_version: version,
            expires_at_ms: s.expires_at_ms,
            priority: s.priority,
            work: s.work,
        })
        .filter(|job| entry_key(job) == key)
    }
}

/// The queue as one pool sees it: the sealer, its bounds, and a hint of how many entries
/// wait (this instance's own count, corrected by the store's when it drains).
#[derive(Debug)]
pub(super) struct Queue {
    pub(super) sealer: std::sync::Arc<Sealer>,
    /// At most this many entries wait (a full queue refuses with `no_gateway_capacity`).
    pub(super) max: u32,
    /// An entry waits at most this long, ms.
    pub(super) max_wait_ms: i64,
    waiting: AtomicU32,
    /// When the store's count was last read, Unix ms (entries other instances queued).
    looked_ms: AtomicI64,
    /// Wakes the drain loop when an entry is queued.
    pub(super) wake: tokio::sync::Notify,
}

impl Queue {
    pub(super) fn new(sealer: std::sync::Arc<Sealer>, max: u32, max_wait_secs: u64) -> Self {
        Self {
            sealer,
            max,
            max_wait_ms: i64::try_from(max_wait_secs.saturating_mul(1000)).unwrap_or(i64::MAX),
            waiting: AtomicU32::new(0),
            looked_ms: AtomicI64::new(i64::MIN),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// Whether sends are believed to wait (a new send then queues behind them).
    pub(super) fn busy(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) > 0
    }

    /// The entries this instance believes wait.
    pub(super) fn waiting(&self) -> u32 {
        self.waiting.load(Ordering::Relaxed)
    }

    pub(super) fn queued(&self, n: u32) {
        self.waiting.fetch_add(n, Ordering::Relaxed);
        self.wake.notify_one();
    }

    /// Entries put back after a drain that could not send them (no wake-up: the drain
    /// pauses until capacity is expected).
    pub(super) fn returned(&self, n: u32) {
        self.waiting.fetch_add(n, Ordering::Relaxed);
    }

    pub(super) fn taken(&self, n: u32) {
        let _ = self
            .waiting
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
                Some(w.saturating_sub(n))
            });
    }

    /// The latest a send for `job` may leave: its bound, inside the code's lifetime.
    pub(super) fn deadline(&self, job: &SendJob, now_ms: i64) -> i64 {
        now_ms
            .saturating_add(self.max_wait_ms)
            .min(job.expires_at_ms - QUEUE_MIN_LIFE_MS)
    }

    /// Whether the drain loop should look at the store: entries this instance queued, or
    /// (at most once a second) entries another instance may have queued.
    pub(super) async fn worth_a_look(&self, store: &dyn Store, now_ms: i64) -> bool {
        if self.busy() {
            return true;
        }
        let last = self.looked_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(last) < 1_000 {
            return false;
        }
        self.looked_ms.store(now_ms, Ordering::Relaxed);
        match store.queued_sends().await {
            Ok(n) if n > 0 => {
                self.waiting.store(n, Ordering::Relaxed);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(priority: Priority) -> SendJob {
        SendJob {
            verification_id: "v_AAAAAAAAAAAAAAAAAAAAAA".into(),
            code_version: 2,
            message: Outgoing {
                message_id: "v_AAAAAAAAAAAAAAAAAAAAAA.2.0".into(),
                phone: "+14155550123".into(),
                text: "Your code is 123456".into(),
                // Set when a phone takes it (the lifetime left then).
                ttl_secs: 0,
                segments: 1,
            },
            expires_at_ms: 1_000_000,
            priority,
            work: 7,
        }
    }

    fn entry(sealer: &Sealer, job: &SendJob) -> QueuedSend {
        QueuedSend {
            key: entry_key(job),
            priority: queue_rank(job),
            queued_at_ms: 1,
            deadline_ms: 2,
            sealed: sealer.seal(job).unwrap(),
        }
    }

    #[test]
    fn a_sealed_send_opens_as_itself_and_hides_the_code() {
        let sealer = Sealer::new(&KeyRing::ephemeral());
        let j = job(Priority::First);
        let e = entry(&sealer, &j);
        assert!(!e.sealed.contains("123456"));
        assert!(!e.sealed.contains("4155550123"));
        assert_eq!(sealer.open(&e), Some(j));
    }

    #[test]
    fn altered_moved_or_foreign_entries_do_not_open() {
        let sealer = Sealer::new(&KeyRing::ephemeral());
        let e = entry(&sealer, &job(Priority::Paid));
        // Another issuer's keys.
        assert_eq!(Sealer::new(&KeyRing::ephemeral()).open(&e), None);
        // Moved under another entry's key (a replay onto another verification).
        let mut moved = e.clone();
        moved.key = "v_BBBBBBBBBBBBBBBBBBBBBB.2".into();
        assert_eq!(sealer.open(&moved), None);
        // One bit of the ciphertext flipped.
        let (kid, body) = e.sealed.rsplit_once('.').unwrap();
        let mut bytes = B64.decode(body).unwrap();
        bytes[20] ^= 1;
        let mut flipped = e.clone();
        flipped.sealed = format!("{kid}.{}", B64.encode(bytes));
        assert_eq!(sealer.open(&flipped), None);
        for junk in ["", ".", "x.y", "nokey", "k.!!!"] {
            let mut bad = e.clone();
            bad.sealed = junk.into();
            assert_eq!(sealer.open(&bad), None, "{junk}");
        }
    }

    #[test]
    fn classes_take_shrinking_shares_of_a_budget() {
        assert_eq!(Priority::Paid.share(60), 60);
        assert_eq!(Priority::First.share(60), 45);
        assert_eq!(Priority::Repeat.share(60), 30);
        // Small budgets still let every class send one.
        for p in Priority::ALL {
            assert_eq!(p.share(1), 1);
            assert_eq!(p.share(0), 0);
        }
        assert!(Priority::Paid < Priority::First && Priority::First < Priority::Repeat);
    }

    #[test]
    fn the_queue_hands_out_by_work_paid_then_class() {
        let with = |priority, work| SendJob {
            work,
            ..job(priority)
        };
        let ranks = [
            queue_rank(&with(Priority::Paid, TRUSTED_WORK)),
            queue_rank(&with(Priority::Paid, 18)),
            queue_rank(&with(Priority::Paid, 6)),
            queue_rank(&with(Priority::First, 0)),
            queue_rank(&with(Priority::Repeat, 0)),
        ];
        assert!(ranks.windows(2).all(|w| w[0] < w[1]), "{ranks:?}");
        assert!(ranks.iter().all(|&r| r < 2048));
    }
}
