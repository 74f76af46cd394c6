//! I/O faults during a write (DESIGN §2 P6, §3): a write that meets a failed fsync, rename,
//! directory fsync, a full disk, or a failure at any one of its operations returns a typed
//! `Error::Io` and poisons the handle (every later call fails with `Error::Poisoned`); the
//! durable state still holds the old value; a reopened handle reads the old value (or, once the
//! rename happened, the new one), finds no temporary file, and can write again. Short writes are
//! completed. Errors that change nothing (a value that does not encode or is too large, a
//! checkpoint id that does not grow) do not poison.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

use std::io::ErrorKind;
use std::path::Path;
use std::sync::Arc;

use cairn_checkpoint::{Checkpoint, CheckpointFile, CheckpointOptions, DurableFile, DurableOptions, Error};
use cairn_fs::{CrashOptions, FaultRule, Fs, Op, OpMatch, SimFs};
use serde::ser::{Error as _, SerializeStruct};
use serde::{Deserialize, Serialize, Serializer};

const DIR: &str = "/task";
const PATH: &str = "/task/state";

/// The generation before `old`, kept as the previous one with `keep_previous`.
fn older() -> Vec<u64> {
    vec![7, 7, 7, 7]
}

/// The value the file holds, durably, when the failing write starts.
fn old() -> Vec<u64> {
    vec![1, 2, 3]
}

/// The value of the failing write: a few KB, so that a short write stores it in pieces.
fn new() -> Vec<u64> {
    (0..600).map(|i| i * 1_000_003).collect()
}

/// The value a reopened handle writes after the failure.
fn after() -> Vec<u64> {
    vec![42]
}

fn options(keep_previous: bool) -> DurableOptions {
    let mut options = DurableOptions::new(*b"TEST", 1);
    options.keep_previous = keep_previous;
    options
}

fn open(fs: &SimFs, keep_previous: bool) -> DurableFile<Vec<u64>> {
    DurableFile::open(Arc::new(fs.clone()), PATH, options(keep_previous)).unwrap()
}

/// A file system whose file durably holds `old()` (and `older()` as the previous generation
/// with `keep_previous`), and the handle that wrote it.
fn setup(keep_previous: bool) -> (SimFs, DurableFile<Vec<u64>>) {
    let fs = SimFs::new(3);
    fs.create_dir_all(Path::new(DIR)).unwrap();
    fs.sync_dir(Path::new("/")).unwrap();
    let mut file = open(&fs, keep_previous);
    if keep_previous {
        file.write(&older()).unwrap();
    }
    file.write(&old()).unwrap();
    (fs, file)
}

fn names(fs: &SimFs) -> Vec<String> {
    fs.list_dir(Path::new(DIR)).unwrap().into_iter().map(|n| n.to_string_lossy().into_owned()).collect()
}

fn temp_names(fs: &SimFs) -> Vec<String> {
    names(fs).into_iter().filter(|n| n.starts_with(".state.tmp-")).collect()
}

/// Where the failure happened relative to the rename that installs the new value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    BeforeRename,
    AfterRename,
}

/// What a failed write must look like.
struct Expect {
    /// The operations the error may name (any if empty).
    ops: &'static [&'static str],
    /// The kind of the underlying I/O error, if it matters.
    kind: Option<ErrorKind>,
    stage: Stage,
    /// Whether the failure also kept the temporary file from being removed.
    temp_left: bool,
}

fn io_op(error: &Error) -> Option<&'static str> {
    match error {
        Error::Io { op, .. } => Some(op),
        _ => None,
    }
}

fn assert_poisoned<T: std::fmt::Debug>(result: Result<T, Error>, op: &str, label: &str, call: &str) {
    match result {
        Err(Error::Poisoned { cause }) => {
            assert_eq!(io_op(&cause), Some(op), "{label}: {call}: poisoned by another cause: {cause}");
        }
        other => panic!("{label}: {call} on a poisoned handle returned {other:?}"),
    }
}

