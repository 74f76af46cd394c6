//! The reader against arbitrary bytes (DESIGN §7 rung 7): random files, random payloads in a
//! valid frame, and random mutations of a valid file. Reading never panics; a mutated file reads
//! as exactly the value written when its bytes are unchanged and as a corruption error
//! otherwise, never as another value or as "no file"; no length read from a file makes the
//! reader allocate more than the file's size calls for.
//!
//! Why a garbage length never turns into a huge allocation:
//! - the reader allocates one buffer for the whole file, of the file's length as the file system
//!   reports it (`file_len`, then again on the open file), after checking it against
//!   `max_bytes`: never of a number read from the file's bytes;
//! - the framing allocates nothing: it borrows from that buffer, and the payload length in the
//!   header is compared (with a saturating add) against the bytes the buffer holds before
//!   anything is sliced, so a header claiming `u64::MAX` bytes is a truncation, found in O(1);
//! - the payload decoder allocates a string's bytes as soon as it reads the string's length,
//!   checked only against the decoder's limit; that limit follows the payload's size (codec.rs),
//!   so even a length inside a checksummed payload (a buggy or hostile writer's) costs at most a
//!   small multiple of the payload, never the gigabyte the length may claim. Sequences and maps
//!   are preallocated by serde with a capped hint.
//!
//! The last two are tested directly by watching the process's peak virtual memory size.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use cairn_checkpoint::{
    Checkpoint, CheckpointFile, CheckpointOptions, CorruptionKind, DurableFile, DurableOptions, Error,
};
use cairn_fs::{Fs, OpenMode, SimFs};
use proptest::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

const PATH: &str = "/task/state";
const KIND: [u8; 4] = *b"TEST";
const VERSION: u32 = 1;
const HEADER: usize = 24;
const TRAILER: usize = 4;

/// A file in the durable-file format, built from docs/format.md.
fn frame(kind: [u8; 4], version: u32, declared_len: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = b"CRDF".to_vec();
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&kind);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&declared_len.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn sim() -> SimFs {
    let fs = SimFs::new(9);
    fs.create_dir_all(Path::new("/task")).unwrap();
    fs
}

/// Puts `bytes` in the file at `path` of `fs`, creating it if needed.
fn put(fs: &SimFs, path: &str, bytes: &[u8]) {
    if !fs.exists(Path::new(path)).unwrap() {
        fs.open(Path::new(path), OpenMode::CreateNew).unwrap();
    }
    fs.set_contents(Path::new(path), bytes).unwrap();
}

fn read_as<T: Serialize + DeserializeOwned>(fs: &SimFs, bytes: &[u8]) -> Result<Option<T>, Error> {
    put(fs, PATH, bytes);
    DurableFile::<T>::open(Arc::new(fs.clone()), PATH, DurableOptions::new(KIND, VERSION)).unwrap().read()
}

/// Checks that `result` is a corruption error of the file at `path` whose position lies in a
/// file of `len` bytes; returns its kind.
fn corruption<T: std::fmt::Debug>(
    result: &Result<T, Error>,
    path: &str,
    len: usize,
) -> Result<CorruptionKind, TestCaseError> {
    match result {
        Err(Error::Corruption { file, position, kind, .. }) => {
            prop_assert_eq!(file.as_path(), Path::new(path));
            prop_assert!(
                *position <= len as u64,
                "position {} in a file of {} bytes ({})",
                position,
                len,
                kind
            );
            Ok(kind.clone())
        }
        other => Err(TestCaseError::fail(format!("expected a corruption error, got {other:?}"))),
    }
}

