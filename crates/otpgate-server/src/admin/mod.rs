//! The operator console: a web page and its JSON API for the people who run the phones.
//!
//! # Where
//! - `[admin] listen = "127.0.0.1:9090"`: the console at `/` of that listener, its API under
//!   `/api/` ([`openapi`] documents it, served at `/api/openapi.json`). Off unless `listen` is
//!   set; the token comes from `[admin] token_env` (default `OTPGATE_ADMIN_TOKEN`, or the
//!   file named by `OTPGATE_ADMIN_TOKEN_FILE`).
//! - Dev mode: also at `/admin` of the main listener, answered to loopback clients only
//!   (404 to anyone else); the token is `OTPGATE_ADMIN_TOKEN[_FILE]` if set, else the one in
//!   `DATA_DIR/dev-admin-token` (made on the first start, owner-only).
//!
//! # Authentication
//! Every `/api/` call but the OpenAPI document needs the token as `Authorization: Bearer` or
//! the session cookie the login form sets ([`auth`]). Without either: 401 `unauthorized`.
//!
//! # What reaches the page
//! Never a secret (the token is typed into the form, never echoed; the cookie is HttpOnly),
//! never a full number (pseudonyms: keyed hash + last two digits), never a full
//! verification id. Pages carry a strict Content-Security-Policy (scripts from the console
//! itself only) and are not cached.
//!
//! # Data
//! Fleet state and budgets come from the gateway pool and the store; the charts, delivery
//! figures and recent verifications from [`recorder`], in memory per instance.

pub mod auth;
pub mod openapi;
pub mod recorder;
pub mod series;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use otpgate_core::wire::ErrorCode;
use serde::{Deserialize, Serialize};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;

use crate::api::ApiError;
use crate::audit::AuditLog;
use crate::client_addr::TrustedProxies;
use crate::gateway::{DeviceStatus, Pool};
use crate::serve::AnchorExporter;
use crate::service::Service;

pub use auth::Auth;
pub use recorder::Recorder;

/// The console page (`{{BASE}}` is replaced by the console's base path).
const INDEX_HTML: &str = include_str!("../../console/index.html");
/// The console's script.
const CONSOLE_JS: &str = include_str!("../../console/console.js");
/// The console's styles.
const CONSOLE_CSS: &str = include_str!("../../console/console.css");
/// uPlot (MIT), vendored from npm by `scripts/vendor-console.sh`.
const UPLOT_JS: &str = include_str!("../../console/vendor/uPlot.iife.min.js");
/// uPlot's styles.
const UPLOT_CSS: &str = include_str!("../../console/vendor/uPlot.min.css");

/// The largest body the console accepts (the login form), bytes.
const BODY_LIMIT: usize = 4 * 1024;

/// What the console reads from.
pub struct Console {
    /// The verification service (policy, store, clock).
    pub service: Arc<Service>,
    /// The gateway pool, when phones are configured.
    pub pool: Option<Arc<Pool>>,
    /// What this instance saw.
    pub recorder: Arc<Recorder>,
    /// The audit log.
    pub audit: Arc<AuditLog>,
    /// The audit anchors' exporter, when `[audit] anchor` is set.
    pub anchors: Option<Arc<AnchorExporter>>,
    /// `[audit]` as configured.
    pub audit_config: crate::config::AuditConfig,
    /// The token and sessions.
    pub auth: Auth,
    /// `""` on the console's own listener, `"/admin"` on the main one.
    pub base: String,
    /// Whether the listener serves TLS itself (the cookie is then `Secure`).
    pub tls: bool,
    /// Proxies whose `X-Forwarded-Proto: https` makes the cookie `Secure`.
    pub trusted_proxies: TrustedProxies,
    /// Answer loopback clients only (dev mode's `/admin`).
    pub loopback_only: bool,
    /// When this instance started, Unix ms.
    pub started_at_ms: i64,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

type Shared = Arc<Console>;

impl Console {
    fn now(&self) -> i64 {
        self.service.clock().now_ms()
    }

    fn path(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.base)
    }

    /// Whether the request carries the token (bearer) or a live session cookie.
    fn authorized(&self, headers: &HeaderMap) -> bool {
        if let Some(v) = headers.get(header::AUTHORIZATION) {
            return v
                .to_str()
                .ok()
                .and_then(|s| s.strip_prefix("Bearer "))
                .is_some_and(|t| self.auth.token_ok(t));
        }
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(auth::cookie_value)
            .any(|id| self.auth.session_ok(id, self.now()))
    }

    /// Whether the browser reached us over TLS (ours, or a trusted proxy's).
    fn secure(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> bool {
        self.tls
            || (peer.is_some_and(|ip| self.trusted_proxies.trusts(ip))
                && headers
                    .get("x-forwarded-proto")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.trim().eq_ignore_ascii_case("https")))
    }
}

