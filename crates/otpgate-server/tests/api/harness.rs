//! Shared harness of the API tests: a real issuer on 127.0.0.1:0 over a chosen store, with
//! a manual clock, ephemeral keys and a dispatcher that captures what would be sent.
#![allow(dead_code, missing_docs, unreachable_pub, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use otpgate_core::code::CodeSpec;
use otpgate_server::api::{self, ApiState, RouterOptions};
use otpgate_server::audit::AuditLog;
use otpgate_server::clock::{Clock, ManualClock, SystemClock};
use otpgate_server::config::{AppConfig, Origin};
use otpgate_server::gateway::{DispatchError, Dispatched, Dispatcher, SendJob};
use otpgate_server::keys::KeyRing;
use otpgate_server::metrics::Metrics;
use otpgate_server::policy::{Policy, PolicyConfig};
use otpgate_server::service::{Service, ServiceParts};
use otpgate_server::store::{EmbeddedStore, MemoryStore, RedisStore, Store};
use otpgate_test_support::redis::TestRedis;
use otpgate_test_support::rig::listen;
use serde_json::Value;

pub const ISSUER: &str = "https://issuer.test";

/// Which backend a test runs on.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Memory,
    Embedded,
    Redis,
    /// A redis-server of the test's own (it may stop it).
    RedisPrivate,
}

/// Captures sends; can be told to refuse for lack of capacity.
#[derive(Default)]
pub struct Capture {
    pub jobs: Mutex<Vec<SendJob>>,
    pub no_capacity: Mutex<bool>,
}

#[async_trait]
impl Dispatcher for Capture {
    async fn dispatch(&self, job: SendJob) -> Result<Dispatched, DispatchError> {
        if *self.no_capacity.lock().unwrap() {
            return Err(DispatchError::NoCapacity {
                retry_after_secs: 7,
            });
        }
        self.jobs.lock().unwrap().push(job);
        Ok(Dispatched::Sending)
    }
    async fn ready(&self) -> bool {
        true
    }
}

pub struct Harness {
    pub base: String,
    pub client: reqwest::Client,
    pub clock: ManualClock,
    pub capture: Arc<Capture>,
    pub store: Arc<dyn Store>,
    /// The audit log file (a real, fsync'd log in a keyed chain).
    pub audit_path: std::path::PathBuf,
    /// The keys that verify the audit log's chain.
    pub audit_keys: Vec<otpgate_server::audit::AuditKey>,
    _audit_dir: tempfile::TempDir,
    _tmp: Option<tempfile::TempDir>,
    pub redis: Option<TestRedis>,
    _server: tokio::task::JoinHandle<()>,
}

pub fn app(name: &str) -> AppConfig {
    AppConfig {
        name: name.into(),
        origins: vec![Origin::parse(&format!("https://{name}.example.com")).expect("origin")],
        android_app_hashes: vec![],
        templates: Default::default(),
        default_locale: "en".into(),
        audience: None,
        display_name: None,
        code: CodeSpec::default(),
    }
}

/// A policy that lets tests run many starts: generous budgets, no proof of work.
pub fn open_policy() -> PolicyConfig {
    let mut p = PolicyConfig::default();
    p.budgets.phone.limit = 1000;
    p.budgets.phone_daily.limit = 1000;
    p.budgets.ip.limit = 1000;
    p.budgets.prefix.limit = 1000;
    p.budgets.global.limit = 100_000;
    p.budgets.check_ip.limit = 100_000;
    p.budgets.phone_ip.limit = 1000;
    p.budgets.failed_checks.limit = 1000;
    p.pow.enabled = false;
    p
}

impl Harness {
    pub async fn new(backend: Backend) -> Self {
        Self::with_policy(backend, open_policy()).await
    }

