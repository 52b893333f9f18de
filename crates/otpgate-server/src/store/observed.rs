//! A [`Store`] that reports each operation's latency and failures to an [`Observer`] (the
//! issuer's `/metrics`), around any backend. Every method calls the backend's own, so
//! what a backend does in one step (an `open`, `take_budgets`) stays one step.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::{
    Budget, BudgetRequest, Budgets, CheckOutcome, DeliveryRecord, Guess, OutboxMessage, QueuedSend,
    Record, RotateOutcome, Rotation, SendLease, Staged, Store, StoreError,
};

/// Where [`Observed`] reports.
pub trait Observer: Send + Sync + 'static {
    /// One operation `op` (the [`Store`] method's name) took `seconds`; `error` is set when
    /// the backend failed (never for an answer such as [`StoreError::Duplicate`]).
    fn store_op(&self, op: &'static str, seconds: f64, error: Option<&'static str>);
}

/// The stable name of a backend failure (a metrics label), `None` for an answer.
pub fn failure_kind(e: &StoreError) -> Option<&'static str> {
    match e {
        StoreError::Unavailable(_) => Some("unavailable"),
        StoreError::Corrupt(_) => Some("corrupt"),
        StoreError::Duplicate => None,
    }
}

/// `inner`, observed.
pub struct Observed {
    inner: Arc<dyn Store>,
    observer: Arc<dyn Observer>,
}

impl Observed {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Store>, observer: Arc<dyn Observer>) -> Self {
        Self { inner, observer }
    }

    fn report<T>(&self, op: &'static str, started: Instant, r: &Result<T, StoreError>) {
        let error = r.as_ref().err().and_then(failure_kind);
        self.observer
            .store_op(op, started.elapsed().as_secs_f64(), error);
    }
}

/// Times `$call` on the inner store under the name `$op`.
macro_rules! observed {
    ($self:ident, $op:literal, $call:expr) => {{
        let started = Instant::now();
        let r = $call.await;
        $self.report($op, started, &r);
        r
    }};
}

#[async_trait]
impl Store for Observed {
    async fn create(&self, record: &Record) -> Result<(), StoreError> {
        observed!(self, "create", self.inner.create(record))
    }

    async fn get(&self, id: &str) -> Result<Option<Record>, StoreError> {
        observed!(self, "get", self.inner.get(id))
    }

