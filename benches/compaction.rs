//! Compaction benchmarks, each beside a raw `std::fs` baseline measured in the same run.
//!
//! - `compaction/log_{10,90}pct`: one pass over a freshly written dirty log (16 B keys, 100 B
//!   values) in which 10% or 90% of the records overwrite an earlier key; throughput is the
//!   log's bytes (the input). Against `compaction/raw_{10,90}pct`: reading the same segment
//!   files with `std::fs` and writing as many bytes as the pass wrote to a new file, fsynced.
//! - When benchmarking (not in `cargo test`'s single pass), a direct pass measures the latency
//!   of `append` + `sync` of 100 B records on a log while nothing else runs (idle) and while a
//!   compaction pass runs on the same log, p50 and p99 of each, into
//!   `target/bench/compaction-latency.json`, which `cargo xtask bench` reports.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cairn::changelog::{CompactOptions, CompactionReport, Log, LogOptions, Record};
use cairn::fs::RealFs;
use common::{Scratch, segment_files};
use criterion::{Criterion, Throughput, criterion_group};

/// Bytes of dirty log per pass: 64 MiB when benchmarking, 2 MiB when `cargo test` runs the
/// benches once to check them.
fn log_bytes() -> u64 {
    if benchmarking() { 64 << 20 } else { 2 << 20 }
}

fn benchmarking() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn options() -> LogOptions {
    let mut options = LogOptions::default();
    options.segment_bytes_max = 16 << 20;
    options
}

fn compact_options() -> CompactOptions {
    let mut options = CompactOptions::default();
    options.roll_active_bytes_min = Some(0);
    options
}

/// Writes a dirty log of about `log_bytes()` in `dir`: records of 16 B keys and 100 B values,
/// each overwriting a random earlier key with probability `overwrite_percent`, else a new key.
/// Returns the open log and its end.
fn dirty_log(dir: &Path, overwrite_percent: u64) -> (Log, u64) {
    let log = Log::open(Arc::new(RealFs::new()), dir, options()).unwrap();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let value = [0x5a; 100];
    let mut keys = 0u64;
    let records = log_bytes() / 116;
    for _ in 0..records {
        let k = if keys > 0 && next() % 100 < overwrite_percent {
            next() % keys
        } else {
            keys += 1;
            keys - 1
        };
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&k.to_be_bytes());
        log.append(Record::new(&key, Some(&value), 0)).unwrap();
    }
    let end = log.sync().unwrap();
    (log, end)
}

/// One pass over a fresh dirty log: its time and report (writing the log is not timed).
fn time_pass(overwrite_percent: u64) -> (Duration, CompactionReport) {
    let scratch = Scratch::new("compaction");
    let (log, end) = dirty_log(&scratch.0, overwrite_percent);
    let started = Instant::now();
    let report = log.compact(end, &compact_options()).unwrap();
    (started.elapsed(), report)
}

/// The raw baseline of a pass: read the dirty log's files, write `out_bytes` to a new file and
/// fsync it (writing the log is not timed).
fn time_raw(overwrite_percent: u64, out_bytes: u64) -> Duration {
    let scratch = Scratch::new("compaction-raw");
    let (log, _) = dirty_log(&scratch.0, overwrite_percent);
    log.close().unwrap();
    drop(log);
    let files = segment_files(&scratch.0);
    let started = Instant::now();
    let mut buf = vec![0u8; 1 << 20];
    let mut out = std::fs::File::create(scratch.0.join("raw.out")).unwrap();
    let mut written = 0u64;
    for path in &files {
        let mut file = std::fs::File::open(path).unwrap();
        loop {
            let n = file.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            let take = (out_bytes - written).min(n as u64) as usize;
            out.write_all(&buf[..take]).unwrap();
            written += take as u64;
        }
    }
    out.sync_data().unwrap();
    started.elapsed()
}

fn compaction(c: &mut Criterion) {
    let mut group = c.benchmark_group("compaction");
    group.sample_size(10);
    for percent in [10u64, 90] {
        // The input size and the output size, from one pass outside the measurement.
        let (_, report) = time_pass(percent);
        println!(
            "{percent}% overwritten: {} -> {} bytes, {} -> {} records, read {} written {}",
            report.bytes_before,
            report.bytes_after,
            report.records_before,
            report.records_after,
            report.bytes_read,
            report.bytes_written
        );
        group.throughput(Throughput::Bytes(report.bytes_before));
        group.bench_function(format!("log_{percent}pct"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| time_pass(percent).0).sum())
        });
        group.bench_function(format!("raw_{percent}pct"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| time_raw(percent, report.bytes_written)).sum())
        });
    }
    group.finish();
}

/// p50 and p99 of `append` + `sync` with and without a compaction pass running on the same log:
/// rounds of a fresh dirty log, 300 operations idle, then operations for as long as one pass
/// over it runs.
fn append_latency_during_compaction() {
    let (mut idle, mut busy) = (Vec::new(), Vec::new());
    let value = [0x5a; 100];
    for round in 0..6u64 {
        let scratch = Scratch::new("compaction-latency");
        let (log, end) = dirty_log(&scratch.0, 50);
        let mut key = [0u8; 16];
        key[8..].copy_from_slice(&round.to_be_bytes());
        let op = |i: u64, key: &mut [u8; 16]| {
            key[..8].copy_from_slice(&(u64::MAX - i).to_be_bytes());
            let started = Instant::now();
            log.append(Record::new(key, Some(&value), 0)).unwrap();
            log.sync().unwrap();
            started.elapsed()
        };
        for i in 0..300 {
            idle.push(op(i, &mut key));
        }
        let running = AtomicBool::new(true);
        std::thread::scope(|s| {
            s.spawn(|| {
                log.compact(end, &compact_options()).unwrap();
                running.store(false, Ordering::Release);
            });
            let mut i = 300;
            while running.load(Ordering::Acquire) {
                let latency = op(i, &mut key);
                if running.load(Ordering::Acquire) {
                    busy.push(latency);
                }
                i += 1;
            }
        });
    }
    idle.sort();
    busy.sort();
    let report = format!(
        "{{\"idle\": {{\"ops\": {}, \"p50_us\": {:.1}, \"p99_us\": {:.1}}}, \"compacting\": {{\"ops\": {}, \"p50_us\": {:.1}, \"p99_us\": {:.1}}}}}\n",
        idle.len(),
        common::percentile_us(&idle, 0.5),
        common::percentile_us(&idle, 0.99),
        busy.len(),
        common::percentile_us(&busy, 0.5),
        common::percentile_us(&busy, 0.99)
    );
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("compaction-latency.json"), &report).unwrap();
    println!("append + sync latency, idle and during compaction: {report}");
}

criterion_group!(benches, compaction);

fn main() {
    if benchmarking() {
        append_latency_during_compaction();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
