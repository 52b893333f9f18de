//! `otpgate serve`: assembles the issuer and runs it until SIGINT/SIGTERM.
//!
//! [`crate::cli::serve::run`] (the command) loads the configuration (dev mode without a file),
//! sets up JSON logs and a tokio runtime, binds the listener and calls [`run_with_listener`],
//! which tests reuse with a listener on `127.0.0.1:0` and their own shutdown future
//! (mini-redis style).
//!
//! # Security
//! Logs are structured JSON and never carry a code, a full number or a secret: the service
//! logs numbers masked, and configuration errors never echo secret values.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use axum::Router;
use axum::serve::ListenerExt as _;
use otpgate_core::wire::DeliveryState;
use tokio::net::TcpListener;

use crate::api::{self, ApiState, RouterOptions};
use crate::audit::{AnchorSink, AuditLog};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, StoreConfig, StoreKind, StoreMode};
use crate::emulator::{Emulator, EmulatorConfig};
use crate::gateway::{DispatchError, Dispatched, Dispatcher, GatewaysConfig, Pool, SendJob};
use crate::keys::KeyRing;
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::service::{Service, ServiceParts};
use crate::store::{
    DeliveryRecord, EmbeddedOptions, EmbeddedStore, MemoryStore, Observed, RedisOptions,
    RedisStore, RedisTarget, Store,
};

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested; draining in-flight requests");
}

/// A running issuer's parts (what tests may want to reach).
pub struct Issuer {
    /// The router with every layer.
    pub router: Router,
    /// The service.
    pub service: Arc<Service>,
    /// The store.
    pub store: Arc<dyn Store>,
    /// The audit anchors' exporter, when `[audit] anchor` is set.
    pub anchors: Option<Arc<AnchorExporter>>,
    /// The operator console of `[admin] listen`, when configured ([`crate::admin`]).
    pub console: Option<Arc<crate::admin::Console>>,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer").finish_non_exhaustive()
    }
}

/// Opens the store of the configuration.
///
/// # Errors
/// The store cannot be opened or reached.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match config.store.kind {
        StoreKind::Embedded => {
            let path = config.store_path();
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                crate::fsperm::create_private_dir(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            Arc::new(
                EmbeddedStore::open_with(
                    &path,
                    EmbeddedOptions {
                        durability: config.store.durability,
                        ..EmbeddedOptions::default()
                    },
                )
                .with_context(|| format!("cannot open the store {}", path.display()))?,
            )
        }
        StoreKind::Redis => {
            let target = redis_target(&config.store)?;
            let opts = RedisOptions {
                wait_replicas: config.store.wait_replicas,
                wait_timeout: Duration::from_millis(config.store.wait_timeout_ms),
                ..RedisOptions::default()
            };
            let store = RedisStore::connect_to(&target, &config.store.key_prefix, opts)
                .await
                .with_context(|| {
                    format!(
                        "cannot connect to Redis (mode {}, nodes {})",
                        target.mode.as_str(),
                        target.nodes()
                    )
                })?;
            // Names the mode and the nodes, never credentials.
            tracing::info!(
                store_mode = target.mode.as_str(),
                store_nodes = %target.nodes(),
                store_tls = target.urls.iter().any(|u| u.starts_with("rediss://")),
                one_script_checks = store.checks_in_one_script(),
                wait_replicas = store.wait_replicas(),
                "redis store connected"
            );
            Arc::new(store)
        }
        StoreKind::Memory => {
            tracing::warn!("memory store: every verification is lost on restart");
            Arc::new(MemoryStore::new())
        }
    })
}

/// The Redis target of a validated `[store]`: its mode, URLs, credentials from the
/// environment and the `[store.tls]` files read.
///
/// # Errors
/// A URL is missing for the mode, or a TLS file cannot be read.
pub fn redis_target(store: &StoreConfig) -> anyhow::Result<RedisTarget> {
    let mut target = match store.mode {
        StoreMode::Single => RedisTarget::single(
            store
                .url
                .clone()
                .context("store.url is required for the redis store")?,
        ),
        StoreMode::Cluster => RedisTarget::cluster(store.urls.clone()),
        StoreMode::Sentinel => RedisTarget::sentinel(
            store.urls.clone(),
            store
                .service_name
                .clone()
                .context("store.service_name is required in mode sentinel")?,
        ),
    };
    target.username.clone_from(&store.username);
    target.password = store
        .password
        .as_ref()
        .map(|p| zeroize::Zeroizing::new(p.expose().to_owned()));
    target.sentinel_password = store
        .sentinel_password
        .as_ref()
        .map(|p| zeroize::Zeroizing::new(p.expose().to_owned()));
    if let Some(tls) = &store.tls {
        let read = |p: &Path, key: &str| {
            std::fs::read(p)
                .with_context(|| format!("store.tls.{key}: cannot read {}", p.display()))
        };
        if let Some(ca) = &tls.ca_file {
            target.tls.ca_pem = Some(read(ca, "ca_file")?);
        }
        if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
            target.tls.client_cert_pem = Some(read(cert, "cert_file")?);
            target.tls.client_key_pem = Some(zeroize::Zeroizing::new(read(key, "key_file")?));
        }
    }
    Ok(target)
}

