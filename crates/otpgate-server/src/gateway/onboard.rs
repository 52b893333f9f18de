//! Onboarding the phones through sms-gate.app's own API: `otpgate gateways check` (is each
//! phone usable: reachable, credentials, health, webhooks, clock, signing key) and
//! `otpgate gateways connect` (registers the issuer's webhook for every event otpgate uses and
//! sets the phone's signing key where the API allows it). The configuration is the source of
//! truth: nothing here is stored.

use std::time::{Duration, SystemTime};

use otpgate_core::wire::smsgate::{HealthResponse, Webhook};
use serde_json::{Value, json};

use super::adapter::{client, smsgate_base};
use super::config::{
    DeviceConfig, GatewaysConfig, Kind, MIN_SIGNING_KEY_BYTES, Mode, Secret, secret, signing_key,
};

/// The webhook events otpgate acts on: delivery states, and the phone's heartbeat.
pub const EVENTS_USED: [&str; 5] = [
    "sms:sent",
    "sms:delivered",
    "sms:failed",
    "sms:cancelled",
    "system:ping",
];

/// A phone clock further off than this is reported (delivery times and webhook timestamps
/// read wrong).
pub const SKEW_WARN: Duration = Duration::from_secs(30);

/// Past this, the phone's signed webhooks fall outside the issuer's timestamp window and are
/// refused: the phone is unusable.
pub const SKEW_FATAL: Duration = Duration::from_secs(300);

/// How usable a phone (or one of its checks) is, worst last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Verdict {
    /// Usable as configured.
    Ok,
    /// Usable, with something to fix (missing webhooks, a drifting clock, a `warn` health).
    Warn,
    /// Cannot send or cannot be trusted: unreachable, credentials refused, failing health,
    /// a missing or weak signing key, a clock outside the webhook window.
    Unusable,
}

impl Verdict {
    /// `ok`, `warn`, `unusable`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Unusable => "unusable",
        }
    }
}

/// One checked item of a phone.
#[derive(Clone, Debug)]
pub struct Finding {
    /// `reachable`, `credentials`, `health`, `webhooks`, `clock`, `signing key`.
    pub item: &'static str,
    /// Its verdict.
    pub verdict: Verdict,
    /// What was seen, and what to do about it (never a secret).
    pub detail: String,
}

/// What `check` found on one phone.
#[derive(Clone, Debug)]
pub struct PhoneReport {
    /// The device's name in the configuration.
    pub name: String,
    /// The worst of its findings.
    pub verdict: Verdict,
    /// Each item checked.
    pub findings: Vec<Finding>,
}

impl PhoneReport {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            verdict: Verdict::Ok,
            findings: Vec::new(),
        }
    }

    fn add(&mut self, item: &'static str, verdict: Verdict, detail: impl Into<String>) {
        self.verdict = self.verdict.max(verdict);
        self.findings.push(Finding {
            item,
            verdict,
            detail: detail.into(),
        });
    }
}

/// The issuer's webhook URL for sms-gate.app phones (`PUBLIC_URL/v1/gateways/sms-gate/webhook`).
pub fn webhook_url(public_url: &str) -> String {
    format!(
        "{}/v1/gateways/sms-gate/webhook",
        public_url.trim_end_matches('/')
    )
}

/// The id `connect` gives the webhook of `event` (the same id replaces: idempotent).
pub fn webhook_id(event: &str) -> String {
    format!("otpgate-{}", event.replace(':', "-"))
}

/// The signing key that verifies `dev`'s webhooks: its own, or the pool-wide one; the
/// error says what is missing or too short (never the key).
fn key_of(gw: &GatewaysConfig, dev: &DeviceConfig) -> Result<Secret, String> {
    let what = format!("gateways.devices[{}].signing_key_env", dev.name);
    let own = signing_key(&dev.literal.signing_key, &dev.signing_key_env, &what)
        .map_err(|e| format!("{e:#}"))?;
    if let Some(k) = own {
        return Ok(k);
    }
    signing_key(
        &gw.signing_key,
        &gw.webhook_signing_key_env,
        "gateways.webhook_signing_key_env",
    )
    .map_err(|e| format!("{e:#}"))?
    .ok_or_else(|| {
        "no signing key: set gateways.webhook_signing_key_env (or the device's \
         signing_key_env) to a variable holding a random key of at least 16 bytes \
         (openssl rand -hex 24)"
            .to_owned()
    })
}

/// The credentials of an sms-gate.app device.
enum Auth {
    Basic(String, Secret),
    Bearer(Secret),
}

