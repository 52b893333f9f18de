//! Adapters: one per gateway wire format, behind [`Adapter`], one file per kind.
//!
//! - sms-gate.app (local or cloud/private), the phones first: `smsgate`.
//! - TextBee: `textbee`.
//! - otpgate's generic signed webhook: `webhook`.
//! - multiOTP SMSGatewayApp (the phone polls us): `multiotp`.
//! - The commercial fallbacks: `twilio` and `sns`, whose requests [`sigv4`] signs.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use super::Outgoing;
use super::config::{AuthMode, DeviceConfig, Kind, Mode, secret};
use crate::clock::Clock;

mod multiotp;
mod smsgate;
mod sns;
mod textbee;
mod twilio;
mod webhook;

pub mod sigv4;

pub(crate) use multiotp::MultiOtp;
pub use multiotp::Pending;
pub use smsgate::{TOKEN_SCOPES, TOKEN_TTL_SECS, smsgate_body};
pub use webhook::webhook_signature;

use sigv4::uri_encode;
use smsgate::{Auth, SmsGate, TokenSource};
use sns::Sns;
use textbee::TextBee;
use twilio::Twilio;
use webhook::SignedWebhook;

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

    /// The gateway's health answer (default: assumed healthy when the gateway has no health
    /// call; failed sends still open the circuit breaker).
    async fn health(&self) -> crate::gateway::health::PhoneHealth {
        crate::gateway::health::PhoneHealth::assumed_up()
    }

    /// Whether re-sending with the same message id is harmless (the gateway de-duplicates).
    /// Default: no, so a timed-out send is never retried blindly.
    fn idempotent(&self) -> bool {
        false
    }

    /// Whether [`Adapter::status`] asks the gateway (so `Ok(None)` means the gateway does
    /// not have the message). Default: no (`status` always answers `Ok(None)`).
    fn polls(&self) -> bool {
        false
    }

    /// Whether the gateway pushes delivery events (webhooks), so polling is only a safety
    /// net. Default: no.
    fn pushes_events(&self) -> bool {
        false
    }
}

/// The HTTP client of a device (its timeout, otpgate's user agent).
/// With `ca_file` its CAs are the only roots; with `cert_pin` only that key is accepted (both
/// were validated with the configuration: a file that became unreadable since is logged and
/// trusts nothing, never the system roots).
pub(crate) fn client(dev: &DeviceConfig) -> reqwest::Client {
    let timeout = Duration::from_millis(dev.timeout_ms.unwrap_or(5_000).clamp(100, 60_000));
    let mut b = reqwest::Client::builder()
        .connect_timeout(timeout.min(Duration::from_secs(3)))
        .timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(30))
        .user_agent(concat!("otpgate/", env!("CARGO_PKG_VERSION")));
    if let Some(pin) = dev.cert_pin.as_deref() {
        match crate::gateway::tls::Pin::parse(pin) {
            Ok(pin) => b = b.tls_backend_preconfigured(crate::gateway::tls::pinned_config(pin)),
            Err(e) => {
                tracing::error!(device = %dev.name, error = %e, "gateway: bad cert_pin");
                b = b.tls_certs_only(Vec::new());
            }
        }
    } else if let Some(ca) = dev.ca_file.as_deref() {
        let certs = crate::gateway::tls::read_ca_file(ca).unwrap_or_else(|e| {
            tracing::error!(device = %dev.name, error = %e, "gateway: bad ca_file");
            Vec::new()
        });
        b = b.tls_certs_only(certs);
    }
    b.build().unwrap_or_else(|e| {
        tracing::error!(device = %dev.name, error = %e, "gateway: HTTP client not built");
        reqwest::Client::new()
    })
}

/// The base of an sms-gate.app device's API: the phone's own server in local mode, the
/// `/3rdparty/v1` API of the cloud or a private server.
pub(crate) fn smsgate_base(dev: &DeviceConfig) -> String {
    let base = base_url(dev);
    match dev.mode {
        Mode::Local => base,
        Mode::Cloud if base.ends_with("/3rdparty/v1") => base,
        Mode::Cloud => format!("{base}/3rdparty/v1"),
    }
}

fn base_url(dev: &DeviceConfig) -> String {
    dev.url
        .as_deref()
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_owned()
}

/// Sends a request and reads the whole answer: its status and body.
async fn exchange(request: reqwest::RequestBuilder) -> Result<(u16, String), SendError> {
    let res = request
        .send()
        .await
        .map_err(|e| SendError::from_reqwest(&e))?;
    let status = res.status().as_u16();
    let text = res.text().await.map_err(|e| SendError::from_reqwest(&e))?;
    Ok((status, text))
}

/// A 2xx answer's JSON body (`null` when it is not JSON), or the error its status means.
fn json_answer(status: u16, text: &str) -> Result<Value, SendError> {
    if !(200..300).contains(&status) {
        return Err(SendError::from_status(status, text));
    }
    Ok(serde_json::from_str(text).unwrap_or(Value::Null))
}

/// `application/x-www-form-urlencoded` as HTML forms and Python's `urlencode` write it: the
/// unreserved characters as they are, a space as `+`, every other byte `%XX`. moto (which
/// re-encodes the parsed form to check a SigV4 signature) refused `%20` for a space.
fn form_encode(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| uri_encode(s, true).replace("%20", "+");
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The adapter of a device, and its queue when the phone polls us (multiOTP).
pub(crate) type Built = (Arc<dyn Adapter>, Option<Arc<MultiOtp>>);

/// Builds the adapter of a device (reads its secrets from the environment).
///
/// # Errors
/// A missing secret.
/// Builds the adapter of `dev`; a polling phone's outbox lives in `store`, sealed by `sealer`.
pub(crate) fn build(
    dev: &DeviceConfig,
    clock: Arc<dyn Clock>,
    store: &Arc<dyn crate::store::Store>,
    sealer: &Arc<super::queue::Sealer>,
) -> anyhow::Result<Built> {
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
            let base = smsgate_base(dev);
            let auth = match (dev.auth, &dev.username, password, token) {
                (AuthMode::Token, Some(u), Some(p), None) => Auth::Token(TokenSource::new(
                    http.clone(),
                    base.clone(),
                    dev.name.clone(),
                    u.clone(),
                    p,
                )),
                (AuthMode::Token, ..) => anyhow::bail!(
                    "{}: auth = \"token\" needs username and password_env, and no token_env",
                    what("auth")
                ),
                (AuthMode::Basic, Some(u), Some(p), _) => Auth::Basic(u.clone(), p),
                (AuthMode::Basic, _, _, Some(t)) => Auth::Bearer(t),
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
                device: dev.name.clone(),
                store: store.clone(),
                sealer: sealer.clone(),
                clock,
            });
            return Ok((q.clone(), Some(q)));
        }
    };
    Ok((adapter, None))
}

#[cfg(test)]
mod tests {
    use super::*;

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
