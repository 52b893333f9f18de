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