/// The console's routes under `console.base`, with its layers (security headers, body
/// limit, timeout; loopback only when asked).
pub fn router(console: Arc<Console>) -> Router {
    let p = |s: &str| console.path(s);
    let mut r = Router::new()
        .route(&p("/"), get(page))
        .route(&p("/login"), post(login))
        .route(&p("/logout"), post(logout))
        .route(&p("/assets/{file}"), get(asset))
        .route(&p("/api/fleet"), get(fleet))
        .route(&p("/api/series"), get(series))
        .route(&p("/api/verifications"), get(verifications))
        .route(&p("/api/audit"), get(audit_status))
        .route(&p("/api/openapi.json"), get(openapi_json));
    if !console.base.is_empty() {
        r = r.route(&console.base, get(page));
    }
    let loopback_only = console.loopback_only;
    r.with_state(console)
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ))
        .layer(CatchPanicLayer::new())
        .layer(middleware::from_fn(headers))
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            guard(loopback_only, req, next)
        }))
}

/// Dev mode's `/admin`: anyone but a loopback client gets 404, as if nothing were there.
async fn guard(loopback_only: bool, req: Request, next: Next) -> Response {
    if loopback_only {
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        if !peer.is_some_and(|ip| ip.to_canonical().is_loopback()) {
            return ApiError::not_found().into_response();
        }
    }
    next.run(req).await
}

/// Security headers on every answer; nothing is cached but the static assets.
async fn headers(req: Request, next: Next) -> Response {
    let is_asset = req.uri().path().contains("/assets/");
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !is_asset {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

fn peer_of(ext: &axum::http::Extensions) -> Option<IpAddr> {
    ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())
}

fn unauthorized() -> Response {
    let mut res = ApiError::new(
        StatusCode::UNAUTHORIZED,
        ErrorCode::Unauthorized,
        "the admin token is required (Authorization: Bearer, or log in to the console)",
    )
    .into_response();
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"otpgate-admin\""),
    );
    res
}

fn html(status: StatusCode, body: String) -> Response {
    let mut res = (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response();
    // Already in its final shape: the main listener's error middleware leaves it be.
    res.extensions_mut().insert(crate::api::error::Shaped);
    res
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn login_page(base: &str, error: Option<&str>) -> String {
    let error = error.map_or_else(String::new, |e| {
        format!(
            "<p class=\"error\" role=\"alert\" id=\"login-error\">{}</p>",
            escape(e)
        )
    });
    let base = escape(base);
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>otpgate console: log in</title><link rel=\"icon\" href=\"data:,\">\
         <link rel=\"stylesheet\" href=\"{base}/assets/console.css\"></head>\
         <body class=\"login\"><main><h1>otpgate console</h1>{error}\
         <form method=\"post\" action=\"{base}/login\" id=\"login-form\">\
         <label for=\"token\">Admin token</label>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\">Log in</button></form>\
         <p class=\"hint\">The token is in the variable named by <code>[admin] token_env</code> \
         (<code>OTPGATE_ADMIN_TOKEN</code> by default).</p></main></body></html>\n"
    )
}

async fn page(State(c): State<Shared>, headers: HeaderMap) -> Response {
    if !c.authorized(&headers) {
        return html(StatusCode::OK, login_page(&c.base, None));
    }
    html(
        StatusCode::OK,
        INDEX_HTML.replace("{{BASE}}", &escape(&c.base)),
    )
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(
    State(c): State<Shared>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: Option<LoginForm> = serde_urlencoded_form(&body);
    let Some(form) = form else {
        return html(
            StatusCode::BAD_REQUEST,
            login_page(&c.base, Some("Send the form with a token.")),
        );
    };
    if !c.auth.token_ok(&form.token) {
        tracing::warn!("admin console: a login with a wrong token was refused");
        return html(
            StatusCode::UNAUTHORIZED,
            login_page(&c.base, Some("That token is not valid.")),
        );
    }
    let Ok(id) = c.auth.open_session(c.now()) else {
        return ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::InternalError,
            "internal error",
        )
        .into_response();
    };
    let secure = c.secure(peer_of(&ext), &headers);
    let cookie_path = if c.base.is_empty() { "/" } else { &c.base };
    let mut res = StatusCode::SEE_OTHER.into_response();
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&auth::set_cookie(
        &id,
        cookie_path,
        c.auth.session_secs(),
        secure,
    )) {
        h.insert(header::SET_COOKIE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&c.path("/")) {
        h.insert(header::LOCATION, v);
    }
    res
}

/// `application/x-www-form-urlencoded` `token=...` (percent-decoded; `+` is a space).
fn serde_urlencoded_form(body: &[u8]) -> Option<LoginForm> {
    let text = std::str::from_utf8(body).ok()?;
    let raw = text.split('&').find_map(|kv| kv.strip_prefix("token="))?;
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b'%' => return None,
            b => out.push(b),
        }
        i += 1;
    }
    Some(LoginForm {
        token: String::from_utf8(out).ok()?,
    })
}

