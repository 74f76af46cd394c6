//! File surgery on real files (DESIGN §7 rung 4): a log is written with `RealFs` in a temporary
//! directory, its files are damaged by hand, and each kind of damage has a stated result:
//! a torn or dirty tail of the last segment is cut and reported (P4), damage where the log must be
//! valid is `Error::Corruption` naming file and byte position and changes nothing (P5), and
//! disposable files (indexes, temp files) are rebuilt or removed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_changelog::{CorruptionKind, Error, Log, LogOptions};
use cairn_fs::RealFs;
use common::{Rec, TempDir, assert_records, index_name, log_name, read_from, small_options, snapshot};

fn real() -> Arc<RealFs> {
    Arc::new(RealFs::new())
}

/// The segment files of `dir` by base offset.
fn segments(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut found: Vec<(u64, PathBuf)> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter_map(|path| {
            let base = path.file_name()?.to_str()?.strip_suffix(".log")?.parse().ok()?;
            Some((base, path))
        })
        .collect();
    found.sort();
    found
}

/// Makes `dir` hold exactly the files of `files`.
fn restore(dir: &Path, files: &BTreeMap<String, Vec<u8>>) {
    for entry in fs::read_dir(dir).unwrap() {
        fs::remove_file(entry.unwrap().path()).unwrap();
    }
    for (name, bytes) in files {
        fs::write(dir.join(name), bytes).unwrap();
    }
}

/// A batch as its header describes it (docs/format.md: length at byte 8, base offset at 16,
/// record count at 24).
#[derive(Clone, Copy, Debug)]
struct Span {
    position: u64,
    len: u64,
    base: u64,
    count: u64,
}

impl Span {
    fn end(&self) -> u64 {
        self.position + self.len
    }
    fn next_offset(&self) -> u64 {
        self.base + self.count
    }
}

/// The batches of a valid segment file.
fn spans(bytes: &[u8]) -> Vec<Span> {
    let mut spans = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let word = |i: usize, n: usize| {
            let mut buf = [0u8; 8];
            buf[..n].copy_from_slice(&bytes[at + i..at + i + n]);
            u64::from_le_bytes(buf)
        };
        let span = Span { position: at as u64, len: word(8, 4), base: word(16, 8), count: word(24, 4) };
        at += span.len as usize;
        spans.push(span);
    }
    assert_eq!(at, bytes.len(), "the segment ends inside a batch");
    spans
}

fn records(first_seed: u64, n: usize, max_value: usize) -> Vec<Rec> {
    (0..n as u64).map(|i| Rec::generate(first_seed + i, max_value)).collect()
}

/// One batch per append, 4 KiB segments.
fn batch_per_append() -> LogOptions {
    let mut options = small_options();
    options.write_buffer_bytes = 0;
    options
}

/// A closed log of at least `min_segments` segments, one record per batch, ending with a batch
/// of four records. Returns its records.
fn write_log(dir: &Path, options: &LogOptions, min_segments: usize, max_value: usize) -> Vec<Rec> {
    let log = Log::open(real(), dir, options.clone()).unwrap();
    let mut all = Vec::new();
    let mut seed = 0;
    let mut append = |log: &Log, all: &mut Vec<Rec>| {
        let rec = Rec::generate(seed, max_value);
        seed += 1;
        assert_eq!(log.append(rec.as_record()).unwrap(), all.len() as u64);
        all.push(rec);
    };
    while segments(dir).len() < min_segments {
        append(&log, &mut all);
    }
    append(&log, &mut all);
    append(&log, &mut all);
    let batch = records(1_000_000, 4, max_value);
    let recs: Vec<_> = batch.iter().map(Rec::as_record).collect();
    log.append_batch(&recs).unwrap();
    all.extend(batch);
    assert_eq!(log.sync().unwrap(), all.len() as u64);
    log.close().unwrap();
    all
}

