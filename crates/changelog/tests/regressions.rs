//! Regression tests from the first independent review of the changelog: each of these failed
//! on the code as it was reviewed (commit 5bd781d), and each names the behaviour it protects.
//! The two SIGBUS tests run their body in a child process, so that a fault shows as a failed
//! exit status instead of killing the test runner.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod common;

use std::sync::Arc;

use cairn_changelog::{Error, Log, LogOptions, OwnedRecord, Record};
use cairn_fs::{CrashOptions, Fs, SimFs};
use common::small_options;

const DIR: &str = "/log";

fn rec(i: u64, tag: u8) -> (Vec<u8>, Vec<u8>) {
    (format!("key{i:04}").into_bytes(), vec![tag; 40])
}

fn append(log: &Log, i: u64, tag: u8) -> u64 {
    let (k, v) = rec(i, tag);
    log.append(Record::new(&k, Some(&v), 0)).unwrap()
}

fn unbuffered() -> LogOptions {
    let mut options = small_options();
    options.write_buffer_bytes = 0; // every append is its own batch, written at once
    options.index_interval_bytes = 1 << 20;
    options
}

/// A reader that tails the active segment across a roll reads the new active segment through
/// its stale scan buffer (filled from the previous segment) and reports corruption.
#[test]
fn a_tailing_reader_follows_a_roll_without_false_corruption() {
    // How many records fit in the first segment?
    let probe = SimFs::new(1);
    let log = Log::open(Arc::new(probe.clone()), DIR, unbuffered()).unwrap();
    let mut fit = 0;
    loop {
        append(&log, fit, 1);
        if common::count_segments(&probe, DIR.as_ref()) == 2 {
            break;
        }
        fit += 1;
    }
    drop(log);

    let fs = SimFs::new(1);
    let log = Log::open(Arc::new(fs.clone()), DIR, unbuffered()).unwrap();
    for i in 0..fit {
        append(&log, i, 1);
    }
    // A tailing reader reads the first record (its buffer now holds the whole active segment).
    let mut reader = log.reader(0).unwrap();
    assert_eq!(reader.next_batch().unwrap().unwrap().len(), 1);
    // The next append rolls: it lands in a new segment.
    append(&log, fit, 1);
    assert_eq!(common::count_segments(&fs, DIR.as_ref()), 2);
    let mut got = 1;
    loop {
        match reader.next_batch() {
            Ok(Some(batch)) => got += batch.len() as u64,
            Ok(None) => break,
            Err(e) => panic!("tailing reader failed after {got} of {} records: {e}", fit + 1),
        }
    }
    assert_eq!(got, fit + 1);
}

/// A reader positioned below a truncation point, after the truncation and new appends, returns
/// the truncated-away records (from its stale scan buffer) instead of the new ones.
#[test]
fn a_reader_below_a_truncation_reads_the_new_records_not_its_buffer() {
    let fs = SimFs::new(2);
    let log = Log::open(Arc::new(fs.clone()), DIR, unbuffered()).unwrap();
    for i in 0..10 {
        append(&log, i, b'A');
    }
    let mut reader = log.reader(0).unwrap();
    for _ in 0..3 {
        reader.next_batch().unwrap().unwrap();
    }
    assert_eq!(reader.position(), 3);
    log.truncate(5).unwrap();
    for i in 5..10 {
        append(&log, i, b'B'); // same sizes, new values
    }
    let records: Vec<OwnedRecord> = reader.into_records().collect::<Result<_, _>>().unwrap();
    let fresh: Vec<OwnedRecord> = log.reader(3).unwrap().into_records().collect::<Result<_, _>>().unwrap();
    for (a, b) in records.iter().zip(&fresh) {
        assert_eq!(
            a,
            b,
            "the old reader returned offset {} with value {:?}, the log holds {:?}",
            a.offset,
            a.value.as_ref().map(|v| v[0] as char),
            b.value.as_ref().map(|v| v[0] as char)
        );
    }
    assert_eq!(records.len(), fresh.len());
}

