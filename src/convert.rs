//! Conversions between JS values and Rust values, each failing with an `OtpError`
//! (`invalid_argument`) that names the offending option instead of panicking.

use js_sys::{Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};

use crate::error::{invalid, set};

/// Largest integer a JS number holds exactly (2^53 - 1).
pub(crate) const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// A plain JS object with these properties, in this order.
///
/// Results are built property by property rather than through serde: serde_json's
/// serializer (or serde-wasm-bindgen's) per result type costs kilobytes of wasm.
pub(crate) fn object(entries: &[(&str, JsValue)]) -> JsValue {
    let obj = js_sys::Object::new();
    for (key, value) in entries {
        set(&obj, key, value);
    }
    obj.into()
}

/// `null` for `None`, the string otherwise.
pub(crate) fn nullable(value: Option<&str>) -> JsValue {
    value.map_or(JsValue::NULL, JsValue::from)
}

/// The property `key` of an options object; `None` when the object or the property is
/// `undefined` or `null`.
pub(crate) fn prop(options: &JsValue, key: &str) -> Result<Option<JsValue>, JsValue> {
    if options.is_undefined() || options.is_null() {
        return Ok(None);
    }
    if !options.is_object() {
        return Err(invalid("options must be an object"));
    }
    let value = Reflect::get(options, &JsValue::from_str(key))?;
    Ok((!value.is_undefined() && !value.is_null()).then_some(value))
}

/// An optional string option.
pub(crate) fn opt_string(options: &JsValue, key: &str) -> Result<Option<String>, JsValue> {
    match prop(options, key)? {
        None => Ok(None),
        Some(v) => v
            .as_string()
            .map(Some)
            .ok_or_else(|| invalid(&format!("`{key}` must be a string"))),
    }
}

/// A required string option.
pub(crate) fn req_string(options: &JsValue, key: &str) -> Result<String, JsValue> {
    opt_string(options, key)?.ok_or_else(|| invalid(&format!("`{key}` is required")))
}

/// An optional integer option within `min..=max`.
pub(crate) fn opt_int(
    options: &JsValue,
    key: &str,
    min: f64,
    max: f64,
) -> Result<Option<f64>, JsValue> {
    match prop(options, key)? {
        None => Ok(None),
        Some(v) => int(&v, key, min, max).map(Some),
    }
}

/// An integer (a JS number with no fraction) within `min..=max`; `key` names it in errors.
pub(crate) fn int(value: &JsValue, key: &str, min: f64, max: f64) -> Result<f64, JsValue> {
    match value.as_f64() {
        Some(n) if n.fract() == 0.0 && (min..=max).contains(&n) => Ok(n),
        // Integers printed as i64: formatting an f64 would link core's float printer.
        _ => Err(invalid(&format!(
            "`{key}` must be an integer between {} and {}",
            min as i64, max as i64
        ))),
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

/// Now, in whole Unix seconds, from the JS clock (`SystemTime` panics on wasm32).
pub(crate) fn now_secs() -> i64 {
    (js_sys::Date::now() / 1000.0).floor() as i64
}

/// `ParsedRef` as the object `otpgate sms parse` prints.
pub(crate) fn parsed(p: &otpgate_core::sms::parse::ParsedRef<'_>) -> JsValue {
    let webotp = p.webotp.map_or(JsValue::NULL, |w| {
        object(&[
            ("host", w.host.into()),
            ("code", w.code.into()),
            ("iframe_host", nullable(w.iframe_host)),
        ])
    });
    object(&[
        ("code", nullable(p.code)),
        ("webotp", webotp),
        ("app_hash", nullable(p.app_hash)),
    ])
}

/// `Segments` as the object `otpgate sms segments` prints.
pub(crate) fn segments(s: &otpgate_core::sms::Segments) -> JsValue {
    object(&[
        ("encoding", s.encoding.as_str().into()),
        ("segments", s.segments.into()),
        ("units", s.units.into()),
    ])
}

/// `Composed` as the object `otpgate sms compose --json` prints.
pub(crate) fn composed(c: &otpgate_core::sms::Composed) -> JsValue {
    object(&[
        ("text", c.text.as_str().into()),
        ("locale", c.locale.as_str().into()),
        ("encoding", c.segments.encoding.as_str().into()),
        ("segments", c.segments.segments.into()),
        ("units", c.segments.units.into()),
        ("bytes", (c.segments.bytes() as f64).into()),
        ("ucs2_forced_by_template", c.ucs2_forced_by_template.into()),
    ])
}

/// Receipt claims with their JWT names.
pub(crate) fn claims(c: &otpgate_core::receipt::Claims) -> JsValue {
    object(&[
        ("iss", c.iss.as_str().into()),
        ("aud", c.aud.as_str().into()),
        ("sub", c.sub.as_str().into()),
        ("jti", c.jti.as_str().into()),
        ("phone_number", c.phone_number.as_str().into()),
        ("phone_number_verified", c.phone_number_verified.into()),
        ("iat", (c.iat as f64).into()),
        ("exp", (c.exp as f64).into()),
    ])
}

/// A JWKS given as an object or as its JSON text. Keys that are not complete JWKs (an RSA
/// key lacks `crv` and `x`) are skipped: they cannot have signed an EdDSA receipt.
pub(crate) fn jwks(value: &JsValue) -> Result<otpgate_core::receipt::Jwks, JsValue> {
    let value = match value.as_string() {
        Some(text) => js_sys::JSON::parse(&text).map_err(|_| invalid("jwks is not valid JSON"))?,
        None => value.clone(),
    };
    let keys = prop(&value, "keys")?
        .filter(js_sys::Array::is_array)
        .ok_or_else(|| invalid("jwks.keys must be an array"))?;
    let text =
        |key: &JsValue, name: &str| prop(key, name).ok().flatten().and_then(|v| v.as_string());
    let keys = js_sys::Array::from(&keys)
        .iter()
        .filter(JsValue::is_object)
        .filter_map(|k| {
            Some(otpgate_core::receipt::Jwk {
                kty: text(&k, "kty")?,
                crv: text(&k, "crv")?,
                x: text(&k, "x")?,
                kid: text(&k, "kid")?,
                alg: text(&k, "alg"),
                use_: text(&k, "use"),
            })
        })
        .collect();
    Ok(otpgate_core::receipt::Jwks { keys })
}
