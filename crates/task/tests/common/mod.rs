//! What the runtime's tests share: a deterministic partitioned input, a counting task, its
//! reference fold, and the crash sweep.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use cairn_changelog::{Log, LogOptions, Record};
use cairn_fs::{CrashOptions, Fs, SimFs};
use cairn_store::StoreOptions;
use cairn_task::{Context, Message, StreamTask, TaskConfig, TaskError, TaskRunner};

pub const PARTITIONS: u64 = 2;

pub fn input_dir(p: u64) -> String {
    format!("/input/{p}")
}

/// The key of message `i` of partition `p` (a few users, so counts grow).
pub fn user(p: u64, i: u64) -> Vec<u8> {
    let x = (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ p.wrapping_mul(31)) >> 59;
    format!("user-{p}-{x}").into_bytes()
}

/// Writes `n` messages into each partition and closes the logs.
pub fn write_inputs(fs: &Arc<dyn Fs>, n: u64) {
    for p in 0..PARTITIONS {
        let log = Log::open(Arc::clone(fs), input_dir(p), LogOptions::default()).unwrap();
        for i in 0..n {
            log.append(Record::new(&user(p, i), Some(format!("page-{i}").as_bytes()), i as i64)).unwrap();
        }
        log.sync().unwrap();
        log.close().unwrap();
    }
}

/// Counts messages per user in the store `counts`, and sends each new count to `totals`.
pub struct CountTask;

impl StreamTask for CountTask {
    fn process(&mut self, message: &Message<'_>, ctx: &mut Context<'_>) -> Result<(), TaskError> {
        let store = ctx.store("counts")?;
        let count = match store.get(message.key)? {
            Some(bytes) => u64::from_le_bytes(bytes.as_slice().try_into()?),
            None => 0,
        } + 1;
        store.put(message.key, &count.to_le_bytes())?;
        ctx.send("totals", message.key, &count.to_le_bytes())?;
        Ok(())
    }
}

/// Small segments and buffers, so that rolls, snapshots and compaction happen.
pub fn config(commit_every: u64) -> TaskConfig {
    let mut store = StoreOptions::default();
    store.log.segment_bytes_max = 4096;
    store.log.write_buffer_bytes = 512;
    store.write_buffer_bytes = 300;
    store.key_bytes_max = 64;
    store.value_bytes_max = 64;
    let mut config = TaskConfig::new("count", "/task")
        .store("counts", store)
        .output_log("totals")
        .commit_every(commit_every);
    for p in 0..PARTITIONS {
        config = config.input_log(format!("in-{p}"), input_dir(p));
    }
    config.snapshot_every_commits = 3;
    // On the task's thread: every file operation in one order, so that sweeps replay.
    config.background_snapshots = false;
    config
}

/// The reference: counts per user after the first `positions[p]` messages of each partition,
/// and the output's expected messages (user, count) in processing order per user.
pub fn fold(positions: &BTreeMap<String, u64>) -> BTreeMap<Vec<u8>, u64> {
    let mut counts = BTreeMap::new();
    for p in 0..PARTITIONS {
        for i in 0..positions[&format!("in-{p}")] {
            *counts.entry(user(p, i)).or_insert(0) += 1;
        }
    }
    counts
}

/// The store's counts.
pub fn counts<T>(runner: &TaskRunner<T>) -> BTreeMap<Vec<u8>, u64> {
    runner
        .store("counts")
        .unwrap()
        .iter()
        .unwrap()
        .map(|e| {
            let (k, v) = e.unwrap();
            (k, u64::from_le_bytes(v.try_into().unwrap()))
        })
        .collect()
}

/// The output's messages up to its current end: per user, the counts sent, in order.
pub fn totals(log: &Log, end: u64) -> BTreeMap<Vec<u8>, Vec<u64>> {
    let mut out: BTreeMap<Vec<u8>, Vec<u64>> = BTreeMap::new();
    let mut reader = log.reader(0).unwrap();
    while let Some(batch) = reader.next_batch().unwrap() {
        for record in batch.records() {
            let record = record.unwrap();
            if record.offset >= end {
                break;
            }
            out.entry(record.key.to_vec())
                .or_default()
                .push(u64::from_le_bytes(record.value.unwrap().try_into().unwrap()));
        }
    }
    out
}

/// Checks that the recovered task agrees with its checkpoint: store = fold of the inputs up to
/// the recovered positions, and the output holds each of those messages' counts once, in order.
pub fn check_consistent<T>(runner: &TaskRunner<T>) -> Result<(), String> {
    let positions = runner.positions();
    let expected = fold(&positions);
    let got = counts(runner);
    if got != expected {
        return Err(format!("store differs from the fold at {positions:?}: {got:?} vs {expected:?}"));
    }
    let output = runner.output("totals").unwrap();
    let totals = totals(output.as_log().unwrap(), output.end_offset());
    for (user, n) in &expected {
        let want: Vec<u64> = (1..=*n).collect();
        if totals.get(user) != Some(&want) {
            return Err(format!("output for {user:?} is {:?}, expected 1..={n}", totals.get(user)));
        }
    }
    if totals.len() != expected.len() {
        return Err(format!("output has {} users, the fold {}", totals.len(), expected.len()));
    }
    Ok(())
}

/// Where a sweep takes crash images.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Points {
    /// Before every file and directory sync.
    Syncs,
    /// Before every operation that changes the file system.
    EveryMutation,
}

/// Runs the task over `n` messages per partition with crash points recorded; for each point
/// and `images` crash images, recovers, checks consistency, runs to the end and checks the
/// final state against the full fold. Returns the number of images checked.
pub fn crash_sweep(n: u64, commit_every: u64, images: u64, points: Points) -> Result<usize, Vec<String>> {
    let sim = SimFs::new(9);
    let fs: Arc<dyn Fs> = Arc::new(sim.clone());
    write_inputs(&fs, n);
    match points {
        Points::Syncs => sim.record_sync_points(true),
        Points::EveryMutation => sim.record_every_mutation(true),
    }
    let mut runner = TaskRunner::open(Arc::clone(&fs), config(commit_every), CountTask).unwrap();
    runner.run_to_end(&AtomicBool::new(false)).unwrap();
    drop(runner);
    let points = sim.take_sync_points();
    let mut failures = Vec::new();
    let mut checked = 0;
    for (p, point) in points.iter().enumerate() {
        for seed in 0..images {
            checked += 1;
            let image: Arc<dyn Fs> =
                Arc::new(point.snapshot.crash_image(p as u64 * 13 + seed, &CrashOptions::adversarial()));
            let label = format!("point {p} ({:?} of {}), image {seed}", point.op, point.path.display());
            if let Err(e) = recover_and_finish(&image, n) {
                failures.push(format!("{label}: {e}"));
            }
        }
    }
    if failures.is_empty() { Ok(checked) } else { Err(failures) }
}

fn recover_and_finish(fs: &Arc<dyn Fs>, n: u64) -> Result<(), String> {
    let mut runner =
        TaskRunner::open(Arc::clone(fs), config(7), CountTask).map_err(|e| format!("open failed: {e}"))?;
    check_consistent(&runner).map_err(|e| format!("after recovery: {e}"))?;
    runner.run_to_end(&AtomicBool::new(false)).map_err(|e| format!("run failed: {e}"))?;
    let all: BTreeMap<String, u64> = (0..PARTITIONS).map(|p| (format!("in-{p}"), n)).collect();
    if runner.positions() != all {
        return Err(format!("finished at {:?}", runner.positions()));
    }
    check_consistent(&runner).map_err(|e| format!("at the end: {e}"))
}
