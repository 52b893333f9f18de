//! The emulated phone: a router speaking the sms-gate.app third-party API, faithful enough
//! that the official client libraries work against it unchanged.
//!
//! It serves the local-mode paths (`/message`, `/messages`, `/messages/{id}`, `/health`,
//! `/webhooks`, `/webhook`, `/device`, `/settings`, `/logs`, `/auth/token`) and the same under
//! `/3rdparty/v1` and `/api/3rdparty/v1` (cloud and private server); Basic auth (and Bearer
//! tokens from `POST /auth/token`); 202 + `MessageState` + `Location`; 409 on a duplicate id;
//! `{"message": ...}` errors; the seven states with the recipients roll-up and the `states`
//! history; signed webhooks (`X-Signature`, `X-Timestamp`) with retries and back-off; and
//! Android's per-app sending limit (30 per 60 s by default; past it a message goes `Failed`
//! with `RESULT_ERROR_LIMIT_EXCEEDED`).
//!
//! Knobs (delay per state change, failure rate, dropped delivery reports, offline modes, the
//! Android limit) change at runtime through `GET/POST /_control` (authenticated), and
//! `GET /_emulator/messages?phone=` lists what it "sent" (unauthenticated: a development tool).
//!
//! # Security
//! The emulator shows the texts it sent, codes included: it is a development and test tool,
//! never a production gateway.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use otpgate_core::phone::PhoneNumber;
use otpgate_core::wire::smsgate::{
    DataMessage, HealthResponse, MessageState, RecipientState, SendMessage, TextMessage, Webhook,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::clock::{Clock, SystemClock};
use crate::gateway::crypto;

/// The events a webhook may subscribe to.
pub const EVENTS: [&str; 10] = [
    "sms:received",
    "sms:data-received",
    "sms:sent",
    "sms:delivered",
    "sms:failed",
    "sms:cancelled",
    "system:ping",
    "mms:received",
    "mms:downloaded",
    "app:started",
];

/// The error Android reports past its per-app limit.
pub const LIMIT_EXCEEDED: &str = "RESULT_ERROR_LIMIT_EXCEEDED";
/// The error of a random (knob) failure.
pub const GENERIC_FAILURE: &str = "RESULT_ERROR_GENERIC_FAILURE";
/// The error of a message whose ttl passed before it could be sent.
pub const EXPIRED: &str = "message expired";

const APP_VERSION: &str = "1.66.0-otpgate-emulator";
const MAX_MESSAGES: usize = 100_000;

/// How the emulated phone answers when "offline".
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Offline {
    /// Normal operation.
    #[default]
    Online,
    /// Every API call answers 503 (the phone's server is up but the app is not).
    Unavailable,
    /// New connections are closed at once (connection refused / reset); calls on open
    /// connections answer 503 with `Connection: close`.
    Refuse,
}

/// The knobs tests and benchmarks turn at runtime (`POST /_control`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Knobs {
    /// Delay before each state change, in milliseconds.
    pub delay_ms: u64,
    /// Share of sends that fail with `RESULT_ERROR_GENERIC_FAILURE`, 0.0–1.0.
    pub failure_rate: f64,
    /// Share of delivery reports that never come (the message stays `Sent`), 0.0–1.0.
    pub drop_reports: f64,
    /// Offline mode.
    pub offline: Offline,
    /// Android's per-app limit: SMS segments per window (0 = no limit).
    pub limit: u32,
    /// The limit's sliding window, in milliseconds.
    pub limit_window_ms: u64,
    /// First webhook retry delay, doubled on each retry (the app: 5 s).
    pub webhook_retry_base_ms: u64,
    /// Webhook retries after the first attempt (the app: 15).
    pub webhook_retries: u32,
    /// Interval of `system:ping` webhooks, in milliseconds (0 = off, as the app's default).
    pub ping_interval_ms: u64,
}

impl Default for Knobs {
    fn default() -> Self {
        Self {
            delay_ms: 200,
            failure_rate: 0.0,
            drop_reports: 0.0,
            offline: Offline::Online,
            limit: 30,
            limit_window_ms: 60_000,
            webhook_retry_base_ms: 5_000,
            webhook_retries: 15,
            ping_interval_ms: 0,
        }
    }
}

/// A partial update of [`Knobs`]: the body of `POST /_control`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KnobsPatch {
    delay_ms: Option<u64>,
    failure_rate: Option<f64>,
    drop_reports: Option<f64>,
    offline: Option<OfflinePatch>,
    limit: Option<u32>,
    limit_window_ms: Option<u64>,
    webhook_retry_base_ms: Option<u64>,
    webhook_retries: Option<u32>,
    ping_interval_ms: Option<u64>,
}

/// `offline` accepts a boolean too (`true` = 503).
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
enum OfflinePatch {
    Flag(bool),
    Mode(Offline),
}

impl Knobs {
    fn apply(&self, p: KnobsPatch) -> Result<Self, String> {
        let mut k = self.clone();
        if let Some(v) = p.delay_ms {
            k.delay_ms = v.min(600_000);
        }
        for (name, src, dst) in [
            ("failure_rate", p.failure_rate, &mut k.failure_rate),
            ("drop_reports", p.drop_reports, &mut k.drop_reports),
        ] {
            if let Some(v) = src {
                if !(0.0..=1.0).contains(&v) {
                    return Err(format!("{name}: must be between 0 and 1"));
                }
                *dst = v;
            }
        }
        match p.offline {
            Some(OfflinePatch::Flag(true)) => k.offline = Offline::Unavailable,
            Some(OfflinePatch::Flag(false)) => k.offline = Offline::Online,
            Some(OfflinePatch::Mode(m)) => k.offline = m,
            None => {}
        }
        if let Some(v) = p.limit {
            k.limit = v;
        }
        if let Some(v) = p.limit_window_ms {
            if v == 0 {
                return Err("limit_window_ms: must be positive".into());
            }
            k.limit_window_ms = v;
        }
        if let Some(v) = p.webhook_retry_base_ms {
            k.webhook_retry_base_ms = v.min(3_600_000);
        }
        if let Some(v) = p.webhook_retries {
            k.webhook_retries = v.min(30);
        }
        if let Some(v) = p.ping_interval_ms {
            k.ping_interval_ms = if v == 0 { 0 } else { v.clamp(100, 86_400_000) };
        }
        Ok(k)
    }
}

