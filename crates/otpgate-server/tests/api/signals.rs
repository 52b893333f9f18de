//! The anti-pumping signals count only anonymous traffic: during a pumping run, approvals of
//! test numbers and of a trusted backend's verifications leave the proof-of-work difficulty
//! where the run put it.

use std::time::Duration;

use serde_json::json;
use sha2::Digest as _;

use crate::harness::{Backend, Harness, open_policy};

const KEY: &str = "a-backend-key-of-some-length-456";
const TEST_NUMBER: &str = "+14155550100";

/// The difficulty an anonymous start to a fresh number is asked for (0: none).
async fn difficulty(h: &Harness, phone: &str) -> u8 {
    let (status, _, body) = h.post("/v1/verifications", json!({"phone": phone})).await;
    match status {
        201 => 0,
        428 => {
            let challenge = body["error"]["challenge"].as_str().unwrap();
            otpgate_core::pow::describe(challenge).unwrap().0
        }
        other => panic!("unexpected {other}: {body}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pumping_run_keeps_its_difficulty_through_test_number_and_api_key_approvals() {
    let mut p = open_policy();
    p.pow.enabled = true;
    p.api_keys = vec![format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(KEY.as_bytes()))
    )];
    p.test_numbers.insert(TEST_NUMBER.into(), "424242".into());
    let h = Harness::with_policy(Backend::Memory, p).await;
    // The pumping run: 20 anonymous sends (the minimum sample), none entered.
    for n in 0..20 {
        h.start(&format!("+4474009002{n:02}")).await;
    }
    h.clock.advance(200);
    let pumped = difficulty(&h, "+447400900300").await;
    assert!(pumped >= 12, "no approval out of 20 sends: {pumped}");

    // Free approvals: a test number and a trusted backend's verifications, all entered.
    for _ in 0..40 {
        let id = h.start(TEST_NUMBER).await;
        let (status, _, body) = h.check(&id, "424242").await;
        assert_eq!(status, 200, "{body}");
    }
    for n in 0..40 {
        let res = h
            .client
            .post(h.url("/v1/verifications"))
            .bearer_auth(KEY)
            .json(&json!({"phone": format!("+4474009004{n:02}")}))
            .send()
            .await
            .unwrap();
        let (status, _, body) = crate::harness::split(res).await;
        assert_eq!(status, 201, "{body}");
        let id = body["id"].as_str().unwrap().to_owned();
        let (status, _, body) = h.check(&id, &h.code(&id)).await;
        assert_eq!(status, 200, "{body}");
    }
    // Approvals are counted within 100 ms; wait past that, and past the signal cache.
    tokio::time::sleep(Duration::from_millis(400)).await;
    h.clock.advance(200);
    assert_eq!(
        difficulty(&h, "+447400900301").await,
        pumped,
        "free approvals must not lower the difficulty of a pumping run"
    );
}
