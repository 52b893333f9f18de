//! Store throughput: issuer-shaped work on the embedded store and on Redis.
//!
//! `cargo run --release -p otpgate-bench --bin store -- [embedded|redis|memory|all] [N] [CONCURRENCY]`
//!
//! `... -- replicated [N] [CONCURRENCY]`: the same work on a primary + replica watched by
//! Sentinel and on a 6-node Cluster (3 masters, 3 replicas), each with `wait_replicas` 0
//! then 1 (what `WAIT` costs), then the failover time of each: seconds from the SIGKILL of
//! the primary (the master of the probed record's slot) to the first successful check.
//!
//! - "start": 1 `open` (4 budgets: phone, IP, prefix, global, and the record), as a
//!   verification start does;
//! - "check": 1 `check` with the per-IP check budget (count, compare, approve in one step), as a
//!   successful check does.
//!
//! Redis: `OTPGATE_TEST_REDIS_URL`, or a `redis-server` spawned on a free port. The
//! embedded file lives in a temporary directory (same disk as `TMPDIR`).

// A benchmark stops at the first failed store step, naming it: that is what expect says.
#![allow(clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use otpgate_server::clock::{Clock, SystemClock};
use otpgate_server::store::{
    BudgetRequest, Budgets, CheckOutcome, EmbeddedStore, MemoryStore, RedisOptions, RedisStore,
    RedisTarget, Store,
};
use otpgate_test_support::conformance::{fresh_id, right, sample_record};
use otpgate_test_support::redis::TestRedis;

const HOUR: i64 = 3_600_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let which = args.first().map_or("all", String::as_str).to_owned();
    let n: usize = args.get(1).map_or(Ok(20_000), |s| s.parse())?;
    let conc: usize = args.get(2).map_or(Ok(64), |s| s.parse())?;
    println!(
        "N = {n}, concurrency = {conc}, {} CPUs",
        std::thread::available_parallelism().map_or(0, |p| p.get())
    );

    if which == "memory" || which == "all" {
        run("memory", Arc::new(MemoryStore::new()), n, conc).await;
    }
    if which == "embedded" || which == "all" {
        let dir = tempfile::tempdir()?;
        let store = Arc::new(
            EmbeddedStore::open(dir.path().join("bench.redb")).map_err(anyhow::Error::msg)?,
        );
        run("embedded", Arc::clone(&store) as Arc<dyn Store>, n, conc).await;
        let st = store.stats();
        let b = st.batches.max(1);
        println!(
            " embedded: {} batches, {:.1} ops/batch, apply {:.3} ms/batch, encode+write {:.3} ms/batch; {} syncs, {:.2} ms each, {:.1} batches/sync; {} checkpoints beside the writer, {:.1} ms each",
            st.batches,
            st.ops as f64 / b as f64,
            st.apply_micros as f64 / b as f64 / 1e3,
            st.commit_micros as f64 / b as f64 / 1e3,
            st.syncs,
            st.sync_micros as f64 / st.syncs.max(1) as f64 / 1e3,
            st.batches as f64 / st.syncs.max(1) as f64,
            st.checkpoints,
            st.checkpoint_micros as f64 / st.checkpoints.max(1) as f64 / 1e3
        );
    }
    if which == "replicated" {
        replicated(n, conc).await?;
    }
    if which == "redis" || which == "all" {
        let redis = TestRedis::start();
        let store = RedisStore::connect(&redis.url, &fresh_id("bench"))
            .await
            .map_err(anyhow::Error::msg)?;
        run("redis", Arc::new(store), n, conc).await;
    }
    Ok(())
}

/// Sentinel and Cluster, `wait_replicas` 0 and 1, then a failover of each.
async fn replicated(n: usize, conc: usize) -> anyhow::Result<()> {
    use otpgate_test_support::redis::{RedisCluster, RedisSentinel, SENTINEL_SERVICE};
    let opts = |wait| RedisOptions {
        wait_replicas: wait,
        ..RedisOptions::default()
    };
    let mut group = RedisSentinel::start();
    let sentinel = RedisTarget::sentinel(group.urls.clone(), SENTINEL_SERVICE);
    let mut cluster = RedisCluster::start();
    let seeds = RedisTarget::cluster(cluster.urls.clone());
    for (name, target) in [("sentinel", &sentinel), ("cluster", &seeds)] {
        for wait in [0, 1] {
            let store = RedisStore::connect_to(target, &fresh_id("bench"), opts(wait))
                .await
                .map_err(anyhow::Error::msg)?;
            run(&format!("{name} w{wait}"), Arc::new(store), n, conc).await;
        }
    }
    let quick = RedisOptions {
        op_timeout: std::time::Duration::from_millis(800),
        connect_timeout: std::time::Duration::from_millis(400),
        ..RedisOptions::default()
    };
    let store = RedisStore::connect_to(&sentinel, &fresh_id("bench"), quick.clone())
        .await
        .map_err(anyhow::Error::msg)?;
    let rec = sample_record(&fresh_id("v_"), SystemClock.now_ms());
    store.create(&rec).await.map_err(anyhow::Error::msg)?;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    group.primary.kill9();
    println!(
        " sentinel: primary SIGKILLed; first successful check after {:.2} s",
        first_check(&store, &rec.id).await
    );
    let store = RedisStore::connect_to(&seeds, &fresh_id("bench"), quick)
        .await
        .map_err(anyhow::Error::msg)?;
    let rec = sample_record(&fresh_id("v_"), SystemClock.now_ms());
    store.create(&rec).await.map_err(anyhow::Error::msg)?;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    cluster.kill9(cluster.master_of(&format!("{{{}}}", rec.id)));
    println!(
        "  cluster: master of the record's slot SIGKILLed; first successful check after {:.2} s",
        first_check(&store, &rec.id).await
    );
    Ok(())
}

