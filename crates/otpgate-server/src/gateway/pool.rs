//! The pool of devices: choice, budgets, health, retries, failover and delivery tracking.
//!
//! # Invariants
//! - Nothing is sent for an expired code: the clock is checked against `expires_at_ms`
//!   (with the gateway's 5-second minimum ttl) right before every attempt, and the stored
//!   verification must still be open on the same code version.
//! - The same send never goes out twice: message ids are `{verification_id}.{version}.{route}`;
//!   a retry to the same device reuses the id (sms-gate answers 409 = already accepted); a
//!   new route (another device) is taken only after the previous one certainly failed; a
//!   send that timed out, on a device that cannot be asked about it either, stays with that
//!   device (polled) until it reports the message's fate or answers without it.
//! - Budgets are counted in the store (`dev:{name}:min`, `dev:{name}:day`), in segments, so
//!   they hold across issuer instances. A send of a lower [`Priority`] may take only its
//!   share of each budget. A dispatch that finds no capacity queues the send in the store
//!   (`queue.rs`), or fails at once when it could not leave within the queue's bound.
//! - Delivery events are applied through `Store::update_delivery`, which only moves forward
//!   and only for the current code version, so replays and stale events change nothing.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use otpgate_core::phone::PhoneNumber;
use otpgate_core::wire::DeliveryState;
use serde::Serialize;
use serde_json::{Value, json};

use super::adapter::{self, Accepted, Adapter, MultiOtp, RemoteState, SendError};
use super::config::{DeviceConfig, GatewaysConfig, Kind, Mode, Secret, secret, signing_key};
use super::queue::{Queue, Sealer, entry_key, queue_rank};
use super::{DispatchError, Dispatched, Dispatcher, Pressure, Priority, SendJob};
use crate::audit::{AuditEvent, AuditLog};
use crate::clock::Clock;
use crate::destination::{self, Region};
use crate::keys::KeyRing;
use crate::store::{Budget, DeliveryRecord, Outcome, QueuedSend, SendLease, Store};

/// The shortest lifetime worth sending (sms-gate.app refuses a ttl under 5 s).
pub const MIN_LIFE_MS: i64 = 5_000;
pub(super) const BREAKER_THRESHOLD: u32 = 3;
const BREAKER_OPEN_MS: i64 = 30_000;
const SAME_DEVICE_RETRIES: u32 = 2;
const DAY_MS: i64 = 86_400_000;
const SUB_WINDOWS: i64 = 5;

#[derive(Debug, Default)]
pub(super) struct Health {
    /// The last health check's answer (true until one says otherwise).
    pub(super) healthy: bool,
    /// Why the phone is out of the rotation ([`super::health::judge`]), `None` while in.
    pub(super) reason: Option<String>,
    /// The last health answer's details.
    pub(super) report: Option<super::health::PhoneHealth>,
    pub(super) failures: u32,
    pub(super) open_until_ms: i64,
}

pub(super) struct Device {
    pub(super) cfg: DeviceConfig,
    adapter: Arc<dyn Adapter>,
    pub(super) multiotp: Option<Arc<MultiOtp>>,
    /// The key of this device's webhooks (sms-gate: falls back to the pool key).
    pub(super) signing_key: Option<Secret>,
    /// multiOTP: the phone's Basic-auth password.
    pub(super) password: Option<Secret>,
    health: Mutex<Health>,
    submitted: AtomicU64,
}

impl Device {
    pub(super) fn health(&self) -> MutexGuard<'_, Health> {
        self.health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn usable(&self, now_ms: i64) -> bool {
        let h = self.health();
        h.healthy && now_ms >= h.open_until_ms
    }

    fn ok(&self) {
        let mut h = self.health();
        h.failures = 0;
        h.open_until_ms = 0;
    }

    fn fail(&self, now_ms: i64) {
        let mut h = self.health();
        h.failures = h.failures.saturating_add(1);
        if h.failures >= BREAKER_THRESHOLD {
            h.open_until_ms = now_ms + BREAKER_OPEN_MS;
        }
    }

    fn serves(&self, region: Option<Region>) -> bool {
        if self.cfg.regions.is_empty() {
            return true;
        }
        region.is_some_and(|r| self.cfg.regions.contains(&r))
    }
}

#[derive(Clone, Debug)]
pub(super) struct InFlight {
    pub(super) job: SendJob,
    device: usize,
    route: u32,
    tried: Vec<usize>,
    remote_id: Option<String>,
    polled_at_ms: i64,
    /// Kept on this route after a send that timed out while the device could not be asked
    /// about it: it may or may not have the message. A poll that finds the device answering
    /// without it fails it over.
    uncertain: bool,
}

/// Counters the issuer may expose as metrics.
#[derive(Debug, Default)]
pub(super) struct Counters {
    submitted: AtomicU64,
    sent: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    failovers: AtomicU64,
    no_capacity: AtomicU64,
    expired: AtomicU64,
    queued: AtomicU64,
    dequeued: AtomicU64,
    pub(super) webhooks_accepted: AtomicU64,
    pub(super) webhooks_rejected: AtomicU64,
    pub(super) webhooks_duplicate: AtomicU64,
}

/// A snapshot of the pool for metrics and readiness.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PoolMetrics {
    /// Sends accepted by a gateway.
    pub submitted: u64,
    /// Sends reported sent.
    pub sent: u64,
    /// Sends reported delivered.
    pub delivered: u64,
    /// Verifications whose every route failed.
    pub failed: u64,
    /// Moves to another device.
    pub failovers: u64,
    /// Dispatches refused for lack of capacity.
    pub no_capacity: u64,
    /// Sends dropped because the code expired first (or its queue bound passed).
    pub expired: u64,
    /// Sends queued for lack of capacity.
    pub queued: u64,
    /// Queued sends that left for a phone.
    pub dequeued: u64,
    /// Sends waiting in the queue (as this instance knows it).
    pub queue_waiting: u64,
    /// Webhooks accepted.
    pub webhooks_accepted: u64,
    /// Webhooks refused (bad signature, stale).
    pub webhooks_rejected: u64,
    /// Webhooks seen before (de-duplicated).
    pub webhooks_duplicate: u64,
    /// Messages being tracked.
    pub in_flight: u64,
    /// Per device.
    pub devices: Vec<DeviceMetrics>,
}