/// Builds the issuer of `config` as it would listen on `local_addr`.
///
/// # Errors
/// Keys, store, audit log or gateways cannot be set up.
pub async fn build(config: &Config, local_addr: SocketAddr) -> anyhow::Result<Issuer> {
    let data_dir = config.data_dir();
    crate::fsperm::create_private_dir(&data_dir)
        .with_context(|| format!("cannot create the data dir {}", data_dir.display()))?;
    // Owner only: the store holds numbers in clear, the keys and the audit log are secrets.
    let mut private = vec![config.audit_path()];
    if config.store.kind == StoreKind::Embedded {
        let store = config.store_path();
        private.extend(crate::fsperm::wal_segments(&store));
        private.push(store);
    }
    crate::fsperm::tighten_data(&data_dir, &private).with_context(|| {
        format!(
            "cannot make the data dir {} private (0700, files 0600)",
            data_dir.display()
        )
    })?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let keys = KeyRing::load_or_create(&data_dir).context("cannot load the keys")?;
    let metrics = Arc::new(Metrics::new());
    let store: Arc<dyn Store> = Arc::new(Observed::new(open_store(config).await?, metrics.clone()));
    let audit = if config.audit.enabled {
        Arc::new(
            AuditLog::open_with(&config.audit_path(), &keys, config.audit.durability)
                .context("cannot open the audit log")?,
        )
    } else {
        Arc::new(AuditLog::disabled())
    };
    let anchors = match (&config.audit.anchor, config.audit.enabled) {
        (Some(sink), true) => {
            let sink = AnchorSink::parse(sink).map_err(|r| anyhow::anyhow!("audit.anchor: {r}"))?;
            metrics.set_anchor_interval(config.audit.anchor_every_secs);
            let exporter = Arc::new(AnchorExporter {
                audit: audit.clone(),
                sink,
                client: reqwest::Client::new(),
                metrics: metrics.clone(),
                status: std::sync::Mutex::new(AnchorState::default()),
            });
            schedule_anchors(
                &exporter,
                Duration::from_secs(config.audit.anchor_every_secs),
            );
            Some(exporter)
        }
        (Some(_), false) => {
            tracing::warn!("audit.anchor is set but the audit log is disabled: no anchors");
            None
        }
        (None, _) => None,
    };
    if config.audit.enabled {
        schedule_audit_purge(&audit, config.audit.retention_days);
    }
    let mut policy_config = config.policy.clone();
    if config.dev_mode {
        let (path, entry) = dev_api_key(&data_dir)?;
        policy_config.api_keys.push(entry);
        tracing::info!(
            file = %path.display(),
            "DEV MODE: a trusted API key for backends and the edge worker is in this file \
             (owner only); send it as `Authorization: Bearer <key>`"
        );
    }
    let policy = Arc::new(Policy::new(
        policy_config,
        store.clone(),
        keys.pow_key().to_vec(),
    ));
    let mut issuer_url = config.public_url();
    if config.server.public_url.is_none() && config.server.listen.port() == 0 {
        issuer_url = format!("http://{local_addr}");
    }
    let (dispatcher, extra, send_capacity, pool) = dispatcher_for(
        config,
        local_addr,
        store.clone(),
        audit.clone(),
        clock.clone(),
        &metrics,
        (&keys, &policy),
    )?;
    policy.set_send_capacity(send_capacity);
    let service = Arc::new(Service::new(ServiceParts {
        store: store.clone(),
        keys,
        audit,
        policy,
        dispatcher,
        clock,
        apps: config.apps.clone(),
        issuer: issuer_url.clone(),
        metrics: metrics.clone(),
    }));
    let integrations =
        crate::integrations::Integrations::load(&config.integrations, &crate::config::ProcessEnv)
            .map_err(|e| anyhow::anyhow!(e))?;
    if let Some(h) = &integrations.supabase {
        tracing::info!(app = %h.app, secrets = h.secrets.len(), "Supabase Send SMS hook at /v1/hooks/supabase/send-sms");
    }
    if let Some(t) = &integrations.twilio {
        tracing::info!(
            services = t.services.len(),
            "Twilio Verify-compatible API at /v2/Services/..."
        );
    }
    let extra = extra.merge(crate::integrations::router(
        crate::integrations::IntegrationState {
            service: service.clone(),
            integrations: Arc::new(integrations),
            trusted_proxies: config.server.trusted_proxies.clone(),
        },
    ));
    let state = ApiState {
        service: service.clone(),
        metrics,
        trusted_proxies: config.server.trusted_proxies.clone(),
    };
    let recorder = Arc::new(crate::admin::Recorder::new());
    let console_of = |token: &crate::gateway::Secret, base: &str, tls: bool, loopback_only| {
        Arc::new(crate::admin::Console {
            service: service.clone(),
            pool: pool.clone(),
            recorder: recorder.clone(),
            audit: service.audit_log().clone(),
            anchors: anchors.clone(),
            audit_config: config.audit.clone(),
            auth: crate::admin::Auth::new(token, config.admin.session_hours),
            base: base.to_owned(),
            tls,
            trusted_proxies: config.server.trusted_proxies.clone(),
            loopback_only,
            started_at_ms: service.clock().now_ms(),
        })
    };
    let console = config
        .admin
        .listen
        .and(config.admin.token.as_ref())
        .map(|token| console_of(token, "", false, false));
    let mut extra = extra;
    if config.dev_mode {
        let (token, from) = match &config.admin.token {
            Some(t) => (t.clone(), config.admin.token_env.clone()),
            None => {
                let path = dev_admin_token(&data_dir)?;
                let token = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                (
                    crate::gateway::Secret::new(token.trim()),
                    path.display().to_string(),
                )
            }
        };
        let dev = console_of(&token, "/admin", config.server.tls.is_some(), true);
        extra = extra.merge(crate::admin::router(dev));
        tracing::info!(
            console = %format!("http://{local_addr}/admin"),
            token = %from,
            "DEV MODE: the operator console is at /admin (loopback only); its token is in \
             this file or variable"
        );
    }
    if console.is_some() || config.dev_mode {
        crate::admin::start_recording(&recorder, &service, pool.as_ref());
    }
    let options = RouterOptions {
        body_limit: config.server.body_limit_bytes,
        timeout: Duration::from_secs(config.server.request_timeout_secs),
        cors_origins: config.cors_origins(),
        static_dir: config.server.static_dir.clone().filter(|d| d.is_dir()),
    };
    let router = api::router(state, options, extra);
    if config.dev_mode {
        // The page must be opened at the origin its SMS binds the code to (WebOTP).
        let page = config
            .apps
            .first()
            .and_then(|a| a.origins.first())
            .map(|o| format!("{o}/"))
            .unwrap_or_default();
        tracing::warn!(
            listen = %local_addr,
            open = %page,
            data_dir = %data_dir.display(),
            issuer = %issuer_url,
            "DEV MODE: no configuration file; embedded store, emulated phone as the only gateway, \
             demo app `demo`, CORS open to http://localhost:* — do not use in production"
        );
    }
    Ok(Issuer {
        router,
        service,
        store,
        anchors,
        console,
    })
}

