//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` annotations.
//!
//! The wire types live in `otpgate-core`, which stays free of documentation dependencies (it
//! builds for wasm); the `*Doc` types here mirror them field for field for the schema only.
#![allow(dead_code)]

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

/// The `{id}` path parameter.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct IdParam {
    /// The verification id (`v_` + 22 base64url characters). Any other string answers 404,
    /// like an unknown id.
    #[param(
        pattern = r"^v_[A-Za-z0-9_-]{22}$",
        example = "v_3q2-7wAAAAAAAAAAAAAAAA"
    )]
    pub id: String,
}

/// `POST /v1/verifications`. Unknown fields are refused (400 `invalid_request`).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRequestDoc {
    /// The destination, E.164: `+` and 8–15 digits, the first not 0, with a known country
    /// calling code; spaces, dots, dashes and parentheses are allowed between them, white
    /// space around. At most 32 bytes. The issuer then judges it with libphonenumber's
    /// metadata: a number not valid for its region is 400 `invalid_phone`; a trunk zero after
    /// the country code (`+44 (0)7400 900123`) is dropped; a valid number outside the allowed
    /// regions or number types, or in a blocked range, is 403 `destination_not_allowed`.
    #[schema(
        example = "+447400900123",
        max_length = 32,
        pattern = r"^\s*\+[0-9 .()-]*\s*$"
    )]
    pub phone: String,
    /// The app (configured name); the default app when absent.
    #[schema(example = "demo")]
    pub app: Option<String>,
    /// A BCP 47 language tag choosing the template: letters and digits in parts of 1–8
    /// separated by `-` or `_`, at most 35 characters.
    #[schema(
        example = "en",
        max_length = 35,
        pattern = r"^[A-Za-z0-9]{1,8}([-_][A-Za-z0-9]{1,8})*$"
    )]
    pub locale: Option<String>,
    /// A solved proof-of-work challenge, when the issuer asked for one (428 `pow_required`).
    pub pow: Option<PowSolutionDoc>,
}

/// A solved proof-of-work challenge.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PowSolutionDoc {
    /// The challenge string from the 428 answer.
    pub challenge: String,
    /// A nonce such that SHA-256(challenge ‖ "." ‖ nonce) has the required leading zero bits.
    #[schema(schema_with = nonce_schema)]
    pub nonce: u64,
}

/// The nonce: any unsigned 64-bit integer (utoipa would say `int64`, whose maximum is half
/// of what the issuer accepts).
fn nonce_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::Integer)
        .minimum(Some(0))
        // u64::MAX on the 64-bit targets the issuer runs on.
        .maximum(Some(usize::MAX))
        .description(Some(
            "A nonce such that SHA-256(challenge ‖ \".\" ‖ nonce) has the required leading zero bits: 0 to 2^64 - 1.",
        ))
        .build()
}

/// `POST /v1/verifications/{id}/check`.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckRequestDoc {
    /// The code the person typed or WebOTP delivered (spaces and dashes are ignored, letters
    /// compared upper-cased). Longer than 64 bytes: 400 `invalid_code`.
    #[schema(example = "123456", max_length = 64)]
    pub code: String,
}

/// `POST /v1/verifications/{id}/resend` (optional body).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
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
    /// The gateway (phone) that carries it: shown only to callers with an API key.
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

/// The `{id}` path parameter of a message.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct MessageIdParam {
    /// The message id (`m_` + 22 base64url characters). Any other string answers 404.
    #[param(
        pattern = r"^m_[A-Za-z0-9_-]{22}$",
        example = "m_3q2-7wAAAAAAAAAAAAAAAA"
    )]
    pub id: String,
}

/// `POST /v1/messages` (needs `Authorization: Bearer KEY`, a key of `[policy] api_keys`).
/// Unknown fields are refused (400 `invalid_request`).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageRequestDoc {
    /// The destination, E.164 (as `phone` of a start).
    #[schema(example = "+447400900123", max_length = 32)]
    pub to: String,
    /// The code the caller made: 4 to 10 ASCII letters or digits (spaces and dashes
    /// ignored). It is composed into the app's template (WebOTP line, app hash); no text of
    /// the caller's reaches the phone.
    #[schema(example = "123456", max_length = 64)]
    pub code: String,
    /// The app (configured name); the default app when absent.
    #[schema(example = "shop")]
    pub app: Option<String>,
    /// The template locale (as for a start).
    #[schema(
        example = "en",
        max_length = 35,
        pattern = r"^[A-Za-z0-9]{1,8}([-_][A-Za-z0-9]{1,8})*$"
    )]
    pub locale: Option<String>,
}

