//! The Redis store against a real redis-server: outages, connection errors, several
//! issuer instances on one Redis, key layout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use otpgate_server::clock::{Clock, SystemClock};
use otpgate_server::store::{Budget, CheckOutcome, RedisOptions, RedisStore, Store, StoreError};
use otpgate_test_support::conformance::{fresh_id, sample_record};
use otpgate_test_support::conformance::{right, wrong};
use otpgate_test_support::process::free_port;
use otpgate_test_support::redis::TestRedis;

fn quick() -> RedisOptions {
    RedisOptions {
        op_timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_millis(300),
        ..RedisOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_gives_unavailable_quickly_and_recovers() {
    let mut redis = TestRedis::spawn();
    let store = RedisStore::connect_with(&redis.url, &fresh_id("t"), quick())
        .await
        .expect("connect");
    let t = SystemClock.now_ms();
    store
        .create(&sample_record("v_before", t))
        .await
        .expect("create");

    redis.stop();
    for round in 0..3 {
        let started = Instant::now();
        let results = [
            store.get("v_before").await.map(|_| ()),
            store.check("v_before", &wrong(), None, t).await.map(|_| ()),
            store.take_budget("k", 5, 60_000, t).await.map(|_| ()),
            store.once("e", 1_000, t).await.map(|_| ()),
            store.create(&sample_record(&fresh_id("v_"), t)).await,
            store.ping().await,
        ];
        let elapsed = started.elapsed();
        eprintln!("outage round {round}: 6 failing calls in {elapsed:?}");
        for r in &results {
            assert!(
                matches!(r, Err(StoreError::Unavailable(_))),
                "round {round}: {r:?}"
            );
        }
        assert!(
            elapsed < Duration::from_secs(4),
            "6 failing calls took {elapsed:?}"
        );
    }

    redis.restart();
    let restarted = Instant::now();
    let deadline = restarted + Duration::from_secs(15);
    while store.ping().await.is_err() {
        assert!(
            Instant::now() < deadline,
            "no recovery 15 s after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("recovered {:?} after the restart", restarted.elapsed());
    // The restarted server has no persistence: the old record is gone, new work succeeds.
    assert_eq!(store.get("v_before").await.expect("get"), None);
    let rec = sample_record(&fresh_id("v_"), t);
    store.create(&rec).await.expect("create after recovery");
    assert!(matches!(
        store
            .check(&rec.id, &wrong(), None, t + 1)
            .await
            .expect("check"),
        CheckOutcome::Wrong { .. }
    ));
    assert!(matches!(
        store
            .check(&rec.id, &right(&rec.code), None, t + 1)
            .await
            .expect("check"),
        CheckOutcome::Approved(_)
    ));
}

#[tokio::test]
async fn connect_errors_are_unavailable() {
    let port = free_port();
    let started = Instant::now();
    let r = RedisStore::connect_with(&format!("redis://127.0.0.1:{port}/"), "p", quick()).await;
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(3));

    let r = RedisStore::connect("not a url", "p").await;
    assert!(matches!(r, Err(StoreError::Unavailable(_))));
    let r = RedisStore::connect("redis://:hunter2@127.0.0.1:1:bad", "p").await;
    let msg = format!("{r:?}");
    assert!(!msg.contains("hunter2"), "no password in errors: {msg}");

    let redis = TestRedis::start();
    for bad in ["", "a{b", "a}b"] {
        let r = RedisStore::connect(&redis.url, bad).await;
        assert!(
            matches!(r, Err(StoreError::Unavailable(_))),
            "prefix {bad:?} accepted"
        );
    }
}

/// Two issuer instances (two connections) on one Redis share every guarantee.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_share_state() {
    let redis = TestRedis::start();
    let prefix = fresh_id("t");
    let a: Arc<dyn Store> = Arc::new(
        RedisStore::connect(&redis.url, &prefix)
            .await
            .expect("connect a"),
    );
    let b: Arc<dyn Store> = Arc::new(
        RedisStore::connect(&redis.url, &prefix)
            .await
            .expect("connect b"),
    );
    let t = SystemClock.now_ms();
    let mut rec = sample_record(&fresh_id("v_"), t);
    rec.max_attempts = 1_000;
    a.create(&rec).await.expect("create");
    assert_eq!(b.create(&rec).await, Err(StoreError::Duplicate));

    let mut tasks = Vec::new();
    for i in 0..100 {
        let s = if i % 2 == 0 {
            Arc::clone(&a)
        } else {
            Arc::clone(&b)
        };
        let id = rec.id.clone();
        let guess = right(&rec.code);
        tasks.push(tokio::spawn(async move {
            let approved = matches!(
                s.check(&id, &guess, None, t + 1).await.expect("check"),
                CheckOutcome::Approved(_)
            );
            let budget = s
                .take_budget("phone:+33612345678", 30, 3_600_000, t)
                .await
                .expect("take");
            (approved, matches!(budget, Budget::Allowed { .. }))
        }));
    }
    let (mut approved, mut allowed) = (0, 0);
    for task in tasks {
        let (ap, al) = task.await.expect("task");
        approved += usize::from(ap);
        allowed += usize::from(al);
    }
    assert_eq!(approved, 1, "one approval across instances");
    assert_eq!(allowed, 30, "one budget across instances");
    assert_eq!(
        a.budget_used("phone:+33612345678", 3_600_000, t)
            .await
            .expect("used"),
        30
    );

    // Another prefix is another deployment: nothing shared.
    let other = RedisStore::connect(&redis.url, &fresh_id("t"))
        .await
        .expect("connect");
    assert_eq!(other.get(&rec.id).await.expect("get"), None);
}

/// Keys carry hash tags and expire: records at expiry + grace, budgets after their window,
/// the readiness probe after 10 s.
#[tokio::test]
async fn keys_are_tagged_and_expire() {
    let redis = TestRedis::start();
    let prefix = fresh_id("t");
    let store = RedisStore::connect(&redis.url, &prefix)
        .await
        .expect("connect");
    let t = SystemClock.now_ms();
    let rec = sample_record("v_keys", t);
    store.create(&rec).await.expect("create");
    store
        .take_budget("ip:1.2.3.4", 5, 60_000, t)
        .await
        .expect("take");
    store.once("evt-1", 5_000, t).await.expect("once");

    let client = redis::Client::open(redis.url.as_str()).expect("client");
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .expect("raw connection");
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut con)
        .await
        .expect("KEYS");
    keys.sort();
    let start = t - t.rem_euclid(60_000);
    assert_eq!(
        keys,
        vec![
            format!("{prefix}:b:{{ip:1.2.3.4}}:60000:{start}"),
            format!("{prefix}:o:{{evt-1}}"),
            // The readiness probe written at connect (and by every /readyz).
            format!("{prefix}:ready:{{probe}}"),
            format!("{prefix}:v:{{v_keys}}"),
        ]
    );
    let ttl = |k: String| {
        let mut con = con.clone();
        async move {
            redis::cmd("PTTL")
                .arg(k)
                .query_async::<i64>(&mut con)
                .await
                .expect("PTTL")
        }
    };
    let record_ttl = ttl(format!("{prefix}:v:{{v_keys}}")).await;
    let want = 300_000 + otpgate_server::store::RETENTION_GRACE_MS;
    assert!(
        (want - 5_000..=want).contains(&record_ttl),
        "record TTL {record_ttl}"
    );
    let budget_ttl = ttl(format!("{prefix}:b:{{ip:1.2.3.4}}:60000:{start}")).await;
    assert!(
        budget_ttl > 0 && budget_ttl <= 120_000,
        "budget TTL {budget_ttl}"
    );
    let once_ttl = ttl(format!("{prefix}:o:{{evt-1}}")).await;
    assert!(once_ttl > 0 && once_ttl <= 5_000, "once TTL {once_ttl}");
    let probe_ttl = ttl(format!("{prefix}:ready:{{probe}}")).await;
    assert!(
        probe_ttl > 0 && probe_ttl <= 10_000,
        "probe TTL {probe_ttl}"
    );

    // A record that is not valid JSON is reported corrupt, not a panic.
    let _: () = redis::cmd("SET")
        .arg(format!("{prefix}:v:{{v_bad}}"))
        .arg("{nope")
        .query_async(&mut con)
        .await
        .expect("SET");
    assert!(matches!(
        store.get("v_bad").await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(store.check("v_bad", &wrong(), None, t).await.is_err());
}
