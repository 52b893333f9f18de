//! The client module in headless Chromium (chromedriver): every export, the `fetch` client
//! against a fake and, across origins (CORS), against a real `otpgate serve`
//! (OTPGATE_TEST_SERVER), and WebOTP with a stubbed `OTPCredential`.
#![cfg(target_arch = "wasm32")]
#![allow(missing_docs, unreachable_pub)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{code_of, obj, resolve, text};
use js_sys::{Function, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// Replaces `navigator.credentials.get` with `answer` and defines (or removes) `OTPCredential`.
fn stub_webotp(present: bool, answer: impl Fn(JsValue) -> Promise + 'static) {
    let window = js_sys::global();
    if present {
        Reflect::set(
            &window,
            &"OTPCredential".into(),
            &Function::default().into(),
        )
        .expect("define");
    } else {
        Reflect::delete_property(
            &window.clone().unchecked_into::<js_sys::Object>(),
            &JsValue::from_str("OTPCredential"),
        )
        .expect("delete");
    }
    let credentials = common::get(&window, "navigator.credentials");
    let get = Closure::<dyn Fn(JsValue) -> Promise>::new(answer);
    Reflect::set(&credentials, &"get".into(), &get.into_js_value()).expect("stub get");
}

#[wasm_bindgen_test]
async fn receive_code_without_otp_credential_is_unsupported() {
    stub_webotp(false, |_| Promise::resolve(&JsValue::NULL));
    let err = resolve(otpgate::receive_code(None))
        .await
        .expect_err("desktop Linux Chromium has no WebOTP");
    assert_eq!(code_of(&err), "webotp_unsupported");
}

#[wasm_bindgen_test]
async fn receive_code_asks_for_an_sms_otp_and_returns_its_code() {
    stub_webotp(true, |options| {
        let transport = common::get(&options, "otp.transport");
        assert_eq!(common::stringify(&transport), r#"["sms"]"#);
        assert!(
            common::get(&options, "signal").is_object(),
            "the signal is passed on"
        );
        Promise::resolve(&obj(&[("type", "otp".into()), ("code", "123456".into())]))
    });
    let controller = web_sys_abort_controller();
    let signal = common::get(&controller, "signal");
    let code = resolve(otpgate::receive_code(Some(obj(&[("signal", signal)]))))
        .await
        .expect("code");
    assert_eq!(code.as_string().as_deref(), Some("123456"));
}

/// What `receive_code` rejects with when the browser's WebOTP request fails with an error
/// named `name`.
async fn refused_with(name: &'static str, message: &'static str) -> JsValue {
    stub_webotp(true, move |_| {
        let e = js_sys::Error::new(message);
        e.set_name(name);
        Promise::reject(&e.into())
    });
    resolve(otpgate::receive_code(None)).await.expect_err(name)
}

#[wasm_bindgen_test]
async fn receive_code_maps_abort_and_refusal() {
    let err = refused_with("AbortError", "The operation was aborted.").await;
    assert_eq!(code_of(&err), "aborted");
    let err = refused_with("InvalidStateError", "no user activation").await;
    assert_eq!(code_of(&err), "webotp_failed");
    assert!(text(&err, "message").contains("InvalidStateError"));
    stub_webotp(false, |_| Promise::resolve(&JsValue::NULL));
}

fn web_sys_abort_controller() -> JsValue {
    let ctor: Function = Reflect::get(&js_sys::global(), &"AbortController".into())
        .expect("ctor")
        .dyn_into()
        .expect("fn");
    Reflect::construct(&ctor, &js_sys::Array::new()).expect("controller")
}
