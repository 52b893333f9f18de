//! HTTP load client for a running `otpgate serve` (see `scripts/bench-issuer.sh`).
//!
//! ```text
//! cargo run --release -p otpgate-bench --bin load -- \
//!     --base http://127.0.0.1:8080[,http://127.0.0.1:8081] --concurrency 64 --duration-secs 10 \
//!     --app bench --test-phone +14155550100 --test-code 123456
//! ```
//!
//! Three phases in one run, each bounded by `--duration-secs` and `--max-requests`:
//! - `health`: `GET /healthz` (the floor: HTTP stack only);
//! - `start`: `POST /v1/verifications` to random valid US numbers (the full start path:
//!   policy, store, audit log, dispatch); expects 201;
//! - `check`: first a pool of verifications is opened on the test number (timed apart, as
//!   `start (test number)`), then each is checked four times with a wrong code (422) and
//!   once with the right one (200), spreading instances when several bases are given.
//!
//! Prints one row per endpoint: requests, expected answers, requests/s, p50 and p99, and
//! where the machine's CPU time went during the phase (from `/proc/stat`): busy, idle
//! (iowait included) and **stolen** by the hypervisor, which on a shared virtual machine
//! decides how much of the machine a run really had.
//! The server's budgets must be raised for this (the script's bench config does it).
//!
//! The client is kept lean so that the server gets the machine: one thread, and each worker
//! holds its own HTTP/1.1 keep-alive connection per instance (hyper's connection API, no
//! pool), reopened after a transport error.

#[path = "../shared.rs"]
mod shared;

use shared::Rng;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use otpgate_core::wire::{CheckRequest, StartRequest, VerificationView};
use tokio::sync::Mutex;

/// Options.
#[derive(Debug, Parser)]
#[command(about = "HTTP load client for otpgate serve")]
struct Args {
    /// Issuer base URLs, comma separated (workers spread over them).
    #[arg(long, default_value = "http://127.0.0.1:8080", value_delimiter = ',')]
    base: Vec<String>,
    /// Concurrent workers (each keeps one request in flight).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Time limit of each phase, seconds.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Request limit of each phase.
    #[arg(long, default_value_t = 200_000)]
    max_requests: usize,
    /// Verifications opened for the check phase (5 checks each).
    #[arg(long, default_value_t = 30_000)]
    check_pool: usize,
    /// The app name sent with starts.
    #[arg(long, default_value = "bench")]
    app: String,
    /// A configured test number (fixed code, never sent).
    #[arg(long, default_value = "+14155550100")]
    test_phone: String,
    /// Its fixed code.
    #[arg(long, default_value = "123456")]
    test_code: String,
    /// Phases to run, comma separated: health, start, check.
    #[arg(long, default_value = "health,start,check", value_delimiter = ',')]
    phases: Vec<String>,
    /// Also write the rows as JSON to this file (`-` = stdout): one object per phase, keyed
    /// `health`, `start`, `start_test`, `check`.
    #[arg(long)]
    json: Option<String>,
}

/// What one phase measured.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    statuses: BTreeMap<u16, usize>,
    failures: usize,
}

impl Tally {
    fn record(&mut self, started: Instant, status: Option<u16>) {
        self.latencies_us
            .push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX));
        match status {
            Some(s) => *self.statuses.entry(s).or_default() += 1,
            None => self.failures += 1,
        }
    }

    fn merge(&mut self, other: Self) {
        self.latencies_us.extend(other.latencies_us);
        for (s, n) in other.statuses {
            *self.statuses.entry(s).or_default() += n;
        }
        self.failures += other.failures;
    }
}

struct Row {
    /// Machine-readable key: `health`, `start`, `start_test`, `check`.
    key: &'static str,
    name: String,
    tally: Tally,
    elapsed: Duration,
    expected: Vec<u16>,
    cpu: Option<CpuShare>,
}

/// The machine's CPU time counters (`/proc/stat`, all CPUs): busy, idle, iowait, steal.
#[derive(Clone, Copy)]
struct CpuTimes([u64; 4]);

impl CpuTimes {
    /// `None` where `/proc/stat` is not readable (not Linux).
    fn now() -> Option<Self> {
        let text = std::fs::read_to_string("/proc/stat").ok()?;
        let line = text.lines().find(|l| l.starts_with("cpu "))?;
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        // user nice system idle iowait irq softirq steal
        let at = |i: usize| v.get(i).copied().unwrap_or(0);
        Some(Self([
            at(0) + at(1) + at(2) + at(5) + at(6),
            at(3),
            at(4),
            at(7),
        ]))
    }

