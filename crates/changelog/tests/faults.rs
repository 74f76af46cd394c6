//! I/O faults on the simulator (DESIGN P6, §7 rung 2): a failed fsync that drops its pending data
//! (fsyncgate), a full disk, short writes, a failed directory sync or rename, flipped bits on
//! read, and a sweep that fails every single operation of a scripted workload in turn.
//!
//! The promise checked throughout: an error on a durability path poisons the log (that call and
//! every later one fail, a failed fsync is never retried), and whatever a power cut leaves then
//! reopens to exactly a prefix of what was appended that holds everything acknowledged.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod common;

use std::fmt::Display;
use std::io;
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;

use cairn_changelog::{Error, Log, LogOptions, OwnedRecord};
use cairn_fs::{CrashOptions, FaultRule, Fs, Op, SimFs};
use common::{Rec, assert_records, read_from, small_options};

/// The log directory. Its path holds no ".log", so rules `on_path(".log")` hit segments only.
const DIR: &str = "/changelog";

fn records(first_seed: u64, n: usize, max_value: usize) -> Vec<Rec> {
    (0..n as u64).map(|i| Rec::generate(first_seed + i, max_value)).collect()
}

fn open(fs: &SimFs, options: &LogOptions) -> Log {
    Log::open(Arc::new(fs.clone()), DIR, options.clone()).unwrap()
}

/// Runs `f`, naming `context` if it panics (for loops over many cases).
fn with_context<T>(context: impl Display, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(value) => value,
        Err(_) => panic!("failed in {context} (see the panic message above)"),
    }
}

fn io_op(error: &Error) -> &'static str {
    match error {
        Error::Io { op, .. } => op,
        other => panic!("expected an Io error, got {other:?}"),
    }
}

fn is_storage_full(error: &Error) -> bool {
    matches!(error, Error::Io { source, .. } if source.kind() == io::ErrorKind::StorageFull)
}

/// Bytes of every file in the log directory, as a running process sees them.
fn live_bytes(fs: &SimFs) -> u64 {
    fs.list_dir(Path::new(DIR))
        .unwrap()
        .iter()
        .map(|name| fs.contents(&Path::new(DIR).join(name)).unwrap().len() as u64)
        .sum()
}

fn segment_count(fs: &SimFs) -> usize {
    fs.list_dir(Path::new(DIR))
        .unwrap()
        .iter()
        .filter(|name| name.to_string_lossy().ends_with(".log"))
        .count()
}

/// Asserts that `log` is poisoned (P6): every call that writes, syncs, truncates or closes fails
/// with `Error::Poisoned`, whose cause is an `Io` error of operation `cause_op`. Call it with the
/// faults cleared, so that a log that retried its I/O would succeed and be caught.
fn assert_poisoned(log: &Log, cause_op: &str) {
    assert!(log.is_poisoned(), "the log is not poisoned");
    let rec = Rec::generate(999, 10);
    let durable = log.durable_offset();
    let calls: Vec<(&str, Result<(), Error>)> = vec![
        ("append", log.append(rec.as_record()).map(drop)),
        ("append_batch", log.append_batch(&[rec.as_record(), rec.as_record()]).map(drop)),
        ("empty append_batch", log.append_batch(&[]).map(drop)),
        ("flush", log.flush().map(drop)),
        ("sync", log.sync().map(drop)),
        ("sync again", log.sync().map(drop)),
        ("truncate", log.truncate(log.start_offset())),
        ("close", log.close()),
        ("sync after close", log.sync().map(drop)),
    ];
    for (name, result) in calls {
        match result {
            Err(Error::Poisoned { cause }) => match cause.as_ref() {
                Error::Io { op, .. } => assert_eq!(*op, cause_op, "{name}: cause of the poison"),
                other => panic!("{name}: poisoned by {other:?}, expected an Io error"),
            },
            other => panic!("{name} on a poisoned log returned {other:?}"),
        }
    }
    assert!(log.is_poisoned());
    assert_eq!(log.durable_offset(), durable, "a poisoned log acknowledged more");
}

/// Asserts that `got` holds the first records of `appended`, at offsets from 0.
fn assert_prefix(got: &[OwnedRecord], appended: &[Rec]) {
    assert!(
        got.len() <= appended.len(),
        "recovered {} records, only {} were appended",
        got.len(),
        appended.len()
    );
    for (i, (got, want)) in got.iter().zip(appended).enumerate() {
        assert_eq!(got.offset, i as u64, "offset of record {i}");
        assert!(want.matches(got), "record {i} is not what was appended: {got:?}");
    }
}