/// Random files: pure noise, or noise after a plausible start (the magic, then a header), so
/// that the checks past the magic are reached.
fn files() -> impl Strategy<Value = Vec<u8>> {
    let noise = prop::collection::vec(any::<u8>(), 0..300);
    let header = (0..HEADER + 8, any::<u64>(), prop::collection::vec(any::<u8>(), 0..300)).prop_map(
        |(keep, declared, tail)| {
            let mut file = frame(KIND, VERSION, declared % 512, &[]);
            file.truncate(keep.min(HEADER));
            file.extend_from_slice(&tail);
            file
        },
    );
    prop_oneof![noise, header]
}

/// One change to a file.
#[derive(Clone, Debug)]
enum Mutation {
    FlipBit(usize),
    SetByte(usize, u8),
    Truncate(usize),
    Append(Vec<u8>),
    Insert(usize, Vec<u8>),
    Remove(usize, usize),
    /// A new payload length in the header.
    Declare(u64),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::FlipBit),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        prop::collection::vec(any::<u8>(), 1..40).prop_map(Mutation::Append),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<usize>(), 1..8usize).prop_map(|(i, n)| Mutation::Remove(i, n)),
        prop_oneof![any::<u64>(), 0..200u64].prop_map(Mutation::Declare),
    ]
}

fn apply(bytes: &mut Vec<u8>, mutation: &Mutation) {
    let len = bytes.len();
    match mutation {
        Mutation::FlipBit(bit) if len > 0 => bytes[bit / 8 % len] ^= 1 << (bit % 8),
        Mutation::SetByte(i, b) if len > 0 => bytes[i % len] = *b,
        Mutation::Truncate(n) => bytes.truncate(n % (len + 1)),
        Mutation::Append(tail) => bytes.extend_from_slice(tail),
        Mutation::Insert(i, more) => {
            let at = i % (len + 1);
            bytes.splice(at..at, more.iter().copied());
        }
        Mutation::Remove(i, n) if len > 0 => {
            let at = i % len;
            bytes.drain(at..(at + n).min(len));
        }
        Mutation::Declare(declared) if len >= HEADER => {
            bytes[16..24].copy_from_slice(&declared.to_le_bytes())
        }
        _ => {}
    }
}