/// How the emulated phone is set up.
#[derive(Clone)]
pub struct EmulatorConfig {
    /// The Basic-auth user (the app: `sms`).
    pub username: String,
    /// The Basic-auth password.
    pub password: String,
    /// The webhook signing key.
    pub signing_key: String,
    /// The device id it reports.
    pub device_id: String,
    /// The device name.
    pub device_name: String,
    /// Webhook URLs registered at start for `sms:sent`, `sms:delivered` and `sms:failed`.
    pub webhooks: Vec<String>,
    /// The end-to-end encryption passphrase, to read encrypted messages.
    pub encryption_passphrase: Option<String>,
    /// The initial knobs.
    pub knobs: Knobs,
    /// The clock for timestamps and expiry.
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for EmulatorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorConfig")
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .field("signing_key", &"[redacted]")
            .field("device_id", &self.device_id)
            .field("webhooks", &self.webhooks)
            .field("knobs", &self.knobs)
            .finish_non_exhaustive()
    }
}

impl EmulatorConfig {
    /// A configuration with the app's defaults; a missing password or signing key is made up
    /// (8 characters, as the app does).
    pub fn new(
        username: impl Into<String>,
        password: Option<String>,
        signing_key: Option<String>,
    ) -> Self {
        Self {
            username: username.into(),
            password: password.unwrap_or_else(|| nanoid(8)),
            signing_key: signing_key.unwrap_or_else(|| nanoid(8)),
            device_id: nanoid(21),
            device_name: "otpgate emulator".into(),
            webhooks: Vec::new(),
            encryption_passphrase: None,
            knobs: Knobs::default(),
            clock: Arc::new(SystemClock),
        }
    }
}

/// What the emulated phone "sent": `GET /_emulator/messages`.
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
pub struct SentMessage {
    /// The message id.
    pub id: String,
    /// The recipient (decrypted when the passphrase is known).
    pub phone: String,
    /// The text (decrypted when the passphrase is known).
    pub text: String,
    /// `Sent` or `Delivered`.
    pub state: String,
    /// When the message was accepted, RFC 3339.
    pub created_at: String,
    /// When it left the phone, RFC 3339.
    pub sent_at: String,
    /// When the delivery report came, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<String>,
    /// The SIM slot used (1 when unspecified).
    pub sim_number: u8,
}

#[derive(Clone, Debug)]
struct Recipient {
    /// As given (the encrypted blob when encrypted).
    given: String,
    /// The clear number when known.
    clear: Option<String>,
    state: &'static str,
    error: Option<String>,
}

#[derive(Clone, Debug)]
struct Msg {
    id: String,
    text: Option<String>,
    data: Option<DataMessage>,
    clear_text: Option<String>,
    decrypt_error: bool,
    encrypted: bool,
    recipients: Vec<Recipient>,
    states: BTreeMap<String, String>,
    state: &'static str,
    created_ms: i64,
    valid_until_ms: Option<i64>,
    schedule_at_ms: Option<i64>,
    with_report: bool,
    sim: u8,
}

impl Msg {
    fn roll_up(&self) -> &'static str {
        let all = |s: &str| self.recipients.iter().all(|r| r.state == s);
        let any = |s: &str| self.recipients.iter().any(|r| r.state == s);
        if any("Pending") {
            "Pending"
        } else if any("Cancelling") {
            "Cancelling"
        } else if any("Processed") {
            "Processed"
        } else if all("Delivered") {
            "Delivered"
        } else if all("Failed") {
            "Failed"
        } else if all("Cancelled") {
            "Cancelled"
        } else {
            "Sent"
        }
    }

    fn refresh(&mut self, now_ms: i64) {
        let s = self.roll_up();
        if s != self.state {
            self.state = s;
            self.states
                .entry(s.to_owned())
                .or_insert_with(|| fmt_time(now_ms));
        }
    }

    fn view(&self, device_id: &str, content: bool) -> MessageState {
        MessageState {
            id: self.id.clone(),
            device_id: Some(device_id.to_owned()),
            state: self.state.to_owned(),
            is_hashed: false,
            is_encrypted: self.encrypted,
            recipients: self
                .recipients
                .iter()
                .map(|r| RecipientState {
                    phone_number: r.given.clone(),
                    state: r.state.to_owned(),
                    error: if r.state == "Failed" {
                        r.error.clone()
                    } else {
                        None
                    },
                })
                .collect(),
            states: self.states.clone(),
            text_message: if content {
                self.text.clone().map(|text| TextMessage { text })
            } else {
                None
            },
            data_message: if content { self.data.clone() } else { None },
        }
    }
}

#[derive(Default)]
struct Inner {
    messages: HashMap<String, Msg>,
    order: Vec<String>,
    webhooks: Vec<Webhook>,
    /// Times of the segments handed to the radio (Android's sliding window).
    sends: VecDeque<i64>,
    outbox: Vec<SentMessage>,
    settings: Value,
    tokens: HashMap<String, i64>,
    signing_key: String,
    passphrase: Option<String>,
}

/// The emulated phone.
pub struct Emulator {
    username: String,
    password: String,
    device_id: String,
    device_name: String,
    started_ms: i64,
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
    knobs: Mutex<Knobs>,
    refuse: AtomicBool,
    pinger: AtomicBool,
    http: reqwest::Client,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("device_id", &self.device_id)
            .finish_non_exhaustive()
    }
}

type Resp = Response;

fn error(status: StatusCode, message: impl Into<String>) -> Resp {
    (status, axum::Json(json!({ "message": message.into() }))).into_response()
}

/// A random id from the nanoid alphabet.
fn nanoid(len: usize) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
    let bytes = crate::random::bytes(len).unwrap_or_else(|_| {
        // The OS RNG failing is not recoverable in any useful way; a time-derived id keeps the
        // emulator (a test tool) answering.
        let t = SystemClock.now_ms().unsigned_abs();
        (0..len)
            .map(|i| (t >> (i % 8 * 8)) as u8 ^ i as u8)
            .collect()
    });
    bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(b & 63)]))
        .collect()
}

fn random_unit() -> f64 {
    let b = crate::random::bytes(8).unwrap_or_else(|_| vec![255; 8]);
    let mut a = [0u8; 8];
    a.copy_from_slice(&b);
    (u64::from_le_bytes(a) >> 11) as f64 / (1u64 << 53) as f64
}

