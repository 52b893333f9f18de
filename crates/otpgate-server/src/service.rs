//! The verification flow: start, status, check, resend, cancel.
//!
//! The HTTP layer ([`crate::api`]) only converts; every rule of the flow lives here:
//! - **start**: validates the number and the app, passes the policy (allow-list, budgets,
//!   proof of work), draws the code from the OS CSPRNG (or takes a test number's fixed
//!   code), stores only its keyed digest, composes the SMS and hands it to the dispatcher;
//! - **check**: the per-IP check budget, then the store counts the attempt *before* the
//!   code is compared (constant time, with the key the digest was made with), then the
//!   store consumes the code atomically (exactly one concurrent winner), then the receipt.
//!   The store answers that step before it is durable ([`Store::check_staged`]): the
//!   audit line of a refusal, or the receipt's signature, is made while it becomes durable,
//!   and the client is answered after both;
//! - **resend**: cooldown with back-off, a new code (new digest, version + 1, attempts
//!   reset), a new send;
//! - **cancel**.
//!
//! Every step writes an audit event carrying the request id; never the code, and the phone
//! only as a [`PhoneNumber`] that the audit log pseudonymises.

use std::net::IpAddr;
use std::sync::Arc;

use otpgate_core::code::Code;
use otpgate_core::phone::{PhoneError, PhoneNumber};
use otpgate_core::pow::PowError;
use otpgate_core::receipt::Claims;
use otpgate_core::wire::{
    CheckResponse, Delivery, DeliveryState, ErrorCode, PowSolution, Status, VerificationView,
};
use serde_json::json;

use crate::audit::{AuditEvent, AuditLog};
use crate::clock::{Clock, rfc3339};
use crate::config::AppConfig;
use crate::gateway::{DispatchError, Dispatched, Dispatcher, Outgoing, SendJob};
use crate::keys::KeyRing;
use crate::metrics::Metrics;
use crate::policy::{Admission, Policy, PolicyError, StartContext};
use crate::random::{self, OsRandom};
mod deliver;

pub use deliver::{DeliverInput, MESSAGE_PREFIX, MessageView, valid_message_id};

use crate::store::{
    BudgetRequest, CheckOutcome, DeliveryRecord, Durable, Guess, Outcome, Record, RotateOutcome,
    Rotation, Staged, Store, StoreError, StoredCode,
};

/// How long a receipt is valid, seconds.
pub const RECEIPT_LIFETIME_SECS: i64 = 600;
/// The longest typed code accepted before comparison (anything longer is a client bug).
pub const MAX_CODE_INPUT: usize = 64;
/// The longest locale tag accepted.
pub const MAX_LOCALE: usize = 35;

