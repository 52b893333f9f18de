//! The console's memory: fed by the audit events this instance appends
//! ([`crate::audit::AuditLog::set_tap`]), the gateway pool's failures and health answers
//! ([`crate::gateway::Pool::set_observer`]) and a sampler (proof-of-work difficulty, store
//! latency), it keeps time series in ring buffers ([`super::series`]), per-device delivery
//! counts over 24 hours and the last verifications with their delivery timeline.
//!
//! # Per instance
//! Everything here is what this issuer instance saw since it started: behind a load balancer
//! each instance's console shows its own share of the traffic (budgets, read from the store,
//! are the exception: every instance sees the shared counts).
//!
//! # Privacy
//! Numbers arrive pseudonymised (the audit log's keyed hash and last two digits), verification
//! ids are shortened, and every free-text reason is cut to 120 characters with digit runs
//! that could be a number replaced by `[number]`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use serde::Serialize;
use serde_json::Value;

use super::series::{DeliveryStats, Hist, Ring};
use crate::audit::TapEvent;
use crate::gateway::PoolEvent;

/// The charts' bucket, ms.
pub const TICK_MS: i64 = 10_000;
/// Buckets of the charts (one hour).
pub const TICKS: usize = 360;
/// Per-device buckets, ms (one minute).
const MINUTE_MS: i64 = 60_000;
/// Per-device buckets kept (24 hours).
const MINUTES: usize = 1_440;
/// Verifications kept for the "recent" table.
pub const RECENT: usize = 50;
/// Events kept per recent verification.
const TIMELINE: usize = 24;
/// Verifications whose code creation time is remembered (for latency), at most.
const PENDING: usize = 20_000;
/// Devices (gateway names) tracked at most.
const DEVICES: usize = 256;
/// Refusal reasons tracked per bucket at most.
const REASONS: usize = 32;

/// One chart bucket.
#[derive(Clone, Debug, Default)]
struct Tick {
    starts: u32,
    approvals: u32,
    refusals: BTreeMap<String, u32>,
    sends: BTreeMap<String, u32>,
    latency: Hist,
    pow_bits: Option<u8>,
    store_ms: Option<f64>,
}

/// One minute of one device.
#[derive(Clone, Debug, Default)]
struct Minute {
    submitted: u32,
    delivered: u32,
    failed: u32,
    latency: Hist,
}

#[derive(Clone, Debug)]
struct DeviceLog {
    minutes: Ring<Minute>,
    last_error: Option<Stamped>,
    last_health: Option<(i64, bool)>,
}

/// A reason and when it was seen.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Stamped {
    /// When, Unix ms.
    pub at_ms: i64,
    /// What (scrubbed).
    pub reason: String,
}

/// One event of a verification's timeline.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct TimelineEvent {
    /// When, Unix ms.
    pub at_ms: i64,
    /// The audit event kind (`verification.started`, `sms.submitted`, `sms.delivered`, ...).
    pub event: &'static str,
    /// The phone (device) concerned, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Why (failures, refusals), scrubbed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A recent verification as the console shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct RecentVerification {
    /// The verification id, shortened (`v_AbCdEf…`).
    pub id: String,
    /// The app.
    pub app: Option<String>,
    /// The number's pseudonym (`p:<keyed hash>:<last two digits>`).
    pub phone: Option<String>,
    /// When it started, Unix ms.
    pub started_at_ms: i64,
    /// The latest event's kind.
    pub state: &'static str,
    /// What happened, oldest first.
    pub timeline: Vec<TimelineEvent>,
    #[serde(skip)]
    full_id: String,
}

/// Per-device figures over the last hour and day.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct DeviceFigures {
    /// The last hour.
    pub h1: DeliveryStats,
    /// The last 24 hours.
    pub h24: DeliveryStats,
    /// Sends this instance made through it since 00:00 UTC.
    pub sent_today: u64,
    /// The last failure reported for it.
    pub last_error: Option<Stamped>,
    /// The last health answer: when, and whether healthy.
    pub last_health: Option<HealthAnswer>,
}

/// A health check's answer.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct HealthAnswer {
    /// When, Unix ms.
    pub at_ms: i64,
    /// Healthy.
    pub up: bool,
}

