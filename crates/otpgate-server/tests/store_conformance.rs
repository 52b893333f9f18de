//! The store conformance suite on every backend.

use std::sync::Arc;

use otpgate_server::store::{MemoryStore, Store, conformance};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_conforms() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    conformance::run_all(store).await;
}
