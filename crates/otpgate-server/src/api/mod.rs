//! The HTTP API of the issuer (axum): the routes of DESIGN.md, the one error shape, request
//! ids, CORS from the configured apps' origins, the body limit, the trusted-backend API key,
//! metrics and the OpenAPI document.
//!
//! # Layout
//! - [`error`]: [`ApiError`] and the middleware that puts every error (axum's rejections and
//!   fallbacks included) into `{"error": {"code", "message", ...}}`.
//! - [`openapi`]: the OpenAPI 3.1 document served at `/openapi.json`.
//!
//! # Security
//! Ids that are not well formed answer exactly like unknown ids (404). A 5xx never carries
//! internals: the cause is logged with the request id. The client address comes from the
//! socket; `X-Forwarded-For` is read only from the proxies in `[server] trusted_proxies`
//! ([`crate::client_addr`]).

pub mod error;
pub mod idempotency;
pub mod openapi;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{
    ConnectInfo, DefaultBodyLimit, FromRequestParts, MatchedPath, Path, Request, State,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use otpgate_core::wire::{CheckRequest, ErrorCode, PowSolution, StartRequest, VerificationView};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::services::ServeDir;
use tower_http::timeout::TimeoutLayer;

pub use error::ApiError;

use crate::client_addr::TrustedProxies;
use crate::config::Origin;
use crate::metrics::Metrics;
use crate::service::{RequestMeta, Service, StartInput};

/// The request id header.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request id of the request being served (in the request extensions): always the
/// server's own.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// The `X-Request-Id` the client sent, when sane (in the request extensions): kept apart
/// from the server's own id, so a client cannot choose the id its audit lines carry.
#[derive(Clone, Debug)]
pub struct ClientRequestId(pub String);

/// What the router is built from.
#[derive(Clone)]
pub struct ApiState {
    /// The verification service.
    pub service: Arc<Service>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The proxies whose `X-Forwarded-For` names the client ([`TrustedProxies::client_ip`]).
    pub trusted_proxies: TrustedProxies,
}

/// How the router is wrapped.
#[derive(Clone, Debug)]
pub struct RouterOptions {
    /// Largest request body, bytes.
    pub body_limit: usize,
    /// Per-request timeout.
    pub timeout: Duration,
    /// The browser origins CORS accepts.
    pub cors_origins: Vec<Origin>,
    /// A directory served for paths no route matches (the demo page).
    pub static_dir: Option<PathBuf>,
}

impl Default for RouterOptions {
    fn default() -> Self {
        Self {
            body_limit: crate::config::DEFAULT_BODY_LIMIT,
            timeout: Duration::from_secs(30),
            cors_origins: Vec::new(),
            static_dir: None,
        }
    }
}

/// The API routes with every layer. `extra` (gateway webhooks, the emulator in dev mode) is
/// merged in before the layers, so it shares the request ids, errors and metrics.
pub fn router(state: ApiState, options: RouterOptions, extra: Router) -> Router {
    let metrics = state.metrics.clone();
    let api = Router::new()
        .route("/v1/verifications", post(start))
        .route("/v1/verifications/{id}", get(status).delete(cancel))
        .route("/v1/verifications/{id}/check", post(check))
        .route("/v1/verifications/{id}/resend", post(resend))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi_json))
        .with_state(state)
        .merge(extra);
    let api = match options.static_dir {
        Some(dir) => api.fallback_service(ServeDir::new(dir)),
        None => api.fallback(|| async { ApiError::not_found() }),
    };
    let origins = options.cors_origins;
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin: &HeaderValue, _| {
            origin
                .to_str()
                .is_ok_and(|o| origins.iter().any(|allowed| allowed.matches(o)))
        }))
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            REQUEST_ID,
            HeaderName::from_static(idempotency::HEADER),
        ])
        .expose_headers([
            REQUEST_ID,
            header::RETRY_AFTER,
            HeaderName::from_static(idempotency::REPLAYED),
        ])
        .max_age(Duration::from_secs(600));
    api.layer(DefaultBodyLimit::max(options.body_limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            options.timeout,
        ))
        .layer(CatchPanicLayer::new())
        .layer(cors)
        .layer(middleware::from_fn_with_state(metrics, edge))
}