/// Why a call failed. Each variant maps to one HTTP status and one stable code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The phone number is not valid E.164.
    #[error("{0}")]
    InvalidPhone(PhoneError),
    /// No app of that name is configured.
    #[error("unknown app")]
    UnknownApp,
    /// The locale is not a plausible BCP 47 tag.
    #[error("invalid locale")]
    InvalidLocale,
    /// The typed code is far too long to be a code.
    #[error("invalid code")]
    InvalidCode,
    /// E.164 in form, but not a number libphonenumber holds valid for its region (or its
    /// country code written twice).
    #[error("that is not a valid phone number")]
    NotAPhoneNumber,
    /// The destination is outside the allowed regions or types, or in a blocked range.
    #[error("destination not allowed")]
    DestinationNotAllowed,
    /// A budget is spent.
    #[error("rate limited ({scope})")]
    RateLimited {
        /// Which budget (`phone`, `ip`, `prefix`, `global`, `check_ip`, `phone_ip`,
        /// `number_locked`).
        scope: &'static str,
        /// Seconds until it frees up.
        retry_after_secs: u64,
    },
    /// A proof of work is needed before sending.
    #[error("proof of work required")]
    PowRequired {
        /// The challenge to solve.
        challenge: String,
    },
    /// The proof of work was refused.
    #[error("proof of work refused: {0}")]
    PowInvalid(PowError),
    /// The proof of work was already spent on another send.
    #[error("proof of work already used")]
    PowReplayed,
    /// No such verification (or a malformed id: the same answer, so ids cannot be probed).
    #[error("verification not found")]
    NotFound,
    /// The code is wrong.
    #[error("wrong code")]
    WrongCode {
        /// Checks left on this code.
        attempts_left: u32,
    },
    /// The code's lifetime is over.
    #[error("verification expired")]
    Expired,
    /// The verification was cancelled.
    #[error("verification cancelled")]
    Cancelled,
    /// Every attempt was used.
    #[error("no attempts left")]
    NoAttemptsLeft,
    /// The code was already accepted once.
    #[error("verification already approved")]
    AlreadyUsed,
    /// A resend inside the cooldown.
    #[error("resend cooling down")]
    ResendCooldown {
        /// Seconds until a resend is allowed.
        retry_after_secs: u64,
    },
    /// The verification had its maximum number of sends.
    #[error("too many sends")]
    TooManySends,
    /// Another resend of the same verification is in progress.
    #[error("concurrent resend")]
    Conflict,
    /// Every gateway is out of budget.
    #[error("no gateway capacity")]
    NoCapacity {
        /// Seconds until capacity frees up.
        retry_after_secs: u64,
    },
    /// No gateway can send.
    #[error("no gateway available")]
    GatewayUnavailable,
    /// The store failed.
    #[error("store unavailable: {0}")]
    Store(StoreError),
    /// Something that should not happen (the CSPRNG failed): logged, never shown.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    /// The stable code of this failure on the wire.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidPhone(e) => e.code(),
            Self::NotAPhoneNumber => ErrorCode::InvalidPhone,
            Self::UnknownApp => ErrorCode::UnknownApp,
            Self::InvalidLocale => ErrorCode::InvalidLocale,
            Self::InvalidCode => ErrorCode::InvalidCode,
            Self::DestinationNotAllowed => ErrorCode::DestinationNotAllowed,
            Self::RateLimited { scope, .. } => crate::policy::rate_code(scope),
            Self::PowRequired { .. } => ErrorCode::PowRequired,
            Self::PowInvalid(e) => e.code(),
            Self::PowReplayed => ErrorCode::PowReplayed,
            Self::NotFound => ErrorCode::NotFound,
            Self::WrongCode { .. } => ErrorCode::WrongCode,
            Self::Expired => ErrorCode::Expired,
            Self::Cancelled => ErrorCode::Cancelled,
            Self::NoAttemptsLeft => ErrorCode::NoAttemptsLeft,
            Self::AlreadyUsed => ErrorCode::AlreadyUsed,
            Self::ResendCooldown { .. } => ErrorCode::ResendCooldown,
            Self::TooManySends => ErrorCode::TooManySends,
            Self::Conflict => ErrorCode::Conflict,
            Self::NoCapacity { .. } => ErrorCode::NoGatewayCapacity,
            Self::GatewayUnavailable => ErrorCode::GatewayUnavailable,
            Self::Store(_) => ErrorCode::StoreUnavailable,
            Self::Internal(_) => ErrorCode::InternalError,
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Self::InvalidPhone(_)
            | Self::NotAPhoneNumber
            | Self::UnknownApp
            | Self::InvalidLocale
            | Self::InvalidCode => 400,
            Self::PowInvalid(_) => 400,
            Self::DestinationNotAllowed | Self::PowReplayed => 403,
            Self::NotFound => 404,
            Self::AlreadyUsed | Self::Conflict => 409,
            Self::Expired | Self::Cancelled => 410,
            Self::WrongCode { .. } => 422,
            Self::PowRequired { .. } => 428,
            Self::RateLimited { .. }
            | Self::NoAttemptsLeft
            | Self::ResendCooldown { .. }
            | Self::TooManySends => 429,
            Self::Internal(_) => 500,
            Self::NoCapacity { .. } | Self::GatewayUnavailable | Self::Store(_) => 503,
        }
    }

    /// Seconds for `Retry-After`, when there is one.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::RateLimited {
                retry_after_secs, ..
            }
            | Self::ResendCooldown { retry_after_secs }
            | Self::NoCapacity { retry_after_secs } => Some((*retry_after_secs).max(1)),
            Self::Store(_) | Self::GatewayUnavailable => Some(5),
            _ => None,
        }
    }

    /// A sentence for people (never internals: 5xx say little).
    pub fn message(&self) -> String {
        match self {
            Self::Store(_) => "the service is temporarily unavailable".into(),
            Self::Internal(_) => "internal error".into(),
            Self::InvalidPhone(e) => e.to_string(),
            Self::RateLimited { scope, .. } => match crate::policy::rate_code(scope) {
                ErrorCode::TooManyStarts => {
                    "too many codes asked for this number from here; retry later".into()
                }
                ErrorCode::NumberLocked => {
                    "too many wrong codes for this number; retry later".into()
                }
                _ => "too many requests; retry later".into(),
            },
            Self::WrongCode { attempts_left } => {
                format!("wrong code; {attempts_left} attempt(s) left")
            }
            other => other.to_string(),
        }
    }

    /// The metric label of this failure.
    fn outcome(&self) -> &'static str {
        self.code().as_str()
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<PolicyError> for ServiceError {
    fn from(e: PolicyError) -> Self {
        match e {
            PolicyError::Destination(r) => match r.code() {
                ErrorCode::DestinationNotAllowed => Self::DestinationNotAllowed,
                _ => Self::NotAPhoneNumber,
            },
            PolicyError::RateLimited {
                scope,
                retry_after_secs,
            } => Self::RateLimited {
                scope,
                retry_after_secs,
            },
            PolicyError::PowRequired { challenge } => Self::PowRequired { challenge },
            PolicyError::PowInvalid(p) => Self::PowInvalid(p),
            PolicyError::PowReplayed => Self::PowReplayed,
            PolicyError::Store(s) => Self::Store(s),
        }
    }
}

/// Who is asking: carried into the policy and the audit log.
#[derive(Clone, Debug)]
pub struct RequestMeta {
    /// The server's own request id (returned as `X-Request-Id`).
    pub request_id: String,
    /// The `X-Request-Id` the client sent, if sane: recorded apart, never as the server's.
    pub client_request_id: Option<String>,
    /// The client address.
    pub client_ip: IpAddr,
    /// Presented a valid API key (a trusted backend).
    pub trusted: bool,
}