/// Checks everything a failed write promises; `fs` still has the faults that made it fail.
fn check_failed_write(
    fs: &SimFs,
    mut file: DurableFile<Vec<u64>>,
    result: Result<(), Error>,
    keep_previous: bool,
    expect: &Expect,
    label: &str,
) {
    // The error is typed and names the operation and a path in the directory.
    let error = match result {
        Err(error) => error,
        Ok(()) => panic!("{label}: the write succeeded"),
    };
    let op = match &error {
        Error::Io { op, path, source } => {
            assert!(expect.ops.is_empty() || expect.ops.contains(op), "{label}: error names {op}: {error}");
            assert!(path.starts_with(DIR), "{label}: error names {}", path.display());
            if let Some(kind) = expect.kind {
                assert_eq!(source.kind(), kind, "{label}: {error}");
            }
            *op
        }
        other => panic!("{label}: expected Error::Io, got {other:?}"),
    };

    // Poisoned: every later call fails, and changes nothing.
    assert!(file.is_poisoned(), "{label}: not poisoned after {error}");
    assert_poisoned(file.read(), op, label, "read");
    assert_poisoned(file.read_previous(), op, label, "read_previous");
    assert_poisoned(file.write(&after()), op, label, "write");
    assert_poisoned(file.remove(), op, label, "remove");
    assert!(file.is_poisoned());
    drop(file);

    // A power cut now keeps the old value (and the old previous generation).
    let image = fs.crash_image(1, &CrashOptions::durable_only());
    let durable = open(&image, keep_previous);
    assert_eq!(durable.read().unwrap(), Some(old()), "{label}: durable value");
    if keep_previous {
        assert_eq!(durable.read_previous().unwrap(), Some(older()), "{label}: durable previous");
    }

    // The failed write cleaned up its temporary file, or the next open does.
    fs.clear_faults();
    fs.set_capacity(None);
    let temps = temp_names(fs);
    assert_eq!(!temps.is_empty(), expect.temp_left, "{label}: temporary files after the failure: {temps:?}");
    let mut reopened = open(fs, keep_previous);
    assert_eq!(temp_names(fs), Vec::<String>::new(), "{label}: temporary files after reopening");
    let allowed = if keep_previous { ["state", "state.prev"].as_slice() } else { ["state"].as_slice() };
    assert!(names(fs).iter().all(|n| allowed.contains(&n.as_str())), "{label}: files {:?}", names(fs));

    // The live file holds the old value, or the new one once it was renamed into place.
    let live = reopened.read().unwrap_or_else(|e| panic!("{label}: reading after reopen: {e}"));
    match expect.stage {
        Stage::BeforeRename => assert_eq!(live, Some(old()), "{label}: live value"),
        Stage::AfterRename => {
            assert!(live == Some(old()) || live == Some(new()), "{label}: live value {live:?}");
        }
    }

    // And the reopened handle writes again, durably.
    reopened.write(&after()).unwrap_or_else(|e| panic!("{label}: writing after reopen: {e}"));
    assert_eq!(reopened.read().unwrap(), Some(after()));
    let image = fs.crash_image(2, &CrashOptions::durable_only());
    assert_eq!(open(&image, keep_previous).read().unwrap(), Some(after()), "{label}: rewrite lost");
}

/// Injects `rule` into a fresh setup, writes `new()`, and checks the failure.
fn write_under(keep_previous: bool, fault: impl Fn(&SimFs), expect: &Expect, label: &str) {
    let (fs, mut file) = setup(keep_previous);
    fault(&fs);
    let result = file.write(&new());
    let label = format!("{label}, keep_previous {keep_previous}");
    check_failed_write(&fs, file, result, keep_previous, expect, &label);
}

fn each_mode(fault: impl Fn(&SimFs), expect: &Expect, label: &str) {
    for keep_previous in [false, true] {
        write_under(keep_previous, &fault, expect, label);
    }
}

#[test]
fn a_failed_file_fsync_poisons_and_keeps_the_old_value() {
    let expect = Expect { ops: &["sync_all"], kind: None, stage: Stage::BeforeRename, temp_left: false };
    each_mode(|fs| fs.inject(FaultRule::fail_file_sync()), &expect, "fsync");
}

#[test]
fn a_failed_rename_poisons_and_keeps_the_old_value() {
    let expect = Expect { ops: &["rename"], kind: None, stage: Stage::BeforeRename, temp_left: false };
    each_mode(|fs| fs.inject(FaultRule::fail(Op::Rename)), &expect, "rename");
}

#[test]
fn a_failed_directory_fsync_poisons_and_the_old_value_stays_durable() {
    let expect = Expect { ops: &["sync_dir"], kind: None, stage: Stage::AfterRename, temp_left: false };
    each_mode(|fs| fs.inject(FaultRule::fail(Op::SyncDir)), &expect, "sync_dir");
}

