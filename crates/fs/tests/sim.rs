//! Behaviour of `SimFs`, the power-loss and fault simulator: live against durable state, crash
//! images, fault rules, counters and sync-point recording.
//!
//! Each test builds a small state whose possible crash outcomes can be told apart byte by byte,
//! then checks every image over a range of seeds against what the model allows.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

use cairn_fs::{CrashOptions, FaultEffect, FaultRule, File, Fs, Op, OpenMode, SimFs};

fn p(path: &str) -> &Path {
    Path::new(path)
}

/// Syncs every ancestor directory of `path`, from the root down, so its entry is durable.
fn sync_ancestors(fs: &SimFs, path: &Path) {
    let ancestors: Vec<&Path> = path.ancestors().skip(1).collect();
    for dir in ancestors.iter().rev() {
        fs.sync_dir(dir).unwrap();
    }
}

/// Creates `path` (and its directories) holding `bytes`, with data and every entry durable.
fn durable_file(fs: &SimFs, path: &str, bytes: &[u8]) -> Box<dyn File> {
    let path = Path::new(path);
    if let Some(parent) = path.parent() {
        fs.create_dir_all(parent).unwrap();
    }
    let file = fs.open(path, OpenMode::CreateNew).unwrap();
    file.write_all_at(bytes, 0).unwrap();
    file.sync_all().unwrap();
    sync_ancestors(fs, path);
    file
}

/// Every directory (`None`) and file (`Some(bytes)`) of a simulated file system, by path.
fn tree_of(fs: &SimFs) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::from("/")];
    while let Some(dir) = stack.pop() {
        for name in fs.list_dir(&dir).unwrap() {
            let path = dir.join(&name);
            match fs.contents(&path) {
                Ok(bytes) => {
                    out.insert(path, Some(bytes));
                }
                Err(e) if e.kind() == io::ErrorKind::IsADirectory => {
                    out.insert(path.clone(), None);
                    stack.push(path);
                }
                Err(e) => panic!("{}: {e}", path.display()),
            }
        }
    }
    out
}

fn err_kind<T: std::fmt::Debug>(result: io::Result<T>) -> io::ErrorKind {
    result.expect_err("the operation should have failed").kind()
}

fn read_all(file: &dyn File) -> Vec<u8> {
    let mut buf = vec![0; usize::try_from(file.len().unwrap()).unwrap()];
    file.read_exact_at(&mut buf, 0).unwrap();
    buf
}

/// Options that produce only the given outcome for pending writes; every other pending change is
/// lost.
fn only_outcome(set: impl FnOnce(&mut CrashOptions)) -> CrashOptions {
    let mut options = CrashOptions::durable_only();
    options.drop = 0;
    set(&mut options);
    options
}

// ---------------------------------------------------------------------------------------------
// Live against durable state

#[test]
fn unsynced_write_is_lost_in_durable_only_image() {
    let fs = SimFs::new(1);
    let file = durable_file(&fs, "/d/f", b"base");
    file.write_all_at(b"more", 4).unwrap();
    assert_eq!(fs.contents(p("/d/f")).unwrap(), b"basemore", "reads see the unsynced write");

    for seed in 0..20 {
        let image = fs.crash_image(seed, &CrashOptions::durable_only());
        assert_eq!(image.contents(p("/d/f")).unwrap(), b"base", "seed {seed}");
    }
}

#[test]
fn unsynced_write_and_entries_are_kept_in_keep_all_image() {
    let fs = SimFs::new(1);
    let file = durable_file(&fs, "/d/f", b"base");
    file.write_all_at(b"more", 4).unwrap();
    file.write_all_at(b"X", 0).unwrap();
    file.set_len(7).unwrap();
    fs.create_dir_all(p("/d/new/deeper")).unwrap();
    let other = fs.open(p("/d/new/deeper/g"), OpenMode::CreateNew).unwrap();
    other.write_all_at(b"unsynced", 0).unwrap();

    for seed in 0..20 {
        let image = fs.crash_image(seed, &CrashOptions::keep_all());
        assert_eq!(tree_of(&image), tree_of(&fs), "seed {seed}: a process kill keeps everything");
        assert_eq!(image.contents(p("/d/f")).unwrap(), b"Xasemor");
    }
}

#[test]
fn sync_data_makes_data_and_length_durable() {
    let fs = SimFs::new(1);
    let file = durable_file(&fs, "/f", b"");
    let durable = |fs: &SimFs| fs.crash_image(9, &CrashOptions::durable_only()).contents(p("/f")).unwrap();

    file.write_all_at(b"hello world", 0).unwrap();
    assert_eq!(durable(&fs), b"");
    file.sync_data().unwrap();
    assert_eq!(durable(&fs), b"hello world");

    file.set_len(5).unwrap();
    assert_eq!(durable(&fs), b"hello world", "an unsynced shrink is not durable");
    file.sync_data().unwrap();
    assert_eq!(durable(&fs), b"hello");

    file.set_len(8).unwrap();
    file.sync_data().unwrap();
    assert_eq!(durable(&fs), b"hello\0\0\0", "an extension is durable with its zeros");

    file.write_all_at(b"!", 20).unwrap();
    file.sync_all().unwrap();
    let mut expected = b"hello".to_vec();
    expected.resize(20, 0);
    expected.push(b'!');
    assert_eq!(durable(&fs), expected);
}

#[test]
fn new_file_entry_is_not_durable_until_its_directory_is_synced() {
    let fs = SimFs::new(1);
    fs.create_dir_all(p("/d")).unwrap();
    sync_ancestors(&fs, p("/d/x"));
    let file = fs.open(p("/d/f"), OpenMode::CreateNew).unwrap();
    file.write_all_at(b"data", 0).unwrap();
    file.sync_all().unwrap();

    let image = fs.crash_image(1, &CrashOptions::durable_only());
    assert!(image.exists(p("/d")).unwrap());
    assert!(!image.exists(p("/d/f")).unwrap(), "a file's fsync does not make its entry durable");
    let image = fs.crash_image(1, &CrashOptions::keep_all());
    assert_eq!(image.contents(p("/d/f")).unwrap(), b"data");

    fs.sync_dir(p("/d")).unwrap();
    let image = fs.crash_image(1, &CrashOptions::durable_only());
    assert_eq!(image.contents(p("/d/f")).unwrap(), b"data");
}

