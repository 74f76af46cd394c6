//! Regression tests from the second independent review (of commit 99a23e9): each states the
//! behaviour it protects; five of them failed on that commit (the two `control_` ones passed).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cairn_changelog::{Error, Log, LogOptions, Record};
use cairn_fs::{Fs, SimFs};
use common::{SlowFs, small_options};

const DIR: &str = "/log";

fn unbuffered() -> LogOptions {
    let mut options = small_options();
    options.write_buffer_bytes = 0; // every append is its own batch, written and published at once
    options.index_interval_bytes = 1 << 20;
    options
}

/// Value: the generation byte, repeated.
fn append(log: &Log, i: u64, generation: u8) -> u64 {
    let key = format!("key{i:04}");
    log.append(Record::new(key.as_bytes(), Some(&[generation; 40]), 0)).unwrap()
}

/// A reader positioned at offset 55 (valid when it was made) while another thread truncates to
/// 45 and appends new records 45..70. Whatever the interleaving, the reader must not hand out
/// records of the new history from 55 on *before* telling the caller that the log was cut
/// below its position (that would splice: the caller skips the new 45..54 without knowing).
///
/// `advance` checks the truncation epoch at the top of an iteration, then `locate`s in the
/// segment list: when the truncation swaps the list (and the writer re-appends) between the
/// two, the reader reads the new history under the old epoch. The truncation holds the list
/// lock across its directory fsync, so a reader that calls `locate` then simply blocks there
/// and wakes up in the new list: the window is as wide as an fsync.
#[test]
fn a_reader_positioned_past_a_concurrent_truncation_reports_it_before_new_records() {
    let mut spliced = Vec::new();
    let tries = 20;
    for attempt in 0..tries {
        let fs = SlowFs::new(attempt);
        let mut options = unbuffered();
        options.index_interval_bytes = 1; // every batch indexed: a seek lands on the batch itself
        let log = Arc::new(Log::open(Arc::new(fs.clone()), DIR, options).unwrap());
        for i in 0..60 {
            append(&log, i, b'A');
        }
        log.sync().unwrap();
        let mut reader = log.reader(55).unwrap();
        fs.delay_us.store(2000, Ordering::SeqCst);
        let writer = {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                log.truncate(45).unwrap();
                for i in 45..70 {
                    append(&log, i, b'B');
                }
            })
        };
        // Let the truncation reach its fsyncs under the segment-list lock.
        std::thread::sleep(Duration::from_micros(5000));
        let first = match reader.next_batch() {
            Ok(Some(batch)) => {
                let r = batch.records().next().unwrap().unwrap();
                Some((r.offset, r.value.unwrap()[0]))
            }
            Ok(None) | Err(Error::ReaderTruncated { .. }) => None,
            Err(e) => panic!("attempt {attempt}: {e}"),
        };
        writer.join().unwrap();
        fs.delay_us.store(0, Ordering::SeqCst);
        if let Some((offset, generation)) = first
            && generation == b'B'
        {
            let next = reader.next_batch().map(|b| b.map(|b| b.first_offset()));
            spliced.push(format!(
                "attempt {attempt}: first batch at {offset} of the new history ('B'), then {next:?}"
            ));
        }
    }
    assert!(
        spliced.is_empty(),
        "{} of {tries} readers returned new-history records before ReaderTruncated:\n{}",
        spliced.len(),
        spliced.join("\n")
    );
}

