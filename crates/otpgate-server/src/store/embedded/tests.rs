//! The embedded store's own tests: restarts, crashes, checkpoints, sweeps, refusals (the
//! conformance suite covers the [`Store`] contract).

use std::path::{Path, PathBuf};
use std::time::Duration;

use redb::Database;

use super::checkpoint::{BUDGETS, META, ONCE, RECORDS};
use super::segments::segments;
use super::wal::Wal;
use super::{EmbeddedOptions, EmbeddedStore};
use crate::store::fixtures::{right, sample_record, sample_rotation, wrong};
use crate::store::state::lock;
use crate::store::{
    Budgets, CheckOutcome, Durability, OutboxMessage, QueuedSend, RotateOutcome, SendLease, Store,
    StoreError,
};

/// A store file's path in a fresh directory (removed when the directory is dropped).
fn temp_file() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("s.redb");
    (dir, path)
}

fn open_with(path: &Path, opts: EmbeddedOptions) -> EmbeddedStore {
    EmbeddedStore::open_with(path, opts).expect("open")
}

/// Entries per table of the closed store file at `path`.
fn file_counts(path: &Path) -> (u64, u64, u64) {
    use redb::{ReadableDatabase, ReadableTableMetadata};
    let db = Database::open(path).expect("db");
    let txn = db.begin_read().expect("read");
    (
        txn.open_table(RECORDS).expect("t").len().expect("len"),
        txn.open_table(BUDGETS).expect("t").len().expect("len"),
        txn.open_table(ONCE).expect("t").len().expect("len"),
    )
}

fn log_files(path: &Path) -> Vec<PathBuf> {
    segments(path)
        .expect("segments")
        .into_iter()
        .map(|(_, p)| p)
        .collect()
}

fn queued(key: &str, priority: u16, at: i64) -> QueuedSend {
    QueuedSend {
        key: key.to_owned(),
        priority,
        queued_at_ms: at,
        deadline_ms: at + 60_000,
        sealed: format!("sealed-{key}"),
    }
}

/// Sends waiting for capacity outlive the process: through a clean restart (checkpoint)
/// and a crash (log replay); one handed out before stays handed out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_sends_survive_restarts_and_crashes() {
    let (_dir, path) = temp_file();
    let t = 1_764_000_000_000;
    {
        let s = EmbeddedStore::open(&path).expect("open");
        s.create(&sample_record("v_q", t)).await.expect("create");
        for (n, p) in [(1, 2), (2, 0), (3, 1)] {
            let q = queued(&format!("v_{n}.1"), p, t + n);
            assert!(s.enqueue_send(&q, 10).await.expect("enqueue"));
        }
        let first = s.dequeue_sends(1).await.expect("dequeue");
        assert_eq!(first, vec![queued("v_2.1", 0, t + 2)]);
    }
    let s = EmbeddedStore::open(&path).expect("reopen");
    assert_eq!(s.queued_sends().await.expect("count"), 2);
    drop(s);
    crash_after(&path, Durability::Disk, async |s| {
        assert!(
            s.enqueue_send(&queued("v_4.1", 0, t + 4), 10)
                .await
                .expect("enqueue")
        );
        assert_eq!(s.dequeue_sends(1).await.expect("dequeue").len(), 1);
    })
    .await;
    let s = EmbeddedStore::open(&path).expect("reopen");
    assert!(s.stats().replayed > 0, "{:?}", s.stats());
    assert_eq!(
        s.dequeue_sends(10).await.expect("dequeue"),
        vec![queued("v_3.1", 1, t + 3), queued("v_1.1", 2, t + 1)],
        "the paid send taken before the crash stays taken"
    );
}

fn message(id: &str, at: i64) -> OutboxMessage {
    OutboxMessage {
        id: id.to_owned(),
        expires_at_ms: at + 60_000,
        queued_at_ms: at,
        sealed: format!("sealed-{id}"),
    }
}

fn lease(key: &str, owner: &str, until_ms: i64) -> SendLease {
    SendLease {
        key: key.to_owned(),
        owner: owner.to_owned(),
        until_ms,
        deadline_ms: until_ms + 600_000,
        body: format!("body-{key}"),
    }
}

