//! Hostile bytes (DESIGN §4: "opening never panics on any byte content"; §7 rung 7): random and
//! mutated bytes as the only or last segment, as a sealed segment followed by a valid one, and as
//! an index file, on the simulator and on real files. Opening and reading everything must never
//! panic, and must return either records or a typed error; records returned are never wrong
//! (unless the test itself forged a checksum), and a garbage length or count never makes the log
//! allocate or read anything near its size.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_changelog::{CorruptionKind, Error, Log, LogOptions, OwnedRecord};
use cairn_fs::{Fs, OpenMode, RealFs, SimFs};
use common::{Rec, TempDir, assert_records, read_from, small_options};
use proptest::prelude::*;

const DIR: &str = "/fuzz";

fn log_name(base: u64) -> String {
    format!("{base:020}.log")
}

fn index_name(base: u64) -> String {
    format!("{base:020}.index")
}

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// A valid log on a fresh simulator: its options, records, and the segment files (base, bytes)
/// with their index files, if any.
struct Valid {
    fs: SimFs,
    options: LogOptions,
    records: Vec<Rec>,
    segments: Vec<(u64, Vec<u8>)>,
    indexes: Vec<(u64, Vec<u8>)>,
}

fn valid_log(seed: u64, n: usize) -> Valid {
    let fs = SimFs::new(seed);
    let mut options = small_options();
    options.write_buffer_bytes = [0, 512][seed as usize % 2];
    let log = Log::open(Arc::new(fs.clone()), DIR, options.clone()).unwrap();
    let records: Vec<Rec> = (0..n as u64).map(|i| Rec::generate(seed * 1000 + i, 200)).collect();
    for rec in &records {
        log.append(rec.as_record()).unwrap();
    }
    log.close().unwrap();
    drop(log);
    let mut segments = Vec::new();
    let mut indexes = Vec::new();
    for name in fs.list_dir(Path::new(DIR)).unwrap() {
        let name = name.into_string().unwrap();
        let bytes = fs.contents(&Path::new(DIR).join(&name)).unwrap();
        if let Some(base) = name.strip_suffix(".log") {
            segments.push((base.parse().unwrap(), bytes));
        } else if let Some(base) = name.strip_suffix(".index") {
            indexes.push((base.parse().unwrap(), bytes));
        }
    }
    Valid { fs, options, records, segments, indexes }
}

/// A simulator holding exactly `files` (name, bytes) in the log directory, written with
/// `set_contents` after creating each file.
fn sim_with(files: &[(String, Vec<u8>)]) -> SimFs {
    let fs = SimFs::new(0);
    fs.create_dir_all(Path::new(DIR)).unwrap();
    for (name, bytes) in files {
        let path = Path::new(DIR).join(name);
        drop(fs.open(&path, OpenMode::CreateNew).unwrap());
        fs.set_contents(&path, bytes).unwrap();
    }
    fs
}

/// What the log has to say about some bytes.
#[derive(Debug)]
enum Outcome {
    /// It opened and read these records from its start.
    Read(Log, Vec<OwnedRecord>),
    /// It opened, but reading stopped at this error after the records.
    ReadError(Vec<OwnedRecord>, Error),
    /// It refused to open.
    OpenError(Error),
}

/// Opens the log in `dir` and reads everything from its start and from a few other offsets.
/// Every record returned is checked against `original` when given (it must be the record
/// appended at that offset). Any error must be typed: a corruption naming a file of `dir`.
fn open_and_read(fs: Arc<dyn Fs>, dir: &Path, options: &LogOptions, original: Option<&[Rec]>) -> Outcome {
    let log = match Log::open(fs, dir, options.clone()) {
        Ok(log) => log,
        Err(error) => {
            assert_typed(&error, dir);
            return Outcome::OpenError(error);
        }
    };
    let start = log.start_offset();
    let end = log.end_offset();
    assert_eq!(log.recovery_report().start_offset, start);
    assert_eq!(log.recovery_report().end_offset, end);
    let mut first = None;
    for from in [start, start + (end - start) / 2, end.saturating_sub(1).max(start), end] {
        let mut read = Vec::new();
        let mut error = None;
        for record in log.reader(from).unwrap().into_records() {
            match record {
                Ok(record) => {
                    assert_eq!(record.offset, from + read.len() as u64, "offsets in order");
                    assert!(record.offset < end, "a record past the end");
                    if let Some(original) = original {
                        let want = original
                            .get(record.offset as usize)
                            .unwrap_or_else(|| panic!("phantom record {record:?}"));
                        assert!(want.matches(&record), "wrong data: {record:?}");
                    }
                    read.push(record);
                }
                Err(e) => {
                    assert_typed(&e, dir);
                    error = Some(e);
                    break;
                }
            }
        }
        if first.is_none() {
            first = Some((read, error));
        }
    }
    match first.unwrap() {
        (read, None) => Outcome::Read(log, read),
        (read, Some(error)) => Outcome::ReadError(read, error),
    }
}

