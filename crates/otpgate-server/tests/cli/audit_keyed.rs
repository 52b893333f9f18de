//! The keyed audit chain and its anchors (issue 16 item 3), against real files and the real
//! `otpgate audit verify`: an edited line anywhere, a deleted line, a log re-sealed without
//! the key (unkeyed, or with a wrong key), a forged checkpoint, truncation and rewriting
//! since the last anchor, a forged anchor: each fails with a clear message and a non-zero
//! exit. An untouched log verifies, with its anchors, across a key rotation, and with no
//! `--data-dir` when the keys sit next to the log (what `scripts/bench.sh` relies on).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use hmac::{Hmac, KeyInit as _, Mac as _};
use otpgate_server::audit::{AnchorSink, AuditEvent, AuditLog, GENESIS};
use otpgate_server::keys::KeyRing;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// 2026-11-25T20:00:00Z.
const T0: i64 = 1_795_636_800_000;

struct Fixture {
    _dir: tempfile::TempDir,
    data: PathBuf,
    log: PathBuf,
    anchors: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        fs::create_dir_all(&data).expect("mkdir");
        Self {
            log: data.join("audit.jsonl"),
            anchors: dir.path().join("anchors.jsonl"),
            data,
            _dir: dir,
        }
    }

    fn ring(&self) -> KeyRing {
        KeyRing::load_or_create(&self.data).expect("keys")
    }

    /// Appends `n` events (every third a `check.approved`) starting at event `from`.
    async fn append(&self, from: i64, n: i64) {
        let log = AuditLog::open(&self.log, &self.ring()).expect("open");
        for i in from..from + n {
            let kind = if i % 3 == 0 {
                "check.approved"
            } else {
                "verification.started"
            };
            let mut e = AuditEvent::new(kind, T0 + i * 1000);
            e.request_id = Some(format!("req-{i}"));
            e.verification_id = Some(format!("v_{i}"));
            e.detail = json!({ "n": i });
            log.append(e).await.expect("append");
        }
    }

    /// Exports an anchor of the log as it stands to the anchors file.
    async fn anchor(&self) {
        let log = AuditLog::open(&self.log, &self.ring()).expect("open");
        let line = log.anchor(T0).await.expect("anchor").expect("enabled");
        AnchorSink::File(self.anchors.clone())
            .write(&reqwest::Client::new(), &line)
            .await
            .expect("write anchor");
    }

    fn lines(&self) -> Vec<String> {
        fs::read_to_string(&self.log)
            .expect("read")
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn write(&self, lines: &[String]) {
        fs::write(
            &self.log,
            lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
        )
        .expect("write");
    }

    /// `otpgate audit verify --file LOG --data-dir DATA [extra]`: (success, stdout+stderr).
    fn verify(&self, extra: &[&str]) -> (bool, String) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_otpgate"));
        cmd.args(["audit", "verify", "--file"])
            .arg(&self.log)
            .arg("--data-dir")
            .arg(&self.data)
            .args(extra);
        run(cmd)
    }

    fn verify_with_anchors(&self) -> (bool, String) {
        let anchors = self.anchors.display().to_string();
        self.verify(&["--anchors", &anchors])
    }

    fn assert_broken(&self, line: u64, why: &str) {
        let (ok, out) = self.verify(&[]);
        assert!(!ok, "verified a tampered log: {out}");
        assert!(
            out.contains(&format!("chain broken at line {line}:")) && out.contains(why),
            "want line {line} ({why}): {out}"
        );
    }
}

fn run(mut cmd: Command) -> (bool, String) {
    cmd.env_remove("OTPGATE_DATA_DIR")
        .env_remove("OTPGATE_AUDIT_KEY")
        .env_remove("OTPGATE_AUDIT_KEY_FILE");
    let out = cmd.output().expect("runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn obj(line: &str) -> Value {
    serde_json::from_str(line).expect("json")
}

/// `{"seq":N,<body>` of a line: everything before its `prev`.
fn head_and_body(line: &str) -> (u64, String) {
    let seq = obj(line)["seq"].as_u64().expect("seq");
    let start = line.find(',').expect("comma");
    let end = line.find(",\"prev\":").expect("prev");
    (seq, line[start..end].to_owned())
}

/// Re-chains `lines` from seq 1 the way someone without the audit key could: unkeyed (the
/// old SHA-256 format) or with `wrong_key` under the real key id.
fn reseal(lines: &[String], wrong_key: Option<&[u8]>) -> Vec<String> {
    let mut prev = GENESIS.to_owned();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let (_, body) = head_and_body(l);
        let kid = obj(l)["kid"].as_str().unwrap_or("a0").to_owned();
        let content = format!("{{\"seq\":{}{body},\"prev\":\"{prev}\"", i + 1);
        let (line, link) = seal_as(&content, &kid, wrong_key);
        out.push(line);
        prev = link;
    }
    out
}

