//! 1,000 concurrent checks with the right code on one verification, over real HTTP against a
//! real `otpgate serve` process, on the embedded store and on Redis: exactly one `200` (one
//! receipt, which verifies), every other answer a documented losing answer, no `5xx`, no
//! hang, and the verification reads `approved` afterwards.
//!
//! The losing answers: `409 already_used` (the check came after the approval) and
//! `429 no_attempts_left` (attempts are counted *before* the code is compared, so the first
//! `max_attempts` checks of the storm spend every attempt; the rest of the storm that
//! arrives before the winner's approval commits finds none left). Only one of the checks
//! holding an attempt can approve: the store's approve is a compare-and-set on the open
//! outcome and the code version.
//!
//! Under the storm on a loaded 2-core machine (debug build) the Redis store's 2-second
//! operation timeout can pass for a few requests: those answer the documented overload
//! answer `503 store_unavailable` with `Retry-After` (never a `500`), and each such check,
//! sent again afterwards, answers `409`.
//!
//! The per-IP check budget is raised in the config (every request comes from 127.0.0.1).
//! Redis: the shared server of `OTPGATE_TEST_REDIS_URL` (or a spawned one), with a key
//! prefix of its own. `OTPGATE_SOAK=1` repeats the storm (`OTPGATE_SOAK_STORMS`, default 5)
//! on fresh verifications.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use otpgate_test_support::fault::{knob, ms, open_config, receipts_unique};
use otpgate_test_support::http::{client, jwks, send, send_check, send_start};
use otpgate_test_support::process::{Serve, free_port};
use otpgate_test_support::redis::TestRedis;
use serde_json::json;

const PHONE: &str = "+14155550100";
const CODE: &str = "424242";
const ISSUER: &str = "https://issuer.test";

fn write_config(dir: &Path, store: &str) -> std::path::PathBuf {
    let test_numbers = format!(r#"test_numbers = {{ "{PHONE}" = "{CODE}" }}"#);
    open_config(ISSUER, store.to_owned(), &test_numbers).write(dir)
}

/// Opens a verification and fires `n` right-code checks at it at once.
async fn storm(http: &reqwest::Client, base: &str, n: usize) -> (String, BTreeMap<String, usize>) {
    let a = send_start(http, base, PHONE, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(a.status, 201, "{}", a.body);
    let id = a.body["id"].as_str().unwrap().to_owned();
    let gate = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (http, gate) = (http.clone(), Arc::clone(&gate));
            let url = format!("{base}/v1/verifications/{id}/check");
            tokio::spawn(async move {
                gate.wait().await;
                send(
                    http.post(url).json(&json!({ "code": CODE })),
                    Duration::from_secs(60),
                )
                .await
            })
        })
        .collect();
    let mut tally = BTreeMap::new();
    let mut receipts = Vec::new();
    let mut overloaded = 0;
    for t in tasks {
        let a = t
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("transport error under the storm (hang or reset): {e}"));
        match a.status {
            200 => receipts.push((id.clone(), a.body["receipt"].as_str().unwrap().to_owned())),
            // The store's operation timeout (2 s) passing while the machine is flooded: the
            // documented overload answer, never a 500. Its check is retried below.
            503 => {
                assert_eq!(a.code(), "store_unavailable", "{a:?}");
                assert!(a.retry_after.is_some(), "503 without Retry-After: {a:?}");
                overloaded += 1;
            }
            _ => {}
        }
        *tally
            .entry(format!("{} {}", a.status, a.code()))
            .or_insert(0) += 1;
    }
    let keys = jwks(http, base).await;
    receipts_unique(&receipts, &keys, "shop", ISSUER);
    assert_eq!(receipts.len(), 1, "exactly one approval: {tally:?}");
    for k in tally.keys() {
        assert!(
            [
                "200 ",
                "409 already_used",
                "429 no_attempts_left",
                "503 store_unavailable"
            ]
            .contains(&k.as_str()),
            "undocumented answer {k}: {tally:?}"
        );
    }
    // A check that met the overload answer, sent again, is a loser like the others.
    for _ in 0..overloaded {
        let a = send_check(http, base, &id, CODE, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!((a.status, a.code()), (409, "already_used"), "{a:?}");
    }
    let view = send(
        http.get(format!("{base}/v1/verifications/{id}")),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(view.body["status"], "approved", "{}", view.body);
    (id, tally)
}

/// One storm at a time in this binary: two storms of 1,000 requests each on a 2-core machine
/// measure the machine, not the issuer.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn run(store: &str, env: &[(&str, String)], what: &str) {
    let _turn = ONE_AT_A_TIME.lock().await;
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), store);
    let server = Serve::start(dir.path(), &config, free_port(), env);
    let http = client();
    let n = knob("OTPGATE_CONCURRENT_CHECKS", 1000, 1000);
    for round in 0..knob("OTPGATE_SOAK_STORMS", 1, 5) {
        let t = Instant::now();
        let (_, tally) = storm(&http, &server.base, n).await;
        println!(
            "{what} storm {round}: {n} concurrent right-code checks → {tally:?} in {} ms",
            ms(t)
        );
    }
    drop(server);
    println!("{what}: total {} ms", ms(t0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_right_checks_embedded_one_approval() {
    run(r#"kind = "embedded""#, &[], "embedded").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_right_checks_redis_one_approval() {
    let redis = TestRedis::start();
    let prefix = format!("fcc{}:", otpgate_server::random::id("").unwrap());
    run(
        &format!("kind = \"redis\"\nkey_prefix = \"{prefix}\""),
        &[("OTPGATE_STORE", redis.url.clone())],
        "redis",
    )
    .await;
}