/// Appends three records to the log in `dir`, which holds `kept`, syncs, closes, and checks that
/// a reopen finds the log intact, contiguous and clean.
fn append_and_reopen(dir: &Path, options: &LogOptions, kept: &[Rec], seed: u64) {
    let log = Log::open(real(), dir, options.clone()).unwrap();
    let more = records(seed, 3, 60);
    for (i, rec) in more.iter().enumerate() {
        assert_eq!(log.append(rec.as_record()).unwrap(), (kept.len() + i) as u64);
    }
    assert_eq!(log.sync().unwrap(), (kept.len() + more.len()) as u64);
    log.close().unwrap();
    drop(log);
    let log = Log::open(real(), dir, options.clone()).unwrap();
    let report = log.recovery_report();
    assert!(report.tail_cut.is_none(), "clean log cut: {report:?}");
    assert_eq!(report.end_offset, (kept.len() + more.len()) as u64);
    assert_records(&read_from(&log, 0), &[kept, &more[..]].concat(), 0);
}

fn corruption(result: Result<Log, Error>) -> (PathBuf, u64, CorruptionKind) {
    match result {
        Err(Error::Corruption { file, position, kind }) => (file, position, kind),
        Err(other) => panic!("expected corruption, got {other:?}"),
        Ok(log) => panic!("expected corruption, the log opened: {:?}", log.recovery_report()),
    }
}

// ---------------------------------------------------------------------------------------------
// The tail of the last segment (P4)

#[test]
fn cut_inside_the_last_batches_keeps_exactly_the_batches_before_it_and_reports_the_cut() {
    let tmp = TempDir::new("surgery-cut");
    let dir = tmp.path.join("log");
    let options = batch_per_append();
    let all = write_log(&dir, &options, 3, 40);
    let template = snapshot(&dir);
    let (last_base, last_path) = segments(&dir).pop().unwrap();
    let bytes = template[&log_name(last_base)].clone();
    let spans = spans(&bytes);
    assert!(spans.len() >= 3, "{spans:?}");
    let last = spans[spans.len() - 1];
    let before = spans[spans.len() - 2];
    assert_eq!(last.count, 4);

    // Every byte of the last batch, its end, and the first bytes of the batch before it.
    let cuts = (before.position..before.position + 8).chain(last.position - 3..=last.end());
    for cut in cuts {
        restore(&dir, &template);
        fs::OpenOptions::new().write(true).open(&last_path).unwrap().set_len(cut).unwrap();
        let whole = spans.iter().rfind(|s| s.end() <= cut);
        let kept_end = whole.map_or(0, Span::end);
        let kept = whole.map_or(last_base, Span::next_offset) as usize;

        let log = Log::open(real(), &dir, options.clone()).unwrap();
        let report = log.recovery_report().clone();
        if kept_end == cut {
            assert!(report.tail_cut.is_none(), "cut at a batch boundary {cut}: {report:?}");
        } else {
            let tail = report.tail_cut.as_ref().unwrap_or_else(|| panic!("cut {cut} not reported"));
            let dirty = bytes[kept_end as usize..cut as usize].iter().rposition(|b| *b != 0).unwrap() + 1;
            assert_eq!(tail.file, last_path);
            assert_eq!(tail.position, kept_end, "cut {cut}");
            assert_eq!(tail.bytes, dirty as u64, "cut {cut}");
            assert!(matches!(tail.reason, CorruptionKind::Truncated { .. }), "cut {cut}: {:?}", tail.reason);
        }
        assert_eq!(report.end_offset, kept as u64, "cut {cut}");
        assert_eq!(
            fs::metadata(&last_path).unwrap().len(),
            kept_end,
            "cut {cut}: the torn tail is still in the file"
        );
        assert_records(&read_from(&log, 0), &all[..kept], 0);
        drop(log);
        append_and_reopen(&dir, &options, &all[..kept], 10_000 + cut);
    }
}

