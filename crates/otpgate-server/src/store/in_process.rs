//! The [`Store`] of the in-process backends: every write becomes an [`Op`] that an
//! [`Engine`] applies to its [`State`] (the memory store at once under a lock, the embedded
//! store on its writer thread, logged), and reads look at the state directly.

use async_trait::async_trait;

use super::state::{Answer, Op, State};
use super::{
    Budget, BudgetRequest, Budgets, CheckOutcome, DeliveryRecord, Durable, Guess, OutboxMessage,
    QueuedSend, Record, RotateOutcome, Rotation, SendLease, Staged, Store, StoreError,
};

/// How an in-process backend applies operations to its [`State`]; every such backend is
/// a [`Store`] through it.
#[async_trait]
pub(crate) trait Engine: Send + Sync + 'static {
    /// Applies `op`; answers once the change is durable at the backend's level.
    async fn apply(&self, op: Op) -> Result<Answer, StoreError>;

    /// Applies `op`; answers as soon as it is decided, with the durability to wait for
    /// (see [`Staged`]). The default answers once durable.
    async fn apply_staged(&self, op: Op) -> Result<(Answer, Durable), StoreError> {
        Ok((self.apply(op).await?, Durable::ready()))
    }

    /// Runs `f` on the state for a read, unless the backend refuses reads.
    fn read<R>(&self, f: impl FnOnce(&State) -> R) -> Result<R, StoreError>;

    /// Whether the backend works (readiness).
    fn healthy(&self) -> Result<(), StoreError>;
}

/// The engine answered with the wrong kind (cannot happen: each op has one answer kind).
fn unexpected() -> StoreError {
    StoreError::Unavailable("in-process store: mismatched answer".into())
}