/// One device in [`PoolMetrics`].
#[derive(Clone, Debug, Default, Serialize)]
pub struct DeviceMetrics {
    /// The name.
    pub name: String,
    /// The kind.
    pub kind: &'static str,
    /// Healthy and its circuit closed.
    pub up: bool,
    /// Sends it accepted.
    pub submitted: u64,
}

enum Reserve {
    Device(usize),
    NoCapacity { retry_after_ms: i64 },
    NoDevice,
    Store,
}

/// The pool (implements [`Dispatcher`]).
pub struct Pool {
    pub(super) cfg: GatewaysConfig,
    pub(super) devices: Vec<Device>,
    pub(super) store: Arc<dyn Store>,
    audit: Arc<AuditLog>,
    pub(super) clock: Arc<dyn Clock>,
    pool_key: Option<Secret>,
    inflight: Mutex<HashMap<String, InFlight>>,
    remote: Mutex<HashMap<String, String>>,
    pub(super) counters: Counters,
    started: AtomicBool,
    /// Failed messages waiting for their next route (a channel, not a direct spawn, keeps
    /// the send → event → failover → send cycle out of the future types).
    failover_tx: tokio::sync::mpsc::UnboundedSender<(InFlight, String)>,
    failover_rx: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<(InFlight, String)>>>,
    /// Sends waiting for capacity.
    queue: Queue,
    /// What a queued send must have paid to leave now (the policy's proof of work).
    pressure: OnceLock<Arc<dyn Pressure>>,
    /// Who is told of failures and health answers (the operator console), if anyone.
    pub(super) observer: OnceLock<super::fleet::PoolObserver>,
    /// This instance's name on the leases of its in-flight sends.
    instance: String,
    /// The keys (`{verification_id}.{version}`) of the leases this instance holds.
    leased: Mutex<HashSet<String>>,
    me: Weak<Self>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field(
                "devices",
                &self.devices.iter().map(|d| &d.cfg.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// How long the lease of an in-flight send holds without renewal: when its instance stops
/// (crash, `kill -9`, lost network) another instance takes the send over after this.
pub const LEASE_MS: i64 = 15_000;
/// How often an instance renews its leases and looks for expired ones.
const LEASE_TICK: Duration = Duration::from_millis(1_000);
/// Leases taken over at once.
const LEASE_BATCH: u32 = 16;

/// What the lease of an in-flight send carries: its route in the clear, the message sealed.
#[derive(Serialize, serde::Deserialize)]
struct LeaseBody {
    message_id: String,
    device: String,
    route: u32,
    tried: Vec<String>,
    remote_id: Option<String>,
    /// Written before the device was asked: the holder may have stopped before it was.
    sending: bool,
    sealed: String,
}

/// `{verification_id}.{version}.{route}`.
fn message_id(job: &SendJob, route: u32) -> String {
    format!("{}.{}.{route}", job.verification_id, job.code_version)
}

/// Splits a message id into verification id, code version and route.
pub fn parse_message_id(id: &str) -> Option<(&str, u32, u32)> {
    let mut it = id.rsplitn(3, '.');
    let route = it.next()?.parse().ok()?;
    let version = it.next()?.parse().ok()?;
    let vid = it.next().filter(|v| !v.is_empty())?;
    Some((vid, version, route))
}

impl Pool {
    /// Builds the pool; reads the secrets its config names from the environment. Queued
    /// sends are sealed under a key derived from `keys`' code key (every issuer sharing
    /// the store shares it).
    ///
    /// # Errors
    /// An invalid section or a missing secret.
    pub fn new(
        cfg: GatewaysConfig,
        store: Arc<dyn Store>,
        audit: Arc<AuditLog>,
        clock: Arc<dyn Clock>,
        keys: &KeyRing,
    ) -> anyhow::Result<Arc<Self>> {
        cfg.validate().map_err(|e| anyhow::anyhow!(e))?;
        // A phone with several SIMs sends through one entry per SIM.
        let mut cfg = cfg;
        cfg.devices = cfg.devices.iter().flat_map(DeviceConfig::routes).collect();
        let mut names = HashSet::new();
        if let Some(d) = cfg.devices.iter().find(|d| !names.insert(d.name.as_str())) {
            anyhow::bail!(
                "gateways.devices: the name {} is used twice (a SIM entry is named \
                 {{phone}}/sim{{n}})",
                d.name
            );
        }
        let pool_key = signing_key(
            &cfg.signing_key,
            &cfg.webhook_signing_key_env,
            "gateways.webhook_signing_key_env",
        )?;
        let sealer = Arc::new(Sealer::new(keys));
        let mut devices = Vec::with_capacity(cfg.devices.len());
        for d in &cfg.devices {
            let (adapter, multiotp) = adapter::build(d, clock.clone(), &store, &sealer)?;
            let what = format!("gateways.devices[{}].signing_key_env", d.name);
            let own_key = signing_key(&d.literal.signing_key, &d.signing_key_env, &what)?;
            let password = if d.kind == Kind::MultiOtp {
                secret(
                    &d.literal.password,
                    &d.password_env,
                    &format!("gateways.devices[{}].password_env", d.name),
                )?
            } else {
                None
            };
            devices.push(Device {
                cfg: d.clone(),
                adapter,
                multiotp,
                signing_key: own_key.or_else(|| {
                    if d.kind == Kind::SmsGate {
                        pool_key.clone()
                    } else {
                        None
                    }
                }),
                password,
                health: Mutex::new(Health {
                    healthy: true,
                    ..Health::default()
                }),
                submitted: AtomicU64::new(0),
            });
        }
        if devices.iter().any(|d| d.cfg.kind == Kind::SmsGate)
            && pool_key.is_none()
            && devices.iter().all(|d| d.signing_key.is_none())
        {
            tracing::warn!(
                "gateways: no webhook signing key: sms-gate delivery events will be refused, state comes from polling only"
            );
        }
        let (failover_tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let queue = Queue::new(sealer, cfg.queue_max, cfg.queue_max_wait_secs);
        let instance = crate::random::id("i_").map_err(|e| anyhow::anyhow!("{e}"))?;
        let pool = Arc::new_cyclic(|me| Self {
            cfg,
            devices,
            store,
            audit,
            clock,
            pool_key,
            inflight: Mutex::new(HashMap::new()),
            remote: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            started: AtomicBool::new(false),
            failover_tx,
            failover_rx: Mutex::new(Some(rx)),
            queue,
            pressure: OnceLock::new(),
            observer: OnceLock::new(),
            instance,
            leased: Mutex::new(HashSet::new()),
            me: me.clone(),
        });
        // Inside a runtime the loops start now: sends another instance queued in a shared
        // store are served before this one sends anything (else at the first dispatch).
        pool.ensure_started();
        Ok(pool)
    }

    pub(super) fn inflight(&self) -> MutexGuard<'_, HashMap<String, InFlight>> {
        self.inflight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A snapshot of the counters and device states.
    pub fn metrics(&self) -> PoolMetrics {
        let c = &self.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let now = self.clock.now_ms();
        PoolMetrics {
            submitted: l(&c.submitted),
            sent: l(&c.sent),
            delivered: l(&c.delivered),
            failed: l(&c.failed),
            failovers: l(&c.failovers),
            no_capacity: l(&c.no_capacity),
            expired: l(&c.expired),
            queued: l(&c.queued),
            dequeued: l(&c.dequeued),
            queue_waiting: u64::from(self.queue.waiting()),
            webhooks_accepted: l(&c.webhooks_accepted),
            webhooks_rejected: l(&c.webhooks_rejected),
            webhooks_duplicate: l(&c.webhooks_duplicate),
            in_flight: self.inflight().len() as u64,
            devices: self
                .devices
                .iter()
                .map(|d| DeviceMetrics {
                    name: d.cfg.name.clone(),
                    kind: d.cfg.kind.as_str(),
                    up: d.usable(now),
                    submitted: l(&d.submitted),
                })
                .collect(),
        }
    }

    /// Starts the health and polling loops (once, inside a tokio runtime).
    pub(super) fn ensure_started(&self) {
        if self.started.swap(true, Ordering::SeqCst) {
            return;
        }
        if tokio::runtime::Handle::try_current().is_err() {
            self.started.store(false, Ordering::SeqCst);
            return;
        }
        let weak = self.me.clone();
        let every = Duration::from_secs(self.cfg.health_interval_secs);
        tokio::spawn(async move {
            loop {
                let Some(pool) = weak.upgrade() else { return };
                pool.check_health().await;
                drop(pool);
                tokio::time::sleep(every).await;
            }
        });
        if let Some(mut rx) = self
            .failover_rx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            let weak = self.me.clone();
            tokio::spawn(async move {
                while let Some((entry, reason)) = rx.recv().await {
                    let Some(pool) = weak.upgrade() else { return };
                    tokio::spawn(pool.failover(entry, reason));
                }
            });
        }
        let weak = self.me.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let Some(pool) = weak.upgrade() else { return };
                pool.poll_once().await;
            }
        });
        let weak = self.me.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(LEASE_TICK).await;
                let Some(pool) = weak.upgrade() else { return };
                pool.lease_tick().await;
            }
        });
        let weak = self.me.clone();
        tokio::spawn(async move {
            let mut pause = Duration::from_millis(QUEUE_TICK_MS);
            loop {
                let Some(pool) = weak.upgrade() else { return };
                // Woken by a new entry, or after the pause (capacity frees with time).
                let _ = tokio::time::timeout(pause, pool.queue.wake.notified()).await;
                pause = pool.drain_queue().await;
            }
        });
    }

    fn leased(&self) -> MutexGuard<'_, HashSet<String>> {
        self.leased
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Leases the send `job` (on `device`, `route`) to this instance: written before each
    /// attempt (`sending`) and once a device took it. `false` when another instance holds
    /// it (this one then leaves it alone); a store that cannot be written does not stop the
    /// send (it then has no lease to be taken over by).
    async fn hold(
        &self,
        job: &SendJob,
        device: usize,
        route: u32,
        tried: &[usize],
        remote_id: Option<&str>,
        sending: bool,
    ) -> bool {
        let sealed = match self.queue.sealer.seal(job) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "send lease: cannot seal");
                return true;
            }
        };
        let body = LeaseBody {
            message_id: message_id(job, route),
            device: self.devices[device].cfg.name.clone(),
            route,
            tried: tried
                .iter()
                .map(|&i| self.devices[i].cfg.name.clone())
                .collect(),
            remote_id: remote_id.map(str::to_owned),
            sending,
            sealed,
        };
        let now = self.clock.now_ms();
        let key = entry_key(job);
        let lease = SendLease {
            key: key.clone(),
            owner: self.instance.clone(),
            until_ms: now + LEASE_MS,
            deadline_ms: job.expires_at_ms + 120_000,
            body: serde_json::to_string(&body).unwrap_or_default(),
        };
        match self.store.lease_put(&lease, now).await {
            Ok(true) => {
                self.leased().insert(key);
                true
            }
            Ok(false) => {
                tracing::info!(verification = %job.verification_id, "send held by another instance: left to it");
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "send lease: store unavailable");
                true
            }
        }
    }

    /// Gives up the lease of `job`'s send (delivered, failed, no longer wanted).
    async fn let_go(&self, job: &SendJob) {
        let key = entry_key(job);
        if self.leased().remove(&key)
            && let Err(e) = self.store.lease_release(&key, &self.instance).await
        {
            tracing::warn!(error = %e, "send lease: could not release");
        }
    }

    /// Renews this instance's leases (dropping the sends another instance took over) and
    /// takes over the sends whose instance stopped renewing theirs.
    async fn lease_tick(&self) {
        let now = self.clock.now_ms();
        let keys: Vec<String> = self.leased().iter().cloned().collect();
        match self
            .store
            .lease_renew(&self.instance, &keys, now + LEASE_MS, now)
            .await
        {
            Ok(lost) => {
                for k in lost {
                    tracing::warn!(send = %k, "send lease lost: another instance took it over");
                    self.leased().remove(&k);
                    self.inflight().retain(|_, f| entry_key(&f.job) != k);
                }
            }
            Err(e) => tracing::warn!(error = %e, "send lease: could not renew"),
        }
        match self
            .store
            .lease_take_expired(&self.instance, now + LEASE_MS, LEASE_BATCH, now)
            .await
        {
            Ok(taken) => {
                for lease in taken {
                    self.adopt(lease).await;
                }
            }
            Err(e) => tracing::debug!(error = %e, "send lease: could not look for expired ones"),
        }
    }

    /// Takes over a send whose instance stopped: asks its device where the message is and
    /// goes on from there, never sending a message id the device may have twice.
    async fn adopt(&self, lease: SendLease) {
        let opened = serde_json::from_str::<LeaseBody>(&lease.body)
            .ok()
            .and_then(|b| Some((self.queue.sealer.open_sealed(&lease.key, &b.sealed)?, b)));
        let Some((job, body)) = opened else {
            tracing::error!(send = %lease.key, "send lease: does not open with this issuer's code keys (do all issuers share them?)");
            let _ = self.store.lease_release(&lease.key, &self.instance).await;
            return;
        };
        self.leased().insert(lease.key.clone());
        let position = |name: &str| self.devices.iter().position(|d| d.cfg.name == name);
        let Some(idx) = position(&body.device) else {
            self.give_up(&job, "its gateway is not configured here")
                .await;
            return;
        };
        let tried: Vec<usize> = body.tried.iter().filter_map(|n| position(n)).collect();
        let id = body.message_id.clone();
        tracing::info!(message_id = %id, device = %body.device, "took over an in-flight send whose instance stopped");
        let entry = InFlight {
            job,
            device: idx,
            route: body.route,
            tried,
            remote_id: body.remote_id.clone(),
            polled_at_ms: self.clock.now_ms(),
            uncertain: false,
        };
        let adapter = &self.devices[idx].adapter;
        match adapter.status(&id, body.remote_id.as_deref()).await {
            Ok(Some(state)) => {
                self.inflight().insert(id.clone(), entry);
                self.on_state(&id, state).await;
            }
            // Stopped before (or while) asking the device, which does not have it (or
            // takes the same id once): this route's first send.
            Ok(None) if body.sending && (adapter.idempotent() || adapter.polls()) => {
                if let Some(pool) = self.me.upgrade() {
                    tokio::spawn(pool.run(entry.job, idx, entry.route, entry.tried));
                }
            }
            // The device took it once and no longer knows it: lost there, another route.
            Ok(None) if adapter.polls() => {
                let _ = self
                    .failover_tx
                    .send((entry, "unknown to the gateway after a takeover".into()));
            }
            // The device cannot be asked: its events (or the poll loop) tell.
            Ok(None) => {
                self.inflight().insert(id, entry);
            }
            Err(_) => {
                let mut entry = entry;
                entry.uncertain = true;
                self.inflight().insert(id, entry);
            }
        }
    }

    async fn check_health(&self) {
        for d in &self.devices {
            let report = d.adapter.health().await;
            let needs_internet = d.cfg.kind == Kind::SmsGate && d.cfg.mode == Mode::Cloud;
            let reason = {
                let h = d.health();
                super::health::judge(h.reason.as_deref(), &report, needs_internet)
            };
            let up = reason.is_none();
            self.observe(super::fleet::PoolEvent::Health {
                device: &d.cfg.name,
                up,
            });
            let mut h = d.health();
            match (&reason, &h.reason) {
                (None, Some(was)) => {
                    tracing::info!(device = %d.cfg.name, was = %was, "gateway back in rotation");
                }
                (Some(why), None) => {
                    tracing::warn!(device = %d.cfg.name, reason = %why, "gateway out of rotation");
                }
                _ => {}
            }
            h.healthy = up;
            h.reason = reason;
            h.report = Some(report);
        }
    }

    async fn poll_once(&self) {
        let now = self.clock.now_ms();
        let push_every = i64::try_from(self.cfg.poll_interval_secs).unwrap_or(10) * 1000;
        let due: Vec<(String, InFlight)> = {
            let mut g = self.inflight();
            // Forget what can no longer matter (the code is long dead).
            g.retain(|_, f| f.job.expires_at_ms + 120_000 > now);
            let mut due = Vec::new();
            for (id, f) in g.iter_mut() {
                let every = if self.devices[f.device].adapter.pushes_events() {
                    push_every
                } else {
                    2_000
                };
                if now - f.polled_at_ms >= every {
                    f.polled_at_ms = now;
                    due.push((id.clone(), f.clone()));
                }
            }
            due
        };
        for (id, f) in due {
            match self.devices[f.device]
                .adapter
                .status(&id, f.remote_id.as_deref())
                .await
            {
                Ok(Some(state)) => self.on_state(&id, state).await,
                // The device answers again and never got the message that timed out.
                Ok(None) if f.uncertain => {
                    self.on_state(&id, RemoteState::Failed("unknown to the gateway".into()))
                        .await;
                }
                _ => {}
            }
        }
    }

    /// Picks a device with budget for `job` (its priority's share of each budget),
    /// excluding `tried`, among phones or fallbacks.
    async fn reserve(&self, job: &SendJob, tried: &[usize], fallback: bool) -> Reserve {
        let now = self.clock.now_ms();
        // The region libphonenumber gives the number, once, when a device routes by region.
        let routed = self.devices.iter().any(|d| !d.cfg.regions.is_empty());
        let region = PhoneNumber::parse(&job.message.phone)
            .ok()
            .filter(|_| routed)
            .and_then(|p| destination::region_of(&p));
        let mut candidates: Vec<usize> = (0..self.devices.len())
            .filter(|i| !tried.contains(i))
            .filter(|&i| {
                let d = &self.devices[i];
                d.cfg.kind.is_fallback() == fallback && d.usable(now) && d.serves(region)
            })
            .collect();
        if candidates.is_empty() {
            return Reserve::NoDevice;
        }
        let window_ms = i64::try_from(self.cfg.budget_window_secs).unwrap_or(60) * 1000;
        let units = job.message.segments.max(1);
        let mut retry_after_ms = i64::MAX;
        while !candidates.is_empty() {
            let idx = self.weighted_pick(&candidates);
            let i = candidates.swap_remove(idx);
            let d = &self.devices[i];
            // Android counts over a sliding window, the store over fixed ones: two full
            // windows back to back could put 2 x budget inside one sliding window. When that
            // could pass the phone's limit L, sends are also capped per fifth of the window at
            // L/6 (a sliding window overlaps at most six fifths).
            let mut budgets = vec![(
                format!("dev:{}:min", d.cfg.budget_name()),
                d.cfg.budget_per_minute,
                window_ms,
            )];
            if d.cfg.budget_per_minute.saturating_mul(2) > d.cfg.android_limit {
                let sub_cap = (d.cfg.android_limit / 6).max(1);
                budgets.insert(
                    0,
                    (
                        format!("dev:{}:sub", d.cfg.budget_name()),
                        sub_cap,
                        (window_ms / SUB_WINDOWS).max(1),
                    ),
                );
            }
            if d.cfg.daily_cap > 0 {
                budgets.push((format!("dev:{}:day", d.cfg.name), d.cfg.daily_cap, DAY_MS));
            }
            let mut taken = 0;
            let mut verdict = Ok(());
            for (key, limit, window) in &budgets {
                let limit = match self.unpaid_share(job, key, *limit, *window, now).await {
                    Ok(l) => l,
                    Err(()) => {
                        verdict = Err(None);
                        break;
                    }
                };
                match self.take(key, limit, *window, units, now).await {
                    Ok(Ok(())) => taken += 1,
                    Ok(Err(retry)) => {
                        verdict = Err(Some(retry));
                        break;
                    }
                    Err(()) => {
                        verdict = Err(None);
                        break;
                    }
                }
            }
            if let Err(why) = verdict {
                for (key, _, window) in &budgets[..taken] {
                    self.refund(key, *window, units, now).await;
                }
                match why {
                    Some(retry) => {
                        retry_after_ms = retry_after_ms.min(retry);
                        continue;
                    }
                    None => return Reserve::Store,
                }
            }
            return Reserve::Device(i);
        }
        Reserve::NoCapacity {
            retry_after_ms: retry_after_ms.clamp(0, DAY_MS),
        }
    }

    /// What `job` may take of a budget of `limit` per `window_ms`: all of it when paid for;
    /// else its class's share, less what the previous window spent that a sliding window
    /// would still hold (within a day). Without that, a burst that straddles a boundary of
    /// these clock-aligned windows takes the unpaid share twice before the proof of work
    /// rises.
    async fn unpaid_share(
        &self,
        job: &SendJob,
        key: &str,
        limit: u32,
        window_ms: i64,
        now: i64,
    ) -> Result<u32, ()> {
        let share = job.priority.share(limit);
        if job.priority == Priority::Paid || window_ms >= DAY_MS {
            return Ok(share);
        }
        let before = self
            .store
            .budget_used(key, window_ms, now - window_ms)
            .await
            .map_err(|e| tracing::warn!(error = %e, "gateway budget: store unavailable"))?;
        let left_of_it = 1.0 - now.rem_euclid(window_ms) as f64 / window_ms as f64;
        let carried = (f64::from(before) * left_of_it).floor() as u32;
        Ok(share.saturating_sub(carried))
    }

    /// Takes `units` from a budget, all or nothing: `Ok(Err(retry_after_ms))` when spent.
    async fn take(
        &self,
        key: &str,
        limit: u32,
        window_ms: i64,
        units: u32,
        now: i64,
    ) -> Result<Result<(), i64>, ()> {
        for taken in 0..units {
            match self.store.take_budget(key, limit, window_ms, now).await {
                Ok(Budget::Allowed { .. }) => {}
                Ok(Budget::Exhausted { retry_after_ms }) => {
                    self.refund(key, window_ms, taken, now).await;
                    return Ok(Err(retry_after_ms));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "gateway budget: store unavailable");
                    self.refund(key, window_ms, taken, now).await;
                    return Err(());
                }
            }
        }
        Ok(Ok(()))
    }

    async fn refund(&self, key: &str, window_ms: i64, units: u32, now: i64) {
        for _ in 0..units {
            let _ = self.store.refund_budget(key, window_ms, now).await;
        }
    }

    fn weighted_pick(&self, candidates: &[usize]) -> usize {
        let total: u64 = candidates
            .iter()
            .map(|&i| u64::from(self.devices[i].cfg.weight))
            .sum();
        let r = crate::random::bytes(8)
            .map(|b| b.iter().fold(0u64, |a, &x| (a << 8) | u64::from(x)))
            .unwrap_or(0);
        let mut point = r % total.max(1);
        for (k, &i) in candidates.iter().enumerate() {
            let w = u64::from(self.devices[i].cfg.weight);
            if point < w {
                return k;
            }
            point -= w;
        }
        0
    }

    /// Whether the verification of message `id` still wants its code sent (as
    /// [`Pool::current`], from the message id alone).
    pub(super) async fn still_wanted(&self, id: &str) -> bool {
        let Some((vid, version, _)) = parse_message_id(id) else {
            return false;
        };
        match self.store.get(vid).await {
            Ok(Some(r)) => {
                r.outcome == Outcome::Open
                    && r.code.version == version
                    && r.expires_at_ms > self.clock.now_ms()
            }
            Ok(None) => false,
            Err(_) => true,
        }
    }

    /// Whether the verification still wants this code sent (open, same version, alive).
    pub(super) async fn current(&self, job: &SendJob) -> bool {
        match self.store.get(&job.verification_id).await {
            Ok(Some(r)) => {
                r.outcome == Outcome::Open
                    && r.code.version == job.code_version
                    && r.expires_at_ms > self.clock.now_ms()
            }
            Ok(None) => false,
            // The store is down: the job's own expiry (checked by the caller) still holds.
            Err(_) => true,
        }
    }

    async fn run(
        self: Arc<Self>,
        job: SendJob,
        mut idx: usize,
        mut route: u32,
        mut tried: Vec<usize>,
    ) {
        let mut same = 0u32;
        // Whether an attempt on this route timed out: the device got the request and may
        // still be working on it. (A connection broken before any answer is ambiguous too,
        // but it is what a phone that is gone looks like: that one is failed over at once.)
        let mut maybe_taken = false;
        loop {
            let now = self.clock.now_ms();
            let remaining = job.expires_at_ms - now;
            if remaining < MIN_LIFE_MS {
                self.counters.expired.fetch_add(1, Ordering::Relaxed);
                self.give_up(&job, "expired before it could be sent").await;
                return;
            }
            if !self.current(&job).await {
                self.let_go(&job).await;
                return;
            }
            if !self.hold(&job, idx, route, &tried, None, true).await {
                return;
            }
            let id = message_id(&job, route);
            let mut msg = job.message.clone();
            msg.message_id = id.clone();
            msg.ttl_secs = u64::try_from(remaining / 1000).unwrap_or(5);
            let dev = &self.devices[idx];
            match dev.adapter.send(&msg).await {
                Ok(acc) => {
                    dev.ok();
                    self.accepted(job, idx, route, tried, acc).await;
                    return;
                }
                Err(e) => {
                    dev.fail(self.clock.now_ms());
                    self.observe(super::fleet::PoolEvent::SendFailed {
                        device: &dev.cfg.name,
                        reason: &e.to_string(),
                    });
                    maybe_taken |= matches!(e, SendError::Timeout);
                    tracing::info!(device = %dev.cfg.name, message_id = %id, code = e.code(), "gateway send failed");
                    let idempotent = dev.adapter.idempotent();
                    if e.ambiguous() && !idempotent {
                        // It may have gone out; resending elsewhere could send it twice.
                        self.accepted(
                            job,
                            idx,
                            route,
                            tried,
                            Accepted::ours(RemoteState::Accepted),
                        )
                        .await;
                        return;
                    }
                    if !matches!(e, SendError::Rejected { .. }) && same < SAME_DEVICE_RETRIES {
                        same += 1;
                        let wait = (250i64 << same)
                            .min((job.expires_at_ms - self.clock.now_ms() - MIN_LIFE_MS).max(0));
                        tokio::time::sleep(Duration::from_millis(wait.unsigned_abs())).await;
                        continue;
                    }
                    if maybe_taken || e.ambiguous() {
                        match dev.adapter.status(&id, None).await {
                            // The device has it after all.
                            Ok(Some(state)) => {
                                self.accepted(job, idx, route, tried, Accepted::ours(state))
                                    .await;
                                return;
                            }
                            // The device answers and does not have it (or cannot say), or
                            // it is gone after a broken connection: another route.
                            Ok(None) => {}
                            Err(_) if !maybe_taken => {}
                            // No answer either: it may still go out from this device, and
                            // sending it elsewhere could send it twice. Stay on this route;
                            // the poll loop learns its fate (and fails it over when the
                            // device answers without it).
                            Err(_) => {
                                self.accepted(
                                    job,
                                    idx,
                                    route,
                                    tried,
                                    Accepted::ours(RemoteState::Accepted),
                                )
                                .await;
                                if let Some(f) = self.inflight().get_mut(&id) {
                                    f.uncertain = true;
                                }
                                return;
                            }
                        }
                    }
                    match self.next_route(&job, &tried).await {
                        Some(n) => {
                            self.counters.failovers.fetch_add(1, Ordering::Relaxed);
                            idx = n;
                            route += 1;
                            tried.push(n);
                            same = 0;
                            maybe_taken = false;
                        }
                        None => {
                            self.give_up(&job, e.code()).await;
                            return;
                        }
                    }
                }
            }
        }
    }

    /// The next device for a message whose previous routes failed, waiting for budget while
    /// the code lives; fallbacks once every phone was tried or none is usable.
    async fn next_route(&self, job: &SendJob, tried: &[usize]) -> Option<usize> {
        loop {
            let now = self.clock.now_ms();
            if job.expires_at_ms - now < MIN_LIFE_MS {
                return None;
            }
            let wait = match self.reserve(job, tried, false).await {
                Reserve::Device(i) => return Some(i),
                Reserve::NoDevice => match self.reserve(job, tried, true).await {
                    Reserve::Device(i) => return Some(i),
                    Reserve::NoDevice => return None,
                    Reserve::NoCapacity { retry_after_ms } => retry_after_ms,
                    Reserve::Store => 500,
                },
                Reserve::NoCapacity { retry_after_ms } => retry_after_ms,
                Reserve::Store => 500,
            };
            if now + wait > job.expires_at_ms - MIN_LIFE_MS {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(wait.clamp(50, 1_000).unsigned_abs())).await;
        }
    }

    async fn accepted(
        &self,
        job: SendJob,
        idx: usize,
        route: u32,
        tried: Vec<usize>,
        acc: Accepted,
    ) {
        let id = message_id(&job, route);
        self.hold(&job, idx, route, &tried, acc.remote_id.as_deref(), false)
            .await;
        self.counters.submitted.fetch_add(1, Ordering::Relaxed);
        self.devices[idx].submitted.fetch_add(1, Ordering::Relaxed);
        if let Some(r) = &acc.remote_id {
            self.remote
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(r.clone(), id.clone());
        }
        self.inflight().insert(
            id.clone(),
            InFlight {
                job: job.clone(),
                device: idx,
                route,
                tried,
                remote_id: acc.remote_id.clone(),
                polled_at_ms: self.clock.now_ms(),
                uncertain: false,
            },
        );
        self.apply(
            &job.verification_id,
            job.code_version,
            DeliveryState::Submitted,
            Some(idx),
            &id,
            None,
            Some(&job),
        )
        .await;
        if acc.state != RemoteState::Accepted {
            self.on_state(&id, acc.state).await;
        }
    }

    /// Records that the message is lost. The record names no route, so it applies whichever
    /// route the store knows (unless that one already reached a final state).
    async fn give_up(&self, job: &SendJob, reason: &str) {
        self.let_go(job).await;
        self.counters.failed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(verification = %job.verification_id, reason, "every gateway route failed");
        let rec = DeliveryRecord {
            state: DeliveryState::Failed,
            gateway: None,
            message_id: None,
            updated_at_ms: self.clock.now_ms(),
            detail: Some(reason.chars().take(120).collect()),
        };
        if let Ok(true) = self
            .store
            .update_delivery(&job.verification_id, job.code_version, &rec)
            .await
        {
            let phone = PhoneNumber::parse(&job.message.phone).ok();
            self.audit(
                "sms.failed",
                &job.verification_id,
                phone,
                json!({"reason": reason}),
            )
            .await;
        }
    }

    /// Writes a delivery change; audits it when it applied.
    #[allow(clippy::too_many_arguments)]
    async fn apply(
        &self,
        vid: &str,
        version: u32,
        state: DeliveryState,
        device: Option<usize>,
        message_id: &str,
        reason: Option<&str>,
        job: Option<&SendJob>,
    ) -> bool {
        let now = self.clock.now_ms();
        let gateway = device.map(|i| self.devices[i].cfg.name.clone());
        let rec = DeliveryRecord {
            state,
            gateway: gateway.clone(),
            message_id: Some(message_id.to_owned()),
            updated_at_ms: now,
            detail: reason.map(|r| r.chars().take(120).collect()),
        };
        match self.store.update_delivery(vid, version, &rec).await {
            Ok(true) => {
                let kind = match state {
                    DeliveryState::Submitted => "sms.submitted",
                    DeliveryState::Sent => "sms.sent",
                    DeliveryState::Delivered => "sms.delivered",
                    DeliveryState::Failed => "sms.failed",
                    _ => return true,
                };
                let phone = job.and_then(|j| PhoneNumber::parse(&j.message.phone).ok());
                self.audit(
                    kind,
                    vid,
                    phone,
                    json!({"gateway": gateway, "message_id": message_id, "reason": reason}),
                )
                .await;
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::warn!(error = %e, "delivery update: store unavailable");
                false
            }
        }
    }

    /// The one place the gateway writes audit events.
    async fn audit(
        &self,
        kind: &'static str,
        vid: &str,
        phone: Option<PhoneNumber>,
        detail: Value,
    ) {
        let mut ev = AuditEvent::new(kind, self.clock.now_ms());
        ev.verification_id = Some(vid.to_owned());
        ev.phone = phone;
        ev.detail = detail;
        if let Err(e) = self.audit.append(ev).await {
            tracing::error!(error = %e, kind, "audit append failed");
        }
    }

    /// Applies a state a gateway reported for one of our message ids (webhook or poll).
    pub(super) async fn on_state(&self, id: &str, state: RemoteState) {
        let Some((vid, version, _)) = parse_message_id(id) else {
            return;
        };
        let entry = self.inflight().get(id).cloned();
        let device = entry.as_ref().map(|e| e.device);
        let job = entry.as_ref().map(|e| &e.job);
        match state {
            RemoteState::Accepted => {}
            RemoteState::Sent => {
                if self
                    .apply(vid, version, DeliveryState::Sent, device, id, None, job)
                    .await
                {
                    self.counters.sent.fetch_add(1, Ordering::Relaxed);
                }
            }
            RemoteState::Delivered => {
                self.inflight().remove(id);
                if self
                    .apply(
                        vid,
                        version,
                        DeliveryState::Delivered,
                        device,
                        id,
                        None,
                        job,
                    )
                    .await
                {
                    self.counters.delivered.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(j) = job {
                    self.let_go(j).await;
                }
            }
            RemoteState::Failed(reason) => {
                // Only the instance that holds the message fails it over; removing the entry
                // under the lock makes that happen once, however many events arrive.
                let Some(e) = self.inflight().remove(id) else {
                    return;
                };
                self.devices[e.device].fail(self.clock.now_ms());
                self.observe(super::fleet::PoolEvent::SendFailed {
                    device: &self.devices[e.device].cfg.name,
                    reason: &reason,
                });
                tracing::info!(device = %self.devices[e.device].cfg.name, message_id = %id, reason = %reason.chars().take(60).collect::<String>(), "gateway reported failure");
                let _ = self.failover_tx.send((e, reason));
            }
        }
    }

    /// Sends a failed message by its next route, or records the failure.
    async fn failover(self: Arc<Self>, e: InFlight, reason: String) {
        match self.next_route(&e.job, &e.tried).await {
            Some(n) => {
                self.counters.failovers.fetch_add(1, Ordering::Relaxed);
                let mut tried = e.tried;
                tried.push(n);
                self.run(e.job, n, e.route + 1, tried).await;
            }
            None => self.give_up(&e.job, &reason).await,
        }
    }

    /// The keys that sign webhooks from devices of `kind` (sms-gate: the pool key too).
    pub(super) fn webhook_keys(&self, kind: Kind) -> Vec<&str> {
        let pool_key = self.pool_key.iter().filter(|_| kind == Kind::SmsGate);
        pool_key
            .chain(
                self.devices
                    .iter()
                    .filter(|d| d.cfg.kind == kind)
                    .filter_map(|d| d.signing_key.as_ref()),
            )
            .map(Secret::expose)
            .collect()
    }

    /// The device that holds message `message_id` in this instance's in-flight map.
    pub(super) fn holder(&self, message_id: &str) -> Option<usize> {
        self.inflight().get(message_id).map(|f| f.device)
    }

    /// Our message id for a gateway's own id (TextBee batch, Twilio SID, SNS id).
    pub(super) fn ours(&self, remote_id: &str) -> Option<String> {
        self.remote
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(remote_id)
            .cloned()
    }
}

