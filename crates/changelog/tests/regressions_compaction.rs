//! One test per finding of the review of compaction and retention. Each fails on the code as it
//! was reviewed (checked by running them there), except the version-1 round trip, which guards
//! the upgrade path the fix added.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cairn_changelog::{CompactOptions, DeleteHorizon, Error, Log, LogOptions, Record};
use cairn_fs::{Fs, OpenMode, SimFs};
use common::{SlowFs, read_from, small_options};

fn compact_all() -> CompactOptions {
    let mut options = CompactOptions::default();
    options.roll_active_bytes_min = Some(0);
    options
}

/// Finding 1: a clean segment kept as the active one by a truncation received appends (a put and
/// a tombstone of a new key); a rebuilt index then called the whole segment clean, and a pass
/// dropped the expired tombstone while the put it deletes survived: the key came back.
#[test]
fn a_truncation_into_a_clean_segment_never_makes_appended_records_clean() {
    for verify in [false, true] {
        let fs = SimFs::new(1);
        let log = Log::open(Arc::new(fs.clone()), "/log", small_options()).unwrap();
        for i in 0..50u32 {
            log.append(Record::new(format!("k{}", i % 5).as_bytes(), Some(b"v"), 0)).unwrap();
        }
        let limit = log.sync().unwrap();
        log.compact(limit, &compact_all()).unwrap();
        log.append(Record::new(b"x", Some(b"later"), 0)).unwrap();
        log.sync().unwrap();
        log.truncate(limit).unwrap();
        log.append(Record::new(b"deleted", Some(b"alive"), 0)).unwrap();
        log.append(Record::new(b"deleted", None, 0)).unwrap();
        // Roll it (with enough filler) and make it durable.
        for i in 0..60u32 {
            log.append(Record::new(format!("filler-{i}").as_bytes(), Some(&[b'f'; 100]), 0)).unwrap();
        }
        log.sync().unwrap();
        log.close().unwrap();
        drop(log);
        if !verify {
            // Lose the index of the segment that was clean, so that open rebuilds it.
            let name = format!("{:020}.index", 0);
            fs.remove_file(&Path::new("/log").join(name)).unwrap();
        }
        let mut options = small_options();
        options.verify_on_open = verify;
        let log = Log::open(Arc::new(fs.clone()), "/log", options).unwrap();
        let mut compact = compact_all();
        compact.delete_horizon = DeleteHorizon::AfterTimestamp(Duration::ZERO);
        compact.now_ms = Some(1);
        let end = log.sync().unwrap();
        log.compact(end, &compact).unwrap();
        let deleted: Vec<_> = read_from(&log, 0).into_iter().filter(|r| r.key == b"deleted").collect();
        assert!(
            deleted.iter().all(|r| r.value.is_none()),
            "verify {verify}: a deleted key came back: {deleted:?}"
        );
    }
}

/// Finding 2: opening with `verify_on_open` rewrote every clean segment's index (as dirty, or
/// with its first-seen times reset), so tombstones under `AfterFirstSeen` never expired.
#[test]
fn verifying_on_open_keeps_the_indexes_of_clean_segments() {
    let fs = SimFs::new(2);
    let log = Log::open(Arc::new(fs.clone()), "/log", small_options()).unwrap();
    log.append(Record::new(b"gone", Some(b"v"), 0)).unwrap();
    log.append(Record::new(b"gone", None, 0)).unwrap();
    for i in 0..100u32 {
        log.append(Record::new(format!("k{i}").as_bytes(), Some(&[b'v'; 50]), 0)).unwrap();
    }
    let end = log.sync().unwrap();
    let mut compact = compact_all();
    compact.delete_horizon = DeleteHorizon::AfterFirstSeen(Duration::from_millis(100));
    compact.now_ms = Some(1_000);
    log.compact(end, &compact).unwrap();
    log.close().unwrap();
    drop(log);
    let mut options = small_options();
    options.verify_on_open = true;
    let log = Log::open(Arc::new(fs.clone()), "/log", options).unwrap();
    assert_eq!(log.recovery_report().indexes_rebuilt, 0, "clean indexes rewritten on a verifying open");
    compact.now_ms = Some(1_100);
    let report = log.compact(end, &compact).unwrap();
    assert_eq!(report.tombstones_dropped, 1, "{report:?}");
    assert!(read_from(&log, 0).iter().all(|r| r.key != b"gone"));
}

