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
use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::routing::{get, post};

pub use config::{Integrations, IntegrationsConfig};

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

/// The routes of the configured integrations (none for those not configured: their paths
/// answer 404), to merge into the API router (`crate::api::router`'s `extra`).
pub fn router(state: IntegrationState) -> Router {
    let mut r = Router::new();
    if state.integrations.supabase.is_some() {
        r = r.route(supabase::PATH, post(supabase::send_sms));
    }
    if state.integrations.twilio.is_some() {
        r = r
            .route("/v2/Services/{service}/Verifications", post(twilio::create))
            .route(
                "/v2/Services/{service}/Verifications/{sid}",
                get(twilio::fetch).post(twilio::update),
            )
            .route(
                "/v2/Services/{service}/VerificationCheck",
                post(twilio::check),
            );
    }
    r.layer(DefaultBodyLimit::max(BODY_LIMIT)).with_state(state)
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
