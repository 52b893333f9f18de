//! In-process rigs for the gateway tests: emulated phones (`otpgate_server::emulator`) and
//! routers (a pool's webhook receiver, a fake provider) served on free loopback ports.

use std::sync::Arc;

use otpgate_server::emulator::{Emulator, Knobs};
use tokio::net::TcpListener;

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
