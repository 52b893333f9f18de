//! Adapters: one per gateway wire format, behind [`Adapter`].

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use otpgate_core::wire::smsgate::{MessageState, SendMessage, TextMessage};
use serde_json::{Value, json};

use super::Outgoing;
use super::config::{DeviceConfig, Kind, Mode, Secret, secret};
use super::crypto;
use crate::clock::Clock;

/// Where a message is, as a gateway reports it.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum RemoteState {
    /// Accepted, not yet sent (`Pending`, `Processed`).
    Accepted,
    /// Sent by the phone / provider.
    Sent,
    /// Delivery confirmed.
    Delivered,
    /// Failed, with the gateway's reason.
    Failed(String),
}

/// A send the gateway accepted.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Accepted {
    /// The gateway's own id when it differs from ours (TextBee batch, Twilio SID, SNS id).
    pub remote_id: Option<String>,
    /// The state it reported.
    pub state: RemoteState,
}

impl Accepted {
    /// Taken under our own message id, in `state`.
    pub fn ours(state: RemoteState) -> Self {
        Self {
            remote_id: None,
            state,
        }
    }
}

/// Why a send did not go through.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The gateway refused the message (4xx other than 409/429): another route may work.
    #[error("rejected by the gateway ({status}): {detail}")]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// A short reason (never the text or the number).
        detail: String,
    },
    /// The gateway answered that it cannot take it now (429, 5xx) or could not be reached
    /// (connection refused): the message was certainly not accepted.
    #[error("gateway unavailable: {0}")]
    Unavailable(String),
    /// No answer in time: the gateway may or may not have accepted the message.
    #[error("gateway timed out")]
    Timeout,
    /// The connection broke after the request started and before any answer: the gateway
    /// may or may not have read it (a reset on connect is the usual case).
    #[error("gateway connection broken")]
    Interrupted,
}

impl SendError {
    /// A stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Rejected { .. } => "gateway_rejected",
            Self::Unavailable(_) => "gateway_unavailable",
            Self::Timeout => "gateway_timeout",
            Self::Interrupted => "gateway_interrupted",
        }
    }

    /// Whether the gateway may have accepted the message anyway.
    pub fn ambiguous(&self) -> bool {
        matches!(self, Self::Timeout | Self::Interrupted)
    }

    fn from_reqwest(e: &reqwest::Error) -> Self {
        if e.is_timeout() {
            Self::Timeout
        } else if e.is_connect() {
            Self::Unavailable("connection failed".into())
        } else if e.is_request() || e.is_body() {
            // The request may have reached the gateway before the connection broke.
            Self::Interrupted
        } else {
            Self::Unavailable("transport error".into())
        }
    }

    fn from_status(status: u16, body: &str) -> Self {
        let detail: String = serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_default()
            .chars()
            .take(120)
            .collect();
        if status == 429 || status >= 500 {
            Self::Unavailable(format!("HTTP {status} {detail}"))
        } else {
            Self::Rejected { status, detail }
        }
    }
}

/// One gateway wire format.
#[async_trait]
pub trait Adapter: Send + Sync + 'static {
    /// Hands one message to the gateway.
    async fn send(&self, msg: &Outgoing) -> Result<Accepted, SendError>;

    /// The state of a message sent before (`None`: unknown to the gateway, or the gateway
    /// has no status call, the default).
    async fn status(
        &self,
        _message_id: &str,
        _remote_id: Option<&str>,
    ) -> Result<Option<RemoteState>, SendError> {
        Ok(None)
    }

    /// Whether the gateway answers and says it is fine (default: assumed healthy when the
    /// gateway has no health call; failed sends still open the circuit breaker).
    async fn health(&self) -> bool {
        true
    }

    /// Whether re-sending with the same message id is harmless (the gateway de-duplicates).
    /// Default: no, so a timed-out send is never retried blindly.
    fn idempotent(&self) -> bool {
        false
    }

    /// Whether the gateway pushes delivery events (webhooks), so polling is only a safety
    /// net. Default: no.
    fn pushes_events(&self) -> bool {
        false
    }
}