    pub async fn with_policy(backend: Backend, policy: PolicyConfig) -> Self {
        let mut tmp = None;
        let mut redis = None;
        let store: Arc<dyn Store> = match backend {
            Backend::Memory => Arc::new(MemoryStore::new()),
            Backend::Embedded => {
                let dir = tempfile::tempdir().unwrap();
                let s = EmbeddedStore::open(dir.path().join("store.redb")).unwrap();
                tmp = Some(dir);
                Arc::new(s)
            }
            Backend::Redis | Backend::RedisPrivate => {
                let r = if matches!(backend, Backend::Redis) {
                    TestRedis::start()
                } else {
                    TestRedis::spawn()
                };
                let prefix = format!("t{}:", otpgate_server::random::id("").unwrap());
                let s = RedisStore::connect(&r.url, &prefix).await.unwrap();
                redis = Some(r);
                Arc::new(s)
            }
        };
        let clock = ManualClock::new(SystemClock.now_ms());
        let capture = Arc::new(Capture::default());
        let metrics = Arc::new(Metrics::new());
        let keys = KeyRing::ephemeral();
        let audit_dir = tempfile::tempdir().unwrap();
        let audit_path = audit_dir.path().join("audit.jsonl");
        let audit = Arc::new(AuditLog::open(&audit_path, &keys).unwrap());
        let audit_keys = keys.audit_keys().to_vec();
        let policy = Arc::new(Policy::new(policy, store.clone(), keys.pow_key().to_vec()));
        let apps = vec![app("shop"), app("bank")];
        let cors_origins: Vec<Origin> = apps
            .iter()
            .flat_map(|a| a.origins.iter().cloned())
            .collect();
        let service = Arc::new(Service::new(ServiceParts {
            store: store.clone(),
            keys,
            audit,
            policy,
            dispatcher: capture.clone(),
            clock: Arc::new(clock.clone()),
            apps,
            issuer: ISSUER.into(),
            metrics: metrics.clone(),
        }));
        let state = ApiState {
            service,
            metrics,
            trusted_proxies: Default::default(),
        };
        let options = RouterOptions {
            body_limit: 16 * 1024,
            timeout: Duration::from_secs(30),
            cors_origins,
            static_dir: None,
        };
        let router = api::router(state, options, axum::Router::new());
        let (listener, base) = listen().await;
        let server = tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap();
        });
        Self {
            base,
            client: reqwest::Client::new(),
            clock,
            capture,
            store,
            audit_path,
            audit_keys,
            _audit_dir: audit_dir,
            _tmp: tmp,
            redis,
            _server: server,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POSTs JSON; returns status, headers, body as JSON (Null when not JSON).
    pub async fn post(&self, path: &str, body: Value) -> (u16, reqwest::header::HeaderMap, Value) {
        let res = self
            .client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        split(res).await
    }

    pub async fn get(&self, path: &str) -> (u16, reqwest::header::HeaderMap, Value) {
        split(self.client.get(self.url(path)).send().await.unwrap()).await
    }

    pub async fn delete(&self, path: &str) -> (u16, reqwest::header::HeaderMap, Value) {
        split(self.client.delete(self.url(path)).send().await.unwrap()).await
    }

    /// `POST /v1/verifications/ID/resend` with `{}` (`body`) or with no body at all.
    pub async fn resend(&self, id: &str, body: bool) -> (u16, reqwest::header::HeaderMap, Value) {
        let path = format!("/v1/verifications/{id}/resend");
        if body {
            return self.post(&path, serde_json::json!({})).await;
        }
        split(self.client.post(self.url(&path)).send().await.unwrap()).await
    }

    /// Starts a verification for `phone`; asserts 201 and returns the id.
    pub async fn start(&self, phone: &str) -> String {
        let (status, _, body) = self
            .post("/v1/verifications", serde_json::json!({"phone": phone}))
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    /// The code of the last SMS sent for `id` (from the WebOTP line `@host #code`).
    pub fn code(&self, id: &str) -> String {
        let jobs = self.capture.jobs.lock().unwrap();
        let job = jobs
            .iter()
            .rev()
            .find(|j| j.verification_id == id)
            .expect("an SMS was sent");
        job.message
            .text
            .rsplit('#')
            .next()
            .unwrap()
            .trim()
            .to_owned()
    }

    pub async fn check(&self, id: &str, code: &str) -> (u16, reqwest::header::HeaderMap, Value) {
        self.post(
            &format!("/v1/verifications/{id}/check"),
            serde_json::json!({"code": code}),
        )
        .await
    }

    pub fn sends(&self) -> usize {
        self.capture.jobs.lock().unwrap().len()
    }
}

pub async fn split(res: reqwest::Response) -> (u16, reqwest::header::HeaderMap, Value) {
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let bytes = res.bytes().await.unwrap();
    (
        status,
        headers,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Asserts the one error shape with `code`, and the request id in body and header.
pub fn assert_error(
    status: u16,
    headers: &reqwest::header::HeaderMap,
    body: &Value,
    want_status: u16,
    want_code: &str,
) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"]["code"], want_code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    let rid = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("X-Request-Id");
    assert_eq!(body["error"]["request_id"], rid, "{body}");
}

/// Now on the harness clock, seconds (for receipt checks).
/// The `Retry-After` header in seconds; panics when it is missing or not a number.
pub fn retry_after_header(headers: &reqwest::header::HeaderMap) -> u64 {
    headers
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

pub fn now_secs(clock: &ManualClock) -> i64 {
    clock.now_secs()
}

/// Runs an async scenario on each backend as its own test (`#[macro_use] mod harness;` in
/// `main.rs` makes it visible to the modules declared after it).
macro_rules! on_every_store {
    ($($name:ident),* $(,)?) => {
        mod memory { use super::*; $( #[tokio::test(flavor = "multi_thread", worker_threads = 4)] async fn $name() { super::$name(Backend::Memory).await } )* }
        mod embedded { use super::*; $( #[tokio::test(flavor = "multi_thread", worker_threads = 4)] async fn $name() { super::$name(Backend::Embedded).await } )* }
        mod redis { use super::*; $( #[tokio::test(flavor = "multi_thread", worker_threads = 4)] async fn $name() { super::$name(Backend::Redis).await } )* }
    };
}
