//! The integrations of issue 19 driven by the peers' official clients, against a real
//! `otpgate serve` and a real emulated phone (the rig of [`super::integrations`]):
//!
//! - Supabase's Send SMS hook signed by the official `standardwebhooks` library (PyPI) the
//!   way Supabase Auth signs it: a UUID `webhook-id`, each `v1,whsec_…` secret stripped of
//!   `v1,` and given to `Webhook(...).sign`, the signatures joined by `", "` (two of them
//!   while Supabase rotates);
//! - the official `twilio` package (PyPI) with `client.verify.base_url` pointed at otpgate:
//!   create, wrong code (pending), right code (approved), attempts spent, cancel, fetch, and
//!   its `TwilioRestException`s with Twilio's codes.
//!
//! The clients run in `tests/clients/driver.py` under the Python of the venv that
//! `scripts/setup.sh` makes (`${XDG_CACHE_HOME:-$HOME/.cache}/otpgate/clients-venv`, or
//! `OTPGATE_TEST_PYTHON`), one JSON request and answer per line.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::integrations::{
    ACCOUNT, APP_HASH, Rig, SERVICE, Store, TOKEN, assert_supabase_error, code_of, now, secret,
};

/// The Python that has the official clients (`tests/clients/requirements.txt`).
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("OTPGATE_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|c| !c.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache")
        });
    let py = cache.join("otpgate/clients-venv/bin/python");
    assert!(
        py.exists(),
        "{} is missing: scripts/setup.sh installs the official clients \
         (tests/clients/requirements.txt), or set OTPGATE_TEST_PYTHON",
        py.display()
    );
    py
}

/// `tests/clients/driver.py`, running: one JSON request per line, one answer per line.
struct Driver {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Driver {
    fn start() -> Self {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/driver.py");
        let mut child = Command::new(python())
            .arg(&script)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python with the official clients");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Self {
            child,
            stdin,
            stdout,
        }
    }