/// Unix ms → `2026-08-01T10:00:00.000Z` (the core's RFC 3339 formatter).
fn fmt_time(ms: i64) -> String {
    otpgate_core::time::format_rfc3339_millis(ms)
}

/// Parses RFC 3339 (`2026-08-01T10:00:00Z`, fractions and offsets allowed) to Unix ms: the
/// core's [`otpgate_core::time::parse_rfc3339`], `None` for anything it refuses.
pub fn parse_time(s: &str) -> Option<i64> {
    otpgate_core::time::parse_rfc3339(s).ok()
}

impl Emulator {
    /// A phone set up by `cfg`.
    pub fn new(cfg: EmulatorConfig) -> Arc<Self> {
        let webhooks = cfg
            .webhooks
            .iter()
            .flat_map(|url| {
                ["sms:sent", "sms:delivered", "sms:failed"].map(|event| Webhook {
                    id: Some(nanoid(21)),
                    device_id: None,
                    url: url.clone(),
                    event: event.to_owned(),
                })
            })
            .collect();
        let now = cfg.clock.now_ms();
        Arc::new(Self {
            username: cfg.username,
            password: cfg.password,
            device_id: cfg.device_id,
            device_name: cfg.device_name,
            started_ms: now,
            clock: cfg.clock,
            inner: Mutex::new(Inner {
                webhooks,
                signing_key: cfg.signing_key,
                passphrase: cfg.encryption_passphrase,
                settings: json!({
                    "messages": {"send_interval_min": null, "send_interval_max": null, "limit_period": "Disabled",
                                 "limit_value": 0, "sim_selection_mode": "OSDefault", "processing_order": "LIFO"},
                    "webhooks": {"internet_required": true, "retry_count": 15},
                    "ping": {"interval_seconds": null},
                    "logs": {"lifetime_days": 30},
                }),
                ..Inner::default()
            }),
            knobs: Mutex::new(cfg.knobs),
            refuse: AtomicBool::new(false),
            pinger: AtomicBool::new(false),
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(30))
                .user_agent(concat!("me.capcom.smsgateway/", "1.66.0"))
                .build()
                .unwrap_or_default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent-enough test data: keep serving.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current knobs.
    pub fn knobs(&self) -> Knobs {
        self.knobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the knobs.
    pub fn set_knobs(&self, knobs: Knobs) {
        self.refuse
            .store(knobs.offline == Offline::Refuse, Ordering::SeqCst);
        *self
            .knobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = knobs;
    }

    /// The device id this phone reports.
    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    /// The current webhook signing key.
    pub fn signing_key(&self) -> String {
        self.lock().signing_key.clone()
    }

    /// What was sent (reached `Sent` or later), optionally for one phone number.
    pub fn sent(&self, phone: Option<&str>) -> Vec<SentMessage> {
        self.lock()
            .outbox
            .iter()
            .filter(|m| phone.is_none_or(|p| m.phone == p))
            .cloned()
            .collect()
    }

    /// The states of every message, by id (tests).
    pub fn states(&self) -> HashMap<String, String> {
        self.lock()
            .messages
            .values()
            .map(|m| (m.id.clone(), m.state.to_owned()))
            .collect()
    }

    /// The full API router (local paths, `/3rdparty/v1`, `/api/3rdparty/v1`, `/_control`,
    /// `/_emulator/messages`).
    pub fn router(self: &Arc<Self>) -> Router {
        self.start_pinger();
        let api = Router::new()
            .route("/message", post(send).get(list))
            .route("/messages", post(send).get(list))
            .route("/message/{id}", get(get_one).delete(cancel))
            .route("/messages/{id}", get(get_one).delete(cancel))
            .route("/webhook", get(list_webhooks).post(add_webhook))
            .route("/webhooks", get(list_webhooks).post(add_webhook))
            .route("/webhook/{id}", axum::routing::delete(delete_webhook))
            .route("/webhooks/{id}", axum::routing::delete(delete_webhook))
            .route("/device", get(devices))
            .route("/devices", get(devices))
            .route(
                "/settings",
                get(get_settings).patch(patch_settings).put(patch_settings),
            )
            .route("/logs", get(empty_list))
            .route("/inbox", get(empty_list))
            .route("/inbox/export", post(accepted_empty))
            .route("/inbox/refresh", post(accepted_empty))
            .route("/messages/inbox/export", post(accepted_empty))
            .route("/devices/{id}", axum::routing::delete(delete_device))
            .route("/auth/token", post(issue_token))
            .route("/_control", get(get_control).post(post_control))
            .route_layer(middleware::from_fn_with_state(self.clone(), auth))
            .route("/health", get(health));
        let api = api.layer(middleware::from_fn_with_state(self.clone(), offline));
        Router::new()
            .merge(api.clone())
            .nest("/3rdparty/v1", api.clone())
            .nest("/api/3rdparty/v1", api)
            .with_state(self.clone())
            .merge(self.outbox_router())
    }

    /// Sends `system:ping` webhooks every `ping_interval_ms` (knob) while the phone is online.
    fn start_pinger(self: &Arc<Self>) {
        if tokio::runtime::Handle::try_current().is_err()
            || self.pinger.swap(true, Ordering::SeqCst)
        {
            return;
        }
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut last = 0i64;
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let Some(emu) = weak.upgrade() else { return };
                let k = emu.knobs();
                let now = emu.clock.now_ms();
                let every = i64::try_from(k.ping_interval_ms).unwrap_or(i64::MAX);
                if k.ping_interval_ms > 0 && k.offline == Offline::Online && now - last >= every {
                    last = now;
                    emu.emit("system:ping", json!({"health": emu.health_view()}));
                }
            }
        });
    }

    fn health_view(&self) -> HealthResponse {
        let (failed, pending) = {
            let g = self.lock();
            let failed = g.messages.values().filter(|m| m.state == "Failed").count();
            let pending = g.messages.values().filter(|m| m.state == "Pending").count();
            (failed, pending)
        };
        HealthResponse {
            status: "pass".into(),
            version: Some(APP_VERSION.into()),
            release_id: Some(json!(1)),
            checks: Some(json!({
                "messages:failed": {"description": "Failed messages", "observedUnit": "messages", "observedValue": failed, "status": "pass"},
                "messages:pending": {"description": "Pending messages", "observedUnit": "messages", "observedValue": pending, "status": "pass"},
                "connection:status": {"description": "Internet connection status", "observedUnit": "boolean", "observedValue": 1, "status": "pass"},
            })),
        }
    }