/// The same, for a reader that had already returned old records past the cut (45..55), and is
/// at the end of a sealed segment. Here `advance` re-checks after `locate` (`continue`), so it
/// should be told; kept as a control.
#[test]
fn control_a_reader_at_a_sealed_segment_end_is_told() {
    for attempt in 0..5 {
        let fs = SlowFs::new(100 + attempt);
        let log = Arc::new(Log::open(Arc::new(fs.clone()), DIR, unbuffered()).unwrap());
        let mut i = 0;
        while common::count_segments(&fs.inner, DIR.as_ref()) < 2 {
            append(&log, i, b'A');
            i += 1;
        }
        // i - 1 is the first record of segment 2; the reader reads segment 1 to its end.
        let end_of_first = i - 1;
        log.sync().unwrap();
        let mut reader = log.reader(0).unwrap();
        while reader.position() < end_of_first {
            reader.next_batch().unwrap().unwrap();
        }
        fs.delay_us.store(2000, Ordering::SeqCst);
        let cut = end_of_first - 5;
        let writer = {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                log.truncate(cut).unwrap();
                for j in cut..cut + 20 {
                    append(&log, j, b'B');
                }
            })
        };
        std::thread::sleep(Duration::from_micros(5000));
        let got =
            reader.next_batch().map(|b| b.map(|b| b.records().next().unwrap().unwrap().value.unwrap()[0]));
        writer.join().unwrap();
        match got {
            Err(Error::ReaderTruncated { .. }) | Ok(None) => {}
            Ok(Some(b'A')) => {} // read before the truncation
            other => panic!("attempt {attempt}: {other:?}"),
        }
    }
}

/// After an fsync leader panicked, the group commit is failed for good, but the log is only
/// marked poisoned when some later caller of `sync`/`truncate`/`close` asks for the error:
/// until then `is_poisoned()` is false and appends and flushes succeed and become visible to
/// readers, though they can never be made durable.
#[test]
fn after_a_panicked_fsync_leader_the_log_reports_poisoned_at_once() {
    let fs = SlowFs::new(7);
    let log = Arc::new(Log::open(Arc::new(fs.clone()), DIR, small_options()).unwrap());
    append(&log, 0, b'A');
    fs.panic_next_sync.store(true, Ordering::SeqCst);
    let handle = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || log.sync())
    };
    assert!(handle.join().is_err(), "the sync should have panicked");
    let poisoned_now = log.is_poisoned();
    let append_after = log.append(Record::new(b"later", Some(b"v"), 0));
    let flush_after = log.flush();
    let visible = log.written_offset();
    assert!(
        poisoned_now && append_after.is_err() && flush_after.is_err(),
        "after the leader's panic: is_poisoned() = {poisoned_now}, append = {append_after:?}, \
         flush = {flush_after:?}, written offset {visible} (readers see the new record)"
    );
}

/// The splice proper: a reader that has returned old records 45..54 ('A') and is at 55, after a
/// harmless truncation above it (to 58, which only drops its cursor), keeps reading while
/// another thread truncates to 45 and appends new records ('B'). It returns 'B' at 55 right
/// after 'A' at 54, without an error in between: the caller's view is 'A' 0..54 then 'B' 55..,
/// a history the log never had. (The next call does report `ReaderTruncated`.)
#[test]
fn a_reader_never_splices_old_and_new_history() {
    let mut spliced = Vec::new();
    let tries = 20;
    for attempt in 0..tries {
        let fs = SlowFs::new(200 + attempt);
        let mut options = unbuffered();
        options.index_interval_bytes = 1; // every batch indexed: a seek lands on the batch itself
        let log = Arc::new(Log::open(Arc::new(fs.clone()), DIR, options).unwrap());
        for i in 0..60 {
            append(&log, i, b'A');
        }
        log.sync().unwrap();
        let mut reader = log.reader(0).unwrap();
        let mut returned = Vec::new();
        while reader.position() < 55 {
            let batch = reader.next_batch().unwrap().unwrap();
            for r in batch.records() {
                let r = r.unwrap();
                returned.push((r.offset, r.value.unwrap()[0]));
            }
        }
        log.truncate(58).unwrap(); // above the reader: it only drops its cursor on its next call
        fs.delay_us.store(2000, Ordering::SeqCst);
        let writer = {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                log.truncate(45).unwrap();
                for i in 45..70 {
                    append(&log, i, b'B');
                }
            })
        };
        std::thread::sleep(Duration::from_micros(5000));
        if let Ok(Some(batch)) = reader.next_batch() {
            for r in batch.records() {
                let r = r.unwrap();
                returned.push((r.offset, r.value.unwrap()[0]));
            }
        }
        writer.join().unwrap();
        let tail: Vec<_> = returned.iter().filter(|(o, _)| *o >= 53).collect();
        if returned.iter().any(|(o, g)| *o >= 45 && *g == b'A') && returned.iter().any(|(_, g)| *g == b'B') {
            spliced.push(format!("attempt {attempt}: returned without error ... {tail:?}"));
        }
    }
    assert!(
        spliced.is_empty(),
        "{} of {tries} readers spliced the truncated history with the new one:\n{}",
        spliced.len(),
        spliced.join("\n")
    );
}

