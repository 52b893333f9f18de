//! Delivery of a code another system made (`POST /v1/messages`, the Supabase hook): the
//! destination policy, the budgets, the audit line and the delivery tracking of a start,
//! with the caller's code composed into the app's template (WebOTP line, app hash, one
//! segment). No caller-written text reaches a phone.
//!
//! A message is stored as a record of its own kind (id `m_…`): it holds no digest of the
//! code (nothing here checks it), no attempts, and lives as long as a verification's code,
//! so the gateway pool tracks and fails it over like any send. The verification routes
//! answer 404 for its id.

use otpgate_core::code::Code;
use otpgate_core::phone::PhoneNumber;
use otpgate_core::wire::DeliveryState;
use serde_json::json;

use super::{Service, ServiceError, normalize, validate_locale, whole_second};
use crate::policy::StartContext;
use crate::random;
use crate::service::RequestMeta;
use crate::store::{DeliveryRecord, Outcome, Record, Staged, StoredCode};

/// The id prefix of messages.
pub const MESSAGE_PREFIX: &str = "m_";

/// A code to deliver, after decoding.
#[derive(Clone)]
pub struct DeliverInput {
    /// The destination, E.164.
    pub to: String,
    /// The code, 4 to 10 ASCII letters or digits.
    pub code: String,
    /// The app (the default app when absent).
    pub app: Option<String>,
    /// The template locale.
    pub locale: Option<String>,
    /// Who asked (`messages`, `supabase`): audited.
    pub source: &'static str,
}

impl std::fmt::Debug for DeliverInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliverInput")
            .field("to", &"[redacted]")
            .field("code", &"[redacted]")
            .field("app", &self.app)
            .field("locale", &self.locale)
            .field("source", &self.source)
            .finish()
    }
}

/// What a caller sees of a message.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MessageView {
    /// The id (`m_` + 22 base64url characters).
    pub id: String,
    /// The delivery, kept current.
    pub delivery: otpgate_core::wire::Delivery,
    /// When the message stops being sent or retried, RFC 3339.
    pub expires_at: String,
}