/// Seals `content` (an object without its closing brace): unkeyed, or with `key`.
fn seal_as(content: &str, kid: &str, key: Option<&[u8]>) -> (String, String) {
    match key {
        None => {
            let hash = hex::encode(Sha256::digest(format!("{content}}}").as_bytes()));
            let line = format!("{content},\"hash\":\"{hash}\"}}");
            let link = hex::encode(Sha256::digest(line.as_bytes()));
            (line, link)
        }
        Some(key) => {
            let covered = format!("{content},\"kid\":\"{kid}\"");
            let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("key");
            mac.update(b"otpgate-audit-line-v1\n");
            mac.update(covered.as_bytes());
            mac.update(b"}");
            let tag = hex::encode(mac.finalize().into_bytes());
            (format!("{covered},\"mac\":\"{tag}\"}}"), tag)
        }
    }
}

#[tokio::test]
async fn an_untouched_log_verifies_with_its_anchors_and_without_data_dir() {
    let f = Fixture::new();
    f.append(0, 20).await;
    f.anchor().await;
    f.append(20, 10).await;
    f.anchor().await;
    let (ok, out) = f.verify_with_anchors();
    assert!(ok, "{out}");
    assert!(out.contains("OK: 30 lines"), "{out}");
    assert!(out.contains("2 anchors match"), "{out}");
    // The keys next to the log are found without --data-dir (scripts/bench.sh's call).
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_otpgate"));
    cmd.args(["audit", "verify", "--file"]).arg(&f.log);
    let (ok, out) = run(cmd);
    assert!(ok, "{out}");
    assert!(out.contains("no --anchors given"), "{out}");
    // Every line names its key and carries a MAC; the chain links MAC to MAC.
    let l = f.lines();
    let kid = f.ring().audit_key().id().to_owned();
    assert!(l.iter().all(|x| obj(x)["kid"] == kid.as_str()));
    assert_eq!(obj(&l[1])["prev"], obj(&l[0])["mac"]);
}

#[tokio::test]
async fn an_edited_line_anywhere_is_named() {
    let f = Fixture::new();
    f.append(0, 12).await;
    let original = f.lines();
    for at in [0usize, 5, 11] {
        let mut l = original.clone();
        l[at] = l[at].replacen(&format!("\"n\":{at}"), "\"n\":99", 1);
        assert_ne!(l[at], original[at]);
        f.write(&l);
        f.assert_broken(at as u64 + 1, "MAC does not verify");
    }
    // An approval turned into a rejection, its MAC left as it was.
    let mut l = original.clone();
    l[3] = l[3].replacen("check.approved", "check.rejected", 1);
    f.write(&l);
    f.assert_broken(4, "MAC does not verify");
    f.write(&original);
    assert!(f.verify(&[]).0);
}

#[tokio::test]
async fn a_deleted_line_in_the_middle_is_named() {
    let f = Fixture::new();
    f.append(0, 12).await;
    let mut l = f.lines();
    l.remove(6);
    f.write(&l);
    f.assert_broken(7, "seq 8 where 7 was expected");
}

#[tokio::test]
async fn deleting_every_approval_and_resealing_without_the_key_fails() {
    let f = Fixture::new();
    f.append(0, 30).await;
    let kept: Vec<String> = f
        .lines()
        .into_iter()
        .filter(|l| obj(l)["kind"] != "check.approved")
        .collect();
    assert_eq!(kept.len(), 20);

    // Re-sealed as an unkeyed SHA-256 chain (what the old format allowed).
    f.write(&reseal(&kept, None));
    f.assert_broken(1, "no MAC");

    // Re-sealed with HMAC under a key of the attacker's own, with the real key id.
    f.write(&reseal(&kept, Some(b"the attacker's own key, 32 bytes!")));
    f.assert_broken(1, "MAC does not verify");

    // Under a key id of their own.
    let mine: Vec<String> = reseal(&kept, Some(b"k"))
        .iter()
        .map(|l| {
            l.replacen(
                &format!("\"kid\":\"{}\"", f.ring().audit_key().id()),
                "\"kid\":\"a0\"",
                1,
            )
        })
        .collect();
    f.write(&mine);
    f.assert_broken(1, "unknown audit key `a0`");
}

