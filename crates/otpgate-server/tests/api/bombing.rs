//! SMS bombing and lock-out, over HTTP: one address cannot ask for many codes to one number
//! (429 `too_many_starts`), repeated starts to one number cost more proof of work, and a
//! number that collected too many wrong codes across its verifications is locked for
//! anonymous callers (429 `number_locked`) but not for a trusted backend.

use serde_json::json;
use sha2::Digest as _;

use crate::harness::{Backend, Harness, open_policy, retry_after_header};

const KEY: &str = "a-backend-key-of-some-length-789";

fn with_key(mut p: otpgate_server::policy::PolicyConfig) -> otpgate_server::policy::PolicyConfig {
    p.api_keys = vec![format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(KEY.as_bytes()))
    )];
    p
}

async fn trusted_start(h: &Harness, phone: &str) -> (u16, serde_json::Value) {
    let res = h
        .client
        .post(h.url("/v1/verifications"))
        .bearer_auth(KEY)
        .json(&json!({"phone": phone}))
        .send()
        .await
        .unwrap();
    let (status, _, body) = crate::harness::split(res).await;
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_bomb_a_number() {
    let mut p = with_key(open_policy());
    p.budgets.phone_ip = otpgate_server::policy::Limit {
        limit: 3,
        window_secs: 3_600,
    };
    let h = Harness::with_policy(Backend::Memory, p).await;
    let victim = "+447400123456";
    for _ in 0..3 {
        h.start(victim).await;
    }
    let (status, headers, body) = h.post("/v1/verifications", json!({"phone": victim})).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "too_many_starts");
    assert!(retry_after_header(&headers) > 0);
    assert_eq!(h.sends(), 3, "the refused start sent nothing");
    // Another number from the same address, and the same number for a trusted backend.
    h.start("+447400123457").await;
    let (status, body) = trusted_start(&h, victim).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_starts_to_one_number_cost_more_work() {
    let mut p = open_policy();
    p.pow.enabled = true;
    let h = Harness::with_policy(Backend::Memory, p).await;
    let n = "+447400123458";
    h.start(n).await;
    let (status, _, body) = h.post("/v1/verifications", json!({"phone": n})).await;
    assert_eq!(status, 428, "a second start to the number: {body}");
    let bits = otpgate_core::pow::describe(body["error"]["challenge"].as_str().unwrap())
        .unwrap()
        .0;
    assert!(bits >= 6, "{bits}");
    // Another number is not affected.
    h.start("+447400123459").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_wrong_codes_lock_a_number_for_anonymous_callers() {
    let mut p = with_key(open_policy());
    p.budgets.failed_checks = otpgate_server::policy::Limit {
        limit: 6,
        window_secs: 86_400,
    };
    let h = Harness::with_policy(Backend::Memory, p).await;
    let n = "+447400123460";
    // Six wrong codes across two verifications (five attempts each).
    for wrongs in [5, 1] {
        let id = h.start(n).await;
        let right = h.code(&id);
        let wrong = if right == "000000" {
            "111111"
        } else {
            "000000"
        };
        for _ in 0..wrongs {
            let (status, _, body) = h.check(&id, wrong).await;
            assert_eq!(status, 422, "{body}");
        }
    }
    let (status, headers, body) = h.post("/v1/verifications", json!({"phone": n})).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "number_locked");
    let wait = retry_after_header(&headers);
    assert!((1..=86_400).contains(&wait), "{wait}");
    // A trusted backend still can (it vouches for the person), and other numbers are free.
    let (status, body) = trusted_start(&h, n).await;
    assert_eq!(status, 201, "{body}");
    h.start("+447400123461").await;
    // The lock ends with its window.
    h.clock.advance(86_400_000);
    h.start(n).await;
}
