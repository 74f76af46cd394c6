//! The store's documented behaviour, case by case: Samza's key-value semantics, typed errors,
//! snapshots (used, relocated after compaction, damaged, past the end), restore reports,
//! changelog damage, and reads during background compaction.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_changelog::{CompactOptions, CompactionLimit, CompactionPolicy, Maintenance};
use cairn_fs::{Fs, OpenMode, SimFs};
use cairn_store::{Error, ProgressListener, RestorePhase, RestoreSource, SkipReason, Store, StoreOptions};
use common::{contents, small_options};

fn sim() -> (Arc<SimFs>, Arc<dyn Fs>) {
    let sim = Arc::new(SimFs::new(5));
    let fs: Arc<dyn Fs> = sim.clone();
    (sim, fs)
}

fn key(i: u32) -> Vec<u8> {
    format!("key-{i:06}").into_bytes()
}

fn value(i: u32, round: u32) -> Vec<u8> {
    format!("value-{i}-{round}-{}", "x".repeat((i % 50) as usize)).into_bytes()
}

/// Writes `n` keys `rounds` times (every third deleted in the last round) and syncs.
fn fill(store: &mut Store, n: u32, rounds: u32) -> common::Model {
    let mut model = common::Model::new();
    for round in 0..rounds {
        for i in 0..n {
            if round + 1 == rounds && i % 3 == 0 {
                store.delete(&key(i)).unwrap();
                model.remove(&key(i));
            } else {
                store.put(&key(i), &value(i, round)).unwrap();
                model.insert(key(i), value(i, round));
            }
        }
    }
    store.sync().unwrap();
    model
}

#[test]
fn put_get_delete_and_batches_follow_samza_semantics() {
    let (_, fs) = sim();
    let mut store = Store::open(fs, "/s", StoreOptions::default()).unwrap();
    store.put(b"a", b"1").unwrap();
    assert_eq!(store.get(b"a").unwrap(), Some(b"1".to_vec()));
    store.put(b"a", b"2").unwrap();
    assert_eq!(store.get(b"a").unwrap(), Some(b"2".to_vec()));
    store.delete(b"a").unwrap();
    assert_eq!(store.get(b"a").unwrap(), None);
    store.delete(b"never").unwrap();
    store
        .put_all(&[
            (b"b".to_vec(), b"x".to_vec()),
            (b"c".to_vec(), b"y".to_vec()),
            (b"b".to_vec(), b"z".to_vec()),
        ])
        .unwrap();
    assert_eq!(
        store.get_all(&[b"b".as_slice(), b"c", b"d"]).unwrap(),
        vec![Some(b"z".to_vec()), Some(b"y".to_vec()), None]
    );
    store.delete_all(&[b"b".as_slice(), b"c"]).unwrap();
    assert!(store.is_empty());
    store.put(b"", b"").map(|_| ()).unwrap_err();
    // Empty values are values.
    store.put(b"e", b"").unwrap();
    assert_eq!(store.get(b"e").unwrap(), Some(Vec::new()));
    store.flush().unwrap();
    assert_eq!(store.get(b"e").unwrap(), Some(Vec::new()));
}

#[test]
fn ranges_are_inclusive_exclusive_in_byte_order() {
    let (_, fs) = sim();
    let mut store = Store::open(fs, "/s", StoreOptions::default()).unwrap();
    for k in [b"a".as_slice(), b"ab", b"b", b"b\x00", b"c", b"\xff"] {
        store.put(k, k).unwrap();
    }
    store.flush().unwrap();
    let keys = |from: &[u8], to: &[u8]| -> Vec<Vec<u8>> {
        store.range(from, to).unwrap().map(|e| e.unwrap().0).collect()
    };
    assert_eq!(keys(b"a", b"b"), vec![b"a".to_vec(), b"ab".to_vec()]);
    assert_eq!(keys(b"ab", b"b\x00"), vec![b"ab".to_vec(), b"b".to_vec()]);
    assert_eq!(keys(b"b", b"b"), Vec::<Vec<u8>>::new());
    assert_eq!(keys(b"c", b"\xff\xff"), vec![b"c".to_vec(), b"\xff".to_vec()]);
    assert!(matches!(store.range(b"b", b"a"), Err(Error::InvalidRange)));
}

