//! Behaviour of `RealFs` through the `Fs` and `File` traits, in a temporary directory.
//!
//! Every check is written once against `&dyn Fs` and run on `RealFs` and then on `SimFs`, so the
//! simulator is held to the semantics of the real file system for everything the two share.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use cairn_fs::{File, Fs, OpenMode, RealFs, SimFs};

/// A fresh directory under the system's temp directory, removed with everything in it on drop.
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new(name: &str) -> TempDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let unique = format!(
            "cairn-fs-test-{}-{}-{nanos}-{name}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(unique);
        // `create_dir` (not `_all`) fails if the name is taken, so the directory is ours alone.
        std::fs::create_dir(&path).unwrap();
        TempDir { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Runs `check` on the real file system in a temp directory, then on a simulator.
fn on_both(name: &str, check: fn(&dyn Fs, &Path)) {
    let dir = TempDir::new(name);
    check(&RealFs::new(), &dir.path);
    assert!(dir.path.exists());
    drop(dir);

    let sim = SimFs::new(1);
    let root = Path::new("/root");
    sim.create_dir_all(root).unwrap();
    check(&sim, root);
}

fn err_kind<T: std::fmt::Debug>(result: io::Result<T>) -> io::ErrorKind {
    result.expect_err("the operation should have failed").kind()
}

fn read_all(file: &dyn File) -> Vec<u8> {
    let mut buf = vec![0; usize::try_from(file.len().unwrap()).unwrap()];
    file.read_exact_at(&mut buf, 0).unwrap();
    buf
}

fn names(fs: &dyn Fs, dir: &Path) -> Vec<String> {
    fs.list_dir(dir).unwrap().into_iter().map(|name| name.into_string().unwrap()).collect()
}

#[test]
fn temp_dir_is_removed_after_the_test() {
    let dir = TempDir::new("cleanup");
    let path = dir.path.clone();
    std::fs::write(path.join("f"), b"x").unwrap();
    drop(dir);
    assert!(!path.exists());
}

#[test]
fn positional_writes_and_reads_round_trip() {
    on_both("round-trip", |fs, root| {
        let path = root.join("f");
        let file = fs.open(&path, OpenMode::CreateNew).unwrap();
        file.write_all_at(b"hello", 0).unwrap();
        file.write_all_at(b"XY", 10).unwrap();
        file.write_all_at(b"J", 1).unwrap();
        assert_eq!(file.len().unwrap(), 12);
        assert_eq!(fs.file_len(&path).unwrap(), 12);
        assert_eq!(read_all(file.as_ref()), b"hJllo\0\0\0\0\0XY", "a write past the end leaves zeros");
        let mut buf = [0; 3];
        assert_eq!(file.read_at(&mut buf, 2).unwrap(), 3);
        assert_eq!(&buf, b"llo");
        let again = fs.open(&path, OpenMode::Read).unwrap();
        assert_eq!(read_all(again.as_ref()), b"hJllo\0\0\0\0\0XY", "another handle sees the bytes");
    });
}

#[test]
fn read_past_end_returns_zero_and_read_exact_fails_with_unexpected_eof() {
    on_both("eof", |fs, root| {
        let file = fs.open(&root.join("f"), OpenMode::CreateNew).unwrap();
        file.write_all_at(b"0123456789", 0).unwrap();
        let mut buf = [0; 8];
        assert_eq!(file.read_at(&mut buf, 6).unwrap(), 4, "a read at the end is short");
        assert_eq!(&buf[..4], b"6789");
        assert_eq!(file.read_at(&mut buf, 10).unwrap(), 0);
        assert_eq!(file.read_at(&mut buf, 1000).unwrap(), 0);
        assert_eq!(err_kind(file.read_exact_at(&mut buf, 6)), io::ErrorKind::UnexpectedEof);
        assert_eq!(err_kind(file.read_exact_at(&mut buf, 100)), io::ErrorKind::UnexpectedEof);
        let mut exact = [0; 4];
        file.read_exact_at(&mut exact, 6).unwrap();
        assert_eq!(&exact, b"6789");
        file.read_exact_at(&mut [], 100).unwrap();
    });
}

#[test]
fn set_len_cuts_and_extends_with_zeros() {
    on_both("set-len", |fs, root| {
        let file = fs.open(&root.join("f"), OpenMode::CreateNew).unwrap();
        file.write_all_at(b"abcdefgh", 0).unwrap();
        file.set_len(3).unwrap();
        assert_eq!(read_all(file.as_ref()), b"abc");
        file.set_len(6).unwrap();
        assert_eq!(read_all(file.as_ref()), b"abc\0\0\0", "cut bytes do not come back");
        file.set_len(0).unwrap();
        assert_eq!(file.len().unwrap(), 0);
    });
}

#[test]
fn map_shows_the_file_bytes_and_is_empty_for_an_empty_file() {
    on_both("map", |fs, root| {
        let empty = fs.open(&root.join("empty"), OpenMode::CreateNew).unwrap();
        let map = empty.map().unwrap();
        assert!(map.is_empty());
        map.advise_sequential();

        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let file = fs.open(&root.join("f"), OpenMode::CreateNew).unwrap();
        file.write_all_at(&data, 0).unwrap();
        file.sync_data().unwrap();
        let map = file.map().unwrap();
        map.advise_sequential();
        assert_eq!(&*map, data.as_slice());
        assert_eq!(map.as_ref().len(), 10_000);
        let reader = fs.open(&root.join("f"), OpenMode::Read).unwrap();
        assert_eq!(&*reader.map().unwrap(), data.as_slice(), "a read-only handle can map");
    });
}

#[test]
fn rename_replaces_an_existing_target() {
    on_both("rename", |fs, root| {
        let target = root.join("target");
        let temp = root.join("target.tmp");
        let old = fs.open(&target, OpenMode::CreateNew).unwrap();
        old.write_all_at(b"old and longer", 0).unwrap();
        let new = fs.open(&temp, OpenMode::CreateNew).unwrap();
        new.write_all_at(b"new", 0).unwrap();
        new.sync_all().unwrap();
        fs.rename(&temp, &target).unwrap();
        fs.sync_dir(root).unwrap();

        assert!(!fs.exists(&temp).unwrap());
        let reopened = fs.open(&target, OpenMode::Read).unwrap();
        assert_eq!(read_all(reopened.as_ref()), b"new");
        assert_eq!(read_all(old.as_ref()), b"old and longer", "the replaced file lives on in its handle");
        assert_eq!(names(fs, root), ["target"]);
        assert_eq!(err_kind(fs.rename(&temp, &target)), io::ErrorKind::NotFound);
    });
}

#[test]
fn rename_moves_a_file_between_directories() {
    on_both("rename-dirs", |fs, root| {
        fs.create_dir_all(&root.join("a")).unwrap();
        fs.create_dir_all(&root.join("b")).unwrap();
        let file = fs.open(&root.join("a/f"), OpenMode::CreateNew).unwrap();
        file.write_all_at(b"moving", 0).unwrap();
        fs.rename(&root.join("a/f"), &root.join("b/g")).unwrap();
        fs.sync_dir(&root.join("a")).unwrap();
        fs.sync_dir(&root.join("b")).unwrap();
        assert!(names(fs, &root.join("a")).is_empty());
        assert_eq!(names(fs, &root.join("b")), ["g"]);
        assert_eq!(fs.file_len(&root.join("b/g")).unwrap(), 6);
    });
}

#[test]
fn list_dir_is_sorted_by_name() {
    on_both("list", |fs, root| {
        fs.create_dir_all(&root.join("sub/deeper")).unwrap();
        for name in ["c", "a2", "b10", "B", "b9", "a10"] {
            fs.open(&root.join(name), OpenMode::CreateNew).unwrap();
        }
        assert_eq!(names(fs, root), ["B", "a10", "a2", "b10", "b9", "c", "sub"]);
        assert_eq!(names(fs, &root.join("sub")), ["deeper"]);
        assert!(names(fs, &root.join("sub/deeper")).is_empty());
        assert_eq!(err_kind(fs.list_dir(&root.join("missing"))), io::ErrorKind::NotFound);
    });
}

#[test]
fn syncs_succeed_on_files_and_directories() {
    on_both("sync", |fs, root| {
        fs.create_dir_all(&root.join("a/b")).unwrap();
        let file = fs.open(&root.join("a/b/f"), OpenMode::CreateNew).unwrap();
        file.write_all_at(b"data", 0).unwrap();
        file.sync_data().unwrap();
        file.sync_all().unwrap();
        fs.sync_dir(&root.join("a/b")).unwrap();
        fs.sync_dir(&root.join("a")).unwrap();
        fs.sync_dir(root).unwrap();
        assert_eq!(err_kind(fs.sync_dir(&root.join("missing"))), io::ErrorKind::NotFound);
        let reader = fs.open(&root.join("a/b/f"), OpenMode::Read).unwrap();
        reader.sync_data().unwrap();
    });
}

#[test]
fn lock_file_is_exclusive_and_released_on_drop() {
    on_both("lock", |fs, root| {
        let path = root.join("LOCK");
        let guard = fs.lock_file(&path).unwrap();
        assert!(fs.exists(&path).unwrap(), "locking creates the file");
        assert_eq!(err_kind(fs.lock_file(&path)), io::ErrorKind::WouldBlock);
        let other = fs.lock_file(&root.join("OTHER")).unwrap();
        drop(guard);
        let again = fs.lock_file(&path).unwrap();
        assert_eq!(err_kind(fs.lock_file(&root.join("OTHER"))), io::ErrorKind::WouldBlock);
        drop((again, other));
        fs.lock_file(&root.join("OTHER")).unwrap();
    });
}

#[test]
fn lock_file_keeps_the_contents_of_an_existing_file() {
    on_both("lock-keep", |fs, root| {
        let path = root.join("LOCK");
        let file = fs.open(&path, OpenMode::CreateNew).unwrap();
        file.write_all_at(b"pid 42", 0).unwrap();
        let _guard = fs.lock_file(&path).unwrap();
        assert_eq!(read_all(file.as_ref()), b"pid 42");
    });
}

#[test]
fn open_modes_create_refuse_and_truncate_as_documented() {
    on_both("modes", |fs, root| {
        let path = root.join("f");
        let file = fs.open(&path, OpenMode::CreateNew).unwrap();
        file.write_all_at(b"contents", 0).unwrap();
        assert_eq!(err_kind(fs.open(&path, OpenMode::CreateNew)), io::ErrorKind::AlreadyExists);
        assert_eq!(err_kind(fs.open(&root.join("missing"), OpenMode::Read)), io::ErrorKind::NotFound);
        assert_eq!(err_kind(fs.open(&root.join("missing"), OpenMode::ReadWrite)), io::ErrorKind::NotFound);
        assert_eq!(err_kind(fs.open(&root.join("no/f"), OpenMode::CreateNew)), io::ErrorKind::NotFound);

        let reader = fs.open(&path, OpenMode::Read).unwrap();
        assert!(reader.write_at(b"x", 0).is_err(), "a read-only handle cannot write");
        assert!(reader.set_len(0).is_err(), "a read-only handle cannot change the length");
        assert_eq!(read_all(reader.as_ref()), b"contents");

        let writer = fs.open(&path, OpenMode::ReadWrite).unwrap();
        writer.write_all_at(b"C", 0).unwrap();
        assert_eq!(read_all(reader.as_ref()), b"Contents", "ReadWrite keeps the contents");

        let truncated = fs.open(&path, OpenMode::CreateTruncate).unwrap();
        assert_eq!(truncated.len().unwrap(), 0);
        assert_eq!(fs.file_len(&path).unwrap(), 0);
        let created = fs.open(&root.join("g"), OpenMode::CreateTruncate).unwrap();
        created.write_all_at(b"g", 0).unwrap();
        assert_eq!(fs.file_len(&root.join("g")).unwrap(), 1);
    });
}

#[test]
fn removed_file_is_gone_but_its_open_handle_keeps_working() {
    on_both("remove", |fs, root| {
        let path = root.join("f");
        let file = fs.open(&path, OpenMode::CreateNew).unwrap();
        file.write_all_at(b"before", 0).unwrap();
        fs.remove_file(&path).unwrap();
        assert!(!fs.exists(&path).unwrap());
        assert_eq!(err_kind(fs.file_len(&path)), io::ErrorKind::NotFound);
        assert_eq!(err_kind(fs.remove_file(&path)), io::ErrorKind::NotFound);
        file.write_all_at(b" after", 6).unwrap();
        file.sync_data().unwrap();
        assert_eq!(read_all(file.as_ref()), b"before after");
        assert!(names(fs, root).is_empty());
    });
}

#[test]
fn exists_and_create_dir_all_see_files_and_directories() {
    on_both("exists", |fs, root| {
        assert!(fs.exists(root).unwrap());
        assert!(!fs.exists(&root.join("a")).unwrap());
        fs.create_dir_all(&root.join("a/b/c")).unwrap();
        fs.create_dir_all(&root.join("a/b")).unwrap();
        assert!(fs.exists(&root.join("a/b/c")).unwrap());
        fs.open(&root.join("a/f"), OpenMode::CreateNew).unwrap();
        assert!(fs.exists(&root.join("a/f")).unwrap());
        assert!(fs.create_dir_all(&root.join("a/f/g")).is_err(), "a file is in the way");
        assert!(fs.open(&root.join("a/b"), OpenMode::ReadWrite).is_err(), "a directory is not a file");
        assert!(fs.remove_file(&root.join("a/b")).is_err(), "remove_file does not remove directories");
        assert_eq!(names(fs, &root.join("a")), ["b", "f"]);
    });
}
