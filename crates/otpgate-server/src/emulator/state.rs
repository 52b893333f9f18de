//! What the emulated phone holds: messages, their recipients and states, and what it sent.

use std::collections::{BTreeMap, HashMap, VecDeque};

use otpgate_core::wire::smsgate::{
    DataMessage, MessageState, RecipientState, TextMessage, Webhook,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::fmt_time;

/// What the emulated phone "sent": `GET /_emulator/messages`.
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
pub struct SentMessage {
    /// The message id.
    pub id: String,
    /// The recipient (decrypted when the passphrase is known).
    pub phone: String,
    /// The text (decrypted when the passphrase is known).
    pub text: String,
    /// `Sent` or `Delivered`.
    pub state: String,
    /// When the message was accepted, RFC 3339.
    pub created_at: String,
    /// When it left the phone, RFC 3339.
    pub sent_at: String,
    /// When the delivery report came, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<String>,
    /// The SIM slot used (1 when unspecified).
    pub sim_number: u8,
}

#[derive(Clone, Debug)]
pub(super) struct Recipient {
    /// As given (the encrypted blob when encrypted).
    pub(super) given: String,
    /// The clear number when known.
    pub(super) clear: Option<String>,
    pub(super) state: &'static str,
    pub(super) error: Option<String>,
}

#[derive(Clone, Debug)]
pub(super) struct Msg {
    pub(super) id: String,
    pub(super) text: Option<String>,
    pub(super) data: Option<DataMessage>,
    pub(super) clear_text: Option<String>,
    pub(super) decrypt_error: bool,
    pub(super) encrypted: bool,
    pub(super) recipients: Vec<Recipient>,
    pub(super) states: BTreeMap<String, String>,
    pub(super) state: &'static str,
    pub(super) created_ms: i64,
    pub(super) valid_until_ms: Option<i64>,
    pub(super) schedule_at_ms: Option<i64>,
    pub(super) with_report: bool,
    pub(super) sim: u8,
}

impl Msg {
    pub(super) fn roll_up(&self) -> &'static str {
        let all = |s: &str| self.recipients.iter().all(|r| r.state == s);
        let any = |s: &str| self.recipients.iter().any(|r| r.state == s);
        if any("Pending") {
            "Pending"
        } else if any("Cancelling") {
            "Cancelling"
        } else if any("Processed") {
            "Processed"
        } else if all("Delivered") {
            "Delivered"
        } else if all("Failed") {
            "Failed"
        } else if all("Cancelled") {
            "Cancelled"
        } else {
            "Sent"
        }
    }

    pub(super) fn refresh(&mut self, now_ms: i64) {
        let s = self.roll_up();
        if s != self.state {
            self.state = s;
            self.states
                .entry(s.to_owned())
                .or_insert_with(|| fmt_time(now_ms));
        }
    }

    pub(super) fn view(&self, device_id: &str, content: bool) -> MessageState {
        MessageState {
            id: self.id.clone(),
            device_id: Some(device_id.to_owned()),
            state: self.state.to_owned(),
            is_hashed: false,
            is_encrypted: self.encrypted,
            recipients: self
                .recipients
                .iter()
                .map(|r| RecipientState {
                    phone_number: r.given.clone(),
                    state: r.state.to_owned(),
                    error: if r.state == "Failed" {
                        r.error.clone()
                    } else {
                        None
                    },
                })
                .collect(),
            states: self.states.clone(),
            text_message: if content {
                self.text.clone().map(|text| TextMessage { text })
            } else {
                None
            },
            data_message: if content { self.data.clone() } else { None },
        }
    }
}

#[derive(Default)]
pub(super) struct Inner {
    pub(super) messages: HashMap<String, Msg>,
    pub(super) order: Vec<String>,
    pub(super) webhooks: Vec<Webhook>,
    /// Times of the segments handed to the radio (Android's sliding window).
    pub(super) sends: VecDeque<i64>,
    pub(super) outbox: Vec<SentMessage>,
    pub(super) settings: Value,
    pub(super) tokens: super::tokens::Tokens,
    pub(super) signing_key: String,
    pub(super) passphrase: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roll_up_follows_the_documented_rules() {
        let r = |s: &'static str| Recipient {
            given: String::new(),
            clear: None,
            state: s,
            error: None,
        };
        let m = |states: &[&'static str]| Msg {
            id: String::new(),
            text: None,
            data: None,
            clear_text: None,
            decrypt_error: false,
            encrypted: false,
            recipients: states.iter().map(|s| r(s)).collect(),
            states: BTreeMap::new(),
            state: "Pending",
            created_ms: 0,
            valid_until_ms: None,
            schedule_at_ms: None,
            with_report: true,
            sim: 1,
        };
        assert_eq!(m(&["Pending", "Delivered"]).roll_up(), "Pending");
        assert_eq!(m(&["Processed", "Delivered"]).roll_up(), "Processed");
        assert_eq!(m(&["Delivered", "Delivered"]).roll_up(), "Delivered");
        assert_eq!(m(&["Failed", "Failed"]).roll_up(), "Failed");
        assert_eq!(m(&["Failed", "Delivered"]).roll_up(), "Sent");
        assert_eq!(m(&["Sent", "Delivered"]).roll_up(), "Sent");
    }
}