#[tokio::test]
async fn a_forged_checkpoint_replacing_the_first_lines_fails() {
    let f = Fixture::new();
    f.append(0, 40).await;
    let l = f.lines();
    let n = 30;
    let kid = obj(&l[0])["kid"].as_str().expect("kid").to_owned();
    let anchor = obj(&l[n - 1])["mac"].as_str().expect("mac").to_owned();
    let content = format!(
        "{{\"seq\":{n},\"at\":\"2026-11-25T21:00:00Z\",\"kind\":\"checkpoint\",\
         \"request_id\":null,\"verification_id\":null,\"app\":null,\"phone\":null,\
         \"detail\":{{\"anchor\":\"{anchor}\",\"dropped\":{n},\"before\":\"2026-11-25T21:00:00Z\"}},\
         \"prev\":\"{GENESIS}\""
    );
    for key in [None, Some(&b"not the audit key"[..])] {
        let mut forged = vec![seal_as(&content, &kid, key).0];
        forged.extend(l[n..].iter().cloned());
        f.write(&forged);
        f.assert_broken(
            1,
            if key.is_none() {
                "no MAC"
            } else {
                "MAC does not verify"
            },
        );
    }
    // A genuine purge's checkpoint verifies.
    f.write(&l);
    let log = AuditLog::open(&f.log, &f.ring()).expect("open");
    assert_eq!(log.purge_before(T0 + 30_000).await.expect("purge"), 30);
    drop(log);
    let (ok, out) = f.verify(&[]);
    assert!(ok, "{out}");
    assert!(out.contains("purged (checkpoint)"), "{out}");
}

#[tokio::test]
async fn a_purge_refuses_to_launder_edited_lines() {
    let f = Fixture::new();
    f.append(0, 10).await;
    // Every line made to look a day older, so that a retention purge would drop them.
    let l: Vec<String> = f
        .lines()
        .iter()
        .map(|x| x.replacen("2026-11-25T20:00:0", "2026-11-24T20:00:0", 1))
        .collect();
    f.write(&l);
    let log = AuditLog::open(&f.log, &f.ring()).expect("open");
    let err = log
        .purge_before(T0 - 3_600_000)
        .await
        .expect_err("edited lines");
    assert!(err.to_string().contains("not purging"), "{err}");
}

#[tokio::test]
async fn truncation_and_rewriting_since_an_anchor_are_reported() {
    let f = Fixture::new();
    f.append(0, 20).await;
    f.anchor().await;
    f.append(20, 10).await;
    f.anchor().await;
    let original = f.lines();

    // The last five lines cut off: a valid shorter chain, but the last anchor saw 30.
    f.write(&original[..25]);
    assert!(f.verify(&[]).0, "the chain alone cannot tell");
    let (ok, out) = f.verify_with_anchors();
    assert!(!ok, "{out}");
    assert!(
        out.contains("truncated: the log ends at seq 25") && out.contains("saw 30 lines"),
        "{out}"
    );

    // Cut, then written on: as long as before, but not the lines the anchor saw.
    f.append(100, 5).await;
    assert!(f.verify(&[]).0);
    let (ok, out) = f.verify_with_anchors();
    assert!(!ok, "{out}");
    assert!(out.contains("rewritten: line seq 30"), "{out}");

    // A forged anchor (its line count raised) is refused.
    f.write(&original);
    let mut a: Vec<String> = fs::read_to_string(&f.anchors)
        .expect("read")
        .lines()
        .map(str::to_owned)
        .collect();
    a[1] = a[1].replacen("\"seq\":30", "\"seq\":31", 1);
    fs::write(&f.anchors, a.join("\n") + "\n").expect("write");
    let (ok, out) = f.verify_with_anchors();
    assert!(!ok, "{out}");
    assert!(
        out.contains("anchors file, line 2") && out.contains("MAC does not verify"),
        "{out}"
    );
}

#[tokio::test]
async fn a_log_across_a_key_rotation_verifies_and_a_revoked_key_does_not() {
    let f = Fixture::new();
    f.append(0, 5).await;
    let old = f.ring().audit_key().id().to_owned();
    let out = Command::new(env!("CARGO_BIN_EXE_otpgate"))
        .args(["keys", "rotate", "--data-dir"])
        .arg(&f.data)
        .env_remove("OTPGATE_AUDIT_KEY")
        .output()
        .expect("runs");
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("new audit key"));
    let new = f.ring().audit_key().id().to_owned();
    assert_ne!(old, new);
    f.append(5, 5).await;
    f.anchor().await;
    let l = f.lines();
    assert_eq!(obj(&l[4])["kid"], old.as_str());
    assert_eq!(obj(&l[5])["kid"], new.as_str());
    let (ok, out) = f.verify_with_anchors();
    assert!(ok, "{out}");
    assert!(out.contains(&format!("audit keys: {old}, {new}")), "{out}");

    // The old key revoked: the lines it sealed no longer verify.
    let out = Command::new(env!("CARGO_BIN_EXE_otpgate"))
        .args(["keys", "revoke", &old, "--data-dir"])
        .arg(&f.data)
        .output()
        .expect("runs");
    assert!(out.status.success(), "{out:?}");
    f.assert_broken(1, &format!("unknown audit key `{old}`"));
}

