//! Micro-benchmarks of the hot per-record code: splitting landing files into JSON values,
//! decoding records, and parsing exact decimals.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use cryptolake_catalog::layout::bronze_source_fields;
use cryptolake_jobs::sources::landing::split_values;
use cryptolake_jobs::sources::records::RecordDecoder;
use cryptolake_jobs::transform::silver::parse::parse_decimal;

fn spot_file(n: usize) -> Vec<u8> {
    let mut out = String::new();
    for i in 0..n {
        out.push_str(&format!(
            "{{\"data\":{{\"amount\":\"{}.{:02}\",\"base\":\"BTC\",\"currency\":\"USD\"}},\"timestamp_utc\":\"2026-01-01T00:00:{:02}Z\"}}",
            43000 + i % 100,
            i % 100,
            i % 60
        ));
    }
    out.into_bytes()
}

fn bench(c: &mut Criterion) {
    let file = spot_file(10_000);
    let mut g = c.benchmark_group("landing");
    g.throughput(Throughput::Bytes(file.len() as u64));
    g.bench_function("split_values", |b| b.iter(|| split_values(&file).len()));
    let decoder = RecordDecoder::new(
        "coinbase_spot",
        bronze_source_fields("coinbase_spot").unwrap_or(&[]),
    );
    g.bench_function("split_and_decode", |b| {
        b.iter(|| {
            let mut out = Vec::new();
            for piece in split_values(&file) {
                decoder.decode(&piece, &mut out);
            }
            out.len()
        })
    });
    g.finish();
    let mut g = c.benchmark_group("decimal");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_decimal", |b| {
        b.iter(|| parse_decimal(std::hint::black_box("43000.1234567890123456")))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
