//! `serve` exports audit anchors (issue 16 item 3), against the real `otpgate serve`: with
//! `[audit] anchor = "file:..."` it appends an anchor at start, every `anchor_every_secs`
//! and at shutdown; the last one names the log's last line, `otpgate audit verify --anchors`
//! accepts the log as written and reports it once lines are cut off the end.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use otpgate_test_support::http::{client, start};
use otpgate_test_support::process::{Serve, ServeToml, free_port};
use serde_json::Value;

fn verify(data: &Path, anchors: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_otpgate"))
        .args(["audit", "verify", "--file"])
        .arg(data.join("audit.jsonl"))
        .arg("--data-dir")
        .arg(data)
        .arg("--anchors")
        .arg(anchors)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_exports_anchors_that_catch_a_truncated_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let anchors = dir.path().join("anchors.jsonl");
    let cfg = ServeToml {
        store: "kind = \"embedded\"".into(),
        policy: "[policy.pow]\nenabled = false\n".into(),
        tail: format!(
            "[audit]\nanchor = \"file:{}\"\nanchor_every_secs = 1\n",
            anchors.display()
        ),
        ..ServeToml::new("https://otp.example.com")
    }
    .write(dir.path());
    let port = free_port();
    let mut server = Serve::start(dir.path(), &cfg, port, &[]);
    let http = client();
    for phone in ["+447400900123", "+447400900124"] {
        let (status, body) = start(&http, &server.base, phone).await;
        assert_eq!(status, 201, "{body}");
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let pid = server.proc.pid().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while server.proc.alive() {
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }

    let text = std::fs::read_to_string(&anchors).unwrap();
    let all: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(all.len() >= 3, "at start, each second, at shutdown: {text}");
    let log = std::fs::read_to_string(data.join("audit.jsonl")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines.len() >= 2, "{log}");
    let last_line: Value = serde_json::from_str(lines[lines.len() - 1]).unwrap();
    let last = all.last().unwrap();
    assert_eq!(
        last["seq"], last_line["seq"],
        "the shutdown anchor saw every line"
    );
    assert_eq!(last["head"], last_line["mac"]);
    assert_eq!(last["log"], "audit.jsonl");
    assert!(last["mac"].as_str().is_some_and(|m| m.len() == 64));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&anchors).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    let (ok, out) = verify(&data, &anchors);
    assert!(ok, "{out}");
    assert!(out.contains("anchors match"), "{out}");

    // The last line cut off: the chain alone is still valid, the anchors are not fooled.
    let cut: String = lines[..lines.len() - 1]
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(data.join("audit.jsonl"), cut).unwrap();
    let (ok, out) = verify(&data, &anchors);
    assert!(!ok, "{out}");
    assert!(out.contains("truncated"), "{out}");
}
