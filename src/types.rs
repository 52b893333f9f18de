//! The values that cross the JS boundary, as Rust types: option bags (deserialized with
//! serde-wasm-bindgen), results and errors (serialized with it; the issuer's answers are
//! deserialized with it to check them and handed on as the issuer's object), and their
//! TypeScript declarations, generated from the same types by `tsify` into the package's `.d.ts`.
//!
//! Data objects keep the JSON shapes of the CLI and the HTTP API (snake_case); option bags
//! are camelCase. A few JS-only types (`AbortSignalLike`, `FetchLike`, the `OtpError`
//! interface) are declared by hand at the end: they describe JS objects, not Rust values.
//! The `ErrorCode` union is written at compile time by the core from its list of codes.

use serde::{Deserialize, Serialize};
use tsify::Tsify;
use wasm_bindgen::prelude::*;

// ---------------------------------------------------------------- results of the SMS exports

/// An origin-bound one-time code line (`@host #code [@iframe_host]`).
#[derive(Debug, Serialize, Tsify)]
#[tsify(missing_as_null)]
pub struct WebOtpLine<'a> {
    /// The host the code is bound to.
    pub host: &'a str,
    /// The code.
    pub code: &'a str,
    /// The host of the cross-site iframe where the code is entered.
    pub iframe_host: Option<&'a str>,
}

/// What `parseSms` returns: the same object `otpgate sms parse` prints.
#[derive(Debug, Serialize, Tsify)]
#[tsify(missing_as_null)]
pub struct ParsedSms<'a> {
    /// The code: the origin-bound one, else the SMS User Consent candidate.
    pub code: Option<&'a str>,
    /// The origin-bound line.
    #[serde(borrow)]
    pub webotp: Option<WebOtpLine<'a>>,
    /// A trailing 11-character SMS Retriever app hash.
    pub app_hash: Option<&'a str>,
}

/// What `smsSegments` returns: the same object `otpgate sms segments` prints.
#[derive(Debug, Serialize, Tsify)]
pub struct SmsSegments {
    /// The encoding the text needs.
    #[tsify(type = "\"GSM-7\" | \"UCS-2\"")]
    pub encoding: &'static str,
    /// Number of SMS parts.
    pub segments: u32,
    /// Septets (GSM-7, extension characters count 2) or UTF-16 code units (UCS-2).
    pub units: u32,
}

/// Where the app hash goes in a composed SMS.
#[derive(Clone, Copy, Debug, Default, Deserialize, Tsify)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// On the origin-bound line (the default).
    #[default]
    Combined,
    /// On a line of its own.
    HashLine,
}

/// Options of `composeSms` (as `otpgate sms compose`).
#[derive(Debug, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct ComposeSmsOptions {
    /// The app name shown to the user.
    pub app: String,
    /// The one-time code: 4 to 10 ASCII letters or digits.
    pub code: String,
    /// The host the code is bound to for WebOTP / Safari AutoFill, e.g. `shop.example.com`.
    #[tsify(optional)]
    pub origin: Option<String>,
    /// The host of a cross-site iframe where the code is entered.
    #[tsify(optional)]
    pub iframe_origin: Option<String>,
    /// The 11-character SMS Retriever app hash.
    #[tsify(optional)]
    pub app_hash: Option<String>,
    /// The recipient's locale (BCP 47); built-in texts: en es fr de pt it nl.
    #[tsify(optional)]
    pub locale: Option<String>,
    /// A template for the human text with `{app}`, `{code}`, `{origin}`, `{app_hash}`.
    #[tsify(optional)]
    pub template: Option<String>,
    /// Where the app hash goes (default `"combined"`).
    #[tsify(optional)]
    pub layout: Option<Layout>,
}