#[test]
fn no_space_to_create_the_temp_file_poisons_and_keeps_the_old_value() {
    let expect = Expect {
        ops: &["create"],
        kind: Some(ErrorKind::StorageFull),
        stage: Stage::BeforeRename,
        temp_left: false,
    };
    each_mode(|fs| fs.inject(FaultRule::no_space()), &expect, "no space");
}

#[test]
fn no_space_to_write_the_temp_file_poisons_and_keeps_the_old_value() {
    let expect = Expect {
        ops: &["write"],
        kind: Some(ErrorKind::StorageFull),
        stage: Stage::BeforeRename,
        temp_left: false,
    };
    each_mode(
        |fs| fs.inject(FaultRule::no_space().for_ops(OpMatch::Only(Op::Write))),
        &expect,
        "no space on write",
    );
}

#[test]
fn a_full_disk_poisons_and_keeps_the_old_value() {
    let expect = Expect {
        ops: &["write"],
        kind: Some(ErrorKind::StorageFull),
        stage: Stage::BeforeRename,
        temp_left: false,
    };
    let fill = |fs: &SimFs| {
        let used: usize = names(fs).iter().map(|n| fs.contents(&Path::new(DIR).join(n)).unwrap().len()).sum();
        // Room for a few bytes more than what is there: not for a second copy of anything.
        fs.set_capacity(Some(used as u64 + 16));
    };
    each_mode(fill, &expect, "capacity");
}

#[test]
fn short_writes_are_completed_and_the_write_succeeds() {
    for keep_previous in [false, true] {
        let (fs, mut file) = setup(keep_previous);
        fs.inject(FaultRule::short_write());
        let before = fs.stats();
        file.write(&new()).unwrap();
        let stats = fs.stats();
        let installs = if keep_previous { 2 } else { 1 };
        assert!(stats.writes - before.writes > installs, "no write was short: {stats:?}");
        assert!(stats.faults > before.faults);
        assert!(!file.is_poisoned());
        assert_eq!(file.read().unwrap(), Some(new()));
        let image = fs.crash_image(1, &CrashOptions::durable_only());
        let durable = open(&image, keep_previous);
        assert_eq!(durable.read().unwrap(), Some(new()));
        if keep_previous {
            assert_eq!(durable.read_previous().unwrap(), Some(old()));
        }
        assert_eq!(temp_names(&fs), Vec::<String>::new());
    }
}

/// The operations a `DurableFile` error may name when the file-system operation `op` (`None`:
/// one that changes nothing: a read or a length query) fails.
fn error_ops(op: Option<Op>) -> &'static [&'static str] {
    match op {
        Some(Op::Create) => &["create"],
        Some(Op::Write) => &["write"],
        Some(Op::SyncAll) => &["sync_all"],
        Some(Op::Rename) => &["rename"],
        Some(Op::SyncDir) => &["sync_dir"],
        Some(other) => panic!("a write does not {other:?}"),
        None => &["stat", "open", "read"],
    }
}

/// The operations of one write of `new()` over `old()`, by position: `Some(op)` for those that
/// change state, `None` for reads and length queries; and the position of the rename that
/// installs the new value.
fn ops_of_one_write(keep_previous: bool) -> (Vec<Option<Op>>, usize) {
    let (fs, mut file) = setup(keep_previous);
    let start = fs.stats().ops;
    fs.record_every_mutation(true);
    file.write(&new()).unwrap();
    fs.record_every_mutation(false);
    let count = usize::try_from(fs.stats().ops - start).unwrap();
    let mut ops = vec![None; count];
    for point in fs.take_sync_points() {
        ops[usize::try_from(point.op_index - start).unwrap()] = Some(point.op);
    }
    let rename = ops.iter().rposition(|op| *op == Some(Op::Rename)).unwrap();
    (ops, rename)
}