/// Finding 3: a segment rolled exactly at the durable end waits for its marker until the next
/// sync; a pass took it anyway, and that sync then wrote the old index over the compacted one.
#[test]
fn a_pass_leaves_segments_whose_marker_is_not_written_yet() {
    let fs = SimFs::new(3);
    let mut options = small_options();
    options.segment_age_ms_max = Some(1);
    let log = Log::open(Arc::new(fs.clone()), "/log", options.clone()).unwrap();
    for i in 0..40u32 {
        log.append(Record::new(format!("k{}", i % 4).as_bytes(), Some(b"v"), 0)).unwrap();
    }
    let durable = log.sync().unwrap();
    std::thread::sleep(Duration::from_millis(5));
    // This append rolls the segment (by age) at the durable end; it waits for the next sync.
    log.append(Record::new(b"after", Some(b"roll"), 0)).unwrap();
    let mut compact = CompactOptions::default();
    compact.roll_active_bytes_min = None;
    log.compact(durable, &compact).unwrap();
    log.sync().unwrap();
    let expected = read_from(&log, 0);
    log.close().unwrap();
    drop(log);
    let log = Log::open(Arc::new(fs), "/log", options).unwrap();
    assert_eq!(log.recovery_report().indexes_rebuilt, 0, "an index was overwritten");
    assert_eq!(read_from(&log, 0), expected);
}

/// Finding 4: the index header grew under the same version number, so every index of a log
/// written by the first cairn was refused, every segment fell into the tail window, and the
/// log could be cut. Version-1 indexes are now read as markers (and rewritten).
#[test]
fn a_log_with_version_1_indexes_opens_whole_and_upgrades_them() {
    let fs = SimFs::new(4);
    let log = Log::open(Arc::new(fs.clone()), "/log", small_options()).unwrap();
    for i in 0..400u32 {
        log.append(Record::new(format!("key-{i}").as_bytes(), Some(&[b'v'; 60]), i64::from(i))).unwrap();
    }
    log.close().unwrap();
    let expected = read_from(&log, 0);
    drop(log);
    // Rewrite every index in the first cairn's layout.
    let dir = Path::new("/log");
    let mut indexes = 0;
    for name in fs.list_dir(dir).unwrap() {
        let name = name.into_string().unwrap();
        if !name.ends_with(".index") {
            continue;
        }
        let path = dir.join(&name);
        let current = fs.contents(&path).unwrap();
        let entry_count = u32::from_le_bytes(current[40..44].try_into().unwrap()) as usize;
        let entries = &current[96..96 + 8 * entry_count];
        let mut old = Vec::new();
        old.extend_from_slice(&current[0..4]);
        old.extend_from_slice(&1u16.to_le_bytes());
        old.extend_from_slice(&current[6..44]);
        old.extend_from_slice(&crc32c::crc32c(entries).to_le_bytes());
        let header_crc = crc32c::crc32c(&old);
        old.extend_from_slice(&header_crc.to_le_bytes());
        old.extend_from_slice(&0u32.to_le_bytes());
        old.extend_from_slice(entries);
        drop(fs.open(&path, OpenMode::CreateTruncate).unwrap());
        fs.set_contents(&path, &old).unwrap();
        indexes += 1;
    }
    assert!(indexes > 5);
    let mut options = small_options();
    options.known_durable_end = Some(400);
    let log = Log::open(Arc::new(fs.clone()), "/log", options.clone()).unwrap();
    assert!(log.recovery_report().tail_cut.is_none());
    assert_eq!(log.recovery_report().indexes_rebuilt, indexes, "version-1 indexes are rewritten");
    assert_eq!(read_from(&log, 0), expected);
    drop(log);
    let log = Log::open(Arc::new(fs.clone()), "/log", options).unwrap();
    assert_eq!(log.recovery_report().indexes_rebuilt, 0);
    assert_eq!(read_from(&log, 0), expected);
}