    /// Only `GET /_emulator/messages?phone=` (what the issuer mounts in dev mode).
    pub fn outbox_router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/_emulator/messages", get(outbox))
            .with_state(self.clone())
    }

    /// Serves [`Emulator::router`] on `listener`, honouring [`Offline::Refuse`] by closing new
    /// connections at once.
    ///
    /// # Errors
    /// I/O errors of the listener.
    pub async fn serve(self: &Arc<Self>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        let l = RefusingListener {
            inner: listener,
            emu: self.clone(),
        };
        axum::serve(l, self.router()).await
    }

    fn sign(&self, body: &str) -> (String, String) {
        let ts = self.clock.now_secs().to_string();
        let key = self.lock().signing_key.clone();
        (
            otpgate_core::webhook::sign_smsgate(&key, body.as_bytes(), &ts),
            ts,
        )
    }

    fn emit(self: &Arc<Self>, event: &str, payload: Value) {
        let hooks: Vec<Webhook> = self
            .lock()
            .webhooks
            .iter()
            .filter(|w| w.event == event)
            .cloned()
            .collect();
        for hook in hooks {
            let envelope = json!({
                "id": nanoid(21),
                "webhookId": hook.id,
                "event": event,
                "deviceId": self.device_id,
                "payload": payload,
            });
            let body = envelope.to_string();
            let me = self.clone();
            tokio::spawn(async move { me.deliver_webhook(&hook.url, &body).await });
        }
    }

    async fn deliver_webhook(&self, url: &str, body: &str) {
        let mut attempt = 0u32;
        loop {
            let (sig, ts) = self.sign(body);
            let res = self
                .http
                .post(url)
                .header(header::CONTENT_TYPE, "application/json")
                .header("X-Signature", sig)
                .header("X-Timestamp", ts)
                .body(body.to_owned())
                .send()
                .await;
            if matches!(&res, Ok(r) if r.status().is_success()) {
                return;
            }
            let k = self.knobs();
            if attempt >= k.webhook_retries {
                tracing::warn!(
                    url,
                    "emulator: webhook given up after {} attempts",
                    attempt + 1
                );
                return;
            }
            let wait = k
                .webhook_retry_base_ms
                .saturating_mul(1u64 << attempt.min(20));
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
    }

    fn payload(&self, m: &Msg, r: &Recipient) -> Value {
        json!({
            "messageId": m.id,
            "recipient": r.given,
            "phoneNumber": r.given,
            "simNumber": m.sim,
        })
    }

    /// Moves recipient `idx` of message `id` to `state`; returns the webhook to emit.
    fn transition(
        &self,
        id: &str,
        idx: usize,
        state: &'static str,
        error: Option<String>,
    ) -> Option<(String, Value)> {
        let now = self.clock.now_ms();
        let mut g = self.lock();
        let inner = &mut *g;
        let m = inner.messages.get_mut(id)?;
        let r = m.recipients.get_mut(idx)?;
        r.state = state;
        r.error = error.clone();
        let r = r.clone();
        m.refresh(now);
        let mut payload = self.payload(m, &r);
        let when = fmt_time(now);
        let event =
            match state {
                "Sent" => {
                    payload["partsCount"] = json!(m.clear_text.as_deref().map_or(1, segments));
                    payload["sentAt"] = json!(when);
                    inner.outbox.push(SentMessage {
                        id: m.id.clone(),
                        phone: r.clear.clone().unwrap_or_else(|| r.given.clone()),
                        text: m.clear_text.clone().unwrap_or_default(),
                        state: "Sent".into(),
                        created_at: fmt_time(m.created_ms),
                        sent_at: when,
                        delivered_at: None,
                        sim_number: m.sim,
                    });
                    "sms:sent"
                }
                "Delivered" => {
                    payload["deliveredAt"] = json!(when);
                    if let Some(o) = inner.outbox.iter_mut().rev().find(|o| {
                        o.id == m.id && Some(&o.phone) == r.clear.as_ref().or(Some(&r.given))
                    }) {
                        o.state = "Delivered".into();
                        o.delivered_at = Some(when);
                    }
                    "sms:delivered"
                }
                "Failed" => {
                    payload["failedAt"] = json!(when);
                    payload["reason"] = json!(error.unwrap_or_default());
                    "sms:failed"
                }
                _ => return None,
            };
        Some((event.to_owned(), payload))
    }

    async fn process(self: Arc<Self>, id: String) {
        let delay = || Duration::from_millis(self.knobs().delay_ms);
        let (schedule, n) = {
            let g = self.lock();
            let Some(m) = g.messages.get(&id) else { return };
            (m.schedule_at_ms, m.recipients.len())
        };
        if let Some(at) = schedule {
            let wait = at - self.clock.now_ms();
            if wait > 0 {
                tokio::time::sleep(Duration::from_millis(wait.unsigned_abs())).await;
            }
        }
        tokio::time::sleep(delay()).await;
        // Pending → Processed (handed to Android), or Failed when expired or unreadable.
        let mut live = Vec::new();
        for idx in 0..n {
            let now = self.clock.now_ms();
            let verdict = {
                let g = self.lock();
                let Some(m) = g.messages.get(&id) else { return };
                if m.recipients[idx].state != "Pending" {
                    continue; // cancelled
                }
                if m.valid_until_ms.is_some_and(|v| now >= v) {
                    Some(EXPIRED.to_owned())
                } else if m.decrypt_error {
                    Some("failed to decrypt message".to_owned())
                } else {
                    None
                }
            };
            let ev = self.transition(
                &id,
                idx,
                if verdict.is_some() {
                    "Failed"
                } else {
                    "Processed"
                },
                verdict,
            );
            match ev {
                Some((e, p)) => self.emit(&e, p),
                None => live.push(idx),
            }
        }
        if live.is_empty() {
            return;
        }
        tokio::time::sleep(delay()).await;
        // Processed → Sent or Failed: expiry again, Android's limit, random failures.
        let mut sent = Vec::new();
        for idx in live {
            let now = self.clock.now_ms();
            let k = self.knobs();
            let verdict = {
                let mut g = self.lock();
                let inner = &mut *g;
                let Some(m) = inner.messages.get(&id) else {
                    return;
                };
                let parts = m.clear_text.as_deref().map_or(1, segments);
                let window = i64::try_from(k.limit_window_ms).unwrap_or(i64::MAX);
                while inner.sends.front().is_some_and(|&t| t <= now - window) {
                    inner.sends.pop_front();
                }
                if m.valid_until_ms.is_some_and(|v| now >= v) {
                    Some(EXPIRED.to_owned())
                } else if k.limit > 0 && inner.sends.len() + parts as usize > k.limit as usize {
                    Some(LIMIT_EXCEEDED.to_owned())
                } else if k.failure_rate > 0.0 && random_unit() < k.failure_rate {
                    // The radio was tried: the attempt counts against Android's limit.
                    inner.sends.extend(std::iter::repeat_n(now, parts as usize));
                    Some(GENERIC_FAILURE.to_owned())
                } else {
                    inner.sends.extend(std::iter::repeat_n(now, parts as usize));
                    None
                }
            };
            let failed = verdict.is_some();
            if let Some((e, p)) =
                self.transition(&id, idx, if failed { "Failed" } else { "Sent" }, verdict)
            {
                self.emit(&e, p);
            }
            if !failed {
                sent.push(idx);
            }
        }
        let with_report = self.lock().messages.get(&id).is_some_and(|m| m.with_report);
        if sent.is_empty() || !with_report {
            return;
        }
        tokio::time::sleep(delay()).await;
        for idx in sent {
            let k = self.knobs();
            if k.drop_reports > 0.0 && random_unit() < k.drop_reports {
                continue;
            }
            if let Some((e, p)) = self.transition(&id, idx, "Delivered", None) {
                self.emit(&e, p);
            }
        }
    }

    /// Validates and enqueues a send; the answer is the HTTP response.
    fn accept(self: &Arc<Self>, body: &[u8], skip_validation: bool, location_base: &str) -> Resp {
        let req: SendMessage = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("failed to parse request: {e}"),
                );
            }
        };
        let now = self.clock.now_ms();
        let forms = usize::from(req.text_message.is_some())
            + usize::from(req.message.is_some())
            + usize::from(req.data_message.is_some());
        if forms != 1 {
            return error(
                StatusCode::BAD_REQUEST,
                "exactly one of textMessage, message or dataMessage is required",
            );
        }
        let text = req
            .text_message
            .as_ref()
            .map(|t| t.text.clone())
            .or_else(|| req.message.clone());
        if let Some(t) = &text
            && (t.is_empty() || t.chars().count() > 65_535)
        {
            return error(
                StatusCode::BAD_REQUEST,
                "text must be 1 to 65535 characters",
            );
        }
        if let Some(d) = &req.data_message {
            use base64::Engine as _;
            if d.port == 0
                || !(4..=65_535).contains(&d.data.len())
                || base64::engine::general_purpose::STANDARD
                    .decode(&d.data)
                    .is_err()
            {
                return error(
                    StatusCode::BAD_REQUEST,
                    "dataMessage: data must be base64 (4..65535) and port 1..65535",
                );
            }
        }
        if let Some(id) = &req.id
            && (id.is_empty() || id.len() > 36)
        {
            return error(StatusCode::BAD_REQUEST, "id must be 1 to 36 characters");
        }
        if req.device_id.as_ref().is_some_and(|d| d.len() > 21) {
            return error(
                StatusCode::BAD_REQUEST,
                "deviceId must be at most 21 characters",
            );
        }
        if req.phone_numbers.is_empty() || req.phone_numbers.len() > 100 {
            return error(
                StatusCode::BAD_REQUEST,
                "phoneNumbers must hold 1 to 100 numbers",
            );
        }
        if req.sim_number.is_some_and(|s| !(1..=3).contains(&s)) {
            return error(StatusCode::BAD_REQUEST, "simNumber must be 1 to 3");
        }
        if req.ttl.is_some() && req.valid_until.is_some() {
            return error(
                StatusCode::BAD_REQUEST,
                "fields conflict: ttl and validUntil",
            );
        }
        if req.ttl.is_some_and(|t| t < 5) {
            return error(StatusCode::BAD_REQUEST, "ttl must be at least 5 seconds");
        }
        let valid_until_ms = match (&req.ttl, &req.valid_until) {
            (Some(t), _) => Some(
                now.saturating_add(
                    i64::try_from(*t)
                        .unwrap_or(i64::MAX / 2000)
                        .saturating_mul(1000),
                ),
            ),
            (None, Some(v)) => match parse_time(v) {
                Some(ms) if ms <= now => {
                    return error(StatusCode::BAD_REQUEST, "message already expired");
                }
                Some(ms) => Some(ms),
                None => return error(StatusCode::BAD_REQUEST, "validUntil must be RFC 3339"),
            },
            (None, None) => None,
        };
        let schedule_at_ms = match &req.schedule_at {
            Some(s) => match parse_time(s) {
                Some(ms) if ms <= now => {
                    return error(StatusCode::BAD_REQUEST, "scheduleAt must be in the future");
                }
                Some(ms) if valid_until_ms.is_some_and(|v| ms > v) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "scheduleAt must not be after validUntil",
                    );
                }
                Some(ms) => Some(ms),
                None => return error(StatusCode::BAD_REQUEST, "scheduleAt must be RFC 3339"),
            },
            None => None,
        };
        let passphrase = self.lock().passphrase.clone();
        let mut recipients = Vec::with_capacity(req.phone_numbers.len());
        let mut seen = std::collections::HashSet::new();
        let mut decrypt_error = false;
        for p in &req.phone_numbers {
            if p.is_empty() || p.len() > 128 {
                return error(
                    StatusCode::BAD_REQUEST,
                    "each phone number must be 1 to 128 characters",
                );
            }
            let (given, clear) = if req.is_encrypted {
                let clear = passphrase
                    .as_deref()
                    .and_then(|k| crypto::decrypt(k, p).ok());
                decrypt_error |= clear.is_none();
                (p.clone(), clear)
            } else if skip_validation {
                (p.clone(), Some(p.clone()))
            } else {
                match PhoneNumber::parse(p) {
                    Ok(n) => (n.as_str().to_owned(), Some(n.as_str().to_owned())),
                    Err(_) => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            format!("failed to parse phone number: {}", mask(p)),
                        );
                    }
                }
            };
            if !seen.insert(given.clone()) {
                return error(StatusCode::BAD_REQUEST, "phone numbers must be unique");
            }
            recipients.push(Recipient {
                given,
                clear,
                state: "Pending",
                error: None,
            });
        }
        let clear_text = match (&text, req.is_encrypted) {
            (Some(t), true) => {
                let c = passphrase
                    .as_deref()
                    .and_then(|k| crypto::decrypt(k, t).ok());
                decrypt_error |= c.is_none();
                c
            }
            (Some(t), false) => Some(t.clone()),
            (None, _) => None,
        };
        let id = req.id.clone().unwrap_or_else(|| nanoid(21));
        let mut states = BTreeMap::new();
        states.insert("Pending".to_owned(), fmt_time(now));
        let msg = Msg {
            id: id.clone(),
            text,
            data: req.data_message.clone(),
            clear_text,
            decrypt_error,
            encrypted: req.is_encrypted,
            recipients,
            states,
            state: "Pending",
            created_ms: now,
            valid_until_ms,
            schedule_at_ms,
            with_report: req.with_delivery_report.unwrap_or(true),
            sim: req.sim_number.unwrap_or(1),
        };
        let view = msg.view(&self.device_id, true);
        {
            let mut g = self.lock();
            if g.messages.contains_key(&id) {
                return error(
                    StatusCode::CONFLICT,
                    "message with the same ID already exists",
                );
            }
            if g.messages.len() >= MAX_MESSAGES {
                // Forget the oldest (an emulator must not grow without bound in long runs).
                let old = g.order.remove(0);
                g.messages.remove(&old);
            }
            g.messages.insert(id.clone(), msg);
            g.order.push(id.clone());
        }
        tokio::spawn(self.clone().process(id.clone()));
        let mut resp = (StatusCode::ACCEPTED, axum::Json(view)).into_response();
        if let Ok(v) = HeaderValue::from_str(&format!("{location_base}/messages/{id}")) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        resp
    }
}