/// The check every power-cut image gets: the log opens on `image` to exactly a prefix of
/// `appended` holding at least `floor` records (P1, P3, P4); it then takes new appends and a
/// sync, and after another power cut holds the recovered records and the new ones. Returns how
/// many records the image held.
fn check_recovery(image: &SimFs, options: &LogOptions, appended: &[Rec], floor: u64) -> usize {
    let log = Log::open(Arc::new(image.clone()), DIR, options.clone())
        .unwrap_or_else(|e| panic!("opening the crash image failed: {e}"));
    let got: Vec<OwnedRecord> = log
        .reader(0)
        .and_then(|reader| reader.into_records().collect())
        .unwrap_or_else(|e| panic!("reading the crash image failed: {e}"));
    assert!(got.len() as u64 >= floor, "recovered {} records, but {floor} were acknowledged", got.len());
    assert_prefix(&got, appended);
    let n = got.len() as u64;
    assert_eq!(log.end_offset(), n, "end offset after recovery");
    assert_eq!(log.durable_offset(), n, "durable offset after recovery");

    let more = records(50_000 + n, 6, 300);
    for (i, rec) in more.iter().enumerate() {
        assert_eq!(log.append(rec.as_record()).unwrap(), n + i as u64);
    }
    assert_eq!(log.sync().unwrap(), n + more.len() as u64);
    drop(log);
    let again = image.crash_image(n, &CrashOptions::durable_only());
    let log = open(&again, options);
    assert!(
        log.recovery_report().tail_cut.is_none(),
        "synced records were cut: {:?}",
        log.recovery_report().tail_cut
    );
    let mut expected = appended[..n as usize].to_vec();
    expected.extend(more);
    assert_records(&read_from(&log, 0), &expected, 0);
    n as usize
}

/// A durable-only image and a few adversarial ones, all checked with [`check_recovery`].
fn check_images(fs: &SimFs, options: &LogOptions, appended: &[Rec], floor: u64, seeds: Range<u64>) {
    let image = fs.crash_image(seeds.start, &CrashOptions::durable_only());
    with_context("the durable-only image", || check_recovery(&image, options, appended, floor));
    for seed in seeds {
        let image = fs.crash_image(seed, &CrashOptions::adversarial());
        with_context(format_args!("the adversarial image of seed {seed}"), || {
            check_recovery(&image, options, appended, floor)
        });
    }
}

/// Appends `recs` one by one, syncing after every `sync_every`, until a call fails. Returns the
/// records handed to the log (the failing call's included), the end acknowledged by the last
/// successful sync, and the error.
fn append_until_error(log: &Log, recs: &[Rec], sync_every: usize) -> (Vec<Rec>, u64, Error) {
    let start = log.end_offset();
    let mut appended = Vec::new();
    let mut acked = log.durable_offset();
    for (i, rec) in recs.iter().enumerate() {
        appended.push(rec.clone());
        if let Err(e) = log.append(rec.as_record()) {
            return (appended, acked, e);
        }
        if i % sync_every == sync_every - 1 {
            match log.sync() {
                Ok(durable) => {
                    assert_eq!(durable, start + appended.len() as u64);
                    acked = durable;
                }
                Err(e) => return (appended, acked, e),
            }
        }
    }
    panic!("{} appends and no error", recs.len());
}

// ---------------------------------------------------------------------------------------------
// fsyncgate

#[test]
fn failed_fsync_poisons_the_log_and_a_power_cut_keeps_exactly_the_synced_records() {
    let fs = SimFs::new(1);
    // One large segment: the only fsync of the log file is the one `sync` makes.
    let options = LogOptions::default();
    let log = open(&fs, &options);
    let all = records(0, 40, 200);
    for rec in &all[..25] {
        log.append(rec.as_record()).unwrap();
    }
    assert_eq!(log.sync().unwrap(), 25);

    fs.inject(FaultRule::fail_file_sync().on_path(".log"));
    for rec in &all[25..] {
        log.append(rec.as_record()).unwrap();
    }
    let error = log.sync().unwrap_err();
    match &error {
        Error::Io { op, path, .. } => {
            assert_eq!(*op, "sync_data");
            assert_eq!(path, &Path::new(DIR).join("00000000000000000000.log"));
        }
        other => panic!("expected the fsync's Io error, got {other:?}"),
    }
    assert!(log.is_poisoned());
    assert_eq!(log.durable_offset(), 25, "the failed fsync acknowledged nothing");
    // With the fault gone a retried fsync would succeed on the simulator and "confirm" records
    // whose pages were already dropped: the log must refuse instead.
    fs.clear_faults();
    assert_poisoned(&log, "sync_data");
    drop(log);

    // A known limit, deliberately not tested: reopening on this same live simulator (a process
    // restart without power loss) still shows all 40 records, because the page cache keeps
    // showing the writes the failed fsync dropped from the disk, as on Linux. Only a power cut
    // loses them; the images below model it.
    let image = fs.crash_image(0, &CrashOptions::durable_only());
    assert_eq!(check_recovery(&image, &options, &all, 25), 25);
    for seed in 1..9 {
        let image = fs.crash_image(seed, &CrashOptions::adversarial());
        with_context(format_args!("adversarial image {seed}"), || check_recovery(&image, &options, &all, 25));
    }
}

