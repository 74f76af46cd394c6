//! The model test's workload strategy, shared with the mutant tests.

use proptest::prelude::*;

use super::Op;

pub fn key() -> impl Strategy<Value = Vec<u8>> {
    // Few keys, so that they are overwritten, deleted and compacted; some longer.
    prop_oneof![
        4 => (0u8..12).prop_map(|k| vec![b'a' + k]),
        1 => (0u8..12, 1usize..40).prop_map(|(k, n)| vec![b'a' + k; n]),
    ]
}

pub fn value() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..120)
}

pub fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (key(), value()).prop_map(|(k, v)| Op::Put(k, v)),
        3 => key().prop_map(Op::Delete),
        2 => prop::collection::vec((key(), value()), 1..6).prop_map(Op::PutAll),
        1 => prop::collection::vec(key(), 1..4).prop_map(Op::DeleteAll),
        4 => key().prop_map(Op::Get),
        2 => (key(), key()).prop_map(|(a, b)| Op::Range(a, b)),
        2 => Just(Op::Flush),
        1 => Just(Op::Sync),
        1 => any::<usize>().prop_map(Op::Compact),
        1 => Just(Op::Snapshot),
        1 => Just(Op::Reopen),
        1 => any::<usize>().prop_map(Op::ReopenAt),
        1 => (0u8..6).prop_map(Op::ViewThenWrites),
    ]
}

/// Workloads of up to `len` steps.
pub fn ops(len: usize) -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(), 1..len)
}