    /// Sends one request and reads its answer (the driver's own failures fail the test).
    fn call(&mut self, req: &Value) -> Value {
        writeln!(self.stdin, "{req}").unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        let answer: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("driver answer {line:?} for {req}: {e}"));
        assert!(
            answer.get("driver_error").is_none(),
            "driver failed on {req}: {answer}"
        );
        answer
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Supabase's Send SMS payload as its documentation shows it: the whole user object, the
/// phone as Supabase stores it, and `sms.otp`.
fn docs_payload(phone: &str, otp: &str) -> String {
    json!({
        "user": {
            "id": "6481a5c1-3d37-4a56-9f6a-bee08c554965",
            "aud": "authenticated",
            "role": "authenticated",
            "email": "",
            "phone": phone,
            "phone_confirmed_at": "2024-05-13T11:52:48.157306Z",
            "confirmation_sent_at": "2024-05-14T12:31:52.824573Z",
            "confirmed_at": "2024-05-13T11:52:48.157306Z",
            "phone_change_sent_at": "2024-05-13T11:47:02.183064Z",
            "last_sign_in_at": "2024-05-13T11:52:48.162518Z",
            "app_metadata": {"provider": "phone", "providers": ["phone"]},
            "user_metadata": {},
            "identities": [{
                "identity_id": "3be5e552-65aa-41d9-9db9-2a502f845459",
                "id": "6481a5c1-3d37-4a56-9f6a-bee08c554965",
                "user_id": "6481a5c1-3d37-4a56-9f6a-bee08c554965",
                "identity_data": {
                    "email_verified": false,
                    "phone": phone,
                    "phone_verified": true,
                    "sub": "6481a5c1-3d37-4a56-9f6a-bee08c554965"
                },
                "provider": "phone",
                "last_sign_in_at": "2024-05-13T11:52:48.155562Z",
                "created_at": "2024-05-13T11:52:48.155599Z",
                "updated_at": "2024-05-13T11:52:48.155599Z",
                "email": ""
            }],
            "created_at": "2024-05-13T11:45:33.7738Z",
            "updated_at": "2024-05-14T12:31:52.82475Z",
            "is_anonymous": false
        },
        "sms": {"otp": otp}
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supabase_hook_signed_by_the_standardwebhooks_library() {
    let rig = Rig::start(Store::Embedded);
    let mut py = Driver::start();
    let url = rig.url("/v1/hooks/supabase/send-sms");
    let hook = |secrets: &[String], payload: &str, extra: Value| {
        let mut req = json!({"op": "supabase", "url": url, "secrets": secrets, "payload": payload});
        for (k, v) in extra.as_object().unwrap() {
            req[k] = v.clone();
        }
        req
    };

    // Supabase while rotating from secret 1 to secret 2 signs with both ("v1,a, v1,b"),
    // also before otpgate holds the new one (secret 3 here: the old one's signature comes
    // first, followed by a comma); then with the new one alone; a number as Supabase stores
    // it (no `+`) and as its docs show it (with one).
    let cases = [
        (vec![secret(1), secret(2)], "14155550601", "561166"),
        (vec![secret(1), secret(3)], "14155550607", "314159"),
        (vec![secret(2)], "+14155550602", "042137"),
        (vec![secret(1)], "14155550603", "998877"),
    ];
    for (secrets, phone, otp) in &cases {
        let a = py.call(&hook(secrets, &docs_payload(phone, otp), json!({})));
        assert_eq!(
            (a["status"].as_u64(), &a["body"]),
            (Some(200), &json!({})),
            "{a}"
        );
        assert!(
            a["content_type"]
                .as_str()
                .is_some_and(|c| c.starts_with("application/json")),
            "Supabase reads JSON only: {a}"
        );
        let to = format!("+{}", phone.trim_start_matches('+'));
        let texts = rig.sms_to(&to, 1).await;
        assert_eq!(texts.len(), 1, "{texts:?}");
        let text = &texts[0];
        assert!(text.starts_with("<#> "), "{text}");
        assert!(text.contains(otp), "{text}");
        assert!(
            text.ends_with(&format!("\n@mobile.example.com #{otp} {APP_HASH}")),
            "the WebOTP line and the app hash: {text}"
        );
        assert_eq!(
            otpgate_core::sms::parse(text).webotp.unwrap().code,
            *otp,
            "{text}"
        );
    }

    // A replayed webhook-id (signed again, later, as a retry would be): answered as the
    // first time, nothing sent twice.
    let payload = docs_payload("14155550604", "135790");
    let first = py.call(&hook(
        &[secret(1)],
        &payload,
        json!({"id": "3f1c2d4e-replay"}),
    ));
    assert_eq!(first["status"], 200, "{first}");
    let again = py.call(&hook(
        &[secret(2)],
        &payload,
        json!({"id": "3f1c2d4e-replay", "timestamp": now() + 2}),
    ));
    assert_eq!(
        (again["status"].as_u64(), &again["body"]),
        (Some(200), &json!({})),
        "{again}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        rig.sms_to("+14155550604", 2).await.len(),
        1,
        "one SMS for the replay"
    );

    // Refused: a secret otpgate does not hold (rotated out, or forged), a stale timestamp,
    // one from the future, a body other than the one signed. Nothing is sent.
    let payload = docs_payload("14155550605", "246802");
    let refused = [
        hook(&[secret(3)], &payload, json!({})),
        hook(&[secret(9), secret(3)], &payload, json!({})),
        hook(&[secret(1)], &payload, json!({"timestamp": now() - 600})),
        hook(&[secret(1)], &payload, json!({"timestamp": now() + 600})),
        hook(
            &[secret(1)],
            &payload,
            json!({"signed": docs_payload("14155550605", "000000")}),
        ),
    ];
    for req in &refused {
        let a = py.call(req);
        let body = &a["body"];
        assert_supabase_error(
            u16::try_from(a["status"].as_u64().unwrap()).unwrap(),
            body,
            401,
        );
    }
    assert!(
        rig.sms_to("+14155550605", 1).await.is_empty(),
        "nothing refused was sent"
    );

    // A refused destination (outside the allowed regions): Supabase's error shape, 403.
    let a = py.call(&hook(
        &[secret(1)],
        &docs_payload("33612345678", "123456"),
        json!({}),
    ));
    assert_supabase_error(403, &a["body"], 403);
    assert_eq!(a["status"], 403);
    assert!(rig.sms_to("+33612345678", 1).await.is_empty());

    // The number's budget (3 per 10 min): the fourth is a real 429 with Retry-After, so
    // Supabase (which retries 429 and 503 that carry Retry-After) tries again later.
    for n in 0..3 {
        let a = py.call(&hook(
            &[secret(1)],
            &docs_payload("14155550606", &format!("11111{n}")),
            json!({}),
        ));
        assert_eq!(a["status"], 200, "{a}");
    }
    let a = py.call(&hook(
        &[secret(1)],
        &docs_payload("14155550606", "111113"),
        json!({}),
    ));
    assert_supabase_error(429, &a["body"], 429);
    assert!(
        a["retry_after"]
            .as_str()
            .is_some_and(|r| r.parse::<u64>().is_ok()),
        "{a}"
    );
}

/// A Twilio request for the driver.
fn tw(rig: &Rig, op: &str, args: Value) -> Value {
    let mut req = json!({
        "op": op,
        "base_url": rig.serve.base,
        "account_sid": ACCOUNT,
        "auth_token": TOKEN,
        "service_sid": SERVICE,
    });
    for (k, v) in args.as_object().unwrap() {
        req[k] = v.clone();
    }
    req
}

/// The instance the SDK built, or the test fails with the exception.
fn ok(a: &Value) -> &Value {
    a.get("ok")
        .unwrap_or_else(|| panic!("expected an instance: {a}"))
}

/// Asserts a `TwilioRestException` with this HTTP status and Twilio code.
fn twilio_exception(a: &Value, status: u64, code: u64) {
    let e = a
        .get("error")
        .unwrap_or_else(|| panic!("expected a TwilioRestException {code}: {a}"));
    assert_eq!(
        (e["status"].as_u64(), e["code"].as_u64()),
        (Some(status), Some(code)),
        "{a}"
    );
}

async fn twilio_sdk_flow(store: Store) {
    let rig = Rig::start(store);
    let mut py = Driver::start();
    let to = "+14155550701";

    // Create: the SDK parses a VerificationInstance with Twilio's fields and dates.
    let v = py.call(&tw(
        &rig,
        "twilio_create",
        json!({"to": to, "channel": "sms", "locale": "en"}),
    ));
    let v = ok(&v).clone();
    assert_eq!(v["type"], "VerificationInstance");
    let sid = v["sid"].as_str().unwrap().to_owned();
    assert!(sid.starts_with("VE") && sid.len() == 34, "{v}");
    assert_eq!(
        (
            v["status"].as_str(),
            v["valid"].as_bool(),
            v["to"].as_str(),
            v["channel"].as_str()
        ),
        (Some("pending"), Some(false), Some(to), Some("sms")),
        "{v}"
    );
    assert_eq!(
        (v["service_sid"].as_str(), v["account_sid"].as_str()),
        (Some(SERVICE), Some(ACCOUNT))
    );
    assert_eq!(
        (
            v["date_created_parsed"].as_bool(),
            v["date_updated_parsed"].as_bool()
        ),
        (Some(true), Some(true)),
        "the SDK parses the dates: {v}"
    );
    assert_eq!(
        v["send_code_attempts"].as_array().map(Vec::len),
        Some(1),
        "{v}"
    );
    assert_eq!(
        v["url"],
        format!(
            "{}/v2/Services/{SERVICE}/Verifications/{sid}",
            super::integrations::ISSUER
        )
    );
    // As in Twilio, the same number again answers the pending verification: no second SMS.
    let again = py.call(&tw(
        &rig,
        "twilio_create",
        json!({"to": to, "channel": "sms"}),
    ));
    assert_eq!(ok(&again)["sid"], sid.as_str());
    let texts = rig.sms_to(to, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rig.sms_to(to, 2).await.len(), 1, "one SMS for two creates");
    let code = code_of(&texts[0]);
    let wrong = if code == "000000" { "111111" } else { "000000" };

    // A wrong code: pending, not valid. The right one: approved.
    let c = py.call(&tw(&rig, "twilio_check", json!({"to": to, "code": wrong})));
    let c = ok(&c);
    assert_eq!(c["type"], "VerificationCheckInstance");
    assert_eq!(
        (c["status"].as_str(), c["valid"].as_bool()),
        (Some("pending"), Some(false)),
        "{c}"
    );
    let c = py.call(&tw(&rig, "twilio_check", json!({"to": to, "code": code})));
    let c = ok(&c);
    assert_eq!(
        (
            c["status"].as_str(),
            c["valid"].as_bool(),
            c["sid"].as_str()
        ),
        (Some("approved"), Some(true), Some(sid.as_str())),
        "{c}"
    );
    assert_eq!(c["date_created_parsed"], true, "{c}");
    let f = py.call(&tw(&rig, "twilio_fetch", json!({"sid": sid})));
    assert_eq!(ok(&f)["status"], "approved");
    // Approved: no pending verification of that number any more (Twilio's 20404).
    twilio_exception(
        &py.call(&tw(&rig, "twilio_check", json!({"to": to, "code": code}))),
        404,
        20404,
    );
    twilio_exception(
        &py.call(&tw(
            &rig,
            "twilio_check",
            json!({"verification_sid": sid, "code": code}),
        )),
        404,
        20404,
    );

    // Attempts: a new verification, five wrong codes (the last answers
    // max_attempts_reached), then 60202 even for the right code.
    let v2 = py.call(&tw(
        &rig,
        "twilio_create",
        json!({"to": to, "channel": "sms"}),
    ));
    let sid2 = ok(&v2)["sid"].as_str().unwrap().to_owned();
    assert_ne!(sid2, sid);
    let code2 = code_of(&rig.sms_to(to, 2).await[1]);
    let wrong = if code2 == "000000" {
        "111111"
    } else {
        "000000"
    };
    for n in 1..=5 {
        let c = py.call(&tw(
            &rig,
            "twilio_check",
            json!({"verification_sid": sid2, "code": wrong}),
        ));
        let want = if n == 5 {
            "max_attempts_reached"
        } else {
            "pending"
        };
        assert_eq!(ok(&c)["status"], want, "attempt {n}: {c}");
        assert_eq!(ok(&c)["valid"], false);
    }
    twilio_exception(
        &py.call(&tw(
            &rig,
            "twilio_check",
            json!({"verification_sid": sid2, "code": code2}),
        )),
        429,
        60202,
    );
    let f = py.call(&tw(&rig, "twilio_fetch", json!({"sid": sid2})));
    assert_eq!(ok(&f)["status"], "max_attempts_reached");

    // Cancel, then fetch; a check of the canceled number finds nothing.
    let to3 = "+14155550702";
    let v3 = py.call(&tw(
        &rig,
        "twilio_create",
        json!({"to": to3, "channel": "sms"}),
    ));
    let sid3 = ok(&v3)["sid"].as_str().unwrap().to_owned();
    twilio_exception(
        &py.call(&tw(
            &rig,
            "twilio_update",
            json!({"sid": sid3, "status": "approved"}),
        )),
        400,
        60200,
    );
    let u = py.call(&tw(
        &rig,
        "twilio_update",
        json!({"sid": sid3, "status": "canceled"}),
    ));
    assert_eq!(ok(&u)["status"], "canceled", "{u}");
    let f = py.call(&tw(&rig, "twilio_fetch", json!({"sid": sid3})));
    assert_eq!(
        (ok(&f)["status"].as_str(), ok(&f)["sid"].as_str()),
        (Some("canceled"), Some(sid3.as_str()))
    );
    twilio_exception(
        &py.call(&tw(
            &rig,
            "twilio_check",
            json!({"to": to3, "code": "123456"}),
        )),
        404,
        20404,
    );
    // A canceled number gets a new verification.
    let v4 = py.call(&tw(
        &rig,
        "twilio_create",
        json!({"to": to3, "channel": "sms"}),
    ));
    assert_ne!(ok(&v4)["sid"], sid3.as_str());

    // The SDK's exceptions carry Twilio's codes.
    twilio_exception(
        &py.call(&tw(
            &rig,
            "twilio_fetch",
            json!({"sid": "VE00000000000000000000000000000000"}),
        )),
        404,
        20404,
    );
    twilio_exception(
        &py.call(&tw(
            &rig,
            "twilio_create",
            json!({"to": "+14155550703", "channel": "whatsapp"}),
        )),
        400,
        60223,
    );
    twilio_exception(
        &py.call(&tw(
            &rig,
            "twilio_create",
            json!({"to": "12", "channel": "sms"}),
        )),
        400,
        60200,
    );
    twilio_exception(
        &py.call(&tw(
            &rig,
            "twilio_create",
            json!({"to": "+14155550703", "channel": "sms", "custom_code": "123456"}),
        )),
        400,
        60200,
    );
    twilio_exception(
        &py.call(&tw(
            &rig,
            "twilio_create",
            json!({"to": "+33612345678", "channel": "sms"}),
        )),
        403,
        60410,
    );
    twilio_exception(
        &py.call(&tw(
            &rig,
            "twilio_create",
            json!({"to": to3, "channel": "sms", "auth_token": "not-the-token"}),
        )),
        401,
        20003,
    );
    twilio_exception(
        &py.call(&tw(&rig, "twilio_create", json!({"to": to3, "channel": "sms", "service_sid": "VA00000000000000000000000000000000"}))),
        404,
        20404,
    );
    // The number's send budget (3 per 10 min; to3 had 2): 60203 from the third new one on.
    let v5 = py.call(&tw(
        &rig,
        "twilio_update",
        json!({"sid": ok(&v4)["sid"], "status": "canceled"}),
    ));
    assert_eq!(ok(&v5)["status"], "canceled");
    let v6 = py.call(&tw(
        &rig,
        "twilio_create",
        json!({"to": to3, "channel": "sms"}),
    ));
    let sid6 = ok(&v6)["sid"].as_str().unwrap().to_owned();
    ok(&py.call(&tw(
        &rig,
        "twilio_update",
        json!({"sid": sid6, "status": "canceled"}),
    )));
    twilio_exception(
        &py.call(&tw(
            &rig,
            "twilio_create",
            json!({"to": to3, "channel": "sms"}),
        )),
        429,
        60203,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_sdk_on_the_embedded_store() {
    twilio_sdk_flow(Store::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_sdk_on_redis() {
    twilio_sdk_flow(Store::Redis).await;
}
