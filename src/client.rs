//! `OtpClient`: the issuer's HTTP API (`/v1/verifications`) through gloo-net.
//!
//! Requests are built and answers read with gloo-net, whose 0.7 `send` calls the global
//! `fetch` (browsers, Node >= 20, Deno, workerd and other workers: no `window`); a `fetch`
//! passed in the options is called with the same `Request` instead. Bodies are serialized
//! and answers decoded with serde (serde-wasm-bindgen over the runtime's `JSON.parse`) into
//! the types of `crate::types`, from which the TypeScript types are generated; errors become
//! `OtpError`s with the API's stable `code`, plus `status`, `retryAfter`, `attemptsLeft` and
//! `requestId` when the issuer sent them.
//!
//! Retries never send twice: every `start` and `resend` call draws an `Idempotency-Key`
//! (16 bytes of the runtime's CSPRNG through `getrandom`, base64url) and sends it with each of
//! its requests. A request that failed in transport (`network_error`: the answer may have been
//! lost after the issuer sent the SMS) is sent once more with the same key and body, and the
//! issuer replays its first answer instead of sending again. A start answered `pow_required` is
//! retried once with the solved proof of work (same key: the issuer forgets a key whose request
//! was refused). Nothing sleeps behind the caller's back: a `Retry-After` is reported on the
//! error.

use std::fmt;
use std::rc::Rc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gloo_net::http::{Request, Response};
use js_sys::{Function, Promise, Reflect};
use otpgate_core::wire::ErrorCode;
use serde::de::DeserializeOwned;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::convert::{at_most, from_js, present, text, to_js};
use crate::error::{invalid, otp_error, otp_error_with};
use crate::types::{
    CheckBody, CheckResult, ErrorFields, IssuerError, OtpClientOptions, PowBody, StartBody,
    StartOptions, Verification, WaitForDeliveryOptions,
};

/// Shortest, default and longest pause between two polls of `waitForDelivery`, in ms.
const MIN_INTERVAL_MS: u32 = 250;
const DEFAULT_INTERVAL_MS: u32 = 1000;
const MAX_INTERVAL_MS: u32 = 600_000;

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
    /// A `fetch` passed in the options; `None`: gloo-net's (the global `fetch`).
    fetch: Option<Function>,
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
        let o: OtpClientOptions = crate::convert::options(options, "OtpClient options")?;
        let base = text(base_url, "baseUrl")?;
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
        let fetch = match present(o.fetch) {
            Some(f) => Some(
                f.dyn_into::<Function>()
                    .map_err(|_| invalid("`fetch` must be a function"))?,
            ),
            None if Reflect::get(&js_sys::global(), &"fetch".into())?.is_function() => None,
            None => {
                return Err(otp_error(
                    ErrorCode::FetchUnavailable,
                    "this runtime has no global fetch; pass options.fetch",
                ));
            }
        };
        Ok(Self {
            inner: Rc::new(Inner {
                base,
                api_key: o.api_key,
                app: o.app,
                fetch,
            }),
        })
    }

    /// Starts a verification: the issuer sends a code to `phone` (E.164). Options: `app`,
    /// `locale`. Resolves with the verification; rejects with the API's code (e.g.
    /// `rate_limited` with `retryAfter`, `destination_not_allowed`).
    ///
    /// The call carries a fresh `Idempotency-Key`; after a network error it is sent once more
    /// with the same key, so a lost answer never costs a second SMS.
    #[wasm_bindgen(unchecked_return_type = "Promise<Verification>")]
    pub fn start(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] phone: JsValue,
        #[wasm_bindgen(unchecked_param_type = "StartOptions")] options: Option<JsValue>,
    ) -> Promise {
        self.run(Op::Start(phone, options))
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
    /// and `retryAfter` inside the cooldown. Like `start`, it carries a fresh
    /// `Idempotency-Key` and is sent once more with it after a network error.
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
        self.run(Op::Wait(id, options))
    }
}

