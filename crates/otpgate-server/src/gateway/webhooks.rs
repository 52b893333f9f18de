//! Inbound delivery events: ONE pipeline for every signed webhook (verify → decode →
//! de-duplicate → count → apply) and a small decoder per source, plus the multiOTP polling
//! endpoint (the phone's own Basic-auth credentials, its updates applied the same way).
//!
//! | route | source | signature (core [`webhook::Scheme`]) | de-duplicated on |
//! |---|---|---|---|
//! | `POST /v1/gateways/sms-gate/webhook` | sms-gate.app | `SmsGate`, `X-Timestamp` / `X-Signature` | the event id |
//! | `POST /v1/gateways/textbee/webhook` | TextBee | `TextBee`, `X-Signature` | the body's SHA-256 (nothing else is signed) |
//! | `POST /v1/gateways/webhook/events` | generic signed webhook | `Otpgate`, `X-Otpgate-Timestamp` / `X-Otpgate-Signature` | the event id |
//! | `GET\|POST /v1/gateways/multiotp/{device}` | multiOTP phone | Basic auth | (updates only move forward) |
//!
//! Every signature, timestamp window and comparison rule is the core's
//! ([`otpgate_core::webhook`]); a refused webhook answers 401 with the core's error code.
//! A verified event is then bound to its device (see `receive`): it changes a message only
//! when signed with the key of the device that holds that message (403 otherwise).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, post};
use otpgate_core::code::ct_eq;
use otpgate_core::webhook::{self, Scheme, Signed};
use otpgate_core::wire::ErrorCode;
use otpgate_core::wire::smsgate::WebhookEnvelope;
use serde_json::{Value, json};

use super::adapter::RemoteState;
use super::config::Kind;
use super::pool::{Device, MIN_LIFE_MS, Pool, parse_message_id};
use crate::store::StoreError;

/// How long a webhook event id is remembered, for de-duplication.
const DEDUP_TTL_MS: i64 = 3 * 86_400_000;

/// The largest webhook body read.
const BODY_LIMIT: usize = 256 * 1024;

/// The longest failure reason kept from a gateway.
const REASON_CHARS: usize = 120;

/// The message an event is about.
#[derive(Debug, Eq, PartialEq)]
enum Target {
    /// One of our message ids.
    Ours(String),
    /// The gateway's own id (TextBee batch), mapped back through the pool.
    Remote(String),
}

/// What a decoder read from one verified event.
#[derive(Debug, Eq, PartialEq)]
struct Event {
    /// The de-duplication key, `wh:{source}:{id}`.
    dedup: String,
    /// The message and its new state (`None`: the event changes no delivery).
    update: Option<(Target, RemoteState)>,
    /// sms-gate.app `system:ping`: the device id that is alive.
    ping: Option<String>,
}

/// A decoder: the verified raw body to an [`Event`], or why it is not one (answered 400
/// `invalid_webhook`).
type Decode = fn(&[u8]) -> Result<Event, &'static str>;

/// One source of signed webhooks.
struct Source {
    /// The signature scheme.
    scheme: Scheme,
    /// The devices whose keys sign it.
    kind: Kind,
    /// The timestamp header, for timestamped schemes.
    timestamp: Option<&'static str>,
    /// The signature header.
    signature: &'static str,
    /// Whether a request is refused as `no_signing_key` when no key is configured at all.
    needs_key: bool,
    /// The decoder.
    decode: Decode,
}

static SMSGATE: Source = Source {
    scheme: Scheme::SmsGate,
    kind: Kind::SmsGate,
    timestamp: Some("x-timestamp"),
    signature: "x-signature",
    needs_key: true,
    decode: decode_smsgate,
};

static TEXTBEE: Source = Source {
    scheme: Scheme::TextBee,
    kind: Kind::TextBee,
    timestamp: None,
    signature: "x-signature",
    needs_key: false,
    decode: decode_textbee,
};

