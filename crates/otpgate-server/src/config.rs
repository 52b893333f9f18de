//! The issuer's configuration: a TOML file, environment overrides, and dev mode.
//!
//! # Sources, in order
//! 1. The TOML file (`otpgate serve --config FILE` or `OTPGATE_CONFIG`). Every section denies
//!    unknown keys, so a typo stops the server with the file, the key and the reason.
//! 2. Environment overrides: `OTPGATE_LISTEN`, `OTPGATE_PUBLIC_URL`, `OTPGATE_DATA_DIR`,
//!    `OTPGATE_STORE` (`embedded`, `memory`, or a `redis://` / `rediss://` URL),
//!    `OTPGATE_STORE_PATH`, `OTPGATE_REDIS_URL[_FILE]`, `OTPGATE_REDIS_KEY_PREFIX`,
//!    `OTPGATE_TRUSTED_PROXIES` (comma-separated CIDRs), `OTPGATE_STATIC_DIR`. The removed
//!    `OTPGATE_TRUST_FORWARDED_FOR` (like `[server] trust_forwarded_for`) stops the server,
//!    naming `trusted_proxies`.
//! 3. The command line (`--listen`, `--data-dir`).
//!
//! Without a file the issuer runs in **dev mode** ([`Config::dev`]): embedded store under
//! `./otpgate-data`, the emulated phone as the only gateway, a demo app named `demo`.
//!
//! # Security
//! Secrets never live in the TOML file: a Redis URL carrying a password is refused there and
//! must come from `OTPGATE_REDIS_URL` or the file named by `OTPGATE_REDIS_URL_FILE`. Signing
//! and code keys are loaded by [`crate::keys::KeyRing`] from the environment or the data dir.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use otpgate_core::code::Code;
use otpgate_core::code::CodeSpec;
pub use otpgate_core::origin::Origin;
use otpgate_core::sms::{ComposeError, ComposeRequest, Template, TemplateSet, compose};
use serde::Deserialize;

use crate::client_addr::TrustedProxies;
use crate::gateway::{GatewaysConfig, Secret};
use crate::policy::PolicyConfig;
use crate::store::Durability;

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The default data directory (relative to the working directory).
pub const DEFAULT_DATA_DIR: &str = "otpgate-data";
/// The default request body limit, bytes.
pub const DEFAULT_BODY_LIMIT: usize = 16 * 1024;
/// The largest request body limit accepted, bytes.
pub const MAX_BODY_LIMIT: usize = 1024 * 1024;

/// What replaces `trust_forwarded_for` (it believed `X-Forwarded-For` from anyone).
const TRUSTED_PROXIES_HINT: &str = "list the addresses of your own proxies instead, \
     e.g. [server] trusted_proxies = [\"10.0.0.0/8\", \"::1/128\"] \
     (or OTPGATE_TRUSTED_PROXIES=10.0.0.0/8,::1/128); X-Forwarded-For is read only from them";

/// Why the configuration was refused. The server does not start on any of these.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the schema (unknown key, wrong type).
    #[error("{path}:{line}:{column}: `{key}`: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The dotted key path (`apps[0].origins`), or `.` for the document.
        key: String,
        /// 1-based line, 0 when unknown.
        line: usize,
        /// 1-based column, 0 when unknown.
        column: usize,
        /// What is wrong.
        reason: String,
    },
    /// A value parsed but is not acceptable (bad origin, too large limit, secret in the file).
    #[error("{source_name}: `{key}`: {reason}")]
    Invalid {
        /// The file, an environment variable, or `dev mode`.
        source_name: String,
        /// The dotted key path.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

impl ConfigError {
    /// A stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Read { .. } => "config_unreadable",
            Self::Parse { .. } => "config_parse",
            Self::Invalid { .. } => "config_invalid",
        }
    }
}

/// The whole configuration.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[server]`.
    #[serde(default)]
    pub server: ServerConfig,
    /// `[store]`.
    #[serde(default)]
    pub store: StoreConfig,
    /// `[[apps]]`: the apps codes are issued for. The first one is the default app.
    #[serde(default)]
    pub apps: Vec<AppConfig>,
    /// `[policy]`: budgets, allow-list, proof of work, test numbers.
    #[serde(default)]
    pub policy: PolicyConfig,
    /// `[gateways]`: the phones and providers that send.
    #[serde(default)]
    pub gateways: GatewaysConfig,
    /// `[audit]`.
    #[serde(default)]
    pub audit: AuditConfig,
    /// `[integrations]`: the Supabase Send SMS hook and the Twilio Verify-compatible API.
    #[serde(default)]
    pub integrations: crate::integrations::IntegrationsConfig,
    /// `[admin]`: the operator console (off unless `listen` is set).
    #[serde(default)]
    pub admin: AdminConfig,
    /// Set when no file was given: dev mode (never set from the file).
    #[serde(skip)]
    pub dev_mode: bool,
    /// The file the configuration came from.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// `[server]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// The address to listen on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The public base URL of the issuer: the receipts' `iss`. Defaults to `http://{listen}`.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Where the embedded store, generated keys and the audit log live.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// Largest request body, bytes (413 above it).
    #[serde(default = "default_body_limit")]
    pub body_limit_bytes: usize,
    /// The proxies whose `X-Forwarded-For` is believed (CIDRs; default none: the header is
    /// ignored). See [`crate::client_addr`].
    #[serde(default)]
    pub trusted_proxies: TrustedProxies,
    /// No longer accepted (it believed the header from anyone): refused, naming
    /// `trusted_proxies`.
    #[serde(default, rename = "trust_forwarded_for")]
    pub removed_trust_forwarded_for: Option<bool>,
    /// A directory served at `/` (the demo page in dev mode).
    #[serde(default)]
    pub static_dir: Option<PathBuf>,
    /// Seconds a request may take before it is answered 408.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: u64,
    /// Seconds in-flight requests get to finish after SIGINT/SIGTERM.
    #[serde(default = "default_grace")]
    pub shutdown_grace_secs: u64,
    /// Run without any gateway device: sends are marked `sent` by a gateway named
    /// `discard` and NOTHING is transmitted (benchmarks, test-number-only deployments).
    /// Without it a configuration with no `[[gateways.devices]]` is refused.
    #[serde(default)]
    pub danger_discard_sends: bool,
    /// `[server.tls]`: serve HTTPS directly.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            public_url: None,
            data_dir: None,
            body_limit_bytes: DEFAULT_BODY_LIMIT,
            trusted_proxies: TrustedProxies::default(),
            removed_trust_forwarded_for: None,
            static_dir: None,
            request_timeout_secs: default_request_timeout(),
            shutdown_grace_secs: default_grace(),
            tls: None,
            danger_discard_sends: false,
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_body_limit() -> usize {
    DEFAULT_BODY_LIMIT
}
fn default_request_timeout() -> u64 {
    30
}
fn default_grace() -> u64 {
    10
}

/// `[server.tls]`: PEM files (the key file is a secret: keep it 0600).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, PEM.
    pub cert: PathBuf,
    /// The private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Which backend keeps the state.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StoreKind {
    /// A crash-safe file in the data dir (one instance).
    #[default]
    Embedded,
    /// Redis, shared by several instances.
    Redis,
    /// In memory: lost on restart (tests and throw-away demos only).
    Memory,
}

/// How the Redis store reaches Redis (`[store] mode`).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StoreMode {
    /// One server: `url`.
    #[default]
    Single,
    /// A Redis Cluster: `urls` are seed nodes.
    Cluster,
    /// A primary watched by Sentinel: `urls` are the sentinels, `service_name` the primary.
    Sentinel,
}

impl StoreMode {
    /// `single`, `cluster` or `sentinel`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Single => "single",
            Self::Cluster => "cluster",
            Self::Sentinel => "sentinel",
        }
    }
}

