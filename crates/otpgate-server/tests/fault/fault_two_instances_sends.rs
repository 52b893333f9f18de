//! Sends that outlive their instance: two real `otpgate serve` processes on one Redis
//! (same keys, same `[gateways]`), one of them SIGKILLed while it holds sends.
//!
//! - `killed_instance_sends_are_taken_over_and_delivered_once`: a slow sms-gate phone
//!   (`otpgate emulator`, 4 s per state change; its webhooks go to instance A only) takes
//!   a burst of starts made on A; A is killed while they wait on the phone. B takes each
//!   send over when its lease runs out (15 s), asks the phone where the message is and
//!   follows it to `delivered` (A's webhooks are lost with A). Every code is delivered, and
//!   the phone's outbox holds each verification's SMS exactly once.
//! - `multiotp_phone_polling_the_other_instance_gets_every_message_once`: starts on A queue
//!   their SMS for a multiOTP phone; A is killed; the phone polls B and gets every message
//!   exactly once (the outbox is the store's), reports them delivered to B, and B records it.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use otpgate_test_support::fault::open_config;
use otpgate_test_support::http::{client, send, send_start};
use otpgate_test_support::process::{Phone, Serve, free_port};
use otpgate_test_support::redis::TestRedis;
use serde_json::{Value, json};

const ISSUER: &str = "https://issuer.test";
const KEY: &str = "fault-webhook-signing-key";
const API_KEY: &str = "fault-api-key-0123456789abcdef";

