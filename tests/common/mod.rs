//! Tests shared by `tests/node.rs` (Node) and `tests/web.rs` (headless Chromium): every
//! export through its Rust entry point, with JS values in and out, plus the whole flow against
//! a real `otpgate serve` (dev mode) named by `OTPGATE_TEST_SERVER` at build time.

use std::cell::RefCell;
use std::rc::Rc;

use ed25519_dalek::SigningKey;
use js_sys::{Array, Function, JSON, Object, Promise, Reflect, Uint8Array};
use otpgate::OtpClient;
use otpgate_core::receipt::{self, Claims, Jwk, Jwks};
use otpgate_core::rng::{RngUnavailable, SecureRandom};
use otpgate_core::{pow, webhook};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

const DER: &[u8] =
    include_bytes!("../../crates/otpgate-core/src/sms/testdata/rn-template-debug.der");
const PEM: &str = include_str!("../../crates/otpgate-core/src/sms/testdata/rn-template-debug.pem");

/// The issuer the integration tests use. Required: a missing server is a failure, not a skip.
#[allow(clippy::option_env_unwrap)] // on purpose: without a server these tests must fail
pub fn server() -> &'static str {
    option_env!("OTPGATE_TEST_SERVER")
        .expect("OTPGATE_TEST_SERVER must name a running `otpgate serve` (dev mode); scripts/test.sh sets it")
}

pub fn get(value: &JsValue, path: &str) -> JsValue {
    path.split('.').fold(value.clone(), |v, key| {
        Reflect::get(&v, &key.into()).expect("object")
    })
}

pub fn text(value: &JsValue, path: &str) -> String {
    get(value, path)
        .as_string()
        .unwrap_or_else(|| panic!("{path} is not a string in {}", stringify(value)))
}

pub fn stringify(value: &JsValue) -> String {
    JSON::stringify(value)
        .ok()
        .and_then(|s| s.as_string())
        .unwrap_or_else(|| format!("{value:?}"))
}

pub fn obj(entries: &[(&str, JsValue)]) -> JsValue {
    let o = Object::new();
    for (k, v) in entries {
        Reflect::set(&o, &(*k).into(), v).expect("set");
    }
    o.into()
}

/// The `code` of an `OtpError`, checking that it is one.
pub fn code_of(err: &JsValue) -> String {
    assert!(
        err.is_instance_of::<js_sys::Error>(),
        "not an Error: {err:?}"
    );
    assert_eq!(text(err, "name"), "OtpError");
    text(err, "code")
}

/// Asserts that the client's error `err` carries the HTTP `status`.
fn assert_status(err: &JsValue, status: f64) {
    assert_eq!(
        get(err, "status").as_f64(),
        Some(status),
        "{}",
        stringify(err)
    );
}

pub async fn resolve(p: Promise) -> Result<JsValue, JsValue> {
    JsFuture::from(p).await
}

struct Fixed(u8);
impl SecureRandom for Fixed {
    fn fill(&mut self, dest: &mut [u8]) -> Result<(), RngUnavailable> {
        dest.fill(self.0);
        Ok(())
    }
}

// ---------------------------------------------------------------- SMS

