//! The checkpoint API (DESIGN §5) and the housekeeping of durable files (DESIGN §3, P7): the
//! `Checkpoint` builder, checkpoint ids that only grow, also across reopen, the previous
//! generation, durable removal, the cleanup of leftover temporary files, and a round trip on the
//! real file system.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use cairn_checkpoint::{Checkpoint, CheckpointFile, CheckpointOptions, DurableFile, DurableOptions, Error};
use cairn_fs::{CrashOptions, Fs, OpenMode, RealFs, SimFs};

const CHECKPOINT: &str = "/task/checkpoint";

fn now_ms() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

fn sim() -> SimFs {
    let fs = SimFs::new(11);
    fs.create_dir_all(Path::new("/task")).unwrap();
    fs.sync_dir(Path::new("/")).unwrap();
    fs
}

fn names(fs: &dyn Fs, dir: &Path) -> Vec<String> {
    fs.list_dir(dir).unwrap().into_iter().map(|n| n.to_string_lossy().into_owned()).collect()
}

fn open_checkpoint(fs: &SimFs, keep_previous: bool) -> CheckpointFile {
    let mut options = CheckpointOptions::default();
    options.keep_previous = keep_previous;
    CheckpointFile::open(Arc::new(fs.clone()), CHECKPOINT, options).unwrap()
}

/// The checkpoint with id `id`, the same every time it is made (its time included).
fn checkpoint(id: u64) -> Checkpoint {
    let mut checkpoint = Checkpoint::new(id)
        .input("clicks/0", id.wrapping_mul(100))
        .changelog("counts", id.wrapping_mul(10))
        .output("alerts", id);
    checkpoint.created_ms = 1_700_000_000_000 + (id % 1000) as i64;
    checkpoint
}

#[test]
fn a_new_checkpoint_has_its_id_the_current_time_and_no_offsets() {
    let before = now_ms();
    let checkpoint = Checkpoint::new(42);
    let after = now_ms();
    assert_eq!(checkpoint.id, 42);
    assert!(
        (before..=after).contains(&checkpoint.created_ms),
        "{} not in {before}..={after}",
        checkpoint.created_ms
    );
    assert!(
        checkpoint.inputs.is_empty() && checkpoint.changelogs.is_empty() && checkpoint.outputs.is_empty()
    );
    let default = Checkpoint::default();
    assert_eq!((default.id, default.created_ms), (0, 0));
}

#[test]
fn the_builder_records_each_offset_under_its_name_and_the_last_one_wins() {
    let checkpoint = Checkpoint::new(1)
        .input("clicks/0", 1200)
        .input("clicks/1", 7)
        .changelog("counts", 88)
        .output("alerts", 5)
        .input("clicks/0", 1300)
        .output(String::from("audit"), 0);
    let map =
        |pairs: &[(&str, u64)]| pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>();
    assert_eq!(checkpoint.inputs, map(&[("clicks/0", 1300), ("clicks/1", 7)]));
    assert_eq!(checkpoint.changelogs, map(&[("counts", 88)]));
    assert_eq!(checkpoint.outputs, map(&[("alerts", 5), ("audit", 0)]));
    assert_eq!(checkpoint.id, 1);
}

#[test]
fn a_checkpoint_round_trips_through_its_file_with_every_field() {
    let fs = sim();
    let mut file = open_checkpoint(&fs, false);
    assert_eq!(file.path(), Path::new(CHECKPOINT));
    assert_eq!(file.current(), None);
    let mut written = checkpoint(3).input("", u64::MAX).changelog("ünïcode", 0);
    written.created_ms = -5;
    file.write(&written).unwrap();
    assert_eq!(file.current(), Some(&written));
    let reopened = open_checkpoint(&fs, false);
    assert_eq!(reopened.current(), Some(&written));
    let image = fs.crash_image(1, &CrashOptions::durable_only());
    assert_eq!(open_checkpoint(&image, false).current(), Some(&written));
}

#[test]
fn checkpoint_ids_must_grow_across_reopen() {
    let fs = sim();
    let mut file = open_checkpoint(&fs, false);
    for id in [1, 2, 5, 9] {
        file.write(&checkpoint(id)).unwrap();
    }
    drop(file);
    let mut reopened = open_checkpoint(&fs, false);
    assert_eq!(reopened.current(), Some(&checkpoint(9)), "open reads the current checkpoint");
    for stale in [9, 8, 1, 0] {
        match reopened.write(&checkpoint(stale)) {
            Err(Error::NotNewer { last: 9, given }) => assert_eq!(given, stale),
            other => panic!("id {stale} after reopening at 9: {other:?}"),
        }
    }
    reopened.write(&checkpoint(10)).unwrap();
    assert_eq!(open_checkpoint(&fs, false).current().unwrap().id, 10);
    // Ids need not be consecutive; only greater.
    reopened.write(&checkpoint(u64::MAX)).unwrap();
    assert!(matches!(open_checkpoint(&fs, false).write(&checkpoint(11)), Err(Error::NotNewer { .. })));
}