#[test]
fn a_failure_at_any_operation_of_a_write_poisons_and_keeps_the_old_value() {
    for keep_previous in [false, true] {
        let (ops, rename) = ops_of_one_write(keep_previous);
        // Create, write, fsync, rename, directory fsync; with the previous generation kept, the
        // current file is read and installed as the previous one first.
        assert_eq!(ops.len(), if keep_previous { 13 } else { 5 }, "{ops:?}");
        for (n, op) in ops.iter().enumerate() {
            let stage = if n > rename { Stage::AfterRename } else { Stage::BeforeRename };
            let expect = Expect { ops: error_ops(*op), kind: None, stage, temp_left: false };
            let label = format!("failure at operation {n} ({op:?})");
            write_under(keep_previous, |fs| fs.inject(FaultRule::fail_nth_op(n as u64)), &expect, &label);
        }
        // One operation later, nothing fails: the count above is the whole write.
        let (fs, mut file) = setup(keep_previous);
        fs.inject(FaultRule::fail_nth_op(ops.len() as u64));
        file.write(&new()).unwrap();
        assert_eq!(fs.stats().faults, 0);
    }
}

#[test]
fn a_temp_file_that_could_not_be_removed_is_removed_by_the_next_open() {
    let expect = Expect { ops: &["write"], kind: None, stage: Stage::BeforeRename, temp_left: true };
    each_mode(
        |fs| {
            fs.inject(FaultRule::fail(Op::Write));
            fs.inject(FaultRule::fail(Op::Remove));
        },
        &expect,
        "write and remove fail",
    );
}

#[test]
fn a_failed_remove_poisons_the_handle() {
    for fault in [Op::Remove, Op::SyncDir] {
        let (fs, mut file) = setup(true);
        fs.inject(FaultRule::fail(fault));
        let error = file.remove().unwrap_err();
        assert!(matches!(error, Error::Io { .. }), "{error:?}");
        assert!(file.is_poisoned());
        assert_poisoned(file.read(), io_op(&error).unwrap(), "remove", "read");
        assert_poisoned(file.remove(), io_op(&error).unwrap(), "remove", "remove");
        fs.clear_faults();
        let mut reopened = open(&fs, true);
        reopened.remove().unwrap();
        assert_eq!(names(&fs), Vec::<String>::new());
    }
}

/// A value the serializer refuses when `refuse` is set.
#[derive(Debug, PartialEq, Deserialize)]
struct Fussy {
    refuse: bool,
    data: u64,
}

impl Serialize for Fussy {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.refuse {
            return Err(S::Error::custom("this value refuses to be encoded"));
        }
        let mut fields = serializer.serialize_struct("Fussy", 2)?;
        fields.serialize_field("refuse", &self.refuse)?;
        fields.serialize_field("data", &self.data)?;
        fields.end()
    }
}

#[test]
fn an_encode_error_changes_nothing_and_does_not_poison() {
    let fs = SimFs::new(1);
    fs.create_dir_all(Path::new(DIR)).unwrap();
    let mut file: DurableFile<Fussy> =
        DurableFile::open(Arc::new(fs.clone()), PATH, DurableOptions::new(*b"FUSS", 1)).unwrap();
    file.write(&Fussy { refuse: false, data: 1 }).unwrap();
    let before = fs.stats();
    let error = file.write(&Fussy { refuse: true, data: 2 }).unwrap_err();
    match &error {
        Error::Encode { file: path, source } => {
            assert_eq!(path, Path::new(PATH));
            assert!(source.to_string().contains("refuses"), "{source}");
        }
        other => panic!("expected Error::Encode, got {other:?}"),
    }
    assert!(!file.is_poisoned());
    assert_eq!(fs.stats().ops, before.ops, "an unencodable value touched the file system");
    assert_eq!(file.read().unwrap(), Some(Fussy { refuse: false, data: 1 }));
    file.write(&Fussy { refuse: false, data: 3 }).unwrap();
    assert_eq!(file.read().unwrap(), Some(Fussy { refuse: false, data: 3 }));
}

#[test]
fn a_value_over_max_bytes_is_refused_without_poisoning() {
    for keep_previous in [false, true] {
        let fs = SimFs::new(1);
        fs.create_dir_all(Path::new(DIR)).unwrap();
        let mut options = options(keep_previous);
        options.max_bytes = 64;
        let mut file: DurableFile<Vec<u64>> = DurableFile::open(Arc::new(fs.clone()), PATH, options).unwrap();
        file.write(&old()).unwrap();
        let before = fs.stats();
        let error = file.write(&new()).unwrap_err();
        match &error {
            Error::TooLarge { file: path, bytes, max } => {
                assert_eq!(path, Path::new(PATH));
                assert_eq!(*max, 64);
                assert!(*bytes > 64, "{error}");
            }
            other => panic!("expected Error::TooLarge, got {other:?}"),
        }
        assert!(!file.is_poisoned());
        assert_eq!(fs.stats().ops, before.ops, "an oversized value touched the file system");
        assert_eq!(file.read().unwrap(), Some(old()));
        assert_eq!(temp_names(&fs), Vec::<String>::new());
        file.write(&after()).unwrap();
        assert_eq!(file.read().unwrap(), Some(after()));
    }
}

