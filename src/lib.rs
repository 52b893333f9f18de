//! The otpgate client module, compiled to WebAssembly and published as the npm package
//! `otpgate`: thin `wasm-bindgen` exports over [`otpgate_core`], a `fetch` client for the
//! issuer's HTTP API and the WebOTP glue.
//!
//! Every rule (SMS grammar, app hashes, segments, receipts, webhook signatures, proof of work)
//! lives in `otpgate-core`; each export here converts its JS arguments, calls the core and
//! converts the answer back. Data objects keep the JSON shapes of the CLI and the HTTP API
//! (`parseSms` returns exactly what `otpgate sms parse` prints); option bags are camelCase.
//!
//! # Layout
//! - this file: the synchronous exports (SMS, app hash, receipts, webhooks, proof of work);
//! - `client`: `OtpClient`, the issuer API over the runtime's global `fetch` (gloo-net);
//! - `webotp`: `receiveCode`, `navigator.credentials.get({otp})` bound by hand;
//! - `error`: `OtpError`, a JS `Error` with a stable `code`;
//! - `convert`: JS ↔ Rust conversions (serde-wasm-bindgen) that fail with `invalid_argument`;
//! - `types`: the option bags, results and error fields as Rust types, with the TypeScript
//!   declarations generated from them (tsify).
//!
//! # Security
//! Nothing here holds a secret of the issuer. Receipt and webhook checks are the core's
//! (Ed25519 checked strictly with ed25519-compact, constant-time HMAC comparison); the clock
//! is the JS clock (`Date.now()`), never `SystemTime`, which panics on wasm32.
#![forbid(unsafe_code)]

mod client;
mod convert;
mod error;
pub mod types;
mod webotp;

use otpgate_core::wire::ErrorCode;
use otpgate_core::{phone, pow, receipt, sms, webhook};
use wasm_bindgen::prelude::*;

use crate::convert::{at_most, bytes, from_js, now_secs, opt_text, present, text, to_js};
use crate::error::{from_core, invalid, otp_error};
use crate::types::{
    ComposeSmsOptions, ComposedSms, Layout, ParsedSms, ReceiptClaims, SmsSegments,
    VerifyReceiptOptions, VerifyWebhookOptions, WebOtpLine,
};

pub use crate::client::OtpClient;
pub use crate::webotp::receive_code;

/// A small free-list allocator instead of std's dlmalloc: about 6 KB less wasm. The module
/// makes few, short-lived allocations (strings of one SMS, one HTTP answer), where a free
/// list is as fast; the lock is uncontended (wasm32 without threads).
#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: lol_alloc::LockedAllocator<lol_alloc::FreeListAllocator> =
    lol_alloc::LockedAllocator::new(lol_alloc::FreeListAllocator::new());

/// Largest accepted `leeway` / `windowSecs`: a day.
const MAX_SKEW_SECS: u32 = 86_400;

/// Parses a received OTP SMS: `{code, webotp: {host, code, iframe_host} | null, app_hash}`,
/// exactly what `otpgate sms parse` prints for the same text.
///
/// # Errors
/// `invalid_argument` when `text` is not a string.
#[wasm_bindgen(js_name = parseSms, unchecked_return_type = "ParsedSms")]
pub fn parse_sms(
    #[wasm_bindgen(unchecked_param_type = "string")] text: JsValue,
) -> Result<JsValue, JsValue> {
    let message = convert::text(text, "text")?;
    let p = sms::parse::parse_ref(&message);
    to_js(&ParsedSms {
        code: p.code,
        webotp: p.webotp.map(|w| WebOtpLine {
            host: w.host,
            code: w.code,
            iframe_host: w.iframe_host,
        }),
        app_hash: p.app_hash,
    })
}

/// The light normalisation of a typed phone number to E.164 (the core's rule): separators
/// dropped, a leading `+` or `00` is international, anything else is national to the home
/// country `dial` (its calling code, digits) with its `trunk` prefix dropped. Whether the
/// number is valid for its region and may be sent to is the issuer's judgement.
///
/// # Errors
/// `invalid_phone` (with a sentence for people) or `unknown_country_code`;
/// `invalid_argument` when an argument is not a string.
#[wasm_bindgen(js_name = toE164)]
pub fn to_e164(
    #[wasm_bindgen(unchecked_param_type = "string")] typed: JsValue,
    #[wasm_bindgen(unchecked_param_type = "string")] dial: JsValue,
    #[wasm_bindgen(unchecked_param_type = "string | undefined")] trunk: Option<JsValue>,
) -> Result<String, JsValue> {
    let trunk = trunk.and_then(|t| t.as_string());
    let home = phone::HomeCountry::new(&text(dial, "dial")?, trunk.as_deref())
        .map_err(|e| invalid(&format!("home country: {e}")))?;
    phone::normalize(&text(typed, "typed")?, &home)
        .map(|p| p.as_str().to_owned())
        .map_err(|e| from_core(e.code(), &e))
}

