//! The issuer's HTTP API and `otpgate serve`, one test binary: the API over each store
//! (in process, `harness`), hostile input and policy gates, and the real binary started
//! with its config, TLS, a shared Redis and a restart on the embedded store.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[macro_use]
mod harness;

mod api_bad_input;
mod api_flow;
mod api_security;
mod bombing;
mod destinations;
mod idempotency;
mod integrations;
mod official_clients;
mod policy_gates;
mod serve_admin;
mod serve_audit_anchor;
mod serve_config;
mod serve_privacy;
mod serve_redis_two_instances;
mod serve_restart_embedded;
mod serve_safe_defaults;
mod serve_tls;
mod serve_trusted_proxies;
mod signals;
