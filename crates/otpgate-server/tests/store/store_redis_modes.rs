//! The Redis store in its three modes against real servers started here: a 6-node Cluster
//! (3 masters, 3 replicas), a primary + replica + three sentinels, TLS-only servers with a
//! CA made by the test (with and without a client certificate). The conformance suite on
//! each, then the failovers: a killed Cluster master or Sentinel primary is replaced and the
//! same store (no restart) works again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use otpgate_server::clock::{Clock, SystemClock};
use otpgate_server::store::{
    CheckOutcome, RedisOptions, RedisStore, RedisTarget, RedisTls, Store, StoreError,
};
use otpgate_test_support::conformance::{self, fresh_id, right, sample_record, wrong};
use otpgate_test_support::redis::{RedisCluster, RedisSentinel, RedisTlsServer, SENTINEL_SERVICE};

fn quick() -> RedisOptions {
    RedisOptions {
        op_timeout: Duration::from_millis(800),
        connect_timeout: Duration::from_millis(400),
        ..RedisOptions::default()
    }
}

/// Writes in the hash slot of `tag` (a `once` key `{tag}`, the slot of the record whose
/// id is `tag`) until it succeeds; the time it took and the failures seen meanwhile (each
/// must be `Unavailable`).
async fn until_writable(store: &RedisStore, tag: &str, within: Duration) -> (Duration, usize) {
    let started = Instant::now();
    let mut failures = 0;
    loop {
        match store.once(tag, 60_000, SystemClock.now_ms()).await {
            Ok(_) => return (started.elapsed(), failures),
            Err(StoreError::Unavailable(e)) => {
                failures += 1;
                assert!(
                    started.elapsed() < within,
                    "the store did not take writes again within {within:?}: {e}"
                );
            }
            Err(e) => panic!("a failover gives Unavailable, not {e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_cluster_conforms() {
    let cluster = RedisCluster::start();
    let target = RedisTarget::cluster(cluster.urls[..2].to_vec());
    let store = RedisStore::connect_to(&target, &fresh_id("t"), RedisOptions::default())
        .await
        .expect("connect to the cluster");
    assert_eq!(store.mode(), "cluster");
    assert!(
        !store.checks_in_one_script(),
        "one slot per script on a Cluster"
    );
    conformance::run_all(Arc::new(store)).await;
}

/// A master killed: its replica takes over; the same store follows (MOVED, new slot map).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_cluster_follows_a_failover() {
    let mut cluster = RedisCluster::start();
    let store = RedisStore::connect_to(
        &RedisTarget::cluster(vec![cluster.urls[0].clone()]),
        &fresh_id("t"),
        quick(),
    )
    .await
    .expect("connect");
    let t = SystemClock.now_ms();
    let rec = sample_record(&fresh_id("v_"), t);
    store.create(&rec).await.expect("create");
    assert!(matches!(
        store.check(&rec.id, &wrong(), None, t + 1).await,
        Ok(CheckOutcome::Wrong { .. })
    ));
    // Let the replica catch up with that write before its master dies.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let victim = cluster.master_of(&format!("{{{}}}", rec.id));
    cluster.kill9(victim);
    let (took, failures) = until_writable(&store, &rec.id, Duration::from_secs(30)).await;
    eprintln!(
        "cluster: master {victim} killed; its slot took writes again after {took:?} \
         ({failures} Unavailable meanwhile)"
    );
    assert!(took < Duration::from_secs(30));
    // The record written before lives on the promoted replica.
    match store.check(&rec.id, &right(&rec.code), None, t + 2).await {
        Ok(CheckOutcome::Approved(r)) => assert_eq!(r.attempts, 2),
        other => panic!("the record after the failover: {other:?}"),
    }
    assert_ne!(cluster.master_of(&format!("{{{}}}", rec.id)), victim);
}

fn tls_of(server: &RedisTlsServer, client_cert: bool) -> RedisTls {
    let read = |p: &std::path::Path| std::fs::read(p).expect("read PEM");
    RedisTls {
        ca_pem: Some(read(&server.pki.ca)),
        client_cert_pem: client_cert.then(|| read(&server.pki.client_cert)),
        client_key_pem: client_cert.then(|| read(&server.pki.client_key).into()),
    }
}

/// A TLS-only server that asks no client certificate; the CA is the test's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_tls_conforms_without_a_client_certificate() {
    let server = RedisTlsServer::start(false);
    let mut target = RedisTarget::single(server.url.clone());
    target.tls = tls_of(&server, false);
    let store = RedisStore::connect_to(&target, &fresh_id("t"), RedisOptions::default())
        .await
        .expect("connect over TLS");
    conformance::run_all(Arc::new(store)).await;
}

/// Mutual TLS: the server requires a client certificate signed by its CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_tls_conforms_with_a_client_certificate() {
    let server = RedisTlsServer::start(true);
    let mut target = RedisTarget::single(server.url.clone());
    target.tls = tls_of(&server, true);
    let store = RedisStore::connect_to(&target, &fresh_id("t"), RedisOptions::default())
        .await
        .expect("connect over mutual TLS");
    conformance::run_all(Arc::new(store)).await;
}

