//! `otpgate serve` as a user meets it: a broken config file stops it with the file, the key,
//! the line and the reason (non-zero exit); with no config it runs in dev mode (the emulated
//! phone's outbox is readable, the demo app works end to end); SIGTERM drains and exits 0.
#![allow(clippy::unwrap_used, missing_docs)]

use std::process::Command;
use std::time::{Duration, Instant};

use otpgate_test_support::http::{get_json, get_text, start};
use otpgate_test_support::process::{Server, free_port};
use serde_json::json;

fn serve_with(config: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_otpgate"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&path)
        .env_remove("OTPGATE_CONFIG")
        .env("OTPGATE_DATA_DIR", dir.path().join("data"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_broken_config_names_file_key_and_reason_and_does_not_start() {
    let (code, err) = serve_with("[server]\nlisten = \"127.0.0.1:0\"\nlisten_port = 8080\n");
    assert_ne!(code, 0);
    assert!(err.contains("bad.toml:3:"), "{err}");
    assert!(err.contains("listen_port"), "{err}");

    let (code, err) = serve_with("[[apps]]\nname = \"shop\"\n\n[store]\nkind = \"sqlite\"\n");
    assert_ne!(code, 0);
    assert!(
        err.contains("store.kind") && err.contains("bad.toml"),
        "{err}"
    );

    let (code, err) = serve_with("[[apps]]\nname = \"shop\"\norigins = [\"shop.example.com\"]\n");
    assert_ne!(code, 0);
    assert!(err.contains("apps[0].origins[0]"), "{err}");

    let (code, err) = serve_with(
        "[[apps]]\nname = \"shop\"\n[store]\nkind = \"redis\"\nurl = \"redis://:s3cret@10.0.0.1/\"\n",
    );
    assert_ne!(code, 0);
    assert!(err.contains("store.url"), "{err}");
    assert!(!err.contains("s3cret"), "a secret was echoed: {err}");

    let (code, err) = serve_with("[[apps]]\nname = \"shop\"\n[policy]\nmax_attempts = 0\n");
    assert_ne!(code, 0);
    assert!(err.contains("policy.max_attempts"), "{err}");

    // The calling-code keys of earlier versions stop the start, naming their replacements
    // (and, for allowed_countries, the regions the old codes covered).
    let (code, err) =
        serve_with("[[apps]]\nname = \"shop\"\n[policy]\nallowed_countries = [\"1\", \"44\"]\n");
    assert_ne!(code, 0);
    assert!(
        err.contains("policy.allowed_countries") && err.contains("allowed_regions"),
        "{err}"
    );
    assert!(err.contains("JM") && err.contains("JE"), "{err}");
    let (code, err) =
        serve_with("[[apps]]\nname = \"shop\"\n[policy]\ndanger_allow_all_countries = true\n");
    assert_ne!(code, 0);
    assert!(err.contains("danger_allow_all_regions"), "{err}");
    let (code, err) =
        serve_with("[[apps]]\nname = \"shop\"\n[policy]\nallowed_regions = [\"UK\"]\n");
    assert_ne!(code, 0);
    assert!(
        err.contains("allowed_regions") && err.contains("ISO 3166-1"),
        "{err}"
    );
    let (code, err) = serve_with(
        "[[apps]]\nname = \"shop\"\n[[gateways.devices]]\nname = \"p\"\nkind = \"sms-gate\"\nurl = \"http://127.0.0.1:9\"\nusername = \"u\"\npassword_env = \"P\"\ncountries = [\"44\"]\n",
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("countries") && err.contains("regions"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_runs_the_whole_flow_and_sigterm_drains() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = Server::start(dir.path(), None, port, &[]);
    let client = reqwest::Client::new();
    let base = server.base.clone();
    let (status, body) = start(&client, &base, "+447400900123").await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    // The emulated phone's outbox: the SMS with the WebOTP line for the listen host.
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let list = get_json(
            &client,
            &format!("{base}/_emulator/messages?phone=%2B447400900123"),
        )
        .await;
        if let Some(t) = list
            .as_array()
            .and_then(|l| l.last())
            .and_then(|m| m["text"].as_str())
        {
            break t.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no SMS reached the emulated phone"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The phone's signed webhooks move the delivery state forward.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let view = get_json(&client, &format!("{base}/v1/verifications/{id}")).await;
        let state = view["delivery"]["state"].as_str().unwrap_or("").to_owned();
        if state == "sent" || state == "delivered" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "delivery state stuck at {state}: {view}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = get_text(&client, &format!("{base}/metrics")).await;
    assert!(
        metrics.contains("otpgate_gateway_messages_total{event=\"submitted\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("otpgate_gateway_device_up{device=\"emulator\""),
        "{metrics}"
    );
    assert!(metrics.ends_with("# EOF\n"));
    let webotp = text.lines().last().unwrap();
    assert!(webotp.starts_with("@localhost #"), "{text}");
    let code = webotp.rsplit('#').next().unwrap();
    let res = client
        .post(format!("{base}/v1/verifications/{id}/check"))
        .header("origin", "http://localhost:5173")
        .json(&json!({"code": code}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "http://localhost:5173"
    );
    // Dev mode made its data dir and keys next to the working directory.
    assert!(dir.path().join("otpgate-data").is_dir());

    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}

/// Dev mode writes a trusted API key to `DATA_DIR/dev-api-key` (0600), names the file in
/// its log but never the key, accepts the key as a bearer (the edge worker's README runs
/// against it), keeps it across restarts, and still refuses any other key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_writes_a_private_api_key_and_accepts_it() {
    use std::io::Read as _;
    use std::os::unix::fs::PermissionsExt as _;

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = Server::start(dir.path(), None, port, &[]);
    let file = dir.path().join("otpgate-data").join("dev-api-key");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !file.exists() {
        assert!(Instant::now() < deadline, "no {}", file.display());
        std::thread::sleep(Duration::from_millis(50));
    }
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
    let key = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert_eq!(key.len(), 64, "32 random bytes in hex");

    let client = reqwest::Client::new();
    let post = |bearer: String| {
        client
            .post(format!("{}/v1/verifications", server.base))
            .bearer_auth(bearer)
            .json(&json!({"phone": "+14155550123"}))
            .send()
    };
    let res = post(key.clone()).await.unwrap();
    // Accepted as a key (any other bearer is refused, below), not ignored.
    assert_eq!(res.status().as_u16(), 201);
    let res = post(format!("{key}x")).await.unwrap();
    assert_eq!(res.status().as_u16(), 401);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key", "{body}");

    // The log names the file, never the key.
    let mut server = server;
    let _ = server.child.kill();
    let _ = server.child.wait();
    let mut log = String::new();
    server
        .child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(log.contains("dev-api-key"), "{log}");
    assert!(!log.contains(&key), "the key is in the log");
    drop(server);

    // A restart keeps the key.
    let server = Server::start(dir.path(), None, port, &[]);
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), key);
    let res = client
        .post(format!("{}/v1/verifications", server.base))
        .bearer_auth(&key)
        .json(&json!({"phone": "+14155550124"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);
}