/// What `composeSms` returns: the same object `otpgate sms compose --json` prints.
#[derive(Debug, Serialize, Tsify)]
pub struct ComposedSms<'a> {
    /// The SMS text (no trailing newline).
    pub text: &'a str,
    /// The locale whose template was used.
    pub locale: &'a str,
    /// The encoding the text needs.
    #[tsify(type = "\"GSM-7\" | \"UCS-2\"")]
    pub encoding: &'static str,
    /// Number of SMS parts (always 1).
    pub segments: u32,
    /// Septets or UTF-16 code units.
    pub units: u32,
    /// Bytes on the air.
    pub bytes: u32,
    /// Whether the template's own wording needs UCS-2.
    pub ucs2_forced_by_template: bool,
}

// ---------------------------------------------------------------- receipts and webhooks

/// One public key of the issuer's JWKS. Keys that are not complete Ed25519 JWKs are
/// skipped: they cannot have signed a receipt.
#[derive(Debug, Deserialize, Tsify)]
pub struct Jwk {
    /// `"OKP"` for Ed25519.
    #[tsify(optional, type = "\"OKP\" | string")]
    pub kty: Option<String>,
    /// `"Ed25519"`.
    #[tsify(optional, type = "\"Ed25519\" | string")]
    pub crv: Option<String>,
    /// The public key, base64url.
    #[tsify(optional)]
    pub x: Option<String>,
    /// The key id receipts name in their header.
    #[tsify(optional)]
    pub kid: Option<String>,
    /// `"EdDSA"`.
    #[tsify(optional)]
    pub alg: Option<String>,
    /// `"sig"`.
    #[serde(rename = "use")]
    #[tsify(optional)]
    pub use_: Option<String>,
}

/// The issuer's `/.well-known/jwks.json`.
#[derive(Debug, Deserialize, Tsify)]
pub struct Jwks {
    /// The keys (not complete Ed25519 keys are skipped).
    pub keys: Vec<Jwk>,
}

/// Options of `verifyReceipt`.
#[derive(Debug, Deserialize, Tsify)]
pub struct VerifyReceiptOptions {
    /// The expected `aud` (the app).
    pub audience: String,
    /// The expected `iss` (the issuer's public URL).
    pub issuer: String,
    /// Now, in Unix seconds; defaults to `Date.now() / 1000`.
    #[tsify(optional)]
    pub now: Option<u64>,
    /// Tolerated clock skew in seconds (default 0, at most 86400).
    #[tsify(optional)]
    pub leeway: Option<u32>,
}

/// The claims of a verified receipt.
#[derive(Debug, Serialize, Tsify)]
pub struct ReceiptClaims<'a> {
    /// The issuer.
    pub iss: &'a str,
    /// The audience (the app).
    pub aud: &'a str,
    /// The verification id.
    pub sub: &'a str,
    /// The verification id (single use).
    pub jti: &'a str,
    /// The verified number, E.164.
    pub phone_number: &'a str,
    /// Always `true`.
    #[tsify(type = "true")]
    pub phone_number_verified: bool,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Expires at (Unix seconds).
    pub exp: i64,
}

/// Options of `verifyWebhookSignature`.
#[derive(Debug, Default, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct VerifyWebhookOptions {
    /// Now, in Unix seconds; defaults to `Date.now() / 1000`.
    #[tsify(optional)]
    pub now: Option<u64>,
    /// Accepted clock difference in seconds (default 300, at most 86400).
    #[tsify(optional)]
    pub window_secs: Option<u32>,
}

// ---------------------------------------------------------------- OtpClient

/// Options of `receiveCode`.
#[derive(Debug, Default, Deserialize, Tsify)]
pub struct ReceiveCodeOptions {
    /// Aborts the wait.
    #[serde(default, with = "serde_wasm_bindgen::preserve")]
    #[tsify(optional, type = "AbortSignalLike")]
    pub signal: JsValue,
}