#[test]
fn directory_made_by_create_dir_all_needs_its_own_parent_synced() {
    let fs = SimFs::new(1);
    fs.create_dir_all(p("/a/b")).unwrap();
    let file = fs.open(p("/a/b/f"), OpenMode::CreateNew).unwrap();
    file.write_all_at(b"data", 0).unwrap();
    file.sync_all().unwrap();
    let durable = |fs: &SimFs| tree_of(&fs.crash_image(3, &CrashOptions::durable_only()));

    fs.sync_dir(p("/a/b")).unwrap();
    assert!(durable(&fs).is_empty(), "/a is not durable in the root yet");

    fs.sync_dir(p("/")).unwrap();
    let image = durable(&fs);
    assert_eq!(image.keys().collect::<Vec<_>>(), [p("/a")], "/a/b is not durable in /a yet");

    fs.sync_dir(p("/a")).unwrap();
    let image = durable(&fs);
    assert_eq!(image.get(p("/a/b/f")), Some(&Some(b"data".to_vec())));
}

#[test]
fn rename_over_synced_target_leaves_exactly_old_or_new_after_any_crash() {
    let old = b"old contents, longer than the new".as_slice();
    let new = b"new contents".as_slice();
    let fs = SimFs::new(1);
    durable_file(&fs, "/d/target", old);
    durable_file(&fs, "/d/target.tmp", new);
    fs.rename(p("/d/target.tmp"), p("/d/target")).unwrap();
    assert_eq!(fs.contents(p("/d/target")).unwrap(), new);
    assert!(!fs.exists(p("/d/target.tmp")).unwrap());

    let mut seen = BTreeSet::new();
    for seed in 0..500 {
        let image = fs.crash_image(seed, &CrashOptions::adversarial());
        let target = image.contents(p("/d/target")).unwrap();
        assert!(target == old || target == new, "seed {seed}: target holds {target:?}");
        let temp_left = image.exists(p("/d/target.tmp")).unwrap();
        assert_eq!(temp_left, target == old, "seed {seed}: the rename is all or nothing");
        seen.insert(target);
    }
    assert_eq!(seen.len(), 2, "both outcomes of an unsynced rename occur");
}

#[test]
fn unsynced_removal_can_come_back_after_crash() {
    let fs = SimFs::new(1);
    durable_file(&fs, "/d/f", b"still here");
    fs.remove_file(p("/d/f")).unwrap();
    assert!(!fs.exists(p("/d/f")).unwrap());

    let image = fs.crash_image(1, &CrashOptions::durable_only());
    assert_eq!(image.contents(p("/d/f")).unwrap(), b"still here");
    let image = fs.crash_image(1, &CrashOptions::keep_all());
    assert!(!image.exists(p("/d/f")).unwrap());

    fs.sync_dir(p("/d")).unwrap();
    let image = fs.crash_image(1, &CrashOptions::durable_only());
    assert!(!image.exists(p("/d/f")).unwrap(), "a synced removal is final");
}

#[test]
fn cross_directory_rename_halves_survive_together() {
    let fs = SimFs::new(1);
    durable_file(&fs, "/a/x", b"moving");
    fs.create_dir_all(p("/b")).unwrap();
    sync_ancestors(&fs, p("/b/y"));
    fs.rename(p("/a/x"), p("/b/y")).unwrap();

    let mut seen = BTreeSet::new();
    for seed in 0..300 {
        let image = fs.crash_image(seed, &CrashOptions::adversarial());
        let in_source = image.exists(p("/a/x")).unwrap();
        let in_target = image.exists(p("/b/y")).unwrap();
        assert_ne!(in_source, in_target, "seed {seed}: the file is in exactly one place");
        let path = if in_source { "/a/x" } else { "/b/y" };
        assert_eq!(image.contents(p(path)).unwrap(), b"moving");
        seen.insert(in_target);
    }
    assert_eq!(seen.len(), 2, "the rename both survives and vanishes over the seeds");
}

// ---------------------------------------------------------------------------------------------
// Crash images: outcomes of pending writes

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Kept,
    Dropped,
    TornPrefix,
    TornSectors,
    Garbage,
    Zeroes,
    Reordered,
}

/// What became of a write of `new` bytes over `old` bytes, judged from the written range.
fn classify(range: &[u8], range_start: usize, new: u8, old: u8) -> Outcome {
    if range.iter().all(|&b| b == new) {
        Outcome::Kept
    } else if range.iter().all(|&b| b == old) {
        Outcome::Dropped
    } else if range.iter().all(|&b| b == 0) {
        Outcome::Zeroes
    } else if range.iter().any(|&b| b != new && b != old) {
        Outcome::Garbage
    } else {
        let cut = range.iter().position(|&b| b == old).unwrap();
        let prefix = range[cut..].iter().all(|&b| b == old);
        if prefix && !(range_start + cut).is_multiple_of(512) {
            Outcome::TornPrefix
        } else {
            Outcome::TornSectors
        }
    }
}

#[test]
fn adversarial_crashes_produce_every_write_outcome() {
    const OLD: u8 = 0x11;
    const NEW: u8 = 0xFF;
    let fs = SimFs::new(1);
    let file = durable_file(&fs, "/d/w", &[OLD; 16384]);
    file.write_all_at(&[NEW; 9000], 100).unwrap();
    // Overlapping writes: in order they give "AABBBB"; "AAAABB" can only come from the second
    // write landing before the first.
    let overlapping = durable_file(&fs, "/d/r", b"");
    overlapping.write_all_at(b"AAAA", 0).unwrap();
    overlapping.write_all_at(b"BBBB", 2).unwrap();
    assert_eq!(fs.contents(p("/d/r")).unwrap(), b"AABBBB");

    let mut seen = BTreeSet::new();
    for seed in 0..2000 {
        let image = fs.crash_image(seed, &CrashOptions::adversarial());
        let bytes = image.contents(p("/d/w")).unwrap();
        assert_eq!(bytes.len(), 16384, "seed {seed}: a write inside the file keeps its length");
        assert!(
            bytes[..100].iter().chain(&bytes[9100..]).all(|&b| b == OLD),
            "seed {seed}: outside the write"
        );
        seen.insert(classify(&bytes[100..9100], 100, NEW, OLD));
        if image.contents(p("/d/r")).unwrap() == b"AAAABB" {
            seen.insert(Outcome::Reordered);
        }
    }
    let all = [
        Outcome::Kept,
        Outcome::Dropped,
        Outcome::TornPrefix,
        Outcome::TornSectors,
        Outcome::Garbage,
        Outcome::Zeroes,
        Outcome::Reordered,
    ];
    assert_eq!(seen, BTreeSet::from(all));
}

#[test]
fn writes_are_never_reordered_without_the_reorder_option() {
    let fs = SimFs::new(1);
    let file = durable_file(&fs, "/r", b"");
    file.write_all_at(b"AAAA", 0).unwrap();
    file.write_all_at(b"BBBB", 2).unwrap();
    let mut options = CrashOptions::adversarial();
    options.reorder = false;
    options.garbage = 0;
    for seed in 0..500 {
        let bytes = fs.crash_image(seed, &options).contents(p("/r")).unwrap();
        assert_ne!(bytes, b"AAAABB", "seed {seed}");
    }
}

