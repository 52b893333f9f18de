//! The one error type of the package: a JS `Error` named `OtpError` with a stable `code`.
//!
//! JS callers branch on `err.code` (stable snake_case, shared with the issuer's HTTP API and
//! the core's error enums), never on the message. HTTP errors also carry `status`,
//! `retryAfter` (seconds), `attemptsLeft` and `requestId` when the issuer sent them. The
//! properties are an [`ErrorFields`] serialized with serde-wasm-bindgen onto the `Error`.

use otpgate_core::wire::ErrorCode;
use wasm_bindgen::JsValue;

use crate::types::ErrorFields;

/// The `name` of every error this package throws.
pub(crate) const ERROR_NAME: &str = "OtpError";

/// Builds an `OtpError` with `fields` (whose `code` is an [`ErrorCode`], a core module's own
/// code, or the text of an issuer's code this version does not know yet).
pub(crate) fn otp_error_with(fields: &ErrorFields<'_>, message: &str) -> JsValue {
    let err = js_sys::Error::new(message);
    err.set_name(ERROR_NAME);
    // Serializing a struct of strings and integers to a fresh object cannot fail; if it
    // did, the error would still be an OtpError without its code.
    if let Ok(props) = crate::convert::to_js(fields) {
        js_sys::Object::assign(&err, &props.into());
    }
    err.into()
}

/// Builds an `OtpError`: a JS `Error` with `name = "OtpError"`, `code` and `message`.
pub(crate) fn otp_error(code: impl AsRef<str>, message: &str) -> JsValue {
    otp_error_with(
        &ErrorFields {
            code: code.as_ref(),
            ..ErrorFields::default()
        },
        message,
    )
}

/// An `OtpError` with the `invalid_argument` code, for JS values of the wrong shape.
pub(crate) fn invalid(message: &str) -> JsValue {
    otp_error(ErrorCode::InvalidArgument, message)
}

/// The `OtpError` of a core error that has a stable code.
pub(crate) fn from_core(code: impl AsRef<str>, err: &dyn std::fmt::Display) -> JsValue {
    // `dyn`: one `to_string` in the wasm for every core error type.
    otp_error(code, &err.to_string())
}
