//! The sparse offset index of a segment (docs/format.md, "Index").
//!
//! One entry per `index_interval_bytes` of segment data maps an offset (relative to the
//! segment's base) to the byte position of the batch holding it. The active segment keeps its
//! entries in memory; sealing writes them to `<base>.index` behind a header that also records
//! what the segment holds (its end offset and length, record and tombstone counts, whether and
//! when compaction produced it), and, for a compacted segment, the filter of its keys. Opening a
//! log reads one small header per sealed segment instead of scanning it.
//!
//! ```text
//! 0   u32 magic             0x1DC3_B7A9
//! 4   u16 version           2 (version 1, the first cairn's 56-byte header, is still read)
//! 6   u16 entry_len         8
//! 8   u64 base_offset
//! 16  u64 next_offset       one past the last offset the segment covers
//! 24  u64 segment_bytes     length of the .log file
//! 32  i64 max_ts            largest record timestamp (i64::MIN if none)
//! 40  u32 entry_count
//! 44  u32 flags             bit 0: produced by compaction
//! 48  u64 record_count
//! 56  u64 tombstones
//! 64  i64 min_tombstone_ts  smallest timestamp of a tombstone (i64::MAX if none)
//! 72  i64 cleaned_ms        when compaction produced the segment (i64::MIN if not, or unknown)
//! 80  u32 filter_len        bytes of the key filter after the entries (0: none)
//! 84  u32 body_crc          crc32c of the entries, the filter and the runs
//! 88  u32 seen_runs         number of first-seen runs after the filter
//! 92  u32 header_crc        crc32c of bytes [0, 92)
//! 96  entries               entry_count × (u32 relative offset, u32 position), both increasing
//!     filter                filter_len bytes (docs/format.md, "Key filter")
//!     runs                  seen_runs × (u64 offset, i64 ms): records at or after the offset
//!                           were first seen by compaction at that time; offsets increasing
//! ```

use cairn_fs::Mapping;

use crate::batch::{u32_at, u64_at};

pub(crate) const MAGIC: u32 = 0x1DC3_B7A9;
pub(crate) const VERSION: u16 = 2;
/// The first cairn's index version: a 56-byte header (magic, version, entry length, base and
/// next offset, segment bytes, max timestamp, entry count, entries CRC, header CRC over
/// `[0, 48)`, a reserved zero word), then the entries. Read as a durability marker only; the
/// segment is scanned and its index rewritten in the current version.
const LEGACY_VERSION: u16 = 1;
const LEGACY_HEADER_LEN: usize = 56;
pub(crate) const HEADER_LEN: usize = 96;
pub(crate) const ENTRY_LEN: usize = 8;
/// Header flag: compaction produced the segment.
const FLAG_COMPACTED: u32 = 1;
/// Bytes of one first-seen run.
const RUN_LEN: usize = 16;

/// A first-seen run of a compacted segment: records at or after `offset` (up to the next run)
/// were first seen by compaction at `seen_ms`, which starts their tombstones' delete horizon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SeenRun {
    pub(crate) offset: u64,
    pub(crate) seen_ms: i64,
}

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
    pub(crate) record_count: u64,
    pub(crate) tombstones: u64,
    pub(crate) min_tombstone_ts: i64,
    /// When compaction produced the segment: `None` for a segment written by appends (dirty),
    /// or one whose index was rebuilt (taken as dirty, which is always safe: the next pass
    /// reads it again).
    pub(crate) cleaned_ms: Option<i64>,
}

impl Summary {
    /// A summary of an empty stretch starting at `base_offset`.
    pub(crate) fn empty(base_offset: u64) -> Summary {
        Summary {
            base_offset,
            next_offset: base_offset,
            segment_bytes: 0,
            max_ts: i64::MIN,
            record_count: 0,
            tombstones: 0,
            min_tombstone_ts: i64::MAX,
            cleaned_ms: None,
        }
    }