#[test]
fn keep_previous_keeps_exactly_the_previous_checkpoint_across_reopen() {
    let fs = sim();
    let mut file = open_checkpoint(&fs, true);
    assert_eq!(file.previous().unwrap(), None);
    file.write(&checkpoint(1)).unwrap();
    assert_eq!(file.previous().unwrap(), None, "the first checkpoint has no previous one");
    for id in 2..=6 {
        file.write(&checkpoint(id)).unwrap();
        assert_eq!(file.previous().unwrap(), Some(checkpoint(id - 1)), "after writing {id}");
        assert_eq!(names(&fs, Path::new("/task")), ["checkpoint", "checkpoint.prev"]);
    }
    drop(file);
    let mut reopened = open_checkpoint(&fs, true);
    assert_eq!(reopened.current(), Some(&checkpoint(6)));
    assert_eq!(reopened.previous().unwrap(), Some(checkpoint(5)));
    let image = fs.crash_image(1, &CrashOptions::durable_only());
    let durable = open_checkpoint(&image, true);
    assert_eq!(durable.current(), Some(&checkpoint(6)));
    assert_eq!(durable.previous().unwrap(), Some(checkpoint(5)), "the previous generation is durable");
    reopened.write(&checkpoint(7)).unwrap();
    assert_eq!(reopened.previous().unwrap(), Some(checkpoint(6)));
    assert_eq!(names(&fs, Path::new("/task")), ["checkpoint", "checkpoint.prev"]);
}

#[test]
fn without_keep_previous_no_previous_generation_is_written() {
    let fs = sim();
    let mut file = open_checkpoint(&fs, false);
    file.write(&checkpoint(1)).unwrap();
    file.write(&checkpoint(2)).unwrap();
    assert_eq!(file.previous().unwrap(), None);
    assert_eq!(names(&fs, Path::new("/task")), ["checkpoint"]);
}

fn durable(fs: &SimFs, keep_previous: bool) -> DurableFile<Vec<u64>> {
    let mut options = DurableOptions::new(*b"TEST", 1);
    options.keep_previous = keep_previous;
    DurableFile::open(Arc::new(fs.clone()), "/task/state", options).unwrap()
}

#[test]
fn remove_deletes_the_file_and_its_previous_generation_durably() {
    let fs = sim();
    let mut file = durable(&fs, true);
    file.write(&vec![1]).unwrap();
    file.write(&vec![2]).unwrap();
    assert_eq!(names(&fs, Path::new("/task")), ["state", "state.prev"]);
    file.remove().unwrap();
    assert_eq!(file.read().unwrap(), None);
    assert_eq!(file.read_previous().unwrap(), None);
    assert_eq!(names(&fs, Path::new("/task")), Vec::<String>::new());
    let image = fs.crash_image(1, &CrashOptions::durable_only());
    assert_eq!(names(&image, Path::new("/task")), Vec::<String>::new(), "a removed file came back");
    assert_eq!(durable(&image, true).read().unwrap(), None);
    // Removing nothing is fine, and the handle writes again.
    file.remove().unwrap();
    file.write(&vec![3]).unwrap();
    assert_eq!(durable(&fs, true).read().unwrap(), Some(vec![3]));
    assert_eq!(file.read_previous().unwrap(), None);
}