/// The number of SMS segments of `text` (at least 1).
fn segments(text: &str) -> u32 {
    otpgate_core::sms::segments(text).segments.max(1)
}

/// Masks a number for error messages and logs.
fn mask(p: &str) -> String {
    let n = p.chars().count();
    if n <= 4 {
        "•".repeat(n)
    } else {
        format!(
            "{}{}",
            "•".repeat(n - 2),
            p.chars().skip(n - 2).collect::<String>()
        )
    }
}

struct RefusingListener {
    inner: tokio::net::TcpListener,
    emu: Arc<Emulator>,
}

impl axum::serve::Listener for RefusingListener {
    type Io = tokio::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((s, a)) => {
                    if self.emu.refuse.load(Ordering::SeqCst) {
                        drop(s);
                        continue;
                    }
                    let _ = s.set_nodelay(true);
                    return (s, a);
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

async fn offline(State(emu): State<Arc<Emulator>>, req: Request, next: Next) -> Resp {
    let path = req.uri().path();
    if path.ends_with("/_control") || path.starts_with("/_emulator") {
        return next.run(req).await;
    }
    match emu.knobs().offline {
        Offline::Online => next.run(req).await,
        mode => {
            let mut r = error(StatusCode::SERVICE_UNAVAILABLE, "device offline");
            if mode == Offline::Refuse {
                r.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            r
        }
    }
}

async fn auth(State(emu): State<Arc<Emulator>>, req: Request, next: Next) -> Resp {
    if authorized(&emu, req.headers()) {
        next.run(req).await
    } else {
        let mut r = StatusCode::UNAUTHORIZED.into_response();
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"Access to SMS Gateway\""),
        );
        r
    }
}

fn authorized(emu: &Emulator, headers: &HeaderMap) -> bool {
    use base64::Engine as _;
    let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let ct = otpgate_core::code::ct_eq;
    if let Some(b) = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))
    {
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b.trim()) else {
            return false;
        };
        let expected = format!("{}:{}", emu.username, emu.password);
        return ct(&raw, expected.as_bytes());
    }
    if let Some(t) = v.strip_prefix("Bearer ") {
        let now = emu.clock.now_ms();
        let g = emu.lock();
        // Compare against every live token in constant time each.
        return g.tokens.iter().fold(false, |ok, (tok, &exp)| {
            ok | (ct(tok.as_bytes(), t.trim().as_bytes()) && exp > now)
        });
    }
    false
}