/// A message.
#[derive(Serialize, ToSchema)]
pub struct MessageDoc {
    /// The id (`m_` + 22 base64url characters).
    #[schema(example = "m_3q2-7wAAAAAAAAAAAAAAAA")]
    pub id: String,
    /// Delivery, kept current (`gateway` included: the caller has an API key).
    pub delivery: DeliveryDoc,
    /// When sending and retrying stop, RFC 3339 (the policy's code lifetime).
    pub expires_at: String,
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

/// Supabase Auth's Send SMS hook payload: the parts otpgate reads. Every other field (the
/// rest of Supabase's user object, `sms.sms_type`, ...) is ignored.
#[derive(Serialize, ToSchema)]
pub struct SupabaseSendSmsDoc {
    /// The user (Supabase's user object).
    pub user: SupabaseUserDoc,
    /// The SMS to send.
    pub sms: SupabaseSmsDoc,
}

/// The user of a Supabase hook call.
#[derive(Serialize, ToSchema)]
pub struct SupabaseUserDoc {
    /// The number as Supabase stores it: E.164 digits with or without the leading `+`. Absent,
    /// null or empty: 400.
    #[schema(example = "14155550100")]
    pub phone: Option<String>,
}

/// The SMS of a Supabase hook call.
#[derive(Serialize, ToSchema)]
pub struct SupabaseSmsDoc {
    /// The code Supabase made (4 to 10 letters or digits; another is 400).
    #[schema(example = "561166")]
    pub otp: String,
}

/// Supabase's hook success answer: an empty object.
#[derive(Serialize, ToSchema)]
pub struct SupabaseOkDoc {}

/// Supabase's hook error shape.
#[derive(Serialize, ToSchema)]
pub struct SupabaseErrorDoc {
    /// The error.
    pub error: SupabaseErrorDetailDoc,
}

/// The error of a Supabase hook answer.
#[derive(Serialize, ToSchema)]
pub struct SupabaseErrorDetailDoc {
    /// The HTTP status, repeated.
    #[schema(example = 403)]
    pub http_code: u16,
    /// What went wrong (no secret, code or number in it).
    pub message: String,
}

/// Twilio's error object, as the Twilio SDKs read it (`TwilioRestException.code`).
#[derive(Serialize, ToSchema)]
pub struct TwilioErrorDoc {
    /// Twilio's error code: 20003 (authentication), 20404 (not found), 20429 (too many
    /// requests), 20500, 20503, 60200 (invalid parameter), 60202 (max check attempts), 60203
    /// (max send attempts), 60223 (channel disabled), 60410 (delivery blocked).
    #[schema(example = 60200)]
    pub code: u32,
    /// What went wrong.
    pub message: String,
    /// `https://www.twilio.com/docs/errors/{code}`.
    pub more_info: String,
    /// The HTTP status, repeated.
    #[schema(example = 400)]
    pub status: u16,
}

/// A Twilio Verify verification (or verification check) as Twilio writes it.
#[derive(Serialize, ToSchema)]
pub struct TwilioVerificationDoc {
    /// `VE` + 32 hex digits: the otpgate verification id written the Twilio way.
    #[schema(example = "VEdeadbeefdeadbeefdeadbeefdeadbeef")]
    pub sid: String,
    /// The service SID.
    pub service_sid: String,
    /// The account SID.
    pub account_sid: String,
    /// The number, E.164.
    pub to: String,
    /// `sms`.
    pub channel: String,
    /// The status.
    pub status: TwilioStatusDoc,
    /// Whether the verification is approved.
    pub valid: bool,
    /// `{"carrier": null}`.
    #[schema(value_type = Object)]
    pub lookup: serde_json::Value,
    /// Always null (no PSD2 fields).
    pub amount: Option<String>,
    /// Always null.
    pub payee: Option<String>,
    /// One entry per SMS sent: `attempt_sid`, `channel`, `time`.
    #[schema(value_type = Vec<Object>)]
    pub send_code_attempts: Vec<serde_json::Value>,
    /// `YYYY-MM-DDTHH:MM:SSZ` (the form the Twilio SDKs parse).
    #[schema(
        example = "2025-11-25T20:19:58Z",
        pattern = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$"
    )]
    pub date_created: String,
    /// `YYYY-MM-DDTHH:MM:SSZ`.
    #[schema(pattern = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")]
    pub date_updated: String,
    /// Always null.
    #[schema(value_type = Option<Object>)]
    pub sna: Option<serde_json::Value>,
    /// The verification's URL on this issuer.
    pub url: String,
}