/// `[store.tls]`: PEM files used by every `rediss://` URL (sentinels included). Without
/// `ca_file` the system's roots are trusted.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreTlsConfig {
    /// The trust anchor (a private CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The client certificate (mutual TLS), with `key_file`.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key (a secret: keep it 0600).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// `[store]`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `embedded`, `redis` or `memory`.
    #[serde(default)]
    pub kind: StoreKind,
    /// The embedded store file (default `DATA_DIR/store.redb`); its write-ahead log
    /// segments (`store.redb.wal-N`) live beside it and belong with it in a backup.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Redis: `single` (default), `cluster` or `sentinel`.
    #[serde(default)]
    pub mode: StoreMode,
    /// Mode `single`: the Redis URL without a password (the password-bearing URL comes
    /// from `OTPGATE_REDIS_URL` or `OTPGATE_REDIS_URL_FILE`).
    #[serde(default)]
    pub url: Option<String>,
    /// Mode `cluster`: seed nodes; mode `sentinel`: the sentinels. No passwords.
    #[serde(default)]
    pub urls: Vec<String>,
    /// Mode `sentinel`: the name the sentinels monitor the primary under.
    #[serde(default)]
    pub service_name: Option<String>,
    /// Writes acknowledged only after `WAIT N` (not built yet: only 0 is accepted).
    #[serde(default)]
    pub wait_replicas: u32,
    /// The `WAIT` timeout, ms (1..=60000).
    #[serde(default = "default_wait_timeout_ms")]
    pub wait_timeout_ms: u64,
    /// `[store.tls]`.
    #[serde(default)]
    pub tls: Option<StoreTlsConfig>,
    /// The prefix of every Redis key (several deployments may share one Redis).
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// The embedded store: `disk` (default) acknowledges a change after the `fdatasync` of
    /// its log batch; `process` after the write, synced within 200 ms (survives a crash or
    /// `kill -9` of otpgate, not a power cut). Redis durability is Redis's own setting.
    #[serde(default)]
    pub durability: Durability,
    /// The data nodes' user: `OTPGATE_REDIS_USERNAME[_FILE]` (never from the file).
    #[serde(skip)]
    pub username: Option<String>,
    /// The data nodes' password: `OTPGATE_REDIS_PASSWORD[_FILE]` (never from the file).
    #[serde(skip)]
    pub password: Option<Secret>,
    /// The sentinels' password: `OTPGATE_REDIS_SENTINEL_PASSWORD[_FILE]`.
    #[serde(skip)]
    pub sentinel_password: Option<Secret>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            kind: StoreKind::Embedded,
            path: None,
            mode: StoreMode::Single,
            url: None,
            urls: Vec::new(),
            service_name: None,
            wait_replicas: 0,
            wait_timeout_ms: default_wait_timeout_ms(),
            tls: None,
            key_prefix: default_key_prefix(),
            durability: Durability::Disk,
            username: None,
            password: None,
            sentinel_password: None,
        }
    }
}

impl fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreConfig")
            .field("kind", &self.kind)
            .field("path", &self.path)
            .field("mode", &self.mode)
            .field("url", &self.url.as_ref().map(|_| "[redacted]"))
            .field("urls", &self.urls.len())
            .field("service_name", &self.service_name)
            .field("wait_replicas", &self.wait_replicas)
            .field("tls", &self.tls)
            .field("key_prefix", &self.key_prefix)
            .field("durability", &self.durability)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("sentinel_password", &self.sentinel_password)
            .finish()
    }
}

fn default_wait_timeout_ms() -> u64 {
    500
}

fn default_key_prefix() -> String {
    "otpgate:".into()
}

/// `[[apps]]`: one site or app codes are issued for.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// The name clients pass as `app` (`[a-z0-9_-]`, 1–32 characters).
    pub name: String,
    /// The origins allowed to call the API from a browser (CORS), e.g.
    /// `https://shop.example.com`. The first one's host goes on the WebOTP line.
    #[serde(default)]
    pub origins: Vec<Origin>,
    /// SMS Retriever hashes (11 characters) of the Android apps that read the SMS.
    #[serde(default)]
    pub android_app_hashes: Vec<String>,
    /// Message templates by locale (`en`, `pt-BR`), with `{code}`, `{app}` placeholders
    /// (checked when read: known placeholders, balanced braces, `{code}` present). The
    /// WebOTP line and the app-hash line are appended by the issuer.
    #[serde(default)]
    pub templates: TemplateSet,
    /// The locale used when the request names none or an unknown one.
    #[serde(default = "default_locale")]
    pub default_locale: String,
    /// The receipts' `aud` (default: the app name).
    #[serde(default)]
    pub audience: Option<String>,
    /// The display name put in the SMS (default: the app name).
    #[serde(default)]
    pub display_name: Option<String>,
    /// `[apps.code]`: length and alphabet of the codes.
    #[serde(default)]
    pub code: CodeSpec,
}

fn default_locale() -> String {
    "en".into()
}

impl AppConfig {
    /// The receipts' audience.
    pub fn audience(&self) -> &str {
        self.audience.as_deref().unwrap_or(&self.name)
    }

    /// The name shown in the SMS.
    pub fn display_name(&self) -> &str {
        self.display_name.as_deref().unwrap_or(&self.name)
    }

    /// The host on the WebOTP line (`@host #code`): the first origin's host.
    pub fn webotp_host(&self) -> Option<String> {
        self.origins.first().map(|o| o.host().to_string())
    }

    /// The SMS text for this app ([`otpgate_core::sms::compose`]): the app's template for the
    /// locale (else the built-in one), the `<#>` marker and app hash when the app has an Android
    /// hash, and the WebOTP line `@host #code` for the app's first origin. Returns the text and
    /// its segment count.
    ///
    /// # Errors
    /// [`ComposeError`] when the app's configuration cannot make a valid one-segment SMS (the
    /// configuration check at start composes a sample for every app and locale, so this is rare).
    pub fn compose_sms(
        &self,
        locale: Option<&str>,
        code: &Code,
    ) -> Result<(String, u32), ComposeError> {
        let host = self.webotp_host();
        let composed = compose(ComposeRequest {
            origin: host.as_deref(),
            app_hash: self.android_app_hashes.first().map(String::as_str),
            locale: Some(locale.unwrap_or(&self.default_locale)),
            templates: Some(&self.templates),
            ..ComposeRequest::new(self.display_name(), code.expose())
        })?;
        Ok((composed.text, composed.segments.segments.max(1)))
    }

    /// The template for `locale` (exact, then the language part, then the default locale),
    /// or `None` when the app has no templates (the built-in one applies).
    pub fn template(&self, locale: Option<&str>) -> Option<&Template> {
        let find = |l: &str| {
            self.templates
                .0
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(l))
                .map(|(_, v)| v)
        };
        locale
            .and_then(|l| find(l).or_else(|| l.split(['-', '_']).next().and_then(find)))
            .or_else(|| find(&self.default_locale))
            .or_else(|| self.templates.0.values().next())
    }
}

/// `[audit]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Write the audit log (on by default).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The log file (default `DATA_DIR/audit.jsonl`).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Days entries are kept before the retention purge.
    #[serde(default = "default_retention")]
    pub retention_days: u32,
    /// `disk` (default): an entry is acknowledged after the `fdatasync` of its batch;
    /// `process`: after the write, synced within 200 ms (survives a crash or `kill -9` of
    /// otpgate, not a power cut).
    #[serde(default)]
    pub durability: Durability,
    /// Where `serve` exports an anchor of the log (line count, head link, key id, time, MAC)
    /// every `anchor_every_secs` and at shutdown: `file:/path` (JSON lines appended and
    /// synced) or `http(s)://...` (each anchor POSTed). Keep it out of reach of whoever could
    /// rewrite the log (another machine, an append-only file); `otpgate audit verify
    /// --anchors` then detects lines cut off the end. None by default.
    #[serde(default)]
    pub anchor: Option<String>,
    /// Seconds between anchors (default 60).
    #[serde(default = "default_anchor_every")]
    pub anchor_every_secs: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            path: None,
            retention_days: default_retention(),
            durability: Durability::Disk,
            anchor: None,
            anchor_every_secs: default_anchor_every(),
        }
    }
}

fn default_anchor_every() -> u64 {
    60
}

fn default_true() -> bool {
    true
}
fn default_retention() -> u32 {
    90
}

/// `[admin]`: the operator console and its JSON API ([`crate::admin`]). Off unless
/// `listen` is set; the token comes from the variable `token_env` names (or the file its
/// `_FILE` variant names), never from this file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// The console's own listener, e.g. `127.0.0.1:9090` (None: no console listener).
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// The environment variable that holds the admin token (default `OTPGATE_ADMIN_TOKEN`;
    /// `{token_env}_FILE` names a file holding it instead).
    #[serde(default = "default_admin_token_env")]
    pub token_env: String,
    /// Hours a console login (session cookie) lasts (default 12, at most 168).
    #[serde(default = "default_admin_session_hours")]
    pub session_hours: u64,
    /// The token, read from the environment when the configuration is loaded.
    #[serde(skip)]
    pub token: Option<Secret>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: None,
            token_env: default_admin_token_env(),
            session_hours: default_admin_session_hours(),
            token: None,
        }
    }
}

