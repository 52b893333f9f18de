//! The `[gateways]` section: devices/SIMs, their budgets, and where the secrets come from.
//!
//! ```toml
//! [gateways]
//! webhook_signing_key_env = "OTPGATE_SMSGATE_SIGNING_KEY"
//!
//! [[gateways.devices]]
//! name = "pixel-1"
//! kind = "sms-gate"            # sms-gate | textbee | multiotp | webhook | twilio | sns
//! url = "http://192.168.1.20:8080"
//! mode = "local"               # local (no prefix) | cloud (/3rdparty/v1 base)
//! username = "sms"
//! password_env = "PIXEL1_PASSWORD"
//! sim = 1
//! regions = ["GB", "FR"]       # ISO 3166-1 alpha-2 regions served; empty = any
//! budget_per_minute = 25       # SMS segments per budget window (Android allows ~30/min)
//! daily_cap = 500
//! ```
//!
//! Secrets are never in the file: `*_env` names an environment variable.

use serde::Deserialize;
use zeroize::Zeroizing;

use crate::destination::Region;

/// A secret string: prints as `[redacted]`, zeroized on drop.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a value.
    pub fn new(s: impl Into<String>) -> Self {
        Self(Zeroizing::new(s.into()))
    }

    /// The value (never log it).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// The kind of gateway a device is.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Deserialize)]
pub enum Kind {
    /// An Android phone with sms-gate.app (local server, or through the cloud/private server).
    #[serde(rename = "sms-gate")]
    SmsGate,
    /// TextBee (`POST /gateway/devices/{id}/send-sms`, `x-api-key`).
    #[serde(rename = "textbee")]
    TextBee,
    /// multiOTP SMSGatewayApp: the phone polls us.
    #[serde(rename = "multiotp")]
    MultiOtp,
    /// A generic signed webhook (bring your own provider).
    #[serde(rename = "webhook")]
    Webhook,
    /// Twilio Messages API: a fallback used only when every phone failed.
    #[serde(rename = "twilio")]
    Twilio,
    /// AWS SNS `Publish`: a fallback used only when every phone failed.
    #[serde(rename = "sns")]
    Sns,
}

impl Kind {
    /// Whether this is a commercial fallback (used only when every phone failed).
    pub fn is_fallback(self) -> bool {
        matches!(self, Self::Twilio | Self::Sns)
    }

    /// The name used in logs and the delivery record.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SmsGate => "sms-gate",
            Self::TextBee => "textbee",
            Self::MultiOtp => "multiotp",
            Self::Webhook => "webhook",
            Self::Twilio => "twilio",
            Self::Sns => "sns",
        }
    }
}

/// sms-gate.app: the phone's own server, or the cloud/private server.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// `http://phone:8080`, paths without a prefix.
    #[default]
    Local,
    /// `https://api.sms-gate.app` or a private server: paths under `/3rdparty/v1`.
    Cloud,
}

/// How an sms-gate device in cloud mode authenticates its calls.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// Every call carries the configured credentials (Basic, or the `token_env` bearer).
    #[default]
    Basic,
    /// A short-lived JWT from `POST /auth/token` (scopes `messages:send`, `messages:read`),
    /// refreshed before it expires; the password only obtains a token.
    Token,
}

fn one() -> u32 {
    1
}
fn default_budget() -> u32 {
    25
}
fn default_android_limit() -> u32 {
    30
}

