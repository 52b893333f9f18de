//! The audit log: keyed chain, tamper detection, group commit under concurrency, reopening,
//! retention purge, torn writes, and that no code or full number ever reaches the file.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use otpgate_core::phone::PhoneNumber;
use otpgate_server::audit::{AuditEvent, AuditLog, GENESIS, VerifyError, verify_file};
use otpgate_server::keys::{KeyRing, audit_keys_for_verify};
use otpgate_server::store::Durability;
use serde_json::{Value, json};

/// 2026-11-25T20:00:00Z.
const T0: i64 = 1_795_636_800_000;

fn event(i: i64) -> AuditEvent {
    let mut e = AuditEvent::new("verification.started", T0 + i * 1000);
    e.request_id = Some(format!("req-{i}"));
    e.verification_id = Some(format!("v_{i}"));
    e.app = Some("shop".into());
    e.phone = Some(PhoneNumber::parse("+447400900123").expect("phone"));
    e.detail = json!({ "n": i });
    e
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .expect("read")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    fs::write(
        path,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .expect("write");
}

/// The keys of the data directory the log sits in (created on first use, as `serve` does).
fn ring(path: &Path) -> KeyRing {
    KeyRing::load_or_create(path.parent().expect("dir")).expect("keys")
}

/// Verifies the log with the audit keys of its data directory; returns its line count.
fn verify(path: &Path) -> u64 {
    let keys = audit_keys_for_verify(path.parent()).expect("audit keys");
    verify_file(path, &keys).expect("valid").lines
}

fn broken_line(path: &Path) -> u64 {
    let keys = audit_keys_for_verify(path.parent()).expect("audit keys");
    match verify_file(path, &keys) {
        Err(VerifyError::Broken(e)) => e.line,
        other => panic!("expected a broken chain, got {other:?}"),
    }
}

async fn log_with(path: &Path, n: i64) {
    let log = AuditLog::open(path, &ring(path)).expect("open");
    for i in 0..n {
        log.append(event(i)).await.expect("append");
    }
}

#[tokio::test]
async fn lines_are_chained_and_reopen_continues_the_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    log_with(&path, 3).await;
    assert_eq!(verify(&path), 3);
    let first: Value = serde_json::from_str(&lines(&path)[0]).expect("json");
    assert_eq!(first["seq"], 1);
    assert_eq!(first["prev"], GENESIS);
    assert_eq!(first["kind"], "verification.started");
    assert_eq!(first["at"], "2026-11-25T20:00:00Z");
    assert_eq!(first["request_id"], "req-0");

    // A second process (or a restart) continues the same chain.
    log_with(&path, 2).await;
    assert_eq!(verify(&path), 5);
    let last: Value = serde_json::from_str(&lines(&path)[4]).expect("json");
    assert_eq!(last["seq"], 5);
}

