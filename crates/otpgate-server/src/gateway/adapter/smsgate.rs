//! sms-gate.app (local or cloud/private): the phones.
//!
//! Cloud and private servers may be reached with token auth (`auth = "token"`): the account
//! password obtains a short-lived JWT (`POST /auth/token`, Basic) with only the scopes
//! otpgate's calls need ([`TOKEN_SCOPES`]); the JWT is the bearer of every send and status
//! call; it is renewed before it expires with the refresh token (`POST /auth/token/refresh`,
//! the refresh token as the bearer), or with the password when the refresh token is refused;
//! a call answered 401 is retried once with a fresh token. Tokens live only in memory
//! (zeroized on drop) and are never logged.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use otpgate_core::wire::smsgate::{HealthResponse, MessageState, SendMessage, TextMessage};
use serde::Deserialize;
use serde_json::json;
use zeroize::Zeroizing;

use super::{Accepted, Adapter, RemoteState, SendError, exchange};
use crate::gateway::Outgoing;
use crate::gateway::config::Secret;
use crate::gateway::crypto;
use crate::gateway::health::PhoneHealth;

/// The scopes of otpgate's token: sending (`POST /messages`) and reading a message's state
/// (`GET /messages/{id}`), nothing more. `GET /health` needs none (it is open).
pub const TOKEN_SCOPES: [&str; 2] = ["messages:send", "messages:read"];

/// The lifetime otpgate asks for, seconds (the server caps it at its `jwt.access_ttl`, 15 min
/// by default; a refreshed token lives that server setting).
pub const TOKEN_TTL_SECS: u64 = 600;

/// Renewal starts this long before expiry at most (half the lifetime for shorter tokens).
const RENEW_MARGIN: Duration = Duration::from_secs(60);

pub(super) enum Auth {
    Basic(String, Secret),
    Bearer(Secret),
    Token(TokenSource),
}

impl Auth {
    fn apply(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Self::Basic(u, p) => rb.basic_auth(u, Some(p.expose())),
            Self::Bearer(t) => rb.bearer_auth(t.expose()),
            // Never reached: token calls go through `TokenSource::current`.
            Self::Token(_) => rb,
        }
    }
}

/// A JWT held for a device: the access token, its refresh token, when to renew it.
struct Held {
    /// The access token's id (`jti`).
    id: String,
    access: Secret,
    refresh: Option<Secret>,
    renew_at: Instant,
    expires: Instant,
}

/// The token answer (`smsgateway.TokenResponse`); its tokens are moved into [`Secret`]s.
#[derive(Deserialize)]
struct TokenAnswer {
    id: String,
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    expires_at: String,
}

/// Obtains, holds and renews a device's JWT (token auth).
pub(super) struct TokenSource {
    http: reqwest::Client,
    base: String,
    device: String,
    username: String,
    password: Secret,
    held: Mutex<Option<Arc<Held>>>,
    /// One renewal at a time (a refresh token is used once: two refreshes would be a replay).
    renewing: tokio::sync::Mutex<()>,
}

impl TokenSource {
    pub(super) fn new(
        http: reqwest::Client,
        base: String,
        device: String,
        username: String,
        password: Secret,
    ) -> Self {
        Self {
            http,
            base,
            device,
            username,
            password,
            held: Mutex::new(None),
            renewing: tokio::sync::Mutex::new(()),
        }
    }

    fn held(&self) -> Option<Arc<Held>> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// A token to call with: the held one, renewed first once it is due (the others keep
    /// using it while one caller renews, as long as it has not expired).
    async fn current(&self) -> Result<Arc<Held>, SendError> {
        let now = Instant::now();
        if let Some(h) = self.held() {
            if now < h.renew_at {
                return Ok(h);
            }
            if now < h.expires {
                let Ok(_one) = self.renewing.try_lock() else {
                    return Ok(h);
                };
                if let Some(cur) = self.held().filter(|c| c.id != h.id) {
                    return Ok(cur);
                }
                return match self.renew(Some(&h)).await {
                    Ok(n) => Ok(n),
                    Err(e) => {
                        // Still valid: keep it and try again on the next call.
                        tracing::warn!(device = %self.device, error = %e,
                            "gateway: token renewal failed, the current token is still valid");
                        Ok(h)
                    }
                };
            }
        }
        self.replace(self.held().map(|h| h.id.clone()).as_deref())
            .await
    }

