//! The integrations of issue 19 against a real `otpgate serve` and a real emulated phone
//! (`otpgate emulator`, signed delivery webhooks back to the issuer), on the embedded store
//! and on Redis:
//!
//! - the Supabase Send SMS hook: signed as Standard Webhooks, the SMS carries the given code,
//!   the WebOTP line and the app hash; bad signatures, stale timestamps, rotated-out secrets,
//!   replayed and concurrent `webhook-id`s (one SMS), refused destinations and spent budgets
//!   answer in Supabase's shape;
//! - `POST /v1/messages`: API key, delivery state followed to `delivered`, Idempotency-Key,
//!   no proof of work for trusted callers although anonymous starts need one, and the Ory
//!   Kratos Jsonnet of `examples/kratos` evaluated by a real Jsonnet (the `jsonnet` tool)
//!   over Kratos' template data, posted as Kratos' courier would;
//! - the Twilio Verify-compatible API: create (the pending one reused, no second SMS),
//!   wrong code (pending), right code (approved), attempts spent (60202), cancel, fetch,
//!   channels, auth and refused destinations with Twilio's error objects.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use otpgate_core::standard_webhooks::WebhookSecret;
use otpgate_test_support::process::{Phone, Serve, ServeToml, free_port};
use otpgate_test_support::redis::TestRedis;
use serde_json::{Value, json};

pub(crate) const ISSUER: &str = "https://issuer.test";
pub(crate) const SIGNING_KEY: &str = "integ-webhook-signing-key";
pub(crate) const API_KEY: &str = "integ-api-key-0123456789abcdef";
pub(crate) const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
pub(crate) const SERVICE: &str = "VAfedcba9876543210fedcba9876543210";
pub(crate) const TOKEN: &str = "twilio-auth-token-0123456789";
pub(crate) const APP_HASH: &str = "FA+9qCX9VSu";

pub(crate) fn secret(byte: u8) -> String {
    format!("v1,whsec_{}", STANDARD.encode([byte; 32]))
}

pub(crate) struct Rig {
    // Field order = drop order: the issuer goes first.
    pub(crate) serve: Serve,
    pub(crate) phone: Phone,
    pub(crate) http: reqwest::Client,
    _redis: Option<TestRedis>,
    _dir: tempfile::TempDir,
}

#[derive(Clone, Copy)]
pub(crate) enum Store {
    Embedded,
    Redis,
}

impl Rig {
    /// The issuer with the three integrations, one emulated phone, anonymous starts behind
    /// a proof of work, 3 SMS per number per 10 min.
    pub(crate) fn start(store: Store) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let hook = format!("http://127.0.0.1:{port}/v1/gateways/sms-gate/webhook");
        let phone = Phone::start(dir.path(), "p1", free_port(), SIGNING_KEY, &hook, 20, 0.0);
        let mut env = vec![
            ("INTEG_SIGNING_KEY", SIGNING_KEY.to_owned()),
            ("INTEG_API_KEY", API_KEY.to_owned()),
            ("INTEG_PHONE_PW", phone.password.clone()),
            // Two secrets: Supabase rotating from 1 to 2.
            (
                "OTPGATE_SUPABASE_HOOK_SECRETS",
                format!("{}|{}", secret(1), secret(2)),
            ),
            ("OTPGATE_TWILIO_AUTH_TOKEN", TOKEN.to_owned()),
        ];
        let (store_toml, redis) = match store {
            Store::Embedded => (r#"kind = "embedded""#.to_owned(), None),
            Store::Redis => {
                let r = TestRedis::start();
                let prefix = format!("integ{}:", otpgate_server::random::id("").unwrap());
                env.push(("OTPGATE_STORE", r.url.clone()));
                (
                    format!("kind = \"redis\"\nkey_prefix = \"{prefix}\""),
                    Some(r),
                )
            }
        };
        let config = ServeToml {
            discard_sends: false,
            store: store_toml,
            policy: r#"allowed_regions = ["US", "GB"]
api_keys = ["env:INTEG_API_KEY"]

[policy.budgets.phone]
limit = 3
window_secs = 600

[policy.pow]
enabled = true
base_difficulty = 8"#
                .to_owned(),
            tail: format!(
                r#"[gateways]
webhook_signing_key_env = "INTEG_SIGNING_KEY"
health_interval_secs = 1
poll_interval_secs = 1

[[gateways.devices]]
name = "p1"
kind = "sms-gate"
url = "{}"
username = "sms"
password_env = "INTEG_PHONE_PW"
budget_per_minute = 5000
android_limit = 20000

[[apps]]
name = "mobile"
origins = ["https://mobile.example.com"]
android_app_hashes = ["{APP_HASH}"]

[integrations.supabase]
app = "mobile"

[integrations.twilio_verify]
account_sid = "{ACCOUNT}"

[[integrations.twilio_verify.services]]
sid = "{SERVICE}"
app = "shop"
"#,
                phone.base
            ),
            ..ServeToml::new(ISSUER)
        }
        .write(dir.path());
        let serve = Serve::start(dir.path(), &config, port, &env);
        Self {
            serve,
            phone,
            http: reqwest::Client::new(),
            _redis: redis,
            _dir: dir,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.serve.base)
    }

