//! The documented behaviour of the public API beyond the model test: options, limits, closing,
//! read limits, rolling by age.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod common;

use std::sync::Arc;

use cairn_changelog::{Error, Log, LogOptions, ReadLimit, Record};
use cairn_fs::{Fs, OpenMode, SimFs};
use common::{count_segments, read_from, small_options};

fn sim() -> (SimFs, Arc<dyn Fs>) {
    let fs = SimFs::new(3);
    let shared: Arc<dyn Fs> = Arc::new(fs.clone());
    (fs, shared)
}

#[test]
fn a_segment_older_than_its_age_limit_rolls_at_the_next_append() {
    let (fs, shared) = sim();
    let mut options = small_options();
    options.segment_age_ms_max = Some(20);
    let log = Log::open(shared, "/log", options).unwrap();
    log.append(Record::new(b"a", Some(b"1"), 0)).unwrap();
    log.append(Record::new(b"b", Some(b"2"), 0)).unwrap();
    assert_eq!(count_segments(&fs, "/log".as_ref()), 1, "rolled before the age limit");
    std::thread::sleep(std::time::Duration::from_millis(40));
    log.append(Record::new(b"c", Some(b"3"), 0)).unwrap();
    assert_eq!(count_segments(&fs, "/log".as_ref()), 2, "did not roll after the age limit");
    log.flush().unwrap();
    assert_eq!(read_from(&log, 0).len(), 3);
}

#[test]
fn without_an_age_limit_a_small_segment_never_rolls() {
    let (fs, shared) = sim();
    let log = Log::open(shared, "/log", small_options()).unwrap();
    log.append(Record::new(b"a", Some(b"1"), 0)).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(30));
    log.append(Record::new(b"b", Some(b"2"), 0)).unwrap();
    assert_eq!(count_segments(&fs, "/log".as_ref()), 1);
}

#[test]
fn appends_past_the_last_offset_are_refused_and_change_nothing() {
    let (fs, shared) = sim();
    fs.create_dir_all("/log".as_ref()).unwrap();
    drop(fs.open("/log/18446744073709551613.log".as_ref(), OpenMode::CreateNew).unwrap());
    let log = Log::open(shared, "/log", small_options()).unwrap();
    assert_eq!(log.end_offset(), u64::MAX - 2);
    let two = [Record::new(b"a", None, 0), Record::new(b"b", None, 0)];
    assert_eq!(log.append_batch(&two).unwrap(), u64::MAX - 2..u64::MAX);
    match log.append(Record::new(b"c", None, 0)) {
        Err(Error::OffsetsExhausted { end, wanted: 1 }) => assert_eq!(end, u64::MAX),
        other => panic!("expected OffsetsExhausted, got {other:?}"),
    }
    assert!(!log.is_poisoned(), "a refused append is not a durability failure");
    assert_eq!(log.sync().unwrap(), u64::MAX);
}

#[test]
fn impossible_options_are_refused() {
    let (_, shared) = sim();
    let mut tiny = LogOptions::default();
    tiny.segment_bytes_max = 1000;
    let mut no_interval = LogOptions::default();
    no_interval.index_interval_bytes = 0;
    let mut no_batch = LogOptions::default();
    no_batch.batch_bytes_max = 10;
    for (options, field) in
        [(tiny, "segment_bytes_max"), (no_interval, "index_interval_bytes"), (no_batch, "batch_bytes_max")]
    {
        match Log::open(Arc::clone(&shared), "/log", options) {
            Err(Error::InvalidOptions { option, .. }) => assert_eq!(option, field),
            other => panic!("expected InvalidOptions for {field}, got {other:?}"),
        }
    }
}

#[test]
fn a_closed_log_refuses_writes_keeps_serving_readers_and_stays_locked_until_they_go() {
    let (_, shared) = sim();
    let log = Log::open(Arc::clone(&shared), "/log", small_options()).unwrap();
    log.append(Record::new(b"k", Some(b"v"), 0)).unwrap();
    let mut reader = log.reader(0).unwrap();
    log.close().unwrap();
    log.close().unwrap(); // idempotent
    assert!(matches!(log.append(Record::new(b"k", None, 0)), Err(Error::Closed)));
    assert!(matches!(log.sync(), Err(Error::Closed)));
    assert!(matches!(log.flush(), Err(Error::Closed)));
    assert!(matches!(log.truncate(0), Err(Error::Closed)));
    assert_eq!(reader.next_batch().unwrap().unwrap().len(), 1);
    // The directory stays locked while the log or a reader of it lives: another handle could
    // otherwise cut a file the reader maps.
    drop(log);
    assert!(matches!(Log::open(Arc::clone(&shared), "/log", small_options()), Err(Error::Locked { .. })));
    drop(reader);
    let reopened = Log::open(shared, "/log", small_options()).unwrap();
    assert_eq!(reopened.end_offset(), 1);
}

