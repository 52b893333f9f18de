//! Redis killed (SIGKILL) and restarted on the same port under load, with one real
//! `otpgate serve` process on it that is never restarted. What it proves:
//!
//! - **while Redis is down** every API call that needs the store answers `503` in the one
//!   JSON error shape (`{"error": {"code": "store_unavailable", ...}}`) with `Retry-After`,
//!   within a bound (the store's operation timeout is 2 s; the bound asserted is 5 s), and
//!   never a `500`, a hang or a dropped connection; `/readyz` says not ready;
//! - **after Redis is back** requests succeed again with the same issuer process (the
//!   connection manager reconnects; the Lua scripts are reloaded after `NOSCRIPT`), within
//!   a bound measured and printed;
//! - **no verification is approved twice**: every receipt of the run verifies and has a
//!   distinct `jti`;
//! - **what survives is what Redis persisted**:
//!   - a cache-style Redis (`--save "" --appendonly no`) loses every verification: the
//!     pending ones started before the kill answer `404` afterwards (the user must start
//!     again), and an approved one can never be approved again (`404`, not `200`);
//!   - with `--appendonly yes --appendfsync always` every acknowledged verification
//!     survives: pending ones are still `pending` and their right code approves them, and
//!     approved ones answer `409 already_used`.
//!
//! The load uses a test number (fixed code, never sent). A CI run restarts Redis once per
//! mode; `OTPGATE_SOAK=1` restarts it `OTPGATE_SOAK_REDIS_RESTARTS` times (default 5).
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use otpgate_test_support::fault::{
    Unexpected, knob, ms, open_config, receipts_unique, spawn_workers, stop_workers,
};
use otpgate_test_support::http::{Answer, client, jwks, send, send_check, send_start};
use otpgate_test_support::process::{Serve, free_port};
use otpgate_test_support::redis::Redis;
use serde_json::json;

const PHONE: &str = "+14155550100";
const CODE: &str = "424242";
const ISSUER: &str = "https://issuer.test";
/// No answer may take longer than this, Redis up or down.
const BOUND: Duration = Duration::from_secs(5);

