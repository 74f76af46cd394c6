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
    /// Where the key's bytes start in the arena, and how many.
    key_start: usize,
    key_len: usize,
    /// The offset of the key's latest record.
    offset: u64,
}

/// What one key costs the map besides its bytes: its entry and two slots.
pub(crate) const ENTRY_COST: usize = size_of::<MapEntry>() + 2 * size_of::<u32>();

/// A map from key to the offset of its latest record, within a memory budget.
#[derive(Debug)]
pub(crate) struct KeyMap {
    /// Entry index + 1 per slot; 0 is empty. A power of two long.
    slots: Vec<u32>,
    entries: Vec<MapEntry>,
    arena: Vec<u8>,
    budget: usize,
    /// Hash every key alike (tests of collisions).
    collide: bool,
}

impl KeyMap {
    /// An empty map that holds keys while [`KeyMap::cost`] stays within `budget` bytes.
    pub(crate) fn new(budget: usize, collide: bool) -> KeyMap {
        KeyMap { slots: vec![0; 1024], entries: Vec::new(), arena: Vec::new(), budget, collide }
    }

    fn hash(&self, key: &[u8]) -> u64 {
        if self.collide { 0x5EED } else { key_hash(key) }
    }

    /// The bytes the map accounts for: keys and per-key overhead.
    pub(crate) fn cost(&self) -> usize {
        self.arena.len() + self.entries.len() * ENTRY_COST
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    fn key_of(&self, entry: &MapEntry) -> &[u8] {
        self.arena.get(entry.key_start..entry.key_start + entry.key_len).unwrap_or_default()
    }

    /// The slot holding `key`, or the empty slot where it would go.
    fn probe(&self, hash: u64, key: &[u8]) -> (usize, Option<usize>) {
        let mask = self.slots.len() - 1;
        let mut at = hash as usize & mask;
        loop {
            match self.slots.get(at).copied().unwrap_or(0) {
                0 => return (at, None),
                slot => {
                    let index = slot as usize - 1;
                    if let Some(entry) = self.entries.get(index)
                        && entry.hash == hash
                        && (mutants::active(mutants::KEY_MAP_HASH_ONLY) || self.key_of(entry) == key)
                    {
                        return (at, Some(index));
                    }
                }
            }
            at = (at + 1) & mask;
        }
    }

    /// Records a record of `key` at `offset`, later than any recorded before. Returns `false`,
    /// changing nothing, if a new key would take the map past its budget.
    pub(crate) fn insert(&mut self, key: &[u8], offset: u64) -> bool {
        let hash = self.hash(key);
        let (slot, found) = self.probe(hash, key);
        if let Some(entry) = found.and_then(|index| self.entries.get_mut(index)) {
            entry.offset = entry.offset.max(offset);
            return true;
        }
        if self.cost() + key.len() + ENTRY_COST > self.budget || self.entries.len() >= u32::MAX as usize / 2 {
            return false;
        }
        self.entries.push(MapEntry { hash, key_start: self.arena.len(), key_len: key.len(), offset });
        self.arena.extend_from_slice(key);
        if let Some(s) = self.slots.get_mut(slot) {
            *s = self.entries.len() as u32;
        }
        if self.entries.len() * 2 > self.slots.len() {
            self.grow();
        }
        true
    }

    fn grow(&mut self) {
        let mut slots = vec![0u32; self.slots.len() * 2];
        let mask = slots.len() - 1;
        for (index, entry) in self.entries.iter().enumerate() {
            let mut at = entry.hash as usize & mask;
            while slots.get(at).is_some_and(|s| *s != 0) {
                at = (at + 1) & mask;
            }
            if let Some(s) = slots.get_mut(at) {
                *s = index as u32 + 1;
            }
        }
        self.slots = slots;
    }

    /// The offset of the latest record of `key`, if the map holds the key.
    pub(crate) fn get(&self, key: &[u8]) -> Option<u64> {
        let (_, found) = self.probe(self.hash(key), key);
        found.and_then(|index| self.entries.get(index)).map(|e| e.offset)
    }

    /// The keys of the map.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.entries.iter().map(|e| self.key_of(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_offset_of_each_key() {
        let mut map = KeyMap::new(1 << 20, false);
        for i in 0..10_000u64 {
            assert!(map.insert(format!("key-{}", i % 3000).as_bytes(), i));
        }
        assert_eq!(map.len(), 3000);
        assert_eq!(map.get(b"key-0"), Some(9000));
        assert_eq!(map.get(b"key-2999"), Some(8999));
        assert_eq!(map.get(b"key-3000"), None);
        assert_eq!(map.keys().count(), 3000);
    }

    #[test]
    fn equal_hashes_are_different_keys() {
        let mut map = KeyMap::new(1 << 20, true);
        assert!(map.insert(b"a", 1));
        assert!(map.insert(b"b", 2));
        assert!(map.insert(b"a", 3));
        assert_eq!((map.get(b"a"), map.get(b"b"), map.get(b"c")), (Some(3), Some(2), None));
    }

    #[test]
    fn refuses_new_keys_past_its_budget_but_updates_old_ones() {
        let mut map = KeyMap::new(10 * (ENTRY_COST + 8), false);
        let mut inserted = 0;
        while map.insert(format!("k{inserted:07}").as_bytes(), inserted) {
            inserted += 1;
        }
        assert_eq!(inserted, 10);
        assert!(map.cost() <= 10 * (ENTRY_COST + 8));
        assert!(map.insert(b"k0000003", 99), "an update needs no room");
        assert_eq!(map.get(b"k0000003"), Some(99));
    }
}
