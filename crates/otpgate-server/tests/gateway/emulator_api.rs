//! The emulated phone over real HTTP: the sms-gate.app API as gateway-api.md §1–§2 and §8.
#![allow(missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use otpgate_server::emulator::{Emulator, EmulatorConfig, Knobs, LIMIT_EXCEEDED, Offline};
use otpgate_server::gateway::crypto;
use otpgate_test_support::http::{get_json, get_status};
use otpgate_test_support::rig::{fast_knobs, serve_phone, serve_router};
use serde_json::{Value, json};

struct Phone {
    emu: Arc<Emulator>,
    base: String,
    http: reqwest::Client,
}

async fn phone(knobs: Knobs, webhooks: Vec<String>) -> Phone {
    let mut cfg = EmulatorConfig::new("sms", Some("pass1234".into()), Some("signkey".into()));
    cfg.knobs = knobs;
    cfg.webhooks = webhooks;
    cfg.encryption_passphrase = Some("e2e-secret".into());
    let emu = Emulator::new(cfg);
    let base = serve_phone(&emu).await;
    Phone {
        emu,
        base,
        http: reqwest::Client::new(),
    }
}

fn fast() -> Knobs {
    fast_knobs(20)
}

impl Phone {
    async fn post(&self, path: &str, body: Value) -> (StatusCode, HeaderMap, Value) {
        let url = format!("{}{path}", self.base);
        self.answer(self.http.post(url).json(&body)).await
    }