/// Joined batches never exceed `batch_bytes_max` nor push a segment past `segment_bytes_max`,
/// whatever the timestamps (randomized; passes).
#[test]
fn joined_batches_respect_the_limits_randomized() {
    for seed in 0..200u64 {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let fs = SimFs::new(seed);
        let mut options = small_options();
        options.batch_bytes_max = 51 + rnd() % 4096;
        options.write_buffer_bytes = 1 << 20;
        let limit = options.batch_bytes_max.min(options.segment_bytes_max);
        let log = Log::open(Arc::new(fs.clone()), DIR, options.clone()).unwrap();
        let ts = [0i64, 1, -1, i64::MIN, i64::MAX, 1 << 40];
        for _ in 0..60 {
            let n = 1 + (rnd() % 5) as usize;
            let keys: Vec<Vec<u8>> = (0..n).map(|_| vec![1u8; (rnd() % 40) as usize]).collect();
            let values: Vec<Vec<u8>> = (0..n).map(|_| vec![2u8; (rnd() % 300) as usize]).collect();
            let stamps: Vec<i64> = (0..n).map(|_| ts[(rnd() % 6) as usize]).collect();
            let records: Vec<Record<'_>> =
                (0..n).map(|i| Record::new(&keys[i], Some(&values[i]), stamps[i])).collect();
            match log.append_batch(&records) {
                Ok(_) | Err(Error::BatchTooLarge { .. }) => {}
                Err(e) => panic!("{e}"),
            }
            if rnd() % 7 == 0 {
                log.flush().unwrap();
            }
        }
        log.flush().unwrap();
        for name in fs.list_dir(DIR.as_ref()).unwrap() {
            let name = name.to_string_lossy().to_string();
            if !name.ends_with(".log") {
                continue;
            }
            let bytes = fs.contents(&Path::new(DIR).join(&name)).unwrap();
            assert!(
                bytes.len() as u64 <= options.segment_bytes_max,
                "seed {seed}: {name} is {} bytes",
                bytes.len()
            );
            let mut at = 0usize;
            while at < bytes.len() {
                if bytes[at..].iter().all(|b| *b == 0) {
                    break; // preallocated space after the last batch
                }
                let len = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as u64;
                assert!(len <= limit, "seed {seed}: batch of {len} bytes at {at} in {name}, limit {limit}");
                at += len as usize;
            }
        }
        drop(log);
        let reopened = Log::open(Arc::new(fs.clone()), DIR, options).unwrap();
        assert!(reopened.recovery_report().tail_cut.is_none(), "seed {seed}");
    }
}

