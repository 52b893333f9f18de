//! libFuzzer target: see `otpgate_fuzz::webhook_verify` for the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| otpgate_fuzz::webhook_verify(data));