    /// The shares of the time between `self` and `later`.
    fn share_until(self, later: Self) -> CpuShare {
        let d: Vec<f64> = (0..4)
            .map(|i| later.0[i].saturating_sub(self.0[i]) as f64)
            .collect();
        let total = d.iter().sum::<f64>().max(1.0);
        let pct = |x: f64| (x / total * 1000.0).round() / 10.0;
        CpuShare {
            busy_pct: pct(d[0]),
            idle_pct: pct(d[1] + d[2]),
            iowait_pct: pct(d[2]),
            steal_pct: pct(d[3]),
        }
    }
}

/// Where the machine's CPU time went during a phase, in percent.
#[derive(Clone, Copy, serde::Serialize)]
struct CpuShare {
    busy_pct: f64,
    /// Idle, iowait included.
    idle_pct: f64,
    iowait_pct: f64,
    /// Taken by the hypervisor for other guests.
    steal_pct: f64,
}

/// The value at `p` of `sorted` microseconds, in milliseconds, 0 when there are none.
fn percentile(sorted: &[u32], p: f64) -> f64 {
    shared::percentile(sorted, p).map_or(0.0, |us| f64::from(us) / 1000.0)
}

/// The figures of one row, for `--json`.
#[derive(serde::Serialize)]
struct RowFigures {
    name: String,
    requests: usize,
    expected: usize,
    requests_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    elapsed_s: f64,
    /// Answers other than the expected ones, by status (`io` for transport errors).
    other: BTreeMap<String, usize>,
    /// The machine's CPU time during the phase, when known.
    cpu: Option<CpuShare>,
}

fn figures(r: &mut Row) -> RowFigures {
    r.tally.latencies_us.sort_unstable();
    let n = r.tally.latencies_us.len();
    let expected = r
        .expected
        .iter()
        .map(|s| r.tally.statuses.get(s).copied().unwrap_or(0))
        .sum();
    let mut other: BTreeMap<String, usize> = r
        .tally
        .statuses
        .iter()
        .filter(|(s, _)| !r.expected.contains(s))
        .map(|(s, c)| (s.to_string(), *c))
        .collect();
    if r.tally.failures > 0 {
        other.insert("io".into(), r.tally.failures);
    }
    RowFigures {
        name: r.name.clone(),
        requests: n,
        expected,
        requests_per_s: n as f64 / r.elapsed.as_secs_f64().max(1e-9),
        p50_ms: percentile(&r.tally.latencies_us, 0.50),
        p99_ms: percentile(&r.tally.latencies_us, 0.99),
        elapsed_s: r.elapsed.as_secs_f64(),
        other,
        cpu: r.cpu,
    }
}

fn write_json(path: &str, meta: serde_json::Value, rows: &mut [Row]) -> anyhow::Result<()> {
    let mut obj = serde_json::Map::new();
    obj.insert("meta".into(), meta);
    for r in rows.iter_mut() {
        obj.insert(r.key.into(), serde_json::to_value(figures(r))?);
    }
    shared::write_json(path, &obj)
}

fn print_table(rows: &mut [Row]) {
    println!();
    println!(
        "{:<34} {:>9} {:>9} {:>10} {:>9} {:>9} {:>15}  other",
        "endpoint", "requests", "expected", "req/s", "p50 ms", "p99 ms", "cpu busy/steal"
    );
    for r in rows.iter_mut() {
        let f = figures(r);
        let other: Vec<String> = f
            .other
            .iter()
            .map(|(s, c)| {
                if s == "io" {
                    format!("io-errors x{c}")
                } else {
                    format!("{s}x{c}")
                }
            })
            .collect();
        let cpu = f.cpu.map_or_else(
            || "-".to_owned(),
            |c| format!("{:.0}%/{:.0}%", c.busy_pct, c.steal_pct),
        );
        println!(
            "{:<34} {:>9} {:>9} {:>10.0} {:>9.2} {:>9.2} {:>15}  {}",
            f.name,
            f.requests,
            f.expected,
            f.requests_per_s,
            f.p50_ms,
            f.p99_ms,
            cpu,
            if other.is_empty() {
                "-".to_owned()
            } else {
                other.join(" ")
            }
        );
    }
}

impl Rng {
    /// A valid US number (a real area code, an exchange `[2-9]xx`), distinct across the run
    /// with high odds: the issuer judges numbers with libphonenumber's metadata.
    fn phone(&mut self) -> String {
        const AREAS: [u64; 10] = [201, 206, 212, 303, 312, 404, 415, 512, 617, 646];
        let n = self.next();
        let area = AREAS[usize::try_from(n % 10).unwrap_or(0)];
        format!("+1{area}{}{:06}", 2 + (n / 10) % 8, (n / 80) % 1_000_000)
    }
}

