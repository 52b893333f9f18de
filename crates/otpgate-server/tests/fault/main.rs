//! The fault tests, one test binary: real `otpgate serve`, `otpgate emulator` and
//! `redis-server` processes killed with SIGKILL under load (`scripts/soak.sh` runs each
//! module on its own with `--test fault <module>`, ignored soak variants included).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod fault_concurrent_checks;
mod fault_crash_embedded;
mod fault_gateway_failover;
mod fault_redis_restart;
mod fault_two_instances_sends;
