//! The store conformance suite on every backend.

use std::sync::Arc;

use otpgate_server::store::{EmbeddedStore, MemoryStore, RedisStore, Store, conformance};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_store_conforms() {
    let redis = conformance::TestRedis::start();
    let prefix = conformance::fresh_id("t");
    let store: Arc<dyn Store> = Arc::new(
        RedisStore::connect(&redis.url, &prefix)
            .await
            .expect("connect"),
    );
    conformance::run_all(store).await;
}
