//! `OtpClient`: the issuer's HTTP API (`/v1/verifications`) over the runtime's `fetch`.
//!
//! `fetch` is taken from `globalThis` (browsers, Node 18+, Deno, workerd and other workers:
//! no `window`), or passed in the options. Answers are validated against the core's wire
//! types; errors become `OtpError`s with the API's stable `code`, plus `status`,
//! `retryAfter`, `attemptsLeft` and `requestId` when the issuer sent them. A start that is
//! answered `pow_required` is retried once with the solved proof of work. Nothing sleeps
//! behind the caller's back: a `Retry-After` is reported on the error.

use std::fmt;
use std::rc::Rc;

use js_sys::{Function, Object, Promise, Reflect};
use otpgate_core::wire::{DeliveryState, ErrorCode};
use serde::Deserialize;
use serde::de::value::StrDeserializer;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{JsFuture, future_to_promise};

use crate::convert::{int, object, opt_string, prop};
use crate::error::{invalid, otp_error, set};

/// Shortest and default pause between two polls of `waitForDelivery`, in milliseconds.
const MIN_INTERVAL_MS: f64 = 250.0;
const DEFAULT_INTERVAL_MS: f64 = 1000.0;

/// A client of one issuer (`otpgate serve`).
///
/// ```js
/// const client = new OtpClient("https://otp.example.com", { app: "shop" });
/// const v = await client.start("+14155550123");
/// const { receipt } = await client.check(v.id, "123456");
/// ```
#[wasm_bindgen]
pub struct OtpClient {
    inner: Rc<Inner>,
}

/// What the async methods share (they outlive the `&self` borrow of the JS call).
struct Inner {
    base: String,
    api_key: Option<String>,
    app: Option<String>,
    fetch: Function,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtpClient")
            .field("base", &self.base)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("app", &self.app)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for OtpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

#[wasm_bindgen]
impl OtpClient {
    /// A client of the issuer at `baseUrl` (`http://` or `https://`). Options: `apiKey`
    /// (sent as `Authorization: Bearer`; for servers only, never ship it to browsers), `app`
    /// (the default app of `start`), `fetch` (defaults to the global `fetch`).
    ///
    /// # Errors
    /// `invalid_argument` for a bad URL or options; `fetch_unavailable` when the runtime has
    /// no `fetch` and none was passed.
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(js_name = baseUrl, unchecked_param_type = "string")] base_url: JsValue,
        #[wasm_bindgen(unchecked_param_type = "OtpClientOptions")] options: Option<JsValue>,
    ) -> Result<Self, JsValue> {
        let options = options.unwrap_or_default();
        let base = base_url
            .as_string()
            .ok_or_else(|| invalid("baseUrl must be a string"))?;
        let base = base.trim_end_matches('/').to_owned();
        let scheme_ok = base.starts_with("https://") || base.starts_with("http://");
        if !scheme_ok
            || base.len() > 2048
            || base.contains(['?', '#'])
            || base.chars().any(char::is_whitespace)
        {
            return Err(invalid(
                "baseUrl must be an http(s) URL without query or fragment",
            ));
        }
        let fetch = match prop(&options, "fetch")? {
            Some(f) => f
                .dyn_into::<Function>()
                .map_err(|_| invalid("`fetch` must be a function"))?,
            None => Reflect::get(&js_sys::global(), &"fetch".into())?
                .dyn_into::<Function>()
                .map_err(|_| {
                    otp_error(
                        ErrorCode::FetchUnavailable,
                        "this runtime has no global fetch; pass options.fetch",
                    )
                })?,
        };
        let (api_key, app) = (
            opt_string(&options, "apiKey")?,
            opt_string(&options, "app")?,
        );
        Ok(Self {
            inner: Rc::new(Inner {
                base,
                api_key,
                app,
                fetch,
            }),
        })
    }

    /// Starts a verification: the issuer sends a code to `phone` (E.164). Options: `app`,
    /// `locale`. Resolves with the verification; rejects with the API's code (e.g.
    /// `rate_limited` with `retryAfter`, `destination_not_allowed`).
    #[wasm_bindgen(unchecked_return_type = "Promise<Verification>")]
    pub fn start(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] phone: JsValue,
        #[wasm_bindgen(unchecked_param_type = "StartOptions")] options: Option<JsValue>,
    ) -> Promise {
        self.run(Op::Start(phone, options.unwrap_or_default()))
    }

    /// The current state of a verification, delivery included.
    #[wasm_bindgen(unchecked_return_type = "Promise<Verification>")]
    pub fn status(&self, #[wasm_bindgen(unchecked_param_type = "string")] id: JsValue) -> Promise {
        self.run(Op::Status(id))
    }

    /// Checks a code. Resolves with `{status: "approved", receipt}`; rejects with e.g.
    /// `wrong_code` (and `attemptsLeft`), `expired`, `already_used`, `too_many_attempts`.
    #[wasm_bindgen(unchecked_return_type = "Promise<CheckResult>")]
    pub fn check(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] id: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string")] code: JsValue,
    ) -> Promise {
        self.run(Op::Check(id, code))
    }

    /// Sends a new code (the old one stops working). Rejects with `resend_cooldown` (429)
    /// and `retryAfter` inside the cooldown.
    #[wasm_bindgen(unchecked_return_type = "Promise<Verification>")]
    pub fn resend(&self, #[wasm_bindgen(unchecked_param_type = "string")] id: JsValue) -> Promise {
        self.run(Op::Resend(id))
    }

    /// Cancels a verification. Resolves with the cancelled verification, or `undefined` when
    /// the issuer answers without a body.
    #[wasm_bindgen(unchecked_return_type = "Promise<Verification | undefined>")]
    pub fn cancel(&self, #[wasm_bindgen(unchecked_param_type = "string")] id: JsValue) -> Promise {
        self.run(Op::Cancel(id))
    }

    /// Polls the status every `intervalMs` (default 1000, at least 250) until the SMS is
    /// delivered, failed or skipped, or the verification is no longer pending (expired,
    /// cancelled, approved...), and resolves with that last state. `signal` aborts the wait
    /// (rejects with `aborted`).
    #[wasm_bindgen(js_name = waitForDelivery, unchecked_return_type = "Promise<Verification>")]
    pub fn wait_for_delivery(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] id: JsValue,
        #[wasm_bindgen(unchecked_param_type = "WaitForDeliveryOptions")] options: Option<JsValue>,
    ) -> Promise {
        self.run(Op::Wait(id, options.unwrap_or_default()))
    }
}

