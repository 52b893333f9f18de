//! The JSON shapes exchanged with the issuer (`/v1/verifications`) and with sms-gate.app.
//!
//! Requests deny unknown fields so that a typo in a client is an error, not a silent default.

mod error_code;
pub mod smsgate;

pub use error_code::{ErrorCode, UnknownErrorCode};

use serde::{Deserialize, Serialize};

/// `POST /v1/verifications`.
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    /// The destination, E.164.
    pub phone: String,
    /// The app (configured name); the default app when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// A BCP 47 language tag choosing the template (`en`, `pt-BR`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// A solved proof-of-work challenge, when the issuer asked for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pow: Option<PowSolution>,
}

/// A solved proof-of-work challenge.
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowSolution {
    /// The challenge string the issuer handed out.
    pub challenge: String,
    /// The nonce found by [`crate::pow::solve`].
    pub nonce: u64,
}

/// `POST /v1/verifications/{id}/check`.
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    /// The code the person typed or WebOTP delivered.
    pub code: String,
}

/// The state of a verification.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Status {
    /// Waiting for the right code.
    Pending,
    /// The right code was given; the receipt was issued.
    Approved,
    /// Cancelled by the client.
    Cancelled,
    /// The lifetime ran out.
    Expired,
    /// Every attempt was used.
    MaxAttemptsReached,
}

/// Where the SMS is.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DeliveryState {
    /// Waiting for a device with budget.
    Queued,
    /// Accepted by a gateway.
    Submitted,
    /// Sent by the phone (the SMSC accepted it).
    Sent,
    /// The handset confirmed delivery.
    Delivered,
    /// Every route failed while the code was alive.
    Failed,
    /// Never sent (a test number).
    Skipped,
}

impl DeliveryState {
    /// Position in the per-message state machine: queued → submitted → sent →
    /// delivered | failed. Terminal states share the top rank.
    pub fn rank(self) -> u8 {
        match self {
            Self::Queued => 0,
            Self::Submitted => 1,
            Self::Sent => 2,
            Self::Delivered | Self::Failed | Self::Skipped => 3,
        }
    }

    /// Whether a message in state `self` may move to `next` (only forward; at-least-once
    /// webhooks and late polls can never move a message back).
    pub fn may_become(self, next: Self) -> bool {
        next.rank() > self.rank()
    }

    /// Whether nothing more will happen to this message.
    pub fn is_terminal(self) -> bool {
        self.rank() == 3
    }
}

/// The delivery part of a verification.
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// The state.
    pub state: DeliveryState,
    /// The gateway that carries the current message, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Last update, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

/// A verification as the API shows it.
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
pub struct VerificationView {
    /// The verification id.
    pub id: String,
    /// Its state.
    pub status: Status,
    /// When the current code expires, RFC 3339.
    pub expires_at: String,
    /// The earliest time a resend is allowed, RFC 3339.
    pub resend_at: String,
    /// Wrong codes still allowed.
    pub attempts_left: u32,
    /// Delivery of the current code.
    pub delivery: Delivery,
}

/// `200` of a successful check.
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
pub struct CheckResponse {
    /// `approved`.
    pub status: Status,
    /// The signed receipt (compact JWT).
    pub receipt: String,
}

/// The one error shape of the API: `{"error": {"code", "message", ...}}`.
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The error itself.
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// A stable snake_case code: the text of an [`ErrorCode`]. Kept as text so that a client
    /// meeting a newer issuer's code still reads the answer.
    pub code: String,
    /// A sentence for people.
    pub message: String,
    /// Attempts left after a wrong code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts_left: Option<u32>,
    /// Seconds to wait (also in `Retry-After`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// A proof-of-work challenge to solve before retrying (`code: pow_required`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenge: Option<String>,
    /// The request id, also in the `X-Request-Id` header and the audit log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}