#[async_trait]
impl Dispatcher for Pool {
    async fn dispatch(&self, job: SendJob) -> Result<Dispatched, DispatchError> {
        self.ensure_started();
        let now = self.clock.now_ms();
        if job.expires_at_ms - now < MIN_LIFE_MS {
            return Err(DispatchError::Expired);
        }
        if self.devices.is_empty() {
            return Err(DispatchError::Unavailable);
        }
        // Sends already wait: this one joins them, in its priority's place, so the budget
        // that frees goes to the best of them and not to whoever asks next.
        if self.queue.busy() {
            return self.enqueue(&job, 0).await;
        }
        match self.reserve_any(&job).await {
            Reserve::Device(i) => {
                let Some(pool) = self.me.upgrade() else {
                    return Err(DispatchError::Unavailable);
                };
                tokio::spawn(pool.run(job, i, 1, vec![i]));
                Ok(Dispatched::Sending)
            }
            Reserve::NoCapacity { retry_after_ms } => self.enqueue(&job, retry_after_ms).await,
            Reserve::NoDevice | Reserve::Store => Err(DispatchError::Unavailable),
        }
    }

    async fn ready(&self) -> bool {
        let now = self.clock.now_ms();
        self.devices.iter().any(|d| d.usable(now))
    }
}