#[test]
fn bad_keys_and_values_get_typed_errors_and_change_nothing() {
    let (_, fs) = sim();
    let mut options = StoreOptions::default();
    options.key_bytes_max = 8;
    options.value_bytes_max = 16;
    let mut store = Store::open(fs, "/s", options).unwrap();
    assert!(matches!(store.put(b"", b"v"), Err(Error::EmptyKey)));
    assert!(matches!(store.get(b""), Err(Error::EmptyKey)));
    assert!(matches!(store.put(b"123456789", b"v"), Err(Error::KeyTooLarge { bytes: 9, max: 8 })));
    assert!(matches!(store.put(b"k", &[0; 17]), Err(Error::ValueTooLarge { bytes: 17, max: 16 })));
    let entries = [(b"ok".to_vec(), b"v".to_vec()), (b"bad".to_vec(), vec![0; 17])];
    assert!(matches!(store.put_all(&entries), Err(Error::ValueTooLarge { .. })));
    assert_eq!(store.get(b"ok").unwrap(), None, "a failed put_all wrote nothing");
    assert!(!store.is_poisoned());
}

#[test]
fn a_value_larger_than_a_changelog_batch_is_refused_by_the_options() {
    let mut options = StoreOptions::default();
    options.value_bytes_max = 64 << 20;
    let (_, fs) = sim();
    assert!(matches!(
        Store::open(fs, "/s", options),
        Err(Error::InvalidOptions { option: "value_bytes_max", .. })
    ));
}

#[test]
fn a_view_is_unchanged_by_later_writes_and_compaction() {
    let (_, fs) = sim();
    let mut store = Store::open(fs, "/s", small_options()).unwrap();
    let model = fill(&mut store, 300, 2);
    let view = store.view().unwrap();
    for i in 0..300 {
        store.put(&key(i), b"later").unwrap();
    }
    let end = store.sync().unwrap();
    let mut compact = CompactOptions::default();
    compact.roll_active_bytes_min = Some(1);
    let report = store.compact(end, &compact).unwrap();
    assert!(report.segments_written > 0, "{report:?}");
    let seen: common::Model = view.iter().map(|e| e.unwrap()).collect();
    assert_eq!(seen, model);
    assert_eq!(view.get(&key(1)).unwrap(), model.get(&key(1)).cloned());
    assert_eq!(store.get(&key(1)).unwrap(), Some(b"later".to_vec()));
}

#[test]
fn restore_uses_the_newest_snapshot_and_replays_after_it() {
    let (_, fs) = sim();
    let mut store = Store::open(fs.clone(), "/s", small_options()).unwrap();
    let mut model = fill(&mut store, 200, 2);
    let first = store.write_snapshot().unwrap();
    for i in 0..50 {
        store.put(&key(i), b"after").unwrap();
        model.insert(key(i), b"after".to_vec());
    }
    let second = store.write_snapshot().unwrap();
    store.put(&key(7), b"tail").unwrap();
    model.insert(key(7), b"tail".to_vec());
    store.close().unwrap();
    assert!(second.offset > first.offset);

    let store = Store::open(fs, "/s", small_options()).unwrap();
    let report = store.restore_report().clone();
    assert_eq!(report.source, RestoreSource::Snapshot { offset: second.offset, path: second.path.clone() });
    assert!(report.skipped_snapshots.is_empty());
    assert_eq!(report.records_replayed, 1);
    assert_eq!(contents(&store), model);
}

#[test]
fn snapshot_entries_in_compacted_segments_are_found_again() {
    let (_, fs) = sim();
    let mut store = Store::open(fs.clone(), "/s", small_options()).unwrap();
    let model = fill(&mut store, 400, 3);
    let snap = store.write_snapshot().unwrap();
    let mut compact = CompactOptions::default();
    compact.roll_active_bytes_min = Some(1);
    let report = store.compact(snap.offset, &compact).unwrap();
    assert!(report.segments_written > 0);
    store.close().unwrap();

    let store = Store::open(fs, "/s", small_options()).unwrap();
    let report = store.restore_report();
    assert!(matches!(report.source, RestoreSource::Snapshot { .. }), "{report:?}");
    assert!(report.entries_relocated > 0, "{report:?}");
    assert_eq!(contents(&store), model);
}