static GENERIC: Source = Source {
    scheme: Scheme::Otpgate,
    kind: Kind::Webhook,
    timestamp: Some("x-otpgate-timestamp"),
    signature: "x-otpgate-signature",
    needs_key: false,
    decode: decode_generic,
};

impl Pool {
    /// The routes that receive delivery events, to merge into the issuer's router:
    /// `POST /v1/gateways/sms-gate/webhook`, `POST /v1/gateways/textbee/webhook`,
    /// `POST /v1/gateways/webhook/events` and the multiOTP polling endpoint
    /// `GET|POST /v1/gateways/multiotp/{device}`.
    pub fn routes(self: &Arc<Self>) -> Router {
        self.ensure_started();
        routes().with_state(self.clone())
    }
}

/// The routes that receive delivery events (see the module's table), with state still to
/// be given.
fn routes() -> Router<Arc<Pool>> {
    Router::new()
        .route("/v1/gateways/sms-gate/webhook", signed(&SMSGATE))
        .route("/v1/gateways/textbee/webhook", signed(&TEXTBEE))
        .route("/v1/gateways/webhook/events", signed(&GENERIC))
        .route(
            "/v1/gateways/multiotp/{device}",
            axum::routing::get(multiotp_get).post(multiotp_post),
        )
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
}

fn signed(source: &'static Source) -> MethodRouter<Arc<Pool>> {
    post(
        move |State(pool): State<Arc<Pool>>, headers: HeaderMap, body: Bytes| async move {
            receive(&pool, source, &headers, &body).await
        },
    )
}

/// The pipeline: verify → decode → bind to the device → de-duplicate → count → apply.
///
/// # Binding
/// A signature proves which key signed an event, not that the event's message is that
/// device's. So the devices whose own key verifies the event (the *signers*; devices without
/// a key of their own share the gateway key, and so sign for each other) must include the
/// device that holds the message the event names (in this instance's in-flight map, else
/// the device the store's delivery record names for that very message id):
/// - a signer holds it: the event applies;
/// - another device holds it: 403 `forbidden`, nothing changes (a `failed` event from a
///   device that never had the message cannot fail it over);
/// - the current code's send is not recorded yet (the phone may report before the issuer
///   recorded its answer): 409 `conflict`, nothing changes, and the phone retries;
/// - nothing the event could change (an older code version, an earlier route, a forgotten
///   verification): accepted as before, and it changes nothing.
///
/// A `system:ping` marks healthy only a signer whose `device_id` it names.
async fn receive(pool: &Pool, source: &Source, headers: &HeaderMap, body: &[u8]) -> Response {
    let keys = pool.webhook_keys(source.kind);
    if keys.is_empty() && source.needs_key {
        return rejected(pool, ErrorCode::NoSigningKey);
    }
    let signed = Signed {
        timestamp: source.timestamp.and_then(|h| header_str(headers, h)),
        signature: header_str(headers, source.signature),
    };
    let now = pool.clock.now_secs();
    let window = pool.cfg.webhook_window_secs;
    if let Err(e) = webhook::verify(source.scheme, keys, body, signed, now, window) {
        return rejected(pool, e.code());
    }
    let signers: Vec<usize> = pool
        .devices
        .iter()
        .enumerate()
        .filter(|(_, d)| d.cfg.kind == source.kind)
        .filter(|(_, d)| {
            d.signing_key.as_ref().is_some_and(|k| {
                webhook::verify(source.scheme, [k.expose()], body, signed, now, window).is_ok()
            })
        })
        .map(|(i, _)| i)
        .collect();
    let event = match (source.decode)(body) {
        Ok(e) => e,
        Err(why) => return err(StatusCode::BAD_REQUEST, ErrorCode::InvalidWebhook, why),
    };
    let update = match event.update {
        None => None,
        Some((target, state)) => {
            let id = match target {
                Target::Ours(id) => Some(id),
                Target::Remote(remote) => pool.ours(&remote),
            };
            match id {
                // Not a message id of ours: nothing it could change.
                Some(id) if parse_message_id(&id).is_some() => match holder_of(pool, &id).await {
                    Ok(Holder::Device(h)) if signers.contains(&h) => Some((id, state)),
                    Ok(Holder::Stale) => None,
                    Ok(Holder::Device(h)) => {
                        tracing::warn!(
                            message_id = %id,
                            holder = %pool.devices[h].cfg.name,
                            signed_by = ?signers.iter().map(|&i| &pool.devices[i].cfg.name).collect::<Vec<_>>(),
                            "webhook event for a message another device holds: refused"
                        );
                        return refused(
                            pool,
                            StatusCode::FORBIDDEN,
                            ErrorCode::Forbidden,
                            "the event is not signed by the device that holds the message",
                        );
                    }
                    Ok(Holder::NotYet) => {
                        return refused(
                            pool,
                            StatusCode::CONFLICT,
                            ErrorCode::Conflict,
                            "no device is known to hold that message (yet): retry later",
                        );
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "webhook binding: store unavailable");
                        return err(
                            StatusCode::SERVICE_UNAVAILABLE,
                            ErrorCode::StoreUnavailable,
                            "try again later",
                        );
                    }
                },
                _ => None,
            }
        }
    };
    let first = pool
        .store
        .once(&event.dedup, DEDUP_TTL_MS, pool.clock.now_ms())
        .await;
    match first {
        Ok(true) => {}
        Ok(false) => {
            pool.counters
                .webhooks_duplicate
                .fetch_add(1, Ordering::Relaxed);
            return StatusCode::NO_CONTENT.into_response();
        }
        Err(e) => {
            tracing::warn!(error = %e, "webhook de-duplication: store unavailable");
            return err(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::StoreUnavailable,
                "try again later",
            );
        }
    }
    pool.counters
        .webhooks_accepted
        .fetch_add(1, Ordering::Relaxed);
    if let Some(device) = &event.ping {
        for &i in &signers {
            let d = &pool.devices[i];
            if d.cfg.device_id.as_ref() == Some(device) {
                d.health().healthy = true;
            }
        }
    }
    if let Some((id, state)) = update {
        pool.on_state(&id, state).await;
    }
    StatusCode::NO_CONTENT.into_response()
}