fn default_admin_token_env() -> String {
    "OTPGATE_ADMIN_TOKEN".into()
}
fn default_admin_session_hours() -> u64 {
    12
}

/// The shortest admin token accepted, in characters (`openssl rand -hex 32` makes 64).
pub const MIN_ADMIN_TOKEN_LEN: usize = 32;

/// Reads the environment: a seam so tests can pass their own variables.
pub trait Env {
    /// The variable, if set and valid UTF-8.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl Env for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// The command-line overrides.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
}

impl Config {
    /// Loads `path` (or dev mode without one), then applies the environment and the command
    /// line, then validates.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file (or variable), the key and the reason.
    pub fn load(
        path: Option<&Path>,
        overrides: &Overrides,
        env: &dyn Env,
    ) -> Result<Self, ConfigError> {
        let mut cfg = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_path_buf(),
                    source,
                })?;
                let mut cfg = Self::parse(&text, p)?;
                cfg.source = Some(p.to_path_buf());
                if cfg.store.url.as_deref().is_some_and(url_has_password) {
                    return Err(ConfigError::Invalid {
                        source_name: p.display().to_string(),
                        key: "store.url".into(),
                        reason: "secrets do not belong in the file: pass a URL with a password in \
                                 OTPGATE_REDIS_URL or OTPGATE_REDIS_URL_FILE"
                            .into(),
                    });
                }
                if let Some(i) = cfg.store.urls.iter().position(|u| url_has_password(u)) {
                    return Err(ConfigError::Invalid {
                        source_name: p.display().to_string(),
                        key: format!("store.urls[{i}]"),
                        reason: "secrets do not belong in the file: pass the password in \
                                 OTPGATE_REDIS_PASSWORD (data nodes) or \
                                 OTPGATE_REDIS_SENTINEL_PASSWORD (sentinels), or their _FILE \
                                 variants"
                            .into(),
                    });
                }
                cfg
            }
            None => Self::dev(),
        };
        cfg.apply_env(env)?;
        if let Some(l) = overrides.listen {
            cfg.server.listen = l;
        }
        if let Some(d) = &overrides.data_dir {
            cfg.server.data_dir = Some(d.clone());
        }
        if cfg.dev_mode {
            let ip = cfg.server.listen.ip();
            if !ip.is_loopback() {
                return Err(ConfigError::Invalid {
                    source_name: "dev mode (no --config)".into(),
                    key: "--listen".into(),
                    reason: format!(
                        "{ip} is not a loopback address: dev mode shows every code it sends at \
                         /_emulator/messages to anyone who can reach it, so it listens on \
                         loopback only (127.0.0.1 or ::1). To serve other hosts, write a \
                         configuration (examples/otpgate.toml) and pass --config"
                    ),
                });
            }
            cfg.finish_dev();
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses TOML text; `path` only names the file in errors.
    ///
    /// # Errors
    /// [`ConfigError::Parse`] with the key path and the line and column.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let parse_error = |key: String, err: &toml::de::Error| {
            let (line, column) = err
                .span()
                .map(|s| line_col(text, s.start))
                .unwrap_or((0, 0));
            ConfigError::Parse {
                path: path.to_path_buf(),
                key,
                line,
                column,
                reason: err.message().to_owned(),
            }
        };
        let de = toml::Deserializer::parse(text).map_err(|e| parse_error(".".into(), &e))?;
        serde_path_to_error::deserialize::<_, Self>(de).map_err(|e| {
            let key = e.path().to_string();
            parse_error(key, e.inner())
        })
    }

    /// The dev-mode configuration (no file): embedded store in `./otpgate-data`, the
    /// emulated phone, a `demo` app for the listen host, CORS for any localhost port.
    pub fn dev() -> Self {
        Self {
            dev_mode: true,
            ..Self::default()
        }
    }

    /// Completes dev mode once the listen address is known (the demo app and its origins).
    fn finish_dev(&mut self) {
        if self.apps.is_empty() {
            let host = if self.server.listen.ip().is_loopback() {
                "localhost".to_owned()
            } else {
                self.server.listen.ip().to_string()
            };
            let port = self.server.listen.port();
            // Each is an origin by construction (a loopback name or an IP address); an
            // address no origin can name (IPv6) only leaves the wildcards.
            let origins = [
                format!("http://{host}:{port}"),
                "http://localhost:*".into(),
                "http://127.0.0.1:*".into(),
            ]
            .iter()
            .filter_map(|o| Origin::parse(o).ok())
            .collect();
            self.apps.push(AppConfig {
                name: "demo".into(),
                origins,
                android_app_hashes: Vec::new(),
                templates: TemplateSet::default(),
                default_locale: default_locale(),
                audience: None,
                display_name: Some("otpgate demo".into()),
                code: CodeSpec::default(),
            });
        }
        if self.server.static_dir.is_none() && Path::new("www").is_dir() {
            self.server.static_dir = Some(PathBuf::from("www"));
        }
    }

    fn apply_env(&mut self, env: &dyn Env) -> Result<(), ConfigError> {
        let invalid = |var: &str, reason: String| ConfigError::Invalid {
            source_name: format!("environment variable {var}"),
            key: var.to_owned(),
            reason,
        };
        if let Some(v) = env.var("OTPGATE_LISTEN") {
            self.server.listen = v
                .parse()
                .map_err(|_| invalid("OTPGATE_LISTEN", format!("`{v}` is not ADDR:PORT")))?;
        }
        if let Some(v) = env.var("OTPGATE_PUBLIC_URL") {
            self.server.public_url = Some(v);
        }
        if let Some(v) = env.var("OTPGATE_DATA_DIR") {
            self.server.data_dir = Some(PathBuf::from(v));
        }
        if let Some(v) = env.var("OTPGATE_STATIC_DIR") {
            self.server.static_dir = Some(PathBuf::from(v));
        }
        if env.var("OTPGATE_TRUST_FORWARDED_FOR").is_some() {
            return Err(invalid(
                "OTPGATE_TRUST_FORWARDED_FOR",
                format!("no longer accepted: {TRUSTED_PROXIES_HINT}"),
            ));
        }
        if let Some(v) = env.var("OTPGATE_TRUSTED_PROXIES") {
            self.server.trusted_proxies = v
                .parse()
                .map_err(|(i, e)| invalid("OTPGATE_TRUSTED_PROXIES", format!("entry {i}: {e}")))?;
        }
        if let Some(v) = env.var("OTPGATE_STORE") {
            match v.as_str() {
                "embedded" => self.store.kind = StoreKind::Embedded,
                "memory" => self.store.kind = StoreKind::Memory,
                "redis" => self.store.kind = StoreKind::Redis,
                url if url.starts_with("redis://") || url.starts_with("rediss://") => {
                    self.store.kind = StoreKind::Redis;
                    self.store.url = Some(url.to_owned());
                }
                _ => {
                    return Err(invalid(
                        "OTPGATE_STORE",
                        "expected embedded, memory, redis or a redis:// URL".into(),
                    ));
                }
            }
        }
        if let Some(v) = env.var("OTPGATE_STORE_PATH") {
            self.store.path = Some(PathBuf::from(v));
        }
        if let Some(v) = env.var("OTPGATE_REDIS_URL") {
            self.store.url = Some(v);
        } else if let Some(file) = env.var("OTPGATE_REDIS_URL_FILE") {
            let url = std::fs::read_to_string(&file).map_err(|e| {
                invalid("OTPGATE_REDIS_URL_FILE", format!("cannot read {file}: {e}"))
            })?;
            self.store.url = Some(url.trim().to_owned());
        }
        if let Some(v) = env.var("OTPGATE_REDIS_KEY_PREFIX") {
            self.store.key_prefix = v;
        }
        if let Some(v) = env_or_file(env, "OTPGATE_REDIS_USERNAME")? {
            self.store.username = Some(v);
        }
        if let Some(v) = env_or_file(env, "OTPGATE_REDIS_PASSWORD")? {
            self.store.password = Some(Secret::new(v));
        }
        if let Some(v) = env_or_file(env, "OTPGATE_REDIS_SENTINEL_PASSWORD")? {
            self.store.sentinel_password = Some(Secret::new(v));
        }
        let token_env = self.admin.token_env.clone();
        if !token_env.is_empty()
            && token_env
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            if let Some(v) = env_or_file(env, &token_env)? {
                self.admin.token = Some(Secret::new(v));
            }
        }
        Ok(())
    }

    /// The `[admin]` checks: with a listener (or in dev mode, when a token is given) the
    /// token is there and long enough; the variable's name is a name.
    fn validate_admin(
        &self,
        invalid: &dyn Fn(String, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let a = &self.admin;
        if a.token_env.is_empty()
            || !a
                .token_env
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(invalid(
                "admin.token_env".into(),
                "must name an environment variable (letters, digits, `_`)".into(),
            ));
        }
        if a.session_hours == 0 || a.session_hours > 168 {
            return Err(invalid(
                "admin.session_hours".into(),
                "must be 1..=168".into(),
            ));
        }
        if a.listen.is_none() && !self.dev_mode {
            return Ok(());
        }
        match &a.token {
            None if self.dev_mode => Ok(()),
            None => Err(invalid(
                "admin.token_env".into(),
                format!(
                    "[admin] listen is set but neither {0} nor {0}_FILE holds the admin token \
                     (make one with `openssl rand -hex 32`)",
                    a.token_env
                ),
            )),
            Some(t) if t.expose().trim().chars().count() < MIN_ADMIN_TOKEN_LEN => Err(invalid(
                "admin.token_env".into(),
                format!(
                    "the admin token in {} is shorter than {MIN_ADMIN_TOKEN_LEN} characters \
                     (make one with `openssl rand -hex 32`)",
                    a.token_env
                ),
            )),
            Some(_) => Ok(()),
        }
    }

    /// The `[store]` checks: the mode and its keys agree, the URLs are Redis URLs, the TLS
    /// files are readable PEM.
    fn validate_store(
        &self,
        invalid: &dyn Fn(String, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let st = &self.store;
        if st.kind != StoreKind::Redis {
            let redis_only = [
                ("store.mode", st.mode != StoreMode::Single),
                ("store.urls", !st.urls.is_empty()),
                ("store.service_name", st.service_name.is_some()),
                ("store.tls", st.tls.is_some()),
                ("store.wait_replicas", st.wait_replicas != 0),
            ];
            if let Some((key, _)) = redis_only.iter().find(|(_, set)| *set) {
                return Err(invalid(
                    (*key).into(),
                    "applies to kind = \"redis\" only".into(),
                ));
            }
            return Ok(());
        }
        let url_source = "store.url (or OTPGATE_REDIS_URL[_FILE], OTPGATE_STORE)";
        match st.mode {
            StoreMode::Single => {
                if !st.urls.is_empty() {
                    return Err(invalid(
                        "store.urls".into(),
                        "mode = \"single\" takes one `url`; `urls` is for mode = \"cluster\" \
                         (seed nodes) or \"sentinel\" (the sentinels)"
                            .into(),
                    ));
                }
                if st.url.is_none() {
                    return Err(invalid(
                        "store.url".into(),
                        "the redis store needs a URL (store.url, OTPGATE_STORE or \
                         OTPGATE_REDIS_URL)"
                            .into(),
                    ));
                }
            }
            StoreMode::Cluster | StoreMode::Sentinel => {
                let mode = st.mode.as_str();
                if st.url.is_some() {
                    return Err(invalid(
                        "store.url".into(),
                        format!(
                            "mode = \"{mode}\" takes its nodes from `urls`; {url_source} is \
                             for mode = \"single\""
                        ),
                    ));
                }
                if st.urls.is_empty() {
                    let what = if st.mode == StoreMode::Cluster {
                        "seed nodes of the cluster"
                    } else {
                        "sentinels"
                    };
                    return Err(invalid(
                        "store.urls".into(),
                        format!("mode = \"{mode}\" needs the {what} in `urls`"),
                    ));
                }
            }
        }
        match (st.mode, &st.service_name) {
            (StoreMode::Sentinel, None) => {
                return Err(invalid(
                    "store.service_name".into(),
                    "mode = \"sentinel\" needs the name the sentinels monitor the primary \
                     under (e.g. \"mymaster\")"
                        .into(),
                ));
            }
            (StoreMode::Sentinel, Some(n)) if n.is_empty() || n.contains(char::is_whitespace) => {
                return Err(invalid(
                    "store.service_name".into(),
                    "must be a non-empty name without spaces".into(),
                ));
            }
            (StoreMode::Single | StoreMode::Cluster, Some(_)) => {
                return Err(invalid(
                    "store.service_name".into(),
                    "is for mode = \"sentinel\" only".into(),
                ));
            }
            _ => {}
        }
        let all: Vec<(String, &String)> = match &st.url {
            Some(u) => vec![("store.url".to_owned(), u)],
            None => st
                .urls
                .iter()
                .enumerate()
                .map(|(i, u)| (format!("store.urls[{i}]"), u))
                .collect(),
        };
        for (key, u) in &all {
            if !(u.starts_with("redis://") || u.starts_with("rediss://")) {
                return Err(invalid(
                    key.clone(),
                    "must start with redis:// or rediss://".into(),
                ));
            }
        }
        let tls_urls = all
            .iter()
            .filter(|(_, u)| u.starts_with("rediss://"))
            .count();
        if tls_urls != 0 && tls_urls != all.len() {
            return Err(invalid(
                "store.urls".into(),
                "mixes redis:// and rediss://: use one scheme for every node".into(),
            ));
        }
        if st.wait_replicas > 0 {
            return Err(invalid(
                "store.wait_replicas".into(),
                "not built yet: acknowledging writes after WAIT comes with a later part of \
                 issue 15; set 0 (replication stays asynchronous: a failover may lose the \
                 last writes, see SECURITY.md)"
                    .into(),
            ));
        }
        if st.wait_timeout_ms == 0 || st.wait_timeout_ms > 60_000 {
            return Err(invalid(
                "store.wait_timeout_ms".into(),
                "must be 1..=60000".into(),
            ));
        }
        if let Some(tls) = &st.tls {
            if tls_urls == 0 {
                return Err(invalid(
                    "store.tls".into(),
                    "is used by rediss:// URLs only, and no URL is rediss://".into(),
                ));
            }
            if let Some(ca) = &tls.ca_file {
                let certs = read_pem_certs(ca)
                    .map_err(|reason| invalid("store.tls.ca_file".into(), reason))?;
                if certs == 0 {
                    return Err(invalid(
                        "store.tls.ca_file".into(),
                        format!("{}: no certificate in it", ca.display()),
                    ));
                }
            }
            match (&tls.cert_file, &tls.key_file) {
                (Some(cert), Some(key)) => {
                    let certs = read_pem_certs(cert)
                        .map_err(|reason| invalid("store.tls.cert_file".into(), reason))?;
                    if certs == 0 {
                        return Err(invalid(
                            "store.tls.cert_file".into(),
                            format!("{}: no certificate in it", cert.display()),
                        ));
                    }
                    use rustls_pki_types::pem::PemObject as _;
                    rustls_pki_types::PrivateKeyDer::from_pem_file(key).map_err(|e| {
                        invalid(
                            "store.tls.key_file".into(),
                            format!("{}: not a readable PEM private key ({e})", key.display()),
                        )
                    })?;
                }
                (Some(_), None) => {
                    return Err(invalid(
                        "store.tls.key_file".into(),
                        "cert_file needs its key_file".into(),
                    ));
                }
                (None, Some(_)) => {
                    return Err(invalid(
                        "store.tls.cert_file".into(),
                        "key_file needs its cert_file".into(),
                    ));
                }
                (None, None) => {}
            }
        }
        Ok(())
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.server
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
    }

    /// The public URL without a trailing slash (receipts' `iss`).
    pub fn public_url(&self) -> String {
        match &self.server.public_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => {
                let scheme = if self.server.tls.is_some() {
                    "https"
                } else {
                    "http"
                };
                format!("{scheme}://{}", self.server.listen)
            }
        }
    }

    /// The embedded store file.
    pub fn store_path(&self) -> PathBuf {
        self.store
            .path
            .clone()
            .unwrap_or_else(|| self.data_dir().join("store.redb"))
    }

    /// The audit log file.
    pub fn audit_path(&self) -> PathBuf {
        self.audit
            .path
            .clone()
            .unwrap_or_else(|| self.data_dir().join("audit.jsonl"))
    }

    /// The app named `name`, or the default (first) app for `None`.
    pub fn app(&self, name: Option<&str>) -> Option<&AppConfig> {
        match name {
            None => self.apps.first(),
            Some(n) => self.apps.iter().find(|a| a.name == n),
        }
    }

    /// Every origin CORS accepts (dev-mode wildcards included).
    pub fn cors_origins(&self) -> Vec<Origin> {
        self.apps
            .iter()
            .flat_map(|a| a.origins.iter().cloned())
            .collect()
    }

    /// Checks the values that parsed but may still be wrong.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let source_name = match &self.source {
            Some(p) => p.display().to_string(),
            None => "dev mode".to_owned(),
        };
        let invalid = |key: String, reason: String| ConfigError::Invalid {
            source_name: source_name.clone(),
            key,
            reason,
        };
        self.validate_admin(&invalid)?;
        let s = &self.server;
        if s.removed_trust_forwarded_for.is_some() {
            return Err(invalid(
                "server.trust_forwarded_for".into(),
                format!("no longer accepted: {TRUSTED_PROXIES_HINT}"),
            ));
        }
        if s.body_limit_bytes < 256 || s.body_limit_bytes > MAX_BODY_LIMIT {
            return Err(invalid(
                "server.body_limit_bytes".into(),
                format!("must be 256..={MAX_BODY_LIMIT}"),
            ));
        }
        if s.request_timeout_secs == 0 || s.request_timeout_secs > 300 {
            return Err(invalid(
                "server.request_timeout_secs".into(),
                "must be 1..=300".into(),
            ));
        }
        if s.shutdown_grace_secs > 600 {
            return Err(invalid(
                "server.shutdown_grace_secs".into(),
                "must be at most 600".into(),
            ));
        }
        if let Some(u) = &s.public_url {
            let o = u.trim_end_matches('/');
            let host_part = o.split_once("://").map(|(_, r)| r).unwrap_or("");
            if !(o.starts_with("http://") || o.starts_with("https://"))
                || host_part.is_empty()
                || host_part.contains(['@', '?', '#', ' '])
            {
                return Err(invalid(
                    "server.public_url".into(),
                    "must be an http(s):// URL without user info".into(),
                ));
            }
        }
        self.validate_store(&invalid)?;
        if self.store.key_prefix.len() > 64 || self.store.key_prefix.contains(['{', '}', ' ']) {
            return Err(invalid(
                "store.key_prefix".into(),
                "at most 64 characters, no braces or spaces".into(),
            ));
        }
        if self.apps.is_empty() {
            return Err(invalid(
                "apps".into(),
                "at least one [[apps]] entry is needed".into(),
            ));
        }
        for (i, app) in self.apps.iter().enumerate() {
            let key = |k: &str| format!("apps[{i}].{k}");
            if app.name.is_empty()
                || app.name.len() > 32
                || !app
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            {
                return Err(invalid(
                    key("name"),
                    "1-32 characters among a-z 0-9 - _".into(),
                ));
            }
            if self.apps[..i].iter().any(|a| a.name == app.name) {
                return Err(invalid(
                    key("name"),
                    format!("duplicate app name `{}`", app.name),
                ));
            }
            for (j, o) in app.origins.iter().enumerate() {
                if o.any_port() && !self.dev_mode {
                    return Err(invalid(
                        format!("apps[{i}].origins[{j}]"),
                        "a wildcard port is for dev mode only".into(),
                    ));
                }
            }
            for (j, h) in app.android_app_hashes.iter().enumerate() {
                if h.len() != 11
                    || !h
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
                {
                    return Err(invalid(
                        format!("apps[{i}].android_app_hashes[{j}]"),
                        "an SMS Retriever hash is 11 base64 characters".into(),
                    ));
                }
            }
            // Compose a sample SMS for every locale the app has: a template that cannot make
            // a valid one-segment message stops the server now, not at the first send.
            let sample = Code::new("7".repeat(app.code.length()));
            let locales: Vec<Option<&str>> = std::iter::once(None)
                .chain(app.templates.0.keys().map(|k| Some(k.as_str())))
                .collect();
            for locale in locales {
                if let Err(e) = app.compose_sms(locale, &sample) {
                    let k = match locale {
                        Some(l) => format!("apps[{i}].templates.{l}"),
                        None => format!("apps[{i}]"),
                    };
                    return Err(invalid(k, format!("cannot compose a valid SMS: {e}")));
                }
            }
            if let Some(aud) = &app.audience
                && (aud.is_empty() || aud.len() > 256)
            {
                return Err(invalid(key("audience"), "1-256 characters".into()));
            }
        }
        for (i, entry) in self.policy.api_keys.iter().enumerate() {
            if is_placeholder_api_key(entry) {
                return Err(invalid(
                    format!("policy.api_keys[{i}]"),
                    "this is a documented placeholder key, known to everyone: make a key of \
                     your own with `otpgate keys api-key` and put the sha256: entry it prints here"
                        .into(),
                ));
            }
        }
        self.policy.validate().map_err(|r| {
            let (k, reason) = r
                .split_once(": ")
                .map(|(k, r)| (k.to_owned(), r.to_owned()))
                .unwrap_or(("".into(), r));
            invalid(
                format!("policy.{k}").trim_end_matches('.').to_owned(),
                reason,
            )
        })?;
        let app_names: Vec<&str> = self.apps.iter().map(|a| a.name.as_str()).collect();
        self.integrations
            .validate(&app_names)
            .map_err(|(k, reason)| invalid(format!("integrations.{k}"), reason))?;
        if let Some(a) = &self.audit.anchor {
            crate::audit::AnchorSink::parse(a).map_err(|r| invalid("audit.anchor".into(), r))?;
        }
        if self.audit.anchor_every_secs == 0 || self.audit.anchor_every_secs > 86_400 {
            return Err(invalid(
                "audit.anchor_every_secs".into(),
                "1 to 86400 seconds".into(),
            ));
        }
        if self.audit.retention_days == 0 {
            return Err(invalid(
                "audit.retention_days".into(),
                "must be at least 1".into(),
            ));
        }
        if !self.dev_mode && self.gateways.is_empty() && !self.server.danger_discard_sends {
            return Err(invalid(
                "gateways.devices".into(),
                "no gateway device configured: add [[gateways.devices]] (or, to run without \
                 sending anything, set server.danger_discard_sends = true)"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// API keys printed in documentation or earlier sample configurations: anyone may know them.
const PLACEHOLDER_API_KEYS: &[&str] = &["replace-me-with-a-long-random-key"];

/// Whether an `api_keys` entry names a [`PLACEHOLDER_API_KEYS`] key: its digest, or a
/// variable or file holding it (an entry that cannot be read is left to the policy's check).
fn is_placeholder_api_key(entry: &str) -> bool {
    use sha2::Digest as _;
    let digest = |key: &str| hex::encode(sha2::Sha256::digest(key.trim().as_bytes()));
    let placeholders = || PLACEHOLDER_API_KEYS.iter().map(|k| digest(k));
    if let Some(h) = entry.strip_prefix("sha256:") {
        let h = h.trim().to_ascii_lowercase();
        return placeholders().any(|p| p == h);
    }
    let value = if let Some(var) = entry.strip_prefix("env:") {
        std::env::var(var).ok().map(zeroize::Zeroizing::new)
    } else if let Some(path) = entry.strip_prefix("file:") {
        std::fs::read_to_string(path)
            .ok()
            .map(zeroize::Zeroizing::new)
    } else {
        None
    };
    value.is_some_and(|v| placeholders().any(|p| p == digest(&v)))
}

/// `NAME` or the contents of the file named by `NAME_FILE` (a trailing newline dropped).
pub(crate) fn env_or_file(env: &dyn Env, name: &str) -> Result<Option<String>, ConfigError> {
    if let Some(v) = env.var(name) {
        return Ok(Some(v));
    }
    let file_var = format!("{name}_FILE");
    let Some(file) = env.var(&file_var) else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(&file).map_err(|e| ConfigError::Invalid {
        source_name: format!("environment variable {file_var}"),
        key: file_var.clone(),
        reason: format!("cannot read {file}: {e}"),
    })?;
    Ok(Some(text.trim_end_matches(['\r', '\n']).to_owned()))
}

/// How many PEM certificates `path` holds; the reason (with the path) when unreadable.
fn read_pem_certs(path: &Path) -> Result<usize, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;
    let iter = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: cannot read ({e})", path.display()))?;
    let certs = iter
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not PEM certificates ({e})", path.display()))?;
    Ok(certs.len())
}

/// Whether a URL carries a password (`scheme://user:pass@host`).
fn url_has_password(url: &str) -> bool {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or(rest);
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("otpgate.toml"))
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    const MINIMAL: &str = r#"
[server]
listen = "127.0.0.1:9000"
public_url = "https://otp.example.com/"
danger_discard_sends = true

[[apps]]
name = "shop"
origins = ["https://shop.example.com"]
android_app_hashes = ["FA+9qCX9VSu"]
templates = { en = "{code} is your {app} code", pt-BR = "{code} é o seu codigo {app}" }
code = { length = 8, alphabet = "alphanumeric" }
"#;

    #[test]
    fn a_config_without_gateways_must_opt_in_to_discarding_sends() {
        let without = MINIMAL.replace("danger_discard_sends = true\n", "");
        let err = parse(&without)
            .expect("parses")
            .validate()
            .expect_err("no device and no opt-in");
        assert!(err.to_string().contains("gateways.devices"), "{err}");
        assert!(err.to_string().contains("danger_discard_sends"), "{err}");
    }

    #[test]
    fn a_full_file_parses_and_validates() {
        let cfg = parse(MINIMAL).expect("parses");
        cfg.validate().expect("valid");
        assert_eq!(cfg.public_url(), "https://otp.example.com");
        let app = cfg.app(None).expect("default app");
        assert_eq!(app.name, "shop");
        assert_eq!(app.audience(), "shop");
        assert_eq!(app.webotp_host().as_deref(), Some("shop.example.com"));
        assert_eq!(app.code.length(), 8);
        assert_eq!(
            app.template(Some("pt-BR")).map(Template::as_str),
            Some("{code} é o seu codigo {app}")
        );
        assert_eq!(
            app.template(Some("en-GB")).map(Template::as_str),
            Some("{code} is your {app} code")
        );
        assert_eq!(
            app.template(Some("de")).map(Template::as_str),
            Some("{code} is your {app} code")
        );
        assert!(cfg.app(Some("nope")).is_none());
    }

    #[test]
    fn unknown_keys_name_file_key_and_line() {
        let err = parse("[server]\nlisten = \"127.0.0.1:1\"\nlisten_port = 3\n")
            .expect_err("unknown key");
        let msg = err.to_string();
        assert!(msg.starts_with("otpgate.toml:3:"), "{msg}");
        assert!(msg.contains("listen_port"), "{msg}");
        let err = parse("[[apps]]\nname = \"a\"\norigin = [\"https://a.com\"]\n")
            .expect_err("unknown key");
        assert!(err.to_string().contains("origin"), "{err}");
        let err = parse("[server]\nbody_limit_bytes = \"big\"\n").expect_err("wrong type");
        let msg = err.to_string();
        assert!(msg.contains("server.body_limit_bytes"), "{msg}");
        let err = parse("[server\n").expect_err("bad toml");
        assert_eq!(err.code(), "config_parse");
        let err = parse("[store]\ndurability = \"fast\"\n").expect_err("unknown level");
        let msg = err.to_string();
        assert!(msg.contains("store.durability"), "{msg}");
        assert!(msg.contains("disk") && msg.contains("process"), "{msg}");
    }

    #[test]
    fn durability_is_disk_unless_asked() {
        let cfg = parse(MINIMAL).expect("parses");
        assert_eq!(cfg.store.durability, Durability::Disk);
        assert_eq!(cfg.audit.durability, Durability::Disk);
        let cfg = parse(&format!(
            "{MINIMAL}\n[store]\ndurability = \"process\"\n[audit]\ndurability = \"process\"\n"
        ))
        .expect("parses");
        cfg.validate().expect("valid");
        assert_eq!(cfg.store.durability, Durability::Process);
        assert_eq!(cfg.audit.durability, Durability::Process);
    }

    #[test]
    fn the_audit_anchor_sink_is_checked() {
        let cfg = parse(MINIMAL).expect("parses");
        assert_eq!(cfg.audit.anchor, None);
        assert_eq!(cfg.audit.anchor_every_secs, 60);
        for ok in [
            "file:/var/lib/anchors.jsonl",
            "https://collector.example/otpgate",
        ] {
            let cfg = parse(&format!("{MINIMAL}\n[audit]\nanchor = \"{ok}\"\n")).expect("parses");
            cfg.validate().expect(ok);
        }
        for (bad, key) in [
            ("anchor = \"ftp://x\"", "audit.anchor"),
            ("anchor = \"file:\"", "audit.anchor"),
            ("anchor_every_secs = 0", "audit.anchor_every_secs"),
        ] {
            let cfg = parse(&format!("{MINIMAL}\n[audit]\n{bad}\n")).expect("parses");
            let err = cfg.validate().expect_err(bad).to_string();
            assert!(err.contains(key), "{bad}: {err}");
        }
    }

    #[test]
    fn invalid_values_are_refused_with_their_key() {
        // A value its type refuses fails as the file is read, the rest when it is checked:
        // both name the key.
        let with = |extra: &str| {
            let err = match parse(&format!("{MINIMAL}{extra}")) {
                Err(e) => e,
                Ok(mut c) => {
                    c.source = Some("f.toml".into());
                    c.validate().expect_err("invalid")
                }
            };
            err.to_string()
        };
        assert!(with("[[apps]]\nname = \"shop\"\n").contains("apps[1].name"));
        assert!(with("[[apps]]\nname = \"Bad Name\"\n").contains("apps[1].name"));
        assert!(
            with("[[apps]]\nname = \"b\"\norigins = [\"shop.example.com\"]\n")
                .contains("apps[1].origins[0]")
        );
        assert!(
            with("[[apps]]\nname = \"b\"\norigins = [\"http://localhost:*\"]\n")
                .contains("dev mode only")
        );
        assert!(
            with("[[apps]]\nname = \"b\"\nandroid_app_hashes = [\"short\"]\n")
                .contains("android_app_hashes[0]")
        );
        assert!(
            with("[[apps]]\nname = \"b\"\ntemplates = { en = \"no code here\" }\n")
                .contains("templates.en")
        );
        let short = with("[[apps]]\nname = \"b\"\ncode = { length = 3 }\n");
        assert!(
            short.contains("apps[1].code") && short.contains("between 4 and 10"),
            "{short}"
        );
        let origin = with("[[apps]]\nname = \"b\"\norigins = [\"https://-bad.example\"]\n");
        assert!(
            origin.contains("apps[1].origins[0]") && origin.contains("bad host"),
            "{origin}"
        );
        let mut c = parse(MINIMAL).expect("parses");
        c.server.body_limit_bytes = 10 * MAX_BODY_LIMIT;
        assert!(
            c.validate()
                .expect_err("too big")
                .to_string()
                .contains("server.body_limit_bytes")
        );
    }

    #[test]
    fn a_redis_url_with_a_password_is_refused_in_the_file_but_accepted_from_env() {
        let text = format!(
            "{MINIMAL}\n[store]\nkind = \"redis\"\nurl = \"redis://:hunter2@127.0.0.1/\"\n"
        );
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, &text).expect("write");
        let err = Config::load(Some(&path), &Overrides::default(), &env(&[]))
            .expect_err("secret in file");
        let msg = err.to_string();
        assert!(
            msg.contains("store.url") && !msg.contains("hunter2"),
            "{msg}"
        );
        let text = format!("{MINIMAL}\n[store]\nkind = \"redis\"\n");
        std::fs::write(&path, &text).expect("write");
        let cfg = Config::load(
            Some(&path),
            &Overrides::default(),
            &env(&[("OTPGATE_REDIS_URL", "redis://:pw@127.0.0.1:6379/")]),
        )
        .expect("url from env");
        assert_eq!(cfg.store.kind, StoreKind::Redis);
        assert!(!format!("{:?}", cfg.store).contains("pw@"));
    }

    #[test]
    fn environment_and_command_line_override_the_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, MINIMAL).expect("write");
        let e = env(&[
            ("OTPGATE_LISTEN", "127.0.0.1:7000"),
            ("OTPGATE_PUBLIC_URL", "https://issuer.example"),
            ("OTPGATE_STORE", "redis://127.0.0.1:6379/"),
            ("OTPGATE_DATA_DIR", "/var/lib/otpgate"),
        ]);
        let cfg = Config::load(Some(&path), &Overrides::default(), &e).expect("loads");
        assert_eq!(cfg.server.listen.port(), 7000);
        assert_eq!(cfg.public_url(), "https://issuer.example");
        assert_eq!(cfg.store.kind, StoreKind::Redis);
        assert_eq!(cfg.data_dir(), PathBuf::from("/var/lib/otpgate"));
        let o = Overrides {
            listen: Some("127.0.0.1:7100".parse().expect("addr")),
            data_dir: None,
        };
        let cfg = Config::load(Some(&path), &o, &e).expect("loads");
        assert_eq!(cfg.server.listen.port(), 7100);
        let bad = env(&[("OTPGATE_LISTEN", "nope")]);
        let err = Config::load(Some(&path), &Overrides::default(), &bad).expect_err("bad env");
        assert!(err.to_string().contains("OTPGATE_LISTEN"));
        let err = Config::load(
            Some(&path),
            &Overrides::default(),
            &env(&[("OTPGATE_STORE", "mysql://x")]),
        )
        .expect_err("bad store");
        assert!(err.to_string().contains("OTPGATE_STORE"));
    }

    #[test]
    fn dev_mode_has_a_demo_app_for_localhost() {
        let cfg = Config::load(None, &Overrides::default(), &env(&[])).expect("dev");
        assert!(cfg.dev_mode);
        assert_eq!(cfg.server.listen.to_string(), DEFAULT_LISTEN);
        let app = cfg.app(None).expect("demo");
        assert_eq!(app.name, "demo");
        assert_eq!(app.webotp_host().as_deref(), Some("localhost"));
        // The page the README and the start log tell people to open is the origin the SMS
        // binds its code to, so WebOTP can match them.
        assert_eq!(
            app.origins.first().map(ToString::to_string).as_deref(),
            Some("http://localhost:8080")
        );
        let readme = include_str!("../../../README.md");
        assert!(
            readme
                .lines()
                .take(6)
                .any(|l| l.contains("http://localhost:8080/"))
        );
        let origins = cfg.cors_origins();
        assert!(origins.iter().any(|o| o.matches("http://localhost:5173")));
        assert!(origins.iter().any(|o| o.matches("http://127.0.0.1:3000")));
        assert!(!origins.iter().any(|o| o.matches("https://evil.example")));
        assert!(
            !origins
                .iter()
                .any(|o| o.matches("http://localhost.evil.example:80"))
        );
    }

    #[test]
    fn trusted_proxies_replace_trust_forwarded_for() {
        let cfg = parse(&MINIMAL.replace(
            "[server]\n",
            "[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"::1/128\"]\n",
        ))
        .expect("parses");
        cfg.validate().expect("valid");
        assert!(
            cfg.server
                .trusted_proxies
                .trusts("10.1.2.3".parse().expect("ip"))
        );
        assert!(
            parse(MINIMAL)
                .expect("parses")
                .server
                .trusted_proxies
                .is_empty()
        );
        // The removed key parses (to be named) and is refused with its replacement.
        let old = parse(&MINIMAL.replace("[server]\n", "[server]\ntrust_forwarded_for = false\n"))
            .expect("parses");
        let err = old.validate().expect_err("removed key").to_string();
        assert!(
            err.contains("server.trust_forwarded_for") && err.contains("trusted_proxies"),
            "{err}"
        );
        let err = parse(&MINIMAL.replace(
            "[server]\n",
            "[server]\ntrusted_proxies = [\"10.0.0.1/8\"]\n",
        ))
        .expect_err("host bits")
        .to_string();
        assert!(
            err.contains("server.trusted_proxies") && err.contains("10.0.0.0/8"),
            "{err}"
        );
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, MINIMAL).expect("write");
        let err = Config::load(
            Some(&path),
            &Overrides::default(),
            &env(&[("OTPGATE_TRUST_FORWARDED_FOR", "true")]),
        )
        .expect_err("removed variable")
        .to_string();
        assert!(
            err.contains("OTPGATE_TRUST_FORWARDED_FOR") && err.contains("trusted_proxies"),
            "{err}"
        );
        let cfg = Config::load(
            Some(&path),
            &Overrides::default(),
            &env(&[("OTPGATE_TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.1")]),
        )
        .expect("from the environment");
        assert!(
            cfg.server
                .trusted_proxies
                .trusts("192.0.2.1".parse().expect("ip"))
        );
        let err = Config::load(
            Some(&path),
            &Overrides::default(),
            &env(&[("OTPGATE_TRUSTED_PROXIES", "10.0.0.0/8,nope")]),
        )
        .expect_err("bad entry")
        .to_string();
        assert!(
            err.contains("OTPGATE_TRUSTED_PROXIES") && err.contains("nope"),
            "{err}"
        );
    }

    #[test]
    fn a_placeholder_api_key_is_refused() {
        let placeholder = "sha256:e4b2e21b07f27a372f479365f2a01cda534f67efebea5fda9662682f8b96f4bd";
        let with = |entry: &str| {
            parse(&format!("{MINIMAL}\n[policy]\napi_keys = [\"{entry}\"]\n"))
                .expect("parses")
                .validate()
        };
        let err = with(placeholder).expect_err("placeholder").to_string();
        assert!(
            err.contains("policy.api_keys[0]") && err.contains("otpgate keys api-key"),
            "{err}"
        );
        assert!(with(&placeholder.to_ascii_uppercase().replace("SHA256", "sha256")).is_err());
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("key");
        std::fs::write(&file, "replace-me-with-a-long-random-key\n").expect("write");
        assert!(with(&format!("file:{}", file.display())).is_err());
        std::fs::write(&file, "a-key-of-my-own-0123456789").expect("write");
        with(&format!("file:{}", file.display())).expect("a real key");
        with("sha256:0000000000000000000000000000000000000000000000000000000000000000")
            .expect("another digest");
    }

    #[test]
    fn dev_mode_listens_on_loopback_only() {
        for ok in ["127.0.0.1:8080", "127.0.0.2:0", "[::1]:8080"] {
            let o = Overrides {
                listen: Some(ok.parse().expect("addr")),
                data_dir: None,
            };
            Config::load(None, &o, &env(&[])).expect(ok);
        }
        for bad in ["0.0.0.0:8080", "192.168.1.5:8080", "[::]:8080"] {
            let o = Overrides {
                listen: Some(bad.parse().expect("addr")),
                data_dir: None,
            };
            let err = Config::load(None, &o, &env(&[]))
                .expect_err(bad)
                .to_string();
            assert!(
                err.contains("loopback") && err.contains("--config"),
                "{err}"
            );
        }
        let err = Config::load(
            None,
            &Overrides::default(),
            &env(&[("OTPGATE_LISTEN", "0.0.0.0:80")]),
        )
        .expect_err("env")
        .to_string();
        assert!(err.contains("loopback"), "{err}");
    }

    #[test]
    fn the_integrations_contract_parses_and_is_checked() {
        // The configuration of issue 19, exactly.
        let section = r#"
[integrations.supabase]
app = "shop"                                     # template, origin and app hash used
secrets_env = "OTPGATE_SUPABASE_HOOK_SECRETS"    # "v1,whsec_<base64>", several joined by "|"

[integrations.twilio_verify]
account_sid = "AC00000000000000000000000000000000"
auth_token_env = "OTPGATE_TWILIO_AUTH_TOKEN"     # HTTP Basic: account_sid / auth token
[[integrations.twilio_verify.services]]
sid = "VA00000000000000000000000000000000"
app = "shop"
"#;
        let cfg = parse(&format!("{MINIMAL}\n{section}")).expect("parses");
        cfg.validate().expect("valid");
        let tw = cfg.integrations.twilio_verify.as_ref().expect("twilio");
        assert_eq!(tw.services[0].app, "shop");
        let unknown_app = section.replace(
            "app = \"shop\"                                     #",
            "app = \"nope\" #",
        );
        let err = parse(&format!("{MINIMAL}\n{unknown_app}"))
            .and_then(|c| c.validate().map(|()| c))
            .expect_err("unknown app")
            .to_string();
        assert!(err.contains("integrations.supabase.app"), "{err}");
        let typo = parse(&format!(
            "{MINIMAL}\n[integrations.supabase]\napp = \"shop\"\nsecret = \"x\"\n"
        ))
        .expect_err("unknown key")
        .to_string();
        assert!(typo.contains("secret"), "{typo}");
    }

    #[test]
    fn the_sample_config_parses_and_validates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/otpgate.toml");
        let cfg = Config::load(Some(&path), &Overrides::default(), &env(&[]))
            .expect("the sample is valid");
        assert_eq!(cfg.apps.len(), 2);
        assert_eq!(cfg.app(Some("bank")).map(|a| a.code.length()), Some(8));
        assert_eq!(cfg.public_url(), "https://otp.example.com");
        // Nothing usable ships in the sample: no API key, no test number, no trusted proxy.
        assert!(cfg.policy.api_keys.is_empty());
        assert!(cfg.policy.test_numbers.is_empty());
        assert!(cfg.server.trusted_proxies.is_empty());
    }

    #[test]
    fn origins_match_exactly() {
        let o = Origin::parse("https://Shop.example.com").expect("origin");
        assert!(o.matches("https://shop.example.com"));
        assert!(o.matches("https://shop.example.com:443"));
        assert!(!o.matches("http://shop.example.com"));
        assert!(!o.matches("https://shop.example.com.evil.com"));
        assert!(!o.matches("https://shop.example.com:8443"));
        assert!(!o.matches("null"));
        for bad in [
            "ftp://a.com",
            "https://a.com/path",
            "https://u@a.com",
            "https://",
            "https://a..com",
            "https://a.com:99999",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad}");
        }
    }

    /// Loads `[store]` text after MINIMAL from a file, with `vars` as the environment.
    fn load_store(store: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            format!("{MINIMAL}\n[store]\nkind = \"redis\"\n{store}"),
        )
        .expect("write");
        Config::load(Some(&path), &Overrides::default(), &env(vars))
    }

    fn refused(store: &str, vars: &[(&str, &str)], key: &str, reason: &str) -> String {
        let err = load_store(store, vars).expect_err(store);
        let msg = err.to_string();
        assert!(
            msg.contains("c.toml") && msg.contains(&format!("`{key}`")) && msg.contains(reason),
            "{store}: {msg}"
        );
        msg
    }

    #[test]
    fn redis_modes_take_their_own_keys() {
        let cluster =
            "mode = \"cluster\"\nurls = [\"redis://10.0.0.5:7000\", \"redis://10.0.0.6:7001\"]\n";
        let cfg = load_store(cluster, &[]).expect("cluster");
        assert_eq!(cfg.store.mode, StoreMode::Cluster);
        assert_eq!(cfg.store.urls.len(), 2);
        let sentinel = "mode = \"sentinel\"\nurls = [\"redis://10.0.0.5:26379\"]\nservice_name = \"mymaster\"\n";
        let cfg = load_store(sentinel, &[]).expect("sentinel");
        assert_eq!(cfg.store.service_name.as_deref(), Some("mymaster"));
        let cfg = load_store("url = \"redis://10.0.0.5:6379/0\"\n", &[]).expect("single");
        assert_eq!(cfg.store.mode, StoreMode::Single);

        refused(
            &format!("{cluster}url = \"redis://10.0.0.5:6379\"\n"),
            &[],
            "store.url",
            "mode = \"cluster\" takes its nodes from `urls`",
        );
        // The URL of the environment counts too.
        refused(
            cluster,
            &[("OTPGATE_REDIS_URL", "redis://:pw@10.0.0.5/")],
            "store.url",
            "is for mode = \"single\"",
        );
        refused("mode = \"cluster\"\n", &[], "store.urls", "seed nodes");
        refused(
            "mode = \"sentinel\"\nurls = [\"redis://10.0.0.5:26379\"]\n",
            &[],
            "store.service_name",
            "needs the name",
        );
        refused(
            "url = \"redis://a:1\"\nurls = [\"redis://b:2\"]\n",
            &[],
            "store.urls",
            "takes one `url`",
        );
        refused(
            &format!("{cluster}service_name = \"m\"\n"),
            &[],
            "store.service_name",
            "sentinel",
        );
        refused(
            "mode = \"cluster\"\nurls = [\"redis://a:1\", \"rediss://b:2\"]\n",
            &[],
            "store.urls",
            "one scheme",
        );
        refused(
            "mode = \"cluster\"\nurls = [\"http://a:1\"]\n",
            &[],
            "store.urls[0]",
            "redis://",
        );
        refused(
            &format!("{cluster}wait_replicas = 1\n"),
            &[],
            "store.wait_replicas",
            "not built yet",
        );
        refused("mode = \"ring\"\n", &[], "store.mode", "unknown variant");
        let err = Config::parse(
            &format!("{MINIMAL}\n[store]\nmode = \"cluster\"\n"),
            Path::new("c.toml"),
        )
        .and_then(|mut c| {
            c.source = Some("c.toml".into());
            c.validate().map(|()| c)
        })
        .expect_err("mode without redis");
        assert!(err.to_string().contains("`store.mode`"), "{err}");
    }

    #[test]
    fn redis_passwords_come_from_the_environment_and_never_show() {
        let msg = refused(
            "mode = \"sentinel\"\nurls = [\"redis://:hunter2@10.0.0.5:26379\"]\nservice_name = \"m\"\n",
            &[],
            "store.urls[0]",
            "OTPGATE_REDIS_SENTINEL_PASSWORD",
        );
        assert!(!msg.contains("hunter2"), "{msg}");

        let dir = tempfile::tempdir().expect("tmp");
        let pw_file = dir.path().join("pw");
        std::fs::write(&pw_file, "s3cret-from-file\n").expect("write");
        let pw_file = pw_file.display().to_string();
        let cluster = "mode = \"cluster\"\nurls = [\"redis://10.0.0.5:7000\"]\n";
        let cfg = load_store(
            cluster,
            &[
                ("OTPGATE_REDIS_USERNAME", "otpgate"),
                ("OTPGATE_REDIS_PASSWORD_FILE", &pw_file),
                ("OTPGATE_REDIS_SENTINEL_PASSWORD", "hunter3"),
            ],
        )
        .expect("credentials from env");
        assert_eq!(cfg.store.username.as_deref(), Some("otpgate"));
        assert_eq!(
            cfg.store.password.as_ref().map(Secret::expose),
            Some("s3cret-from-file")
        );
        let shown = format!("{cfg:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("hunter3"),
            "{shown}"
        );
        let err = load_store(
            cluster,
            &[("OTPGATE_REDIS_PASSWORD_FILE", "/nonexistent/pw")],
        )
        .expect_err("unreadable password file");
        assert!(
            err.to_string().contains("OTPGATE_REDIS_PASSWORD_FILE"),
            "{err}"
        );
    }

    #[test]
    fn redis_tls_files_are_checked_at_start() {
        let dir = tempfile::tempdir().expect("tmp");
        let certified =
            rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, certified.cert.pem()).expect("write");
        let key = dir.path().join("client.key");
        std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write");
        let (ca, key) = (ca.display().to_string(), key.display().to_string());
        let tls_url = "url = \"rediss://10.0.0.5:6380\"\n";

        let ok = format!(
            "{tls_url}[store.tls]\nca_file = \"{ca}\"\ncert_file = \"{ca}\"\nkey_file = \"{key}\"\n"
        );
        let cfg = load_store(&ok, &[]).expect("tls");
        assert!(cfg.store.tls.is_some());

        refused(
            &format!("{tls_url}[store.tls]\nca_file = \"/nonexistent/ca.pem\"\n"),
            &[],
            "store.tls.ca_file",
            "/nonexistent/ca.pem",
        );
        refused(
            &format!("{tls_url}[store.tls]\nca_file = \"{key}\"\n"),
            &[],
            "store.tls.ca_file",
            "no certificate",
        );
        refused(
            &format!("{tls_url}[store.tls]\ncert_file = \"{ca}\"\n"),
            &[],
            "store.tls.key_file",
            "needs its key_file",
        );
        refused(
            &format!("{tls_url}[store.tls]\ncert_file = \"{ca}\"\nkey_file = \"{ca}\"\n"),
            &[],
            "store.tls.key_file",
            "private key",
        );
        refused(
            &format!("url = \"redis://10.0.0.5:6379\"\n[store.tls]\nca_file = \"{ca}\"\n"),
            &[],
            "store.tls",
            "no URL is rediss://",
        );
        refused(
            &format!("{tls_url}[store.tls]\nca = \"{ca}\"\n"),
            &[],
            "store.tls.ca",
            "unknown field",
        );
    }
}
