//! Twilio Messages API (fallback).

use async_trait::async_trait;
use serde_json::Value;

use super::{Accepted, Adapter, RemoteState, SendError, exchange, form_encode, json_answer};
use crate::gateway::Outgoing;
use crate::gateway::config::Secret;

/// Twilio Messages API (fallback).
pub(super) struct Twilio {
    pub(super) http: reqwest::Client,
    pub(super) base: String,
    pub(super) sid: String,
    pub(super) token: Secret,
    pub(super) from: String,
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
        let (status, text) = exchange(
            self.http
                .post(format!(
                    "{}/2010-04-01/Accounts/{}/Messages.json",
                    self.base, self.sid
                ))
                .basic_auth(&self.sid, Some(self.token.expose()))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form),
        )
        .await?;
        let v = json_answer(status, &text)?;
        let sid = v.get("sid").and_then(Value::as_str).map(str::to_owned);
        Ok(Accepted {
            remote_id: sid,
            state: twilio_state(v.get("status").and_then(Value::as_str)),
        })
    }

    fn polls(&self) -> bool {
        true
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
