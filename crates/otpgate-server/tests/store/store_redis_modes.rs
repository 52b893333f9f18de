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
