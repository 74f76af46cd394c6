//! Store benchmarks, each beside a baseline measured in the same run. 16 B keys, 100 B values,
//! random key order; 1 M keys when benchmarking (20 k when `cargo test` runs the benches once).
//!
//! - `store/put_100B` (buffered puts, flushed into the changelog as the write buffer fills)
//!   against `store/raw_put_100B`: the same key and value bytes written with a `BufWriter`.
//! - `store/get_100B` (random gets of present keys, values read through the mapped segments)
//!   and `store/get_100B_cached` (the same, with a value cache holding every value) against
//!   `store/hashmap_get_100B`: a `HashMap<Vec<u8>, Vec<u8>>` holding every value.
//! - `store/range_100B` (every key once, through 1000 range scans in key order) against
//!   `store/btreemap_range_100B`: the same ranges of a `BTreeMap`, keys and values cloned as the
//!   store's iterator returns them owned.
//! - `store/restore_snapshot` and `store/restore_replay`: opening a store of 1 M keys after
//!   1.5 M puts, from its snapshot or by replaying the whole changelog, against
//!   `store/naive_replay_hashmap`: reading the same changelog into a `HashMap`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn::changelog::Log;
use cairn::fs::{Fs, RealFs};
use cairn::store::{RestoreSource, Store, StoreOptions};
use common::Scratch;
use criterion::{Criterion, Throughput, criterion_group};

fn benchmarking() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn keys_n() -> u64 {
    if benchmarking() { 1_000_000 } else { 20_000 }
}

/// The 16-byte key of `i`, in an order unrelated to `i`.
fn key(i: u64) -> [u8; 16] {
    let mut x = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&x.to_be_bytes());
    key[8..].copy_from_slice(&i.to_be_bytes());
    key
}

fn value(i: u64) -> [u8; 100] {
    let mut value = [b'v'; 100];
    value[..8].copy_from_slice(&i.to_le_bytes());
    value
}

fn fs() -> Arc<dyn Fs> {
    Arc::new(RealFs::new())
}

/// Puts of keys in a random order (a permutation of `0..n`).
fn order(n: u64) -> Vec<u64> {
    let mut order: Vec<u64> = (0..n).collect();
    order.sort_by_key(|i| key(*i));
    order
}

fn bench_put(c: &mut Criterion) {
    let n = keys_n();
    let order = order(n);
    let mut group = c.benchmark_group("store");
    group.sample_size(10).measurement_time(common::measurement_time(5)).throughput(Throughput::Elements(n));
    group.bench_function("put_100B", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let scratch = Scratch::new("store-put");
                let mut store = Store::open(fs(), &scratch.0, StoreOptions::default()).unwrap();
                let started = Instant::now();
                for &i in &order {
                    store.put(&key(i), &value(i)).unwrap();
                }
                store.flush().unwrap();
                total += started.elapsed();
            }
            total
        });
    });
    group.bench_function("raw_put_100B", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let scratch = Scratch::new("store-raw-put");
                let file = std::fs::File::create(scratch.0.join("raw")).unwrap();
                let started = Instant::now();
                let mut out = std::io::BufWriter::with_capacity(256 << 10, file);
                for &i in &order {
                    out.write_all(&key(i)).unwrap();
                    out.write_all(&value(i)).unwrap();
                }
                out.flush().unwrap();
                total += started.elapsed();
            }
            total
        });
    });
    group.finish();
}

