//! The sparse offset index of a segment (docs/format.md, "Index").
//!
//! One entry per `index_interval_bytes` of segment data maps an offset (relative to the
//! segment's base) to the byte position of the batch holding it. The active segment keeps its
//! entries in memory; sealing writes them to `<base>.index` behind a header that also records
//! the segment's end offset and length, so that opening a log reads one small header per sealed
//! segment instead of scanning it.
//!
//! ```text
//! 0   u32 magic          0x1DC3_B7A9
//! 4   u16 version        1
//! 6   u16 entry_len      8
//! 8   u64 base_offset
//! 16  u64 next_offset    one past the segment's last offset
//! 24  u64 segment_bytes  length of the .log file
//! 32  i64 max_ts         largest record timestamp in the segment (i64::MIN if none)
//! 40  u32 entry_count
//! 44  u32 entries_crc    crc32c of the entries
//! 48  u32 header_crc     crc32c of bytes [0, 48)
//! 52  u32 reserved       0
//! 56  entries            entry_count × (u32 relative offset, u32 position), both increasing
//! ```

use cairn_fs::Mapping;

use crate::batch::{u32_at, u64_at};

pub(crate) const MAGIC: u32 = 0x1DC3_B7A9;
pub(crate) const VERSION: u16 = 1;
pub(crate) const HEADER_LEN: usize = 56;
pub(crate) const ENTRY_LEN: usize = 8;

/// One index entry: the batch holding `base + rel_offset` starts at `position`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) rel_offset: u32,
    pub(crate) position: u32,
}

/// What the index header records about its sealed segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Summary {
    pub(crate) base_offset: u64,
    pub(crate) next_offset: u64,
    pub(crate) segment_bytes: u64,
    pub(crate) max_ts: i64,
}

/// The index file's contents for a sealed segment.
pub(crate) fn encode(summary: &Summary, entries: &[Entry]) -> Vec<u8> {
    let mut body = Vec::with_capacity(entries.len() * ENTRY_LEN);
    for entry in entries {
        body.extend_from_slice(&entry.rel_offset.to_le_bytes());
        body.extend_from_slice(&entry.position.to_le_bytes());
    }
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(ENTRY_LEN as u16).to_le_bytes());
    out.extend_from_slice(&summary.base_offset.to_le_bytes());
    out.extend_from_slice(&summary.next_offset.to_le_bytes());
    out.extend_from_slice(&summary.segment_bytes.to_le_bytes());
    out.extend_from_slice(&summary.max_ts.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    let header_crc = crc32c::crc32c(&out);
    out.extend_from_slice(&header_crc.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// A checked index header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) summary: Summary,
    pub(crate) entry_count: u32,
    pub(crate) entries_crc: u32,
}

/// Reads the header at the start of `bytes`; `None` if it is not a valid v1 index header for a
/// segment at `base_offset`.
pub(crate) fn decode_header(bytes: &[u8], base_offset: u64) -> Option<Header> {
    let header = bytes.get(..HEADER_LEN)?;
    if u32_at(header, 0) != MAGIC
        || u32_at(header, 4) != u32::from(VERSION) | ((ENTRY_LEN as u32) << 16)
        || u32_at(header, 52) != 0
        || crc32c::crc32c(header.get(..48)?) != u32_at(header, 48)
    {
        return None;
    }
    let summary = Summary {
        base_offset: u64_at(header, 8),
        next_offset: u64_at(header, 16),
        segment_bytes: u64_at(header, 24),
        max_ts: u64_at(header, 32) as i64,
    };
    if summary.base_offset != base_offset || summary.next_offset < base_offset {
        return None;
    }
    Some(Header { summary, entry_count: u32_at(header, 40), entries_crc: u32_at(header, 44) })
}

/// The entries of a sealed segment: in memory or mapped from its index file.
#[derive(Debug)]
pub(crate) enum Entries {
    Memory(Vec<Entry>),
    /// A mapped index file whose header and entries were checked.
    Mapped(Mapping),
}

impl Entries {
    /// Checks a mapped index file against the header read at open; `None` if its entries are
    /// damaged (wrong count, checksum, or not increasing within the segment).
    pub(crate) fn from_mapping(map: Mapping, header: &Header) -> Option<Entries> {
        let body = map.get(HEADER_LEN..)?;
        if body.len() != header.entry_count as usize * ENTRY_LEN || crc32c::crc32c(body) != header.entries_crc
        {
            return None;
        }
        let entries = Entries::Mapped(map);
        let span = header.summary.next_offset - header.summary.base_offset;
        let mut previous: Option<Entry> = None;
        for i in 0..entries.len() {
            let entry = entries.get(i)?;
            let increasing =
                previous.is_none_or(|p| entry.rel_offset > p.rel_offset && entry.position > p.position);
            if !increasing
                || u64::from(entry.rel_offset) >= span
                || u64::from(entry.position) >= header.summary.segment_bytes
            {
                return None;
            }
            previous = Some(entry);
        }
        Some(entries)
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Entries::Memory(entries) => entries.len(),
            Entries::Mapped(map) => map.len().saturating_sub(HEADER_LEN) / ENTRY_LEN,
        }
    }

    pub(crate) fn get(&self, i: usize) -> Option<Entry> {
        match self {
            Entries::Memory(entries) => entries.get(i).copied(),
            Entries::Mapped(map) => {
                let at = HEADER_LEN + i * ENTRY_LEN;
                let bytes = map.get(at..at + ENTRY_LEN)?;
                Some(Entry { rel_offset: u32_at(bytes, 0), position: u32_at(bytes, 4) })
            }
        }
    }

    /// The last indexed batch starting at or before `rel_offset` (the segment's start if none).
    pub(crate) fn floor(&self, rel_offset: u32) -> Entry {
        floor_by(self.len(), |i| self.get(i), rel_offset)
    }
}

