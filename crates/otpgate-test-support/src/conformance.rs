//! The conformance suite every [`Store`] backend must pass (memory, embedded, Redis).
//!
//! The server's integration tests run it on each backend (`tests/store/store_conformance.rs`):
//! `conformance::run_all(store).await` (on a multi-thread runtime, so
//! the concurrency properties really race). Each property is also a function of its own.
//! Times are taken from the system clock, because the Redis backend expires keys on the
//! server's clock; ids and keys are random, so one store can serve several runs at once.
//! A failed property panics with a message (this is test code: `expect` is deliberate).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use otpgate_core::wire::{DeliveryState, Status};
use otpgate_server::clock::{Clock, SystemClock};
use otpgate_server::store::{
    Budget, BudgetRequest, Budgets, CheckOutcome, DeliveryRecord, Guess, OutboxMessage, Outcome,
    QueuedSend, RETENTION_GRACE_MS, Record, RotateOutcome, Rotation, SendLease, Store, StoreError,
    StoredCode,
};
use tokio::sync::Barrier;

/// How many tasks race in the concurrency properties.
pub const RACERS: usize = 200;

/// Runs every property in turn.
pub async fn run_all(store: Arc<dyn Store>) {
    ping(&store).await;
    create_get_duplicate(&store).await;
    check_counts_the_attempt_first(&store).await;
    expiry_is_exact(&store).await;
    approve_only_once_and_only_current(&store).await;
    cancel_is_final(&store).await;
    concurrent_checks_never_pass_max_attempts(&store).await;
    concurrent_check_and_approve_approves_once(&store).await;
    check_budget_comes_first(&store).await;
    open_is_all_or_nothing(&store).await;
    staged_steps_decide_as_plain_ones(&store).await;
    rotate_rules(&store).await;
    concurrent_rotates_one_wins(&store).await;
    delivery_moves_forward_only(&store).await;
    budget_exact_under_concurrency(&store).await;
    budget_windows_and_refund(&store).await;
    add_to_budget_counts_n_in_its_window(&store).await;
    take_budgets_all_or_nothing(&store).await;
    once_is_once_until_ttl(&store).await;
    records_are_forgotten_after_grace(&store).await;
    queue_hands_out_best_first(&store).await;
    queue_is_bounded_and_requeue_is_idempotent(&store).await;
    concurrent_dequeues_hand_each_send_once(&store).await;
    claims_are_won_once_and_kept_until_their_ttl(&store).await;
    outbox_hands_each_message_once_in_order(&store).await;
    concurrent_outbox_takes_hand_each_message_once(&store).await;
    leases_are_held_renewed_released(&store).await;
    an_expired_lease_is_taken_over_once(&store).await;
}

/// The system time, Unix ms.
fn now() -> i64 {
    SystemClock.now_ms()
}

/// A fresh random id with `prefix`.
pub fn fresh_id(prefix: &str) -> String {
    otpgate_server::random::id(prefix).expect("OS random")
}

/// The sample records and guesses: one source with the server's unit tests (its
/// `store/fixtures.rs`, read in by path).
#[path = "../../otpgate-server/src/store/fixtures.rs"]
mod fixtures;

pub use fixtures::{right, sample_record, sample_rotation, wrong};

fn delivery(state: DeliveryState, msg: Option<&str>, at: i64) -> DeliveryRecord {
    DeliveryRecord {
        state,
        gateway: msg.map(|_| "phone-1".to_owned()),
        message_id: msg.map(str::to_owned),
        updated_at_ms: at,
        detail: None,
    }
}

async fn create(store: &Arc<dyn Store>, rec: &Record) {
    store.create(rec).await.expect("create");
}

async fn get(store: &Arc<dyn Store>, id: &str) -> Record {
    store.get(id).await.expect("get").expect("record present")
}

async fn take(store: &Arc<dyn Store>, key: &str, limit: u32, window: i64, at: i64) -> Budget {
    store
        .take_budget(key, limit, window, at)
        .await
        .expect("take")
}

async fn used(store: &Arc<dyn Store>, key: &str, window: i64, at: i64) -> u32 {
    store.budget_used(key, window, at).await.expect("used")
}

fn budget(key: &str, limit: u32, window_ms: i64) -> BudgetRequest<'_> {
    BudgetRequest {
        key,
        limit,
        window_ms,
    }
}

/// Runs `racers` copies of `task` at once: each is spawned with its own handle on the
/// store, all wait at one barrier before they start, and their results come back in order.
async fn race<T, F, Fut>(store: &Arc<dyn Store>, racers: usize, task: F) -> Vec<T>
where
    F: Fn(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let barrier = Arc::new(Barrier::new(racers));
    let mut tasks = Vec::new();
    for _ in 0..racers {
        let (barrier, run) = (Arc::clone(&barrier), task(Arc::clone(store)));
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            run.await
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("task"));
    }
    out
}

async fn rotate(store: &Arc<dyn Store>, id: &str, version: u32, at: i64) -> RotateOutcome {
    store
        .rotate(id, &sample_rotation(version, at), at)
        .await
        .expect("rotate")
}

async fn check(store: &Arc<dyn Store>, id: &str, guess: &Guess, at: i64) -> CheckOutcome {
    store.check(id, guess, None, at).await.expect("check")
}

/// `ping` answers.
pub async fn ping(store: &Arc<dyn Store>) {
    store.ping().await.expect("ping");
}

/// A record reads back as written (every field); a second create with the same id is
/// `Duplicate` and changes nothing; unknown ids are `None`/`NotFound`.
pub async fn create_get_duplicate(store: &Arc<dyn Store>) {
    let t = now();
    let id = fresh_id("v_");
    let mut rec = sample_record(&id, t);
    rec.delivery = DeliveryRecord {
        state: DeliveryState::Submitted,
        gateway: Some("phone-ü".to_owned()),
        message_id: Some(format!("{id}.1.0")),
        updated_at_ms: t + 1,
        detail: Some("quoted \"detail\"".to_owned()),
    };
    rec.test_number = true;
    create(store, &rec).await;
    assert_eq!(get(store, &id).await, rec, "round trip");

    let mut other = sample_record(&id, t);
    other.phone = "+14155550000".to_owned();
    assert_eq!(
        store.create(&other).await,
        Err(StoreError::Duplicate),
        "duplicate id"
    );
    assert_eq!(
        get(store, &id).await,
        rec,
        "duplicate create changed nothing"
    );

    let mut plain = sample_record(&fresh_id("v_"), t);
    plain.locale = None;
    create(store, &plain).await;
    assert_eq!(
        get(store, &plain.id).await,
        plain,
        "round trip without options"
    );

    let unknown = fresh_id("v_");
    assert_eq!(store.get(&unknown).await.expect("get"), None);
    assert_eq!(
        check(store, &unknown, &right(&rec.code), t).await,
        CheckOutcome::NotFound
    );
    assert_eq!(store.cancel(&unknown, t).await.expect("cancel"), None);
    assert_eq!(rotate(store, &unknown, 2, t).await, RotateOutcome::NotFound);
    let d = delivery(DeliveryState::Sent, None, t);
    assert!(
        !store
            .update_delivery(&unknown, 1, &d)
            .await
            .expect("delivery")
    );
}