fn put_file(fs: &Arc<dyn Fs>, path: &Path, bytes: &[u8]) {
    let file = fs.open(path, OpenMode::CreateTruncate).unwrap();
    file.write_all_at(bytes, 0).unwrap();
    file.sync_all().unwrap();
    fs.sync_dir(path.parent().unwrap()).unwrap();
}

fn damage(sim: &SimFs, path: &Path, at: usize) {
    let mut bytes = sim.contents(path).unwrap();
    bytes[at] ^= 0x40;
    sim.set_contents(path, &bytes).unwrap();
}

#[test]
fn a_damaged_snapshot_is_skipped_reported_and_the_older_one_used() {
    let (sim, fs) = sim();
    let mut store = Store::open(fs.clone(), "/s", small_options()).unwrap();
    let mut model = fill(&mut store, 100, 1);
    let older = store.write_snapshot().unwrap();
    store.put(b"new", b"1").unwrap();
    model.insert(b"new".to_vec(), b"1".to_vec());
    let newer = store.write_snapshot().unwrap();
    store.close().unwrap();
    for at in [0, 30, 200] {
        damage(&sim, &newer.path, at);
        let store = Store::open(fs.clone(), "/s", small_options()).unwrap();
        let report = store.restore_report();
        assert_eq!(report.source, RestoreSource::Snapshot { offset: older.offset, path: older.path.clone() });
        assert_eq!(report.skipped_snapshots.len(), 1);
        assert!(matches!(report.skipped_snapshots[0].reason, SkipReason::Unreadable(_)), "{report:?}");
        assert_eq!(contents(&store), model);
        drop(store);
        damage(&sim, &newer.path, at);
    }
    // Both damaged: a full replay, both reported.
    damage(&sim, &newer.path, 40);
    damage(&sim, &older.path, 40);
    let store = Store::open(fs, "/s", small_options()).unwrap();
    assert_eq!(store.restore_report().source, RestoreSource::Replay);
    assert_eq!(store.restore_report().skipped_snapshots.len(), 2);
    assert_eq!(contents(&store), model);
}

#[test]
fn a_snapshot_of_another_log_is_inconsistent_and_skipped() {
    let (sim, fs) = sim();
    let mut other = Store::open(fs.clone(), "/other", small_options()).unwrap();
    fill(&mut other, 100, 2);
    let foreign = other.write_snapshot().unwrap();
    other.close().unwrap();
    let mut store = Store::open(fs.clone(), "/s", small_options()).unwrap();
    let mut model = fill(&mut store, 60, 1);
    for i in 0..2000 {
        store.put(b"pad", &i.to_string().into_bytes()).unwrap();
        model.insert(b"pad".to_vec(), i.to_string().into_bytes());
    }
    store.close().unwrap();
    let copy = Path::new("/s/snapshots").join(foreign.path.file_name().unwrap());
    put_file(&fs, &copy, &sim.contents(&foreign.path).unwrap());
    let store = Store::open(fs, "/s", small_options()).unwrap();
    let report = store.restore_report();
    assert_eq!(report.source, RestoreSource::Replay, "{report:?}");
    assert_eq!(report.skipped_snapshots.len(), 1, "{report:?}");
    assert_eq!(contents(&store), model);
}

