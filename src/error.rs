//! The one error type of the package: a JS `Error` named `OtpError` with a stable `code`.
//!
//! JS callers branch on `err.code` (stable snake_case, shared with the issuer's HTTP API and
//! the core's error enums), never on the message. HTTP errors also carry `status`,
//! `retryAfter` (seconds), `attemptsLeft` and `requestId` when the issuer sent them.

use js_sys::Reflect;
use otpgate_core::wire::ErrorCode;
use wasm_bindgen::JsValue;

/// The `name` of every error this package throws.
pub(crate) const ERROR_NAME: &str = "OtpError";

/// Builds an `OtpError`: a JS `Error` with `name = "OtpError"`, `code` and `message`. The
/// code is an [`ErrorCode`], a core module's own code, or the text of an issuer's code this
/// version does not know yet.
pub(crate) fn otp_error(code: impl AsRef<str>, message: &str) -> JsValue {
    let err = js_sys::Error::new(message);
    err.set_name(ERROR_NAME);
    set(&err, "code", &JsValue::from_str(code.as_ref()));
    err.into()
}

/// An `OtpError` with the `invalid_argument` code, for JS values of the wrong shape.
pub(crate) fn invalid(message: &str) -> JsValue {
    otp_error(ErrorCode::InvalidArgument, message)
}

/// The `OtpError` of a core error that has a stable code.
pub(crate) fn from_core<E: std::fmt::Display>(code: impl AsRef<str>, err: &E) -> JsValue {
    otp_error(code, &err.to_string())
}

/// Sets `key` on an error (or any object); setting a property on a fresh `Error` cannot fail.
pub(crate) fn set(target: &JsValue, key: &str, value: &JsValue) {
    // A fresh Error object is extensible and has no setters for these keys.
    let _ = Reflect::set(target, &JsValue::from_str(key), value);
}