#[test]
fn failed_fsync_of_a_sealed_segment_poisons_the_log() {
    let fs = SimFs::new(2);
    let options = small_options();
    let log = open(&fs, &options);
    let all = records(100, 200, 300);
    for rec in &all[..5] {
        log.append(rec.as_record()).unwrap();
    }
    assert_eq!(log.sync().unwrap(), 5);
    fs.inject(FaultRule::fail_file_sync().on_path(".log"));
    // More records between two syncs than a segment holds: the first fsync after the fault is
    // one of a segment being sealed (at its roll, or at the sync that follows it).
    let (appended, acked, error) = append_until_error(&log, &all[5..], 40);
    let appended = [&all[..5], &appended[..]].concat();
    assert_eq!(io_op(&error), "sync_data");
    assert_eq!(acked, 5);
    fs.clear_faults();
    assert_poisoned(&log, "sync_data");
    drop(log);
    check_images(&fs, &options, &appended, 5, 1..5);
}

/// The write-back hint runs once `writeback_bytes` are written (and at each explicit flush),
/// never with 0; a failed one (possibly an earlier write-back's error) poisons the log as a
/// failed fsync does, and power cuts still keep exactly the acknowledged records.
#[test]
fn write_back_hints_follow_the_option_and_a_failed_one_poisons_the_log() {
    let all = records(500, 200, 300);
    for writeback_bytes in [0, 1024] {
        let fs = SimFs::new(3);
        let mut options = small_options();
        options.segment_bytes_max = 1 << 20;
        options.writeback_bytes = writeback_bytes;
        let log = open(&fs, &options);
        for rec in &all {
            log.append(rec.as_record()).unwrap();
        }
        // Whole pages, from the start of the file, up to within a page and a threshold of
        // what was written, before any flush.
        let (written, hinted) = (fs.stats().bytes_written, fs.stats().writeback_bytes);
        if writeback_bytes == 0 {
            assert_eq!(fs.stats().writebacks, 0);
        } else {
            assert!(hinted % 4096 == 0 && hinted <= written, "{hinted} of {written}");
            assert!(hinted + 4096 + writeback_bytes > written, "{hinted} of {written}");
        }
        log.flush().unwrap();
        assert_eq!(fs.stats().writeback_bytes, if writeback_bytes == 0 { 0 } else { written & !4095 });
    }

    let fs = SimFs::new(4);
    let mut options = small_options();
    options.segment_bytes_max = 64 << 10;
    options.writeback_bytes = 1024;
    let log = open(&fs, &options);
    for rec in &all[..5] {
        log.append(rec.as_record()).unwrap();
    }
    assert_eq!(log.sync().unwrap(), 5);
    fs.inject(FaultRule::fail(Op::Writeback));
    let (appended, acked, error) = append_until_error(&log, &all[5..], 3);
    let appended = [&all[..5], &appended[..]].concat();
    assert_eq!(io_op(&error), "start_writeback");
    // Syncs before the first whole page was hinted were acknowledged; none after the error.
    assert!(acked >= 5 && acked < appended.len() as u64, "{acked} of {}", appended.len());
    fs.clear_faults();
    assert_poisoned(&log, "start_writeback");
    drop(log);
    check_images(&fs, &options, &appended, acked, 1..5);
}

// ---------------------------------------------------------------------------------------------
// A full disk

/// Appends until the disk is full and checks that the error is `StorageFull`, that the log is
/// poisoned, and that power-cut images recover a prefix holding every acknowledged record.
fn fill_the_disk(make_full: impl FnOnce(&SimFs), seed: u64) {
    let fs = SimFs::new(seed);
    let options = small_options();
    let log = open(&fs, &options);
    let all = records(seed * 1000, 400, 300);
    for rec in &all[..10] {
        log.append(rec.as_record()).unwrap();
    }
    assert_eq!(log.sync().unwrap(), 10);
    make_full(&fs);
    let (tail, acked, error) = append_until_error(&log, &all[10..], 4);
    let appended = [&all[..10], &tail[..]].concat();
    assert!(is_storage_full(&error), "expected an Io error of kind StorageFull, got {error:?}");
    let op = io_op(&error);
    assert!(["write", "create", "set_len"].contains(&op), "out of space in {op}");
    fs.clear_faults();
    fs.set_capacity(None);
    assert_poisoned(&log, op);
    drop(log);
    check_images(&fs, &options, &appended, acked, seed..seed + 3);
}

