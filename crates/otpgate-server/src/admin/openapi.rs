//! The admin API's OpenAPI 3.1 document, served at `/api/openapi.json` of the console
//! (the only route of the console that needs no token).
#![allow(dead_code)]

use utoipa::OpenApi;

use super::recorder::{
    DeviceFigures, HealthAnswer, RecentVerification, Series, Stamped, TimelineEvent,
};
use super::series::DeliveryStats;
use super::{AnchorStatus, AuditStatus, Fleet, FleetDevice, Recent};
use crate::api::openapi::ErrorDoc;
use crate::gateway::DeviceStatus;

/// The fleet: each phone's state and why, its breaker, its budgets (from the store: what
/// every instance sees), and this instance's delivery figures over 1 h and 24 h.
#[utoipa::path(get, path = "/api/fleet", tag = "console",
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 200, description = "The fleet", body = Fleet),
        (status = 401, description = "`unauthorized`: no token or session (`WWW-Authenticate: Bearer`)", body = ErrorDoc),
    ))]
fn fleet_doc() {}

/// The charts' data, 10-second buckets, kept in memory per instance (an hour at most).
#[utoipa::path(get, path = "/api/series", tag = "console",
    security(("bearer" = []), ("session" = [])),
    params(("minutes" = Option<u32>, Query, description = "How far back, 1..60 (default 30)")),
    responses(
        (status = 200, description = "Aligned arrays, one value per bucket", body = Series),
        (status = 400, description = "`invalid_request`: minutes out of range, or another parameter", body = ErrorDoc),
        (status = 401, description = "`unauthorized`", body = ErrorDoc),
    ))]
fn series_doc() {}

/// The last verifications this instance started, newest first, with their delivery
/// timeline: numbers pseudonymised, ids shortened.
#[utoipa::path(get, path = "/api/verifications", tag = "console",
    security(("bearer" = []), ("session" = [])),
    params(("limit" = Option<u32>, Query, description = "How many, 1..50 (default 20)")),
    responses(
        (status = 200, description = "Recent verifications", body = Recent),
        (status = 400, description = "`invalid_request`: limit out of range, or another parameter", body = ErrorDoc),
        (status = 401, description = "`unauthorized`", body = ErrorDoc),
    ))]
fn verifications_doc() {}

/// The audit chain: where it stands and whether its anchors are exported.
#[utoipa::path(get, path = "/api/audit", tag = "console",
    security(("bearer" = []), ("session" = [])),
    responses(
        (status = 200, description = "The audit log's status", body = AuditStatus),
        (status = 401, description = "`unauthorized`", body = ErrorDoc),
    ))]
fn audit_doc() {}

/// This document (no token needed).
#[utoipa::path(get, path = "/api/openapi.json", tag = "console",
    responses((status = 200, description = "OpenAPI 3.1")))]
fn openapi_doc() {}

/// The login form: `token=...` (`application/x-www-form-urlencoded`). A right token answers
/// 303 to the console with the session cookie (`otpgate_admin`, HttpOnly, SameSite=Strict,
/// Secure behind TLS); a wrong one 401 with the form again.
#[utoipa::path(post, path = "/login", tag = "console",
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "`token=<the admin token>`"),
    responses(
        (status = 303, description = "Logged in: `Set-Cookie` and `Location` of the console"),
        (status = 400, description = "No token field"),
        (status = 401, description = "Wrong token (the form again, with the reason)"),
    ))]
fn login_doc() {}

/// Ends the session and clears the cookie.
#[utoipa::path(post, path = "/logout", tag = "console",
    responses((status = 303, description = "Logged out")))]
fn logout_doc() {}

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
        };
        let c = doc.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The admin token ([admin] token_env)"))
                    .build(),
            ),
        );
        c.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("otpgate_admin"))),
        );
    }
}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(title = "otpgate admin console API", description = "The operator console's JSON API, \
        on the `[admin] listen` address (and at `/admin` of the main listener in dev mode, \
        loopback only, where every path below starts with `/admin`). Charts, delivery figures \
        and recent verifications are what this instance saw since it started (kept in memory, \
        per instance); budgets come from the store. No answer carries a secret, a full number \
        or a full verification id."),
    paths(fleet_doc, series_doc, verifications_doc, audit_doc, openapi_doc, login_doc, logout_doc),
    components(schemas(
        Fleet, FleetDevice, DeviceStatus, DeviceFigures, DeliveryStats, Stamped, HealthAnswer,
        Series, Recent, RecentVerification, TimelineEvent, AuditStatus, AnchorStatus, ErrorDoc
    )),
    modifiers(&Security),
    tags((name = "console", description = "The operator console")),
)]
pub struct AdminApiDoc;

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    AdminApiDoc::openapi()
}