/// What TLS refuses: no client certificate where one is required, a server whose CA is
/// not trusted (the system roots), plain text to a TLS port. Each is `Unavailable`, fast.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_tls_refuses_what_it_should() {
    let server = RedisTlsServer::start(true);
    let prefix = fresh_id("t");

    let mut no_cert = RedisTarget::single(server.url.clone());
    no_cert.tls = tls_of(&server, false);
    let r = RedisStore::connect_to(&no_cert, &prefix, quick()).await;
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");

    let mut untrusted = RedisTarget::single(server.url.clone());
    untrusted.tls = tls_of(&server, true);
    untrusted.tls.ca_pem = None;
    let r = RedisStore::connect_to(&untrusted, &prefix, quick()).await;
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");

    let plain = format!("redis://127.0.0.1:{}", server.node.port);
    let r = RedisStore::connect_with(&plain, &prefix, quick()).await;
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");

    let mut garbage = RedisTarget::single(server.url.clone());
    garbage.tls.ca_pem = Some(b"-----BEGIN CERTIFICATE-----\nnope\n".to_vec());
    let r = RedisStore::connect_to(&garbage, &prefix, quick()).await;
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_sentinel_conforms() {
    let group = RedisSentinel::start();
    let target = RedisTarget::sentinel(group.urls.clone(), SENTINEL_SERVICE);
    let store = RedisStore::connect_to(&target, &fresh_id("t"), RedisOptions::default())
        .await
        .expect("connect through the sentinels");
    assert_eq!(store.mode(), "sentinel");
    assert!(
        store.checks_in_one_script(),
        "one primary: one script per check"
    );
    conformance::run_all(Arc::new(store)).await;
}

/// Every operation through the `WAIT` path (a pipeline with the write; `EVAL` when the
/// server does not know a script yet).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_sentinel_conforms_with_wait_replicas() {
    let group = RedisSentinel::start();
    let target = RedisTarget::sentinel(group.urls.clone(), SENTINEL_SERVICE);
    let opts = RedisOptions {
        wait_replicas: 1,
        ..RedisOptions::default()
    };
    let store = RedisStore::connect_to(&target, &fresh_id("t"), opts)
        .await
        .expect("connect through the sentinels");
    conformance::run_all(Arc::new(store)).await;
}

