//! The stores, one test binary: the conformance suite on every backend, the embedded
//! store's crash safety (a re-executed child killed mid-stream), Redis specifics.
#![allow(clippy::expect_used, missing_docs)]

mod store_conformance;
mod store_crash;
mod store_redis;
mod store_redis_modes;
