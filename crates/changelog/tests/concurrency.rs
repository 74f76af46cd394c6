//! Readers running beside the writer (DESIGN §4): appends, syncs, rolls and truncations on
//! one thread, readers on others, on real files with tiny segments (so sealed, mapped segments
//! are read while later ones are written and earlier ones cut). Every record names its own
//! offset and the truncation generation that wrote it, so a reader can check whatever it gets:
//! the right offset, in order, without gaps, and never bytes that were not published.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use cairn_changelog::{Error, Log, ReadLimit, Record};
use cairn_fs::{Fs, RealFs, SimFs};
use common::{TempDir, small_options};

fn value_for(offset: u64, generation: u64) -> Vec<u8> {
    let mut value = Vec::with_capacity(64);
    value.extend_from_slice(&offset.to_le_bytes());
    value.extend_from_slice(&generation.to_le_bytes());
    value.resize(16 + (offset % 48) as usize, (offset % 251) as u8);
    value
}

/// Reads from `from` to the end; checks every record; returns how many it read.
fn read_and_check(log: &Log, from: u64, limit: ReadLimit) -> Result<u64, Error> {
    let mut reader = log.reader_with(from, limit)?;
    let mut expected = from;
    while let Some(batch) = reader.next_batch()? {
        for record in batch.records() {
            let record = record?;
            assert_eq!(record.offset, expected, "records out of order or with a hole");
            assert_eq!(record.key, record.offset.to_be_bytes(), "key of another offset");
            let value = record.value.expect("no value");
            let offset = u64::from_le_bytes(value[..8].try_into().unwrap());
            let generation = u64::from_le_bytes(value[8..16].try_into().unwrap());
            assert_eq!(offset, record.offset, "value of another offset");
            assert_eq!(value, value_for(offset, generation), "damaged value");
            expected += 1;
        }
    }
    Ok(expected - from)
}

fn run(fs: Arc<dyn Fs>, dir: &std::path::Path, rounds: u64) {
    let mut options = small_options();
    options.write_buffer_bytes = 300;
    let log = Arc::new(Log::open(fs, dir, options).unwrap());
    let generation = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|r| {
            let (log, done) = (Arc::clone(&log), Arc::clone(&done));
            std::thread::spawn(move || {
                let mut read = 0;
                let mut seed = r as u64 + 1;
                while !done.load(Ordering::Acquire) {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let end = log.written_offset();
                    let from = if end == 0 { 0 } else { (seed >> 33) % end };
                    let limit = if seed.is_multiple_of(2) { ReadLimit::Written } else { ReadLimit::Durable };
                    match read_and_check(&log, from, limit) {
                        Ok(n) => read += n,
                        // A truncation may pass the reader, or remove its start before it begins.
                        Err(Error::ReaderTruncated { .. } | Error::OffsetOutOfRange { .. }) => {}
                        Err(e) => panic!("reader {r}: {e}"),
                    }
                }
                read
            })
        })
        .collect();

    let mut x = 7u64;
    for round in 0..rounds {
        let gen_now = generation.load(Ordering::Acquire);
        for _ in 0..40 {
            let offset = log.end_offset();
            log.append(Record::new(&offset.to_be_bytes(), Some(&value_for(offset, gen_now)), 0)).unwrap();
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            if x >> 60 == 0 {
                log.sync().unwrap();
            }
        }
        if round % 5 == 4 {
            let end = log.end_offset();
            let at = end - (x >> 40) % (end / 3 + 1);
            // Values written from here on carry the next generation.
            generation.store(gen_now + 1, Ordering::Release);
            log.truncate(at).unwrap();
        } else {
            log.flush().unwrap();
        }
    }
    done.store(true, Ordering::Release);
    let read: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(read > 0, "readers read nothing");
    log.close().unwrap();
}

#[test]
fn readers_beside_appends_rolls_and_truncations_on_real_files() {
    let dir = TempDir::new("concurrency");
    run(Arc::new(RealFs::new()), &dir.path.join("log"), 300);
}

#[test]
fn readers_beside_appends_rolls_and_truncations_on_the_simulator() {
    run(Arc::new(SimFs::new(1)), "/log".as_ref(), 150);
}

