//! The message handlers: send, list, get, cancel, and health.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::IntoResponse;
use otpgate_core::wire::smsgate::MessageState;
use serde_json::{Value, json};

use super::state::Msg;
use super::{Emulator, Resp, error, fmt_time, parse_time};

pub(super) async fn send(
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

pub(super) async fn list(
    State(emu): State<Arc<Emulator>>,
    Query(q): Query<HashMap<String, String>>,
) -> Resp {
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

pub(super) async fn get_one(State(emu): State<Arc<Emulator>>, Path(id): Path<String>) -> Resp {
    match emu.lock().messages.get(&id) {
        Some(m) => axum::Json(m.view(&emu.device_id, true)).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

pub(super) async fn cancel(State(emu): State<Arc<Emulator>>, Path(id): Path<String>) -> Resp {
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

/// `GET /health`: as the app, a `fail` status answers 500 with the report.
pub(super) async fn health(State(emu): State<Arc<Emulator>>) -> Resp {
    let h = emu.health_view();
    let status = if h.status == "fail" {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    (status, axum::Json(h)).into_response()
}

/// The path prefix the call came in under (`""`, `/3rdparty/v1`, or wherever it is mounted).
pub(super) fn base_of(uri: &axum::http::Uri) -> String {
    let p = uri.path();
    let cut = p.rfind("/message").unwrap_or(0);
    p[..cut].to_owned()
}
