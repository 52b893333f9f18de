//! sms-gate.app (local or cloud/private): the phones.

use async_trait::async_trait;
use otpgate_core::wire::smsgate::{HealthResponse, MessageState, SendMessage, TextMessage};

use super::{Accepted, Adapter, RemoteState, SendError, exchange};
use crate::gateway::Outgoing;
use crate::gateway::config::Secret;
use crate::gateway::crypto;
use crate::gateway::health::PhoneHealth;

pub(super) enum Auth {
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
pub(super) struct SmsGate {
    pub(super) http: reqwest::Client,
    pub(super) base: String,
    pub(super) auth: Auth,
    pub(super) sim: Option<u8>,
    pub(super) device_id: Option<String>,
    pub(super) passphrase: Option<Secret>,
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
        let (status, text) = exchange(
            self.auth
                .apply(self.http.post(format!("{}/messages", self.base)))
                .json(&body),
        )
        .await?;
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
