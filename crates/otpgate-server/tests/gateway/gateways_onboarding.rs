//! `otpgate gateways check` and `connect` (issue 20 item 1), the real binary against emulated
//! phones served over HTTP: a healthy phone with no webhooks (a warning, then connected: its
//! events reach a real `otpgate serve` signed with the configured key), a phone that is down,
//! one with wrong credentials and one whose signing key is weak (each unusable, non-zero exit).
#![allow(clippy::unwrap_used, missing_docs)]

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use otpgate_server::emulator::{Emulator, EmulatorConfig};
use otpgate_test_support::http::{client, get_json, get_text, start};
use otpgate_test_support::process::{Serve, ServeToml, free_port, otpgate_bin};
use otpgate_test_support::rig::{fast_knobs, serve_phone};

const KEY: &str = "a-strong-signing-key-0123456789abcdef";

fn device(name: &str, url: &str, pw_env: &str, key_env: &str) -> String {
    format!(
        "[[gateways.devices]]\nname = \"{name}\"\nkind = \"sms-gate\"\nurl = \"{url}\"\n\
         mode = \"local\"\nusername = \"sms\"\npassword_env = \"{pw_env}\"\n\
         signing_key_env = \"{key_env}\"\n"
    )
}

fn phone() -> std::sync::Arc<Emulator> {
    let mut cfg = EmulatorConfig::new("sms", Some("right-password".into()), None);
    cfg.knobs = fast_knobs(20);
    Emulator::new(cfg)
}

fn gateways(cmd: &str, config: &std::path::Path, env: &[(&str, &str)]) -> (bool, String) {
    let mut c = Command::new(otpgate_bin());
    c.args(["gateways", cmd, "--config"]).arg(config);
    for (k, v) in env {
        c.env(k, v);
    }
    let Output {
        status,
        stdout,
        stderr,
    } = c.output().unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
    (status.success(), out)
}

/// The lines of `out` under the heading of `phone`.
fn section<'a>(out: &'a str, phone: &str) -> Vec<&'a str> {
    out.lines()
        .skip_while(|l| !l.starts_with(&format!("{phone}:")))
        .take_while(|l| l.starts_with(&format!("{phone}:")) || l.starts_with("  "))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_each_unusable_phone_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let good = serve_phone(&phone()).await;
    let wrong = serve_phone(&phone()).await;
    let weak = serve_phone(&phone()).await;
    let down = format!("http://127.0.0.1:{}", free_port());
    let config = ServeToml {
        tail: format!(
            "[gateways]\n{}{}{}{}",
            device("good", &good, "PW", "KEY"),
            device("down", &down, "PW", "KEY"),
            device("wrong", &wrong, "PW_WRONG", "KEY"),
            device("weak", &weak, "PW", "WEAK_KEY"),
        ),
        ..ServeToml::new("http://127.0.0.1:9")
    }
    .write(dir.path());
    let env = [
        ("PW", "right-password"),
        ("PW_WRONG", "not-the-password"),
        ("KEY", KEY),
        ("WEAK_KEY", "8charkey"),
    ];
    let (ok, out) = gateways("check", &config, &env);
    assert!(!ok, "three unusable phones must fail the command:\n{out}");
    assert!(out.contains("3 of 4 phones unusable"), "{out}");

    let good = section(&out, "good");
    assert_eq!(good[0], "good: WARN", "{out}");
    for item in ["reachable", "credentials", "health", "clock", "signing key"] {
        assert!(
            good.iter()
                .any(|l| l.trim_start().starts_with("ok") && l.contains(item)),
            "good: {item} ok\n{out}"
        );
    }
    assert!(
        good.iter().any(|l| l.contains("warn")
            && l.contains("webhooks")
            && l.contains("gateways connect")),
        "{out}"
    );
    let down = section(&out, "down");
    assert_eq!(down[0], "down: UNUSABLE", "{out}");
    assert!(
        down.iter()
            .any(|l| l.contains("unusable") && l.contains("reachable")),
        "{out}"
    );
    let wrong = section(&out, "wrong");
    assert_eq!(wrong[0], "wrong: UNUSABLE", "{out}");
    assert!(
        wrong
            .iter()
            .any(|l| l.contains("unusable") && l.contains("credentials refused (401)")),
        "{out}"
    );
    let weak = section(&out, "weak");
    assert_eq!(weak[0], "weak: UNUSABLE", "{out}");
    assert!(
        weak.iter().any(|l| l.contains("signing key")
            && l.contains("8 bytes")
            && l.contains("Signing Key")),
        "{out}"
    );
    // No secret is printed.
    for secret in ["right-password", "not-the-password", KEY, "8charkey"] {
        assert!(!out.contains(secret), "{secret} printed:\n{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_registers_the_webhooks_and_the_key_once_and_events_verify() {
    let dir = tempfile::tempdir().unwrap();
    let emu = phone();
    let url = serve_phone(&emu).await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let config = ServeToml {
        discard_sends: false,
        policy: "[policy.pow]\nenabled = false\n".into(),
        tail: format!("[gateways]\n{}", device("pixel", &url, "PW", "KEY")),
        ..ServeToml::new(&base)
    }
    .write(dir.path());
    let env = [("PW", "right-password"), ("KEY", KEY)];

    let (ok, out) = gateways("connect", &config, &env);
    assert!(ok, "{out}");
    for ev in [
        "sms:sent",
        "sms:delivered",
        "sms:failed",
        "sms:cancelled",
        "system:ping",
    ] {
        assert!(out.contains(&format!("webhook {ev}: registered")), "{out}");
    }
    assert!(out.contains("signing key: set on the phone"), "{out}");
    assert!(!out.contains(KEY), "the key is printed:\n{out}");
    // The phone now holds exactly the issuer's five webhooks.
    let hooks = client()
        .get(format!("{url}/webhooks"))
        .basic_auth("sms", Some("right-password"))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let hooks = hooks.as_array().unwrap();
    assert_eq!(hooks.len(), 5, "{hooks:?}");
    assert!(
        hooks
            .iter()
            .all(|h| h["url"] == format!("{base}/v1/gateways/sms-gate/webhook")),
        "{hooks:?}"
    );

    // Idempotent: a second run registers nothing new.
    let (ok, again) = gateways("connect", &config, &env);
    assert!(ok, "{again}");
    assert!(!again.contains(": registered"), "{again}");
    assert_eq!(again.matches("already registered").count(), 5, "{again}");

    // And check is now clean.
    let (ok, out) = gateways("check", &config, &env);
    assert!(ok, "{out}");
    assert!(out.starts_with("pixel: OK"), "{out}");

    // The phone's events, signed with the key connect set, are accepted by the issuer.
    let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    let server = Serve::start(dir.path(), &config, port, &env);
    let (status, body) = start(&client(), &server.base, "+447400900123").await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v = get_json(&client(), &format!("{}/v1/verifications/{id}", server.base)).await;
        if v["delivery"]["state"] == "delivered" {
            break;
        }
        assert!(Instant::now() < deadline, "not delivered: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = get_text(&client(), &format!("{}/metrics", server.base)).await;
    assert!(
        metrics.contains("otpgate_gateway_webhooks_total{result=\"rejected\"} 0"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("otpgate_gateway_webhooks_total{result=\"accepted\"} 0"),
        "no event was accepted:\n{metrics}"
    );
}