/// A and B on one Redis with `[gateways]` = `gateways`, the same keys, `env` added.
fn two_issuers(
    dir: &std::path::Path,
    redis: &TestRedis,
    ports: (u16, u16),
    gateways: &str,
    env: &[(&'static str, String)],
) -> (Serve, Serve) {
    let prefix = format!("two{}:", otpgate_server::random::id("").unwrap());
    let mut toml = open_config(
        ISSUER,
        format!("kind = \"redis\"\nkey_prefix = \"{prefix}\""),
        r#"api_keys = ["env:FAULT_API_KEY"]"#,
    );
    toml.discard_sends = false;
    toml.tail = gateways.to_owned();
    let config = toml.write(dir);
    let pem = {
        use ed25519_dalek::pkcs8::EncodePrivateKey as _;
        ed25519_dalek::SigningKey::from_bytes(&[7u8; 32])
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .unwrap()
            .to_string()
    };
    let start = |name: &str, port: u16| {
        let mut all = vec![
            ("OTPGATE_STORE", redis.url.clone()),
            ("OTPGATE_DATA_DIR", dir.join(name).display().to_string()),
            ("OTPGATE_RECEIPT_KEY", pem.clone()),
            ("OTPGATE_CODE_KEY", STANDARD.encode([1u8; 32])),
            ("OTPGATE_POW_KEY", STANDARD.encode([2u8; 32])),
            ("OTPGATE_PSEUDONYM_KEY", STANDARD.encode([3u8; 32])),
            ("FAULT_API_KEY", API_KEY.to_owned()),
            ("OTPGATE_LOG", "info".to_owned()),
        ];
        all.extend(env.iter().cloned());
        let sub = dir.join(format!("{name}-cwd"));
        std::fs::create_dir_all(&sub).unwrap();
        Serve::start(&sub, &config, port, &all)
    };
    (start("a", ports.0), start("b", ports.1))
}

/// A distinct valid US number per index.
fn number(i: usize) -> String {
    format!("+1415{}{:04}", 200 + std::process::id() % 700, i)
}

async fn view(http: &reqwest::Client, base: &str, id: &str) -> Value {
    let a = send(
        http.get(format!("{base}/v1/verifications/{id}"))
            .bearer_auth(API_KEY),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(a.status, 200, "{id}: {}", a.body);
    a.body
}

/// Waits until every verification's delivery state is `state` on `base`; the views.
async fn wait_all(
    http: &reqwest::Client,
    base: &str,
    ids: &[String],
    state: &str,
    within: Duration,
) -> HashMap<String, Value> {
    let deadline = Instant::now() + within;
    let mut views = HashMap::new();
    loop {
        let mut open = 0;
        for id in ids {
            if views
                .get(id)
                .is_some_and(|v: &Value| v["delivery"]["state"] == state)
            {
                continue;
            }
            let v = view(http, base, id).await;
            if v["delivery"]["state"] != state {
                open += 1;
            }
            views.insert(id.clone(), v);
        }
        if open == 0 || Instant::now() > deadline {
            return views;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_instance_sends_are_taken_over_and_delivered_once() {
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let (port_a, port_b) = (free_port(), free_port());
    // The phone reports to A only: after A dies, only B's takeover can follow its sends.
    let hook = format!("http://127.0.0.1:{port_a}/v1/gateways/sms-gate/webhook");
    let phone = Phone::start(dir.path(), "slow", free_port(), KEY, &hook, 4_000, 0.0);
    let gateways = format!(
        r#"[gateways]
webhook_signing_key_env = "FAULT_SIGNING_KEY"
health_interval_secs = 1
poll_interval_secs = 1
[[gateways.devices]]
name = "slow"
kind = "sms-gate"
url = "{}"
username = "sms"
password_env = "FAULT_PW"
budget_per_minute = 5000
android_limit = 20000
timeout_ms = 2000
"#,
        phone.base
    );
    let env = [
        ("FAULT_SIGNING_KEY", KEY.to_owned()),
        ("FAULT_PW", phone.password.clone()),
    ];
    let (mut a, b) = two_issuers(dir.path(), &redis, (port_a, port_b), &gateways, &env);
    let http = client();
    let mut ids = Vec::new();
    for i in 0..12 {
        let s = send_start(&http, &a.base, &number(i), Duration::from_secs(15))
            .await
            .unwrap();
        assert_eq!(s.status, 201, "start {i}: {}", s.body);
        ids.push(s.body["id"].as_str().unwrap().to_owned());
    }
    // Every send is with the phone (submitted), none further yet (4 s per state).
    let views = wait_all(&http, &b.base, &ids, "submitted", Duration::from_secs(10)).await;
    let states: Vec<&Value> = views.values().map(|v| &v["delivery"]["state"]).collect();
    assert!(
        states.iter().all(|s| *s == "submitted"),
        "all with the phone before the kill: {states:?}"
    );
    let killed = Instant::now();
    a.kill9();
    let views = wait_all(&http, &b.base, &ids, "delivered", Duration::from_secs(60)).await;
    let late: Vec<_> = views
        .iter()
        .filter(|(_, v)| v["delivery"]["state"] != "delivered")
        .map(|(id, v)| format!("{id}: {}", v["delivery"]))
        .collect();
    assert!(late.is_empty(), "every code delivered through B: {late:#?}");
    eprintln!(
        "two instances: A killed with 12 sends on a slow phone; all delivered, followed by B, \
         {:?} after the kill",
        killed.elapsed()
    );
    let mut per_vid: HashMap<String, usize> = HashMap::new();
    for (mid, _, _) in phone.outbox(&http).await {
        let vid = mid.rsplitn(3, '.').nth(2).unwrap_or(&mid).to_owned();
        *per_vid.entry(vid).or_default() += 1;
    }
    for id in &ids {
        assert_eq!(
            per_vid.get(id),
            Some(&1),
            "{id} sent exactly once: {per_vid:?}"
        );
    }
    let log = std::fs::read_to_string(&b.proc.log).unwrap();
    assert!(
        log.contains("took over an in-flight send"),
        "B took them over:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiotp_phone_polling_the_other_instance_gets_every_message_once() {
    let redis = TestRedis::start();
    let dir = tempfile::tempdir().unwrap();
    let gateways = r#"[gateways]
health_interval_secs = 1
[[gateways.devices]]
name = "mo"
kind = "multiotp"
username = "gw"
password_env = "FAULT_MO_PW"
budget_per_minute = 5000
android_limit = 20000
"#;
    let env = [("FAULT_MO_PW", "mo-pass".to_owned())];
    let (mut a, b) = two_issuers(
        dir.path(),
        &redis,
        (free_port(), free_port()),
        gateways,
        &env,
    );
    let http = client();
    let mut ids = Vec::new();
    for i in 0..10 {
        let s = send_start(&http, &a.base, &number(100 + i), Duration::from_secs(15))
            .await
            .unwrap();
        assert_eq!(s.status, 201, "start {i}: {}", s.body);
        ids.push(s.body["id"].as_str().unwrap().to_owned());
    }
    wait_all(&http, &b.base, &ids, "submitted", Duration::from_secs(10)).await;
    a.kill9();
    let url = format!("{}/v1/gateways/multiotp/mo", b.base);
    let poll = |body: Value| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            http.post(&url)
                .basic_auth("gw", Some("mo-pass"))
                .json(&body)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let mut got: HashMap<String, usize> = HashMap::new();
    let mut updates = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < ids.len() && Instant::now() < deadline {
        for m in poll(json!({})).await["messages"].as_array().unwrap() {
            let id = m["id"].as_str().unwrap().to_owned();
            assert!(m["content"].as_str().unwrap().contains("code"), "{m}");
            updates.push(json!({"id": id, "status": "DELIVERED"}));
            *got.entry(id).or_default() += 1;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A few more polls: nothing comes twice.
    for _ in 0..3 {
        let again = poll(json!({})).await;
        for m in again["messages"].as_array().unwrap() {
            *got.entry(m["id"].as_str().unwrap().to_owned()).or_default() += 1;
        }
    }
    let mut vids: Vec<String> = got
        .keys()
        .map(|mid| mid.rsplitn(3, '.').nth(2).unwrap().to_owned())
        .collect();
    vids.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(vids, want, "every queued message, through B");
    assert!(got.values().all(|n| *n == 1), "each once: {got:?}");
    poll(json!({"updates": updates})).await;
    let views = wait_all(&http, &b.base, &ids, "delivered", Duration::from_secs(10)).await;
    assert!(
        views
            .values()
            .all(|v| v["delivery"]["state"] == "delivered"),
        "B recorded the phone's reports"
    );
}