#[test]
fn a_current_file_over_max_bytes_is_refused_without_poisoning() {
    // With keep_previous a write first copies the current file; if that file is over this
    // handle's limit, nothing is written and the handle stays usable, as for a large value.
    let fs = SimFs::new(1);
    fs.create_dir_all(Path::new(DIR)).unwrap();
    open(&fs, false).write(&new()).unwrap();
    let mut options = options(true);
    options.max_bytes = 64;
    let mut file: DurableFile<Vec<u64>> = DurableFile::open(Arc::new(fs.clone()), PATH, options).unwrap();
    let error = file.write(&old()).unwrap_err();
    assert!(matches!(error, Error::TooLarge { max: 64, .. }), "{error:?}");
    assert!(!file.is_poisoned(), "poisoned by {error}");
    assert!(matches!(file.read(), Err(Error::TooLarge { .. })));
    assert_eq!(open(&fs, false).read().unwrap(), Some(new()));
    assert_eq!(temp_names(&fs), Vec::<String>::new());
}

fn checkpoint_file(fs: &SimFs) -> CheckpointFile {
    CheckpointFile::open(Arc::new(fs.clone()), "/task/checkpoint", CheckpointOptions::default()).unwrap()
}

#[test]
fn a_checkpoint_id_not_greater_than_the_current_is_refused_without_poisoning() {
    let fs = SimFs::new(1);
    fs.create_dir_all(Path::new(DIR)).unwrap();
    fs.sync_dir(Path::new("/")).unwrap();
    let mut file = checkpoint_file(&fs);
    let five = Checkpoint::new(5).input("in/0", 50);
    file.write(&five).unwrap();
    for id in [5, 4, 0] {
        let before = fs.stats();
        match file.write(&Checkpoint::new(id).input("in/0", 99)) {
            Err(Error::NotNewer { last: 5, given }) => assert_eq!(given, id),
            other => panic!("id {id} after 5: {other:?}"),
        }
        assert!(!file.is_poisoned());
        assert_eq!(fs.stats().ops, before.ops, "a refused checkpoint touched the file system");
        assert_eq!(file.current(), Some(&five));
    }
    assert_eq!(checkpoint_file(&fs).current(), Some(&five));
    let six = Checkpoint::new(6).input("in/0", 60);
    file.write(&six).unwrap();
    assert_eq!(file.current(), Some(&six));
    let image = fs.crash_image(1, &CrashOptions::durable_only());
    assert_eq!(checkpoint_file(&image).current(), Some(&six));
}

#[test]
fn a_failed_checkpoint_write_poisons_and_keeps_the_current_checkpoint() {
    for fault in [FaultRule::fail_file_sync(), FaultRule::fail(Op::Rename), FaultRule::fail(Op::SyncDir)] {
        let fs = SimFs::new(1);
        fs.create_dir_all(Path::new(DIR)).unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        let mut file = checkpoint_file(&fs);
        let one = Checkpoint::new(1).changelog("counts", 10);
        file.write(&one).unwrap();
        fs.inject(fault.clone());
        let error = file.write(&Checkpoint::new(2).changelog("counts", 20)).unwrap_err();
        assert!(matches!(error, Error::Io { .. }), "{fault:?}: {error:?}");
        assert!(file.is_poisoned());
        assert_eq!(file.current(), Some(&one), "{fault:?}: an unacknowledged checkpoint is current");
        assert!(matches!(file.write(&Checkpoint::new(3)), Err(Error::Poisoned { .. })));
        assert!(matches!(file.previous(), Err(Error::Poisoned { .. })));
        let image = fs.crash_image(1, &CrashOptions::durable_only());
        assert_eq!(checkpoint_file(&image).current(), Some(&one), "{fault:?}");
        fs.clear_faults();
        let mut reopened = checkpoint_file(&fs);
        let id = reopened.current().unwrap().id;
        reopened.write(&Checkpoint::new(id + 1)).unwrap();
    }
}