/// `POST /v1/verifications` after JSON decoding.
#[derive(Clone, Debug)]
pub struct StartInput {
    /// The destination as typed.
    pub phone: String,
    /// The app name (default app when absent).
    pub app: Option<String>,
    /// The locale.
    pub locale: Option<String>,
    /// A solved proof of work.
    pub pow: Option<PowSolution>,
}

/// The parts [`Service`] is built from.
pub struct ServiceParts {
    /// The state.
    pub store: Arc<dyn Store>,
    /// Code and receipt keys.
    pub keys: KeyRing,
    /// The audit log.
    pub audit: Arc<AuditLog>,
    /// Budgets, allow-list, proof of work.
    pub policy: Arc<Policy>,
    /// Where sends go.
    pub dispatcher: Arc<dyn Dispatcher>,
    /// The time.
    pub clock: Arc<dyn Clock>,
    /// The configured apps (the first is the default).
    pub apps: Vec<AppConfig>,
    /// The receipts' `iss`.
    pub issuer: String,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}

/// The verification service. Cheap to share behind an `Arc`.
pub struct Service {
    store: Arc<dyn Store>,
    keys: KeyRing,
    audit: Arc<AuditLog>,
    policy: Arc<Policy>,
    dispatcher: Arc<dyn Dispatcher>,
    clock: Arc<dyn Clock>,
    apps: Vec<AppConfig>,
    issuer: String,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl Service {
    /// Assembles the service.
    pub fn new(parts: ServiceParts) -> Self {
        let ServiceParts {
            store,
            keys,
            audit,
            policy,
            dispatcher,
            clock,
            apps,
            issuer,
            metrics,
        } = parts;
        Self {
            store,
            keys,
            audit,
            policy,
            dispatcher,
            clock,
            apps,
            issuer,
            metrics,
        }
    }

    /// The keys (for the JWKS).
    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    /// The audit log (the operator console observes it).
    pub fn audit_log(&self) -> &Arc<AuditLog> {
        &self.audit
    }

    /// The store (for readiness).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The dispatcher (for readiness).
    pub fn dispatcher(&self) -> &Arc<dyn Dispatcher> {
        &self.dispatcher
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The receipts' issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    fn app(&self, name: &str) -> Option<&AppConfig> {
        self.apps.iter().find(|a| a.name == name)
    }

    async fn audit(
        &self,
        kind: &'static str,
        meta: Option<&RequestMeta>,
        record: Option<(&str, &str)>,
        phone: Option<&PhoneNumber>,
        detail: serde_json::Value,
    ) {
        self.write_audit(self.event(kind, meta, record, phone, detail), meta)
            .await;
    }

    fn event(
        &self,
        kind: &'static str,
        meta: Option<&RequestMeta>,
        record: Option<(&str, &str)>,
        phone: Option<&PhoneNumber>,
        detail: serde_json::Value,
    ) -> AuditEvent {
        AuditEvent {
            kind,
            at_ms: self.clock.now_ms(),
            request_id: meta.map(|m| m.request_id.clone()),
            client_request_id: meta.and_then(|m| m.client_request_id.clone()),
            client: meta.map(|m| m.client_ip),
            verification_id: record.map(|(id, _)| id.to_owned()),
            app: record.map(|(_, app)| app.to_owned()),
            phone: phone.cloned(),
            detail,
        }
    }

    async fn write_audit(&self, event: AuditEvent, meta: Option<&RequestMeta>) {
        let kind = event.kind;
        if let Err(e) = self.audit.append(event).await {
            tracing::error!(kind, error = %e, request_id = meta.map(|m| m.request_id.as_str()), "audit append failed");
        }
    }

    /// Writes the audit line of a staged store step while the step becomes durable;
    /// returns when both are done. A line may then name a change that a crash between the
    /// two syncs took from the store; its client got no answer.
    async fn audit_beside(
        &self,
        durable: Durable,
        event: Option<AuditEvent>,
        meta: &RequestMeta,
    ) -> Result<(), StoreError> {
        let audited = async {
            if let Some(event) = event {
                self.write_audit(event, Some(meta)).await;
            }
        };
        tokio::join!(durable.wait(), audited).0
    }

    /// Starts a verification: `201` with its view.
    ///
    /// # Errors
    /// [`ServiceError`]: bad input, policy refusals, gateway or store failures.
    pub async fn start(
        &self,
        input: StartInput,
        meta: &RequestMeta,
    ) -> Result<VerificationView, ServiceError> {
        let result = self.start_inner(input, meta).await;
        match &result {
            Ok(_) => self.metrics.verification("started"),
            Err(e) => self.metrics.verification(e.outcome()),
        }
        self.metrics
            .set_pow_difficulty(self.policy.current_difficulty());
        result
    }

    async fn start_inner(
        &self,
        input: StartInput,
        meta: &RequestMeta,
    ) -> Result<VerificationView, ServiceError> {
        let phone = PhoneNumber::parse(&input.phone).map_err(ServiceError::InvalidPhone)?;
        let app = match input.app.as_deref() {
            None => self.apps.first(),
            Some(name) => self.app(name),
        }
        .ok_or(ServiceError::UnknownApp)?;
        let locale = input.locale.map(validate_locale).transpose()?;
        let now = self.clock.now_ms();
        let ctx = StartContext {
            phone: &phone,
            app: &app.name,
            client_ip: meta.client_ip,
            trusted: meta.trusted,
            pow: input.pow.as_ref(),
            now_ms: now,
        };
        let gate = match self.policy.gate_start(&ctx).await {
            Ok(g) => g,
            Err(e) => return Err(self.refused_start(e, meta, app, &phone).await),
        };
        // From here on the destination is the normalised number the policy judged.
        let phone = gate.phone.clone();
        let id = random::id("v_").map_err(|e| ServiceError::Internal(e.to_string()))?;
        let test_number = gate.test_code.is_some();
        let code = match gate.test_code.clone() {
            Some(c) => Code::new(normalize(&c)),
            None => app
                .code
                .generate(&mut OsRandom)
                .map_err(|e| ServiceError::Internal(e.to_string()))?,
        };
        let key = self.keys.code_key();
        let stored = StoredCode {
            digest: key.digest(&id, &code).to_vec(),
            key_id: key.id().to_owned(),
            version: 1,
        };
        let expires = whole_second(now, self.policy.lifetime_ms());
        let record = Record {
            id: id.clone(),
            app: app.name.clone(),
            phone: phone.as_str().to_owned(),
            locale: locale.clone(),
            outcome: Outcome::Open,
            code: stored,
            created_at_ms: now,
            expires_at_ms: expires,
            attempts: 0,
            max_attempts: self.policy.max_attempts(),
            sends: 1,
            resend_at_ms: whole_second(now, self.policy.cooldown_ms(1)),
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
            trusted: meta.trusted,
        };
        // The budgets and the record in one store step (one commit on the embedded store),
        // its audit line written while the step becomes durable; the SMS leaves after both.
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
                return Err(self.refused_start(e, meta, app, &phone).await);
            }
        };
        let started = self.event(
            "verification.started",
            Some(meta),
            Some((&id, &app.name)),
            Some(&phone),
            json!({"code_version": 1, "test_number": test_number, "trusted": meta.trusted, "locale": locale}),
        );
        self.audit_beside(durable, Some(started), meta).await?;
        if test_number {
            self.metrics.dispatch("skipped");
        } else if let Err(e) = self
            .send(app, &record, (&phone, &code), &admission, meta)
            .await
        {
            // The SMS never left: give the person's quota back.
            self.policy.refund(&admission, now).await;
            return Err(e);
        }
        Ok(self.view(&record, now))
    }

    /// Audits a start the policy refused; returns the error to answer.
    async fn refused_start(
        &self,
        e: PolicyError,
        meta: &RequestMeta,
        app: &AppConfig,
        phone: &PhoneNumber,
    ) -> ServiceError {
        let class = self.destination_refused(&e, phone);
        let err = ServiceError::from(e);
        self.audit(
            "policy.refused",
            Some(meta),
            None,
            Some(phone),
            json!({"app": app.name, "reason": err.code(), "class": class}),
        )
        .await;
        err
    }

    /// Logs and counts a refused destination by its class (the answer never carries it);
    /// answers the class for the audit line.
    fn destination_refused(&self, e: &PolicyError, phone: &PhoneNumber) -> Option<&'static str> {
        let PolicyError::Destination(refusal) = e else {
            return None;
        };
        let class = refusal.as_str();
        self.metrics.destination_refused(class);
        // `phone` displays masked: country code and last two digits.
        tracing::info!(reason = class, %phone, "destination refused");
        Some(class)
    }

    /// Composes and dispatches the SMS of the current code (queued when the phones lack
    /// capacity this moment).
    async fn send(
        &self,
        app: &AppConfig,
        record: &Record,
        (phone, code): (&PhoneNumber, &Code),
        admission: &Admission,
        meta: &RequestMeta,
    ) -> Result<(), ServiceError> {
        let (text, segments) = app
            .compose_sms(record.locale.as_deref(), code)
            .map_err(|e| {
                ServiceError::Internal(format!("cannot compose the SMS for app {}: {e}", app.name))
            })?;
        let now = self.clock.now_ms();
        let version = record.code.version;
        let job = SendJob {
            verification_id: record.id.clone(),
            code_version: version,
            message: Outgoing {
                message_id: format!("{}.{version}.0", record.id),
                phone: phone.as_str().to_owned(),
                text,
                ttl_secs: u64::try_from((record.expires_at_ms - now).max(0) / 1000).unwrap_or(0),
                segments,
            },
            expires_at_ms: record.expires_at_ms,
            priority: admission.priority,
            work: admission.work,
        };
        match self.dispatcher.dispatch(job).await {
            Ok(Dispatched::Queued) => {
                self.metrics.dispatch("queued");
                self.audit(
                    "sms.queued",
                    Some(meta),
                    Some((&record.id, &record.app)),
                    Some(phone),
                    json!({"code_version": version, "priority": admission.priority.as_str()}),
                )
                .await;
                Ok(())
            }
            Ok(_) => {
                self.metrics.dispatch("accepted");
                Ok(())
            }
            Err(e) => {
                let (err, label) = match e {
                    DispatchError::NoCapacity { retry_after_secs } => {
                        (ServiceError::NoCapacity { retry_after_secs }, "no_capacity")
                    }
                    _ => (ServiceError::GatewayUnavailable, "unavailable"),
                };
                self.metrics.dispatch(label);
                let failed = DeliveryRecord {
                    state: DeliveryState::Failed,
                    gateway: None,
                    message_id: None,
                    updated_at_ms: now,
                    detail: Some(label.to_owned()),
                };
                // Best effort: the client sees the 503 either way.
                if let Err(se) = self
                    .store
                    .update_delivery(&record.id, version, &failed)
                    .await
                {
                    tracing::warn!(request_id = %meta.request_id, error = %se, "could not record the failed send");
                }
                self.audit(
                    "sms.failed",
                    Some(meta),
                    Some((&record.id, &record.app)),
                    Some(phone),
                    json!({"code_version": version, "reason": label}),
                )
                .await;
                Err(err)
            }
        }
    }

    /// The current view of a verification.
    ///
    /// # Errors
    /// [`ServiceError::NotFound`], [`ServiceError::Store`].
    pub async fn status(&self, id: &str) -> Result<VerificationView, ServiceError> {
        if !valid_id(id) {
            return Err(ServiceError::NotFound);
        }
        let record = self.store.get(id).await?.ok_or(ServiceError::NotFound)?;
        Ok(self.view(&record, self.clock.now_ms()))
    }

    /// Checks a code: `200` with a receipt exactly once.
    ///
    /// # Errors
    /// [`ServiceError`]: wrong code (422), expired/cancelled (410), no attempts (429),
    /// already used (409), unknown (404), budgets (429), store (503).
    pub async fn check(
        &self,
        id: &str,
        typed: &str,
        meta: &RequestMeta,
    ) -> Result<CheckResponse, ServiceError> {
        self.check_counted(id, typed, meta, true).await
    }

    /// [`Service::check`] for an integration that authenticated with its own secret (the
    /// Twilio Verify-compatible API): a backend checks for all its users from one address,
    /// so the per-IP check budget does not apply; the attempts per code and the lock of a
    /// number after too many wrong codes do.
    ///
    /// # Errors
    /// As [`Service::check`].
    pub async fn check_trusted(
        &self,
        id: &str,
        typed: &str,
        meta: &RequestMeta,
    ) -> Result<CheckResponse, ServiceError> {
        self.check_counted(id, typed, meta, false).await
    }

    /// The current record of a verification (for the integrations' own views).
    ///
    /// # Errors
    /// [`ServiceError::NotFound`] (a malformed id too), [`ServiceError::Store`].
    pub async fn record(&self, id: &str) -> Result<Record, ServiceError> {
        if !valid_id(id) {
            return Err(ServiceError::NotFound);
        }
        self.store.get(id).await?.ok_or(ServiceError::NotFound)
    }

    async fn check_counted(
        &self,
        id: &str,
        typed: &str,
        meta: &RequestMeta,
        ip_budget: bool,
    ) -> Result<CheckResponse, ServiceError> {
        let result = self.check_inner(id, typed, meta, ip_budget).await;
        match &result {
            Ok(_) => {
                self.metrics.check("approved");
                self.metrics.verification("approved");
            }
            Err(e) => self.metrics.check(e.outcome()),
        }
        result
    }

    async fn check_inner(
        &self,
        id: &str,
        typed: &str,
        meta: &RequestMeta,
        ip_budget: bool,
    ) -> Result<CheckResponse, ServiceError> {
        if typed.len() > MAX_CODE_INPUT {
            return Err(ServiceError::InvalidCode);
        }
        let now = self.clock.now_ms();
        if !valid_id(id) {
            // Counted all the same: probing ids costs the check budget too.
            if ip_budget {
                self.policy.admit_check(meta.client_ip, now).await?;
            }
            return Err(ServiceError::NotFound);
        }
        let code = Code::new(normalize(typed));
        let guess = Guess {
            digests: self
                .keys
                .code_keys()
                .iter()
                .map(|k| (k.id().to_owned(), k.digest(id, &code).to_vec()))
                .collect(),
        };
        let (budget_key, limit, window_ms) = self.policy.check_budget(meta.client_ip);
        let budget = BudgetRequest {
            key: &budget_key,
            limit,
            window_ms,
        };
        // Budget, attempt count, comparison and consumption: one atomic store step. Its
        // answer may come before it is durable: the audit line of a refusal is written
        // meanwhile, and nothing is answered before both are done.
        let Staged { value, durable } = self
            .store
            .check_staged(id, &guess, ip_budget.then_some(budget), now)
            .await?;
        let (refusal, event) = match value {
            CheckOutcome::Approved(record) => {
                return self.approve(id, &record, now, durable, meta).await;
            }
            CheckOutcome::Wrong {
                attempts_left,
                code_version,
            } => (
                {
                    // A wrong code counts against its number, across verifications.
                    if let Ok(Some(rec)) = self.store.get(id).await
                        && let Ok(phone) = PhoneNumber::parse(&rec.phone)
                        && !rec.test_number
                    {
                        self.policy.record_failed_check(&phone, now).await;
                    }
                    ServiceError::WrongCode { attempts_left }
                },
                Some(self.event(
                    "check.rejected",
                    Some(meta),
                    Some((id, "")),
                    None,
                    json!({"code_version": code_version, "attempts_left": attempts_left}),
                )),
            ),
            CheckOutcome::RateLimited { retry_after_ms } => {
                (Policy::check_refused(retry_after_ms).into(), None)
            }
            CheckOutcome::NotFound => (ServiceError::NotFound, None),
            CheckOutcome::AlreadyUsed => (ServiceError::AlreadyUsed, None),
            CheckOutcome::Cancelled => (ServiceError::Cancelled, None),
            CheckOutcome::Expired => (
                ServiceError::Expired,
                Some(self.event(
                    "verification.expired",
                    Some(meta),
                    Some((id, "")),
                    None,
                    json!({}),
                )),
            ),
            CheckOutcome::NoAttemptsLeft => (ServiceError::NoAttemptsLeft, None),
        };
        self.audit_beside(durable, event, meta).await?;
        Err(refusal)
    }

    /// The approval of a check: the receipt is signed while the store's step becomes
    /// durable; the `check.approved` line is written after it is, so the audit log never
    /// names an approval a crash could take back (a code approved twice would show).
    async fn approve(
        &self,
        id: &str,
        record: &Record,
        now: i64,
        durable: Durable,
        meta: &RequestMeta,
    ) -> Result<CheckResponse, ServiceError> {
        // Only anonymous verifications feed the approval signal: a test number's or a trusted
        // backend's approvals must not lower the difficulty a flood meets.
        if !record.test_number && !record.trusted {
            self.policy.record_approval_later(now);
        }
        let audience = self
            .app(&record.app)
            .map(|a| a.audience().to_owned())
            .unwrap_or_else(|| record.app.clone());
        let iat = now.div_euclid(1000);
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: audience,
            sub: id.to_owned(),
            jti: id.to_owned(),
            phone_number: record.phone.clone(),
            phone_number_verified: true,
            iat,
            exp: iat + RECEIPT_LIFETIME_SECS,
        };
        let receipt = self.keys.sign_receipt(&claims);
        durable.wait().await?;
        let phone = PhoneNumber::parse(&record.phone).ok();
        self.audit(
            "check.approved",
            Some(meta),
            Some((id, &record.app)),
            phone.as_ref(),
            json!({"code_version": record.code.version}),
        )
        .await;
        Ok(CheckResponse {
            status: Status::Approved,
            receipt,
        })
    }

    /// Resends: a new code replaces the old one.
    ///
    /// # Errors
    /// [`ServiceError`]: cooldown (429 + `Retry-After`), not pending (409/410/429), budgets,
    /// gateway or store failures.
    pub async fn resend(
        &self,
        id: &str,
        pow: Option<PowSolution>,
        meta: &RequestMeta,
    ) -> Result<VerificationView, ServiceError> {
        let result = self.resend_inner(id, pow, meta).await;
        match &result {
            Ok(_) => self.metrics.verification("resent"),
            Err(e) => self.metrics.verification(e.outcome()),
        }
        result
    }

    async fn resend_inner(
        &self,
        id: &str,
        pow: Option<PowSolution>,
        meta: &RequestMeta,
    ) -> Result<VerificationView, ServiceError> {
        if !valid_id(id) {
            return Err(ServiceError::NotFound);
        }
        let now = self.clock.now_ms();
        let record = self.store.get(id).await?.ok_or(ServiceError::NotFound)?;
        not_pending_error(record.status(now)).map_or(Ok(()), Err)?;
        if now < record.resend_at_ms {
            return Err(ServiceError::ResendCooldown {
                retry_after_secs: ceil_secs(record.resend_at_ms - now),
            });
        }
        if record.sends >= self.policy.max_sends() {
            return Err(ServiceError::TooManySends);
        }
        let phone = PhoneNumber::parse(&record.phone)
            .map_err(|e| ServiceError::Internal(format!("stored phone: {e}")))?;
        let app = self.app(&record.app).ok_or(ServiceError::UnknownApp)?;
        let ctx = StartContext {
            phone: &phone,
            app: &app.name,
            client_ip: meta.client_ip,
            trusted: meta.trusted,
            pow: pow.as_ref(),
            now_ms: now,
        };
        let admission = match self.policy.admit_resend(&ctx).await {
            Ok(a) => a,
            Err(e) => {
                let class = self.destination_refused(&e, &phone);
                let err = ServiceError::from(e);
                self.audit(
                    "policy.refused",
                    Some(meta),
                    Some((id, &app.name)),
                    Some(&phone),
                    json!({"reason": err.code(), "class": class, "resend": true}),
                )
                .await;
                return Err(err);
            }
        };
        let test_number = record.test_number || admission.test_code.is_some();
        let code = match admission.test_code.clone() {
            Some(c) => Code::new(normalize(&c)),
            None => app
                .code
                .generate(&mut OsRandom)
                .map_err(|e| ServiceError::Internal(e.to_string()))?,
        };
        let key = self.keys.code_key();
        let version = record.code.version + 1;
        let rotation = Rotation {
            code: StoredCode {
                digest: key.digest(id, &code).to_vec(),
                key_id: key.id().to_owned(),
                version,
            },
            expires_at_ms: whole_second(now, self.policy.lifetime_ms()),
            resend_at_ms: whole_second(now, self.policy.cooldown_ms(record.sends + 1)),
            max_sends: self.policy.max_sends(),
        };
        let rotated = self.store.rotate(id, &rotation, now).await;
        if !matches!(rotated, Ok(RotateOutcome::Rotated(_))) {
            // No new code, no SMS: the budgets taken for it go back.
            self.policy.refund(&admission, now).await;
        }
        let mut updated = match rotated? {
            RotateOutcome::Rotated(r) => *r,
            RotateOutcome::NotFound => return Err(ServiceError::NotFound),
            RotateOutcome::CoolingDown { retry_at_ms } => {
                return Err(ServiceError::ResendCooldown {
                    retry_after_secs: ceil_secs(retry_at_ms - now),
                });
            }
            RotateOutcome::TooManySends => return Err(ServiceError::TooManySends),
            RotateOutcome::NotPending(s) => {
                return Err(not_pending_error(s).unwrap_or(ServiceError::Conflict));
            }
            RotateOutcome::Conflict => return Err(ServiceError::Conflict),
        };
        self.audit(
            "resend",
            Some(meta),
            Some((id, &app.name)),
            Some(&phone),
            json!({"code_version": version, "sends": updated.sends}),
        )
        .await;
        if test_number {
            let skipped = DeliveryRecord {
                state: DeliveryState::Skipped,
                gateway: None,
                message_id: None,
                updated_at_ms: now,
                detail: Some("test number".into()),
            };
            if self.store.update_delivery(id, version, &skipped).await? {
                updated.delivery = skipped;
            }
            self.metrics.dispatch("skipped");
        } else if let Err(e) = self
            .send(app, &updated, (&phone, &code), &admission, meta)
            .await
        {
            self.policy.refund(&admission, now).await;
            return Err(e);
        }
        Ok(self.view(&updated, now))
    }

    /// Cancels a verification.
    ///
    /// # Errors
    /// [`ServiceError::NotFound`], [`ServiceError::AlreadyUsed`] when it was approved,
    /// [`ServiceError::Store`].
    pub async fn cancel(
        &self,
        id: &str,
        meta: &RequestMeta,
    ) -> Result<VerificationView, ServiceError> {
        if !valid_id(id) {
            return Err(ServiceError::NotFound);
        }
        let now = self.clock.now_ms();
        // Repeating a cancel changes nothing: answered from a read, with no write and no
        // audit line (DELETE has no budget, so it must not make the issuer write).
        let before = self.store.get(id).await?.ok_or(ServiceError::NotFound)?;
        match before.outcome {
            Outcome::Approved => return Err(ServiceError::AlreadyUsed),
            Outcome::Cancelled => return Ok(self.view(&before, now)),
            Outcome::Open => {}
        }
        let record = self
            .store
            .cancel(id, now)
            .await?
            .ok_or(ServiceError::NotFound)?;
        match record.outcome {
            Outcome::Approved => return Err(ServiceError::AlreadyUsed),
            Outcome::Cancelled => {
                let phone = PhoneNumber::parse(&record.phone).ok();
                self.audit(
                    "verification.cancelled",
                    Some(meta),
                    Some((id, &record.app)),
                    phone.as_ref(),
                    json!({}),
                )
                .await;
                self.metrics.verification("cancelled");
            }
            Outcome::Open => {}
        }
        Ok(self.view(&record, now))
    }

    /// The API view of a record at `now`.
    pub fn view(&self, record: &Record, now_ms: i64) -> VerificationView {
        VerificationView {
            id: record.id.clone(),
            status: record.status(now_ms),
            expires_at: rfc3339(record.expires_at_ms),
            resend_at: rfc3339(record.resend_at_ms),
            attempts_left: record.attempts_left(),
            delivery: Delivery {
                state: record.delivery.state,
                gateway: record.delivery.gateway.clone(),
                updated_at: Some(rfc3339(record.delivery.updated_at_ms)),
            },
        }
    }
}

