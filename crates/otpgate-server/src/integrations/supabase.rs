//! Supabase Auth's "Send SMS" hook: `POST /v1/hooks/supabase/send-sms`.
//!
//! Supabase makes and checks the code; this route sends it through the pool of phones with
//! the configured app's template (so the SMS carries the WebOTP line and the Android app
//! hash), under the destination policy and budgets of a start.
//!
//! - **Signature**: Standard Webhooks ([`otpgate_core::standard_webhooks`]) under any of the
//!   configured secrets, with a timestamp window.
//! - **Replays**: the `webhook-id` is an idempotency key ([`crate::api::idempotency`]): a
//!   request with the id of one that succeeded gets the same answer and sends nothing; one
//!   arriving while the first still runs waits for its answer (up to [`WAIT_FOR_FIRST`]).
//!   A refused send keeps nothing, so Supabase's retry after a 429 or 503 goes through.
//! - **Payload**: `user.phone` as Supabase stores it (digits, with or without `+`) and
//!   `sms.otp`; every other field is ignored.
//! - **Answers** (Supabase's hook contract): 200 `{}`; refusals
//!   `{"error": {"http_code", "message"}}` with the real status (429 and 503 keep theirs, with
//!   `Retry-After`, so Supabase retries).

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use otpgate_core::standard_webhooks::{self, Headers};
use otpgate_core::webhook::WebhookError;
use otpgate_core::wire::ErrorCode;
use serde::Deserialize;
use serde_json::json;

use super::{IntegrationState, Meta};
use crate::api::error::PeerShaped;
use crate::api::openapi::{SupabaseErrorDoc, SupabaseOkDoc, SupabaseSendSmsDoc};
use crate::api::{ApiError, idempotency};
use crate::service::DeliverInput;

/// The route.
pub const PATH: &str = "/v1/hooks/supabase/send-sms";
/// How long a duplicate waits for the first request with its `webhook-id` to finish
/// (Supabase gives a hook 5 s).
pub const WAIT_FOR_FIRST: Duration = Duration::from_secs(4);

/// The parts of Supabase's payload that are read.
#[derive(Debug, Deserialize)]
struct Payload {
    user: User,
    sms: Sms,
}

#[derive(Debug, Deserialize)]
struct User {
    #[serde(default)]
    phone: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Sms {
    otp: String,
}

/// A refusal in Supabase's hook shape, with `Retry-After` when given.
pub fn refusal(status: StatusCode, message: &str, retry_after: Option<u64>) -> Response {
    let mut res = (
        status,
        Json(json!({"error": {"http_code": status.as_u16(), "message": message}})),
    )
        .into_response();
    if let Some(secs) = retry_after {
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    res.extensions_mut().insert(PeerShaped);
    res
}

fn from_api(e: ApiError) -> Response {
    if let Some(cause) = &e.cause {
        tracing::error!(cause = %cause, "supabase hook: request failed");
    }
    let message = if e.status.is_server_error() && e.code == ErrorCode::InternalError {
        "internal error".to_owned()
    } else {
        e.message
    };
    refusal(e.status, &message, e.retry_after)
}

/// `user.phone` as Supabase stores it (`15555550100`, or with a leading `+`) in E.164 form.
fn e164(phone: &str) -> String {
    let p = phone.trim();
    if p.starts_with('+') {
        p.to_owned()
    } else {
        format!("+{p}")
    }
}

/// Sends the code of a Supabase Send SMS hook.
#[utoipa::path(post, path = "/v1/hooks/supabase/send-sms", tag = "integrations",
    operation_id = "supabase_send_sms",
    params(
        ("webhook-id" = String, Header, pattern = "^[!-~]{1,255}$", example = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
            description = "The message id (1 to 255 visible ASCII characters): a replay of an id that succeeded is answered as the first time and sends nothing"),
        ("webhook-timestamp" = String, Header, pattern = "^[0-9]{1,12}$", example = "1733570000",
            description = "Unix seconds, inside `timestamp_window_secs` (default 300) of the issuer's clock"),
        ("webhook-signature" = String, Header, min_length = 1, example = "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
            description = "`v1,<base64 HMAC-SHA256 of id.timestamp.body>`, several while rotating, separated by spaces or, as Supabase writes them, by \", \""),
    ),
    request_body(content = SupabaseSendSmsDoc, content_type = "application/json",
        description = "Supabase's payload: `{\"user\": {\"phone\": \"15555550100\", ...}, \"sms\": {\"otp\": \"123456\"}}` (other fields ignored)"),
    responses(
        (status = 200, description = "Sent (or queued for a phone): `{}`", body = SupabaseOkDoc),
        (status = 400, description = "Not Supabase's payload, or the phone or code is not valid", body = SupabaseErrorDoc),
        (status = 401, description = "Missing headers, a malformed or stale timestamp, or a signature no configured secret made", body = SupabaseErrorDoc),
        (status = 403, description = "The destination is not allowed by the policy", body = SupabaseErrorDoc),
        (status = 404, description = "The hook is not configured (`[integrations.supabase]`)", body = SupabaseErrorDoc),
        (status = 409, description = "The first request with this webhook-id still runs after 4 s (`Retry-After`)", body = SupabaseErrorDoc),
        (status = 413, description = "Body over 64 KiB", body = SupabaseErrorDoc),
        (status = 422, description = "This webhook-id was used with another body", body = SupabaseErrorDoc),
        (status = 429, description = "A budget of the number, prefix or global is spent (`Retry-After`): Supabase retries", body = SupabaseErrorDoc),
        (status = 503, description = "Store unavailable or no phone could take it (`Retry-After`): Supabase retries", body = SupabaseErrorDoc),
    ))]