    async fn get(&self, path: &str) -> (StatusCode, HeaderMap, Value) {
        self.answer(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    /// Sends `req` as the user `sms`: the status, the headers and the body as JSON (`Null`
    /// when it is not JSON).
    async fn answer(&self, req: reqwest::RequestBuilder) -> (StatusCode, HeaderMap, Value) {
        let r = req
            .basic_auth("sms", Some("pass1234"))
            .send()
            .await
            .expect("request");
        let (s, h) = (r.status(), r.headers().clone());
        let text = r.text().await.expect("body");
        (
            StatusCode::from_u16(s.as_u16()).expect("status"),
            h,
            serde_json::from_str(&text).unwrap_or(Value::Null),
        )
    }

    async fn wait_state(&self, id: &str, want: &str) -> Value {
        for _ in 0..200 {
            let (_, _, v) = self.get(&format!("/messages/{id}")).await;
            if v["state"] == want {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("message {id} never reached {want}");
    }
}

fn otp(id: &str, phone: &str) -> Value {
    json!({"id": id, "textMessage": {"text": "Your code is 483920"}, "phoneNumbers": [phone],
           "ttl": 300, "priority": 100, "withDeliveryReport": true, "simNumber": 1})
}

#[tokio::test]
async fn send_is_202_with_message_state_and_location_then_delivered() {
    let p = phone(fast(), vec![]).await;
    let (s, h, v) = p.post("/message", otp("otp-1", "+14155550123")).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(
        h.get("location").and_then(|l| l.to_str().ok()),
        Some("/messages/otp-1")
    );
    assert_eq!(v["id"], "otp-1");
    assert_eq!(v["state"], "Pending");
    assert_eq!(v["recipients"][0]["phoneNumber"], "+14155550123");
    assert_eq!(v["recipients"][0]["state"], "Pending");
    assert!(v["recipients"][0].get("error").is_none());
    assert_eq!(v["textMessage"]["text"], "Your code is 483920");
    assert!(v["states"]["Pending"].is_string());
    let v = p.wait_state("otp-1", "Delivered").await;
    for s in ["Pending", "Processed", "Sent", "Delivered"] {
        assert!(v["states"][s].is_string(), "history lacks {s}: {v}");
    }
    let sent = p.emu.sent(Some("+14155550123"));
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].text, "Your code is 483920");
    assert_eq!(sent[0].state, "Delivered");
    // The cloud path and the outbox endpoint.
    let (s, h, v) = p
        .post("/3rdparty/v1/messages", otp("otp-2", "+14155550124"))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(
        h.get("location").and_then(|l| l.to_str().ok()),
        Some("/3rdparty/v1/messages/otp-2")
    );
    assert_eq!(v["id"], "otp-2");
    let out: Value = get_json(
        &p.http,
        &format!("{}/_emulator/messages?phone=%2B14155550123", p.base),
    )
    .await;
    assert_eq!(out.as_array().map(Vec::len), Some(1));
    assert_eq!(out[0]["id"], "otp-1");
}

#[tokio::test]
async fn duplicate_id_is_409_and_sent_once() {
    let p = phone(fast(), vec![]).await;
    assert_eq!(
        p.post("/messages", otp("dup", "+14155550123")).await.0,
        StatusCode::ACCEPTED
    );
    let (s, _, v) = p.post("/messages", otp("dup", "+14155550123")).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(
        v,
        json!({"message": "message with the same ID already exists"})
    );
    p.wait_state("dup", "Delivered").await;
    assert_eq!(p.emu.sent(None).len(), 1);
}

#[tokio::test]
async fn bad_bodies_are_400_with_a_message() {
    let p = phone(fast(), vec![]).await;
    let cases = [
        json!({"phoneNumbers": ["+14155550123"]}),
        json!({"message": "a", "textMessage": {"text": "b"}, "phoneNumbers": ["+14155550123"]}),
        json!({"textMessage": {"text": "b"}, "phoneNumbers": ["+14155550123"], "ttl": 60, "validUntil": "2099-01-01T00:00:00Z"}),
        json!({"textMessage": {"text": "b"}, "phoneNumbers": ["+14155550123"], "ttl": 4}),
        json!({"textMessage": {"text": "b"}, "phoneNumbers": ["not a phone"]}),
        json!({"textMessage": {"text": "b"}, "phoneNumbers": ["+14155550123", "+1 415 555 0123"]}),
        json!({"textMessage": {"text": "b"}, "phoneNumbers": []}),
        json!({"textMessage": {"text": ""}, "phoneNumbers": ["+14155550123"]}),
        json!({"textMessage": {"text": "b"}, "phoneNumbers": ["+14155550123"], "simNumber": 4}),
        json!({"textMessage": {"text": "b"}, "phoneNumbers": ["+14155550123"], "priority": 1000}),
        json!({"textMessage": {"text": "b"}, "phoneNumbers": ["+14155550123"], "validUntil": "2001-01-01T00:00:00Z"}),
        json!({"id": "x".repeat(37), "textMessage": {"text": "b"}, "phoneNumbers": ["+14155550123"]}),
        json!("just a string"),
    ];
    for body in cases {
        let (s, _, v) = p.post("/messages", body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            v["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body} -> {v}"
        );
    }
    // Not JSON at all.
    let (s, _, _) = p
        .answer(p.http.post(format!("{}/messages", p.base)).body("{"))
        .await;
    assert_eq!(s.as_u16(), 400);
    // skipPhoneValidation lets a local number through; the legacy `message` form works.
    let (s, _, v) = p
        .post(
            "/messages?skipPhoneValidation=true",
            json!({"message": "legacy", "phoneNumbers": ["89161234567"]}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["recipients"][0]["phoneNumber"], "89161234567");
    assert_eq!(v["textMessage"]["text"], "legacy");
    assert!(v["id"].as_str().is_some_and(|i| i.len() == 21));
}

#[tokio::test]
async fn auth_is_required_401_empty_with_www_authenticate() {
    let p = phone(fast(), vec![]).await;
    for (user, pass) in [("sms", "wrong"), ("other", "pass1234")] {
        let r = p
            .http
            .post(format!("{}/messages", p.base))
            .basic_auth(user, Some(pass))
            .json(&otp("a", "+14155550123"))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status().as_u16(), 401);
        assert_eq!(
            r.headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some("Basic realm=\"Access to SMS Gateway\"")
        );
        assert!(r.text().await.expect("body").is_empty());
    }
    let r = p
        .http
        .get(format!("{}/3rdparty/v1/messages", p.base))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 401);
    // Health is open.
    let r = p
        .http
        .get(format!("{}/health", p.base))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.json::<Value>().await.expect("json")["status"], "pass");
    // Bearer tokens from /auth/token work, within their scopes.
    let (s, _, t) = p
        .post(
            "/auth/token",
            json!({"ttl": 60, "scopes": ["messages:send", "messages:list"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let tok = t["access_token"].as_str().expect("token");
    let r = p
        .http
        .get(format!("{}/messages", p.base))
        .bearer_auth(tok)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 200);
    let r = p
        .http
        .get(format!("{}/webhooks", p.base))
        .bearer_auth(tok)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 403);
    let r = p
        .http
        .get(format!("{}/messages", p.base))
        .bearer_auth("forged")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 401);
    // Unknown message: 404, empty body (local mode).
    let (s, _, _) = p.get("/messages/nope").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<(HeaderMap, Bytes)>>>);

impl Sink {
    /// What the sink received, once it received something (polled 100 times, `every` apart).
    async fn first_deliveries(&self, every: Duration) -> Vec<(HeaderMap, Bytes)> {
        for _ in 0..100 {
            if !self.0.lock().expect("lock").is_empty() {
                break;
            }
            tokio::time::sleep(every).await;
        }
        self.0.lock().expect("lock").clone()
    }
}

async fn sink(fail_first: usize) -> (Sink, String) {
    let s = Sink::default();
    let seen = s.clone();
    let count = Arc::new(Mutex::new(0usize));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |h: HeaderMap, b: Bytes| {
            let seen = seen.clone();
            let count = count.clone();
            async move {
                let mut c = count.lock().expect("lock");
                *c += 1;
                if *c <= fail_first {
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                seen.0.lock().expect("lock").push((h, b));
                StatusCode::OK
            }
        }),
    );
    let url = format!("{}/hook", serve_router(app).await);
    (s, url)
}

#[tokio::test]
async fn webhooks_are_signed_enveloped_and_retried() {
    let (seen, url) = sink(2).await;
    let p = phone(fast(), vec![]).await;
    // Registry: 201 echo, list, 204 delete.
    let (s, _, w) = p
        .post("/webhooks", json!({"url": url, "event": "sms:sent"}))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(w["url"], url.as_str());
    assert!(w["id"].is_string());
    let (s, _, _) = p
        .post(
            "/webhook",
            json!({"id": "d1", "url": url, "event": "sms:delivered"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _, _) = p
        .post("/webhooks", json!({"url": url, "event": "sms:nonsense"}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _, _) = p
        .post("/webhooks", json!({"url": "ftp://x", "event": "sms:sent"}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (_, _, list) = p.get("/webhooks").await;
    assert_eq!(list.as_array().map(Vec::len), Some(2));
    let (s, _, _) = p
        .answer(p.http.delete(format!("{}/webhooks/d1", p.base)))
        .await;
    assert_eq!(s.as_u16(), 204);
    let (_, _, list) = p.get("/webhooks").await;
    assert_eq!(list.as_array().map(Vec::len), Some(1));

    p.post("/messages", otp("w-1", "+14155550123")).await;
    p.wait_state("w-1", "Delivered").await;
    let got = seen.first_deliveries(Duration::from_millis(30)).await;
    assert_eq!(
        got.len(),
        1,
        "one sms:sent delivery after two failed attempts"
    );
    let (h, body) = &got[0];
    let ts = h.get("x-timestamp").and_then(|v| v.to_str().ok());
    let sig = h.get("x-signature").and_then(|v| v.to_str().ok());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs() as i64;
    assert_eq!(
        otpgate_core::webhook::verify_smsgate("signkey", body, ts, sig, now, 300),
        Ok(())
    );
    let v: Value = serde_json::from_slice(body).expect("json");
    assert_eq!(v["event"], "sms:sent");
    assert_eq!(v["deviceId"], p.emu.device_id());
    assert_eq!(v["webhookId"], w["id"]);
    assert!(v["id"].as_str().is_some_and(|i| i.len() == 21));
    assert_eq!(v["payload"]["messageId"], "w-1");
    assert_eq!(v["payload"]["recipient"], "+14155550123");
    assert!(v["payload"]["sentAt"].is_string());
}

#[tokio::test]
async fn android_limit_fails_messages_past_it() {
    let p = phone(
        Knobs {
            limit: 3,
            limit_window_ms: 60_000,
            ..fast()
        },
        vec![],
    )
    .await;
    for i in 0..5 {
        assert_eq!(
            p.post(
                "/messages",
                otp(&format!("l-{i}"), &format!("+1415555012{i}"))
            )
            .await
            .0,
            StatusCode::ACCEPTED
        );
    }
    let mut failed = 0;
    for i in 0..5 {
        let id = format!("l-{i}");
        for _ in 0..200 {
            let (_, _, v) = p.get(&format!("/messages/{id}")).await;
            if v["state"] == "Delivered" {
                break;
            }
            if v["state"] == "Failed" {
                assert_eq!(v["recipients"][0]["error"], LIMIT_EXCEEDED);
                failed += 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(failed, 2);
    assert_eq!(p.emu.sent(None).len(), 3);
}

#[tokio::test]
async fn expired_messages_fail_and_are_never_sent() {
    // The ttl (5 s, the minimum) passes while the phone is slow.
    let p = phone(
        Knobs {
            delay_ms: 3_000,
            ..fast()
        },
        vec![],
    )
    .await;
    p.post("/messages", json!({"id": "late", "textMessage": {"text": "code 1"}, "phoneNumbers": ["+14155550123"], "ttl": 5})).await;
    let mut last = Value::Null;
    for _ in 0..100 {
        last = p.get("/messages/late").await.2;
        if last["state"] == "Failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last["state"], "Failed", "{last}");
    assert_eq!(last["recipients"][0]["error"], "message expired");
    assert!(p.emu.sent(None).is_empty());
}

#[tokio::test]
async fn lists_offline_modes_encryption_and_cancel() {
    let p = phone(fast(), vec![]).await;
    for i in 0..3 {
        p.post(
            "/messages",
            otp(&format!("m-{i}"), &format!("+1415555010{i}")),
        )
        .await;
    }
    let (s, h, v) = p.get("/messages?limit=2&offset=0").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        h.get("x-total-count").and_then(|v| v.to_str().ok()),
        Some("3")
    );
    assert_eq!(v.as_array().map(Vec::len), Some(2));
    assert!(
        v[0].get("textMessage").is_none(),
        "content only with includeContent"
    );
    assert_eq!(
        p.get("/messages?limit=101").await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        p.get("/messages?state=Bogus").await.0,
        StatusCode::BAD_REQUEST
    );
    p.wait_state("m-2", "Delivered").await;
    let (_, h, _) = p.get("/messages?state=Delivered").await;
    assert!(h.get("x-total-count").is_some());

    // Encrypted: numbers echoed verbatim, the emulator decrypts for its outbox.
    let salt = [3u8; 16];
    let enc_phone = crypto::encrypt("e2e-secret", "+14155550001", &salt, 1000);
    let enc_text = crypto::encrypt("e2e-secret", "secret code 111222", &[4u8; 16], 1000);
    let (s, _, v) = p
        .post("/messages", json!({"id": "enc", "textMessage": {"text": enc_text}, "phoneNumbers": [enc_phone], "isEncrypted": true}))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["recipients"][0]["phoneNumber"], enc_phone.as_str());
    assert_eq!(v["isEncrypted"], true);
    p.wait_state("enc", "Delivered").await;
    let out = p.emu.sent(Some("+14155550001"));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].text, "secret code 111222");

    // Cancel a pending message.
    let mut k = fast();
    k.delay_ms = 2_000;
    p.emu.set_knobs(k);
    p.post("/messages", otp("c-1", "+14155551122")).await;
    let (s, _, v) = p
        .answer(p.http.delete(format!("{}/messages/c-1", p.base)))
        .await;
    assert_eq!(s.as_u16(), 200);
    assert_eq!(v["state"], "Cancelled");

    // Offline (503) through the control API, then refusing connections, then back.
    let (s, _, k) = p
        .post("/_control", json!({"offline": true, "delay_ms": 10}))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(k["offline"], "unavailable");
    assert_eq!(
        p.post("/messages", otp("o-1", "+14155550123")).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        p.post("/_control", json!({"failure_rate": 2.0})).await.0,
        StatusCode::BAD_REQUEST
    );
    p.post("/_control", json!({"offline": "refuse"})).await;
    let fresh = reqwest::Client::new();
    let r = fresh.get(format!("{}/health", p.base)).send().await;
    assert!(r.is_err(), "connection should be refused: {r:?}");
    p.emu.set_knobs(Knobs {
        offline: Offline::Online,
        ..fast()
    });
    assert_eq!(get_status(&fresh, &format!("{}/health", p.base)).await, 200);

    // Settings: PATCH the signing key (write-only), GET shows the rest.
    let patch = json!({"webhooks": {"signing_key": "newkey"}, "messages": {"limit_value": 5}});
    let url = format!("{}/settings", p.base);
    let (s, _, v) = p.answer(p.http.patch(url).json(&patch)).await;
    assert_eq!(s.as_u16(), 200);
    assert!(v["webhooks"].get("signing_key").is_none());
    assert_eq!(v["messages"]["limit_value"], 5);
    assert_eq!(p.emu.signing_key(), "newkey");
    let (s, _, d) = p.get("/device").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(d[0]["id"], p.emu.device_id());
}

#[tokio::test]
async fn failure_rate_and_dropped_reports() {
    let (seen, url) = sink(0).await;
    let p = phone(
        Knobs {
            failure_rate: 1.0,
            ..fast()
        },
        vec![url],
    )
    .await;
    p.post("/messages", otp("f-1", "+14155550123")).await;
    let v = p.wait_state("f-1", "Failed").await;
    assert_eq!(v["recipients"][0]["error"], "RESULT_ERROR_GENERIC_FAILURE");
    assert!(p.emu.sent(None).is_empty());
    let got = seen.first_deliveries(Duration::from_millis(20)).await;
    let v: Value = serde_json::from_slice(&got[0].1).expect("json");
    assert_eq!(v["event"], "sms:failed");
    assert_eq!(v["payload"]["reason"], "RESULT_ERROR_GENERIC_FAILURE");

    p.emu.set_knobs(Knobs {
        drop_reports: 1.0,
        ..fast()
    });
    p.post("/messages", otp("d-1", "+14155550123")).await;
    p.wait_state("d-1", "Sent").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(p.get("/messages/d-1").await.2["state"], "Sent");
}

#[tokio::test]
async fn system_ping_webhooks_when_enabled() {
    let (seen, url) = sink(0).await;
    let p = phone(fast(), vec![]).await;
    p.post("/webhooks", json!({"url": url, "event": "system:ping"}))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(seen.0.lock().expect("lock").is_empty(), "off by default");
    let (s, _, _) = p.post("/_control", json!({"ping_interval_ms": 100})).await;
    assert_eq!(s, StatusCode::OK);
    let got = seen.first_deliveries(Duration::from_millis(20)).await;
    let v: Value = serde_json::from_slice(&got[0].1).expect("json");
    assert_eq!(v["event"], "system:ping");
    assert_eq!(v["payload"]["health"]["status"], "pass");
}
