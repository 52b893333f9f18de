//! What the operator console reads from the pool: each device's state and why, its circuit
//! breaker, its budgets as the store counts them, and the events an observer is told of
//! ([`PoolEvent`]). Read-only: nothing here changes how the pool sends.

use serde::Serialize;

use super::pool::Pool;

const DAY_MS: i64 = 86_400_000;

/// What the pool tells an observer as it happens ([`Pool::set_observer`]).
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum PoolEvent<'a> {
    /// A send through `device` failed, or the device reported a message failed.
    SendFailed {
        /// The configured device name.
        device: &'a str,
        /// Why, in the gateway's or the adapter's words (never the text or the number).
        reason: &'a str,
    },
    /// A health check of `device` answered.
    Health {
        /// The configured device name.
        device: &'a str,
        /// Whether it answered healthy.
        up: bool,
    },
}

/// An observer of [`PoolEvent`]s. Called from the pool's tasks: keep it quick.
pub type PoolObserver = Box<dyn Fn(PoolEvent<'_>) + Send + Sync>;

/// One device as the console shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct DeviceStatus {
    /// The configured name.
    pub name: String,
    /// The adapter (`sms-gate`, `textbee`, ...).
    pub kind: &'static str,
    /// A paid fallback (used only when every phone failed).
    pub fallback: bool,
    /// The SIM slot, when configured.
    pub sim: Option<u8>,
    /// `up`, or `down` (health check failed, or the circuit is open).
    pub state: &'static str,
    /// Why it is down (`None` when up).
    pub reason: Option<String>,
    /// The last health check answered healthy.
    pub healthy: bool,
    /// Consecutive send failures.
    pub breaker_failures: u32,
    /// Failures that open the circuit.
    pub breaker_threshold: u32,
    /// The circuit is open (no sends) until then, Unix ms.
    pub breaker_open_until_ms: Option<i64>,
    /// Segments allowed per budget window.
    pub budget_per_window: u32,
    /// The budget window, seconds.
    pub budget_window_secs: u64,
    /// Segments allowed per day (0: no cap).
    pub daily_cap: u32,
    /// Segments counted in the current window (`None`: the store did not answer).
    pub used_window: Option<u32>,
    /// Segments counted today (UTC day; `None`: the store did not answer).
    pub used_today: Option<u32>,
    /// The last health answer's details (battery, charging, connection, failed messages;
    /// `None` before the first check).
    pub health: Option<super::health::PhoneHealth>,
}

impl Pool {
    /// Lets `observer` see failures and health answers from now on (once; later calls are
    /// ignored).
    pub fn set_observer(&self, observer: PoolObserver) {
        let _ = self.observer.set(observer);
    }

    /// Tells the observer, if any.
    pub(super) fn observe(&self, event: PoolEvent<'_>) {
        if let Some(o) = self.observer.get() {
            o(event);
        }
    }

    /// The health check interval, seconds.
    pub fn health_interval_secs(&self) -> u64 {
        self.cfg.health_interval_secs
    }

    /// Every device's state, breaker and budgets (read from the store: the counts every
    /// instance sharing it sees).
    pub async fn fleet(&self) -> Vec<DeviceStatus> {
        let now = self.clock.now_ms();
        let window_ms = i64::try_from(self.cfg.budget_window_secs).unwrap_or(60) * 1000;
        let mut out = Vec::with_capacity(self.devices.len());
        for d in &self.devices {
            let (healthy, failures, open_until, out_why, health) = {
                let h = d.health();
                (
                    h.healthy,
                    h.failures,
                    h.open_until_ms,
                    h.reason.clone(),
                    h.report.clone(),
                )
            };
            let open = now < open_until;
            let reason = if !healthy {
                Some(out_why.unwrap_or_else(|| "health check failed".to_owned()))
            } else if open {
                Some(format!(
                    "circuit open after {failures} failed sends (retried in {} s)",
                    (open_until - now + 999) / 1000
                ))
            } else {
                None
            };
            let key = |what: &str| format!("dev:{}:{what}", d.cfg.name);
            let used_window = self
                .store
                .budget_used(&format!("dev:{}:min", d.cfg.budget_name()), window_ms, now)
                .await
                .ok();
            let used_today = if d.cfg.daily_cap > 0 {
                self.store.budget_used(&key("day"), DAY_MS, now).await.ok()
            } else {
                None
            };
            out.push(DeviceStatus {
                name: d.cfg.name.clone(),
                kind: d.cfg.kind.as_str(),
                fallback: d.cfg.kind.is_fallback(),
                sim: d.cfg.sim,
                state: if reason.is_none() { "up" } else { "down" },
                reason,
                healthy,
                breaker_failures: failures,
                breaker_threshold: super::pool::BREAKER_THRESHOLD,
                breaker_open_until_ms: open.then_some(open_until),
                budget_per_window: d.cfg.budget_per_minute,
                budget_window_secs: self.cfg.budget_window_secs,
                daily_cap: d.cfg.daily_cap,
                used_window,
                used_today,
                health,
            });
        }
        out
    }
}
