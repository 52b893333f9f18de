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

/// A JSON value written by [`json_object`].
pub(crate) enum Json<'a> {
    /// A string (escaped as JSON requires).
    Str(&'a str),
    /// `null` when absent.
    OptStr(Option<&'a str>),
    /// An integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// Already-written JSON.
    Raw(String),
}

/// A JSON object with these members, in this order.
///
/// Results are written as JSON text and handed to `JSON.parse` once: setting properties one
/// by one from wasm costs a JS string per key (about 4 µs per call in Node), and serde_json's
/// serializer would add kilobytes of wasm for the same text.
pub(crate) fn json_object(members: &[(&str, Json<'_>)]) -> String {
    let mut out = String::with_capacity(128);
    out.push('{');
    for (i, (key, value)) in members.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_str(&mut out, key);
        out.push(':');
        match value {
            Json::Str(s) | Json::OptStr(Some(s)) => json_str(&mut out, s),
            Json::OptStr(None) => out.push_str("null"),
            Json::Int(n) => out.push_str(&n.to_string()),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Raw(raw) => out.push_str(raw),
        }
    }
    out.push('}');
    out
}

/// Appends `s` as a JSON string literal (RFC 8259: `"`, `\\` and controls escaped). Runs
/// of plain characters are copied as slices (escapes are ASCII, so every cut is on a char
/// boundary).
fn json_str(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// JSON text as a JS value (the text comes from [`json_object`], so it parses).
pub(crate) fn parse_json(text: &str) -> Result<JsValue, JsValue> {
    js_sys::JSON::parse(text)
}

/// `ParsedRef` as the object `otpgate sms parse` prints.
pub(crate) fn parsed(p: &otpgate_core::sms::parse::ParsedRef<'_>) -> Result<JsValue, JsValue> {
    let webotp = p.webotp.map_or_else(
        || "null".to_owned(),
        |w| {
            json_object(&[
                ("host", Json::Str(w.host)),
                ("code", Json::Str(w.code)),
                ("iframe_host", Json::OptStr(w.iframe_host)),
            ])
        },
    );
    parse_json(&json_object(&[
        ("code", Json::OptStr(p.code)),
        ("webotp", Json::Raw(webotp)),
        ("app_hash", Json::OptStr(p.app_hash)),
    ]))
}

/// `Segments` as the object `otpgate sms segments` prints.
pub(crate) fn segments(s: &otpgate_core::sms::Segments) -> Result<JsValue, JsValue> {
    parse_json(&json_object(&[
        ("encoding", Json::Str(s.encoding.as_str())),
        ("segments", Json::Int(s.segments.into())),
        ("units", Json::Int(s.units.into())),
    ]))
}

/// `Composed` as the object `otpgate sms compose --json` prints.
pub(crate) fn composed(c: &otpgate_core::sms::Composed) -> Result<JsValue, JsValue> {
    parse_json(&json_object(&[
        ("text", Json::Str(&c.text)),
        ("locale", Json::Str(&c.locale)),
        ("encoding", Json::Str(c.segments.encoding.as_str())),
        ("segments", Json::Int(c.segments.segments.into())),
        ("units", Json::Int(c.segments.units.into())),
        (
            "bytes",
            Json::Int(i64::try_from(c.segments.bytes()).unwrap_or(i64::MAX)),
        ),
        (
            "ucs2_forced_by_template",
            Json::Bool(c.ucs2_forced_by_template),
        ),
    ]))
}

/// Receipt claims with their JWT names.
pub(crate) fn claims(c: &otpgate_core::receipt::Claims) -> Result<JsValue, JsValue> {
    parse_json(&json_object(&[
        ("iss", Json::Str(&c.iss)),
        ("aud", Json::Str(&c.aud)),
        ("sub", Json::Str(&c.sub)),
        ("jti", Json::Str(&c.jti)),
        ("phone_number", Json::Str(&c.phone_number)),
        ("phone_number_verified", Json::Bool(c.phone_number_verified)),
        ("iat", Json::Int(c.iat)),
        ("exp", Json::Int(c.exp)),
    ]))
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

/// Receipt JSON decoded with the runtime's `JSON.parse` (see `receipt::ReceiptJson`): strict
/// about types like the core's serde decoding, without linking serde_json into the wasm.
pub(crate) struct JsJson;

impl JsJson {
    fn object(json: &[u8]) -> Option<JsValue> {
        let value = js_sys::JSON::parse(std::str::from_utf8(json).ok()?).ok()?;
        (value.is_object() && !js_sys::Array::is_array(&value)).then_some(value)
    }

    fn field(obj: &JsValue, key: &str) -> Option<JsValue> {
        Reflect::get(obj, &JsValue::from_str(key))
            .ok()
            .filter(|v| !v.is_undefined())
    }

    fn string(obj: &JsValue, key: &str) -> Option<String> {
        Self::field(obj, key)?.as_string()
    }

    /// An optional string: absent or `null` is `None`; any other type refuses the JSON.
    fn opt_string(obj: &JsValue, key: &str) -> Option<Option<String>> {
        match Self::field(obj, key).filter(|v| !v.is_null()) {
            None => Some(None),
            Some(v) => v.as_string().map(Some),
        }
    }

    fn integer(obj: &JsValue, key: &str) -> Option<i64> {
        let n = Self::field(obj, key)?.as_f64()?;
        (n.fract() == 0.0 && n.abs() <= MAX_SAFE_INTEGER).then_some(n as i64)
    }
}

impl otpgate_core::receipt::ReceiptJson for JsJson {
    fn header(&self, json: &[u8]) -> Option<otpgate_core::receipt::HeaderFields> {
        let h = Self::object(json)?;
        Some(otpgate_core::receipt::HeaderFields {
            alg: Self::string(&h, "alg")?,
            typ: Self::opt_string(&h, "typ")?,
            kid: Self::opt_string(&h, "kid")?,
        })
    }

    fn claims(&self, json: &[u8]) -> Option<otpgate_core::receipt::Claims> {
        let c = Self::object(json)?;
        Some(otpgate_core::receipt::Claims {
            iss: Self::string(&c, "iss")?,
            aud: Self::string(&c, "aud")?,
            sub: Self::string(&c, "sub")?,
            jti: Self::string(&c, "jti")?,
            phone_number: Self::string(&c, "phone_number")?,
            phone_number_verified: Self::field(&c, "phone_number_verified")?.as_bool()?,
            iat: Self::integer(&c, "iat")?,
            exp: Self::integer(&c, "exp")?,
        })
    }
}
