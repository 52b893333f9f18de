//! Dev-only support for otpgate-server's integration tests (never published, never linked
//! into the product):
//!
//! - [`conformance`]: the suite every store backend must pass, and sample records.
//! - [`redis`]: `redis-server` for tests ([`redis::TestRedis`]: shared or spawned;
//!   [`redis::Redis`]: a private, restartable one with files).
//! - [`process`]: the real `otpgate` binary as a child: free ports, `otpgate serve`
//!   ([`process::Serve`], [`process::Server`]), `otpgate emulator` phones ([`process::Phone`]).
//! - [`http`]: bounded HTTP requests and answers for the process tests.
//! - [`fault`]: the fault tests' knobs (soak scaling), policy, receipt and audit checks.
//! - [`rig`]: in-process emulated phones and routers on loopback, for the gateway tests.
//!
//! This is test code: a failed step panics with a message (`unwrap`/`expect` are deliberate).
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod conformance;
pub mod fault;
pub mod http;
pub mod process;
pub mod redis;
pub mod rig;
