//! Conversions between JS values and Rust values through serde-wasm-bindgen, each failing
//! with an `OtpError` (`invalid_argument`) instead of panicking.

use std::future::Future;
use std::pin::Pin;

use js_sys::Uint8Array;
use serde::Serialize;
use serde::de::DeserializeOwned;
use wasm_bindgen::{JsCast, JsValue};

use crate::error::invalid;

/// Results as plain JSON-like objects: `None` is `null` (the CLI's JSON), maps are objects.
const SERIALIZER: serde_wasm_bindgen::Serializer =
    serde_wasm_bindgen::Serializer::json_compatible();

/// Runs `future` as a JS `Promise`. Every async export goes through this one boxed future
/// type, so js-sys's promise glue (`future_to_promise`) is in the wasm once, not once per
/// future type (about 0.5 KB gzipped each).
pub(crate) fn promise(
    future: impl Future<Output = Result<JsValue, JsValue>> + 'static,
) -> js_sys::Promise {
    let future: Pin<Box<dyn Future<Output = Result<JsValue, JsValue>>>> = Box::pin(future);
    wasm_bindgen_futures::future_to_promise(future)
}

/// A Rust value as a JS value.
pub(crate) fn to_js<T: Serialize + ?Sized>(value: &T) -> Result<JsValue, JsValue> {
    value.serialize(&SERIALIZER).map_err(|e| unserializable(&e))
}

/// The `internal` error of [`to_js`], out of line: one copy for every `T`.
#[inline(never)]
fn unserializable(e: &serde_wasm_bindgen::Error) -> JsValue {
    crate::error::otp_error(otpgate_core::wire::ErrorCode::Internal, &e.to_string())
}

/// A JS value as `T`; `what` names it in the `invalid_argument` error.
pub(crate) fn from_js<T: DeserializeOwned>(value: JsValue, what: &str) -> Result<T, JsValue> {
    serde_wasm_bindgen::from_value(value).map_err(|e| bad_value(what, &e))
}

/// The `invalid_argument` error of [`from_js`], out of line: one copy for every `T`.
#[inline(never)]
fn bad_value(what: &str, e: &serde_wasm_bindgen::Error) -> JsValue {
    invalid(&format!("{what}: {e}"))
}

/// An optional option bag: `undefined` and `null` are the defaults.
pub(crate) fn options<T: DeserializeOwned + Default>(
    value: Option<JsValue>,
    what: &str,
) -> Result<T, JsValue> {
    match value.filter(|v| !v.is_undefined() && !v.is_null()) {
        None => Ok(T::default()),
        Some(v) if v.is_object() => from_js(v, what),
        Some(_) => Err(invalid(&format!("{what} must be an object"))),
    }
}

/// A required string argument.
pub(crate) fn text(value: JsValue, what: &str) -> Result<String, JsValue> {
    value
        .as_string()
        .ok_or_else(|| invalid(&format!("{what} must be a string")))
}

/// A JS value that is `undefined` or `null` as `None`.
pub(crate) fn present(value: JsValue) -> Option<JsValue> {
    (!value.is_undefined() && !value.is_null()).then_some(value)
}

/// `n` if it is within `..=max`, else an `invalid_argument` naming `key`.
pub(crate) fn at_most<T: PartialOrd + Copy + Into<f64>>(
    n: T,
    key: &str,
    max: T,
) -> Result<T, JsValue> {
    if n <= max {
        Ok(n)
    } else {
        // Printed as an integer: formatting an f64 would link core's float printer.
        Err(invalid(&format!(
            "`{key}` must be at most {}",
            max.into() as u64
        )))
    }
}

/// Bytes from a `Uint8Array`, an `ArrayBuffer` or a string (its UTF-8 encoding).
pub(crate) fn bytes(value: &JsValue, what: &str) -> Result<Vec<u8>, JsValue> {
    if let Some(text) = value.as_string() {
        Ok(text.into_bytes())
    } else if let Some(array) = value.dyn_ref::<Uint8Array>() {
        Ok(array.to_vec())
    } else if value.is_instance_of::<js_sys::ArrayBuffer>() {
        Ok(Uint8Array::new(value).to_vec())
    } else {
        Err(invalid(&format!(
            "{what} must be a Uint8Array, an ArrayBuffer or a string"
        )))
    }
}

/// An optional string argument: `undefined` and `null` are `None`, a number is written in
/// decimal (header values that arrived as numbers), anything else is an error.
pub(crate) fn opt_text(value: &JsValue, what: &str) -> Result<Option<String>, JsValue> {
    if value.is_undefined() || value.is_null() {
        Ok(None)
    } else if let Some(s) = value.as_string() {
        Ok(Some(s))
    } else if let Some(n) = value
        .as_f64()
        .filter(|n| n.fract() == 0.0 && n.abs() <= MAX_SAFE_INTEGER)
    {
        Ok(Some((n as i64).to_string()))
    } else {
        Err(invalid(&format!("{what} must be a string")))
    }
}

/// Largest integer a JS number holds exactly (2^53 - 1).
pub(crate) const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// Now, in whole Unix seconds, from the JS clock (`SystemTime` panics on wasm32).
pub(crate) fn now_secs() -> i64 {
    (js_sys::Date::now() / 1000.0).floor() as i64
}

/// A JWKS given as an object or as its JSON text. Keys that are not complete JWKs (an RSA
/// key lacks `crv` and `x`) are skipped: they cannot have signed an EdDSA receipt.
pub(crate) fn jwks(value: JsValue) -> Result<otpgate_core::receipt::Jwks, JsValue> {
    let value = match value.as_string() {
        Some(text) => js_sys::JSON::parse(&text).map_err(|_| invalid("jwks is not valid JSON"))?,
        None => value,
    };
    if !value.is_object() {
        return Err(invalid("jwks must be an object with a keys array"));
    }
    let jwks: crate::types::Jwks = from_js(value, "jwks")?;
    let keys = jwks
        .keys
        .into_iter()
        .filter_map(|k| {
            Some(otpgate_core::receipt::Jwk {
                kty: k.kty?,
                crv: k.crv?,
                x: k.x?,
                kid: k.kid?,
                alg: k.alg,
                use_: k.use_,
            })
        })
        .collect();
    Ok(otpgate_core::receipt::Jwks { keys })
}

/// Receipt JSON decoded with the runtime's `JSON.parse` and serde-wasm-bindgen into the
/// core's own serde types (see `receipt::ReceiptJson`): strict about types like the core's
/// serde_json decoding, without linking serde_json into the wasm.
pub(crate) struct JsJson;

/// The JWT header fields a verifier reads.
#[derive(serde::Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
}

impl JsJson {
    fn decode<T: DeserializeOwned>(json: &[u8]) -> Option<T> {
        let value = js_sys::JSON::parse(std::str::from_utf8(json).ok()?).ok()?;
        if !value.is_object() || js_sys::Array::is_array(&value) {
            return None;
        }
        serde_wasm_bindgen::from_value(value).ok()
    }
}

impl otpgate_core::receipt::ReceiptJson for JsJson {
    fn header(&self, json: &[u8]) -> Option<otpgate_core::receipt::HeaderFields> {
        let h: Header = Self::decode(json)?;
        Some(otpgate_core::receipt::HeaderFields {
            alg: h.alg,
            typ: h.typ,
            kid: h.kid,
        })
    }

    fn claims(&self, json: &[u8]) -> Option<otpgate_core::receipt::Claims> {
        Self::decode(json)
    }
}
