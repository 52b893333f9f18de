//! The emulated phone: a router speaking the sms-gate.app third-party API, faithful enough
//! that the official client libraries work against it unchanged.
//!
//! It serves the local-mode paths (`/message`, `/messages`, `/messages/{id}`, `/health`,
//! `/webhooks`, `/webhook`, `/device`, `/settings`, `/logs`, `/auth/token`) and the same under
//! `/3rdparty/v1` and `/api/3rdparty/v1` (cloud and private server); Basic auth, and the
//! server's token auth (`POST /auth/token`, `/auth/token/refresh`, `DELETE /auth/token/{jti}`:
//! HS256 JWTs with a lifetime and scopes, each route requiring its scope, see `tokens`);
//! 202 + `MessageState` + `Location`; 409 on a duplicate id;
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
//!
//! # Layout
//! - `knobs`: the runtime knobs ([`Knobs`], [`Offline`]) and their `POST /_control` patch.
//! - `state`: the messages, their recipients and states, what was sent ([`SentMessage`]).
//! - `sending`: accepting a send and walking it through its states (Android's limit).
//! - `webhooks`: signed webhook delivery with retries, and the `system:ping` pinger.
//! - `routes`: the router, authentication and offline middleware, the refusing listener.
//! - `tokens`: token auth (JWTs, scopes, refresh, revocation) and the calls seen.
//! - `messages`, `account`, `control`: the handlers, by API family (messages; webhooks,
//!   devices and settings; the emulator's own control and outbox).

mod account;
mod control;
mod knobs;
mod messages;
mod routes;
mod sending;
mod state;
mod tokens;
mod webhooks;

pub use knobs::{Knobs, Offline};
pub use state::SentMessage;
pub use tokens::{AuthSeen, IssuedToken};

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use otpgate_core::wire::smsgate::Webhook;
use serde_json::json;

use crate::clock::{Clock, SystemClock};
use state::Inner;

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
}
