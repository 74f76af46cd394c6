//! The store against a BTreeMap model: random writes, batches, reads, ranges, flushes,
//! compactions, snapshots, reopens and roll-backs to earlier offsets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::strategy::ops;
use common::{check, small_options};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_the_model(ops in ops(120)) {
        check(&ops, &small_options());
    }

    #[test]
    fn store_matches_the_model_without_snapshots(ops in ops(80)) {
        let mut options = small_options();
        options.restore_from_snapshots = false;
        check(&ops, &options);
    }

    /// With a value cache small enough to evict: cached values must never outlive a change of
    /// the key's value, a compaction that moves it, or a roll-back that rewrites its segment.
    #[test]
    fn store_matches_the_model_with_a_value_cache(ops in ops(120)) {
        let mut options = small_options();
        options.value_cache_bytes = 16 * 8 * 300;
        check(&ops, &options);
    }
}
