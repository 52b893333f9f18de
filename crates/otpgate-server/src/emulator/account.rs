//! The account handlers: webhooks, devices, settings, logs and inbox (empty).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use otpgate_core::wire::smsgate::Webhook;
use serde_json::{Value, json};

use super::{EVENTS, Emulator, Resp, error, fmt_time, nanoid};

pub(super) async fn list_webhooks(State(emu): State<Arc<Emulator>>) -> Resp {
    axum::Json(emu.lock().webhooks.clone()).into_response()
}

pub(super) async fn add_webhook(State(emu): State<Arc<Emulator>>, body: Bytes) -> Resp {
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

pub(super) async fn delete_webhook(
    State(emu): State<Arc<Emulator>>,
    Path(id): Path<String>,
) -> Resp {
    emu.lock().webhooks.retain(|w| w.id.as_deref() != Some(&id));
    StatusCode::NO_CONTENT.into_response()
}

pub(super) async fn devices(State(emu): State<Arc<Emulator>>) -> Resp {
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

pub(super) async fn get_settings(State(emu): State<Arc<Emulator>>) -> Resp {
    axum::Json(emu.lock().settings.clone()).into_response()
}

pub(super) fn merge(dst: &mut Value, src: Value) {
    match (dst, src) {
        (Value::Object(d), Value::Object(s)) => {
            for (k, v) in s {
                merge(d.entry(k).or_insert(Value::Null), v);
            }
        }
        (d, s) => *d = s,
    }
}

pub(super) async fn patch_settings(State(emu): State<Arc<Emulator>>, body: Bytes) -> Resp {
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

pub(super) async fn accepted_empty() -> Resp {
    (StatusCode::ACCEPTED, axum::Json(json!({}))).into_response()
}

pub(super) async fn delete_device(
    State(emu): State<Arc<Emulator>>,
    Path(id): Path<String>,
) -> Resp {
    if id == emu.device_id {
        error(
            StatusCode::BAD_REQUEST,
            "an emulated phone cannot delete itself",
        )
    } else {
        StatusCode::NO_CONTENT.into_response()
    }
}

pub(super) async fn empty_list() -> Resp {
    axum::Json(json!([])).into_response()
}
