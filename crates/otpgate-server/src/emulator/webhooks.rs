//! Webhooks: signed delivery (`X-Signature`, `X-Timestamp`) with retries and back-off, and
//! the `system:ping` pinger.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::http::header;
use otpgate_core::wire::smsgate::{HealthResponse, Webhook};
use serde_json::{Value, json};

use super::state::{Msg, Recipient};
use super::{APP_VERSION, Emulator, Offline, nanoid};

impl Emulator {
    /// Sends `system:ping` webhooks every `ping_interval_ms` (knob) while the phone is online.
    pub(super) fn start_pinger(self: &Arc<Self>) {
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

    pub(super) fn health_view(&self) -> HealthResponse {
        let (failed, pending) = {
            let g = self.lock();
            let failed = g.messages.values().filter(|m| m.state == "Failed").count();
            let pending = g.messages.values().filter(|m| m.state == "Pending").count();
            (failed, pending)
        };
        let k = self.knobs();
        // As the app: the battery warns below 25 %, fails below 10 %; no internet fails.
        let battery = match k.battery_level {
            0..10 => "fail",
            10..25 => "warn",
            _ => "pass",
        };
        let connection = if k.online { "pass" } else { "fail" };
        let status = if battery == "fail" || connection == "fail" {
            "fail"
        } else if battery == "warn" {
            "warn"
        } else {
            "pass"
        };
        // battery:charging flags: 2 AC, 4 USB, plus 1 while charging.
        let charging = if k.charging { 3 } else { 0 };
        HealthResponse {
            status: status.into(),
            version: Some(APP_VERSION.into()),
            release_id: Some(json!(1)),
            checks: Some(json!({
                "messages:failed": {"description": "Failed messages", "observedUnit": "messages", "observedValue": failed, "status": "pass"},
                "messages:pending": {"description": "Pending messages", "observedUnit": "messages", "observedValue": pending, "status": "pass"},
                "connection:status": {"description": "Internet connection status", "observedUnit": "boolean", "observedValue": u8::from(k.online), "status": connection},
                "battery:level": {"description": "Battery level in percent", "observedUnit": "percent", "observedValue": k.battery_level, "status": battery},
                "battery:charging": {"description": "Is the phone charging?", "observedUnit": "flags", "observedValue": charging, "status": "pass"},
            })),
        }
    }

    pub(super) fn sign(&self, body: &str) -> (String, String) {
        let ts = self.clock.now_secs().to_string();
        let key = self.lock().signing_key.clone();
        (
            otpgate_core::webhook::sign_smsgate(&key, body.as_bytes(), &ts),
            ts,
        )
    }

    pub(super) fn emit(self: &Arc<Self>, event: &str, payload: Value) {
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

    pub(super) async fn deliver_webhook(&self, url: &str, body: &str) {
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

    pub(super) fn payload(&self, m: &Msg, r: &Recipient) -> Value {
        json!({
            "messageId": m.id,
            "recipient": r.given,
            "phoneNumber": r.given,
            "simNumber": m.sim,
        })
    }
}