#[test]
fn damaged_last_batch_is_cut_and_reported_with_its_records() {
    let tmp = TempDir::new("surgery-damaged-last");
    let dir = tmp.path.join("log");
    let options = batch_per_append();
    let all = write_log(&dir, &options, 2, 40);
    let template = snapshot(&dir);
    let (_, last_path) = segments(&dir).pop().unwrap();
    let bytes = fs::read(&last_path).unwrap();
    let last = *spans(&bytes).last().unwrap();
    // A flipped bit in a record of the last batch: its header still reads, its checksum fails.
    let mut damaged = bytes.clone();
    damaged[last.position as usize + 50] ^= 0x10;
    fs::write(&last_path, &damaged).unwrap();

    let log = Log::open(real(), &dir, options.clone()).unwrap();
    let tail = log.recovery_report().tail_cut.clone().unwrap();
    assert_eq!(tail.file, last_path);
    assert_eq!(tail.position, last.position);
    let dirty = damaged[last.position as usize..].iter().rposition(|b| *b != 0).unwrap() + 1;
    assert_eq!(tail.bytes, dirty as u64);
    assert_eq!(tail.records, 4);
    assert!(matches!(tail.reason, CorruptionKind::Checksum { .. }), "{:?}", tail.reason);
    assert_eq!(
        fs::metadata(&last_path).unwrap().len(),
        last.position,
        "the damaged batch is still in the file"
    );
    let kept = all.len() - 4;
    assert_records(&read_from(&log, 0), &all[..kept], 0);
    drop(log);
    append_and_reopen(&dir, &options, &all[..kept], 77);
    restore(&dir, &template);
}

/// Deterministic bytes, none of them zero.
fn garbage(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x as u8).max(1)
        })
        .collect()
}

fn append_to(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    fs::OpenOptions::new().append(true).open(path).unwrap().write_all(bytes).unwrap();
}

#[test]
fn garbage_after_the_last_batch_is_cut_and_reported() {
    let tmp = TempDir::new("surgery-garbage");
    let dir = tmp.path.join("log");
    let options = small_options();
    let all = write_log(&dir, &options, 2, 200);
    let template = snapshot(&dir);
    let (_, last_path) = segments(&dir).pop().unwrap();
    let clean_len = fs::metadata(&last_path).unwrap().len();
    let first_batch = {
        let bytes = fs::read(&last_path).unwrap();
        let first = spans(&bytes)[0];
        bytes[..first.len as usize].to_vec()
    };

    let mut tails: Vec<(String, Vec<u8>)> = [1usize, 3, 47, 48, 51, 300, 5000]
        .into_iter()
        .map(|len| (format!("{len} random bytes"), garbage(len as u64, len)))
        .collect();
    // A well-formed batch at the wrong place: a stale copy of the segment's first batch.
    tails.push(("a stale batch".into(), first_batch));
    // Garbage followed by zeros: only the non-zero part is reported.
    tails.push(("garbage then zeros".into(), [garbage(9, 20), vec![0; 100]].concat()));

    for (i, (label, tail)) in tails.iter().enumerate() {
        restore(&dir, &template);
        append_to(&last_path, tail);
        let log = Log::open(real(), &dir, options.clone()).unwrap();
        let cut = log.recovery_report().tail_cut.clone().unwrap_or_else(|| panic!("{label}: not reported"));
        let dirty = tail.iter().rposition(|b| *b != 0).unwrap() + 1;
        assert_eq!(cut.file, last_path, "{label}");
        assert_eq!(cut.position, clean_len, "{label}");
        assert_eq!(cut.bytes, dirty as u64, "{label}");
        if label == "a stale batch" {
            assert!(
                matches!(cut.reason, CorruptionKind::OffsetMismatch { expected, .. } if expected == all.len() as u64),
                "{label}: {:?}",
                cut.reason
            );
        }
        assert_eq!(fs::metadata(&last_path).unwrap().len(), clean_len, "{label}");
        assert_records(&read_from(&log, 0), &all, 0);
        drop(log);
        append_and_reopen(&dir, &options, &all, 500 + i as u64);
    }
}

#[test]
fn zeros_after_the_last_batch_are_trimmed_and_not_reported() {
    let tmp = TempDir::new("surgery-zeros");
    let dir = tmp.path.join("log");
    let options = small_options();
    let all = write_log(&dir, &options, 2, 200);
    let template = snapshot(&dir);
    let (_, last_path) = segments(&dir).pop().unwrap();
    let clean_len = fs::metadata(&last_path).unwrap().len();
    for (i, zeros) in [1usize, 3, 48, 100, 4096, 70_000].into_iter().enumerate() {
        restore(&dir, &template);
        append_to(&last_path, &vec![0; zeros]);
        let log = Log::open(real(), &dir, options.clone()).unwrap();
        assert!(
            log.recovery_report().tail_cut.is_none(),
            "{zeros} zeros reported as a cut: {:?}",
            log.recovery_report().tail_cut
        );
        assert_eq!(fs::metadata(&last_path).unwrap().len(), clean_len, "{zeros} zeros not trimmed");
        assert_records(&read_from(&log, 0), &all, 0);
        drop(log);
        append_and_reopen(&dir, &options, &all, 900 + i as u64);
    }
}

