//! Compaction against a model: random puts, deletes, syncs, passes at random limits, clock
//! ticks, truncations (never below a limit used, as the task runtime promises) and reopens; after
//! every pass and at the end the log must read as `common::compact::check_compacted` says.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use cairn_changelog::{CompactOptions, DeleteHorizon, Log, LogOptions, Record};
use cairn_fs::{Fs, RealFs, SimFs};
use common::compact::{Expect, check_compacted};
use common::{Rec, TempDir, read_from, small_options};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    /// Put key `k` with a value of this many bytes.
    Put(u8, u16),
    Delete(u8),
    Batch(Vec<(u8, Option<u16>)>),
    Sync,
    /// Compact at this fraction (per mille) of the way from the highest limit used so far to the
    /// durable end.
    Compact(u16),
    /// Sync and compact everything.
    CompactAll,
    Tick(u16),
    /// Truncate at this fraction of the way from the highest limit used to the end.
    Truncate(u16),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => (0u8..40, 0u16..300).prop_map(|(k, n)| Op::Put(k, n)),
        6 => (0u8..40).prop_map(Op::Delete),
        6 => prop::collection::vec((0u8..40, prop::option::weighted(0.8, 0u16..200)), 1..10).prop_map(Op::Batch),
        5 => Just(Op::Sync),
        4 => (0u16..=1000).prop_map(Op::Compact),
        2 => Just(Op::CompactAll),
        3 => (0u16..200).prop_map(Op::Tick),
        1 => (0u16..=1000).prop_map(Op::Truncate),
        2 => Just(Op::Reopen),
    ]
}

fn value(offset: u64, len: u16) -> Vec<u8> {
    let mut v = format!("{offset}:").into_bytes();
    v.resize(usize::from(len).max(v.len()), b'.');
    v
}

struct Harness {
    fs: Arc<dyn Fs>,
    dir: std::path::PathBuf,
    options: LogOptions,
    log: Option<Log>,
    model: Vec<Rec>,
    floor: u64,
    clock: i64,
    horizon_ms: Option<i64>,
    compact: CompactOptions,
}

impl Harness {
    fn log(&self) -> &Log {
        self.log.as_ref().unwrap()
    }

    fn append(&mut self, recs: Vec<Rec>) {
        let records: Vec<Record<'_>> = recs.iter().map(Rec::as_record).collect();
        let range = self.log().append_batch(&records).unwrap();
        assert_eq!(range.start, self.model.len() as u64);
        self.model.extend(recs);
    }

    fn rec(&self, key: u8, len: Option<u16>, offset: u64) -> Rec {
        Rec { key: vec![b'k', key], value: len.map(|n| value(offset, n)), timestamp_ms: self.clock }
    }

    fn compact(&mut self, limit: u64, full: bool) {
        let mut options = self.compact.clone();
        options.now_ms = Some(self.clock);
        let report = self.log().compact(limit, &options).unwrap();
        assert!(report.limit <= limit);
        self.floor = self.floor.max(limit);
        assert!(report.records_after <= report.records_before);
        self.verify(full);
    }

    fn verify(&self, full: bool) {
        self.log().flush().unwrap();
        let read = read_from(self.log(), 0);
        let expect = Expect { floor: self.floor, now_ms: self.clock, horizon_ms: self.horizon_ms, full };
        if let Err(e) = check_compacted(&read, &self.model, &expect) {
            panic!("{e}");
        }
    }

