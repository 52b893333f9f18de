//! The rules of one verification and of budget windows, shared by every backend (the
//! in-process ones apply them in `state.rs`).
//!
//! The Redis backend re-states the same rules in Lua (`redis.rs`); the conformance suite
//! holds all three to the same answers.

use otpgate_core::wire::{DeliveryState, Status};

use super::{CheckOutcome, DeliveryRecord, Guess, Outcome, Record, RotateOutcome, Rotation};

/// The fixed window of a budget holding a time: windows are aligned on multiples of their
/// length (a non-positive length counts as 1 ms). Every backend names its counters by it.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) struct Window {
    /// Its start, Unix ms.
    pub(crate) start: i64,
    /// Its length, ms (at least 1).
    pub(crate) len: i64,
}

impl Window {
    /// The window of `window_ms` holding `now_ms`.
    pub(crate) fn of(now_ms: i64, window_ms: i64) -> Self {
        let len = window_ms.max(1);
        Self {
            start: now_ms - now_ms.rem_euclid(len),
            len,
        }
    }

    /// When its counter may be forgotten: one window length after the window ended (so the
    /// count of the window just past still reads).
    pub(crate) fn purge_at(self) -> i64 {
        self.start.saturating_add(self.len.saturating_mul(2))
    }

    /// Milliseconds from `now_ms` until the window ends (when a spent budget frees up).
    pub(crate) fn retry_after(self, now_ms: i64) -> i64 {
        self.start + self.len - now_ms
    }
}

/// When a record may be forgotten: its expiry plus the grace period.
pub(crate) fn purge_at(record: &Record) -> i64 {
    record
        .expires_at_ms
        .saturating_add(super::RETENTION_GRACE_MS)
}

/// [`super::Store::check`] on a loaded record (the budget already taken); returns the
/// answer and whether `rec` changed (the caller then writes it back).
pub(crate) fn check(rec: &mut Record, guess: &Guess, now_ms: i64) -> (CheckOutcome, bool) {
    match rec.outcome {
        Outcome::Approved => return (CheckOutcome::AlreadyUsed, false),
        Outcome::Cancelled => return (CheckOutcome::Cancelled, false),
        Outcome::Open => {}
    }
    if rec.attempts >= rec.max_attempts {
        return (CheckOutcome::NoAttemptsLeft, false);
    }
    if now_ms >= rec.expires_at_ms {
        return (CheckOutcome::Expired, false);
    }
    rec.attempts += 1;
    if guess.matches(&rec.code) {
        rec.outcome = Outcome::Approved;
        (CheckOutcome::Approved(Box::new(rec.clone())), true)
    } else {
        (
            CheckOutcome::Wrong {
                attempts_left: rec.attempts_left(),
                code_version: rec.code.version,
            },
            true,
        )
    }
}

/// [`super::Store::rotate`] on a loaded record; `rec` is changed only when the answer is
/// `Rotated`.
pub(crate) fn rotate(rec: &mut Record, rotation: &Rotation, now_ms: i64) -> RotateOutcome {
    // An expired code may be replaced (that is what a resend is for); a decided one or one
    // whose attempts are spent may not.
    match rec.status(now_ms) {
        Status::Pending | Status::Expired => {}
        other => return RotateOutcome::NotPending(other),
    }
    if Some(rotation.code.version) != rec.code.version.checked_add(1) {
        return RotateOutcome::Conflict;
    }
    if rec.sends >= rotation.max_sends {
        return RotateOutcome::TooManySends;
    }
    if now_ms < rec.resend_at_ms {
        return RotateOutcome::CoolingDown {
            retry_at_ms: rec.resend_at_ms,
        };
    }
    rec.code = rotation.code.clone();
    rec.expires_at_ms = rotation.expires_at_ms;
    rec.resend_at_ms = rotation.resend_at_ms;
    rec.attempts = 0;
    rec.sends = rec.sends.saturating_add(1);
    rec.delivery = DeliveryRecord {
        state: DeliveryState::Queued,
        gateway: None,
        message_id: None,
        updated_at_ms: now_ms,
        detail: None,
    };
    RotateOutcome::Rotated(Box::new(rec.clone()))
}

