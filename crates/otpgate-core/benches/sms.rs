//! Criterion benchmarks of parse, compose and segment counting (placeholder, being written).
#![allow(missing_docs)]
use criterion::{Criterion, criterion_group, criterion_main};

fn parse(c: &mut Criterion) {
    let msg = "<#> Your Example code is 123456\n@example.com #123456 FA+9qCX9VSu";
    c.bench_function("parse", |b| b.iter(|| otpgate_core::sms::parse(std::hint::black_box(msg))));
}

criterion_group!(benches, parse);
criterion_main!(benches);
