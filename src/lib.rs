//! The otpgate client module, compiled to WebAssembly and published as the npm package
//! `otpgate`: thin `wasm-bindgen` exports over [`otpgate_core`].
#![forbid(unsafe_code)]

use wasm_bindgen::prelude::*;

/// Parses an OTP SMS: `{code, webotp: {host, code, iframeHost} | null, appHash}`.
///
/// # Errors
/// Never in practice; a conversion failure becomes a JS error.
#[wasm_bindgen(js_name = parseSms)]
pub fn parse_sms(text: &str) -> Result<JsValue, JsError> {
    let parsed = otpgate_core::sms::parse(text);
    Ok(serde_wasm_bindgen::to_value(&parsed)?)
}
