//! Proof that the store's tests can fail: each test switches on one deliberate bug (a
//! "mutant", see `cairn_store::mutants`) and expects the probe that guards against it to fail.
//! The same probes pass on the real code in `model.rs`, `behaviour.rs` and `crash.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod common;

use cairn_store::mutants;
use proptest::test_runner::{Config, TestRunner};

/// Runs `probe` with the named mutant on; returns whether it failed (panicked or erred).
fn fails_with_mutant(name: &'static str, probe: impl FnOnce() -> Result<(), String>) -> bool {
    let _serial = mutants::exclusive();
    mutants::set(Some(name));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(probe));
    mutants::set(None);
    match result {
        Ok(Ok(())) => false,
        Ok(Err(violation)) => {
            eprintln!("{name} caught: {}", violation.lines().next().unwrap_or_default());
            true
        }
        Err(_) => {
            eprintln!("{name} caught by a panic");
            true
        }
    }
}

/// The model property test (the same strategy as `model.rs`), with a fixed seed.
fn model_test() -> Result<(), String> {
    let mut runner = TestRunner::new_with_rng(
        Config { cases: 96, failure_persistence: None, ..Config::default() },
        proptest::test_runner::TestRng::deterministic_rng(proptest::test_runner::RngAlgorithm::ChaCha),
    );
    runner
        .run(&common::strategy::ops(120), |ops| {
            common::check(&ops, &common::small_options());
            Ok(())
        })
        .map_err(|e| e.to_string())
}

#[test]
fn a_follower_that_drops_moves_fails_the_model_test() {
    assert!(fails_with_mutant(mutants::FOLLOWER_DROPS_MOVES, model_test));
}

#[test]
fn a_cache_that_ignores_the_segment_fails_its_probe() {
    assert!(fails_with_mutant(mutants::CACHE_IGNORES_SEGMENT, || {
        common::probes::value_cache_tells_apart_equal_positions_in_different_segments();
        Ok(())
    }));
}

#[test]
fn snapshots_that_ignore_the_first_batch_fail_the_roll_back_probe() {
    assert!(fails_with_mutant(mutants::SNAPSHOT_IGNORES_FIRST_BATCH, || {
        common::probes::roll_back_after_a_compaction_that_reactivated_the_snapshot_segment();
        Ok(())
    }));
}

#[test]
fn directories_created_without_sync_fail_the_crash_sweep() {
    assert!(fails_with_mutant(mutants::STORE_DIR_NOT_DURABLE, || {
        common::sweep::sweep().map(|_| ()).map_err(|failures| failures.join("\n"))
    }));
}

#[test]
fn every_mutant_has_a_test_here() {
    let source = include_str!("mutants.rs");
    for name in mutants::ALL {
        let constant = name.to_uppercase();
        assert!(source.contains(&format!("mutants::{constant}")), "no test switches on {name}");
    }
}
