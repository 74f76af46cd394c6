//! The key filter of a compacted segment: a Bloom filter of its keys, stored in its index file
//! (docs/format.md, "Key filter"). Compaction asks it whether a segment may hold a key that was
//! written again since, and rewrites only segments that may: one that certainly does not has
//! gained nothing to drop and is not copied.

use crate::batch::u32_at;

/// Bits per key: about 1% false positives with `HASHES` probes.
const BITS_PER_KEY: u64 = 10;
/// Probes per key.
const HASHES: u32 = 7;
/// Bytes before the bit words: the number of probes and of 64-bit words.
const HEADER_LEN: usize = 8;

/// The 64-bit hash of a key used by the filter and by compaction's key map: CRC32C of the key in
/// the high half and CRC32C of the key after a fixed seed in the low half (hardware-fast), then
/// the MurmurHash3 finalizer, since CRCs of similar keys differ in correlated bits (without it,
/// keys like `key-00001`, `key-00002` gave filters ten times the designed false positives).
/// Stable across builds: it is stored through the filter.
pub(crate) fn key_hash(key: &[u8]) -> u64 {
    let high = crc32c::crc32c(key);
    let low = crc32c::crc32c_append(0x9E37_79B9, key);
    let mut h = (u64::from(high) << 32) | u64::from(low);
    h ^= h >> 33;
    h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    h ^= h >> 33;
    h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    h ^ (h >> 33)
}

/// A filter being built or read: `words` of bits probed `hashes` times per key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KeyFilter {
    hashes: u32,
    words: Vec<u64>,
}

impl KeyFilter {
    /// An empty filter sized for `keys` keys.
    pub(crate) fn with_capacity(keys: usize) -> KeyFilter {
        let bits = (keys as u64).saturating_mul(BITS_PER_KEY).max(64);
        KeyFilter { hashes: HASHES, words: vec![0; bits.div_ceil(64) as usize] }
    }

    /// The bits probed for `hash`: `h1 + i × h2` (wrapping) for the `i`-th probe, scaled to the
    /// filter's bits by a multiplication (Lemire's reduction), not a division.
    fn probes(&self, hash: u64) -> impl Iterator<Item = (usize, u64)> + use<> {
        let bits = u128::from(self.words.len() as u64 * 64);
        let (h1, h2) = (hash, hash.rotate_left(32) | 1);
        (0..u64::from(self.hashes)).map(move |i| {
            let bit = ((u128::from(h1.wrapping_add(i.wrapping_mul(h2))) * bits) >> 64) as u64;
            ((bit / 64) as usize, 1u64 << (bit % 64))
        })
    }

    pub(crate) fn insert(&mut self, hash: u64) {
        for (word, mask) in self.probes(hash) {
            if let Some(w) = self.words.get_mut(word) {
                *w |= mask;
            }
        }
    }

    /// Whether a key with this hash may be in the set (never false for one that is).
    pub(crate) fn may_contain(&self, hash: u64) -> bool {
        self.probes(hash).all(|(word, mask)| self.words.get(word).is_some_and(|w| w & mask != 0))
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.words.len() * 8);
        out.extend_from_slice(&self.hashes.to_le_bytes());
        out.extend_from_slice(&(self.words.len() as u32).to_le_bytes());
        for word in &self.words {
            out.extend_from_slice(&word.to_le_bytes());
        }
        out
    }

    /// A filter from its encoding; `None` if the bytes are not one.
    pub(crate) fn decode(bytes: &[u8]) -> Option<KeyFilter> {
        let hashes = u32_at(bytes, 0);
        let words = u32_at(bytes, 4) as usize;
        let body = bytes.get(HEADER_LEN..)?;
        if bytes.len() < HEADER_LEN || hashes == 0 || hashes > 64 || words == 0 || body.len() != words * 8 {
            return None;
        }
        let words = body
            .chunks_exact(8)
            .map(|c| {
                let mut word = [0; 8];
                word.copy_from_slice(c);
                u64::from_le_bytes(word)
            })
            .collect();
        Some(KeyFilter { hashes, words })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserted_keys_are_always_found_and_others_rarely() {
        let keys: Vec<Vec<u8>> = (0..5000u32).map(|i| format!("key-{i}").into_bytes()).collect();
        let mut filter = KeyFilter::with_capacity(keys.len());
        for key in &keys {
            filter.insert(key_hash(key));
        }
        let filter = KeyFilter::decode(&filter.encode()).unwrap();
        assert!(keys.iter().all(|k| filter.may_contain(key_hash(k))));
        let false_positives =
            (0..10_000u32).filter(|i| filter.may_contain(key_hash(format!("other-{i}").as_bytes()))).count();
        assert!(false_positives < 300, "{false_positives} false positives in 10000");
    }

    #[test]
    fn damaged_encodings_are_refused() {
        let filter = KeyFilter::with_capacity(10).encode();
        assert!(KeyFilter::decode(&filter[..filter.len() - 1]).is_none());
        assert!(KeyFilter::decode(&[]).is_none());
        let mut no_probes = filter.clone();
        no_probes[..4].copy_from_slice(&0u32.to_le_bytes());
        assert!(KeyFilter::decode(&no_probes).is_none());
    }

    #[test]
    fn keys_that_differ_in_a_few_characters_get_the_designed_false_positive_rate() {
        // Small filters of numbered keys, probed with the keys of the other filters: the case of
        // compaction asking clean segments about keys written since.
        let (mut false_positives, mut probes) = (0, 0);
        for segment in 0..40u32 {
            let mut filter = KeyFilter::with_capacity(50);
            for i in segment * 50..segment * 50 + 50 {
                filter.insert(key_hash(format!("key-{i:05}").as_bytes()));
            }
            for i in (0..2000u32).filter(|i| i / 50 != segment) {
                probes += 1;
                false_positives +=
                    usize::from(filter.may_contain(key_hash(format!("key-{i:05}").as_bytes())));
            }
        }
        // About 0.8% by design; 10% with an unmixed CRC hash.
        assert!(false_positives * 50 < probes, "{false_positives} false positives in {probes}");
    }
}
