//! In-process rigs for the gateway tests: emulated phones (`otpgate_server::emulator`) and
//! routers (a pool's webhook receiver, a fake provider) served on free loopback ports, a
//! pool over a memory store, and the records its send jobs refer to.

use std::sync::Arc;

use otpgate_core::wire::DeliveryState;
use otpgate_server::audit::AuditLog;
use otpgate_server::clock::SystemClock;
use otpgate_server::emulator::{Emulator, Knobs};
use otpgate_server::gateway::{
    DeviceConfig, GatewaysConfig, Kind, LiteralSecrets, Outgoing, Pool, Priority, Secret, SendJob,
    TRUSTED_WORK,
};
use otpgate_server::keys::KeyRing;
use otpgate_server::store::{MemoryStore, Record, Store, StoredCode};
use tokio::net::TcpListener;

use crate::conformance::sample_record;

/// A listener on a free loopback port and its base URL (`http://127.0.0.1:PORT`).
pub async fn listen() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    (listener, base)
}

/// Serves `emu` on a free loopback port (in a task); returns its base URL.
pub async fn serve_phone(emu: &Arc<Emulator>) -> String {
    let (listener, base) = listen().await;
    let emu = emu.clone();
    tokio::spawn(async move { emu.serve(listener).await });
    base
}

/// Serves `router` on a free loopback port (in a task); returns its base URL.
pub async fn serve_router(router: axum::Router) -> String {
    let (listener, base) = listen().await;
    tokio::spawn(async move { axum::serve(listener, router).await });
    base
}

/// Knobs for a fast phone: `delay_ms` per state change, webhook retries from 50 ms.
pub fn fast_knobs(delay_ms: u64) -> Knobs {
    Knobs {
        delay_ms,
        webhook_retry_base_ms: 50,
        ..Knobs::default()
    }
}

/// A pool over `cfg` with a fresh memory store, no audit log and the system clock; the
/// store is returned too (the tests read delivery states from it).
pub fn memory_pool(cfg: GatewaysConfig) -> (Arc<Pool>, Arc<dyn Store>) {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let pool = pool_on(cfg, store.clone(), &KeyRing::ephemeral());
    (pool, store)
}

/// A pool over `cfg` on `store` with `keys` (several pools on one store and key ring are
/// several issuer instances), no audit log and the system clock.
pub fn pool_on(cfg: GatewaysConfig, store: Arc<dyn Store>, keys: &KeyRing) -> Arc<Pool> {
    Pool::new(
        cfg,
        store,
        Arc::new(AuditLog::disabled()),
        Arc::new(SystemClock),
        keys,
    )
    .expect("pool")
}

/// An open verification a send job refers to: [`sample_record`] with app `demo`, `phone`,
/// code `version` (a digest of zeros under key `k`, as many sends as the version), `life_ms`
/// to live from `now_ms`, no locale, resend allowed at once.
pub fn pending_record(id: &str, phone: &str, version: u32, now_ms: i64, life_ms: i64) -> Record {
    let mut rec = sample_record(id, now_ms);
    rec.app = "demo".into();
    rec.phone = phone.to_owned();
    rec.locale = None;
    rec.code = StoredCode {
        digest: vec![0; 32],
        key_id: "k".into(),
        version,
    };
    rec.expires_at_ms = now_ms + life_ms;
    rec.sends = version;
    rec.resend_at_ms = now_ms;
    rec
}

/// The send job of the open verification `rec`: `text` to its phone, for its current code,
/// expiring with it.
pub fn send_job(rec: &Record, text: impl Into<String>) -> SendJob {
    SendJob {
        verification_id: rec.id.clone(),
        code_version: rec.code.version,
        message: Outgoing {
            message_id: String::new(),
            phone: rec.phone.clone(),
            text: text.into(),
            ttl_secs: 0,
            segments: 1,
        },
        expires_at_ms: rec.expires_at_ms,
        priority: Priority::Paid,
        work: TRUSTED_WORK,
    }
}

/// The record of the verification `vid` in `store`; panics when it is not there.
pub async fn stored(store: &Arc<dyn Store>, vid: &str) -> Record {
    store.get(vid).await.expect("store").expect("record")
}

/// The delivery state of the verification `vid` in `store`; panics when it is not there.
pub async fn delivery_state(store: &Arc<dyn Store>, vid: &str) -> DeliveryState {
    stored(store, vid).await.delivery.state
}

/// Emulated phone `i` as the pool sees it: `phone-I`, an SMS Gate at `url` with user `sms`
/// and password `pw-I`, `budget` sends a minute and `android_limit` in the Android window.
pub fn emulated_device(i: usize, url: String, budget: u32, android_limit: u32) -> DeviceConfig {
    let mut d = DeviceConfig::new(format!("phone-{i}"), Kind::SmsGate, Some(url));
    d.username = Some("sms".into());
    d.budget_per_minute = budget;
    d.android_limit = android_limit;
    d.with_secrets(LiteralSecrets {
        password: Some(Secret::new(format!("pw-{i}"))),
        ..LiteralSecrets::default()
    })
}