/// Finding 4, continued: a version-1 index is a durability marker, so damage in a segment it
/// marks is corruption to report, not a torn tail to cut.
#[test]
fn damage_under_a_version_1_marker_is_corruption_not_a_cut() {
    let fs = SimFs::new(8);
    let log = Log::open(Arc::new(fs.clone()), "/log", small_options()).unwrap();
    for i in 0..400u32 {
        log.append(Record::new(format!("key-{i}").as_bytes(), Some(&[b'v'; 60]), 0)).unwrap();
    }
    log.close().unwrap();
    drop(log);
    let dir = Path::new("/log");
    let mut names: Vec<String> =
        fs.list_dir(dir).unwrap().into_iter().map(|n| n.into_string().unwrap()).collect();
    names.sort();
    for name in names.iter().filter(|n| n.ends_with(".index")) {
        let path = dir.join(name);
        let current = fs.contents(&path).unwrap();
        let mut old = Vec::new();
        old.extend_from_slice(&current[0..4]);
        old.extend_from_slice(&1u16.to_le_bytes());
        old.extend_from_slice(&current[6..40]);
        old.extend_from_slice(&0u32.to_le_bytes()); // no entries
        old.extend_from_slice(&crc32c::crc32c(&[]).to_le_bytes());
        let header_crc = crc32c::crc32c(&old);
        old.extend_from_slice(&header_crc.to_le_bytes());
        old.extend_from_slice(&0u32.to_le_bytes());
        drop(fs.open(&path, OpenMode::CreateTruncate).unwrap());
        fs.set_contents(&path, &old).unwrap();
    }
    // Damage the second segment, which later marked segments follow.
    let second = names.iter().filter(|n| n.ends_with(".log")).nth(1).unwrap();
    let path = dir.join(second);
    let mut bytes = fs.contents(&path).unwrap();
    bytes[100] ^= 0x10;
    fs.set_contents(&path, &bytes).unwrap();
    match Log::open(Arc::new(fs), "/log", small_options()) {
        Err(Error::Corruption { file, .. }) => assert_eq!(file, path),
        Ok(log) => panic!("damage cut silently: the log ends at {}", log.end_offset()),
        Err(other) => panic!("{other}"),
    }
}

/// Finding 4, the batches: a dense batch keeps byte 28 reserved as zero, as the first cairn
/// wrote it (a later version had put its span there, so old batches failed to check).
#[test]
fn dense_batches_keep_their_reserved_word_at_zero() {
    let fs = SimFs::new(5);
    let log = Log::open(Arc::new(fs.clone()), "/log", LogOptions::default()).unwrap();
    log.append_batch(&[Record::new(b"a", Some(b"1"), 0), Record::new(b"b", Some(b"2"), 0)]).unwrap();
    log.close().unwrap();
    drop(log);
    let bytes = fs.contents(&Path::new("/log").join(format!("{:020}.log", 0))).unwrap();
    assert_eq!(u32::from_le_bytes(bytes[24..28].try_into().unwrap()), 2);
    assert_eq!(u32::from_le_bytes(bytes[28..32].try_into().unwrap()), 0);
}

/// Finding 5: when the key map could not hold one whole dirty segment, no pass ever compacted
/// anything. A pass now maps what fits, splits that segment, and the next pass goes on.
#[test]
fn a_key_map_smaller_than_a_segment_still_compacts_everything_over_several_passes() {
    let mut options = small_options();
    options.segment_bytes_max = 64 << 10;
    let log = Log::open(Arc::new(SimFs::new(6)), "/log", options).unwrap();
    for i in 0..3000u32 {
        log.append(Record::new(
            format!("key-{:04}", i % 1000).as_bytes(),
            Some(format!("{i}").as_bytes()),
            0,
        ))
        .unwrap();
    }
    let end = log.sync().unwrap();
    let mut compact = compact_all();
    compact.key_map_bytes_max = 4096;
    let mut passes = 0;
    loop {
        let report = log.compact(end, &compact).unwrap();
        passes += 1;
        assert!(passes < 200, "no progress: {report:?}");
        if !report.blocked.iter().any(|b| matches!(b, cairn_changelog::Blocked::KeyMapFull { .. })) {
            break;
        }
        assert!(report.records_before > report.records_after || report.segments_written > 0, "{report:?}");
    }
    assert!(passes > 3, "the map was not small: {passes} passes");
    let read = read_from(&log, 0);
    assert_eq!(read.len(), 1000, "after {passes} passes");
    assert!(read.iter().all(|r| r.offset >= 2000));
}

/// Finding 6: a panic while installing a pass left it half installed in a usable log.
#[test]
fn a_panic_while_installing_a_pass_poisons_the_log_and_reopening_completes_it() {
    let fs = SlowFs::new(7);
    let log = Log::open(Arc::new(fs.clone()), "/log", small_options()).unwrap();
    for i in 0..300u32 {
        log.append(Record::new(format!("k{}", i % 7).as_bytes(), Some(&[b'v'; 40]), 0)).unwrap();
    }
    let end = log.sync().unwrap();
    *fs.panic_on_rename_of.lock().unwrap() = Some(".index.compacting".into());
    let panicked =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| log.compact(end, &compact_all())));
    assert!(panicked.is_err(), "the injected panic did not happen");
    assert!(log.is_poisoned());
    assert!(matches!(log.append(Record::new(b"x", None, 0)), Err(Error::Poisoned { .. })));
    drop(log);
    let log = Log::open(Arc::new(fs.inner.clone()), "/log", small_options()).unwrap();
    assert!(log.recovery_report().compaction_completed);
    assert_eq!(read_from(&log, 0).len(), 7);
}
