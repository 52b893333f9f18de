//! Sample records and guesses for the stores' tests: the unit tests here, and the
//! integration tests through the dev-only `otpgate-test-support` crate, whose `conformance`
//! module reads this very file in by path (a unit test cannot depend on that crate: it links
//! its own copy of this library), so one copy serves both.
#![allow(unreachable_pub)]

use otpgate_core::wire::DeliveryState;

use super::{DeliveryRecord, Guess, Outcome, Record, Rotation, StoredCode};

/// A pending verification created at `now_ms`: code version 1, 5 min lifetime, 5 attempts,
/// one send, resend after 30 s, delivery queued.
pub fn sample_record(id: &str, now_ms: i64) -> Record {
    Record {
        id: id.to_owned(),
        app: "conformance".to_owned(),
        phone: "+33612345678".to_owned(),
        locale: Some("fr".to_owned()),
        outcome: Outcome::Open,
        code: StoredCode {
            digest: (0..32).collect(),
            key_id: "k1".to_owned(),
            version: 1,
        },
        created_at_ms: now_ms,
        expires_at_ms: now_ms + 300_000,
        attempts: 0,
        max_attempts: 5,
        sends: 1,
        resend_at_ms: now_ms + 30_000,
        delivery: DeliveryRecord {
            state: DeliveryState::Queued,
            gateway: None,
            message_id: None,
            updated_at_ms: now_ms,
            detail: None,
        },
        test_number: false,
        trusted: false,
    }
}

/// A rotation to `version` at `now_ms` (5 min lifetime, 60 s cooldown, at most 3 sends).
pub fn sample_rotation(version: u32, now_ms: i64) -> Rotation {
    Rotation {
        code: StoredCode {
            digest: vec![version as u8; 32],
            key_id: "k2".to_owned(),
            version,
        },
        expires_at_ms: now_ms + 300_000,
        resend_at_ms: now_ms + 60_000,
        max_sends: 3,
    }
}

/// The guess that matches `code` (the digest under its key, beside one under another key).
pub fn right(code: &StoredCode) -> Guess {
    Guess {
        digests: vec![
            ("k-other".to_owned(), vec![7; 32]),
            (code.key_id.clone(), code.digest.clone()),
        ],
    }
}

/// A guess that matches no sample code (under every key the samples use).
pub fn wrong() -> Guess {
    Guess {
        digests: vec![
            ("k1".to_owned(), vec![9; 32]),
            ("k2".to_owned(), vec![9; 32]),
        ],
    }
}
