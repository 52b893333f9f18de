//! TextBee.

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{Accepted, Adapter, RemoteState, SendError, exchange, json_answer};
use crate::gateway::Outgoing;
use crate::gateway::config::Secret;

/// TextBee.
pub(super) struct TextBee {
    pub(super) http: reqwest::Client,
    pub(super) base: String,
    pub(super) device_id: String,
    pub(super) key: Secret,
    pub(super) sim: Option<u8>,
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
        let (status, text) = exchange(
            self.http
                .post(format!(
                    "{}/gateway/devices/{}/send-sms",
                    self.base, self.device_id
                ))
                .header("x-api-key", self.key.expose())
                .json(&body),
        )
        .await?;
        let v = json_answer(status, &text)?;
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
