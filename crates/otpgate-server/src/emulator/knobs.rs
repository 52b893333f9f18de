//! The runtime knobs of the emulated phone and their `POST /_control` patch.

use serde::{Deserialize, Serialize};

/// How the emulated phone answers when "offline".
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Offline {
    /// Normal operation.
    #[default]
    Online,
    /// Every API call answers 503 (the phone's server is up but the app is not).
    Unavailable,
    /// New connections are closed at once (connection refused / reset); calls on open
    /// connections answer 503 with `Connection: close`.
    Refuse,
}

/// The knobs tests and benchmarks turn at runtime (`POST /_control`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Knobs {
    /// Delay before each state change, in milliseconds.
    pub delay_ms: u64,
    /// Share of sends that fail with `RESULT_ERROR_GENERIC_FAILURE`, 0.0–1.0.
    pub failure_rate: f64,
    /// Share of delivery reports that never come (the message stays `Sent`), 0.0–1.0.
    pub drop_reports: f64,
    /// Offline mode.
    pub offline: Offline,
    /// Android's per-app limit: SMS segments per window (0 = no limit).
    pub limit: u32,
    /// The limit's sliding window, in milliseconds.
    pub limit_window_ms: u64,
    /// First webhook retry delay, doubled on each retry (the app: 5 s).
    pub webhook_retry_base_ms: u64,
    /// Webhook retries after the first attempt (the app: 15).
    pub webhook_retries: u32,
    /// Interval of `system:ping` webhooks, in milliseconds (0 = off, as the app's default).
    pub ping_interval_ms: u64,
    /// The battery level `GET /health` reports, percent (the app: `warn` below 25, `fail`
    /// below 10).
    pub battery_level: u8,
    /// Whether the phone is charging (`battery:charging`).
    pub charging: bool,
    /// Internet connectivity (`connection:status`).
    pub online: bool,
    /// Token auth on (`POST /auth/token` issues JWTs); off is a private server without
    /// `jwt.secret` (`/auth/*` answer 501).
    pub jwt_enabled: bool,
    /// The longest access token, seconds (the server's `jwt.access_ttl`, 15 min), also the
    /// lifetime of every refreshed one.
    pub jwt_access_ttl_secs: u64,
    /// The refresh token's lifetime, seconds (the server's `jwt.refresh_ttl`, 30 days).
    pub jwt_refresh_ttl_secs: u64,
}

impl Default for Knobs {
    fn default() -> Self {
        Self {
            delay_ms: 200,
            failure_rate: 0.0,
            drop_reports: 0.0,
            offline: Offline::Online,
            limit: 30,
            limit_window_ms: 60_000,
            webhook_retry_base_ms: 5_000,
            webhook_retries: 15,
            ping_interval_ms: 0,
            battery_level: 87,
            charging: true,
            online: true,
            jwt_enabled: true,
            jwt_access_ttl_secs: 900,
            jwt_refresh_ttl_secs: 30 * 86_400,
        }
    }
}

/// A partial update of [`Knobs`]: the body of `POST /_control`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KnobsPatch {
    delay_ms: Option<u64>,
    failure_rate: Option<f64>,
    drop_reports: Option<f64>,
    offline: Option<OfflinePatch>,
    limit: Option<u32>,
    limit_window_ms: Option<u64>,
    webhook_retry_base_ms: Option<u64>,
    webhook_retries: Option<u32>,
    ping_interval_ms: Option<u64>,
    battery_level: Option<u8>,
    charging: Option<bool>,
    online: Option<bool>,
    jwt_enabled: Option<bool>,
    jwt_access_ttl_secs: Option<u64>,
    jwt_refresh_ttl_secs: Option<u64>,
}

/// `offline` accepts a boolean too (`true` = 503).
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
enum OfflinePatch {
    Flag(bool),
    Mode(Offline),
}

impl Knobs {
    pub(super) fn apply(&self, p: KnobsPatch) -> Result<Self, String> {
        let mut k = self.clone();
        if let Some(v) = p.delay_ms {
            k.delay_ms = v.min(600_000);
        }
        for (name, src, dst) in [
            ("failure_rate", p.failure_rate, &mut k.failure_rate),
            ("drop_reports", p.drop_reports, &mut k.drop_reports),
        ] {
            if let Some(v) = src {
                if !(0.0..=1.0).contains(&v) {
                    return Err(format!("{name}: must be between 0 and 1"));
                }
                *dst = v;
            }
        }
        match p.offline {
            Some(OfflinePatch::Flag(true)) => k.offline = Offline::Unavailable,
            Some(OfflinePatch::Flag(false)) => k.offline = Offline::Online,
            Some(OfflinePatch::Mode(m)) => k.offline = m,
            None => {}
        }
        if let Some(v) = p.limit {
            k.limit = v;
        }
        if let Some(v) = p.limit_window_ms {
            if v == 0 {
                return Err("limit_window_ms: must be positive".into());
            }
            k.limit_window_ms = v;
        }
        if let Some(v) = p.webhook_retry_base_ms {
            k.webhook_retry_base_ms = v.min(3_600_000);
        }
        if let Some(v) = p.webhook_retries {
            k.webhook_retries = v.min(30);
        }
        if let Some(v) = p.ping_interval_ms {
            k.ping_interval_ms = if v == 0 { 0 } else { v.clamp(100, 86_400_000) };
        }
        if let Some(v) = p.battery_level {
            if v > 100 {
                return Err("battery_level: must be 0..100".into());
            }
            k.battery_level = v;
        }
        if let Some(v) = p.charging {
            k.charging = v;
        }
        if let Some(v) = p.online {
            k.online = v;
        }
        if let Some(v) = p.jwt_enabled {
            k.jwt_enabled = v;
        }
        if let Some(v) = p.jwt_access_ttl_secs {
            if !(1..=86_400).contains(&v) {
                return Err("jwt_access_ttl_secs: must be 1..86400".into());
            }
            k.jwt_access_ttl_secs = v;
        }
        if let Some(v) = p.jwt_refresh_ttl_secs {
            if !(1..=366 * 86_400).contains(&v) {
                return Err("jwt_refresh_ttl_secs: must be 1..31622400".into());
            }
            k.jwt_refresh_ttl_secs = v;
        }
        if k.jwt_refresh_ttl_secs <= k.jwt_access_ttl_secs {
            return Err("jwt_refresh_ttl_secs: must be longer than jwt_access_ttl_secs".into());
        }
        Ok(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knobs_patch_validates() {
        let k = Knobs::default();
        let p: KnobsPatch = serde_json::from_str(r#"{"failure_rate": 1.5}"#).expect("parses");
        assert!(k.apply(p).is_err());
        let p: KnobsPatch =
            serde_json::from_str(r#"{"offline": true, "delay_ms": 5}"#).expect("parses");
        let k2 = k.apply(p).expect("valid");
        assert_eq!((k2.offline, k2.delay_ms), (Offline::Unavailable, 5));
        let p: KnobsPatch = serde_json::from_str(r#"{"offline": "refuse"}"#).expect("parses");
        assert_eq!(k.apply(p).expect("valid").offline, Offline::Refuse);
        assert!(serde_json::from_str::<KnobsPatch>(r#"{"nope": 1}"#).is_err());
    }
}