fn corrupt_file(error: &Error) -> &Path {
    match error {
        Error::Corruption { file, .. } => file,
        other => panic!("expected a corruption, got {other:?}"),
    }
}

fn assert_typed(error: &Error, dir: &Path) {
    match error {
        Error::Corruption { file, .. } => {
            assert_eq!(file.parent(), Some(dir), "corruption names {file:?}")
        }
        other => panic!("expected a corruption, got {other:?}"),
    }
}

/// After the last segment was damaged: the log must open (the last segment is the tail window),
/// hold a prefix of the records (when `original` is given), and work: new records appended and
/// synced come back after a reopen.
fn expect_prefix_and_usable(fs: &SimFs, options: &LogOptions, original: Option<&[Rec]>) -> usize {
    let fs_dyn: Arc<dyn Fs> = Arc::new(fs.clone());
    let (log, read) = match open_and_read(Arc::clone(&fs_dyn), Path::new(DIR), options, original) {
        Outcome::Read(log, read) => (log, read),
        other => panic!("damage in the last segment must be cut, got {other:?}"),
    };
    let n = read.len() as u64;
    assert_eq!(log.end_offset(), n);
    let more: Vec<Rec> = (0..3).map(|i| Rec::generate(77_000 + i, 50)).collect();
    for rec in &more {
        log.append(rec.as_record()).unwrap();
    }
    assert_eq!(log.sync().unwrap(), n + 3);
    log.close().unwrap();
    drop(log);
    let log = Log::open(fs_dyn, DIR, options.clone()).unwrap();
    assert!(log.recovery_report().tail_cut.is_none());
    let again = read_from(&log, 0);
    assert_eq!(again.len() as u64, n + 3);
    assert_eq!(&again[..read.len()], &read[..]);
    read.len()
}