#[test]
fn same_seed_gives_identical_crash_images() {
    fn workload(fs: &SimFs) {
        durable_file(fs, "/a/one", &[1; 3000]);
        durable_file(fs, "/a/two", &[2; 5000]);
        let one = fs.open(p("/a/one"), OpenMode::ReadWrite).unwrap();
        one.write_all_at(&[3; 2500], 700).unwrap();
        one.set_len(2000).unwrap();
        one.write_all_at(&[4; 1000], 1900).unwrap();
        let two = fs.open(p("/a/two"), OpenMode::ReadWrite).unwrap();
        for i in 0..8u8 {
            two.write_all_at(&[10 + i; 700], u64::from(i) * 600).unwrap();
        }
        fs.create_dir_all(p("/b/c")).unwrap();
        let three = fs.open(p("/b/c/three"), OpenMode::CreateNew).unwrap();
        three.write_all_at(&[5; 9000], 0).unwrap();
        fs.rename(p("/a/one"), p("/b/one")).unwrap();
        fs.remove_file(p("/a/two")).unwrap();
    }
    let first = SimFs::new(1);
    workload(&first);
    let second = SimFs::new(2);
    workload(&second);

    let mut distinct = BTreeSet::new();
    for seed in 0..50 {
        let image = tree_of(&first.crash_image(seed, &CrashOptions::adversarial()));
        assert_eq!(image, tree_of(&first.crash_image(seed, &CrashOptions::adversarial())), "seed {seed}");
        assert_eq!(image, tree_of(&first.snapshot().crash_image(seed, &CrashOptions::adversarial())));
        assert_eq!(image, tree_of(&second.crash_image(seed, &CrashOptions::adversarial())), "seed {seed}");
        distinct.insert(format!("{image:?}"));
    }
    assert!(distinct.len() > 25, "different seeds give different images ({} distinct)", distinct.len());
}

/// Checks that within `[start, end)` every piece cut by absolute multiples of `unit` is uniform
/// (wholly old or wholly new); returns whether the range mixes old and new.
fn check_torn_at(bytes: &[u8], start: usize, end: usize, unit: usize, seed: u64) -> bool {
    let mut kinds = BTreeSet::new();
    let mut piece = start;
    while piece < end {
        let stop = ((piece / unit + 1) * unit).min(end);
        let first = bytes[piece];
        assert!(
            bytes[piece..stop].iter().all(|&b| b == first),
            "seed {seed}: a cut inside the {unit}-byte unit at {piece}..{stop}"
        );
        kinds.insert(first);
        piece = stop;
    }
    kinds.len() > 1
}

#[test]
fn sector_torn_writes_cut_only_at_absolute_512_byte_boundaries() {
    let fs = SimFs::new(1);
    let file = durable_file(&fs, "/f", &[0x11; 8192]);
    file.write_all_at(&[0xFF; 5000], 300).unwrap();
    let options = only_outcome(|o| o.torn_sector = 1);
    let mut torn = 0;
    for seed in 0..300 {
        let bytes = fs.crash_image(seed, &options).contents(p("/f")).unwrap();
        assert_eq!(bytes.len(), 8192);
        assert!(bytes.iter().all(|&b| b == 0x11 || b == 0xFF), "seed {seed}: only old or new bytes");
        assert!(bytes[..300].iter().chain(&bytes[5300..]).all(|&b| b == 0x11));
        if check_torn_at(&bytes, 300, 5300, 512, seed) {
            torn += 1;
        }
    }
    assert!(torn > 200, "most images mix kept and lost sectors ({torn})");
}

#[test]
fn page_torn_writes_cut_only_at_absolute_4096_byte_boundaries() {
    let fs = SimFs::new(1);
    let file = durable_file(&fs, "/f", &[0x11; 20480]);
    let end = 1000 + 3 * 4096 + 500;
    file.write_all_at(&vec![0xFF; end - 1000], 1000).unwrap();
    let options = only_outcome(|o| o.torn_page = 1);
    let mut torn = 0;
    for seed in 0..300 {
        let bytes = fs.crash_image(seed, &options).contents(p("/f")).unwrap();
        assert_eq!(bytes.len(), 20480);
        assert!(bytes.iter().all(|&b| b == 0x11 || b == 0xFF), "seed {seed}: only old or new bytes");
        if check_torn_at(&bytes, 1000, end, 4096, seed) {
            torn += 1;
        }
    }
    assert!(torn > 200, "most images mix kept and lost pages ({torn})");
}

#[test]
fn byte_torn_write_keeps_a_strict_prefix() {
    let fs = SimFs::new(1);
    let file = durable_file(&fs, "/f", &[0x11; 4000]);
    file.write_all_at(&[0xFF; 3000], 500).unwrap();
    let options = only_outcome(|o| o.torn_byte = 1);
    let mut cuts = BTreeSet::new();
    for seed in 0..300 {
        let bytes = fs.crash_image(seed, &options).contents(p("/f")).unwrap();
        let kept = bytes[500..3500].iter().take_while(|&&b| b == 0xFF).count();
        assert!(kept < 3000, "seed {seed}: a torn write is never whole");
        assert!(bytes[500 + kept..].iter().all(|&b| b == 0x11), "seed {seed}: no hole in the prefix");
        cuts.insert(kept);
    }
    assert!(cuts.len() > 200, "cuts fall at many positions ({})", cuts.len());
}

#[test]
fn writes_before_a_surviving_set_len_never_land_after_it() {
    let fs = SimFs::new(1);
    let file = durable_file(&fs, "/f", &[b'D'; 100]);
    file.write_all_at(&[b'A'; 100], 0).unwrap();
    file.set_len(10).unwrap();
    file.write_all_at(b"B", 50).unwrap();
    let mut live = vec![b'A'; 10];
    live.resize(50, 0);
    live.push(b'B');
    assert_eq!(fs.contents(p("/f")).unwrap(), live);

    let mut options = CrashOptions::adversarial();
    options.set_len_survives_percent = 100;
    options.garbage = 0;
    let mut lengths = BTreeSet::new();
    for seed in 0..1000 {
        let bytes = fs.crash_image(seed, &options).contents(p("/f")).unwrap();
        assert!(bytes.len() == 10 || bytes.len() == 51, "seed {seed}: length {}", bytes.len());
        assert!(bytes[..10].iter().all(|b| b"AD\0".contains(b)), "seed {seed}: {:?}", &bytes[..10]);
        assert!(bytes[10..bytes.len().min(50)].iter().all(|&b| b == 0), "seed {seed}: cut data came back");
        if let Some(&last) = bytes.get(50) {
            assert!(last == b'B' || last == 0, "seed {seed}");
        }
        lengths.insert(bytes.len());
    }
    assert_eq!(lengths.len(), 2, "the later write is both kept and lost");
}