/// Options of `new OtpClient`.
#[derive(Debug, Default, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct OtpClientOptions {
    /// Sent as `Authorization: Bearer <apiKey>`. Server-side only: never ship it to a browser.
    #[tsify(optional)]
    pub api_key: Option<String>,
    /// The default app of `start`.
    #[tsify(optional)]
    pub app: Option<String>,
    /// Defaults to the global `fetch` (through gloo-net). Called with one `Request`.
    #[serde(default, with = "serde_wasm_bindgen::preserve")]
    #[tsify(optional, type = "FetchLike")]
    pub fetch: JsValue,
}

/// Options of `OtpClient.start`.
#[derive(Debug, Default, Deserialize, Tsify)]
pub struct StartOptions {
    /// The app (default: the client's).
    #[tsify(optional)]
    pub app: Option<String>,
    /// A BCP 47 tag choosing the SMS template (`en`, `pt-BR`...).
    #[tsify(optional)]
    pub locale: Option<String>,
}

/// Options of `OtpClient.waitForDelivery`.
#[derive(Debug, Default, Deserialize, Tsify)]
#[serde(rename_all = "camelCase")]
pub struct WaitForDeliveryOptions {
    /// Aborts the wait.
    #[serde(default, with = "serde_wasm_bindgen::preserve")]
    #[tsify(optional, type = "AbortSignalLike")]
    pub signal: JsValue,
    /// Pause between polls, in ms (default 1000, at least 250).
    #[tsify(optional)]
    pub interval_ms: Option<u32>,
}

/// The request body of `POST /v1/verifications` (the wire module's `StartRequest`).
#[derive(Debug, Serialize)]
pub(crate) struct StartBody<'a> {
    pub(crate) phone: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) app: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) locale: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) pow: Option<PowBody>,
}

/// A solved proof of work.
#[derive(Debug, Serialize)]
pub(crate) struct PowBody {
    pub(crate) challenge: String,
    pub(crate) nonce: f64,
}

/// The request body of `POST /v1/verifications/{id}/check`.
#[derive(Debug, Serialize)]
pub(crate) struct CheckBody<'a> {
    pub(crate) code: &'a str,
}

/// The state of a verification.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Deserialize, Tsify)]
#[serde(rename_all = "snake_case")]
pub enum VerificationStatus {
    /// Waiting for the code.
    Pending,
    /// The code was checked.
    Approved,
    /// Cancelled.
    Cancelled,
    /// Past its lifetime.
    Expired,
    /// Too many wrong codes.
    MaxAttemptsReached,
}

/// The delivery state of a verification's SMS.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Deserialize, Tsify)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for a gateway.
    Queued,
    /// Handed to a gateway.
    Submitted,
    /// Sent by the phone.
    Sent,
    /// Delivered to the handset.
    Delivered,
    /// Failed on every gateway.
    Failed,
    /// Not sent (e.g. a test number).
    Skipped,
}

impl DeliveryState {
    /// Whether nothing more will happen to the SMS (the core's `DeliveryState::is_terminal`).
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Delivered | Self::Failed | Self::Skipped)
    }
}

/// Where a verification's SMS is.
#[derive(Debug, Deserialize, Tsify)]
pub struct Delivery {
    /// The state.
    pub state: DeliveryState,
    /// The gateway that took it.
    #[serde(default)]
    #[tsify(optional)]
    pub gateway: Option<String>,
    /// RFC 3339: when the state last changed.
    #[serde(default)]
    #[tsify(optional)]
    pub updated_at: Option<String>,
}

/// A verification as the issuer shows it.
#[derive(Debug, Deserialize, Tsify)]
pub struct Verification {
    /// The verification id.
    pub id: String,
    /// Its state.
    pub status: VerificationStatus,
    /// RFC 3339.
    pub expires_at: String,
    /// RFC 3339: the earliest resend.
    pub resend_at: String,
    /// Wrong codes still allowed.
    pub attempts_left: u32,
    /// Its SMS.
    pub delivery: Delivery,
}