// ---------------------------------------------------------------------------------------------
// Damage where the log must be valid (P5)

#[test]
fn flipped_bit_in_a_sealed_segment_is_corruption_naming_file_and_batch() {
    let tmp = TempDir::new("surgery-flip");
    let dir = tmp.path.join("log");
    let options = batch_per_append();
    let all = write_log(&dir, &options, 3, 60);
    let template = snapshot(&dir);
    let (base, path) = segments(&dir)[1].clone();
    let bytes = template[&log_name(base)].clone();
    let target = spans(&bytes)[2];
    // Bytes of the magic, checksum, length, version, base offset, count, timestamps and records.
    let offsets = [0u64, 5, 8, 10, 13, 17, 25, 33, 47, 48, 50, target.len - 1];
    for (i, within) in offsets.into_iter().enumerate() {
        restore(&dir, &template);
        let mut damaged = bytes.clone();
        damaged[(target.position + within) as usize] ^= 1 << (i % 8);
        fs::write(&path, &damaged).unwrap();
        let label = format!("bit {} of byte {within} of the batch at {}", i % 8, target.position);

        let mut verify = options.clone();
        verify.verify_on_open = true;
        let (file, position, kind) = corruption(Log::open(real(), &dir, verify));
        assert_eq!(file, path, "{label}");
        assert_eq!(position, target.position, "{label}");

        // By default sealed segments are trusted at open and checked as they are read.
        let log = Log::open(real(), &dir, options.clone()).unwrap();
        let mut read = Vec::new();
        let mut error = None;
        for record in log.reader(0).unwrap().into_records() {
            match record {
                Ok(record) => read.push(record),
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        assert_records(&read, &all[..target.base as usize], 0);
        match error {
            Some(Error::Corruption { file: f, position: p, kind: k }) => {
                assert_eq!((f, p, k), (file.clone(), position, kind.clone()), "{label}");
            }
            other => panic!("{label}: reading through the damage gave {other:?}"),
        }
        drop(log);
        assert_eq!(snapshot(&dir)[&log_name(base)], damaged, "{label}: the file changed");
    }
}

#[test]
fn missing_middle_segment_is_a_gap_naming_the_segment_after_it() {
    let tmp = TempDir::new("surgery-missing");
    let dir = tmp.path.join("log");
    let options = small_options();
    write_log(&dir, &options, 4, 200);
    let template = snapshot(&dir);
    let segs = segments(&dir);
    let (missing, _) = segs[1];
    let (next, next_path) = segs[2].clone();

    fs::remove_file(dir.join(log_name(missing))).unwrap();
    fs::remove_file(dir.join(index_name(missing))).unwrap();
    let before = snapshot(&dir);
    for verify_on_open in [false, true] {
        let mut options = options.clone();
        options.verify_on_open = verify_on_open;
        let (file, position, kind) = corruption(Log::open(real(), &dir, options));
        assert_eq!(file, next_path);
        assert_eq!(position, 0);
        assert_eq!(kind, CorruptionKind::SegmentGap { expected: missing, found: next });
        assert_eq!(snapshot(&dir), before, "a failed open changed the files");
    }

    // Without its index too.
    restore(&dir, &template);
    fs::remove_file(dir.join(log_name(missing))).unwrap();
    let (file, _, kind) = corruption(Log::open(real(), &dir, options.clone()));
    assert_eq!(file, next_path);
    assert!(matches!(kind, CorruptionKind::SegmentGap { .. }), "{kind:?}");
}

#[test]
fn overlapping_copy_of_a_segment_is_corruption() {
    let tmp = TempDir::new("surgery-overlap");
    let dir = tmp.path.join("log");
    let options = small_options();
    write_log(&dir, &options, 3, 200);
    let template = snapshot(&dir);
    let segs = segments(&dir);
    let (b0, ref p0) = segs[0];
    let (b1, ref p1) = segs[1];
    let (b2, _) = segs[2];
    // A copy of segment 1 named inside segment 0's range, and one of segment 0 inside segment 1's.
    for (source, base, expected) in [(p1, b0 + 1, b1), (p0, b1 + 2, b2)] {
        restore(&dir, &template);
        let copy = dir.join(log_name(base));
        fs::copy(source, &copy).unwrap();
        let before = snapshot(&dir);
        let (file, position, kind) = corruption(Log::open(real(), &dir, options.clone()));
        assert_eq!(file, copy);
        assert_eq!(position, 0);
        assert_eq!(kind, CorruptionKind::SegmentGap { expected, found: base });
        assert_eq!(snapshot(&dir), before, "a failed open changed the files");
    }
    // A copy named inside the last segment's range.
    restore(&dir, &template);
    let (last, last_path) = segments(&dir).pop().unwrap();
    let copy = dir.join(log_name(last + 1));
    fs::copy(&last_path, &copy).unwrap();
    let (file, _, kind) = corruption(Log::open(real(), &dir, options.clone()));
    assert_eq!(file, copy);
    assert!(matches!(kind, CorruptionKind::SegmentGap { .. }), "{kind:?}");
}

#[test]
fn known_durable_end_past_the_recovered_end_is_corruption_and_changes_nothing() {
    let tmp = TempDir::new("surgery-durable");
    let dir = tmp.path.join("log");
    let options = small_options();
    let all = write_log(&dir, &options, 2, 200);
    let end = all.len() as u64;
    let template = snapshot(&dir);
    let (_, last_path) = segments(&dir).pop().unwrap();
    let bytes = fs::read(&last_path).unwrap();
    let last = *spans(&bytes).last().unwrap();

    // The last batch lost, with a torn piece of it left behind.
    let cut = last.position + 30;
    fs::OpenOptions::new().write(true).open(&last_path).unwrap().set_len(cut).unwrap();
    let before = snapshot(&dir);
    let mut durable = options.clone();
    durable.known_durable_end = Some(end);
    let (file, position, kind) = corruption(Log::open(real(), &dir, durable.clone()));
    assert_eq!(file, last_path);
    assert_eq!(position, last.position);
    assert_eq!(kind, CorruptionKind::MissingDurableData { durable_end: end, found_end: last.base });
    assert_eq!(snapshot(&dir), before, "the failed open changed the files");

    // An intact log that ends before the known-durable end.
    restore(&dir, &template);
    durable.known_durable_end = Some(end + 5);
    let (file, position, kind) = corruption(Log::open(real(), &dir, durable.clone()));
    assert_eq!(file, last_path);
    assert_eq!(position, bytes.len() as u64);
    assert_eq!(kind, CorruptionKind::MissingDurableData { durable_end: end + 5, found_end: end });
    assert_eq!(snapshot(&dir), template, "the failed open changed the files");

    // A known-durable end the torn log still reaches: the tail is cut as usual.
    restore(&dir, &before);
    durable.known_durable_end = Some(last.base);
    let log = Log::open(real(), &dir, durable).unwrap();
    assert_eq!(log.recovery_report().tail_cut.as_ref().unwrap().position, last.position);
    assert_records(&read_from(&log, 0), &all[..last.base as usize], 0);
}

// ---------------------------------------------------------------------------------------------
// Disposable files: indexes, temp files, the lock

#[test]
fn deleted_or_garbage_index_is_rebuilt_and_reads_work_from_every_offset() {
    let tmp = TempDir::new("surgery-index");
    let dir = tmp.path.join("log");
    let options = small_options();
    let all = write_log(&dir, &options, 3, 200);
    let template = snapshot(&dir);
    let (base, _) = segments(&dir)[1];
    let index = dir.join(index_name(base));
    let original = template[&index_name(base)].clone();
    assert!(original.len() > 96, "the index should hold entries");

    let damage: [(&str, Option<Vec<u8>>); 5] = [
        ("deleted", None),
        ("garbage", Some(garbage(3, 120))),
        ("empty", Some(Vec::new())),
        ("a torn header", Some(original[..30].to_vec())),
        ("a bad header checksum", {
            let mut bytes = original.clone();
            bytes[20] ^= 1;
            Some(bytes)
        }),
    ];
    for (label, bytes) in damage {
        restore(&dir, &template);
        match bytes {
            None => fs::remove_file(&index).unwrap(),
            Some(bytes) => fs::write(&index, bytes).unwrap(),
        }
        let log = Log::open(real(), &dir, options.clone()).unwrap();
        assert_eq!(log.recovery_report().indexes_rebuilt, 1, "{label}");
        assert_eq!(fs::read(&index).unwrap(), original, "{label}: rebuilt index differs");
        for from in 0..=all.len() {
            assert_records(&read_from(&log, from as u64), &all[from..], from as u64);
        }
        drop(log);
        let log = Log::open(real(), &dir, options.clone()).unwrap();
        assert_eq!(log.recovery_report().indexes_rebuilt, 0, "{label}: rebuilt twice");
    }
}

#[test]
fn index_with_damaged_entries_is_not_trusted_for_seeks() {
    let tmp = TempDir::new("surgery-index-entries");
    let dir = tmp.path.join("log");
    let options = small_options();
    let all = write_log(&dir, &options, 3, 200);
    let (base, _) = segments(&dir)[1];
    let index = dir.join(index_name(base));
    let mut bytes = fs::read(&index).unwrap();
    // The header (and its checksum) is intact; an entry's position is not.
    bytes[96 + 4] ^= 0x40; // the first entry's position (the header is 96 bytes)
    fs::write(&index, &bytes).unwrap();
    let log = Log::open(real(), &dir, options.clone()).unwrap();
    assert_eq!(log.recovery_report().indexes_rebuilt, 0);
    for from in 0..=all.len() {
        assert_records(&read_from(&log, from as u64), &all[from..], from as u64);
    }
}

#[test]
fn stale_temp_files_are_removed_on_open_and_counted() {
    let tmp = TempDir::new("surgery-temp");
    let dir = tmp.path.join("log");
    let options = small_options();
    let all = write_log(&dir, &options, 2, 200);
    let (last, _) = segments(&dir).pop().unwrap();
    let temps = [
        format!("{}.truncate.tmp", log_name(last)),
        format!("{}.tmp", index_name(0)),
        "compaction-17.tmp".to_string(),
    ];
    for name in &temps {
        fs::write(dir.join(name), garbage(7, 300)).unwrap();
    }
    let log = Log::open(real(), &dir, options.clone()).unwrap();
    assert_eq!(log.recovery_report().temp_files_removed, temps.len());
    for name in &temps {
        assert!(!dir.join(name).exists(), "{name} left behind");
    }
    assert_records(&read_from(&log, 0), &all, 0);
    drop(log);
    let log = Log::open(real(), &dir, options).unwrap();
    assert_eq!(log.recovery_report().temp_files_removed, 0);
}

#[test]
fn second_open_of_an_open_log_is_locked_until_the_first_is_dropped() {
    let tmp = TempDir::new("surgery-lock");
    let dir = tmp.path.join("log");
    let options = small_options();
    let first = Log::open(real(), &dir, options.clone()).unwrap();
    first.append(Rec::generate(1, 10).as_record()).unwrap();
    match Log::open(real(), &dir, options.clone()) {
        Err(Error::Locked { path }) => assert_eq!(path, dir.join("LOCK")),
        other => panic!("second open: {other:?}"),
    }
    // Closing does not release the lock while the handle (or a reader of it) lives.
    first.close().unwrap();
    assert!(matches!(Log::open(real(), &dir, options.clone()), Err(Error::Locked { .. })));
    drop(first);
    let second = Log::open(real(), &dir, options.clone()).unwrap();
    assert_eq!(second.end_offset(), 1);
    assert!(matches!(Log::open(real(), &dir, options.clone()), Err(Error::Locked { .. })));
    drop(second);
    Log::open(real(), &dir, options).unwrap();
}