/// Who holds a message an event names.
#[derive(Debug, Eq, PartialEq)]
enum Holder {
    /// This device (index into the pool).
    Device(usize),
    /// Nothing the event could change: no such verification (or forgotten), an older code
    /// version, an earlier route, or a device no longer configured.
    Stale,
    /// The current code's send is not recorded yet (the phone reported before the issuer
    /// recorded its answer): the event is refused for now and the phone retries.
    NotYet,
}

/// The device that holds message `id`: in this instance's in-flight map, else the one the
/// store's delivery record names for that very message id (another instance's send, or one
/// already reported).
async fn holder_of(pool: &Pool, id: &str) -> Result<Holder, StoreError> {
    if let Some(h) = pool.holder(id) {
        return Ok(Holder::Device(h));
    }
    let Some((vid, version, _)) = parse_message_id(id) else {
        return Ok(Holder::Stale);
    };
    let Some(record) = pool.store.get(vid).await? else {
        return Ok(Holder::Stale);
    };
    if record.code.version != version {
        return Ok(Holder::Stale);
    }
    let delivery = record.delivery;
    Ok(match (delivery.message_id.as_deref(), delivery.gateway) {
        (Some(m), Some(name)) if m == id => pool
            .devices
            .iter()
            .position(|d| d.cfg.name == name)
            .map_or(Holder::Stale, Holder::Device),
        (Some(_), _) => Holder::Stale,
        (None, _) => Holder::NotYet,
    })
}

/// A failure reason from `v[key]` (default `failed`), bounded.
fn reason(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or("failed")
        .chars()
        .take(REASON_CHARS)
        .collect()
}

