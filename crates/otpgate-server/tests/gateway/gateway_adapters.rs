//! The other adapters, each against a real local HTTP server speaking its wire format:
//! TextBee, multiOTP (the phone polls us), the generic signed webhook, and the commercial
//! fallbacks (Twilio, SNS) used only when every phone failed.
#![allow(missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use otpgate_core::wire::DeliveryState;
use otpgate_server::clock::{Clock, SystemClock};
use otpgate_server::emulator::{Emulator, EmulatorConfig, Knobs};
use otpgate_server::gateway::adapter::webhook_signature;
use otpgate_server::gateway::{
    DeviceConfig, Dispatcher, GatewaysConfig, Kind, LiteralSecrets, Pool, Secret, SendJob,
};
use otpgate_server::store::Store;
use otpgate_test_support::http::{get_json_auth, get_status};
use otpgate_test_support::rig::{
    delivery_state, listen, memory_pool, pending_record, send_job, serve_phone, serve_router,
    stored,
};
use serde_json::{Value, json};

type Seen = Arc<Mutex<Vec<(String, HeaderMap, Bytes)>>>;

/// A stub server: records every request, answers with `answer(path, body)`.
async fn stub(answer: fn(&str, &[u8]) -> (u16, String)) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri, h: HeaderMap, b: Bytes| {
        let s = s.clone();
        async move {
            let path = uri.path().to_owned();
            let (status, body) = answer(&path, &b);
            s.lock().expect("lock").push((path, h, b));
            (
                StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
                [("content-type", "application/json")],
                body,
            )
                .into_response()
        }
    });
    let url = serve_router(app).await;
    (url, seen)
}

struct Rig {
    pool: Arc<Pool>,
    store: Arc<dyn Store>,
    base: String,
    http: reqwest::Client,
}

fn secrets(password: Option<&str>, token: Option<&str>, key: Option<&str>) -> LiteralSecrets {
    LiteralSecrets {
        password: password.map(Secret::new),
        token: token.map(Secret::new),
        signing_key: key.map(Secret::new),
        passphrase: None,
    }
}

async fn rig(devices: Vec<DeviceConfig>, with_failing_phone: bool) -> Rig {
    let (listener, base) = listen().await;
    let mut all = Vec::new();
    if with_failing_phone {
        let mut cfg =
            EmulatorConfig::new("sms", Some("pw".into()), Some("k-0123456789abcdef".into()));
        cfg.knobs = Knobs {
            delay_ms: 10,
            failure_rate: 1.0,
            webhook_retry_base_ms: 50,
            ..Knobs::default()
        };
        cfg.webhooks = vec![format!("{base}/v1/gateways/sms-gate/webhook")];
        let url = serve_phone(&Emulator::new(cfg)).await;
        let mut d = DeviceConfig::new("phone", Kind::SmsGate, Some(url));
        d.username = Some("sms".into());
        all.push(d.with_secrets(secrets(Some("pw"), None, None)));
    }
    all.extend(devices);
    let mut cfg = GatewaysConfig::default().with_signing_key("k-0123456789abcdef");
    cfg.devices = all;
    let (pool, store) = memory_pool(cfg);
    let app = pool.routes();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Rig {
        pool,
        store,
        base,
        http: reqwest::Client::new(),
    }
}

impl Rig {
    async fn job(&self, n: u32) -> SendJob {
        let vid = format!("v_{n:0>22}");
        let now = SystemClock.now_ms();
        let rec = pending_record(&vid, "+447911123456", 1, now, 120_000);
        self.store.create(&rec).await.expect("create");
        send_job(&rec, "123456 is your code")
    }

    async fn state(&self, vid: &str) -> DeliveryState {
        delivery_state(&self.store, vid).await
    }

