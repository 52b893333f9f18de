//! What the issuer keeps private (issue 16 item 6), against the real `otpgate serve`:
//! - the data directory is 0700 and every file in it (store, its log segments, the audit
//!   log, the keys) 0600 from the first start; files and directory opened up meanwhile are
//!   tightened at the next start, each with a log line;
//! - `delivery.gateway` (which phone carries a code) is shown only to API-key callers.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::Path;
use std::time::{Duration, Instant};

use otpgate_test_support::http::{client, start};
use otpgate_test_support::process::{Serve, ServeToml, free_port};
use serde_json::Value;

const API_KEY: &str = "privacy-test-api-key-0123456789";

fn config(dir: &Path) -> std::path::PathBuf {
    ServeToml {
        store: "kind = \"embedded\"".into(),
        policy: "api_keys = [\"env:PRIVACY_API_KEY\"]\n[policy.pow]\nenabled = false\n".into(),
        ..ServeToml::new("https://otp.example.com")
    }
    .write(dir)
}

fn env() -> Vec<(&'static str, String)> {
    vec![("PRIVACY_API_KEY", API_KEY.to_owned())]
}

#[cfg(unix)]
fn modes(data: &Path) -> Vec<(String, u32)> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let mut out = vec![(data.display().to_string(), mode(data))];
    for dir in [data.to_owned(), data.join("keys")] {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            if e.file_type().unwrap().is_file() {
                out.push((e.path().display().to_string(), mode(&e.path())));
            }
        }
    }
    out
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_dir_is_owner_only_and_opened_files_are_tightened_at_start() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = config(dir.path());
    let port = free_port();
    let mut server = Serve::start(dir.path(), &cfg, port, &env());
    let (status, body) = start(&client(), &server.base, "+447400900123").await;
    assert_eq!(status, 201, "{body}");
    let all = modes(&data);
    let names: Vec<&str> = all.iter().map(|(p, _)| p.as_str()).collect();
    for want in ["store.redb", "store.redb.wal-", "audit.jsonl", "keys/"] {
        assert!(
            names.iter().any(|n| n.contains(want)),
            "{want} in {names:?}"
        );
    }
    for (path, mode) in &all {
        let want = if *path == data.display().to_string() {
            0o700
        } else {
            0o600
        };
        assert_eq!(*mode, want, "{path}: {mode:o}");
    }
    server.kill9();

    // Opened up while it was down (a restore, a careless copy): tightened at the next start.
    for (path, _) in &all {
        let open = if *path == data.display().to_string() {
            0o755
        } else {
            0o644
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(open)).unwrap();
    }
    let server = Serve::start(dir.path(), &cfg, port, &env());
    for (path, mode) in modes(&data) {
        let want = if path == data.display().to_string() {
            0o700
        } else {
            0o600
        };
        assert_eq!(mode, want, "{path}: {mode:o}");
    }
    let log = std::fs::read_to_string(&server.proc.log).unwrap();
    assert!(log.contains("tightened permissions"), "{log}");
    assert!(
        log.contains("audit.jsonl") && log.contains("store.redb"),
        "{log}"
    );
}

async fn view(base: &str, id: &str, key: Option<&str>) -> (u16, Value) {
    let mut req = client().get(format!("{base}/v1/verifications/{id}"));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_is_shown_only_to_api_key_callers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Serve::start(dir.path(), &config(dir.path()), free_port(), &env());
    let base = &server.base;
    let (status, body) = start(&client(), base, "+447400900124").await;
    assert_eq!(status, 201, "{body}");
    assert!(body["delivery"].get("gateway").is_none(), "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    // Sends are discarded: the record names gateway `discard` once it is "sent".
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, v) = view(base, &id, Some(API_KEY)).await;
        if v["delivery"]["state"] == "sent" {
            assert_eq!(v["delivery"]["gateway"], "discard", "{v}");
            break;
        }
        assert!(Instant::now() < deadline, "never sent: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, v) = view(base, &id, None).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["delivery"]["state"], "sent", "{v}");
    assert!(v["delivery"].get("gateway").is_none(), "{v}");
    let (status, v) = view(base, &id, Some("not-the-key-not-the-key")).await;
    assert_eq!(status, 401, "{v}");
    assert_eq!(v["error"]["code"], "invalid_api_key", "{v}");
}
