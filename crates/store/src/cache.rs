//! The optional value cache: values read from the changelog, keyed by where they are, bounded in
//! bytes, evicted by CLOCK (a second chance for each entry read since the hand last passed).
//!
//! Invariant: a cached value is the value at its location. Locations are never reused (a
//! segment id names one file generation for the process's life), so entries cannot go stale
//! and nothing is ever invalidated; entries of segments compaction dropped age out like cold
//! ones. Point reads use the cache; iteration does not (a scan would evict the hot set).

use std::collections::HashMap;
use std::sync::Arc;

use cairn_changelog::ValueLocation;

use crate::sync::{Mutex, MutexGuard};

/// Shards, each behind its own lock, so that concurrent readers rarely wait for each other.
const SHARDS: usize = 16;

/// Bytes an entry costs beyond its value (the table slot, the entry and the allocation).
const ENTRY_OVERHEAD: usize = 64;

/// A bounded cache of values by location.
#[derive(Debug)]
pub(crate) struct ValueCache {
    shards: Box<[Mutex<Shard>]>,
    /// Bytes each shard may hold.
    shard_bytes: usize,
}

#[derive(Debug, Default)]
struct Shard {
    /// Position in `entries` of each cached location.
    positions: HashMap<ValueLocation, usize>,
    entries: Vec<Entry>,
    /// The CLOCK hand: the next entry considered for eviction.
    hand: usize,
    bytes: usize,
}

#[derive(Debug)]
struct Entry {
    at: ValueLocation,
    value: Arc<[u8]>,
    /// Read since the hand last passed.
    referenced: bool,
}

impl ValueCache {
    /// A cache of at most `bytes` (counting a small overhead per entry).
    pub(crate) fn new(bytes: usize) -> ValueCache {
        ValueCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            shard_bytes: bytes / SHARDS,
        }
    }

    fn shard(&self, at: &ValueLocation) -> Option<MutexGuard<'_, Shard>> {
        // Positions in one segment are distinct; a multiplicative hash spreads them.
        let mixed = u64::from(at.position).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let shard = self.shards.get((mixed >> 60) as usize % SHARDS)?;
        Some(shard.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// The value at `at`, if cached.
    pub(crate) fn get(&self, at: &ValueLocation) -> Option<Arc<[u8]>> {
        let mut shard = self.shard(at)?;
        let position = if crate::mutants::active(crate::mutants::CACHE_IGNORES_SEGMENT) {
            shard.entries.iter().position(|e| e.at.position == at.position)?
        } else {
            *shard.positions.get(at)?
        };
        let entry = shard.entries.get_mut(position)?;
        entry.referenced = true;
        Some(Arc::clone(&entry.value))
    }

    /// Caches `value` as the value at `at`, evicting others to make room; values larger than
    /// an eighth of a shard are not cached.
    pub(crate) fn insert(&self, at: ValueLocation, value: &[u8]) {
        let cost = value.len() + ENTRY_OVERHEAD;
        if cost > self.shard_bytes / 8 {
            return;
        }
        let Some(mut shard) = self.shard(&at) else { return };
        if shard.positions.contains_key(&at) {
            return;
        }
        while shard.bytes + cost > self.shard_bytes && shard.evict_one() {}
        let position = shard.entries.len();
        shard.entries.push(Entry { at, value: Arc::from(value), referenced: false });
        shard.positions.insert(at, position);
        shard.bytes += cost;
    }
}

impl Shard {
    /// Evicts the first unreferenced entry from the hand on (clearing the marks it passes);
    /// false if the shard is empty.
    fn evict_one(&mut self) -> bool {
        loop {
            if self.entries.is_empty() {
                return false;
            }
            if self.hand >= self.entries.len() {
                self.hand = 0;
            }
            let Some(entry) = self.entries.get_mut(self.hand) else { return false };
            if entry.referenced {
                entry.referenced = false;
                self.hand += 1;
                continue;
            }
            let evicted = self.entries.swap_remove(self.hand);
            self.positions.remove(&evicted.at);
            self.bytes -= evicted.value.len() + ENTRY_OVERHEAD;
            if let Some(moved) = self.entries.get(self.hand) {
                self.positions.insert(moved.at, self.hand);
            }
            return true;
        }
    }
}

