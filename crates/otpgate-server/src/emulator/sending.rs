//! Sending: a send is validated and queued, then each recipient walks through the states
//! (with the knobs' delays, failures and dropped reports, and Android's per-app limit).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use otpgate_core::phone::PhoneNumber;
use otpgate_core::wire::smsgate::SendMessage;
use serde_json::{Value, json};

use super::state::{Msg, Recipient};
use super::{
    EXPIRED, Emulator, GENERIC_FAILURE, LIMIT_EXCEEDED, MAX_MESSAGES, Resp, SentMessage, error,
    fmt_time, nanoid, parse_time, random_unit,
};
use crate::gateway::crypto;

impl Emulator {
    /// Moves recipient `idx` of message `id` to `state`; returns the webhook to emit.
    pub(super) fn transition(
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

    pub(super) async fn process(self: Arc<Self>, id: String) {
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
    pub(super) fn accept(
        self: &Arc<Self>,
        body: &[u8],
        skip_validation: bool,
        location_base: &str,
    ) -> Resp {
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
pub(super) fn segments(text: &str) -> u32 {
    otpgate_core::sms::segments(text).segments.max(1)
}

/// Masks a number for error messages and logs.
pub(super) fn mask(p: &str) -> String {
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