/// One call of the API. Every method goes through one future type, [`Inner::run`]: each
/// distinct future given to `future_to_promise` costs about 2 KB of wasm.
enum Op {
    Start(JsValue, JsValue),
    Status(JsValue),
    Check(JsValue, JsValue),
    Resend(JsValue),
    Cancel(JsValue),
    Wait(JsValue, JsValue),
}

impl OtpClient {
    fn run(&self, op: Op) -> Promise {
        let inner = Rc::clone(&self.inner);
        future_to_promise(async move { inner.run(op).await })
    }
}

/// `/v1/verifications/{id}{suffix}`, refusing ids that could leave that path.
fn path(id: &JsValue, suffix: &str) -> Result<String, JsValue> {
    let id = id
        .as_string()
        .ok_or_else(|| invalid("id must be a string"))?;
    let well_formed = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    match well_formed {
        true => Ok(format!("/v1/verifications/{id}{suffix}")),
        false => Err(invalid("id is not a verification id")),
    }
}

impl Inner {
    async fn run(&self, op: Op) -> Result<JsValue, JsValue> {
        match op {
            Op::Start(phone, options) => self.start(&phone, &options).await,
            Op::Status(id) => self
                .send("GET", &path(&id, "")?, None, None)
                .await?
                .decode(VIEW_FIELDS),
            Op::Check(id, code) => self.check(&id, &code).await,
            Op::Resend(id) => self
                .send("POST", &path(&id, "/resend")?, None, None)
                .await?
                .decode(VIEW_FIELDS),
            Op::Cancel(id) => {
                let answer = self.send("DELETE", &path(&id, "")?, None, None).await?;
                match answer.ok() && answer.body.trim().is_empty() {
                    true => Ok(JsValue::UNDEFINED),
                    false => answer.decode(VIEW_FIELDS),
                }
            }
            Op::Wait(id, options) => self.wait_for_delivery(&id, &options).await,
        }
    }