/// [`super::Store::cancel`] on a loaded record; returns whether it changed.
pub(crate) fn cancel(rec: &mut Record) -> bool {
    if rec.outcome == Outcome::Open {
        rec.outcome = Outcome::Cancelled;
        true
    } else {
        false
    }
}

/// Whether a delivery change may be applied to the stored delivery.
///
/// Same message (or either side unnamed): only forward ([`DeliveryState::may_become`]). A
/// different message id is a new route (failover): it may start again at `queued` or
/// `submitted`, unless the stored message was already delivered or skipped; any other
/// event naming another message (a late event of an abandoned route) is ignored.
pub(crate) fn delivery_allowed(stored: &DeliveryRecord, next: &DeliveryRecord) -> bool {
    match (&stored.message_id, &next.message_id) {
        (Some(a), Some(b)) if a != b => {
            next.state.rank() <= DeliveryState::Submitted.rank()
                && stored.state != DeliveryState::Delivered
                && stored.state != DeliveryState::Skipped
        }
        _ => stored.state.may_become(next.state),
    }
}

/// [`super::Store::update_delivery`] on a loaded record; returns whether it changed.
pub(crate) fn update_delivery(rec: &mut Record, version: u32, next: &DeliveryRecord) -> bool {
    if rec.code.version != version || !delivery_allowed(&rec.delivery, next) {
        return false;
    }
    let prev = std::mem::replace(&mut rec.delivery, next.clone());
    // An event that names no route keeps the route already known.
    if rec.delivery.message_id.is_none() {
        rec.delivery.message_id = prev.message_id;
    }
    if rec.delivery.gateway.is_none() {
        rec.delivery.gateway = prev.gateway;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(state: DeliveryState, msg: Option<&str>) -> DeliveryRecord {
        DeliveryRecord {
            state,
            gateway: None,
            message_id: msg.map(str::to_owned),
            updated_at_ms: 0,
            detail: None,
        }
    }

    #[test]
    fn windows_align() {
        let start = |now, len| Window::of(now, len).start;
        assert_eq!(start(1_234, 1_000), 1_000);
        assert_eq!(start(1_000, 1_000), 1_000);
        assert_eq!(start(999, 1_000), 0);
        assert_eq!(start(-1, 1_000), -1_000);
        assert_eq!(start(5, 0), 5);
        let w = Window::of(1_234, 1_000);
        assert_eq!((w.purge_at(), w.retry_after(1_234)), (3_000, 766));
    }

    #[test]
    fn delivery_moves_forward_or_restarts_on_a_new_route() {
        use DeliveryState::*;
        assert!(delivery_allowed(
            &d(Queued, None),
            &d(Submitted, Some("m1"))
        ));
        assert!(!delivery_allowed(
            &d(Sent, Some("m1")),
            &d(Submitted, Some("m1"))
        ));
        assert!(!delivery_allowed(
            &d(Delivered, Some("m1")),
            &d(Failed, Some("m1"))
        ));
        assert!(delivery_allowed(
            &d(Failed, Some("m1")),
            &d(Submitted, Some("m2"))
        ));
        assert!(delivery_allowed(
            &d(Sent, Some("m1")),
            &d(Queued, Some("m2"))
        ));
        assert!(!delivery_allowed(
            &d(Delivered, Some("m1")),
            &d(Submitted, Some("m2"))
        ));
        assert!(!delivery_allowed(
            &d(Sent, Some("m1")),
            &d(Sent, Some("m2"))
        ));
        assert!(!delivery_allowed(&d(Sent, Some("m1")), &d(Submitted, None)));
    }
}
