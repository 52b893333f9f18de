//! The SMS gateway side, one test binary: the Android gateway emulator's API (and the
//! npm client against it), the gateway adapters and the pool with its webhooks.
#![allow(clippy::expect_used, missing_docs)]

mod emulator_api;
mod emulator_npm_client;
mod gateway_adapters;
mod gateway_pool;
mod gateway_token_auth;
mod gateways_onboarding;
mod phone_tls;
mod sns_moto;
mod webhook_binding;