    async fn start(&self, phone: &JsValue, options: &JsValue) -> Result<JsValue, JsValue> {
        let phone = phone
            .as_string()
            .ok_or_else(|| invalid("phone must be a string"))?;
        let app = opt_string(options, "app")?.or_else(|| self.app.clone());
        let locale = opt_string(options, "locale")?;
        // The wire module's `StartRequest`, written with JSON.stringify (see `object`); the
        // optional fields are absent rather than null.
        let request = object(&[("phone", phone.into())]);
        for (key, value) in [("app", app), ("locale", locale)] {
            if let Some(value) = value {
                set(&request, key, &value.into());
            }
        }
        let mut answer = self
            .send("POST", "/v1/verifications", Some(json(&request)?), None)
            .await?;
        if let Some(challenge) = answer.pow_challenge() {
            let nonce = crate::solve(&challenge, None)?;
            set(
                &request,
                "pow",
                &object(&[("challenge", challenge.into()), ("nonce", nonce.into())]),
            );
            answer = self
                .send("POST", "/v1/verifications", Some(json(&request)?), None)
                .await?;
        }
        answer.decode(VIEW_FIELDS)
    }

    async fn check(&self, id: &JsValue, code: &JsValue) -> Result<JsValue, JsValue> {
        let code = code
            .as_string()
            .filter(|c| c.len() <= 64)
            .ok_or_else(|| invalid("code must be a string"))?;
        let body = json(&object(&[("code", code.into())]))?;
        self.send("POST", &path(id, "/check")?, Some(body), None)
            .await?
            .decode(CHECK_FIELDS)
    }

    async fn wait_for_delivery(&self, id: &JsValue, options: &JsValue) -> Result<JsValue, JsValue> {
        let path = path(id, "")?;
        let signal = prop(options, "signal")?;
        let interval = match prop(options, "intervalMs")? {
            Some(v) => int(&v, "intervalMs", MIN_INTERVAL_MS, 600_000.0)?,
            None => DEFAULT_INTERVAL_MS,
        };
        loop {
            abort_check(signal.as_ref())?;
            let view = self
                .send("GET", &path, None, signal.as_ref())
                .await?
                .decode(VIEW_FIELDS)?;
            if settled(&view) {
                return Ok(view);
            }
            sleep(interval, signal.as_ref()).await?;
        }
    }

    /// One HTTP exchange. Transport failures become `network_error` (or `aborted`).
    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
        signal: Option<&JsValue>,
    ) -> Result<Answer, JsValue> {
        let headers = Object::new();
        set(&headers, "accept", &"application/json".into());
        if let Some(key) = &self.api_key {
            set(&headers, "authorization", &format!("Bearer {key}").into());
        }
        let init = Object::new();
        set(&init, "method", &method.into());
        if let Some(body) = body {
            set(&headers, "content-type", &"application/json".into());
            set(&init, "body", &body.into());
        }
        set(&init, "headers", &headers);
        if let Some(signal) = signal {
            set(&init, "signal", signal);
        }
        let url = format!("{}{path}", self.base);
        let pending = self
            .fetch
            .call2(&js_sys::global(), &url.into(), &init)
            .map_err(transport)?;
        let response = JsFuture::from(Promise::resolve(&pending))
            .await
            .map_err(transport)?;
        let status = Reflect::get(&response, &"status".into())?
            .as_f64()
            .unwrap_or(0.0) as u16;
        let retry_after =
            header(&response, "retry-after").and_then(|v| v.trim().parse::<u64>().ok());
        let text = call_method(&response, "text").map_err(transport)?;
        let body = JsFuture::from(Promise::resolve(&text))
            .await
            .map_err(transport)?
            .as_string()
            .unwrap_or_default();
        Ok(Answer {
            status,
            body,
            retry_after,
        })
    }
}

/// An HTTP answer of the issuer.
struct Answer {
    status: u16,
    body: String,
    /// `Retry-After` in seconds (a CORS page sees it only if the issuer exposes the header;
    /// the error body's `retry_after` is the fallback).
    retry_after: Option<u64>,
}

