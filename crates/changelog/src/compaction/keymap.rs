//! The key map of a compaction pass: for every key of the dirty segments the pass covers, the
//! offset of the key's latest record there.
//!
//! Keys are stored whole, in one arena, and looked up by hash and then by their bytes, so two
//! keys with equal hashes are two entries: a collision costs a comparison, never a live record
//! (Kafka's cleaner keys its map by hash alone and accepts that risk). Open addressing with
//! linear probing over a slot table kept at most half full.

use crate::filter::key_hash;
use crate::mutants;

/// One key of the map.
#[derive(Clone, Copy, Debug)]
struct MapEntry {
    hash: u64,
    /// The offset of the key's latest record.
    offset: u64,
    /// Where the key's bytes start in the arena, and how many.
    key_start: u32,
    key_len: u32,
}

/// What one key costs the map besides its bytes: its entry and two slots.
pub(crate) const ENTRY_COST: usize = size_of::<MapEntry>() + 2 * size_of::<u64>();
/// What one record costs: its entry number, kept in order for the rewrite.
const RECORD_COST: usize = size_of::<u32>();

/// A map from key to the offset of its latest record, within a memory budget.
///
/// It also keeps, for every record inserted, in order, the number of its key's entry: the
/// rewrite reads the same records in the same order and asks each whether it is its key's
/// latest by entry number, without hashing or comparing its key again.
#[derive(Debug)]
pub(crate) struct KeyMap {
    /// Per slot: 0 if empty, else the low 32 bits of the key's hash (a fingerprint checked
    /// before the entry is touched) above the entry number + 1. A power of two long.
    slots: Vec<u64>,
    entries: Vec<MapEntry>,
    arena: Vec<u8>,
    /// The entry number of every record inserted, in order.
    order: Vec<u32>,
    budget: usize,
    /// Hash every key alike (tests of collisions).
    collide: bool,
}

impl KeyMap {
    /// An empty map that holds keys while [`KeyMap::cost`] stays within `budget` bytes (capped
    /// at 4 GiB: arena positions are 32-bit), with room for the entry numbers of `records`
    /// records (as many as the budget allows) and slots for `keys` keys at first. The slots
    /// grow with the keys; sizing them for all the records would give a log of few keys a
    /// large, mostly empty table, sizing them small makes a log of many keys rehash often.
    pub(crate) fn new(budget: usize, records: u64, keys: u64, collide: bool) -> KeyMap {
        let budget = budget.min(u32::MAX as usize);
        let records = usize::try_from(records).unwrap_or(usize::MAX);
        let keys = usize::try_from(keys).unwrap_or(usize::MAX).min(budget / ENTRY_COST);
        KeyMap {
            slots: vec![0; (2 * keys).next_power_of_two().max(1024)],
            entries: Vec::new(),
            arena: Vec::new(),
            order: Vec::with_capacity(records.min(budget / RECORD_COST)),
            budget,
            collide,
        }
    }

    /// Loads the slots where keys with these hashes start their probes, all at once, so that
    /// their cache misses overlap instead of coming one insert at a time.
    pub(crate) fn touch(&self, hashes: impl Iterator<Item = u64>) {
        let mask = self.slots.len() - 1;
        let mut sum = 0u64;
        for hash in hashes {
            sum = sum.wrapping_add(self.slots.get((hash >> 32) as usize & mask).copied().unwrap_or(0));
        }
        std::hint::black_box(sum);
    }

    /// Loads the entries of the `n`-th records from `first` on, as [`KeyMap::touch`] does.
    pub(crate) fn touch_records(&self, first: usize, n: usize) {
        let mut sum = 0u64;
        for index in self.order.iter().skip(first).take(n) {
            sum = sum.wrapping_add(self.entries.get(*index as usize).map_or(0, |e| e.offset));
        }
        std::hint::black_box(sum);
    }

    /// The hash the map files `key` under (also the key filter's hash, unless colliding).
    pub(crate) fn hash(&self, key: &[u8]) -> u64 {
        if self.collide { 0x5EED } else { key_hash(key) }
    }

