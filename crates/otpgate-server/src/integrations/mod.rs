//! Integrations with the auth systems people already run: Supabase Auth's Send SMS hook
//! ([`supabase`]) and a Twilio Verify-compatible API ([`twilio`]). (`POST /v1/messages`, the
//! delivery API for Ory Kratos and others, is part of the API itself: [`crate::api::messages`].)
//!
//! Each is a trusted caller, authenticated by its own secret: no proof of work, no per-IP
//! budget; the destination policy and the per-number, prefix and global budgets apply, and
//! its sends neither raise nor lower the anti-pumping signals. Its routes answer in its
//! peer's error shape (Supabase's `{"error": {"http_code", "message"}}`, Twilio's
//! `{"code", "message", "more_info", "status"}`), the one exception to the API's single
//! error shape ([`crate::api::error::PeerShaped`]).
//!
//! # Layout
//! - [`config`]: `[integrations.*]` and the secrets they name.
//! - [`supabase`]: `POST /v1/hooks/supabase/send-sms` (Standard Webhooks).
//! - [`twilio`]: `/v2/Services/{ServiceSid}/Verifications[...]` and `/VerificationCheck`.

pub mod config;
pub mod supabase;
pub mod twilio;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};

pub use config::{Integrations, IntegrationsConfig};

use crate::api::error::PeerShaped;
use crate::client_addr::TrustedProxies;
use crate::service::{RequestMeta, Service};

/// The largest body the integration routes read (a Supabase hook carries the whole user).
pub const BODY_LIMIT: usize = 64 * 1024;

/// What the integration routes are served from.
#[derive(Clone, Debug)]
pub struct IntegrationState {
    /// The verification service.
    pub service: Arc<Service>,
    /// The configured integrations, secrets read.
    pub integrations: Arc<Integrations>,
    /// The proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: TrustedProxies,
}

/// The routes of the integrations, to merge into the API router (`crate::api::router`'s
/// `extra`). Those of an integration not configured answer 404 in their peer's shape (so
/// `/openapi.json`, which lists them, stays true of every issuer).
pub fn router(state: IntegrationState) -> Router {
    Router::new()
        .route(supabase::PATH, post(supabase::send_sms))
        .route("/v2/Services/{service}/Verifications", post(twilio::create))
        .route(
            "/v2/Services/{service}/Verifications/{sid}",
            get(twilio::fetch).post(twilio::update),
        )
        .route(
            "/v2/Services/{service}/VerificationCheck",
            post(twilio::check),
        )
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn(peer_shaped))
        .with_state(state)
}

/// Writes the errors axum answers before a handler runs (a body over [`BODY_LIMIT`], a path
/// that is not UTF-8) in the route's peer shape, as the handlers write theirs; 405 keeps the
/// API's shape (its `Allow` header says what to do).
async fn peer_shaped(req: Request, next: Next) -> Response {
    let supabase = req.uri().path() == supabase::PATH;
    let res = next.run(req).await;
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error())
        || status == StatusCode::METHOD_NOT_ALLOWED
        || res.extensions().get::<PeerShaped>().is_some()
    {
        return res;
    }
    let retry_after = res
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
        format!("the request body is over {} KiB", BODY_LIMIT / 1024)
    } else {
        status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase()
    };
    if supabase {
        return supabase::refusal(status, &message, retry_after);
    }
    let code = match status.as_u16() {
        400 | 413 | 415 | 422 => 60200,
        401 => 20003,
        s => 20000 + u32::from(s),
    };
    twilio::error(status, code, &message, retry_after)
}

/// The caller of an integration route: trusted once its route's own secret was checked.
pub(crate) struct Meta(pub(crate) RequestMeta);

impl FromRequestParts<IntegrationState> for Meta {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &IntegrationState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(crate::api::request_meta(
            parts,
            &state.trusted_proxies,
            true,
        )))
    }
}