// ---------------------------------------------------------------------------------------------
// Fault injection

#[test]
fn failed_file_sync_drops_pending_data_though_reads_still_show_it() {
    let fs = SimFs::new(1);
    let file = durable_file(&fs, "/d/f", b"");
    file.write_all_at(b"lost", 0).unwrap();
    fs.inject(FaultRule::fail_file_sync());
    assert!(file.sync_data().is_err());
    assert!(file.sync_all().is_err(), "the rule keeps firing until cleared");
    fs.clear_faults();
    file.sync_data().unwrap();

    assert_eq!(fs.contents(p("/d/f")).unwrap(), b"lost", "the page cache still shows the data");
    assert_eq!(read_all(file.as_ref()), b"lost");
    for options in [CrashOptions::durable_only(), CrashOptions::keep_all(), CrashOptions::adversarial()] {
        for seed in 0..20 {
            let image = fs.crash_image(seed, &options);
            assert_eq!(
                image.contents(p("/d/f")).unwrap(),
                b"",
                "seed {seed}: the data never reaches the disk"
            );
        }
    }

    file.write_all_at(b"more", 4).unwrap();
    file.sync_data().unwrap();
    let image = fs.crash_image(1, &CrashOptions::durable_only());
    assert_eq!(image.contents(p("/d/f")).unwrap(), b"\0\0\0\0more", "later synced writes are durable");
    assert_eq!(fs.stats().file_syncs, 1 + 2, "one sync in setup, two after the fault");
}

#[test]
fn capacity_limit_fails_growth_with_storage_full_and_changes_nothing() {
    let fs = SimFs::new(1);
    fs.create_dir_all(p("/d")).unwrap();
    fs.set_capacity(Some(10));
    let file = fs.open(p("/d/f"), OpenMode::CreateNew).unwrap();
    file.write_all_at(b"12345678", 0).unwrap();
    let before = fs.stats();

    assert_eq!(err_kind(file.write_at(b"abc", 8)), io::ErrorKind::StorageFull);
    assert_eq!(err_kind(file.set_len(11)), io::ErrorKind::StorageFull);
    assert_eq!(
        err_kind(file.write_at(b"x", 100)),
        io::ErrorKind::StorageFull,
        "a sparse write counts its hole"
    );
    let other = fs.open(p("/d/g"), OpenMode::CreateNew).unwrap();
    assert_eq!(err_kind(other.write_at(b"abc", 0)), io::ErrorKind::StorageFull, "the limit is for all files");
    assert_eq!(fs.contents(p("/d/f")).unwrap(), b"12345678");
    assert_eq!(fs.contents(p("/d/g")).unwrap(), b"");
    let after = fs.stats();
    assert_eq!((after.writes, after.bytes_written), (before.writes, before.bytes_written));
    let image = fs.crash_image(1, &CrashOptions::keep_all());
    assert_eq!(image.contents(p("/d/f")).unwrap(), b"12345678", "no pending change was recorded");

    assert_eq!(file.write_at(b"ab", 8).unwrap(), 2, "filling up to the limit is allowed");
    file.write_all_at(b"zz", 0).unwrap();
    assert_eq!(fs.contents(p("/d/f")).unwrap(), b"zz345678ab", "overwriting needs no room");
    file.set_len(4).unwrap();
    other.write_all_at(b"abcdef", 0).unwrap();

    fs.set_capacity(None);
    file.write_all_at(&[7; 1000], 4).unwrap();
    assert_eq!(file.len().unwrap(), 1004);
}

#[test]
fn no_space_rule_fails_writes_length_changes_and_creations_without_changing_anything() {
    let fs = SimFs::new(1);
    let file = durable_file(&fs, "/d/f", b"abc");
    fs.inject(FaultRule::no_space());

    assert_eq!(err_kind(file.write_at(b"x", 0)), io::ErrorKind::StorageFull);
    assert_eq!(err_kind(file.set_len(1)), io::ErrorKind::StorageFull);
    assert_eq!(err_kind(fs.open(p("/d/new"), OpenMode::CreateNew)), io::ErrorKind::StorageFull);
    assert_eq!(err_kind(fs.create_dir_all(p("/e"))), io::ErrorKind::StorageFull);
    assert_eq!(fs.stats().faults, 4);

    assert_eq!(read_all(file.as_ref()), b"abc", "reads are not affected");
    file.sync_data().unwrap();
    fs.sync_dir(p("/d")).unwrap();
    assert!(!fs.exists(p("/d/new")).unwrap());
    assert!(!fs.exists(p("/e")).unwrap());
    let image = fs.crash_image(1, &CrashOptions::keep_all());
    assert_eq!(image.contents(p("/d/f")).unwrap(), b"abc");
    assert_eq!(tree_of(&image), tree_of(&fs));
    assert_eq!(fs.stats().faults, 4);
}

#[test]
fn short_write_stores_a_prefix_and_write_all_at_completes() {
    let data: Vec<u8> = (0..200u8).collect();
    let fs = SimFs::new(5);
    let file = durable_file(&fs, "/f", b"");

    let mut lengths = BTreeSet::new();
    for _ in 0..200 {
        file.set_len(0).unwrap();
        fs.inject(FaultRule::short_write().times(1));
        let n = file.write_at(&data[..10], 0).unwrap();
        assert!((1..10).contains(&n), "a short write stores at least one byte, not all ({n})");
        assert_eq!(fs.contents(p("/f")).unwrap(), &data[..n]);
        lengths.insert(n);
    }
    assert_eq!(lengths.len(), 9, "every shorter length occurs ({lengths:?})");
    assert_eq!(file.write_at(&data, 0).unwrap(), data.len(), "each rule fired once");

    file.set_len(0).unwrap();
    let writes_before = fs.stats().writes;
    fs.inject(FaultRule::short_write());
    file.write_all_at(&data, 0).unwrap();
    assert_eq!(fs.contents(p("/f")).unwrap(), data);
    assert!(fs.stats().writes - writes_before >= 2, "write_all_at went on after a short write");
    file.sync_data().unwrap();
    assert_eq!(fs.crash_image(1, &CrashOptions::durable_only()).contents(p("/f")).unwrap(), data);
}