fn auth_of(dev: &DeviceConfig) -> Result<Auth, String> {
    let what = |f: &str| format!("gateways.devices[{}].{f}", dev.name);
    let password = secret(
        &dev.literal.password,
        &dev.password_env,
        &what("password_env"),
    )
    .map_err(|e| format!("{e:#}"))?;
    let token = secret(&dev.literal.token, &dev.token_env, &what("token_env"))
        .map_err(|e| format!("{e:#}"))?;
    match (&dev.username, password, token) {
        (Some(u), Some(p), _) => Ok(Auth::Basic(u.clone(), p)),
        (_, _, Some(t)) => Ok(Auth::Bearer(t)),
        _ => Err(format!(
            "{}: no credentials (username with password_env, or token_env)",
            what("username")
        )),
    }
}

/// One sms-gate.app phone's API, as `check` and `connect` call it.
struct Phone {
    http: reqwest::Client,
    base: String,
    auth: Auth,
}

impl Phone {
    fn new(dev: &DeviceConfig) -> Result<Self, String> {
        Ok(Self {
            http: client(dev),
            base: smsgate_base(dev),
            auth: auth_of(dev)?,
        })
    }

    fn authed(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            Auth::Basic(u, p) => rb.basic_auth(u, Some(p.expose())),
            Auth::Bearer(t) => rb.bearer_auth(t.expose()),
        }
    }

    async fn webhooks(&self) -> Result<Vec<Webhook>, Refused> {
        let res = self
            .authed(self.http.get(format!("{}/webhooks", self.base)))
            .send()
            .await
            .map_err(|e| Refused::Unreachable(short(&e)))?;
        match res.status().as_u16() {
            200 => res
                .json::<Vec<Webhook>>()
                .await
                .map_err(|e| Refused::Other(format!("unreadable webhook list: {}", short(&e)))),
            401 | 403 => Err(Refused::Credentials(res.status().as_u16())),
            s => Err(Refused::Other(format!("GET /webhooks answered {s}"))),
        }
    }
}

enum Refused {
    Unreachable(String),
    Credentials(u16),
    Other(String),
}

impl Refused {
    fn explain(&self) -> String {
        match self {
            Self::Unreachable(e) => format!("unreachable: {e}"),
            Self::Credentials(s) => format!(
                "credentials refused ({s}): check username and password_env (local mode: the \
                 app's Home → Local server shows them)"
            ),
            Self::Other(e) => e.clone(),
        }
    }
}

/// An error's text with its causes (credentials travel in headers, never in the URL).
fn short(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s = format!("{s}: {inner}");
        src = inner.source();
    }
    s
}

/// Checks every phone of the configuration (sms-gate.app devices; other kinds are named and
/// skipped: they are checked when they send).
pub async fn check(gw: &GatewaysConfig, public_url: &str, now: SystemTime) -> Vec<PhoneReport> {
    let url = webhook_url(public_url);
    let mut out = Vec::new();
    for dev in &gw.devices {
        out.push(check_phone(gw, dev, &url, now).await);
    }
    out
}

async fn check_phone(
    gw: &GatewaysConfig,
    dev: &DeviceConfig,
    url: &str,
    now: SystemTime,
) -> PhoneReport {
    let mut r = PhoneReport::new(&dev.name);
    if dev.kind != Kind::SmsGate {
        r.add(
            "kind",
            Verdict::Ok,
            format!(
                "{}: not an sms-gate.app phone, nothing to check here",
                dev.kind.as_str()
            ),
        );
        return r;
    }
    match key_of(gw, dev) {
        Ok(k) => r.add(
            "signing key",
            Verdict::Ok,
            format!(
                "{} bytes (at least {MIN_SIGNING_KEY_BYTES})",
                k.expose().len()
            ),
        ),
        Err(e) => r.add("signing key", Verdict::Unusable, e),
    }
    let phone = match Phone::new(dev) {
        Ok(p) => p,
        Err(e) => {
            r.add("credentials", Verdict::Unusable, e);
            return r;
        }
    };
    // Health needs no credentials: it tells reachable from refused.
    match phone
        .http
        .get(format!("{}/health", phone.base))
        .send()
        .await
    {
        Err(e) => {
            r.add("reachable", Verdict::Unusable, short(&e));
            return r;
        }
        Ok(res) => {
            r.add("reachable", Verdict::Ok, phone.base.clone());
            clock(&mut r, res.headers().get(reqwest::header::DATE), now);
            let status = res.status().as_u16();
            match res.json::<HealthResponse>().await {
                Ok(h) => health(&mut r, &h),
                Err(_) => r.add(
                    "health",
                    Verdict::Unusable,
                    format!("GET /health answered {status} without a health report"),
                ),
            }
        }
    }
    match phone.webhooks().await {
        Err(e @ (Refused::Credentials(_) | Refused::Unreachable(_))) => {
            r.add("credentials", Verdict::Unusable, e.explain());
        }
        Err(e) => {
            r.add("credentials", Verdict::Ok, "accepted");
            r.add("webhooks", Verdict::Warn, e.explain());
        }
        Ok(hooks) => {
            r.add("credentials", Verdict::Ok, "accepted");
            let missing: Vec<&str> = EVENTS_USED
                .iter()
                .copied()
                .filter(|ev| !hooks.iter().any(|h| h.event == *ev && h.url == url))
                .collect();
            if missing.is_empty() {
                r.add(
                    "webhooks",
                    Verdict::Ok,
                    format!("all {} to {url}", EVENTS_USED.len()),
                );
            } else {
                r.add(
                    "webhooks",
                    Verdict::Warn,
                    format!(
                        "not registered to {url}: {} (run `otpgate gateways connect`; until \
                         then delivery states come only from polling)",
                        missing.join(", ")
                    ),
                );
            }
        }
    }
    r
}

