//! Property tests: random sequences of appends, batches, flushes, syncs, truncations, reopens
//! and reads against a model, on the simulator and on real files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod common;

use std::sync::Arc;

use cairn_changelog::LogOptions;
use cairn_fs::{RealFs, SimFs};
use common::{Op, Rec, TempDir, check, small_options};
use proptest::prelude::*;

fn rec() -> impl Strategy<Value = Rec> {
    (any::<u64>(), prop_oneof![Just(16usize), Just(200), Just(1500)])
        .prop_map(|(seed, max)| Rec::generate(seed, max))
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => rec().prop_map(Op::Append),
        10 => prop::collection::vec(rec(), 1..12).prop_map(Op::Batch),
        4 => Just(Op::Flush),
        6 => Just(Op::Sync),
        2 => (0u16..=1000).prop_map(Op::Truncate),
        2 => Just(Op::Reopen),
        3 => (0u16..=1000).prop_map(Op::Read),
    ]
}

fn options() -> impl Strategy<Value = LogOptions> {
    (prop_oneof![Just(0usize), Just(512), Just(64 << 10)], prop_oneof![Just(4096u64), Just(16384)]).prop_map(
        |(buffer, segment)| {
            let mut options = small_options();
            options.write_buffer_bytes = buffer;
            options.segment_bytes_max = segment;
            options
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn log_matches_model_on_simulator(options in options(), ops in prop::collection::vec(op(), 1..120)) {
        let fs = Arc::new(SimFs::new(0));
        check(fs, "/log".as_ref(), &options, &ops);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn log_matches_model_on_real_files(options in options(), ops in prop::collection::vec(op(), 1..80)) {
        let dir = TempDir::new("model");
        check(Arc::new(RealFs::new()), &dir.path.join("log"), &options, &ops);
    }
}