#[tokio::test]
async fn tampering_deleting_or_reordering_names_the_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    log_with(&path, 6).await;
    let original = lines(&path);

    // One byte changed in line 3 (inside the detail value).
    let mut l = original.clone();
    l[2] = l[2].replacen("\"n\":2", "\"n\":7", 1);
    assert_ne!(l[2], original[2]);
    write_lines(&path, &l);
    assert_eq!(broken_line(&path), 3);

    // The last line modified is caught too (each line carries its own hash).
    let mut l = original.clone();
    l[5] = l[5].replacen("req-5", "req-X", 1);
    write_lines(&path, &l);
    assert_eq!(broken_line(&path), 6);

    // Line 3 deleted: the new line 3 does not follow line 2.
    let mut l = original.clone();
    l.remove(2);
    write_lines(&path, &l);
    assert_eq!(broken_line(&path), 3);

    // Lines 4 and 5 swapped.
    let mut l = original.clone();
    l.swap(3, 4);
    write_lines(&path, &l);
    assert_eq!(broken_line(&path), 4);

    // The first line deleted (without a checkpoint).
    let mut l = original.clone();
    l.remove(0);
    write_lines(&path, &l);
    assert_eq!(broken_line(&path), 1);

    // The CLI says the same, and OK on the intact file.
    let cmd = |file: &Path| otpgate_server::cli::AuditCommand::Verify {
        file: Some(file.to_owned()),
        data_dir: Some(dir.path().to_owned()),
        anchors: None,
    };
    let err = otpgate_server::audit::run_cli(cmd(&path)).expect_err("broken");
    assert!(format!("{err:#}").contains("line 1:"), "{err:#}");
    write_lines(&path, &original);
    otpgate_server::audit::run_cli(cmd(&path)).expect("intact");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_keep_one_valid_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let log = Arc::new(AuditLog::open(&path, &ring(&path)).expect("open"));
    let tasks: Vec<_> = (0..64)
        .map(|t| {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                for i in 0..50 {
                    log.append(event(t * 1000 + i)).await.expect("append");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    assert_eq!(verify(&path), 64 * 50);
    // Every event is there exactly once.
    let mut ids: Vec<String> = lines(&path)
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("json")["request_id"]
                .as_str()
                .expect("id")
                .to_owned()
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 64 * 50);
}

/// `durability = "process"`: an append resolves once its line is in the file (written to
/// the OS, synced later), the chain is the same, and reopening continues it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn process_durability_answers_once_the_line_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let log =
        Arc::new(AuditLog::open_with(&path, &ring(&path), Durability::Process).expect("open"));
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let (log, path) = (Arc::clone(&log), path.clone());
            tokio::spawn(async move {
                for i in 0..20 {
                    let n = t * 1000 + i;
                    log.append(event(n)).await.expect("append");
                    let text = fs::read_to_string(&path).expect("read");
                    assert!(
                        text.contains(&format!("\"request_id\":\"req-{n}\"")),
                        "acknowledged line req-{n} is not in the file"
                    );
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    assert_eq!(verify(&path), 16 * 20);
    drop(log);
    let log = AuditLog::open_with(&path, &ring(&path), Durability::Process).expect("reopen");
    log.append(event(99_999)).await.expect("append");
    assert_eq!(verify(&path), 16 * 20 + 1);
    // Retention works the same: everything older goes, a checkpoint anchors the rest.
    assert_eq!(
        log.purge_before(T0 + 2_000_000_000).await.expect("purge"),
        16 * 20 + 1
    );
    log.append(event(100_000))
        .await
        .expect("append after purge");
    assert_eq!(verify(&path), 2, "checkpoint + the new line");
}

#[tokio::test]
async fn no_code_and_no_full_number_reach_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path, &ring(&path)).expect("open");
    let phone = PhoneNumber::parse("+447400900123").expect("phone");
    let mut e = AuditEvent::new("check.rejected", T0);
    e.phone = Some(phone.clone());
    e.detail = json!({
        "code": "493817",
        "otp": "493817",
        "sms_code": "493817",
        "nested": { "the_otp": "493817", "to": "+447400900123", "list": ["+44 7400 900123"] },
        "error_code": "wrong_code",
        "attempts_left": 4,
        "code_version": 2,
    });
    log.append(e).await.expect("append");
    let text = fs::read_to_string(&path).expect("read");
    assert!(
        !text.contains("493817"),
        "a code reached the audit log: {text}"
    );
    assert!(
        !text.contains("7400900123") && !text.contains("7400 900123"),
        "a full number reached the log: {text}"
    );
    let pseudonym = log.pseudonymize(&phone);
    assert!(
        pseudonym.starts_with("p:") && pseudonym.ends_with(":23"),
        "{pseudonym}"
    );
    assert_eq!(pseudonym, log.pseudonymize(&phone), "stable");
    let other_path = dir.path().join("other").join("b.jsonl");
    fs::create_dir_all(other_path.parent().expect("dir")).expect("mkdir");
    let other = AuditLog::open(&other_path, &ring(&other_path)).expect("open");
    assert_ne!(pseudonym, other.pseudonymize(&phone), "keyed");
    let line: Value = serde_json::from_str(text.trim()).expect("json");
    assert_eq!(line["phone"], pseudonym);
    assert_eq!(line["detail"]["error_code"], "wrong_code");
    assert_eq!(line["detail"]["attempts_left"], 4);
    assert_eq!(line["detail"]["code_version"], 2, "which code: no secret");
    assert!(line["detail"].get("code").is_none());
    assert_eq!(verify(&path), 1);
}

#[tokio::test]
async fn purge_keeps_the_chain_verifiable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path, &ring(&path)).expect("open");
    for i in 0..10 {
        log.append(event(i * 60)).await.expect("append"); // one a minute
    }
    // Drop the first four minutes (lines 1-4).
    let dropped = log.purge_before(T0 + 4 * 60_000 - 1).await.expect("purge");
    assert_eq!(dropped, 4);
    let l = lines(&path);
    assert_eq!(l.len(), 7, "a checkpoint and the six kept lines");
    let cp: Value = serde_json::from_str(&l[0]).expect("json");
    assert_eq!(cp["kind"], "checkpoint");
    assert_eq!(cp["seq"], 4);
    assert_eq!(cp["detail"]["dropped"], 4);
    assert_eq!(verify(&path), 7);
    // Appending after the purge and after a reopen continues the chain.
    log.append(event(1000)).await.expect("append");
    drop(log);
    log_with(&path, 1).await;
    assert_eq!(verify(&path), 9);
    // A forged line 1 after a purge is still caught.
    let mut l = lines(&path);
    l[1] = l[1].replacen("req-", "rEq-", 1);
    write_lines(&path, &l);
    assert_eq!(broken_line(&path), 2);
    let mut l = lines(&path);
    l.remove(0);
    write_lines(&path, &l);
    assert_eq!(broken_line(&path), 1);
}

#[tokio::test]
async fn purging_everything_leaves_a_checkpoint_that_the_chain_continues_from() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path, &ring(&path)).expect("open");
    for i in 0..3 {
        log.append(event(i)).await.expect("append");
    }
    assert_eq!(log.purge_before(T0 + 3_600_000).await.expect("purge"), 3);
    assert_eq!(
        log.purge_before(T0).await.expect("purge"),
        0,
        "nothing older"
    );
    log.append(event(9_999)).await.expect("append");
    drop(log);
    log_with(&path, 1).await;
    assert_eq!(verify(&path), 3);
    let last: Value = serde_json::from_str(&lines(&path)[2]).expect("json");
    assert_eq!(last["seq"], 5);
}

#[tokio::test]
async fn a_torn_last_line_is_dropped_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    log_with(&path, 2).await;
    let mut text = fs::read_to_string(&path).expect("read");
    text.push_str("{\"seq\":3,\"at\":\"2026-11-2");
    fs::write(&path, &text).expect("write");
    assert_eq!(broken_line(&path), 3, "verify reports the torn line");
    log_with(&path, 1).await;
    assert_eq!(verify(&path), 3);
}

#[tokio::test]
async fn a_disabled_log_accepts_appends() {
    let log = AuditLog::disabled();
    log.append(event(0)).await.expect("append");
    assert_eq!(log.purge_before(T0).await.expect("purge"), 0);
    assert!(log.path().is_none());
}

#[test]
fn opening_a_file_that_is_not_an_audit_log_fails_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    fs::write(&path, "hello\n").expect("write");
    let err = AuditLog::open(&path, &ring(&path)).expect_err("not an audit log");
    assert!(format!("{err:#}").contains("audit.jsonl"), "{err:#}");
}
