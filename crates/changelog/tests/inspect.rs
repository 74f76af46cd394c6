//! Inspection and repair of damaged logs on real files (`LogDir`, `Repair`).
//!
//! Each case damages a copy of one closed log by hand and checks that:
//! - `LogDir::verify` changes no byte of the directory;
//! - it agrees with what opening does: opening with `verify_on_open` fails with a corruption
//!   exactly when verify finds `Severity::Damage`, and that corruption (file, position, kind)
//!   is among its findings; a tail opening cuts is a `TornTail` finding at the same place; the
//!   end offset is the one opening recovers;
//! - `Repair` saves every byte it removes, and leaves a log that opens cleanly (even with
//!   `verify_on_open`) holding exactly the records before the first damage.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_changelog::{
    CorruptionKind, Error, Inspection, Log, LogDir, LogOptions, Problem, Repair, Severity,
};
use cairn_fs::RealFs;
use common::{Rec, TempDir, read_from, small_options};

fn real() -> Arc<RealFs> {
    Arc::new(RealFs::new())
}

fn log_name(base: u64) -> String {
    format!("{base:020}.log")
}

fn index_name(base: u64) -> String {
    format!("{base:020}.index")
}

/// Every file of `dir` and its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            (entry.file_name().into_string().unwrap(), fs::read(entry.path()).unwrap())
        })
        .collect()
}

fn restore(dir: &Path, files: &BTreeMap<String, Vec<u8>>) {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir).unwrap();
    for (name, bytes) in files {
        fs::write(dir.join(name), bytes).unwrap();
    }
}

/// Asserts that two snapshots hold the same files with the same bytes, naming the first
/// difference (not printing the bytes).
fn assert_same(found: &BTreeMap<String, Vec<u8>>, expected: &BTreeMap<String, Vec<u8>>, what: &str) {
    let names = |m: &BTreeMap<String, Vec<u8>>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(found), names(expected), "{what}: other files");
    for (name, bytes) in found {
        let position = bytes.iter().zip(&expected[name]).position(|(a, b)| a != b);
        assert!(
            bytes.len() == expected[name].len() && position.is_none(),
            "{what}: {name} differs (length {} for {}, first difference at {position:?})",
            bytes.len(),
            expected[name].len()
        );
    }
}

/// Segment bases of a snapshot, in order.
fn bases(files: &BTreeMap<String, Vec<u8>>) -> Vec<u64> {
    files.keys().filter_map(|n| n.strip_suffix(".log")?.parse().ok()).collect()
}

/// A closed log of six or more 4 KiB segments, one record per batch.
fn write_log(dir: &Path) -> Vec<Rec> {
    let mut options = small_options();
    options.write_buffer_bytes = 0;
    let log = Log::open(real(), dir, options).unwrap();
    let mut all = Vec::new();
    for seed in 0.. {
        let rec = Rec::generate(seed, 200);
        log.append(rec.as_record()).unwrap();
        all.push(rec);
        if bases(&snapshot(dir)).len() >= 6 && seed % 7 == 3 {
            break;
        }
    }
    log.sync().unwrap();
    log.close().unwrap();
    all
}

/// A kind of damage, applied to the files of the log.
type Surgery = Box<dyn Fn(&mut BTreeMap<String, Vec<u8>>)>;