/// The file under the data dir that holds dev mode's API key.
pub const DEV_API_KEY_FILE: &str = "dev-api-key";

/// Dev mode's API key: read from `DATA_DIR/dev-api-key`, or made (32 random bytes, hex)
/// and written there owner-only (0600) on the first start. Returns the file and the
/// key's `sha256:` entry for `[policy] api_keys`; the key itself is never logged.
///
/// # Errors
/// The file cannot be read, written or made private, or holds no usable key.
pub fn dev_api_key(data_dir: &Path) -> anyhow::Result<(PathBuf, String)> {
    use sha2::Digest as _;
    let path = data_dir.join(DEV_API_KEY_FILE);
    // Created owner-only before anything is written; an existing file is kept (the data
    // dir's files were tightened to 0600 before this runs).
    crate::fsperm::ensure_private_file(&path)
        .with_context(|| format!("cannot create {} (0600)", path.display()))?;
    let mut key = zeroize::Zeroizing::new(
        std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?,
    );
    if key.trim().is_empty() {
        let (made, _) = crate::cli::keys::new_api_key()?;
        std::fs::write(&path, format!("{}\n", made.as_str()))
            .with_context(|| format!("cannot write {}", path.display()))?;
        key = made;
    }
    let key = key.trim();
    anyhow::ensure!(
        key.len() >= 32,
        "{} holds no usable API key (delete it to make a new one)",
        path.display()
    );
    let entry = format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(key.as_bytes()))
    );
    Ok((path, entry))
}

