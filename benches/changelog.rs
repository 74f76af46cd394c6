//! Changelog benchmarks, each beside a raw `std::fs` baseline measured in the same run
//! (`cargo xtask bench` prints them side by side as ratios).
//!
//! - `append/*`: buffered appends of 100 B and 1 KiB values (16 B keys), no fsync, against
//!   `BufWriter` writes of the same bytes;
//! - `sync/*`: an append plus `sync` per record, and per 100 records, against a write plus
//!   `fdatasync` of the same bytes, into a growing file and into one whose size was set ahead;
//! - `group_commit/*`: 4 threads appending and syncing concurrently, against 1 thread;
//! - `read/*`: sequential read of a 96 MiB log (sealed, mapped segments and the active one),
//!   against reading the same files with `std::fs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod common;

use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use cairn::changelog::{Log, LogOptions, Record};
use cairn::fs::RealFs;
use common::{Scratch, segment_files};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const KEY_BYTES: usize = 16;

fn key(i: u64) -> [u8; KEY_BYTES] {
    let mut key = [0u8; KEY_BYTES];
    key[..8].copy_from_slice(&i.to_be_bytes());
    key
}

fn open(dir: &Path) -> Log {
    Log::open(Arc::new(RealFs::new()), dir, LogOptions::default()).unwrap()
}

/// Appends `iters` records with `value`-byte values to a fresh log; returns the time taken.
fn time_appends(value_bytes: usize, iters: u64) -> Duration {
    let scratch = Scratch::new("append");
    let log = open(&scratch.0);
    let value = vec![0x5a; value_bytes];
    let started = Instant::now();
    for i in 0..iters {
        log.append(Record::new(&key(i), Some(&value), i as i64)).unwrap();
    }
    log.flush().unwrap();
    let elapsed = started.elapsed();
    // Dropped without an fsync, as the raw baseline's file is: a close() would flush the sample
    // to the disk and slow the next one down with writeback the baseline never does.
    drop(log);
    elapsed
}

/// Writes `iters` key-value records' bytes through a `BufWriter`; returns the time taken.
fn time_raw_writes(value_bytes: usize, iters: u64) -> Duration {
    let scratch = Scratch::new("raw-write");
    let file = std::fs::File::create(scratch.0.join("raw")).unwrap();
    let mut writer = BufWriter::with_capacity(256 << 10, file);
    let value = vec![0x5a; value_bytes];
    let started = Instant::now();
    for i in 0..iters {
        writer.write_all(&key(i)).unwrap();
        writer.write_all(&value).unwrap();
    }
    writer.flush().unwrap();
    started.elapsed()
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    for (label, value_bytes) in [("100B", 100usize), ("1KiB", 1024)] {
        group.throughput(Throughput::Bytes((KEY_BYTES + value_bytes) as u64));
        group.bench_function(format!("log_{label}"), |b| {
            b.iter_custom(|iters| time_appends(value_bytes, iters))
        });
        group.bench_function(format!("raw_{label}"), |b| {
            b.iter_custom(|iters| time_raw_writes(value_bytes, iters))
        });
    }
    group.finish();
}

fn sync(c: &mut Criterion) {
    let mut group = c.benchmark_group("sync");
    group.throughput(Throughput::Elements(1));
    let value = vec![0x5a; 100];
    group.bench_function("log_every_append", |b| {
        b.iter_custom(|iters| {
            let scratch = Scratch::new("sync");
            let log = open(&scratch.0);
            let started = Instant::now();
            for i in 0..iters {
                log.append(Record::new(&key(i), Some(&value), 0)).unwrap();
                log.sync().unwrap();
            }
            started.elapsed()
        })
    });
    group.bench_function("log_every_100_appends", |b| {
        b.iter_custom(|iters| {
            let scratch = Scratch::new("sync100");
            let log = open(&scratch.0);
            let started = Instant::now();
            for i in 0..iters {
                log.append(Record::new(&key(i), Some(&value), 0)).unwrap();
                if i % 100 == 99 {
                    log.sync().unwrap();
                }
            }
            log.sync().unwrap();
            started.elapsed()
        })
    });
    group.bench_function("raw_write_fdatasync", |b| b.iter_custom(|iters| time_raw_syncs(iters, false)));
    // The same into a file whose size was set ahead (as the log's active segment is): the
    // fdatasync has no size change to journal. The physical limit of a durable append.
    group.bench_function("raw_write_fdatasync_size_set", |b| {
        b.iter_custom(|iters| time_raw_syncs(iters, true))
    });
    group.finish();
}