/// `check` counts the attempt before any comparison (the count is visible at once), tells
/// the attempts left, refuses once every attempt is spent (even the right code), and the
/// last attempt may still be the right one. A guess under a key the record was not made
/// with never matches.
pub async fn check_counts_the_attempt_first(store: &Arc<dyn Store>) {
    let t = now();
    let rec = sample_record(&fresh_id("v_"), t);
    create(store, &rec).await;
    let mut other_key = right(&rec.code);
    other_key.digests.retain(|(k, _)| k != &rec.code.key_id);
    other_key
        .digests
        .push(("k-retired".to_owned(), rec.code.digest.clone()));
    for n in 1..=rec.max_attempts {
        let guess = if n == 1 { &other_key } else { &wrong() };
        assert_eq!(
            check(store, &rec.id, guess, t + i64::from(n)).await,
            CheckOutcome::Wrong {
                attempts_left: rec.max_attempts - n,
                code_version: 1,
            },
            "attempt {n}"
        );
        assert_eq!(
            get(store, &rec.id).await.attempts,
            n,
            "attempt counted before any compare"
        );
    }
    let t2 = t + 100;
    assert_eq!(
        check(store, &rec.id, &right(&rec.code), t2).await,
        CheckOutcome::NoAttemptsLeft,
        "the right code after the last attempt is refused"
    );
    let after = get(store, &rec.id).await;
    assert_eq!(
        after.attempts, rec.max_attempts,
        "refused checks are not counted further"
    );
    assert_eq!(after.status(t2), Status::MaxAttemptsReached);

    let last = sample_record(&fresh_id("v_"), t);
    create(store, &last).await;
    for _ in 1..last.max_attempts {
        check(store, &last.id, &wrong(), t + 1).await;
    }
    let CheckOutcome::Approved(done) = check(store, &last.id, &right(&last.code), t + 2).await
    else {
        panic!("the last attempt may be the right code");
    };
    assert_eq!(
        (done.outcome, done.attempts),
        (Outcome::Approved, last.max_attempts)
    );
    assert_eq!(
        *done,
        get(store, &last.id).await,
        "answers the stored record"
    );
}

/// A code is dead at exactly `expires_at_ms`, alive one millisecond before.
pub async fn expiry_is_exact(store: &Arc<dyn Store>) {
    let t = now();
    let rec = sample_record(&fresh_id("v_"), t);
    let exp = rec.expires_at_ms;
    create(store, &rec).await;
    assert!(matches!(
        check(store, &rec.id, &wrong(), exp - 1).await,
        CheckOutcome::Wrong { .. }
    ));
    assert_eq!(
        check(store, &rec.id, &right(&rec.code), exp).await,
        CheckOutcome::Expired,
        "no approval at expiry"
    );
    assert_eq!(
        get(store, &rec.id).await.attempts,
        1,
        "an expired check is not counted"
    );
    assert!(
        matches!(
            check(store, &rec.id, &right(&rec.code), exp - 1).await,
            CheckOutcome::Approved(_)
        ),
        "approval just before"
    );
    assert_eq!(get(store, &rec.id).await.status(exp + 1), Status::Approved);
}

/// Approval happens once and is final.
pub async fn approve_only_once_and_only_current(store: &Arc<dyn Store>) {
    let t = now();
    let rec = sample_record(&fresh_id("v_"), t);
    create(store, &rec).await;
    assert!(matches!(
        check(store, &rec.id, &right(&rec.code), t).await,
        CheckOutcome::Approved(_)
    ));
    assert_eq!(
        check(store, &rec.id, &right(&rec.code), t).await,
        CheckOutcome::AlreadyUsed,
        "only once"
    );
    assert_eq!(
        check(store, &rec.id, &wrong(), t).await,
        CheckOutcome::AlreadyUsed
    );
    let after = store
        .cancel(&rec.id, t)
        .await
        .expect("cancel")
        .expect("present");
    assert_eq!(
        after.outcome,
        Outcome::Approved,
        "cancel does not undo an approval"
    );
    assert_eq!(after.attempts, 1, "refusals after approval are not counted");
    assert_eq!(
        rotate(store, &rec.id, 2, t + 60_000).await,
        RotateOutcome::NotPending(Status::Approved)
    );
    assert_eq!(get(store, &rec.id).await.outcome, Outcome::Approved);
}

/// Cancel closes an open verification for good.
pub async fn cancel_is_final(store: &Arc<dyn Store>) {
    let t = now();
    let rec = sample_record(&fresh_id("v_"), t);
    create(store, &rec).await;
    let after = store
        .cancel(&rec.id, t)
        .await
        .expect("cancel")
        .expect("present");
    assert_eq!(after.outcome, Outcome::Cancelled);
    assert_eq!(after.status(t), Status::Cancelled);
    assert_eq!(
        check(store, &rec.id, &right(&rec.code), t).await,
        CheckOutcome::Cancelled
    );
    assert_eq!(
        rotate(store, &rec.id, 2, t + 60_000).await,
        RotateOutcome::NotPending(Status::Cancelled)
    );
    let again = store
        .cancel(&rec.id, t)
        .await
        .expect("cancel")
        .expect("present");
    assert_eq!(again.outcome, Outcome::Cancelled, "cancel is idempotent");
    assert_eq!(get(store, &rec.id).await.attempts, 0);
}