/// Whether `id` has the shape of a message id.
pub fn valid_message_id(id: &str) -> bool {
    id.len() == 24
        && id.starts_with(MESSAGE_PREFIX)
        && id[2..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether a typed code can be delivered: 4 to 10 ASCII letters or digits (what the WebOTP
/// line and the SMS User Consent API accept).
fn valid_code(code: &str) -> bool {
    (4..=10).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl Service {
    /// Delivers `input.code` to `input.to` with the app's template, as a trusted caller
    /// (no proof of work, no per-IP budget; the destination policy and the per-number,
    /// prefix and global budgets apply; the anti-pumping signals are left alone).
    ///
    /// # Errors
    /// [`ServiceError`]: bad input (400), destination refused (403), budgets (429), gateway
    /// or store failures (503).
    pub async fn deliver(
        &self,
        input: DeliverInput,
        meta: &RequestMeta,
    ) -> Result<MessageView, ServiceError> {
        let result = self.deliver_inner(input, meta).await;
        match &result {
            Ok(_) => self.metrics.verification("delivered"),
            Err(e) => self.metrics.verification(e.outcome()),
        }
        result
    }

    async fn deliver_inner(
        &self,
        input: DeliverInput,
        meta: &RequestMeta,
    ) -> Result<MessageView, ServiceError> {
        let phone = PhoneNumber::parse(&input.to).map_err(ServiceError::InvalidPhone)?;
        let app = match input.app.as_deref() {
            None => self.apps.first(),
            Some(name) => self.app(name),
        }
        .ok_or(ServiceError::UnknownApp)?;
        let locale = input.locale.map(validate_locale).transpose()?;
        let typed = normalize(&input.code);
        if !valid_code(&typed) {
            return Err(ServiceError::InvalidCode);
        }
        let code = Code::new(typed);
        let now = self.clock.now_ms();
        // A trusted caller by construction: these routes authenticate with their own
        // secrets, and neither pay proof of work nor feed the signals.
        let meta = RequestMeta {
            trusted: true,
            ..meta.clone()
        };
        let ctx = StartContext {
            phone: &phone,
            app: &app.name,
            client_ip: meta.client_ip,
            trusted: true,
            pow: None,
            now_ms: now,
        };
        let gate = match self.policy.gate_start(&ctx).await {
            Ok(g) => g,
            Err(e) => return Err(self.refused_start(e, &meta, app, &phone).await),
        };
        let phone = gate.phone.clone();
        let test_number = gate.test_code.is_some();
        let id = random::id(MESSAGE_PREFIX).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let expires = whole_second(now, self.policy.lifetime_ms());
        let record = Record {
            id: id.clone(),
            app: app.name.clone(),
            phone: phone.as_str().to_owned(),
            locale: locale.clone(),
            outcome: Outcome::Open,
            // Nothing of the code is kept: no key has this id, so nothing ever matches, and
            // the verification routes never reach an `m_` id anyway.
            code: StoredCode {
                digest: vec![0; 32],
                key_id: "message".into(),
                version: 1,
            },
            created_at_ms: now,
            expires_at_ms: expires,
            attempts: 0,
            max_attempts: 0,
            sends: 1,
            resend_at_ms: expires,
            delivery: DeliveryRecord {
                state: if test_number {
                    DeliveryState::Skipped
                } else {
                    DeliveryState::Queued
                },
                gateway: None,
                message_id: None,
                updated_at_ms: now,
                detail: test_number.then(|| "test number".to_owned()),
            },
            test_number,
            trusted: true,
        };
        let Staged {
            value: taken,
            durable,
        } = self
            .store
            .open_staged(&record, &gate.requests(), now)
            .await?;
        let admission = match self.policy.settle(gate, &taken) {
            Ok(a) => a,
            Err(e) => {
                durable.wait().await?;
                return Err(self.refused_start(e, &meta, app, &phone).await);
            }
        };
        let accepted = self.event(
            "message.accepted",
            Some(&meta),
            Some((&id, &app.name)),
            Some(&phone),
            json!({"source": input.source, "test_number": test_number, "locale": locale}),
        );
        self.audit_beside(durable, Some(accepted), &meta).await?;
        if test_number {
            self.metrics.dispatch("skipped");
        } else if let Err(e) = self
            .send(app, &record, (&phone, &code), &admission, &meta)
            .await
        {
            self.policy.refund(&admission, now).await;
            return Err(e);
        }
        Ok(self.message_view(&record))
    }

    /// The current view of a message.
    ///
    /// # Errors
    /// [`ServiceError::NotFound`] (a malformed id too), [`ServiceError::Store`].
    pub async fn message(&self, id: &str) -> Result<MessageView, ServiceError> {
        if !valid_message_id(id) {
            return Err(ServiceError::NotFound);
        }
        let record = self.store.get(id).await?.ok_or(ServiceError::NotFound)?;
        Ok(self.message_view(&record))
    }

    fn message_view(&self, record: &Record) -> MessageView {
        let view = self.view(record, self.clock.now_ms());
        MessageView {
            id: record.id.clone(),
            delivery: view.delivery,
            expires_at: view.expires_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_ids() {
        for ok in ["1234", "123456", "ABCDEF1234", "a1b2"] {
            assert!(valid_code(ok), "{ok}");
        }
        for bad in [
            "123",
            "12345678901",
            "12 34",
            "12-34x",
            "１２３４",
            "12\n34",
        ] {
            assert!(!valid_code(bad), "{bad}");
        }
        assert!(valid_message_id("m_AAAAAAAAAAAAAAAAAAAAAA"));
        assert!(!valid_message_id("v_AAAAAAAAAAAAAAAAAAAAAA"));
        assert!(!crate::service::valid_id("m_AAAAAAAAAAAAAAAAAAAAAA"));
    }
}