/// A random change to valid bytes, none of which forges a checksum.
fn mutate(bytes: &mut Vec<u8>, rng: &mut Rng) {
    let len = bytes.len();
    match rng.below(7) {
        0 => {
            for _ in 0..1 + rng.below(8) {
                let bit = rng.below(len * 8);
                if let Some(byte) = bytes.get_mut(bit / 8) {
                    *byte ^= 1 << (bit % 8);
                }
            }
        }
        1 => {
            let at = rng.below(len);
            let n = rng.below(len - at + 1).min(64);
            let junk = rng.bytes(n);
            bytes[at..at + n].copy_from_slice(&junk);
        }
        2 => bytes.truncate(rng.below(len + 1)),
        3 => {
            let at = rng.below(len);
            let n = rng.below(len - at + 1);
            bytes[at..at + n].fill(0);
        }
        4 => {
            // A piece of the file copied elsewhere in it (a misplaced write).
            let from = rng.below(len);
            let n = rng.below(len - from + 1).min(300);
            let to = rng.below(len);
            let piece = bytes[from..from + n].to_vec();
            for (i, b) in piece.into_iter().enumerate() {
                if let Some(slot) = bytes.get_mut(to + i) {
                    *slot = b;
                }
            }
        }
        5 => {
            let at = rng.below(len + 1);
            let n = 1 + rng.below(100);
            let junk = rng.bytes(n);
            bytes.splice(at..at, junk);
        }
        _ => {
            // A length field somewhere set to anything.
            let at = rng.below(len.saturating_sub(12));
            let value = (rng.next() as u32).to_le_bytes();
            for (i, b) in value.into_iter().enumerate() {
                if let Some(slot) = bytes.get_mut(at + 8 + i) {
                    *slot = b;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Forged structures (docs/format.md)

/// A batch header with the given fields; the checksum is computed over the header and `body` if
/// `length` is the true length, else left as zero.
fn forge_batch(base: u64, count: u32, length: Option<u32>, body: &[u8]) -> Vec<u8> {
    let true_len = (48 + body.len()) as u32;
    let mut out = Vec::new();
    out.extend_from_slice(&0xB7C3_1A5Eu32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes()); // crc, below
    out.extend_from_slice(&length.unwrap_or(true_len).to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&base.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes()); // reserved in a dense batch
    out.extend_from_slice(&0i64.to_le_bytes());
    out.extend_from_slice(&0i64.to_le_bytes());
    out.extend_from_slice(body);
    if length.is_none_or(|l| l == true_len) {
        let crc = crc32c::crc32c(&out[8..]);
        out[4..8].copy_from_slice(&crc.to_le_bytes());
    }
    out
}

/// An index file whose header checksum is right; the entries checksum too if `fix_entries`.
fn forge_index(
    base: u64,
    next: u64,
    segment_bytes: u64,
    entry_count: u32,
    entries: &[(u32, u32)],
    fix_entries: bool,
) -> Vec<u8> {
    let mut body = Vec::new();
    for (rel, pos) in entries {
        body.extend_from_slice(&rel.to_le_bytes());
        body.extend_from_slice(&pos.to_le_bytes());
    }
    let mut out = Vec::new();
    out.extend_from_slice(&0x1DC3_B7A9u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&8u16.to_le_bytes());
    out.extend_from_slice(&base.to_le_bytes());
    out.extend_from_slice(&next.to_le_bytes());
    out.extend_from_slice(&segment_bytes.to_le_bytes());
    out.extend_from_slice(&i64::MIN.to_le_bytes());
    out.extend_from_slice(&entry_count.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes()); // flags: not compacted
    out.extend_from_slice(&0u64.to_le_bytes()); // record count
    out.extend_from_slice(&0u64.to_le_bytes()); // tombstones
    out.extend_from_slice(&i64::MAX.to_le_bytes()); // smallest tombstone timestamp
    out.extend_from_slice(&i64::MIN.to_le_bytes()); // cleaned: never
    out.extend_from_slice(&0u32.to_le_bytes()); // no key filter
    let body_crc = if fix_entries { crc32c::crc32c(&body) } else { 0 };
    out.extend_from_slice(&body_crc.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes()); // no first-seen runs
    let header_crc = crc32c::crc32c(&out);
    out.extend_from_slice(&header_crc.to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// A varint as batch records encode their fields.
fn varint(mut value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
    out
}

/// Files that follow a hostile sealed segment ending at offset `base`: a sealed segment at
/// `base` holding one valid batch of one record, with its index (so that the hostile segment
/// lies in the region the log knows durable), and the empty last segment after it.
fn marked_follower(base: u64) -> Vec<(String, Vec<u8>)> {
    let batch = forge_batch(base, 1, None, &[0, 0, 0]);
    let index = forge_index(base, base + 1, batch.len() as u64, 0, &[], true);
    vec![(log_name(base), batch), (index_name(base), index), (log_name(base + 1), Vec::new())]
}

// ---------------------------------------------------------------------------------------------
// Seeded loops on the simulator

#[test]
fn random_bytes_as_the_only_segment_are_cut_and_the_log_works() {
    for seed in 0..150u64 {
        let mut rng = Rng::new(seed);
        let len = rng.below(3000);
        let mut bytes = rng.bytes(len);
        if seed % 3 == 0 && len >= 4 {
            // Past the magic check, into the header's other fields.
            bytes[..4].copy_from_slice(&0xB7C3_1A5Eu32.to_le_bytes());
        }
        let fs = sim_with(&[(log_name(0), bytes)]);
        let read = expect_prefix_and_usable(&fs, &small_options(), Some(&[]));
        assert_eq!(read, 0, "seed {seed}");
    }
}

#[test]
fn mutated_last_segment_opens_to_a_prefix_of_its_records() {
    for seed in 0..200u64 {
        let valid = valid_log(seed % 7, 60);
        let (base, bytes) = valid.segments.last().unwrap().clone();
        let mut rng = Rng::new(seed);
        let mut damaged = bytes.clone();
        for _ in 0..1 + rng.below(3) {
            mutate(&mut damaged, &mut rng);
        }
        let path = Path::new(DIR).join(log_name(base));
        valid.fs.set_contents(&path, &damaged).unwrap();
        let read = expect_prefix_and_usable(&valid.fs, &valid.options, Some(&valid.records));
        assert!(read as u64 >= base, "seed {seed}: sealed records lost");
    }
}

#[test]
fn mutated_sealed_segment_is_corruption_or_intact_records() {
    let mut refused = 0;
    for seed in 0..200u64 {
        let valid = valid_log(seed % 5, 150);
        assert!(valid.segments.len() >= 4);
        // A sealed segment followed by another sealed one with its index: inside the region the
        // log knows durable, whatever marks it so.
        let which = 1 + seed as usize % (valid.segments.len() - 3);
        let (base, bytes) = valid.segments[which].clone();
        let mut rng = Rng::new(seed);
        let mut damaged = bytes.clone();
        mutate(&mut damaged, &mut rng);
        valid.fs.set_contents(&Path::new(DIR).join(log_name(base)), &damaged).unwrap();
        if seed % 2 == 0 {
            // Without its index, the segment is scanned at open.
            valid.fs.remove_file(&Path::new(DIR).join(index_name(base))).unwrap();
        }
        let mut options = valid.options.clone();
        options.verify_on_open = seed % 3 == 0;
        match open_and_read(Arc::new(valid.fs.clone()), Path::new(DIR), &options, Some(&valid.records)) {
            Outcome::Read(_, read) => {
                // Only a change that changed nothing (zeros over zeros, a piece copied onto
                // itself) lets every record through.
                assert_eq!(damaged, bytes, "seed {seed}: damage went unnoticed");
                assert_records(&read, &valid.records, 0);
            }
            Outcome::ReadError(read, error) => {
                assert!((read.len() as u64) < valid.segments[which + 1].0);
                assert_eq!(corrupt_file(&error), Path::new(DIR).join(log_name(base)));
                refused += 1;
            }
            Outcome::OpenError(error) => {
                // The damaged segment, or the one after it if the damage made it end early.
                let after = valid.segments[which + 1].0;
                let file = corrupt_file(&error);
                assert!(
                    file == Path::new(DIR).join(log_name(base))
                        || file == Path::new(DIR).join(log_name(after)),
                    "seed {seed}: {error:?}"
                );
                refused += 1;
            }
        }
    }
    assert!(refused > 150, "only {refused} damaged segments refused");
}

#[test]
fn random_or_mutated_index_is_rebuilt_and_reads_stay_right() {
    for seed in 0..150u64 {
        let valid = valid_log(seed % 5, 60);
        let (base, original) = valid.indexes[seed as usize % valid.indexes.len()].clone();
        let mut rng = Rng::new(seed);
        let bytes = if seed % 2 == 0 {
            let len = rng.below(400);
            rng.bytes(len)
        } else {
            let mut bytes = original.clone();
            mutate(&mut bytes, &mut rng);
            bytes
        };
        let path = Path::new(DIR).join(index_name(base));
        valid.fs.set_contents(&path, &bytes).unwrap();
        match open_and_read(Arc::new(valid.fs.clone()), Path::new(DIR), &valid.options, Some(&valid.records))
        {
            Outcome::Read(log, read) => {
                assert_records(&read, &valid.records, 0);
                let header_intact = bytes.get(..96) == original.get(..96);
                assert_eq!(log.recovery_report().indexes_rebuilt, usize::from(!header_intact), "seed {seed}");
                for from in (0..valid.records.len()).step_by(7) {
                    let got = read_from(&log, from as u64);
                    assert_records(&got, &valid.records[from..], from as u64);
                }
            }
            other => panic!("seed {seed}: a damaged index is not corruption: {other:?}"),
        }
    }
}

#[test]
fn forged_batches_with_valid_checksums_never_panic() {
    for seed in 0..300u64 {
        let mut rng = Rng::new(seed);
        let valid = valid_log(seed % 3, 40);
        let (base, bytes) = valid.segments.last().unwrap().clone();
        // A batch that passes the checksum but whose records are random.
        let expected = valid.records.len() as u64;
        let body_len = rng.below(200);
        let body = rng.bytes(body_len);
        let count = match rng.below(4) {
            0 => 0,
            1 => 1 + rng.below(5) as u32,
            2 => u32::MAX,
            _ => rng.next() as u32,
        };
        let sealed = seed % 2 == 1;
        let (target_base, damaged) = if sealed {
            // In a sealed segment, right after its first batch and at the next offset.
            let (target_base, target) = valid.segments[0].clone();
            let first_len = u32::from_le_bytes(target[8..12].try_into().unwrap()) as usize;
            let first_count = u32::from_le_bytes(target[24..28].try_into().unwrap());
            let forged = forge_batch(target_base + u64::from(first_count), count, None, &body);
            (target_base, [&target[..first_len], &forged[..]].concat())
        } else {
            (base, [bytes, forge_batch(expected, count, None, &body)].concat())
        };
        valid.fs.set_contents(&Path::new(DIR).join(log_name(target_base)), &damaged).unwrap();
        let mut options = valid.options.clone();
        options.verify_on_open = rng.below(2) == 0;
        // The forged records may "parse": they are not checked against the originals.
        match open_and_read(Arc::new(valid.fs.clone()), Path::new(DIR), &options, None) {
            Outcome::Read(..) | Outcome::ReadError(..) | Outcome::OpenError(_) => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Garbage lengths and counts

/// Where a declared length is bounded: `batch::peek_length` compares a batch's length with the
/// bytes the file has from the batch's start before anything is read or allocated for it, and
/// every buffer is sized by that (`FileScan::fill` reads at most to the scan's limit, a sealed
/// segment is read through its mapping, which is as long as the file). An index's entry count
/// is only compared with the length of its mapping. So a header claiming 4 GiB in a 100-byte
/// file is refused at once as `Truncated { needed, available: 100 }`, which these tests check;
/// the kind itself shows that the length was weighed against the file before anything else.
fn huge_header() -> Vec<u8> {
    let mut bytes = forge_batch(0, 1, Some(0xFFFF_FFF0), &[]);
    bytes.resize(100, 0x5A);
    bytes
}

#[test]
fn huge_batch_length_in_the_last_segment_is_cut_without_allocating() {
    // Alone, and after a valid batch.
    let valid = valid_log(3, 1);
    let (_, first_batch) = valid.segments[0].clone();
    for (prefix, offset) in [(Vec::new(), 0u64), (first_batch.clone(), 1)] {
        let mut header = huge_header();
        header[16..24].copy_from_slice(&offset.to_le_bytes());
        let bytes = [prefix.clone(), header].concat();
        let fs = sim_with(&[(log_name(0), bytes)]);
        let log = Log::open(Arc::new(fs.clone()), DIR, small_options()).unwrap();
        let cut = log.recovery_report().tail_cut.clone().unwrap();
        assert_eq!(cut.position, prefix.len() as u64);
        assert_eq!(cut.reason, CorruptionKind::Truncated { needed: 0xFFFF_FFF0, available: 100 });
        assert_eq!(cut.records, 0);
        assert_eq!(log.end_offset(), offset);
        drop(log);
        expect_prefix_and_usable(&fs, &small_options(), None);
    }
}

#[test]
fn huge_batch_length_in_a_sealed_segment_is_corruption_without_allocating() {
    let files = |index: Option<Vec<u8>>| {
        let mut files = vec![(log_name(0), huge_header())];
        files.extend(index.map(|index| (index_name(0), index)));
        files.extend(marked_follower(1));
        files
    };
    let expected = CorruptionKind::Truncated { needed: 0xFFFF_FFF0, available: 100 };
    // Scanned at open (no index, or verify_on_open): refused at open.
    for (index, verify) in [(None, false), (Some(forge_index(0, 1, 100, 0, &[], true)), true)] {
        let fs = sim_with(&files(index));
        let mut options = small_options();
        options.verify_on_open = verify;
        match Log::open(Arc::new(fs), DIR, options) {
            Err(Error::Corruption { file, position, kind }) => {
                assert_eq!(file, Path::new(DIR).join(log_name(0)));
                assert_eq!((position, kind), (0, expected.clone()));
            }
            other => panic!("{other:?}"),
        }
    }
    // Trusted at open through a (forged) index header: refused when read.
    let fs = sim_with(&files(Some(forge_index(0, 1, 100, 0, &[], true))));
    let log = Log::open(Arc::new(fs), DIR, small_options()).unwrap();
    match log.reader(0).unwrap().next_batch() {
        Err(Error::Corruption { position, kind, .. }) => {
            assert_eq!((position, kind), (0, expected));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn huge_index_entry_count_is_ignored_and_reads_stay_right() {
    let valid = valid_log(5, 60);
    for (base, original) in &valid.indexes {
        let segment = &valid.segments.iter().find(|(b, _)| b == base).unwrap().1;
        let next = u64::from_le_bytes(original[16..24].try_into().unwrap());
        // A header that checks out, claiming 4 G entries over a body of a few.
        for count in [u32::MAX, 0x2000_0000, 1, 2] {
            let forged = forge_index(*base, next, segment.len() as u64, count, &[(1, 60), (2, 120)], true);
            valid.fs.set_contents(&Path::new(DIR).join(index_name(*base)), &forged).unwrap();
            let outcome = open_and_read(
                Arc::new(valid.fs.clone()),
                Path::new(DIR),
                &valid.options,
                Some(&valid.records),
            );
            let Outcome::Read(log, read) = outcome else {
                panic!("count {count}: {outcome:?}");
            };
            assert_eq!(log.recovery_report().indexes_rebuilt, 0);
            assert_records(&read, &valid.records, 0);
            for from in 0..valid.records.len() as u64 {
                let result: Result<Vec<_>, _> = log.reader(from).unwrap().into_records().collect();
                match result {
                    Ok(got) => assert_records(&got, &valid.records[from as usize..], from),
                    // With a count that matches, the forged entries are used; one pointing into
                    // the middle of a batch is found out by the batch check: a corruption, never
                    // wrong data.
                    Err(Error::Corruption { .. }) if count == 2 => {}
                    Err(other) => panic!("count {count}, from {from}: {other:?}"),
                }
            }
        }
        valid.fs.set_contents(&Path::new(DIR).join(index_name(*base)), original).unwrap();
    }
}

#[test]
fn huge_record_lengths_inside_a_checksummed_batch_are_bad_records() {
    // A record declaring a key of 2^62 bytes, and one declaring a value of 2^40 bytes.
    let bodies = [
        [varint(0), varint(1 << 62), varint(0)].concat(),
        [varint(0), varint(1), varint((1 << 40) + 1), vec![7]].concat(),
        // A varint that never ends.
        vec![0xFF; 20],
    ];
    for body in bodies {
        let batch = forge_batch(0, 1, None, &body);
        let fs = sim_with(&[(log_name(0), batch.clone())]);
        let log = Log::open(Arc::new(fs.clone()), DIR, small_options()).unwrap();
        let cut = log.recovery_report().tail_cut.clone().unwrap();
        assert_eq!(cut.position, 0);
        assert_eq!(cut.reason, CorruptionKind::BadRecord { record: 0 });
        assert_eq!(cut.records, 1);
        drop(log);

        // The same batch sealed, followed by more of the log.
        let mut files = vec![(log_name(0), batch)];
        files.extend(marked_follower(1));
        let fs = sim_with(&files);
        match Log::open(Arc::new(fs), DIR, small_options()) {
            Err(Error::Corruption { position, kind, .. }) => {
                assert_eq!((position, kind), (0, CorruptionKind::BadRecord { record: 0 }));
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn batch_whose_offsets_run_past_the_offset_space_is_refused() {
    // A segment named for offset 2^64 - 3 holding a checksummed batch of five records: its
    // offsets would run past u64::MAX. (Found by this test: the decoder computed the offsets
    // unchecked and opening panicked with an overflow in debug builds, wrapped in release.)
    let base = u64::MAX - 2;
    let body = [varint(0), varint(0), varint(0)].concat().repeat(5);
    let batch = forge_batch(base, 5, None, &body);
    let expected = CorruptionKind::BadRecord { record: 2 };

    // As the last segment: an invalid tail, cut.
    let fs = sim_with(&[(log_name(base), batch.clone())]);
    let log = Log::open(Arc::new(fs), DIR, small_options()).unwrap();
    let cut = log.recovery_report().tail_cut.clone().unwrap();
    assert_eq!((cut.position, cut.reason), (0, expected.clone()));
    assert_eq!(log.end_offset(), base);

    // Sealed, with an index that vouches for it, followed by the last segment: corruption.
    let index = forge_index(base, u64::MAX, batch.len() as u64, 0, &[], true);
    let fs =
        sim_with(&[(log_name(base), batch), (index_name(base), index), (log_name(u64::MAX), Vec::new())]);
    let mut verify = small_options();
    verify.verify_on_open = true;
    match Log::open(Arc::new(fs), DIR, verify) {
        Err(Error::Corruption { position, kind, .. }) => {
            assert_eq!((position, kind), (0, expected))
        }
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Property tests

fn placement() -> impl Strategy<Value = u8> {
    0u8..4
}

/// Puts `bytes` somewhere in a valid log of four segments or more: 0 the last segment, 1 a
/// sealed segment without its index (scanned at open), 2 a sealed segment behind its original
/// index (trusted at open), 3 an index. The sealed segment is always followed by another sealed
/// segment with its index.
fn place(valid: &Valid, bytes: &[u8], placement: u8) -> PathBuf {
    let dir = Path::new(DIR);
    let (path, remove_index) = match placement {
        0 => (dir.join(log_name(valid.segments.last().unwrap().0)), None),
        1 => {
            let base = valid.segments[1].0;
            (dir.join(log_name(base)), Some(dir.join(index_name(base))))
        }
        2 => (dir.join(log_name(valid.segments[1].0)), None),
        _ => (dir.join(index_name(valid.indexes[0].0)), None),
    };
    valid.fs.set_contents(&path, bytes).unwrap();
    if let Some(index) = remove_index {
        valid.fs.remove_file(&index).unwrap();
    }
    path
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn arbitrary_bytes_anywhere_never_panic_nor_return_wrong_records(
        bytes in prop::collection::vec(any::<u8>(), 0..900),
        placement in placement(),
        seed in 0u64..4,
    ) {
        let valid = valid_log(seed, 150);
        assert!(valid.segments.len() >= 4);
        place(&valid, &bytes, placement);
        let outcome = open_and_read(
            Arc::new(valid.fs.clone()),
            Path::new(DIR),
            &valid.options,
            Some(&valid.records),
        );
        match (placement, outcome) {
            // The last segment and an index are never a reason to refuse the log.
            (0 | 3, Outcome::Read(..)) | (1 | 2, _) => {}
            (_, other) => prop_assert!(false, "{other:?}"),
        }
    }

    #[test]
    fn forged_batch_headers_never_panic(
        base in prop_oneof![Just(0u64), 0u64..100, any::<u64>()],
        count in prop_oneof![Just(1u32), any::<u32>()],
        length in prop_oneof![Just(None), any::<u32>().prop_map(Some)],
        body in prop::collection::vec(any::<u8>(), 0..300),
        sealed in any::<bool>(),
    ) {
        let batch = forge_batch(base, count, length, &body);
        let mut files = vec![(log_name(0), batch)];
        if sealed {
            files.push((log_name(u64::from(count.min(1000))), Vec::new()));
        }
        let fs = sim_with(&files);
        let _ = open_and_read(Arc::new(fs), Path::new(DIR), &small_options(), None);
    }
}

// ---------------------------------------------------------------------------------------------
// Real files

#[test]
fn hostile_bytes_on_real_files_never_panic() {
    for seed in 0..12u64 {
        let valid = valid_log(seed % 3, 150);
        assert!(valid.segments.len() >= 4);
        let tmp = TempDir::new("fuzz-real");
        let dir = tmp.path.join("log");
        std::fs::create_dir_all(&dir).unwrap();
        for (base, bytes) in &valid.segments {
            std::fs::write(dir.join(log_name(*base)), bytes).unwrap();
        }
        for (base, bytes) in &valid.indexes {
            std::fs::write(dir.join(index_name(*base)), bytes).unwrap();
        }
        let mut rng = Rng::new(seed);
        let placement = (seed % 4) as usize;
        let target = match placement {
            0 => dir.join(log_name(valid.segments.last().unwrap().0)),
            1 | 2 => dir.join(log_name(valid.segments[1].0)),
            _ => dir.join(index_name(valid.indexes[0].0)),
        };
        let mut bytes = std::fs::read(&target).unwrap();
        if seed % 2 == 0 {
            mutate(&mut bytes, &mut rng);
        } else {
            let len = rng.below(2000);
            bytes = rng.bytes(len);
        }
        std::fs::write(&target, &bytes).unwrap();
        if placement == 1 {
            std::fs::remove_file(dir.join(index_name(valid.segments[1].0))).unwrap();
        }
        let outcome = open_and_read(Arc::new(RealFs::new()), &dir, &valid.options, Some(&valid.records));
        match (placement, outcome) {
            (0 | 3, Outcome::Read(..)) | (1 | 2, _) => {}
            (_, other) => panic!("seed {seed}: {other:?}"),
        }
    }
}

#[test]
fn sealed_segment_shorter_than_its_index_says_is_refused_on_real_files() {
    // A mapping over a file shorter than the index promises must not be read past its end.
    let valid = valid_log(1, 150);
    assert!(valid.segments.len() >= 4);
    let tmp = TempDir::new("fuzz-short");
    let dir = tmp.path.join("log");
    std::fs::create_dir_all(&dir).unwrap();
    for (base, bytes) in &valid.segments {
        std::fs::write(dir.join(log_name(*base)), bytes).unwrap();
    }
    for (base, bytes) in &valid.indexes {
        std::fs::write(dir.join(index_name(*base)), bytes).unwrap();
    }
    let (base, bytes) = &valid.segments[1];
    for keep in [0, 10, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(dir.join(log_name(*base)), &bytes[..keep]).unwrap();
        match open_and_read(Arc::new(RealFs::new()), &dir, &valid.options, Some(&valid.records)) {
            Outcome::OpenError(_) | Outcome::ReadError(..) => {}
            Outcome::Read(_, read) => panic!("{keep} bytes kept, {} records read", read.len()),
        }
    }
    let _ = &valid.fs;
}

// ---------------------------------------------------------------------------------------------
// Compacted logs: sparse batches, compacted indexes, commit records

/// Reads everything from the start; every error must be typed, offsets must increase and stay
/// below the end. Returns the records read and the error that stopped the read, if any.
fn read_all_checked(log: &Log) -> (Vec<OwnedRecord>, Option<Error>) {
    let end = log.end_offset();
    let mut read: Vec<OwnedRecord> = Vec::new();
    for record in log.reader(log.start_offset()).unwrap().into_records() {
        match record {
            Ok(record) => {
                assert!(read.last().is_none_or(|p| p.offset < record.offset), "offsets out of order");
                assert!(record.offset < end, "a record past the end");
                read.push(record);
            }
            Err(e) => {
                assert_typed(&e, Path::new(DIR));
                return (read, Some(e));
            }
        }
    }
    (read, None)
}

/// A log whose first segments were compacted (tombstones kept), with more records after them;
/// its records, and its files.
/// File names and contents of a log directory.
type Files = Vec<(String, Vec<u8>)>;

fn compacted_log(seed: u64) -> (SimFs, Vec<OwnedRecord>, Files) {
    let fs = SimFs::new(seed);
    let log = Log::open(Arc::new(fs.clone()), DIR, small_options()).unwrap();
    for i in 0..300u64 {
        let rec = Rec::generate(seed * 1000 + i, 120);
        let key = format!("key-{}", (seed + i * 7) % 23);
        log.append(cairn_changelog::Record::new(key.as_bytes(), rec.value.as_deref(), rec.timestamp_ms))
            .unwrap();
    }
    let end = log.sync().unwrap();
    let mut compact = cairn_changelog::CompactOptions::default();
    compact.roll_active_bytes_min = Some(0);
    log.compact(end, &compact).unwrap();
    for i in 0..30u64 {
        log.append(Rec::generate(seed * 1000 + 500 + i, 120).as_record()).unwrap();
    }
    log.close().unwrap();
    let records = read_from(&log, 0);
    drop(log);
    let files = fs
        .list_dir(Path::new(DIR))
        .unwrap()
        .into_iter()
        .map(|n| n.into_string().unwrap())
        .filter(|n| n.ends_with(".log") || n.ends_with(".index"))
        .map(|n| {
            let bytes = fs.contents(&Path::new(DIR).join(&n)).unwrap();
            (n, bytes)
        })
        .collect();
    (fs, records, files)
}

#[test]
fn damage_in_a_compacted_segment_or_its_index_is_refused_or_harmless() {
    let mut refused = 0;
    for seed in 0..160u64 {
        let (fs, records, files) = compacted_log(seed);
        // The compacted segments and their indexes (flag bit 0 at byte 44 of the index).
        let compacted: Vec<&(String, Vec<u8>)> = files
            .iter()
            .filter(|(name, _)| {
                let index = name.replace(".log", ".index");
                files.iter().any(|(n, bytes)| *n == index && bytes.get(44).is_some_and(|f| f & 1 == 1))
            })
            .collect();
        assert!(!compacted.is_empty(), "seed {seed}: nothing compacted");
        let (name, original) = compacted[seed as usize % compacted.len()];
        let mut rng = Rng::new(seed);
        let mut damaged = original.clone();
        mutate(&mut damaged, &mut rng);
        fs.set_contents(&Path::new(DIR).join(name), &damaged).unwrap();
        let mut options = small_options();
        options.verify_on_open = seed % 3 == 0;
        match Log::open(Arc::new(fs.clone()), DIR, options) {
            Err(error) => {
                assert_typed(&error, Path::new(DIR));
                refused += 1;
            }
            Ok(log) => match read_all_checked(&log) {
                (read, None) => {
                    // Index damage is rebuilt; segment damage that changed nothing is harmless.
                    // So is junk after the end of the last sealed segment, which a changed
                    // length puts in the tail window (cut as a torn tail, records intact).
                    let logs: Vec<&String> =
                        files.iter().map(|(n, _)| n).filter(|n| n.ends_with(".log")).collect();
                    let in_tail_window =
                        logs.iter().rposition(|n| *n == name).is_some_and(|i| i + 2 >= logs.len());
                    assert!(
                        name.ends_with(".index") || damaged == *original || in_tail_window,
                        "seed {seed}: damage to {name} unnoticed"
                    );
                    assert!(
                        read.iter().all(|r| records.contains(r)),
                        "seed {seed}: a record that was never there"
                    );
                    if !in_tail_window {
                        assert_eq!(read, records, "seed {seed}: wrong records after damage to {name}");
                    }
                }
                (read, Some(_)) => {
                    refused += 1;
                    assert!(
                        read.iter().all(|r| records.contains(r)),
                        "seed {seed}: a record that was never there"
                    );
                }
            },
        }
    }
    assert!(refused > 50, "only {refused} damaged compacted files refused");
}

#[test]
fn forged_sparse_batches_with_valid_checksums_never_panic() {
    for seed in 0..300u64 {
        let mut rng = Rng::new(seed);
        let valid = valid_log(seed % 3, 40);
        let (base, bytes) = valid.segments.last().unwrap().clone();
        let body_len = rng.below(120);
        let mut body = rng.bytes(body_len);
        if rng.below(2) == 0 {
            // Plausible deltas, in or out of order.
            for (i, byte) in body.iter_mut().step_by(7).enumerate() {
                *byte = (i as u8).wrapping_mul(3) & 0x7f;
            }
        }
        let count = [0, 1, 2, 5, u32::MAX][rng.below(5)];
        let span = [0, 1, 4, 1000, u32::MAX][rng.below(5)];
        let mut forged = forge_batch(valid.records.len() as u64, count, None, &body);
        forged[14..16].copy_from_slice(&1u16.to_le_bytes()); // sparse
        forged[28..32].copy_from_slice(&u32::to_le_bytes(span));
        let crc = crc32c::crc32c(&forged[8..]);
        forged[4..8].copy_from_slice(&crc.to_le_bytes());
        valid.fs.set_contents(&Path::new(DIR).join(log_name(base)), &[bytes, forged].concat()).unwrap();
        if let Ok(log) = Log::open(Arc::new(valid.fs.clone()), DIR, valid.options.clone()) {
            let (read, _) = read_all_checked(&log);
            assert!(read.len() <= valid.records.len() + 5);
        }
    }
}

#[test]
fn garbage_commit_records_are_corruption_naming_the_record() {
    let valid_record = {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&0x5C0A_C7EDu32.to_le_bytes());
        bytes.extend_from_slice(&1u16.to_le_bytes());
        bytes.extend_from_slice(&0u16.to_le_bytes());
        bytes.extend_from_slice(&1u32.to_le_bytes());
        bytes.extend_from_slice(&1u32.to_le_bytes());
        bytes.extend_from_slice(&0u64.to_le_bytes());
        bytes.extend_from_slice(&0u64.to_le_bytes());
        let crc = crc32c::crc32c(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes
    };
    for seed in 0..200u64 {
        let valid = valid_log(seed % 3, 30);
        let mut rng = Rng::new(seed);
        let bytes = if seed % 2 == 0 {
            let len = rng.below(100);
            rng.bytes(len)
        } else {
            let mut bytes = valid_record.clone();
            while bytes == valid_record {
                mutate(&mut bytes, &mut rng);
            }
            bytes
        };
        let path = Path::new(DIR).join("compaction.swap");
        drop(valid.fs.open(&path, OpenMode::CreateNew).unwrap());
        valid.fs.set_contents(&path, &bytes).unwrap();
        match Log::open(Arc::new(valid.fs.clone()), DIR, valid.options.clone()) {
            Err(Error::Corruption { file, .. }) => assert_eq!(file, path, "seed {seed}"),
            other => panic!("seed {seed}: a damaged commit record gave {other:?}"),
        }
        // Nothing was changed: without the record, the log opens as it was.
        valid.fs.remove_file(&path).unwrap();
        let log = Log::open(Arc::new(valid.fs.clone()), DIR, valid.options.clone()).unwrap();
        assert_records(&read_from(&log, 0), &valid.records, 0);
    }
}