/// sms-gate.app: `{id, event, deviceId, payload: {messageId, reason}}`.
fn decode_smsgate(body: &[u8]) -> Result<Event, &'static str> {
    let env: WebhookEnvelope =
        serde_json::from_slice(body).map_err(|_| "not a webhook envelope")?;
    if env.id.is_empty() || env.id.len() > 64 {
        return Err("bad event id");
    }
    let state = match env.event.as_str() {
        "sms:sent" => Some(RemoteState::Sent),
        "sms:delivered" => Some(RemoteState::Delivered),
        "sms:failed" => Some(RemoteState::Failed(reason(&env.payload, "reason"))),
        "sms:cancelled" => Some(RemoteState::Failed("cancelled".into())),
        _ => None,
    };
    let message = env.payload.get("messageId").and_then(Value::as_str);
    Ok(Event {
        dedup: format!("wh:smsgate:{}", env.id),
        update: message
            .zip(state)
            .map(|(m, s)| (Target::Ours(m.to_owned()), s)),
        ping: if env.event == "system:ping" {
            env.device_id
        } else {
            None
        },
    })
}

/// TextBee: `{smsBatchId | smsBatch, event | status, errorMessage}`; no event id is signed,
/// so a replay is the same body and the body's digest is the de-duplication key.
fn decode_textbee(body: &[u8]) -> Result<Event, &'static str> {
    let digest = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(body))
    };
    let v: Value = serde_json::from_slice(body).map_err(|_| "not JSON")?;
    let what = v
        .get("event")
        .or_else(|| v.get("status"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_ascii_lowercase();
    let state = if what.contains("delivered") {
        Some(RemoteState::Delivered)
    } else if what.contains("failed") {
        Some(RemoteState::Failed(reason(&v, "errorMessage")))
    } else if what.contains("sent") {
        Some(RemoteState::Sent)
    } else {
        None
    };
    let batch = v
        .get("smsBatchId")
        .or_else(|| v.get("smsBatch"))
        .and_then(Value::as_str);
    Ok(Event {
        dedup: format!("wh:textbee:{digest}"),
        update: batch
            .zip(state)
            .map(|(b, s)| (Target::Remote(b.to_owned()), s)),
        ping: None,
    })
}

/// The generic signed webhook: `{id, message_id, state: sent|delivered|failed, reason}`.
fn decode_generic(body: &[u8]) -> Result<Event, &'static str> {
    let v: Value = serde_json::from_slice(body).map_err(|_| "not JSON")?;
    let (Some(event_id), Some(mid), Some(state)) = (
        v.get("id").and_then(Value::as_str),
        v.get("message_id").and_then(Value::as_str),
        v.get("state").and_then(Value::as_str),
    ) else {
        return Err("id, message_id and state are required");
    };
    let state = match state {
        "sent" => Some(RemoteState::Sent),
        "delivered" => Some(RemoteState::Delivered),
        "failed" => Some(RemoteState::Failed(reason(&v, "reason"))),
        _ => None,
    };
    Ok(Event {
        dedup: format!(
            "wh:generic:{}",
            event_id.chars().take(64).collect::<String>()
        ),
        update: state.map(|s| (Target::Ours(mid.to_owned()), s)),
        ping: None,
    })
}

