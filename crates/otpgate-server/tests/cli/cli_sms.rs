//! `otpgate sms parse|segments|compose` and `otpgate app-hash`, run as the real binary.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn otpgate(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_otpgate"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn otpgate");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

fn ok(args: &[&str], stdin: &[u8]) -> String {
    let out = otpgate(args, stdin);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// Asserts failure with a one-line error mentioning `needle`.
fn fails(args: &[&str], stdin: &[u8], needle: &str) {
    let out = otpgate(args, stdin);
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(out.stdout.is_empty(), "{args:?}: stdout {:?}", out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim_end_matches('\n').lines().count(),
        1,
        "{args:?}: one line: {err:?}"
    );
    assert!(
        err.contains(needle),
        "{args:?}: {err:?} should mention {needle:?}"
    );
}

/// The arguments of `otpgate sms compose --app APP --code CODE MORE...`.
fn compose<'a>(app: &'a str, code: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["sms", "compose", "--app", app, "--code", code];
    args.extend_from_slice(more);
    args
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).expect("JSON")
}

fn cert(ext: &str) -> String {
    let p: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "..",
        "otpgate-core",
        "src",
        "sms",
        "testdata",
        &format!("rn-template-debug.{ext}"),
    ]
    .iter()
    .collect();
    p.to_string_lossy().into_owned()
}

#[test]
fn parse_prints_every_key() {
    let out = ok(
        &["sms", "parse"],
        b"<#> Your Example code is 123456\n@example.com #123456 FA+9qCX9VSu",
    );
    assert!(out.ends_with('\n'));
    assert_eq!(
        json(&out),
        serde_json::json!({
            "code": "123456",
            "webotp": {"host": "example.com", "code": "123456", "iframe_host": null},
            "app_hash": "FA+9qCX9VSu"
        })
    );
    assert_eq!(
        json(&ok(&["sms", "parse"], b"hello")),
        serde_json::json!({"code": null, "webotp": null, "app_hash": null})
    );
    assert_eq!(
        json(&ok(
            &["sms", "parse"],
            b"x\r\n@top.example #12ab34 @bank.example"
        ))["webotp"],
        serde_json::json!({"host": "top.example", "code": "12ab34", "iframe_host": "bank.example"})
    );
}

#[test]
fn parse_reads_stdin_byte_for_byte() {
    // A trailing newline is part of the message: the last line is empty, so no WebOTP code.
    let v = json(&ok(
        &["sms", "parse"],
        b"Your code 123456\n@example.com #123456\n",
    ));
    assert_eq!(v["webotp"], serde_json::Value::Null);
    assert_eq!(v["code"], "123456");
    // Leading/trailing spaces are not trimmed either.
    let v = json(&ok(&["sms", "parse"], b" @example.com #123456"));
    assert_eq!(v["webotp"], serde_json::Value::Null);
    let v = json(&ok(&["sms", "parse"], b""));
    assert_eq!(
        v,
        serde_json::json!({"code": null, "webotp": null, "app_hash": null})
    );
}

#[test]
fn parse_and_segments_refuse_invalid_utf8() {
    fails(&["sms", "parse"], b"code 1234 \xff", "not valid UTF-8");
    fails(&["sms", "segments"], b"\xc3", "not valid UTF-8");
}

#[test]
fn segments() {
    let c71 = "ç".repeat(71);
    let cases: &[(&[u8], &str, u64, u64)] = &[
        (b"", "GSM-7", 1, 0),
        (b"hello", "GSM-7", 1, 5),
        (b"price 5\xe2\x82\xac", "GSM-7", 1, 9),
        (b"trailing newline\n", "GSM-7", 1, 17),
        (c71.as_bytes(), "UCS-2", 2, 71),
        ("😀".as_bytes(), "UCS-2", 1, 2),
    ];
    for (input, enc, segs, units) in cases {
        let v = json(&ok(&["sms", "segments"], input));
        assert_eq!(
            v,
            serde_json::json!({"encoding": enc, "segments": segs, "units": units}),
            "{input:?}"
        );
    }
    let long = format!("{}€{}", "a".repeat(152), "a".repeat(152));
    let v = json(&ok(&["sms", "segments"], long.as_bytes()));
    assert_eq!(v["segments"], 3);
}