#[test]
fn a_durable_reader_sees_only_synced_records() {
    let (_, shared) = sim();
    let mut options = small_options();
    options.write_buffer_bytes = 0;
    let log = Log::open(shared, "/log", options).unwrap();
    for i in 0..5u8 {
        log.append(Record::new(&[i], Some(&[i]), 0)).unwrap();
    }
    log.sync().unwrap();
    for i in 5..9u8 {
        log.append(Record::new(&[i], Some(&[i]), 0)).unwrap();
    }
    let durable: Vec<_> =
        log.reader_with(0, ReadLimit::Durable).unwrap().into_records().collect::<Result<_, _>>().unwrap();
    assert_eq!(durable.len(), 5);
    assert_eq!(read_from(&log, 0).len(), 9, "a written reader sees the unsynced records too");
    log.sync().unwrap();
    let durable = log.reader_with(0, ReadLimit::Durable).unwrap().into_records().count();
    assert_eq!(durable, 9);
}

#[test]
fn an_empty_batch_appends_nothing() {
    let (_, shared) = sim();
    let log = Log::open(shared, "/log", small_options()).unwrap();
    log.append(Record::new(b"k", None, 0)).unwrap();
    assert_eq!(log.append_batch(&[]).unwrap(), 1..1);
    assert_eq!(log.end_offset(), 1);
}

#[test]
fn full_verification_on_open_accepts_a_healthy_log() {
    let (_, shared) = sim();
    let log = Log::open(Arc::clone(&shared), "/log", small_options()).unwrap();
    for i in 0..300u32 {
        log.append(Record::new(&i.to_le_bytes(), Some(&[7; 40]), 0)).unwrap();
    }
    log.close().unwrap();
    drop(log);
    let mut options = small_options();
    options.verify_on_open = true;
    let log = Log::open(shared, "/log", options).unwrap();
    assert!(log.recovery_report().segments > 3);
    assert_eq!(log.recovery_report().indexes_rebuilt, 0, "healthy indexes were rewritten");
    assert_eq!(read_from(&log, 0).len(), 300);
}

#[test]
fn readers_refuse_offsets_outside_the_log() {
    let (_, shared) = sim();
    let log = Log::open(shared, "/log", small_options()).unwrap();
    log.append(Record::new(b"k", None, 0)).unwrap();
    log.flush().unwrap();
    assert!(log.reader(1).is_ok(), "a reader at the end waits for new records");
    assert!(matches!(log.reader(2), Err(Error::OffsetOutOfRange { offset: 2, start: 0, end: 1 })));
}

/// Each segment file's length and the bytes of its batches, in offset order.
fn lengths(fs: &SimFs, dir: &str) -> Vec<(u64, u64)> {
    let inspection = cairn_changelog::LogDir::open(Arc::new(fs.clone()), dir).unwrap().stat().unwrap();
    inspection.segments.iter().map(|s| (fs.contents(&s.file).unwrap().len() as u64, s.valid_bytes)).collect()
}

#[test]
fn the_active_file_is_extended_ahead_and_cut_back_at_a_roll_and_at_close() {
    let (fs, shared) = sim();
    let mut options = small_options();
    options.segment_bytes_max = 64 << 10;
    options.preallocate_bytes = 16 << 10;
    let log = Log::open(shared, "/log", options).unwrap();
    log.append(Record::new(b"a", Some(&[1; 100]), 0)).unwrap();
    log.sync().unwrap();
    // Extended to one step, holding one small batch.
    let [(len, valid)] = lengths(&fs, "/log")[..] else { panic!("one segment expected") };
    assert_eq!(len, 16 << 10, "not extended ahead");
    assert!(valid < 200);
    // Past the first step, the next one.
    for i in 0..200u32 {
        log.append(Record::new(&i.to_be_bytes(), Some(&[2; 100]), 0)).unwrap();
    }
    log.sync().unwrap();
    let [(len, valid)] = lengths(&fs, "/log")[..] else { panic!("one segment expected") };
    assert!(valid > 16 << 10 && len == 32 << 10, "{len} bytes for {valid} of batches");
    // Rolled: the sealed segment is exactly its batches; the new one extended again.
    for i in 0..600u32 {
        log.append(Record::new(&i.to_be_bytes(), Some(&[3; 100]), 0)).unwrap();
    }
    log.sync().unwrap();
    let segments = lengths(&fs, "/log");
    assert_eq!(segments.len(), 2);
    assert_eq!(segments[0].0, segments[0].1, "a sealed segment keeps preallocated space");
    assert!(segments[1].0 > segments[1].1, "the new active segment is not extended");
    log.close().unwrap();
    let segments = lengths(&fs, "/log");
    assert!(segments.iter().all(|(len, valid)| len == valid), "close left preallocated space: {segments:?}");
}