/// How often the queue is looked at when nothing wakes it, ms.
const QUEUE_TICK_MS: u64 = 250;
/// Entries taken from the store's queue at once.
const QUEUE_BATCH: u32 = 16;

impl Pool {
    /// Lets `pressure` hold sends that paid too little in the queue (set once, by `serve`).
    pub fn set_pressure(&self, pressure: Arc<dyn Pressure>) {
        let _ = self.pressure.set(pressure);
    }

    /// Whether `job` paid enough to leave the queue now.
    fn may_leave(&self, job: &SendJob) -> bool {
        match self.pressure.get().and_then(|p| p.required_work()) {
            None => true,
            Some(bits) => job.work >= bits,
        }
    }

    /// A device for `job` among the phones, else among the fallbacks.
    async fn reserve_any(&self, job: &SendJob) -> Reserve {
        match self.reserve(job, &[], false).await {
            Reserve::NoDevice => self.reserve(job, &[], true).await,
            other => other,
        }
    }

    /// Queues `job` when capacity is expected within its bound (`retry_after_ms` from now).
    async fn enqueue(
        &self,
        job: &SendJob,
        retry_after_ms: i64,
    ) -> Result<Dispatched, DispatchError> {
        let now = self.clock.now_ms();
        let deadline = self.queue.deadline(job, now);
        let refused = || {
            self.counters.no_capacity.fetch_add(1, Ordering::Relaxed);
            DispatchError::NoCapacity {
                retry_after_secs: retry_secs(retry_after_ms.max(1_000)),
            }
        };
        if self.queue.max == 0 || now.saturating_add(retry_after_ms) > deadline {
            return Err(refused());
        }
        let sealed = self.queue.sealer.seal(job).map_err(|e| {
            tracing::error!(error = %e, "send queue: cannot seal");
            DispatchError::Unavailable
        })?;
        let entry = QueuedSend {
            key: entry_key(job),
            priority: queue_rank(job),
            queued_at_ms: now,
            deadline_ms: deadline,
            sealed,
        };
        match self.store.enqueue_send(&entry, self.queue.max).await {
            Ok(true) => {
                self.counters.queued.fetch_add(1, Ordering::Relaxed);
                self.queue.queued(1);
                tracing::debug!(verification = %job.verification_id, priority = job.priority.as_str(), "send queued for capacity");
                Ok(Dispatched::Queued)
            }
            Ok(false) => Err(refused()),
            Err(e) => {
                tracing::warn!(error = %e, "send queue: store unavailable");
                Err(DispatchError::Unavailable)
            }
        }
    }