fn bench_get(c: &mut Criterion) {
    let n = keys_n();
    let order = order(n);
    let scratch = Scratch::new("store-get");
    let mut store = Store::open(fs(), &scratch.0, StoreOptions::default()).unwrap();
    for i in 0..n {
        store.put(&key(i), &value(i)).unwrap();
    }
    store.sync().unwrap();
    let map: HashMap<Vec<u8>, Vec<u8>> = (0..n).map(|i| (key(i).to_vec(), value(i).to_vec())).collect();
    let mut group = c.benchmark_group("store");
    group.sample_size(10).measurement_time(common::measurement_time(5)).throughput(Throughput::Elements(n));
    group.bench_function("get_100B", |b| {
        b.iter(|| {
            for &i in &order {
                assert_eq!(store.get(&key(i)).unwrap().unwrap().len(), 100);
            }
        });
    });
    // Range scans: the key space cut into 1000 ranges, each scanned in turn (every key once).
    let bounds: Vec<[u8; 16]> = (0..=1000u64)
        .map(|r| {
            let mut bound = [0xff; 16];
            if r < 1000 {
                bound = [0; 16];
                bound[..8].copy_from_slice(&(r * (u64::MAX / 1000)).to_be_bytes());
            }
            bound
        })
        .collect();
    group.bench_function("range_100B", |b| {
        b.iter(|| {
            let mut seen = 0u64;
            for pair in bounds.windows(2) {
                for entry in store.range(&pair[0], &pair[1]).unwrap() {
                    assert_eq!(entry.unwrap().1.len(), 100);
                    seen += 1;
                }
            }
            assert_eq!(seen, n);
        });
    });
    let tree: BTreeMap<Vec<u8>, Vec<u8>> = map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    group.bench_function("btreemap_range_100B", |b| {
        b.iter(|| {
            let mut seen = 0u64;
            for pair in bounds.windows(2) {
                for (k, v) in tree.range(pair[0].to_vec()..pair[1].to_vec()) {
                    let owned = std::hint::black_box((k.clone(), v.clone()));
                    assert_eq!(owned.1.len(), 100);
                    seen += 1;
                }
            }
            assert_eq!(seen, n);
        });
    });
    drop(tree);
    store.close().unwrap();
    // The same store with a value cache large enough for every value (after the first pass,
    // every read is a hit: the cache's best case).
    let mut options = StoreOptions::default();
    options.value_cache_bytes = 512 << 20;
    let cached = Store::open(fs(), &scratch.0, options).unwrap();
    group.bench_function("get_100B_cached", |b| {
        b.iter(|| {
            for &i in &order {
                assert_eq!(cached.get(&key(i)).unwrap().unwrap().len(), 100);
            }
        });
    });
    drop(cached);
    group.bench_function("hashmap_get_100B", |b| {
        b.iter(|| {
            for &i in &order {
                assert_eq!(map.get(key(i).as_slice()).unwrap().clone().len(), 100);
            }
        });
    });
    group.finish();
}

fn bench_restore(c: &mut Criterion) {
    let n = keys_n();
    let scratch = Scratch::new("store-restore");
    let mut store = Store::open(fs(), &scratch.0, StoreOptions::default()).unwrap();
    // 1.5 puts per key: every key once, then every second key again, in random order.
    for &i in &order(n) {
        store.put(&key(i), &value(i)).unwrap();
    }
    for &i in order(n).iter().filter(|i| *i % 2 == 0) {
        store.put(&key(i), &value(i + 1)).unwrap();
    }
    store.write_snapshot().unwrap();
    store.close().unwrap();
    let log_bytes: u64 = common::segment_files(&scratch.0.join("changelog"))
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    let mut group = c.benchmark_group("store");
    group
        .sample_size(10)
        .measurement_time(common::measurement_time(8))
        .throughput(Throughput::Bytes(log_bytes));
    for (name, from_snapshot) in [("restore_snapshot", true), ("restore_replay", false)] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut options = StoreOptions::default();
                options.restore_from_snapshots = from_snapshot;
                let store = Store::open(fs(), &scratch.0, options).unwrap();
                assert_eq!(store.len() as u64, n);
                assert_eq!(
                    matches!(store.restore_report().source, RestoreSource::Snapshot { .. }),
                    from_snapshot
                );
            });
        });
    }
    group.bench_function("naive_replay_hashmap", |b| {
        b.iter(|| {
            let log = Log::open(fs(), scratch.0.join("changelog"), Default::default()).unwrap();
            let mut map: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
            let mut reader = log.reader(0).unwrap();
            while let Some(batch) = reader.next_batch().unwrap() {
                for record in batch.records() {
                    let record = record.unwrap();
                    match record.value {
                        Some(v) => {
                            map.insert(record.key.to_vec(), v.to_vec());
                        }
                        None => {
                            map.remove(record.key);
                        }
                    }
                }
            }
            assert_eq!(map.len() as u64, n);
        });
    });
    group.finish();
}

criterion_group!(benches, bench_put, bench_get, bench_restore);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
