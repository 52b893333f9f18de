//! Phones failing mid-burst: one real `otpgate serve` with three sms-gate devices, each a
//! real `otpgate emulator` process (its own port, Basic auth, signed webhooks back to the
//! issuer), and a burst of real (non-test) starts to distinct numbers. What it proves:
//!
//! - `offline_and_flaky_phones_every_code_delivered_once`: phone A goes offline (its app
//!   answers 503: the emulator's `offline` knob through its control API) a third of the way
//!   into the burst, phone B fails half of its sends (`RESULT_ERROR_GENERIC_FAILURE`) from
//!   the start, phone C is healthy. **Every code is delivered** (`GET /v1/verifications/{id}`
//!   reaches `delivery.state = delivered`), and **nothing is sent twice**: across the three
//!   phones' outboxes each verification's SMS appears exactly once (each number exactly
//!   once), on the phone the delivery record names.
//! - `killed_phone_mid_burst_fails_over_and_never_sends_twice`: phone A's process is
//!   SIGKILLed a third of the way into the burst (B still fails half its sends). Every
//!   verification started after the kill is delivered by B or C; one started before is
//!   delivered, or was accepted by A before it died and stays with A (its fate is unknown
//!   to the issuer, which therefore does not send it again elsewhere); and no verification
//!   appears twice in the surviving outboxes or in one of them *and* on A.
//!
//! - `frozen_phone_that_resumes_never_sends_twice`: phone A's process is frozen (`SIGSTOP`)
//!   during a burst: sends routed to it time out (an ambiguous answer: A may have taken the
//!   message) and are retried on A with the same message id; since A cannot be asked about
//!   them either, they stay with A instead of being sent elsewhere; the health check takes A
//!   out and later starts go to B or C. A is then resumed (`SIGCONT`) and reads the requests
//!   waiting in its sockets: what it took, it sends; what it never got is failed over once a
//!   poll finds A answering without it. **Every code is delivered, none twice.** (Before
//!   the fix in `gateway/pool.rs` the timed-out sends were failed over at once and A, on
//!   waking, sent some of them too.)
//!
//! `OTPGATE_SOAK=1` makes the bursts longer (`OTPGATE_SOAK_BURST`, default 400 starts).
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use otpgate_test_support::fault::{knob, ms, open_config};
use otpgate_test_support::http::{client, send, send_start};
use otpgate_test_support::process::{Phone, Serve, ServeToml, free_port};
use serde_json::{Value, json};

const ISSUER: &str = "https://issuer.test";
const KEY: &str = "fault-webhook-signing-key";
/// The API key the views are read with (`delivery.gateway` is shown to such callers only).
const API_KEY: &str = "fault-api-key-0123456789abcdef";
const NAMES: [&str; 3] = ["phone-a", "phone-b", "phone-c"];

struct Rig {
    // Field order = drop order: the issuer goes first.
    server: Serve,
    phones: Vec<Phone>,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// Three emulators (A taking `a_delay_ms` per state change, B failing `b_failure_rate` of
/// its sends; 20 ms otherwise), and the issuer pointing at them.
fn rig(a_delay_ms: u64, b_failure_rate: f64) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let hook = format!("http://127.0.0.1:{port}/v1/gateways/sms-gate/webhook");
    let phones: Vec<Phone> = NAMES
        .iter()
        .map(|n| {
            let rate = if *n == "phone-b" { b_failure_rate } else { 0.0 };
            let delay = if *n == "phone-a" { a_delay_ms } else { 20 };
            Phone::start(dir.path(), n, free_port(), KEY, &hook, delay, rate)
        })
        .collect();
    let mut devices = String::new();
    for (n, p) in NAMES.iter().zip(&phones) {
        let env = format!("FAULT_PW_{}", n.replace('-', "_").to_uppercase());
        devices.push_str(&format!(
            r#"
[[gateways.devices]]
name = "{n}"
kind = "sms-gate"
url = "{}"
username = "sms"
password_env = "{env}"
budget_per_minute = 5000
android_limit = 20000
timeout_ms = 2000
"#,
            p.base
        ));
    }
    let config = ServeToml {
        discard_sends: false,
        tail: format!(
            r#"[gateways]
webhook_signing_key_env = "FAULT_SIGNING_KEY"
health_interval_secs = 1
poll_interval_secs = 1
{devices}"#
        ),
        // The views are read with an API key: only such callers see `delivery.gateway`.
        ..open_config(
            ISSUER,
            r#"kind = "embedded""#.to_owned(),
            r#"api_keys = ["env:FAULT_API_KEY"]"#,
        )
    }
    .write(dir.path());
    let mut env = vec![
        ("FAULT_SIGNING_KEY", KEY.to_owned()),
        ("FAULT_API_KEY", API_KEY.to_owned()),
    ];
    for (n, p) in NAMES.iter().zip(&phones) {
        let name: &'static str = match *n {
            "phone-a" => "FAULT_PW_PHONE_A",
            "phone-b" => "FAULT_PW_PHONE_B",
            _ => "FAULT_PW_PHONE_C",
        };
        env.push((name, p.password.clone()));
    }
    let server = Serve::start(dir.path(), &config, port, &env);
    Rig {
        server,
        phones,
        http: client(),
        _dir: dir,
    }
}