/// The path prefix the call came in under (`""`, `/3rdparty/v1`, or wherever it is mounted).
fn base_of(uri: &axum::http::Uri) -> String {
    let p = uri.path();
    let cut = p.rfind("/message").unwrap_or(0);
    p[..cut].to_owned()
}

async fn send(
    State(emu): State<Arc<Emulator>>,
    Query(q): Query<HashMap<String, String>>,
    axum::extract::OriginalUri(uri): axum::extract::OriginalUri,
    body: Bytes,
) -> Resp {
    let skip = match q.get("skipPhoneValidation").map(String::as_str) {
        None | Some("false" | "0" | "") => false,
        Some("true" | "1") => true,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "skipPhoneValidation must be a boolean",
            );
        }
    };
    emu.accept(&body, skip, &base_of(&uri))
}

async fn list(State(emu): State<Arc<Emulator>>, Query(q): Query<HashMap<String, String>>) -> Resp {
    let num = |k: &str, d: usize| -> Result<usize, String> {
        q.get(k).map_or(Ok(d), |v| {
            v.parse().map_err(|_| format!("{k} must be a number"))
        })
    };
    let limit = match num("limit", 50) {
        Ok(l) if (1..=100).contains(&l) => l,
        Ok(_) => return error(StatusCode::BAD_REQUEST, "limit must be 1 to 100"),
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let offset = match num("offset", 0) {
        Ok(o) => o,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let state = q.get("state").cloned();
    if let Some(s) = &state
        && !otpgate_core::wire::smsgate::STATES.contains(&s.as_str())
    {
        return error(StatusCode::BAD_REQUEST, "unknown state");
    }
    let bound = |k: &str| -> Result<Option<i64>, String> {
        match q.get(k) {
            None => Ok(None),
            Some(v) => parse_time(v)
                .map(Some)
                .ok_or_else(|| format!("{k} must be RFC 3339")),
        }
    };
    let (from, to) = match (bound("from"), bound("to")) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => return error(StatusCode::BAD_REQUEST, e),
    };
    let content = q
        .get("includeContent")
        .is_some_and(|v| v == "true" || v == "1");
    let ascending = match q.get("sort").map(String::as_str) {
        None | Some("-created_at") => false,
        Some("created_at") => true,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "sort must be created_at or -created_at",
            );
        }
    };
    let g = emu.lock();
    let mut all: Vec<&Msg> = g
        .order
        .iter()
        .filter_map(|id| g.messages.get(id))
        .filter(|m| state.as_deref().is_none_or(|s| m.state == s))
        .filter(|m| from.is_none_or(|f| m.created_ms >= f) && to.is_none_or(|t| m.created_ms < t))
        .collect();
    if !ascending {
        all.reverse();
    }
    let total = all.len();
    let page: Vec<MessageState> = all
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|m| m.view(&emu.device_id, content))
        .collect();
    let mut r = axum::Json(page).into_response();
    r.headers_mut()
        .insert("X-Total-Count", HeaderValue::from(total));
    r
}