/// `truncate` documents "Readers past `offset` get ReaderTruncated". A reader that had already
/// returned records past the cut is not told if new appends move the end past its position:
/// it silently continues with the new records, after having returned old ones at the same
/// offsets. (The reader reads a sealed, mapped segment here, so its scan buffer plays no part.)
#[test]
fn a_reader_past_a_truncation_is_told_even_after_the_end_grows_back() {
    let fs = SimFs::new(3);
    let log = Log::open(Arc::new(fs.clone()), DIR, unbuffered()).unwrap();
    for i in 0..60 {
        append(&log, i, b'A');
    }
    assert!(common::count_segments(&fs, DIR.as_ref()) >= 2, "the first segment is sealed");
    let mut reader = log.reader(0).unwrap();
    for _ in 0..16 {
        reader.next_batch().unwrap().unwrap();
    }
    assert_eq!(reader.position(), 16);
    log.truncate(10).unwrap();
    for i in 10..30 {
        append(&log, i, b'B');
    }
    match reader.next_batch() {
        Err(Error::ReaderTruncated { .. }) => {}
        Ok(Some(batch)) => {
            let r = batch.records().next().unwrap().unwrap();
            panic!(
                "the reader returned old offsets 10..16 ('A'), then silently continued at offset {} with {:?}",
                r.offset,
                r.value.unwrap()[0] as char
            );
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[allow(dead_code)]
fn crash(fs: &SimFs) -> SimFs {
    fs.crash_image(0, &CrashOptions::durable_only())
}

#[allow(dead_code)]
fn _unused(_: &dyn Fs) {}

/// On the real file system: a truncation that cuts a sealed segment in place (no reader held
/// it at the moment of the check) shortens a file whose mapping is still cached in the old
/// `Segment`; a reader that looks the segment up from the old segment list during the cut
/// window reads the mapping past the new end of file: SIGBUS.
#[test]
#[ignore = "run in a child process by truncating_a_mapped_sealed_segment_under_readers_never_faults"]
fn sigbus_inner() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let tmp = common::TempDir::new("review-sigbus");
    for iteration in 0..300 {
        let dir = tmp.path.join(format!("log{iteration}"));
        let mut options = LogOptions::default();
        options.segment_bytes_max = 1 << 20;
        options.write_buffer_bytes = 0;
        options.index_interval_bytes = 4096;
        let log = Arc::new(Log::open(Arc::new(cairn_fs::RealFs::new()), &dir, options).unwrap());
        let value = vec![7u8; 60_000];
        let mut i = 0u64;
        while log.start_offset() == 0 && log.reader(0).is_ok() && i < 40 {
            log.append(Record::new(&i.to_le_bytes(), Some(&value), 0)).unwrap();
            i += 1;
        }
        log.sync().unwrap();
        // Read everything once: the sealed first segment's mapping is now cached.
        let all: Vec<_> = log.reader(0).unwrap().into_records().collect::<Result<_, _>>().unwrap();
        assert_eq!(all.len() as u64, i);
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let log = Arc::clone(&log);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(mut reader) = log.reader(14) {
                        let _ = reader.next_batch().map(|b| b.map(|b| b.len()));
                    }
                }
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(1));
        log.truncate(1).unwrap();
        stop.store(true, Ordering::Relaxed);
        reader.join().unwrap();
    }
}

#[test]
fn truncating_a_mapped_sealed_segment_under_readers_never_faults() {
    let exe = std::env::current_exe().unwrap();
    let status = std::process::Command::new(exe)
        .args(["--ignored", "--exact", "sigbus_inner", "--nocapture"])
        .status()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert!(
        status.success(),
        "the reader/truncate race killed the process: {status:?} (signal {:?})",
        status.signal()
    );
}

/// `open` creates missing parent directories with `create_dir_all` but fsyncs only the
/// immediate parent: the entries of the other new directories are never made durable, so a
/// power cut after an acknowledged `sync` can lose the whole log.
#[test]
fn directories_created_by_open_are_durable() {
    let fs = SimFs::new(4);
    let dir = "/data/tenant/log";
    let log = Log::open(Arc::new(fs.clone()), dir, small_options()).unwrap();
    for i in 0..5 {
        append(&log, i, b'A');
    }
    assert_eq!(log.sync().unwrap(), 5);
    let image = fs.crash_image(0, &CrashOptions::durable_only());
    let log = Log::open(Arc::new(image), dir, small_options()).unwrap();
    assert_eq!(log.end_offset(), 5, "acknowledged records lost after power cut");
}