/// Middleware, the outermost (one layer for three jobs, as each layer costs a boxed future
/// and a service clone per request):
/// - the request id: the server's own, new for every request, in the request extensions,
///   in the errors built while serving and in the response header (a sane incoming
///   `X-Request-Id` is kept apart as [`ClientRequestId`], for the audit log);
/// - the one error shape for every 4xx/5xx ([`error::normalize`]);
/// - latency by route template (never the raw path: bounded cardinality).
async fn edge(State(metrics): State<Arc<Metrics>>, mut req: Request, next: Next) -> Response {
    let client_id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        })
        .map(str::to_owned);
    let id = new_request_id();
    req.extensions_mut().insert(RequestId(id.clone()));
    if let Some(c) = client_id {
        req.extensions_mut().insert(ClientRequestId(c));
    }
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("other", MatchedPath::as_str)
        .to_owned();
    let method = req.method().clone();
    let uri = req.uri().clone();
    let started = Instant::now();
    let res = error::CURRENT_REQUEST_ID
        .scope(id.clone(), next.run(req))
        .await;
    let mut res = error::normalize(res, &id, &method, uri.path()).await;
    metrics.http(
        &route,
        method.as_str(),
        res.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID, v);
    }
    res
}

/// A new request id: `req_` + 16 hex digits fixed at start from the OS CSPRNG + a counter.
/// Unique within the process and across restarts with high odds; request ids correlate
/// logs and are no secret, so no system call per request.
fn new_request_id() -> String {
    use std::sync::LazyLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static PREFIX: LazyLock<String> = LazyLock::new(|| {
        crate::random::bytes(8).map_or_else(|_| format!("{:016x}", std::process::id()), hex::encode)
    });
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "req_{}{:x}",
        *PREFIX,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The caller, as the service sees it.
struct Caller(RequestMeta);

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let request_id = parts
            .extensions
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_default();
        let socket_ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let client_ip = state.trusted_proxies.client_ip(socket_ip, &parts.headers);
        let trusted = match parts.headers.get(header::AUTHORIZATION) {
            None => false,
            Some(v) => {
                let key = v
                    .to_str()
                    .ok()
                    .and_then(|s| s.strip_prefix("Bearer "))
                    .map(str::trim)
                    .unwrap_or("");
                if key.is_empty() || !state.service.policy().api_key_valid(key) {
                    return Err(ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        ErrorCode::InvalidApiKey,
                        "the API key is not valid",
                    ));
                }
                true
            }
        };
        let client_request_id = parts
            .extensions
            .get::<ClientRequestId>()
            .map(|c| c.0.clone());
        Ok(Self(RequestMeta {
            request_id,
            client_request_id,
            client_ip,
            trusted,
        }))
    }
}

/// The view as `meta`'s caller may see it: which gateway (phone) carries a message is for
/// trusted backends (API key) only; anyone else sees the delivery state alone.
fn shown_to(mut view: VerificationView, meta: &RequestMeta) -> VerificationView {
    if !meta.trusted {
        view.delivery.gateway = None;
    }
    view
}

/// Decodes a JSON body with clear errors: 415 without a JSON content type, 400 for bad
/// JSON (syntax, invalid UTF-8) or a body that does not match (unknown field, wrong type).
fn json_body<T: DeserializeOwned>(headers: &HeaderMap, body: &Bytes) -> Result<T, ApiError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().eq_ignore_ascii_case("application/json"))
        .unwrap_or(false);
    if !json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            "expected Content-Type: application/json",
        ));
    }
    let value = serde_json::from_slice(body).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidRequest,
                e.to_string(),
            ),
            Category::Syntax | Category::Eof | Category::Io => ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidJson,
                format!("the body is not valid JSON: {e}"),
            ),
        }
    })?;
    // serde reads a struct from a JSON array too (`["+4477..."]` as a start request). No
    // request body of this API holds an array, so one anywhere means the body is not the
    // documented object.
    if has_array(body) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRequest,
            "expected a JSON object with the documented fields; arrays are not accepted",
        ));
    }
    Ok(value)
}