async fn get_one(State(emu): State<Arc<Emulator>>, Path(id): Path<String>) -> Resp {
    match emu.lock().messages.get(&id) {
        Some(m) => axum::Json(m.view(&emu.device_id, true)).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn cancel(State(emu): State<Arc<Emulator>>, Path(id): Path<String>) -> Resp {
    let now = emu.clock.now_ms();
    let (view, cancelled) = {
        let mut g = emu.lock();
        let Some(m) = g.messages.get_mut(&id) else {
            return StatusCode::NOT_FOUND.into_response();
        };
        if m.state != "Pending" {
            return error(StatusCode::BAD_REQUEST, "message is not pending");
        }
        for r in &mut m.recipients {
            r.state = "Cancelled";
        }
        m.refresh(now);
        let cancelled: Vec<Value> = m
            .recipients
            .iter()
            .map(|r| {
                let mut p = emu.payload(m, r);
                p["cancelledAt"] = json!(fmt_time(now));
                p
            })
            .collect();
        (m.view(&emu.device_id, true), cancelled)
    };
    for p in cancelled {
        emu.emit("sms:cancelled", p);
    }
    axum::Json(view).into_response()
}

async fn health(State(emu): State<Arc<Emulator>>) -> Resp {
    axum::Json(emu.health_view()).into_response()
}

async fn list_webhooks(State(emu): State<Arc<Emulator>>) -> Resp {
    axum::Json(emu.lock().webhooks.clone()).into_response()
}

async fn add_webhook(State(emu): State<Arc<Emulator>>, body: Bytes) -> Resp {
    let mut hook: Webhook = match serde_json::from_slice(&body) {
        Ok(h) => h,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("failed to parse request: {e}"),
            );
        }
    };
    if !EVENTS.contains(&hook.event.as_str()) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("unknown event: {}", hook.event),
        );
    }
    match reqwest::Url::parse(&hook.url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        _ => return error(StatusCode::BAD_REQUEST, "url must be an http(s) URL"),
    }
    if hook
        .id
        .as_ref()
        .is_some_and(|i| i.is_empty() || i.len() > 36)
    {
        return error(StatusCode::BAD_REQUEST, "id must be 1 to 36 characters");
    }
    let id = hook.id.clone().unwrap_or_else(|| nanoid(21));
    hook.id = Some(id.clone());
    {
        let mut g = emu.lock();
        g.webhooks.retain(|w| w.id.as_deref() != Some(&id));
        g.webhooks.push(hook.clone());
    }
    (StatusCode::CREATED, axum::Json(hook)).into_response()
}

async fn delete_webhook(State(emu): State<Arc<Emulator>>, Path(id): Path<String>) -> Resp {
    emu.lock().webhooks.retain(|w| w.id.as_deref() != Some(&id));
    StatusCode::NO_CONTENT.into_response()
}

async fn devices(State(emu): State<Arc<Emulator>>) -> Resp {
    let now = fmt_time(emu.clock.now_ms());
    axum::Json(json!([{
        "id": emu.device_id,
        "name": emu.device_name,
        "createdAt": fmt_time(emu.started_ms),
        "updatedAt": now,
        "lastSeen": now,
        "simCards": [{"slotIndex": 0, "simNumber": 1}],
    }]))
    .into_response()
}

async fn get_settings(State(emu): State<Arc<Emulator>>) -> Resp {
    axum::Json(emu.lock().settings.clone()).into_response()
}

fn merge(dst: &mut Value, src: Value) {
    match (dst, src) {
        (Value::Object(d), Value::Object(s)) => {
            for (k, v) in s {
                merge(d.entry(k).or_insert(Value::Null), v);
            }
        }
        (d, s) => *d = s,
    }
}

async fn patch_settings(State(emu): State<Arc<Emulator>>, body: Bytes) -> Resp {
    let patch: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return error(StatusCode::BAD_REQUEST, "settings must be a JSON object"),
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("failed to parse request: {e}"),
            );
        }
    };
    let mut g = emu.lock();
    if let Some(k) = patch.pointer("/webhooks/signing_key") {
        match k.as_str() {
            Some(s) if !s.is_empty() => g.signing_key = s.to_owned(),
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "webhooks.signing_key must be a non-empty string",
                );
            }
        }
    }
    if let Some(p) = patch.pointer("/encryption/passphrase") {
        g.passphrase = p.as_str().filter(|s| !s.is_empty()).map(str::to_owned);
    }
    let mut shown = patch;
    // Secrets are write-only.
    if let Some(w) = shown.get_mut("webhooks").and_then(Value::as_object_mut) {
        w.remove("signing_key");
    }
    if let Some(e) = shown.get_mut("encryption").and_then(Value::as_object_mut) {
        e.remove("passphrase");
    }
    merge(&mut g.settings, shown);
    axum::Json(g.settings.clone()).into_response()
}

async fn accepted_empty() -> Resp {
    (StatusCode::ACCEPTED, axum::Json(json!({}))).into_response()
}

async fn delete_device(State(emu): State<Arc<Emulator>>, Path(id): Path<String>) -> Resp {
    if id == emu.device_id {
        error(
            StatusCode::BAD_REQUEST,
            "an emulated phone cannot delete itself",
        )
    } else {
        StatusCode::NO_CONTENT.into_response()
    }
}

async fn empty_list() -> Resp {
    axum::Json(json!([])).into_response()
}

