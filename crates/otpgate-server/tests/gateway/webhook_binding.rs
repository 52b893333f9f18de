//! Webhooks bound to their device (issue 16 item 4), against the real `otpgate serve` and two
//! emulated phones, each with its own signing key: phone `a` serves GB, phone `b` FR. A code
//! for a GB number goes to `a` (slow to report, so its message stays in flight). A `failed`
//! event for that message signed with `b`'s key is refused (403) and changes nothing: no
//! failover, no failure recorded. The same event signed with `a`'s key applies. A device
//! without a key of its own shares the gateway key, and the start says so.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::{Duration, Instant};

use otpgate_core::webhook::sign_smsgate;
use otpgate_test_support::http::{client, get_json, get_text, start};
use otpgate_test_support::process::{Phone, Serve, ServeToml, free_port};
use serde_json::json;

const KEY_A: &str = "phone-a-signing-key-0123456789";
const KEY_B: &str = "phone-b-signing-key-9876543210";

fn device(name: &str, phone: &Phone, region: &str, key_env: &str, pw_env: &str) -> String {
    format!(
        "[[gateways.devices]]\nname = \"{name}\"\nkind = \"sms-gate\"\nurl = \"{}\"\n\
         username = \"sms\"\npassword_env = \"{pw_env}\"\nsigning_key_env = \"{key_env}\"\n\
         regions = [\"{region}\"]\n",
        phone.base
    )
}

/// POSTs an sms-gate.app event about `message_id` signed with `key`: the HTTP status.
async fn event(base: &str, key: &str, id: &str, kind: &str, message_id: &str) -> u16 {
    let body = json!({
        "id": id,
        "event": kind,
        "deviceId": "x",
        "payload": {"messageId": message_id, "reason": "forged"},
    })
    .to_string();
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let sig = sign_smsgate(key, body.as_bytes(), &ts);
    client()
        .post(format!("{base}/v1/gateways/sms-gate/webhook"))
        .header("content-type", "application/json")
        .header("x-timestamp", ts)
        .header("x-signature", sig)
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn delivery_state(base: &str, id: &str) -> String {
    let v = get_json(&client(), &format!("{base}/v1/verifications/{id}")).await;
    v["delivery"]["state"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn wait_state(base: &str, id: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = delivery_state(base, id).await;
        if s == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "delivery stayed {s}, wanted {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_event_signed_by_another_device_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let hook = format!("http://127.0.0.1:{port}/v1/gateways/sms-gate/webhook");
    // `a` reports a minute later: its message stays in flight for the whole test.
    let a = Phone::start(dir.path(), "a", free_port(), KEY_A, &hook, 60_000, 0.0);
    let b = Phone::start(dir.path(), "b", free_port(), KEY_B, &hook, 10, 0.0);
    let config = ServeToml {
        discard_sends: false,
        policy: "[policy.pow]\nenabled = false\n".into(),
        tail: format!(
            "[gateways]\n{}{}",
            device("a", &a, "GB", "KEY_A", "PW_A"),
            device("b", &b, "FR", "KEY_B", "PW_B")
        ),
        ..ServeToml::new("https://otp.example.com")
    }
    .write(dir.path());
    let env = [
        ("KEY_A", KEY_A.to_owned()),
        ("KEY_B", KEY_B.to_owned()),
        ("PW_A", a.password.clone()),
        ("PW_B", b.password.clone()),
    ];
    let server = Serve::start(dir.path(), &config, port, &env);
    let base = &server.base;

    let (status, body) = start(&client(), base, "+447400900123").await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    wait_state(base, &id, "submitted").await;
    // The first code's first route: `{verification}.{version}.{route}`.
    let message = format!("{id}.1.1");

    // Signed by `b`, which never had the message: refused, nothing changes.
    assert_eq!(
        event(base, KEY_B, "ev-forged-1", "sms:failed", &message).await,
        403
    );
    assert_eq!(
        event(base, KEY_B, "ev-forged-2", "sms:delivered", &message).await,
        403
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(delivery_state(base, &id).await, "submitted");
    let metrics = get_text(&client(), &format!("{base}/metrics")).await;
    for line in [
        "otpgate_gateway_messages_total{event=\"failed\"} 0",
        "otpgate_gateway_messages_total{event=\"failover\"} 0",
        "otpgate_gateway_webhooks_total{result=\"rejected\"} 2",
    ] {
        assert!(metrics.contains(line), "{line} not in:\n{metrics}");
    }
    // An event about a route that was never taken changes nothing either.
    assert_eq!(
        event(
            base,
            KEY_A,
            "ev-unknown",
            "sms:failed",
            &format!("{id}.1.7")
        )
        .await,
        204
    );
    assert_eq!(delivery_state(base, &id).await, "submitted");

    // Signed by `a`, which holds it: applies (no other phone serves GB, so the code fails).
    assert_eq!(
        event(base, KEY_A, "ev-real", "sms:failed", &message).await,
        204
    );
    wait_state(base, &id, "failed").await;
    assert!(
        b.outbox(&client()).await.is_empty(),
        "b never sends a GB code"
    );
}

#[test]
fn devices_without_their_own_key_share_the_gateway_key_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServeToml {
        discard_sends: false,
        tail: "[gateways]\nwebhook_signing_key_env = \"SHARED_KEY\"\n\
               [[gateways.devices]]\nname = \"lonely\"\nkind = \"sms-gate\"\n\
               url = \"http://127.0.0.1:9\"\nusername = \"sms\"\npassword_env = \"PW\"\n"
            .into(),
        ..ServeToml::new("https://otp.example.com")
    }
    .write(dir.path());
    let env = [
        ("SHARED_KEY", "shared-signing-key-0123456789".to_owned()),
        ("PW", "x".to_owned()),
    ];
    let server = Serve::start(dir.path(), &config, free_port(), &env);
    // The warning is written at start; on a loaded machine it may land after the port opens.
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = std::fs::read_to_string(&server.proc.log).unwrap();
        if log.contains("lonely") || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        log.contains("share") && log.contains("lonely") && log.contains("signing_key_env"),
        "{log}"
    );
    assert!(!log.contains("shared-signing-key-0123456789"), "{log}");
}