fn checkpoints() -> impl Strategy<Value = Checkpoint> {
    let offsets = || prop::collection::btree_map("[a-z0-9/._-]{0,12}", any::<u64>(), 0..4);
    (any::<u64>(), offsets(), offsets(), offsets(), any::<i64>()).prop_map(
        |(id, inputs, changelogs, outputs, created_ms): (u64, BTreeMap<String, u64>, _, _, i64)| {
            let mut checkpoint = Checkpoint::new(id);
            for (name, offset) in inputs {
                checkpoint = checkpoint.input(name, offset);
            }
            for (name, offset) in changelogs {
                checkpoint = checkpoint.changelog(name, offset);
            }
            for (name, offset) in outputs {
                checkpoint = checkpoint.output(name, offset);
            }
            checkpoint.created_ms = created_ms;
            checkpoint
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_read_as_a_value(file in files()) {
        let fs = sim();
        let result = read_as::<Vec<u64>>(&fs, &file);
        let kind = corruption(&result, PATH, file.len())?;
        if file.is_empty() {
            prop_assert_eq!(kind, CorruptionKind::Empty);
        }
        let result = read_as::<Checkpoint>(&fs, &file);
        corruption(&result, PATH, file.len())?;
        // A checkpoint file of random bytes is an error, never "no checkpoint".
        put(&fs, "/task/checkpoint", &file);
        let opened = CheckpointFile::open(Arc::new(fs.clone()), "/task/checkpoint", CheckpointOptions::default());
        corruption(&opened.map(|f| f.current().cloned()), "/task/checkpoint", file.len())?;
    }

    #[test]
    fn random_payloads_in_a_valid_frame_decode_or_are_reported(
        payload in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            // Lengths and varint markers, to reach deep into the decoder.
            prop::collection::vec(prop_oneof![Just(0u8), Just(1), Just(251), Just(252), Just(253), Just(0xFF), any::<u8>()], 0..64),
        ]
    ) {
        let fs = sim();
        let file = frame(KIND, VERSION, payload.len() as u64, &payload);
        fn check<T: Serialize + DeserializeOwned + std::fmt::Debug>(fs: &SimFs, file: &[u8]) -> Result<(), TestCaseError> {
            let result = read_as::<T>(fs, file);
            if result.is_err() {
                let kind = corruption(&result, PATH, file.len())?;
                prop_assert_eq!(kind, CorruptionKind::Decode);
                let at_payload = matches!(result, Err(Error::Corruption { position, .. }) if position == HEADER as u64);
                prop_assert!(at_payload, "{:?}", result);
            } else {
                prop_assert!(matches!(result, Ok(Some(_))), "{:?}", result);
            }
            Ok(())
        }
        check::<Vec<u64>>(&fs, &file)?;
        check::<Checkpoint>(&fs, &file)?;
        check::<String>(&fs, &file)?;
        check::<(u128, Vec<String>, Option<i32>)>(&fs, &file)?;
    }

    #[test]
    fn a_mutated_file_reads_as_the_value_written_only_if_unchanged(
        value in prop::collection::vec(any::<u64>(), 0..40),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let fs = sim();
        let mut file: DurableFile<Vec<u64>> =
            DurableFile::open(Arc::new(fs.clone()), PATH, DurableOptions::new(KIND, VERSION)).unwrap();
        file.write(&value).unwrap();
        let valid = fs.contents(Path::new(PATH)).unwrap();
        let mut damaged = valid.clone();
        for m in &mutations {
            apply(&mut damaged, m);
        }
        let result = read_as::<Vec<u64>>(&fs, &damaged);
        if damaged == valid {
            prop_assert_eq!(result.unwrap(), Some(value));
        } else {
            // Another value would need a CRC32C collision: a 2^-32 chance per case at worst.
            corruption(&result, PATH, damaged.len())?;
        }
    }

    #[test]
    fn a_mutated_checkpoint_opens_as_the_checkpoint_written_only_if_unchanged(
        checkpoint in checkpoints(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let fs = sim();
        let path = "/task/checkpoint";
        let open = || CheckpointFile::open(Arc::new(fs.clone()), path, CheckpointOptions::default());
        open().unwrap().write(&checkpoint).unwrap();
        let valid = fs.contents(Path::new(path)).unwrap();
        let mut damaged = valid.clone();
        for m in &mutations {
            apply(&mut damaged, m);
        }
        put(&fs, path, &damaged);
        let result = open().map(|file| file.current().cloned());
        if damaged == valid {
            prop_assert_eq!(result.unwrap(), Some(checkpoint));
        } else {
            corruption(&result, path, damaged.len())?;
        }
    }

    #[test]
    fn any_declared_length_is_checked_against_the_file_size(
        declared in prop_oneof![any::<u64>(), 0..64u64, (u64::MAX - 64)..=u64::MAX],
        payload in prop::collection::vec(any::<u8>(), 0..48),
    ) {
        let fs = sim();
        let file = frame(KIND, VERSION, declared, &payload);
        let result = read_as::<Vec<u8>>(&fs, &file);
        let needed = declared.saturating_add((HEADER + TRAILER) as u64);
        let available = file.len() as u64;
        if needed > available {
            let truncated = matches!(
                result,
                Err(Error::Corruption { position, kind: CorruptionKind::Truncated { needed: n, available: a }, .. })
                    if position == available && n == needed && a == available
            );
            prop_assert!(truncated, "{:?}", result);
        } else if declared != payload.len() as u64 {
            let kind = corruption(&result, PATH, file.len())?;
            prop_assert!(matches!(kind, CorruptionKind::Checksum { .. }), "{:?}", kind);
        } else {
            prop_assert!(!matches!(result, Ok(None)));
        }
    }
}

/// The process's peak virtual memory size in KiB (Linux), which any large allocation raises,
/// touched or not.
fn peak_virtual_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmPeak:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs `read` and fails if the process's peak virtual size grew by 256 MiB or more meanwhile
/// (the other tests of this binary allocate a few MiB at most).
fn without_huge_allocation<T>(label: &str, read: impl FnOnce() -> T) -> T {
    let before = peak_virtual_kib();
    let result = read();
    if let (Some(before), Some(after)) = (before, peak_virtual_kib()) {
        assert!(
            after - before < 256 * 1024,
            "{label}: peak virtual size grew from {before} KiB to {after} KiB"
        );
    }
    result
}

#[test]
fn a_header_claiming_u64_max_bytes_is_refused_without_allocating() {
    let fs = sim();
    let file = frame(KIND, VERSION, u64::MAX, b"abc");
    let result = without_huge_allocation("u64::MAX", || read_as::<Vec<u8>>(&fs, &file));
    match result {
        Err(Error::Corruption {
            position, kind: CorruptionKind::Truncated { needed, available }, ..
        }) => {
            assert_eq!((position, needed, available), (file.len() as u64, u64::MAX, file.len() as u64));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_checksummed_payload_claiming_a_huge_string_does_not_allocate_it() {
    // A valid frame (right kind, version, length and checksum) whose payload is a checkpoint
    // with one input whose name claims about 1 GiB: what a buggy or hostile writer could leave.
    let fs = sim();
    for claim in [(1u64 << 30) - 64, 1 << 29, 1 << 20] {
        let mut payload = vec![1u8, 1, 253];
        payload.extend_from_slice(&claim.to_le_bytes());
        payload.extend_from_slice(b"abc");
        let file = frame(CheckpointFile::KIND, CheckpointFile::VERSION, payload.len() as u64, &payload);
        put(&fs, "/task/checkpoint", &file);
        let label = format!("a name of {claim} bytes");
        let result = without_huge_allocation(&label, || {
            CheckpointFile::open(Arc::new(fs.clone()), "/task/checkpoint", CheckpointOptions::default())
        });
        let error = result.map(|f| f.current().cloned()).unwrap_err();
        assert_eq!(error.corruption_kind(), Some(&CorruptionKind::Decode), "{label}: {error:?}");
        // The same through a handle of strings.
        let mut string = vec![253];
        string.extend_from_slice(&claim.to_le_bytes());
        let file = frame(KIND, VERSION, string.len() as u64, &string);
        let result = without_huge_allocation(&label, || read_as::<String>(&fs, &file));
        assert_eq!(result.unwrap_err().corruption_kind(), Some(&CorruptionKind::Decode), "{label}");
    }
}

#[test]
fn payloads_the_decoder_counts_sixteen_bytes_per_byte_still_decode() {
    // The decoder's limit follows the payload's size; the densest payloads for it are one-byte
    // varints decoded as 128-bit integers (each counted as 16 bytes). Sizes around the steps of
    // the limit (64 KiB and 1 MiB of counted bytes) must still round-trip.
    let fs = sim();
    let mut file: DurableFile<Vec<u128>> =
        DurableFile::open(Arc::new(fs.clone()), PATH, DurableOptions::new(KIND, VERSION)).unwrap();
    for n in (4085..4100).chain(65_525..65_540) {
        let value = vec![7u128; n];
        file.write(&value).unwrap();
        assert_eq!(file.read().unwrap_or_else(|e| panic!("{n} u128s: {e}")), Some(value));
    }
    let mut file: DurableFile<(Vec<i128>, Option<u128>)> =
        DurableFile::open(Arc::new(fs), PATH, DurableOptions::new(KIND, VERSION)).unwrap();
    for n in 4085..4100 {
        let value = (vec![-1i128; n], Some(0));
        file.write(&value).unwrap();
        assert_eq!(file.read().unwrap(), Some(value), "{n} i128s");
    }
}