/// The file under the data dir that holds dev mode's admin console token.
pub const DEV_ADMIN_TOKEN_FILE: &str = "dev-admin-token";

/// Dev mode's console token file: `DATA_DIR/dev-admin-token`, made owner-only (0600) with
/// 32 random bytes (hex) on the first start and kept afterwards. Returns its path; the
/// token itself is never logged.
///
/// # Errors
/// The file cannot be read, written or made private.
pub fn dev_admin_token(data_dir: &Path) -> anyhow::Result<PathBuf> {
    let path = data_dir.join(DEV_ADMIN_TOKEN_FILE);
    crate::fsperm::ensure_private_file(&path)
        .with_context(|| format!("cannot create {} (0600)", path.display()))?;
    let held = zeroize::Zeroizing::new(
        std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?,
    );
    if held.trim().chars().count() < crate::config::MIN_ADMIN_TOKEN_LEN {
        let (made, _) = crate::cli::keys::new_api_key()?;
        std::fs::write(&path, format!("{}\n", made.as_str()))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(path)
}

/// Exports anchors of the audit log to the sink of `[audit] anchor`.
pub struct AnchorExporter {
    audit: Arc<AuditLog>,
    sink: AnchorSink,
    client: reqwest::Client,
    metrics: Arc<Metrics>,
    status: std::sync::Mutex<AnchorState>,
}

/// The last exports' outcome.
#[derive(Clone, Debug, Default)]
struct AnchorState {
    last_success_ms: Option<i64>,
    last_error: Option<crate::admin::recorder::Stamped>,
}

/// The anchor exports as the console shows them.
#[derive(Clone, Debug)]
pub struct AnchorReport {
    /// Where they go (no credentials, no query).
    pub sink: String,
    /// The last successful export, Unix ms.
    pub last_success_ms: Option<i64>,
    /// The last failure.
    pub last_error: Option<crate::admin::recorder::Stamped>,
}

impl std::fmt::Debug for AnchorExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnchorExporter")
            .field("sink", &self.sink.describe())
            .finish_non_exhaustive()
    }
}

impl AnchorExporter {
    /// Takes an anchor of the log now (after syncing every line before it) and writes it
    /// to the sink.
    ///
    /// # Errors
    /// The log is closed, or the sink refused the anchor.
    pub async fn export(&self) -> anyhow::Result<()> {
        let Some(anchor) = self.audit.anchor(SystemClock.now_ms()).await? else {
            return Ok(());
        };
        self.sink.write(&self.client, &anchor).await
    }

    /// [`AnchorExporter::export`], logging a failure (never the anchor's MAC); counted in
    /// the metrics and kept for the console.
    pub async fn export_logged(&self) {
        let result = self.export().await;
        let now = SystemClock.now_ms();
        self.metrics.anchor_exported(result.is_ok(), now);
        let mut status = self
            .status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match result {
            Ok(()) => status.last_success_ms = Some(now),
            Err(e) => {
                let why = format!("{e:#}");
                tracing::error!(sink = %self.sink.describe(), error = %why, "audit log: cannot export the anchor");
                status.last_error = Some(crate::admin::recorder::Stamped {
                    at_ms: now,
                    reason: crate::admin::recorder::scrub(&why),
                });
            }
        }
    }

    /// The last exports' outcome.
    pub fn status(&self) -> AnchorReport {
        let s = self
            .status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        AnchorReport {
            sink: self.sink.describe(),
            last_success_ms: s.last_success_ms,
            last_error: s.last_error,
        }
    }
}

/// Exports an anchor at start and then every `every`, for as long as the issuer is built
/// (the task holds the exporter weakly).
fn schedule_anchors(exporter: &Arc<AnchorExporter>, every: Duration) {
    let weak = Arc::downgrade(exporter);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(exporter) = weak.upgrade() else {
                return;
            };
            exporter.export_logged().await;
        }
    });
}