/// A sync that flushes a sealed segment writes its index file (its durability marker) and makes
/// the marker's name durable too. Reviewed: the name was not synced, so after a power cut the
/// acknowledged segment fell back into the tail window and media damage in it was silently cut,
/// with every later segment. Now the marker survives, open trusts the segment, and the damage
/// is corruption when read, with nothing cut.
#[test]
fn damage_in_a_synced_sealed_segment_is_corruption_after_power_loss() {
    let fs = SimFs::new(5);
    let log = Log::open(Arc::new(fs.clone()), DIR, unbuffered()).unwrap();
    let mut i = 0;
    while common::count_segments(&fs, DIR.as_ref()) < 2 {
        append(&log, i, b'A');
        i += 1;
    }
    let acked = log.sync().unwrap();
    assert_eq!(acked, i);
    assert!(fs.exists(std::path::Path::new("/log/00000000000000000000.index")).unwrap());
    let image = fs.crash_image(0, &CrashOptions::durable_only());
    let marker = std::path::Path::new("/log/00000000000000000000.index");
    assert!(image.exists(marker).unwrap(), "the marker did not survive the power cut");
    // Media damage in the middle of the sealed, synced segment.
    let seg = std::path::Path::new("/log/00000000000000000000.log");
    let mut bytes = image.contents(seg).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    image.set_contents(seg, &bytes).unwrap();
    let log = Log::open(Arc::new(image), DIR, unbuffered()).unwrap();
    assert_eq!(log.end_offset(), acked, "acknowledged records cut");
    assert!(log.recovery_report().tail_cut.is_none());
    let read: Result<Vec<_>, _> = log.reader(0).unwrap().into_records().collect();
    match read {
        Err(Error::Corruption { file, .. }) => assert_eq!(file, seg),
        other => panic!("damage not reported on read: {other:?}"),
    }
}

/// `close` releases the directory lock and documents "Readers keep reading what was written".
/// A second handle opened after it has no idea of those readers: its truncation cuts a mapped
/// sealed segment in place, and the old reader faults (SIGBUS) on its next batch.
#[test]
#[ignore = "run in a child process by readers_of_a_closed_log_keep_the_directory_locked"]
fn sigbus_closed_inner() {
    let tmp = common::TempDir::new("review-sigbus-closed");
    let dir = tmp.path.join("log");
    let mut options = LogOptions::default();
    options.segment_bytes_max = 1 << 20;
    options.write_buffer_bytes = 0;
    let value = vec![7u8; 60_000];
    let log = Log::open(Arc::new(cairn_fs::RealFs::new()), &dir, options.clone()).unwrap();
    for i in 0..40u64 {
        log.append(Record::new(&i.to_le_bytes(), Some(&value), 0)).unwrap();
    }
    log.close().unwrap();
    let mut reader = log.reader(0).unwrap();
    for _ in 0..3 {
        reader.next_batch().unwrap().unwrap(); // maps the sealed first segment
    }
    eprintln!("reader at {}", reader.position());

    // While a reader of the closed log lives, no other handle can open the directory and cut
    // the file it maps.
    drop(log);
    let locked = Log::open(Arc::new(cairn_fs::RealFs::new()), &dir, options.clone());
    assert!(matches!(locked, Err(Error::Locked { .. })), "a second handle opened under a live reader");
    for _ in 0..16 {
        reader.next_batch().unwrap();
    }
    drop(reader);
    let second = Log::open(Arc::new(cairn_fs::RealFs::new()), &dir, options).unwrap();
    second.truncate(1).unwrap();
    assert_eq!(second.end_offset(), 1);
}

#[test]
fn readers_of_a_closed_log_keep_the_directory_locked() {
    let exe = std::env::current_exe().unwrap();
    let status = std::process::Command::new(exe)
        .args(["--ignored", "--exact", "sigbus_closed_inner", "--nocapture"])
        .status()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert!(status.success(), "the old reader was killed: {status:?} (signal {:?})", status.signal());
}

/// P5 "a missing segment ... is a typed error": deleting the newest segment file (every
/// earlier one carrying a valid durability marker) opens silently with the records gone.
#[test]
fn a_missing_newest_segment_is_corruption() {
    let fs = SimFs::new(6);
    let log = Log::open(Arc::new(fs.clone()), DIR, unbuffered()).unwrap();
    let mut i = 0;
    while common::count_segments(&fs, DIR.as_ref()) < 4 {
        append(&log, i, b'A');
        i += 1;
    }
    assert_eq!(log.sync().unwrap(), i);
    log.close().unwrap();
    drop(log);
    let names = fs.list_dir(DIR.as_ref()).unwrap();
    let last = names.iter().rfind(|n| n.to_string_lossy().ends_with(".log")).unwrap().clone();
    let prev = names.iter().filter(|n| n.to_string_lossy().ends_with(".log")).rev().nth(1).unwrap().clone();
    fs.remove_file(&std::path::Path::new(DIR).join(&last)).unwrap();
    eprintln!(
        "removed {last:?}; {prev:?} is now last and has a marker: {}",
        fs.exists(&std::path::Path::new(DIR).join(prev.to_string_lossy().replace(".log", ".index"))).unwrap()
    );
    match Log::open(Arc::new(fs.clone()), DIR, unbuffered()) {
        Err(Error::Corruption { .. }) => {}
        Ok(log) => panic!("opened silently: end {} of {i} synced records", log.end_offset()),
        Err(e) => panic!("{e}"),
    }
}