#[test]
fn open_removes_leftover_temp_files_of_its_name_only() {
    let fs = sim();
    let mut file = durable(&fs, false);
    file.write(&vec![1, 2]).unwrap();
    let leftovers = [".state.tmp-1234-0-99", ".state.tmp-1", ".state.tmp-9-9-9-9"];
    let others = [
        "state.tmp-1",           // not hidden
        ".state.tmp-1234-0-99~", // another suffix
        ".state.tmp-",           // no unique part
        ".state.tmp-x",          // not digits
        ".state.b.tmp-1-0-0",    // the temp of a sibling file named "state.b"
        ".other.tmp-1-0-0",      // another file's temp
        ".stately.tmp-1-0-0",    // a name that only starts like it
        "notes.txt",
    ];
    for name in leftovers.iter().chain(&others) {
        let path = Path::new("/task").join(name);
        fs.open(&path, OpenMode::CreateNew).unwrap().write_all_at(b"half a write", 0).unwrap();
    }
    let mut reopened = durable(&fs, false);
    let mut expected: Vec<String> = others.iter().map(|n| n.to_string()).collect();
    expected.push("state".into());
    expected.sort();
    assert_eq!(names(&fs, Path::new("/task")), expected);
    assert_eq!(reopened.read().unwrap(), Some(vec![1, 2]));
    reopened.write(&vec![3]).unwrap();
    assert_eq!(names(&fs, Path::new("/task")), expected, "a write left something behind");
    // A checkpoint file cleans up after itself the same way.
    fs.open(Path::new("/task/.checkpoint.tmp-9-9-9"), OpenMode::CreateNew).unwrap();
    open_checkpoint(&fs, false);
    assert!(!fs.exists(Path::new("/task/.checkpoint.tmp-9-9-9")).unwrap());
    assert_eq!(names(&fs, Path::new("/task")), expected);
}

/// A directory of its own under the system's temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
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

fn real_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_checkpoint_round_trips_on_the_real_file_system() {
    let dir = TempDir::new("round-trip");
    let fs: Arc<dyn Fs> = Arc::new(RealFs::new());
    let path = dir.0.join("checkpoint");
    let mut options = CheckpointOptions::default();
    options.keep_previous = true;
    // A leftover from a crashed write, to be cleaned up by open.
    std::fs::write(dir.0.join(".checkpoint.tmp-1-2-3"), b"torn").unwrap();
    let mut file = CheckpointFile::open(Arc::clone(&fs), &path, options.clone()).unwrap();
    assert_eq!(file.current(), None);
    for id in 1..=3 {
        file.write(&checkpoint(id)).unwrap();
    }
    drop(file);
    let reopened = CheckpointFile::open(Arc::clone(&fs), &path, options).unwrap();
    assert_eq!(reopened.current(), Some(&checkpoint(3)));
    assert_eq!(reopened.previous().unwrap(), Some(checkpoint(2)));
    assert_eq!(real_names(&dir.0), ["checkpoint", "checkpoint.prev"], "temporary files left");

    // A plain durable file too, written, reopened, read and removed.
    let state = dir.0.join("state");
    let open = || {
        DurableFile::<Vec<String>>::open(Arc::clone(&fs), &state, DurableOptions::new(*b"STRS", 2)).unwrap()
    };
    let value = vec!["a".to_string(), "b".repeat(10_000)];
    open().write(&value).unwrap();
    assert_eq!(open().read().unwrap(), Some(value));
    assert_eq!(real_names(&dir.0), ["checkpoint", "checkpoint.prev", "state"]);
    open().remove().unwrap();
    assert_eq!(open().read().unwrap(), None);
    assert_eq!(real_names(&dir.0), ["checkpoint", "checkpoint.prev"]);
}

#[test]
fn read_from_reads_the_checkpoint_without_touching_the_directory() {
    let fs = sim();
    assert_eq!(CheckpointFile::read_from(Arc::new(fs.clone()), CHECKPOINT).unwrap(), None);
    open_checkpoint(&fs, false).write(&checkpoint(4)).unwrap();
    // A leftover of an interrupted write, which opening a handle removes.
    let leftover = "/task/.checkpoint.tmp-1-2";
    drop(fs.open(Path::new(leftover), OpenMode::CreateNew).unwrap());
    let before = names(&fs, Path::new("/task"));
    assert!(before.iter().any(|n| n.ends_with("tmp-1-2")), "{before:?}");
    let read = CheckpointFile::read_from(Arc::new(fs.clone()), CHECKPOINT).unwrap();
    assert_eq!(read, Some(checkpoint(4)));
    assert_eq!(names(&fs, Path::new("/task")), before);
    drop(open_checkpoint(&fs, false));
    assert!(names(&fs, Path::new("/task")).iter().all(|n| !n.ends_with("tmp-1-2")), "not a leftover name");
    // Damage is an error naming the file, never "no checkpoint".
    let file = fs.open(Path::new(CHECKPOINT), OpenMode::ReadWrite).unwrap();
    file.write_all_at(&[0xFF], 20).unwrap();
    let error = CheckpointFile::read_from(Arc::new(fs.clone()), CHECKPOINT).unwrap_err();
    assert!(matches!(error, Error::Corruption { ref file, .. } if file == Path::new(CHECKPOINT)), "{error}");
}
