//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` annotations.
//!
//! The wire types live in `otpgate-core`, which stays free of documentation dependencies (it
//! builds for wasm); the `*Doc` types here mirror them field for field for the schema only.
#![allow(dead_code)]

use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

/// `POST /v1/verifications`.
#[derive(Serialize, ToSchema)]
pub struct StartRequestDoc {
    /// The destination, E.164 (`+` and 8–15 digits; spaces, dots, dashes, parentheses allowed).
    #[schema(example = "+447700900123", max_length = 32)]
    pub phone: String,
    /// The app (configured name); the default app when absent.
    pub app: Option<String>,
    /// A BCP 47 language tag choosing the template.
    #[schema(example = "en")]
    pub locale: Option<String>,
    /// A solved proof-of-work challenge, when the issuer asked for one (428 `pow_required`).
    pub pow: Option<PowSolutionDoc>,
}

/// A solved proof-of-work challenge.
#[derive(Serialize, ToSchema)]
pub struct PowSolutionDoc {
    /// The challenge string from the 428 answer.
    pub challenge: String,
    /// A nonce such that SHA-256(challenge ‖ "." ‖ nonce) has the required leading zero bits.
    pub nonce: u64,
}

/// `POST /v1/verifications/{id}/check`.
#[derive(Serialize, ToSchema)]
pub struct CheckRequestDoc {
    /// The code the person typed or WebOTP delivered.
    #[schema(example = "123456")]
    pub code: String,
}

/// `POST /v1/verifications/{id}/resend` (optional body).
#[derive(Serialize, ToSchema)]
pub struct ResendRequestDoc {
    /// A solved proof-of-work challenge.
    pub pow: Option<PowSolutionDoc>,
}

/// The state of a verification.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatusDoc {
    /// Waiting for the right code.
    Pending,
    /// Approved (once).
    Approved,
    /// Cancelled.
    Cancelled,
    /// Expired.
    Expired,
    /// Every attempt was used.
    MaxAttemptsReached,
}

/// Where the SMS is.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStateDoc {
    /// Waiting for a device with budget.
    Queued,
    /// Accepted by a gateway.
    Submitted,
    /// Sent by the phone.
    Sent,
    /// Delivered to the handset.
    Delivered,
    /// Every route failed.
    Failed,
    /// Never sent (a test number).
    Skipped,
}

/// The delivery of the current code.
#[derive(Serialize, ToSchema)]
pub struct DeliveryDoc {
    /// The state.
    pub state: DeliveryStateDoc,
    /// The gateway that carries it.
    pub gateway: Option<String>,
    /// Last update, RFC 3339.
    pub updated_at: Option<String>,
}

/// A verification.
#[derive(Serialize, ToSchema)]
pub struct VerificationDoc {
    /// The id (`v_` + 22 base64url characters).
    #[schema(example = "v_3q2-7wAAAAAAAAAAAAAAAA")]
    pub id: String,
    /// The state.
    pub status: StatusDoc,
    /// When the current code expires, RFC 3339.
    pub expires_at: String,
    /// The earliest resend, RFC 3339.
    pub resend_at: String,
    /// Wrong codes still allowed.
    pub attempts_left: u32,
    /// Delivery.
    pub delivery: DeliveryDoc,
}

/// `200` of a check.
#[derive(Serialize, ToSchema)]
pub struct CheckResponseDoc {
    /// `approved`.
    pub status: StatusDoc,
    /// The receipt: a compact JWT (EdDSA) with iss, aud, sub, jti, phone_number,
    /// phone_number_verified, iat, exp. Verify it with `/.well-known/jwks.json`.
    pub receipt: String,
}

/// The error.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetailDoc {
    /// A stable snake_case code.
    #[schema(example = "wrong_code")]
    pub code: String,
    /// A sentence for people.
    pub message: String,
    /// Attempts left after a wrong code.
    pub attempts_left: Option<u32>,
    /// Seconds to wait (also `Retry-After`).
    pub retry_after: Option<u64>,
    /// A proof-of-work challenge (`pow_required`).
    pub challenge: Option<String>,
    /// The request id (also `X-Request-Id`).
    pub request_id: Option<String>,
}