/// The phone's clock from its `Date` header against ours.
fn clock(r: &mut PhoneReport, date: Option<&reqwest::header::HeaderValue>, now: SystemTime) {
    let Some(phone) = date
        .and_then(|d| d.to_str().ok())
        .and_then(|d| httpdate::parse_http_date(d).ok())
    else {
        r.add(
            "clock",
            Verdict::Ok,
            "the phone sent no Date header: not checked",
        );
        return;
    };
    let (skew, ahead) = match phone.duration_since(now) {
        Ok(d) => (d, true),
        Err(e) => (e.duration(), false),
    };
    // The header has whole seconds: a second of skew is rounding.
    let verdict = if skew > SKEW_FATAL {
        Verdict::Unusable
    } else if skew > SKEW_WARN {
        Verdict::Warn
    } else {
        Verdict::Ok
    };
    let mut detail = format!(
        "{} s {}",
        skew.as_secs(),
        if ahead { "ahead" } else { "behind" }
    );
    if verdict != Verdict::Ok {
        detail.push_str(&format!(
            " (webhooks are refused past {} s): set the phone to automatic date and time",
            SKEW_FATAL.as_secs()
        ));
    }
    r.add("clock", verdict, detail);
}

/// The health report: `fail` is unusable, `warn` a warning; the checks are listed.
fn health(r: &mut PhoneReport, h: &HealthResponse) {
    let verdict = match h.status.as_str() {
        "pass" => Verdict::Ok,
        "warn" => Verdict::Warn,
        _ => Verdict::Unusable,
    };
    let mut parts = vec![format!("status {}", h.status)];
    if let Some(Value::Object(checks)) = &h.checks {
        for (name, c) in checks {
            let value = c.get("observedValue").map_or(Value::Null, Clone::clone);
            let status = c.get("status").and_then(Value::as_str).unwrap_or("?");
            parts.push(format!("{name}={value} ({status})"));
        }
    }
    r.add("health", verdict, parts.join(", "));
}

/// What `connect` did on one phone.
#[derive(Clone, Debug)]
pub struct Connected {
    /// The device's name.
    pub name: String,
    /// Each change made, or found already in place.
    pub changes: Vec<String>,
    /// What failed or must be done by hand (the command exits non-zero when one failed).
    pub problems: Vec<String>,
}

/// Registers the issuer's webhook for every event in [`EVENTS_USED`] on each sms-gate.app
/// phone (ids [`webhook_id`], so a second run changes nothing), and sets the phone's signing
/// key where the API allows it (the phone's local server: `PATCH /settings`); the cloud API
/// refuses it, so there the answer says where to set it in the app.
pub async fn connect(gw: &GatewaysConfig, public_url: &str) -> Vec<Connected> {
    let url = webhook_url(public_url);
    let mut out = Vec::new();
    for dev in gw.devices.iter().filter(|d| d.kind == Kind::SmsGate) {
        out.push(connect_phone(gw, dev, &url).await);
    }
    out
}

