//! What a phone's health report means for sending. sms-gate.app reports its battery, its
//! charging state, its internet connection and its failed messages (`GET /health`); a phone
//! at 3 % or without its connection should leave the rotation before its sends fail, and come
//! back only once it is clearly fine again (hysteresis: out below
//! [`BATTERY_OUT`] % while not charging, back from [`BATTERY_BACK`] % or once charging).

use otpgate_core::wire::smsgate::HealthResponse;
use serde::Serialize;
use serde_json::Value;

/// Below this battery level, not charging, a phone leaves the rotation.
pub const BATTERY_OUT: u8 = 15;
/// A phone out for its battery comes back from this level (or once it charges).
pub const BATTERY_BACK: u8 = 25;

/// One health answer, as far as the gateway reports it (`None`: not reported).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PhoneHealth {
    /// The phone answered its health call.
    pub answered: bool,
    /// Its own verdict (`pass`, `warn`, `fail`).
    pub status: Option<String>,
    /// Battery level, percent.
    pub battery_pct: Option<u8>,
    /// On a charger.
    pub charging: Option<bool>,
    /// Internet connection (what cloud and private mode reach the phone over).
    pub online: Option<bool>,
    /// Messages the phone reports failed.
    pub failed_messages: Option<u64>,
    /// The checks that did not pass, by name (`battery:level`, `connection:status`, ...).
    pub failing: Vec<String>,
}

impl PhoneHealth {
    /// A gateway without a health call: assumed fine (failed sends still open its breaker).
    pub fn assumed_up() -> Self {
        Self {
            answered: true,
            ..Self::default()
        }
    }

    /// No answer.
    pub fn unreachable() -> Self {
        Self::default()
    }

    /// Reads sms-gate.app's report (`battery:level` percent, `battery:charging` flags with 1
    /// set while charging, `connection:status` 0/1, `messages:failed` count).
    pub fn from_smsgate(r: &HealthResponse) -> Self {
        let checks = r.checks.as_ref().and_then(Value::as_object);
        let value = |name: &str| {
            checks
                .and_then(|c| c.get(name))
                .and_then(|c| c.get("observedValue"))
                .and_then(Value::as_u64)
        };
        let mut failing: Vec<String> = checks
            .map(|c| {
                c.iter()
                    .filter(|(_, v)| v.get("status").and_then(Value::as_str) == Some("fail"))
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default();
        failing.sort();
        Self {
            answered: true,
            status: Some(r.status.clone()),
            battery_pct: value("battery:level").map(|v| u8::try_from(v.min(100)).unwrap_or(100)),
            charging: value("battery:charging").map(|f| f & 1 == 1),
            online: value("connection:status").map(|v| v != 0),
            failed_messages: value("messages:failed"),
            failing,
        }
    }
}

/// Why the phone is out of the rotation now (`None`: it may send), given why it was out
/// before (`previous`) and whether the phone needs its internet connection to be reached
/// (cloud and private mode; a local phone is reached over the LAN and sends over cellular).
pub fn judge(previous: Option<&str>, h: &PhoneHealth, needs_internet: bool) -> Option<String> {
    if !h.answered {
        return Some("health check failed: no answer".into());
    }
    let charging = h.charging == Some(true);
    if let Some(pct) = h.battery_pct {
        let was_battery = previous.is_some_and(|r| r.starts_with("battery"));
        let threshold = if was_battery {
            BATTERY_BACK
        } else {
            BATTERY_OUT
        };
        if pct < threshold && !charging {
            return Some(format!("battery {pct} % and not charging"));
        }
    }
    if needs_internet && h.online == Some(false) {
        return Some("no internet connection".into());
    }
    if h.status.as_deref() == Some("fail") {
        // The app fails its report for a lost internet connection too; a local phone can
        // still send then, so that alone does not take it out.
        let relevant: Vec<&str> = h
            .failing
            .iter()
            .map(String::as_str)
            .filter(|c| needs_internet || !c.starts_with("connection:"))
            .collect();
        let charging_low = charging && h.failing.iter().all(|c| c.starts_with("battery:"));
        if !relevant.is_empty() && !charging_low {
            return Some(format!("health status fail ({})", relevant.join(", ")));
        }
        if h.failing.is_empty() {
            return Some("health status fail".into());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(status: &str, battery: u8, charging: bool, online: bool) -> PhoneHealth {
        let bat = match battery {
            0..10 => "fail",
            10..25 => "warn",
            _ => "pass",
        };
        PhoneHealth::from_smsgate(&HealthResponse {
            status: status.into(),
            version: None,
            release_id: None,
            checks: Some(serde_json::json!({
                "battery:level": {"observedValue": battery, "status": bat},
                "battery:charging": {"observedValue": if charging { 3 } else { 2 }, "status": "pass"},
                "connection:status": {"observedValue": u8::from(online), "status": if online { "pass" } else { "fail" }},
                "messages:failed": {"observedValue": 4, "status": "pass"},
            })),
        })
    }

    #[test]
    fn the_report_is_read() {
        let h = report("warn", 20, false, true);
        assert_eq!(h.battery_pct, Some(20));
        assert_eq!(h.charging, Some(false));
        assert_eq!(h.online, Some(true));
        assert_eq!(h.failed_messages, Some(4));
        assert!(h.failing.is_empty());
        assert_eq!(
            report("fail", 50, true, false).failing,
            ["connection:status"]
        );
    }

    #[test]
    fn a_low_battery_leaves_and_comes_back_with_hysteresis() {
        let out = |prev: Option<&str>, pct, charging| {
            judge(prev, &report("pass", pct, charging, true), false)
        };
        assert_eq!(out(None, 30, false), None);
        assert_eq!(out(None, 15, false), None);
        let reason = out(None, 14, false).expect("out");
        assert_eq!(reason, "battery 14 % and not charging");
        // Still out between the two thresholds; back from 25 %, or once charging.
        assert!(out(Some(&reason), 20, false).is_some());
        assert!(out(Some(&reason), 24, false).is_some());
        assert_eq!(out(Some(&reason), 25, false), None);
        assert_eq!(out(Some(&reason), 16, true), None);
        // Another reason before does not hold a phone out at 20 %.
        assert_eq!(out(Some("health check failed: no answer"), 20, false), None);
    }

    #[test]
    fn connectivity_matters_where_the_phone_is_reached_over_the_internet() {
        let offline = report("fail", 80, true, false);
        assert_eq!(
            judge(None, &offline, true).as_deref(),
            Some("no internet connection")
        );
        assert_eq!(
            judge(None, &offline, false),
            None,
            "a local phone still sends"
        );
    }

    #[test]
    fn the_phones_own_fail_takes_it_out_except_while_charging_a_low_battery() {
        let low = report("fail", 5, false, true);
        assert_eq!(
            judge(None, &low, false).as_deref(),
            Some("battery 5 % and not charging")
        );
        // Charging at 5 %: the app still says fail, the phone can send.
        assert_eq!(judge(None, &report("fail", 5, true, true), false), None);
        let bare = PhoneHealth {
            answered: true,
            status: Some("fail".into()),
            ..PhoneHealth::default()
        };
        assert_eq!(
            judge(None, &bare, false).as_deref(),
            Some("health status fail")
        );
        assert_eq!(
            judge(None, &PhoneHealth::unreachable(), false).as_deref(),
            Some("health check failed: no answer")
        );
        assert_eq!(judge(None, &PhoneHealth::assumed_up(), true), None);
    }
}
