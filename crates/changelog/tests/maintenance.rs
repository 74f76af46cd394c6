//! Retention (whole old segments by size and age) and the background maintenance thread
//! (compaction by dirty share or on request, retention, errors retried, stopped by close).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_changelog::{
    CompactionLimit, CompactionListener, CompactionPolicy, CompactionReport, Error, Listener, Log,
    LogOptions, Maintenance, Record, Retention,
};
use cairn_fs::{CrashOptions, FaultRule, Fs, SimFs};
use common::{read_from, small_options};

/// A log of 4 KiB segments holding `records` records of about 100 bytes stamped `i * 1000`.
fn filled(fs: &SimFs, options: LogOptions, records: u32) -> Log {
    let log = Log::open(Arc::new(fs.clone()), "/log", options).unwrap();
    for i in 0..records {
        log.append(Record::new(format!("key-{i}").as_bytes(), Some(&[b'v'; 90]), i64::from(i) * 1000))
            .unwrap();
    }
    log.sync().unwrap();
    log
}

fn segment_files(fs: &SimFs) -> usize {
    fs.list_dir(Path::new("/log")).unwrap().iter().filter(|n| n.to_string_lossy().ends_with(".log")).count()
}

#[test]
fn retention_by_size_deletes_the_oldest_segments_and_never_the_active_one() {
    let fs = SimFs::new(1);
    let log = filled(&fs, small_options(), 800);
    let segments = segment_files(&fs);
    assert!(segments > 10);
    let mut holder = log.reader(0).unwrap();
    let mut retention = Retention::default();
    retention.bytes_max = Some(5 * 4096);
    let report = log.apply_retention(&retention).unwrap();
    assert!(report.segments_removed >= segments - 6, "{report:?}");
    assert_eq!(report.start_offset, log.start_offset());
    assert!(log.start_offset() > 0);
    assert_eq!(segment_files(&fs), segments - report.segments_removed);
    // New readers start at the new start; a reader holding the old segments finishes them.
    assert!(matches!(log.reader(0), Err(Error::OffsetOutOfRange { .. })));
    assert_eq!(holder.by_ref_count(), 800);
    // Everything but the active segment.
    retention.bytes_max = Some(0);
    log.apply_retention(&retention).unwrap();
    assert_eq!(segment_files(&fs), 1);
    let start = log.start_offset();
    drop((log, holder));
    let log = Log::open(Arc::new(fs.clone()), "/log", small_options()).unwrap();
    assert_eq!(log.start_offset(), start);
    assert_eq!(read_from(&log, start).len() as u64, 800 - start);
}

trait CountRecords {
    fn by_ref_count(&mut self) -> usize;
}

impl CountRecords for cairn_changelog::Reader {
    fn by_ref_count(&mut self) -> usize {
        let mut n = 0;
        while let Some(batch) = self.next_batch().unwrap() {
            n += batch.len();
        }
        n
    }
}

#[test]
fn retention_by_age_deletes_segments_whose_newest_record_is_old() {
    let fs = SimFs::new(2);
    let log = filled(&fs, small_options(), 800);
    let mut retention = Retention::default();
    retention.age_max = Some(Duration::from_secs(100));
    retention.now_ms = Some(500_000);
    let report = log.apply_retention(&retention).unwrap();
    // Records stamped before 400 s are old; a segment goes when all of its records are.
    let start = log.start_offset();
    assert!(report.segments_removed > 0);
    assert!(start <= 400, "a segment with a young record went: start {start}");
    let first = read_from(&log, start);
    assert!(first[0].timestamp_ms <= 400_000);
    assert!(start + 60 > 400, "old segments stayed: start {start}");
}

#[test]
fn retention_leaves_segments_not_yet_durable() {
    let fs = SimFs::new(3);
    let log = Log::open(Arc::new(fs.clone()), "/log", small_options()).unwrap();
    for i in 0..300u32 {
        log.append(Record::new(format!("key-{i}").as_bytes(), Some(&[b'v'; 90]), 0)).unwrap();
    }
    log.flush().unwrap();
    let mut retention = Retention::default();
    retention.bytes_max = Some(0);
    let report = log.apply_retention(&retention).unwrap();
    assert_eq!(report.segments_removed, 0, "removed segments not yet synced");
    log.sync().unwrap();
    assert!(log.apply_retention(&retention).unwrap().segments_removed > 0);
}

