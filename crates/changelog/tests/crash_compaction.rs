//! Power cuts during a compaction pass (DESIGN P7): at every file-system mutation of the pass,
//! several crash images each recover to the log before the pass or the log after it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod common;

#[test]
fn a_power_cut_anywhere_in_a_pass_leaves_the_old_log_or_the_new_one() {
    let checked = common::compact::compaction_crash_sweep(6).unwrap();
    eprintln!("{checked} crash images checked");
    eprintln!("sim-images: {checked}");
    assert!(checked > 100, "only {checked} crash images");
}

use std::path::Path;
use std::sync::Arc;

use cairn_changelog::{CompactOptions, Error, Log, Record};
use cairn_fs::{FaultRule, Fs, SimFs};
use common::{read_from, small_options};

/// A log with clean and dirty segments, ready for a pass.
fn prepared(fs: &SimFs) -> (Log, u64) {
    let log = Log::open(Arc::new(fs.clone()), "/log", small_options()).unwrap();
    let mut compact = CompactOptions::default();
    compact.roll_active_bytes_min = Some(0);
    for i in 0..400u32 {
        let key = format!("key-{}", i % 23);
        log.append(Record::new(key.as_bytes(), Some(format!("{i:0>60}").as_bytes()), 0)).unwrap();
    }
    let end = log.sync().unwrap();
    log.compact(end, &compact).unwrap();
    for i in 400..700u32 {
        let key = format!("key-{}", i % 31);
        let value = format!("{i:0>80}");
        log.append(Record::new(key.as_bytes(), (i % 9 != 0).then_some(value.as_bytes()), 0)).unwrap();
    }
    let end = log.sync().unwrap();
    (log, end)
}

fn leftovers(fs: &SimFs) -> Vec<String> {
    fs.list_dir(Path::new("/log"))
        .unwrap()
        .into_iter()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".compacting") || n.ends_with(".tmp") || n == "compaction.swap")
        .collect()
}

#[test]
fn a_failure_at_any_step_of_a_pass_leaves_a_usable_log_or_a_poisoned_one_that_reopens_right() {
    let mut compact = CompactOptions::default();
    compact.roll_active_bytes_min = Some(0);
    // What the pass leaves.
    let fs = SimFs::new(1);
    let (log, end) = prepared(&fs);
    let before = read_from(&log, 0);
    log.compact(end, &compact).unwrap();
    let after = read_from(&log, 0);
    assert_ne!(before, after);
    drop(log);

    // The n-th operation of the pass fails, for every n until the pass no longer meets a fault.
    let (mut usable, mut poisoned) = (0, 0);
    for n in 0.. {
        assert!(n < 10_000, "a pass that never ends");
        let fs = SimFs::new(1);
        let (log, end) = prepared(&fs);
        fs.inject(FaultRule::fail_nth_op(n));
        let result = log.compact(end, &compact);
        fs.clear_faults();
        match result {
            Ok(_) => {
                assert_eq!(read_from(&log, 0), after, "fault at op {n}: a pass that succeeded");
                break;
            }
            Err(e) if !log.is_poisoned() => {
                usable += 1;
                assert!(!matches!(e, Error::Poisoned { .. }), "fault at op {n}: {e}");
                assert_eq!(read_from(&log, 0), before, "fault at op {n}: a failed pass changed the log");
                assert!(leftovers(&fs).is_empty(), "fault at op {n}: left {:?}", leftovers(&fs));
                // Appends go on, and the next pass does the work.
                log.append(Record::new(b"after", Some(b"the failure"), 0)).unwrap();
                let end = log.sync().unwrap();
                log.compact(end - 1, &compact).unwrap();
                let mut want = after.clone();
                want.push(read_from(&log, end - 1).pop().unwrap());
                assert_eq!(read_from(&log, 0), want, "fault at op {n}: the retried pass");
            }
            Err(e) => {
                poisoned += 1;
                assert!(
                    log.append(Record::new(b"x", None, 0)).is_err(),
                    "fault at op {n}: poisoned log appends"
                );
                drop(log);
                let log = Log::open(Arc::new(fs.clone()), "/log", small_options())
                    .unwrap_or_else(|open| panic!("fault at op {n} ({e}): reopen failed: {open}"));
                let read = read_from(&log, 0);
                assert!(read == before || read == after, "fault at op {n} ({e}): neither old nor new log");
                assert!(leftovers(&fs).is_empty(), "fault at op {n}: left {:?}", leftovers(&fs));
            }
        }
    }
    eprintln!("{usable} failures left the log usable, {poisoned} poisoned it");
    assert!(usable > 10 && poisoned > 3, "{usable} usable, {poisoned} poisoned");
}

#[test]
fn no_space_while_writing_the_new_segments_is_retried_by_the_next_pass() {
    let fs = SimFs::new(2);
    let (log, end) = prepared(&fs);
    let before = read_from(&log, 0);
    let mut compact = CompactOptions::default();
    compact.roll_active_bytes_min = Some(0);
    let mut rule = FaultRule::no_space();
    rule.path_contains = Some(".compacting".into());
    fs.inject(rule);
    let error = log.compact(end, &compact).unwrap_err();
    assert!(
        matches!(&error, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull),
        "{error}"
    );
    assert!(!log.is_poisoned());
    assert_eq!(read_from(&log, 0), before);
    assert!(leftovers(&fs).is_empty());
    fs.clear_faults();
    let report = log.compact(end, &compact).unwrap();
    assert!(report.records_after < report.records_before);
}