    /// Sends what waits in the queue while phones have budget, best first; answers how
    /// long to pause before looking again.
    async fn drain_queue(&self) -> Duration {
        let idle = Duration::from_millis(QUEUE_TICK_MS);
        if !self
            .queue
            .worth_a_look(self.store.as_ref(), self.clock.now_ms())
            .await
        {
            return idle;
        }
        loop {
            let batch = match self.store.dequeue_sends(QUEUE_BATCH).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "send queue: store unavailable");
                    return idle;
                }
            };
            self.queue
                .taken(u32::try_from(batch.len()).unwrap_or(u32::MAX));
            if batch.is_empty() {
                return idle;
            }
            let mut back = Vec::new();
            let mut pause = None;
            // No capacity for the best waiting send: neither may those behind it leave.
            let mut blocked = false;
            for entry in batch {
                if blocked {
                    back.push(entry);
                    continue;
                }
                let now = self.clock.now_ms();
                let Some(job) = self.queue.sealer.open(&entry) else {
                    self.unreadable(&entry).await;
                    continue;
                };
                if now > entry.deadline_ms {
                    self.counters.expired.fetch_add(1, Ordering::Relaxed);
                    self.give_up(&job, "no phone capacity within the queue's bound")
                        .await;
                    continue;
                }
                if !self.current(&job).await {
                    continue;
                }
                if !self.may_leave(&job) {
                    // Held back while more proof of work is asked than it paid; so are
                    // those behind it (the queue is ordered by work paid).
                    pause = Some(1_000);
                    blocked = true;
                    back.push(entry);
                    continue;
                }
                match self.reserve_any(&job).await {
                    Reserve::Device(i) => {
                        self.counters.dequeued.fetch_add(1, Ordering::Relaxed);
                        if let Some(pool) = self.me.upgrade() {
                            tokio::spawn(pool.run(job, i, 1, vec![i]));
                        }
                    }
                    Reserve::NoCapacity { retry_after_ms } => {
                        pause = Some(retry_after_ms.clamp(50, 1_000));
                        blocked = true;
                        back.push(entry);
                    }
                    Reserve::NoDevice | Reserve::Store => {
                        pause = Some(1_000);
                        blocked = true;
                        back.push(entry);
                    }
                }
            }
            let n = u32::try_from(back.len()).unwrap_or(u32::MAX);
            for entry in back {
                // Back in its place (same priority and time); never refused for room.
                if let Err(e) = self.store.enqueue_send(&entry, u32::MAX).await {
                    tracing::warn!(error = %e, "send queue: could not put a send back");
                }
            }
            self.queue.returned(n);
            if let Some(ms) = pause {
                return Duration::from_millis(ms.unsigned_abs());
            }
        }
    }

    /// An entry that does not open here (sealed under a key this issuer lacks, or altered):
    /// its send is failed, since no issuer that took it can send it.
    async fn unreadable(&self, entry: &QueuedSend) {
        tracing::error!(entry = %entry.key, "send queue: an entry does not open with this issuer's code keys (do all issuers share them?)");
        let Some((vid, version)) = entry
            .key
            .rsplit_once('.')
            .and_then(|(v, n)| Some((v, n.parse::<u32>().ok()?)))
        else {
            return;
        };
        let rec = DeliveryRecord {
            state: DeliveryState::Failed,
            gateway: None,
            message_id: None,
            updated_at_ms: self.clock.now_ms(),
            detail: Some("queued send unreadable".into()),
        };
        let _ = self.store.update_delivery(vid, version, &rec).await;
    }
}

fn retry_secs(ms: i64) -> u64 {
    u64::try_from((ms + 999) / 1000).unwrap_or(1).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_round_trip() {
        let job = SendJob {
            verification_id: "v_AAAAAAAAAAAAAAAAAAAAAA".into(),
            code_version: 2,
            message: super::super::Outgoing {
                message_id: String::new(),
                phone: "+14155550123".into(),
                text: String::new(),
                ttl_secs: 60,
                segments: 1,
            },
            expires_at_ms: 0,
            priority: Priority::Paid,
            work: 0,
        };
        let id = message_id(&job, 3);
        assert!(id.len() <= 36);
        assert_eq!(
            parse_message_id(&id),
            Some(("v_AAAAAAAAAAAAAAAAAAAAAA", 2, 3))
        );
        for bad in ["", "x", "a.b", "a.1", ".1.1", "a.x.1", "a.1.x"] {
            assert_eq!(parse_message_id(bad), None, "{bad}");
        }
    }
}