/// How often lines older than `[audit] retention_days` are purged (and once at start).
const AUDIT_PURGE_EVERY: Duration = Duration::from_secs(3600);

/// Purges the audit log's lines older than `retention_days`, at start and then hourly, for
/// as long as the log is open (the task holds it weakly).
fn schedule_audit_purge(audit: &Arc<AuditLog>, retention_days: u32) {
    let log = Arc::downgrade(audit);
    let keep_ms = i64::from(retention_days) * 86_400_000;
    tokio::spawn(async move {
        let mut every = tokio::time::interval(AUDIT_PURGE_EVERY);
        loop {
            every.tick().await;
            let Some(log) = log.upgrade() else { return };
            let before = SystemClock.now_ms() - keep_ms;
            match log.purge_before(before).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(lines = n, retention_days, "audit log: purged old lines"),
                Err(e) => tracing::error!(error = %e, "audit log: retention purge failed"),
            }
        }
    });
}

/// Serves `config` on `listener` until `shutdown` resolves, then drains in-flight requests
/// (at most `[server] shutdown_grace_secs`).
///
/// # Errors
/// Set-up failures (see [`build`]) or a failing listener.
pub async fn run_with_listener<F>(
    config: Config,
    listener: TcpListener,
    shutdown: F,
) -> anyhow::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let local_addr = listener.local_addr()?;
    let issuer = build(&config, local_addr).await?;
    tracing::info!(
        listen = %local_addr,
        dev_mode = config.dev_mode,
        store = ?config.store.kind,
        store_durability = config.store.durability.as_str(),
        audit_durability = config.audit.durability.as_str(),
        "otpgate issuer listening"
    );
    let grace = Duration::from_secs(config.server.shutdown_grace_secs);
    let (tx, rx) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        shutdown.await;
        let _ = tx.send(true);
    };
    let anchors = issuer.anchors.clone();
    if let (Some(console), Some(addr)) = (issuer.console.clone(), config.admin.listen) {
        let admin = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} ([admin] listen)"))?;
        let bound = admin.local_addr()?;
        if !bound.ip().is_loopback() {
            tracing::warn!(listen = %bound, "admin console on a non-loopback address over plain HTTP: put it behind a TLS proxy (trusted_proxies) or an SSH tunnel");
        }
        tracing::info!(listen = %bound, "admin console listening");
        let mut rx3 = rx.clone();
        tokio::spawn(async move {
            let stop = async move {
                let _ = rx3.wait_for(|v| *v).await;
            };
            if let Err(e) = crate::admin::serve(admin, console, stop).await {
                tracing::error!(error = %e, "admin console listener failed");
            }
        });
    }
    let app = issuer
        .router
        .into_make_service_with_connect_info::<SocketAddr>();
    let mut rx2 = rx.clone();
    let drain_deadline = async move {
        let _ = rx2.wait_for(|v| *v).await;
        tokio::time::sleep(grace).await;
    };
    let server: std::pin::Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>> =
        match &config.server.tls {
            None => Box::pin(
                axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown)
                    .into_future(),
            ),
            Some(tls) => {
                let acceptor = tls_acceptor(&tls.cert, &tls.key)?;
                tracing::info!(cert = %tls.cert.display(), "serving HTTPS");
                let listener = TlsListener::new(listener, acceptor).tap_io(|_| {});
                Box::pin(
                    axum::serve(listener, app)
                        .with_graceful_shutdown(shutdown)
                        .into_future(),
                )
            }
        };
    tokio::select! {
        r = server => r.context("server failed")?,
        () = drain_deadline => tracing::warn!("grace period over; closing the remaining connections"),
    }
    if let Some(anchors) = anchors {
        // The last anchor: what the log holds as the issuer stops.
        anchors.export_logged().await;
    }
    tracing::info!("otpgate issuer stopped");
    Ok(())
}