#[test]
fn full_disk_by_capacity_fails_with_storage_full_and_poisons_the_log() {
    for (i, extra) in [0u64, 1, 200, 1000, 3000, 4100, 5000, 9000].into_iter().enumerate() {
        with_context(format_args!("capacity of {extra} bytes more"), || {
            fill_the_disk(|fs| fs.set_capacity(Some(live_bytes(fs) + extra)), 10 + i as u64);
        });
    }
}

#[test]
fn full_disk_by_fault_rule_fails_with_storage_full_and_poisons_the_log() {
    for skip in 0..14 {
        with_context(format_args!("no_space on any file after {skip}"), || {
            fill_the_disk(|fs| fs.inject(FaultRule::no_space().skip(skip)), 30 + skip);
        });
        with_context(format_args!("no_space on segments after {skip}"), || {
            fill_the_disk(|fs| fs.inject(FaultRule::no_space().on_path(".log").skip(skip)), 60 + skip);
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Short writes

#[test]
fn short_writes_are_completed_and_every_record_reads_back() {
    for (i, buffer) in [0usize, 512, 64 << 10].into_iter().enumerate() {
        with_context(format_args!("write_buffer_bytes = {buffer}"), || {
            let fs = SimFs::new(40 + i as u64);
            fs.inject(FaultRule::short_write());
            let mut options = small_options();
            options.write_buffer_bytes = buffer;
            let log = open(&fs, &options);
            let all = records(7000, 150, 400);
            let mut next = 0;
            for (round, chunk) in all.chunks(10).enumerate() {
                let start = next;
                if round % 3 == 0 {
                    let batch: Vec<_> = chunk.iter().map(Rec::as_record).collect();
                    let range = log.append_batch(&batch).unwrap();
                    assert_eq!(range, start..start + chunk.len() as u64);
                } else {
                    for (j, rec) in chunk.iter().enumerate() {
                        assert_eq!(log.append(rec.as_record()).unwrap(), start + j as u64);
                    }
                }
                next += chunk.len() as u64;
                assert_eq!(log.sync().unwrap(), next);
            }
            assert_records(&read_from(&log, 0), &all, 0);
            log.close().unwrap();
            drop(log);
            assert!(fs.stats().faults > 20, "only {} short writes", fs.stats().faults);
            assert!(segment_count(&fs) > 5, "the workload should roll");

            // Reopen with the short writes still on, then after a power cut.
            let log = open(&fs, &options);
            assert!(log.recovery_report().tail_cut.is_none());
            assert_records(&read_from(&log, 0), &all, 0);
            let extra = records(9000, 20, 400);
            for rec in &extra {
                log.append(rec.as_record()).unwrap();
            }
            assert_eq!(log.sync().unwrap(), (all.len() + extra.len()) as u64);
            drop(log);
            let image = fs.crash_image(1, &CrashOptions::durable_only());
            let log = open(&image, &options);
            assert!(log.recovery_report().tail_cut.is_none());
            assert_records(&read_from(&log, 0), &[all.clone(), extra].concat(), 0);
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Failed directory syncs and renames

#[test]
fn failed_directory_sync_at_a_roll_or_after_markers_poisons_the_log() {
    // Without syncs only rolls sync the directory; with syncs, each sync after a roll does too
    // (after writing the sealed segments' markers), so the failing one is either kind.
    for (sync_every, label) in [(usize::MAX, "roll"), (3, "roll or markers")] {
        for skip in 0..4 {
            with_context(format_args!("failing the {label} directory sync after {skip}"), || {
                let fs = SimFs::new(70 + skip);
                let options = small_options();
                let log = open(&fs, &options);
                let all = records(skip * 1000, 300, 300);
                for rec in &all[..5] {
                    log.append(rec.as_record()).unwrap();
                }
                assert_eq!(log.sync().unwrap(), 5);
                let segments = segment_count(&fs);
                fs.inject(FaultRule::fail(Op::SyncDir).skip(skip));
                let (tail, acked, error) = append_until_error(&log, &all[5..], sync_every);
                let appended = [&all[..5], &tail[..]].concat();
                assert_eq!(io_op(&error), "sync_dir");
                if sync_every == usize::MAX {
                    assert_eq!(
                        segment_count(&fs),
                        segments + skip as usize + 1,
                        "the failing directory sync is the roll's"
                    );
                }
                fs.clear_faults();
                assert_poisoned(&log, "sync_dir");
                drop(log);
                check_images(&fs, &options, &appended, acked, skip * 10..skip * 10 + 4);
            });
        }
    }
}

/// A log of `n` records synced, with records `batch` appended as one batch; returns the records.
fn log_with_batch(fs: &SimFs, options: &LogOptions, n: usize, batch: Range<usize>) -> Vec<Rec> {
    let log = open(fs, options);
    let all = records(400, n, 300);
    let mut i = 0;
    while i < n {
        if i == batch.start {
            let recs: Vec<_> = all[batch.clone()].iter().map(Rec::as_record).collect();
            log.append_batch(&recs).unwrap();
            i = batch.end;
        } else {
            log.append(all[i].as_record()).unwrap();
            i += 1;
        }
        if i % 4 == 0 {
            log.sync().unwrap();
        }
    }
    assert_eq!(log.sync().unwrap(), n as u64);
    log.close().unwrap();
    all
}

/// Checks a truncation that fails in its rename: the error, the poison, the leftover temp file,
/// and the images, which may hold anything between the cut and the old end.
fn check_failed_rename(fs: &SimFs, options: &LogOptions, all: &[Rec], log: &Log, at: u64) {
    fs.inject(FaultRule::fail(Op::Rename));
    let error = log.truncate(at).unwrap_err();
    assert_eq!(io_op(&error), "rename", "{error}");
    assert_eq!(fs.stats().renames, 0);
    fs.clear_faults();
    assert_poisoned(log, "rename");

    // What a process kill leaves: the records up to the end of the segment being cut (later
    // segments were removed first), and the copy under its temporary name, which the next open
    // removes.
    let image = fs.crash_image(0, &CrashOptions::keep_all());
    let reopened = open(&image, options);
    assert_eq!(reopened.recovery_report().temp_files_removed, 1);
    let got = read_from(&reopened, 0);
    assert!(got.len() as u64 > at, "kept {} records", got.len());
    assert_prefix(&got, all);
    drop(reopened);
    check_images(fs, options, all, at, 1..6);
}

#[test]
fn failed_rename_when_truncating_inside_a_batch_poisons_the_log() {
    let options = small_options();
    // The batch [20, 26) in a sealed segment, then [100, 106) in the active one.
    for (batch, n, at) in [(20..26, 80, 23), (100..106, 108, 102)] {
        with_context(format_args!("truncate({at})"), || {
            let fs = SimFs::new(80 + at);
            let all = log_with_batch(&fs, &options, n, batch.clone());
            let log = open(&fs, &options);
            if batch.start == 20 {
                assert!(segment_count(&fs) >= 3, "the cut should fall in a sealed segment");
            }
            check_failed_rename(&fs, &options, &all, &log, at);
        });
    }
}

#[test]
fn failed_rename_when_truncating_under_a_reader_poisons_the_log() {
    let options = small_options();
    for (at, n) in [(8u64, 60usize), (52, 60)] {
        with_context(format_args!("truncate({at}) under a reader"), || {
            let fs = SimFs::new(90 + at);
            // `at` is a multiple of 4: a batch boundary (every sync ends a batch).
            let all = log_with_batch(&fs, &options, n, n..n);
            let log = open(&fs, &options);
            let mut reader = log.reader(at).unwrap();
            // The reader now holds the segment being cut, which forces the copy-and-rename path.
            assert!(reader.next_batch().unwrap().is_some());
            check_failed_rename(&fs, &options, &all, &log, at);
            drop(reader);
        });
    }
}

/// A truncation into a sealed segment removes the later segments first, then reads the kept
/// segment to find the cut. If that read finds damage (a flipped bit on read, or bytes rotten on
/// disk), the truncation fails after the files already changed: the log must be poisoned, or a
/// later append would go to the removed active segment and a sync would acknowledge records
/// that no longer belong to any file of the log (P1, P6).
#[test]
fn damage_found_while_truncating_poisons_the_log() {
    let options = small_options();
    for on_disk in [false, true] {
        with_context(format_args!("damage on disk: {on_disk}"), || {
            let fs = SimFs::new(95);
            let all = log_with_batch(&fs, &options, 80, 80..80);
            assert!(segment_count(&fs) >= 3);
            let first = Path::new(DIR).join("00000000000000000000.log");
            // The last batch of the first segment: reading up to it checks every batch the read
            // covers, wherever the flipped bit lands. Its header: length at byte 8, base offset
            // at 16 (docs/format.md).
            let mut bytes = fs.contents(&first).unwrap();
            let field = |bytes: &[u8], at: usize, n: usize| {
                let mut word = [0u8; 8];
                word[..n].copy_from_slice(&bytes[at..at + n]);
                u64::from_le_bytes(word)
            };
            let mut last = 0;
            while last + field(&bytes, last + 8, 4) as usize != bytes.len() {
                last += field(&bytes, last + 8, 4) as usize;
            }
            let at = field(&bytes, last + 16, 8);
            assert!(at > 0);
            let log = open(&fs, &options);
            if on_disk {
                bytes[last + 50] ^= 4;
                fs.set_contents(&first, &bytes).unwrap();
            } else {
                fs.inject(FaultRule::flip_bit_on_read().on_path("00000000000000000000.log").times(1));
            }
            let error = log.truncate(at).unwrap_err();
            assert!(matches!(&error, Error::Corruption { file, .. } if *file == first), "{error:?}");
            fs.clear_faults();
            assert!(log.is_poisoned(), "a truncation failed halfway and the log goes on");
            // Whatever the log says next must hold: a sync it acknowledges must survive a power
            // cut (without one, a failed truncation may leave anything from `at` to the end).
            let rec = Rec::generate(5, 10);
            let floor = log.append(rec.as_record()).and_then(|_| log.sync()).unwrap_or(at);
            drop(log);
            if !on_disk {
                let appended = [&all[..], std::slice::from_ref(&rec)].concat();
                check_images(&fs, &options, &appended, floor, 1..4);
            }
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Flipped bits on read

/// Reads everything from `from`, checking that every record returned is the one appended at its
/// offset. Returns how many were read, or the error that ended the read.
fn read_checked(log: &Log, from: u64, all: &[Rec]) -> Result<usize, Error> {
    let mut n = 0;
    for record in log.reader(from)?.into_records() {
        let record = record?;
        let want = &all[record.offset as usize];
        assert_eq!(record.offset, from + n as u64, "offsets must be contiguous");
        assert!(want.matches(&record), "wrong data at {}: {record:?}", record.offset);
        n += 1;
    }
    Ok(n)
}

#[test]
fn flipped_bit_on_read_is_reported_as_corruption_never_returned_as_data() {
    let base = SimFs::new(0);
    let options = small_options();
    let all = records(3000, 120, 300);
    {
        let log = open(&base, &options);
        for (i, rec) in all.iter().enumerate() {
            log.append(rec.as_record()).unwrap();
            if i % 7 == 0 {
                log.sync().unwrap();
            }
        }
        log.close().unwrap();
    }
    let segments = segment_count(&base);
    assert!(segments >= 4, "only {segments} segments");
    let files: Vec<_> = base
        .list_dir(Path::new(DIR))
        .unwrap()
        .into_iter()
        .filter(|name| name.to_string_lossy().ends_with(".log"))
        .map(|name| Path::new(DIR).join(name))
        .collect();

    let mut detected = 0;
    for seed in 0..16u64 {
        // A full read makes one read or mapping per segment file: skip up to past the last.
        for skip in 0..segments as u64 + 1 {
            for from in [0, all.len() as u64 / 2] {
                with_context(format_args!("seed {seed}, skip {skip}, from {from}"), || {
                    // The simulator's seed picks the bit.
                    let image = base.crash_image(seed, &CrashOptions::keep_all());
                    let log = open(&image, &options);
                    let faults = image.stats().faults;
                    image.inject(FaultRule::flip_bit_on_read().on_path(".log").skip(skip).times(1));
                    let result = read_checked(&log, from, &all);
                    let flipped = image.stats().faults > faults;
                    match result {
                        Err(Error::Corruption { file, position, .. }) => {
                            assert!(flipped, "corruption without a flipped bit");
                            assert!(files.contains(&file), "corruption names {file:?}");
                            assert!(position < image.contents(&file).unwrap().len() as u64);
                            detected += 1;
                        }
                        Ok(n) => {
                            assert_eq!(n, all.len() - from as usize, "records missing");
                            // From offset 0 every byte read is checked.
                            assert!(!flipped || from > 0, "a flipped bit went unnoticed");
                        }
                        Err(other) => panic!("unexpected error {other:?}"),
                    }
                    // Without the fault, the same read on a fresh handle returns the records.
                    image.clear_faults();
                    drop(log);
                    let log = open(&image, &options);
                    assert_eq!(read_checked(&log, from, &all).unwrap(), all.len() - from as usize);
                });
            }
        }
    }
    assert!(detected >= 16 * segments, "only {detected} flips detected");
}

// ---------------------------------------------------------------------------------------------
// Failing the n-th operation

/// How the scripted workload stopped.
#[derive(Debug)]
enum Failed {
    /// A call that writes, syncs, truncates or closes failed: the log must be poisoned.
    Durability(&'static str, Error),
    /// Opening failed: there is no log to look at.
    Open(Error),
    /// A read failed: nothing is promised about poisoning.
    Read(Error),
}

/// The scripted workload of the sweep, and what it knows: what was appended, what was
/// acknowledged, and what an image may and must hold if the call under way fails.
struct Workload {
    fs: SimFs,
    options: LogOptions,
    log: Option<Log>,
    /// The log's contents if every call so far succeeded.
    appended: Vec<Rec>,
    /// The end acknowledged durable (by `sync`, `truncate`, `close`, or a reopen).
    acked: u64,
    /// If the call under way fails, an image holds a prefix of `upper` at least `floor` long.
    upper: Vec<Rec>,
    floor: u64,
    seed: u64,
    /// The most segment files seen after a sync, if counting (listing the directory is an
    /// operation of its own, so the sweep's runs do not count).
    max_segments: Option<usize>,
    /// The base offset of the last segment at the script's last truncation, found by listing
    /// the directory in a first run.
    base_cut: Option<u64>,
}

impl Workload {
    fn new(fs: SimFs) -> Workload {
        Workload {
            fs,
            options: small_options(),
            log: None,
            appended: Vec::new(),
            acked: 0,
            upper: Vec::new(),
            floor: 0,
            seed: 0,
            max_segments: None,
            base_cut: None,
        }
    }

    fn log(&self) -> &Log {
        self.log.as_ref().unwrap()
    }

    fn next_rec(&mut self) -> Rec {
        self.seed += 1;
        Rec::generate(self.seed, if self.seed.is_multiple_of(6) { 900 } else { 250 })
    }

    fn bounds(&mut self, upper: Vec<Rec>, floor: u64) {
        self.upper = upper;
        self.floor = floor;
    }

    fn open(&mut self) -> Result<(), Failed> {
        self.bounds(self.appended.clone(), self.acked);
        let log = Log::open(Arc::new(self.fs.clone()), DIR, self.options.clone()).map_err(Failed::Open)?;
        assert_eq!(log.end_offset(), self.appended.len() as u64, "end after reopen");
        self.acked = log.durable_offset();
        assert_eq!(self.acked, log.end_offset());
        self.log = Some(log);
        Ok(())
    }

    fn append(&mut self, n: usize) -> Result<(), Failed> {
        for _ in 0..n {
            let rec = self.next_rec();
            let mut upper = self.appended.clone();
            upper.push(rec.clone());
            self.bounds(upper, self.acked);
            let offset = self.log().append(rec.as_record()).map_err(|e| Failed::Durability("append", e))?;
            assert_eq!(offset, self.appended.len() as u64);
            self.appended.push(rec);
        }
        Ok(())
    }

    fn batch(&mut self, n: usize) -> Result<Range<u64>, Failed> {
        let recs: Vec<Rec> = (0..n).map(|_| self.next_rec()).collect();
        self.bounds([&self.appended[..], &recs[..]].concat(), self.acked);
        let batch: Vec<_> = recs.iter().map(Rec::as_record).collect();
        let range = self.log().append_batch(&batch).map_err(|e| Failed::Durability("append_batch", e))?;
        assert_eq!(range.start, self.appended.len() as u64);
        self.appended.extend(recs);
        Ok(range)
    }

    fn flush(&mut self) -> Result<(), Failed> {
        self.bounds(self.appended.clone(), self.acked);
        let end = self.log().flush().map_err(|e| Failed::Durability("flush", e))?;
        assert_eq!(end, self.appended.len() as u64);
        Ok(())
    }

    fn sync(&mut self) -> Result<u64, Failed> {
        self.bounds(self.appended.clone(), self.acked);
        let durable = self.log().sync().map_err(|e| Failed::Durability("sync", e))?;
        assert_eq!(durable, self.appended.len() as u64);
        self.acked = durable;
        if let Some(max) = &mut self.max_segments {
            *max = (*max).max(segment_count(&self.fs));
        }
        Ok(durable)
    }

    fn truncate(&mut self, at: u64) -> Result<(), Failed> {
        // A failed truncation may leave the log ending anywhere between `at` and its old end.
        self.bounds(self.appended.clone(), self.acked.min(at));
        self.log().truncate(at).map_err(|e| Failed::Durability("truncate", e))?;
        self.appended.truncate(at as usize);
        self.acked = at;
        assert_eq!(self.log().end_offset(), at);
        assert_eq!(self.log().durable_offset(), at);
        Ok(())
    }

    fn close(&mut self) -> Result<(), Failed> {
        self.bounds(self.appended.clone(), self.acked);
        self.log().close().map_err(|e| Failed::Durability("close", e))?;
        self.acked = self.appended.len() as u64;
        self.log = None;
        Ok(())
    }

    fn read_all(&mut self) -> Result<(), Failed> {
        self.bounds(self.appended.clone(), self.acked);
        let records: Vec<OwnedRecord> =
            self.log().reader(0).and_then(|reader| reader.into_records().collect()).map_err(Failed::Read)?;
        assert_records(&records, &self.appended, 0);
        Ok(())
    }

    /// Appends across several segment rolls, syncs, a truncation inside a batch of a sealed
    /// segment (the copy-and-rename path, removing later segments), one at a batch boundary of
    /// the active segment (in place), reads, a close and a reopen, and a truncation at a
    /// segment's base offset (the segment before it becomes the active one again).
    fn script(&mut self) -> Result<(), Failed> {
        self.open()?;
        self.append(6)?;
        self.sync()?;
        let inside = self.batch(5)?;
        self.append(4)?;
        self.sync()?;
        for _ in 0..12 {
            self.append(5)?;
            self.sync()?;
        }
        self.flush()?;
        self.read_all()?;
        self.truncate(inside.start + 2)?;
        self.append(8)?;
        let boundary = self.sync()?;
        self.append(6)?;
        self.flush()?;
        self.append(2)?;
        self.truncate(boundary)?;
        self.append(3)?;
        self.close()?;
        self.open()?;
        self.read_all()?;
        for _ in 0..5 {
            self.append(7)?;
            self.sync()?;
        }
        // At the base offset of the last segment: it goes, and the one before becomes active.
        let at = *self.base_cut.get_or_insert_with(|| {
            let names = self.fs.list_dir(Path::new(DIR)).unwrap();
            let last = names
                .iter()
                .filter_map(|name| name.to_str()?.strip_suffix(".log")?.parse().ok())
                .max()
                .unwrap();
            assert!(0 < last && last < self.appended.len() as u64);
            last
        });
        self.truncate(at)?;
        self.append(4)?;
        self.sync()?;
        self.close()
    }
}

#[test]
fn failing_any_single_operation_leaves_a_recoverable_prefix() {
    // The fault-free run: that the workload does what it says, and how many operations it makes.
    let fs = SimFs::new(7);
    let mut run = Workload::new(fs.clone());
    run.max_segments = Some(0);
    run.script().unwrap();
    assert!(fs.stats().renames >= 1, "the workload should truncate by copy and rename");
    assert!(run.max_segments >= Some(4), "the workload should roll segments: {:?}", run.max_segments);
    let log = open(&fs, &run.options);
    assert_records(&read_from(&log, 0), &run.appended, 0);
    drop(log);
    let base_cut = run.base_cut;
    let fs = SimFs::new(7);
    let mut run = Workload::new(fs.clone());
    run.base_cut = base_cut;
    run.script().unwrap();
    let total = fs.stats().ops;

    let mut poisoned = 0;
    let mut absorbed = 0;
    for n in 0..total {
        with_context(format_args!("fail_nth_op({n}) of {total}"), || {
            let fs = SimFs::new(7);
            fs.inject(FaultRule::fail_nth_op(n));
            let mut run = Workload::new(fs.clone());
            run.base_cut = base_cut;
            let outcome = run.script();
            assert_eq!(fs.stats().faults, 1, "the fault fired");
            fs.clear_faults();
            let (upper, floor) = match outcome {
                // The fault was absorbed, as a failed read of an index is (it is rebuilt).
                Ok(()) => {
                    absorbed += 1;
                    (run.appended.clone(), run.acked)
                }
                Err(Failed::Durability(call, error)) => {
                    let op = io_op(&error);
                    with_context(format_args!("{call} failing in {op}"), || {
                        assert_poisoned(run.log(), op);
                    });
                    poisoned += 1;
                    (run.upper.clone(), run.floor)
                }
                Err(Failed::Open(error) | Failed::Read(error)) => {
                    io_op(&error);
                    (run.upper.clone(), run.floor)
                }
            };
            drop(run.log.take());
            check_images(&fs, &run.options, &upper, floor, 2 * n + 1..2 * n + 3);
        });
    }
    eprintln!("{total} operations: {poisoned} poisoned the log, {absorbed} were absorbed");
    assert!(poisoned > total / 3, "only {poisoned} of {total} faults poisoned the log");
}