#[test]
fn a_power_cut_during_retention_leaves_a_suffix_of_the_log() {
    let fs = SimFs::new(4);
    let log = filled(&fs, small_options(), 600);
    let everything = read_from(&log, 0);
    fs.record_every_mutation(true);
    let mut retention = Retention::default();
    retention.bytes_max = Some(3 * 4096);
    let report = log.apply_retention(&retention).unwrap();
    let points = fs.take_sync_points();
    assert!(report.segments_removed > 5 && points.len() > 10);
    drop(log);
    for point in &points {
        for seed in 0..4 {
            let image = point.snapshot.crash_image(seed, &CrashOptions::adversarial());
            let log = Log::open(Arc::new(image), "/log", small_options()).unwrap();
            let start = log.start_offset();
            assert!(start <= report.start_offset, "removed more than asked");
            assert_eq!(
                read_from(&log, start),
                everything[start as usize..],
                "crash at op {}",
                point.op_index
            );
        }
    }
}

#[derive(Default)]
struct Counting {
    finished: AtomicUsize,
    failed: AtomicUsize,
    last: Mutex<Option<CompactionReport>>,
}

impl CompactionListener for Counting {
    fn wants_moves(&self) -> bool {
        false
    }
    fn pass_finished(&self, report: &CompactionReport) {
        *self.last.lock().unwrap() = Some(report.clone());
        self.finished.fetch_add(1, Ordering::SeqCst);
    }
    fn pass_failed(&self, _: &Error) {
        self.failed.fetch_add(1, Ordering::SeqCst);
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(30), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn background(limit: CompactionLimit, listener: &Arc<Counting>) -> LogOptions {
    let mut policy = CompactionPolicy::default();
    policy.limit = limit;
    policy.dirty_percent_min = 20;
    policy.options.roll_active_bytes_min = Some(0);
    let mut maintenance = Maintenance::default();
    maintenance.interval = Duration::from_millis(10);
    maintenance.compaction = Some(policy);
    maintenance.listener = Some(Listener(Arc::clone(listener) as Arc<dyn CompactionListener>));
    let mut options = small_options();
    options.maintenance = Some(maintenance);
    options
}

fn overwrite(log: &Log, records: u32) -> u64 {
    for i in 0..records {
        log.append(Record::new(format!("key-{}", i % 20).as_bytes(), Some(&[b'v'; 90]), 0)).unwrap();
    }
    log.sync().unwrap()
}

#[test]
fn the_background_thread_compacts_when_the_dirty_share_passes_its_threshold() {
    let listener = Arc::new(Counting::default());
    let log = Log::open(Arc::new(SimFs::new(5)), "/log", background(CompactionLimit::DurableEnd, &listener))
        .unwrap();
    let end = overwrite(&log, 1000);
    wait_for("a pass", || listener.finished.load(Ordering::SeqCst) > 0);
    wait_for("a compacted log", || read_from(&log, 0).len() <= 40);
    let status = log.maintenance_status();
    assert!(status.running && status.compactions >= 1 && status.failures == 0, "{status:?}");
    let last = status.last_compaction.unwrap();
    assert!(last.limit <= end);
    log.close().unwrap();
    assert!(!log.maintenance_status().running, "close stops the thread");
}

#[test]
fn an_explicit_limit_holds_background_compaction_back_until_raised() {
    let listener = Arc::new(Counting::default());
    let log =
        Log::open(Arc::new(SimFs::new(6)), "/log", background(CompactionLimit::Explicit, &listener)).unwrap();
    let end = overwrite(&log, 1000);
    std::thread::sleep(Duration::from_millis(100));
    // Passes run at limit 0 and change nothing.
    assert_eq!(read_from(&log, 0).len(), 1000);
    log.set_compaction_limit(end);
    log.request_compaction();
    wait_for("a compacted log", || read_from(&log, 0).len() <= 40);
    let report = listener.last.lock().unwrap().clone().unwrap();
    assert_eq!(report.limit, end);
}

#[test]
fn background_failures_are_reported_and_retried() {
    let listener = Arc::new(Counting::default());
    let fs = SimFs::new(7);
    let mut rule = FaultRule::no_space();
    rule.path_contains = Some(".compacting".into());
    fs.inject(rule);
    let log =
        Log::open(Arc::new(fs.clone()), "/log", background(CompactionLimit::DurableEnd, &listener)).unwrap();
    overwrite(&log, 1000);
    wait_for("failures", || listener.failed.load(Ordering::SeqCst) >= 2);
    let status = log.maintenance_status();
    assert!(status.running && status.failures >= 2, "{status:?}");
    assert!(matches!(status.last_error.as_deref(), Some(Error::Io { .. })), "{status:?}");
    assert!(!log.is_poisoned());
    fs.clear_faults();
    wait_for("a compacted log", || read_from(&log, 0).len() <= 40);
    drop(log); // stops and joins the thread
}