/// A rustls acceptor from PEM files (certificate chain; PKCS#8, PKCS#1 or SEC1 key).
///
/// # Errors
/// A file that cannot be read or parsed, or a key that does not match the certificate.
pub fn tls_acceptor(cert: &Path, key: &Path) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls;
    let certs = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read the TLS certificate {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("bad PEM in {}", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("no certificate in {}", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read the TLS key {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the TLS key does not match the certificate")?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

/// A listener that hands axum finished TLS connections. Handshakes run in their own tasks
/// (with a deadline), so a slow or hostile client never holds up accepting others.
pub struct TlsListener {
    rx: tokio::sync::mpsc::Receiver<(
        tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
        SocketAddr,
    )>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accepts on `listener` and hands out the connections whose handshake with `acceptor`
    /// finished (within 10 s).
    pub fn new(listener: TcpListener, acceptor: tokio_rustls::TlsAcceptor) -> Self {
        let local = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (tcp, addr) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    break;
                }
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
                    {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, addr)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                });
            }
        });
        Self { rx, local }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            // The accept loop ended: no connection will ever come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// What [`dispatcher_for`] sets up: the dispatcher, the routes it adds, the phones' send
/// capacity per minute, and the pool (for the console) when there is one.
type Dispatching = (Arc<dyn Dispatcher>, Router, u32, Option<Arc<Pool>>);

/// The dispatcher of the configuration and the routes it adds.
///
/// - dev mode: the built-in emulated phone (sms-gate.app API at `/_emulator/phone`, its
///   outbox at `/_emulator/messages`) driven by the gateway pool over loopback HTTP, with
///   signed webhooks back to `/v1/gateways/sms-gate/webhook`;
/// - a configuration with `[[gateways.devices]]`: the pool and its webhook routes;
/// - a configuration without devices (only with `server.danger_discard_sends = true`):
///   nothing can be sent. Messages are discarded after
///   being marked `sent` by gateway `discard` (benchmarks, test-number-only deployments), and
///   this is logged at error level at start.
///
/// # Errors
/// The pool refuses its section (a missing secret, a bad URL).
fn dispatcher_for(
    config: &Config,
    local_addr: SocketAddr,
    store: Arc<dyn Store>,
    audit: Arc<AuditLog>,
    clock: Arc<dyn Clock>,
    metrics: &Metrics,
    (keys, policy): (&KeyRing, &Arc<Policy>),
) -> anyhow::Result<Dispatching> {
    let pool_of = |gateways: GatewaysConfig| -> anyhow::Result<Arc<Pool>> {
        let pool = Pool::new(gateways, store.clone(), audit.clone(), clock.clone(), keys)?;
        pool.set_pressure(policy.clone());
        expose_pool_metrics(metrics, &pool);
        Ok(pool)
    };
    if config.dev_mode {
        let host = if local_addr.ip().is_unspecified() {
            SocketAddr::from(([127, 0, 0, 1], local_addr.port()))
        } else {
            local_addr
        };
        let base = format!("http://{host}");
        let password = crate::random::id("").map_err(|e| anyhow::anyhow!("{e}"))?;
        let signing_key = crate::random::id("").map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut ecfg =
            EmulatorConfig::new("sms", Some(password.clone()), Some(signing_key.clone()));
        ecfg.webhooks
            .push(format!("{base}/v1/gateways/sms-gate/webhook"));
        ecfg.clock = clock.clone();
        let emulator = Emulator::new(ecfg);
        let gateways = GatewaysConfig::dev(&base, "sms", &password, &signing_key);
        let capacity = send_capacity_per_minute(&gateways);
        let pool = pool_of(gateways)?;
        let extra = pool
            .routes()
            .merge(emulator.outbox_router())
            .nest("/_emulator/phone", emulator.router());
        return Ok((pool.clone(), extra, capacity, Some(pool)));
    }
    if config.gateways.is_empty() {
        tracing::error!(
            "no [[gateways.devices]] configured: SMS are NOT sent (discarded, marked sent by \
             gateway `discard`); only test numbers can really be verified"
        );
        let sender = Arc::new(LocalSender { store, clock });
        return Ok((sender, Router::new(), 0, None));
    }
    let sharing = config.gateways.devices_sharing_the_gateway_key();
    if !sharing.is_empty() {
        tracing::warn!(
            devices = ?sharing,
            "gateways: these sms-gate devices have no signing_key_env of their own and share \
             the gateway key (webhook_signing_key_env): each can sign delivery events for the \
             others' messages; give each phone its own key"
        );
    }
    let capacity = send_capacity_per_minute(&config.gateways);
    let pool = pool_of(config.gateways.clone())?;
    let routes = pool.routes();
    Ok((pool.clone(), routes, capacity, Some(pool)))
}

