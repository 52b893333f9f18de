//! Prometheus metrics of the issuer, served as text at `GET /metrics`.
//!
//! Labels never carry a phone number, a code or a verification id: only outcomes, routes
//! and gateway names, so the cardinality stays bounded.

use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// The issuer's metrics.
pub struct Metrics {
    registry: Registry,
    verifications: Family<Labels, Counter>,
    checks: Family<Labels, Counter>,
    dispatches: Family<Labels, Counter>,
    destination_refusals: Family<Labels, Counter>,
    http: Family<Labels, Histogram>,
    pow_difficulty: Gauge<i64, AtomicI64>,
    anchor_last_success: Gauge<i64, AtomicI64>,
    anchor_failures: Counter,
    anchor_interval: Gauge<i64, AtomicI64>,
    extra: std::sync::OnceLock<ExtraMetrics>,
}

/// A source of more Prometheus text (the gateway pool's counters), appended to the output.
pub type ExtraMetrics = Box<dyn Fn() -> String + Send + Sync>;

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("otpgate");
        let verifications = Family::<Labels, Counter>::default();
        let checks = Family::<Labels, Counter>::default();
        let dispatches = Family::<Labels, Counter>::default();
        let destination_refusals = Family::<Labels, Counter>::default();
        let http = Family::<Labels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.0005, 2.0, 16))) as fn() -> Histogram,
        );
        let pow_difficulty = Gauge::<i64, AtomicI64>::default();
        let anchor_last_success = Gauge::<i64, AtomicI64>::default();
        let anchor_failures = Counter::default();
        let anchor_interval = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "verifications",
            "Verification starts and their terminal outcomes, by outcome",
            verifications.clone(),
        );
        registry.register("checks", "Code checks, by result", checks.clone());
        registry.register(
            "dispatches",
            "Sends handed to the gateway pool, by result",
            dispatches.clone(),
        );
        registry.register(
            "destination_refused",
            "Destinations refused, by class (not_valid, region, number_type, blocked_prefix, ...)",
            destination_refusals.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency, by route, method and status class",
            http.clone(),
        );
        registry.register(
            "pow_difficulty",
            "Current proof-of-work difficulty, bits",
            pow_difficulty.clone(),
        );
        registry.register(
            "audit_anchor_last_success_timestamp_seconds",
            "When an audit anchor was last exported to [audit] anchor, Unix seconds (0: not \
             since start)",
            anchor_last_success.clone(),
        );
        registry.register(
            "audit_anchor_failures",
            "Audit anchor exports that failed",
            anchor_failures.clone(),
        );
        registry.register(
            "audit_anchor_interval_seconds",
            "Seconds between audit anchor exports (0: no [audit] anchor sink)",
            anchor_interval.clone(),
        );
        Self {
            registry,
            verifications,
            checks,
            dispatches,
            destination_refusals,
            http,
            pow_difficulty,
            anchor_last_success,
            anchor_failures,
            anchor_interval,
            extra: std::sync::OnceLock::new(),
        }
    }

    /// Counts a verification outcome (`started`, `approved`, `rate_limited`, ...).
    pub fn verification(&self, outcome: &'static str) {
        self.verifications
            .get_or_create(&vec![("outcome", outcome.to_owned())])
            .inc();
    }

    /// Counts a check result (`approved`, `wrong_code`, `expired`, ...).
    pub fn check(&self, result: &'static str) {
        self.checks
            .get_or_create(&vec![("result", result.to_owned())])
            .inc();
    }

    /// Counts a dispatch result (`accepted`, `skipped`, `no_capacity`, `unavailable`).
    pub fn dispatch(&self, result: &'static str) {
        self.dispatches
            .get_or_create(&vec![("result", result.to_owned())])
            .inc();
    }

    /// Counts a refused destination by its class ([`crate::destination::Refusal::as_str`]).
    pub fn destination_refused(&self, reason: &'static str) {
        self.destination_refusals
            .get_or_create(&vec![("reason", reason.to_owned())])
            .inc();
    }

    /// Observes one HTTP request. `route` is the matched route template, never the raw path.
    pub fn http(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let class = format!("{}xx", status / 100);
        self.http
            .get_or_create(&vec![
                ("route", route.to_owned()),
                ("method", method.to_owned()),
                ("status", class),
            ])
            .observe(seconds);
    }

    /// Sets the current proof-of-work difficulty.
    pub fn set_pow_difficulty(&self, bits: u8) {
        self.pow_difficulty.set(i64::from(bits));
    }

    /// Sets the seconds between anchor exports (called once an anchor sink is set up).
    pub fn set_anchor_interval(&self, secs: u64) {
        self.anchor_interval
            .set(i64::try_from(secs).unwrap_or(i64::MAX));
    }

    /// Records an audit anchor export: its time on success, a failure otherwise.
    pub fn anchor_exported(&self, ok: bool, now_ms: i64) {
        if ok {
            self.anchor_last_success.set(now_ms / 1000);
        } else {
            self.anchor_failures.inc();
        }
    }

    /// The registry, to register more metrics (the gateway pool's).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Sets the source of extra metrics (once; later calls are ignored).
    pub fn set_extra(&self, extra: ExtraMetrics) {
        let _ = self.extra.set(extra);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        if let Some(extra) = self.extra.get() {
            let body = out
                .strip_suffix("# EOF\n")
                .map(str::to_owned)
                .unwrap_or(out);
            out = format!("{body}{}# EOF\n", extra());
        }
        out
    }
}

/// Shared handle.
pub type SharedMetrics = Arc<Metrics>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::new();
        m.verification("started");
        m.verification("started");
        m.check("wrong_code");
        m.http("/v1/verifications", "POST", 201, 0.003);
        m.set_pow_difficulty(12);
        let text = m.render();
        assert!(
            text.contains("otpgate_verifications_total{outcome=\"started\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("otpgate_checks_total{result=\"wrong_code\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("otpgate_http_request_duration_seconds_bucket"),
            "{text}"
        );
        assert!(text.contains("route=\"/v1/verifications\""), "{text}");
        assert!(text.contains("otpgate_pow_difficulty 12"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }
}