    /// The phone's outbox: (phone, text) of every SMS it sent.
    async fn outbox(&self) -> Vec<(String, String)> {
        self.phone
            .outbox(&self.http)
            .await
            .into_iter()
            .map(|(_, p, t)| (p, t))
            .collect()
    }

    /// The SMS sent to `phone`, waiting up to 10 s for `n` of them.
    pub(crate) async fn sms_to(&self, phone: &str, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let texts: Vec<String> = self
                .outbox()
                .await
                .into_iter()
                .filter(|(p, _)| p == phone)
                .map(|(_, t)| t)
                .collect();
            if texts.len() >= n || Instant::now() > deadline {
                return texts;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A Supabase hook call signed with `secret` as `id` at `ts`.
    async fn hook(&self, secret: &str, id: &str, ts: i64, body: &str) -> (u16, Value) {
        let s = &WebhookSecret::parse_list(secret).unwrap()[0];
        let sig = s.sign(id, &ts.to_string(), body.as_bytes());
        self.hook_raw(id, &ts.to_string(), &sig, body).await
    }

    async fn hook_raw(&self, id: &str, ts: &str, sig: &str, body: &str) -> (u16, Value) {
        let res = self
            .http
            .post(self.url("/v1/hooks/supabase/send-sms"))
            .header("webhook-id", id)
            .header("webhook-timestamp", ts)
            .header("webhook-signature", sig)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        json_of(res).await
    }

    async fn twilio(&self, path: &str, form: &[(&str, &str)], auth: bool) -> (u16, Value) {
        let mut req = self
            .http
            .post(self.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(form).unwrap());
        if auth {
            req = req.basic_auth(ACCOUNT, Some(TOKEN));
        }
        json_of(req.send().await.unwrap()).await
    }

    async fn twilio_get(&self, path: &str) -> (u16, Value) {
        let req = self
            .http
            .get(self.url(path))
            .basic_auth(ACCOUNT, Some(TOKEN));
        json_of(req.send().await.unwrap()).await
    }

    /// `POST /v1/messages` with the API key (and an Idempotency-Key when given).
    async fn message(&self, body: &Value, idem: Option<&str>) -> reqwest::Response {
        let mut req = self
            .http
            .post(self.url("/v1/messages"))
            .bearer_auth(API_KEY)
            .json(body);
        if let Some(k) = idem {
            req = req.header("idempotency-key", k);
        }
        req.send().await.unwrap()
    }

    /// Polls `GET /v1/messages/{id}` until its delivery is `state` (10 s at most).
    async fn message_reaches(&self, id: &str, state: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let res = self
                .http
                .get(self.url(&format!("/v1/messages/{id}")))
                .bearer_auth(API_KEY)
                .send()
                .await
                .unwrap();
            let (status, view) = json_of(res).await;
            assert_eq!(status, 200, "{view}");
            if view["delivery"]["state"] == state || Instant::now() > deadline {
                assert_eq!(view["delivery"]["state"], state, "{view}");
                return view;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

pub(crate) async fn json_of(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    let bytes = res.bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

pub(crate) fn now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

/// Supabase's payload, as its documentation shows it (phone as Supabase stores it).
pub(crate) fn supabase_payload(phone: &str, otp: &str) -> String {
    json!({
        "user": {
            "id": "8ccaa7af-909f-44e7-84cb-67cdccb56be6",
            "aud": "authenticated",
            "role": "authenticated",
            "email": "",
            "phone": phone,
            "app_metadata": {"provider": "phone", "providers": ["phone"]},
            "user_metadata": {},
            "identities": [],
            "created_at": "2024-05-13T11:52:27.612734Z",
            "updated_at": "2024-05-13T11:52:27.612734Z",
            "is_anonymous": false
        },
        "sms": {"otp": otp}
    })
    .to_string()
}

pub(crate) fn assert_supabase_error(status: u16, body: &Value, want: u16) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["error"]["http_code"], want, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(
        body["error"].get("code").is_none(),
        "Supabase's shape: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supabase_hook_sends_once_with_webotp_and_app_hash() {
    let rig = Rig::start(Store::Embedded);
    // Supabase stores numbers without the `+`.
    let body = supabase_payload("14155550101", "561166");
    let (status, answer) = rig.hook(&secret(1), "msg_first", now(), &body).await;
    assert_eq!((status, &answer), (200, &json!({})));
    let texts = rig.sms_to("+14155550101", 1).await;
    assert_eq!(texts.len(), 1, "{texts:?}");
    let text = &texts[0];
    assert!(text.starts_with("<#> "), "{text}");
    assert!(
        text.ends_with(&format!("\n@mobile.example.com #561166 {APP_HASH}")),
        "{text}"
    );
    let parsed = otpgate_core::sms::parse(text);
    assert_eq!(parsed.webotp.unwrap().code, "561166");

    // A replay of the id (Supabase's retry: a new timestamp and signature), even under the
    // rotated secret: answered as the first time, nothing sent.
    let (status, answer) = rig.hook(&secret(2), "msg_first", now(), &body).await;
    assert_eq!((status, &answer), (200, &json!({})));
    // Concurrent duplicates of a new id: one SMS.
    let body2 = supabase_payload("+14155550102", "771122");
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let (http, url, body) = (
                rig.http.clone(),
                rig.url("/v1/hooks/supabase/send-sms"),
                body2.clone(),
            );
            tokio::spawn(async move {
                let ts = now().to_string();
                let sig = WebhookSecret::parse_list(&secret(1)).unwrap()[0].sign(
                    "msg_burst",
                    &ts,
                    body.as_bytes(),
                );
                let res = http
                    .post(url)
                    .header("webhook-id", "msg_burst")
                    .header("webhook-timestamp", ts)
                    .header("webhook-signature", sig)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                json_of(res).await
            })
        })
        .collect();
    for h in handles {
        let (status, answer) = h.await.unwrap();
        assert_eq!((status, &answer), (200, &json!({})));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        rig.sms_to("+14155550101", 2).await.len(),
        1,
        "replay sent nothing"
    );
    assert_eq!(
        rig.sms_to("+14155550102", 2).await.len(),
        1,
        "one SMS for the burst"
    );

    // Several signatures in the header while rotating: one that matches is enough.
    let ts = now().to_string();
    let body3 = supabase_payload("14155550103", "123456");
    let good =
        WebhookSecret::parse_list(&secret(2)).unwrap()[0].sign("msg_multi", &ts, body3.as_bytes());
    let (status, _) = rig
        .hook_raw("msg_multi", &ts, &format!("v1,Zm9yZ2Vk {good}"), &body3)
        .await;
    assert_eq!(status, 200);

    // Forged, stale, rotated-out, missing.
    let body4 = supabase_payload("14155550104", "123456");
    let (status, answer) = rig.hook(&secret(3), "msg_rotated_out", now(), &body4).await;
    assert_supabase_error(status, &answer, 401);
    let (status, answer) = rig.hook(&secret(1), "msg_stale", now() - 600, &body4).await;
    assert_supabase_error(status, &answer, 401);
    let (status, answer) = rig
        .hook(&secret(1), "msg_future", now() + 600, &body4)
        .await;
    assert_supabase_error(status, &answer, 401);
    let ts = now().to_string();
    let sig =
        WebhookSecret::parse_list(&secret(1)).unwrap()[0].sign("msg_x", &ts, body4.as_bytes());
    let tampered = body4.replace("123456", "654321");
    let (status, answer) = rig.hook_raw("msg_x", &ts, &sig, &tampered).await;
    assert_supabase_error(status, &answer, 401);
    let (status, answer) = rig.hook_raw("", &ts, &sig, &body4).await;
    assert_supabase_error(status, &answer, 401);
    assert!(
        rig.sms_to("+14155550104", 1).await.is_empty(),
        "nothing refused was sent"
    );

    // Policy refusals in Supabase's shape: a region outside the allow-list, a bad code, a
    // payload that is not Supabase's.
    let (status, answer) = rig
        .hook(
            &secret(1),
            "msg_fr",
            now(),
            &supabase_payload("33612345678", "123456"),
        )
        .await;
    assert_supabase_error(status, &answer, 403);
    let (status, answer) = rig
        .hook(
            &secret(1),
            "msg_code",
            now(),
            &supabase_payload("14155550105", "12"),
        )
        .await;
    assert_supabase_error(status, &answer, 400);
    let (status, answer) = rig
        .hook(&secret(1), "msg_shape", now(), r#"{"sms": {}}"#)
        .await;
    assert_supabase_error(status, &answer, 400);

    // The number's budget (3 per 10 min): the 4th is a real 429 with Retry-After.
    for i in 0..3 {
        let (status, _) = rig
            .hook(
                &secret(1),
                &format!("msg_b{i}"),
                now(),
                &supabase_payload("14155550106", "111111"),
            )
            .await;
        assert_eq!(status, 200);
    }
    let res = {
        let body = supabase_payload("14155550106", "111111");
        let ts = now().to_string();
        let sig =
            WebhookSecret::parse_list(&secret(1)).unwrap()[0].sign("msg_b3", &ts, body.as_bytes());
        rig.http
            .post(rig.url("/v1/hooks/supabase/send-sms"))
            .header("webhook-id", "msg_b3")
            .header("webhook-timestamp", ts)
            .header("webhook-signature", sig)
            .body(body)
            .send()
            .await
            .unwrap()
    };
    assert!(res.headers().get("retry-after").is_some());
    let (status, answer) = json_of(res).await;
    assert_supabase_error(status, &answer, 429);
}

async fn messages_flow(store: Store) {
    let rig = Rig::start(store);
    let body = json!({"to": "+14155550201", "code": "482913", "app": "mobile"});
    // No key, a wrong key.
    let res = rig
        .http
        .post(rig.url("/v1/messages"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let (status, err) = json_of(res).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (401, Some("invalid_api_key"))
    );
    let res = rig
        .http
        .post(rig.url("/v1/messages"))
        .bearer_auth("not-the-key-0123456789")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 401);

    // Anonymous starts need a proof of work here; a trusted caller's message does not.
    let res = rig
        .http
        .post(rig.url("/v1/verifications"))
        .json(&json!({"phone": "+14155550299"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 428);

    let res = rig.message(&body, Some("idem-1")).await;
    assert_eq!(res.status().as_u16(), 202);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let (_, view) = json_of(res).await;
    let id = view["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("m_"), "{view}");
    assert_eq!(location, format!("/v1/messages/{id}"));
    let delivered = rig.message_reaches(&id, "delivered").await;
    assert_eq!(delivered["delivery"]["gateway"], "p1", "{delivered}");
    let texts = rig.sms_to("+14155550201", 1).await;
    assert_eq!(texts.len(), 1);
    assert!(
        texts[0].ends_with(&format!("\n@mobile.example.com #482913 {APP_HASH}")),
        "{}",
        texts[0]
    );
    // A retry with the same key: the first answer, nothing sent.
    let res = rig.message(&body, Some("idem-1")).await;
    assert_eq!(res.status().as_u16(), 202);
    assert_eq!(res.headers()["idempotent-replayed"], "true");
    let (_, again) = json_of(res).await;
    assert_eq!(again["id"], id.as_str());
    // The same key with another body.
    let other = json!({"to": "+14155550201", "code": "000000", "app": "mobile"});
    let (status, err) = json_of(rig.message(&other, Some("idem-1")).await).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (422, Some("idempotency_key_reused"))
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        rig.sms_to("+14155550201", 2).await.len(),
        1,
        "never sent twice"
    );

    // A message is no verification.
    let res = rig
        .http
        .get(rig.url(&format!("/v1/verifications/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 404);
    let res = rig
        .http
        .post(rig.url(&format!("/v1/verifications/{id}/check")))
        .json(&json!({"code": "482913"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 404);

    // Bad input and policy.
    for (body, status, code) in [
        (
            json!({"to": "+14155550202", "code": "12"}),
            400,
            "invalid_code",
        ),
        (
            json!({"to": "+14155550202", "code": "12 34 56 78 90 1"}),
            400,
            "invalid_code",
        ),
        (
            json!({"to": "+14155550202", "code": "123456", "app": "nope"}),
            400,
            "unknown_app",
        ),
        (
            json!({"to": "415555", "code": "123456"}),
            400,
            "invalid_phone",
        ),
        (
            json!({"to": "+33612345678", "code": "123456"}),
            403,
            "destination_not_allowed",
        ),
        (
            json!({"to": "+14155550202", "code": "123456", "text": "hi"}),
            400,
            "invalid_request",
        ),
    ] {
        let (got, err) = json_of(rig.message(&body, None).await).await;
        assert_eq!(
            (got, err["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}"
        );
    }
    // The number's budget.
    for _ in 0..2 {
        let res = rig
            .message(&json!({"to": "+14155550201", "code": "123456"}), None)
            .await;
        assert_eq!(res.status().as_u16(), 202);
    }
    let res = rig
        .message(&json!({"to": "+14155550201", "code": "123456"}), None)
        .await;
    assert_eq!(res.status().as_u16(), 429);
    assert!(res.headers().get("retry-after").is_some());
    let unknown = rig
        .http
        .get(rig.url("/v1/messages/m_AAAAAAAAAAAAAAAAAAAAAA"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status().as_u16(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_on_the_embedded_store() {
    messages_flow(Store::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_on_redis() {
    messages_flow(Store::Redis).await;
}

/// The Jsonnet of `examples/kratos`, evaluated by the `jsonnet` tool with Kratos' template
/// data (the top-level argument `ctx`), yields a body this endpoint accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kratos_courier_jsonnet_body_is_accepted() {
    let rig = Rig::start(Store::Embedded);
    let jsonnet = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/kratos/otpgate-sms.jsonnet");
    for (kind, field, phone, code) in [
        ("login_code_valid", "login_code", "+14155550301", "730214"),
        (
            "verification_code_valid",
            "verification_code",
            "+14155550302",
            "118833",
        ),
        (
            "recovery_code_valid",
            "recovery_code",
            "+14155550303",
            "904417",
        ),
    ] {
        // Kratos' courier template data for an SMS (`ctx`).
        let ctx = json!({
            "recipient": phone,
            "template_type": kind,
            "template_data": {
                "to": phone,
                field: code,
                "identity": {"id": "5c3c7cb9-3bb4-4b7b-a0c1-b0b1b5e3f0d1", "traits": {"phone": phone}},
                "request_url": "https://auth.example.com/self-service/login?flow=1",
                "transient_payload": {}
            },
            "message_type": "sms"
        });
        let out = std::process::Command::new("jsonnet")
            .arg("--tla-code")
            .arg(format!("ctx={ctx}"))
            .arg(&jsonnet)
            .output()
            .expect("the `jsonnet` tool (Debian package jsonnet; scripts/setup.sh installs it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let body: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(body, json!({"to": phone, "code": code, "app": "shop"}));
        // Posted as Kratos' courier does: its api_key auth in the Authorization header.
        let res = rig
            .http
            .post(rig.url("/v1/messages"))
            .header("authorization", format!("Bearer {API_KEY}"))
            .header("content-type", "application/json")
            .body(out.stdout)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 202);
        let (_, view) = json_of(res).await;
        rig.message_reaches(view["id"].as_str().unwrap(), "delivered")
            .await;
        let texts = rig.sms_to(phone, 1).await;
        assert!(
            texts[0].ends_with(&format!("@shop.example.com #{code}")),
            "{texts:?}"
        );
    }
}

pub(crate) fn code_of(text: &str) -> String {
    otpgate_core::sms::parse(text).webotp.unwrap().code
}

pub(crate) fn assert_twilio_error(status: u16, body: &Value, want_status: u16, want_code: u64) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["code"], want_code, "{body}");
    assert_eq!(body["status"], want_status, "{body}");
    assert_eq!(
        body["more_info"],
        format!("https://www.twilio.com/docs/errors/{want_code}"),
        "{body}"
    );
}

async fn twilio_flow(store: Store) {
    let rig = Rig::start(store);
    let verifications = format!("/v2/Services/{SERVICE}/Verifications");
    let check = format!("/v2/Services/{SERVICE}/VerificationCheck");
    let to = "+14155550401";

    let (status, err) = rig
        .twilio(&verifications, &[("To", to), ("Channel", "sms")], false)
        .await;
    assert_twilio_error(status, &err, 401, 20003);
    let unknown = "/v2/Services/VA00000000000000000000000000000000/Verifications";
    let (status, err) = rig
        .twilio(unknown, &[("To", to), ("Channel", "sms")], true)
        .await;
    assert_twilio_error(status, &err, 404, 20404);
    let (status, err) = rig
        .twilio(&verifications, &[("To", to), ("Channel", "whatsapp")], true)
        .await;
    assert_twilio_error(status, &err, 400, 60223);
    let (status, err) = rig
        .twilio(&verifications, &[("To", to), ("Channel", "pigeon")], true)
        .await;
    assert_twilio_error(status, &err, 400, 60200);
    let (status, err) = rig
        .twilio(&verifications, &[("To", "12"), ("Channel", "sms")], true)
        .await;
    assert_twilio_error(status, &err, 400, 60200);
    let (status, err) = rig
        .twilio(
            &verifications,
            &[("To", to), ("Channel", "sms"), ("CustomMessage", "hi")],
            true,
        )
        .await;
    assert_twilio_error(status, &err, 400, 60200);
    let (status, err) = rig
        .twilio(
            &verifications,
            &[("To", "+33612345678"), ("Channel", "sms")],
            true,
        )
        .await;
    assert_twilio_error(status, &err, 403, 60410);

    // Create: no proof of work although anonymous starts need one.
    let (status, v) = rig
        .twilio(
            &verifications,
            &[("To", to), ("Channel", "sms"), ("Locale", "en")],
            true,
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let sid = v["sid"].as_str().unwrap().to_owned();
    assert!(sid.starts_with("VE") && sid.len() == 34, "{v}");
    assert_eq!(v["status"], "pending");
    assert_eq!(v["to"], to);
    assert_eq!(v["channel"], "sms");
    assert_eq!(v["service_sid"], SERVICE);
    assert_eq!(v["account_sid"], ACCOUNT);
    assert_eq!(v["valid"], false);
    // The same number again: the same verification, no second SMS.
    let (status, again) = rig
        .twilio(&verifications, &[("To", to), ("Channel", "sms")], true)
        .await;
    assert_eq!((status, again["sid"].as_str()), (201, Some(sid.as_str())));
    let texts = rig.sms_to(to, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rig.sms_to(to, 2).await.len(), 1, "one SMS for two creates");
    let code = code_of(&texts[0]);
    assert!(
        texts[0].ends_with(&format!("@shop.example.com #{code}")),
        "{texts:?}"
    );

    // A wrong code: still pending. The right one, by To: approved.
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let (status, c) = rig
        .twilio(&check, &[("To", to), ("Code", wrong)], true)
        .await;
    assert_eq!(
        (status, c["status"].as_str(), c["valid"].as_bool()),
        (200, Some("pending"), Some(false)),
        "{c}"
    );
    let (status, c) = rig
        .twilio(&check, &[("To", to), ("Code", &code)], true)
        .await;
    assert_eq!(
        (status, c["status"].as_str(), c["valid"].as_bool()),
        (200, Some("approved"), Some(true)),
        "{c}"
    );
    assert_eq!(c["sid"], sid.as_str());
    let (status, f) = rig.twilio_get(&format!("{verifications}/{sid}")).await;
    assert_eq!(
        (status, f["status"].as_str()),
        (200, Some("approved")),
        "{f}"
    );
    // Approved: no pending verification for that number any more.
    let (status, err) = rig
        .twilio(&check, &[("To", to), ("Code", &code)], true)
        .await;
    assert_twilio_error(status, &err, 404, 20404);
    let (status, err) = rig
        .twilio(&check, &[("VerificationSid", &sid), ("Code", &code)], true)
        .await;
    assert_twilio_error(status, &err, 404, 20404);
    let (status, err) = rig.twilio(&check, &[("Code", &code)], true).await;
    assert_twilio_error(status, &err, 400, 60200);

    // Attempts: a new verification for the same number, five wrong codes, then 60202.
    let (status, v2) = rig
        .twilio(&verifications, &[("To", to), ("Channel", "sms")], true)
        .await;
    assert_eq!(status, 201);
    let sid2 = v2["sid"].as_str().unwrap().to_owned();
    assert_ne!(sid2, sid, "a new verification after the approval");
    let code2 = code_of(&rig.sms_to(to, 2).await[1]);
    let wrong = if code2 == "000000" {
        "111111"
    } else {
        "000000"
    };
    for n in 1..=5 {
        let (status, c) = rig
            .twilio(&check, &[("VerificationSid", &sid2), ("Code", wrong)], true)
            .await;
        let want = if n == 5 {
            "max_attempts_reached"
        } else {
            "pending"
        };
        assert_eq!((status, c["status"].as_str()), (200, Some(want)), "{c}");
    }
    let (status, err) = rig
        .twilio(
            &check,
            &[("VerificationSid", &sid2), ("Code", &code2)],
            true,
        )
        .await;
    assert_twilio_error(status, &err, 429, 60202);
    let (_, f) = rig.twilio_get(&format!("{verifications}/{sid2}")).await;
    assert_eq!(f["status"], "max_attempts_reached", "{f}");

    // Cancel.
    let to3 = "+14155550402";
    let (_, v3) = rig
        .twilio(&verifications, &[("To", to3), ("Channel", "sms")], true)
        .await;
    let sid3 = v3["sid"].as_str().unwrap().to_owned();
    let (status, err) = rig
        .twilio(
            &format!("{verifications}/{sid3}"),
            &[("Status", "approved")],
            true,
        )
        .await;
    assert_twilio_error(status, &err, 400, 60200);
    let (status, c) = rig
        .twilio(
            &format!("{verifications}/{sid3}"),
            &[("Status", "canceled")],
            true,
        )
        .await;
    assert_eq!(
        (status, c["status"].as_str()),
        (200, Some("canceled")),
        "{c}"
    );
    let (status, err) = rig
        .twilio(&check, &[("To", to3), ("Code", "123456")], true)
        .await;
    assert_twilio_error(status, &err, 404, 20404);
    let (_, f) = rig.twilio_get(&format!("{verifications}/{sid3}")).await;
    assert_eq!(f["status"], "canceled");
    let (status, err) = rig
        .twilio_get(&format!(
            "{verifications}/VE00000000000000000000000000000000"
        ))
        .await;
    assert_twilio_error(status, &err, 404, 20404);
    // A canceled number gets a new verification.
    let (_, v4) = rig
        .twilio(&verifications, &[("To", to3), ("Channel", "sms")], true)
        .await;
    assert_ne!(v4["sid"], sid3.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_verify_on_the_embedded_store() {
    twilio_flow(Store::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_verify_on_redis() {
    twilio_flow(Store::Redis).await;
}

/// Concurrent creates for a number whose verification is finished (approved or canceled):
/// one new verification, one SMS, every create answered with its SID.
async fn twilio_concurrent_creates(store: Store) {
    const BURST: usize = 16;
    let rig = Rig::start(store);
    let verifications = format!("/v2/Services/{SERVICE}/Verifications");
    let check = format!("/v2/Services/{SERVICE}/VerificationCheck");
    for round in 0..4 {
        let to = format!("+1415555090{round}");
        if round == 0 {
            // A check by To of a number with no verification, then at once a create.
            let (status, err) = rig
                .twilio(&check, &[("To", &to), ("Code", "123456")], true)
                .await;
            assert_twilio_error(status, &err, 404, 20404);
        }
        let (status, v) = rig
            .twilio(&verifications, &[("To", &to), ("Channel", "sms")], true)
            .await;
        assert_eq!(status, 201, "{v}");
        let first = v["sid"].as_str().unwrap().to_owned();
        let texts = rig.sms_to(&to, 1).await;
        // Finish it: approved in even rounds, canceled in odd ones.
        let (status, done) = if round % 2 == 0 {
            rig.twilio(&check, &[("To", &to), ("Code", &code_of(&texts[0]))], true)
                .await
        } else {
            rig.twilio(
                &format!("{verifications}/{first}"),
                &[("Status", "canceled")],
                true,
            )
            .await
        };
        assert_eq!(status, 200, "{done}");
        // Open the connections first, then let every create go at once.
        let warm: Vec<_> = (0..BURST)
            .map(|_| {
                let (http, url) = (rig.http.clone(), rig.url("/healthz"));
                tokio::spawn(async move { http.get(url).send().await.unwrap().status() })
            })
            .collect();
        for w in warm {
            assert!(w.await.unwrap().is_success());
        }
        let go = Arc::new(tokio::sync::Barrier::new(BURST));
        let creates: Vec<_> = (0..BURST)
            .map(|i| {
                let (http, url, to) = (rig.http.clone(), rig.url(&verifications), to.clone());
                let go = go.clone();
                tokio::spawn(async move {
                    go.wait().await;
                    // Spread over a few store round trips, so that some creates find the
                    // finished verification while others already replace it.
                    tokio::time::sleep(Duration::from_micros(250 * (i as u64 % 8))).await;
                    let res = http
                        .post(url)
                        .basic_auth(ACCOUNT, Some(TOKEN))
                        .header("content-type", "application/x-www-form-urlencoded")
                        .body(
                            serde_urlencoded::to_string([("To", to.as_str()), ("Channel", "sms")])
                                .unwrap(),
                        )
                        .send()
                        .await
                        .unwrap();
                    json_of(res).await
                })
            })
            .collect();
        let mut sids = std::collections::BTreeSet::new();
        for c in creates {
            let (status, v) = c.await.unwrap();
            assert_eq!(
                (status, v["status"].as_str()),
                (201, Some("pending")),
                "{v}"
            );
            sids.insert(v["sid"].as_str().unwrap().to_owned());
        }
        assert_eq!(
            sids.len(),
            1,
            "round {round}: one new verification: {sids:?}"
        );
        assert!(!sids.contains(&first), "round {round}");
        rig.sms_to(&to, 2).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            rig.sms_to(&to, 2).await.len(),
            2,
            "round {round}: one SMS for the burst"
        );
        // It is the number's pending verification: found by To.
        let (status, c) = rig
            .twilio(&check, &[("To", &to), ("Code", "0000000")], true)
            .await;
        assert_eq!(
            (status, c["sid"].as_str(), c["status"].as_str()),
            (200, sids.first().map(String::as_str), Some("pending")),
            "{c}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_concurrent_creates_on_the_embedded_store() {
    twilio_concurrent_creates(Store::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_concurrent_creates_on_redis() {
    twilio_concurrent_creates(Store::Redis).await;
}

/// An issuer without `[integrations.*]`: the routes the OpenAPI document lists answer 404 in
/// their peer's shape (Supabase's, Twilio's 20404), whatever the credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integrations_not_configured_answer_404_in_their_peers_shape() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = ServeToml::new(ISSUER).write(dir.path());
    let serve = Serve::start(dir.path(), &config, port, &[]);
    let http = reqwest::Client::new();
    let ts = now().to_string();
    let body = supabase_payload("14155550999", "123456");
    let sig =
        WebhookSecret::parse_list(&secret(1)).unwrap()[0].sign("msg_off", &ts, body.as_bytes());
    let res = http
        .post(format!("{}/v1/hooks/supabase/send-sms", serve.base))
        .header("webhook-id", "msg_off")
        .header("webhook-timestamp", ts)
        .header("webhook-signature", sig)
        .body(body)
        .send()
        .await
        .unwrap();
    let (status, answer) = json_of(res).await;
    assert_supabase_error(status, &answer, 404);
    for (path, get) in [
        (format!("/v2/Services/{SERVICE}/Verifications"), false),
        (format!("/v2/Services/{SERVICE}/VerificationCheck"), false),
        (
            format!("/v2/Services/{SERVICE}/Verifications/VE00000000000000000000000000000000"),
            true,
        ),
    ] {
        let url = format!("{}{path}", serve.base);
        let req = if get {
            http.get(url)
        } else {
            http.post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body("To=%2B14155550999&Channel=sms&Code=123456")
        };
        let (status, answer) =
            json_of(req.basic_auth(ACCOUNT, Some(TOKEN)).send().await.unwrap()).await;
        assert_twilio_error(status, &answer, 404, 20404);
    }
}
