//! loom models of the whole log (DESIGN §7 rung 6): the real [`Log`] on the power-loss simulator,
//! under `--cfg loom`, where every lock, atomic, condition variable and thread of the log is
//! loom's. The simulator's own lock is std's and is never held across a loom operation, so
//! loom sees the log's synchronization and treats the file system as memory.
//!
//! Each model is small (two or three threads, a few calls) and has a mutant that breaks the
//! ordering it checks; `cargo xtask loom` runs each mutant in its own process and requires it
//! to fail with the message in its `#[ignore]` reason. The primitives have their own models
//! next to them (`watermark`, `group_commit`, `segment_list`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panicked model thread fails it

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cairn_fs::loom_model_tests;
use cairn_fs::loom_support::{check, spawn};
use cairn_fs::{CrashOptions, FaultRule, Fs, Op, SimFs};

use crate::maintenance::Maintenance;
use crate::{Error, Log, LogOptions, ReadLimit, Record};

/// The first segment's file.
const FIRST_SEGMENT: &str = "/log/00000000000000000000.log";

fn open(fs: &SimFs, options: LogOptions) -> Arc<Log> {
    let dyn_fs: Arc<dyn Fs> = Arc::new(fs.clone());
    Arc::new(Log::open(dyn_fs, "/log", options).unwrap())
}