/// Every stable error code of the issuer API and of this package (the `ErrorCode` type).
#[wasm_bindgen(js_name = errorCodes, unchecked_return_type = "ErrorCode[]")]
pub fn error_codes() -> Result<JsValue, JsValue> {
    let codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    to_js(&codes)
}

/// Composes the OTP SMS the issuer would send: `{text, locale, encoding, segments, units,
/// bytes, ucs2_forced_by_template}`, as `otpgate sms compose --json`.
///
/// # Errors
/// `invalid_argument` for options of the wrong type; the core's code (`bad_code`,
/// `bad_origin`, `too_long`...) when the message cannot be composed.
#[wasm_bindgen(js_name = composeSms, unchecked_return_type = "ComposedSms")]
pub fn compose_sms(
    #[wasm_bindgen(unchecked_param_type = "ComposeSmsOptions")] options: JsValue,
) -> Result<JsValue, JsValue> {
    let o: ComposeSmsOptions = from_js(options, "composeSms options")?;
    let template = o
        .template
        .map(sms::Template::new)
        .transpose()
        .map_err(|e| from_core(e.code(), &e))?;
    let layout = match o.layout.unwrap_or_default() {
        Layout::Combined => sms::compose::Layout::Combined,
        Layout::HashLine => sms::compose::Layout::HashLine,
    };
    let request = sms::compose::ComposeRequest {
        origin: o.origin.as_deref(),
        iframe_origin: o.iframe_origin.as_deref(),
        app_hash: o.app_hash.as_deref(),
        locale: o.locale.as_deref(),
        template: template.as_ref(),
        layout,
        ..sms::compose::ComposeRequest::new(&o.app, &o.code)
    };
    let c = sms::compose::compose(request).map_err(|e| from_core(e.code(), &e))?;
    to_js(&ComposedSms {
        text: &c.text,
        locale: &c.locale,
        encoding: c.segments.encoding.as_str(),
        segments: c.segments.segments,
        units: c.segments.units,
        bytes: u32::try_from(c.segments.bytes()).unwrap_or(u32::MAX),
        ucs2_forced_by_template: c.ucs2_forced_by_template,
    })
}

/// Counts the SMS segments of `text`: `{encoding, segments, units}` as `otpgate sms segments`.
///
/// # Errors
/// `invalid_argument` when `text` is not a string.
#[wasm_bindgen(js_name = smsSegments, unchecked_return_type = "SmsSegments")]
pub fn sms_segments(
    #[wasm_bindgen(unchecked_param_type = "string")] text: JsValue,
) -> Result<JsValue, JsValue> {
    let s = sms::segments(&convert::text(text, "text")?);
    to_js(&SmsSegments {
        encoding: s.encoding.as_str(),
        segments: s.segments,
        units: s.units,
    })
}

/// The 11-character SMS Retriever hash of an Android package signed with `certificate`
/// (DER bytes, or PEM text or bytes).
///
/// # Errors
/// `invalid_argument` for arguments of the wrong type; the core's code for a bad certificate
/// or package name.
#[wasm_bindgen(js_name = appHash)]
pub fn app_hash(
    #[wasm_bindgen(js_name = packageName, unchecked_param_type = "string")] package_name: JsValue,
    #[wasm_bindgen(unchecked_param_type = "Uint8Array | ArrayBuffer | string")]
    certificate: JsValue,
) -> Result<String, JsValue> {
    let package = text(package_name, "packageName")?;
    sms::app_hash(&package, &bytes(&certificate, "certificate")?)
        .map_err(|e| from_core(e.code(), &e))
}

/// Whether `message` carries the SMS Retriever app hash `expected` as a whitespace-separated
/// token (what Play services require; the core's rule).
///
/// # Errors
/// `invalid_argument` when an argument is not a string or `expected` is not 11 characters of
/// the standard base64 alphabet.
#[wasm_bindgen(js_name = verifyAppHash)]
pub fn verify_app_hash(
    #[wasm_bindgen(unchecked_param_type = "string")] message: JsValue,
    #[wasm_bindgen(unchecked_param_type = "string")] expected: JsValue,
) -> Result<bool, JsValue> {
    let expected = text(expected, "expected")?;
    if !sms::compose::is_valid_app_hash(&expected) {
        return Err(invalid("expected must be an 11-character app hash"));
    }
    Ok(sms::app_hash::verify_app_hash(
        &text(message, "message")?,
        &expected,
    ))
}