/// Outbox messages and send leases outlive the process: through a clean restart
/// (checkpoint) and a crash (log replay); a message taken stays taken (and its id
/// remembered), a lease taken over stays its new owner's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outboxes_and_leases_survive_restarts_and_crashes() {
    let (_dir, path) = temp_file();
    let t = 1_764_000_000_000;
    {
        let s = EmbeddedStore::open(&path).expect("open");
        for n in 0..3 {
            let m = message(&format!("v_{n}.1.1"), t + n);
            assert!(s.outbox_push("phone", &m, 10, t).await.expect("push"));
        }
        assert_eq!(s.outbox_take("phone", 1, t).await.expect("take").len(), 1);
        assert!(
            s.lease_put(&lease("v_a.1", "i_1", t + 1_000), t)
                .await
                .expect("put")
        );
        assert!(
            s.lease_put(&lease("v_b.1", "i_1", t + 1_000), t)
                .await
                .expect("put")
        );
    }
    let s = EmbeddedStore::open(&path).expect("reopen");
    assert!(
        !s.lease_put(&lease("v_a.1", "i_2", t + 1_000), t + 10)
            .await
            .expect("put"),
        "the lease is still i_1's after a restart"
    );
    drop(s);
    crash_after(&path, Durability::Disk, async |s| {
        let taken = s.outbox_take("phone", 1, t).await.expect("take");
        assert_eq!(taken, vec![message("v_1.1.1", t + 1)]);
        let over = s
            .lease_take_expired("i_2", t + 60_000, 1, t + 2_000)
            .await
            .expect("take over");
        assert_eq!(over.len(), 1);
    })
    .await;
    let s = EmbeddedStore::open(&path).expect("reopen");
    assert!(s.stats().replayed > 0, "{:?}", s.stats());
    assert!(
        s.outbox_push("phone", &message("v_1.1.1", t + 5), 10, t + 5)
            .await
            .expect("push a taken id"),
    );
    assert_eq!(
        s.outbox_take("phone", 10, t + 6).await.expect("take"),
        vec![message("v_2.1.1", t + 2)],
        "taken before the crash stays taken, its id remembered"
    );
    assert_eq!(
        s.lease_renew("i_2", &["v_a.1".to_owned()], t + 70_000, t + 3_000)
            .await
            .expect("renew"),
        Vec::<String>::new(),
        "the lease taken over before the crash is i_2's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_a_restart() {
    let (_dir, path) = temp_file();
    let t = 1_764_000_000_000;
    {
        let s = EmbeddedStore::open(&path).expect("open");
        s.create(&sample_record("v_a", t)).await.expect("create");
        s.create(&sample_record("v_b", t)).await.expect("create");
        assert!(matches!(
            s.check("v_a", &wrong(), None, t + 1).await.expect("check"),
            CheckOutcome::Wrong { .. }
        ));
        let b = sample_record("v_b", t).code;
        assert!(matches!(
            s.check("v_b", &right(&b), None, t + 2)
                .await
                .expect("check"),
            CheckOutcome::Approved(_)
        ));
        let at = t + 30_000;
        assert!(matches!(
            s.rotate("v_a", &sample_rotation(2, at), at)
                .await
                .expect("rotate"),
            RotateOutcome::Rotated(_)
        ));
        s.take_budget("k", 10, 60_000, t).await.expect("take");
        s.take_budget("k", 10, 60_000, t).await.expect("take");
        assert!(s.once("evt", 60_000, t).await.expect("once"));
    }
    assert_eq!(file_counts(&path), (2, 1, 1), "closing checkpoints");
    assert_eq!(log_files(&path).len(), 1, "one empty segment left");
    let s = EmbeddedStore::open(&path).expect("reopen");
    assert_eq!(s.stats().replayed, 0);
    let a = s.get("v_a").await.expect("get").expect("v_a kept");
    assert_eq!((a.code.version, a.sends, a.attempts), (2, 2, 0));
    let b = s.get("v_b").await.expect("get").expect("v_b kept");
    assert_eq!(b.outcome, crate::store::Outcome::Approved);
    assert_eq!(
        s.check("v_b", &right(&b.code), None, t + 3)
            .await
            .expect("check"),
        CheckOutcome::AlreadyUsed,
        "still single use"
    );
    assert_eq!(s.budget_used("k", 60_000, t).await.expect("used"), 2);
    assert!(
        !s.once("evt", 60_000, t + 1).await.expect("once"),
        "once remembered"
    );
    assert_eq!(
        s.create(&sample_record("v_a", t)).await,
        Err(StoreError::Duplicate)
    );
    assert!(s.now() >= t + 30_000, "clock persisted");
}

