//! WebOTP: `navigator.credentials.get({otp: {transport: ["sms"]}, signal})`, bound by hand
//! (web-sys has no `OTPCredential`).
//!
//! WebOTP exists only in Chromium on Android (and desktop Chrome paired with an Android
//! phone); everywhere else the promise rejects with `webotp_unsupported` so that the page
//! falls back to a typed code (`autocomplete="one-time-code"`, which Safari autofills).

use js_sys::{Array, Object, Promise, Reflect};
use otpgate_core::wire::ErrorCode;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::convert::present;
use crate::error::otp_error;
use crate::types::ReceiveCodeOptions;

#[wasm_bindgen]
extern "C" {
    /// The `OTPCredential` the browser resolves with (`type: "otp"`).
    #[wasm_bindgen(extends = Object, js_name = OTPCredential)]
    type OtpCredential;

    /// The one-time code read from the SMS.
    #[wasm_bindgen(method, getter, structural)]
    fn code(this: &OtpCredential) -> JsValue;
}

/// Waits for an origin-bound SMS and resolves with its code (WebOTP). `signal` (an
/// `AbortSignal`) cancels the wait.
///
/// The promise rejects with an `OtpError` whose code is `webotp_unsupported` (no
/// `OTPCredential` in this runtime), `aborted` (the signal fired, or was already aborted),
/// `webotp_failed` (the browser refused, e.g. no user activation or not a secure context) or
/// `invalid_argument`.
#[wasm_bindgen(js_name = receiveCode, unchecked_return_type = "Promise<string>")]
pub fn receive_code(
    #[wasm_bindgen(unchecked_param_type = "ReceiveCodeOptions")] options: Option<JsValue>,
) -> Promise {
    crate::convert::promise(async move { receive(options).await.map(JsValue::from) })
}

async fn receive(options: Option<JsValue>) -> Result<String, JsValue> {
    let options: ReceiveCodeOptions = crate::convert::options(options, "receiveCode options")?;
    let signal = present(options.signal);
    if let Some(signal) = &signal {
        if Reflect::get(signal, &"aborted".into())?.is_truthy() {
            return Err(otp_error(
                ErrorCode::Aborted,
                "the wait for the SMS was aborted",
            ));
        }
    }
    let global = js_sys::global();
    let credentials = Reflect::get(&global, &"navigator".into()).and_then(|n| {
        if n.is_object() {
            Reflect::get(&n, &"credentials".into())
        } else {
            Ok(JsValue::UNDEFINED)
        }
    })?;
    if !Reflect::has(&global, &"OTPCredential".into())? || !credentials.is_object() {
        return Err(otp_error(
            ErrorCode::WebotpUnsupported,
            "WebOTP (OTPCredential) is not available in this browser",
        ));
    }
    let request = web_sys::CredentialRequestOptions::new();
    let otp = Object::new();
    // Fresh plain objects: defining a data property on them cannot fail.
    let _ = Reflect::set(&otp, &"transport".into(), &Array::of1(&"sms".into()));
    let _ = Reflect::set(&request, &"otp".into(), &otp);
    if let Some(signal) = signal {
        request.set_signal(signal.unchecked_ref());
    }
    let container: web_sys::CredentialsContainer = credentials.unchecked_into();
    let pending = container.get_with_options(&request).map_err(failure)?;
    let credential = JsFuture::from(pending).await.map_err(failure)?;
    if !credential.is_object() {
        return Err(otp_error(
            ErrorCode::WebotpFailed,
            "the browser returned no credential",
        ));
    }
    credential
        .unchecked_into::<OtpCredential>()
        .code()
        .as_string()
        .ok_or_else(|| otp_error(ErrorCode::WebotpFailed, "the credential has no code"))
}

/// Maps a rejection of `credentials.get` (a `DOMException`) to an `OtpError`.
fn failure(err: JsValue) -> JsValue {
    let name = Reflect::get(&err, &"name".into())
        .ok()
        .and_then(|n| n.as_string())
        .unwrap_or_default();
    let message = Reflect::get(&err, &"message".into())
        .ok()
        .and_then(|m| m.as_string())
        .unwrap_or_default();
    match name.as_str() {
        "AbortError" => otp_error(ErrorCode::Aborted, "the wait for the SMS was aborted"),
        _ => otp_error(
            ErrorCode::WebotpFailed,
            &format!("WebOTP failed: {name}: {message}"),
        ),
    }
}