/// One device (or SIM, or provider account) of the pool.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// A unique name (logs, budgets, the delivery record).
    pub name: String,
    /// What it is.
    pub kind: Kind,
    /// The base URL (unused for `multiotp`, optional for `sns`).
    #[serde(default)]
    pub url: Option<String>,
    /// sms-gate.app mode.
    #[serde(default)]
    pub mode: Mode,
    /// Basic-auth user (sms-gate, multiotp), or the Twilio account SID.
    #[serde(default)]
    pub username: Option<String>,
    /// The environment variable holding the password (Basic auth; Twilio auth token).
    #[serde(default)]
    pub password_env: Option<String>,
    /// The environment variable holding a bearer token / API key (sms-gate JWT, TextBee key).
    #[serde(default)]
    pub token_env: Option<String>,
    /// The SIM slot (1..3).
    #[serde(default)]
    pub sim: Option<u8>,
    /// A phone with several SIMs: one entry per SIM (each sends through its slot and keeps
    /// its own daily cap), while the per-minute budget and Android's limit, which count per
    /// app on the phone, stay the phone's and are shared. Not with `sim`.
    #[serde(default)]
    pub sims: Vec<SimConfig>,
    /// The phone whose budgets this entry shares (set for each SIM of a `sims` list).
    #[serde(skip)]
    pub(crate) phone: Option<String>,
    /// Relative share of traffic.
    #[serde(default = "one")]
    pub weight: u32,
    /// Regions served (ISO 3166-1 alpha-2, the region libphonenumber gives a number);
    /// empty = any.
    #[serde(default)]
    pub regions: Vec<Region>,
    /// No longer accepted (calling codes): refused, naming `regions`.
    #[serde(default, rename = "countries")]
    pub removed_countries: Option<Vec<String>>,
    /// SMS segments per budget window (default 25, under Android's 30 per minute).
    #[serde(default = "default_budget")]
    pub budget_per_minute: u32,
    /// Most segments per UTC day (0 = no cap).
    #[serde(default)]
    pub daily_cap: u32,
    /// The phone's own limit per budget window, counted over a *sliding* window (Android's
    /// `SmsUsageMonitor`: 30 per 60 s by default). When two back-to-back fixed-window budgets
    /// could pass it, sends are also spread over fifths of the window.
    #[serde(default = "default_android_limit")]
    pub android_limit: u32,
    /// The gateway's own device id (sms-gate cloud `deviceId`, TextBee device id); sms-gate
    /// `system:ping` webhooks with this id mark the device healthy.
    #[serde(default)]
    pub device_id: Option<String>,
    /// sms-gate end-to-end encryption passphrase, from this environment variable.
    #[serde(default)]
    pub encryption_passphrase_env: Option<String>,
    /// The signing key of this device's webhooks (or of our requests, for `webhook`), from
    /// this environment variable; sms-gate devices default to the pool-wide key.
    #[serde(default)]
    pub signing_key_env: Option<String>,
    /// The sender (Twilio `From` number or `MG...` messaging service SID).
    #[serde(default)]
    pub from: Option<String>,
    /// AWS region (sns).
    #[serde(default)]
    pub region: Option<String>,
    /// HTTP timeout for one call, in milliseconds.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Lets a `mode = "cloud"` sms-gate device be reached over plain `http://` (its token and
    /// every message, number and code included, cross the network in clear). Refused without.
    #[serde(default)]
    pub danger_allow_http: bool,
    /// sms-gate cloud/private: `basic` (default: the credentials as given, Basic auth with
    /// username + password, or the static `token_env` bearer) or `token` (the password is
    /// used only to obtain a short-lived JWT with the scopes otpgate needs, then refreshed).
    #[serde(default)]
    pub auth: AuthMode,
    /// A local phone's HTTPS: the PEM file of the CA that signed its certificate (then the
    /// only trust anchors for this device).
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// A local phone's HTTPS: its public key pinned, `sha256/<base64>` of the SHA-256 of the
    /// certificate's SubjectPublicKeyInfo (a self-signed certificate on the LAN).
    #[serde(default)]
    pub cert_pin: Option<String>,
    /// Literal secrets (dev mode and tests; never read from a file).
    #[serde(skip)]
    pub(crate) literal: LiteralSecrets,
}

