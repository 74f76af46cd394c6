//! Proof that the runtime's crash sweep can fail: with the commit order broken (the checkpoint
//! written before the changelogs are fsynced), some crash image must fail to recover exactly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod common;

use cairn_task::mutants;

#[test]
fn a_checkpoint_written_before_the_changelog_sync_fails_the_crash_sweep() {
    let _serial = mutants::exclusive();
    mutants::set(Some(mutants::CHECKPOINT_BEFORE_CHANGELOG_SYNC));
    let result = std::panic::catch_unwind(|| common::crash_sweep(60, 7, 2, common::Points::Syncs));
    mutants::set(None);
    let failures = result.unwrap().expect_err("the crash sweep passed with the commit order broken");
    eprintln!("caught in {} images, first: {}", failures.len(), failures[0]);
}

#[test]
fn every_mutant_has_a_test_here() {
    let source = include_str!("mutants.rs");
    for name in mutants::ALL {
        assert!(source.contains(&format!("mutants::{}", name.to_uppercase())), "no test switches on {name}");
    }
}
