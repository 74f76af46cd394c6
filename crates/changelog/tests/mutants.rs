//! Proof that the crash tests can fail: each test switches on one deliberate bug (a "mutant",
//! see `cairn_changelog::mutants`) and expects the probe that guards against it to report a
//! violation. The same probes pass on the real code in `crash.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod common;

use cairn_changelog::mutants;
use common::compact::{colliding_keys_survive, compaction_crash_sweep};
use common::sweep::sweep;
use common::{
    concurrent_sync_waits_for_a_covering_fsync, cut_tail_stays_cut, first_record_in_new_segment_survives,
};

/// Runs `probe` with the named mutant on and returns its verdict.
fn with_mutant<T>(name: &'static str, probe: impl FnOnce() -> T) -> T {
    let _serial = mutants::exclusive();
    mutants::set(Some(name));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(probe));
    mutants::set(None);
    match result {
        Ok(verdict) => verdict,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

#[test]
fn new_segment_without_directory_sync_is_caught_by_the_crash_sweep() {
    // A sync after the roll fsyncs the directory too (for the markers it writes), so acknowledged
    // records survive without the roll's own directory sync; what breaks is the order in which
    // segment names become durable: a crash can keep a sealed segment's marker and lose the name
    // of the segment after it, which recovery must then report as a missing segment.
    let verdict = with_mutant(mutants::NEW_SEGMENT_SKIPS_DIR_SYNC, || sweep(20_000));
    let violation = verdict.expect_err("the crash sweep passed with the roll's directory sync removed");
    assert!(violation.contains("open failed"), "{violation}");
    eprintln!("caught: {violation}");
}

#[test]
fn a_new_segment_without_any_directory_sync_is_caught_by_the_new_segment_probe() {
    let verdict = with_mutant(mutants::NO_DIR_SYNC_ON_APPEND_PATH, first_record_in_new_segment_survives);
    let violation = verdict.expect_err("the probe passed with no directory sync for the new segment");
    assert!(violation.contains("lost acknowledged records"), "{violation}");
}

/// Every mutant has a test that requires it to be caught: here, or (for the loom ones) in
/// `cargo xtask loom`, whose table names them.
#[test]
fn every_mutant_is_checked_somewhere() {
    let here = [
        mutants::NEW_SEGMENT_SKIPS_DIR_SYNC,
        mutants::NO_DIR_SYNC_ON_APPEND_PATH,
        mutants::OPEN_SKIPS_TAIL_CUT,
        mutants::ACK_WITHOUT_SYNC,
        mutants::KEY_MAP_HASH_ONLY,
        mutants::COMPACTION_SKIPS_OUTPUT_SYNC,
        mutants::COMPACTION_REMOVES_BEFORE_COMMIT,
        mutants::OPEN_IGNORES_SWAP_RECORD,
        mutants::REPAIR_REMOVES_BEFORE_SAVED,
    ];
    let in_loom = [
        mutants::PUBLISH_RELAXED,
        mutants::WAKE_ONE,
        mutants::ACK_WITHOUT_SYNC,
        mutants::SWAP_IN_TWO_STEPS,
        mutants::END_BEFORE_WRITE,
        mutants::DURABLE_BEFORE_FSYNC,
        mutants::POISON_CHECK_BEFORE_LOCK,
        mutants::CLOSE_SKIPS_FINAL_SYNC,
        mutants::STOP_WITHOUT_LOCK,
        mutants::MARK_BEFORE_INDEX,
    ];
    for name in mutants::ALL {
        assert!(here.contains(name) || in_loom.contains(name), "mutant {name} is never checked");
    }
}

#[test]
fn a_repair_removing_bytes_before_its_copies_are_durable_is_caught_by_the_repair_sweep() {
    let verdict = with_mutant(mutants::REPAIR_REMOVES_BEFORE_SAVED, || {
        common::repair::repair_crash_sweep(common::repair::Damage::FlipInMiddleSegment, 6)
    });
    let violation = verdict.expect_err("the repair sweep passed with the copies' fsyncs removed");
    assert!(violation.contains("removed but not saved"), "{violation}");
}

#[test]
fn recovery_without_the_tail_cut_is_caught_by_the_resurrection_probe() {
    let verdict = with_mutant(mutants::OPEN_SKIPS_TAIL_CUT, cut_tail_stays_cut);
    let violation = verdict.expect_err("the probe passed with the tail cut removed");
    assert!(violation.contains("phantom"), "{violation}");
}

#[test]
fn acknowledgement_without_fsync_is_caught_by_the_group_commit_probe() {
    let verdict = with_mutant(mutants::ACK_WITHOUT_SYNC, concurrent_sync_waits_for_a_covering_fsync);
    verdict.expect_err("the probe passed with acknowledgements before the fsync");
}

#[test]
fn a_key_map_that_trusts_hashes_is_caught_by_the_collision_probe() {
    let verdict = with_mutant(mutants::KEY_MAP_HASH_ONLY, colliding_keys_survive);
    let violation = verdict.expect_err("the collision probe passed with a hash-only key map");
    assert!(violation.contains("lost records") || violation.contains("twice"), "{violation}");
}

#[test]
fn compaction_output_without_fsync_is_caught_by_the_compaction_sweep() {
    let verdict = with_mutant(mutants::COMPACTION_SKIPS_OUTPUT_SYNC, || compaction_crash_sweep(6));
    let violation = verdict.expect_err("the compaction sweep passed with unsynced output");
    eprintln!("caught: {violation}");
}

#[test]
fn removing_old_segments_before_the_commit_is_caught_by_the_compaction_sweep() {
    let verdict = with_mutant(mutants::COMPACTION_REMOVES_BEFORE_COMMIT, || compaction_crash_sweep(6));
    let violation = verdict.expect_err("the compaction sweep passed with removals before the commit");
    eprintln!("caught: {violation}");
}

#[test]
fn recovery_that_ignores_the_commit_record_is_caught_by_the_compaction_sweep() {
    let verdict = with_mutant(mutants::OPEN_IGNORES_SWAP_RECORD, || compaction_crash_sweep(6));
    let violation = verdict.expect_err("the compaction sweep passed with the commit record ignored");
    eprintln!("caught: {violation}");
}

#[test]
fn probes_pass_without_mutants() {
    let _serial = mutants::exclusive();
    first_record_in_new_segment_survives().unwrap();
    cut_tail_stays_cut().unwrap();
    concurrent_sync_waits_for_a_covering_fsync().unwrap();
    colliding_keys_survive().unwrap();
    compaction_crash_sweep(2).unwrap();
}
