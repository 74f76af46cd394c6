//! Probes shared by the behaviour tests (real code: they pass) and the mutant tests (a
//! deliberate bug on: they must fail). Each panics on a violation.

use std::sync::Arc;

use cairn_fs::{Fs, SimFs};
use cairn_store::Store;

use super::{Op, check, small_options};

/// A snapshot taken while its segment is active, a compaction that rewrites that segment, and a
/// roll-back that makes the rewrite active again: the snapshot's locations must be relocated
/// (found once by the model test).
pub fn roll_back_after_a_compaction_that_reactivated_the_snapshot_segment() {
    let ops = vec![
        Op::Put(b"a".to_vec(), Vec::new()),
        Op::Snapshot,
        Op::Compact(705379994781685939),
        Op::Put(b"a".to_vec(), Vec::new()),
        Op::ReopenAt(0),
    ];
    check(&ops, &small_options());
}

/// Equal-sized one-record batches put the k-th record of every segment at the same position,
/// so only the segment tells two cached values apart.
pub fn value_cache_tells_apart_equal_positions_in_different_segments() {
    let fs: Arc<dyn Fs> = Arc::new(SimFs::new(5));
    let mut options = small_options();
    options.value_cache_bytes = 1 << 20;
    let mut store = Store::open(fs, "/s", options).unwrap();
    let n = 200u32;
    for i in 0..n {
        store.put(format!("k{i:05}").as_bytes(), format!("v{i:05}").as_bytes()).unwrap();
        store.flush().unwrap();
    }
    store.sync().unwrap();
    assert!(store.changelog().segment_set().infos().len() > 2, "the probe needs several segments");
    for _ in 0..2 {
        for i in 0..n {
            let got = store.get(format!("k{i:05}").as_bytes()).unwrap();
            assert_eq!(got.as_deref(), Some(format!("v{i:05}").as_bytes()), "key {i}");
        }
    }
}
