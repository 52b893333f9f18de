//! An in-process store (a mutex around the shared [`State`]): tests, development, single
//! short-lived instances. Nothing survives a restart.

use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use super::StoreError;
use super::in_process::Engine;
use super::state::{self, Answer, Op, State};

/// How often (in store time) the maps are scanned for forgotten entries.
const SWEEP_EVERY_MS: i64 = 10_000;

/// The in-memory [`Store`](super::Store).
///
/// Time for forgetting entries is the latest `now_ms` any call has passed (the store has no
/// clock of its own), so tests driving a `ManualClock` see consistent behaviour: a record is
/// gone once a call has been made at or after its expiry plus
/// [`RETENTION_GRACE_MS`](super::RETENTION_GRACE_MS).
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    state: State,
    /// Store time of the last sweep.
    last_sweep_ms: i64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        state::lock(&self.inner)
    }
}

#[async_trait]
impl Engine for MemoryStore {
    async fn apply(&self, op: Op) -> Result<Answer, StoreError> {
        let mut inner = self.lock();
        let Inner {
            state,
            last_sweep_ms,
        } = &mut *inner;
        // Store time moves with the caller's now, and now and then forgets what is past its
        // retention.
        state.now_ms = state.now_ms.max(op.now());
        let now = state.now_ms;
        if now - *last_sweep_ms >= SWEEP_EVERY_MS {
            *last_sweep_ms = now;
            state.sweep(now);
        }
        state.apply(&op, now)
    }

    fn read<R>(&self, f: impl FnOnce(&State) -> R) -> Result<R, StoreError> {
        Ok(f(&self.lock().state))
    }

    fn healthy(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use otpgate_core::wire::{DeliveryState, Status};

    use super::*;
    use crate::store::fixtures::{right, wrong};
    use crate::store::{CheckOutcome, DeliveryRecord, Outcome, Record, Store, StoredCode};

    fn record(id: &str, now: i64) -> Record {
        Record {
            id: id.to_owned(),
            app: "app".to_owned(),
            phone: "+33612345678".to_owned(),
            locale: None,
            outcome: Outcome::Open,
            code: StoredCode {
                digest: vec![7; 32],
                key_id: "k1".to_owned(),
                version: 1,
            },
            created_at_ms: now,
            expires_at_ms: now + 300_000,
            attempts: 0,
            max_attempts: 3,
            sends: 1,
            resend_at_ms: now + 30_000,
            delivery: DeliveryRecord {
                state: DeliveryState::Queued,
                gateway: None,
                message_id: None,
                updated_at_ms: now,
                detail: None,
            },
            test_number: false,
            trusted: false,
        }
    }

    #[tokio::test]
    async fn check_counts_then_approves_once() {
        let s = MemoryStore::new();
        let now = 1_000_000;
        s.create(&record("v1", now)).await.expect("create");
        assert_eq!(
            s.create(&record("v1", now)).await,
            Err(StoreError::Duplicate)
        );
        let code = record("v1", now).code;
        assert_eq!(
            s.check("v1", &wrong(), None, now + 1).await.expect("check"),
            CheckOutcome::Wrong {
                attempts_left: 2,
                code_version: 1
            }
        );
        assert_eq!(s.get("v1").await.expect("get").map(|r| r.attempts), Some(1));
        assert!(matches!(
            s.check("v1", &right(&code), None, now + 2)
                .await
                .expect("check"),
            CheckOutcome::Approved(_)
        ));
        assert_eq!(
            s.check("v1", &right(&code), None, now + 3)
                .await
                .expect("check"),
            CheckOutcome::AlreadyUsed
        );
        let r = s.get("v1").await.expect("get").expect("present");
        assert_eq!(r.status(now + 5), Status::Approved);
    }

    #[tokio::test]
    async fn forgets_records_after_grace_in_store_time() {
        let s = MemoryStore::new();
        let now = 1_000_000;
        s.create(&record("v1", now)).await.expect("create");
        let gone_at = now + 300_000 + crate::store::RETENTION_GRACE_MS;
        assert_eq!(
            s.check("v1", &wrong(), None, gone_at - 1)
                .await
                .expect("check"),
            CheckOutcome::Expired
        );
        assert!(s.get("v1").await.expect("get").is_some());
        assert_eq!(
            s.check("v1", &wrong(), None, gone_at).await.expect("check"),
            CheckOutcome::NotFound
        );
        assert!(s.get("v1").await.expect("get").is_none());
        s.once("tick", 1, gone_at + SWEEP_EVERY_MS)
            .await
            .expect("once");
        assert!(s.lock().state.records.is_empty(), "swept");
    }
}