    async fn wait(&self, vid: &str, want: DeliveryState) -> DeliveryState {
        for _ in 0..400 {
            let s = self.state(vid).await;
            if s == want {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.state(vid).await
    }
}

async fn wait_seen(seen: &Seen, n: usize) {
    for _ in 0..400 {
        if seen.lock().expect("lock").len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn textbee_send_and_signed_webhooks() {
    let (url, seen) = stub(|_, _| {
        (201, json!({"data": {"success": true, "message": "SMS added to queue for processing", "smsBatchId": "batch-1", "recipientCount": 1}}).to_string())
    })
    .await;
    let mut d = DeviceConfig::new("tb", Kind::TextBee, Some(format!("{url}/api/v1")));
    d.device_id = Some("dev123".into());
    let r = rig(
        vec![d.with_secrets(secrets(
            None,
            Some("api-key-1"),
            Some("tb-secret-0123456789"),
        ))],
        false,
    )
    .await;
    let job = r.job(1).await;
    r.pool.dispatch(job.clone()).await.expect("dispatch");
    assert_eq!(
        r.wait(&job.verification_id, DeliveryState::Submitted).await,
        DeliveryState::Submitted
    );
    let (path, h, body) = seen.lock().expect("lock")[0].clone();
    assert_eq!(path, "/api/v1/gateway/devices/dev123/send-sms");
    assert_eq!(
        h.get("x-api-key").and_then(|v| v.to_str().ok()),
        Some("api-key-1")
    );
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(
        v,
        json!({"message": "123456 is your code", "recipients": ["+447911123456"]})
    );

    let hook = format!("{}/v1/gateways/textbee/webhook", r.base);
    let event = json!({"smsBatchId": "batch-1", "event": "MESSAGE_DELIVERED"}).to_string();
    let forged = r
        .http
        .post(&hook)
        .header("X-Signature", "00".repeat(32))
        .body(event.clone())
        .send()
        .await
        .expect("post");
    assert_eq!(forged.status().as_u16(), 401);
    assert_eq!(
        r.state(&job.verification_id).await,
        DeliveryState::Submitted
    );
    let sig = otpgate_core::webhook::sign_textbee("tb-secret-0123456789", event.as_bytes());
    let ok = r
        .http
        .post(&hook)
        .header("X-Signature", &sig)
        .body(event.clone())
        .send()
        .await
        .expect("post");
    assert_eq!(ok.status().as_u16(), 204);
    assert_eq!(
        r.state(&job.verification_id).await,
        DeliveryState::Delivered
    );
    let replay = r
        .http
        .post(&hook)
        .header("X-Signature", &sig)
        .body(event)
        .send()
        .await
        .expect("post");
    assert_eq!(replay.status().as_u16(), 204);
    assert_eq!(r.pool.metrics().webhooks_duplicate, 1);
}

#[tokio::test]
async fn multiotp_phone_polls_for_messages_and_reports() {
    let mut d = DeviceConfig::new("m1", Kind::MultiOtp, None);
    d.username = Some("gw".into());
    let r = rig(
        vec![d.with_secrets(secrets(Some("gw-pass"), None, None))],
        false,
    )
    .await;
    let url = format!("{}/v1/gateways/multiotp/m1", r.base);
    let v: Value = get_json_auth(&r.http, &url, "gw", "gw-pass").await;
    assert_eq!(v, json!({"medic-gateway": true}));
    let bad = r
        .http
        .get(&url)
        .basic_auth("gw", Some("nope"))
        .send()
        .await
        .expect("get");
    assert_eq!(bad.status().as_u16(), 401);
    assert_eq!(
        bad.json::<Value>().await.expect("json")["error"]["code"],
        "unauthorized"
    );
    assert_eq!(
        get_status(&r.http, &format!("{}/v1/gateways/multiotp/other", r.base)).await,
        404
    );

    let job = r.job(2).await;
    r.pool.dispatch(job.clone()).await.expect("dispatch");
    r.wait(&job.verification_id, DeliveryState::Submitted).await;
    let poll = |body: Value| {
        let (http, url) = (r.http.clone(), url.clone());
        async move {
            http.post(&url)
                .basic_auth("gw", Some("gw-pass"))
                .json(&body)
                .send()
                .await
                .expect("post")
                .json::<Value>()
                .await
                .expect("json")
        }
    };
    let mid = format!("{}.1.1", job.verification_id);
    let got = poll(json!({"messages": [], "updates": []})).await;
    assert_eq!(
        got,
        json!({"messages": [{"id": mid, "to": "+447911123456", "content": "123456 is your code"}]})
    );
    assert_eq!(
        poll(json!({})).await,
        json!({"messages": []}),
        "handed out once"
    );
    poll(json!({"updates": [{"id": mid, "status": "SENT"}]})).await;
    assert_eq!(r.state(&job.verification_id).await, DeliveryState::Sent);
    poll(json!({"updates": [{"id": mid, "status": "DELIVERED"}, {"id": "unknown.1.1", "status": "FAILED"}]})).await;
    assert_eq!(
        r.state(&job.verification_id).await,
        DeliveryState::Delivered
    );
    let bad = r
        .http
        .post(&url)
        .basic_auth("gw", Some("gw-pass"))
        .body("[1]")
        .send()
        .await
        .expect("post");
    assert_eq!(bad.status().as_u16(), 400);
}

#[tokio::test]
async fn generic_webhook_is_signed_and_reports_back() {
    let (url, seen) = stub(|_, _| (200, "{}".into())).await;
    let d = DeviceConfig::new("hook", Kind::Webhook, Some(format!("{url}/send")));
    let r = rig(
        vec![d.with_secrets(secrets(None, None, Some("hook-key-0123456789")))],
        false,
    )
    .await;
    let job = r.job(3).await;
    r.pool.dispatch(job.clone()).await.expect("dispatch");
    wait_seen(&seen, 1).await;
    let (_, h, body) = seen.lock().expect("lock")[0].clone();
    let ts = h
        .get("x-otpgate-timestamp")
        .and_then(|v| v.to_str().ok())
        .expect("ts");
    let sig = h
        .get("x-otpgate-signature")
        .and_then(|v| v.to_str().ok())
        .expect("sig");
    assert_eq!(sig, webhook_signature("hook-key-0123456789", ts, &body));
    let v: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["id"], format!("{}.1.1", job.verification_id));
    assert_eq!(v["to"], "+447911123456");
    assert!(v["ttl"].as_u64().is_some_and(|t| t > 100 && t <= 120));

    let events = format!("{}/v1/gateways/webhook/events", r.base);
    let ev = json!({"id": "ev-1", "message_id": v["id"], "state": "delivered"}).to_string();
    let now = SystemClock.now_secs().to_string();
    let forged = r
        .http
        .post(&events)
        .header("X-Otpgate-Timestamp", &now)
        .header("X-Otpgate-Signature", "ab")
        .body(ev.clone())
        .send()
        .await
        .expect("post");
    assert_eq!(forged.status().as_u16(), 401);
    let sig = webhook_signature("hook-key-0123456789", &now, ev.as_bytes());
    let ok = r
        .http
        .post(&events)
        .header("X-Otpgate-Timestamp", &now)
        .header("X-Otpgate-Signature", sig)
        .body(ev)
        .send()
        .await
        .expect("post");
    assert_eq!(ok.status().as_u16(), 204);
    assert_eq!(
        r.wait(&job.verification_id, DeliveryState::Delivered).await,
        DeliveryState::Delivered
    );
}

#[tokio::test]
async fn twilio_is_used_only_when_every_phone_failed() {
    let (url, seen) = stub(|path, _| {
        if path.ends_with("/Messages.json") {
            (201, json!({"sid": "SM123", "status": "queued"}).to_string())
        } else {
            (
                200,
                json!({"sid": "SM123", "status": "delivered"}).to_string(),
            )
        }
    })
    .await;
    let mut d = DeviceConfig::new("twilio", Kind::Twilio, Some(url));
    d.username = Some("AC42".into());
    d.from = Some("+14155550111".into());
    let r = rig(
        vec![d.with_secrets(secrets(Some("tw-token"), None, None))],
        true,
    )
    .await;
    let job = r.job(4).await;
    r.pool.dispatch(job.clone()).await.expect("dispatch");
    assert_eq!(
        r.wait(&job.verification_id, DeliveryState::Delivered).await,
        DeliveryState::Delivered
    );
    let reqs = seen.lock().expect("lock").clone();
    let (path, h, body) = &reqs[0];
    assert_eq!(path, "/2010-04-01/Accounts/AC42/Messages.json");
    use base64::Engine as _;
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("AC42:tw-token")
    );
    assert_eq!(
        h.get("authorization").and_then(|v| v.to_str().ok()),
        Some(auth.as_str())
    );
    let form = String::from_utf8(body.to_vec()).expect("utf8");
    assert!(
        form.contains("To=%2B447911123456")
            && form.contains("From=%2B14155550111")
            && form.contains("Body=123456+is+your+code"),
        "{form}"
    );
    assert!(
        reqs.iter()
            .filter(|(p, _, _)| p.ends_with("/Messages.json"))
            .count()
            == 1,
        "sent once"
    );
    let rec = stored(&r.store, &job.verification_id).await;
    assert_eq!(rec.delivery.gateway.as_deref(), Some("twilio"));
}

#[tokio::test]
async fn sns_publish_is_sigv4_signed_fallback() {
    let (url, seen) = stub(|_, _| {
        (200, "<PublishResponse><PublishResult><MessageId>abc-123</MessageId></PublishResult></PublishResponse>".into())
    })
    .await;
    let mut d = DeviceConfig::new("sns", Kind::Sns, Some(url));
    d.region = Some("eu-west-1".into());
    d.username = Some("AKIDEXAMPLE".into());
    let r = rig(
        vec![d.with_secrets(secrets(Some("secret-key"), None, None))],
        true,
    )
    .await;
    let job = r.job(5).await;
    r.pool.dispatch(job.clone()).await.expect("dispatch");
    assert_eq!(
        r.wait(&job.verification_id, DeliveryState::Sent).await,
        DeliveryState::Sent
    );
    let (_, h, body) = seen.lock().expect("lock")[0].clone();
    let auth = h
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .expect("auth");
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"),
        "{auth}"
    );
    assert!(
        auth.contains(
            "/eu-west-1/sns/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature="
        ),
        "{auth}"
    );
    let form = String::from_utf8(body.to_vec()).expect("utf8");
    assert!(
        form.starts_with("Action=Publish&")
            && form.contains("PhoneNumber=%2B447911123456")
            && form.contains("Transactional"),
        "{form}"
    );
}