async fn logout(
    State(c): State<Shared>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
) -> Response {
    for id in headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(auth::cookie_value)
    {
        c.auth.close_session(id);
    }
    let secure = c.secure(peer_of(&ext), &headers);
    let cookie_path = if c.base.is_empty() { "/" } else { &c.base };
    let mut res = StatusCode::SEE_OTHER.into_response();
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&auth::set_cookie("", cookie_path, 0, secure)) {
        h.insert(header::SET_COOKIE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&c.path("/")) {
        h.insert(header::LOCATION, v);
    }
    res
}

async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "console.js" => (CONSOLE_JS, "text/javascript; charset=utf-8"),
        "console.css" => (CONSOLE_CSS, "text/css; charset=utf-8"),
        "uPlot.iife.min.js" => (UPLOT_JS, "text/javascript; charset=utf-8"),
        "uPlot.min.css" => (UPLOT_CSS, "text/css; charset=utf-8"),
        _ => return ApiError::not_found().into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

fn json<T: Serialize>(v: &T) -> Response {
    axum::Json(v).into_response()
}

/// One device in `GET /api/fleet`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FleetDevice {
    /// The pool's view: state, reason, breaker, budgets.
    #[serde(flatten)]
    pub status: DeviceStatus,
    /// This instance's figures: delivery over 1 h and 24 h, last error, last health answer.
    #[serde(flatten)]
    pub figures: recorder::DeviceFigures,
}

/// `GET /api/fleet`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Fleet {
    /// When this answer was made, Unix ms.
    pub generated_at_ms: i64,
    /// When this instance started, Unix ms (its figures start there).
    pub instance_started_at_ms: i64,
    /// Seconds between health checks (`None` without phones).
    pub health_interval_secs: Option<u64>,
    /// Sends waiting for phone capacity (as this instance knows it).
    pub queue_waiting: u64,
    /// Messages this instance tracks.
    pub in_flight: u64,
    /// The devices, in configuration order.
    pub devices: Vec<FleetDevice>,
}

async fn fleet(State(c): State<Shared>, headers: HeaderMap) -> Response {
    if !c.authorized(&headers) {
        return unauthorized();
    }
    let now = c.now();
    let (devices, interval, waiting, in_flight) = match &c.pool {
        Some(pool) => {
            let m = pool.metrics();
            let devices = pool
                .fleet()
                .await
                .into_iter()
                .map(|status| FleetDevice {
                    figures: c.recorder.device(&status.name, now),
                    status,
                })
                .collect();
            (
                devices,
                Some(pool.health_interval_secs()),
                m.queue_waiting,
                m.in_flight,
            )
        }
        None => (Vec::new(), None, 0, 0),
    };
    json(&Fleet {
        generated_at_ms: now,
        instance_started_at_ms: c.started_at_ms,
        health_interval_secs: interval,
        queue_waiting: waiting,
        in_flight,
        devices,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeriesQuery {
    minutes: Option<String>,
}

fn bad_query(message: &str) -> Response {
    ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, message).into_response()
}

async fn series(
    State(c): State<Shared>,
    headers: HeaderMap,
    q: Result<Query<SeriesQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if !c.authorized(&headers) {
        return unauthorized();
    }
    let Ok(Query(q)) = q else {
        return bad_query("the only query parameter is minutes=1..60");
    };
    let minutes = match q.minutes.as_deref().map(str::parse::<u32>) {
        None => 30,
        Some(Ok(m)) if (1..=60).contains(&m) => m,
        Some(_) => return bad_query("minutes must be a whole number 1..60"),
    };
    json(&c.recorder.series(c.now(), minutes))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecentQuery {
    limit: Option<String>,
}

/// `GET /api/verifications`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Recent {
    /// Newest first.
    pub verifications: Vec<recorder::RecentVerification>,
}

async fn verifications(
    State(c): State<Shared>,
    headers: HeaderMap,
    q: Result<Query<RecentQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if !c.authorized(&headers) {
        return unauthorized();
    }
    let Ok(Query(q)) = q else {
        return bad_query("the only query parameter is limit=1..50");
    };
    let limit = match q.limit.as_deref().map(str::parse::<usize>) {
        None => 20,
        Some(Ok(n)) if (1..=recorder::RECENT).contains(&n) => n,
        Some(_) => return bad_query("limit must be a whole number 1..50"),
    };
    json(&Recent {
        verifications: c.recorder.recent(limit),
    })
}

/// `GET /api/audit`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditStatus {
    /// Whether the audit log is written.
    pub enabled: bool,
    /// The file's name (no directory).
    pub file: Option<String>,
    /// Lines so far (purged ones included).
    pub head_seq: Option<u64>,
    /// The first 12 hex digits of the last line's link.
    pub head: Option<String>,
    /// `ok`, or the append error's code.
    pub writer: &'static str,
    /// Days lines are kept.
    pub retention_days: u32,
    /// The anchors (`None` without `[audit] anchor`).
    pub anchor: Option<AnchorStatus>,
}

/// The anchor exports in `GET /api/audit`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AnchorStatus {
    /// Where they go (no credentials, no query).
    pub sink: String,
    /// Seconds between exports.
    pub every_secs: u64,
    /// The last successful export, Unix ms.
    pub last_success_ms: Option<i64>,
    /// The last failure: when and why.
    pub last_error: Option<recorder::Stamped>,
    /// No success for three intervals (the alert `OtpgateAuditAnchorStale` fires too).
    pub stale: bool,
}

