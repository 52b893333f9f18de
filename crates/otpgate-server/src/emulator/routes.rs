//! The router (local paths, `/3rdparty/v1`, `/api/3rdparty/v1`), its authentication and
//! offline middleware, and the listener that refuses connections when told to.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::IntoResponse;
use axum::routing::{get, post};

use super::account::{
    accepted_empty, add_webhook, delete_device, delete_webhook, devices, empty_list, get_settings,
    list_webhooks, patch_settings,
};
use super::control::{get_control, outbox, post_control};
use super::messages::{cancel, get_one, health, list, send};
use super::tokens::{
    AuthSeen, Principal, issue_token, refresh_token, required_scope, revoke_token,
};
use super::{Emulator, Offline, Resp, error};

impl Emulator {
    /// The full API router (local paths, `/3rdparty/v1`, `/api/3rdparty/v1`, `/_control`,
    /// `/_emulator/messages`).
    pub fn router(self: &Arc<Self>) -> Router {
        self.start_pinger();
        let api = Router::new()
            .route("/message", post(send).get(list))
            .route("/messages", post(send).get(list))
            .route("/message/{id}", get(get_one).delete(cancel))
            .route("/messages/{id}", get(get_one).delete(cancel))
            .route("/webhook", get(list_webhooks).post(add_webhook))
            .route("/webhooks", get(list_webhooks).post(add_webhook))
            .route("/webhook/{id}", axum::routing::delete(delete_webhook))
            .route("/webhooks/{id}", axum::routing::delete(delete_webhook))
            .route("/device", get(devices))
            .route("/devices", get(devices))
            .route(
                "/settings",
                get(get_settings).patch(patch_settings).put(patch_settings),
            )
            .route("/logs", get(empty_list))
            .route("/inbox", get(empty_list))
            .route("/inbox/export", post(accepted_empty))
            .route("/inbox/refresh", post(accepted_empty))
            .route("/messages/inbox/export", post(accepted_empty))
            .route("/devices/{id}", axum::routing::delete(delete_device))
            .route("/auth/token", post(issue_token))
            .route("/auth/token/refresh", post(refresh_token))
            .route("/auth/token/{jti}", axum::routing::delete(revoke_token))
            .route("/_control", get(get_control).post(post_control))
            .route_layer(middleware::from_fn_with_state(self.clone(), auth))
            .route("/health", get(health));
        let api = api.layer(middleware::from_fn_with_state(self.clone(), offline));
        Router::new()
            .merge(api.clone())
            .nest("/3rdparty/v1", api.clone())
            .nest("/api/3rdparty/v1", api)
            .with_state(self.clone())
            .merge(self.outbox_router())
    }

    /// Only `GET /_emulator/messages?phone=` (what the issuer mounts in dev mode).
    pub fn outbox_router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/_emulator/messages", get(outbox))
            .with_state(self.clone())
    }

    /// Serves [`Emulator::router`] on `listener`, honouring [`Offline::Refuse`] by closing new
    /// connections at once.
    ///
    /// # Errors
    /// I/O errors of the listener.
    pub async fn serve(self: &Arc<Self>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        let l = RefusingListener {
            inner: listener,
            emu: self.clone(),
        };
        axum::serve(l, self.router()).await
    }
}

pub(super) struct RefusingListener {
    inner: tokio::net::TcpListener,
    emu: Arc<Emulator>,
}

impl axum::serve::Listener for RefusingListener {
    type Io = tokio::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((s, a)) => {
                    if self.emu.refuse.load(Ordering::SeqCst) {
                        drop(s);
                        continue;
                    }
                    let _ = s.set_nodelay(true);
                    return (s, a);
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

pub(super) async fn offline(State(emu): State<Arc<Emulator>>, req: Request, next: Next) -> Resp {
    let path = req.uri().path();
    if path.ends_with("/_control") || path.starts_with("/_emulator") {
        return next.run(req).await;
    }
    match emu.knobs().offline {
        Offline::Online => next.run(req).await,
        mode => {
            let mut r = error(StatusCode::SERVICE_UNAVAILABLE, "device offline");
            if mode == Offline::Refuse {
                r.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            r
        }
    }
}

/// Authentication, then the route's scope (the server's `userauth.NewBasic`, `jwtauth.NewJWT`,
/// `UserRequired`, `RequireScope`): no or bad credentials 401, a missing scope 403. Every
/// call is noted with its scheme and answer.
pub(super) async fn auth(State(emu): State<Arc<Emulator>>, mut req: Request, next: Next) -> Resp {
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let scheme = scheme_of(req.headers());
    let resp = match principal(&emu, req.headers()) {
        None => {
            let mut r = StatusCode::UNAUTHORIZED.into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"Access to SMS Gateway\""),
            );
            r
        }
        Some(who) => {
            let (scope, exact) = required_scope(&method, &path);
            if who.has(scope, exact) {
                req.extensions_mut().insert(who);
                next.run(req).await
            } else {
                error(StatusCode::FORBIDDEN, format!("scope required: {scope}"))
            }
        }
    };
    emu.lock().tokens.note(AuthSeen {
        method: method.to_string(),
        path,
        scheme,
        status: resp.status().as_u16(),
    });
    resp
}

fn scheme_of(headers: &HeaderMap) -> &'static str {
    let v = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let starts = |p: &str| v.len() > p.len() && v[..p.len()].eq_ignore_ascii_case(p);
    if starts("basic ") {
        "basic"
    } else if starts("bearer ") {
        "bearer"
    } else {
        "none"
    }
}

/// Who the credentials name, with their scopes (`None`: no or bad credentials).
pub(super) fn principal(emu: &Emulator, headers: &HeaderMap) -> Option<Principal> {
    use base64::Engine as _;
    let v = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())?;
    let ct = otpgate_core::code::ct_eq;
    match scheme_of(headers) {
        "basic" => {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(v[6..].trim())
                .ok()?;
            let expected = format!("{}:{}", emu.username, emu.password);
            ct(&raw, expected.as_bytes()).then(Principal::basic)
        }
        "bearer" => {
            if !emu.knobs().jwt_enabled {
                return None;
            }
            let now = emu.clock.now_ms();
            let claims = emu.lock().tokens.verify(v[7..].trim(), now)?;
            Some(Principal {
                scopes: claims.scopes.clone(),
                claims: Some(claims),
            })
        }
        _ => None,
    }
}
