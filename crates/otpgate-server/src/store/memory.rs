//! An in-process store (a mutex around hash maps): tests, development, single short-lived
//! instances. Nothing survives a restart.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use super::{
    Budget, BudgetRequest, Budgets, CheckOutcome, DeliveryRecord, Guess, Record, RotateOutcome,
    Rotation, Store, StoreError, logic,
};

/// How often (in store time) the maps are scanned for forgotten entries.
const SWEEP_EVERY_MS: i64 = 10_000;

/// The in-memory [`Store`].
///
/// Time for forgetting entries is the latest `now_ms` any call has passed (the store has no
/// clock of its own), so tests driving a `ManualClock` see consistent behaviour: a record is
/// gone once a call has been made at or after its expiry plus
/// [`RETENTION_GRACE_MS`](super::RETENTION_GRACE_MS).
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    records: HashMap<String, Record>,
    /// (key, window length, window start) → count.
    budgets: HashMap<(String, i64, i64), u32>,
    /// key → until (Unix ms, exclusive).
    once: HashMap<String, i64>,
    /// The latest `now_ms` seen.
    now_ms: i64,
    last_sweep_ms: i64,
}

impl State {
    /// Advances store time and forgets what is past its retention now and then.
    fn tick(&mut self, now_ms: i64) {
        if now_ms > self.now_ms {
            self.now_ms = now_ms;
        }
        if self.now_ms - self.last_sweep_ms >= SWEEP_EVERY_MS {
            self.last_sweep_ms = self.now_ms;
            let now = self.now_ms;
            self.records.retain(|_, r| logic::purge_at(r) > now);
            self.budgets
                .retain(|(_, w, start), _| logic::budget_purge_at(*start, *w) > now);
            self.once.retain(|_, until| *until > now);
        }
    }

