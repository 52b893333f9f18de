//! The store conformance suite on every backend.

use std::sync::Arc;

use otpgate_server::store::{
    Durability, EmbeddedOptions, EmbeddedStore, MemoryStore, RedisOptions, RedisStore, Store,
};
use otpgate_test_support::conformance;
use otpgate_test_support::redis::TestRedis;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_conforms() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    conformance::run_all(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_store_conforms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(dir.path().join("state.redb")).expect("open"));
    conformance::run_all(store).await;
}

/// Answers after the write, the sync in the background: the same semantics.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_store_with_process_durability_conforms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = EmbeddedOptions {
        durability: Durability::Process,
        ..EmbeddedOptions::default()
    };
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open_with(dir.path().join("state.redb"), opts).expect("open"));
    conformance::run_all(store).await;
}

/// On a single server: a check and its budget in one script.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_store_conforms() {
    let redis = TestRedis::start();
    let prefix = conformance::fresh_id("t");
    let store = RedisStore::connect(&redis.url, &prefix)
        .await
        .expect("connect");
    assert!(
        store.checks_in_one_script(),
        "a single server was taken for a Cluster"
    );
    conformance::run_all(Arc::new(store)).await;
}

/// As on a Cluster: every script within one hash slot, the budget its own step.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_store_conforms_with_one_slot_per_script() {
    let redis = TestRedis::start();
    let prefix = conformance::fresh_id("t");
    let opts = RedisOptions {
        one_slot_per_script: true,
        ..RedisOptions::default()
    };
    let store = RedisStore::connect_with(&redis.url, &prefix, opts)
        .await
        .expect("connect");
    assert!(!store.checks_in_one_script());
    let store: Arc<dyn Store> = Arc::new(store);
    conformance::run_all(store).await;
}