#[test]
fn compose_prints_the_text_exactly_and_parses_back() {
    let more = ["--origin", "example.com", "--app-hash", "FA+9qCX9VSu"];
    let args = compose("Example", "123456", &more);
    let text = ok(&args, b"");
    assert_eq!(
        text,
        "<#> Your Example code is 123456\n@example.com #123456 FA+9qCX9VSu"
    );
    let v = json(&ok(&["sms", "parse"], text.as_bytes()));
    assert_eq!(v["webotp"]["host"], "example.com");
    assert_eq!(v["webotp"]["code"], "123456");
    assert_eq!(v["app_hash"], "FA+9qCX9VSu");

    let mut with_json = args.clone();
    with_json.push("--json");
    let v = json(&ok(&with_json, b""));
    assert_eq!(v["text"], text);
    assert_eq!(v["encoding"], "GSM-7");
    assert_eq!(v["segments"], 1);
    assert_eq!(v["units"], 64);
    assert_eq!(v["bytes"], 56);
    assert_eq!(v["locale"], "en");

    let more = [
        "--locale",
        "pt-BR",
        "--json",
        "--template",
        "Código {app}: {code}",
    ];
    let v = json(&ok(&compose("Acme", "4711", &more), b""));
    assert_eq!(v["encoding"], "UCS-2");
    assert_eq!(v["ucs2_forced_by_template"], true);

    let more = [
        "--origin",
        "shop.example",
        "--iframe-origin",
        "bank.example",
        "--app-hash",
        "FA+9qCX9VSu",
        "--layout",
        "hash-line",
    ];
    let text = ok(&compose("Acme", "4711", &more), b"");
    assert_eq!(
        text,
        "Your Acme code is 4711\nFA+9qCX9VSu\n@shop.example #4711 @bank.example"
    );
}

#[test]
fn compose_errors() {
    let long = format!("{} {{code}}", "x".repeat(200));
    let cases: &[(&[&str], &str)] = &[
        (&["--origin", "https://example.com"], "bad_origin"),
        (&["--origin", "example.com:443"], "bad_origin"),
        (
            &["--iframe-origin", "bank.example"],
            "iframe_without_origin",
        ),
        (&["--app-hash", "short"], "bad_app_hash"),
        (&["--template", "Hi {name} {code}"], "unknown_placeholder"),
        (&["--template", "Hi {app"], "bad_template"),
        (&["--template", "Hi there"], "code_missing"),
        (&["--template", &long], "too_long"),
        (
            &["--template", "{code}\n@evil.example #{code}"],
            "fake_origin_line",
        ),
    ];
    for (extra, needle) in cases {
        fails(&compose("Example", "123456", extra), b"", needle);
    }
    let evil = "Evil\n@evil.example #123456";
    fails(&compose(evil, "123456", &[]), b"", "bad_app_name");
    fails(&compose("Example", "12", &[]), b"", "bad_code");
    // A missing argument is clap's usage error (several lines), still a failure.
    let out = otpgate(&["sms", "compose", "--app", "Example"], b"");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--code"));
}

#[test]
fn app_hash_vector_and_errors() {
    for ext in ["der", "pem"] {
        let out = ok(
            &[
                "app-hash",
                "--package",
                "com.awesomeproject",
                "--cert",
                &cert(ext),
            ],
            b"",
        );
        assert_eq!(out, "kFUwfusCq/+\n");
    }
    fails(
        &[
            "app-hash",
            "--package",
            "awesomeproject",
            "--cert",
            &cert("der"),
        ],
        b"",
        "bad_package",
    );
    fails(
        &[
            "app-hash",
            "--package",
            "com.example",
            "--cert",
            "/nonexistent/cert.der",
        ],
        b"",
        "cannot read",
    );
    let junk = std::env::temp_dir().join(format!("otpgate-cli-sms-{}.der", std::process::id()));
    std::fs::write(&junk, b"not a certificate").expect("write");
    fails(
        &[
            "app-hash",
            "--package",
            "com.example",
            "--cert",
            &junk.to_string_lossy(),
        ],
        b"",
        "bad_certificate",
    );
    let _ = std::fs::remove_file(&junk);
}