    /// A token other than `stale` (none held, expired, or refused with 401): renewed unless
    /// another caller already did.
    async fn replace(&self, stale: Option<&str>) -> Result<Arc<Held>, SendError> {
        let _one = self.renewing.lock().await;
        let cur = self.held();
        if let Some(c) = &cur
            && Some(c.id.as_str()) != stale
            && Instant::now() < c.expires
        {
            return Ok(c.clone());
        }
        self.renew(cur.as_deref()).await
    }

    /// A new token: by refresh when `old` has a refresh token (refused: with the password),
    /// else with the password. Called with `renewing` held.
    async fn renew(&self, old: Option<&Held>) -> Result<Arc<Held>, SendError> {
        if let Some(refresh) = old.and_then(|h| h.refresh.as_ref()) {
            let rb = self
                .http
                .post(format!("{}/auth/token/refresh", self.base))
                .bearer_auth(refresh.expose());
            match self.obtain(rb).await {
                Ok(h) => return Ok(self.hold(h)),
                Err(e) => tracing::info!(device = %self.device, error = %e,
                    "gateway: token refresh refused, obtaining a new token with the password"),
            }
        }
        let rb = self
            .http
            .post(format!("{}/auth/token", self.base))
            .basic_auth(&self.username, Some(self.password.expose()))
            .json(&json!({"ttl": TOKEN_TTL_SECS, "scopes": TOKEN_SCOPES}));
        match self.obtain(rb).await {
            Ok(h) => Ok(self.hold(h)),
            Err(e) => {
                let why = match &e {
                    SendError::Rejected { status: 401, .. } => {
                        "the server refused the username/password"
                    }
                    SendError::Rejected { status: 403, .. } => {
                        "the account may not issue tokens (tokens:manage)"
                    }
                    SendError::Unavailable(d) if d.starts_with("HTTP 501") => {
                        "token auth is disabled on that server (a private server needs jwt.secret)"
                    }
                    _ => "the token call failed",
                };
                tracing::error!(device = %self.device, error = %e, "gateway: no token: {why}");
                Err(e)
            }
        }
    }

    fn hold(&self, h: Held) -> Arc<Held> {
        let h = Arc::new(h);
        *self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(h.clone());
        h
    }

    /// Sends a token request and reads the pair it answers.
    async fn obtain(&self, rb: reqwest::RequestBuilder) -> Result<Held, SendError> {
        let sent = Instant::now();
        let res = rb.send().await.map_err(|e| SendError::from_reqwest(&e))?;
        let status = res.status().as_u16();
        let date = res
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|d| d.to_str().ok())
            .and_then(|d| httpdate::parse_http_date(d).ok());
        let text = Zeroizing::new(res.text().await.map_err(|e| SendError::from_reqwest(&e))?);
        if !(200..300).contains(&status) {
            return Err(SendError::from_status(status, &text));
        }
        let answer: TokenAnswer = serde_json::from_str(&text)
            .map_err(|_| SendError::Unavailable("unreadable token answer".into()))?;
        let expires_ms = otpgate_core::time::parse_rfc3339(&answer.expires_at)
            .map_err(|_| SendError::Unavailable("unreadable token expiry".into()))?;
        let life = lifetime(expires_ms, date, SystemTime::now());
        if life < Duration::from_secs(1) {
            tracing::warn!(device = %self.device, lifetime_ms = life.as_millis() as u64,
                "gateway: the token expires in under a second (clock skew?)");
        }
        Ok(Held {
            id: answer.id,
            access: Secret::new(answer.access_token),
            refresh: answer
                .refresh_token
                .filter(|r| !r.is_empty())
                .map(Secret::new),
            renew_at: sent + life.saturating_sub(RENEW_MARGIN.min(life / 2)),
            expires: sent + life,
        })
    }
}

/// How long a token expiring at `expires_ms` (the server's clock) lives from now: measured
/// against the server's `Date` when it sent one (less a second: the header has whole
/// seconds), and against our clock; the shorter of those that are positive (our clock
/// behind the server's would make a token look longer-lived).
fn lifetime(expires_ms: i64, server_date: Option<SystemTime>, now: SystemTime) -> Duration {
    let ms = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    };
    let by_server = server_date.map(|d| expires_ms - ms(d) - 1_000);
    let by_us = expires_ms - ms(now);
    let best = match by_server {
        Some(s) if s > 0 && by_us > 0 => s.min(by_us),
        Some(s) if s > 0 => s,
        _ => by_us,
    };
    Duration::from_millis(u64::try_from(best).unwrap_or(0))
}