struct Ctx {
    args: Args,
    /// `host:port` of each instance, from `--base`.
    hosts: Vec<String>,
    deadline_len: Duration,
}

/// One worker's connections: at most one per instance, opened when first used.
struct Conns {
    ctx: Arc<Ctx>,
    open: Vec<Option<SendRequest<Full<Bytes>>>>,
}

impl Conns {
    fn new(ctx: Arc<Ctx>) -> Self {
        let open = ctx.hosts.iter().map(|_| None).collect();
        Self { ctx, open }
    }

    /// Sends one request to instance `idx % instances` (JSON `body` for a POST); the
    /// status and the body, or `None` on a transport error (the connection is dropped).
    async fn send(
        &mut self,
        idx: usize,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Option<(u16, Bytes)> {
        let idx = idx % self.open.len();
        let host = &self.ctx.hosts[idx];
        let sender = match &mut self.open[idx] {
            Some(s) => s,
            slot @ None => {
                let stream = tokio::net::TcpStream::connect(host.as_str()).await.ok()?;
                stream.set_nodelay(true).ok()?;
                let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .ok()?;
                tokio::spawn(conn);
                slot.insert(sender)
            }
        };
        let builder = hyper::Request::builder()
            .uri(path)
            .header(hyper::header::HOST, host.as_str());
        let req = match body {
            Some(b) => builder
                .method(hyper::Method::POST)
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(b))),
            None => builder
                .method(hyper::Method::GET)
                .body(Full::new(Bytes::new())),
        }
        .ok()?;
        let answer = async {
            let resp = sender.send_request(req).await.ok()?;
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.ok()?.to_bytes();
            Some((status, body))
        }
        .await;
        if answer.is_none() {
            self.open[idx] = None;
        }
        answer
    }

    /// POSTs `body` as JSON.
    async fn post_json<T: serde::Serialize>(
        &mut self,
        idx: usize,
        path: &str,
        body: &T,
    ) -> Option<(u16, Bytes)> {
        let bytes = serde_json::to_vec(body).ok()?;
        self.send(idx, path, Some(bytes)).await
    }
}