/// One SIM of a phone (`[[gateways.devices]] sims = [{ sim = 1, daily_cap = 300 }, ...]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    /// The slot (1..3).
    pub sim: u8,
    /// Most segments per UTC day through this SIM (0 = no cap): a SIM plan's own limit.
    #[serde(default)]
    pub daily_cap: u32,
    /// Relative share of the phone's traffic (default 1).
    #[serde(default = "one")]
    pub weight: u32,
}

impl DeviceConfig {
    /// The name of the budgets this entry counts against per minute: its phone's when it is
    /// one SIM of several, else its own.
    pub fn budget_name(&self) -> &str {
        self.phone.as_deref().unwrap_or(&self.name)
    }

    /// The entries the pool sends through: one per SIM of a `sims` list (named
    /// `{name}/sim{n}`), or the device itself.
    pub fn routes(&self) -> Vec<Self> {
        if self.sims.is_empty() {
            return vec![self.clone()];
        }
        self.sims
            .iter()
            .map(|s| {
                let mut d = self.clone();
                d.name = format!("{}/sim{}", self.name, s.sim);
                d.sim = Some(s.sim);
                d.daily_cap = s.daily_cap;
                d.weight = s.weight;
                d.sims = Vec::new();
                d.phone = Some(self.name.clone());
                d
            })
            .collect()
    }
}

/// Secrets given in code rather than through the environment (dev mode, tests).
#[derive(Clone, Debug, Default)]
pub struct LiteralSecrets {
    /// The password.
    pub password: Option<Secret>,
    /// The token.
    pub token: Option<Secret>,
    /// The signing key.
    pub signing_key: Option<Secret>,
    /// The encryption passphrase.
    pub passphrase: Option<Secret>,
}

impl DeviceConfig {
    /// A device of `kind` named `name` at `url` with the defaults.
    pub fn new(name: impl Into<String>, kind: Kind, url: Option<String>) -> Self {
        Self {
            name: name.into(),
            kind,
            url,
            mode: Mode::Local,
            username: None,
            password_env: None,
            token_env: None,
            sim: None,
            sims: Vec::new(),
            phone: None,
            weight: 1,
            regions: Vec::new(),
            removed_countries: None,
            budget_per_minute: default_budget(),
            daily_cap: 0,
            android_limit: default_android_limit(),
            device_id: None,
            encryption_passphrase_env: None,
            signing_key_env: None,
            from: None,
            region: None,
            timeout_ms: None,
            danger_allow_http: false,
            auth: AuthMode::Basic,
            ca_file: None,
            cert_pin: None,
            literal: LiteralSecrets::default(),
        }
    }

    /// Sets literal secrets (dev mode and tests).
    pub fn with_secrets(mut self, secrets: LiteralSecrets) -> Self {
        self.literal = secrets;
        self
    }
}

fn default_window() -> u64 {
    60
}
fn default_health() -> u64 {
    15
}
fn default_poll() -> u64 {
    10
}
fn default_queue_wait() -> u64 {
    60
}
fn default_queue_max() -> u32 {
    1000
}
fn default_webhook_window() -> i64 {
    otpgate_core::webhook::DEFAULT_WINDOW_SECS
}

/// The `[gateways]` section. The default has no device (the issuer then runs in dev mode or
/// refuses to start, its choice).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaysConfig {
    /// The devices.
    #[serde(default)]
    pub devices: Vec<DeviceConfig>,
    /// The environment variable holding the sms-gate.app webhook signing key.
    #[serde(default)]
    pub webhook_signing_key_env: Option<String>,
    /// Accepted clock difference of signed webhooks, seconds.
    #[serde(default = "default_webhook_window")]
    pub webhook_window_secs: i64,
    /// The window `budget_per_minute` counts over, seconds (60; shorter in benchmarks).
    #[serde(default = "default_window")]
    pub budget_window_secs: u64,
    /// How often device health is checked, seconds.
    #[serde(default = "default_health")]
    pub health_interval_secs: u64,
    /// How often in-flight messages are polled, seconds (a safety net where webhooks exist).
    #[serde(default = "default_poll")]
    pub poll_interval_secs: u64,
    /// How long a send may wait in the store's queue for phone capacity, seconds (default
    /// 60; it also leaves at least 30 s of the code's lifetime). 0: never queue, refuse at
    /// once with `no_gateway_capacity`.
    #[serde(default = "default_queue_wait")]
    pub queue_max_wait_secs: u64,
    /// At most this many sends wait in the queue (default 1000); past it, starts are
    /// refused with `no_gateway_capacity`.
    #[serde(default = "default_queue_max")]
    pub queue_max: u32,
    /// The literal pool-wide signing key (dev mode and tests).
    #[serde(skip)]
    pub(crate) signing_key: Option<Secret>,
}