/// multiOTP: one entry of `updates`, `{id, status: SENT|DELIVERED|FAILED, reason}`.
fn decode_multiotp(update: &Value) -> Option<(String, RemoteState)> {
    let id = update.get("id").and_then(Value::as_str)?;
    let state = match update.get("status").and_then(Value::as_str)? {
        "SENT" => RemoteState::Sent,
        "DELIVERED" => RemoteState::Delivered,
        "FAILED" => RemoteState::Failed(reason(update, "reason")),
        _ => return None,
    };
    Some((id.to_owned(), state))
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// The issuer's error body.
fn err(status: StatusCode, code: ErrorCode, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

fn rejected(pool: &Pool, code: ErrorCode) -> Response {
    refused(
        pool,
        StatusCode::UNAUTHORIZED,
        code,
        "webhook signature refused",
    )
}

/// A refused event, counted.
fn refused(pool: &Pool, status: StatusCode, code: ErrorCode, message: &str) -> Response {
    pool.counters
        .webhooks_rejected
        .fetch_add(1, Ordering::Relaxed);
    err(status, code, message)
}

fn multiotp_device<'a>(
    pool: &'a Pool,
    name: &str,
    headers: &HeaderMap,
) -> Result<&'a Device, Box<Response>> {
    use base64::Engine as _;
    let Some(d) = pool
        .devices
        .iter()
        .find(|d| d.cfg.kind == Kind::MultiOtp && d.cfg.name == name)
    else {
        return Err(Box::new(err(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "no such device",
        )));
    };
    let expected = format!(
        "{}:{}",
        d.cfg.username.as_deref().unwrap_or(""),
        d.password.as_ref().map_or("", |p| p.expose())
    );
    let given = header_str(headers, header::AUTHORIZATION.as_str())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .unwrap_or_default();
    if d.password.is_some() && ct_eq(&given, expected.as_bytes()) {
        Ok(d)
    } else {
        let mut r = err(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "bad credentials",
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Basic realm=\"otpgate\""),
        );
        Err(Box::new(r))
    }
}

async fn multiotp_get(
    State(pool): State<Arc<Pool>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    match multiotp_device(&pool, &name, &headers) {
        Ok(_) => axum::Json(json!({"medic-gateway": true})).into_response(),
        Err(r) => *r,
    }
}