    /// The bytes the map accounts for: keys, per-key and per-record overhead.
    pub(crate) fn cost(&self) -> usize {
        self.arena.len() + self.entries.len() * ENTRY_COST + self.order.len() * RECORD_COST
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    fn key_of(&self, entry: &MapEntry) -> &[u8] {
        let start = entry.key_start as usize;
        self.arena.get(start..start + entry.key_len as usize).unwrap_or_default()
    }

    /// The slot holding `key`, or the empty slot where it would go, and the entry number.
    fn probe(&self, hash: u64, key: &[u8]) -> (usize, Option<usize>) {
        let mask = self.slots.len() - 1;
        let fingerprint = hash & 0xFFFF_FFFF;
        let mut at = (hash >> 32) as usize & mask;
        loop {
            let slot = self.slots.get(at).copied().unwrap_or(0);
            if slot == 0 {
                return (at, None);
            }
            if slot >> 32 == fingerprint {
                let index = (slot & 0xFFFF_FFFF) as usize - 1;
                if let Some(entry) = self.entries.get(index)
                    && entry.hash == hash
                    && (mutants::active(mutants::KEY_MAP_HASH_ONLY) || self.key_of(entry) == key)
                {
                    return (at, Some(index));
                }
            }
            at = (at + 1) & mask;
        }
    }

    /// Records a record of `key` at `offset`, later than any recorded before, and returns its
    /// key's entry number. Returns `None`, changing nothing, if the map would pass its budget.
    #[cfg(test)]
    pub(crate) fn insert(&mut self, key: &[u8], offset: u64) -> Option<u32> {
        let hash = self.hash(key);
        self.insert_hashed(key, hash, offset)
    }

    /// [`KeyMap::insert`] with the key's hash ([`KeyMap::hash`]) already computed.
    pub(crate) fn insert_hashed(&mut self, key: &[u8], hash: u64, offset: u64) -> Option<u32> {
        let (slot, found) = self.probe(hash, key);
        let index = match found {
            Some(index) => {
                if self.cost() + RECORD_COST > self.budget {
                    return None;
                }
                if let Some(entry) = self.entries.get_mut(index) {
                    entry.offset = entry.offset.max(offset);
                }
                index
            }
            None => {
                // The first key always goes in, so that a pass always makes progress.
                let cost = key.len() + ENTRY_COST + RECORD_COST;
                if (self.cost() + cost > self.budget && !self.entries.is_empty())
                    || self.entries.len() >= u32::MAX as usize / 2
                {
                    return None;
                }
                let key_start = self.arena.len() as u32;
                self.entries.push(MapEntry { hash, offset, key_start, key_len: key.len() as u32 });
                self.arena.extend_from_slice(key);
                if let Some(s) = self.slots.get_mut(slot) {
                    *s = ((hash & 0xFFFF_FFFF) << 32) | self.entries.len() as u64;
                }
                if self.entries.len() * 2 > self.slots.len() {
                    self.grow();
                }
                self.entries.len() - 1
            }
        };
        self.order.push(index as u32);
        Some(index as u32)
    }

    fn grow(&mut self) {
        let mut slots = vec![0u64; self.slots.len() * 2];
        let mask = slots.len() - 1;
        for (index, entry) in self.entries.iter().enumerate() {
            let mut at = (entry.hash >> 32) as usize & mask;
            while slots.get(at).is_some_and(|s| *s != 0) {
                at = (at + 1) & mask;
            }
            if let Some(s) = slots.get_mut(at) {
                *s = ((entry.hash & 0xFFFF_FFFF) << 32) | (index as u64 + 1);
            }
        }
        self.slots = slots;
    }

    /// The offset of the latest record of `key`, if the map holds the key.
    pub(crate) fn get(&self, key: &[u8]) -> Option<u64> {
        let (_, found) = self.probe(self.hash(key), key);
        found.and_then(|index| self.entries.get(index)).map(|e| e.offset)
    }

    /// The entry number of the `n`-th record inserted, and that key's latest offset and hash.
    pub(crate) fn nth_record(&self, n: usize) -> Option<(u64, u64)> {
        let index = *self.order.get(n)?;
        self.entries.get(index as usize).map(|e| (e.offset, e.hash))
    }

    /// The key filter's hashes of the keys of the map.
    pub(crate) fn filter_hashes(&self) -> impl Iterator<Item = u64> + '_ {
        self.entries.iter().map(|e| if self.collide { key_hash(self.key_of(e)) } else { e.hash })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_offset_of_each_key() {
        let mut map = KeyMap::new(1 << 20, 0, 0, false);
        for i in 0..10_000u64 {
            assert!(map.insert(format!("key-{}", i % 3000).as_bytes(), i).is_some());
        }
        assert_eq!(map.len(), 3000);
        assert_eq!(map.get(b"key-0"), Some(9000));
        assert_eq!(map.get(b"key-2999"), Some(8999));
        assert_eq!(map.get(b"key-3000"), None);
        assert_eq!(map.filter_hashes().count(), 3000);
    }

    #[test]
    fn equal_hashes_are_different_keys() {
        let mut map = KeyMap::new(1 << 20, 0, 0, true);
        assert_eq!(map.insert(b"a", 1), Some(0));
        assert_eq!(map.insert(b"b", 2), Some(1));
        assert_eq!(map.insert(b"a", 3), Some(0));
        assert_eq!(map.nth_record(1), Some((2, 0x5EED)));
        assert_eq!(map.nth_record(2), Some((3, 0x5EED)));
        assert_eq!((map.get(b"a"), map.get(b"b"), map.get(b"c")), (Some(3), Some(2), None));
    }

    #[test]
    fn refuses_records_past_its_budget() {
        let budget = 10 * (ENTRY_COST + 8 + RECORD_COST) + 2 * RECORD_COST;
        let mut map = KeyMap::new(budget, 1000, 1000, false);
        let mut inserted = 0;
        while map.insert(format!("k{inserted:07}").as_bytes(), inserted).is_some() {
            inserted += 1;
        }
        assert_eq!(inserted, 10);
        assert!(map.insert(b"k0000003", 99).is_some(), "an update needs room for its record only");
        assert_eq!(map.get(b"k0000003"), Some(99));
        assert!(map.insert(b"k0000004", 100).is_some());
        assert!(map.insert(b"k0000005", 101).is_none(), "past the budget");
        assert!(map.cost() <= budget);
    }
}
