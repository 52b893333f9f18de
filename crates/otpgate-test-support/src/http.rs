//! HTTP for the process tests: one client for many concurrent loopback requests, requests
//! bounded in time, answers read whole.

use std::time::{Duration, Instant};

use otpgate_core::receipt::Jwks;
use serde_json::Value;

/// One HTTP answer.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The `Retry-After` header.
    pub retry_after: Option<String>,
    /// The body as JSON (`Null` when it is not JSON).
    pub body: Value,
    /// How long the request took.
    pub took: Duration,
}

impl Answer {
    /// The error code of the one error shape, or "".
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

/// A test's HTTP client. Every request is bounded (60 s unless the request sets its own), so
/// a server that stops answering fails the test instead of hanging it.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(60))
        .no_proxy()
        .build()
        .unwrap()
}

/// Sends `req` under `bound`: `Err` for a transport error (including the bound passing).
pub async fn send(req: reqwest::RequestBuilder, bound: Duration) -> Result<Answer, reqwest::Error> {
    let t = Instant::now();
    let res = req.timeout(bound).send().await?;
    let status = res.status().as_u16();
    let retry_after = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = res.bytes().await?;
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok(Answer {
        status,
        retry_after,
        body,
        took: t.elapsed(),
    })
}

/// GETs `url` under `bound` and reads the answer as JSON; panics on a transport error or a
/// body that is not JSON.
pub async fn get_within(http: &reqwest::Client, url: &str, bound: Duration) -> Value {
    let res = http.get(url).timeout(bound).send().await.unwrap();
    res.json().await.unwrap()
}

/// The JWKS an issuer publishes.
pub async fn jwks(http: &reqwest::Client, base: &str) -> Jwks {
    let url = format!("{base}/.well-known/jwks.json");
    serde_json::from_value(get_within(http, &url, Duration::from_secs(10)).await).unwrap()
}

/// POSTs `body` as JSON to `url`: the status and the answer's body as JSON (`Null` when it
/// is not JSON). Panics on a transport error.
pub async fn post_json(http: &reqwest::Client, url: &str, body: &Value) -> (u16, Value) {
    let res = http.post(url).json(body).send().await.unwrap();
    let status = res.status().as_u16();
    let bytes = res.bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// GETs `url` and reads the answer as JSON; panics on a transport error or a body that is
/// not JSON.
pub async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    http.get(url).send().await.unwrap().json().await.unwrap()
}

/// Starts a verification: `POST BASE/v1/verifications` with `{"phone": PHONE}`; the status
/// and the body.
pub async fn start(http: &reqwest::Client, base: &str, phone: &str) -> (u16, Value) {
    post_json(
        http,
        &format!("{base}/v1/verifications"),
        &serde_json::json!({ "phone": phone }),
    )
    .await
}

/// Checks a code: `POST BASE/v1/verifications/ID/check` with `{"code": CODE}`; the status
/// and the body.
pub async fn check(http: &reqwest::Client, base: &str, id: &str, code: &str) -> (u16, Value) {
    post_json(
        http,
        &format!("{base}/v1/verifications/{id}/check"),
        &serde_json::json!({ "code": code }),
    )
    .await
}

/// GETs `url` and reads the answer as text (`/metrics`); panics on a transport error.
pub async fn get_text(http: &reqwest::Client, url: &str) -> String {
    http.get(url).send().await.unwrap().text().await.unwrap()
}

/// [`send`]s a start for the app `shop`: `POST BASE/v1/verifications` with
/// `{"phone": PHONE, "app": "shop"}`, under `bound`.
pub async fn send_start(
    http: &reqwest::Client,
    base: &str,
    phone: &str,
    bound: Duration,
) -> Result<Answer, reqwest::Error> {
    let body = serde_json::json!({"phone": phone, "app": "shop"});
    send(
        http.post(format!("{base}/v1/verifications")).json(&body),
        bound,
    )
    .await
}

/// [`send`]s a check: `POST BASE/v1/verifications/ID/check` with `{"code": CODE}`, under
/// `bound`.
pub async fn send_check(
    http: &reqwest::Client,
    base: &str,
    id: &str,
    code: &str,
    bound: Duration,
) -> Result<Answer, reqwest::Error> {
    let url = format!("{base}/v1/verifications/{id}/check");
    send(
        http.post(url).json(&serde_json::json!({ "code": code })),
        bound,
    )
    .await
}

/// GETs `url` with Basic auth `user:password` and reads the answer as JSON; panics on a
/// transport error or a body that is not JSON.
pub async fn get_json_auth(http: &reqwest::Client, url: &str, user: &str, password: &str) -> Value {
    let res = http.get(url).basic_auth(user, Some(password)).send().await;
    res.unwrap().json().await.unwrap()
}

/// GETs `url`: the status; panics on a transport error.
pub async fn get_status(http: &reqwest::Client, url: &str) -> u16 {
    http.get(url).send().await.unwrap().status().as_u16()
}
