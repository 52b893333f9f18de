//! `POST /v1/messages` and `GET /v1/messages/{id}`: delivery of a code another system made
//! (Ory Kratos' HTTP courier, Keycloak SMS authenticators, custom backends), for trusted
//! callers (an API key of `[policy] api_keys`). See [`crate::service::Service::deliver`].

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use otpgate_core::wire::ErrorCode;
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState, Caller, idempotency, json_body, path_id};
use crate::service::{DeliverInput, RequestMeta};

/// `POST /v1/messages`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MessageRequest {
    /// The destination, E.164.
    pub to: String,
    /// The code the caller made, 4 to 10 ASCII letters or digits.
    pub code: String,
    /// The app whose template is used (the default app when absent).
    #[serde(default)]
    pub app: Option<String>,
    /// The template locale.
    #[serde(default)]
    pub locale: Option<String>,
}

/// 401 unless the caller presented a valid API key (a missing one included).
fn require_key(meta: &RequestMeta) -> Result<(), ApiError> {
    if meta.trusted {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::InvalidApiKey,
            "this route needs an API key (Authorization: Bearer KEY, one of [policy] api_keys)",
        ))
    }
}

/// Sends a code made elsewhere, composed with the app's template.
#[utoipa::path(post, path = "/v1/messages", tag = "messages", operation_id = "send_message",
    security(("api_key" = [])),
    request_body = super::openapi::MessageRequestDoc,
    params(("Idempotency-Key" = Option<String>, Header, description = "As for a start: the same key with the same body within 24 h gets the first answer again and sends nothing")),
    responses(
        (status = 202, description = "Accepted: the SMS is on its way (`delivery.state` follows it)", body = super::openapi::MessageDoc,
            headers(("Location" = String, description = "The message's URL"))),
        (status = 400, description = "Bad input: `invalid_json`, `invalid_request`, `invalid_phone`, `unknown_country_code`, `unknown_app`, `invalid_locale`, `invalid_code` (not 4 to 10 ASCII letters or digits)", body = super::openapi::ErrorDoc),
        (status = 401, description = "`invalid_api_key`: no API key, or not a valid one", body = super::openapi::ErrorDoc),
        (status = 403, description = "`destination_not_allowed`", body = super::openapi::ErrorDoc),
        (status = 409, description = "`conflict`: the same `Idempotency-Key` is still running", body = super::openapi::ErrorDoc),
        (status = 413, description = "Body too large", body = super::openapi::ErrorDoc),
        (status = 415, description = "Content-Type is not application/json", body = super::openapi::ErrorDoc),
        (status = 422, description = "`idempotency_key_reused`", body = super::openapi::ErrorDoc),
        (status = 429, description = "`rate_limited` (the number's, prefix or global budget; `Retry-After`)", body = super::openapi::ErrorDoc),
        (status = 503, description = "Store unavailable, or no phone could take it: `no_gateway_capacity` (`Retry-After`)", body = super::openapi::ErrorDoc),
    ))]
pub(crate) async fn send(
    State(state): State<ApiState>,
    Caller(meta): Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_key(&meta)?;
    let req: MessageRequest = json_body(&headers, &body)?;
    let key = idempotency::key_of(&headers)?;
    let request = serde_json::to_vec(&req).unwrap_or_default();
    let service = &state.service;
    let op = async {
        let input = DeliverInput {
            to: req.to,
            code: req.code,
            app: req.app,
            locale: req.locale,
            source: "messages",
        };
        let view = service.deliver(input, &meta).await?;
        Ok(idempotency::Answer {
            status: StatusCode::ACCEPTED,
            location: Some(format!("/v1/messages/{}", view.id)),
            body: serde_json::to_string(&view).unwrap_or_default(),
        })
    };
    let now = service.clock().now_ms();
    idempotency::once(
        service.store().as_ref(),
        now,
        key,
        ("message", &request),
        op,
    )
    .await
}

/// The delivery of a message, kept current.
#[utoipa::path(get, path = "/v1/messages/{id}", tag = "messages", operation_id = "message_status",
    security(("api_key" = [])),
    params(super::openapi::MessageIdParam),
    responses(
        (status = 200, description = "The message", body = super::openapi::MessageDoc),
        (status = 401, description = "`invalid_api_key`", body = super::openapi::ErrorDoc),
        (status = 404, description = "Unknown or malformed id", body = super::openapi::ErrorDoc),
        (status = 503, description = "Store unavailable (`Retry-After`)", body = super::openapi::ErrorDoc),
    ))]
pub(crate) async fn status(
    State(state): State<ApiState>,
    Caller(meta): Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    require_key(&meta)?;
    let id = path_id(id)?;
    let view = state.service.message(&id).await?;
    Ok(Json(view).into_response())
}