fn write_config(dir: &Path, redis_url: &str) -> std::path::PathBuf {
    let store = format!(
        r#"kind = "redis"
url = "{redis_url}""#
    );
    let test_numbers = format!(r#"test_numbers = {{ "{PHONE}" = "{CODE}" }}"#);
    open_config(ISSUER, store, &test_numbers).write(dir)
}

#[derive(Default)]
struct Book {
    receipts: Mutex<Vec<(String, String)>>,
    tally: Mutex<BTreeMap<String, usize>>,
    unexpected: Unexpected,
    /// Checks answered 503 (their effect is unknown: decided at the end).
    check_unknown: Mutex<Vec<String>>,
    /// Verifications acknowledged (201) but gone (404) at their check: lost by Redis.
    lost: Mutex<Vec<String>>,
}

impl Book {
    fn count(&self, what: &str, a: &Answer) {
        *self
            .tally
            .lock()
            .unwrap()
            .entry(format!("{what} {} {}", a.status, a.code()))
            .or_insert(0) += 1;
    }

    /// The answer to `what`, counted; a transport error (or the bound passing) is noted and
    /// gives `None`.
    fn answered(&self, what: &str, sent: Result<Answer, reqwest::Error>) -> Option<Answer> {
        match sent {
            Ok(a) => {
                self.count(what, &a);
                Some(a)
            }
            Err(e) => {
                self.unexpected
                    .note(format!("{what}: transport error or past the bound: {e}"));
                None
            }
        }
    }

    /// A 503 must be the documented one: JSON error shape, `store_unavailable`,
    /// `Retry-After`, under the bound.
    fn check_503(&self, what: &str, a: &Answer) {
        if a.code() != "store_unavailable"
            || a.retry_after.is_none()
            || a.body["error"]["message"].as_str().is_none()
        {
            self.unexpected
                .note(format!("{what}: 503 not in the documented shape: {a:?}"));
        }
    }
}

async fn worker(
    http: reqwest::Client,
    base: String,
    book: Arc<Book>,
    stop: Arc<AtomicBool>,
    persistent: bool,
) {
    while !stop.load(Ordering::Relaxed) {
        let Some(a) = book.answered("start", send_start(&http, &base, PHONE, BOUND).await) else {
            continue;
        };
        match a.status {
            201 => {}
            503 => {
                book.check_503("start", &a);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            _ => {
                book.unexpected
                    .note(format!("start: {} {}", a.status, a.body));
                continue;
            }
        }
        let id = a.body["id"].as_str().unwrap().to_owned();
        let sent = send_check(&http, &base, &id, CODE, BOUND).await;
        let Some(a) = book.answered("check", sent) else {
            continue;
        };
        match a.status {
            200 => book
                .receipts
                .lock()
                .unwrap()
                .push((id, a.body["receipt"].as_str().unwrap().to_owned())),
            503 => {
                book.check_503("check", &a);
                book.check_unknown.lock().unwrap().push(id);
            }
            404 if !persistent => book.lost.lock().unwrap().push(id),
            _ => book
                .unexpected
                .note(format!("check {id}: {} {}", a.status, a.body)),
        }
    }
}

/// Opens `n` verifications on the test number; approves every other one. Returns
/// (pending ids, approved ids) and adds the receipts to `book`.
async fn seed(
    http: &reqwest::Client,
    base: &str,
    n: usize,
    book: &Book,
) -> (Vec<String>, Vec<String>) {
    let (mut pending, mut approved) = (Vec::new(), Vec::new());
    for i in 0..n {
        let a = send_start(http, base, PHONE, BOUND).await.unwrap();
        assert_eq!(a.status, 201, "{}", a.body);
        let id = a.body["id"].as_str().unwrap().to_owned();
        if i % 2 == 0 {
            pending.push(id);
        } else {
            let c = send_check(http, base, &id, CODE, BOUND).await.unwrap();
            assert_eq!(c.status, 200, "{}", c.body);
            book.receipts
                .lock()
                .unwrap()
                .push((id.clone(), c.body["receipt"].as_str().unwrap().to_owned()));
            approved.push(id);
        }
    }
    (pending, approved)
}

/// Direct probes while Redis is down: start, status, check, readiness.
async fn probe_down(http: &reqwest::Client, base: &str, some_id: &str) {
    let probes = [
        (
            "start",
            http.post(format!("{base}/v1/verifications"))
                .json(&json!({"phone": PHONE, "app": "shop"})),
        ),
        (
            "status",
            http.get(format!("{base}/v1/verifications/{some_id}")),
        ),
        (
            "check",
            http.post(format!("{base}/v1/verifications/{some_id}/check"))
                .json(&json!({ "code": CODE })),
        ),
    ];
    for (what, req) in probes {
        let a = send(req, BOUND).await.unwrap_or_else(|e| {
            panic!("{what} while Redis is down: no answer within {BOUND:?}: {e}")
        });
        assert_eq!(a.status, 503, "{what} while Redis is down: {a:?}");
        assert_eq!(a.code(), "store_unavailable", "{what}: {a:?}");
        assert!(
            a.retry_after.is_some(),
            "{what}: 503 without Retry-After: {a:?}"
        );
        assert!(a.took < BOUND, "{what} took {:?}", a.took);
        println!(
            "  while down: {what} → 503 store_unavailable, Retry-After {:?}, {} ms",
            a.retry_after,
            a.took.as_millis()
        );
    }
    let ready = send(http.get(format!("{base}/readyz")), BOUND)
        .await
        .unwrap();
    assert_eq!(ready.status, 503, "/readyz while Redis is down: {ready:?}");
}

async fn restart_under_load(persistent: bool, restarts: usize) {
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let redis_dir = dir.path().join("redis");
    std::fs::create_dir_all(&redis_dir).unwrap();
    let mode = if persistent {
        "appendonly always"
    } else {
        "no persistence"
    };
    let mut redis = if persistent {
        Redis::start(
            &redis_dir,
            &["--appendonly", "yes", "--appendfsync", "always"],
        )
    } else {
        Redis::start(&redis_dir, &[])
    };
    let config = write_config(dir.path(), &redis.url);
    let server = Serve::start(dir.path(), &config, free_port(), &[]);
    let http = client();
    let book = Arc::new(Book::default());
    let (pending, approved) = seed(&http, &server.base, 20, &book).await;

    let stop = Arc::new(AtomicBool::new(false));
    let workers = spawn_workers(8, &http, &server.base, |http, base, _| {
        worker(http, base, Arc::clone(&book), Arc::clone(&stop), persistent)
    });
    let mut recoveries = Vec::new();
    for r in 0..restarts {
        tokio::time::sleep(Duration::from_millis(700)).await;
        redis.kill9();
        let down = Instant::now();
        probe_down(&http, &server.base, &pending[0]).await;
        // Keep the load on a dead store a little longer.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        redis.restart();
        let up = Instant::now();
        // Back without restarting the issuer: the first 201 after the restart.
        loop {
            let a = send_start(&http, &server.base, PHONE, BOUND).await.unwrap();
            if a.status == 201 {
                break;
            }
            assert_eq!(a.status, 503, "{a:?}");
            assert!(
                up.elapsed() < Duration::from_secs(10),
                "the issuer did not recover within 10 s of Redis coming back: {a:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        recoveries.push(ms(up));
        println!(
            "[{mode}] restart {r}: Redis down {} ms, issuer serving again {} ms after Redis came back",
            up.duration_since(down).as_millis(),
            ms(up)
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_workers(&stop, workers).await;
    book.unexpected
        .assert_none(&format!("[{mode}] unexpected answers"));
    let tally = book.tally.lock().unwrap().clone();
    println!("[{mode}] load answers: {tally:?}");
    assert!(
        tally.keys().any(|k| k.starts_with("start 503")),
        "the load should have met the outage"
    );
    assert!(tally.get("check 200 ").copied().unwrap_or(0) > 0);

    // What survived.
    for id in &pending {
        let a = send_check(&http, &server.base, id, CODE, BOUND)
            .await
            .unwrap();
        if persistent {
            assert_eq!(a.status, 200, "[{mode}] pending before the kill: {a:?}");
            book.receipts
                .lock()
                .unwrap()
                .push((id.clone(), a.body["receipt"].as_str().unwrap().to_owned()));
        } else {
            assert_eq!(
                (a.status, a.code()),
                (404, "not_found"),
                "[{mode}] Redis without persistence forgets pending verifications: {a:?}"
            );
        }
    }
    for id in &approved {
        let a = send_check(&http, &server.base, id, CODE, BOUND)
            .await
            .unwrap();
        let want = if persistent {
            (409, "already_used")
        } else {
            (404, "not_found")
        };
        assert_eq!(
            (a.status, a.code()),
            want,
            "[{mode}] approved before the kill: {a:?}"
        );
    }
    let unknown = book.check_unknown.lock().unwrap().clone();
    let mut unknown_tally = BTreeMap::new();
    for id in &unknown {
        let a = send_check(&http, &server.base, id, CODE, BOUND)
            .await
            .unwrap();
        match a.status {
            200 => book
                .receipts
                .lock()
                .unwrap()
                .push((id.clone(), a.body["receipt"].as_str().unwrap().to_owned())),
            409 | 404 | 422 | 429 => {}
            _ => panic!("[{mode}] check answered 503 earlier, now {a:?}"),
        }
        *unknown_tally
            .entry(format!("{} {}", a.status, a.code()))
            .or_insert(0) += 1;
    }
    let lost = book.lost.lock().unwrap().len();
    assert!(
        !persistent || lost == 0,
        "[{mode}] appendonly always lost {lost} acknowledged verifications"
    );
    let keys = jwks(&http, &server.base).await;
    let receipts = book.receipts.lock().unwrap().clone();
    receipts_unique(&receipts, &keys, "shop", ISSUER);
    println!(
        "[{mode}] {restarts} restart(s): recoveries {recoveries:?} ms; {} receipts, all distinct; \
         {} checks answered 503 → later {unknown_tally:?}; {lost} acknowledged verifications lost; total {} ms",
        receipts.len(),
        unknown.len(),
        ms(t0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_without_persistence_restarted_under_load() {
    restart_under_load(false, knob("OTPGATE_SOAK_REDIS_RESTARTS", 1, 5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_with_appendonly_restarted_under_load() {
    restart_under_load(true, knob("OTPGATE_SOAK_REDIS_RESTARTS", 1, 5)).await;
}