/// Writes `iters` records of a 100 B value, each followed by `fdatasync`, into a new file whose
/// size was set ahead or not; returns the time taken.
fn time_raw_syncs(iters: u64, size_set: bool) -> Duration {
    let scratch = Scratch::new("raw-sync");
    let mut file = std::fs::File::create(scratch.0.join("raw")).unwrap();
    if size_set {
        file.set_len(iters * (KEY_BYTES as u64 + 100) + (4 << 20)).unwrap();
        file.sync_all().unwrap();
    }
    let value = [0x5a; 100];
    let started = Instant::now();
    for i in 0..iters {
        file.write_all(&key(i)).unwrap();
        file.write_all(&value).unwrap();
        file.sync_data().unwrap();
    }
    started.elapsed()
}

/// `threads` writers each append and sync `per_thread` records; returns the wall time from the
/// moment all of them are running (thread start-up is not timed).
fn time_concurrent_commits(threads: u64, per_thread: u64) -> Duration {
    let scratch = Scratch::new("group");
    let log = open(&scratch.0);
    let value = vec![0x5a; 100];
    let ready = Barrier::new(threads as usize + 1);
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (log, value, ready) = (&log, &value, &ready);
            scope.spawn(move || {
                ready.wait();
                for i in 0..per_thread {
                    log.append(Record::new(&key(t << 32 | i), Some(value), 0)).unwrap();
                    log.sync().unwrap();
                }
            });
        }
        ready.wait();
        Instant::now()
    })
    // Read after the scope has joined every writer.
    .elapsed()
}

fn group_commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("group_commit");
    group.throughput(Throughput::Elements(1));
    group.bench_function("log_4_threads", |b| {
        b.iter_custom(|iters| time_concurrent_commits(4, iters.div_ceil(4)))
    });
    group.bench_function("log_1_thread", |b| b.iter_custom(|iters| time_concurrent_commits(1, iters)));
    group.finish();
}

/// Bytes of log the read benchmark reads: 96 MiB when benchmarking, 4 MiB when `cargo test`
/// runs the benches once to check them.
fn read_log_bytes() -> u64 {
    if std::env::args().any(|a| a == "--bench") { 96 << 20 } else { 4 << 20 }
}

fn read(c: &mut Criterion) {
    let scratch = Scratch::new("read");
    let mut options = LogOptions::default();
    options.segment_bytes_max = read_log_bytes() / 3;
    let log = Log::open(Arc::new(RealFs::new()), &scratch.0, options.clone()).unwrap();
    let value = vec![0x5a; 1024];
    let mut i = 0;
    while log.end_offset() * (KEY_BYTES as u64 + 1024) < read_log_bytes() {
        log.append(Record::new(&key(i), Some(&value), 0)).unwrap();
        i += 1;
    }
    log.close().unwrap();
    drop(log);
    let files = segment_files(&scratch.0);
    let total: u64 = files.iter().map(|p| std::fs::metadata(p).unwrap().len()).sum();

    let mut group = c.benchmark_group("read");
    group.throughput(Throughput::Bytes(total));
    group.sample_size(10);
    let log = Log::open(Arc::new(RealFs::new()), &scratch.0, options).unwrap();
    group.bench_function("log_sequential", |b| {
        b.iter(|| {
            let mut reader = log.reader(0).unwrap();
            let mut bytes = 0usize;
            while let Some(batch) = reader.next_batch().unwrap() {
                for record in batch.records() {
                    let record = record.unwrap();
                    bytes += record.key.len() + record.value.map_or(0, <[u8]>::len);
                }
            }
            bytes
        })
    });
    group.bench_function("raw_sequential", |b| {
        let mut buf = vec![0u8; 1 << 20];
        b.iter(|| {
            let mut bytes = 0usize;
            for path in &files {
                let mut file = std::fs::File::open(path).unwrap();
                loop {
                    let n = file.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    bytes += n;
                }
            }
            bytes
        })
    });
    group.finish();
}

criterion_group!(benches, append, sync, group_commit, read);
criterion_main!(benches);