    async fn open(
        &self,
        record: &Record,
        budgets: &[BudgetRequest<'_>],
        now_ms: i64,
    ) -> Result<Budgets, StoreError> {
        observed!(self, "open", self.inner.open(record, budgets, now_ms))
    }

    async fn open_staged(
        &self,
        record: &Record,
        budgets: &[BudgetRequest<'_>],
        now_ms: i64,
    ) -> Result<Staged<Budgets>, StoreError> {
        observed!(
            self,
            "open",
            self.inner.open_staged(record, budgets, now_ms)
        )
    }

    async fn check(
        &self,
        id: &str,
        guess: &Guess,
        budget: Option<BudgetRequest<'_>>,
        now_ms: i64,
    ) -> Result<CheckOutcome, StoreError> {
        observed!(self, "check", self.inner.check(id, guess, budget, now_ms))
    }

    async fn check_staged(
        &self,
        id: &str,
        guess: &Guess,
        budget: Option<BudgetRequest<'_>>,
        now_ms: i64,
    ) -> Result<Staged<CheckOutcome>, StoreError> {
        observed!(
            self,
            "check",
            self.inner.check_staged(id, guess, budget, now_ms)
        )
    }

    async fn rotate(
        &self,
        id: &str,
        rotation: &Rotation,
        now_ms: i64,
    ) -> Result<RotateOutcome, StoreError> {
        observed!(self, "rotate", self.inner.rotate(id, rotation, now_ms))
    }

    async fn cancel(&self, id: &str, now_ms: i64) -> Result<Option<Record>, StoreError> {
        observed!(self, "cancel", self.inner.cancel(id, now_ms))
    }

    async fn update_delivery(
        &self,
        id: &str,
        version: u32,
        delivery: &DeliveryRecord,
    ) -> Result<bool, StoreError> {
        observed!(
            self,
            "update_delivery",
            self.inner.update_delivery(id, version, delivery)
        )
    }

    async fn take_budget(
        &self,
        key: &str,
        limit: u32,
        window_ms: i64,
        now_ms: i64,
    ) -> Result<Budget, StoreError> {
        observed!(
            self,
            "take_budget",
            self.inner.take_budget(key, limit, window_ms, now_ms)
        )
    }

    async fn add_to_budget(
        &self,
        key: &str,
        n: u32,
        window_ms: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        observed!(
            self,
            "add_to_budget",
            self.inner.add_to_budget(key, n, window_ms, now_ms)
        )
    }

    async fn refund_budget(
        &self,
        key: &str,
        window_ms: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        observed!(
            self,
            "refund_budget",
            self.inner.refund_budget(key, window_ms, now_ms)
        )
    }

    async fn take_budgets(
        &self,
        budgets: &[BudgetRequest<'_>],
        now_ms: i64,
    ) -> Result<Budgets, StoreError> {
        observed!(
            self,
            "take_budgets",
            self.inner.take_budgets(budgets, now_ms)
        )
    }

    async fn budget_used(&self, key: &str, window_ms: i64, now_ms: i64) -> Result<u32, StoreError> {
        observed!(
            self,
            "budget_used",
            self.inner.budget_used(key, window_ms, now_ms)
        )
    }

    async fn once(&self, key: &str, ttl_ms: i64, now_ms: i64) -> Result<bool, StoreError> {
        observed!(self, "once", self.inner.once(key, ttl_ms, now_ms))
    }

    async fn enqueue_send(&self, send: &QueuedSend, max: u32) -> Result<bool, StoreError> {
        observed!(self, "enqueue_send", self.inner.enqueue_send(send, max))
    }

    async fn dequeue_sends(&self, max: u32) -> Result<Vec<QueuedSend>, StoreError> {
        observed!(self, "dequeue_sends", self.inner.dequeue_sends(max))
    }

    async fn queued_sends(&self) -> Result<u32, StoreError> {
        observed!(self, "queued_sends", self.inner.queued_sends())
    }

    async fn claim(
        &self,
        key: &str,
        value: &str,
        ttl_ms: i64,
        now_ms: i64,
    ) -> Result<Option<String>, StoreError> {
        observed!(self, "claim", self.inner.claim(key, value, ttl_ms, now_ms))
    }

    async fn put(
        &self,
        key: &str,
        value: &str,
        ttl_ms: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        observed!(self, "put", self.inner.put(key, value, ttl_ms, now_ms))
    }

    async fn forget(&self, key: &str) -> Result<(), StoreError> {
        observed!(self, "forget", self.inner.forget(key))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        observed!(self, "ping", self.inner.ping())
    }

    async fn outbox_push(
        &self,
        outbox: &str,
        message: &OutboxMessage,
        max: u32,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        observed!(
            self,
            "outbox_push",
            self.inner.outbox_push(outbox, message, max, now_ms)
        )
    }

    async fn outbox_take(
        &self,
        outbox: &str,
        max: u32,
        now_ms: i64,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        observed!(
            self,
            "outbox_take",
            self.inner.outbox_take(outbox, max, now_ms)
        )
    }

    async fn lease_put(&self, lease: &SendLease, now_ms: i64) -> Result<bool, StoreError> {
        observed!(self, "lease_put", self.inner.lease_put(lease, now_ms))
    }

    async fn lease_renew(
        &self,
        owner: &str,
        keys: &[String],
        until_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        observed!(
            self,
            "lease_renew",
            self.inner.lease_renew(owner, keys, until_ms, now_ms)
        )
    }

    async fn lease_release(&self, key: &str, owner: &str) -> Result<(), StoreError> {
        observed!(self, "lease_release", self.inner.lease_release(key, owner))
    }

    async fn lease_take_expired(
        &self,
        owner: &str,
        until_ms: i64,
        max: u32,
        now_ms: i64,
    ) -> Result<Vec<SendLease>, StoreError> {
        observed!(
            self,
            "lease_take_expired",
            self.inner.lease_take_expired(owner, until_ms, max, now_ms)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Seen(Mutex<Vec<(&'static str, Option<&'static str>)>>);

    impl Observer for Seen {
        fn store_op(&self, op: &'static str, _seconds: f64, error: Option<&'static str>) {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push((op, error));
        }
    }

    #[tokio::test]
    async fn every_call_is_reported_under_its_name_and_answers_are_not_failures() {
        let seen = Arc::new(Seen::default());
        let store = Observed::new(Arc::new(MemoryStore::new()), seen.clone());
        let rec = crate::store::fixtures::sample_record("v_obs", 1_764_000_000_000);
        assert!(store.create(&rec).await.is_ok());
        assert_eq!(store.create(&rec).await, Err(StoreError::Duplicate));
        assert!(store.get("v_obs").await.is_ok());
        let got = seen
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        assert_eq!(
            got,
            vec![("create", None), ("create", None), ("get", None)],
            "a duplicate id is an answer, not a store failure"
        );
        assert_eq!(
            failure_kind(&StoreError::Unavailable("x".into())),
            Some("unavailable")
        );
    }
}