/// One call of the API. Every method goes through one future type, [`Inner::run`]: each
/// distinct async state machine costs about 2 KB of wasm (and [`crate::convert::promise`]
/// shares js-sys's promise glue between it and `receiveCode`'s).
enum Op {
    Start(JsValue, Option<JsValue>),
    Status(JsValue),
    Check(JsValue, JsValue),
    Resend(JsValue),
    Cancel(JsValue),
    Wait(JsValue, Option<JsValue>),
}

impl OtpClient {
    fn run(&self, op: Op) -> Promise {
        let inner = Rc::clone(&self.inner);
        crate::convert::promise(async move { inner.run(op).await })
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

/// An HTTP method of the API.
#[derive(Clone, Copy)]
enum Method {
    Get,
    Post,
    Delete,
}

impl Inner {
    async fn run(&self, op: Op) -> Result<JsValue, JsValue> {
        match op {
            Op::Start(phone, options) => self.start(phone, options).await,
            Op::Status(id) => self
                .send(Method::Get, &path(&id, "")?, None, None, None)
                .await?
                .decode::<Verification>(),
            Op::Check(id, code) => self.check(&id, code).await,
            Op::Resend(id) => {
                let path = path(&id, "/resend")?;
                let key = idempotency_key()?;
                self.post_idempotent(&path, None, &key, &mut false)
                    .await?
                    .decode::<Verification>()
            }
            Op::Cancel(id) => {
                let answer = self
                    .send(Method::Delete, &path(&id, "")?, None, None, None)
                    .await?;
                match answer.ok() && answer.body.trim().is_empty() {
                    true => Ok(JsValue::UNDEFINED),
                    false => answer.decode::<Verification>(),
                }
            }
            Op::Wait(id, options) => self.wait_for_delivery(&id, options).await,
        }
    }

    async fn start(&self, phone: JsValue, options: Option<JsValue>) -> Result<JsValue, JsValue> {
        let phone = text(phone, "phone")?;
        let o: StartOptions = crate::convert::options(options, "start options")?;
        let mut body = StartBody {
            phone: &phone,
            app: o.app.as_deref().or(self.app.as_deref()),
            locale: o.locale.as_deref(),
            pow: None,
        };
        // One key for the whole call: the transport retry and the proof-of-work retry.
        let key = idempotency_key()?;
        let mut retried = false;
        let mut answer = self
            .post_idempotent(START, Some(json(&body)?), &key, &mut retried)
            .await?;
        if let Some(challenge) = answer.pow_challenge() {
            let nonce = crate::solve(&challenge, None)?;
            body.pow = Some(PowBody { challenge, nonce });
            answer = self
                .post_idempotent(START, Some(json(&body)?), &key, &mut retried)
                .await?;
        }
        answer.decode::<Verification>()
    }

    /// A POST that sends an SMS, with `Idempotency-Key: key`: after a transport failure it is
    /// sent once more, same key and body, unless `retried` says the call already did.
    async fn post_idempotent(
        &self,
        path: &str,
        body: Option<String>,
        key: &str,
        retried: &mut bool,
    ) -> Result<Answer, JsValue> {
        loop {
            match self
                .send(Method::Post, path, body.clone(), None, Some(key))
                .await
            {
                Err(SendError::Network(_)) if !*retried => *retried = true,
                other => return other.map_err(JsValue::from),
            }
        }
    }

    async fn check(&self, id: &JsValue, code: JsValue) -> Result<JsValue, JsValue> {
        let code = code
            .as_string()
            .filter(|c| c.len() <= 64)
            .ok_or_else(|| invalid("code must be a string"))?;
        let body = json(&CheckBody { code: &code })?;
        self.send(Method::Post, &path(id, "/check")?, Some(body), None, None)
            .await?
            .decode::<CheckResult>()
    }

    async fn wait_for_delivery(
        &self,
        id: &JsValue,
        options: Option<JsValue>,
    ) -> Result<JsValue, JsValue> {
        let path = path(id, "")?;
        let o: WaitForDeliveryOptions =
            crate::convert::options(options, "waitForDelivery options")?;
        let signal = present(o.signal);
        let interval = at_most(
            o.interval_ms.unwrap_or(DEFAULT_INTERVAL_MS),
            "intervalMs",
            MAX_INTERVAL_MS,
        )?
        .max(MIN_INTERVAL_MS);
        loop {
            abort_check(signal.as_ref())?;
            let answer = self
                .send(Method::Get, &path, None, signal.as_ref(), None)
                .await?;
            let (view, value): (Verification, _) = answer.typed()?;
            if view.delivery.state.is_terminal()
                || view.status != crate::types::VerificationStatus::Pending
            {
                return Ok(value);
            }
            sleep(f64::from(interval), signal.as_ref()).await?;
        }
    }

    /// One HTTP exchange through gloo-net, with `Idempotency-Key: key` if given. Transport
    /// failures are [`SendError::Network`] (or `aborted`).
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
        signal: Option<&JsValue>,
        key: Option<&str>,
    ) -> Result<Answer, SendError> {
        let url = format!("{}{path}", self.base);
        let mut builder = match method {
            Method::Get => Request::get(&url),
            Method::Post => Request::post(&url),
            Method::Delete => Request::delete(&url),
        }
        .header("accept", "application/json");
        if let Some(key) = &self.api_key {
            builder = builder.header("authorization", &format!("Bearer {key}"));
        }
        if let Some(key) = key {
            builder = builder.header("idempotency-key", key);
        }
        builder = builder.abort_signal(signal.map(JsCast::unchecked_ref));
        let request = match body {
            Some(body) => builder
                .header("content-type", "application/json")
                .body(body),
            None => builder.build(),
        }
        .map_err(|e| SendError::Other(invalid(&format!("cannot build the request: {e}"))))?;
        let response = match &self.fetch {
            None => request.send().await.map_err(transport)?,
            Some(fetch) => fetch_with(fetch, request).await?,
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok());
        let body = response.text().await.map_err(transport)?;
        Ok(Answer {
            status,
            body,
            retry_after,
        })
    }
}

/// The path of `POST` start.
const START: &str = "/v1/verifications";

/// A fresh `Idempotency-Key`: 16 bytes (128 bits) of the runtime's CSPRNG
/// (`crypto.getRandomValues` through `getrandom`), base64url without padding (22 characters).
///
/// # Errors
/// `internal` when the runtime has no CSPRNG (never so in browsers, Node >= 20 or workers).
pub(crate) fn idempotency_key() -> Result<String, JsValue> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|e| otp_error(ErrorCode::Internal, &format!("no random numbers: {e}")))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Why [`Inner::send`] got no answer.
enum SendError {
    /// The request or its answer was lost in transport (`network_error`): the issuer may or
    /// may not have seen it.
    Network(JsValue),
    /// Anything else (`aborted`, a request that cannot be built, `bad_response`).
    Other(JsValue),
}