impl Default for GatewaysConfig {
    fn default() -> Self {
        Self {
            devices: Vec::new(),
            webhook_signing_key_env: None,
            webhook_window_secs: default_webhook_window(),
            budget_window_secs: default_window(),
            health_interval_secs: default_health(),
            poll_interval_secs: default_poll(),
            queue_max_wait_secs: default_queue_wait(),
            queue_max: default_queue_max(),
            signing_key: None,
        }
    }
}

impl GatewaysConfig {
    /// Dev mode: one sms-gate.app local-mode device, the emulator mounted at
    /// `{issuer_base_url}/_emulator/phone`, whose webhooks go to
    /// `{issuer_base_url}/v1/gateways/sms-gate/webhook`.
    pub fn dev(issuer_base_url: &str, username: &str, password: &str, signing_key: &str) -> Self {
        let base = issuer_base_url.trim_end_matches('/');
        let mut device = DeviceConfig::new(
            "emulator",
            Kind::SmsGate,
            Some(format!("{base}/_emulator/phone")),
        );
        device.username = Some(username.to_owned());
        device.literal.password = Some(Secret::new(password));
        // The emulated phone's own key (no shared gateway key: nothing to warn about).
        device.literal.signing_key = Some(Secret::new(signing_key));
        Self {
            devices: vec![device],
            health_interval_secs: 5,
            poll_interval_secs: 5,
            ..Self::default()
        }
    }

    /// Sets the literal pool-wide signing key (tests).
    pub fn with_signing_key(mut self, key: &str) -> Self {
        self.signing_key = Some(Secret::new(key));
        self
    }

    /// The sms-gate devices with no signing key of their own, which sign with the shared
    /// gateway key when there is one (`webhook_signing_key_env`): each can then sign events
    /// for the messages of the others. Empty when there is no shared key.
    pub fn devices_sharing_the_gateway_key(&self) -> Vec<&str> {
        if self.signing_key.is_none() && self.webhook_signing_key_env.is_none() {
            return Vec::new();
        }
        self.devices
            .iter()
            .filter(|d| {
                d.kind == Kind::SmsGate
                    && d.signing_key_env.is_none()
                    && d.literal.signing_key.is_none()
            })
            .map(|d| d.name.as_str())
            .collect()
    }

