//! Power cuts during a compaction pass (DESIGN P7): at every file-system mutation of the pass,
//! several crash images each recover to the log before the pass or the log after it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod common;

#[test]
fn a_power_cut_anywhere_in_a_pass_leaves_the_old_log_or_the_new_one() {
    let checked = common::compact::compaction_crash_sweep(6).unwrap();
    eprintln!("{checked} crash images checked");
    assert!(checked > 100, "only {checked} crash images");
}