/// The primary killed: the sentinels promote the replica and the same store finds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_sentinel_follows_a_failover() {
    let mut group = RedisSentinel::start();
    let target = RedisTarget::sentinel(group.urls.clone(), SENTINEL_SERVICE);
    let store = RedisStore::connect_to(&target, &fresh_id("t"), quick())
        .await
        .expect("connect");
    let t = SystemClock.now_ms();
    let rec = sample_record(&fresh_id("v_"), t);
    store.create(&rec).await.expect("create");
    assert!(matches!(
        store.check(&rec.id, &wrong(), None, t + 1).await,
        Ok(CheckOutcome::Wrong { .. })
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(group.primary_port(), Some(group.primary.port));
    group.primary.kill9();
    let (took, failures) = until_writable(&store, &rec.id, Duration::from_secs(30)).await;
    eprintln!(
        "sentinel: primary killed; writes again after {took:?} ({failures} Unavailable \
         meanwhile)"
    );
    assert_eq!(group.primary_port(), Some(group.replica.port));
    match store.check(&rec.id, &right(&rec.code), None, t + 2).await {
        Ok(CheckOutcome::Approved(r)) => assert_eq!(r.attempts, 2),
        other => panic!("the record after the failover: {other:?}"),
    }
}

/// The real binary on the Cluster: ready, the start log names the mode and the nodes;
/// `/readyz` turns 503 when the master of its probe's slot is killed, and 200 again once
/// the replica took over, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_the_cluster_reports_readiness_through_a_failover() {
    use otpgate_test_support::http::{client, get_status};
    use otpgate_test_support::process::{Serve, ServeToml, free_port};
    use otpgate_test_support::redis::ScratchDir;

    let mut cluster = RedisCluster::start();
    let dir = ScratchDir::new("serve-cluster");
    let port = free_port();
    let mut toml = ServeToml::new(&format!("http://127.0.0.1:{port}"));
    let urls: Vec<String> = cluster.urls[..2]
        .iter()
        .map(|u| format!("\"{u}\""))
        .collect();
    toml.store = format!(
        "kind = \"redis\"\nmode = \"cluster\"\nurls = [{}]\n",
        urls.join(", ")
    );
    let config = toml.write(&dir.0);
    let serve = Serve::start(&dir.0, &config, port, &[("OTPGATE_LOG", "info".to_owned())]);
    let http = client();
    let readyz = format!("{}/readyz", serve.base);
    assert_eq!(get_status(&http, &readyz).await, 200);
    let log = std::fs::read_to_string(dir.0.join("serve.log")).expect("log");
    let node = cluster.urls[0].trim_start_matches("redis://");
    assert!(
        log.contains("redis store connected") && log.contains("cluster") && log.contains(node),
        "the start log names mode and nodes:\n{log}"
    );

    let victim = cluster.master_of("{probe}");
    cluster.kill9(victim);
    let killed = Instant::now();
    let (mut saw_503, mut back) = (false, None);
    while killed.elapsed() < Duration::from_secs(30) {
        match get_status(&http, &readyz).await {
            503 => saw_503 = true,
            200 if saw_503 => {
                back = Some(killed.elapsed());
                break;
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(saw_503, "/readyz stayed 200 with the probe's master dead");
    let back = back.expect("/readyz ready again within 30 s of the kill");
    eprintln!("serve on the cluster: /readyz 503 after the kill, 200 again after {back:?}");
}

/// `wait_replicas = n` with short timeouts.
fn waiting(n: u32) -> RedisOptions {
    RedisOptions {
        wait_replicas: n,
        wait_timeout: Duration::from_millis(300),
        ..quick()
    }
}

/// What writers saw acknowledged while the store was disrupted.
#[derive(Default)]
struct Acknowledged {
    /// (record id, wrong attempts acknowledged on it).
    attempts: Vec<(String, u32)>,
    /// Records created and approved, both acknowledged.
    approved: Vec<String>,
    /// Writes refused (`Unavailable`) meanwhile.
    refused: u32,
    /// Writes acknowledged after the disruption ended.
    after: u32,
}

/// A steady load of writes while `disrupt` runs: four writers spend wrong attempts on a
/// record each, an approver creates records and approves them; every write that answers
/// `Ok` is noted. The load goes on for a moment after `disrupt` returns.
async fn under_load(store: Arc<RedisStore>, disrupt: impl Future<Output = ()>) -> Acknowledged {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    let stop = Arc::new(AtomicBool::new(false));
    let calm = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicU32::new(0));
    let after = Arc::new(AtomicU32::new(0));
    let note = |ok: bool, refused: &AtomicU32, after: &AtomicU32, calm: &AtomicBool| {
        if !ok {
            refused.fetch_add(1, Ordering::Relaxed);
        } else if calm.load(Ordering::Relaxed) {
            after.fetch_add(1, Ordering::Relaxed);
        }
    };
    let mut writers = Vec::new();
    for _ in 0..4 {
        let mut rec = sample_record(&fresh_id("v_"), SystemClock.now_ms());
        rec.max_attempts = 100_000;
        store.create(&rec).await.expect("create");
        let (store, stop, calm, refused, after) = (
            store.clone(),
            stop.clone(),
            calm.clone(),
            refused.clone(),
            after.clone(),
        );
        writers.push(tokio::spawn(async move {
            let mut acked = 0u32;
            while !stop.load(Ordering::Relaxed) {
                match store
                    .check(&rec.id, &wrong(), None, SystemClock.now_ms())
                    .await
                {
                    Ok(CheckOutcome::Wrong { .. }) => {
                        acked += 1;
                        note(true, &refused, &after, &calm);
                    }
                    Err(StoreError::Unavailable(_)) => {
                        note(false, &refused, &after, &calm);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    other => panic!("a wrong check under load: {other:?}"),
                }
            }
            (rec.id, acked)
        }));
    }
    let approver = {
        let (store, stop, calm, refused, after) = (
            store.clone(),
            stop.clone(),
            calm.clone(),
            refused.clone(),
            after.clone(),
        );
        tokio::spawn(async move {
            let mut approved = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let rec = sample_record(&fresh_id("v_"), SystemClock.now_ms());
                if store.create(&rec).await.is_err() {
                    note(false, &refused, &after, &calm);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                note(true, &refused, &after, &calm);
                match store
                    .check(&rec.id, &right(&rec.code), None, SystemClock.now_ms())
                    .await
                {
                    Ok(CheckOutcome::Approved(_)) => {
                        note(true, &refused, &after, &calm);
                        approved.push(rec.id);
                    }
                    Err(StoreError::Unavailable(_)) => {
                        note(false, &refused, &after, &calm);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    other => panic!("a right check under load: {other:?}"),
                }
            }
            approved
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    disrupt.await;
    calm.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::Relaxed);
    let mut out = Acknowledged::default();
    for w in writers {
        out.attempts.push(w.await.expect("writer"));
    }
    out.approved = approver.await.expect("approver");
    out.refused = refused.load(Ordering::Relaxed);
    out.after = after.load(Ordering::Relaxed);
    out
}

/// Every acknowledged attempt and approval is on the store now (a write that was refused
/// may stand too: attempts are at least the acknowledged ones).
async fn nothing_acknowledged_is_lost(store: &RedisStore, seen: &Acknowledged) {
    for (id, acked) in &seen.attempts {
        let rec = store.get(id).await.expect("read").expect("the record");
        assert!(
            rec.attempts >= *acked,
            "{id}: {acked} attempts were acknowledged, {} remain",
            rec.attempts
        );
    }
    for id in &seen.approved {
        let rec = store.get(id).await.expect("read");
        assert!(
            rec.as_ref()
                .is_some_and(|r| r.outcome == otpgate_server::store::Outcome::Approved),
            "{id}: an acknowledged approval was lost: {rec:?}"
        );
    }
}

/// `wait_replicas = 1` on primary + replica + sentinels: the primary killed under load,
/// the replica promoted, the old primary back as its replica. No acknowledged attempt or
/// approval is lost; between the kill and the new replica's sync every write is refused
/// (the promoted primary has no replica to confirm it).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_sentinel_wait_replicas_loses_no_acknowledged_write() {
    let mut group = RedisSentinel::start();
    let target = RedisTarget::sentinel(group.urls.clone(), SENTINEL_SERVICE);
    let store = Arc::new(
        RedisStore::connect_to(&target, &fresh_id("t"), waiting(1))
            .await
            .expect("connect"),
    );
    assert_eq!(store.wait_replicas(), 1);
    let probe = fresh_id("p");
    let disrupt = async {
        group.primary.kill9();
        let killed = Instant::now();
        while group.primary_port() != Some(group.replica.port) {
            assert!(killed.elapsed() < Duration::from_secs(30), "no failover");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let promoted = killed.elapsed();
        group.primary.restart();
        let (took, _) = until_writable(&store, &probe, Duration::from_secs(30)).await;
        eprintln!(
            "sentinel, wait_replicas = 1: promoted {promoted:?} after the kill; writes \
             confirmed again {took:?} after the old primary came back as a replica"
        );
    };
    let seen = under_load(store.clone(), disrupt).await;
    eprintln!(
        "sentinel, wait_replicas = 1: {} attempts and {} approvals acknowledged, {} writes \
         refused, {} acknowledged after",
        seen.attempts.iter().map(|a| a.1).sum::<u32>(),
        seen.approved.len(),
        seen.refused,
        seen.after
    );
    assert!(seen.refused > 0, "the failover gap refused writes");
    assert!(seen.after > 0, "writes are acknowledged again afterwards");
    nothing_acknowledged_is_lost(&store, &seen).await;
}

/// `wait_replicas = 1` and the replica down: every write is refused (`Unavailable`, never
/// a silent success) while reads go on; the replica back, writes are confirmed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_sentinel_wait_replicas_refuses_writes_without_a_replica() {
    let mut group = RedisSentinel::start();
    let target = RedisTarget::sentinel(group.urls.clone(), SENTINEL_SERVICE);
    let store = RedisStore::connect_to(&target, &fresh_id("t"), waiting(1))
        .await
        .expect("connect");
    let t = SystemClock.now_ms();
    let rec = sample_record(&fresh_id("v_"), t);
    store
        .create(&rec)
        .await
        .expect("create, confirmed by the replica");
    group.replica.kill9();
    let started = Instant::now();
    match store.check(&rec.id, &wrong(), None, t + 1).await {
        Err(StoreError::Unavailable(e)) => assert!(e.contains("WAIT"), "{e}"),
        other => panic!("a check without a replica to confirm it: {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refused within the WAIT timeout, took {:?}",
        started.elapsed()
    );
    let other = sample_record(&fresh_id("v_"), t);
    assert!(matches!(
        store.create(&other).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        store.ping().await,
        Err(StoreError::Unavailable(_))
    ));
    let read = store.get(&rec.id).await.expect("reads do not wait");
    assert_eq!(
        read.map(|r| r.attempts),
        Some(1),
        "the refused attempt stands on the primary (counted, never given back)"
    );
    group.replica.restart();
    until_writable(&store, &fresh_id("p"), Duration::from_secs(30)).await;
    assert!(matches!(
        store.check(&rec.id, &right(&rec.code), None, t + 2).await,
        Ok(CheckOutcome::Approved(_))
    ));
}

/// On a Cluster `WAIT` goes to the master that holds the key: with the replica of one
/// master down, writes to the other masters' slots are still confirmed, and only that
/// master's slots refuse them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_cluster_wait_asks_the_master_of_the_key() {
    let mut cluster = RedisCluster::start();
    let store = RedisStore::connect_to(
        &RedisTarget::cluster(cluster.urls[..2].to_vec()),
        &fresh_id("t"),
        waiting(1),
    )
    .await
    .expect("connect");
    let t = SystemClock.now_ms();
    let a = sample_record(&fresh_id("v_"), t);
    let master_a = cluster.master_of(&format!("{{{}}}", a.id));
    let b = loop {
        let b = sample_record(&fresh_id("v_"), t);
        if cluster.master_of(&format!("{{{}}}", b.id)) != master_a {
            break b;
        }
    };
    store.create(&a).await.expect("create a");
    store.create(&b).await.expect("create b");
    let replica = cluster.replica_of(master_a);
    cluster.kill9(replica);
    assert!(
        matches!(
            store.check(&b.id, &wrong(), None, t + 1).await,
            Ok(CheckOutcome::Wrong { .. })
        ),
        "another master's slot is confirmed by its own replica"
    );
    match store.check(&a.id, &wrong(), None, t + 1).await {
        Err(StoreError::Unavailable(e)) => assert!(e.contains("WAIT"), "{e}"),
        other => panic!("a write whose master lost its replica: {other:?}"),
    }
    cluster.restart(replica);
    until_writable(&store, &a.id, Duration::from_secs(30)).await;
}

/// `wait_replicas = 1` on the Cluster: the master of some of the records killed under
/// load; no acknowledged attempt or approval is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_cluster_wait_replicas_loses_no_acknowledged_write() {
    let mut cluster = RedisCluster::start();
    let store = Arc::new(
        RedisStore::connect_to(
            &RedisTarget::cluster(cluster.urls.clone()),
            &fresh_id("t"),
            waiting(1),
        )
        .await
        .expect("connect"),
    );
    let probe = fresh_id("p");
    let disrupt = async {
        // The master of the probe's slot; the load's records spread over all three.
        let victim = cluster.master_of(&format!("{{{probe}}}"));
        cluster.kill9(victim);
        let killed = Instant::now();
        while cluster
            .try_master_of(&format!("{{{probe}}}"))
            .is_none_or(|m| m == victim)
        {
            assert!(killed.elapsed() < Duration::from_secs(30), "no failover");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let promoted = killed.elapsed();
        cluster.restart(victim);
        let (took, _) = until_writable(&store, &probe, Duration::from_secs(30)).await;
        eprintln!(
            "cluster, wait_replicas = 1: promoted {promoted:?} after the kill; the slot's \
             writes confirmed again {took:?} after the old master came back as a replica"
        );
    };
    let seen = under_load(store.clone(), disrupt).await;
    eprintln!(
        "cluster, wait_replicas = 1: {} attempts and {} approvals acknowledged, {} writes \
         refused",
        seen.attempts.iter().map(|a| a.1).sum::<u32>(),
        seen.approved.len(),
        seen.refused
    );
    assert!(seen.after > 0, "writes are acknowledged again afterwards");
    nothing_acknowledged_is_lost(&store, &seen).await;
}

/// The real binary with `wait_replicas = 1` through the sentinels: starts and checks work
/// while the replica confirms them; with the replica killed a start answers 503
/// `store_unavailable` with Retry-After (never a silent success), `/readyz` is 503 and
/// `/metrics` counts the store's failures by operation; the replica back, all works
/// again without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_wait_replicas_answers_503_without_a_replica() {
    use otpgate_test_support::http::{client, get_status, get_text, send_check, send_start};
    use otpgate_test_support::process::{Serve, ServeToml, free_port};
    use otpgate_test_support::redis::ScratchDir;

    let mut group = RedisSentinel::start();
    let dir = ScratchDir::new("serve-wait");
    let port = free_port();
    let mut toml = ServeToml::new(&format!("http://127.0.0.1:{port}"));
    let urls: Vec<String> = group.urls.iter().map(|u| format!("\"{u}\"")).collect();
    toml.store = format!(
        "kind = \"redis\"\nmode = \"sentinel\"\nurls = [{}]\nservice_name = \"{SENTINEL_SERVICE}\"\n\
         wait_replicas = 1\nwait_timeout_ms = 300\n",
        urls.join(", ")
    );
    toml.policy =
        "test_numbers = { \"+14155550100\" = \"424242\" }\n\n[policy.pow]\nenabled = false\n"
            .to_owned();
    let config = toml.write(&dir.0);
    let serve = Serve::start(&dir.0, &config, port, &[("OTPGATE_LOG", "info".to_owned())]);
    let http = client();
    let bound = Duration::from_secs(10);
    let started = send_start(&http, &serve.base, "+14155550100", bound)
        .await
        .expect("start");
    assert_eq!(started.status, 201, "{:?}", started.body);
    let id = started.body["id"].as_str().expect("id").to_owned();
    let log = std::fs::read_to_string(dir.0.join("serve.log")).expect("log");
    assert!(
        log.contains("\"wait_replicas\":1"),
        "the start log says it:\n{log}"
    );

    group.replica.kill9();
    let refused = send_start(&http, &serve.base, "+14155550100", bound)
        .await
        .expect("start without a replica");
    assert_eq!(refused.status, 503, "{:?}", refused.body);
    assert_eq!(refused.code(), "store_unavailable");
    assert!(refused.retry_after.is_some(), "503 with Retry-After");
    let check = send_check(&http, &serve.base, &id, "424242", bound)
        .await
        .expect("check without a replica");
    assert_eq!(check.status, 503, "{:?}", check.body);
    assert_eq!(
        get_status(&http, &format!("{}/readyz", serve.base)).await,
        503
    );
    let metrics = get_text(&http, &format!("{}/metrics", serve.base)).await;
    assert!(
        metrics.contains("otpgate_store_errors_total{op=\"check\",kind=\"unavailable\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("otpgate_store_operation_duration_seconds_bucket{le="),
        "{metrics}"
    );

    group.replica.restart();
    let back = Instant::now();
    loop {
        let a = send_check(&http, &serve.base, &id, "424242", bound)
            .await
            .expect("check");
        match a.status {
            200 => break,
            503 => assert!(back.elapsed() < Duration::from_secs(30), "{:?}", a.body),
            // The refused check may stand on the primary: its approval was never seen.
            409 => break,
            s => panic!("check after the replica came back: {s} {:?}", a.body),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        get_status(&http, &format!("{}/readyz", serve.base)).await,
        200
    );
}