    pub(crate) fn compacted(&self) -> bool {
        self.cleaned_ms.is_some()
    }
}

/// The index file's contents for a sealed segment; `filter` and `runs` are the encoded key
/// filter and the first-seen runs of a compacted segment, empty otherwise.
pub(crate) fn encode(summary: &Summary, entries: &[Entry], filter: &[u8], runs: &[SeenRun]) -> Vec<u8> {
    let mut body = Vec::with_capacity(entries.len() * ENTRY_LEN + filter.len() + runs.len() * RUN_LEN);
    for entry in entries {
        body.extend_from_slice(&entry.rel_offset.to_le_bytes());
        body.extend_from_slice(&entry.position.to_le_bytes());
    }
    body.extend_from_slice(filter);
    for run in runs {
        body.extend_from_slice(&run.offset.to_le_bytes());
        body.extend_from_slice(&run.seen_ms.to_le_bytes());
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
    let flags = if summary.compacted() { FLAG_COMPACTED } else { 0 };
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&summary.record_count.to_le_bytes());
    out.extend_from_slice(&summary.tombstones.to_le_bytes());
    out.extend_from_slice(&summary.min_tombstone_ts.to_le_bytes());
    out.extend_from_slice(&summary.cleaned_ms.unwrap_or(i64::MIN).to_le_bytes());
    out.extend_from_slice(&(filter.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    out.extend_from_slice(&(runs.len() as u32).to_le_bytes());
    let header_crc = crc32c::crc32c(&out);
    out.extend_from_slice(&header_crc.to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// A checked index header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) summary: Summary,
    pub(crate) entry_count: u32,
    pub(crate) filter_len: u32,
    pub(crate) body_crc: u32,
    pub(crate) seen_runs: u32,
    /// A version-1 header: its segment must be scanned for what the current header records.
    pub(crate) legacy: bool,
}

/// A version-1 header (see [`LEGACY_VERSION`]), if `bytes` start with a valid one.
fn decode_legacy(bytes: &[u8], base_offset: u64) -> Option<Header> {
    let header = bytes.get(..LEGACY_HEADER_LEN)?;
    if u32_at(header, 0) != MAGIC
        || u32_at(header, 4) != u32::from(LEGACY_VERSION) | ((ENTRY_LEN as u32) << 16)
        || crc32c::crc32c(header.get(..48)?) != u32_at(header, 48)
        || u32_at(header, 52) != 0
    {
        return None;
    }
    let summary = Summary {
        base_offset: u64_at(header, 8),
        next_offset: u64_at(header, 16),
        segment_bytes: u64_at(header, 24),
        max_ts: u64_at(header, 32) as i64,
        ..Summary::empty(base_offset)
    };
    if summary.base_offset != base_offset || summary.next_offset < base_offset {
        return None;
    }
    Some(Header {
        summary,
        entry_count: u32_at(header, 40),
        filter_len: 0,
        body_crc: u32_at(header, 44),
        seen_runs: 0,
        legacy: true,
    })
}

/// Reads the header at the start of `bytes`; `None` if it is not a valid index header (current
/// or version 1) for a segment at `base_offset`.
pub(crate) fn decode_header(bytes: &[u8], base_offset: u64) -> Option<Header> {
    if u32_at(bytes, 4) & 0xFFFF == u32::from(LEGACY_VERSION) {
        return decode_legacy(bytes, base_offset);
    }
    let header = bytes.get(..HEADER_LEN)?;
    let flags = u32_at(header, 44);
    if u32_at(header, 0) != MAGIC
        || u32_at(header, 4) != u32::from(VERSION) | ((ENTRY_LEN as u32) << 16)
        || flags & !FLAG_COMPACTED != 0
        || crc32c::crc32c(header.get(..92)?) != u32_at(header, 92)
    {
        return None;
    }
    let cleaned = u64_at(header, 72) as i64;
    let summary = Summary {
        base_offset: u64_at(header, 8),
        next_offset: u64_at(header, 16),
        segment_bytes: u64_at(header, 24),
        max_ts: u64_at(header, 32) as i64,
        record_count: u64_at(header, 48),
        tombstones: u64_at(header, 56),
        min_tombstone_ts: u64_at(header, 64) as i64,
        cleaned_ms: (flags & FLAG_COMPACTED != 0).then_some(cleaned),
    };
    if summary.base_offset != base_offset || summary.next_offset < base_offset {
        return None;
    }
    Some(Header {
        summary,
        entry_count: u32_at(header, 40),
        filter_len: u32_at(header, 80),
        body_crc: u32_at(header, 84),
        seen_runs: u32_at(header, 88),
        legacy: false,
    })
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
        let entries_len = header.entry_count as usize * ENTRY_LEN;
        let tail_len = header.filter_len as usize + header.seen_runs as usize * RUN_LEN;
        if body.len() != entries_len + tail_len || crc32c::crc32c(body) != header.body_crc {
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
            Entries::Mapped(map) => {
                let tail_len = u32_at(map, 80) as usize + u32_at(map, 88) as usize * RUN_LEN;
                map.len().saturating_sub(HEADER_LEN + tail_len) / ENTRY_LEN
            }
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

    /// The encoded key filter of a mapped index file, if it has one.
    pub(crate) fn filter_bytes(&self) -> Option<&[u8]> {
        let Entries::Mapped(map) = self else { return None };
        let filter_len = u32_at(map, 80) as usize;
        let start = HEADER_LEN + self.len() * ENTRY_LEN;
        (filter_len > 0).then(|| map.get(start..start + filter_len)).flatten()
    }

    /// The first-seen runs of a mapped index file.
    pub(crate) fn seen_runs(&self) -> Vec<SeenRun> {
        let Entries::Mapped(map) = self else { return Vec::new() };
        let start = HEADER_LEN + self.len() * ENTRY_LEN + u32_at(map, 80) as usize;
        map.get(start..)
            .unwrap_or_default()
            .chunks_exact(RUN_LEN)
            .map(|run| SeenRun { offset: u64_at(run, 0), seen_ms: u64_at(run, 8) as i64 })
            .collect()
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
        Summary {
            base_offset: 100,
            next_offset: 200,
            segment_bytes: 9000,
            max_ts: 5,
            record_count: 70,
            tombstones: 3,
            min_tombstone_ts: -4,
            cleaned_ms: Some(1_700_000_000_000),
        }
    }

    fn entries() -> Vec<Entry> {
        vec![Entry { rel_offset: 10, position: 4100 }, Entry { rel_offset: 50, position: 8200 }]
    }

    #[test]
    fn encoded_index_decodes_and_looks_up() {
        let bytes = encode(&summary(), &entries(), b"filter bytes", &[SeenRun { offset: 150, seen_ms: 77 }]);
        let header = decode_header(&bytes, 100).unwrap();
        assert_eq!(header.summary, summary());
        let index = Entries::from_mapping(Mapping::from_bytes(bytes), &header).unwrap();
        assert_eq!(index.len(), 2);
        assert_eq!(index.filter_bytes(), Some(&b"filter bytes"[..]));
        assert_eq!(index.seen_runs(), [SeenRun { offset: 150, seen_ms: 77 }]);
        let position = |rel| index.floor(rel).position;
        assert_eq!(position(0), 0);
        assert_eq!(position(9), 0);
        assert_eq!(position(10), 4100);
        assert_eq!(position(49), 4100);
        assert_eq!(index.floor(99), Entry { rel_offset: 50, position: 8200 });
    }

    #[test]
    fn damaged_index_is_refused() {
        let bytes = encode(&summary(), &entries(), b"filter bytes", &[SeenRun { offset: 150, seen_ms: 77 }]);
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