/// Runs `work` on `concurrency` workers until the time or the request count is spent.
async fn phase<F, Fut>(
    ctx: &Arc<Ctx>,
    key: &'static str,
    name: &str,
    expected: &[u16],
    limit: usize,
    work: F,
) -> Row
where
    F: Fn(Conns, usize, u64) -> Fut + Send + Sync + 'static + Clone,
    Fut: Future<Output = (Tally, Conns)> + Send + 'static,
{
    let counter = Arc::new(AtomicUsize::new(0));
    let cpu_before = CpuTimes::now();
    let started = Instant::now();
    let deadline = started + ctx.deadline_len;
    let mut handles = Vec::new();
    for w in 0..ctx.args.concurrency {
        let ctx = Arc::clone(ctx);
        let counter = Arc::clone(&counter);
        let work = work.clone();
        handles.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut round = 0u64;
            let mut conns = Conns::new(ctx);
            while Instant::now() < deadline && counter.fetch_add(1, Ordering::Relaxed) < limit {
                let (t, c) = work(conns, w, round).await;
                conns = c;
                round += 1;
                let stop = t.statuses.is_empty() && t.failures == 0;
                tally.merge(t);
                if stop {
                    break; // nothing left to do for this worker
                }
            }
            tally
        }));
    }
    let mut tally = Tally::default();
    for h in handles {
        if let Ok(t) = h.await {
            tally.merge(t);
        }
    }
    Row {
        key,
        name: name.to_owned(),
        tally,
        elapsed: started.elapsed(),
        expected: expected.to_vec(),
        cpu: cpu_before
            .zip(CpuTimes::now())
            .map(|(a, b)| a.share_until(b)),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        !args.base.is_empty() && args.concurrency > 0,
        "need a base URL and workers"
    );
    let hosts = args
        .base
        .iter()
        .map(|b| {
            b.strip_prefix("http://")
                .map(|h| h.trim_end_matches('/').to_owned())
                .filter(|h| !h.is_empty() && !h.contains('/'))
                .with_context(|| format!("--base {b}: expected http://host:port"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let deadline_len = Duration::from_secs(args.duration_secs);
    let ctx = Arc::new(Ctx {
        args,
        hosts,
        deadline_len,
    });
    // Wait for every instance to answer.
    let mut probe = Conns::new(Arc::clone(&ctx));
    for (i, base) in ctx.args.base.iter().enumerate() {
        let mut ok = false;
        for _ in 0..100 {
            if matches!(probe.send(i, "/healthz", None).await, Some((200, _))) {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::ensure!(ok, "{base}/healthz does not answer");
    }
    drop(probe);
    let args = &ctx.args;
    println!(
        "load: {} instance(s), {} workers, phases of at most {} s / {} requests, {} CPUs",
        args.base.len(),
        args.concurrency,
        args.duration_secs,
        args.max_requests,
        std::thread::available_parallelism().map_or(0, |p| p.get())
    );
    let meta = serde_json::json!({
        "instances": args.base.len(),
        "concurrency": args.concurrency,
        "duration_secs": args.duration_secs,
        "max_requests": args.max_requests,
        "cpus": std::thread::available_parallelism().map_or(0, |p| p.get()),
    });
    let json_path = args.json.clone();
    let phases = args.phases.clone();
    let max = args.max_requests;
    let mut rows = Vec::new();

    if phases.iter().any(|p| p == "health") {
        rows.push(
            phase(
                &ctx,
                "health",
                "GET /healthz",
                &[200],
                max,
                |mut conns, w, _| async move {
                    let mut t = Tally::default();
                    let started = Instant::now();
                    let r = conns.send(w, "/healthz", None).await;
                    t.record(started, r.map(|(s, _)| s));
                    (t, conns)
                },
            )
            .await,
        );
    }

    if phases.iter().any(|p| p == "start") {
        rows.push(
            phase(
                &ctx,
                "start",
                "POST /v1/verifications",
                &[201],
                max,
                |mut conns, w, round| async move {
                    let mut t = Tally::default();
                    let mut rng = Rng(0x9e37_79b9_7f4a_7c15
                        ^ ((w as u64) << 32)
                        ^ round.wrapping_mul(0x2545_f491_4f6c_dd1d)
                        ^ 1);
                    let req = StartRequest {
                        phone: rng.phone(),
                        app: Some(conns.ctx.args.app.clone()),
                        locale: None,
                        pow: None,
                    };
                    let started = Instant::now();
                    let r = conns.post_json(w, "/v1/verifications", &req).await;
                    t.record(started, r.map(|(s, _)| s));
                    (t, conns)
                },
            )
            .await,
        );
    }

    if phases.iter().any(|p| p == "check") {
        // Open the pool of verifications on the test number.
        let pool: Arc<Mutex<Vec<(usize, String)>>> =
            Arc::new(Mutex::new(Vec::with_capacity(ctx.args.check_pool)));
        let sink = Arc::clone(&pool);
        let mut open = phase(
            &ctx,
            "start_test",
            "POST /v1/verifications (test no.)",
            &[201],
            ctx.args.check_pool,
            move |mut conns, w, _| {
                let sink = Arc::clone(&sink);
                async move {
                    let mut t = Tally::default();
                    let req = StartRequest {
                        phone: conns.ctx.args.test_phone.clone(),
                        app: Some(conns.ctx.args.app.clone()),
                        locale: None,
                        pow: None,
                    };
                    let started = Instant::now();
                    let r = conns.post_json(w, "/v1/verifications", &req).await;
                    t.record(started, r.as_ref().map(|(s, _)| *s));
                    if let Some((201, body)) = r
                        && let Ok(v) = serde_json::from_slice::<VerificationView>(&body)
                    {
                        sink.lock().await.push((w, v.id));
                    }
                    (t, conns)
                }
            },
        )
        .await;
        open.name = format!("{} [setup]", open.name);
        rows.push(open);
        let opened = pool.lock().await.len();
        let wrong = if ctx.args.test_code == "000000" {
            "999999"
        } else {
            "000000"
        }
        .to_owned();
        let source = Arc::clone(&pool);
        let mut row = phase(
            &ctx,
            "check",
            "POST /v1/verifications/{id}/check",
            &[200, 422],
            max / 5,
            move |mut conns, w, _| {
                let source = Arc::clone(&source);
                let wrong = wrong.clone();
                async move {
                    let mut t = Tally::default();
                    let Some((opened_on, id)) = source.lock().await.pop() else {
                        return (t, conns);
                    };
                    // Check on another instance than the one that opened it, when there are several.
                    let instance = opened_on + 1 + w;
                    let path = format!("/v1/verifications/{id}/check");
                    for i in 0..5 {
                        let code = if i < 4 {
                            wrong.clone()
                        } else {
                            conns.ctx.args.test_code.clone()
                        };
                        let started = Instant::now();
                        let r = conns
                            .post_json(instance, &path, &CheckRequest { code })
                            .await;
                        t.record(started, r.map(|(s, _)| s));
                    }
                    (t, conns)
                }
            },
        )
        .await;
        row.name = format!("{} ({} verif.)", row.name, opened);
        rows.push(row);
    }

    print_table(&mut rows);
    if let Some(path) = json_path {
        write_json(&path, meta, &mut rows)?;
    }
    Ok(())
}