/// The charts' data: aligned arrays, one value per bucket (`null` where nothing was seen).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Series {
    /// The bucket length, seconds.
    pub step_secs: i64,
    /// Each bucket's start, Unix seconds.
    pub t: Vec<i64>,
    /// Sends accepted per minute, by phone (rate over the bucket).
    pub sends_per_min: BTreeMap<String, Vec<f64>>,
    /// Delivery latency p50, ms.
    pub latency_p50_ms: Vec<Option<u32>>,
    /// Delivery latency p99, ms.
    pub latency_p99_ms: Vec<Option<u32>>,
    /// Verifications started per minute.
    pub starts_per_min: Vec<f64>,
    /// Codes approved per minute.
    pub approvals_per_min: Vec<f64>,
    /// The proof-of-work difficulty, bits (sampled).
    pub pow_bits: Vec<Option<u8>>,
    /// Refusals per minute, by reason (`rate_limited`, `pow_required`, ...).
    pub refusals_per_min: BTreeMap<String, Vec<f64>>,
    /// Store round trip (a ping from this instance), ms (sampled).
    pub store_ms: Vec<Option<f64>>,
}

#[derive(Debug)]
struct Inner {
    ticks: Ring<Tick>,
    devices: BTreeMap<String, DeviceLog>,
    /// Verification id → (when its current code was made, the device that carries it).
    pending: HashMap<String, (i64, Option<String>)>,
    pending_order: VecDeque<String>,
    recent: VecDeque<RecentVerification>,
}