/// The fields a verification must have (`Verification` in the typings).
const VIEW_FIELDS: &[&str] = &["id", "status", "expires_at", "resend_at", "delivery.state"];
/// The fields of a successful check.
const CHECK_FIELDS: &[&str] = &["status", "receipt"];

impl Answer {
    fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as a JS object after checking that every `required` path holds a string;
    /// fields the issuer adds later are kept. A non-2xx answer is its error.
    ///
    /// Checked with `JSON.parse` and property reads rather than serde: a serde deserializer
    /// per answer type costs kilobytes of wasm for the same check.
    fn decode(&self, required: &[&str]) -> Result<JsValue, JsValue> {
        if !self.ok() {
            return Err(self.error());
        }
        let value = js_sys::JSON::parse(&self.body)
            .ok()
            .filter(JsValue::is_object);
        let value = value.ok_or_else(|| {
            otp_error(
                ErrorCode::BadResponse,
                "the issuer's answer is not a JSON object",
            )
        })?;
        match required.iter().find(|path| text_at(&value, path).is_none()) {
            Some(path) => Err(otp_error(
                ErrorCode::BadResponse,
                &format!("the issuer's answer has no `{path}`"),
            )),
            None => Ok(value),
        }
    }

    /// The `error` object of the API's error shape, if the body is one.
    fn detail(&self) -> Option<JsValue> {
        let body = js_sys::JSON::parse(&self.body)
            .ok()
            .filter(JsValue::is_object)?;
        Reflect::get(&body, &"error".into())
            .ok()
            .filter(JsValue::is_object)
    }

    /// The challenge of a `pow_required` answer.
    fn pow_challenge(&self) -> Option<String> {
        let detail = self.detail().filter(|_| !self.ok())?;
        (text_at(&detail, "code").as_deref() == Some(ErrorCode::PowRequired.as_str()))
            .then(|| text_at(&detail, "challenge"))
            .flatten()
    }

    /// The `OtpError` of a non-2xx answer: the issuer's code, else one derived from the status.
    fn error(&self) -> JsValue {
        let detail = self.detail().unwrap_or(JsValue::UNDEFINED);
        let code = text_at(&detail, "code").filter(|c| is_code(c));
        let message = text_at(&detail, "message")
            .unwrap_or_else(|| format!("the issuer answered HTTP {}", self.status));
        let err = otp_error(
            code.as_deref()
                .unwrap_or(fallback_code(self.status).as_str()),
            &message,
        );
        set(&err, "status", &self.status.into());
        let retry_after = self
            .retry_after
            .map(|s| s as f64)
            .or_else(|| number_at(&detail, "retry_after"));
        for (key, value) in [
            ("retryAfter", retry_after.map(JsValue::from)),
            (
                "attemptsLeft",
                number_at(&detail, "attempts_left").map(JsValue::from),
            ),
            (
                "requestId",
                text_at(&detail, "request_id").map(JsValue::from),
            ),
            (
                "challenge",
                text_at(&detail, "challenge").map(JsValue::from),
            ),
        ] {
            if let Some(value) = value {
                set(&err, key, &value);
            }
        }
        err
    }
}

/// The string at a dotted `path` of a JS object.
fn text_at(value: &JsValue, path: &str) -> Option<String> {
    path.split('.')
        .try_fold(value.clone(), |v, key| {
            v.is_object()
                .then(|| Reflect::get(&v, &key.into()).ok())
                .flatten()
        })?
        .as_string()
}

/// The non-negative integer at `key` of a JS object.
fn number_at(value: &JsValue, key: &str) -> Option<f64> {
    let n = value
        .is_object()
        .then(|| Reflect::get(value, &key.into()).ok())
        .flatten()?
        .as_f64()?;
    (n >= 0.0 && n.fract() == 0.0 && n <= crate::convert::MAX_SAFE_INTEGER).then_some(n)
}

/// Whether a verification is done changing for `waitForDelivery`: its SMS reached a final
/// delivery state (the core's rule), or it is no longer pending.
fn settled(view: &JsValue) -> bool {
    let state = text_at(view, "delivery.state").unwrap_or_default();
    let terminal =
        DeliveryState::deserialize(StrDeserializer::<serde::de::value::Error>::new(&state))
            .is_ok_and(DeliveryState::is_terminal);
    terminal || text_at(view, "status").as_deref() != Some("pending")
}