/// `batch_bytes_max` / `segment_bytes_max`: appends that join the open batch are sized with
/// their own first timestamp, not the open batch's, so a joined batch (and its segment) can
/// exceed both limits.
#[test]
fn joined_batches_respect_the_batch_and_segment_limits() {
    let fs = SimFs::new(7);
    let mut options = small_options(); // 4 KiB segments
    options.batch_bytes_max = 4096;
    options.write_buffer_bytes = 1 << 20;
    let log = Log::open(Arc::new(fs.clone()), DIR, options).unwrap();
    log.append(Record::new(b"", None, 0)).unwrap();
    let records: Vec<_> = (0..400).map(|_| Record::new(b"", None, i64::MIN)).collect();
    log.append_batch(&records).unwrap();
    log.flush().unwrap();
    let len = fs.contents(std::path::Path::new("/log/00000000000000000000.log")).unwrap().len();
    assert!(len <= 4096, "one batch of {len} bytes in a segment limited to 4096 (batch_bytes_max 4096)");
}

/// Group commit under threads and rolls: every record whose `sync` returned must survive a
/// power cut that keeps only durable state.
#[test]
fn group_commit_stress_keeps_every_acknowledged_record() {
    for round in 0..20u64 {
        let fs = SimFs::new(round);
        let log = Arc::new(Log::open(Arc::new(fs.clone()), DIR, small_options()).unwrap());
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let log = Arc::clone(&log);
                std::thread::spawn(move || {
                    let mut acked = Vec::new();
                    for i in 0..150u64 {
                        let key = format!("t{t}-{i}");
                        let offset = log.append(Record::new(key.as_bytes(), Some(&[1; 60]), 0)).unwrap();
                        if i % 3 == 0 {
                            let durable = log.sync().unwrap();
                            assert!(durable > offset);
                            acked.push((offset, key));
                        }
                    }
                    acked
                })
            })
            .collect();
        let acked: Vec<_> = threads.into_iter().flat_map(|h| h.join().unwrap()).collect();
        let image = fs.crash_image(round, &CrashOptions::durable_only());
        let log2 = Log::open(Arc::new(image), DIR, small_options()).unwrap();
        let records: Vec<OwnedRecord> =
            log2.reader(0).unwrap().into_records().collect::<Result<_, _>>().unwrap();
        for (offset, key) in acked {
            let r = records
                .get(offset as usize)
                .unwrap_or_else(|| panic!("round {round}: acked offset {offset} lost"));
            assert_eq!(r.key, key.as_bytes());
        }
    }
}

/// Crashes during recovery itself: record every sync point of `Log::open` on a crash image,
/// crash there, and check the result is still a durable prefix.
#[test]
fn crash_during_recovery_recovers_a_durable_prefix() {
    use common::sweep::{options_for, record_points, workload};
    let mut checked = 0;
    for seed in 1..40u64 {
        let options = options_for(seed);
        let points = record_points(&options, &workload(seed, 60));
        for (p, point) in points.iter().enumerate() {
            let image = point.snapshot.crash_image(seed * 1000 + p as u64, &CrashOptions::adversarial());
            image.record_sync_points(true);
            let log = match Log::open(Arc::new(image.clone()), DIR, options.clone()) {
                Ok(log) => log,
                Err(e) => panic!("{}: first open: {e}", point.label),
            };
            drop(log);
            for (q, rp) in image.take_sync_points().iter().enumerate() {
                for k in 0..3u64 {
                    let crash =
                        if k == 0 { CrashOptions::durable_only() } else { CrashOptions::adversarial() };
                    let second = rp.snapshot.crash_image(seed * 7 + q as u64 * 13 + k, &crash);
                    common::recover_prefix(
                        Arc::new(second),
                        DIR.as_ref(),
                        &options,
                        &point.appended,
                        point.floor,
                    )
                    .unwrap_or_else(|e| {
                        panic!("{}; crash in recovery at {:?} {}: {e}", point.label, rp.op, rp.path.display())
                    });
                    checked += 1;
                }
            }
        }
    }
    eprintln!("checked {checked} crash-in-recovery images");
}

