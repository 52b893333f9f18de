//! The AWS SNS fallback against moto's server mode (PyPI `moto[server]`, a real HTTP server
//! that checks SigV4 once its authentication is on), not only against a local stub: an IAM
//! user allowed `sns:Publish` is made while authentication is off, then it is turned on
//! (`POST /moto-api/reset-auth 0`, the server-mode form of `INITIAL_NO_AUTH_ACTION_COUNT=0`).
//! A Publish signed with the user's key is recorded by moto with the SMS text; one signed with
//! a wrong secret is refused (`SignatureDoesNotMatch`) and the code fails, nothing recorded.
//!
//! moto is found at `OTPGATE_MOTO_SERVER` or in the venv `scripts/setup.sh` makes
//! (`~/.cache/otpgate/moto-venv/bin/moto_server`).
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use otpgate_core::wire::DeliveryState;
use otpgate_server::clock::{Clock, SystemClock};
use otpgate_server::gateway::{DeviceConfig, GatewaysConfig, Kind, LiteralSecrets, Secret};
use otpgate_test_support::process::free_port;
use otpgate_test_support::rig::{delivery_state, memory_pool, pending_record, send_job};
use serde_json::Value;

struct Moto {
    child: Child,
    base: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_server() -> PathBuf {
    if let Some(p) = std::env::var_os("OTPGATE_MOTO_SERVER") {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME").map_or_else(
        || {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default()
                .join(".cache")
        },
        PathBuf::from,
    );
    let p = cache.join("otpgate/moto-venv/bin/moto_server");
    assert!(
        p.exists(),
        "moto is not installed: run scripts/setup.sh (it makes {}) or set OTPGATE_MOTO_SERVER",
        p.display()
    );
    p
}

async fn start_moto() -> Moto {
    let port = free_port();
    let child = Command::new(moto_server())
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(
            std::fs::File::create(std::env::temp_dir().join(format!("moto-{port}.log"))).unwrap(),
        )
        .spawn()
        .expect("moto_server starts");
    let moto = Moto {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http
        .get(format!("{}/moto-api/data.json", moto.base))
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "moto_server did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    moto
}

/// An IAM query API call (unsigned: only while moto's authentication is off).
async fn iam(moto: &Moto, params: &[(&str, &str)]) -> String {
    let mut form: Vec<(&str, &str)> = vec![("Version", "2010-05-08")];
    form.extend_from_slice(params);
    let res = reqwest::Client::new()
        .post(format!("{}/", moto.base))
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20260101/us-east-1/iam/aws4_request",
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_encode(&form))
        .send()
        .await
        .unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    assert!(status.is_success(), "{params:?}: {status} {text}");
    text
}

fn form_encode(pairs: &[(&str, &str)]) -> String {
    let mut url = reqwest::Url::parse("http://form.invalid/").unwrap();
    url.query_pairs_mut().extend_pairs(pairs);
    url.query().unwrap_or_default().to_owned()
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> &'a str {
    let start = text.find(open).expect(open) + open.len();
    let end = text[start..].find(close).expect(close) + start;
    &text[start..end]
}

/// The SMS moto recorded: `(phone, text)`.
async fn recorded(moto: &Moto) -> Vec<(String, String)> {
    let v: Value = reqwest::get(format!("{}/moto-api/data.json", moto.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["sns"]["SMS"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|m| {
                    (
                        m["phone_number"].as_str().unwrap_or_default().to_owned(),
                        m["message"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn sns_device(moto: &Moto, access_key: &str, secret: &str) -> DeviceConfig {
    let mut d = DeviceConfig::new("sns", Kind::Sns, Some(moto.base.clone()));
    d.region = Some("us-east-1".into());
    d.username = Some(access_key.to_owned());
    d.with_secrets(LiteralSecrets {
        password: Some(Secret::new(secret)),
        token: None,
        signing_key: None,
        passphrase: None,
    })
}

async fn send_through(device: DeviceConfig, n: u32) -> (String, DeliveryState) {
    let mut cfg = GatewaysConfig::default().with_signing_key("k-0123456789abcdef");
    cfg.devices = vec![device];
    let (pool, store) = memory_pool(cfg);
    let vid = format!("v_{n:0>22}");
    let rec = pending_record(&vid, "+447911123456", 1, SystemClock.now_ms(), 120_000);
    store.create(&rec).await.expect("create");
    let job = send_job(&rec, format!("{n:06} is your code"));
    let _ = otpgate_server::gateway::Dispatcher::dispatch(&*pool, job).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = delivery_state(&store, &vid).await;
        if matches!(s, DeliveryState::Sent | DeliveryState::Failed) || Instant::now() > deadline {
            return (vid, s);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sns_publish_is_accepted_by_moto_with_authentication_on() {
    let moto = start_moto().await;
    iam(&moto, &[("Action", "CreateUser"), ("UserName", "otpgate")]).await;
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sns:Publish","Resource":"*"}]}"#;
    iam(
        &moto,
        &[
            ("Action", "PutUserPolicy"),
            ("UserName", "otpgate"),
            ("PolicyName", "publish"),
            ("PolicyDocument", policy),
        ],
    )
    .await;
    let key = iam(
        &moto,
        &[("Action", "CreateAccessKey"), ("UserName", "otpgate")],
    )
    .await;
    let access_key = between(&key, "<AccessKeyId>", "</AccessKeyId>").to_owned();
    let secret = between(&key, "<SecretAccessKey>", "</SecretAccessKey>").to_owned();
    // Authentication on: every request from now on must be signed by a known key.
    let res = reqwest::Client::new()
        .post(format!("{}/moto-api/reset-auth", moto.base))
        .body("0")
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());

    // A wrong secret: refused by moto's SigV4 check, the code fails, nothing recorded.
    let (_, state) = send_through(sns_device(&moto, &access_key, "not-the-secret-key"), 1).await;
    assert_eq!(state, DeliveryState::Failed);
    assert!(
        recorded(&moto).await.is_empty(),
        "a forged Publish was recorded"
    );

    // The right one: moto records the SMS, the delivery is `sent`.
    let (_, state) = send_through(sns_device(&moto, &access_key, &secret), 2).await;
    assert_eq!(
        state,
        DeliveryState::Sent,
        "{}",
        std::fs::read_to_string(std::env::temp_dir().join(format!(
            "moto-{}.log",
            moto.base.rsplit(':').next().unwrap()
        )))
        .unwrap_or_default()
    );
    let sms = recorded(&moto).await;
    assert_eq!(sms.len(), 1, "{sms:?}");
    assert_eq!(sms[0].0, "+447911123456");
    assert!(sms[0].1.contains("000002 is your code"), "{sms:?}");
}