/// The statuses of a Twilio Verify verification.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TwilioStatusDoc {
    /// Waiting for the right code.
    Pending,
    /// Approved.
    Approved,
    /// Canceled (Twilio's spelling).
    Canceled,
    /// Expired.
    Expired,
    /// Every attempt was used.
    MaxAttemptsReached,
}

/// `POST /v2/Services/{ServiceSid}/Verifications` (form-encoded; a name given twice is 400).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct TwilioCreateFormDoc {
    /// The number, E.164.
    #[schema(example = "+14155550100")]
    pub to: String,
    /// `sms`; another Twilio channel is 400 60223, anything else 400 60200.
    #[schema(example = "sms")]
    pub channel: String,
    /// A BCP 47 language tag choosing the app's template.
    #[schema(example = "en")]
    pub locale: Option<String>,
}

/// `POST /v2/Services/{ServiceSid}/VerificationCheck` (form-encoded): `Code`, and `To` or
/// `VerificationSid`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct TwilioCheckFormDoc {
    /// The code the person typed.
    #[schema(example = "123456")]
    pub code: String,
    /// The number whose pending verification is checked.
    pub to: Option<String>,
    /// The verification SID (`VE…`).
    pub verification_sid: Option<String>,
}

/// `POST /v2/Services/{ServiceSid}/Verifications/{Sid}` (form-encoded).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "PascalCase")]
pub struct TwilioUpdateFormDoc {
    /// `canceled` (Twilio's manual `approved` is refused with 60200).
    pub status: TwilioUpdateStatusDoc,
}

/// The one status a verification can be set to.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TwilioUpdateStatusDoc {
    /// Cancel it.
    Canceled,
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
        (status = 204, description = "Accepted (or a duplicate, acknowledged)"),
        (status = 400, description = "Signed, but not a webhook envelope", body = ErrorDoc),
        (status = 401, description = "Bad, stale or missing signature, or no signing key configured", body = ErrorDoc),
        (status = 413, description = "Body over 256 KiB", body = ErrorDoc),
        (status = 503, description = "Store unavailable (de-duplication)", body = ErrorDoc),
    ))]
fn smsgate_webhook_doc() {}

/// Delivery events from TextBee (served by the gateway pool).
#[utoipa::path(post, path = "/v1/gateways/textbee/webhook", tag = "gateways",
    params(("X-Signature" = Option<String>, Header, description = "hex HMAC-SHA256 of the raw body")),
    request_body(content = String, content_type = "application/json", description = "TextBee event"),
    responses(
        (status = 204, description = "Accepted (or a duplicate, acknowledged)"),
        (status = 400, description = "Signed, but not JSON", body = ErrorDoc),
        (status = 401, description = "Bad or missing signature", body = ErrorDoc),
        (status = 413, description = "Body over 256 KiB", body = ErrorDoc),
        (status = 503, description = "Store unavailable (de-duplication)", body = ErrorDoc),
    ))]
fn textbee_webhook_doc() {}

/// Delivery events from a generic signed-webhook provider (served by the gateway pool).
#[utoipa::path(post, path = "/v1/gateways/webhook/events", tag = "gateways",
    params(
        ("X-Otpgate-Signature" = Option<String>, Header, description = "hex HMAC-SHA256 over the timestamp and the raw body"),
        ("X-Otpgate-Timestamp" = Option<String>, Header, description = "Unix seconds; refused outside the window"),
    ),
    request_body(content = String, content_type = "application/json",
        description = "`{\"id\", \"message_id\", \"state\": \"sent\"|\"delivered\"|\"failed\", \"reason\"?}`"),
    responses(
        (status = 204, description = "Accepted (or a duplicate, acknowledged)"),
        (status = 400, description = "Signed, but not the expected JSON", body = ErrorDoc),
        (status = 401, description = "Bad, stale or missing signature", body = ErrorDoc),
        (status = 413, description = "Body over 256 KiB", body = ErrorDoc),
        (status = 503, description = "Store unavailable (de-duplication)", body = ErrorDoc),
    ))]
fn generic_events_doc() {}

/// The multiOTP SMSGatewayApp polling endpoint: the phone checks its settings here.
#[utoipa::path(get, path = "/v1/gateways/multiotp/{device}", tag = "gateways",
    params(("device" = String, Path, description = "The configured device name")),
    responses(
        (status = 200, description = "The gateway is there (`{\"medic-gateway\": true}`)"),
        (status = 401, description = "Bad credentials (HTTP Basic)", body = ErrorDoc),
        (status = 404, description = "No multiOTP device of that name", body = ErrorDoc),
    ))]
