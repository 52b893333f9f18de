//! otpgate's generic signed webhook (the signature scheme lives in the core).

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::json;

use super::{Accepted, Adapter, RemoteState, SendError};
use crate::clock::Clock;
use crate::gateway::Outgoing;
use crate::gateway::config::Secret;

/// The signature of a generic webhook call: `hex(HMAC-SHA256(key, timestamp + "." + body))`
/// (the core's [`otpgate_core::webhook::sign_otpgate`]).
pub use otpgate_core::webhook::sign_otpgate as webhook_signature;

/// A generic signed webhook: `POST {url}` `{id, to, text, ttl}` with `X-Otpgate-Timestamp`
/// and `X-Otpgate-Signature`; the receiver de-duplicates on `id`.
pub(super) struct SignedWebhook {
    pub(super) http: reqwest::Client,
    pub(super) url: String,
    pub(super) key: Secret,
    pub(super) clock: Arc<dyn Clock>,
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