/// The console's recorder. `Send + Sync`; share it in an `Arc`.
#[derive(Debug)]
pub struct Recorder {
    inner: Mutex<Inner>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

/// Cuts `s` to 120 characters and replaces runs of 6 or more digits (separators allowed)
/// that could be a phone number by `[number]`.
pub fn scrub(s: &str) -> String {
    let chars: Vec<char> = s.chars().take(240).collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_digit() || chars[i] == '+' {
            let mut j = i;
            let mut digits = 0;
            while j < chars.len()
                && (chars[j].is_ascii_digit()
                    || matches!(chars[j], '+' | ' ' | '-' | '.' | '(' | ')'))
            {
                if chars[j].is_ascii_digit() {
                    digits += 1;
                }
                j += 1;
            }
            if digits >= 6 {
                out.push_str("[number]");
                // Keep the separator that ended the run readable.
                if chars[j - 1] == ' ' {
                    out.push(' ');
                }
                i = j;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out.chars().take(120).collect()
}

/// `v_` and six more characters, then `…`.
fn short_id(id: &str) -> String {
    let head: String = id.chars().take(8).collect();
    format!("{head}…")
}

fn detail_str(detail: &Value, key: &str) -> Option<String> {
    detail.get(key).and_then(Value::as_str).map(scrub)
}

fn per_min(count: u32) -> f64 {
    f64::from(count) * 60_000.0 / TICK_MS as f64
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self {
            inner: Mutex::new(Inner {
                ticks: Ring::new(TICKS, TICK_MS),
                devices: BTreeMap::new(),
                pending: HashMap::new(),
                pending_order: VecDeque::new(),
                recent: VecDeque::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Makes sure `names` are tracked (the configured devices show before their first send).
    pub fn know_devices<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let mut g = self.lock();
        for n in names {
            g.device(n);
        }
    }

    /// An audit event this instance appended.
    pub fn on_audit(&self, ev: &TapEvent) {
        let mut g = self.lock();
        let at = ev.at_ms;
        let vid = ev.verification_id.as_deref().unwrap_or("");
        let gateway = detail_str(&ev.detail, "gateway");
        let reason = detail_str(&ev.detail, "reason");
        match ev.kind {
            "verification.started" => {
                g.ticks.at(at).starts += 1;
                g.remember(vid, at);
                g.recent_start(ev);
            }
            "resend" => g.remember(vid, at),
            "sms.submitted" => {
                if let Some(gw) = &gateway {
                    *g.ticks.at(at).sends.entry(gw.clone()).or_default() += 1;
                    if let Some(d) = g.device(gw) {
                        d.minutes.at(at).submitted += 1;
                    }
                    if let Some(p) = g.pending.get_mut(vid) {
                        p.1 = Some(gw.clone());
                    }
                }
            }
            "sms.delivered" => {
                let created = g.pending.get(vid).map(|p| p.0);
                let gw = gateway
                    .clone()
                    .or_else(|| g.pending.get(vid).and_then(|p| p.1.clone()));
                let latency = created.map(|c| at - c);
                if let Some(ms) = latency {
                    g.ticks.at(at).latency.add(ms);
                }
                if let Some(d) = gw.as_deref().and_then(|n| g.device(n)) {
                    let m = d.minutes.at(at);
                    m.delivered += 1;
                    if let Some(ms) = latency {
                        m.latency.add(ms);
                    }
                }
            }
            "check.approved" => {
                g.ticks.at(at).approvals += 1;
                g.forget(vid);
            }
            "policy.refused" => {
                let why = reason.clone().unwrap_or_else(|| "refused".into());
                let tick = g.ticks.at(at);
                if tick.refusals.len() < REASONS || tick.refusals.contains_key(&why) {
                    *tick.refusals.entry(why).or_default() += 1;
                }
            }
            "verification.expired" | "verification.cancelled" => g.forget(vid),
            _ => {}
        }
        if !vid.is_empty() {
            if let Some(r) = g.recent.iter_mut().find(|r| r.full_id == vid) {
                if r.timeline.len() < TIMELINE {
                    r.timeline.push(TimelineEvent {
                        at_ms: at,
                        event: ev.kind,
                        gateway,
                        reason,
                    });
                }
                r.state = ev.kind;
            }
        }
    }

    /// A failure or health answer from the gateway pool, at `now_ms`.
    pub fn on_pool(&self, ev: PoolEvent<'_>, now_ms: i64) {
        let mut g = self.lock();
        match ev {
            PoolEvent::SendFailed { device, reason } => {
                if let Some(d) = g.device(device) {
                    d.minutes.at(now_ms).failed += 1;
                    d.last_error = Some(Stamped {
                        at_ms: now_ms,
                        reason: scrub(reason),
                    });
                }
            }
            PoolEvent::Health { device, up } => {
                if let Some(d) = g.device(device) {
                    if !up && d.last_health.is_none_or(|(_, was)| was) {
                        d.last_error = Some(Stamped {
                            at_ms: now_ms,
                            reason: "health check failed".into(),
                        });
                    }
                    d.last_health = Some((now_ms, up));
                }
            }
        }
    }

    /// A sample of the proof-of-work difficulty and the store's round trip.
    pub fn sample(&self, now_ms: i64, pow_bits: u8, store_ms: Option<f64>) {
        let mut g = self.lock();
        let t = g.ticks.at(now_ms);
        t.pow_bits = Some(t.pow_bits.map_or(pow_bits, |b| b.max(pow_bits)));
        if let Some(ms) = store_ms {
            t.store_ms = Some(t.store_ms.map_or(ms, |m: f64| m.max(ms)));
        }
    }

    /// The last `minutes` of the charts (at most an hour).
    pub fn series(&self, now_ms: i64, minutes: u32) -> Series {
        let g = self.lock();
        let n = usize::try_from(i64::from(minutes) * 60_000 / TICK_MS)
            .unwrap_or(TICKS)
            .clamp(1, TICKS);
        let buckets = g.ticks.last(now_ms, n);
        let mut s = Series {
            step_secs: TICK_MS / 1000,
            t: Vec::with_capacity(n),
            sends_per_min: BTreeMap::new(),
            latency_p50_ms: Vec::with_capacity(n),
            latency_p99_ms: Vec::with_capacity(n),
            starts_per_min: Vec::with_capacity(n),
            approvals_per_min: Vec::with_capacity(n),
            pow_bits: Vec::with_capacity(n),
            refusals_per_min: BTreeMap::new(),
            store_ms: Vec::with_capacity(n),
        };
        for name in g.devices.keys() {
            s.sends_per_min.insert(name.clone(), vec![0.0; n]);
        }
        for (_, b) in &buckets {
            if let Some(b) = b {
                for r in b.refusals.keys() {
                    s.refusals_per_min
                        .entry(r.clone())
                        .or_insert_with(|| vec![0.0; n]);
                }
                for d in b.sends.keys() {
                    s.sends_per_min
                        .entry(d.clone())
                        .or_insert_with(|| vec![0.0; n]);
                }
            }
        }
        for (i, (start, b)) in buckets.iter().enumerate() {
            s.t.push(start / 1000);
            let empty = Tick::default();
            let b = b.unwrap_or(&empty);
            for (d, v) in &mut s.sends_per_min {
                v[i] = per_min(b.sends.get(d).copied().unwrap_or(0));
            }
            for (r, v) in &mut s.refusals_per_min {
                v[i] = per_min(b.refusals.get(r).copied().unwrap_or(0));
            }
            s.latency_p50_ms.push(b.latency.quantile(0.5));
            s.latency_p99_ms.push(b.latency.quantile(0.99));
            s.starts_per_min.push(per_min(b.starts));
            s.approvals_per_min.push(per_min(b.approvals));
            s.pow_bits.push(b.pow_bits);
            s.store_ms.push(b.store_ms);
        }
        s
    }

    /// A device's figures over the last hour and day, as this instance saw them.
    pub fn device(&self, name: &str, now_ms: i64) -> DeviceFigures {
        let g = self.lock();
        let sum = |minutes: &[(i64, Option<&Minute>)]| {
            let mut h = Hist::default();
            let (mut s, mut d, mut f) = (0u64, 0u64, 0u64);
            for m in minutes.iter().filter_map(|(_, m)| *m) {
                s += u64::from(m.submitted);
                d += u64::from(m.delivered);
                f += u64::from(m.failed);
                h.merge(&m.latency);
            }
            DeliveryStats::of(s, d, f, &h)
        };
        let Some(log) = g.devices.get(name) else {
            return DeviceFigures {
                h1: DeliveryStats::default(),
                h24: DeliveryStats::default(),
                sent_today: 0,
                last_error: None,
                last_health: None,
            };
        };
        let day = log.minutes.last(now_ms, MINUTES);
        let midnight = now_ms - now_ms.rem_euclid(86_400_000);
        let sent_today = day
            .iter()
            .filter(|(start, _)| *start >= midnight)
            .filter_map(|(_, m)| *m)
            .map(|m| u64::from(m.submitted))
            .sum();
        DeviceFigures {
            h1: sum(&day[day.len().saturating_sub(60)..]),
            h24: sum(&day),
            sent_today,
            last_error: log.last_error.clone(),
            last_health: log
                .last_health
                .map(|(at_ms, up)| HealthAnswer { at_ms, up }),
        }
    }

    /// The most recent verifications, newest first (at most `limit`).
    pub fn recent(&self, limit: usize) -> Vec<RecentVerification> {
        self.lock()
            .recent
            .iter()
            .rev()
            .take(limit)
            .cloned()
            .collect()
    }
}

impl Inner {
    fn device(&mut self, name: &str) -> Option<&mut DeviceLog> {
        if !self.devices.contains_key(name) {
            if self.devices.len() >= DEVICES {
                return None;
            }
            self.devices.insert(
                name.to_owned(),
                DeviceLog {
                    minutes: Ring::new(MINUTES, MINUTE_MS),
                    last_error: None,
                    last_health: None,
                },
            );
        }
        self.devices.get_mut(name)
    }

    fn remember(&mut self, vid: &str, at: i64) {
        if vid.is_empty() {
            return;
        }
        if self.pending.insert(vid.to_owned(), (at, None)).is_none() {
            self.pending_order.push_back(vid.to_owned());
        }
        while self.pending.len() > PENDING {
            match self.pending_order.pop_front() {
                Some(old) => {
                    self.pending.remove(&old);
                }
                None => break,
            }
        }
    }

    fn forget(&mut self, vid: &str) {
        self.pending.remove(vid);
        // `pending_order` drops it lazily (the next overflow pops it first or finds it gone).
        if self.pending_order.len() > 2 * PENDING {
            let pending = &self.pending;
            self.pending_order.retain(|v| pending.contains_key(v));
        }
    }

    fn recent_start(&mut self, ev: &TapEvent) {
        let Some(vid) = ev.verification_id.as_deref() else {
            return;
        };
        if self.recent.len() >= RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(RecentVerification {
            id: short_id(vid),
            app: ev.app.clone(),
            phone: ev.phone.clone(),
            started_at_ms: ev.at_ms,
            state: ev.kind,
            timeline: Vec::new(),
            full_id: vid.to_owned(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(kind: &'static str, at_ms: i64, vid: &str, detail: Value) -> TapEvent {
        TapEvent {
            kind,
            at_ms,
            verification_id: (!vid.is_empty()).then(|| vid.to_owned()),
            app: Some("shop".into()),
            phone: Some("p:0123456789abcdef:23".into()),
            detail,
        }
    }

    #[test]
    fn scrub_hides_numbers_and_keeps_words() {
        assert_eq!(
            scrub("rejected (400): bad +1 415 555 0123 x"),
            "rejected (400): bad [number] x"
        );
        assert_eq!(scrub("code 4242 at 12:30"), "code 4242 at 12:30");
        assert_eq!(scrub(&"a".repeat(500)).len(), 120);
    }

    #[test]
    fn a_delivered_code_gives_latency_success_and_a_timeline() {
        let r = Recorder::new();
        r.know_devices(["p1", "p2"]);
        let t0 = 1_700_000_000_000;
        r.on_audit(&ev("verification.started", t0, "v_abcdefghijkl", json!({})));
        r.on_audit(&ev(
            "sms.submitted",
            t0 + 100,
            "v_abcdefghijkl",
            json!({"gateway": "p1"}),
        ));
        r.on_pool(
            PoolEvent::SendFailed {
                device: "p2",
                reason: "gateway unavailable: connection failed",
            },
            t0 + 150,
        );
        r.on_audit(&ev(
            "sms.delivered",
            t0 + 1_200,
            "v_abcdefghijkl",
            json!({"gateway": "p1"}),
        ));
        r.on_audit(&ev(
            "check.approved",
            t0 + 5_000,
            "v_abcdefghijkl",
            json!({}),
        ));
        r.on_audit(&ev(
            "policy.refused",
            t0 + 5_000,
            "",
            json!({"reason": "rate_limited"}),
        ));
        let now = t0 + 6_000;
        let p1 = r.device("p1", now);
        assert_eq!((p1.h1.submitted, p1.h1.delivered, p1.h1.failed), (1, 1, 0));
        assert_eq!(p1.h1.success_ratio, Some(1.0));
        assert_eq!(p1.h1.latency_p50_ms, Some(1_500));
        let p2 = r.device("p2", now);
        assert_eq!(p2.h24.failed, 1);
        assert_eq!(p2.h24.success_ratio, Some(0.0));
        assert!(p2.last_error.unwrap().reason.contains("connection failed"));
        let s = r.series(now, 5);
        assert_eq!(s.t.len(), 30);
        assert_eq!(s.starts_per_min.iter().sum::<f64>(), 6.0);
        assert_eq!(s.approvals_per_min.iter().sum::<f64>(), 6.0);
        assert_eq!(s.sends_per_min["p1"].iter().sum::<f64>(), 6.0);
        assert_eq!(s.sends_per_min["p2"].iter().sum::<f64>(), 0.0);
        assert_eq!(s.refusals_per_min["rate_limited"].iter().sum::<f64>(), 6.0);
        assert!(s.latency_p99_ms.contains(&Some(1_500)));
        let recent = r.recent(10);
        assert_eq!(recent.len(), 1);
        assert_eq!(recent[0].id, "v_abcdef…");
        assert_eq!(recent[0].state, "check.approved");
        let events: Vec<_> = recent[0].timeline.iter().map(|e| e.event).collect();
        assert_eq!(
            events,
            [
                "verification.started",
                "sms.submitted",
                "sms.delivered",
                "check.approved"
            ]
        );
        let json = serde_json::to_string(&recent).unwrap();
        assert!(
            !json.contains("v_abcdefghijkl"),
            "the full id never leaves: {json}"
        );
    }

    #[test]
    fn a_phone_that_goes_down_keeps_why() {
        let r = Recorder::new();
        r.on_pool(
            PoolEvent::Health {
                device: "p3",
                up: true,
            },
            1_000,
        );
        r.on_pool(
            PoolEvent::Health {
                device: "p3",
                up: false,
            },
            2_000,
        );
        r.on_pool(
            PoolEvent::Health {
                device: "p3",
                up: false,
            },
            3_000,
        );
        let f = r.device("p3", 3_000);
        let e = f.last_error.unwrap();
        assert_eq!((e.at_ms, e.reason.as_str()), (2_000, "health check failed"));
        assert!(!f.last_health.unwrap().up);
    }

    #[test]
    fn memory_stays_bounded() {
        let r = Recorder::new();
        for i in 0..(RECENT + 10) {
            r.on_audit(&ev(
                "verification.started",
                1_000 + i as i64,
                &format!("v_{i:012}"),
                json!({}),
            ));
        }
        assert_eq!(r.recent(usize::MAX).len(), RECENT);
        for i in 0..(DEVICES + 5) {
            r.on_pool(
                PoolEvent::Health {
                    device: &format!("d{i}"),
                    up: true,
                },
                1_000,
            );
        }
        assert_eq!(r.lock().devices.len(), DEVICES);
        for i in 0..(PENDING + 100) {
            r.lock().remember(&format!("v_{i}"), 1);
        }
        assert_eq!(r.lock().pending.len(), PENDING);
    }
}
