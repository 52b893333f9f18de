//! The sms-gate.app third-party API: send requests, message states and webhook envelopes
//! (shared by the gateway adapter and the emulator).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `textMessage`.
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
pub struct TextMessage {
    /// The text.
    pub text: String,
}

/// `dataMessage`: a binary SMS to an application port.
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
pub struct DataMessage {
    /// The payload, base64.
    pub data: String,
    /// The destination port, 1..65535.
    pub port: u16,
}

/// `POST /messages` body.
#[derive(Clone, Debug, Default, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendMessage {
    /// Client-chosen id (≤ 36 chars): a duplicate gets 409, which makes sending idempotent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The device to send from (cloud mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// The text (preferred form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_message: Option<TextMessage>,
    /// The legacy text form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// A binary SMS instead of text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_message: Option<DataMessage>,
    /// Recipients, E.164 (or encrypted blobs).
    pub phone_numbers: Vec<String>,
    /// Whether text and numbers are encrypted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_encrypted: bool,
    /// SIM slot 1..3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sim_number: Option<u8>,
    /// Ask for a delivery report (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub with_delivery_report: Option<bool>,
    /// ≥ 100 is expedited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i8>,
    /// Seconds the message may wait before it expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
    /// RFC 3339 alternative to `ttl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<String>,
    /// RFC 3339: send no earlier than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_at: Option<String>,
}

/// One recipient's state.
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecipientState {
    /// The number (echoed verbatim when encrypted).
    pub phone_number: String,
    /// `Pending | Processed | Sent | Delivered | Failed | Cancelling | Cancelled`.
    pub state: String,
    /// The failure reason, only for `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `MessageState`: the answer to send and get.
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageState {
    /// The message id.
    pub id: String,
    /// The device that carries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// The rolled-up state.
    pub state: String,
    /// Whether content was replaced by hashes.
    #[serde(default)]
    pub is_hashed: bool,
    /// Whether content is encrypted.
    #[serde(default)]
    pub is_encrypted: bool,
    /// Per-recipient states.
    pub recipients: Vec<RecipientState>,
    /// State → timestamp history.
    #[serde(default)]
    pub states: BTreeMap<String, String>,
    /// The text, while the message is not hashed (and, in lists, only with `includeContent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_message: Option<TextMessage>,
    /// The binary payload, likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_message: Option<DataMessage>,
}

/// A registered webhook: `{id, deviceId, url, event}`.
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    /// The id (≤ 36 chars); generated when absent; the same id replaces.
    #[serde(default)]
    pub id: Option<String>,
    /// The device it applies to (cloud mode).
    #[serde(default)]
    pub device_id: Option<String>,
    /// Where events are POSTed.
    pub url: String,
    /// The one event this webhook receives.
    pub event: String,
}

/// `GET /health`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthResponse {
    /// `pass | warn | fail`.
    pub status: String,
    /// The app version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The release id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_id: Option<serde_json::Value>,
    /// Named checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks: Option<serde_json::Value>,
}

/// The seven message states, in the order a message moves through them.
pub const STATES: [&str; 7] = [
    "Pending",
    "Processed",
    "Sent",
    "Delivered",
    "Failed",
    "Cancelling",
    "Cancelled",
];

/// A webhook delivery: `{id, webhookId, event, deviceId, payload}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEnvelope {
    /// A fresh id per delivery: receivers de-duplicate on it.
    pub id: String,
    /// The registered webhook's id.
    #[serde(default)]
    pub webhook_id: Option<String>,
    /// `sms:sent`, `sms:delivered`, `sms:failed`, `system:ping`...
    pub event: String,
    /// The sending device.
    #[serde(default)]
    pub device_id: Option<String>,
    /// Event-specific fields.
    #[serde(default)]
    pub payload: serde_json::Value,
}
