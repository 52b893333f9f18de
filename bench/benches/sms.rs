//! Criterion benchmarks of SMS parsing, segment counting and composition, reported as
//! messages per second (the bar: ≥ 2,000,000 parses/s on one core).
//!
//! `cargo bench -p otpgate-bench --bench sms -- --warm-up-time 1 --measurement-time 3`
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use otpgate_core::sms::{self, ComposeRequest};

/// A realistic mix: origin-bound messages from several senders, SMS Retriever messages, plain
/// User Consent messages, marketing-length texts, UCS-2 texts and near-misses
/// (`bench/sms-messages.json`, the mix of `bench/js/node-core.mjs` too).
fn messages() -> Vec<String> {
    serde_json::from_str(include_str!("../sms-messages.json"))
        .unwrap_or_else(|e| panic!("bench/sms-messages.json: {e}"))
}

/// Benchmarks `f` as `name` in `g`: one pass over every message of `all` an iteration.
fn each_message<M: Measurement>(
    g: &mut BenchmarkGroup<'_, M>,
    name: &str,
    all: &[String],
    f: impl Fn(&str),
) {
    g.bench_function(name, |b| {
        b.iter(|| {
            for m in all {
                f(black_box(m));
            }
        })
    });
}

fn parse<M: Measurement>(c: &mut Criterion<M>, prefix: &str) {
    let messages = messages();
    let mut g = c.benchmark_group(format!("{prefix}parse"));
    g.throughput(Throughput::Elements(messages.len() as u64));
    each_message(&mut g, "mix", &messages, |m| {
        black_box(sms::parse(m));
    });
    each_message(&mut g, "mix_no_alloc", &messages, |m| {
        black_box(sms::parse_ref(m));
    });
    g.finish();
    let mut g = c.benchmark_group(format!("{prefix}parse_one"));
    g.throughput(Throughput::Elements(1));
    g.bench_function("retriever_webotp", |b| {
        b.iter(|| sms::parse(black_box(&messages[0])))
    });
    g.finish();
}

fn segments<M: Measurement>(c: &mut Criterion<M>, prefix: &str) {
    let long = format!("{}€{}", "a".repeat(152), "a".repeat(152));
    let mut all = messages();
    all.push(long);
    let mut g = c.benchmark_group(format!("{prefix}segments"));
    g.throughput(Throughput::Elements(all.len() as u64));
    each_message(&mut g, "mix", &all, |m| {
        black_box(sms::segments(m));
    });
    g.finish();
}

fn compose<M: Measurement>(c: &mut Criterion<M>, prefix: &str) {
    let locales = ["en", "pt-BR", "de", "fr-CA"];
    let mut g = c.benchmark_group(format!("{prefix}compose"));
    g.throughput(Throughput::Elements(locales.len() as u64));
    g.bench_function("full_layout", |b| {
        b.iter(|| {
            for l in locales {
                let req = ComposeRequest {
                    origin: Some("example.com"),
                    app_hash: Some("FA+9qCX9VSu"),
                    locale: Some(l),
                    ..ComposeRequest::new("Example", "123456")
                };
                let _ = black_box(sms::compose(black_box(req)));
            }
        })
    });
    g.finish();
}

fn all<M: Measurement>(c: &mut Criterion<M>, prefix: &str) {
    parse(c, prefix);
    segments(c, prefix);
    compose(c, prefix);
}

/// Wall-clock time (criterion's default).
fn wall(c: &mut Criterion) {
    all(c, "");
}

/// On-CPU time of the benchmark thread: on a shared, loaded machine the wall-clock figures
/// include the time the thread waited for a core; this does not.
fn cpu(c: &mut Criterion<ThreadCpu>) {
    all(c, "cpu/");
}

/// The benchmark thread's on-CPU time (`CLOCK_THREAD_CPUTIME_ID` through `cpu-time`), in
/// nanoseconds.
struct ThreadCpu;

static WALL: WallTime = WallTime;

impl Measurement for ThreadCpu {
    type Intermediate = cpu_time::ThreadTime;
    type Value = u64;

    fn start(&self) -> Self::Intermediate {
        cpu_time::ThreadTime::now()
    }

    fn end(&self, start: Self::Intermediate) -> u64 {
        u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }

    fn zero(&self) -> u64 {
        0
    }

    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        // Same unit (nanoseconds) as wall-clock time.
        WALL.formatter()
    }
}

criterion_group!(benches, wall);
criterion_group! {
    name = cpu_benches;
    config = Criterion::default().with_measurement(ThreadCpu);
    targets = cpu
}
criterion_main!(benches, cpu_benches);
