//! What the store's tests share: a model of the store and a checker that drives both.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::sync::Arc;

use cairn_changelog::CompactOptions;
use cairn_fs::{Fs, SimFs};
use cairn_store::{Store, StoreOptions};

pub mod probes;
pub mod strategy;
pub mod sweep;

pub type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// One step of a workload.
#[derive(Clone, Debug)]
pub enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    PutAll(Vec<(Vec<u8>, Vec<u8>)>),
    DeleteAll(Vec<Vec<u8>>),
    Get(Vec<u8>),
    Range(Vec<u8>, Vec<u8>),
    Flush,
    Sync,
    /// Compact below the n-th recorded flush point (modulo their number).
    Compact(usize),
    Snapshot,
    /// Close and open again.
    Reopen,
    /// Reopen at the n-th recorded flush point at or above the compaction limit.
    ReopenAt(usize),
    /// A view now, checked against the model after `n` more writes.
    ViewThenWrites(u8),
}

/// Small segments and buffers, so that rolls, compactions and automatic flushes happen.
pub fn small_options() -> StoreOptions {
    let mut options = StoreOptions::default();
    options.log.segment_bytes_max = 4096;
    options.log.write_buffer_bytes = 512;
    options.write_buffer_bytes = 700;
    options.key_bytes_max = 64;
    options.value_bytes_max = 256;
    options
}

/// Applies `op` to the model.
pub fn apply(model: &mut Model, op: &Op) {
    match op {
        Op::Put(k, v) => {
            model.insert(k.clone(), v.clone());
        }
        Op::Delete(k) => {
            model.remove(k);
        }
        Op::PutAll(entries) => {
            for (k, v) in entries {
                model.insert(k.clone(), v.clone());
            }
        }
        Op::DeleteAll(keys) => {
            for k in keys {
                model.remove(k);
            }
        }
        _ => {}
    }
}

/// Writes `op` to the store, if it is a write.
pub fn write(store: &mut Store, op: &Op) {
    match op {
        Op::Put(k, v) => store.put(k, v).unwrap(),
        Op::Delete(k) => store.delete(k).unwrap(),
        Op::PutAll(entries) => store.put_all(entries).unwrap(),
        Op::DeleteAll(keys) => store.delete_all(keys).unwrap(),
        _ => {}
    }
}

/// Every entry of the store, in order.
pub fn contents(store: &Store) -> Model {
    store.iter().unwrap().map(|e| e.unwrap()).collect()
}

/// Runs `ops` against a store on a fresh `SimFs` and against the model, checking every read
/// and the whole contents after every reopen.
pub fn check(ops: &[Op], options: &StoreOptions) {
    let fs: Arc<dyn Fs> = Arc::new(SimFs::new(11));
    let dir = "/store";
    let mut store = Store::open(Arc::clone(&fs), dir, options.clone()).unwrap();
    let mut model = Model::new();
    // (changelog end, model) at every explicit flush.
    let mut points: Vec<(u64, Model)> = vec![(0, Model::new())];
    let mut compacted_below = 0u64;
    for (step, op) in ops.iter().enumerate() {
        let at = format!("step {step}: {op:?}");
        match op {
            Op::Get(k) => assert_eq!(store.get(k).unwrap(), model.get(k).cloned(), "{at}"),
            Op::Range(a, b) => {
                let (from, to) = if a <= b { (a, b) } else { (b, a) };
                let got: Model = store.range(from, to).unwrap().map(|e| e.unwrap()).collect();
                let want: Model =
                    model.range(from.clone()..to.clone()).map(|(k, v)| (k.clone(), v.clone())).collect();
                assert_eq!(got, want, "{at}");
                if a > b {
                    assert!(matches!(store.range(a, b), Err(cairn_store::Error::InvalidRange)), "{at}");
                }
            }
            Op::Flush | Op::Sync => {
                let end =
                    if matches!(op, Op::Flush) { store.flush().unwrap() } else { store.sync().unwrap() };
                if points.last().is_some_and(|(e, _)| *e == end) {
                    points.pop();
                }
                points.push((end, model.clone()));
            }
            Op::Compact(n) => {
                let (limit, _) = &points[n % points.len()];
                let limit = (*limit).max(compacted_below);
                store.sync().unwrap();
                let mut compact = CompactOptions::default();
                // Seal and compact the active segment too, so that passes move records often.
                compact.roll_active_bytes_min = Some(1);
                store.compact(limit, &compact).unwrap();
                compacted_below = limit;
            }
            Op::Snapshot => {
                let info = store.write_snapshot().unwrap();
                if points.last().is_some_and(|(e, _)| *e == info.offset) {
                    points.pop();
                }
                points.push((info.offset, model.clone()));
            }
            Op::Reopen => {
                store.close().unwrap();
                store = Store::open(Arc::clone(&fs), dir, options.clone()).unwrap();
                assert_eq!(contents(&store), model, "{at}");
            }
            Op::ReopenAt(n) => {
                store.sync().unwrap();
                let allowed: Vec<&(u64, Model)> =
                    points.iter().filter(|(e, _)| *e >= compacted_below).collect();
                let (end, state) = allowed[n % allowed.len()].clone();
                drop(store);
                store = Store::open_at(Arc::clone(&fs), dir, options.clone(), end).unwrap();
                model = state;
                points.retain(|(e, _)| *e <= end);
                assert_eq!(store.end_offset(), end, "{at}");
                assert_eq!(contents(&store), model, "{at}: {:?}", store.restore_report());
            }
            Op::ViewThenWrites(n) => {
                let view = store.view().unwrap();
                let before = model.clone();
                for i in 0..*n {
                    let w = Op::Put(vec![b'a' + (i % 5)], vec![i; 3]);
                    write(&mut store, &w);
                    apply(&mut model, &w);
                }
                let seen: Model = view.iter().map(|e| e.unwrap()).collect();
                assert_eq!(seen, before, "{at}");
            }
            write_op => {
                write(&mut store, write_op);
                apply(&mut model, write_op);
            }
        }
    }
    assert_eq!(contents(&store), model);
    store.close().unwrap();
    let store = Store::open(Arc::clone(&fs), dir, options.clone()).unwrap();
    assert_eq!(contents(&store), model, "after the final reopen: {:?}", store.restore_report());
}
