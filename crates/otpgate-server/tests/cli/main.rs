//! The command line and the audit log, one test binary: `otpgate sms ...` and
//! `otpgate app-hash` run as the real binary, and the audit log (keyed chain, anchors).
#![allow(clippy::expect_used, missing_docs)]

mod audit_chain;
mod audit_keyed;
mod cli_keys;
mod cli_sms;