/// Seconds until a (wrong) check on `id` is answered.
async fn first_check(store: &RedisStore, id: &str) -> f64 {
    let started = Instant::now();
    let guess = otpgate_test_support::conformance::wrong();
    loop {
        if store
            .check(id, &guess, None, SystemClock.now_ms())
            .await
            .is_ok()
        {
            return started.elapsed().as_secs_f64();
        }
        assert!(
            started.elapsed().as_secs() < 60,
            "no check answered within 60 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn run(name: &str, store: Arc<dyn Store>, n: usize, conc: usize) {
    let ids: Arc<Vec<String>> = Arc::new((0..n).map(|_| fresh_id("v_")).collect());

    let secs = over_ids(conc, &store, &ids, |store, ids, i| async move {
        let now = SystemClock.now_ms();
        let ip = format!("ip:10.0.{}.{}", i % 250, i / 250 % 250);
        for (key, limit) in [
            (format!("phone:{i}"), 5),
            (ip, 50),
            ("prefix:+336".to_owned(), u32::MAX),
            ("global".to_owned(), u32::MAX),
        ] {
            store
                .take_budget(&key, limit, HOUR, now)
                .await
                .expect("take_budget");
        }
        store
            .create(&sample_record(&ids[i], now))
            .await
            .expect("create");
    })
    .await;
    println!(
        "{name:>9}: start (1 create + 4 take_budget): {:>8.0} starts/s ({:>8.0} ops/s)",
        n as f64 / secs,
        5.0 * n as f64 / secs
    );

    let batched_ids: Arc<Vec<String>> = Arc::new((0..n).map(|_| fresh_id("v_")).collect());
    let secs = over_ids(conc, &store, &batched_ids, |store, ids, i| async move {
        let now = SystemClock.now_ms();
        let (phone, ip) = (
            format!("b-phone:{i}"),
            format!("b-ip:10.0.{}.{}", i % 250, i / 250 % 250),
        );
        let budgets = [
            hourly(&phone, 5),
            hourly(&ip, 50),
            hourly("b-prefix:+336", u32::MAX),
            hourly("b-global", u32::MAX),
        ];
        let taken = store
            .open(&sample_record(&ids[i], now), &budgets, now)
            .await
            .expect("open");
        assert!(matches!(taken, Budgets::Allowed { .. }));
    })
    .await;
    println!(
        "{name:>9}: start (1 open: 4 budgets + the record): {:>8.0} starts/s",
        n as f64 / secs
    );

    let secs = over_ids(conc, &store, &ids, |store, ids, i| async move {
        let now = SystemClock.now_ms();
        let ip = format!("check-ip:10.0.{}.{}", i % 250, i / 250 % 250);
        let budget = hourly(&ip, u32::MAX);
        let guess = right(&sample_record(&ids[i], now).code);
        match store
            .check(&ids[i], &guess, Some(budget), now)
            .await
            .expect("check")
        {
            CheckOutcome::Approved(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    })
    .await;
    println!(
        "{name:>9}: check (budget + count + compare + approve, one step): {:>8.0} checks/s",
        n as f64 / secs
    );

    let secs = over_ids(conc, &store, &ids, |store, ids, i| async move {
        store.get(&ids[i]).await.expect("get").expect("present");
    })
    .await;
    println!("{name:>9}: get: {:>8.0} reads/s", n as f64 / secs);
}

/// [`parallel`] over `ids`: `f(store, ids, i)` for each index of `ids`, each call with its
/// own handles on the store and the ids.
async fn over_ids<F, Fut>(conc: usize, store: &Arc<dyn Store>, ids: &Arc<Vec<String>>, f: F) -> f64
where
    F: Fn(Arc<dyn Store>, Arc<Vec<String>>, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (store, ids) = (Arc::clone(store), Arc::clone(ids));
    parallel(conc, ids.len(), move |i| {
        f(Arc::clone(&store), Arc::clone(&ids), i)
    })
    .await
}

/// A budget of `limit` an hour on `key`.
fn hourly(key: &str, limit: u32) -> BudgetRequest<'_> {
    BudgetRequest {
        key,
        limit,
        window_ms: HOUR,
    }
}

/// Runs `f(0..n)` on `conc` workers; returns the elapsed seconds.
async fn parallel<F, Fut>(conc: usize, n: usize, f: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let f = Arc::new(f);
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..conc {
        let (next, f) = (Arc::clone(&next), Arc::clone(&f));
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                f(i).await;
            }
        }));
    }
    for w in workers {
        w.await.expect("worker");
    }
    started.elapsed().as_secs_f64()
}