fn surgeries(files: &BTreeMap<String, Vec<u8>>) -> Vec<(String, Surgery)> {
    let bases = bases(files);
    let last = *bases.last().unwrap();
    let middle = bases[bases.len() / 2];
    let mut cases: Vec<(String, Surgery)> = vec![("none".into(), Box::new(|_| {}))];
    let last_len = files[&log_name(last)].len();
    for cut in (0..last_len).step_by(97) {
        cases.push((
            format!("last segment cut at {cut}"),
            Box::new(move |f| f.get_mut(&log_name(last)).unwrap().truncate(cut)),
        ));
    }
    for &base in [bases[0], middle, last].iter() {
        let len = files[&log_name(base)].len();
        for at in (5..len).step_by(331) {
            cases.push((
                format!("bit flipped at byte {at} of segment {base}"),
                Box::new(move |f| f.get_mut(&log_name(base)).unwrap()[at] ^= 0x10),
            ));
        }
    }
    cases.push((
        "garbage after the last batch".into(),
        Box::new(move |f| {
            f.get_mut(&log_name(last)).unwrap().extend((0..300u32).map(|i| (i * 7 + 1) as u8));
        }),
    ));
    cases.push((
        "middle segment missing".into(),
        Box::new(move |f| {
            f.remove(&log_name(middle));
            f.remove(&index_name(middle));
        }),
    ));
    cases.push((
        "last segment missing".into(),
        Box::new(move |f| {
            f.remove(&log_name(last));
        }),
    ));
    let first = bases[0];
    cases.push((
        "index of the first segment missing".into(),
        Box::new(move |f| {
            f.remove(&index_name(first));
        }),
    ));
    cases.push((
        "index of the middle segment garbage".into(),
        Box::new(move |f| {
            f.insert(index_name(middle), vec![0xAB; 200]);
        }),
    ));
    cases.push((
        "index entries of the middle segment damaged".into(),
        Box::new(move |f| {
            let index = f.get_mut(&index_name(middle)).unwrap();
            let at = index.len() - 3;
            index[at] ^= 1;
        }),
    ));
    cases.push((
        "leftover temp file".into(),
        Box::new(|f| {
            f.insert("00000000000000000000.log.tmp".into(), vec![1, 2, 3]);
        }),
    ));
    // The last two sealed segments never marked (a crash before the sync after their roll): a
    // tail window of three segments; damage in the first of them is a torn tail.
    let tail = bases[bases.len() - 3];
    cases.push((
        "tail window of three segments, bit flipped in its first".into(),
        Box::new(move |f| {
            for base in &bases[bases.len() - 3..] {
                f.remove(&index_name(*base));
            }
            f.get_mut(&log_name(tail)).unwrap()[700] ^= 0x01;
        }),
    ));
    cases
}

fn verify(dir: &Path) -> Inspection {
    LogDir::open(real(), dir).unwrap().verify(&mut |_| {}).unwrap()
}

fn verifying() -> LogOptions {
    let mut options = small_options();
    options.verify_on_open = true;
    options
}

/// Checks one damaged directory; returns the inspection.
fn check_case(name: &str, dir: &Path, damaged: &BTreeMap<String, Vec<u8>>, all: &[Rec]) -> Inspection {
    restore(dir, damaged);
    let inspection = verify(dir);
    assert_same(&snapshot(dir), damaged, &format!("{name}: verify changed the directory"));
    let stat = LogDir::open(real(), dir).unwrap().stat().unwrap();
    assert_same(&snapshot(dir), damaged, &format!("{name}: stat changed the directory"));
    if inspection.worst() != Some(Severity::Damage) {
        assert_eq!(stat.end_offset, inspection.end_offset, "{name}: stat and verify disagree");
    }

    match Log::open(real(), dir, verifying()) {
        Err(Error::Corruption { file, position, kind }) => {
            assert_eq!(
                inspection.worst(),
                Some(Severity::Damage),
                "{name}: open failed ({kind}), verify: {inspection:#?}"
            );
            let found = inspection.findings.iter().any(|f| {
                f.file == file && f.position == position && f.problem == Problem::Data(kind.clone())
            });
            assert!(
                found,
                "{name}: open's corruption {file:?}@{position} {kind} not among {:#?}",
                inspection.findings
            );
        }
        Err(other) => panic!("{name}: open failed with {other}"),
        Ok(log) => {
            assert_ne!(
                inspection.worst(),
                Some(Severity::Damage),
                "{name}: open succeeded, verify: {inspection:#?}"
            );
            assert_eq!(inspection.end_offset, log.end_offset(), "{name}: end offsets differ");
            if let Some(cut) = &log.recovery_report().tail_cut {
                let torn = inspection.findings.iter().any(|f| {
                    matches!(f.problem, Problem::TornTail { .. })
                        && (f.file == cut.file && f.position == cut.position || f.position == 0)
                });
                assert!(torn, "{name}: open cut {cut:?}, verify found {:#?}", inspection.findings);
            }
            log.close().unwrap();
        }
    }
    restore(dir, damaged);
    check_repair(name, dir, damaged, all, &inspection);
    inspection
}