/// sms-gate.app (local or cloud/private).
pub(super) struct SmsGate {
    pub(super) http: reqwest::Client,
    pub(super) base: String,
    pub(super) auth: Auth,
    pub(super) sim: Option<u8>,
    pub(super) device_id: Option<String>,
    pub(super) passphrase: Option<Secret>,
}

impl SmsGate {
    /// Sends the request `make` builds with this device's credentials; with token auth, a 401
    /// (the token expired or was revoked) is retried once with a fresh token (a 401 means the
    /// server did not act on the call).
    async fn call(
        &self,
        make: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<(u16, String), SendError> {
        let Auth::Token(src) = &self.auth else {
            return exchange(self.auth.apply(make(&self.http))).await;
        };
        let held = src.current().await?;
        let (status, text) = exchange(make(&self.http).bearer_auth(held.access.expose())).await?;
        if status != 401 {
            return Ok((status, text));
        }
        tracing::info!(device = %src.device,
            "gateway: the token was refused (401): retrying once with a fresh token");
        let fresh = src.replace(Some(&held.id)).await?;
        exchange(make(&self.http).bearer_auth(fresh.access.expose())).await
    }
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
        let url = format!("{}/messages", self.base);
        let (status, text) = self.call(|http| http.post(&url).json(&body)).await?;
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

    fn polls(&self) -> bool {
        true
    }

    async fn status(
        &self,
        message_id: &str,
        _remote: Option<&str>,
    ) -> Result<Option<RemoteState>, SendError> {
        let url = format!("{}/messages/{message_id}", self.base);
        let (status, text) = self.call(|http| http.get(&url)).await?;
        if status == 404 {
            return Ok(None);
        }
        if !(200..300).contains(&status) {
            return Err(SendError::from_status(status, &text));
        }
        let state: MessageState = serde_json::from_str(&text)
            .map_err(|_| SendError::Unavailable("unreadable message state".into()))?;
        Ok(Some(map_smsgate(&state)))
    }

    /// `GET /health`; the app answers a `fail` report with 500 and the body, read either way.
    async fn health(&self) -> PhoneHealth {
        let Ok(res) = self.http.get(format!("{}/health", self.base)).send().await else {
            return PhoneHealth::unreachable();
        };
        let ok = res.status().is_success();
        match res.json::<HealthResponse>().await {
            Ok(report) => PhoneHealth::from_smsgate(&report),
            Err(_) if ok => PhoneHealth::assumed_up(),
            Err(_) => PhoneHealth::unreachable(),
        }
    }

    fn idempotent(&self) -> bool {
        true
    }

    fn pushes_events(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn token_lifetime_is_judged_by_the_server_clock_and_ours() {
        let at = |ms: u64| SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
        // Same clocks: the shorter of Date (less its rounding second) and ours.
        assert_eq!(
            lifetime(100_000, Some(at(90_000)), at(90_400)),
            Duration::from_millis(9_000)
        );
        assert_eq!(
            lifetime(100_000, Some(at(98_000)), at(98_900)),
            Duration::from_millis(1_000)
        );
        // Our clock an hour ahead: the server's Date still gives the token its life.
        assert_eq!(
            lifetime(100_000, Some(at(90_000)), at(3_690_000)),
            Duration::from_millis(9_000)
        );
        // No Date header: ours alone; already past: none.
        assert_eq!(lifetime(100_000, None, at(95_000)), Duration::from_secs(5));
        assert_eq!(lifetime(100_000, None, at(101_000)), Duration::ZERO);
    }

    #[test]
    fn smsgate_body_is_the_otp_shape() {
        let msg = Outgoing {
            message_id: "v_x.1.1".into(),
            phone: "+14155550123".into(),
            text: "code 123456".into(),
            ttl_secs: 3,
            segments: 1,
        };
        let b = smsgate_body(&msg, Some(2), None, None);
        let v = serde_json::to_value(&b).expect("json");
        assert_eq!(
            v,
            json!({"id": "v_x.1.1", "textMessage": {"text": "code 123456"}, "phoneNumbers": ["+14155550123"],
                   "simNumber": 2, "withDeliveryReport": true, "priority": 100, "ttl": 5})
        );
        let e = smsgate_body(&msg, None, None, Some("pw"));
        assert!(e.is_encrypted);
        assert_eq!(
            crypto::decrypt("pw", &e.phone_numbers[0]).as_deref(),
            Ok("+14155550123")
        );
        assert_eq!(
            e.text_message.map(|t| crypto::decrypt("pw", &t.text)),
            Some(Ok("code 123456".to_owned()))
        );
    }
}