/// Whether valid JSON `body` holds an array (a `[` outside strings).
fn has_array(body: &[u8]) -> bool {
    let (mut in_string, mut escaped) = (false, false);
    for &b in body {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else if b == b'"' {
            in_string = true;
        } else if b == b'[' {
            return true;
        }
    }
    false
}

/// The path id, or 404 for anything that cannot be one.
fn path_id(p: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    p.map(|Path(id)| id).map_err(|_| ApiError::not_found())
}

/// Starts a verification and sends the code.
#[utoipa::path(post, path = "/v1/verifications", tag = "verifications",
    request_body = openapi::StartRequestDoc,
    params(("Idempotency-Key" = Option<String>, Header, description = "1 to 255 visible ASCII characters, random per operation: the same key with the same body within 24 h gets the first successful answer again (`Idempotent-Replayed: true`) and sends nothing; with another body, 422 `idempotency_key_reused`; a refusal is not kept (a retry after 428 with the solution goes through)")),
    responses(
        (status = 201, description = "Started; the SMS is on its way", body = openapi::VerificationDoc,
            headers(("Location" = String, description = "The verification's URL"))),
        (status = 400, description = "Bad input: `invalid_json`, `invalid_request` (wrong type, unknown field), `invalid_phone` (not E.164, not a number valid for its region in libphonenumber's metadata, or the country code written twice), `unknown_country_code`, `unknown_app`, `invalid_locale`, or a refused proof of work", body = openapi::ErrorDoc),
        (status = 401, description = "Invalid API key (`Authorization: Bearer` given but not valid)", body = openapi::ErrorDoc),
        (status = 403, description = "`destination_not_allowed`: a valid number outside the allowed regions or number types, or in a blocked range (one answer for every class; the class is logged, audited and counted, not answered); or `pow_replayed`", body = openapi::ErrorDoc),
        (status = 409, description = "`conflict`: a request with the same `Idempotency-Key` is still running (`Retry-After`)", body = openapi::ErrorDoc),
        (status = 413, description = "Body too large", body = openapi::ErrorDoc),
        (status = 415, description = "Content-Type is not application/json", body = openapi::ErrorDoc),
        (status = 422, description = "`idempotency_key_reused`: the `Idempotency-Key` was used with another request", body = openapi::ErrorDoc),
        (status = 428, description = "Proof of work required (`challenge` in the body)", body = openapi::ErrorDoc),
        (status = 429, description = "`rate_limited` (a budget: phone, IP, prefix, global), `too_many_starts` (codes to this number from this address), `number_locked` (too many wrong codes for this number across verifications: a trusted caller, or the wait); each with `Retry-After`", body = openapi::ErrorDoc,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "Store unavailable, or no phone could send it within the queue's bound: `no_gateway_capacity` (`Retry-After`). A send that only waits for phone capacity is queued and answered 201 (`delivery.state` `queued`)", body = openapi::ErrorDoc),
    ))]
async fn start(
    State(state): State<ApiState>,
    Caller(meta): Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: StartRequest = json_body(&headers, &body)?;
    let key = idempotency::key_of(&headers)?;
    let request = serde_json::to_vec(&req).unwrap_or_default();
    let service = &state.service;
    let op = async {
        let input = StartInput {
            phone: req.phone,
            app: req.app,
            locale: req.locale,
            pow: req.pow,
        };
        let view = shown_to(service.start(input, &meta).await?, &meta);
        Ok(idempotency::Answer {
            status: StatusCode::CREATED,
            location: Some(format!("/v1/verifications/{}", view.id)),
            body: serde_json::to_string(&view).unwrap_or_default(),
        })
    };
    let now = service.clock().now_ms();
    idempotency::once(service.store().as_ref(), now, key, ("start", &request), op).await
}