fn open_op(record: &Record, budgets: &[BudgetRequest<'_>], now: i64) -> Op {
    Op::Open {
        record: Box::new(record.clone()),
        budgets: Op::budgets(budgets),
        now,
    }
}

fn check_op(id: &str, guess: &Guess, budget: Option<BudgetRequest<'_>>, now: i64) -> Op {
    Op::Check {
        id: id.to_owned(),
        guess: guess.clone(),
        budget: budget.map(Op::budget),
        now,
    }
}

/// Applies `op` on `engine` and expects an answer of kind `$kind`.
macro_rules! answer {
    ($engine:expr, $op:expr, $kind:ident($v:pat) => $out:expr) => {
        match $engine.apply($op).await? {
            Answer::$kind($v) => Ok($out),
            _ => Err(unexpected()),
        }
    };
    ($engine:expr, $op:expr, $kind:ident => $out:expr) => {
        match $engine.apply($op).await? {
            Answer::$kind => Ok($out),
            _ => Err(unexpected()),
        }
    };
}

#[async_trait]
impl<E: Engine> Store for E {
    async fn create(&self, record: &Record) -> Result<(), StoreError> {
        answer!(self, Op::Create(Box::new(record.clone())), Unit => ())
    }

    async fn get(&self, id: &str) -> Result<Option<Record>, StoreError> {
        self.read(|st| st.live(id, st.now_ms).cloned())
    }

    async fn open(
        &self,
        record: &Record,
        budgets: &[BudgetRequest<'_>],
        now_ms: i64,
    ) -> Result<Budgets, StoreError> {
        answer!(self, open_op(record, budgets, now_ms), Budgets(b) => b)
    }

    async fn open_staged(
        &self,
        record: &Record,
        budgets: &[BudgetRequest<'_>],
        now_ms: i64,
    ) -> Result<Staged<Budgets>, StoreError> {
        match self.apply_staged(open_op(record, budgets, now_ms)).await? {
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
        answer!(self, check_op(id, guess, budget, now_ms), Check(c) => c)
    }

    async fn check_staged(
        &self,
        id: &str,
        guess: &Guess,
        budget: Option<BudgetRequest<'_>>,
        now_ms: i64,
    ) -> Result<Staged<CheckOutcome>, StoreError> {
        match self
            .apply_staged(check_op(id, guess, budget, now_ms))
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
        answer!(self, op, Rotate(o) => o)
    }

    async fn cancel(&self, id: &str, now_ms: i64) -> Result<Option<Record>, StoreError> {
        let op = Op::Cancel {
            id: id.to_owned(),
            now: now_ms,
        };
        answer!(self, op, Record(r) => r.map(|b| *b))
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
        answer!(self, op, Bool(b) => b)
    }

    async fn take_budget(
        &self,
        key: &str,
        limit: u32,
        window_ms: i64,
        now_ms: i64,
    ) -> Result<Budget, StoreError> {
        let op = Op::Take {
            key: key.to_owned(),
            limit,
            window: window_ms,
            now: now_ms,
        };
        answer!(self, op, Budget(b) => b)
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
        answer!(self, op, Unit => ())
    }

    async fn refund_budget(
        &self,
        key: &str,
        window_ms: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let op = Op::Refund {
            key: key.to_owned(),
            window: window_ms,
            now: now_ms,
        };
        answer!(self, op, Unit => ())
    }

    async fn take_budgets(
        &self,
        budgets: &[BudgetRequest<'_>],
        now_ms: i64,
    ) -> Result<Budgets, StoreError> {
        let op = Op::TakeMany {
            budgets: Op::budgets(budgets),
            now: now_ms,
        };
        answer!(self, op, Budgets(b) => b)
    }

    async fn budget_used(&self, key: &str, window_ms: i64, now_ms: i64) -> Result<u32, StoreError> {
        self.read(|st| st.budget_used(key, window_ms, now_ms))
    }

    async fn once(&self, key: &str, ttl_ms: i64, now_ms: i64) -> Result<bool, StoreError> {
        let op = Op::Once {
            key: key.to_owned(),
            ttl: ttl_ms,
            now: now_ms,
        };
        answer!(self, op, Bool(b) => b)
    }

    async fn enqueue_send(&self, send: &QueuedSend, max: u32) -> Result<bool, StoreError> {
        let op = Op::Enqueue {
            send: Box::new(send.clone()),
            max,
        };
        answer!(self, op, Bool(b) => b)
    }

    async fn dequeue_sends(&self, max: u32) -> Result<Vec<QueuedSend>, StoreError> {
        if max == 0 || self.read(|st| st.queue.is_empty())? {
            // Nothing to take: no write (the embedded store would log an empty change).
            return Ok(Vec::new());
        }
        answer!(self, Op::Dequeue { max }, Sends(v) => v)
    }

    async fn queued_sends(&self) -> Result<u32, StoreError> {
        self.read(|st| u32::try_from(st.queue.len()).unwrap_or(u32::MAX))
    }

    async fn claim(
        &self,
        key: &str,
        value: &str,
        ttl_ms: i64,
        now_ms: i64,
    ) -> Result<Option<String>, StoreError> {
        if let Some(v) = self.read(|st| st.kv_get(key, now_ms).map(str::to_owned))? {
            return Ok(Some(v));
        }
        let op = Op::Claim {
            key: key.to_owned(),
            value: value.to_owned(),
            until: now_ms.saturating_add(ttl_ms.max(1)),
            now: now_ms,
        };
        answer!(self, op, Text(v) => v)
    }

    async fn put(
        &self,
        key: &str,
        value: &str,
        ttl_ms: i64,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let op = Op::Put {
            key: key.to_owned(),
            value: value.to_owned(),
            until: now_ms.saturating_add(ttl_ms.max(1)),
            now: now_ms,
        };
        answer!(self, op, Unit => ())
    }

    async fn forget(&self, key: &str) -> Result<(), StoreError> {
        answer!(self, Op::Forget { key: key.to_owned() }, Unit => ())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.healthy()
    }

    async fn outbox_push(
        &self,
        outbox: &str,
        message: &OutboxMessage,
        max: u32,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let op = Op::OutboxPush {
            outbox: outbox.to_owned(),
            message: Box::new(message.clone()),
            max,
            now: now_ms,
        };
        answer!(self, op, Bool(b) => b)
    }

    async fn outbox_take(
        &self,
        outbox: &str,
        max: u32,
        now_ms: i64,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        let empty = self.read(|st| {
            st.outbox
                .range((outbox.to_owned(), i64::MIN, String::new())..)
                .next()
                .is_none_or(|(k, _)| k.0 != outbox)
        })?;
        if max == 0 || empty {
            // Nothing to take: no write (a phone polls often).
            return Ok(Vec::new());
        }
        let op = Op::OutboxTake {
            outbox: outbox.to_owned(),
            max,
            now: now_ms,
        };
        answer!(self, op, Outbox(v) => v)
    }

    async fn lease_put(&self, lease: &SendLease, now_ms: i64) -> Result<bool, StoreError> {
        let op = Op::LeasePut {
            lease: Box::new(lease.clone()),
            now: now_ms,
        };
        answer!(self, op, Bool(b) => b)
    }

    async fn lease_renew(
        &self,
        owner: &str,
        keys: &[String],
        until_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let op = Op::LeaseRenew {
            owner: owner.to_owned(),
            keys: keys.to_vec(),
            until: until_ms,
            now: now_ms,
        };
        answer!(self, op, Keys(v) => v)
    }

    async fn lease_release(&self, key: &str, owner: &str) -> Result<(), StoreError> {
        if !self.read(|st| st.leases.get(key).is_some_and(|l| l.owner == owner))? {
            return Ok(());
        }
        let op = Op::LeaseRelease {
            key: key.to_owned(),
            owner: owner.to_owned(),
        };
        answer!(self, op, Unit => ())
    }

    async fn lease_take_expired(
        &self,
        owner: &str,
        until_ms: i64,
        max: u32,
        now_ms: i64,
    ) -> Result<Vec<SendLease>, StoreError> {
        let none = self.read(|st| st.leases.values().all(|l| l.until_ms > now_ms))?;
        if max == 0 || none {
            // Nothing ran out: no write (every instance looks every second).
            return Ok(Vec::new());
        }
        let op = Op::LeaseTake {
            owner: owner.to_owned(),
            until: until_ms,
            max,
            now: now_ms,
        };
        answer!(self, op, Leases(v) => v)
    }
}