/// A distinct valid US number per index (`+1 415 xxx xxxx`, the exchange from the run).
fn number(run: u64, i: usize) -> String {
    format!("+1415{}{:04}", 200 + run % 700, i)
}

/// Sends `n` starts with `concurrency` in flight; calls `mid` once when a third are
/// acknowledged. Returns (id, number, acknowledged after `mid`) in order.
async fn burst<F, Fut>(
    rig: &Rig,
    n: usize,
    concurrency: usize,
    mid: F,
) -> Vec<(String, String, bool)>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    let run = u64::from(std::process::id()) * 7 + u64::from(rig.server.port);
    let next = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(AtomicUsize::new(0));
    let after = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let out = Arc::new(Mutex::new(Vec::new()));
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (http, base) = (rig.http.clone(), rig.server.base.clone());
            let (next, acked, after, out) = (
                Arc::clone(&next),
                Arc::clone(&acked),
                Arc::clone(&after),
                Arc::clone(&out),
            );
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return;
                    }
                    // Read before sending: "after" means the fault was already in place.
                    let late = after.load(Ordering::SeqCst);
                    let phone = number(run, i);
                    let a = send_start(&http, &base, &phone, Duration::from_secs(15))
                        .await
                        .unwrap();
                    assert_eq!(a.status, 201, "start {i}: {}", a.body);
                    out.lock().unwrap().push((
                        a.body["id"].as_str().unwrap().to_owned(),
                        phone,
                        late,
                    ));
                    acked.fetch_add(1, Ordering::Relaxed);
                    // Spread the burst a little so the fault lands in the middle of it.
                    tokio::time::sleep(Duration::from_millis(15)).await;
                }
            })
        })
        .collect();
    while acked.load(Ordering::Relaxed) < n / 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    mid().await;
    after.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    Arc::try_unwrap(out).unwrap().into_inner().unwrap()
}