/// Whether the issuer's `code` looks like a stable code (so a broken proxy's text never
/// becomes one).
fn is_code(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= 64
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The code of an answer without the API's error body (a proxy, an old server).
fn fallback_code(status: u16) -> ErrorCode {
    match status {
        400 => ErrorCode::InvalidRequest,
        401 => ErrorCode::Unauthorized,
        403 => ErrorCode::Forbidden,
        404 => ErrorCode::NotFound,
        409 => ErrorCode::Conflict,
        410 => ErrorCode::Gone,
        422 => ErrorCode::WrongCode,
        428 => ErrorCode::PowRequired,
        429 => ErrorCode::RateLimited,
        500..=599 => ErrorCode::ServerError,
        _ => ErrorCode::BadResponse,
    }
}

/// The JSON text of a request object.
fn json(value: &JsValue) -> Result<String, JsValue> {
    js_sys::JSON::stringify(value)?
        .as_string()
        .ok_or_else(|| otp_error(ErrorCode::Internal, "JSON.stringify failed"))
}

/// A transport failure (`fetch` rejected): `aborted` for an `AbortError`, else `network_error`.
fn transport(err: JsValue) -> JsValue {
    let text = |key: &str| {
        Reflect::get(&err, &key.into())
            .ok()
            .and_then(|v| v.as_string())
            .unwrap_or_default()
    };
    match text("name").as_str() {
        "AbortError" => otp_error(ErrorCode::Aborted, "the request was aborted"),
        _ => otp_error(
            ErrorCode::NetworkError,
            &format!("could not reach the issuer: {}", text("message")),
        ),
    }
}

/// `obj[name]()`.
fn call_method(obj: &JsValue, name: &str) -> Result<JsValue, JsValue> {
    let f: Function = Reflect::get(obj, &name.into())?
        .dyn_into()
        .map_err(|_| invalid(&format!("no {name}() method")))?;
    f.call0(obj)
}

/// A response header, if the response has a `headers.get`.
fn header(response: &JsValue, name: &str) -> Option<String> {
    let headers = Reflect::get(response, &"headers".into()).ok()?;
    let get: Function = Reflect::get(&headers, &"get".into())
        .ok()?
        .dyn_into()
        .ok()?;
    get.call1(&headers, &name.into()).ok()?.as_string()
}

fn abort_check(signal: Option<&JsValue>) -> Result<(), JsValue> {
    match signal
        .map(|s| Reflect::get(s, &"aborted".into()))
        .transpose()?
    {
        Some(aborted) if aborted.is_truthy() => {
            Err(otp_error(ErrorCode::Aborted, "the wait was aborted"))
        }
        _ => Ok(()),
    }
}

/// Waits `ms` milliseconds with the global `setTimeout`, waking early if `signal` aborts.
async fn sleep(ms: f64, signal: Option<&JsValue>) -> Result<(), JsValue> {
    let global = js_sys::global();
    let set_timeout: Function = Reflect::get(&global, &"setTimeout".into())?.dyn_into()?;
    let listener = signal.and_then(|s| {
        Reflect::get(s, &"addEventListener".into())
            .ok()?
            .dyn_into::<Function>()
            .ok()
    });
    let mut wake = None;
    let mut failure = None;
    let done = Promise::new(&mut |resolve, _reject| {
        if let Err(e) = set_timeout.call2(&global, &resolve, &ms.into()) {
            failure = Some(e);
        }
        if let (Some(add), Some(s)) = (&listener, signal) {
            let _ = add.call2(s, &"abort".into(), &resolve);
        }
        wake = Some(resolve);
    });
    if let Some(e) = failure {
        return Err(e);
    }
    JsFuture::from(done).await?;
    if let (Some(s), Some(resolve)) = (signal, wake) {
        if let Ok(remove) =
            Reflect::get(s, &"removeEventListener".into()).and_then(JsCast::dyn_into::<Function>)
        {
            let _ = remove.call2(s, &"abort".into(), &resolve);
        }
    }
    abort_check(signal)
}