#[tokio::test]
async fn an_unkeyed_log_is_set_aside_and_sealed_by_the_first_keyed_line() {
    let f = Fixture::new();
    let mut legacy = Vec::new();
    let mut prev = GENESIS.to_owned();
    for i in 1..=3 {
        let content = format!(
            "{{\"seq\":{i},\"at\":\"2026-11-25T20:00:0{i}Z\",\"kind\":\"sms.sent\",\
             \"request_id\":null,\"verification_id\":null,\"app\":null,\"phone\":null,\
             \"detail\":{{}},\"prev\":\"{prev}\""
        );
        let (line, link) = seal_as(&content, "", None);
        legacy.push(line);
        prev = link;
    }
    f.write(&legacy);
    let _ = f.ring();
    f.assert_broken(1, "no MAC");
    f.append(10, 2).await;
    let l = f.lines();
    assert_eq!(l.len(), 3, "chain.keyed + two lines");
    let first = obj(&l[0]);
    assert_eq!(first["kind"], "chain.keyed");
    assert_eq!(first["detail"]["unkeyed_last_seq"], 3);
    assert_eq!(first["detail"]["unkeyed_head"], prev.as_str());
    let aside = f
        .data
        .join(first["detail"]["unkeyed_log"].as_str().expect("name"));
    assert_eq!(
        fs::read_to_string(&aside)
            .expect("set aside")
            .lines()
            .count(),
        3
    );
    assert!(f.verify(&[]).0);
}

#[test]
fn no_key_and_bad_input_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.jsonl");
    fs::write(&log, "").expect("write");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_otpgate"));
    cmd.current_dir(dir.path())
        .args(["audit", "verify", "--file"])
        .arg(&log);
    let (ok, out) = run(cmd);
    assert!(!ok);
    assert!(out.contains("no audit key found"), "{out}");
    assert!(!out.contains("panicked"), "{out}");

    let f = Fixture::new();
    let _ = f.ring();
    fs::write(&f.log, "not json\n{\"seq\":1}\n").expect("write");
    f.assert_broken(1, "not an audit line");
    let missing = Path::new("/nonexistent/anchors.jsonl")
        .display()
        .to_string();
    fs::write(&f.log, "").expect("write");
    let (ok, out) = f.verify(&["--anchors", &missing]);
    assert!(
        !ok && out.contains("cannot read /nonexistent/anchors.jsonl"),
        "{out}"
    );
    assert!(!out.contains("panicked"), "{out}");
}

#[tokio::test]
async fn the_http_sink_posts_each_anchor_and_a_refusal_is_an_error() {
    use std::sync::{Arc, Mutex};
    let got = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = Arc::clone(&got);
    let app = axum::Router::new()
        .route(
            "/anchors",
            axum::routing::post(move |body: String| async move {
                seen.lock().expect("lock").push(body);
                axum::http::StatusCode::NO_CONTENT
            }),
        )
        .route(
            "/down",
            axum::routing::post(|| async { axum::http::StatusCode::SERVICE_UNAVAILABLE }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });

    let f = Fixture::new();
    f.append(0, 3).await;
    let log = AuditLog::open(&f.log, &f.ring()).expect("open");
    let line = log.anchor(T0).await.expect("anchor").expect("enabled");
    let http = reqwest::Client::new();
    let sink = AnchorSink::parse(&format!("http://{addr}/anchors")).expect("sink");
    sink.write(&http, &line).await.expect("posted");
    assert_eq!(*got.lock().expect("lock"), vec![line.clone()]);
    assert_eq!(obj(&line)["seq"], 3);

    let down = AnchorSink::parse(&format!("http://{addr}/down")).expect("sink");
    let err = down.write(&http, &line).await.expect_err("503");
    assert!(err.to_string().contains("503"), "{err}");
    for bad in ["ftp://x", "file:", "anchors.jsonl", "http://"] {
        assert!(AnchorSink::parse(bad).is_err(), "{bad}");
    }
}