/// Binary search over `len` entries reachable through `get` for the last with
/// `rel_offset <= target`; the segment's start (offset 0 at position 0) if none.
pub(crate) fn floor_by(len: usize, get: impl Fn(usize) -> Option<Entry>, target: u32) -> Entry {
    let (mut lo, mut hi) = (0, len);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match get(mid) {
            Some(entry) if entry.rel_offset <= target => lo = mid + 1,
            _ => hi = mid,
        }
    }
    lo.checked_sub(1).and_then(get).unwrap_or(Entry { rel_offset: 0, position: 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> Summary {
        Summary { base_offset: 100, next_offset: 200, segment_bytes: 9000, max_ts: 5 }
    }

    fn entries() -> Vec<Entry> {
        vec![Entry { rel_offset: 10, position: 4100 }, Entry { rel_offset: 50, position: 8200 }]
    }

    #[test]
    fn encoded_index_decodes_and_looks_up() {
        let bytes = encode(&summary(), &entries());
        let header = decode_header(&bytes, 100).unwrap();
        assert_eq!(header.summary, summary());
        let index = Entries::from_mapping(Mapping::from_bytes(bytes), &header).unwrap();
        let position = |rel| index.floor(rel).position;
        assert_eq!(position(0), 0);
        assert_eq!(position(9), 0);
        assert_eq!(position(10), 4100);
        assert_eq!(position(49), 4100);
        assert_eq!(index.floor(99), Entry { rel_offset: 50, position: 8200 });
    }

    #[test]
    fn damaged_index_is_refused() {
        let bytes = encode(&summary(), &entries());
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            let accepted = decode_header(&damaged, 100)
                .and_then(|header| Entries::from_mapping(Mapping::from_bytes(damaged.clone()), &header));
            assert!(accepted.is_none(), "bit {bit} flip accepted");
        }
        assert!(decode_header(&bytes, 101).is_none(), "index of another segment accepted");
    }
}