pub(crate) async fn send_sms(
    State(state): State<IntegrationState>,
    Meta(meta): Meta,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(hook) = state.integrations.supabase.as_ref() else {
        return refusal(
            StatusCode::NOT_FOUND,
            "the Supabase hook is not configured ([integrations.supabase])",
            None,
        );
    };
    let service = &state.service;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let signed = Headers {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
    };
    let now_secs = service.clock().now_ms().div_euclid(1000);
    if let Err(e) =
        standard_webhooks::verify(&hook.secrets, &body, signed, now_secs, hook.window_secs)
    {
        tracing::info!(reason = e.code().as_str(), request_id = %meta.request_id, "supabase hook refused");
        let message = match e {
            WebhookError::MissingHeader => {
                "missing or malformed webhook-id, webhook-timestamp or webhook-signature"
            }
            WebhookError::BadTimestamp => "webhook-timestamp is not a Unix time in seconds",
            WebhookError::Stale => "webhook-timestamp is outside the accepted window",
            _ => "the webhook signature does not match",
        };
        return refusal(StatusCode::UNAUTHORIZED, message, None);
    }
    let id = signed.id.unwrap_or_default().to_owned();
    let payload: Payload = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => {
            return refusal(
                StatusCode::BAD_REQUEST,
                &format!("expected {{\"user\": {{\"phone\"}}, \"sms\": {{\"otp\"}}}}: {e}"),
                None,
            );
        }
    };
    let Some(phone) = payload.user.phone.filter(|p| !p.trim().is_empty()) else {
        return refusal(
            StatusCode::BAD_REQUEST,
            "the user has no phone number",
            None,
        );
    };
    let input = DeliverInput {
        to: e164(&phone),
        code: payload.sms.otp,
        app: Some(hook.app.clone()),
        locale: None,
        source: "supabase",
    };
    let deadline = tokio::time::Instant::now() + WAIT_FOR_FIRST;
    loop {
        let op = async {
            service.deliver(input.clone(), &meta).await?;
            Ok(idempotency::Answer {
                status: StatusCode::OK,
                location: None,
                body: "{}".into(),
            })
        };
        let now = service.clock().now_ms();
        let answer = idempotency::once(
            service.store().as_ref(),
            now,
            Some(id.clone()),
            ("supabase send-sms", &body),
            op,
        )
        .await;
        match answer {
            Ok(mut res) => {
                res.extensions_mut().insert(PeerShaped);
                return res;
            }
            // The first request with this id still runs: its answer is this one's.
            Err(e) if e.code == ErrorCode::Conflict && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return from_api(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_as_supabase_stores_them() {
        assert_eq!(e164("15555550100"), "+15555550100");
        assert_eq!(e164("+447400900123"), "+447400900123");
        assert_eq!(e164(" 447400900123 "), "+447400900123");
    }

    #[test]
    fn the_payload_ignores_what_it_does_not_read() {
        let p: Payload = serde_json::from_str(
            r#"{"user": {"id": "u", "phone": "15555550100", "app_metadata": {"x": [1]}}, "sms": {"otp": "123456"}}"#,
        )
        .unwrap();
        assert_eq!(p.user.phone.as_deref(), Some("15555550100"));
        assert_eq!(p.sms.otp, "123456");
    }
}
