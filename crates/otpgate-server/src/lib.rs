//! The otpgate issuer and gateway bridge.
//!
//! # Layout
//! - [`admin`]: the operator console (`[admin] listen`) and its JSON API.
//! - [`cli`]: the `otpgate` command line (`serve`, `emulator`, `app-hash`, `sms ...`, `keys`,
//!   `audit verify`).
//! - [`config`]: the TOML configuration with environment overrides, and dev mode.
//! - [`api`]: the HTTP API (axum), its one error shape and the OpenAPI document.
//! - [`client_addr`]: the client's address behind `[server] trusted_proxies`.
//! - [`serve`]: assembly of the running issuer (`otpgate serve`).
//! - [`service`]: the verification flow: start, status, check, resend, cancel.
//! - [`policy`]: budgets, the destination allow-list and the proof-of-work gate.
//! - [`store`]: the state trait and its embedded (redb) and Redis backends.
//! - [`integrations`]: the Supabase Send SMS hook and the Twilio Verify-compatible API.
//! - [`gateway`]: the pool of Android phones and the adapters that reach them.
//! - [`emulator`]: a fake phone speaking the sms-gate.app API.
//! - [`keys`]: receipt signing keys and code keys.
//! - [`audit`]: the audit log, a keyed (HMAC) chain, and its anchors.
//! - [`fsperm`]: owner-only permissions of the data directory and its files.
//! - [`clock`], [`random`]: the injected time and randomness.
#![forbid(unsafe_code)]

pub mod admin;
pub mod api;
pub mod audit;
pub mod cli;
pub mod client_addr;
pub mod clock;
pub mod config;
pub mod destination;
pub mod emulator;
pub mod fsperm;
pub mod gateway;
pub mod integrations;
pub mod keys;
pub mod metrics;
pub mod policy;
pub mod random;
pub mod serve;
pub mod service;
pub mod store;