/// loom model 6 (DESIGN §7 rung 6): the value cache against the locations it is keyed by. The
/// store's owner puts two values of one key, each landing first in a segment of its own (every
/// append rolls), so at the same position of two files; a reader on another thread reads the
/// first through a view taken in between, caching it. Whatever the interleaving, the owner's
/// read after the second put returns the second value: an entry is found by segment and
/// position, and a new segment never shares an id with an old one.
#[cfg(all(test, loom))]
#[allow(clippy::unwrap_used)] // a test: a panicked model thread fails it
mod loom_model {
    use std::sync::Arc;

    use cairn_fs::loom_support::{check, spawn};
    use cairn_fs::{Fs, SimFs};

    use crate::{Store, StoreOptions};

    fn model() {
        check(|| {
            let fs: Arc<dyn Fs> = Arc::new(SimFs::new(6));
            let mut options =
                StoreOptions { value_cache_bytes: 1 << 20, write_buffer_bytes: 0, ..StoreOptions::default() };
            options.log.segment_age_ms_max = Some(0);
            let mut store = Store::open(fs, "/store", options).unwrap();
            store.put(b"k", b"first-value").unwrap();
            store.flush().unwrap();
            let view = store.view().unwrap();
            let reader = spawn(move || view.get(b"k").unwrap());
            store.put(b"k", b"later-value").unwrap();
            store.flush().unwrap();
            assert_eq!(
                store.get(b"k").unwrap().as_deref(),
                Some(&b"later-value"[..]),
                "the owner read a value cached for the wrong location"
            );
            assert_eq!(
                reader.join().unwrap().as_deref(),
                Some(&b"first-value"[..]),
                "a view read a value cached for the wrong location"
            );
        });
    }

    cairn_fs::loom_model_tests!(
        model: loom_cached_values_follow_their_locations,
        loom_mutant_cache_ignores_segment = crate::mutants::CACHE_IGNORES_SEGMENT,
        "mutant: run by `cargo xtask loom`, must fail with \"cached for the wrong location\""
    );
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use cairn_changelog::SegmentId;
    use proptest::prelude::*;

    use super::*;

    fn at(segment: SegmentId, position: u32) -> ValueLocation {
        ValueLocation { segment, position, len: 0 }
    }

    fn value_of(position: u32) -> Vec<u8> {
        vec![position as u8; 10 + (position % 50) as usize]
    }

    proptest! {
        /// Whatever is inserted and read, a hit is the value inserted at that location, the
        /// bound holds, and the position table matches the entries.
        #[test]
        fn hits_are_exact_and_the_bound_holds(
            ops in prop::collection::vec((any::<bool>(), 0u32..300), 0..2000),
            bytes in 0usize..40_000,
        ) {
            let segment = crate::restore::tests::segment();
            let cache = ValueCache::new(bytes);
            let mut inserted = BTreeMap::new();
            for (read, position) in ops {
                if read {
                    if let Some(value) = cache.get(&at(segment, position)) {
                        let expected = value_of(position);
                        prop_assert_eq!(&*value, expected.as_slice());
                        prop_assert!(inserted.contains_key(&position));
                    }
                } else {
                    cache.insert(at(segment, position), &value_of(position));
                    inserted.insert(position, ());
                }
            }
            for shard in cache.shards.iter() {
                let shard = shard.lock().unwrap();
                prop_assert!(shard.bytes <= cache.shard_bytes);
                prop_assert_eq!(shard.positions.len(), shard.entries.len());
                let sum: usize = shard.entries.iter().map(|e| e.value.len() + ENTRY_OVERHEAD).sum();
                prop_assert_eq!(sum, shard.bytes);
                for (i, e) in shard.entries.iter().enumerate() {
                    prop_assert_eq!(shard.positions.get(&e.at), Some(&i));
                }
            }
        }
    }

    #[test]
    fn a_value_read_again_survives_a_pass_of_the_hand() {
        let segment = crate::restore::tests::segment();
        // Room for 32 entries per shard: without the second chance, the hot entry would be
        // evicted after about 32 cold inserts into its shard (some 500 in all).
        let cache = ValueCache::new(SHARDS * 8 * (10 + ENTRY_OVERHEAD) * 4);
        cache.insert(at(segment, 0), &[7; 10]);
        for position in 1..2000 {
            assert!(cache.get(&at(segment, 0)).is_some(), "hot entry evicted before insert {position}");
            cache.insert(at(segment, position), &[1; 10]);
        }
    }
}