impl From<SendError> for JsValue {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Network(e) | SendError::Other(e) => e,
        }
    }
}

/// Sends `request` with a `fetch` given in the options.
async fn fetch_with(fetch: &Function, request: Request) -> Result<Response, SendError> {
    let raw: web_sys::Request = request.into();
    let pending = fetch
        .call1(&JsValue::UNDEFINED, &raw)
        .map_err(js_transport)?;
    let response = JsFuture::from(Promise::resolve(&pending))
        .await
        .map_err(js_transport)?;
    if !response.is_object() {
        return Err(SendError::Other(otp_error(
            ErrorCode::BadResponse,
            "options.fetch did not resolve with a Response",
        )));
    }
    Ok(Response::from(
        response.unchecked_into::<web_sys::Response>(),
    ))
}

/// An HTTP answer of the issuer.
struct Answer {
    status: u16,
    body: String,
    /// `Retry-After` in seconds (a CORS page sees it only if the issuer exposes the header;
    /// the error body's `retry_after` is the fallback).
    retry_after: Option<u64>,
}

impl Answer {
    fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as a JS value (the runtime's `JSON.parse`: no JSON parser in the wasm).
    fn json(&self) -> Option<JsValue> {
        js_sys::JSON::parse(&self.body)
            .ok()
            .filter(JsValue::is_object)
    }

    /// The body decoded as `T` (every field checked by serde), with the JS object it was
    /// decoded from; a non-2xx answer is its error.
    fn typed<T: DeserializeOwned>(&self) -> Result<(T, JsValue), JsValue> {
        let value = self.object()?;
        let typed = from_js::<T>(value.clone(), "the issuer's answer").map_err(bad_response)?;
        Ok((typed, value))
    }

    /// The body of a 2xx answer as a JS object (the part of [`Self::typed`] that is the same
    /// for every `T`).
    fn object(&self) -> Result<JsValue, JsValue> {
        if !self.ok() {
            return Err(self.error());
        }
        self.json().ok_or_else(|| {
            otp_error(
                ErrorCode::BadResponse,
                "the issuer's answer is not a JSON object",
            )
        })
    }

    /// The body checked as `T` and returned as the issuer's own object: the issuer writes
    /// absent members as absent, never `null`, so it is the object the typings describe (a
    /// second conversion back from `T` cost 0.7 KB of gzipped wasm for the same object).
    fn decode<T: DeserializeOwned>(&self) -> Result<JsValue, JsValue> {
        self.typed::<T>().map(|(_, value)| value)
    }

    /// The `error` object of the API's error shape (`{"error": {...}}`), if the body is one.
    fn detail(&self) -> Option<IssuerError> {
        let error = Reflect::get(&self.json()?, &"error".into()).ok()?;
        serde_wasm_bindgen::from_value(error.is_object().then_some(error)?).ok()
    }

    /// The challenge of a `pow_required` answer.
    fn pow_challenge(&self) -> Option<String> {
        let detail = self.detail().filter(|_| !self.ok())?;
        (detail.code.as_deref() == Some(ErrorCode::PowRequired.as_str()))
            .then_some(detail.challenge)
            .flatten()
    }

    /// The `OtpError` of a non-2xx answer: the issuer's code, else one derived from the status.
    fn error(&self) -> JsValue {
        let detail = self.detail().unwrap_or_default();
        let code = detail.code.as_deref().filter(|c| is_code(c));
        let message = detail
            .message
            .clone()
            .unwrap_or_else(|| format!("the issuer answered HTTP {}", self.status));
        let fields = ErrorFields {
            code: code.unwrap_or(fallback_code(self.status).as_str()),
            status: Some(self.status),
            retry_after: self.retry_after.or(detail.retry_after),
            attempts_left: detail.attempts_left,
            request_id: detail.request_id.as_deref(),
            challenge: detail.challenge.as_deref(),
        };
        otp_error_with(&fields, &message)
    }
}

/// An answer that does not decode as its type: `bad_response` with serde's reason.
fn bad_response(invalid: JsValue) -> JsValue {
    let why = Reflect::get(&invalid, &"message".into())
        .ok()
        .and_then(|m| m.as_string())
        .unwrap_or_default();
    otp_error(ErrorCode::BadResponse, &why)
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

/// The JSON text of a request body: serialized with serde-wasm-bindgen, written by the
/// runtime's `JSON.stringify` (no JSON serializer in the wasm).
fn json<T: serde::Serialize>(value: &T) -> Result<String, JsValue> {
    js_sys::JSON::stringify(&to_js(value)?)?
        .as_string()
        .ok_or_else(|| otp_error(ErrorCode::Internal, "JSON.stringify failed"))
}

/// A transport failure of gloo-net: `aborted` for an `AbortError`, else `network_error`.
fn transport(err: gloo_net::Error) -> SendError {
    match err {
        gloo_net::Error::JsError(e) => failure(&e.name, &e.message),
        other => failure("", &other.to_string()),
    }
}

/// A transport failure of a `fetch` given in the options.
fn js_transport(err: JsValue) -> SendError {
    let text = |key: &str| {
        Reflect::get(&err, &key.into())
            .ok()
            .and_then(|v| v.as_string())
            .unwrap_or_default()
    };
    failure(&text("name"), &text("message"))
}

fn failure(name: &str, message: &str) -> SendError {
    match name {
        "AbortError" => SendError::Other(otp_error(ErrorCode::Aborted, "the request was aborted")),
        _ => SendError::Network(otp_error(
            ErrorCode::NetworkError,
            &format!("could not reach the issuer: {message}"),
        )),
    }
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
