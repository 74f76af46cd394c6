//! Checkpoint write latency beside the raw std::fs baseline measured in the same run: the same
//! bytes written to a new temporary file, `sync_all`, renamed over the target, directory fsync
//! (DESIGN §3's recipe, without framing or encoding).
//!
//! Criterion measures the medians; when benchmarking (not in `cargo test`'s single pass), a
//! direct pass of single writes also records p50 and p99 of both into
//! `target/bench/checkpoint-latency.json`, which `cargo xtask bench` reports.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use cairn::checkpoint::{Checkpoint, CheckpointFile, CheckpointOptions};
use cairn::fs::RealFs;
use criterion::{Criterion, criterion_group};

/// A checkpoint of a task with 8 input partitions, 4 stores and 2 outputs.
fn checkpoint(id: u64) -> Checkpoint {
    let mut checkpoint = Checkpoint::new(id);
    for p in 0..8 {
        checkpoint = checkpoint.input(format!("clicks/{p}"), id * 1000 + p);
    }
    for s in 0..4 {
        checkpoint = checkpoint.changelog(format!("store-{s}"), id * 77 + s);
    }
    checkpoint.output("sessions/0", id * 13).output("alerts/0", id)
}

fn scratch(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cairn-bench-{label}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// DESIGN §3 with std::fs only: temp file with create_new, write, sync_all, rename, dir fsync.
fn raw_replace(dir: &Path, bytes: &[u8], n: u64) {
    let temp = dir.join(format!(".raw.{n}.tmp"));
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(&temp).unwrap();
    file.write_all(bytes).unwrap();
    file.sync_all().unwrap();
    std::fs::rename(&temp, dir.join("raw")).unwrap();
    std::fs::File::open(dir).unwrap().sync_all().unwrap();
}

/// The framed size of a checkpoint, so that the baseline writes the same number of bytes.
fn checkpoint_bytes(dir: &Path) -> Vec<u8> {
    let mut file =
        CheckpointFile::open(Arc::new(RealFs::new()), dir.join("size"), CheckpointOptions::default())
            .unwrap();
    file.write(&checkpoint(1)).unwrap();
    std::fs::read(dir.join("size")).unwrap()
}

fn write_latency(c: &mut Criterion) {
    let dir = scratch("checkpoint");
    let bytes = checkpoint_bytes(&dir);
    let mut group = c.benchmark_group("checkpoint");
    let mut file =
        CheckpointFile::open(Arc::new(RealFs::new()), dir.join("checkpoint"), CheckpointOptions::default())
            .unwrap();
    let mut id = 1;
    group.bench_function("write", |b| {
        b.iter(|| {
            id += 1;
            file.write(&checkpoint(id)).unwrap();
        })
    });
    let mut n = 0;
    group.bench_function("raw_replace", |b| {
        b.iter(|| {
            n += 1;
            raw_replace(&dir, &bytes, n);
        })
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

/// p50 and p99 of single writes, both kinds interleaved so that drift affects them alike.
fn latency_distribution() {
    let dir = scratch("checkpoint-latency");
    let bytes = checkpoint_bytes(&dir);
    let mut file =
        CheckpointFile::open(Arc::new(RealFs::new()), dir.join("checkpoint"), CheckpointOptions::default())
            .unwrap();
    let (mut ours, mut raw) = (Vec::new(), Vec::new());
    for i in 0..2200u64 {
        let started = Instant::now();
        file.write(&checkpoint(i + 2)).unwrap();
        let write = started.elapsed();
        let started = Instant::now();
        raw_replace(&dir, &bytes, i);
        let replace = started.elapsed();
        if i >= 200 {
            ours.push(write);
            raw.push(replace);
        }
    }
    ours.sort();
    raw.sort();
    let report = format!(
        "{{\"bytes\": {}, \"checkpoint\": {{\"p50_us\": {:.1}, \"p99_us\": {:.1}}}, \"raw\": {{\"p50_us\": {:.1}, \"p99_us\": {:.1}}}}}\n",
        bytes.len(),
        common::percentile_us(&ours, 0.5),
        common::percentile_us(&ours, 0.99),
        common::percentile_us(&raw, 0.5),
        common::percentile_us(&raw, 0.99)
    );
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("checkpoint-latency.json"), &report).unwrap();
    println!("checkpoint write latency over 2000 writes: {report}");
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, write_latency);

fn main() {
    if std::env::args().any(|a| a == "--bench") {
        latency_distribution();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