/// Runs `work` on a store at `path`, then leaves the files as a crash right after it
/// would: the redb file as it was before `work` (no checkpoint made it), the log as it
/// was when `work` ended (as the OS holds it: what a killed process leaves).
async fn crash_after(path: &Path, durability: Durability, work: impl AsyncFnOnce(&EmbeddedStore)) {
    let opts = EmbeddedOptions {
        checkpoint_every: Duration::from_secs(3600),
        durability,
        ..EmbeddedOptions::default()
    };
    let s = EmbeddedStore::open_with(path, opts).expect("open");
    let durable = std::fs::read(path).expect("file before");
    work(&s).await;
    assert_eq!(s.stats().checkpoints, 0);
    let logs: Vec<(PathBuf, Vec<u8>)> = log_files(path)
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).expect("log");
            (p, b)
        })
        .collect();
    assert!(
        logs.iter().any(|(_, b)| !b.is_empty()),
        "the writes are in the log"
    );
    drop(s);
    std::fs::write(path, durable).expect("restore file");
    for p in log_files(path) {
        std::fs::remove_file(p).expect("rm");
    }
    for (p, b) in logs {
        std::fs::write(p, b).expect("restore log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_are_replayed_from_the_log() {
    replays_acknowledged_writes(Durability::Disk).await;
}

/// Acknowledged after the write, before the sync: a crash of the process loses none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_acknowledged_before_their_sync_are_replayed_too() {
    replays_acknowledged_writes(Durability::Process).await;
}

