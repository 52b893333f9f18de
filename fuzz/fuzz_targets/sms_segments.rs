//! libFuzzer target: see `otpgate_fuzz::sms_segments` for the properties checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| otpgate_fuzz::sms_segments(data));
