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
use common::{Rec, TempDir, index_name, log_name, read_from, small_options, snapshot};

fn real() -> Arc<RealFs> {
    Arc::new(RealFs::new())
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

fn file_len(files: &BTreeMap<String, Vec<u8>>, path: &Path) -> u64 {
    files[path.file_name().unwrap().to_str().unwrap()].len() as u64
}

/// The end positions of the batches of a segment file (docs/format.md: length at byte 8).
fn batch_ends(bytes: &[u8]) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut at = 0;
    while at + 12 <= bytes.len() {
        at += u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        ends.push(at);
    }
    ends
}

/// A compaction commit record (docs/format.md, "Compaction commit record").
fn swap_record(old: &[u64], new: &[u64]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0x5C0A_C7EDu32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(old.len() as u32).to_le_bytes());
    out.extend_from_slice(&(new.len() as u32).to_le_bytes());
    for base in old.iter().chain(new) {
        out.extend_from_slice(&base.to_le_bytes());
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
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

/// The damage cases; `compacted` is the same log after one compaction pass.
fn surgeries(
    files: &BTreeMap<String, Vec<u8>>,
    compacted: &BTreeMap<String, Vec<u8>>,
) -> Vec<(String, Surgery)> {
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
    let tail_bases = bases[bases.len() - 3..].to_vec();
    cases.push((
        "tail window of three segments, bit flipped in its first".into(),
        Box::new(move |f| {
            for base in &tail_bases {
                f.remove(&index_name(*base));
            }
            f.get_mut(&log_name(tail)).unwrap()[700] ^= 0x01;
        }),
    ));
    let unmarked = bases[bases.len() - 2];
    cases.push((
        "last sealed segment not yet marked (a normal crash state)".into(),
        Box::new(move |f| {
            f.remove(&index_name(unmarked));
        }),
    ));
    // The first tail segment lost its unflushed end at a batch boundary: the next one starts
    // after its end, where the log ends.
    let boundary = batch_ends(&files[&log_name(tail)]);
    let boundary = boundary[boundary.len() / 2];
    let tail_bases = bases[bases.len() - 3..].to_vec();
    cases.push((
        "tail window with a gap after its first segment".into(),
        Box::new(move |f| {
            for base in &tail_bases {
                f.remove(&index_name(*base));
            }
            f.get_mut(&log_name(tail)).unwrap().truncate(boundary);
        }),
    ));
    // A committed compaction pass whose segments are not installed yet: its output under
    // `.compacting` names and its commit record beside the old segments.
    let old: Vec<u64> =
        bases.iter().copied().filter(|b| files.get(&log_name(*b)) != compacted.get(&log_name(*b))).collect();
    let compacted_bases = self::bases(compacted);
    let new: Vec<u64> = compacted_bases
        .iter()
        .copied()
        .filter(|b| files.get(&log_name(*b)) != compacted.get(&log_name(*b)))
        .collect();
    assert!(!old.is_empty() && !new.is_empty(), "the compaction pass changed nothing");
    let install = {
        let compacted = compacted.clone();
        let (old, new) = (old.clone(), new.clone());
        move |f: &mut BTreeMap<String, Vec<u8>>| {
            for base in &new {
                for name in [log_name(*base), index_name(*base)] {
                    f.insert(format!("{name}.compacting"), compacted[&name].clone());
                }
            }
            f.insert("compaction.swap".into(), swap_record(&old, &new));
        }
    };
    let committed = install.clone();
    cases.push(("committed compaction not installed".into(), Box::new(move |f| committed(f))));
    cases.push((
        "damaged compaction record".into(),
        Box::new(move |f| {
            install(f);
            f.get_mut("compaction.swap").unwrap()[9] ^= 0x04;
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
                f.file == file
                    && f.position == position
                    && (f.problem == Problem::Data(kind.clone())
                        || f.problem == Problem::SwapRecord(kind.clone()))
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
            let report = log.recovery_report();
            if let Some(cut) = &report.tail_cut {
                // The tear inside the cut file, or a segment starting after its end (a gap).
                let torn = inspection.findings.iter().any(|f| {
                    matches!(f.problem, Problem::TornTail { .. })
                        && ((f.file == cut.file && f.position == cut.position)
                            || (f.position == 0
                                && f.file > cut.file
                                && cut.position == file_len(damaged, &cut.file)))
                });
                assert!(torn, "{name}: open cut {cut:?}, verify found {:#?}", inspection.findings);
            }
            if inspection.findings.is_empty() {
                assert!(
                    report.tail_cut.is_none()
                        && report.temp_files_removed == 0
                        && !report.compaction_completed,
                    "{name}: verify found nothing, opening changed something: {report:?}"
                );
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
    // Every byte the directory lost was saved: each file of the damaged log is still there, or
    // was cut and its tail saved, or is saved whole (index files are rewritten by the open). A
    // committed compaction is finished as opening does (its replaced segments are not saved).
    let repaired = snapshot(dir);
    let saved = if save.exists() { snapshot(&save) } else { BTreeMap::new() };
    let finishing_compaction = inspection.findings.iter().any(|f| f.problem == Problem::UnfinishedCompaction);
    for (file_name, bytes) in damaged.iter().filter(|_| !finishing_compaction) {
        let kept = repaired.get(file_name);
        let cut_at = kept.map_or(0, Vec::len);
        let intact = kept == Some(bytes);
        let cut = kept.is_some_and(|k| bytes.starts_with(k))
            && saved
                .get(&format!("{file_name}.cut-at-{cut_at}"))
                .is_some_and(|tail| tail[..] == bytes[cut_at..]);
        let saved_whole = saved.get(file_name) == Some(bytes);
        assert!(intact || cut || saved_whole, "{name}: {file_name} lost bytes the repair did not save");
    }
    let listed = plan.removed_segments.len()
        + plan.removed_indexes.len()
        + plan.leftovers.len()
        + usize::from(plan.removed_swap_record.is_some())
        + usize::from(plan.cut.is_some());
    assert_eq!(report.saved.len(), listed, "{name}");
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
    if !finishing_compaction {
        assert_eq!(records.len(), end as usize - start, "{name}");
    }
    assert!(records.windows(2).all(|w| w[0].offset < w[1].offset), "{name}");
    for record in &records {
        assert!(all[record.offset as usize].matches(record), "{name}: record {} differs", record.offset);
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
    let compacted = {
        let log = Log::open(real(), &dir, small_options()).unwrap();
        let report = log.compact(log.end_offset(), &cairn_changelog::CompactOptions::default()).unwrap();
        assert!(report.segments_written > 0, "{report:?}");
        log.close().unwrap();
        drop(log);
        let compacted = snapshot(&dir);
        restore(&dir, &original);
        compacted
    };
    let mut seen = BTreeMap::<&str, usize>::new();
    for (name, surgery) in surgeries(&original, &compacted) {
        let mut damaged = original.clone();
        surgery(&mut damaged);
        let inspection = check_case(&name, &dir, &damaged, &all);
        let has = |wanted: fn(&Problem) -> bool| inspection.findings.iter().any(|f| wanted(&f.problem));
        let expected = match name.as_str() {
            "none" | "last sealed segment not yet marked (a normal crash state)" => {
                inspection.findings.is_empty()
            }
            "committed compaction not installed" => {
                has(|p| *p == Problem::UnfinishedCompaction)
                    && inspection.worst() == Some(Severity::Recoverable)
            }
            "damaged compaction record" => has(|p| matches!(p, Problem::SwapRecord(_))),
            "tail window with a gap after its first segment" => {
                has(|p| matches!(p, Problem::TornTail { kind: CorruptionKind::SegmentGap { .. }, .. }))
                    && inspection.worst() == Some(Severity::Recoverable)
            }
            "index of the middle segment garbage" => has(|p| *p == Problem::IndexDamaged),
            "index of the first segment missing" => has(|p| *p == Problem::IndexMissing),
            "leftover temp file" => has(|p| *p == Problem::Leftover),
            "middle segment missing" => {
                has(|p| matches!(p, Problem::Data(CorruptionKind::SegmentGap { .. })))
            }
            "last segment missing" => {
                has(|p| matches!(p, Problem::Data(CorruptionKind::SegmentMissing { .. })))
            }
            _ => true,
        };
        assert!(expected, "{name}: unexpected findings {:#?}", inspection.findings);
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
    use common::repair::{Damage, repair_crash_sweep};
    for damage in [Damage::FlipInMiddleSegment, Damage::MiddleSegmentMissing, Damage::LastSegmentMissing] {
        let points = repair_crash_sweep(damage, 6).unwrap_or_else(|e| panic!("{damage:?}: {e}"));
        assert!(points > 5, "{damage:?}: only {points} points");
    }
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