fn check_repair(
    name: &str,
    dir: &Path,
    damaged: &BTreeMap<String, Vec<u8>>,
    all: &[Rec],
    inspection: &Inspection,
) {
    let save = dir.with_extension("saved");
    let _ = fs::remove_dir_all(&save);
    let repair = Repair::prepare(real(), dir, &mut |_| {}).unwrap();
    let plan = repair.plan().clone();
    assert_same(&snapshot(dir), damaged, &format!("{name}: prepare changed the log"));
    let report = repair.apply(&save).unwrap();
    // Every byte removed was saved.
    if let Some((file, position)) = &plan.cut {
        let file_name = file.file_name().unwrap().to_str().unwrap();
        let saved = fs::read(save.join(format!("{file_name}.cut-at-{position}"))).unwrap();
        assert_eq!(saved, damaged[file_name][*position as usize..], "{name}: cut bytes not saved");
    }
    for path in plan.removed_segments.iter().chain(&plan.removed_indexes) {
        let file_name = path.file_name().unwrap().to_str().unwrap();
        assert_eq!(
            fs::read(save.join(file_name)).unwrap(),
            damaged[file_name],
            "{name}: {file_name} not saved"
        );
    }
    assert_eq!(
        report.saved.len(),
        plan.removed_segments.len() + plan.removed_indexes.len() + usize::from(plan.cut.is_some())
    );
    // The repaired log opens, verifying everything, with nothing more to cut, and holds exactly
    // the records before the first damage.
    let log =
        Log::open(real(), dir, verifying()).unwrap_or_else(|e| panic!("{name}: repaired log fails: {e}"));
    assert!(log.recovery_report().tail_cut.is_none(), "{name}: {:?}", log.recovery_report());
    let end = log.end_offset();
    assert_eq!(end, plan.end_offset_after, "{name}: plan said {}", plan.end_offset_after);
    assert_eq!(end, report.end_offset);
    if inspection.worst().is_none() {
        assert!(plan.is_empty(), "{name}: a clean log was changed: {plan:?}");
    }
    let records = read_from(&log, log.start_offset());
    let start = log.start_offset() as usize;
    assert_eq!(records.len(), end as usize - start, "{name}");
    for (record, expected) in records.iter().zip(&all[start..]) {
        assert!(expected.matches(record), "{name}: record {} differs", record.offset);
    }
    log.close().unwrap();
    drop(log);
    assert_eq!(verify(dir).findings, [], "{name}: repaired log still has findings");
    fs::remove_dir_all(&save).ok();
}

#[test]
fn verify_and_repair_agree_with_recovery_on_every_kind_of_damage() {
    let temp = TempDir::new("inspect");
    let dir = temp.path.join("log");
    let all = write_log(&dir);
    let original = snapshot(&dir);
    let mut seen = BTreeMap::<&str, usize>::new();
    for (name, surgery) in surgeries(&original) {
        let mut damaged = original.clone();
        surgery(&mut damaged);
        let inspection = check_case(&name, &dir, &damaged, &all);
        let worst = match inspection.worst() {
            None => "clean",
            Some(Severity::Recoverable) => "recoverable",
            Some(Severity::Damage) => "damage",
        };
        *seen.entry(worst).or_default() += 1;
    }
    // The cases cover clean, recoverable and damaged logs.
    assert!(seen.len() == 3, "{seen:?}");
}

#[test]
fn repair_survives_a_crash_at_every_step() {
    let points = common::repair::repair_crash_sweep(6).unwrap();
    assert!(points > 10, "only {points} points");
}

#[test]
fn verify_of_a_clean_log_reports_its_shape() {
    let temp = TempDir::new("inspect-shape");
    let dir = temp.path.join("log");
    let all = write_log(&dir);
    let inspection = verify(&dir);
    assert_eq!(inspection.findings, []);
    assert_eq!(inspection.end_offset, all.len() as u64);
    assert_eq!(inspection.records(), all.len() as u64);
    let tombstones = all.iter().filter(|r| r.value.is_none()).count() as u64;
    assert_eq!(inspection.segments.iter().map(|s| s.tombstones).sum::<u64>(), tombstones);
    assert!(inspection.segments.iter().all(|s| s.scanned));
    assert_eq!(inspection.dirty_ratio(), 1.0);
    assert_eq!(inspection.last_compaction_ms(), None);
    // stat trusts the index headers of the sealed segments and agrees.
    let stat = LogDir::open(real(), &dir).unwrap().stat().unwrap();
    assert!(stat.segments.iter().rev().skip(1).all(|s| !s.scanned) && stat.segments.last().unwrap().scanned);
    assert_eq!(
        (stat.records(), stat.end_offset, stat.bytes()),
        (inspection.records(), inspection.end_offset, inspection.bytes())
    );
}