/// The one error shape.
#[derive(Serialize, ToSchema)]
pub struct ErrorDoc {
    /// The error.
    pub error: ErrorDetailDoc,
}

/// One Ed25519 public key.
#[derive(Serialize, ToSchema)]
pub struct JwkDoc {
    /// `OKP`.
    pub kty: String,
    /// `Ed25519`.
    pub crv: String,
    /// The public key, base64url.
    pub x: String,
    /// The key id.
    pub kid: String,
    /// `EdDSA`.
    pub alg: Option<String>,
    /// `sig`.
    #[serde(rename = "use")]
    pub use_: Option<String>,
}

/// A JWK Set.
#[derive(Serialize, ToSchema)]
pub struct JwksDoc {
    /// The keys (current and previous).
    pub keys: Vec<JwkDoc>,
}

/// Delivery events from sms-gate.app phones (served by the gateway pool).
#[utoipa::path(post, path = "/v1/gateways/sms-gate/webhook", tag = "gateways",
    params(
        ("X-Signature" = String, Header, description = "hex HMAC-SHA256 of the raw body and X-Timestamp"),
        ("X-Timestamp" = String, Header, description = "Unix seconds; refused outside the window"),
    ),
    request_body(content = String, content_type = "application/json",
        description = "sms-gate.app webhook event (sms:sent, sms:delivered, sms:failed, system:ping)"),
    responses(
        (status = 200, description = "Accepted (or a duplicate, acknowledged)"),
        (status = 401, description = "Bad, stale or missing signature", body = ErrorDoc),
    ))]
fn smsgate_webhook_doc() {}

/// Delivery events from TextBee (served by the gateway pool).
#[utoipa::path(post, path = "/v1/gateways/textbee/webhook", tag = "gateways",
    responses((status = 200, description = "Accepted"), (status = 401, description = "Bad signature", body = ErrorDoc)))]
fn textbee_webhook_doc() {}

/// Delivery events from a generic signed-webhook provider (served by the gateway pool).
#[utoipa::path(post, path = "/v1/gateways/webhook/events", tag = "gateways",
    responses((status = 200, description = "Accepted"), (status = 401, description = "Bad signature", body = ErrorDoc)))]
fn generic_events_doc() {}

/// The multiOTP SMSGatewayApp polling endpoint (the phone fetches its messages here).
#[utoipa::path(get, path = "/v1/gateways/multiotp/{device}", tag = "gateways",
    params(("device" = String, Path, description = "The configured device name")),
    responses((status = 200, description = "Messages to send"), (status = 401, description = "Bad credentials", body = ErrorDoc)))]
fn multiotp_poll_doc() {}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(title = "otpgate issuer", description = "SMS one-time passwords sent from your own Android phones."),
    paths(
        super::start,
        super::status,
        super::check,
        super::resend,
        super::cancel,
        super::jwks,
        super::healthz,
        super::readyz,
        super::metrics_text,
        super::openapi_json,
        smsgate_webhook_doc,
        textbee_webhook_doc,
        generic_events_doc,
        multiotp_poll_doc,
    ),
    components(schemas(
        StartRequestDoc, PowSolutionDoc, CheckRequestDoc, ResendRequestDoc, StatusDoc, DeliveryStateDoc,
        DeliveryDoc, VerificationDoc, CheckResponseDoc, ErrorDetailDoc, ErrorDoc, JwkDoc, JwksDoc
    )),
    tags(
        (name = "verifications", description = "Start, check, resend and cancel verifications"),
        (name = "receipts", description = "Keys to verify receipts offline"),
        (name = "operations", description = "Health, readiness, metrics"),
        (name = "gateways", description = "Delivery events from the gateways (routes of the gateway pool)"),
    )
)]
pub struct ApiDoc;

/// The document, with the webhook route the gateway pool adds.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
