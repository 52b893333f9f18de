//! multiOTP SMSGatewayApp: the phone polls us; sending puts the message in the phone's
//! outbox in the store ([`Store::outbox_push`]), so a phone polling any issuer instance on
//! a shared store gets each message once, and a message outlives the instance that queued
//! it. The destination and text are sealed there (the queue's key, bound to the message
//! id): the store never reads them.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{Accepted, Adapter, RemoteState, SendError};
use crate::clock::Clock;
use crate::gateway::Outgoing;
use crate::gateway::queue::Sealer;
use crate::store::{OutboxMessage, Store};

/// Most messages one phone's outbox holds.
const OUTBOX_MAX: u32 = 10_000;
/// Most messages handed to the phone in one poll.
const TAKE_MAX: u32 = 100;

/// One message waiting for a multiOTP phone to pick it up.
#[derive(Clone, Debug)]
pub struct Pending {
    /// Our message id.
    pub id: String,
    /// The destination.
    pub to: String,
    /// The text.
    pub content: String,
    /// When it stops being worth sending, Unix ms.
    pub expires_at_ms: i64,
}

/// What the store keeps sealed.
#[derive(Serialize, Deserialize)]
struct Sealed {
    to: String,
    content: String,
}

/// multiOTP SMSGatewayApp: the phone polls us; sending queues the message in the store.
pub(crate) struct MultiOtp {
    /// The outbox's name: the device's.
    pub(super) device: String,
    pub(super) store: Arc<dyn Store>,
    pub(super) sealer: Arc<Sealer>,
    pub(super) clock: Arc<dyn Clock>,
}

impl MultiOtp {
    /// Takes the waiting messages (each goes to one poll, on any instance): those still
    /// alive, and those that expired (never handed out).
    pub(crate) async fn take(&self) -> (Vec<Pending>, Vec<Pending>) {
        let now = self.clock.now_ms();
        let taken = match self.store.outbox_take(&self.device, TAKE_MAX, now).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, device = %self.device, "multiotp outbox: store unavailable");
                return (Vec::new(), Vec::new());
            }
        };
        let mut pending = Vec::with_capacity(taken.len());
        for m in taken {
            let opened = self
                .sealer
                .open_bytes(m.id.as_bytes(), &m.sealed)
                .and_then(|plain| serde_json::from_slice::<Sealed>(&plain).ok());
            match opened {
                Some(s) => pending.push(Pending {
                    id: m.id,
                    to: s.to,
                    content: s.content,
                    expires_at_ms: m.expires_at_ms,
                }),
                None => {
                    tracing::error!(message_id = %m.id, "multiotp outbox: a message does not open with this issuer's code keys (do all issuers share them?)")
                }
            }
        }
        pending
            .into_iter()
            .partition(|p| p.expires_at_ms > now + 1_000)
    }
}

#[async_trait]
impl Adapter for MultiOtp {
    async fn send(&self, msg: &Outgoing) -> Result<Accepted, SendError> {
        let now = self.clock.now_ms();
        let plain = zeroize::Zeroizing::new(
            serde_json::to_vec(&Sealed {
                to: msg.phone.clone(),
                content: msg.text.clone(),
            })
            .map_err(|_| SendError::Unavailable("cannot encode".into()))?,
        );
        let sealed = self
            .sealer
            .seal_bytes(msg.message_id.as_bytes(), &plain)
            .map_err(|_| SendError::Unavailable("cannot seal".into()))?;
        let message = OutboxMessage {
            id: msg.message_id.clone(),
            expires_at_ms: now.saturating_add(
                i64::try_from(msg.ttl_secs)
                    .unwrap_or(0)
                    .saturating_mul(1000),
            ),
            queued_at_ms: now,
            sealed,
        };
        match self
            .store
            .outbox_push(&self.device, &message, OUTBOX_MAX, now)
            .await
        {
            // Queued, or queued before (the id goes to the phone once).
            Ok(true) => Ok(Accepted::ours(RemoteState::Accepted)),
            Ok(false) => Err(SendError::Unavailable("queue full".into())),
            Err(e) => {
                tracing::warn!(error = %e, "multiotp outbox: store unavailable");
                Err(SendError::Unavailable("store unavailable".into()))
            }
        }
    }

    fn idempotent(&self) -> bool {
        true
    }

    fn pushes_events(&self) -> bool {
        true
    }
}