#[wasm_bindgen_test]
fn parse_sms_matches_the_cli_shape() {
    let cases = [
        (
            "Your code is 123456\n@shop.example.com #123456",
            r#"{"code":"123456","webotp":{"host":"shop.example.com","code":"123456","iframe_host":null},"app_hash":null}"#,
        ),
        (
            "Code 4821\n@top.example #4821 @pay.example",
            r#"{"code":"4821","webotp":{"host":"top.example","code":"4821","iframe_host":"pay.example"},"app_hash":null}"#,
        ),
        // A trailing newline means no origin-bound code (WICG: the last line is empty).
        (
            "Hi\n@shop.example.com #123456\n",
            r#"{"code":"123456","webotp":null,"app_hash":null}"#,
        ),
        ("hello", r#"{"code":null,"webotp":null,"app_hash":null}"#),
    ];
    for (sms, expected) in cases {
        let got = stringify(&otpgate::parse_sms(sms.into()).expect("parses"));
        let got: JsValue = JSON::parse(&got).expect("json");
        let want: JsValue = JSON::parse(expected).expect("json");
        assert_eq!(stringify(&got), stringify(&want), "{sms:?}");
    }
}

#[wasm_bindgen_test]
fn parse_sms_escapes_like_json_and_equals_the_core() {
    let nasty = [
        "@a.example #a\"b\\c\u{1}d\u{7f}é😀",
        "Code \"x\"\t9981\n@b.example #9981 @c.example",
        "\u{0}\u{1f}",
    ];
    for sms in nasty {
        let core = otpgate_core::sms::parse(sms);
        let js = otpgate::parse_sms(sms.into()).expect("parses");
        assert_eq!(get(&js, "code").as_string(), core.code, "{sms:?}");
        assert_eq!(get(&js, "app_hash").as_string(), core.app_hash, "{sms:?}");
        match core.webotp {
            Some(w) => {
                assert_eq!(text(&js, "webotp.code"), w.code, "{sms:?}");
                assert_eq!(text(&js, "webotp.host"), w.host);
                assert_eq!(get(&js, "webotp.iframe_host").as_string(), w.iframe_host);
            }
            None => assert!(get(&js, "webotp").is_null()),
        }
    }
}

#[wasm_bindgen_test]
fn parse_sms_reports_the_app_hash_and_refuses_non_strings() {
    let parsed =
        otpgate::parse_sms("<#> Your code is 123456\n@shop.example #123456 kFUwfusCq/+".into())
            .expect("parses");
    assert_eq!(text(&parsed, "app_hash"), "kFUwfusCq/+");
    assert_eq!(text(&parsed, "webotp.code"), "123456");
    let err = otpgate::parse_sms(JsValue::from_f64(5.0)).expect_err("not a string");
    assert_eq!(code_of(&err), "invalid_argument");
}

#[wasm_bindgen_test]
fn sms_segments_counts_units() {
    let s = otpgate::sms_segments("hello".into()).expect("ok");
    assert_eq!(
        stringify(&s),
        r#"{"encoding":"GSM-7","segments":1,"units":5}"#
    );
    let euro = otpgate::sms_segments("€".into()).expect("ok");
    assert_eq!(
        get(&euro, "units").as_f64(),
        Some(2.0),
        "extension characters count 2"
    );
    let long = otpgate::sms_segments("Привет".repeat(12).into()).expect("ok");
    assert_eq!(text(&long, "encoding"), "UCS-2");
    assert_eq!(get(&long, "units").as_f64(), Some(72.0));
    assert_eq!(get(&long, "segments").as_f64(), Some(2.0));
}

#[wasm_bindgen_test]
fn compose_sms_round_trips_through_parse() {
    let opts = obj(&[
        ("app", "Shop".into()),
        ("code", "482913".into()),
        ("origin", "shop.example.com".into()),
        ("appHash", "kFUwfusCq/+".into()),
    ]);
    let composed = otpgate::compose_sms(opts).expect("composes");
    assert_eq!(get(&composed, "segments").as_f64(), Some(1.0));
    assert_eq!(text(&composed, "encoding"), "GSM-7");
    let parsed = otpgate::parse_sms(get(&composed, "text")).expect("parses");
    assert_eq!(text(&parsed, "webotp.host"), "shop.example.com");
    assert_eq!(text(&parsed, "code"), "482913");
    assert_eq!(text(&parsed, "app_hash"), "kFUwfusCq/+");

    let bad = otpgate::compose_sms(obj(&[("app", "Shop".into()), ("code", "12".into())]))
        .expect_err("short code");
    assert_eq!(code_of(&bad), "bad_code");
    let bad = otpgate::compose_sms(obj(&[("app", "Shop".into())])).expect_err("no code");
    assert_eq!(code_of(&bad), "invalid_argument");
    let layout = obj(&[
        ("app", "Shop".into()),
        ("code", "123456".into()),
        ("layout", "sideways".into()),
    ]);
    assert_eq!(
        code_of(&otpgate::compose_sms(layout).expect_err("layout")),
        "invalid_argument"
    );
}

#[wasm_bindgen_test]
fn app_hash_from_der_and_pem() {
    let der = Uint8Array::from(DER);
    assert_eq!(
        otpgate::app_hash("com.awesomeproject".into(), der.into()).expect("der"),
        "kFUwfusCq/+"
    );
    assert_eq!(
        otpgate::app_hash("com.awesomeproject".into(), PEM.into()).expect("pem"),
        "kFUwfusCq/+"
    );
    let err = otpgate::app_hash(
        "com.awesomeproject".into(),
        Uint8Array::from(&b"junk"[..]).into(),
    )
    .expect_err("bad");
    assert_eq!(code_of(&err), "bad_certificate");
    let err =
        otpgate::app_hash("nodots".into(), Uint8Array::from(DER).into()).expect_err("bad package");
    assert_eq!(code_of(&err), "bad_package");
    let err = otpgate::app_hash("com.a.b".into(), JsValue::from_f64(1.0)).expect_err("not bytes");
    assert_eq!(code_of(&err), "invalid_argument");
}

#[wasm_bindgen_test]
fn verify_app_hash_checks_tokens() {
    let sms = "<#> Your code is 123456\n@shop.example #123456 kFUwfusCq/+";
    assert_eq!(
        otpgate::verify_app_hash(sms.into(), "kFUwfusCq/+".into()),
        Ok(true)
    );
    assert_eq!(
        otpgate::verify_app_hash(sms.into(), "AAAAAAAAAAA".into()),
        Ok(false)
    );
    let err = otpgate::verify_app_hash(sms.into(), "short".into()).expect_err("malformed");
    assert_eq!(code_of(&err), "invalid_argument");
    // As the package README says: a whitespace-separated token anywhere (the hash_line
    // layout puts it before the origin-bound line, which must stay last), never a substring.
    let hash_line = "Your code is 123456\nkFUwfusCq/+\n@shop.example #123456";
    assert_eq!(
        otpgate::verify_app_hash(hash_line.into(), "kFUwfusCq/+".into()),
        Ok(true)
    );
    for inside in [
        "Your code is 123456 xkFUwfusCq/+",
        "Your code is 123456 kFUwfusCq/+x",
        "@shop.example #123456kFUwfusCq/+",
    ] {
        assert_eq!(
            otpgate::verify_app_hash(inside.into(), "kFUwfusCq/+".into()),
            Ok(false),
            "{inside}"
        );
    }
}

// ---------------------------------------------------------------- receipts

fn claims() -> Claims {
    Claims {
        iss: "https://otp.example.com".into(),
        aud: "shop".into(),
        sub: "v_AAAAAAAAAAAAAAAAAAAAAA".into(),
        jti: "v_AAAAAAAAAAAAAAAAAAAAAA".into(),
        phone_number: "+447400900123".into(),
        phone_number_verified: true,
        iat: 1_700_000_000,
        exp: 1_700_000_600,
    }
}

fn jwks_js(key: &SigningKey) -> JsValue {
    let jwks = Jwks {
        keys: vec![Jwk::ed25519("k1", &key.verifying_key())],
    };
    let keys: Array = jwks
        .keys
        .iter()
        .map(|k| {
            obj(&[
                ("kty", k.kty.as_str().into()),
                ("crv", k.crv.as_str().into()),
                ("x", k.x.as_str().into()),
                ("kid", k.kid.as_str().into()),
            ])
        })
        .collect();
    obj(&[("keys", keys.into())])
}

fn expect(now: f64) -> JsValue {
    obj(&[
        ("audience", "shop".into()),
        ("issuer", "https://otp.example.com".into()),
        ("now", now.into()),
    ])
}

#[wasm_bindgen_test]
fn verify_receipt_accepts_a_good_receipt_and_refuses_the_rest() {
    let key = SigningKey::from_bytes(&[7; 32]);
    let jwt = receipt::sign(&key, "k1", &claims());
    let jwks = jwks_js(&key);
    let got = otpgate::verify_receipt(jwt.clone().into(), jwks.clone(), expect(1_700_000_100.0))
        .expect("valid");
    assert_eq!(text(&got, "phone_number"), "+447400900123");
    assert_eq!(get(&got, "phone_number_verified"), JsValue::TRUE);
    assert_eq!(get(&got, "exp").as_f64(), Some(1_700_000_600.0));
    // The JWKS as JSON text works too.
    let as_text = JsValue::from(stringify(&jwks));
    assert!(otpgate::verify_receipt(jwt.clone().into(), as_text, expect(1_700_000_100.0)).is_ok());

    let err = |jwt: &str, jwks: &JsValue, opts: JsValue| {
        code_of(&otpgate::verify_receipt(jwt.into(), jwks.clone(), opts).expect_err("refused"))
    };
    assert_eq!(err(&jwt, &jwks, expect(1_700_000_601.0)), "receipt_expired");
    let wrong_aud = obj(&[
        ("audience", "bank".into()),
        ("issuer", "https://otp.example.com".into()),
        ("now", 1_700_000_100.0.into()),
    ]);
    assert_eq!(err(&jwt, &jwks, wrong_aud), "receipt_wrong_audience");
    let other = jwks_js(&SigningKey::from_bytes(&[8; 32]));
    assert_eq!(
        err(&jwt, &other, expect(1_700_000_100.0)),
        "receipt_bad_signature"
    );
    let mut tampered = claims();
    tampered.phone_number = "+447400900999".into();
    let forged = receipt::sign(&SigningKey::from_bytes(&[9; 32]), "k1", &tampered);
    assert_eq!(
        err(&forged, &jwks, expect(1_700_000_100.0)),
        "receipt_bad_signature"
    );
    assert_eq!(
        err("a.b", &jwks, expect(1_700_000_100.0)),
        "receipt_malformed"
    );
    // Options and JWKS are validated.
    assert_eq!(
        err(&jwt, &jwks, obj(&[("issuer", "x".into())])),
        "invalid_argument"
    );
    assert_eq!(
        err(&jwt, &obj(&[("keys", 3.into())]), expect(1.0)),
        "invalid_argument"
    );
    let leeway = obj(&[
        ("audience", "shop".into()),
        ("issuer", "https://otp.example.com".into()),
        ("leeway", (-1).into()),
    ]);
    assert_eq!(err(&jwt, &jwks, leeway), "invalid_argument");
}

/// A JWT with this header and payload JSON, signed with `key` (the issuer's key: only the
/// JSON decoding is under test).
fn signed(key: &SigningKey, header: &str, payload: &str) -> String {
    use ed25519_dalek::Signer as _;
    let b64 = |b: &[u8]| {
        let bin: String = b.iter().map(|&c| char::from(c)).collect();
        let s = call_global("btoa", bin);
        s.trim_end_matches('=').replace('+', "-").replace('/', "_")
    };
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let sig = key.sign(input.as_bytes());
    format!("{input}.{}", b64(&sig.to_bytes()))
}

#[wasm_bindgen_test]
fn verify_receipt_decodes_the_json_strictly() {
    let key = SigningKey::from_bytes(&[7; 32]);
    let jwks = jwks_js(&key);
    let good = r#"{"iss":"https://otp.example.com","aud":"shop","sub":"v_1","jti":"v_1","phone_number":"+447400900123","phone_number_verified":true,"iat":1700000000,"exp":1700000600}"#;
    let err = |jwt: String| {
        code_of(
            &otpgate::verify_receipt(jwt.into(), jwks.clone(), expect(1_700_000_100.0))
                .expect_err("refused"),
        )
    };
    assert!(
        otpgate::verify_receipt(
            signed(&key, r#"{"alg":"EdDSA","kid":"k1"}"#, good).into(),
            jwks.clone(),
            expect(1_700_000_100.0)
        )
        .is_ok()
    );
    for alg in ["none", "HS256", "eddsa"] {
        let header = format!(r#"{{"alg":"{alg}","kid":"k1"}}"#);
        assert_eq!(
            err(signed(&key, &header, good)),
            "receipt_unsupported_alg",
            "{alg}"
        );
    }
    assert_eq!(
        err(signed(
            &key,
            r#"{"alg":"EdDSA","kid":"k1","typ":"JWS"}"#,
            good
        )),
        "receipt_malformed"
    );
    assert_eq!(
        err(signed(&key, r#"{"alg":"EdDSA","kid":7}"#, good)),
        "receipt_malformed"
    );
    assert_eq!(err(signed(&key, r#"["EdDSA"]"#, good)), "receipt_malformed");
    assert_eq!(
        err(signed(&key, r#"{"alg":"EdDSA"}"#, good)),
        "receipt_unknown_key"
    );
    let h = r#"{"alg":"EdDSA","kid":"k1"}"#;
    for bad in [
        good.replace("true", "\"true\""),
        good.replace("1700000600", "1700000600.5"),
        good.replace(r#""aud":"shop","#, ""),
        good.replace(r#""+447400900123""#, "447400900123"),
        "not json".to_owned(),
    ] {
        assert_eq!(err(signed(&key, h, &bad)), "receipt_malformed", "{bad}");
    }
    let unverified = good.replace("true", "false");
    assert_eq!(err(signed(&key, h, &unverified)), "receipt_not_verified");
}

#[wasm_bindgen_test]
fn verify_receipt_defaults_now_to_the_js_clock() {
    let key = SigningKey::from_bytes(&[7; 32]);
    let now = (js_sys::Date::now() / 1000.0) as i64;
    let fresh = Claims {
        iat: now - 5,
        exp: now + 600,
        ..claims()
    };
    let jwt = receipt::sign(&key, "k1", &fresh);
    let opts = obj(&[
        ("audience", "shop".into()),
        ("issuer", "https://otp.example.com".into()),
    ]);
    assert!(otpgate::verify_receipt(jwt.into(), jwks_js(&key), opts.clone()).is_ok());
    let old = receipt::sign(&key, "k1", &claims());
    assert_eq!(
        code_of(&otpgate::verify_receipt(old.into(), jwks_js(&key), opts).expect_err("old")),
        "receipt_expired"
    );
}

// ---------------------------------------------------------------- webhooks

#[wasm_bindgen_test]
fn verify_webhook_signature_checks_body_time_and_key() {
    let body = r#"{"event":"sms:delivered","payload":{"messageId":"m1"}}"#;
    let sig = webhook::sign_smsgate("s3cret", body.as_bytes(), "1700000000");
    let opts = |now: f64| obj(&[("now", now.into())]);
    let ok = otpgate::verify_webhook_signature(
        "s3cret".into(),
        body.into(),
        "1700000000".into(),
        sig.clone().into(),
        Some(opts(1_700_000_100.0)),
    );
    assert_eq!(ok, Ok(true));
    let bytes = Uint8Array::from(body.as_bytes());
    let ok = otpgate::verify_webhook_signature(
        "s3cret".into(),
        bytes.into(),
        1_700_000_000.0.into(),
        sig.clone().into(),
        Some(opts(1_700_000_000.0)),
    );
    assert_eq!(
        ok,
        Ok(true),
        "a Uint8Array body and a numeric timestamp work"
    );

    let err = |key: &str, body: &str, ts: JsValue, sig: JsValue, o: JsValue| {
        code_of(
            &otpgate::verify_webhook_signature(
                key.into(),
                body.into(),
                ts,
                sig,
                Some(o).filter(|o: &JsValue| !o.is_undefined()),
            )
            .expect_err("refused"),
        )
    };
    let tampered = body.replace("m1", "m2");
    // One change at a time from the valid call (key, body, timestamp, clock): each is refused
    // with its code.
    let (ts, now) = ("1700000000", 1_700_000_000.0);
    let cases: [(&str, &str, JsValue, f64, &str); 5] = [
        ("s3cret", &tampered, ts.into(), now, "bad_signature"),
        ("other", body, ts.into(), now, "bad_signature"),
        ("s3cret", body, ts.into(), now + 301.0, "stale_timestamp"),
        ("s3cret", body, JsValue::NULL, now, "missing_signature"),
        ("s3cret", body, "17e8".into(), now, "bad_timestamp"),
    ];
    for (key, body, ts, now, code) in cases {
        assert_eq!(err(key, body, ts, sig.clone().into(), opts(now)), code);
    }
    let window = obj(&[("now", 1_700_000_100.0.into()), ("windowSecs", 10.into())]);
    assert_eq!(
        err("s3cret", body, "1700000000".into(), sig.into(), window),
        "stale_timestamp"
    );
    // Default clock: a signature from 2023 is stale today.
    let old = webhook::sign_smsgate("s3cret", body.as_bytes(), "1700000000");
    assert_eq!(
        err(
            "s3cret",
            body,
            "1700000000".into(),
            old.into(),
            JsValue::UNDEFINED
        ),
        "stale_timestamp"
    );
}

// ---------------------------------------------------------------- proof of work

#[wasm_bindgen_test]
fn solve_pow_finds_a_nonce_the_issuer_accepts() {
    let key = b"pow key for the client tests....";
    let challenge =
        pow::issue(key, "demo|+447400900123", 12, 2_000_000_000, &mut Fixed(3)).expect("issue");
    let nonce = otpgate::solve_pow(challenge.clone().into(), None).expect("solved");
    assert_eq!(
        pow::verify(
            key,
            "demo|+447400900123",
            &challenge,
            nonce as u64,
            1_700_000_000
        ),
        Ok(12)
    );

    assert_eq!(
        code_of(&otpgate::solve_pow("nope".into(), None).expect_err("malformed")),
        "pow_malformed"
    );
    let hard = pow::issue(key, "b", 20, 2_000_000_000, &mut Fixed(4)).expect("issue");
    assert!(pow::work(&hard, 0) < 20, "the fixture's nonce 0 must fail");
    let err = otpgate::solve_pow(hard.into(), Some(1.into())).expect_err("one try is not enough");
    assert_eq!(code_of(&err), "pow_unsolved");
    assert_eq!(
        code_of(
            &otpgate::solve_pow("v1.1.1.a.b".into(), Some(0.5.into())).expect_err("bad maxTries")
        ),
        "invalid_argument"
    );
}

// ---------------------------------------------------------------- WebOTP

#[wasm_bindgen_test]
async fn receive_code_with_an_aborted_signal_rejects_aborted() {
    let signal = obj(&[("aborted", JsValue::TRUE)]);
    let err = resolve(otpgate::receive_code(Some(obj(&[("signal", signal)]))))
        .await
        .expect_err("aborted");
    assert_eq!(code_of(&err), "aborted");
}

// ---------------------------------------------------------------- OtpClient with a fake fetch

/// One answer of the fake `fetch`: status (0: reject), body, headers.
pub type Answer = (u16, String, Vec<(&'static str, String)>);

/// What the fake `fetch` saw: (method, url, body, `Idempotency-Key` header).
pub type Seen = Rc<RefCell<Vec<(String, String, Option<String>, Option<String>)>>>;

/// A `fetch` answering each call with the next `(status, body, headers)` (a real `Response`),
/// or rejecting with a `TypeError` when `status` is 0; `check` may look at the request body.
/// It is called as the client calls a `fetch` given in its options: with one `Request`.
pub fn fake_fetch(
    answers: Vec<Answer>,
    check: impl Fn(usize, Option<&str>) + 'static,
) -> (Function, Seen) {
    let seen: Seen = Rc::default();
    let log = Rc::clone(&seen);
    let answers = Rc::new(RefCell::new(answers.into_iter()));
    let check = Rc::new(check);
    let f = Closure::<dyn FnMut(JsValue) -> JsValue>::new(move |request: JsValue| {
        let (log, answers, check) = (Rc::clone(&log), Rc::clone(&answers), Rc::clone(&check));
        let future = async move {
            let method = text(&request, "method");
            let url = text(&request, "url");
            let headers = get(&request, "headers");
            let header = |name: &str| -> Option<String> {
                let get_fn: Function = get(&headers, "get").dyn_into().expect("fn");
                get_fn
                    .call1(&headers, &name.into())
                    .expect("get")
                    .as_string()
            };
            let key = header("idempotency-key");
            let text_fn: Function = get(&request, "text").dyn_into().expect("fn");
            let body = resolve(
                text_fn
                    .call0(&request)
                    .expect("text")
                    .dyn_into()
                    .expect("p"),
            )
            .await
            .expect("body")
            .as_string()
            .filter(|b| !b.is_empty());
            let n = log.borrow().len();
            check(n, body.as_deref());
            log.borrow_mut().push((method, url, body, key));
            let (status, body, headers) = answers.borrow_mut().next().expect("no more answers");
            if status == 0 {
                return Err(js_sys::TypeError::new("fetch failed").into());
            }
            let h = Object::new();
            for (k, v) in headers {
                Reflect::set(&h, &k.into(), &v.into()).expect("set");
            }
            let ctor: Function = Reflect::get(&js_sys::global(), &"Response".into())
                .expect("Response")
                .dyn_into()
                .expect("fn");
            let init = obj(&[("status", status.into()), ("headers", h.into())]);
            Ok(Reflect::construct(&ctor, &Array::of2(&body.into(), &init)).expect("Response"))
        };
        wasm_bindgen_futures::future_to_promise(future).into()
    });
    (f.into_js_value().unchecked_into(), seen)
}

fn view_json(id: &str, state: &str, status: &str) -> String {
    format!(
        r#"{{"id":"{id}","status":"{status}","expires_at":"2030-01-01T00:00:00Z","resend_at":"2030-01-01T00:00:00Z","attempts_left":5,"delivery":{{"state":"{state}"}}}}"#
    )
}

fn client_with(fetch: Function) -> OtpClient {
    OtpClient::new(
        "https://otp.example.com/".into(),
        Some(obj(&[
            ("fetch", fetch.into()),
            ("app", "demo".into()),
            ("apiKey", "k3y".into()),
        ])),
    )
    .expect("client")
}

#[wasm_bindgen_test]
fn otp_client_validates_its_arguments() {
    let bad = |url: &str| code_of(&OtpClient::new(url.into(), None).expect_err("refused"));
    assert_eq!(bad("ftp://x"), "invalid_argument");
    assert_eq!(bad("https://x/?q=1"), "invalid_argument");
    let err =
        OtpClient::new("https://x".into(), Some(obj(&[("fetch", 1.into())]))).expect_err("fetch");
    assert_eq!(code_of(&err), "invalid_argument");
    assert!(
        OtpClient::new("https://x".into(), None).is_ok(),
        "the global fetch is found"
    );
}

#[wasm_bindgen_test]
async fn otp_client_start_sends_the_wire_request_and_returns_the_view() {
    let (fetch, seen) = fake_fetch(
        vec![(201, view_json("v_1", "queued", "pending"), vec![])],
        |_, _| {},
    );
    let client = client_with(fetch);
    let v = resolve(client.start(
        "+447400900123".into(),
        Some(obj(&[("locale", "pt-BR".into())])),
    ))
    .await
    .expect("started");
    assert_eq!(text(&v, "id"), "v_1");
    assert_eq!(text(&v, "delivery.state"), "queued");
    let seen = seen.borrow();
    assert_eq!(seen[0].0, "POST");
    assert_eq!(seen[0].1, "https://otp.example.com/v1/verifications");
    assert_eq!(
        seen[0].2.as_deref(),
        Some(r#"{"phone":"+447400900123","app":"demo","locale":"pt-BR"}"#)
    );
}

#[wasm_bindgen_test]
async fn otp_client_solves_pow_required_and_retries_once() {
    let key = b"pow key for the client tests....";
    let challenge =
        pow::issue(key, "demo|+447400900123", 10, 2_000_000_000, &mut Fixed(5)).expect("issue");
    let body = format!(
        r#"{{"error":{{"code":"pow_required","message":"solve it","challenge":"{challenge}"}}}}"#
    );
    let expected = challenge.clone();
    let (fetch, seen) = fake_fetch(
        vec![
            (428, body, vec![]),
            (201, view_json("v_2", "queued", "pending"), vec![]),
        ],
        move |n, body| {
            if n == 1 {
                let sent = JSON::parse(body.expect("body")).expect("json");
                assert_eq!(text(&sent, "pow.challenge"), expected);
                let nonce = get(&sent, "pow.nonce").as_f64().expect("nonce") as u64;
                assert_eq!(
                    pow::verify(key, "demo|+447400900123", &expected, nonce, 1_700_000_000),
                    Ok(10)
                );
            }
        },
    );
    let v = resolve(client_with(fetch).start("+447400900123".into(), None))
        .await
        .expect("started after pow");
    assert_eq!(text(&v, "id"), "v_2");
    let seen = seen.borrow();
    assert_eq!(seen.len(), 2);
    assert!(seen[0].3.is_some(), "the start carries an Idempotency-Key");
    assert_eq!(seen[0].3, seen[1].3, "the solved retry keeps it");
}

#[wasm_bindgen_test]
async fn otp_client_retries_a_lost_start_once_with_the_same_key() {
    let (fetch, seen) = fake_fetch(
        vec![
            (0, String::new(), vec![]),
            (201, view_json("v_7", "queued", "pending"), vec![]),
            (0, String::new(), vec![]),
            (0, String::new(), vec![]),
            (0, String::new(), vec![]),
            (200, view_json("v_7", "queued", "pending"), vec![]),
        ],
        |_, _| {},
    );
    let client = client_with(fetch);
    let v = resolve(client.start("+447400900123".into(), None))
        .await
        .expect("the retry's answer");
    assert_eq!(text(&v, "id"), "v_7");
    // Twice is the limit: a second network error is the caller's.
    let err = resolve(client.start("+447400900123".into(), None))
        .await
        .expect_err("lost twice");
    assert_eq!(code_of(&err), "network_error");
    let v = resolve(client.resend("v_7".into()))
        .await
        .expect("resend retried");
    assert_eq!(text(&v, "id"), "v_7");

    let seen = seen.borrow();
    assert_eq!(seen.len(), 6);
    let key = |i: usize| seen[i].3.clone().expect("every start and resend has a key");
    for (a, b) in [(0, 1), (2, 3), (4, 5)] {
        assert_eq!(key(a), key(b), "a retry keeps its key");
        assert_eq!(seen[a].2, seen[b].2, "and its body");
        assert_eq!(seen[a].1, seen[b].1);
    }
    assert_ne!(key(0), key(2), "each call draws its own key");
    assert_ne!(key(2), key(4));
    for i in [0, 2, 4] {
        let k = key(i);
        assert_eq!(k.len(), 22, "{k}");
        assert!(
            k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{k}"
        );
    }
    assert_eq!(
        seen[4].1,
        "https://otp.example.com/v1/verifications/v_7/resend"
    );
}

#[wasm_bindgen_test]
async fn otp_client_maps_http_errors_to_stable_codes() {
    let answers = vec![
        (
            429,
            r#"{"error":{"code":"rate_limited","message":"slow down","request_id":"r1"}}"#
                .to_owned(),
            vec![("retry-after", "42".to_owned())],
        ),
        (
            422,
            r#"{"error":{"code":"wrong_code","message":"no","attempts_left":3}}"#.to_owned(),
            vec![],
        ),
        (502, "<html>bad gateway</html>".to_owned(), vec![]),
        (0, String::new(), vec![]),
        (200, r#"{"id":"v_3"}"#.to_owned(), vec![]),
    ];
    let (fetch, seen) = fake_fetch(answers, |_, _| {});
    let client = client_with(fetch);

    let err = resolve(client.resend("v_3".into())).await.expect_err("429");
    assert_eq!(code_of(&err), "rate_limited");
    assert_eq!(get(&err, "status").as_f64(), Some(429.0));
    assert_eq!(get(&err, "retryAfter").as_f64(), Some(42.0));
    assert_eq!(text(&err, "requestId"), "r1");

    let err = resolve(client.check("v_3".into(), "000000".into()))
        .await
        .expect_err("422");
    assert_eq!(code_of(&err), "wrong_code");
    assert_eq!(get(&err, "attemptsLeft").as_f64(), Some(3.0));

    let err = resolve(client.status("v_3".into())).await.expect_err("502");
    assert_eq!(code_of(&err), "server_error");
    let err = resolve(client.status("v_3".into()))
        .await
        .expect_err("network");
    assert_eq!(code_of(&err), "network_error");
    let err = resolve(client.status("v_3".into()))
        .await
        .expect_err("incomplete view");
    assert_eq!(code_of(&err), "bad_response");

    // Ids that could leave /v1/verifications/ never reach fetch.
    let err = resolve(client.status("../healthz".into()))
        .await
        .expect_err("bad id");
    assert_eq!(code_of(&err), "invalid_argument");
    let seen = seen.borrow();
    assert_eq!(seen.len(), 5);
    assert_eq!(seen[0].0, "POST");
    assert_eq!(
        seen[0].1,
        "https://otp.example.com/v1/verifications/v_3/resend"
    );
    assert_eq!(seen[1].2.as_deref(), Some(r#"{"code":"000000"}"#));
    assert!(seen[0].3.is_some(), "a resend carries an Idempotency-Key");
    assert!(
        seen[1..].iter().all(|r| r.3.is_none()),
        "checks and reads send none"
    );
}

#[wasm_bindgen_test]
async fn otp_client_wait_for_delivery_polls_until_settled() {
    let answers = vec![
        (200, view_json("v_4", "queued", "pending"), vec![]),
        (200, view_json("v_4", "sent", "pending"), vec![]),
        (200, view_json("v_4", "delivered", "pending"), vec![]),
    ];
    let (fetch, seen) = fake_fetch(answers, |_, _| {});
    let v = resolve(
        client_with(fetch)
            .wait_for_delivery("v_4".into(), Some(obj(&[("intervalMs", 250.into())]))),
    )
    .await
    .expect("settled");
    assert_eq!(text(&v, "delivery.state"), "delivered");
    assert_eq!(seen.borrow().len(), 3);

    let (fetch, _) = fake_fetch(
        vec![(200, view_json("v_5", "queued", "pending"), vec![])],
        |_, _| {},
    );
    let signal = obj(&[("aborted", JsValue::TRUE)]);
    let err = resolve(
        client_with(fetch).wait_for_delivery("v_5".into(), Some(obj(&[("signal", signal)]))),
    )
    .await
    .expect_err("aborted");
    assert_eq!(code_of(&err), "aborted");
}

// ---------------------------------------------------------------- a real issuer

async fn fetch_json(url: &str) -> JsValue {
    let fetch: Function = Reflect::get(&js_sys::global(), &"fetch".into())
        .expect("fetch")
        .dyn_into()
        .expect("fn");
    let response = resolve(
        fetch
            .call1(&JsValue::UNDEFINED, &url.into())
            .expect("call")
            .dyn_into()
            .expect("promise"),
    )
    .await
    .expect("fetched");
    assert_eq!(get(&response, "status").as_f64(), Some(200.0), "GET {url}");
    let json: Function = get(&response, "json").dyn_into().expect("fn");
    resolve(
        json.call0(&response)
            .expect("json")
            .dyn_into()
            .expect("promise"),
    )
    .await
    .expect("json body")
}

/// A fresh valid UK mobile number (+44 7400 9xxxxx), so budgets of earlier runs do not apply.
fn random_phone() -> String {
    format!("+4474009{:05}", (js_sys::Math::random() * 100_000.0) as u32)
}

/// The texts of the SMS the dev-mode emulated phone "sent" to `phone` so far.
async fn sms_to(base: &str, phone: &str) -> Vec<String> {
    let url = format!(
        "{base}/_emulator/messages?phone={}",
        js_sys::encode_uri_component(phone)
    );
    let answer = fetch_json(&url).await;
    let list = if Array::is_array(&answer) {
        answer
    } else {
        get(&answer, "messages")
    };
    Array::from(&list)
        .iter()
        .filter(|m| get(m, "phone").as_string().as_deref() == Some(phone))
        .map(|m| text(&m, "text"))
        .collect()
}

/// The last SMS the dev-mode emulated phone "sent" to `phone`.
async fn last_sms(base: &str, phone: &str) -> String {
    for _ in 0..100 {
        if let Some(last) = sms_to(base, phone).await.pop() {
            return last;
        }
        sleep(100).await;
    }
    panic!("the emulated phone sent nothing to {phone}");
}

/// An `AbortController` that aborts after `ms`.
fn abort_after(ms: i32) -> JsValue {
    let global = js_sys::global();
    let ctor: Function = Reflect::get(&global, &"AbortController".into())
        .expect("ctor")
        .dyn_into()
        .expect("fn");
    let controller = Reflect::construct(&ctor, &Array::new()).expect("controller");
    let abort: Function = get(&controller, "abort").dyn_into().expect("fn");
    let set_timeout: Function = Reflect::get(&global, &"setTimeout".into())
        .expect("setTimeout")
        .dyn_into()
        .expect("fn");
    set_timeout
        .call2(&JsValue::UNDEFINED, &abort.bind0(&controller), &ms.into())
        .expect("timer");
    controller
}

async fn sleep(ms: i32) {
    let p = Promise::new(&mut |resolve, _| {
        let set_timeout: Function = Reflect::get(&js_sys::global(), &"setTimeout".into())
            .expect("setTimeout")
            .dyn_into()
            .expect("fn");
        set_timeout
            .call2(&JsValue::UNDEFINED, &resolve, &ms.into())
            .expect("timer");
    });
    resolve(p).await.expect("slept");
}

#[wasm_bindgen_test]
async fn issuer_flow_start_sms_check_receipt() {
    let base = server();
    let client = OtpClient::new(base.into(), None).expect("client");
    let phone = random_phone();
    let v = resolve(client.start(phone.clone().into(), None))
        .await
        .expect("start");
    let id = text(&v, "id");
    assert_eq!(text(&v, "status"), "pending");
    assert_eq!(
        text(
            &resolve(client.status(id.clone().into()))
                .await
                .expect("status"),
            "id"
        ),
        id
    );

    let sms = last_sms(base, &phone).await;
    let parsed = otpgate::parse_sms(sms.clone().into()).expect("parse");
    let code = text(&parsed, "code");
    assert_eq!(
        text(&parsed, "webotp.code"),
        code,
        "the issuer's SMS carries an origin-bound line: {sms:?}"
    );

    // Delivered (the emulated phone's delivery report) or, if the report is slow, still moving
    // forward when the 8 s signal fires; the abort must stop the polling.
    let controller = abort_after(8000);
    let options = obj(&[
        ("intervalMs", 250.into()),
        ("signal", get(&controller, "signal")),
    ]);
    match resolve(client.wait_for_delivery(id.clone().into(), Some(options))).await {
        Ok(v) => assert!(
            ["delivered", "failed"].contains(&text(&v, "delivery.state").as_str()),
            "{}",
            stringify(&v)
        ),
        Err(err) => {
            assert_eq!(code_of(&err), "aborted");
            let v = resolve(client.status(id.clone().into()))
                .await
                .expect("status");
            assert!(
                ["submitted", "sent"].contains(&text(&v, "delivery.state").as_str()),
                "{}",
                stringify(&v)
            );
        }
    }

    let wrong = if code == "000000" { "111111" } else { "000000" };
    let err = resolve(client.check(id.clone().into(), wrong.into()))
        .await
        .expect_err("wrong code");
    assert_status(&err, 422.0);
    assert!(
        get(&err, "attemptsLeft").as_f64().is_some(),
        "attemptsLeft on a wrong code"
    );

    let ok = resolve(client.check(id.clone().into(), code.clone().into()))
        .await
        .expect("approved");
    assert_eq!(text(&ok, "status"), "approved");
    let jwt = text(&ok, "receipt");
    let jwks = fetch_json(&format!("{base}/.well-known/jwks.json")).await;
    // The issuer's own iss/aud, read from the unverified payload, then checked for real.
    let payload = jwt.split('.').nth(1).expect("payload");
    let unverified: JsValue =
        JSON::parse(&String::from_utf8(base64url(payload)).expect("utf8")).expect("json");
    let (iss, aud) = (text(&unverified, "iss"), text(&unverified, "aud"));
    let claims = otpgate::verify_receipt(
        jwt.clone().into(),
        jwks.clone(),
        obj(&[
            ("audience", aud.clone().into()),
            ("issuer", iss.clone().into()),
        ]),
    )
    .expect("receipt verifies");
    assert_eq!(text(&claims, "phone_number"), phone);
    assert_eq!(text(&claims, "sub"), id);
    let wrong_aud = obj(&[
        ("audience", format!("{aud}-other").into()),
        ("issuer", iss.into()),
    ]);
    assert_eq!(
        code_of(&otpgate::verify_receipt(jwt.into(), jwks, wrong_aud).expect_err("aud")),
        "receipt_wrong_audience"
    );

    // Single use.
    let again = resolve(client.check(id.into(), code.into()))
        .await
        .expect_err("used");
    let status = get(&again, "status").as_f64().unwrap_or(0.0);
    assert!(
        (400.0..500.0).contains(&status),
        "a used code is refused: {}",
        stringify(&again)
    );
}

#[wasm_bindgen_test]
async fn issuer_flow_resend_cooldown_and_cancel() {
    let base = server();
    let client = OtpClient::new(base.into(), None).expect("client");
    let v = resolve(client.start(random_phone().into(), None))
        .await
        .expect("start");
    let id = text(&v, "id");
    // Inside the 30 s cooldown: 429 with a Retry-After the page can read (CORS-exposed).
    let err = resolve(client.resend(id.clone().into()))
        .await
        .expect_err("cooldown");
    assert_status(&err, 429.0);
    assert_eq!(code_of(&err), "resend_cooldown", "the issuer's stable code");
    assert!(
        get(&err, "retryAfter").as_f64().is_some_and(|s| s > 0.0),
        "retryAfter is set"
    );
    resolve(client.cancel(id.clone().into()))
        .await
        .expect("cancelled");
    let v = resolve(client.status(id.clone().into())).await;
    match v {
        Ok(v) => assert_eq!(text(&v, "status"), "cancelled"),
        Err(err) => assert_eq!(
            get(&err, "status").as_f64(),
            Some(410.0),
            "{}",
            stringify(&err)
        ),
    }
    let err = resolve(client.status("v_doesnotexist000000000000".into()))
        .await
        .expect_err("unknown id");
    assert_eq!(get(&err, "status").as_f64(), Some(404.0));
}

/// The proxy in front of the issuer that drops the first answer to each POST with a new
/// `Idempotency-Key` (tests/support/drop-proxy.mjs, started by scripts/test.sh).
#[allow(clippy::option_env_unwrap)] // on purpose: without the proxy these tests must fail
pub fn drop_proxy() -> &'static str {
    option_env!("OTPGATE_TEST_DROP_PROXY").expect(
        "OTPGATE_TEST_DROP_PROXY must name tests/support/drop-proxy.mjs in front of the issuer; scripts/test.sh sets it",
    )
}

/// What the drop proxy saw for `path`: (Idempotency-Key, dropped), oldest first.
async fn proxied(proxy: &str, path: &str) -> Vec<(Option<String>, bool)> {
    let log = fetch_json(&format!("{proxy}/_proxy/log")).await;
    Array::from(&log)
        .iter()
        .filter(|e| text(e, "method") == "POST" && text(e, "path") == path)
        .map(|e| (get(&e, "key").as_string(), get(&e, "dropped").is_truthy()))
        .collect()
}

/// The requests of the last call that the proxy answered by dropping: same key.
fn last_call(log: &[(Option<String>, bool)]) -> Vec<(Option<String>, bool)> {
    let (key, _) = log
        .iter()
        .rfind(|(_, dropped)| *dropped)
        .expect("one answer was dropped");
    log.iter().filter(|(k, _)| k == key).cloned().collect()
}

#[wasm_bindgen_test]
async fn issuer_start_whose_answer_is_lost_sends_one_sms() {
    let (base, proxy) = (server(), drop_proxy());
    let client = OtpClient::new(proxy.into(), None).expect("client");
    let phone = random_phone();
    let v = resolve(client.start(phone.clone().into(), None))
        .await
        .expect("the start survives its lost answer");
    let id = text(&v, "id");
    assert_eq!(text(&v, "status"), "pending");

    // The proxy dropped the first answer; the client sent the same request once more with the
    // same key, and the issuer replayed its answer.
    let calls = last_call(&proxied(proxy, "/v1/verifications").await);
    assert_eq!(calls.len(), 2, "one request, one retry: {calls:?}");
    assert!(calls[0].1 && !calls[1].1, "{calls:?}");
    let key = calls[0].0.clone().expect("a key");
    assert_eq!(key.len(), 22, "128 bits, base64url: {key}");

    // One verification, one SMS: wait for it, then long enough for a second to show.
    let sms = last_sms(base, &phone).await;
    sleep(1500).await;
    assert_eq!(
        sms_to(base, &phone).await,
        vec![sms.clone()],
        "exactly one SMS"
    );
    let code = text(&otpgate::parse_sms(sms.into()).expect("parse"), "code");
    let ok = resolve(client.check(id.clone().into(), code.into()))
        .await
        .expect("the one SMS's code approves the verification the client got");
    assert_eq!(text(&ok, "status"), "approved");

    // Another call draws another key.
    let again = resolve(client.start(random_phone().into(), None))
        .await
        .expect("start");
    let calls = last_call(&proxied(proxy, "/v1/verifications").await);
    assert_eq!(calls.len(), 2);
    assert_ne!(
        calls[0].0.as_deref(),
        Some(key.as_str()),
        "a fresh key per call"
    );

    // A resend inside the cooldown: its lost answer is retried with its key and the issuer,
    // which keeps no refusal, refuses again; nothing is sent.
    let again_id = text(&again, "id");
    let err = resolve(client.resend(again_id.clone().into()))
        .await
        .expect_err("cooldown");
    assert_eq!(code_of(&err), "resend_cooldown");
    let calls = last_call(&proxied(proxy, &format!("/v1/verifications/{again_id}/resend")).await);
    assert_eq!(calls.len(), 2, "{calls:?}");
}

/// Calls the page's global function `name` (`btoa`, `atob`) on the string `arg`.
fn call_global(name: &str, arg: String) -> String {
    let f: Function = Reflect::get(&js_sys::global(), &name.into())
        .expect(name)
        .dyn_into()
        .expect("fn");
    f.call1(&JsValue::UNDEFINED, &arg.into())
        .expect(name)
        .as_string()
        .expect("string")
}

fn base64url(s: &str) -> Vec<u8> {
    let std = s.replace('-', "+").replace('_', "/");
    let padded = format!("{std}{}", "=".repeat((4 - std.len() % 4) % 4));
    let bin = call_global("atob", padded);
    bin.chars().map(|c| c as u8).collect()
}
