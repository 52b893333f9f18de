//! The gateway bridge: adapters that reach SMS gateways (sms-gate.app phones first) behind
//! one trait, and the dispatcher the issuer hands its sends to.
//!
//! - [`adapter`]: one file per gateway wire format.
//! - [`pool`]: device choice, budgets, health, retries, failover and delivery tracking.
//! - [`queue`]: sends waiting in the store for phone capacity, by [`Priority`].
//! - `webhooks`: the inbound delivery events, one pipeline (verify → decode → de-duplicate →
//!   count → apply) with a decoder per source; every signature rule is the core's
//!   ([`otpgate_core::webhook`]).
//! - [`config`] and [`crypto`]: the `[gateways]` section and sms-gate.app's end-to-end
//!   encryption.

pub mod adapter;
pub mod config;
pub mod crypto;
pub mod fleet;
pub mod health;
pub mod onboard;
pub mod pool;
pub mod queue;
pub mod tls;
mod webhooks;

pub use config::{DeviceConfig, GatewaysConfig, Kind, LiteralSecrets, Mode, Secret, SimConfig};
pub use fleet::{DeviceStatus, PoolEvent, PoolObserver};
pub use pool::{DeviceMetrics, Pool, PoolMetrics};
pub use queue::{Pressure, Priority, Sealer, TRUSTED_WORK};

use async_trait::async_trait;

/// One SMS to send.
#[derive(Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The idempotent message id (≤ 36 chars): `{verification_id}.{code_version}.{route}`.
    pub message_id: String,
    /// The destination, E.164.
    pub phone: String,
    /// The text (contains the code: never log it).
    pub text: String,
    /// Seconds the gateway may keep trying: the code's remaining lifetime.
    pub ttl_secs: u64,
    /// Segments the text takes (budgets count segments).
    pub segments: u32,
}

impl std::fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outgoing")
            .field("message_id", &self.message_id)
            .field("phone", &"[redacted]")
            .field("text", &"[redacted]")
            .field("ttl_secs", &self.ttl_secs)
            .field("segments", &self.segments)
            .finish()
    }
}

/// A send the issuer asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendJob {
    /// The verification.
    pub verification_id: String,
    /// The code version this text carries.
    pub code_version: u32,
    /// The message.
    pub message: Outgoing,
    /// When the code expires, Unix ms: nothing may be sent after it.
    pub expires_at_ms: i64,
    /// Who it serves: the order of the phones' budget when it is short.
    pub priority: Priority,
    /// What the caller paid: proof-of-work bits solved, [`TRUSTED_WORK`] for a trusted
    /// caller, 0 for nothing (see [`Pressure`]).
    pub work: u8,
}

/// What became of an accepted send.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum Dispatched {
    /// A phone took it (or is about to): delivery progresses in the background.
    Sending,
    /// No phone had budget this moment: it waits in the store's queue and leaves as soon as
    /// one has, within the queue's bound (delivery state `queued` meanwhile).
    Queued,
}

/// Why a send could not be accepted.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DispatchError {
    /// Every device is out of budget, and the send cannot wait for one within the queue's
    /// bound (or the queue is full).
    #[error("no gateway capacity")]
    NoCapacity {
        /// Seconds until capacity frees up.
        retry_after_secs: u64,
    },
    /// No gateway is configured or reachable.
    #[error("no gateway available")]
    Unavailable,
    /// The code has (almost) expired: too little lifetime is left to send it.
    #[error("code expired before it could be sent")]
    Expired,
}

impl DispatchError {
    /// A stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoCapacity { .. } => "no_gateway_capacity",
            Self::Unavailable => "gateway_unavailable",
            Self::Expired => "code_expired",
        }
    }
}

/// Where the issuer sends: the pool of devices (or, in tests, something simpler).
#[async_trait]
pub trait Dispatcher: Send + Sync + 'static {
    /// Accepts a send; delivery progresses in the background and is written to the store.
    ///
    /// # Errors
    /// [`DispatchError`] when no device can take it before the code expires.
    async fn dispatch(&self, job: SendJob) -> Result<Dispatched, DispatchError>;

    /// Whether at least one gateway is healthy (readiness).
    async fn ready(&self) -> bool;
}