/// Whether `needle` occurs in `haystack`.
fn holds(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Whether `value` survives a power cut now: it is in the durable bytes of the first segment.
fn durable(fs: &SimFs, value: &[u8]) -> bool {
    let image = fs.crash_image(0, &CrashOptions::durable_only());
    image.contents(Path::new(FIRST_SEGMENT)).is_ok_and(|bytes| holds(&bytes, value))
}

/// Reads every record `log` shows a reader with `limit` now, as (offset, value).
fn read_all(log: &Log, limit: ReadLimit) -> Vec<(u64, Vec<u8>)> {
    let mut reader = log.reader_with(0, limit).unwrap();
    let mut records = Vec::new();
    while let Some(batch) = reader.next_batch().unwrap() {
        for record in batch.records() {
            let record = record.unwrap();
            records.push((record.offset, record.value.unwrap_or_default().to_vec()));
        }
    }
    records
}

fn value(i: u64) -> Vec<u8> {
    format!("value-{i}").into_bytes()
}

/// Models 1 and 5 (roll): a writer appends two records, each written out at once and the
/// second in a new segment (every append rolls); a reader that has loaded the written end
/// finds every record below it, in order, in the segments the list shows it, and the end never
/// goes back.
fn published_records_model() {
    check(|| {
        let fs = SimFs::new(1);
        let options =
            LogOptions { write_buffer_bytes: 0, segment_age_ms_max: Some(0), ..LogOptions::default() };
        let log = open(&fs, options);
        let writer = {
            let log = Arc::clone(&log);
            spawn(move || {
                for i in 0..2 {
                    log.append_batch(&[Record::put(b"k", &value(i))]).unwrap();
                }
            })
        };
        let end = log.written_offset();
        let records = read_all(&log, ReadLimit::Written);
        assert!(
            records.len() as u64 >= end,
            "a published record was not readable: end {end}, read {records:?}"
        );
        for (i, (offset, bytes)) in records.iter().enumerate() {
            assert_eq!((*offset, bytes), (i as u64, &value(i as u64)), "a record out of place");
        }
        assert!(log.written_offset() >= end, "the written end went back");
        writer.join().unwrap();
    });
}

loom_model_tests!(
    published_records_model: loom_readers_find_every_published_record,
    loom_mutant_end_before_write = crate::mutants::END_BEFORE_WRITE,
    "mutant: run by `cargo xtask loom`, must fail with \"a published record was not readable\""
);

/// Models 2 and 7: a writer appends and syncs one record; a durable reader and a
/// checkpointer (which records the durable end, as a task's commit does) run beside it. What
/// either learns is durable must be in the synced bytes, and the durable end is never ahead of
/// the written one.
fn durable_model() {
    check(|| {
        let fs = SimFs::new(2);
        let log = open(&fs, LogOptions::default());
        let writer = {
            let log = Arc::clone(&log);
            spawn(move || {
                log.append_batch(&[Record::put(b"k", &value(0))]).unwrap();
                log.sync().unwrap();
            })
        };
        let checkpointer = {
            let (log, fs) = (Arc::clone(&log), fs.clone());
            spawn(move || {
                let checkpointed = log.durable_offset();
                assert!(checkpointed <= log.written_offset(), "durable ahead of written");
                if checkpointed >= 1 {
                    assert!(durable(&fs, &value(0)), "a checkpoint recorded an offset ahead of its fsync");
                }
            })
        };
        for (offset, bytes) in read_all(&log, ReadLimit::Durable) {
            assert!(durable(&fs, &bytes), "a durable reader returned record {offset} ahead of its fsync");
        }
        writer.join().unwrap();
        checkpointer.join().unwrap();
        assert_eq!(read_all(&log, ReadLimit::Durable).len(), 1, "a synced record is not readable as durable");
    });
}

loom_model_tests!(
    durable_model: loom_durable_readers_and_checkpoints_see_only_synced_records,
    loom_mutant_durable_before_fsync = crate::mutants::DURABLE_BEFORE_FSYNC,
    "mutant: run by `cargo xtask loom`, must fail with \"ahead of its fsync\""
);

/// Model 3 on the real log: two callers each append a record and sync, sharing fsyncs. Each
/// acknowledged caller's record is in the synced bytes, and each caller returns once (a lost
/// wake-up is a deadlock under loom).
fn group_commit_model() {
    check(|| {
        let fs = SimFs::new(7);
        let log = open(&fs, LogOptions::default());
        let callers: Vec<_> = (0..2)
            .map(|i| {
                let (log, fs) = (Arc::clone(&log), fs.clone());
                spawn(move || {
                    log.append_batch(&[Record::put(b"k", &value(i))]).unwrap();
                    let durable_end = log.sync().unwrap();
                    assert!(durable_end >= 1, "a sync acknowledged less than its record");
                    assert!(durable(&fs, &value(i)), "a sync acknowledged a record that no fsync covered");
                })
            })
            .collect();
        for caller in callers {
            caller.join().unwrap();
        }
        assert_eq!(log.durable_offset(), 2);
    });
}

loom_model_tests!(
    group_commit_model: loom_concurrent_syncs_acknowledge_only_synced_records,
    loom_mutant_ack_without_sync = crate::mutants::ACK_WITHOUT_SYNC,
    "mutant: run by `cargo xtask loom`, must fail with \"no fsync covered\""
);

/// Model 4: two appenders, each writing its record out at once, and the first write fails.
/// The failing append reports the error; its record must never reach the file, which holds
/// only if every append checks for poisoning under the writer's lock (the failed write leaves
/// its record in the writer's buffer, for good).
fn failed_write_model() {
    check(|| {
        let fs = SimFs::new(3);
        let log = open(&fs, LogOptions { write_buffer_bytes: 0, ..LogOptions::default() });
        fs.inject(FaultRule::fail(Op::Write).times(1));
        let appenders: Vec<_> = (0..2)
            .map(|i| {
                let log = Arc::clone(&log);
                spawn(move || log.append_batch(&[Record::put(b"k", &value(i))]).is_ok())
            })
            .collect();
        let appended: Vec<bool> = appenders.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(appended.contains(&false), "the failed write was not reported");
        assert!(log.is_poisoned(), "a failed write did not poison the log");
        let bytes = fs.contents(Path::new(FIRST_SEGMENT)).unwrap();
        for (i, ok) in appended.into_iter().enumerate() {
            if !ok {
                assert!(!holds(&bytes, &value(i as u64)), "a record whose append failed reached the file");
            }
        }
        assert!(matches!(log.sync(), Err(Error::Poisoned { .. })), "a poisoned log synced");
    });
}

loom_model_tests!(
    failed_write_model: loom_a_failed_append_never_reaches_the_file,
    loom_mutant_poison_check_before_lock = crate::mutants::POISON_CHECK_BEFORE_LOCK,
    "mutant: run by `cargo xtask loom`, must fail with \"whose append failed reached the file\""
);

/// A mechanism not in the list: a sealed segment's mark (`Segment::marked`, release /
/// acquire), which tells compaction the segment's data and index file are durable. A writer
/// fills a segment, rolls and syncs; another thread looks at the segment list as compaction
/// does. A segment it finds marked has its index file written and its data durable (the
/// directory entry of the index file becomes durable with the sync's directory fsync, later).
fn mark_model() {
    check(|| {
        let fs = SimFs::new(9);
        let options =
            LogOptions { write_buffer_bytes: 0, segment_age_ms_max: Some(0), ..LogOptions::default() };
        let log = open(&fs, options);
        let writer = {
            let log = Arc::clone(&log);
            spawn(move || {
                for i in 0..2 {
                    log.append_batch(&[Record::put(b"k", &value(i))]).unwrap();
                }
                log.sync().unwrap();
            })
        };
        for segment in log.shared().segments().iter().filter(|s| s.is_marked()) {
            let index = Path::new("/log").join(crate::segment::index_name(segment.base));
            assert!(fs.contents(&index).is_ok(), "a segment was marked before its index file was written");
            let data = Path::new("/log").join(crate::segment::log_name(segment.base));
            let image = fs.crash_image(0, &CrashOptions::durable_only());
            assert_eq!(
                image.contents(&data).ok(),
                fs.contents(&data).ok(),
                "a segment was marked before its data was durable"
            );
        }
        writer.join().unwrap();
    });
}

loom_model_tests!(
    mark_model: loom_a_marked_segment_has_its_index_and_durable_data,
    loom_mutant_mark_before_index = crate::mutants::MARK_BEFORE_INDEX,
    "mutant: run by `cargo xtask loom`, must fail with \"marked before its index file\""
);

/// Model 8 (the log): a caller appends and syncs while the log is closed. A sync acknowledged
/// before, during or after the close covers its record with an fsync (the close's, if the sync
/// waited for it); once close returns, nothing more is appended.
fn close_model() {
    check(|| {
        let fs = SimFs::new(4);
        let log = open(&fs, LogOptions::default());
        let caller = {
            let log = Arc::clone(&log);
            spawn(move || {
                log.append_batch(&[Record::put(b"k", &value(0))]).ok()?;
                log.sync().ok()
            })
        };
        log.close().unwrap();
        assert!(matches!(log.append_batch(&[Record::put(b"k", b"late")]), Err(Error::Closed)));
        if let Some(acknowledged) = caller.join().unwrap() {
            assert!(acknowledged >= 1, "a sync acknowledged less than its record");
            assert!(durable(&fs, &value(0)), "a sync acknowledged a record that no fsync covered");
        }
    });
}

loom_model_tests!(
    close_model: loom_close_against_an_in_flight_sync,
    loom_mutant_close_skips_final_sync = crate::mutants::CLOSE_SKIPS_FINAL_SYNC,
    "mutant: run by `cargo xtask loom`, must fail with \"no fsync covered\""
);

/// Model 8 (the maintenance thread): closing the log stops its maintenance thread and joins it,
/// whenever the close comes; a lost wake-up would leave the close waiting for good (under loom
/// a timed wait never times out, so a lost wake-up is a deadlock, not a delay of one interval).
fn maintenance_stop_model() {
    check(|| {
        let fs = SimFs::new(5);
        let maintenance =
            Maintenance { interval: Duration::from_secs(3600), compaction: None, ..Maintenance::default() };
        let log = open(&fs, LogOptions { maintenance: Some(maintenance), ..LogOptions::default() });
        log.close().unwrap();
        assert!(!log.maintenance_status().running, "the maintenance thread still runs after close");
    });
}

loom_model_tests!(
    maintenance_stop_model: loom_close_stops_and_joins_the_maintenance_thread,
    loom_mutant_stop_without_lock = crate::mutants::STOP_WITHOUT_LOCK,
    "mutant: run by `cargo xtask loom`, must fail with \"deadlock\""
);