/// The error a resend gets on a verification in state `s` (`None` when pending).
fn not_pending_error(s: Status) -> Option<ServiceError> {
    match s {
        Status::Pending => None,
        Status::Approved => Some(ServiceError::AlreadyUsed),
        Status::Cancelled => Some(ServiceError::Cancelled),
        Status::Expired => Some(ServiceError::Expired),
        Status::MaxAttemptsReached => Some(ServiceError::NoAttemptsLeft),
        _ => Some(ServiceError::Conflict),
    }
}

/// `now_ms + span_ms` down to a whole second. The API shows times to the second
/// (`expires_at`, `resend_at`), so stored times are whole seconds and the shown time is the
/// exact one: a client counting down to it never calls a code dead that the issuer would
/// still accept, nor resends early.
fn whole_second(now_ms: i64, span_ms: i64) -> i64 {
    (now_ms + span_ms).div_euclid(1000) * 1000
}

fn ceil_secs(ms: i64) -> u64 {
    u64::try_from(ms.max(0)).unwrap_or(0).div_ceil(1000).max(1)
}

/// Whether `id` has the shape of a verification id (`v_` + 22 base64url characters). Any
/// other string is answered like an unknown id, without touching the store.
pub fn valid_id(id: &str) -> bool {
    id.len() == 24
        && id.starts_with("v_")
        && id[2..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What people type, made comparable: separators removed, letters upper-cased (codes are
/// digits or upper-case letters).
fn normalize(typed: &str) -> String {
    typed
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '\u{a0}' | '\t'))
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

fn validate_locale(l: String) -> Result<String, ServiceError> {
    let ok = !l.is_empty()
        && l.len() <= MAX_LOCALE
        && l.split(['-', '_'])
            .all(|p| !p.is_empty() && p.len() <= 8 && p.bytes().all(|b| b.is_ascii_alphanumeric()));
    if ok {
        Ok(l)
    } else {
        Err(ServiceError::InvalidLocale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> AppConfig {
        use crate::config::Origin;
        AppConfig {
            name: "shop".into(),
            origins: vec![Origin::parse("https://shop.example.com").expect("origin")],
            android_app_hashes: vec![],
            templates: Default::default(),
            default_locale: "en".into(),
            audience: None,
            display_name: Some("Shop".into()),
            code: otpgate_core::code::CodeSpec::default(),
        }
    }

    #[test]
    fn shown_times_are_the_stored_ones() {
        // The API shows whole seconds, so the stored times are whole seconds.
        assert_eq!(whole_second(1_700_000_000_700, 300_000), 1_700_000_300_000);
        assert_eq!(whole_second(1_700_000_000_000, 300_000), 1_700_000_300_000);
        assert_eq!(whole_second(1_700_000_000_999, 30_000), 1_700_000_030_000);
        let t = whole_second(1_700_000_000_999, 60_000);
        assert_eq!(rfc3339(t), "2023-11-14T22:14:20Z");
        assert_eq!(t % 1000, 0);
    }

    #[test]
    fn ids_are_checked_before_the_store() {
        assert!(valid_id("v_AAAAAAAAAAAAAAAAAAAAAA"));
        assert!(valid_id(&random::id("v_").expect("rng")));
        for bad in [
            "",
            "v_",
            "x_AAAAAAAAAAAAAAAAAAAAAA",
            "v_AAAAAAAAAAAAAAAAAAAAA/",
            "v_AAAAAAAAAAAAAAAAAAAAAAA",
            "v_AAAAAAAAAAAAAAAAAAAA\u{e9}",
        ] {
            assert!(!valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn the_sms_ends_with_the_webotp_line_and_parses_back() {
        let (text, segments) = app()
            .compose_sms(None, &Code::new("123456"))
            .expect("composes");
        assert_eq!(text, "Your Shop code is 123456\n@shop.example.com #123456");
        assert_eq!(segments, 1);
        let parsed = otpgate_core::sms::parse(&text);
        assert_eq!(parsed.webotp.map(|w| w.code), Some("123456".to_owned()));
        let mut with_hash = app();
        with_hash.android_app_hashes = vec!["FA+9qCX9VSu".into()];
        with_hash.templates.0.insert(
            "fr".into(),
            otpgate_core::sms::Template::new("{code} est votre code {app}").expect("template"),
        );
        let (text, _) = with_hash
            .compose_sms(Some("fr-CA"), &Code::new("654321"))
            .expect("composes");
        assert_eq!(
            text,
            "<#> 654321 est votre code Shop\n@shop.example.com #654321 FA+9qCX9VSu"
        );
        let (text, _) = with_hash
            .compose_sms(Some("de"), &Code::new("654321"))
            .expect("composes");
        assert!(text.contains("Ihr Code"), "{text}");
    }

    #[test]
    fn locales_and_typed_codes() {
        assert!(validate_locale("pt-BR".into()).is_ok());
        assert!(validate_locale("".into()).is_err());
        assert!(validate_locale("en;DROP".into()).is_err());
        assert!(validate_locale("x".repeat(40)).is_err());
        assert_eq!(normalize(" 123-456 "), "123456");
        assert_eq!(normalize("ab2c"), "AB2C");
    }

    #[test]
    fn every_error_has_a_status_and_a_code() {
        let e = ServiceError::Store(StoreError::Unavailable("redis at 10.0.0.3 refused".into()));
        assert_eq!(e.status(), 503);
        assert!(!e.message().contains("10.0.0.3"));
        assert_eq!(ServiceError::WrongCode { attempts_left: 2 }.status(), 422);
        assert_eq!(
            ServiceError::ResendCooldown {
                retry_after_secs: 0
            }
            .retry_after(),
            Some(1)
        );
        assert_eq!(ceil_secs(1), 1);
        assert_eq!(ceil_secs(29_001), 30);
    }
}