#[test]
fn failed_rename_changes_nothing() {
    let fs = SimFs::new(1);
    durable_file(&fs, "/d/a", b"A");
    durable_file(&fs, "/d/b", b"B");
    fs.inject(FaultRule::fail(Op::Rename));

    assert!(fs.rename(p("/d/a"), p("/d/b")).is_err());
    assert_eq!(fs.contents(p("/d/a")).unwrap(), b"A");
    assert_eq!(fs.contents(p("/d/b")).unwrap(), b"B");
    assert_eq!(fs.stats().renames, 0);
    for options in [CrashOptions::keep_all(), CrashOptions::adversarial()] {
        for seed in 0..50 {
            assert_eq!(
                tree_of(&fs.crash_image(seed, &options)),
                tree_of(&fs),
                "seed {seed}: nothing pending"
            );
        }
    }

    fs.clear_faults();
    fs.rename(p("/d/a"), p("/d/b")).unwrap();
    assert!(!fs.exists(p("/d/a")).unwrap());
    assert_eq!(fs.contents(p("/d/b")).unwrap(), b"A");
    assert_eq!(fs.stats().renames, 1);
}

#[test]
fn failed_directory_sync_makes_nothing_durable() {
    let fs = SimFs::new(1);
    fs.create_dir_all(p("/d")).unwrap();
    sync_ancestors(&fs, p("/d/f"));
    let file = fs.open(p("/d/f"), OpenMode::CreateNew).unwrap();
    file.write_all_at(b"data", 0).unwrap();
    file.sync_all().unwrap();
    let dir_syncs = fs.stats().dir_syncs;
    fs.inject(FaultRule::fail(Op::SyncDir));

    assert!(fs.sync_dir(p("/d")).is_err());
    assert_eq!(fs.stats().dir_syncs, dir_syncs);
    assert!(!fs.crash_image(1, &CrashOptions::durable_only()).exists(p("/d/f")).unwrap());
    assert!(
        fs.crash_image(1, &CrashOptions::keep_all()).exists(p("/d/f")).unwrap(),
        "the entry is still pending"
    );
    assert!(fs.exists(p("/d/f")).unwrap());

    fs.clear_faults();
    fs.sync_dir(p("/d")).unwrap();
    assert_eq!(fs.crash_image(1, &CrashOptions::durable_only()).contents(p("/d/f")).unwrap(), b"data");
}

fn bits_differing(a: &[u8], b: &[u8]) -> u32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
}

#[test]
fn flip_bit_on_read_changes_exactly_one_bit_of_the_read_and_not_the_file() {
    let data: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37)).collect();
    let fs = SimFs::new(3);
    let file = durable_file(&fs, "/f", &data);
    let mut positions = BTreeSet::new();
    for _ in 0..20 {
        fs.inject(FaultRule::flip_bit_on_read().times(1));
        let mut buf = vec![0; 64];
        assert_eq!(file.read_at(&mut buf, 0).unwrap(), 64);
        assert_eq!(bits_differing(&buf, &data), 1);
        positions.insert(buf.iter().zip(&data).position(|(x, y)| x != y));

        let mut clean = vec![0; 64];
        file.read_exact_at(&mut clean, 0).unwrap();
        assert_eq!(clean, data, "the rule fired once");
        assert_eq!(fs.contents(p("/f")).unwrap(), data, "the file is unchanged");
    }
    assert!(positions.len() > 5, "the flipped bit moves around ({positions:?})");
    let image = fs.crash_image(1, &CrashOptions::durable_only());
    assert_eq!(image.contents(p("/f")).unwrap(), data);
}

#[test]
fn flip_bit_on_read_changes_exactly_one_bit_of_a_mapping_and_not_the_file() {
    let data: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37)).collect();
    let fs = SimFs::new(3);
    let file = durable_file(&fs, "/f", &data);
    fs.inject(FaultRule::flip_bit_on_read().times(1));
    let map = file.map().unwrap();
    assert_eq!(bits_differing(&map, &data), 1);
    assert_eq!(&*file.map().unwrap(), data.as_slice(), "the rule fired once");
    assert_eq!(fs.contents(p("/f")).unwrap(), data);
}

/// One operation of a scripted workload; the file handle is opened before the script runs.
type Step = fn(&SimFs, &dyn File) -> io::Result<()>;