/// Truncations under a reader (copy-and-rename path) and inside batches, with a crash at every
/// sync point.
#[test]
fn truncation_under_readers_crash_sweep() {
    use common::Rec;
    let mut images = 0;
    for seed in 0..30u64 {
        let fs = SimFs::new(seed);
        let mut options = small_options();
        options.write_buffer_bytes = [0usize, 512, 8192][(seed % 3) as usize];
        let log = Log::open(Arc::new(fs.clone()), DIR, options.clone()).unwrap();
        fs.record_sync_points(true);
        let mut appended: Vec<Rec> = Vec::new();
        let mut durable = 0u64;
        let mut points = Vec::new();
        let mut x = seed * 2654435761 + 1;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for step in 0..80u64 {
            let before = (appended.clone(), durable);
            let mut truncating = false;
            match rnd() % 10 {
                0..=4 => {
                    let n = 1 + rnd() % 4;
                    let recs: Vec<Rec> =
                        (0..n).map(|j| Rec::generate(seed * 100_000 + step * 10 + j, 200)).collect();
                    let r: Vec<_> = recs.iter().map(Rec::as_record).collect();
                    log.append_batch(&r).unwrap();
                    appended.extend(recs);
                }
                5..=7 => {
                    durable = log.sync().unwrap();
                }
                _ => {
                    if appended.is_empty() {
                        continue;
                    }
                    truncating = true;
                    let at = rnd() % appended.len() as u64;
                    log.flush().unwrap();
                    // Hold readers on the segment being cut and on the active one.
                    let mut r1 = log.reader(at).unwrap();
                    let _ = r1.next_batch().unwrap();
                    let mut r2 = log.reader(appended.len() as u64 - 1).unwrap();
                    let _ = r2.next_batch().unwrap();
                    log.truncate(at).unwrap();
                    appended.truncate(at as usize);
                    durable = at;
                }
            }
            for p in fs.take_sync_points() {
                let (visible, floor) = if truncating {
                    (before.0.clone(), before.1.min(durable))
                } else {
                    (appended.clone(), before.1)
                };
                points.push((p, visible, floor, step));
            }
        }
        for (p, visible, floor, step) in &points {
            for k in 0..3u64 {
                let crash = if k == 0 { CrashOptions::durable_only() } else { CrashOptions::adversarial() };
                let image = p.snapshot.crash_image(seed * 31 + k, &crash);
                common::recover_prefix(Arc::new(image), DIR.as_ref(), &options, visible, *floor)
                    .unwrap_or_else(|e| {
                        panic!("seed {seed} step {step} {:?} {}: {e}", p.op, p.path.display())
                    });
                images += 1;
            }
        }
    }
    eprintln!("checked {images} images");
}

/// A panic inside the group-commit leader's fsync (a panicking `Fs`) leaves `leader = true`
/// for good: every later `sync`, `truncate` and `close` blocks forever instead of failing.
#[test]
fn a_panic_in_the_fsync_leader_fails_later_syncs_instead_of_hanging() {
    use std::sync::atomic::Ordering;
    let fs = common::SlowFs::new(8);
    let armed = Arc::clone(&fs.panic_next_sync);
    let log = Arc::new(Log::open(Arc::new(fs), DIR, small_options()).unwrap());
    append(&log, 0, b'A');
    armed.store(true, Ordering::SeqCst);
    let first = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || log.sync())
    };
    assert!(first.join().is_err(), "the first sync should have panicked");
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            let _ = tx.send(log.sync().map_err(|e| e.to_string()));
        });
    }
    match rx.recv_timeout(std::time::Duration::from_secs(3)) {
        Ok(result) => assert!(result.is_err(), "a sync after a panicked fsync was acknowledged"),
        Err(_) => panic!("second sync still blocked after 3 s: the leader flag was never released"),
    }
    assert!(log.is_poisoned());
}

/// `Log::open` documents that nothing is changed on disk when it reports corruption; an empty
/// (or missing) directory opened with a known durable end gets a new segment file first.
#[test]
fn a_failed_open_with_a_known_durable_end_creates_nothing() {
    let fs = SimFs::new(9);
    fs.create_dir_all(DIR.as_ref()).unwrap();
    let mut options = small_options();
    options.known_durable_end = Some(5);
    let err = Log::open(Arc::new(fs.clone()), DIR, options).unwrap_err();
    assert!(matches!(err, Error::Corruption { .. }), "{err}");
    let names = fs.list_dir(DIR.as_ref()).unwrap();
    assert!(names.iter().all(|n| n != "00000000000000000000.log"), "a failed open created {names:?}");
}