/// Syncs, truncations and a final close from several threads, with gathering leaders: nobody
/// hangs, every sync either covers its record or reports that a truncation removed it (passes).
#[test]
fn syncs_truncations_and_close_never_hang() {
    for round in 0..5u64 {
        let fs = SimFs::new(round);
        let log = Arc::new(Log::open(Arc::new(fs.clone()), DIR, small_options()).unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for t in 0..4u64 {
            let log = Arc::clone(&log);
            let stop = Arc::clone(&stop);
            handles.push(std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("t{t}-{n}");
                    let offset = match log.append(Record::new(key.as_bytes(), Some(&[1; 60]), 0)) {
                        Ok(o) => o,
                        Err(Error::Closed) => break,
                        Err(e) => panic!("{e}"),
                    };
                    match log.sync() {
                        Ok(_durable) => {}
                        Err(Error::Closed) => break,
                        Err(e) => panic!("{e}"),
                    }
                    let _ = offset;
                    n += 1;
                }
                n
            }));
        }
        {
            let log = Arc::clone(&log);
            let stop = Arc::clone(&stop);
            handles.push(std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let end = log.durable_offset();
                    match log.truncate(end.saturating_sub(3).max(log.start_offset())) {
                        Ok(()) | Err(Error::Closed) => {}
                        Err(e) => panic!("{e}"),
                    }
                    n += 1;
                    std::thread::sleep(Duration::from_micros(300));
                }
                n
            }));
        }
        std::thread::sleep(Duration::from_millis(400));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let log = Arc::clone(&log);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                log.close().unwrap();
                stop.store(true, Ordering::Relaxed);
                let counts: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
                let _ = tx.send(counts);
            });
        }
        let counts = rx.recv_timeout(Duration::from_secs(20)).expect("a thread hung");
        eprintln!("round {round}: {counts:?}");
    }
}

/// A `sync` whose target was computed before a `truncate` lowered the durable end and a
/// `close` followed becomes fsync leader, meets `Closed` inside the commit, and marks the group
/// commit failed without a poison cause. Every later `truncate`/`close`/`sync` then poisons the
/// log with "an earlier sync panicked during its fsync" although nothing panicked, and
/// `is_poisoned()` turns true on a cleanly closed log.
#[test]
fn a_sync_racing_truncate_and_close_does_not_fake_a_panic() {
    let mut seen = Vec::new();
    let mut orders = std::collections::BTreeMap::new();
    for attempt in 0..100u64 {
        let fs = SlowFs::new(300 + attempt);
        let log = Arc::new(Log::open(Arc::new(fs.clone()), DIR, unbuffered()).unwrap());
        for i in 0..11 {
            append(&log, i, b'A');
        }
        log.sync().unwrap();
        fs.delay_us.store(20_000, Ordering::SeqCst);
        append(&log, 11, b'A');
        // L: a slow fsync leader covering record 11.
        let leader = {
            let log = Arc::clone(&log);
            std::thread::spawn(move || log.sync())
        };
        std::thread::sleep(Duration::from_millis(5));
        fs.delay_us.store(0, Ordering::SeqCst);
        append(&log, 12, b'A'); // after L captured its end
        // S: its target (13) is computed now; it parks behind L.
        let syncer = {
            let log = Arc::clone(&log);
            std::thread::spawn(move || log.sync())
        };
        std::thread::sleep(Duration::from_millis(2));
        // T takes over as soon as L has published (before S wakes up), and C as soon as T has.
        let truncator = {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                while log.durable_offset() < 12 {
                    std::hint::spin_loop();
                }
                log.truncate(5)
            })
        };
        let closer = {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                while log.durable_offset() != 5 {
                    std::hint::spin_loop();
                }
                log.close()
            })
        };
        let l = leader.join().unwrap();
        let t = truncator.join().unwrap();
        let c = closer.join().unwrap();
        let s = syncer.join().unwrap();
        let after = log.truncate(0);
        *orders.entry(format!("L {l:?} T {t:?} C {c:?} S {s:?}")).or_insert(0) += 1;
        if log.is_poisoned() || matches!(&after, Err(Error::Poisoned { .. })) {
            seen.push(format!(
                "attempt {attempt}: truncate {t:?}, close {c:?}, sync {s:?}; then truncate(0) = {after:?}, \
                 is_poisoned() = {}",
                log.is_poisoned()
            ));
        }
    }
    eprintln!("{orders:#?}");
    assert!(
        seen.is_empty(),
        "{} of 100 cleanly closed logs reported as poisoned:\n{}",
        seen.len(),
        seen.join("\n")
    );
}
