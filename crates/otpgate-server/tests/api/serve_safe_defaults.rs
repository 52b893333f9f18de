//! Safe defaults (issue 16 item 1) as a user meets them, with the real `otpgate serve`: each
//! unsafe start is refused with a non-zero exit and an error that says why and what to do.
//! - the digest of the documented placeholder API key;
//! - dev mode (no config) on a non-loopback address;
//! - a webhook signing key shorter than 16 bytes (sms-gate.app's 8-character default);
//! - a cloud-mode sms-gate server over `http://` without `danger_allow_http`.
#![allow(clippy::unwrap_used, missing_docs)]

use std::process::Command;

/// `otpgate serve ARGS` in a fresh directory with `env`: exit code and stderr.
fn serve(args: &[&str], config: Option<&str>, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_otpgate"));
    cmd.arg("serve")
        .args(args)
        .current_dir(dir.path())
        .env_remove("OTPGATE_CONFIG")
        .env_remove("OTPGATE_LISTEN")
        .env("OTPGATE_DATA_DIR", dir.path().join("data"));
    if let Some(text) = config {
        let path = dir.path().join("otpgate.toml");
        std::fs::write(&path, text).unwrap();
        cmd.arg("--config").arg(path);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const APP: &str = "[server]\nlisten = \"127.0.0.1:0\"\n\n[[apps]]\nname = \"shop\"\n";

#[test]
fn the_documented_placeholder_api_key_does_not_start() {
    let config = format!(
        "{APP}[policy]\napi_keys = [\"sha256:e4b2e21b07f27a372f479365f2a01cda534f67efebea5fda9662682f8b96f4bd\"]\n"
    )
    .replace("[server]\n", "[server]\ndanger_discard_sends = true\n");
    let (code, err) = serve(&[], Some(&config), &[]);
    assert_ne!(code, Some(0), "{err}");
    assert!(
        err.contains("policy.api_keys[0]") && err.contains("placeholder"),
        "{err}"
    );
    assert!(err.contains("otpgate keys api-key"), "{err}");
}

#[test]
fn dev_mode_on_a_non_loopback_address_does_not_start() {
    for addr in ["0.0.0.0:0", "[::]:0"] {
        let (code, err) = serve(&["--listen", addr], None, &[]);
        assert_ne!(code, Some(0), "{addr}: {err}");
        assert!(
            err.contains("loopback") && err.contains("--config") && err.contains("/_emulator"),
            "{addr}: {err}"
        );
    }
    let (code, err) = serve(&[], None, &[("OTPGATE_LISTEN", "0.0.0.0:0")]);
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("loopback"), "{err}");
}

/// A config with one sms-gate device (nothing listens at its URL).
fn with_device(gateways: &str, device: &str) -> String {
    format!(
        "{APP}[gateways]\n{gateways}\n[[gateways.devices]]\nname = \"p\"\nkind = \"sms-gate\"\n\
         username = \"sms\"\npassword_env = \"DEVICE_PW\"\n{device}\n"
    )
}

#[test]
fn a_short_webhook_signing_key_does_not_start_and_says_where_to_set_a_longer_one() {
    let config = with_device(
        "webhook_signing_key_env = \"HOOK_KEY\"",
        "url = \"http://127.0.0.1:9\"",
    );
    let (code, err) = serve(
        &[],
        Some(&config),
        &[("HOOK_KEY", "Ab3dE6gH"), ("DEVICE_PW", "x")],
    );
    assert_ne!(code, Some(0), "{err}");
    assert!(
        err.contains("HOOK_KEY") && err.contains("16") && err.contains("Settings → Webhooks"),
        "{err}"
    );
    assert!(!err.contains("Ab3dE6gH"), "the key was echoed: {err}");
    // A device's own key too.
    let config = with_device(
        "",
        "url = \"http://127.0.0.1:9\"\nsigning_key_env = \"P_KEY\"",
    );
    let (code, err) = serve(
        &[],
        Some(&config),
        &[("P_KEY", "short"), ("DEVICE_PW", "x")],
    );
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("P_KEY") && err.contains("16"), "{err}");
}

#[test]
fn a_cloud_mode_gateway_over_http_needs_the_danger_key() {
    let cloud = "mode = \"cloud\"\nurl = \"http://127.0.0.1:9\"";
    let (code, err) = serve(&[], Some(&with_device("", cloud)), &[("DEVICE_PW", "x")]);
    assert_ne!(code, Some(0), "{err}");
    assert!(
        err.contains("gateways.devices[0].url") && err.contains("danger_allow_http"),
        "{err}"
    );
}