fn script() -> [(&'static str, Step); 17] {
    [
        ("write", |_, f| f.write_at(b"abc", 0).map(drop)),
        ("read", |_, f| f.read_at(&mut [0; 3], 0).map(drop)),
        ("len", |_, f| f.len().map(drop)),
        ("set_len", |_, f| f.set_len(2)),
        ("sync_data", |_, f| f.sync_data()),
        ("sync_all", |_, f| f.sync_all()),
        ("map", |_, f| f.map().map(drop)),
        ("create", |fs, _| fs.open(p("/d/g"), OpenMode::CreateNew).map(drop)),
        ("open", |fs, _| fs.open(p("/d/f"), OpenMode::ReadWrite).map(drop)),
        ("list_dir", |fs, _| fs.list_dir(p("/d")).map(drop)),
        ("exists", |fs, _| fs.exists(p("/d/f")).map(drop)),
        ("file_len", |fs, _| fs.file_len(p("/d/f")).map(drop)),
        ("create_dir_all", |fs, _| fs.create_dir_all(p("/e/f"))),
        ("sync_dir", |fs, _| fs.sync_dir(p("/d"))),
        ("lock", |fs, _| fs.lock_file(p("/d/lock")).map(drop)),
        ("rename", |fs, _| fs.rename(p("/d/f"), p("/d/h"))),
        ("remove", |fs, _| fs.remove_file(p("/d/victim"))),
    ]
}

#[test]
fn fail_nth_op_fails_exactly_the_nth_operation() {
    let steps = script();
    for n in 0..steps.len() as u64 + 2 {
        let fs = SimFs::new(1);
        let file = durable_file(&fs, "/d/f", b"0123456789");
        durable_file(&fs, "/d/victim", b"");
        fs.inject(FaultRule::fail_nth_op(n));
        let base = fs.stats().ops;
        for (name, step) in &steps {
            let index = fs.stats().ops - base;
            let result = step(&fs, file.as_ref());
            assert_eq!(fs.stats().ops, base + index + 1, "{name} counts as one operation");
            assert_eq!(result.is_err(), index == n, "n = {n}: {name} (operation {index}) gave {result:?}");
        }
        assert_eq!(fs.stats().faults, u64::from(n < steps.len() as u64), "n = {n}");
    }
}

#[test]
fn rule_skips_then_fires_the_given_number_of_times() {
    let fs = SimFs::new(1);
    durable_file(&fs, "/a", b"x");
    fs.inject(FaultRule::fail(Op::Rename).skip(2).times(2));
    let mut at = "/a";
    let mut failed = Vec::new();
    for i in 0..6 {
        // Other operations do not count against the rule.
        fs.exists(p(at)).unwrap();
        fs.file_len(p(at)).unwrap();
        let to = if at == "/a" { "/b" } else { "/a" };
        match fs.rename(p(at), p(to)) {
            Ok(()) => at = to,
            Err(_) => failed.push(i),
        }
    }
    assert_eq!(failed, [2, 3]);
    assert_eq!(fs.stats().renames, 4);
    assert_eq!(fs.stats().faults, 2);
}

#[test]
fn rule_counts_only_operations_its_effect_applies_to() {
    let fs = SimFs::new(1);
    let file = durable_file(&fs, "/f", b"");
    fs.inject(FaultRule::short_write().skip(1).times(1));
    // Reads, syncs and length changes match `Any` but cannot be short: they neither fire nor skip.
    file.read_at(&mut [0; 4], 0).unwrap();
    file.sync_data().unwrap();
    file.set_len(0).unwrap();
    let data = [9; 100];
    assert_eq!(file.write_at(&data, 0).unwrap(), 100, "skipped");
    assert!(file.write_at(&data, 0).unwrap() < 100, "fired");
    assert_eq!(file.write_at(&data, 0).unwrap(), 100, "spent");
    assert_eq!(fs.stats().faults, 1);
}

#[test]
fn rule_limited_to_a_path_fragment_spares_other_paths() {
    let fs = SimFs::new(1);
    let log = durable_file(&fs, "/d/0.log", b"");
    let other = durable_file(&fs, "/d/0.idx", b"");
    fs.inject(FaultRule::fail_file_sync().on_path(".log"));
    log.write_all_at(b"log", 0).unwrap();
    other.write_all_at(b"idx", 0).unwrap();
    assert!(log.sync_data().is_err());
    other.sync_data().unwrap();
    let image = fs.crash_image(1, &CrashOptions::durable_only());
    assert_eq!(image.contents(p("/d/0.log")).unwrap(), b"");
    assert_eq!(image.contents(p("/d/0.idx")).unwrap(), b"idx");
}

#[test]
fn stats_count_each_kind_of_operation() {
    let fs = SimFs::new(1);
    let s = fs.stats();
    assert_eq!(
        (s.ops, s.writes, s.bytes_written, s.file_syncs, s.dir_syncs, s.renames, s.faults),
        (0, 0, 0, 0, 0, 0, 0)
    );

    fs.create_dir_all(p("/d")).unwrap();
    let file = fs.open(p("/d/f"), OpenMode::CreateNew).unwrap();
    file.write_all_at(b"hello", 0).unwrap();
    assert_eq!(file.write_at(b"", 0).unwrap(), 0);
    file.write_all_at(b"abc", 10).unwrap();
    file.sync_data().unwrap();
    file.sync_all().unwrap();
    fs.sync_dir(p("/d")).unwrap();
    fs.rename(p("/d/f"), p("/d/g")).unwrap();
    fs.inject(FaultRule::fail(Op::SyncData).times(1));
    assert!(file.sync_data().is_err());
    assert!(fs.rename(p("/d/missing"), p("/d/x")).is_err());
    let _ = fs.contents(p("/d/g")).unwrap();
    let s = fs.stats();
    assert_eq!(s.ops, 11);
    assert_eq!(s.writes, 2, "a write of no bytes is not counted");
    assert_eq!(s.bytes_written, 8);
    assert_eq!(s.file_syncs, 2, "a failed sync is not counted");
    assert_eq!(s.dir_syncs, 1);
    assert_eq!(s.renames, 1, "a failed rename is not counted");
    assert_eq!(s.faults, 1);

    // Operations that fail on their own still count as operations.
    assert_eq!(err_kind(fs.open(p("/d/g"), OpenMode::CreateNew)), io::ErrorKind::AlreadyExists);
    assert_eq!(err_kind(fs.open(p("/d/missing"), OpenMode::Read)), io::ErrorKind::NotFound);
    assert_eq!(fs.stats().ops, 13);
}

// ---------------------------------------------------------------------------------------------
// Sync points

#[test]
fn sync_points_are_recorded_before_each_sync_with_the_state_of_that_moment() {
    let fs = SimFs::new(1);
    fs.record_sync_points(true);
    let mut ops_before = Vec::new();

    fs.create_dir_all(p("/d")).unwrap();
    ops_before.push(fs.stats().ops);
    fs.sync_dir(p("/")).unwrap();
    let file = fs.open(p("/d/f"), OpenMode::CreateNew).unwrap();
    file.write_all_at(b"one", 0).unwrap();
    ops_before.push(fs.stats().ops);
    file.sync_data().unwrap();
    ops_before.push(fs.stats().ops);
    fs.sync_dir(p("/d")).unwrap();
    file.write_all_at(b"two", 3).unwrap();
    ops_before.push(fs.stats().ops);
    file.sync_all().unwrap();
    file.write_all_at(b"three", 6).unwrap();

    let points = fs.take_sync_points();
    assert!(fs.take_sync_points().is_empty(), "taking removes them");
    let kinds: Vec<(Op, &Path)> = points.iter().map(|point| (point.op, point.path.as_path())).collect();
    assert_eq!(
        kinds,
        [(Op::SyncDir, p("/")), (Op::SyncData, p("/d/f")), (Op::SyncDir, p("/d")), (Op::SyncAll, p("/d/f"))]
    );
    let indexes: Vec<u64> = points.iter().map(|point| point.op_index).collect();
    assert_eq!(indexes, ops_before);

    let durable = |i: usize| tree_of(&points[i].snapshot.crash_image(1, &CrashOptions::durable_only()));
    let kept = |i: usize| tree_of(&points[i].snapshot.crash_image(1, &CrashOptions::keep_all()));
    let file_in = |tree: BTreeMap<PathBuf, Option<Vec<u8>>>| tree.get(p("/d/f")).cloned().flatten();

    assert!(durable(0).is_empty(), "before the first sync nothing is durable");
    assert!(kept(0).contains_key(p("/d")));
    assert!(durable(1).contains_key(p("/d")));
    assert_eq!(file_in(durable(1)), None);
    assert_eq!(file_in(kept(1)), Some(b"one".to_vec()));
    assert_eq!(file_in(durable(2)), None, "the sync of /d comes after this point");
    assert_eq!(file_in(durable(3)), Some(b"one".to_vec()));
    assert_eq!(file_in(kept(3)), Some(b"onetwo".to_vec()), "later writes are not in the snapshot");

    fs.record_sync_points(false);
    file.sync_data().unwrap();
    assert!(fs.take_sync_points().is_empty());
}

#[test]
fn sync_point_index_is_the_operation_fail_nth_op_fails_on_replay() {
    fn workload(fs: &SimFs) -> Vec<bool> {
        let results = [
            fs.create_dir_all(p("/d")),
            fs.sync_dir(p("/")),
            fs.open(p("/d/f"), OpenMode::CreateNew).map(drop),
            fs.lock_file(p("/d/lock")).map(drop),
        ];
        let file = fs.open(p("/d/f"), OpenMode::ReadWrite).unwrap();
        let more = [
            file.write_all_at(b"abc", 0),
            file.sync_data(),
            fs.sync_dir(p("/d")),
            fs.rename(p("/d/f"), p("/d/g")),
            fs.sync_dir(p("/d")),
            file.sync_all(),
        ];
        results.iter().chain(&more).map(Result::is_err).collect()
    }
    let fs = SimFs::new(1);
    fs.record_sync_points(true);
    assert!(workload(&fs).iter().all(|failed| !failed));
    let points = fs.take_sync_points();
    assert_eq!(points.len(), 5);
    for point in points {
        let replay = SimFs::new(1);
        replay.record_sync_points(true);
        replay.inject(FaultRule::fail_nth_op(point.op_index));
        workload(&replay);
        let recorded = replay.take_sync_points();
        let failed = recorded.iter().find(|p| p.op_index == point.op_index).expect("the sync ran on replay");
        assert_eq!((failed.op, &failed.path), (point.op, &point.path));
        assert_eq!(replay.stats().faults, 1);
        let syncs = replay.stats().file_syncs + replay.stats().dir_syncs;
        assert_eq!(syncs, 4, "op {}: exactly the recorded sync failed", point.op_index);
    }
}

// ---------------------------------------------------------------------------------------------
// Locks, open modes, handles, paths

#[test]
fn lock_file_is_exclusive_until_the_guard_drops() {
    let fs = SimFs::new(1);
    fs.create_dir_all(p("/d")).unwrap();
    let guard = fs.lock_file(p("/d/LOCK")).unwrap();
    assert!(fs.exists(p("/d/LOCK")).unwrap(), "locking creates the file");
    assert_eq!(err_kind(fs.lock_file(p("/d/LOCK"))), io::ErrorKind::WouldBlock);
    assert_eq!(err_kind(fs.clone().lock_file(p("d/LOCK"))), io::ErrorKind::WouldBlock, "clones share locks");
    let other = fs.lock_file(p("/d/OTHER")).unwrap();
    drop(guard);
    let again = fs.lock_file(p("/d/LOCK")).unwrap();
    assert_eq!(err_kind(fs.lock_file(p("/d/OTHER"))), io::ErrorKind::WouldBlock);
    drop((again, other));
    fs.lock_file(p("/d/OTHER")).unwrap();
}

#[test]
fn create_new_on_an_existing_name_fails_with_already_exists() {
    let fs = SimFs::new(1);
    durable_file(&fs, "/f", b"keep");
    fs.create_dir_all(p("/dir")).unwrap();
    assert_eq!(err_kind(fs.open(p("/f"), OpenMode::CreateNew)), io::ErrorKind::AlreadyExists);
    assert_eq!(err_kind(fs.open(p("/dir"), OpenMode::CreateNew)), io::ErrorKind::AlreadyExists);
    assert_eq!(fs.contents(p("/f")).unwrap(), b"keep");
    assert_eq!(err_kind(fs.open(p("/missing"), OpenMode::ReadWrite)), io::ErrorKind::NotFound);
    assert_eq!(err_kind(fs.open(p("/missing"), OpenMode::Read)), io::ErrorKind::NotFound);
    assert_eq!(err_kind(fs.open(p("/nodir/f"), OpenMode::CreateNew)), io::ErrorKind::NotFound);
    assert_eq!(err_kind(fs.open(p("/dir"), OpenMode::ReadWrite)), io::ErrorKind::IsADirectory);
}

#[test]
fn read_only_handle_cannot_write_or_change_length() {
    let fs = SimFs::new(1);
    durable_file(&fs, "/f", b"data");
    let file = fs.open(p("/f"), OpenMode::Read).unwrap();
    assert!(file.write_at(b"x", 0).is_err());
    assert!(file.write_all_at(b"x", 4).is_err());
    assert!(file.set_len(0).is_err());
    assert_eq!(read_all(file.as_ref()), b"data");
    assert_eq!(fs.contents(p("/f")).unwrap(), b"data");
    assert_eq!(fs.stats().writes, 1, "only the setup wrote");
}

#[test]
fn create_truncate_empties_an_existing_file_and_creates_a_missing_one() {
    let fs = SimFs::new(1);
    durable_file(&fs, "/f", b"old data");
    let file = fs.open(p("/f"), OpenMode::CreateTruncate).unwrap();
    assert_eq!(file.len().unwrap(), 0);
    assert_eq!(fs.contents(p("/f")).unwrap(), b"");
    assert_eq!(
        fs.crash_image(1, &CrashOptions::durable_only()).contents(p("/f")).unwrap(),
        b"old data",
        "an unsynced truncation is not durable"
    );
    file.sync_data().unwrap();
    assert_eq!(fs.crash_image(1, &CrashOptions::durable_only()).contents(p("/f")).unwrap(), b"");

    let fresh = fs.open(p("/g"), OpenMode::CreateTruncate).unwrap();
    fresh.write_all_at(b"new", 0).unwrap();
    assert_eq!(fs.contents(p("/g")).unwrap(), b"new");
}

#[test]
fn handle_keeps_working_after_its_file_is_removed() {
    let fs = SimFs::new(1);
    let file = durable_file(&fs, "/d/f", b"before");
    fs.remove_file(p("/d/f")).unwrap();
    assert_eq!(err_kind(fs.remove_file(p("/d/f"))), io::ErrorKind::NotFound);
    file.write_all_at(b" after", 6).unwrap();
    assert_eq!(read_all(file.as_ref()), b"before after");
    file.sync_data().unwrap();
    assert_eq!(file.len().unwrap(), 12);
    assert!(!fs.exists(p("/d/f")).unwrap());
    // The removal was not synced: the durable entry points at the inode, whose data was synced.
    let image = fs.crash_image(1, &CrashOptions::durable_only());
    assert_eq!(image.contents(p("/d/f")).unwrap(), b"before after");
}

#[test]
fn handle_keeps_working_after_its_file_is_renamed() {
    let fs = SimFs::new(1);
    let file = durable_file(&fs, "/a/f", b"one");
    fs.create_dir_all(p("/b")).unwrap();
    fs.rename(p("/a/f"), p("/b/g")).unwrap();
    file.write_all_at(b"two", 3).unwrap();
    assert_eq!(fs.contents(p("/b/g")).unwrap(), b"onetwo");
    assert_eq!(err_kind(fs.contents(p("/a/f"))), io::ErrorKind::NotFound);
    assert_eq!(read_all(file.as_ref()), b"onetwo");
}

#[test]
fn list_dir_is_sorted_by_name_and_lists_directories_too() {
    let fs = SimFs::new(1);
    fs.create_dir_all(p("/d/sub")).unwrap();
    for name in ["c", "a2", "b10", "B", "b9", "a10"] {
        fs.open(&Path::new("/d").join(name), OpenMode::CreateNew).unwrap();
    }
    let names: Vec<String> =
        fs.list_dir(p("/d")).unwrap().into_iter().map(|n| n.into_string().unwrap()).collect();
    assert_eq!(names, ["B", "a10", "a2", "b10", "b9", "c", "sub"]);
    assert_eq!(fs.list_dir(p("d")).unwrap().len(), 7, "relative paths start at the root");
    assert_eq!(err_kind(fs.list_dir(p("/d/c"))), io::ErrorKind::NotADirectory);
    assert_eq!(err_kind(fs.list_dir(p("/missing"))), io::ErrorKind::NotFound);
}

#[test]
fn parent_directory_components_are_refused() {
    let fs = SimFs::new(1);
    fs.create_dir_all(p("/d")).unwrap();
    durable_file(&fs, "/f", b"x");
    assert_eq!(err_kind(fs.open(p("/d/../g"), OpenMode::CreateNew)), io::ErrorKind::InvalidInput);
    assert_eq!(err_kind(fs.open(p("/d/../f"), OpenMode::Read)), io::ErrorKind::InvalidInput);
    assert_eq!(err_kind(fs.create_dir_all(p("/d/../e"))), io::ErrorKind::InvalidInput);
    assert_eq!(err_kind(fs.rename(p("/f"), p("/d/../g"))), io::ErrorKind::InvalidInput);
    assert_eq!(err_kind(fs.exists(p("/d/.."))), io::ErrorKind::InvalidInput);
    assert!(!fs.exists(p("/g")).unwrap());
    assert!(!fs.exists(p("/e")).unwrap());
    assert!(fs.exists(p("/f")).unwrap());
}

#[test]
fn crash_image_is_independent_of_the_simulator_it_came_from() {
    let fs = SimFs::new(1);
    let file = durable_file(&fs, "/f", b"synced");
    file.write_all_at(b"!", 6).unwrap();
    fs.inject(FaultRule::fail(Op::Write));
    let image = fs.crash_image(1, &CrashOptions::keep_all());

    let copy = image.open(p("/f"), OpenMode::ReadWrite).unwrap();
    copy.write_all_at(b"image", 0).unwrap();
    assert!(file.write_at(b"x", 0).is_err(), "the rule stays on the original");
    fs.clear_faults();
    file.write_all_at(b"live", 0).unwrap();
    assert_eq!(fs.contents(p("/f")).unwrap(), b"liveed!");
    assert_eq!(image.contents(p("/f")).unwrap(), b"imaged!");
    let image_of_image = image.crash_image(1, &CrashOptions::durable_only());
    assert_eq!(image_of_image.contents(p("/f")).unwrap(), b"synced!", "an image's state starts durable");
    assert_eq!(image.stats().faults, 0);
}

#[test]
fn faults_carry_the_effect_they_were_given() {
    let fs = SimFs::new(1);
    let file = durable_file(&fs, "/f", b"abc");
    fs.inject(FaultRule::fail(Op::Read).with_effect(FaultEffect::NoSpace));
    file.read_at(&mut [0; 3], 0).unwrap();
    assert_eq!(fs.stats().faults, 0, "ENOSPC does not apply to reads");
    fs.clear_faults();
    fs.inject(FaultRule::fail(Op::SetLen).with_effect(FaultEffect::NoSpace));
    assert_eq!(err_kind(file.set_len(10)), io::ErrorKind::StorageFull);
    assert_eq!(fs.contents(p("/f")).unwrap(), b"abc");
}

#[test]
fn writes_and_lengths_past_the_file_size_limit_fail_with_efbig_and_change_nothing() {
    let fs = SimFs::new(1);
    let file = fs.open(Path::new("/f"), OpenMode::CreateNew).unwrap();
    file.write_all_at(b"abc", 0).unwrap();
    for (what, result) in [
        ("write at u64::MAX", file.write_at(b"x", u64::MAX).map(|_| ())),
        ("write past the limit", file.write_at(b"x", cairn_fs::sim::MAX_FILE_BYTES).map(|_| ())),
        ("set_len past the limit", file.set_len(cairn_fs::sim::MAX_FILE_BYTES + 1)),
    ] {
        let error = result.expect_err(what);
        assert_eq!(error.raw_os_error(), None, "{what}: a wrapped error keeps its kind only");
        assert_eq!(error.kind(), std::io::ErrorKind::FileTooLarge, "{what}");
    }
    assert_eq!(fs.contents(Path::new("/f")).unwrap(), b"abc");
}

#[test]
fn every_mutation_leaves_a_point_with_the_state_before_it() {
    let fs = SimFs::new(1);
    fs.create_dir_all(Path::new("/d")).unwrap();
    fs.record_every_mutation(true);
    let file = fs.open(Path::new("/d/a"), OpenMode::CreateNew).unwrap();
    file.write_all_at(b"abc", 0).unwrap();
    file.sync_all().unwrap();
    fs.rename(Path::new("/d/a"), Path::new("/d/b")).unwrap();
    fs.sync_dir(Path::new("/d")).unwrap();
    let _ = fs.exists(Path::new("/d/b")).unwrap(); // not a mutation: no point
    fs.record_every_mutation(false);
    file.write_all_at(b"d", 3).unwrap(); // recording off: no point
    let points = fs.take_sync_points();
    let ops: Vec<Op> = points.iter().map(|p| p.op).collect();
    assert_eq!(ops, [Op::Create, Op::Write, Op::SyncAll, Op::Rename, Op::SyncDir]);
    // Each snapshot is the state just before its operation.
    let keep = CrashOptions::keep_all();
    assert!(!points[0].snapshot.crash_image(0, &keep).exists(Path::new("/d/a")).unwrap());
    assert_eq!(points[1].snapshot.crash_image(0, &keep).contents(Path::new("/d/a")).unwrap(), b"");
    assert_eq!(points[3].snapshot.crash_image(0, &keep).contents(Path::new("/d/a")).unwrap(), b"abc");
    assert!(points[4].snapshot.crash_image(0, &keep).exists(Path::new("/d/b")).unwrap());
    assert!(
        !points[4].snapshot.crash_image(0, &CrashOptions::durable_only()).exists(Path::new("/d/b")).unwrap()
    );
}
