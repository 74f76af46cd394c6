//! End-to-end task benchmarks: the page-view counting task of the demo (a store of counts per
//! user, each running total sent to an output log), one partition on one thread, committing
//! every second (the default `commit_interval`), each beside a baseline of the same run.
//!
//! - `task/count_commit_1s`: `TaskRunner::run_to_end` over 4 M events of 100 k users (20 k
//!   events when `cargo test` runs the benches once), from an empty task directory; elements
//!   are input messages, so the throughput is messages/s on one core.
//! - `task/raw_count`: the baseline: the same input read with the same log reader, counted in a
//!   `HashMap`, every running total written to a `BufWriter`; nothing made durable.
//!
//! The latencies of every commit of the measured runs (commits every second, plus the final
//! one), and of one more run with a snapshot at every commit, go to
//! `target/bench/task-commit-latency.json` for the report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use cairn::changelog::{Log, LogOptions, Record};
use cairn::fs::{Fs, RealFs};
use cairn::store::StoreOptions;
use cairn::task::{Context, Message, StreamTask, TaskConfig, TaskError, TaskRunner};
use common::Scratch;
use criterion::{Criterion, Throughput, criterion_group};

fn benchmarking() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn fs() -> Arc<dyn Fs> {
    Arc::new(RealFs::new())
}

/// Counts page views per user, as the demo's task does.
struct CountViews;

impl StreamTask for CountViews {
    fn process(&mut self, message: &Message<'_>, ctx: &mut Context<'_>) -> Result<(), TaskError> {
        let counts = ctx.store("counts")?;
        let count = match counts.get(message.key)? {
            Some(bytes) => u64::from_le_bytes(bytes.as_slice().try_into()?),
            None => 0,
        } + 1;
        counts.put(message.key, &count.to_le_bytes())?;
        ctx.send("totals", message.key, &count.to_le_bytes())?;
        Ok(())
    }
}

/// Writes `events` page views of `users` users into one input partition.
fn generate(dir: &Path, events: u64, users: u64) {
    let log = Log::open(fs(), dir, LogOptions::default()).unwrap();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut batch: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(1000);
    for event in 0..events {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        batch.push((
            format!("user-{:07}", x % users).into_bytes(),
            format!("/page/{}", x % 1000).into_bytes(),
        ));
        if batch.len() == 1000 || event + 1 == events {
            let records: Vec<Record<'_>> =
                batch.iter().map(|(k, v)| Record::new(k, Some(v), event as i64)).collect();
            log.append_batch(&records).unwrap();
            batch.clear();
        }
    }
    log.sync().unwrap();
    log.close().unwrap();
}

fn config(task_dir: PathBuf, input: &Path) -> TaskConfig {
    TaskConfig::new("count", task_dir)
        .input_log("views", input)
        .store("counts", StoreOptions::default())
        .output_log("totals")
}

fn count(c: &mut Criterion) {
    let (events, users) = if benchmarking() { (4_000_000, 100_000) } else { (20_000, 1_000) };
    let input = Scratch::new("task-input");
    generate(&input.0, events, users);
    let mut latencies: Vec<Duration> = Vec::new();

    let mut group = c.benchmark_group("task");
    group
        .sample_size(10)
        .measurement_time(common::measurement_time(40))
        .throughput(Throughput::Elements(events));
    group.bench_function("count_commit_1s", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let scratch = Scratch::new("task-count");
                let runner = TaskRunner::open(fs(), config(scratch.0.join("task"), &input.0), CountViews);
                let mut runner = runner.unwrap();
                let started = Instant::now();
                runner.run_to_end(&AtomicBool::new(false)).unwrap();
                total += started.elapsed();
                assert_eq!(runner.metrics().messages, events);
                latencies.extend(runner.metrics().recent_commit_latencies());
            }
            total
        });
    });
    group.bench_function("raw_count", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let scratch = Scratch::new("task-raw");
                let log = Log::open(fs(), &input.0, LogOptions::default()).unwrap();
                let file = std::fs::File::create(scratch.0.join("totals")).unwrap();
                let started = Instant::now();
                let mut out = std::io::BufWriter::with_capacity(256 << 10, file);
                let mut counts: HashMap<Vec<u8>, u64> = HashMap::new();
                let mut reader = log.reader(0).unwrap();
                while let Some(batch) = reader.next_batch().unwrap() {
                    for record in batch.records() {
                        let record = record.unwrap();
                        let count = counts.entry(record.key.to_vec()).or_insert(0);
                        *count += 1;
                        out.write_all(record.key).unwrap();
                        out.write_all(&count.to_le_bytes()).unwrap();
                    }
                }
                out.flush().unwrap();
                total += started.elapsed();
                assert_eq!(counts.len() as u64, users.min(events));
            }
            total
        });
    });
    group.finish();
    // Each measured run makes about 7 commits, fewer than the default 10 between snapshots:
    // one more run, outside criterion, snapshots at every commit (the snapshot's encoding is
    // on the commit path, its file I/O on a thread of its own).
    let scratch = Scratch::new("task-snapshots");
    let mut config = config(scratch.0.join("task"), &input.0);
    config.snapshot_every_commits = 1;
    let mut runner = TaskRunner::open(fs(), config, CountViews).unwrap();
    runner.run_to_end(&AtomicBool::new(false)).unwrap();
    let mut with_snapshots = runner.metrics().recent_commit_latencies();
    write_latencies(&mut latencies, &mut with_snapshots);
}

fn summary(latencies: &mut [Duration]) -> String {
    latencies.sort();
    format!(
        "{{\"commits\": {}, \"p50_ms\": {:.3}, \"p99_ms\": {:.3}, \"max_ms\": {:.3}}}",
        latencies.len(),
        common::percentile_us(latencies, 0.5) / 1e3,
        common::percentile_us(latencies, 0.99) / 1e3,
        common::percentile_us(latencies, 1.0) / 1e3
    )
}

/// Commit latencies of every measured run (criterion's warm-up included) and of the run with
/// a snapshot at every commit, for the report.
fn write_latencies(latencies: &mut [Duration], with_snapshots: &mut [Duration]) {
    if latencies.is_empty() || with_snapshots.is_empty() {
        return;
    }
    let report = format!(
        "{{\"default\": {}, \"snapshot_every_commit\": {}}}\n",
        summary(latencies),
        summary(with_snapshots)
    );
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("task-commit-latency.json"), &report).unwrap();
    println!("task commit latency: {report}");
}

criterion_group!(benches, count);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