    /// Whether any device is configured.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// Checks the section without reading the environment: `"key: reason"`.
    ///
    /// # Errors
    /// The first problem found.
    pub fn validate(&self) -> Result<(), String> {
        let mut names = std::collections::HashSet::new();
        if !(1..=3600).contains(&self.budget_window_secs) {
            return Err("gateways.budget_window_secs: must be 1..3600".into());
        }
        if !(1..=3600).contains(&self.webhook_window_secs) {
            return Err("gateways.webhook_window_secs: must be 1..3600".into());
        }
        if !(1..=3600).contains(&self.health_interval_secs)
            || !(1..=3600).contains(&self.poll_interval_secs)
        {
            return Err(
                "gateways.health_interval_secs / poll_interval_secs: must be 1..3600".into(),
            );
        }
        if self.queue_max_wait_secs > 3600 {
            return Err("gateways.queue_max_wait_secs: must be 0..3600".into());
        }
        if self.queue_max > 1_000_000 {
            return Err("gateways.queue_max: must be 0..1000000".into());
        }
        for (i, d) in self.devices.iter().enumerate() {
            let at = |f: &str| format!("gateways.devices[{i}].{f}");
            let valid_name = !d.name.is_empty()
                && d.name.len() <= 64
                && d.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid_name {
                return Err(format!("{}: 1..64 of [A-Za-z0-9_-]", at("name")));
            }
            if !names.insert(d.name.clone()) {
                return Err(format!("{}: duplicate name {:?}", at("name"), d.name));
            }
            if d.removed_countries.is_some() {
                return Err(format!(
                    "{}: no longer accepted; use {} with ISO 3166-1 alpha-2 regions \
                     (e.g. regions = [\"GB\", \"FR\"])",
                    at("countries"),
                    at("regions")
                ));
            }
            if d.weight == 0 || d.weight > 1000 {
                return Err(format!("{}: must be 1..1000", at("weight")));
            }
            if d.budget_per_minute == 0 {
                return Err(format!("{}: must be positive", at("budget_per_minute")));
            }
            if d.android_limit < 6 {
                return Err(format!("{}: must be at least 6", at("android_limit")));
            }
            if d.sim.is_some_and(|s| !(1..=3).contains(&s)) {
                return Err(format!("{}: must be 1..3", at("sim")));
            }
            if !d.sims.is_empty() {
                if d.sim.is_some() {
                    return Err(format!("{}: give sim or sims, not both", at("sims")));
                }
                if !matches!(d.kind, Kind::SmsGate | Kind::TextBee) {
                    return Err(format!(
                        "{}: SIMs are for sms-gate and textbee phones",
                        at("sims")
                    ));
                }
                let mut seen = std::collections::HashSet::new();
                for (j, sim) in d.sims.iter().enumerate() {
                    let at_sim = |f: &str| format!("{}[{j}].{f}", at("sims"));
                    if !(1..=3).contains(&sim.sim) {
                        return Err(format!("{}: must be 1..3", at_sim("sim")));
                    }
                    if !seen.insert(sim.sim) {
                        return Err(format!("{}: SIM {} listed twice", at_sim("sim"), sim.sim));
                    }
                    if sim.weight == 0 || sim.weight > 1000 {
                        return Err(format!("{}: must be 1..1000", at_sim("weight")));
                    }
                }
            }
            if d.ca_file.is_some() || d.cert_pin.is_some() {
                if d.ca_file.is_some() && d.cert_pin.is_some() {
                    return Err(format!(
                        "{}: give ca_file or cert_pin, not both",
                        at("cert_pin")
                    ));
                }
                if !d.url.as_deref().is_some_and(|u| u.starts_with("https://")) {
                    return Err(format!(
                        "{}: ca_file and cert_pin are for an https:// url",
                        at("url")
                    ));
                }
                if let Some(pin) = &d.cert_pin {
                    super::tls::Pin::parse(pin).map_err(|r| format!("{}: {r}", at("cert_pin")))?;
                }
                if let Some(ca) = &d.ca_file {
                    super::tls::read_ca_file(ca).map_err(|r| format!("{}: {r}", at("ca_file")))?;
                }
            }
            if d.auth == AuthMode::Token {
                if d.kind != Kind::SmsGate || d.mode != Mode::Cloud {
                    return Err(format!(
                        "{}: \"token\" is for kind = \"sms-gate\" with mode = \"cloud\" (the \
                         cloud or a private server)",
                        at("auth")
                    ));
                }
                if d.username.is_none()
                    || (d.password_env.is_none() && d.literal.password.is_none())
                {
                    return Err(format!(
                        "{}: auth = \"token\" needs username and password_env (to obtain tokens)",
                        at("username")
                    ));
                }
                if d.token_env.is_some() || d.literal.token.is_some() {
                    return Err(format!(
                        "{}: not with auth = \"token\" (otpgate obtains its own tokens)",
                        at("token_env")
                    ));
                }
            }
            let needs_url = !matches!(d.kind, Kind::MultiOtp | Kind::Sns);
            match &d.url {
                Some(u) => match reqwest::Url::parse(u) {
                    Ok(p) if p.scheme() == "http" && p.host().is_some() => {
                        if d.kind == Kind::SmsGate && d.mode == Mode::Cloud && !d.danger_allow_http
                        {
                            return Err(format!(
                                "{}: a cloud-mode sms-gate server over http:// would carry its \
                                 token, every number and every code in clear: use https:// \
                                 (or, on a network you trust, set {} = true)",
                                at("url"),
                                at("danger_allow_http")
                            ));
                        }
                    }
                    Ok(p) if p.scheme() == "https" && p.host().is_some() => {}
                    _ => return Err(format!("{}: not an http(s) URL", at("url"))),
                },
                None if needs_url => {
                    return Err(format!(
                        "{}: required for kind {}",
                        at("url"),
                        d.kind.as_str()
                    ));
                }
                None => {}
            }
            match d.kind {
                Kind::SmsGate
                    if d.username.is_some()
                        && d.password_env.is_none()
                        && d.literal.password.is_none() =>
                {
                    return Err(format!("{}: required with username", at("password_env")));
                }
                Kind::SmsGate
                    if d.username.is_none()
                        && d.token_env.is_none()
                        && d.literal.token.is_none() =>
                {
                    return Err(format!(
                        "{}: username + password_env or token_env required",
                        at("username")
                    ));
                }
                Kind::TextBee
                    if d.device_id.is_none()
                        || (d.token_env.is_none() && d.literal.token.is_none()) =>
                {
                    return Err(format!(
                        "{}: textbee needs device_id and token_env (the API key)",
                        at("device_id")
                    ));
                }
                Kind::MultiOtp
                    if d.username.is_none()
                        || (d.password_env.is_none() && d.literal.password.is_none()) =>
                {
                    return Err(format!(
                        "{}: multiotp needs username and password_env (the phone's Basic auth)",
                        at("username")
                    ));
                }
                Kind::Webhook if d.signing_key_env.is_none() && d.literal.signing_key.is_none() => {
                    return Err(format!(
                        "{}: required for kind webhook",
                        at("signing_key_env")
                    ));
                }
                Kind::Twilio
                    if d.username.is_none()
                        || d.from.is_none()
                        || (d.password_env.is_none() && d.literal.password.is_none()) =>
                {
                    return Err(format!(
                        "{}: twilio needs username (account SID), password_env (auth token) and from",
                        at("username")
                    ));
                }
                Kind::Sns
                    if d.region.is_none()
                        || (d.username.is_none())
                        || (d.password_env.is_none() && d.literal.password.is_none()) =>
                {
                    return Err(format!(
                        "{}: sns needs region, username (access key id) and password_env (secret key)",
                        at("region")
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// The shortest webhook signing key accepted, in bytes (an HMAC key an attacker can guess
/// lets them forge delivery events).
pub const MIN_SIGNING_KEY_BYTES: usize = 16;

/// Reads a webhook signing key like [`secret`], refusing one shorter than
/// [`MIN_SIGNING_KEY_BYTES`] (the error never shows the key).
pub(crate) fn signing_key(
    literal: &Option<Secret>,
    env: &Option<String>,
    what: &str,
) -> anyhow::Result<Option<Secret>> {
    let key = secret(literal, env, what)?;
    if let Some(k) = &key
        && k.expose().len() < MIN_SIGNING_KEY_BYTES
    {
        let source = match env {
            Some(var) if literal.is_none() => format!("the environment variable {var}"),
            _ => "the key given".to_owned(),
        };
        anyhow::bail!(
            "{what}: the webhook signing key in {source} is {} bytes; at least \
             {MIN_SIGNING_KEY_BYTES} are required. sms-gate.app makes an 8-character key unless \
             you set one: set a longer random one in the app (Settings → Webhooks → Signing \
             Key, or PATCH /settings {{\"webhooks\": {{\"signing_key\": ...}}}} on the phone's \
             local server) and the same value in {source} (e.g. openssl rand -hex 24)",
            k.expose().len()
        );
    }
    Ok(key)
}

/// Reads a secret from its literal or the named environment variable.
pub(crate) fn secret(
    literal: &Option<Secret>,
    env: &Option<String>,
    what: &str,
) -> anyhow::Result<Option<Secret>> {
    if let Some(s) = literal {
        return Ok(Some(s.clone()));
    }
    match env {
        None => Ok(None),
        Some(name) => match std::env::var(name) {
            Ok(v) if !v.is_empty() => Ok(Some(Secret::new(v))),
            _ => anyhow::bail!("{what}: environment variable {name} is not set"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let cfg: GatewaysConfig = toml::from_str(
            r#"
            webhook_signing_key_env = "K"
            [[devices]]
            name = "pixel-1"
            kind = "sms-gate"
            url = "http://192.168.1.20:8080"
            mode = "local"
            username = "sms"
            password_env = "PIXEL1_PASSWORD"
            sim = 1
            regions = ["GB", "FR"]
            budget_per_minute = 25
            daily_cap = 500
            [[devices]]
            name = "fallback"
            kind = "twilio"
            url = "https://api.twilio.com"
            username = "AC123"
            password_env = "TWILIO_TOKEN"
            from = "+14155550111"
            "#,
        )
        .expect("parses");
        assert_eq!(cfg.devices.len(), 2);
        assert_eq!(cfg.devices[0].kind, Kind::SmsGate);
        assert!(cfg.devices[1].kind.is_fallback());
        assert_eq!(cfg.validate(), Ok(()));
    }

    #[test]
    fn rejects_unknown_fields_and_bad_values() {
        assert!(toml::from_str::<GatewaysConfig>("nope = 1").is_err());
        assert!(
            toml::from_str::<GatewaysConfig>("[[devices]]\nname='a'\nkind='sms-gate'\nbogus=1")
                .is_err()
        );
        assert!(
            toml::from_str::<GatewaysConfig>("[[devices]]\nname='a'\nkind='carrier-pigeon'")
                .is_err()
        );
        // A value a type refuses fails when the file is read, the rest when it is checked.
        let bad = |s: &str| {
            toml::from_str::<GatewaysConfig>(s)
                .map_err(|e| e.to_string())
                .and_then(|c| c.validate())
        };
        assert!(bad("[[devices]]\nname='a b'\nkind='sms-gate'\nurl='http://x'\nusername='u'\npassword_env='P'")
            .is_err_and(|e| e.contains("name")));
        assert!(bad("[[devices]]\nname='a'\nkind='sms-gate'\nurl='ftp://x'\nusername='u'\npassword_env='P'")
            .is_err_and(|e| e.contains("url")));
        assert!(bad("[[devices]]\nname='a'\nkind='sms-gate'\nurl='http://x'").is_err());
        // The old routing key is refused, naming its replacement.
        assert!(bad("[[devices]]\nname='a'\nkind='sms-gate'\nurl='http://x'\nusername='u'\npassword_env='P'\ncountries=['44']")
            .is_err_and(|e| e.contains("countries") && e.contains("regions")));
        // Regions are ISO 3166-1 alpha-2 codes the metadata knows.
        let regions = |c: &str| {
            bad(&format!(
                "[[devices]]\nname='a'\nkind='sms-gate'\nurl='http://x'\nusername='u'\npassword_env='P'\nregions=[{c}]"
            ))
        };
        for ok in ["'GB'", "'FR'", "'US'", "'JE'", "'PT'"] {
            assert_eq!(regions(ok), Ok(()), "{ok}");
        }
        for wrong in ["'UK'", "'gb'", "'44'", "'GBR'", "''", "'ZZ'"] {
            assert!(
                regions(wrong).is_err_and(|e| e.contains("regions")),
                "{wrong}"
            );
        }
        assert!(bad("[[devices]]\nname='a'\nkind='sms-gate'\nurl='http://x'\nusername='u'\npassword_env='P'\n[[devices]]\nname='a'\nkind='sms-gate'\nurl='http://x'\nusername='u'\npassword_env='P'")
            .is_err_and(|e| e.contains("duplicate")));
    }

    #[test]
    fn cloud_mode_over_http_needs_the_danger_key() {
        let with = |url: &str, extra: &str| {
            toml::from_str::<GatewaysConfig>(&format!(
                "[[devices]]\nname='c'\nkind='sms-gate'\nmode='cloud'\nurl='{url}'\ntoken_env='T'\n{extra}"
            ))
            .map_err(|e| e.to_string())
            .and_then(|c| c.validate())
        };
        assert_eq!(with("https://api.sms-gate.app", ""), Ok(()));
        let err = with("http://sms.example.net", "").expect_err("http cloud");
        assert!(
            err.contains("devices[0].url") && err.contains("danger_allow_http"),
            "{err}"
        );
        assert_eq!(
            with("http://sms.example.net", "danger_allow_http = true"),
            Ok(())
        );
        // Local mode (the phone on your LAN) speaks plain HTTP: no change there.
        let local = toml::from_str::<GatewaysConfig>(
            "[[devices]]\nname='p'\nkind='sms-gate'\nurl='http://192.168.1.20:8080'\nusername='u'\npassword_env='P'",
        )
        .expect("parses");
        assert_eq!(local.validate(), Ok(()));
    }

    #[test]
    fn short_signing_keys_are_refused_without_showing_them() {
        let short = Some(Secret::new("Ab3dE6gH"));
        let err = signing_key(&short, &None, "gateways.webhook_signing_key_env")
            .expect_err("8 bytes")
            .to_string();
        assert!(err.contains("8 bytes") && err.contains("Settings"), "{err}");
        assert!(!err.contains("Ab3dE6gH"), "{err}");
        let ok = Some(Secret::new("0123456789abcdef"));
        assert!(signing_key(&ok, &None, "k").expect("16 bytes").is_some());
        assert!(signing_key(&None, &None, "k").expect("none").is_none());
    }

    #[test]
    fn devices_without_their_own_key_share_the_gateway_key() {
        let cfg: GatewaysConfig = toml::from_str(
            "webhook_signing_key_env = 'K'\n\
             [[devices]]\nname='a'\nkind='sms-gate'\nurl='http://x'\nusername='u'\npassword_env='P'\n\
             [[devices]]\nname='b'\nkind='sms-gate'\nurl='http://x'\nusername='u'\npassword_env='P'\nsigning_key_env='B'\n\
             [[devices]]\nname='t'\nkind='textbee'\nurl='http://x'\ndevice_id='d'\ntoken_env='T'\n",
        )
        .expect("parses");
        assert_eq!(cfg.devices_sharing_the_gateway_key(), vec!["a"]);
        let mut no_shared = cfg.clone();
        no_shared.webhook_signing_key_env = None;
        assert!(no_shared.devices_sharing_the_gateway_key().is_empty());
        // Dev mode gives the emulated phone its own key.
        let dev = GatewaysConfig::dev("http://127.0.0.1:8080", "sms", "pw", "0123456789abcdef");
        assert!(dev.devices_sharing_the_gateway_key().is_empty());
    }

    #[test]
    fn dev_points_at_the_mounted_emulator_and_redacts() {
        let cfg = GatewaysConfig::dev("http://127.0.0.1:8080/", "sms", "pw", "key");
        assert_eq!(
            cfg.devices[0].url.as_deref(),
            Some("http://127.0.0.1:8080/_emulator/phone")
        );
        assert_eq!(cfg.validate(), Ok(()));
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("\"pw\"") && !dbg.contains("\"key\""), "{dbg}");
    }
}