async fn connect_phone(gw: &GatewaysConfig, dev: &DeviceConfig, url: &str) -> Connected {
    let mut c = Connected {
        name: dev.name.clone(),
        changes: Vec::new(),
        problems: Vec::new(),
    };
    let phone = match Phone::new(dev) {
        Ok(p) => p,
        Err(e) => {
            c.problems.push(e);
            return c;
        }
    };
    if dev.mode == Mode::Local && !local_app_accepts(url) {
        c.problems.push(format!(
            "the app's local server accepts only https:// or http://127.0.0.1 webhook URLs, \
             not {url}: set server.public_url to the issuer's https:// address"
        ));
        return c;
    }
    let hooks = match phone.webhooks().await {
        Ok(h) => h,
        Err(e) => {
            c.problems.push(e.explain());
            return c;
        }
    };
    for event in EVENTS_USED {
        let id = webhook_id(event);
        if hooks
            .iter()
            .any(|h| h.event == event && h.url == url && h.id.as_deref() == Some(id.as_str()))
        {
            c.changes
                .push(format!("webhook {event}: already registered"));
            continue;
        }
        let body = json!({"id": id, "url": url, "event": event});
        let res = phone
            .authed(phone.http.post(format!("{}/webhooks", phone.base)))
            .json(&body)
            .send()
            .await;
        match res {
            Ok(r) if r.status().is_success() => {
                c.changes
                    .push(format!("webhook {event}: registered ({id})"));
            }
            Ok(r) => c.problems.push(format!(
                "webhook {event}: the phone answered {}",
                r.status().as_u16()
            )),
            Err(e) => c.problems.push(format!("webhook {event}: {}", short(&e))),
        }
    }
    match key_of(gw, dev) {
        Err(e) => c.problems.push(e),
        Ok(_) if dev.mode == Mode::Cloud => c.changes.push(
            "signing key: the cloud API does not take it; set the same key in the app \
             (Settings → Webhooks → Signing Key)"
                .into(),
        ),
        Ok(key) => {
            let res = phone
                .authed(phone.http.patch(format!("{}/settings", phone.base)))
                .json(&json!({"webhooks": {"signing_key": key.expose()}}))
                .send()
                .await;
            match res {
                Ok(r) if r.status().is_success() => {
                    c.changes.push("signing key: set on the phone".into());
                }
                Ok(r) => c.problems.push(format!(
                    "signing key: the phone answered {}; set it in the app (Settings → \
                     Webhooks → Signing Key)",
                    r.status().as_u16()
                )),
                Err(e) => c.problems.push(format!("signing key: {}", short(&e))),
            }
        }
    }
    c
}

/// The sms-gate.app local server registers `https://` URLs and `http://127.0.0.1` only.
fn local_app_accepts(url: &str) -> bool {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            u.scheme() == "https" || (u.scheme() == "http" && u.host_str() == Some("127.0.0.1"))
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_order_worst_last() {
        let mut r = PhoneReport::new("p");
        r.add("a", Verdict::Warn, "");
        r.add("b", Verdict::Ok, "");
        assert_eq!(r.verdict, Verdict::Warn);
        r.add("c", Verdict::Unusable, "");
        r.add("d", Verdict::Warn, "");
        assert_eq!(r.verdict, Verdict::Unusable);
    }

    #[test]
    fn the_clock_is_judged_by_its_skew() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let at = |secs: i64| {
            let t = if secs >= 0 {
                now + Duration::from_secs(secs.unsigned_abs())
            } else {
                now - Duration::from_secs(secs.unsigned_abs())
            };
            reqwest::header::HeaderValue::from_str(&httpdate::fmt_http_date(t)).unwrap()
        };
        for (skew, want) in [
            (0, Verdict::Ok),
            (-30, Verdict::Ok),
            (31, Verdict::Warn),
            (-200, Verdict::Warn),
            (301, Verdict::Unusable),
            (-4000, Verdict::Unusable),
        ] {
            let mut r = PhoneReport::new("p");
            clock(&mut r, Some(&at(skew)), now);
            assert_eq!(r.verdict, want, "skew {skew}");
        }
        let mut r = PhoneReport::new("p");
        clock(&mut r, None, now);
        assert_eq!(r.verdict, Verdict::Ok);
    }

    #[test]
    fn the_local_app_takes_https_or_loopback_http() {
        assert!(local_app_accepts(
            "https://otp.example.com/v1/gateways/sms-gate/webhook"
        ));
        assert!(local_app_accepts("http://127.0.0.1:8080/x"));
        assert!(!local_app_accepts("http://192.168.1.5:8080/x"));
        assert!(!local_app_accepts("http://localhost:8080/x"));
        assert!(!local_app_accepts("not a url"));
    }

    #[test]
    fn webhook_ids_are_stable_and_short() {
        for ev in EVENTS_USED {
            let id = webhook_id(ev);
            assert!(id.len() <= 36 && !id.contains(':'), "{id}");
        }
        assert_eq!(webhook_id("sms:sent"), "otpgate-sms-sent");
    }
}