fn multiotp_poll_doc() {}

/// The multiOTP SMSGatewayApp polling endpoint: the phone reports states and fetches the
/// messages to send.
#[utoipa::path(post, path = "/v1/gateways/multiotp/{device}", tag = "gateways",
    params(("device" = String, Path, description = "The configured device name")),
    request_body(content = String, content_type = "application/json",
        description = "medic-gateway poll: `{\"updates\"?: [...], ...}` (an empty body is `{}`)"),
    responses(
        (status = 200, description = "Messages to send (`{\"messages\": [...]}`)"),
        (status = 400, description = "Not a JSON object", body = ErrorDoc),
        (status = 401, description = "Bad credentials (HTTP Basic)", body = ErrorDoc),
        (status = 404, description = "No multiOTP device of that name", body = ErrorDoc),
        (status = 413, description = "Body over 256 KiB", body = ErrorDoc),
    ))]
fn multiotp_post_doc() {}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(title = "otpgate issuer", description = "SMS one-time passwords sent from your own Android phones.\n\n\
        Every 4xx and 5xx answer has one shape, `{\"error\": {\"code\", \"message\", \"request_id\", ...}}`, \
        except on the integration routes (tag `integrations`), which answer in their peer's shape. \
        Besides the answers listed per operation, any request may get 408 `timeout` when it takes longer \
        than `server.request_timeout_secs`, and a request the HTTP parser cannot read (headers over \
        ~400 KiB, bytes that are not a valid request target) gets a bare 400 or 431 before reaching the API."),
    paths(
        super::start,
        super::status,
        super::check,
        super::resend,
        super::cancel,
        super::messages::send,
        super::messages::status,
        super::jwks,
        super::healthz,
        super::readyz,
        super::metrics_text,
        super::openapi_json,
        crate::integrations::supabase::send_sms,
        crate::integrations::twilio::create,
        crate::integrations::twilio::check,
        crate::integrations::twilio::fetch,
        crate::integrations::twilio::update,
        smsgate_webhook_doc,
        textbee_webhook_doc,
        generic_events_doc,
        multiotp_poll_doc,
        multiotp_post_doc,
    ),
    components(schemas(
        StartRequestDoc, PowSolutionDoc, CheckRequestDoc, ResendRequestDoc, StatusDoc, DeliveryStateDoc,
        DeliveryDoc, VerificationDoc, CheckResponseDoc, ErrorDetailDoc, ErrorDoc, JwkDoc, JwksDoc,
        MessageRequestDoc, MessageDoc, SupabaseSendSmsDoc, SupabaseUserDoc, SupabaseSmsDoc,
        SupabaseOkDoc, SupabaseErrorDoc, SupabaseErrorDetailDoc, TwilioErrorDoc,
        TwilioVerificationDoc, TwilioStatusDoc, TwilioCreateFormDoc, TwilioCheckFormDoc,
        TwilioUpdateFormDoc, TwilioUpdateStatusDoc
    )),
    modifiers(&SecuritySchemes),
    tags(
        (name = "verifications", description = "Start, check, resend and cancel verifications"),
        (name = "messages", description = "Delivery of codes other systems make (Ory Kratos' HTTP courier, Keycloak, custom backends): API key only"),
        (name = "receipts", description = "Keys to verify receipts offline"),
        (name = "operations", description = "Health, readiness, metrics"),
        (name = "integrations", description = "Supabase Auth's Send SMS hook (Standard Webhooks) and the Twilio Verify-compatible API (HTTP Basic). These routes answer in their peer's error shape (Supabase's `{\"error\": {\"http_code\", \"message\"}}`, Twilio's `{\"code\", \"message\", \"more_info\", \"status\"}`), the one exception to the single error shape; while `[integrations.*]` does not configure one, its routes answer 404 in that shape"),
        (name = "gateways", description = "Delivery events from the gateways (routes of the gateway pool)"),
    )
)]
pub struct ApiDoc;

/// The security schemes: the API key of `[policy] api_keys` (`Authorization: Bearer`) and
/// the Twilio account's HTTP Basic credentials.
struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key of `[policy] api_keys`"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "twilio_basic",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "`[integrations.twilio_verify] account_sid` and the auth token its `auth_token_env` names",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document, with the webhook route the gateway pool adds.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