/// SMS segments per minute the phones can send in all (the paid fallbacks, used only when
/// every phone failed, do not count).
fn send_capacity_per_minute(g: &GatewaysConfig) -> u32 {
    let per_window: u64 = g
        .devices
        .iter()
        .filter(|d| !d.kind.is_fallback())
        .map(|d| u64::from(d.budget_per_minute))
        .sum();
    let per_minute = per_window.saturating_mul(60) / g.budget_window_secs.max(1);
    u32::try_from(per_minute).unwrap_or(u32::MAX)
}

/// Adds the pool's counters to `/metrics`.
fn expose_pool_metrics(metrics: &Metrics, pool: &Arc<Pool>) {
    let weak = Arc::downgrade(pool);
    metrics.set_extra(Box::new(move || {
        let Some(pool) = weak.upgrade() else {
            return String::new();
        };
        let m = pool.metrics();
        let mut out = String::new();
        out.push_str(
            "# HELP otpgate_gateway_messages Messages handled by the gateway pool, by event.\n",
        );
        out.push_str("# TYPE otpgate_gateway_messages counter\n");
        for (event, v) in [
            ("submitted", m.submitted),
            ("sent", m.sent),
            ("delivered", m.delivered),
            ("failed", m.failed),
            ("failover", m.failovers),
            ("no_capacity", m.no_capacity),
            ("expired", m.expired),
            ("queued", m.queued),
            ("dequeued", m.dequeued),
        ] {
            out.push_str(&format!(
                "otpgate_gateway_messages_total{{event=\"{event}\"}} {v}\n"
            ));
        }
        out.push_str(
            "# HELP otpgate_gateway_queue_waiting Sends waiting in the queue for phone capacity.\n",
        );
        out.push_str("# TYPE otpgate_gateway_queue_waiting gauge\n");
        out.push_str(&format!(
            "otpgate_gateway_queue_waiting {}\n",
            m.queue_waiting
        ));
        out.push_str("# HELP otpgate_gateway_webhooks Delivery webhooks, by result.\n");
        out.push_str("# TYPE otpgate_gateway_webhooks counter\n");
        for (result, v) in [
            ("accepted", m.webhooks_accepted),
            ("rejected", m.webhooks_rejected),
            ("duplicate", m.webhooks_duplicate),
        ] {
            out.push_str(&format!(
                "otpgate_gateway_webhooks_total{{result=\"{result}\"}} {v}\n"
            ));
        }
        out.push_str("# HELP otpgate_gateway_in_flight Messages being tracked.\n");
        out.push_str("# TYPE otpgate_gateway_in_flight gauge\n");
        out.push_str(&format!("otpgate_gateway_in_flight {}\n", m.in_flight));
        out.push_str("# HELP otpgate_gateway_device_up Whether a device is healthy.\n");
        out.push_str("# TYPE otpgate_gateway_device_up gauge\n");
        for d in &m.devices {
            let name = d.name.replace(['\\', '"', '\n'], "_");
            out.push_str(&format!(
                "otpgate_gateway_device_up{{device=\"{name}\",kind=\"{}\"}} {}\n",
                d.kind,
                u8::from(d.up)
            ));
        }
        out.push_str("# HELP otpgate_gateway_device_submitted Sends accepted, by device.\n");
        out.push_str("# TYPE otpgate_gateway_device_submitted counter\n");
        for d in &m.devices {
            let name = d.name.replace(['\\', '"', '\n'], "_");
            out.push_str(&format!(
                "otpgate_gateway_device_submitted_total{{device=\"{name}\"}} {}\n",
                d.submitted
            ));
        }
        out
    }));
}

/// The sender used when no device is configured: marks each message `sent` by gateway
/// `discard` and sends nothing.
struct LocalSender {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

#[async_trait]
impl Dispatcher for LocalSender {
    async fn dispatch(&self, job: SendJob) -> Result<Dispatched, DispatchError> {
        let now = self.clock.now_ms();
        let record = DeliveryRecord {
            state: DeliveryState::Sent,
            gateway: Some("discard".into()),
            message_id: Some(job.message.message_id.clone()),
            updated_at_ms: now,
            detail: None,
        };
        if self
            .store
            .update_delivery(&job.verification_id, job.code_version, &record)
            .await
            .is_err()
        {
            return Err(DispatchError::Unavailable);
        }
        Ok(Dispatched::Sending)
    }

    async fn ready(&self) -> bool {
        true
    }
}
