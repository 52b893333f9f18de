//! The emulator's own endpoints: `GET/POST /_control` (the knobs) and
//! `GET /_emulator/messages` (what it sent).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use otpgate_core::phone::PhoneNumber;

use super::knobs::KnobsPatch;
use super::{Emulator, Resp, error};

pub(super) async fn get_control(State(emu): State<Arc<Emulator>>) -> Resp {
    axum::Json(emu.knobs()).into_response()
}

pub(super) async fn post_control(State(emu): State<Arc<Emulator>>, body: Bytes) -> Resp {
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

pub(super) async fn outbox(
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