/// Verifies a receipt (EdDSA JWT) offline against the issuer's JWKS and returns its claims.
/// `now` (Unix seconds) defaults to `Date.now()`, `leeway` (seconds of clock skew) to 0.
///
/// # Errors
/// `invalid_argument` for a bad JWKS or options; `receipt_*` codes for a refused receipt.
#[wasm_bindgen(js_name = verifyReceipt, unchecked_return_type = "ReceiptClaims")]
pub fn verify_receipt(
    #[wasm_bindgen(unchecked_param_type = "string")] jwt: JsValue,
    #[wasm_bindgen(unchecked_param_type = "Jwks | string")] jwks: JsValue,
    #[wasm_bindgen(unchecked_param_type = "VerifyReceiptOptions")] options: JsValue,
) -> Result<JsValue, JsValue> {
    let jwks = convert::jwks(jwks)?;
    let o: VerifyReceiptOptions = from_js(options, "verifyReceipt options")?;
    let expect = receipt::Expectations {
        audience: &o.audience,
        issuer: &o.issuer,
        now: o.now.map_or_else(now_secs, |n| n as i64),
        leeway: at_most(o.leeway.unwrap_or(0), "leeway", MAX_SKEW_SECS)?.into(),
    };
    let c = receipt::verify_with(&text(jwt, "jwt")?, &jwks, &expect, &convert::JsJson)
        .map_err(|e| from_core(e.code(), &e))?;
    to_js(&ReceiptClaims {
        iss: &c.iss,
        aud: &c.aud,
        sub: &c.sub,
        jti: &c.jti,
        phone_number: &c.phone_number,
        phone_number_verified: c.phone_number_verified,
        iat: c.iat,
        exp: c.exp,
    })
}

/// Checks an sms-gate.app webhook: `signature` (`X-Signature`) over the exact raw body and
/// `timestamp` (`X-Timestamp`), within `windowSecs` (default 300) of `now` (default
/// `Date.now()`). Returns `true`; throws when the webhook must be refused.
///
/// # Errors
/// `missing_signature`, `bad_timestamp`, `stale_timestamp`, `bad_signature`, or
/// `invalid_argument`.
#[wasm_bindgen(js_name = verifyWebhookSignature)]
pub fn verify_webhook_signature(
    #[wasm_bindgen(unchecked_param_type = "string")] key: JsValue,
    #[wasm_bindgen(js_name = rawBody, unchecked_param_type = "Uint8Array | ArrayBuffer | string")]
    raw_body: JsValue,
    #[wasm_bindgen(unchecked_param_type = "string | number | null | undefined")] timestamp: JsValue,
    #[wasm_bindgen(unchecked_param_type = "string | null | undefined")] signature: JsValue,
    #[wasm_bindgen(unchecked_param_type = "VerifyWebhookOptions")] options: Option<JsValue>,
) -> Result<bool, JsValue> {
    let o: VerifyWebhookOptions = convert::options(options, "verifyWebhookSignature options")?;
    let window = match o.window_secs {
        Some(w) => at_most(w, "windowSecs", MAX_SKEW_SECS)?.into(),
        None => webhook::DEFAULT_WINDOW_SECS,
    };
    let (ts, sig) = (
        opt_text(&timestamp, "timestamp")?,
        opt_text(&signature, "signature")?,
    );
    webhook::verify_smsgate(
        &text(key, "key")?,
        &bytes(&raw_body, "rawBody")?,
        ts.as_deref(),
        sig.as_deref(),
        o.now.map_or_else(now_secs, |n| n as i64),
        window,
    )
    .map(|()| true)
    .map_err(|e| from_core(e.code(), &e))
}

/// Solves the issuer's proof-of-work challenge: the nonce to send back with the retried
/// request. Tries at most `maxTries` nonces (default 64 × 2^difficulty: failing by chance is
/// then below 1e-27).
///
/// # Errors
/// `pow_malformed` for a challenge that is not in the `v1.` format; `pow_unsolved` when no
/// nonce was found within `maxTries`.
#[wasm_bindgen(js_name = solvePow)]
pub fn solve_pow(
    #[wasm_bindgen(unchecked_param_type = "string")] challenge: JsValue,
    #[wasm_bindgen(js_name = maxTries, unchecked_param_type = "number")] max_tries: Option<JsValue>,
) -> Result<f64, JsValue> {
    let challenge = text(challenge, "challenge")?;
    let max = match max_tries.and_then(present) {
        None => None,
        Some(m) => match from_js::<u64>(m, "maxTries (a positive integer)")? {
            0 => return Err(invalid("maxTries must be at least 1")),
            n => Some(n),
        },
    };
    solve(&challenge, max)
}

/// [`solve_pow`] on Rust values, shared with the client's automatic retry.
pub(crate) fn solve(challenge: &str, max_tries: Option<u64>) -> Result<f64, JsValue> {
    let (difficulty, _) = pow::describe(challenge).map_err(|e| from_core(e.code(), &e))?;
    let max = max_tries.unwrap_or(64u64 << difficulty);
    match pow::solve(challenge, max).map_err(|e| from_core(e.code(), &e))? {
        Some(nonce) => Ok(nonce as f64),
        None => Err(otp_error(
            ErrorCode::PowUnsolved,
            "no proof-of-work nonce found within maxTries",
        )),
    }
}