/// The state of a verification, with the delivery state kept current.
#[utoipa::path(get, path = "/v1/verifications/{id}", tag = "verifications",
    params(openapi::IdParam),
    responses(
        (status = 200, description = "The verification (`delivery.gateway` only for callers with an API key)", body = openapi::VerificationDoc),
        (status = 401, description = "Invalid API key (`Authorization: Bearer` given but not valid)", body = openapi::ErrorDoc),
        (status = 404, description = "Unknown or malformed id", body = openapi::ErrorDoc),
        (status = 503, description = "Store unavailable (`Retry-After`)", body = openapi::ErrorDoc),
    ))]
async fn status(
    State(state): State<ApiState>,
    Caller(meta): Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = path_id(id)?;
    let view = shown_to(state.service.status(&id).await?, &meta);
    Ok(Json(view).into_response())
}

/// Checks a code; approves it once and returns the signed receipt.
#[utoipa::path(post, path = "/v1/verifications/{id}/check", tag = "verifications",
    params(openapi::IdParam),
    request_body = openapi::CheckRequestDoc,
    responses(
        (status = 200, description = "Approved", body = openapi::CheckResponseDoc),
        (status = 400, description = "Bad input: `invalid_json`, `invalid_request`, `invalid_code` (longer than any code)", body = openapi::ErrorDoc),
        (status = 401, description = "Invalid API key", body = openapi::ErrorDoc),
        (status = 404, description = "Unknown or malformed id", body = openapi::ErrorDoc),
        (status = 409, description = "Already used", body = openapi::ErrorDoc),
        (status = 410, description = "Expired or cancelled", body = openapi::ErrorDoc),
        (status = 413, description = "Body too large", body = openapi::ErrorDoc),
        (status = 415, description = "Content-Type is not application/json", body = openapi::ErrorDoc),
        (status = 422, description = "Wrong code (`attempts_left`)", body = openapi::ErrorDoc),
        (status = 429, description = "No attempts left, or too many checks from this address (`Retry-After`)", body = openapi::ErrorDoc),
        (status = 503, description = "Store unavailable (`Retry-After`)", body = openapi::ErrorDoc),
    ))]
async fn check(
    State(state): State<ApiState>,
    Caller(meta): Caller,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = path_id(id)?;
    let req: CheckRequest = json_body(&headers, &body)?;
    let out = state.service.check(&id, &req.code, &meta).await?;
    Ok(Json(out).into_response())
}

/// The optional body of a resend.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResendRequest {
    #[serde(default)]
    pow: Option<PowSolution>,
}

/// Sends a new code that replaces the old one.
#[utoipa::path(post, path = "/v1/verifications/{id}/resend", tag = "verifications",
    params(openapi::IdParam, ("Idempotency-Key" = Option<String>, Header, description = "As for a start: a retried resend with the same key sends nothing more")),
    request_body(content = Option<openapi::ResendRequestDoc>, description = "Optional (an empty body is fine): a solved proof of work"),
    responses(
        (status = 200, description = "A new code was sent", body = openapi::VerificationDoc),
        (status = 400, description = "Bad input: `invalid_json`, `invalid_request`", body = openapi::ErrorDoc),
        (status = 401, description = "Invalid API key", body = openapi::ErrorDoc),
        (status = 403, description = "`destination_not_allowed`: the destination is no longer allowed (the policy changed since the start)", body = openapi::ErrorDoc),
        (status = 404, description = "Unknown or malformed id", body = openapi::ErrorDoc),
        (status = 409, description = "Already used, another resend in progress, or a request with the same `Idempotency-Key` still running", body = openapi::ErrorDoc),
        (status = 422, description = "`idempotency_key_reused`", body = openapi::ErrorDoc),
        (status = 410, description = "Expired or cancelled", body = openapi::ErrorDoc),
        (status = 413, description = "Body too large", body = openapi::ErrorDoc),
        (status = 415, description = "A body that is not application/json", body = openapi::ErrorDoc),
        (status = 429, description = "Inside the cooldown (`resend_cooldown`), `too_many_sends`, `no_attempts_left`, `rate_limited`, or `number_locked` (`Retry-After`)", body = openapi::ErrorDoc),
        (status = 503, description = "Store or gateways unavailable (`Retry-After`)", body = openapi::ErrorDoc),
    ))]
