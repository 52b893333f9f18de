//! Crash safety of the embedded store: a child process writes and prints what the store
//! acknowledged, gets SIGKILLed mid-stream, and every acknowledged write must be in the
//! file when it is reopened (and the file must be consistent).
//!
//! The child is this test binary re-executed with `OTPGATE_CRASH_CHILD=<path>`: it runs
//! `store_crash::crash_child` only.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use otpgate_server::clock::{Clock, SystemClock};
use otpgate_server::store::{CheckOutcome, EmbeddedOptions, EmbeddedStore, Outcome, Store};
use otpgate_test_support::conformance::{right, sample_record};

const CHILD_ENV: &str = "OTPGATE_CRASH_CHILD";
/// One window for the whole run (about 1,100 years), so no boundary falls inside it.
const WINDOW: i64 = 1 << 45;

/// The child: 32 writers creating records, approving every other one and counting a
/// budget, printing `ACK <kind> <id>` after each acknowledged write. Runs until killed.
#[test]
fn crash_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return; // normal test run: nothing to do
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        // Checkpoints every 50 ms: the kill lands after several of them, with log segments
        // recycled (old entries under the new ones) and a checkpoint often in flight.
        let opts = EmbeddedOptions {
            checkpoint_every: std::time::Duration::from_millis(50),
            ..EmbeddedOptions::default()
        };
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open_with(&path, opts).expect("open"));
        let run = std::process::id();
        let mut tasks = Vec::new();
        for w in 0..32 {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                for n in 0u64.. {
                    let now = SystemClock.now_ms();
                    let id = format!("v_{run}_{w}_{n}");
                    store
                        .create(&sample_record(&id, now))
                        .await
                        .expect("create");
                    println!("ACK create {id}");
                    if n % 2 == 0 {
                        let code = sample_record(&id, now).code;
                        assert!(matches!(
                            store
                                .check(&id, &right(&code), None, now)
                                .await
                                .expect("check"),
                            CheckOutcome::Approved(_)
                        ));
                        println!("ACK approve {id}");
                    }
                    store
                        .take_budget("crash", u32::MAX, WINDOW, now)
                        .await
                        .expect("take");
                    println!("ACK budget {id}");
                }
            }));
        }
        for t in tasks {
            t.await.expect("writer");
        }
    });
}

struct Acks {
    created: BTreeSet<String>,
    approved: BTreeSet<String>,
    budget: u64,
}

/// The libtest name of `crash_child`: its module path without the crate (the binary
/// holds other tests; `--exact` runs this one only).
fn child_test_name() -> String {
    let module = module_path!();
    let module = module.split_once("::").map_or("", |(_, m)| m);
    if module.is_empty() {
        "crash_child".to_owned()
    } else {
        format!("{module}::crash_child")
    }
}

/// Runs a child on `path`, kills it with SIGKILL after `kill_after` acknowledgements, and
/// returns every acknowledgement it printed before dying.
fn run_child_and_kill(path: &Path, kill_after: usize) -> Acks {
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            &child_test_name(),
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let mut acks = Acks {
        created: BTreeSet::new(),
        approved: BTreeSet::new(),
        budget: 0,
    };
    let mut seen = 0;
    let mut killed = false;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read child");
        let mut parts = line.split_whitespace();
        if parts.next() != Some("ACK") {
            continue;
        }
        let (kind, id) = (
            parts.next().expect("kind"),
            parts.next().expect("id").to_owned(),
        );
        match kind {
            "create" => acks.created.insert(id),
            "approve" => acks.approved.insert(id),
            "budget" => {
                acks.budget += 1;
                true
            }
            other => panic!("unknown ack {other}"),
        };
        seen += 1;
        if seen == kill_after && !killed {
            child.kill().expect("SIGKILL"); // std's kill is SIGKILL on Unix
            killed = true;
        }
        // Keep reading: lines printed before the kill are acknowledged writes too.
    }
    let status = child.wait().expect("wait");
    assert!(killed, "the child stopped by itself: {status:?}");
    assert!(!status.success(), "killed child reports failure");
    acks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("crash.redb");
    let mut created = BTreeSet::new();
    let mut approved = BTreeSet::new();
    let mut budget = 0;
    for round in 0..3 {
        let acks = run_child_and_kill(&path, 3_000 + round * 2_000);
        assert!(!acks.created.is_empty());
        created.extend(acks.created);
        approved.extend(acks.approved);
        budget += acks.budget;

        // Checkpointed log segments were recycled or deleted, not left to pile up (the
        // child checkpointed every 50 ms); what is left is replayed below.
        let segments = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().contains(".wal-"))
            })
            .count();
        assert!((1..=3).contains(&segments), "{segments} log segments");
        // The file is consistent (redb's own check) ...
        {
            let mut db = redb::Database::open(&path).expect("reopen raw");
            assert!(
                db.check_integrity().expect("integrity check"),
                "file repaired cleanly"
            );
        }
        // ... and holds every acknowledged write.
        let store = EmbeddedStore::open(&path).expect("reopen store");
        for id in &created {
            let rec = store
                .get(id)
                .await
                .expect("get")
                .unwrap_or_else(|| panic!("acknowledged {id} lost"));
            if approved.contains(id) {
                assert_eq!(
                    rec.outcome,
                    Outcome::Approved,
                    "acknowledged approval of {id} lost"
                );
            }
        }
        let used = store
            .budget_used("crash", WINDOW, SystemClock.now_ms())
            .await
            .expect("used");
        assert!(
            u64::from(used) >= budget,
            "budget count {used} < acknowledged {budget}"
        );
        eprintln!(
            "round {round}: {} records, {} approvals, budget {used} (acked {budget})",
            created.len(),
            approved.len()
        );
    }
}