async fn issue_token(State(emu): State<Arc<Emulator>>, body: Bytes) -> Resp {
    #[derive(Deserialize)]
    struct TokenRequest {
        #[serde(default)]
        ttl: Option<u64>,
        #[serde(default)]
        #[allow(dead_code)]
        scopes: Vec<String>,
    }
    let req: TokenRequest =
        match serde_json::from_slice(if body.is_empty() { b"{}" } else { &body }) {
            Ok(r) => r,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("failed to parse request: {e}"),
                );
            }
        };
    let ttl = req.ttl.unwrap_or(3600).clamp(1, 86_400 * 30);
    let exp = emu.clock.now_ms() + i64::try_from(ttl).unwrap_or(3600) * 1000;
    let token = nanoid(43);
    let id = nanoid(21);
    emu.lock().tokens.insert(token.clone(), exp);
    (
        StatusCode::CREATED,
        axum::Json(json!({"id": id, "token_type": "Bearer", "access_token": token, "expires_at": fmt_time(exp)})),
    )
        .into_response()
}

async fn get_control(State(emu): State<Arc<Emulator>>) -> Resp {
    axum::Json(emu.knobs()).into_response()
}

async fn post_control(State(emu): State<Arc<Emulator>>, body: Bytes) -> Resp {
    let patch: KnobsPatch = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("failed to parse request: {e}"),
            );
        }
    };
    match emu.knobs().apply(patch) {
        Ok(k) => {
            emu.set_knobs(k.clone());
            axum::Json(k).into_response()
        }
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

async fn outbox(
    State(emu): State<Arc<Emulator>>,
    Query(q): Query<HashMap<String, String>>,
) -> Resp {
    let phone = q.get("phone").map(|p| {
        PhoneNumber::parse(p)
            .map(|n| n.as_str().to_owned())
            .unwrap_or_else(|_| p.clone())
    });
    axum::Json(emu.sent(phone.as_deref())).into_response()
}

/// Runs `otpgate emulator`.
///
/// # Errors
/// Start-up failures (the address is taken, bad arguments).
pub fn run_cli(args: crate::cli::EmulatorArgs) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&args.failure_rate) || !(0.0..=1.0).contains(&args.drop_reports) {
        anyhow::bail!("--failure-rate and --drop-reports must be between 0 and 1");
    }
    let made_up_password = args.password.is_none();
    let made_up_key = args.signing_key.is_none();
    let mut cfg = EmulatorConfig::new(args.username.clone(), args.password, args.signing_key);
    for w in &args.webhook {
        match reqwest::Url::parse(w) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => cfg.webhooks.push(w.clone()),
            _ => anyhow::bail!("--webhook {w:?}: not an http(s) URL"),
        }
    }
    cfg.knobs = Knobs {
        delay_ms: args.delay_ms,
        failure_rate: args.failure_rate,
        drop_reports: args.drop_reports,
        offline: if args.offline {
            Offline::Unavailable
        } else {
            Offline::Online
        },
        limit: args.limit_per_minute,
        ..Knobs::default()
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
        let addr = listener.local_addr()?;
        println!("otpgate emulator: sms-gate.app API on http://{addr} (also /3rdparty/v1)");
        println!("  username: {}", cfg.username);
        if made_up_password {
            println!("  password: {}", cfg.password);
        }
        if made_up_key {
            println!("  webhook signing key: {}", cfg.signing_key);
        }
        println!(
            "  control: POST http://{addr}/_control   sent: GET http://{addr}/_emulator/messages"
        );
        let emu = Emulator::new(cfg);
        tokio::select! {
            r = emu.serve(listener) => r.map_err(anyhow::Error::from),
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_times() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_time("2026-08-01T10:00:00.250+02:00"),
            Some(parse_time("2026-08-01T08:00:00Z").map_or(0, |v| v + 250))
        );
        assert_eq!(parse_time("2000-02-29T00:00:00Z"), Some(951_782_400_000));
        for bad in [
            "",
            "2026-08-01",
            "2026-13-01T00:00:00Z",
            "2026-08-01T00:00:00",
            "2026-08-01T00:00:00.Z",
            "2026-08-01T00:00:00+0200",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
        assert_eq!(fmt_time(1_500), "1970-01-01T00:00:01.500Z");
        assert_eq!(
            parse_time(&fmt_time(1_764_101_998_123)),
            Some(1_764_101_998_123)
        );
    }

    #[test]
    fn roll_up_follows_the_documented_rules() {
        let r = |s: &'static str| Recipient {
            given: String::new(),
            clear: None,
            state: s,
            error: None,
        };
        let m = |states: &[&'static str]| Msg {
            id: String::new(),
            text: None,
            data: None,
            clear_text: None,
            decrypt_error: false,
            encrypted: false,
            recipients: states.iter().map(|s| r(s)).collect(),
            states: BTreeMap::new(),
            state: "Pending",
            created_ms: 0,
            valid_until_ms: None,
            schedule_at_ms: None,
            with_report: true,
            sim: 1,
        };
        assert_eq!(m(&["Pending", "Delivered"]).roll_up(), "Pending");
        assert_eq!(m(&["Processed", "Delivered"]).roll_up(), "Processed");
        assert_eq!(m(&["Delivered", "Delivered"]).roll_up(), "Delivered");
        assert_eq!(m(&["Failed", "Failed"]).roll_up(), "Failed");
        assert_eq!(m(&["Failed", "Delivered"]).roll_up(), "Sent");
        assert_eq!(m(&["Sent", "Delivered"]).roll_up(), "Sent");
    }

    #[test]
    fn knobs_patch_validates() {
        let k = Knobs::default();
        let p: KnobsPatch = serde_json::from_str(r#"{"failure_rate": 1.5}"#).expect("parses");
        assert!(k.apply(p).is_err());
        let p: KnobsPatch =
            serde_json::from_str(r#"{"offline": true, "delay_ms": 5}"#).expect("parses");
        let k2 = k.apply(p).expect("valid");
        assert_eq!((k2.offline, k2.delay_ms), (Offline::Unavailable, 5));
        let p: KnobsPatch = serde_json::from_str(r#"{"offline": "refuse"}"#).expect("parses");
        assert_eq!(k.apply(p).expect("valid").offline, Offline::Refuse);
        assert!(serde_json::from_str::<KnobsPatch>(r#"{"nope": 1}"#).is_err());
    }
}