#[test]
fn open_at_rolls_back_and_deletes_snapshots_past_the_offset() {
    let (_, fs) = sim();
    let mut store = Store::open(fs.clone(), "/s", small_options()).unwrap();
    let model = fill(&mut store, 100, 1);
    let checkpoint = store.sync().unwrap();
    fill(&mut store, 100, 2);
    let later = store.write_snapshot().unwrap();
    store.close().unwrap();

    let store = Store::open_at(fs.clone(), "/s", small_options(), checkpoint).unwrap();
    assert_eq!(store.end_offset(), checkpoint);
    assert_eq!(contents(&store), model);
    assert!(!fs.exists(&later.path).unwrap(), "the snapshot past the cut is gone");
    drop(store);
    // Writes after the roll-back reach the offsets the deleted snapshot covered: they win.
    let mut store = Store::open(fs.clone(), "/s", small_options()).unwrap();
    let mut model = model;
    for i in 0..(later.offset - checkpoint + 10) as u32 {
        store.put(b"after", &i.to_be_bytes()).unwrap();
        model.insert(b"after".to_vec(), i.to_be_bytes().to_vec());
    }
    store.close().unwrap();
    let store = Store::open(fs.clone(), "/s", small_options()).unwrap();
    assert_eq!(contents(&store), model);
    let end = store.end_offset();
    drop(store);
    // An offset past the end is a checkpoint ahead of its log: corruption, nothing changed.
    let before = fs.list_dir(Path::new("/s/changelog")).unwrap();
    match Store::open_at(fs.clone(), "/s", small_options(), end + 1) {
        Err(Error::Changelog(cairn_changelog::Error::Corruption { kind, .. })) => {
            assert!(matches!(kind, cairn_changelog::CorruptionKind::MissingDurableData { .. }), "{kind:?}")
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    assert_eq!(fs.list_dir(Path::new("/s/changelog")).unwrap(), before);
}

#[test]
fn open_at_reports_a_damaged_batch_below_the_offset_and_cuts_nothing() {
    // Found by `cargo xtask crash surgery`: the changelog used to take damage below the task's
    // checkpoint for a torn tail and cut it durably, committed records with it.
    let (sim, fs) = sim();
    let mut options = small_options();
    options.log.segment_bytes_max = 1 << 20;
    let mut store = Store::open(fs.clone(), "/s", options.clone()).unwrap();
    fill(&mut store, 100, 1);
    let checkpoint = store.sync().unwrap();
    store.close().unwrap();
    let segment = Path::new("/s/changelog").join(format!("{:020}.log", 0));
    let before = sim.contents(&segment).unwrap();
    damage(&sim, &segment, before.len() / 2);
    match Store::open_at(fs.clone(), "/s", options, checkpoint) {
        Err(Error::Changelog(cairn_changelog::Error::Corruption { file, position, .. })) => {
            assert_eq!(file, segment);
            assert!(position > 0 && position < before.len() as u64, "{position}");
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    assert_eq!(sim.contents(&segment).unwrap().len(), before.len(), "nothing was cut");
}

#[test]
fn a_snapshot_past_the_changelog_end_is_skipped_and_deleted() {
    let (sim, fs) = sim();
    let mut store = Store::open(fs.clone(), "/s", small_options()).unwrap();
    let model = fill(&mut store, 50, 1);
    let snap = store.write_snapshot().unwrap();
    store.close().unwrap();
    let renamed = Path::new("/s/snapshots").join(format!("{:020}.snapshot", snap.offset + 1000));
    put_file(&fs, &renamed, &sim.contents(&snap.path).unwrap());
    let store = Store::open(fs.clone(), "/s", small_options()).unwrap();
    assert!(!fs.exists(&renamed).unwrap());
    assert_eq!(contents(&store), model);
}

#[test]
fn a_snapshot_whose_offset_differs_from_its_name_is_skipped() {
    let (sim, fs) = sim();
    let mut store = Store::open(fs.clone(), "/s", small_options()).unwrap();
    let model = fill(&mut store, 50, 1);
    let snap = store.write_snapshot().unwrap();
    store.close().unwrap();
    let renamed = Path::new("/s/snapshots").join(format!("{:020}.snapshot", snap.offset - 1));
    put_file(&fs, &renamed, &sim.contents(&snap.path).unwrap());
    fs.remove_file(&snap.path).unwrap();
    let store = Store::open(fs, "/s", small_options()).unwrap();
    assert_eq!(store.restore_report().skipped_snapshots.len(), 1);
    assert!(matches!(store.restore_report().skipped_snapshots[0].reason, SkipReason::BadEntries { .. }));
    assert_eq!(contents(&store), model);
}

#[test]
fn only_the_newest_snapshots_are_kept() {
    let (_, fs) = sim();
    let mut options = small_options();
    options.snapshots_kept = 2;
    let mut store = Store::open(fs.clone(), "/s", options).unwrap();
    let mut written = Vec::new();
    for round in 0..4 {
        store.put(b"k", &[round]).unwrap();
        written.push(store.write_snapshot().unwrap());
    }
    let names = fs.list_dir(Path::new("/s/snapshots")).unwrap();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(fs.exists(&written[3].path).unwrap() && fs.exists(&written[2].path).unwrap());
}

#[test]
fn changelog_damage_below_the_durable_region_is_a_typed_error() {
    let (sim, fs) = sim();
    let mut store = Store::open(fs.clone(), "/s", small_options()).unwrap();
    fill(&mut store, 300, 2);
    store.close().unwrap();
    let mut names: Vec<_> = fs.list_dir(Path::new("/s/changelog")).unwrap();
    names.sort();
    let first = names.iter().find(|n| n.to_string_lossy().ends_with(".log")).unwrap();
    let path = Path::new("/s/changelog").join(first);
    damage(&sim, &path, 100);
    let mut options = small_options();
    options.log.verify_on_open = true;
    match Store::open(fs.clone(), "/s", options) {
        Err(Error::Changelog(e)) => {
            assert!(e.corruption_kind().is_some(), "{e}");
            assert!(e.to_string().contains(&*first.to_string_lossy()), "{e}");
        }
        other => panic!("expected a corruption, got {other:?}"),
    }
    // Without the full check, restore's replay reads the batch and fails the same way.
    match Store::open(fs, "/s", small_options()) {
        Err(Error::Changelog(e)) => assert!(e.corruption_kind().is_some(), "{e}"),
        other => panic!("expected a corruption, got {other:?}"),
    }
}

#[test]
fn restore_reports_progress_to_the_end() {
    let (_, fs) = sim();
    let mut store = Store::open(fs.clone(), "/s", small_options()).unwrap();
    fill(&mut store, 500, 3);
    store.close().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut options = small_options();
    let sink = Arc::clone(&seen);
    options.on_restore_progress = Some(ProgressListener(Arc::new(move |p| sink.lock().unwrap().push(*p))));
    let store = Store::open(fs, "/s", options).unwrap();
    let seen = seen.lock().unwrap();
    let last = seen.last().unwrap();
    assert_eq!(last.phase, RestorePhase::Done);
    assert_eq!(last.records_done, store.restore_report().records_replayed);
    assert_eq!(last.bytes_done, last.bytes_total);
    assert!(seen.iter().any(|p| p.phase == RestorePhase::Replay));
    assert_eq!(store.restore_report().records_replayed, 1500);
}

#[test]
fn gets_keep_working_during_background_compaction() {
    let (_, fs) = sim();
    let mut options = small_options();
    let mut policy = CompactionPolicy::default();
    policy.limit = CompactionLimit::DurableEnd;
    policy.dirty_percent_min = 1;
    policy.options.roll_active_bytes_min = Some(1);
    let mut maintenance = Maintenance::default();
    maintenance.interval = Duration::from_millis(1);
    maintenance.compaction = Some(policy);
    options.compaction = Some(maintenance);
    let mut store = Store::open(fs, "/s", options).unwrap();
    let mut model = common::Model::new();
    let checks = AtomicU64::new(0);
    for round in 0..40u32 {
        for i in 0..50 {
            store.put(&key(i), &value(i, round)).unwrap();
            model.insert(key(i), value(i, round));
        }
        store.sync().unwrap();
        for (k, v) in &model {
            assert_eq!(store.get(k).unwrap().as_ref(), Some(v));
            checks.fetch_add(1, Ordering::Relaxed);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let status = store.changelog().maintenance_status();
    assert!(status.compactions > 0, "{status:?}");
    assert_eq!(contents(&store), model);
}

#[test]
fn a_roll_back_after_a_compaction_that_reactivated_the_snapshot_segment_relocates() {
    common::probes::roll_back_after_a_compaction_that_reactivated_the_snapshot_segment();
}

#[test]
fn the_value_cache_tells_apart_equal_positions_in_different_segments() {
    common::probes::value_cache_tells_apart_equal_positions_in_different_segments();
}
