//! The one error shape of the API, `{"error": {"code", "message", ...}}`, and the middleware
//! that puts every response (axum's own rejections, 404/405 fallbacks, 413, timeouts,
//! panics) into it.

use axum::Json;
use axum::body::Body;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use otpgate_core::wire::{ErrorBody, ErrorCode, ErrorDetail};

use crate::service::ServiceError;

tokio::task_local! {
    /// The id of the request being served, for the errors built while serving it.
    pub(crate) static CURRENT_REQUEST_ID: String;
}

/// Marks a 4xx that [`ApiError`] already wrote in the one shape with the request id, so the
/// middleware passes it on without reading it back.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shaped;

/// Marks a response written in a peer's error shape (the Supabase hook's, the Twilio
/// Verify-compatible API's): the middleware passes it on as it is. Only set on answers the
/// handler wrote itself, whose 5xx carry no internals.
#[derive(Clone, Copy, Debug)]
pub struct PeerShaped;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The stable code.
    pub code: ErrorCode,
    /// A sentence for people.
    pub message: String,
    /// Seconds for `Retry-After`.
    pub retry_after: Option<u64>,
    /// Attempts left (wrong code).
    pub attempts_left: Option<u32>,
    /// A proof-of-work challenge (pow_required).
    pub challenge: Option<String>,
    /// The internal cause of a 5xx: logged with the request id, never sent.
    pub cause: Option<String>,
}

impl ApiError {
    /// An error with a status, a code and a message.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            attempts_left: None,
            challenge: None,
            cause: None,
        }
    }

    /// 404 `not_found`.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "not found")
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut out = Self::new(status, e.code(), e.message());
        out.retry_after = e.retry_after();
        match &e {
            ServiceError::WrongCode { attempts_left } => out.attempts_left = Some(*attempts_left),
            ServiceError::NoAttemptsLeft => out.attempts_left = Some(0),
            ServiceError::PowRequired { challenge } => out.challenge = Some(challenge.clone()),
            _ => {}
        }
        if status.is_server_error() {
            out.cause = Some(e.to_string());
        }
        out
    }
}

/// The internal cause of a 5xx, carried to the logging middleware in the response extensions.
#[derive(Clone, Debug)]
pub(crate) struct InternalCause(pub(crate) String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // A 5xx is always rewritten by the middleware (its message may be replaced).
        let request_id = CURRENT_REQUEST_ID
            .try_with(Clone::clone)
            .ok()
            .filter(|_| self.status.is_client_error());
        let shaped = request_id.is_some();
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.as_str().to_owned(),
                message: self.message,
                attempts_left: self.attempts_left,
                retry_after: self.retry_after,
                challenge: self.challenge,
                request_id,
            },
        };
        let mut res = (self.status, Json(body)).into_response();
        if shaped {
            res.extensions_mut().insert(Shaped);
        }
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(cause) = self.cause {
            res.extensions_mut().insert(InternalCause(cause));
        }
        res
    }
}

/// The error code and message for a bare status (fallbacks and rejections of layers).
fn for_status(status: StatusCode) -> (ErrorCode, &'static str) {
    ErrorCode::for_status(status.as_u16())
}

/// Puts a 4xx/5xx response into the one error shape with the request id (the middleware's
/// half, called by `api::edge`); the cause of a 5xx is logged with the request id and never
/// sent.
pub(crate) async fn normalize(
    res: Response,
    request_id: &str,
    method: &Method,
    path: &str,
) -> Response {
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    if res.extensions().get::<Shaped>().is_some() || res.extensions().get::<PeerShaped>().is_some()
    {
        if let Some(InternalCause(cause)) = res.extensions().get::<InternalCause>() {
            tracing::error!(request_id = %request_id, %method, path = %path, status = status.as_u16(), cause = %cause, "request failed");
        }
        return res;
    }
    let (mut parts, body) = res.into_parts();
    if let Some(InternalCause(cause)) = parts.extensions.remove::<InternalCause>() {
        tracing::error!(request_id = %request_id, %method, path = %path, status = status.as_u16(), cause = %cause, "request failed");
    } else if status.is_server_error() {
        tracing::error!(request_id = %request_id, %method, path = %path, status = status.as_u16(), "request failed");
    }
    let is_json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let bytes = if is_json {
        axum::body::to_bytes(body, 64 * 1024).await.ok()
    } else {
        None
    };
    let mut parsed: Option<ErrorBody> = bytes.as_ref().and_then(|b| serde_json::from_slice(b).ok());
    // A 5xx never carries anything but the generic sentence.
    if status.is_server_error()
        && let Some(p) = parsed.as_mut()
        && !ErrorCode::parse(&p.error.code).is_some_and(ErrorCode::is_safe_for_5xx)
    {
        let (code, message) = for_status(status);
        p.error.code = code.as_str().into();
        p.error.message = message.into();
    }
    let mut body = parsed.unwrap_or_else(|| {
        let (code, message) = for_status(status);
        ErrorBody {
            error: ErrorDetail {
                code: code.as_str().into(),
                message: message.into(),
                attempts_left: None,
                retry_after: None,
                challenge: None,
                request_id: None,
            },
        }
    });
    body.error.request_id = Some(request_id.to_owned());
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(bytes))
}