/// What a successful `OtpClient.check` resolves with.
#[derive(Debug, Deserialize, Tsify)]
pub struct CheckResult {
    /// `"approved"`.
    #[tsify(type = "\"approved\"")]
    pub status: VerificationStatus,
    /// The receipt: a compact EdDSA JWT; verify it with `verifyReceipt`.
    pub receipt: String,
}

/// The `error` member of the issuer's error body `{"error": {...}}` (every field optional: a
/// proxy or an old issuer may send less).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct IssuerError {
    #[serde(default)]
    pub(crate) code: Option<String>,
    #[serde(default)]
    pub(crate) message: Option<String>,
    #[serde(default)]
    pub(crate) attempts_left: Option<u32>,
    #[serde(default)]
    pub(crate) retry_after: Option<u64>,
    #[serde(default)]
    pub(crate) challenge: Option<String>,
    #[serde(default)]
    pub(crate) request_id: Option<String>,
}

/// The extra properties of an `OtpError` (set on the JS `Error`).
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ErrorFields<'a> {
    pub(crate) code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) retry_after: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) attempts_left: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) request_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) challenge: Option<&'a str>,
}

// ---------------------------------------------------------------- JS-only declarations

#[wasm_bindgen(typescript_custom_section)]
const JS_TYPES: &'static str = r#"
/** The part of `AbortSignal` this package uses (pass a real `AbortSignal` to `fetch`). */
export interface AbortSignalLike {
  readonly aborted: boolean;
  addEventListener(type: "abort", listener: () => void): void;
  removeEventListener(type: "abort", listener: () => void): void;
}

/** A `fetch`-compatible function: called with one `Request`, resolves with a `Response`. */
export type FetchLike = (request: Request) => Promise<Response>;

/**
 * Every error thrown or rejected by this package: a JS `Error` with `name === "OtpError"`
 * and a stable snake_case `code` (the issuer API's codes for HTTP errors).
 */
export interface OtpError extends Error {
  name: "OtpError";
  /** An `ErrorCode`, a module's own code (`bad_template`, ...) or a newer issuer's code. */
  code: ErrorCode | (string & {});
  /** HTTP status, for errors answered by the issuer. */
  status?: number;
  /** Seconds to wait before retrying (`Retry-After`). */
  retryAfter?: number;
  /** Wrong codes still allowed (after `wrong_code`). */
  attemptsLeft?: number;
  /** The issuer's request id, also in its audit log. */
  requestId?: string;
  /** The proof-of-work challenge of a `pow_required` error. */
  challenge?: string;
}
"#;

/// The `ErrorCode` union, written by the core from its list of codes.
#[wasm_bindgen(typescript_custom_section)]
const ERROR_CODE_TYPES: &'static str = otpgate_core::wire::ErrorCode::TYPESCRIPT;

#[cfg(test)]
mod tests {
    /// The client's status and delivery enums accept every state of the core's wire types.
    #[test]
    fn client_enums_cover_the_wire_enums() {
        use otpgate_core::wire;
        let statuses = [
            wire::Status::Pending,
            wire::Status::Approved,
            wire::Status::Cancelled,
            wire::Status::Expired,
            wire::Status::MaxAttemptsReached,
        ];
        for s in statuses {
            let json = serde_json::to_string(&s).expect("serializes");
            let _: super::VerificationStatus = serde_json::from_str(&json).expect(&json);
        }
        let states = [
            wire::DeliveryState::Queued,
            wire::DeliveryState::Submitted,
            wire::DeliveryState::Sent,
            wire::DeliveryState::Delivered,
            wire::DeliveryState::Failed,
            wire::DeliveryState::Skipped,
        ];
        for d in states {
            let json = serde_json::to_string(&d).expect("serializes");
            let mine: super::DeliveryState = serde_json::from_str(&json).expect(&json);
            assert_eq!(mine.is_terminal(), d.is_terminal(), "{json}");
        }
    }
}