async fn resend(
    State(state): State<ApiState>,
    Caller(meta): Caller,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = path_id(id)?;
    // No body, or JSON `null`, is a resend without a proof of work.
    let req: ResendRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ResendRequest::default()
    } else {
        json_body::<Option<ResendRequest>>(&headers, &body)?.unwrap_or_default()
    };
    let key = idempotency::key_of(&headers)?;
    let request = serde_json::to_vec(&req.pow).unwrap_or_default();
    let service = &state.service;
    let scope = format!("resend {id}");
    let op = async {
        let view = shown_to(service.resend(&id, req.pow, &meta).await?, &meta);
        Ok(idempotency::Answer {
            status: StatusCode::OK,
            location: None,
            body: serde_json::to_string(&view).unwrap_or_default(),
        })
    };
    let now = service.clock().now_ms();
    idempotency::once(service.store().as_ref(), now, key, (&scope, &request), op).await
}

/// Cancels a verification.
#[utoipa::path(delete, path = "/v1/verifications/{id}", tag = "verifications",
    params(openapi::IdParam),
    responses(
        (status = 200, description = "Cancelled (or already over: the view says how)", body = openapi::VerificationDoc),
        (status = 401, description = "Invalid API key", body = openapi::ErrorDoc),
        (status = 404, description = "Unknown or malformed id", body = openapi::ErrorDoc),
        (status = 409, description = "Already used", body = openapi::ErrorDoc),
        (status = 503, description = "Store unavailable (`Retry-After`)", body = openapi::ErrorDoc),
    ))]
async fn cancel(
    State(state): State<ApiState>,
    Caller(meta): Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = path_id(id)?;
    let view = shown_to(state.service.cancel(&id, &meta).await?, &meta);
    Ok(Json(view).into_response())
}

/// The public keys receipts are signed with.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "receipts",
    responses((status = 200, description = "JWK Set (Ed25519 OKP keys)", body = openapi::JwksDoc)))]
async fn jwks(State(state): State<ApiState>) -> Response {
    let mut res = Json(state.service.keys().jwks()).into_response();
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    res
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "Alive")))]
async fn healthz() -> Response {
    Json(serde_json::json!({"status": "ok"})).into_response()
}

/// Readiness: the store answers and at least one gateway is healthy.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Ready"), (status = 503, description = "Not ready", body = openapi::ErrorDoc)))]
async fn readyz(State(state): State<ApiState>) -> Response {
    let store = state.service.store().ping().await;
    let gateways = state.service.dispatcher().ready().await;
    match (&store, gateways) {
        (Ok(()), true) => {
            Json(serde_json::json!({"status": "ready", "store": "ok", "gateways": "ok"}))
                .into_response()
        }
        _ => {
            let what = match (store.is_ok(), gateways) {
                (false, false) => "store and gateways unavailable",
                (false, true) => "store unavailable",
                _ => "no gateway available",
            };
            let mut e = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorCode::NotReady, what);
            e.cause = store.err().map(|e| e.to_string());
            e.into_response()
        }
    }
}

/// Prometheus text.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format")))]
async fn metrics_text(State(state): State<ApiState>) -> Response {
    let mut res = state.metrics.render().into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    res
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, description = "OpenAPI 3.1")))]
async fn openapi_json() -> Response {
    Json(openapi::document()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_are_found_outside_strings_only() {
        assert!(has_array(br#"["+447400900123"]"#));
        assert!(has_array(br#"{"pow": ["c", 1]}"#));
        assert!(!has_array(br#"{"phone": "[+44]", "app": "a\"[b"}"#));
        assert!(!has_array(br#"{"code": "\\", "x": "]"}"#));
        assert!(has_array(br#"{"code": "\\", "x": []}"#));
    }
}