    fn run(&mut self, ops: &[Op]) {
        for op in ops {
            let end = self.model.len() as u64;
            match op {
                Op::Put(k, n) => self.append(vec![self.rec(*k, Some(*n), end)]),
                Op::Delete(k) => self.append(vec![self.rec(*k, None, end)]),
                Op::Batch(items) => {
                    let recs = items
                        .iter()
                        .enumerate()
                        .map(|(i, (k, n))| self.rec(*k, *n, end + i as u64))
                        .collect();
                    self.append(recs);
                }
                Op::Sync => assert_eq!(self.log().sync().unwrap(), end),
                Op::Compact(per_mille) => {
                    let durable = self.log().durable_offset();
                    let limit = self.floor.max(
                        self.floor + (durable.saturating_sub(self.floor)) * u64::from(*per_mille) / 1000,
                    );
                    self.compact(limit, false);
                }
                Op::CompactAll => {
                    self.log().sync().unwrap();
                    let mut options = self.compact.clone();
                    options.roll_active_bytes_min = Some(0);
                    let saved = std::mem::replace(&mut self.compact, options);
                    self.compact(end, true);
                    self.compact = saved;
                }
                Op::Tick(ms) => self.clock += i64::from(*ms),
                Op::Truncate(per_mille) => {
                    let at = self.floor + (end.saturating_sub(self.floor)) * u64::from(*per_mille) / 1000;
                    self.log().truncate(at).unwrap();
                    self.model.truncate(at as usize);
                }
                Op::Reopen => {
                    self.log().close().unwrap();
                    self.log = None;
                    self.log =
                        Some(Log::open(Arc::clone(&self.fs), &self.dir, self.options.clone()).unwrap());
                    assert_eq!(self.log().end_offset(), end);
                }
            }
        }
        self.verify(false);
    }
}

fn harness(fs: Arc<dyn Fs>, dir: &std::path::Path, horizon: Option<u16>, segment: u64) -> Harness {
    let mut options = small_options();
    options.segment_bytes_max = segment;
    let log = Log::open(Arc::clone(&fs), dir, options.clone()).unwrap();
    let mut compact = CompactOptions::default();
    compact.delete_horizon = match horizon {
        Some(ms) => DeleteHorizon::AfterTimestamp(Duration::from_millis(u64::from(ms))),
        None => DeleteHorizon::Never,
    };
    compact.roll_active_bytes_min = None;
    compact.batch_bytes_target = 4096;
    Harness {
        fs,
        dir: dir.to_path_buf(),
        options,
        log: Some(log),
        model: Vec::new(),
        floor: 0,
        clock: 1_000,
        horizon_ms: horizon.map(i64::from),
        compact,
    }
}

fn horizon() -> impl Strategy<Value = Option<u16>> {
    prop_oneof![Just(None), Just(Some(0)), Just(Some(150)), Just(Some(5000))]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    #[test]
    fn compacted_log_keeps_the_latest_record_of_every_key(
        horizon in horizon(),
        segment in prop_oneof![Just(4096u64), Just(8192)],
        ops in prop::collection::vec(op(), 1..160),
    ) {
        let mut h = harness(Arc::new(SimFs::new(0)), "/log".as_ref(), horizon, segment);
        h.run(&ops);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn compacted_log_keeps_the_latest_record_of_every_key_on_real_files(
        horizon in horizon(),
        ops in prop::collection::vec(op(), 1..120),
    ) {
        let dir = TempDir::new("compaction-model");
        let mut h = harness(Arc::new(RealFs::new()), &dir.path.join("log"), horizon, 4096);
        h.run(&ops);
    }
}

#[test]
fn a_pass_keeps_one_record_per_key_and_reports_what_it_did() {
    let fs = Arc::new(SimFs::new(0));
    let mut options = small_options();
    options.segment_bytes_max = 4096;
    let log = Log::open(fs, "/log", options).unwrap();
    for i in 0..2000u32 {
        let key = format!("key-{}", i % 50);
        log.append(Record::new(key.as_bytes(), Some(format!("value-{i}").as_bytes()), 0)).unwrap();
    }
    let end = log.sync().unwrap();
    let mut compact = CompactOptions::default();
    compact.roll_active_bytes_min = Some(0);
    let report = log.compact(end, &compact).unwrap();
    eprintln!("{report:#?}");
    assert_eq!(report.records_before, 2000);
    assert_eq!(report.records_after, 50);
    assert!(report.rolled_active);
    let read = read_from(&log, 0);
    assert_eq!(read.len(), 50);
    assert!(read.iter().all(|r| r.offset >= 1950));
    // A second pass finds nothing dirty and rewrites nothing.
    let again = log.compact(end, &compact).unwrap();
    eprintln!("{again:#?}");
    assert_eq!((again.dirty_segments, again.segments_written, again.bytes_read), (0, 0, 0));
}

#[test]
fn keys_with_equal_hashes_all_keep_their_latest_record() {
    common::compact::colliding_keys_survive().unwrap();
}
