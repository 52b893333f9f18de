//! The client address over HTTP against the real `otpgate serve`: the per-IP budget (one
//! start per address) shows which address each request was counted under.
//! - behind `trusted_proxies`, the right-most hop that is not a proxy is the client, its port
//!   stripped (`ip:port`), and a hop the client wrote itself further left changes nothing;
//! - with no trusted proxies the header is ignored (every request is the socket's peer);
//! - a config or environment that still sets `trust_forwarded_for` does not start.
#![allow(clippy::unwrap_used, missing_docs)]

use std::process::Command;

use otpgate_test_support::process::{ServeToml, Server, free_port};
use serde_json::{Value, json};

/// A config: sends discarded, an IP budget of one start per address, PoW off.
fn config(server: &str) -> ServeToml {
    ServeToml {
        server: server.to_owned(),
        policy: "[policy.budgets]\nip = { limit = 1, window_secs = 600 }\n\
                 [policy.pow]\nenabled = false\n"
            .to_owned(),
        ..ServeToml::new("https://otp.example.com")
    }
}

/// Starts a verification for `phone` with `X-Forwarded-For: xff` (when given).
async fn start_via(base: &str, phone: &str, xff: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{base}/v1/verifications"))
        .json(&json!({ "phone": phone }));
    if let Some(x) = xff {
        req = req.header("x-forwarded-for", x);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_the_right_most_untrusted_hop_is_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let path = config("trusted_proxies = [\"127.0.0.0/8\", \"::1/128\"]").write(dir.path());
    let server = Server::start(dir.path(), Some(&path), free_port(), &[]);
    let base = &server.base;
    // An `ip:port` hop is the client without its port.
    let (s, b) = start_via(base, "+447400900101", Some("198.51.100.7:4711")).await;
    assert_eq!(s, 201, "{b}");
    // Same address, another port: the same client, whose one start is spent.
    let (s, b) = start_via(base, "+447400900102", Some("198.51.100.7:9999")).await;
    assert_eq!(s, 429, "{b}");
    assert_eq!(b["error"]["code"], "rate_limited", "{b}");
    // A hop the client wrote itself (left of what the proxy appended) changes nothing.
    let (s, b) = start_via(base, "+447400900103", Some("203.0.113.1, 198.51.100.7")).await;
    assert_eq!(s, 429, "{b}");
    // Another client behind the same proxy has its own budget; trusted hops are stepped over.
    let (s, b) = start_via(base, "+447400900104", Some("198.51.100.8, 127.0.0.9")).await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = start_via(base, "+447400900105", Some("[2001:db8::5]:443")).await;
    assert_eq!(s, 201, "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_trusted_proxies_the_header_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let path = config("").write(dir.path());
    let server = Server::start(dir.path(), Some(&path), free_port(), &[]);
    let (s, b) = start_via(&server.base, "+447400900111", Some("198.51.100.20")).await;
    assert_eq!(s, 201, "{b}");
    // Another claimed address, the same peer: the budget of 127.0.0.1 is spent.
    let (s, b) = start_via(&server.base, "+447400900112", Some("198.51.100.21")).await;
    assert_eq!(s, 429, "{b}");
}

#[test]
fn the_removed_trust_forwarded_for_stops_the_start_naming_its_replacement() {
    let dir = tempfile::tempdir().unwrap();
    let run = |server: &str, env: &[(&str, &str)]| {
        let path = config(server).write(dir.path());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_otpgate"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&path)
            .env_remove("OTPGATE_CONFIG")
            .env_remove("OTPGATE_TRUSTED_PROXIES")
            .env_remove("OTPGATE_TRUST_FORWARDED_FOR")
            .env("OTPGATE_DATA_DIR", dir.path().join("data"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run("trust_forwarded_for = true", &[]);
    assert_ne!(code, Some(0));
    assert!(
        err.contains("server.trust_forwarded_for") && err.contains("trusted_proxies"),
        "{err}"
    );
    let (code, err) = run("", &[("OTPGATE_TRUST_FORWARDED_FOR", "true")]);
    assert_ne!(code, Some(0));
    assert!(
        err.contains("OTPGATE_TRUST_FORWARDED_FOR") && err.contains("trusted_proxies"),
        "{err}"
    );
    let (code, err) = run("trusted_proxies = [\"10.0.0.1/8\"]", &[]);
    assert_ne!(code, Some(0));
    assert!(
        err.contains("server.trusted_proxies") && err.contains("10.0.0.0/8"),
        "{err}"
    );
}
