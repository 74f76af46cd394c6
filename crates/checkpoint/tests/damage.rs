//! Damaged files (DESIGN §2 P5, §3, §7 rung 4): a valid file is emptied, cut, flipped, given
//! another kind or version, followed by garbage, or given a payload that does not decode; every
//! read returns the typed error that says what is wrong, in which file and at which byte:
//! never a panic, never "no file" (`Ok(None)`), never a value. A damaged checkpoint is never
//! taken for "no checkpoint".
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_checkpoint::{
    Checkpoint, CheckpointFile, CheckpointOptions, CorruptionKind, DurableFile, DurableOptions, Error,
};
use cairn_fs::{FaultRule, Fs, Op, RealFs, SimFs};

const PATH: &str = "/task/state";
const KIND: [u8; 4] = *b"TEST";
const VERSION: u32 = 3;
/// Header: magic, frame version, flags, kind, payload version, payload length.
const HEADER: usize = 24;
const TRAILER: usize = 4;

fn value() -> Vec<u64> {
    vec![0, 1, 250, 251, 65_536, u64::MAX, 17]
}

/// A file in the durable-file format, built here from docs/format.md, independent of the crate.
fn frame(frame_version: u16, kind: [u8; 4], version: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = b"CRDF".to_vec();
    out.extend_from_slice(&frame_version.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&kind);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Recomputes the checksum after the header was edited, so that only the edit is wrong.
fn reseal(bytes: &mut [u8]) {
    let end = bytes.len() - TRAILER;
    let crc = crc32c::crc32c(&bytes[..end]);
    bytes[end..].copy_from_slice(&crc.to_le_bytes());
}

/// A simulated directory with a valid file written by the crate, and its bytes.
struct Sim {
    fs: SimFs,
    valid: Vec<u8>,
}

impl Sim {
    fn new() -> Sim {
        let fs = SimFs::new(5);
        fs.create_dir_all(Path::new("/task")).unwrap();
        let mut file = Sim::open_with(&fs, DurableOptions::new(KIND, VERSION));
        file.write(&value()).unwrap();
        let valid = fs.contents(Path::new(PATH)).unwrap();
        assert_eq!(Sim::open_with(&fs, DurableOptions::new(KIND, VERSION)).read().unwrap(), Some(value()));
        Sim { fs, valid }
    }

    fn open_with(fs: &SimFs, options: DurableOptions) -> DurableFile<Vec<u64>> {
        DurableFile::open(Arc::new(fs.clone()), PATH, options).unwrap()
    }

    /// Reads `bytes` as the file, with a fresh handle.
    fn read(&self, bytes: &[u8]) -> Result<Option<Vec<u64>>, Error> {
        self.read_with(bytes, DurableOptions::new(KIND, VERSION))
    }

    fn read_with(&self, bytes: &[u8], options: DurableOptions) -> Result<Option<Vec<u64>>, Error> {
        self.fs.set_contents(Path::new(PATH), bytes).unwrap();
        Sim::open_with(&self.fs, options).read()
    }
}

/// Asserts a corruption error naming `file` at `position`; returns its kind.
fn corruption<T: std::fmt::Debug>(
    result: Result<Option<T>, Error>,
    file: &Path,
    position: u64,
    label: &str,
) -> CorruptionKind {
    match result {
        Err(Error::Corruption { file: named, position: at, kind, .. }) => {
            assert_eq!(named, file, "{label}: wrong file named");
            assert_eq!(at, position, "{label}: wrong position for {kind}");
            kind
        }
        other => panic!("{label}: expected a corruption error, got {other:?}"),
    }
}

#[test]
fn an_empty_file_is_corrupt_not_absent() {
    let sim = Sim::new();
    let kind = corruption(sim.read(&[]), Path::new(PATH), 0, "empty");
    assert_eq!(kind, CorruptionKind::Empty);
}

#[test]
fn a_file_cut_at_any_byte_is_reported_as_truncated_where_it_ends() {
    let sim = Sim::new();
    let full = sim.valid.len() as u64;
    for len in 1..sim.valid.len() {
        let label = format!("cut at {len}");
        let available = len as u64;
        match corruption(sim.read(&sim.valid[..len]), Path::new(PATH), available, &label) {
            CorruptionKind::Truncated { needed, available: found } => {
                assert_eq!(found, available, "{label}");
                // Before the header is whole, the file needs at least a header and a checksum;
                // after, exactly the length the header declares.
                let expected = if len < HEADER { (HEADER + TRAILER) as u64 } else { full };
                assert_eq!(needed, expected, "{label}");
            }
            other => panic!("{label}: {other:?}"),
        }
    }
}

/// What a flip of bit `bit` of `valid` must be reported as: the position and a check of the kind.
/// Whether a reported corruption kind is the expected one.
type KindCheck = Box<dyn Fn(&CorruptionKind) -> bool>;

fn expected_flip(valid: &[u8], damaged: &[u8], bit: usize) -> (u64, KindCheck) {
    let byte = bit / 8;
    let end = (valid.len() - TRAILER) as u64;
    let stored = u32::from_le_bytes(valid[valid.len() - TRAILER..].try_into().unwrap());
    match byte {
        0..4 => {
            let found: [u8; 4] = damaged[..4].try_into().unwrap();
            (0, Box::new(move |k| *k == CorruptionKind::BadMagic { found }))
        }
        4..8 => {
            let version = u16::from_le_bytes(damaged[4..6].try_into().unwrap());
            let flags = u16::from_le_bytes(damaged[6..8].try_into().unwrap());
            let at = if byte < 6 { 4 } else { 6 };
            (at, Box::new(move |k| *k == CorruptionKind::UnsupportedFrame { version, flags }))
        }
        16..24 => {
            let declared = u64::from_le_bytes(damaged[16..24].try_into().unwrap());
            let needed = (HEADER + TRAILER) as u64 + declared;
            let available = valid.len() as u64;
            if needed > available {
                (available, Box::new(move |k| *k == CorruptionKind::Truncated { needed, available }))
            } else {
                // A shorter length: the checksum is then looked for inside the payload.
                (HEADER as u64 + declared, Box::new(|k| matches!(k, CorruptionKind::Checksum { .. })))
            }
        }
        // Kind, payload version, payload and the checksum itself: all covered by the checksum,
        // so that damage is reported as damage, not as a file of another kind.
        _ => (
            end,
            Box::new(move |k| match k {
                CorruptionKind::Checksum { stored: s, computed } => {
                    s != computed && (byte as u64 >= end || *s == stored)
                }
                _ => false,
            }),
        ),
    }
}

#[test]
fn every_single_bit_flip_is_reported_with_its_kind_and_position() {
    let sim = Sim::new();
    for bit in 0..sim.valid.len() * 8 {
        let mut damaged = sim.valid.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        let label = format!("bit {bit} (byte {})", bit / 8);
        let (position, check) = expected_flip(&sim.valid, &damaged, bit);
        let kind = corruption(sim.read(&damaged), Path::new(PATH), position, &label);
        assert!(check(&kind), "{label}: reported as {kind:?}");
    }
}

#[test]
fn a_bit_flipped_while_reading_is_reported_not_returned() {
    let sim = Sim::new();
    sim.fs.set_contents(Path::new(PATH), &sim.valid).unwrap();
    for seed in 0..50 {
        sim.fs.inject(FaultRule::flip_bit_on_read().times(1));
        let result = Sim::open_with(&sim.fs, DurableOptions::new(KIND, VERSION)).read();
        assert!(matches!(result, Err(Error::Corruption { .. })), "read {seed}: {result:?}");
    }
    assert_eq!(sim.read(&sim.valid).unwrap(), Some(value()));
}

#[test]
fn a_newer_payload_version_is_refused() {
    let sim = Sim::new();
    let fs = SimFs::new(1);
    fs.create_dir_all(Path::new("/task")).unwrap();
    Sim::open_with(&fs, DurableOptions::new(KIND, VERSION + 1)).write(&value()).unwrap();
    let newer = fs.contents(Path::new(PATH)).unwrap();
    let kind = corruption(sim.read(&newer), Path::new(PATH), 12, "newer payload");
    assert_eq!(kind, CorruptionKind::UnsupportedVersion { expected: VERSION, found: VERSION + 1 });
    // An older one too: it needs a migration, not a guess.
    let older = frame(1, KIND, VERSION - 1, &sim.valid[HEADER..sim.valid.len() - TRAILER]);
    let kind = corruption(sim.read(&older), Path::new(PATH), 12, "older payload");
    assert_eq!(kind, CorruptionKind::UnsupportedVersion { expected: VERSION, found: VERSION - 1 });
}

#[test]
fn a_newer_frame_version_is_refused() {
    let sim = Sim::new();
    for version in [2, 0, u16::MAX] {
        let mut newer = sim.valid.clone();
        newer[4..6].copy_from_slice(&version.to_le_bytes());
        reseal(&mut newer);
        let kind = corruption(sim.read(&newer), Path::new(PATH), 4, "frame version");
        assert_eq!(kind, CorruptionKind::UnsupportedFrame { version, flags: 0 });
    }
    // The bytes after the version are reserved flags: a file with any set is not this format.
    let mut flagged = sim.valid.clone();
    flagged[6] = 1;
    reseal(&mut flagged);
    let kind = corruption(sim.read(&flagged), Path::new(PATH), 6, "flags");
    assert_eq!(kind, CorruptionKind::UnsupportedFrame { version: 1, flags: 1 });
}

#[test]
fn a_file_of_another_kind_is_refused() {
    let sim = Sim::new();
    let payload = &sim.valid[HEADER..sim.valid.len() - TRAILER];
    let snapshot = frame(1, *b"SNAP", VERSION, payload);
    let kind = corruption(sim.read(&snapshot), Path::new(PATH), 8, "kind");
    assert_eq!(kind, CorruptionKind::WrongKind { expected: KIND, found: *b"SNAP" });
    // Through the crate: a checkpoint is not readable as this kind, nor this kind as a checkpoint.
    let fs = SimFs::new(1);
    fs.create_dir_all(Path::new("/task")).unwrap();
    let mut checkpoint =
        CheckpointFile::open(Arc::new(fs.clone()), PATH, CheckpointOptions::default()).unwrap();
    checkpoint.write(&Checkpoint::new(1)).unwrap();
    let bytes = fs.contents(Path::new(PATH)).unwrap();
    let kind = corruption(sim.read(&bytes), Path::new(PATH), 8, "checkpoint as TEST");
    assert_eq!(kind, CorruptionKind::WrongKind { expected: KIND, found: CheckpointFile::KIND });
}

#[test]
fn trailing_bytes_after_the_checksum_are_reported() {
    let sim = Sim::new();
    let end = sim.valid.len() as u64;
    for extra in [vec![0u8], vec![0xA5; 4096], sim.valid.clone()] {
        let mut longer = sim.valid.clone();
        longer.extend_from_slice(&extra);
        let label = format!("{} trailing bytes", extra.len());
        let kind = corruption(sim.read(&longer), Path::new(PATH), end, &label);
        assert_eq!(kind, CorruptionKind::TrailingBytes { bytes: extra.len() as u64 }, "{label}");
    }
}

#[test]
fn a_valid_frame_whose_payload_does_not_decode_is_reported() {
    let sim = Sim::new();
    let mut left_over = sim.valid[HEADER..sim.valid.len() - TRAILER].to_vec();
    left_over.push(0);
    let payloads: [(&str, Vec<u8>); 5] = [
        ("empty payload", vec![]),
        ("a value cut short", vec![5, 1, 2]),
        ("a byte left over", left_over),
        ("a varint marker with nothing after it", vec![1, 253]),
        ("a sequence claiming u64::MAX elements", [vec![253], vec![0xFF; 8]].concat()),
    ];
    for (label, payload) in payloads {
        let file = frame(1, KIND, VERSION, &payload);
        let error = sim.read(&file).unwrap_err();
        assert!(std::error::Error::source(&error).is_some(), "{label}: the decoder's error is lost");
        let kind = corruption(Err::<Option<()>, _>(error), Path::new(PATH), HEADER as u64, label);
        assert_eq!(kind, CorruptionKind::Decode, "{label}");
    }
    // A string that is not UTF-8, for a handle of strings.
    let fs = SimFs::new(1);
    fs.create_dir_all(Path::new("/task")).unwrap();
    fs.open(Path::new(PATH), cairn_fs::OpenMode::CreateNew).unwrap();
    fs.set_contents(Path::new(PATH), &frame(1, KIND, VERSION, &[2, 0xC3, 0x28])).unwrap();
    let strings: DurableFile<String> =
        DurableFile::open(Arc::new(fs), PATH, DurableOptions::new(KIND, VERSION)).unwrap();
    let kind = corruption(strings.read(), Path::new(PATH), HEADER as u64, "not UTF-8");
    assert_eq!(kind, CorruptionKind::Decode);
}

#[test]
fn a_length_field_claiming_exabytes_is_a_truncation() {
    let sim = Sim::new();
    let available = sim.valid.len() as u64;
    for declared in [1u64 << 63, u64::MAX, u64::MAX - 27, available] {
        let mut claim = sim.valid.clone();
        claim[16..24].copy_from_slice(&declared.to_le_bytes());
        reseal(&mut claim);
        let label = format!("length {declared}");
        match corruption(sim.read(&claim), Path::new(PATH), available, &label) {
            CorruptionKind::Truncated { needed, available: found } => {
                assert_eq!(found, available, "{label}");
                assert_eq!(needed, declared.saturating_add((HEADER + TRAILER) as u64), "{label}");
            }
            other => panic!("{label}: {other:?}"),
        }
    }
}

#[test]
fn a_file_over_max_bytes_is_not_read() {
    let sim = Sim::new();
    let len = sim.valid.len() as u64;
    let mut options = DurableOptions::new(KIND, VERSION);
    options.max_bytes = len;
    assert_eq!(sim.read_with(&sim.valid, options.clone()).unwrap(), Some(value()), "at the limit");
    options.max_bytes = len - 1;
    match sim.read_with(&sim.valid, options.clone()) {
        Err(Error::TooLarge { file, bytes, max }) => {
            assert_eq!((file.as_path(), bytes, max), (Path::new(PATH), len, len - 1));
        }
        other => panic!("one byte over the limit: {other:?}"),
    }
    // A big file is refused from its length alone: it is never opened or read.
    options.max_bytes = 4096;
    sim.fs.set_contents(Path::new(PATH), &vec![0; 1 << 20]).unwrap();
    let file = Sim::open_with(&sim.fs, options);
    sim.fs.inject(FaultRule::fail(Op::Open));
    sim.fs.inject(FaultRule::fail(Op::Read));
    let result = file.read();
    assert!(matches!(result, Err(Error::TooLarge { bytes: 1_048_576, max: 4096, .. })), "{result:?}");
}

#[test]
fn a_damaged_previous_generation_is_reported_with_its_own_path() {
    let fs = SimFs::new(1);
    fs.create_dir_all(Path::new("/task")).unwrap();
    let mut options = DurableOptions::new(KIND, VERSION);
    options.keep_previous = true;
    let mut file: DurableFile<Vec<u64>> =
        DurableFile::open(Arc::new(fs.clone()), PATH, options.clone()).unwrap();
    file.write(&vec![1]).unwrap();
    file.write(&vec![2]).unwrap();
    let previous = file.previous_path();
    assert_eq!(previous, Path::new("/task/state.prev"));
    let bytes = fs.contents(&previous).unwrap();
    fs.set_contents(&previous, &bytes[..bytes.len() - 1]).unwrap();
    let kind = corruption(file.read_previous(), &previous, bytes.len() as u64 - 1, "previous");
    assert!(matches!(kind, CorruptionKind::Truncated { .. }), "{kind:?}");
    assert_eq!(file.read().unwrap(), Some(vec![2]));
}

fn checkpoint_damages(valid: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut damages = vec![("empty".to_string(), Vec::new())];
    for len in [1, 10, HEADER, valid.len() - 1] {
        damages.push((format!("cut at {len}"), valid[..len].to_vec()));
    }
    for byte in [0, 5, 9, 13, 20, HEADER + 1, valid.len() - 1] {
        let mut flipped = valid.to_vec();
        flipped[byte] ^= 0x10;
        damages.push((format!("byte {byte} flipped"), flipped));
    }
    let mut longer = valid.to_vec();
    longer.push(b'\n');
    damages.push(("a newline appended".into(), longer));
    damages.push(("zeros".into(), vec![0; valid.len()]));
    damages.push(("a payload of another version".into(), {
        let mut v = valid.to_vec();
        v[12] += 1;
        reseal(&mut v);
        v
    }));
    damages
}

#[test]
fn a_damaged_checkpoint_is_an_error_never_no_checkpoint() {
    let fs = SimFs::new(1);
    fs.create_dir_all(Path::new("/task")).unwrap();
    let path = Path::new("/task/checkpoint");
    let checkpoint = Checkpoint::new(7).input("clicks/0", 1200).changelog("counts", 88).output("out", 3);
    let open = || CheckpointFile::open(Arc::new(fs.clone()), path, CheckpointOptions::default());
    open().unwrap().write(&checkpoint).unwrap();
    let valid = fs.contents(path).unwrap();
    for (label, damaged) in checkpoint_damages(&valid) {
        fs.set_contents(path, &damaged).unwrap();
        match open() {
            Err(Error::Corruption { file, .. }) => assert_eq!(file, path, "{label}"),
            Err(other) => panic!("{label}: expected a corruption error, got {other:?}"),
            Ok(file) => panic!("{label}: opened with checkpoint {:?}", file.current()),
        }
    }
    fs.set_contents(path, &valid).unwrap();
    assert_eq!(open().unwrap().current(), Some(&checkpoint));
}

/// A directory of its own under the system's temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let path =
            std::env::temp_dir().join(format!("cairn-checkpoint-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn damage_to_a_real_file_is_reported_the_same_way() {
    let dir = TempDir::new("damage");
    let path = dir.0.join("state");
    let open = || {
        DurableFile::<Vec<u64>>::open(Arc::new(RealFs::new()), &path, DurableOptions::new(KIND, VERSION))
            .unwrap()
    };
    open().write(&value()).unwrap();
    let valid = std::fs::read(&path).unwrap();
    let end = (valid.len() - TRAILER) as u64;
    let mut flipped = valid.clone();
    flipped[HEADER + 2] ^= 4;
    let mut longer = valid.clone();
    longer.extend_from_slice(b"garbage");
    let cases: [(&str, Vec<u8>, u64); 5] = [
        ("empty", vec![], 0),
        ("cut in the header", valid[..10].to_vec(), 10),
        ("cut in the payload", valid[..HEADER + 3].to_vec(), HEADER as u64 + 3),
        ("a flipped bit", flipped, end),
        ("trailing garbage", longer, valid.len() as u64),
    ];
    for (label, bytes, position) in cases {
        std::fs::write(&path, &bytes).unwrap();
        let kind = corruption(open().read(), &path, position, label);
        let expected = match label {
            "empty" => matches!(kind, CorruptionKind::Empty),
            "a flipped bit" => matches!(kind, CorruptionKind::Checksum { .. }),
            "trailing garbage" => kind == CorruptionKind::TrailingBytes { bytes: 7 },
            _ => matches!(kind, CorruptionKind::Truncated { .. }),
        };
        assert!(expected, "{label}: {kind:?}");
    }
    // A damaged checkpoint on a real disk: an error, never a fresh start.
    let checkpoint_path = dir.0.join("checkpoint");
    let fs: Arc<dyn Fs> = Arc::new(RealFs::new());
    let mut file =
        CheckpointFile::open(Arc::clone(&fs), &checkpoint_path, CheckpointOptions::default()).unwrap();
    file.write(&Checkpoint::new(1).input("in/0", 5)).unwrap();
    let valid = std::fs::read(&checkpoint_path).unwrap();
    std::fs::write(&checkpoint_path, &valid[..valid.len() / 2]).unwrap();
    let error =
        CheckpointFile::open(Arc::clone(&fs), &checkpoint_path, CheckpointOptions::default()).unwrap_err();
    assert!(matches!(error.corruption_kind(), Some(CorruptionKind::Truncated { .. })), "{error:?}");
    std::fs::write(&checkpoint_path, b"").unwrap();
    let error = CheckpointFile::open(fs, &checkpoint_path, CheckpointOptions::default()).unwrap_err();
    assert_eq!(error.corruption_kind(), Some(&CorruptionKind::Empty), "{error:?}");
}