async fn replays_acknowledged_writes(durability: Durability) {
    let (_dir, path) = temp_file();
    let t = 1_764_000_000_000;
    let b_code = sample_record("v_b", t).code;
    crash_after(&path, durability, async |s| {
        s.create(&sample_record("v_a", t)).await.expect("create");
        s.create(&sample_record("v_b", t)).await.expect("create");
        assert!(matches!(
            s.check("v_b", &right(&b_code), None, t + 2)
                .await
                .expect("check"),
            CheckOutcome::Approved(_)
        ));
        assert!(matches!(
            s.check("v_a", &wrong(), None, t + 3).await.expect("check"),
            CheckOutcome::Wrong { .. }
        ));
        s.take_budget("k", 10, 60_000, t).await.expect("take");
        // Staged steps: answered at once, acknowledged when durable.
        let staged = s
            .check_staged("v_a", &wrong(), None, t + 3)
            .await
            .expect("check");
        assert!(matches!(
            staged.value,
            CheckOutcome::Wrong {
                attempts_left: 3,
                ..
            }
        ));
        staged.durable.wait().await.expect("durable");
        let opened = s
            .open_staged(&sample_record("v_d", t), &[], t + 3)
            .await
            .expect("open");
        assert!(matches!(opened.value, Budgets::Allowed { .. }));
        opened.durable.wait().await.expect("durable");
    })
    .await;
    // A crash can leave half an entry behind: it was never acknowledged.
    let last = log_files(&path).pop().expect("a segment");
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(&last)
        .expect("log");
    std::io::Write::write_all(&mut log, &[200, 0, 0, 0, 1, 2, 3]).expect("torn tail");
    drop(log);

    let s = EmbeddedStore::open(&path).expect("reopen");
    assert_eq!(s.stats().replayed, 7, "{:?}", s.stats());
    assert!(!log_files(&path).contains(&last), "replayed, then deleted");
    let a = s.get("v_a").await.expect("get").expect("v_a kept");
    assert_eq!(a.attempts, 2, "the wrong attempts stay counted");
    assert!(
        s.get("v_d").await.expect("get").is_some(),
        "staged open kept"
    );
    assert_eq!(
        s.check("v_b", &right(&b_code), None, t + 4)
            .await
            .expect("check"),
        CheckOutcome::AlreadyUsed,
        "an approval is not undone by a crash"
    );
    assert_eq!(s.budget_used("k", 60_000, t).await.expect("used"), 1);
    assert!(s.now() >= t + 3, "clock replayed");
    // Writes go on after the replayed batches, and survive the next crash as well.
    drop(s);
    crash_after(&path, durability, async |s| {
        s.create(&sample_record("v_c", t + 5))
            .await
            .expect("create");
    })
    .await;
    let s = EmbeddedStore::open(&path).expect("reopen");
    assert_eq!(s.stats().replayed, 1);
    assert!(s.get("v_c").await.expect("get").is_some());
    assert!(s.get("v_a").await.expect("get").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_run_beside_the_writer_and_drop_the_log() {
    let (_dir, path) = temp_file();
    let s = open_with(
        &path,
        EmbeddedOptions {
            checkpoint_every: Duration::from_millis(20),
            ..EmbeddedOptions::default()
        },
    );
    let t = 1_764_000_000_000;
    for i in 0..50 {
        s.create(&sample_record(&format!("v_{i}"), t))
            .await
            .expect("create");
        if i % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let st = s.stats();
    assert!(st.checkpoints >= 2, "{st:?}");
    assert!(
        log_files(&path).len() <= 2,
        "checkpointed segments are deleted"
    );
    // A crash now loses nothing: the file plus what is left of the log hold it all.
    drop(s);
    let s = EmbeddedStore::open(&path).expect("reopen");
    for i in 0..50 {
        assert!(s.get(&format!("v_{i}")).await.expect("get").is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_that_does_not_follow_the_file_is_refused() {
    let (_dir, path) = temp_file();
    let t = 1_764_000_000_000;
    crash_after(&path, Durability::Disk, async |s| {
        s.create(&sample_record("v_a", t)).await.expect("create");
        s.create(&sample_record("v_b", t)).await.expect("create");
    })
    .await;
    // Lose the first batch of the log: the second one cannot be applied without it.
    let seg = log_files(&path).pop().expect("segment");
    let n = segments(&path).expect("segments").pop().expect("segment").0;
    let (entries, _) = Wal::read(&seg, n).expect("log");
    assert_eq!(entries.len(), 2);
    std::fs::remove_file(&seg).expect("rm");
    let mut wal = Wal::start(&seg, n, None).expect("log");
    wal.append(&entries[1]).expect("append");
    drop(wal);
    match EmbeddedStore::open(&path) {
        Err(StoreError::Corrupt(msg)) => assert!(msg.contains("does not continue"), "{msg}"),
        other => panic!("expected a corrupt log, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_deletes_what_is_past_retention() {
    let (_dir, path) = temp_file();
    let s = open_with(
        &path,
        EmbeddedOptions {
            sweep_every: Duration::from_millis(50),
            ..EmbeddedOptions::default()
        },
    );
    let t = 1_764_000_000_000;
    for i in 0..20 {
        s.create(&sample_record(&format!("v_{i}"), t))
            .await
            .expect("create");
    }
    let mut keep = sample_record("v_keep", t);
    keep.expires_at_ms = t + 10 * crate::store::RETENTION_GRACE_MS;
    s.create(&keep).await.expect("create");
    s.take_budget("k", 5, 60_000, t).await.expect("take");
    s.once("evt", 1_000, t).await.expect("once");
    assert_eq!(lock(&s.state).records.len(), 21);

    // Moving the store's clock past expiry + grace: reads stop at once, the sweep deletes.
    let later = t + 300_000 + crate::store::RETENTION_GRACE_MS;
    s.once("tick", 1, later).await.expect("tick");
    assert!(s.get("v_0").await.expect("get").is_none());
    tokio::time::sleep(Duration::from_millis(200)).await;
    {
        let st = lock(&s.state);
        assert_eq!(
            (st.records.len(), st.budgets.len(), st.once.len()),
            (1, 0, 1),
            "only v_keep and the fresh tick key"
        );
    }
    assert!(s.get("v_keep").await.expect("get").is_some());
    // A forgotten id may be used again.
    s.create(&sample_record("v_0", later))
        .await
        .expect("create again");
    drop(s);
    assert_eq!(file_counts(&path), (2, 0, 1), "the file forgets them too");
}

#[test]
fn refuses_a_file_in_use_or_of_another_layout() {
    let (dir, path) = temp_file();
    let s = EmbeddedStore::open(&path).expect("open");
    assert!(matches!(
        EmbeddedStore::open(&path),
        Err(StoreError::Unavailable(_))
    ));
    drop(s);
    {
        let db = Database::create(&path).expect("db");
        let txn = db.begin_write().expect("txn");
        txn.open_table(META)
            .expect("meta")
            .insert("format", 99)
            .expect("insert");
        txn.commit().expect("commit");
    }
    assert!(matches!(
        EmbeddedStore::open(&path),
        Err(StoreError::Corrupt(_))
    ));
    let junk = dir.path().join("junk.redb");
    std::fs::write(&junk, b"not a database at all").expect("write");
    assert!(EmbeddedStore::open(&junk).is_err());
}