#[test]
fn a_reader_after_a_truncation_reads_the_new_records_not_its_buffer() {
    let fs = Arc::new(SimFs::new(2));
    let mut options = small_options();
    options.write_buffer_bytes = 0;
    let log = Log::open(fs, "/log", options).unwrap();
    for offset in 0..10u64 {
        log.append(Record::new(&offset.to_be_bytes(), Some(&value_for(offset, 0)), 0)).unwrap();
    }
    let mut reader = log.reader(0).unwrap();
    let first = reader.next_batch().unwrap().unwrap().records().next().unwrap().unwrap().to_owned_record();
    assert_eq!(first.value, Some(value_for(0, 0)));
    // Same offsets, new contents, in the same file at the same positions.
    log.truncate(0).unwrap();
    for offset in 0..10u64 {
        log.append(Record::new(&offset.to_be_bytes(), Some(&value_for(offset, 1)), 0)).unwrap();
    }
    reader.seek(0).unwrap();
    let records: Vec<_> = reader.into_records().collect::<Result<_, _>>().unwrap();
    assert_eq!(records.len(), 10);
    for record in records {
        assert_eq!(
            record.value,
            Some(value_for(record.offset, 1)),
            "stale bytes at offset {}",
            record.offset
        );
    }
}

/// The key of the record at `offset` in the compaction workload: 64 keys, written in turn.
fn compaction_key(offset: u64) -> [u8; 8] {
    (offset % 64).to_be_bytes()
}

/// Reads from 0 to the end and checks what compaction promises a reader: records in offset
/// order, each the one appended at its offset, and for every key its latest record below where
/// the reader stopped. Returns where it stopped.
fn read_compacting(log: &Log) -> Result<u64, Error> {
    let mut reader = log.reader(0)?;
    let mut last_of_key = [None::<u64>; 64];
    let mut previous = None;
    while let Some(batch) = reader.next_batch()? {
        for record in batch.records() {
            let record = record?;
            assert!(previous.is_none_or(|p| record.offset > p), "offsets out of order at {}", record.offset);
            previous = Some(record.offset);
            assert_eq!(record.key, compaction_key(record.offset), "key of another offset");
            assert_eq!(record.value, Some(&value_for(record.offset, 0)[..]), "value of another offset");
            last_of_key[(record.offset % 64) as usize] = Some(record.offset);
        }
    }
    let end = reader.position();
    for (key, last) in last_of_key.iter().enumerate() {
        // The latest record of the key below `end`: written at the last offset ≡ key (mod 64).
        let latest = (end > key as u64).then(|| end - 1 - (end - 1 - key as u64) % 64);
        assert_eq!(*last, latest, "key {key}: the latest record below {end} is missing");
    }
    Ok(end)
}

fn run_with_compaction(fs: Arc<dyn Fs>, dir: &std::path::Path, records: u64) {
    let mut options = small_options();
    options.segment_bytes_max = 8192;
    let log = Arc::new(Log::open(fs, dir, options).unwrap());
    let done = AtomicBool::new(false);
    let passes = AtomicU64::new(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            for offset in 0..records {
                log.append(Record::new(&compaction_key(offset), Some(&value_for(offset, 0)), 0)).unwrap();
                if offset % 97 == 0 {
                    log.sync().unwrap();
                }
            }
            log.sync().unwrap();
            done.store(true, Ordering::Release);
        });
        s.spawn(|| {
            let mut options = cairn_changelog::CompactOptions::default();
            options.roll_active_bytes_min = Some(2048);
            options.merge_below_bytes = Some(4096);
            while !done.load(Ordering::Acquire) {
                log.compact(log.durable_offset(), &options).unwrap();
                passes.fetch_add(1, Ordering::Relaxed);
            }
            log.compact(log.durable_offset(), &options).unwrap();
        });
        for _ in 0..2 {
            s.spawn(|| {
                let mut reads = 0;
                while !done.load(Ordering::Acquire) || reads < 3 {
                    read_compacting(&log).unwrap();
                    reads += 1;
                }
            });
        }
    });
    eprintln!("{} passes beside the appends", passes.load(Ordering::Relaxed));
    assert!(passes.load(Ordering::Relaxed) > 3, "too few passes ran beside the appends");
    let end = read_compacting(&log).unwrap();
    assert_eq!(end, records);
    assert!(common::read_from(&log, 0).len() < 64 * 20, "the log was hardly compacted");
}

#[test]
fn readers_and_appends_beside_repeated_compactions_on_real_files() {
    let dir = TempDir::new("concurrent-compaction");
    run_with_compaction(Arc::new(RealFs::new()), &dir.path.join("log"), 60_000);
}

#[test]
fn readers_and_appends_beside_repeated_compactions_on_the_simulator() {
    run_with_compaction(Arc::new(SimFs::new(3)), "/log".as_ref(), 30_000);
}