/// Polls until every verification's delivery is terminal (or stuck for `within`); returns
/// each one's last view.
async fn settle(
    rig: &Rig,
    ids: &[String],
    within: Duration,
    done: impl Fn(&Value) -> bool,
) -> HashMap<String, Value> {
    let deadline = Instant::now() + within;
    let mut views = HashMap::new();
    loop {
        let mut open = 0;
        for id in ids {
            if views.get(id).is_some_and(&done) {
                continue;
            }
            let a = send(
                rig.http
                    .get(format!("{}/v1/verifications/{id}", rig.server.base))
                    .bearer_auth(API_KEY),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
            assert_eq!(a.status, 200, "{id}: {}", a.body);
            if !done(&a.body) {
                open += 1;
            }
            views.insert(id.clone(), a.body);
        }
        if open == 0 || Instant::now() > deadline {
            return views;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn delivered(v: &Value) -> bool {
    v["delivery"]["state"] == "delivered"
}

/// Outbox entries by verification id: (phone name, number) for each SMS that left.
async fn outboxes(rig: &Rig, which: &[usize]) -> HashMap<String, Vec<(&'static str, String)>> {
    let mut by_vid: HashMap<String, Vec<(&'static str, String)>> = HashMap::new();
    for &i in which {
        for (mid, number, _text) in rig.phones[i].outbox(&rig.http).await {
            // Message ids are `{verification_id}.{code_version}.{route}`.
            let vid = mid.rsplitn(3, '.').nth(2).unwrap_or(&mid).to_owned();
            by_vid.entry(vid).or_default().push((NAMES[i], number));
        }
    }
    by_vid
}

fn gateways(views: &HashMap<String, Value>) -> BTreeMap<String, usize> {
    let mut t = BTreeMap::new();
    for v in views.values() {
        *t.entry(format!(
            "{} via {}",
            v["delivery"]["state"].as_str().unwrap_or("?"),
            v["delivery"]["gateway"].as_str().unwrap_or("-")
        ))
        .or_insert(0) += 1;
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_and_flaky_phones_every_code_delivered_once() {
    let t0 = Instant::now();
    let rig = rig(20, 0.5);
    let n = knob("OTPGATE_SOAK_BURST", 60, 400);
    let started = burst(&rig, n, 6, || async {
        rig.phones[0]
            .control(&rig.http, json!({"offline": "unavailable"}))
            .await;
        println!("phone-a offline (503) at {} ms", ms(t0));
    })
    .await;
    println!("{n} starts acknowledged at {} ms", ms(t0));
    let ids: Vec<String> = started.iter().map(|(id, _, _)| id.clone()).collect();
    let views = settle(&rig, &ids, Duration::from_secs(30), delivered).await;
    println!("settled at {} ms: {:?}", ms(t0), gateways(&views));
    let sent = outboxes(&rig, &[0, 1, 2]).await;
    let mut per_phone = BTreeMap::new();
    for (id, number, late) in &started {
        let v = &views[id];
        assert!(delivered(v), "{id} not delivered: {v}");
        let copies = sent.get(id).cloned().unwrap_or_default();
        assert_eq!(
            copies.len(),
            1,
            "{id}: sent {} times: {copies:?}",
            copies.len()
        );
        let (phone, to) = &copies[0];
        assert_eq!(to, number, "{id}: sent to the wrong number");
        assert_eq!(
            v["delivery"]["gateway"].as_str(),
            Some(*phone),
            "{id}: the delivery record names another phone than the one that sent it"
        );
        if *late {
            assert_ne!(
                *phone, "phone-a",
                "{id} started after A went offline yet sent by A"
            );
        }
        *per_phone.entry(*phone).or_insert(0) += 1;
    }
    let total: usize = sent.values().map(Vec::len).sum();
    assert_eq!(
        total, n,
        "every SMS that left belongs to one of the burst's verifications, once"
    );
    assert!(per_phone.get("phone-c").copied().unwrap_or(0) > 0);
    println!(
        "every code delivered exactly once: {per_phone:?}; total {} ms",
        ms(t0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_phone_mid_burst_fails_over_and_never_sends_twice() {
    let t0 = Instant::now();
    // A slow phone A (400 ms per state change) holds accepted, unsent messages when killed.
    let rig = rig(400, 0.5);
    let n = knob("OTPGATE_SOAK_BURST", 60, 400);
    let pid = rig.phones[0].proc.pid();
    let started = burst(&rig, n, 6, || async move {
        // By pid: the process stays owned by its `Proc`, which reaps it on drop.
        signal(pid, "-KILL");
        println!("phone-a SIGKILLed at {} ms", ms(t0));
    })
    .await;
    println!("{n} starts acknowledged at {} ms", ms(t0));
    let ids: Vec<String> = started.iter().map(|(id, _, _)| id.clone()).collect();
    // A verification A accepted before dying may never settle: wait for the others.
    settle(&rig, &ids, Duration::from_secs(30), |v| {
        delivered(v) || v["delivery"]["gateway"] == "phone-a"
    })
    .await;
    // Give any message stranded on A a last chance to show a (wrong) failover.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let views = settle(&rig, &ids, Duration::from_secs(1), |_| true).await;
    println!("settled at {} ms: {:?}", ms(t0), gateways(&views));
    let sent = outboxes(&rig, &[1, 2]).await;
    let mut stranded = 0;
    for (id, number, late) in &started {
        let v = &views[id];
        let copies = sent.get(id).cloned().unwrap_or_default();
        assert!(
            copies.len() <= 1,
            "{id}: sent {} times: {copies:?}",
            copies.len()
        );
        let on_a = v["delivery"]["gateway"] == "phone-a";
        if on_a {
            // Accepted (and maybe sent) by A before it died: never again elsewhere.
            assert!(!late, "{id} started after A died, yet routed to A: {v}");
            assert!(copies.is_empty(), "{id}: on A and also sent by {copies:?}");
            if !delivered(v) {
                stranded += 1;
            }
            continue;
        }
        assert!(delivered(v), "{id} not delivered: {v}");
        assert_eq!(copies.len(), 1, "{id}: delivered by {v} but in no outbox");
        assert_eq!(&copies[0].1, number);
        assert_eq!(v["delivery"]["gateway"].as_str(), Some(copies[0].0));
    }
    let total: usize = sent.values().map(Vec::len).sum();
    assert!(total <= n);
    println!(
        "no double send; {stranded} verification(s) accepted by phone-a before the kill stay with it \
         (state unknown to the issuer); total {} ms",
        ms(t0)
    );
}

/// `SIGSTOP`/`SIGCONT` of a phone's process (a frozen phone: Doze, a stalled radio, a
/// debugger): connections are accepted by the kernel, nothing answers.
fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_phone_that_resumes_never_sends_twice() {
    let t0 = Instant::now();
    let rig = rig(20, 0.0);
    let pid = rig.phones[0].proc.pid();
    signal(pid, "-STOP");
    // Starts while A is frozen: those routed to A time out (an ambiguous answer: A may have
    // taken the message) until the health check takes A out.
    let n = 12;
    let started = burst(&rig, n, 4, || async {}).await;
    let ids: Vec<String> = started.iter().map(|(id, _, _)| id.clone()).collect();
    // While A is frozen: a send that timed out on A and whose fate A cannot tell stays with
    // A (sending it elsewhere could send it twice); everything else is delivered by B or C.
    let views = settle(&rig, &ids, Duration::from_secs(20), |v| {
        delivered(v) || v["delivery"]["gateway"] == "phone-a"
    })
    .await;
    println!("while A frozen, at {} ms: {:?}", ms(t0), gateways(&views));
    signal(pid, "-CONT");
    // A wakes up and reads the requests waiting in its sockets; what it took it sends, what
    // it never got is failed over once a poll finds A answering without it.
    let views = settle(&rig, &ids, Duration::from_secs(20), delivered).await;
    let sent = outboxes(&rig, &[0, 1, 2]).await;
    println!("after A resumed, at {} ms: {:?}", ms(t0), gateways(&views));
    for (i, p) in rig.phones.iter().enumerate() {
        let ids: Vec<String> = p.outbox(&rig.http).await.into_iter().map(|m| m.0).collect();
        println!("{} outbox: {ids:?}", NAMES[i]);
    }
    let mut twice = Vec::new();
    for (id, _, _) in &started {
        let copies = sent.get(id).cloned().unwrap_or_default();
        if copies.len() > 1 {
            twice.push(format!("{id}: {copies:?}"));
        }
    }
    assert!(
        twice.is_empty(),
        "sent twice after a timed-out send was failed over:\n{}",
        twice.join("\n")
    );
    for (id, number, _) in &started {
        let v = &views[id];
        assert!(delivered(v), "{id} not delivered: {v}");
        let copies = &sent[id];
        assert_eq!(&copies[0].1, number);
        assert_eq!(v["delivery"]["gateway"].as_str(), Some(copies[0].0), "{id}");
    }
    println!("no double send; total {} ms", ms(t0));
}
