//! The client module in Node (wasm-bindgen-test's default runner): every export, the
//! `fetch` client against a fake and against a real `otpgate serve` (OTPGATE_TEST_SERVER).
#![cfg(target_arch = "wasm32")]
#![allow(missing_docs, unreachable_pub)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{code_of, obj, resolve};
use wasm_bindgen::JsValue;
use wasm_bindgen_test::*;

#[wasm_bindgen_test]
async fn receive_code_is_unsupported_outside_browsers() {
    let err = resolve(otpgate::receive_code(None))
        .await
        .expect_err("no WebOTP in Node");
    assert_eq!(code_of(&err), "webotp_unsupported");
    let err = resolve(otpgate::receive_code(Some(obj(&[(
        "signal",
        obj(&[("aborted", JsValue::FALSE)]),
    )]))))
    .await
    .expect_err("none");
    assert_eq!(code_of(&err), "webotp_unsupported");
}
