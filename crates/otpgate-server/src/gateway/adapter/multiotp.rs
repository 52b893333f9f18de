//! multiOTP SMSGatewayApp: the phone polls us; sending queues the message.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::{Accepted, Adapter, RemoteState, SendError};
use crate::clock::Clock;
use crate::gateway::Outgoing;

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

/// multiOTP SMSGatewayApp: the phone polls us; sending queues the message.
pub(crate) struct MultiOtp {
    pub(super) queue: Mutex<VecDeque<Pending>>,
    pub(super) clock: Arc<dyn Clock>,
}

impl MultiOtp {
    /// Takes every message still alive (expired ones are dropped, never handed out).
    pub(crate) fn drain(&self) -> (Vec<Pending>, Vec<Pending>) {
        let now = self.clock.now_ms();
        let mut q = self
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        q.drain(..).partition(|p| p.expires_at_ms > now + 1_000)
    }

    /// Puts a message back (taken before the pool finished recording it).
    pub(crate) fn requeue(&self, p: Pending) {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push_back(p);
    }
}

#[async_trait]
impl Adapter for MultiOtp {
    async fn send(&self, msg: &Outgoing) -> Result<Accepted, SendError> {
        let now = self.clock.now_ms();
        let mut q = self
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if q.iter().any(|p| p.id == msg.message_id) {
            return Ok(Accepted::ours(RemoteState::Accepted));
        }
        if q.len() >= 10_000 {
            return Err(SendError::Unavailable("queue full".into()));
        }
        q.push_back(Pending {
            id: msg.message_id.clone(),
            to: msg.phone.clone(),
            content: msg.text.clone(),
            expires_at_ms: now.saturating_add(
                i64::try_from(msg.ttl_secs)
                    .unwrap_or(0)
                    .saturating_mul(1000),
            ),
        });
        Ok(Accepted::ours(RemoteState::Accepted))
    }

    fn idempotent(&self) -> bool {
        true
    }

    fn pushes_events(&self) -> bool {
        true
    }
}