/// [`RACERS`] concurrent wrong checks on a code with 5 attempts: exactly 5 are counted.
pub async fn concurrent_checks_never_pass_max_attempts(store: &Arc<dyn Store>) {
    let t = now();
    let rec = sample_record(&fresh_id("v_"), t);
    create(store, &rec).await;
    let outcomes = race(store, RACERS, |store| {
        let id = rec.id.clone();
        async move {
            store
                .check(&id, &wrong(), None, t + 1)
                .await
                .expect("check")
        }
    })
    .await;
    let mut counted = 0;
    let mut left = BTreeSet::new();
    for outcome in outcomes {
        match outcome {
            CheckOutcome::Wrong { attempts_left, .. } => {
                counted += 1;
                left.insert(attempts_left);
            }
            CheckOutcome::NoAttemptsLeft => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        counted, rec.max_attempts,
        "exactly max_attempts checks counted"
    );
    assert_eq!(
        left,
        (0..rec.max_attempts).collect(),
        "each count handed out once"
    );
    assert_eq!(get(store, &rec.id).await.attempts, rec.max_attempts);
}

/// [`RACERS`] concurrent checks with the right code on one verification: exactly one
/// approval, every other one `AlreadyUsed`.
pub async fn concurrent_check_and_approve_approves_once(store: &Arc<dyn Store>) {
    let t = now();
    let mut rec = sample_record(&fresh_id("v_"), t);
    rec.max_attempts = 1_000;
    create(store, &rec).await;
    assert_eq!(
        race_right_checks(store, &rec, t + 1, false).await,
        1,
        "exactly one approval under concurrency"
    );
    let after = get(store, &rec.id).await;
    assert_eq!(after.outcome, Outcome::Approved);
    assert_eq!(after.attempts, 1, "only the winning check was counted");
}

/// [`RACERS`] tasks check `rec` with the right code at once (`staged`: with
/// [`Store::check_staged`], each waiting until durable); how many were approved (every
/// other answer must be `AlreadyUsed`).
async fn race_right_checks(store: &Arc<dyn Store>, rec: &Record, at: i64, staged: bool) -> usize {
    let approvals = race(store, RACERS, |store| {
        let (id, guess) = (rec.id.clone(), right(&rec.code));
        async move {
            let outcome = if staged {
                let s = store
                    .check_staged(&id, &guess, None, at)
                    .await
                    .expect("check");
                s.durable.wait().await.expect("durable");
                s.value
            } else {
                store.check(&id, &guess, None, at).await.expect("check")
            };
            match outcome {
                CheckOutcome::Approved(_) => true,
                CheckOutcome::AlreadyUsed => false,
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await;
    let mut approved = 0;
    for approval in approvals {
        if approval {
            approved += 1;
        }
    }
    approved
}

/// The check budget is taken before anything else: once spent, a check (even with the
/// right code, even of an unknown id) is `RateLimited` and counts nothing.
pub async fn check_budget_comes_first(store: &Arc<dyn Store>) {
    let t = now();
    let rec = sample_record(&fresh_id("v_"), t);
    create(store, &rec).await;
    let key = fresh_id("ck:");
    let budget = budget(&key, 2, 600_000);
    let unknown = fresh_id("v_");
    assert_eq!(
        store
            .check(&unknown, &wrong(), Some(budget), t)
            .await
            .expect("check"),
        CheckOutcome::NotFound
    );
    assert!(matches!(
        store
            .check(&rec.id, &wrong(), Some(budget), t)
            .await
            .expect("check"),
        CheckOutcome::Wrong { .. }
    ));
    let refused = store
        .check(&rec.id, &right(&rec.code), Some(budget), t)
        .await
        .expect("check");
    let CheckOutcome::RateLimited { retry_after_ms } = refused else {
        panic!("expected RateLimited, got {refused:?}");
    };
    assert!((1..=600_000).contains(&retry_after_ms), "{retry_after_ms}");
    let after = get(store, &rec.id).await;
    assert_eq!(
        (after.attempts, after.outcome),
        (1, Outcome::Open),
        "a refused check counts nothing"
    );
    assert_eq!(
        used(store, &key, 600_000, t).await,
        2,
        "the refused check took no unit"
    );
}

/// `open` takes every budget and inserts the record, or does neither.
pub async fn open_is_all_or_nothing(store: &Arc<dyn Store>) {
    let t = now();
    let (a, b) = (fresh_id("open:"), fresh_id("open:"));
    let budgets = [budget(&a, 5, 600_000), budget(&b, 1, 600_000)];
    let first = sample_record(&fresh_id("v_"), t);
    assert!(matches!(
        store.open(&first, &budgets, t).await.expect("open"),
        Budgets::Allowed { .. }
    ));
    assert_eq!(get(store, &first.id).await, first);
    let second = sample_record(&fresh_id("v_"), t);
    assert!(matches!(
        store.open(&second, &budgets, t).await.expect("open"),
        Budgets::Exhausted { index: 1, .. }
    ));
    assert_eq!(
        store.get(&second.id).await.expect("get"),
        None,
        "not inserted"
    );
    assert_eq!(
        used(store, &a, 600_000, t).await,
        1,
        "the allowed budget was given back"
    );
    let budgets_a = [budgets[0]];
    assert_eq!(
        store.open(&first, &budgets_a, t).await,
        Err(StoreError::Duplicate),
        "an existing id"
    );
    assert_eq!(
        used(store, &a, 600_000, t).await,
        1,
        "a duplicate counts nothing"
    );
    let none = sample_record(&fresh_id("v_"), t);
    assert!(matches!(
        store.open(&none, &[], t).await.expect("open"),
        Budgets::Allowed { .. }
    ));
    assert_eq!(
        get(store, &none.id).await,
        none,
        "no budgets: a plain insert"
    );
}

/// The staged forms ([`Store::open_staged`], [`Store::check_staged`]) decide as the plain
/// ones and become durable: a staged open takes its budget and inserts, or does neither; a
/// staged wrong check counts its attempt; [`RACERS`] concurrent staged right-code checks
/// approve exactly once.
pub async fn staged_steps_decide_as_plain_ones(store: &Arc<dyn Store>) {
    let t = now();
    let mut rec = sample_record(&fresh_id("v_"), t);
    rec.max_attempts = 1_000;
    let key = fresh_id("open:");
    let budget = [budget(&key, 1, 600_000)];
    let opened = store.open_staged(&rec, &budget, t).await.expect("open");
    assert!(matches!(opened.value, Budgets::Allowed { .. }));
    opened.durable.wait().await.expect("durable");
    assert_eq!(get(store, &rec.id).await, rec);
    let other = sample_record(&fresh_id("v_"), t);
    let refused = store.open_staged(&other, &budget, t).await.expect("open");
    assert!(matches!(refused.value, Budgets::Exhausted { index: 0, .. }));
    refused.durable.wait().await.expect("durable");
    assert_eq!(store.get(&other.id).await.expect("get"), None);

    let checked = store
        .check_staged(&rec.id, &wrong(), None, t + 1)
        .await
        .expect("check");
    assert_eq!(
        checked.value,
        CheckOutcome::Wrong {
            attempts_left: rec.max_attempts - 1,
            code_version: 1
        }
    );
    checked.durable.wait().await.expect("durable");
    assert_eq!(get(store, &rec.id).await.attempts, 1);

    assert_eq!(
        race_right_checks(store, &rec, t + 2, true).await,
        1,
        "exactly one staged approval under concurrency"
    );
    let after = get(store, &rec.id).await;
    assert_eq!((after.outcome, after.attempts), (Outcome::Approved, 2));
}

/// Resend rules: cooldown, version = stored + 1, send limit, attempts reset, delivery
/// queued, old code dead, expired codes replaceable, spent ones not.
pub async fn rotate_rules(store: &Arc<dyn Store>) {
    let t = now();
    let rec = sample_record(&fresh_id("v_"), t);
    create(store, &rec).await;
    assert!(matches!(
        check(store, &rec.id, &wrong(), t + 1).await,
        CheckOutcome::Wrong { .. }
    ));
    let sent = delivery(DeliveryState::Sent, Some("m1"), t + 2);
    assert!(
        store
            .update_delivery(&rec.id, 1, &sent)
            .await
            .expect("delivery")
    );

    let early = t + 1_000;
    assert_eq!(
        rotate(store, &rec.id, 2, early).await,
        RotateOutcome::CoolingDown {
            retry_at_ms: rec.resend_at_ms
        }
    );
    let at = rec.resend_at_ms;
    assert_eq!(
        rotate(store, &rec.id, 1, at).await,
        RotateOutcome::Conflict,
        "same version"
    );
    assert_eq!(
        rotate(store, &rec.id, 3, at).await,
        RotateOutcome::Conflict,
        "skipped version"
    );
    let unchanged = get(store, &rec.id).await;
    assert_eq!(
        (unchanged.code.version, unchanged.sends, unchanged.attempts),
        (1, 1, 1)
    );

    let rot = sample_rotation(2, at);
    let RotateOutcome::Rotated(new) = store.rotate(&rec.id, &rot, at).await.expect("rotate") else {
        panic!("expected Rotated");
    };
    assert_eq!(new.code, rot.code);
    assert_eq!(
        (new.expires_at_ms, new.resend_at_ms),
        (rot.expires_at_ms, rot.resend_at_ms)
    );
    assert_eq!(
        (new.attempts, new.sends),
        (0, 2),
        "attempts reset, send counted"
    );
    assert_eq!(new.delivery.state, DeliveryState::Queued);
    assert_eq!(new.delivery.message_id, None);
    assert_eq!(
        *new,
        get(store, &rec.id).await,
        "returned record is the stored one"
    );

    assert_eq!(
        check(store, &rec.id, &right(&rec.code), at).await,
        CheckOutcome::Wrong {
            attempts_left: rec.max_attempts - 1,
            code_version: 2,
        },
        "the old code is dead; checks compare with the new one"
    );

    // Third send allowed (max 3) after the new cooldown, even though the code expired.
    let late = rot.expires_at_ms + 10;
    assert_eq!(get(store, &rec.id).await.status(late), Status::Expired);
    let RotateOutcome::Rotated(third) = rotate(store, &rec.id, 3, late).await else {
        panic!("an expired code may be replaced");
    };
    assert_eq!(third.sends, 3);
    let later = late + 60_000;
    assert_eq!(
        rotate(store, &rec.id, 4, later).await,
        RotateOutcome::TooManySends
    );

    // Spent attempts: no resend.
    let spent = sample_record(&fresh_id("v_"), t);
    create(store, &spent).await;
    for _ in 0..spent.max_attempts {
        check(store, &spent.id, &wrong(), t + 1).await;
    }
    let at = spent.resend_at_ms;
    assert_eq!(
        rotate(store, &spent.id, 2, at).await,
        RotateOutcome::NotPending(Status::MaxAttemptsReached)
    );
}

/// Concurrent resends of one verification: exactly one replaces the code.
pub async fn concurrent_rotates_one_wins(store: &Arc<dyn Store>) {
    let t = now();
    let rec = sample_record(&fresh_id("v_"), t);
    create(store, &rec).await;
    let at = rec.resend_at_ms;
    let racers = 50;
    let outcomes = race(store, racers, |store| {
        let id = rec.id.clone();
        async move { rotate(&store, &id, 2, at).await }
    })
    .await;
    let mut won = 0;
    for outcome in outcomes {
        match outcome {
            RotateOutcome::Rotated(_) => won += 1,
            RotateOutcome::Conflict | RotateOutcome::CoolingDown { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(won, 1, "one resend wins");
    let after = get(store, &rec.id).await;
    assert_eq!((after.code.version, after.sends), (2, 2));
}

/// Delivery changes apply to the current code only and only move forward; a new route
/// (another message id) may start again at queued/submitted.
pub async fn delivery_moves_forward_only(store: &Arc<dyn Store>) {
    use DeliveryState::{Delivered, Failed, Queued, Sent, Submitted};
    let t = now();
    let rec = sample_record(&fresh_id("v_"), t);
    create(store, &rec).await;
    let id = rec.id.as_str();
    let steps: &[(u32, DeliveryState, Option<&str>, bool)] = &[
        (2, Submitted, Some("m1"), false), // not the current code
        (1, Submitted, Some("m1"), true),
        (1, Queued, Some("m1"), false),    // backwards
        (1, Submitted, Some("m1"), false), // not forward
        (1, Sent, Some("m1"), true),
        (1, Submitted, None, false), // unnamed: forward only
        (1, Failed, Some("m1"), true),
        (1, Submitted, Some("m2"), true), // failover: new route restarts
        (1, Sent, Some("m1"), false),     // late event of the old route, not forward
        (1, Delivered, Some("m2"), true),
        (1, Failed, Some("m2"), false),    // terminal
        (1, Submitted, Some("m3"), false), // delivered: no restart
    ];
    for (n, (version, state, msg, applied)) in steps.iter().enumerate() {
        let d = delivery(*state, *msg, t + 1 + n as i64);
        assert_eq!(
            store
                .update_delivery(id, *version, &d)
                .await
                .expect("delivery"),
            *applied,
            "step {n}: v{version} {state:?} {msg:?}"
        );
        let stored = get(store, id).await.delivery;
        if *applied {
            assert_eq!(stored, d, "step {n} stored as given");
        } else {
            assert_ne!(
                stored.updated_at_ms, d.updated_at_ms,
                "step {n} not applied"
            );
        }
    }
    let final_d = get(store, id).await.delivery;
    assert_eq!(
        (final_d.state, final_d.message_id.as_deref()),
        (Delivered, Some("m2"))
    );

    // An event without a message id keeps the known route.
    let rec2 = sample_record(&fresh_id("v_"), t);
    create(store, &rec2).await;
    assert!(
        store
            .update_delivery(&rec2.id, 1, &delivery(Submitted, Some("x1"), t))
            .await
            .expect("delivery")
    );
    let bare = DeliveryRecord {
        state: Failed,
        gateway: None,
        message_id: None,
        updated_at_ms: t + 1,
        detail: Some("timeout".into()),
    };
    assert!(
        store
            .update_delivery(&rec2.id, 1, &bare)
            .await
            .expect("delivery")
    );
    let stored = get(store, &rec2.id).await.delivery;
    assert_eq!(stored.message_id.as_deref(), Some("x1"));
    assert_eq!(stored.gateway.as_deref(), Some("phone-1"));
    assert_eq!(
        (stored.state, stored.detail.as_deref()),
        (Failed, Some("timeout"))
    );

    // After a resend, events of the old code are ignored.
    let at = rec2.resend_at_ms;
    assert!(matches!(
        rotate(store, &rec2.id, 2, at).await,
        RotateOutcome::Rotated(_)
    ));
    assert!(
        !store
            .update_delivery(&rec2.id, 1, &delivery(Delivered, Some("x1"), at))
            .await
            .expect("delivery")
    );
    assert!(
        store
            .update_delivery(&rec2.id, 2, &delivery(Submitted, Some("y1"), at))
            .await
            .expect("delivery")
    );
}

/// [`RACERS`] concurrent takers on a budget of 50: exactly 50 pass, each remaining count
/// is handed out once, and the refused ones are not counted.
pub async fn budget_exact_under_concurrency(store: &Arc<dyn Store>) {
    let t = now();
    let key = fresh_id("phone:");
    let (limit, window) = (50u32, 3_600_000i64);
    let budgets = race(store, RACERS, |store| {
        let key = key.clone();
        async move { take(&store, &key, limit, window, t).await }
    })
    .await;
    let window_end = t - t.rem_euclid(window) + window;
    let mut remaining = BTreeSet::new();
    let mut refused = 0;
    for budget in budgets {
        match budget {
            Budget::Allowed { remaining: r } => assert!(remaining.insert(r), "remaining {r} twice"),
            Budget::Exhausted { retry_after_ms } => {
                assert_eq!(retry_after_ms, window_end - t);
                refused += 1;
            }
        }
    }
    assert_eq!(remaining, (0..limit).collect(), "exactly the limit passed");
    assert_eq!(refused, RACERS - limit as usize);
    assert_eq!(used(store, &key, window, t).await, limit);
}

/// `add_to_budget` adds its units to the window holding its time, with no limit, on top of
/// what `take_budget` counted; concurrent additions all count; the next window starts at 0.
pub async fn add_to_budget_counts_n_in_its_window(store: &Arc<dyn Store>) {
    let window = 60_000i64;
    let t = now();
    let start = t - t.rem_euclid(window) + window;
    let key = fresh_id("sig:");
    take(store, &key, 10, window, start + 1).await;
    store
        .add_to_budget(&key, 7, window, start + 2)
        .await
        .expect("add");
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (store, key) = (Arc::clone(store), key.clone());
        tasks.push(tokio::spawn(async move {
            store.add_to_budget(&key, 3, window, start + 3).await
        }));
    }
    for task in tasks {
        task.await.expect("task").expect("add");
    }
    assert_eq!(used(store, &key, window, start + 4).await, 1 + 7 + 60);
    assert_eq!(
        take(store, &key, 10, window, start + 5).await,
        Budget::Exhausted {
            retry_after_ms: window - 5
        },
        "the units count against a limit too"
    );
    assert_eq!(
        used(store, &key, window, start + window).await,
        0,
        "the next window"
    );
    assert_eq!(
        used(store, &key, window, start + window - 1).await,
        68,
        "still there at the end of its window"
    );
}

/// Fixed windows roll over, refunds give back one unit (never below zero), a zero limit
/// refuses, and unknown keys count zero.
pub async fn budget_windows_and_refund(store: &Arc<dyn Store>) {
    let window = 60_000i64;
    let t = now();
    let start = t - t.rem_euclid(window) + window; // the next window, from its start
    let key = fresh_id("ip:");
    assert_eq!(used(store, &key, window, start).await, 0);
    assert_eq!(
        take(store, &key, 2, window, start + 10).await,
        Budget::Allowed { remaining: 1 }
    );
    assert_eq!(
        take(store, &key, 2, window, start + 20).await,
        Budget::Allowed { remaining: 0 }
    );
    assert_eq!(
        take(store, &key, 2, window, start + 30).await,
        Budget::Exhausted {
            retry_after_ms: window - 30
        }
    );
    assert_eq!(used(store, &key, window, start + 40).await, 2);
    store
        .refund_budget(&key, window, start + 50)
        .await
        .expect("refund");
    assert_eq!(used(store, &key, window, start + 50).await, 1);
    assert_eq!(
        take(store, &key, 2, window, start + 60).await,
        Budget::Allowed { remaining: 0 }
    );

    // The last millisecond of the window is still in it; the next one starts afresh.
    assert!(matches!(
        take(store, &key, 2, window, start + window - 1).await,
        Budget::Exhausted { retry_after_ms: 1 }
    ));
    let next = start + window;
    assert_eq!(used(store, &key, window, next).await, 0);
    assert_eq!(
        take(store, &key, 2, window, next).await,
        Budget::Allowed { remaining: 1 }
    );
    assert_eq!(
        used(store, &key, window, start).await,
        2,
        "old window kept its count"
    );
    // Another window length is another counter.
    assert_eq!(used(store, &key, window * 2, next).await, 0);

    let fresh = fresh_id("ip:");
    store
        .refund_budget(&fresh, window, start)
        .await
        .expect("refund");
    store
        .refund_budget(&fresh, window, start)
        .await
        .expect("refund");
    assert_eq!(
        take(store, &fresh, 1, window, start).await,
        Budget::Allowed { remaining: 0 }
    );
    assert!(matches!(
        take(store, &fresh, 1, window, start).await,
        Budget::Exhausted { .. }
    ));

    let zero = fresh_id("global:");
    assert!(matches!(
        take(store, &zero, 0, window, start).await,
        Budget::Exhausted { .. }
    ));
    assert_eq!(used(store, &zero, window, start).await, 0);
}

/// `take_budgets` counts on every budget or on none, also under concurrency.
pub async fn take_budgets_all_or_nothing(store: &Arc<dyn Store>) {
    let window = 3_600_000i64;
    let t = now();
    let (wide, narrow) = (fresh_id("global:"), fresh_id("phone:"));
    let reqs = [budget(&wide, 1_000, window), budget(&narrow, 2, window)];
    assert_eq!(
        store.take_budgets(&reqs, t).await.expect("take"),
        Budgets::Allowed {
            remaining: vec![999, 1]
        }
    );
    assert_eq!(
        store.take_budgets(&reqs, t).await.expect("take"),
        Budgets::Allowed {
            remaining: vec![998, 0]
        }
    );
    let end = t - t.rem_euclid(window) + window;
    assert_eq!(
        store.take_budgets(&reqs, t).await.expect("take"),
        Budgets::Exhausted {
            index: 1,
            retry_after_ms: end - t
        }
    );
    assert_eq!(
        used(store, &wide, window, t).await,
        2,
        "refused: nothing kept"
    );
    assert_eq!(used(store, &narrow, window, t).await, 2);
    assert_eq!(
        store.take_budgets(&[], t).await.expect("take"),
        Budgets::Allowed { remaining: vec![] }
    );

    // The same key twice with room for one: refused, nothing counted.
    let twice = fresh_id("ip:");
    let same = [budget(&twice, 1, window), budget(&twice, 1, window)];
    assert!(matches!(
        store.take_budgets(&same, t).await.expect("take"),
        Budgets::Exhausted { index: 1, .. }
    ));
    assert_eq!(used(store, &twice, window, t).await, 0);

    // Racing: exactly `limit` pass, and the wide budget keeps only theirs.
    let (wide, narrow) = (fresh_id("global:"), fresh_id("phone:"));
    let limit = 50;
    let barrier = Arc::new(Barrier::new(RACERS));
    let mut tasks = Vec::new();
    for _ in 0..RACERS {
        let (store, barrier, wide, narrow) = (
            Arc::clone(store),
            Arc::clone(&barrier),
            wide.clone(),
            narrow.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let reqs = [budget(&wide, 1_000, window), budget(&narrow, limit, window)];
            barrier.wait().await;
            store.take_budgets(&reqs, t).await.expect("take")
        }));
    }
    let mut allowed = 0;
    for task in tasks {
        if let Budgets::Allowed { .. } = task.await.expect("task") {
            allowed += 1;
        }
    }
    assert_eq!(allowed, limit, "exactly the limit passed");
    assert_eq!(used(store, &narrow, window, t).await, limit);
    assert_eq!(
        used(store, &wide, window, t).await,
        limit,
        "refused takes were given back"
    );
}

/// `once` is true for exactly one of many concurrent callers, false within the TTL, and
/// true again after it.
pub async fn once_is_once_until_ttl(store: &Arc<dyn Store>) {
    let key = fresh_id("evt:");
    // Long enough that 200 racing tasks on a loaded machine stay well inside it.
    let ttl = 1_500;
    let t = now();
    let firsts = race(store, RACERS, |store| {
        let key = key.clone();
        async move { store.once(&key, ttl, t).await.expect("once") }
    })
    .await;
    let mut first = 0;
    for seen_first in firsts {
        if seen_first {
            first += 1;
        }
    }
    assert_eq!(first, 1, "exactly one caller sees the key first");
    assert!(
        !store.once(&key, ttl, now()).await.expect("once"),
        "still within the TTL"
    );
    tokio::time::sleep(Duration::from_millis(ttl as u64 + 200)).await;
    assert!(
        store.once(&key, ttl, now()).await.expect("once"),
        "seen again after the TTL"
    );
    assert!(!store.once(&key, ttl, now()).await.expect("once"));
}

/// A record past its expiry plus [`RETENTION_GRACE_MS`] is eventually gone, while one
/// inside the grace period still reads (status `expired`).
pub async fn records_are_forgotten_after_grace(store: &Arc<dyn Store>) {
    let t = now();
    let mut short = sample_record(&fresh_id("v_"), t);
    short.expires_at_ms = t + 300 - RETENTION_GRACE_MS;
    short.resend_at_ms = short.expires_at_ms;
    create(store, &short).await;
    let mut graced = sample_record(&fresh_id("v_"), t);
    graced.expires_at_ms = t + 1;
    create(store, &graced).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Any call moves the in-process stores' notion of now forward.
        store
            .once(&fresh_id("tick:"), 1, now())
            .await
            .expect("tick");
        if store.get(&short.id).await.expect("get").is_none() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "record still present 10 s after expiry + grace"
        );
    }
    assert_eq!(
        check(store, &short.id, &right(&short.code), now()).await,
        CheckOutcome::NotFound
    );
    assert_eq!(
        get(store, &graced.id).await.status(now()),
        Status::Expired,
        "inside grace: still there"
    );
}

/// A queued send: `key` at `priority`, queued at `at`, a minute to live.
pub fn queued(key: &str, priority: u16, at: i64) -> QueuedSend {
    QueuedSend {
        key: key.to_owned(),
        priority,
        queued_at_ms: at,
        deadline_ms: at + 60_000,
        sealed: format!("sealed-{key}"),
    }
}

/// Empties the queue (the suite owns its store's queue while it runs).
async fn drain(store: &Arc<dyn Store>) -> Vec<QueuedSend> {
    let mut all = Vec::new();
    loop {
        let got = store.dequeue_sends(100).await.expect("dequeue");
        if got.is_empty() {
            return all;
        }
        all.extend(got);
    }
}

/// Lowest priority number first, then oldest; each entry once, whole.
pub async fn queue_hands_out_best_first(store: &Arc<dyn Store>) {
    drain(store).await;
    assert_eq!(store.queued_sends().await.expect("count"), 0);
    assert!(store.dequeue_sends(5).await.expect("dequeue").is_empty());
    let t = now();
    let k = |n: u32| format!("{}.{n}", fresh_id("v_"));
    let (late_repeat, paid_late, first, paid_early) = (
        queued(&k(1), 2, t),
        queued(&k(1), 0, t + 5),
        queued(&k(1), 1, t + 1),
        queued(&k(2), 0, t + 2),
    );
    for q in [&late_repeat, &paid_late, &first, &paid_early] {
        assert!(store.enqueue_send(q, 100).await.expect("enqueue"));
    }
    assert_eq!(store.queued_sends().await.expect("count"), 4);
    assert!(store.dequeue_sends(0).await.expect("dequeue").is_empty());
    assert_eq!(
        store.dequeue_sends(2).await.expect("dequeue"),
        vec![paid_early, paid_late]
    );
    assert_eq!(store.queued_sends().await.expect("count"), 2);
    assert_eq!(
        store.dequeue_sends(10).await.expect("dequeue"),
        vec![first, late_repeat]
    );
    assert_eq!(store.queued_sends().await.expect("count"), 0);
}

/// A full queue refuses and writes nothing; the same entry queued again is one entry (a
/// send put back after a drain keeps its place).
pub async fn queue_is_bounded_and_requeue_is_idempotent(store: &Arc<dyn Store>) {
    drain(store).await;
    let t = now();
    let a = queued(&format!("{}.1", fresh_id("v_")), 1, t);
    let b = queued(&format!("{}.1", fresh_id("v_")), 1, t + 1);
    let c = queued(&format!("{}.1", fresh_id("v_")), 0, t + 2);
    assert!(store.enqueue_send(&a, 2).await.expect("enqueue"));
    assert!(store.enqueue_send(&b, 2).await.expect("enqueue"));
    assert!(!store.enqueue_send(&c, 2).await.expect("enqueue"), "full");
    assert!(
        store.enqueue_send(&a, 2).await.expect("enqueue"),
        "already in"
    );
    assert_eq!(store.queued_sends().await.expect("count"), 2);
    let taken = store.dequeue_sends(1).await.expect("dequeue");
    assert_eq!(taken, vec![a.clone()]);
    // Put back: first again, ahead of b.
    assert!(store.enqueue_send(&a, u32::MAX).await.expect("enqueue"));
    assert_eq!(drain(store).await, vec![a, b]);
}

/// Racing dequeues hand every entry to exactly one caller.
pub async fn concurrent_dequeues_hand_each_send_once(store: &Arc<dyn Store>) {
    drain(store).await;
    let t = now();
    let mut keys = BTreeSet::new();
    for n in 0..RACERS {
        let q = queued(
            &format!("{}.1", fresh_id("v_")),
            (n % 3) as u16,
            t + n as i64,
        );
        keys.insert(q.key.clone());
        assert!(store.enqueue_send(&q, 10_000).await.expect("enqueue"));
    }
    let taken = race(store, RACERS, |store| async move {
        store.dequeue_sends(1).await.expect("dequeue")
    })
    .await;
    let mut seen = BTreeSet::new();
    for got in taken.into_iter().flatten() {
        assert!(seen.insert(got.key.clone()), "{} handed out twice", got.key);
    }
    seen.extend(drain(store).await.into_iter().map(|q| q.key));
    assert_eq!(seen, keys, "every entry handed out once");
}

/// `claim` stores for one caller among racers and answers the others the value; `put`
/// replaces; `forget` frees; a value past its TTL is gone.
pub async fn claims_are_won_once_and_kept_until_their_ttl(store: &Arc<dyn Store>) {
    let key = fresh_id("idem:");
    let t = now();
    let answers = race(store, RACERS, |store| {
        let key = key.clone();
        async move {
            let mine = fresh_id("v");
            let got = store.claim(&key, &mine, 60_000, t).await.expect("claim");
            (mine, got)
        }
    })
    .await;
    let winners: Vec<_> = answers.iter().filter(|(_, got)| got.is_none()).collect();
    assert_eq!(winners.len(), 1, "exactly one caller claims");
    let won = winners[0].0.clone();
    assert!(
        answers
            .iter()
            .all(|(_, got)| got.as_deref().is_none_or(|v| v == won)),
        "the others are answered the winner's value"
    );
    store.put(&key, "answer", 60_000, now()).await.expect("put");
    assert_eq!(
        store
            .claim(&key, "late", 60_000, now())
            .await
            .expect("claim"),
        Some("answer".to_owned())
    );
    store.forget(&key).await.expect("forget");
    store.forget(&key).await.expect("forget twice");
    assert_eq!(
        store
            .claim(&key, "again", 1_000, now())
            .await
            .expect("claim"),
        None
    );
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(
        store
            .claim(&key, "after", 60_000, now())
            .await
            .expect("claim"),
        None,
        "past its TTL the value is gone"
    );
}

/// An outbox message with id `id`, queued at `at`, alive for a minute.
pub fn outbox_message(id: &str, at: i64) -> OutboxMessage {
    OutboxMessage {
        id: id.to_owned(),
        expires_at_ms: at + 60_000,
        queued_at_ms: at,
        sealed: format!("sealed-{id}"),
    }
}

/// An outbox hands its messages out oldest first, each once; an id put there again (even
/// after it was taken) is not queued again; a full outbox refuses; outboxes are apart.
pub async fn outbox_hands_each_message_once_in_order(store: &Arc<dyn Store>) {
    let (phone, other) = (fresh_id("phone-"), fresh_id("phone-"));
    let t = now();
    let ids: Vec<String> = (0..3).map(|_| fresh_id("v_")).collect();
    for (n, id) in ids.iter().enumerate().rev() {
        let m = outbox_message(id, t + n as i64);
        assert!(store.outbox_push(&phone, &m, 3, t).await.expect("push"));
    }
    assert!(
        store
            .outbox_push(&phone, &outbox_message(&ids[0], t + 9), 3, t)
            .await
            .expect("push again"),
        "an id seen before answers true"
    );
    assert!(
        !store
            .outbox_push(&phone, &outbox_message(&fresh_id("v_"), t), 3, t)
            .await
            .expect("push to a full outbox"),
        "a full outbox refuses"
    );
    assert!(
        store
            .outbox_take(&other, 10, t)
            .await
            .expect("take")
            .is_empty(),
        "another outbox is empty"
    );
    let first = store.outbox_take(&phone, 2, t).await.expect("take");
    assert_eq!(
        first,
        vec![outbox_message(&ids[0], t), outbox_message(&ids[1], t + 1)],
        "oldest first, as pushed"
    );
    assert!(
        store
            .outbox_push(&phone, &outbox_message(&ids[0], t + 5), 3, t + 5)
            .await
            .expect("push a taken id"),
    );
    let rest = store.outbox_take(&phone, 10, t + 6).await.expect("take");
    assert_eq!(
        rest,
        vec![outbox_message(&ids[2], t + 2)],
        "a taken id never goes out again"
    );
    assert!(
        store
            .outbox_take(&phone, 10, t)
            .await
            .expect("take")
            .is_empty()
    );
}

/// Racing takes hand every outbox message to exactly one caller.
pub async fn concurrent_outbox_takes_hand_each_message_once(store: &Arc<dyn Store>) {
    let phone = fresh_id("phone-");
    let t = now();
    let mut ids = BTreeSet::new();
    for n in 0..RACERS {
        let id = fresh_id("v_");
        ids.insert(id.clone());
        let m = outbox_message(&id, t + n as i64);
        assert!(
            store
                .outbox_push(&phone, &m, 10_000, t)
                .await
                .expect("push")
        );
    }
    let taken = race(store, RACERS, |store| {
        let phone = phone.clone();
        async move { store.outbox_take(&phone, 2, t).await.expect("take") }
    })
    .await;
    let mut seen = BTreeSet::new();
    for m in taken.into_iter().flatten() {
        assert!(seen.insert(m.id.clone()), "{} handed out twice", m.id);
    }
    seen.extend(
        store
            .outbox_take(&phone, 10_000, t)
            .await
            .expect("take")
            .into_iter()
            .map(|m| m.id),
    );
    assert_eq!(seen, ids, "every message handed out once");
}

fn lease(key: &str, owner: &str, until_ms: i64, deadline_ms: i64) -> SendLease {
    SendLease {
        key: key.to_owned(),
        owner: owner.to_owned(),
        until_ms,
        deadline_ms,
        body: format!("body of {key} by {owner}"),
    }
}

/// A live lease keeps other owners out; its owner rewrites and renews it; a renewal
/// names the keys no longer held; only the owner releases it.
pub async fn leases_are_held_renewed_released(store: &Arc<dyn Store>) {
    let t = now();
    let (key, a, b) = (fresh_id("v_") + ".1", fresh_id("i_"), fresh_id("i_"));
    let deadline = t + 120_000;
    assert!(
        store
            .lease_put(&lease(&key, &a, t + 10_000, deadline), t)
            .await
            .expect("put")
    );
    assert!(
        !store
            .lease_put(&lease(&key, &b, t + 10_000, deadline), t)
            .await
            .expect("put"),
        "another owner's live lease keeps b out"
    );
    assert!(
        store
            .lease_put(&lease(&key, &a, t + 10_000, deadline), t + 1)
            .await
            .expect("put"),
        "its owner rewrites it"
    );
    let ghost = fresh_id("v_") + ".1";
    let lost = store
        .lease_renew(&a, &[key.clone(), ghost.clone()], t + 20_000, t + 2)
        .await
        .expect("renew");
    assert_eq!(lost, vec![ghost], "only the unknown key is not held");
    assert_eq!(
        store
            .lease_renew(&b, std::slice::from_ref(&key), t + 20_000, t + 2)
            .await
            .expect("renew"),
        vec![key.clone()],
        "b holds nothing"
    );
    assert!(
        store
            .lease_take_expired(&b, t + 30_000, 100, t + 15_000)
            .await
            .expect("take")
            .iter()
            .all(|l| l.key != key),
        "renewed: not expired at the old time"
    );
    store
        .lease_release(&key, &b)
        .await
        .expect("release by another");
    assert!(
        !store
            .lease_put(&lease(&key, &b, t + 10_000, deadline), t + 3)
            .await
            .expect("put"),
        "a release by another owner changes nothing"
    );
    store.lease_release(&key, &a).await.expect("release");
    assert!(
        store
            .lease_put(&lease(&key, &b, t + 10_000, deadline), t + 4)
            .await
            .expect("put"),
        "released: free for another"
    );
    store.lease_release(&key, &b).await.expect("release");
}

/// An expired lease goes to exactly one of many racing takers, as now stored (owner and
/// time the taker's); its old owner then no longer holds it; a lease past its deadline is
/// forgotten, never handed out.
pub async fn an_expired_lease_is_taken_over_once(store: &Arc<dyn Store>) {
    let t = now();
    let (key, dead_key, old) = (fresh_id("v_") + ".1", fresh_id("v_") + ".1", fresh_id("i_"));
    assert!(
        store
            .lease_put(&lease(&key, &old, t + 1_000, t + 600_000), t)
            .await
            .expect("put")
    );
    assert!(
        store
            .lease_put(&lease(&dead_key, &old, t + 1_000, t + 1_500), t)
            .await
            .expect("put")
    );
    assert!(
        store
            .lease_take_expired(&fresh_id("i_"), t + 60_000, 100, t + 999)
            .await
            .expect("take")
            .iter()
            .all(|l| l.key != key && l.key != dead_key),
        "nothing expired yet"
    );
    let at = t + 2_000;
    let answers = race(store, RACERS, |store| async move {
        let me = fresh_id("i_");
        let got = store
            .lease_take_expired(&me, at + 10_000, 10, at)
            .await
            .expect("take");
        (me, got)
    })
    .await;
    let mut winners = Vec::new();
    for (me, got) in &answers {
        for l in got {
            assert_ne!(
                l.key, dead_key,
                "a lease past its deadline is never taken over"
            );
            if l.key == key {
                assert_eq!((&l.owner, l.until_ms), (me, at + 10_000));
                assert_eq!(
                    l.body,
                    format!("body of {key} by {old}"),
                    "the body as written"
                );
                winners.push(me.clone());
            }
        }
    }
    assert_eq!(winners.len(), 1, "exactly one taker");
    assert_eq!(
        store
            .lease_renew(&old, std::slice::from_ref(&key), at + 20_000, at)
            .await
            .expect("renew"),
        vec![key.clone()],
        "the old owner lost it"
    );
    assert!(
        !store
            .lease_put(&lease(&key, &old, at + 20_000, t + 600_000), at)
            .await
            .expect("put"),
        "nor may it write it back"
    );
    store
        .lease_release(&key, &winners[0])
        .await
        .expect("release");
}