#[test]
fn without_preallocation_the_file_is_exactly_its_batches() {
    let (fs, shared) = sim();
    let mut options = small_options();
    options.preallocate_bytes = 0;
    let log = Log::open(shared, "/log", options).unwrap();
    log.append(Record::new(b"a", Some(&[1; 100]), 0)).unwrap();
    log.sync().unwrap();
    let [(len, valid)] = lengths(&fs, "/log")[..] else { panic!("one segment expected") };
    assert_eq!(len, valid);
}

#[test]
fn preallocated_zeros_left_by_a_crash_are_cut_at_open_without_a_tear() {
    let (fs, shared) = sim();
    let log = Log::open(shared, "/log", small_options()).unwrap();
    for i in 0..5u32 {
        log.append(Record::new(&i.to_be_bytes(), Some(b"v"), 0)).unwrap();
    }
    log.sync().unwrap();
    // The power cut before a close: only what was synced, the extended size included.
    let image = fs.crash_image(5, &cairn_fs::CrashOptions::durable_only());
    drop(log);
    let [(len, valid)] = lengths(&image, "/log")[..] else { panic!("one segment expected") };
    assert!(len > valid, "the image has no preallocated space to test with");
    // Inspection sees a healthy log ending at its last batch, not a torn tail.
    let dir = cairn_changelog::LogDir::open(Arc::new(image.clone()), "/log").unwrap();
    let verified = dir.verify(&mut |_| {}).unwrap();
    assert!(verified.findings.is_empty(), "{:?}", verified.findings);
    assert_eq!(verified.end_offset, 5);
    let log = Log::open(Arc::new(image.clone()), "/log", small_options()).unwrap();
    assert_eq!(log.recovery_report().tail_cut, None, "zeros reported as a torn tail");
    assert_eq!(read_from(&log, 0).len(), 5);
    log.close().unwrap();
    let [(len, valid)] = lengths(&image, "/log")[..] else { panic!("one segment expected") };
    assert_eq!(len, valid);
}

#[test]
fn a_roll_whose_cut_a_crash_lost_leaves_zeros_that_neither_end_the_log_nor_count_as_a_tear() {
    let (fs, shared) = sim();
    let mut options = small_options();
    options.write_buffer_bytes = 0;
    let log = Log::open(shared, "/log", options.clone()).unwrap();
    log.append(Record::new(b"k", Some(&[1; 100]), 0)).unwrap();
    log.sync().unwrap(); // the first segment's extension to 4 KiB is durable
    let mut n = 1;
    while count_segments(&fs, "/log".as_ref()) < 2 {
        log.append(Record::new(b"k", Some(&[2; 100]), 0)).unwrap();
        n += 1;
    }
    for _ in 0..3 {
        log.append(Record::new(b"k", Some(&[3; 100]), 0)).unwrap();
        n += 1;
    }
    // A crash that keeps every write and directory change but no length change: the roll's
    // cut of the first segment is lost, so it ends in zeros, and the second segment follows.
    let mut crash = cairn_fs::CrashOptions::keep_all();
    crash.set_len_survives_percent = 0;
    let image = fs.crash_image(7, &crash);
    drop(log);
    let first = "/log/00000000000000000000.log";
    let inspection = cairn_changelog::LogDir::open(Arc::new(image.clone()), "/log").unwrap().stat().unwrap();
    let zeros = image.contents(first.as_ref()).unwrap().len() as u64 - inspection.segments[0].valid_bytes;
    assert!(zeros > 0, "the image has no zeros after the first segment's batches");

    let verified =
        cairn_changelog::LogDir::open(Arc::new(image.clone()), "/log").unwrap().verify(&mut |_| {}).unwrap();
    assert!(verified.findings.is_empty(), "{:?}", verified.findings);
    assert_eq!(verified.end_offset, n);
    let log = Log::open(Arc::new(image.clone()), "/log", options).unwrap();
    assert_eq!(log.recovery_report().tail_cut, None);
    assert_eq!(read_from(&log, 0).len() as u64, n, "records after the zeros were lost");
    log.close().unwrap();
    assert!(
        lengths(&image, "/log").iter().all(|(len, valid)| len == valid),
        "a sealed segment kept its zeros"
    );
}