    /// Takes one unit of each budget, all or nothing.
    fn take_budgets(&mut self, budgets: &[BudgetRequest<'_>], now_ms: i64) -> Budgets {
        // Counted on a copy first, written only when every budget allowed it (the same key
        // may appear twice).
        let mut next: Vec<((String, i64, i64), u32)> = Vec::with_capacity(budgets.len());
        let mut remaining = Vec::with_capacity(budgets.len());
        for (index, b) in budgets.iter().enumerate() {
            let (w, start) = (
                logic::window_len(b.window_ms),
                logic::window_start(now_ms, b.window_ms),
            );
            let k = (b.key.to_owned(), w, start);
            let count = next
                .iter()
                .rev()
                .find(|(nk, _)| *nk == k)
                .map(|(_, c)| *c)
                .unwrap_or_else(|| self.budgets.get(&k).copied().unwrap_or(0));
            if count >= b.limit {
                return Budgets::Exhausted {
                    index,
                    retry_after_ms: start + w - now_ms,
                };
            }
            remaining.push(b.limit - count - 1);
            next.push((k, count + 1));
        }
        for (k, c) in next {
            self.budgets.insert(k, c);
        }
        Budgets::Allowed { remaining }
    }

    /// A live record (not past its retention).
    fn record_mut(&mut self, id: &str) -> Option<&mut Record> {
        let now = self.now_ms;
        self.records
            .get_mut(id)
            .filter(|r| logic::purge_at(r) > now)
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied change (every change
        // is computed before it is written), so a poisoned lock is still consistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The counter of budget `key` in the window holding `now_ms`: (key, window length, start).
fn counter_key(key: &str, window_ms: i64, now_ms: i64) -> (String, i64, i64) {
    (
        key.to_owned(),
        logic::window_len(window_ms),
        logic::window_start(now_ms, window_ms),
    )
}

#[async_trait]
impl Store for MemoryStore {
    async fn create(&self, record: &Record) -> Result<(), StoreError> {
        let mut s = self.lock();
        s.tick(record.created_at_ms);
        if s.record_mut(&record.id).is_some() {
            return Err(StoreError::Duplicate);
        }
        s.records.insert(record.id.clone(), record.clone());
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<Record>, StoreError> {
        let mut s = self.lock();
        Ok(s.record_mut(id).cloned())
    }

    async fn open(
        &self,
        record: &Record,
        budgets: &[BudgetRequest<'_>],
        now_ms: i64,
    ) -> Result<Budgets, StoreError> {
        let mut s = self.lock();
        s.tick(now_ms.max(record.created_at_ms));
        if s.record_mut(&record.id).is_some() {
            return Err(StoreError::Duplicate);
        }
        let taken = s.take_budgets(budgets, now_ms);
        if matches!(taken, Budgets::Allowed { .. }) {
            s.records.insert(record.id.clone(), record.clone());
        }
        Ok(taken)
    }

    async fn check(
        &self,
        id: &str,
        guess: &Guess,
        budget: Option<BudgetRequest<'_>>,
        now_ms: i64,
    ) -> Result<CheckOutcome, StoreError> {
        let mut s = self.lock();
        s.tick(now_ms);
        if let Some(b) = budget
            && let Budgets::Exhausted { retry_after_ms, .. } = s.take_budgets(&[b], now_ms)
        {
            return Ok(CheckOutcome::RateLimited { retry_after_ms });
        }
        Ok(match s.record_mut(id) {
            None => CheckOutcome::NotFound,
            Some(rec) => logic::check(rec, guess, now_ms).0,
        })
    }

    async fn rotate(
        &self,
        id: &str,
        rotation: &Rotation,
        now_ms: i64,
    ) -> Result<RotateOutcome, StoreError> {
        let mut s = self.lock();
        s.tick(now_ms);
        Ok(match s.record_mut(id) {
            None => RotateOutcome::NotFound,
            Some(rec) => logic::rotate(rec, rotation, now_ms),
        })
    }

    async fn cancel(&self, id: &str, now_ms: i64) -> Result<Option<Record>, StoreError> {
        let mut s = self.lock();
        s.tick(now_ms);
        Ok(s.record_mut(id).map(|rec| {
            logic::cancel(rec);
            rec.clone()
        }))
    }

    async fn update_delivery(
        &self,
        id: &str,
        version: u32,
        delivery: &DeliveryRecord,
    ) -> Result<bool, StoreError> {
        // A delivery time may come from a phone's clock: it does not move the store's.
        let mut s = self.lock();
        Ok(s.record_mut(id)
            .is_some_and(|rec| logic::update_delivery(rec, version, delivery)))
    }

    async fn take_budget(
        &self,
        key: &str,
        limit: u32,
        window_ms: i64,
        now_ms: i64,
    ) -> Result<Budget, StoreError> {
        let mut s = self.lock();
        s.tick(now_ms);
        let counter = counter_key(key, window_ms, now_ms);
        let (w, start) = (counter.1, counter.2);
        let count = s.budgets.entry(counter).or_insert(0);
        if *count >= limit {
            return Ok(Budget::Exhausted {
                retry_after_ms: start + w - now_ms,
            });
        }
        *count += 1;
        Ok(Budget::Allowed {
            remaining: limit - *count,
        })
    }

    async fn add_to_budget(
        &self,
        key: &str,
        n: u32,
        window_ms: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut s = self.lock();
        s.tick(now_ms);
        let count = s
            .budgets
            .entry(counter_key(key, window_ms, now_ms))
            .or_insert(0);
        *count = count.saturating_add(n);
        Ok(())
    }

    async fn take_budgets(
        &self,
        budgets: &[BudgetRequest<'_>],
        now_ms: i64,
    ) -> Result<Budgets, StoreError> {
        let mut s = self.lock();
        s.tick(now_ms);
        Ok(s.take_budgets(budgets, now_ms))
    }

    async fn refund_budget(
        &self,
        key: &str,
        window_ms: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut s = self.lock();
        s.tick(now_ms);
        if let Some(count) = s.budgets.get_mut(&counter_key(key, window_ms, now_ms)) {
            *count = count.saturating_sub(1);
        }
        Ok(())
    }

    async fn budget_used(&self, key: &str, window_ms: i64, now_ms: i64) -> Result<u32, StoreError> {
        let s = self.lock();
        Ok(s.budgets
            .get(&counter_key(key, window_ms, now_ms))
            .copied()
            .unwrap_or(0))
    }

    async fn once(&self, key: &str, ttl_ms: i64, now_ms: i64) -> Result<bool, StoreError> {
        let mut s = self.lock();
        s.tick(now_ms);
        match s.once.get(key) {
            Some(until) if *until > now_ms => Ok(false),
            _ => {
                s.once
                    .insert(key.to_owned(), now_ms.saturating_add(ttl_ms.max(1)));
                Ok(true)
            }
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use otpgate_core::wire::{DeliveryState, Status};

    use super::*;
    use crate::store::fixtures::{right, wrong};
    use crate::store::{Outcome, StoredCode};

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
        assert!(s.lock().records.is_empty(), "swept");
    }
}