async fn multiotp_post(
    State(pool): State<Arc<Pool>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let d = match multiotp_device(&pool, &name, &headers) {
        Ok(d) => d,
        Err(r) => return *r,
    };
    let v: Value = match serde_json::from_slice(if body.is_empty() { b"{}" } else { &body }) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": true, "message": "body must be a JSON object"})),
            )
                .into_response();
        }
    };
    if let Some(updates) = v.get("updates").and_then(Value::as_array) {
        for (id, state) in updates.iter().take(1000).filter_map(decode_multiotp) {
            pool.on_state(&id, state).await;
        }
    }
    // Taken from the store's outbox: each message goes to one poll, whichever instance
    // the phone asks.
    let (alive, dead) = match &d.multiotp {
        Some(q) => q.take().await,
        None => Default::default(),
    };
    for p in dead {
        pool.inflight().remove(&p.id);
    }
    let mut out = Vec::with_capacity(alive.len());
    for p in alive {
        // The same guard as every other send: alive and still the current code.
        if p.expires_at_ms - pool.clock.now_ms() >= MIN_LIFE_MS && pool.still_wanted(&p.id).await {
            out.push(json!({"id": p.id, "to": p.to, "content": p.content}));
        }
    }
    axum::Json(json!({"messages": out})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smsgate_events_decode() {
        let body = |event: &str, extra: &str| {
            format!(
                r#"{{"id":"e1","event":"{event}","deviceId":"d1","payload":{{"messageId":"v.1.1"{extra}}}}}"#
            )
        };
        let ours = |s| Some((Target::Ours("v.1.1".into()), s));
        let rows = [
            ("sms:sent", "", ours(RemoteState::Sent)),
            ("sms:delivered", "", ours(RemoteState::Delivered)),
            (
                "sms:failed",
                r#","reason":"no signal""#,
                ours(RemoteState::Failed("no signal".into())),
            ),
            ("sms:failed", "", ours(RemoteState::Failed("failed".into()))),
            (
                "sms:cancelled",
                "",
                ours(RemoteState::Failed("cancelled".into())),
            ),
            ("sms:received", "", None),
            ("system:ping", "", None),
        ];
        for (event, extra, want) in rows {
            let e = decode_smsgate(body(event, extra).as_bytes()).expect("decodes");
            assert_eq!(e.dedup, "wh:smsgate:e1");
            assert_eq!(e.update, want, "{event}");
            assert_eq!(e.ping.is_some(), event == "system:ping", "{event}");
        }
        assert_eq!(decode_smsgate(b"nope"), Err("not a webhook envelope"));
        assert_eq!(
            decode_smsgate(br#"{"id":"","event":"sms:sent"}"#),
            Err("bad event id")
        );
        let long = format!(r#"{{"id":"{}","event":"sms:sent"}}"#, "x".repeat(65));
        assert_eq!(decode_smsgate(long.as_bytes()), Err("bad event id"));
    }

    #[test]
    fn textbee_events_decode_by_batch_and_body_digest() {
        let e = decode_textbee(br#"{"smsBatchId":"b1","event":"MESSAGE_DELIVERED"}"#).expect("ok");
        assert_eq!(
            e.update,
            Some((Target::Remote("b1".into()), RemoteState::Delivered))
        );
        assert!(e.dedup.starts_with("wh:textbee:") && e.dedup.len() == 11 + 64);
        let e = decode_textbee(br#"{"smsBatch":"b2","status":"failed","errorMessage":"x"}"#)
            .expect("ok");
        assert_eq!(
            e.update,
            Some((Target::Remote("b2".into()), RemoteState::Failed("x".into())))
        );
        let e = decode_textbee(br#"{"smsBatchId":"b1","event":"SENT"}"#).expect("ok");
        assert_eq!(
            e.update,
            Some((Target::Remote("b1".into()), RemoteState::Sent))
        );
        let e = decode_textbee(br#"{"event":"delivered"}"#).expect("ok");
        assert_eq!(e.update, None);
        assert_eq!(decode_textbee(b"["), Err("not JSON"));
    }

    #[test]
    fn generic_events_decode() {
        let e =
            decode_generic(br#"{"id":"ev","message_id":"v.1.1","state":"failed"}"#).expect("ok");
        assert_eq!(e.dedup, "wh:generic:ev");
        assert_eq!(
            e.update,
            Some((
                Target::Ours("v.1.1".into()),
                RemoteState::Failed("failed".into())
            ))
        );
        let e = decode_generic(br#"{"id":"ev","message_id":"m","state":"queued"}"#).expect("ok");
        assert_eq!(e.update, None);
        let long = format!(
            r#"{{"id":"{}","message_id":"m","state":"sent"}}"#,
            "é".repeat(80)
        );
        let e = decode_generic(long.as_bytes()).expect("ok");
        assert_eq!(e.dedup.chars().count(), "wh:generic:".len() + 64);
        for bad in [&b"{}"[..], br#"{"id":"ev","state":"sent"}"#] {
            assert_eq!(
                decode_generic(bad),
                Err("id, message_id and state are required")
            );
        }
        assert_eq!(decode_generic(b"x"), Err("not JSON"));
    }

    #[test]
    fn multiotp_updates_decode() {
        let rows = [
            (
                json!({"id": "a", "status": "SENT"}),
                Some(("a".to_owned(), RemoteState::Sent)),
            ),
            (
                json!({"id": "a", "status": "DELIVERED"}),
                Some(("a".to_owned(), RemoteState::Delivered)),
            ),
            (
                json!({"id": "a", "status": "FAILED", "reason": "r"}),
                Some(("a".to_owned(), RemoteState::Failed("r".into()))),
            ),
            (json!({"id": "a", "status": "PENDING"}), None),
            (json!({"status": "SENT"}), None),
        ];
        for (u, want) in rows {
            assert_eq!(decode_multiotp(&u), want, "{u}");
        }
        let long = json!({"id": "a", "status": "FAILED", "reason": "r".repeat(500)});
        assert!(matches!(
            decode_multiotp(&long),
            Some((_, RemoteState::Failed(r))) if r.len() == REASON_CHARS
        ));
    }
}