fn client(dev: &DeviceConfig) -> reqwest::Client {
    let timeout = Duration::from_millis(dev.timeout_ms.unwrap_or(5_000).clamp(100, 60_000));
    reqwest::Client::builder()
        .connect_timeout(timeout.min(Duration::from_secs(3)))
        .timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(30))
        .user_agent(concat!("otpgate/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

fn base_url(dev: &DeviceConfig) -> String {
    dev.url
        .as_deref()
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_owned()
}

/// The adapter of a device, and its queue when the phone polls us (multiOTP).
pub(crate) type Built = (Arc<dyn Adapter>, Option<Arc<MultiOtp>>);

/// Builds the adapter of a device (reads its secrets from the environment).
///
/// # Errors
/// A missing secret.
pub(crate) fn build(dev: &DeviceConfig, clock: Arc<dyn Clock>) -> anyhow::Result<Built> {
    let what = |f: &str| format!("gateways.devices[{}].{f}", dev.name);
    let password = secret(
        &dev.literal.password,
        &dev.password_env,
        &what("password_env"),
    )?;
    let token = secret(&dev.literal.token, &dev.token_env, &what("token_env"))?;
    let http = client(dev);
    let base = base_url(dev);
    let adapter: Arc<dyn Adapter> = match dev.kind {
        Kind::SmsGate => {
            let base = match dev.mode {
                Mode::Local => base,
                Mode::Cloud if base.ends_with("/3rdparty/v1") => base,
                Mode::Cloud => format!("{base}/3rdparty/v1"),
            };
            let auth = match (&dev.username, password, token) {
                (Some(u), Some(p), _) => Auth::Basic(u.clone(), p),
                (_, _, Some(t)) => Auth::Bearer(t),
                _ => anyhow::bail!("{}: credentials required", what("username")),
            };
            let passphrase = secret(
                &dev.literal.passphrase,
                &dev.encryption_passphrase_env,
                &what("encryption_passphrase_env"),
            )?;
            Arc::new(SmsGate {
                http,
                base,
                auth,
                sim: dev.sim,
                device_id: dev.device_id.clone(),
                passphrase,
            })
        }
        Kind::TextBee => Arc::new(TextBee {
            http,
            base,
            device_id: dev.device_id.clone().unwrap_or_default(),
            key: token.ok_or_else(|| anyhow::anyhow!("{}: required", what("token_env")))?,
            sim: dev.sim,
        }),
        Kind::Webhook => Arc::new(SignedWebhook {
            http,
            url: base,
            key: secret(
                &dev.literal.signing_key,
                &dev.signing_key_env,
                &what("signing_key_env"),
            )?
            .ok_or_else(|| anyhow::anyhow!("{}: required", what("signing_key_env")))?,
            clock,
        }),
        Kind::Twilio => Arc::new(Twilio {
            http,
            base,
            sid: dev.username.clone().unwrap_or_default(),
            token: password.ok_or_else(|| anyhow::anyhow!("{}: required", what("password_env")))?,
            from: dev.from.clone().unwrap_or_default(),
        }),
        Kind::Sns => {
            let region = dev.region.clone().unwrap_or_default();
            let url = if base.is_empty() {
                format!("https://sns.{region}.amazonaws.com")
            } else {
                base
            };
            Arc::new(Sns {
                http,
                url,
                region,
                access_key: dev.username.clone().unwrap_or_default(),
                secret_key: password
                    .ok_or_else(|| anyhow::anyhow!("{}: required", what("password_env")))?,
                clock,
            })
        }
        Kind::MultiOtp => {
            let q = Arc::new(MultiOtp {
                queue: Mutex::new(VecDeque::new()),
                clock,
            });
            return Ok((q.clone(), Some(q)));
        }
    };
    Ok((adapter, None))
}

enum Auth {
    Basic(String, Secret),
    Bearer(Secret),
}

impl Auth {
    fn apply(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Self::Basic(u, p) => rb.basic_auth(u, Some(p.expose())),
            Self::Bearer(t) => rb.bearer_auth(t.expose()),
        }
    }
}

/// sms-gate.app (local or cloud/private).
struct SmsGate {
    http: reqwest::Client,
    base: String,
    auth: Auth,
    sim: Option<u8>,
    device_id: Option<String>,
    passphrase: Option<Secret>,
}

fn map_smsgate(state: &MessageState) -> RemoteState {
    match state.state.as_str() {
        "Sent" => RemoteState::Sent,
        "Delivered" => RemoteState::Delivered,
        "Failed" | "Cancelled" | "Cancelling" => RemoteState::Failed(
            state
                .recipients
                .iter()
                .find_map(|r| r.error.clone())
                .unwrap_or_else(|| state.state.to_lowercase()),
        ),
        _ => RemoteState::Accepted,
    }
}

/// The sms-gate.app send body for `msg` (encrypted when a passphrase is given).
pub fn smsgate_body(
    msg: &Outgoing,
    sim: Option<u8>,
    device_id: Option<String>,
    passphrase: Option<&str>,
) -> SendMessage {
    let (text, phone, encrypted) = match passphrase {
        Some(p) => {
            let salt = |n: u8| -> [u8; 16] {
                let b = crate::random::bytes(16).unwrap_or_else(|_| vec![n; 16]);
                let mut a = [0u8; 16];
                a.copy_from_slice(&b);
                a
            };
            (
                crypto::encrypt(p, &msg.text, &salt(1), crypto::DEFAULT_ITERATIONS),
                crypto::encrypt(p, &msg.phone, &salt(2), crypto::DEFAULT_ITERATIONS),
                true,
            )
        }
        None => (msg.text.clone(), msg.phone.clone(), false),
    };
    SendMessage {
        id: Some(msg.message_id.clone()),
        device_id,
        text_message: Some(TextMessage { text }),
        phone_numbers: vec![phone],
        is_encrypted: encrypted,
        sim_number: sim,
        with_delivery_report: Some(true),
        priority: Some(100),
        ttl: Some(msg.ttl_secs.max(5)),
        ..SendMessage::default()
    }
}

#[async_trait]
impl Adapter for SmsGate {
    async fn send(&self, msg: &Outgoing) -> Result<Accepted, SendError> {
        let pass = self.passphrase.as_ref().map(|p| p.expose().to_owned());
        let (m, sim, dev) = (msg.clone(), self.sim, self.device_id.clone());
        // PBKDF2 with 75 000 rounds is CPU work: keep it off the async threads.
        let body = tokio::task::spawn_blocking(move || smsgate_body(&m, sim, dev, pass.as_deref()))
            .await
            .map_err(|_| SendError::Unavailable("encryption task failed".into()))?;
        let res = self
            .auth
            .apply(self.http.post(format!("{}/messages", self.base)))
            .json(&body)
            .send()
            .await
            .map_err(|e| SendError::from_reqwest(&e))?;
        let status = res.status().as_u16();
        let text = res.text().await.map_err(|e| SendError::from_reqwest(&e))?;
        match status {
            200..=299 => {
                let state = serde_json::from_str::<MessageState>(&text)
                    .map(|s| map_smsgate(&s))
                    .unwrap_or(RemoteState::Accepted);
                Ok(Accepted::ours(state))
            }
            // The same id was accepted before: this send is already with the phone.
            409 => Ok(Accepted::ours(RemoteState::Accepted)),
            s => Err(SendError::from_status(s, &text)),
        }
    }

    async fn status(
        &self,
        message_id: &str,
        _remote: Option<&str>,
    ) -> Result<Option<RemoteState>, SendError> {
        let res = self
            .auth
            .apply(
                self.http
                    .get(format!("{}/messages/{message_id}", self.base)),
            )
            .send()
            .await
            .map_err(|e| SendError::from_reqwest(&e))?;
        let status = res.status().as_u16();
        if status == 404 {
            return Ok(None);
        }
        let text = res.text().await.map_err(|e| SendError::from_reqwest(&e))?;
        if !(200..300).contains(&status) {
            return Err(SendError::from_status(status, &text));
        }
        let state: MessageState = serde_json::from_str(&text)
            .map_err(|_| SendError::Unavailable("unreadable message state".into()))?;
        Ok(Some(map_smsgate(&state)))
    }

    async fn health(&self) -> bool {
        let Ok(res) = self.http.get(format!("{}/health", self.base)).send().await else {
            return false;
        };
        if !res.status().is_success() {
            return false;
        }
        res.json::<Value>()
            .await
            .is_ok_and(|v| v.get("status").and_then(Value::as_str) != Some("fail"))
    }

    fn idempotent(&self) -> bool {
        true
    }

    fn pushes_events(&self) -> bool {
        true
    }
}

/// TextBee.
struct TextBee {
    http: reqwest::Client,
    base: String,
    device_id: String,
    key: Secret,
    sim: Option<u8>,
}

// TextBee reports through its webhooks; its status calls need the per-SMS id, which the send
// answer does not carry, so `status` keeps the default (unknown).
#[async_trait]
impl Adapter for TextBee {
    async fn send(&self, msg: &Outgoing) -> Result<Accepted, SendError> {
        let mut body = json!({"message": msg.text, "recipients": [msg.phone]});
        if let Some(s) = self.sim {
            body["simSubscriptionId"] = json!(s);
        }
        let res = self
            .http
            .post(format!(
                "{}/gateway/devices/{}/send-sms",
                self.base, self.device_id
            ))
            .header("x-api-key", self.key.expose())
            .json(&body)
            .send()
            .await
            .map_err(|e| SendError::from_reqwest(&e))?;
        let status = res.status().as_u16();
        let text = res.text().await.map_err(|e| SendError::from_reqwest(&e))?;
        if !(200..300).contains(&status) {
            return Err(SendError::from_status(status, &text));
        }
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let ok = v
            .pointer("/data/success")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        if !ok {
            return Err(SendError::Rejected {
                status,
                detail: "success: false".into(),
            });
        }
        let batch = v
            .pointer("/data/smsBatchId")
            .and_then(Value::as_str)
            .map(str::to_owned);
        Ok(Accepted {
            remote_id: batch,
            state: RemoteState::Accepted,
        })
    }

    fn pushes_events(&self) -> bool {
        true
    }
}

/// The signature of a generic webhook call: `hex(HMAC-SHA256(key, timestamp + "." + body))`.
pub fn webhook_signature(key: &str, timestamp: &str, body: &[u8]) -> String {
    // sign_smsgate signs body ‖ ts; here the order is ts ‖ "." ‖ body, so build it directly.
    let mut msg = Vec::with_capacity(timestamp.len() + 1 + body.len());
    msg.extend_from_slice(timestamp.as_bytes());
    msg.push(b'.');
    msg.extend_from_slice(body);
    otpgate_core::webhook::sign_textbee(key, &msg)
}

/// A generic signed webhook: `POST {url}` `{id, to, text, ttl}` with `X-Otpgate-Timestamp`
/// and `X-Otpgate-Signature`; the receiver de-duplicates on `id`.
struct SignedWebhook {
    http: reqwest::Client,
    url: String,
    key: Secret,
    clock: Arc<dyn Clock>,
}

#[async_trait]
impl Adapter for SignedWebhook {
    async fn send(&self, msg: &Outgoing) -> Result<Accepted, SendError> {
        let body =
            json!({"id": msg.message_id, "to": msg.phone, "text": msg.text, "ttl": msg.ttl_secs})
                .to_string();
        let ts = self.clock.now_secs().to_string();
        let sig = webhook_signature(self.key.expose(), &ts, body.as_bytes());
        let res = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("X-Otpgate-Timestamp", ts)
            .header("X-Otpgate-Signature", sig)
            .body(body)
            .send()
            .await
            .map_err(|e| SendError::from_reqwest(&e))?;
        let status = res.status().as_u16();
        let text = res.text().await.unwrap_or_default();
        match status {
            200..=299 | 409 => Ok(Accepted::ours(RemoteState::Accepted)),
            s => Err(SendError::from_status(s, &text)),
        }
    }

    fn idempotent(&self) -> bool {
        true
    }

    fn pushes_events(&self) -> bool {
        true
    }
}

/// Twilio Messages API (fallback).
struct Twilio {
    http: reqwest::Client,
    base: String,
    sid: String,
    token: Secret,
    from: String,
}

#[async_trait]
impl Adapter for Twilio {
    async fn send(&self, msg: &Outgoing) -> Result<Accepted, SendError> {
        let validity = msg.ttl_secs.clamp(1, 14_400).to_string();
        let sender = if self.from.starts_with("MG") {
            "MessagingServiceSid"
        } else {
            "From"
        };
        let form = form_encode(&[
            ("To", msg.phone.as_str()),
            (sender, self.from.as_str()),
            ("Body", msg.text.as_str()),
            ("ValidityPeriod", validity.as_str()),
        ]);
        let res = self
            .http
            .post(format!(
                "{}/2010-04-01/Accounts/{}/Messages.json",
                self.base, self.sid
            ))
            .basic_auth(&self.sid, Some(self.token.expose()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .map_err(|e| SendError::from_reqwest(&e))?;
        let status = res.status().as_u16();
        let text = res.text().await.map_err(|e| SendError::from_reqwest(&e))?;
        if !(200..300).contains(&status) {
            return Err(SendError::from_status(status, &text));
        }
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let sid = v.get("sid").and_then(Value::as_str).map(str::to_owned);
        Ok(Accepted {
            remote_id: sid,
            state: twilio_state(v.get("status").and_then(Value::as_str)),
        })
    }

    async fn status(
        &self,
        _id: &str,
        remote: Option<&str>,
    ) -> Result<Option<RemoteState>, SendError> {
        let Some(sid) = remote else { return Ok(None) };
        let res = self
            .http
            .get(format!(
                "{}/2010-04-01/Accounts/{}/Messages/{sid}.json",
                self.base, self.sid
            ))
            .basic_auth(&self.sid, Some(self.token.expose()))
            .send()
            .await
            .map_err(|e| SendError::from_reqwest(&e))?;
        if res.status().as_u16() == 404 {
            return Ok(None);
        }
        let v: Value = res.json().await.map_err(|e| SendError::from_reqwest(&e))?;
        Ok(Some(twilio_state(v.get("status").and_then(Value::as_str))))
    }
}

fn twilio_state(s: Option<&str>) -> RemoteState {
    match s {
        Some("sent") => RemoteState::Sent,
        Some("delivered") => RemoteState::Delivered,
        Some(f @ ("failed" | "undelivered" | "canceled")) => RemoteState::Failed(f.to_owned()),
        _ => RemoteState::Accepted,
    }
}

/// AWS SNS `Publish` to a phone number (fallback), signed with SigV4.
struct Sns {
    http: reqwest::Client,
    url: String,
    region: String,
    access_key: String,
    secret_key: Secret,
    clock: Arc<dyn Clock>,
}

fn form_encode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                sigv4::uri_encode(k, true),
                sigv4::uri_encode(v, true)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[async_trait]
impl Adapter for Sns {
    async fn send(&self, msg: &Outgoing) -> Result<Accepted, SendError> {
        let body = form_encode(&[
            ("Action", "Publish"),
            ("Message", &msg.text),
            ("MessageAttributes.entry.1.Name", "AWS.SNS.SMS.SMSType"),
            ("MessageAttributes.entry.1.Value.DataType", "String"),
            (
                "MessageAttributes.entry.1.Value.StringValue",
                "Transactional",
            ),
            ("PhoneNumber", &msg.phone),
            ("Version", "2010-03-31"),
        ]);
        let url = reqwest::Url::parse(&self.url).map_err(|_| SendError::Rejected {
            status: 0,
            detail: "bad url".into(),
        })?;
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            _ => {
                return Err(SendError::Rejected {
                    status: 0,
                    detail: "bad url".into(),
                });
            }
        };
        let amz_date = sigv4::amz_date(self.clock.now_ms());
        let content_type = "application/x-www-form-urlencoded; charset=utf-8";
        let headers = [
            ("content-type", content_type),
            ("host", host.as_str()),
            ("x-amz-date", amz_date.as_str()),
        ];
        let path = if url.path().is_empty() {
            "/"
        } else {
            url.path()
        };
        let auth = sigv4::authorization(&sigv4::Request {
            method: "POST",
            path,
            query: "",
            headers: &headers,
            payload: body.as_bytes(),
            access_key: &self.access_key,
            secret_key: self.secret_key.expose(),
            region: &self.region,
            service: "sns",
            amz_date: &amz_date,
        });
        let res = self
            .http
            .post(self.url.as_str())
            .header("content-type", content_type)
            .header("x-amz-date", amz_date)
            .header("authorization", auth)
            .body(body)
            .send()
            .await
            .map_err(|e| SendError::from_reqwest(&e))?;
        let status = res.status().as_u16();
        let text = res.text().await.map_err(|e| SendError::from_reqwest(&e))?;
        if !(200..300).contains(&status) {
            let code = text
                .split("<Code>")
                .nth(1)
                .and_then(|s| s.split('<').next())
                .unwrap_or("")
                .to_owned();
            return Err(if status >= 500 || status == 429 || code == "Throttling" {
                SendError::Unavailable(format!("HTTP {status} {code}"))
            } else {
                SendError::Rejected {
                    status,
                    detail: code,
                }
            });
        }
        let id = text
            .split("<MessageId>")
            .nth(1)
            .and_then(|s| s.split('<').next())
            .map(str::to_owned);
        // SNS reports no delivery without CloudWatch logs: "sent" is the most it says.
        Ok(Accepted {
            remote_id: id,
            state: RemoteState::Sent,
        })
    }
}

/// One message waiting for a multiOTP phone to pick it up.
#[derive(Clone, Debug)]
pub struct Pending {
    /// Our message id.
    pub id: String,
    /// The destination.
    pub to: String,
    /// The text.
    pub content: String,
    /// When it stops being worth sending, Unix ms.
    pub expires_at_ms: i64,
}

/// multiOTP SMSGatewayApp: the phone polls us; sending queues the message.
pub(crate) struct MultiOtp {
    queue: Mutex<VecDeque<Pending>>,
    clock: Arc<dyn Clock>,
}

impl MultiOtp {
    /// Takes every message still alive (expired ones are dropped, never handed out).
    pub(crate) fn drain(&self) -> (Vec<Pending>, Vec<Pending>) {
        let now = self.clock.now_ms();
        let mut q = self
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        q.drain(..).partition(|p| p.expires_at_ms > now + 1_000)
    }

    /// Puts a message back (taken before the pool finished recording it).
    pub(crate) fn requeue(&self, p: Pending) {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push_back(p);
    }
}

#[async_trait]
impl Adapter for MultiOtp {
    async fn send(&self, msg: &Outgoing) -> Result<Accepted, SendError> {
        let now = self.clock.now_ms();
        let mut q = self
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if q.iter().any(|p| p.id == msg.message_id) {
            return Ok(Accepted::ours(RemoteState::Accepted));
        }
        if q.len() >= 10_000 {
            return Err(SendError::Unavailable("queue full".into()));
        }
        q.push_back(Pending {
            id: msg.message_id.clone(),
            to: msg.phone.clone(),
            content: msg.text.clone(),
            expires_at_ms: now.saturating_add(
                i64::try_from(msg.ttl_secs)
                    .unwrap_or(0)
                    .saturating_mul(1000),
            ),
        });
        Ok(Accepted::ours(RemoteState::Accepted))
    }

    fn idempotent(&self) -> bool {
        true
    }

    fn pushes_events(&self) -> bool {
        true
    }
}

/// AWS Signature Version 4, by hand (checked against AWS's published test vector).
pub mod sigv4 {
    use hmac::{Hmac, KeyInit, Mac};
    use sha2::{Digest, Sha256};

    /// What is signed.
    #[derive(Debug)]
    pub struct Request<'a> {
        /// `GET`, `POST`...
        pub method: &'a str,
        /// The URI path (already encoded).
        pub path: &'a str,
        /// The canonical query string (sorted, encoded), or empty.
        pub query: &'a str,
        /// Headers to sign, lower-case names (must include `host` and `x-amz-date`).
        pub headers: &'a [(&'a str, &'a str)],
        /// The body.
        pub payload: &'a [u8],
        /// The access key id.
        pub access_key: &'a str,
        /// The secret key.
        pub secret_key: &'a str,
        /// The region.
        pub region: &'a str,
        /// The service (`sns`).
        pub service: &'a str,
        /// `YYYYMMDDTHHMMSSZ`.
        pub amz_date: &'a str,
    }

    fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        m.update(data);
        m.finalize().into_bytes().to_vec()
    }

    /// `YYYYMMDDTHHMMSSZ` for Unix ms.
    pub fn amz_date(ms: i64) -> String {
        let s = crate::clock::rfc3339(ms);
        s.replace(['-', ':'], "")
    }

    /// RFC 3986 encoding as SigV4 wants it (`/` kept when `slash` is false).
    pub fn uri_encode(s: &str, slash: bool) -> String {
        let mut out = String::with_capacity(s.len());
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    out.push(char::from(b))
                }
                b'/' if !slash => out.push('/'),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
        out
    }

    /// The `Authorization` header value.
    pub fn authorization(r: &Request<'_>) -> String {
        let mut headers: Vec<(String, String)> = r
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_ascii_lowercase(),
                    v.split_whitespace().collect::<Vec<_>>().join(" "),
                )
            })
            .collect();
        headers.sort();
        let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
        let signed: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
        let signed = signed.join(";");
        let canonical = format!(
            "{}\n{}\n{}\n{}\n{}\n{}",
            r.method,
            r.path,
            r.query,
            canonical_headers,
            signed,
            hex::encode(Sha256::digest(r.payload))
        );
        let date = &r.amz_date[..8.min(r.amz_date.len())];
        let scope = format!("{date}/{}/{}/aws4_request", r.region, r.service);
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
            r.amz_date,
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let k = hmac(format!("AWS4{}", r.secret_key).as_bytes(), date.as_bytes());
        let k = hmac(&k, r.region.as_bytes());
        let k = hmac(&k, r.service.as_bytes());
        let k = hmac(&k, b"aws4_request");
        let sig = hex::encode(hmac(&k, to_sign.as_bytes()));
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={sig}",
            r.access_key
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigv4_matches_the_aws_test_suite_get_vanilla() {
        // aws-sig-v4-test-suite/get-vanilla: GET / with host and x-amz-date headers.
        let headers = [
            ("host", "example.amazonaws.com"),
            ("x-amz-date", "20150830T123600Z"),
        ];
        let auth = sigv4::authorization(&sigv4::Request {
            method: "GET",
            path: "/",
            query: "",
            headers: &headers,
            payload: b"",
            access_key: "AKIDEXAMPLE",
            secret_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            region: "us-east-1",
            service: "service",
            amz_date: "20150830T123600Z",
        });
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
        assert_eq!(sigv4::amz_date(1_440_938_160_000), "20150830T123600Z");
        assert_eq!(sigv4::uri_encode("+1 555/é", true), "%2B1%20555%2F%C3%A9");
    }

    #[test]
    fn smsgate_body_is_the_otp_shape() {
        let msg = Outgoing {
            message_id: "v_x.1.1".into(),
            phone: "+15551234567".into(),
            text: "code 123456".into(),
            ttl_secs: 3,
            segments: 1,
        };
        let b = smsgate_body(&msg, Some(2), None, None);
        let v = serde_json::to_value(&b).expect("json");
        assert_eq!(
            v,
            json!({"id": "v_x.1.1", "textMessage": {"text": "code 123456"}, "phoneNumbers": ["+15551234567"],
                   "simNumber": 2, "withDeliveryReport": true, "priority": 100, "ttl": 5})
        );
        let e = smsgate_body(&msg, None, None, Some("pw"));
        assert!(e.is_encrypted);
        assert_eq!(
            crypto::decrypt("pw", &e.phone_numbers[0]).as_deref(),
            Ok("+15551234567")
        );
        assert_eq!(
            e.text_message.map(|t| crypto::decrypt("pw", &t.text)),
            Some(Ok("code 123456".to_owned()))
        );
    }

    #[test]
    fn status_errors_classify() {
        assert!(matches!(
            SendError::from_status(400, r#"{"message":"bad"}"#),
            SendError::Rejected { status: 400, .. }
        ));
        assert!(matches!(
            SendError::from_status(503, ""),
            SendError::Unavailable(_)
        ));
        assert!(matches!(
            SendError::from_status(429, ""),
            SendError::Unavailable(_)
        ));
        assert!(SendError::Timeout.ambiguous());
        assert_eq!(SendError::Timeout.code(), "gateway_timeout");
        assert!(SendError::Interrupted.ambiguous());
    }
}
