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
        // A small key map compacts a log over several passes: one pass is not full.
        let full = full && self.compact.key_map_bytes_max > 1 << 20;
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

fn harness(
    fs: Arc<dyn Fs>,
    dir: &std::path::Path,
    horizon: Option<u16>,
    segment: u64,
    map: usize,
) -> Harness {
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
    compact.key_map_bytes_max = map;
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
        map in prop_oneof![Just(1024usize), Just(64 << 20)],
        ops in prop::collection::vec(op(), 1..160),
    ) {
        let mut h = harness(Arc::new(SimFs::new(0)), "/log".as_ref(), horizon, segment, map);
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
        let mut h = harness(Arc::new(RealFs::new()), &dir.path.join("log"), horizon, 4096, 64 << 20);
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

/// A log of about `segments` segments of 4 KiB (40 records each), every key written once.
fn unique_keys_log(segments: u32) -> (Log, u64) {
    let mut options = small_options();
    options.segment_bytes_max = 4096;
    let log = Log::open(Arc::new(SimFs::new(4)), "/log", options).unwrap();
    for i in 0..segments * 40 {
        log.append(Record::new(format!("key-{i:05}").as_bytes(), Some(&[b'v'; 60]), 0)).unwrap();
    }
    let end = log.sync().unwrap();
    (log, end)
}

fn compact_all() -> CompactOptions {
    let mut options = CompactOptions::default();
    options.roll_active_bytes_min = Some(0);
    options.merge_below_bytes = Some(0);
    options
}

#[test]
fn a_pass_rewrites_only_the_clean_segments_that_gain_something() {
    let (log, end) = unique_keys_log(30);
    let first = log.compact(end, &compact_all()).unwrap();
    let clean_segments = first.segments_written;
    assert!(clean_segments >= 20, "{first:?}");
    // Overwrite three keys, all from the start of the log.
    for key in ["key-00000", "key-00001", "key-00002"] {
        log.append(Record::new(key.as_bytes(), Some(b"new"), 0)).unwrap();
    }
    let end = log.sync().unwrap();
    let second = log.compact(end, &compact_all()).unwrap();
    eprintln!("{second:#?}");
    assert_eq!(second.dirty_segments, 1);
    // The segment holding them, and rarely one whose filter answers "maybe".
    assert!(second.clean_segments_rewritten >= 1 && second.clean_segments_rewritten <= 2, "{second:?}");
    assert_eq!(second.clean_segments_skipped + second.clean_segments_rewritten, clean_segments);
    let total: u64 = log.compaction_backlog(end, &compact_all()).clean_bytes;
    assert!(second.bytes_read * 5 < total, "read {} of {total} bytes", second.bytes_read);
    assert_eq!(read_from(&log, 0).len() as u64, first.records_after);
}

#[test]
fn small_clean_segments_are_merged() {
    let log = Log::open(Arc::new(SimFs::new(5)), "/log", small_options()).unwrap();
    // Three passes, merging off, each leaving one small clean segment of keys of its own.
    for pass in 0..3u32 {
        for i in 0..10u32 {
            log.append(Record::new(format!("key-{pass}-{i}").as_bytes(), Some(&[b'v'; 40]), 0)).unwrap();
        }
        let end = log.sync().unwrap();
        let report = log.compact(end, &compact_all()).unwrap();
        assert_eq!((report.segments_written, report.clean_segments_skipped as u32), (1, pass), "{report:?}");
    }
    let before = read_from(&log, 0);
    let end = log.durable_offset();
    // Merging on (below a quarter of the 4 KiB segments): the three become one.
    let mut options = compact_all();
    options.merge_below_bytes = None;
    let report = log.compact(end, &options).unwrap();
    assert_eq!((report.clean_segments_rewritten, report.segments_written), (3, 1), "{report:?}");
    assert_eq!(report.records_after, 30);
    assert_eq!(read_from(&log, 0), before);
    // A lone small segment is left alone.
    let again = log.compact(end, &options).unwrap();
    assert_eq!((again.clean_segments_skipped, again.segments_written), (1, 0), "{again:?}");
}

#[test]
fn a_reader_that_started_before_a_swap_finishes_on_the_segments_it_started_with() {
    let mut options = small_options();
    options.segment_bytes_max = 4096;
    let log = Log::open(Arc::new(SimFs::new(6)), "/log", options).unwrap();
    for i in 0..1000u32 {
        let key = format!("key-{}", i % 10);
        log.append(Record::new(key.as_bytes(), Some(format!("{i:0>40}").as_bytes()), 0)).unwrap();
    }
    let end = log.sync().unwrap();
    let everything = read_from(&log, 0);
    let mut reader = log.reader(0).unwrap();
    let mut seen = Vec::new();
    let batch = reader.next_batch().unwrap().unwrap();
    seen.extend(batch.records().map(|r| r.unwrap().to_owned_record()));
    let report = log.compact(end, &compact_all()).unwrap();
    assert!(report.records_after <= 11, "{report:?}");
    // The reader still reads the whole history; a new one sees the compacted log.
    seen.extend(reader.into_records().map(Result::unwrap));
    assert_eq!(seen, everything);
    assert_eq!(read_from(&log, 0).len(), 10);
}

#[test]
fn the_listener_learns_where_every_surviving_record_moved() {
    use std::sync::Mutex;

    /// Key, offset, segment base, batch position.
    type Move = (Vec<u8>, u64, u64, u64);
    #[derive(Default)]
    struct Moves(Mutex<Vec<Move>>, Mutex<usize>);
    impl cairn_changelog::CompactionListener for Moves {
        fn record_moved(&self, moved: &cairn_changelog::RecordMove<'_>) {
            self.0.lock().unwrap().push((
                moved.key.to_vec(),
                moved.offset,
                moved.segment_base,
                moved.batch_position,
            ));
        }
        fn pass_finished(&self, _: &cairn_changelog::CompactionReport) {
            *self.1.lock().unwrap() += 1;
        }
    }
    let (log, _) = unique_keys_log(6);
    for i in 0..100u32 {
        log.append(Record::new(format!("key-{:05}", i * 3).as_bytes(), Some(b"again"), 0)).unwrap();
    }
    let end = log.sync().unwrap();
    let moves = Moves::default();
    let report = log.compact_with(end, &compact_all(), &moves).unwrap();
    assert_eq!(*moves.1.lock().unwrap(), 1);
    let moved = moves.0.lock().unwrap().clone();
    assert_eq!(moved.len() as u64, report.records_after);
    let read = read_from(&log, 0);
    assert_eq!(read.len(), moved.len(), "every record lives in a rewritten segment here");
    for (record, (key, offset, base, position)) in read.iter().zip(&moved) {
        assert_eq!((&record.key, record.offset), (key, *offset));
        assert!(base <= offset);
        assert!(*position < 4096);
    }
    // Positions increase within a segment, and segments by base.
    for pair in moved.windows(2) {
        let ((_, _, b1, p1), (_, _, b2, p2)) = (&pair[0], &pair[1]);
        assert!(b1 < b2 || (b1 == b2 && p1 <= p2));
    }
}

#[test]
fn a_tombstone_stays_until_its_horizon_after_it_was_first_seen() {
    let log = Log::open(Arc::new(SimFs::new(7)), "/log", small_options()).unwrap();
    log.append(Record::new(b"doomed", Some(b"value"), 0)).unwrap();
    log.append(Record::new(b"kept", Some(b"value"), 0)).unwrap();
    log.append(Record::new(b"doomed", None, 0)).unwrap();
    let end = log.sync().unwrap();
    let mut options = compact_all();
    options.delete_horizon = DeleteHorizon::AfterFirstSeen(Duration::from_millis(100));
    let pass = |now: i64| {
        let mut options = options.clone();
        options.now_ms = Some(now);
        let report = log.compact(end, &options).unwrap();
        let keys: Vec<_> = read_from(&log, 0).into_iter().map(|r| (r.key, r.value.is_some())).collect();
        (report, keys)
    };
    let (first, keys) = pass(1_000);
    // The put it deletes is gone at once; the tombstone stays.
    assert_eq!(keys, [(b"kept".to_vec(), true), (b"doomed".to_vec(), false)]);
    assert_eq!(
        first.blocked,
        [cairn_changelog::Blocked::DeleteHorizon { tombstones: 1, earliest_drop_ms: 1_100 }]
    );
    let (_, keys) = pass(1_099);
    assert_eq!(keys.len(), 2, "dropped before its horizon");
    let (last, keys) = pass(1_100);
    assert_eq!(keys, [(b"kept".to_vec(), true)]);
    assert_eq!(last.tombstones_dropped, 1);
    assert!(last.blocked.is_empty(), "{last:?}");
}

#[test]
fn what_blocked_a_pass_is_reported() {
    let mut options = small_options();
    options.segment_bytes_max = 4096;
    let log = Log::open(Arc::new(SimFs::new(8)), "/log", options).unwrap();
    for i in 0..600u32 {
        log.append(Record::new(format!("k{}", i % 50).as_bytes(), Some(&[b'x'; 50]), 0)).unwrap();
    }
    let end = log.sync().unwrap();
    let mut compact = CompactOptions::default();
    compact.roll_active_bytes_min = None;
    let report = log.compact(end / 2, &compact).unwrap();
    assert!(
        report
            .blocked
            .iter()
            .any(|b| matches!(b, cairn_changelog::Blocked::Limit { limit, .. } if *limit == end / 2)),
        "{report:?}"
    );
    let report = log.compact(end + 100, &compact).unwrap();
    assert_eq!(report.limit, end, "the limit is capped at the durable end");
    assert!(
        report.blocked.iter().any(|b| matches!(b, cairn_changelog::Blocked::ActiveSegment { .. })),
        "{report:?}"
    );
    // A key map that holds one segment's keys but not two.
    for i in 0..3000u32 {
        log.append(Record::new(format!("unique-{i:06}-{}", "k".repeat(200)).as_bytes(), Some(b"v"), 0))
            .unwrap();
    }
    let end = log.sync().unwrap();
    compact.key_map_bytes_max = 64 << 10;
    let report = log.compact(end, &compact).unwrap();
    assert!(
        report.blocked.iter().any(|b| matches!(b, cairn_changelog::Blocked::KeyMapFull { .. })),
        "{report:?}"
    );
    assert!(report.dirty_segments >= 1);
}

#[test]
fn truncating_inside_compacted_segments_keeps_what_lies_before_the_cut() {
    let log = Log::open(Arc::new(SimFs::new(10)), "/log", small_options()).unwrap();
    for i in 0..500u32 {
        log.append(Record::new(format!("k{}", i % 37).as_bytes(), Some(format!("{i}").as_bytes()), 0))
            .unwrap();
    }
    let end = log.sync().unwrap();
    log.compact(end, &compact_all()).unwrap();
    let compacted = read_from(&log, 0);
    for cut in [490, 480, 470, 463, 400] {
        log.truncate(cut).unwrap();
        let want: Vec<_> = compacted.iter().filter(|r| r.offset < cut).cloned().collect();
        assert_eq!(read_from(&log, 0), want, "cut at {cut}");
        assert_eq!(log.end_offset(), cut);
        let offset = log.append(Record::new(b"new", Some(b"record"), 0)).unwrap();
        assert_eq!(offset, cut);
        log.truncate(cut).unwrap();
    }
}