async fn audit_status(State(c): State<Shared>, headers: HeaderMap) -> Response {
    if !c.authorized(&headers) {
        return unauthorized();
    }
    let now = c.now();
    let (head_seq, head, writer) = match c.audit.head().await {
        Ok(Some((seq, link))) => (Some(seq), Some(link.chars().take(12).collect()), "ok"),
        Ok(None) => (None, None, "ok"),
        Err(e) => (None, None, e.code()),
    };
    let anchor = c.anchors.as_ref().map(|a| {
        let s = a.status();
        let every = c.audit_config.anchor_every_secs;
        let since = s.last_success_ms.unwrap_or(c.started_at_ms);
        AnchorStatus {
            sink: s.sink,
            every_secs: every,
            last_success_ms: s.last_success_ms,
            last_error: s.last_error,
            stale: now - since > i64::try_from(every.saturating_mul(3000)).unwrap_or(i64::MAX),
        }
    });
    json(&AuditStatus {
        enabled: c.audit.path().is_some(),
        file: c
            .audit
            .path()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned()),
        head_seq,
        head,
        writer,
        retention_days: c.audit_config.retention_days,
        anchor,
    })
}

async fn openapi_json() -> Response {
    json(&openapi::document())
}

/// Feeds `recorder` from the audit log and the pool, and samples the proof-of-work
/// difficulty and the store's round trip every 5 s for as long as the recorder lives.
pub fn start_recording(recorder: &Arc<Recorder>, service: &Arc<Service>, pool: Option<&Arc<Pool>>) {
    let rec = Arc::downgrade(recorder);
    service.audit_log().set_tap(Box::new(move |ev| {
        if let Some(r) = rec.upgrade() {
            r.on_audit(&ev);
        }
    }));
    if let Some(pool) = pool {
        recorder.know_devices(pool.metrics().devices.iter().map(|d| d.name.as_str()));
        let rec = Arc::downgrade(recorder);
        let clock = service.clock().clone();
        pool.set_observer(Box::new(move |ev| {
            if let Some(r) = rec.upgrade() {
                r.on_pool(ev, clock.now_ms());
            }
        }));
    }
    let rec = Arc::downgrade(recorder);
    let service = Arc::downgrade(service);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let (Some(r), Some(s)) = (rec.upgrade(), service.upgrade()) else {
                return;
            };
            let started = Instant::now();
            let store_ms = s
                .store()
                .ping()
                .await
                .ok()
                .map(|()| started.elapsed().as_secs_f64() * 1000.0);
            r.sample(
                s.clock().now_ms(),
                s.policy().current_difficulty(),
                store_ms,
            );
        }
    });
}

/// Serves the console on its own listener until `shutdown` resolves.
///
/// # Errors
/// The listener fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    console: Arc<Console>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(console).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_login_form_decodes_like_a_browser_sends_it() {
        let f = serde_urlencoded_form(b"token=a%2Bb+c%3D").unwrap();
        assert_eq!(f.token, "a+b c=");
        assert!(serde_urlencoded_form(b"token=%zz").is_none());
        assert!(serde_urlencoded_form(b"token=%4").is_none());
        assert!(serde_urlencoded_form(b"nothing=1").is_none());
        assert!(serde_urlencoded_form(&[0xff, 0xfe]).is_none());
    }

    #[test]
    fn the_login_page_escapes_what_it_shows() {
        let p = login_page("/admin", Some("<b>"));
        assert!(p.contains("&lt;b&gt;") && !p.contains("<b>"));
        assert!(p.contains("action=\"/admin/login\""));
    }
}