#[test]
fn records_are_listed_from_any_offset_read_only() {
    let temp = TempDir::new("inspect-records");
    let dir = temp.path.join("log");
    let all = write_log(&dir);
    let before = snapshot(&dir);
    let log_dir = LogDir::open(real(), &dir).unwrap();
    for from in [0, 1, 17, all.len() as u64 / 2, all.len() as u64 - 1, all.len() as u64, all.len() as u64 + 5]
    {
        let mut seen = Vec::new();
        let stop = log_dir
            .for_each_record(from, &mut |r| {
                seen.push((r.record.offset, r.record.key.to_vec(), r.record.value.map(<[u8]>::to_vec)));
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(stop, None);
        let expected: Vec<_> = all
            .iter()
            .enumerate()
            .skip(from as usize)
            .map(|(i, r)| (i as u64, r.key.clone(), r.value.clone()))
            .collect();
        assert_eq!(seen, expected, "from {from}");
    }
    let mut first_three = 0;
    log_dir
        .for_each_record(5, &mut |_| {
            first_three += 1;
            if first_three == 3 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
        })
        .unwrap();
    assert_eq!(first_three, 3);
    assert_same(&snapshot(&dir), &before, "listing records changed the log");
}

#[test]
fn records_stop_at_damage_with_its_place() {
    let temp = TempDir::new("inspect-records-damage");
    let dir = temp.path.join("log");
    write_log(&dir);
    let mut files = snapshot(&dir);
    let middle = bases(&files)[2];
    files.get_mut(&log_name(middle)).unwrap()[100] ^= 4;
    restore(&dir, &files);
    let mut last = None;
    let stop = LogDir::open(real(), &dir)
        .unwrap()
        .for_each_record(0, &mut |r| {
            last = Some(r.record.offset);
            ControlFlow::Continue(())
        })
        .unwrap()
        .expect("the records stop at the damage");
    assert_eq!(stop.severity, Severity::Damage);
    assert_eq!(stop.file, dir.join(log_name(middle)));
    assert!(matches!(stop.problem, Problem::Data(CorruptionKind::Checksum { .. })), "{stop}");
    assert!(last.unwrap() < middle + 10);
}

#[test]
fn an_empty_directory_is_not_a_log() {
    let temp = TempDir::new("inspect-empty");
    assert!(matches!(LogDir::open(real(), &temp.path), Err(Error::NotALog { .. })));
    assert!(matches!(LogDir::open(real(), temp.path.join("missing")), Err(Error::Io { .. })));
}

#[test]
fn repair_refuses_a_log_open_elsewhere() {
    let temp = TempDir::new("inspect-locked");
    let dir = temp.path.join("log");
    write_log(&dir);
    let log = Log::open(real(), &dir, small_options()).unwrap();
    assert!(matches!(Repair::prepare(real(), &dir, &mut |_| {}), Err(Error::Locked { .. })));
    // Inspection takes no lock.
    assert_eq!(verify(&dir).findings, []);
    drop(log);
}

#[test]
fn repair_refuses_an_existing_save_directory_before_changing_anything() {
    let temp = TempDir::new("inspect-save-exists");
    let dir = temp.path.join("log");
    write_log(&dir);
    let mut files = snapshot(&dir);
    let last = *bases(&files).last().unwrap();
    files.get_mut(&log_name(last)).unwrap().extend([9u8; 40]);
    restore(&dir, &files);
    let save: PathBuf = temp.path.join("saved");
    fs::create_dir_all(&save).unwrap();
    let repair = Repair::prepare(real(), &dir, &mut |_| {}).unwrap();
    assert!(!repair.plan().is_empty());
    assert!(repair.apply(&save).is_err());
    files.insert("LOCK".into(), Vec::new());
    assert_same(&snapshot(&dir), &files, "a failed repair changed the log");
}
