//! Point reads: where a record's value lies in the log's files, and a set of segments to read it
//! from without scanning (a store's key directory, Bitcask's "keydir").
//!
//! A [`ValueLocation`] names a segment by a [`SegmentId`], unique to one segment file generation
//! within this process: a segment rewritten by compaction or cut by truncation gets a new one, so
//! a location can never silently point into the wrong generation of a file. A [`SegmentSet`]
//! holds the segments (and so their files and mappings) it was made from: a compaction swap or
//! a truncation does not take them away from its holder, so locations into them stay readable
//! until the holder lets the set go.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{CorruptionKind, Error, Result};
use crate::segment::Segment;

/// Hands out segment ids. It publishes nothing but uniqueness, so it is std's atomic even
/// under loom (no model reads it) and `Relaxed`.
static NEXT_SEGMENT_ID: AtomicU64 = AtomicU64::new(1);

/// Identifies one segment file generation of a log within this process; never reused, not
/// persistent (a reopened log's segments get new ids).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentId(u64);

impl SegmentId {
    pub(crate) fn next() -> SegmentId {
        SegmentId(NEXT_SEGMENT_ID.fetch_add(1, Ordering::Relaxed))
    }
}

/// Where a record's value lies: its segment, the byte position of the value in the segment
/// file, and its length. The record's key ends where the value starts, and reads check it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ValueLocation {
    /// The segment holding the record.
    pub segment: SegmentId,
    /// The byte position of the value in the segment file (where the key ends).
    pub position: u32,
    /// The value's length in bytes (0 for a tombstone).
    pub len: u32,
}

/// What a [`SegmentSet`] knows of one of its segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SegmentInfo {
    /// The segment's id in this process.
    pub id: SegmentId,
    /// Its base offset (its file's name).
    pub base_offset: u64,
    /// Whether it is sealed (its bytes never change again).
    pub sealed: bool,
    /// Bytes of published batches: for the active segment, as of when the set was made.
    pub bytes: u64,
    /// Records in a sealed segment (`None` for the active one).
    pub records: Option<u64>,
    /// When compaction wrote it (milliseconds since the Unix epoch), or `None` if appends did
    /// (or if it became the active segment again after a truncation).
    pub compacted_ms: Option<i64>,
    /// The checksum of its first batch (`None` if it has none, or it could not be read): tells
    /// a segment compaction rewrote from the one appends wrote at the same base, even after a
    /// truncation made the rewritten one active again.
    pub first_batch_crc: Option<u32>,
}

/// Segments to read values from by [`ValueLocation`], from
/// [`Log::segment_set`](crate::Log::segment_set). Cheap to clone; immutable (combine sets with
/// [`SegmentSet::merged`] and [`SegmentSet::without`]).
///
/// A set keeps its segments readable after the log has replaced or removed them; it holds
/// their files (and, for sealed ones, their mappings) open until it is dropped, so a holder
/// should let go of segments it no longer needs.
#[derive(Clone, Debug, Default)]
pub struct SegmentSet {
    /// Sorted by id.
    segments: Arc<[Arc<Segment>]>,
}

impl SegmentSet {
    pub(crate) fn of(segments: &[Arc<Segment>]) -> SegmentSet {
        let mut list = segments.to_vec();
        list.sort_by_key(|s| s.id);
        SegmentSet { segments: list.into() }
    }

    fn find(&self, id: SegmentId) -> Option<&Arc<Segment>> {
        let at = self.segments.binary_search_by_key(&id, |s| s.id).ok()?;
        self.segments.get(at)
    }

    /// Whether the set holds the segment `id`.
    pub fn contains(&self, id: SegmentId) -> bool {
        self.find(id).is_some()
    }

    /// The segments of both sets.
    pub fn merged(&self, other: &SegmentSet) -> SegmentSet {
        let mut list: Vec<Arc<Segment>> =
            self.segments.iter().chain(other.segments.iter()).cloned().collect();
        list.sort_by_key(|s| s.id);
        list.dedup_by_key(|s| s.id);
        SegmentSet { segments: list.into() }
    }

    /// The set without the segments `ids`.
    pub fn without(&self, ids: &[SegmentId]) -> SegmentSet {
        let list: Vec<Arc<Segment>> =
            self.segments.iter().filter(|s| !ids.contains(&s.id)).cloned().collect();
        SegmentSet { segments: list.into() }
    }

    /// What the set knows of each of its segments, by id.
    pub fn infos(&self) -> Vec<SegmentInfo> {
        self.segments
            .iter()
            .map(|s| {
                let sealed = s.sealed_info();
                SegmentInfo {
                    id: s.id,
                    base_offset: s.base,
                    sealed: sealed.is_some(),
                    bytes: s.published.load(),
                    records: sealed.map(|x| x.summary.record_count),
                    compacted_ms: sealed.and_then(|x| x.summary.cleaned_ms),
                    first_batch_crc: first_batch_crc(s),
                }
            })
            .collect()
    }

    /// The value at `location`, whose record's key must be `key`: borrowed from the segment's
    /// mapping if it is sealed, read into `scratch` if it is the active one. Batch checksums are
    /// not verified here (they were when the location was learned, by an append, a compaction
    /// or a read of its batch); the key check catches a location that does not belong to `key`.
    ///
    /// # Errors
    /// [`Error::UnknownSegment`] if the set does not hold the segment;
    /// [`Error::Corruption`] with [`CorruptionKind::LocationMismatch`] if the location lies
    /// outside the segment's published bytes or the bytes before it are not `key`;
    /// [`Error::Io`] if mapping or reading the file fails.
    pub fn read_value<'a>(
        &'a self,
        location: ValueLocation,
        key: &[u8],
        scratch: &'a mut Vec<u8>,
    ) -> Result<&'a [u8]> {
        let segment = self.find(location.segment).ok_or(Error::UnknownSegment { id: location.segment })?;
        let position = u64::from(location.position);
        let mismatch = || {
            Error::corruption(
                &segment.path,
                position,
                CorruptionKind::LocationMismatch { key_len: key.len() as u64, value_len: location.len },
            )
        };
        let start = position.checked_sub(key.len() as u64).ok_or_else(mismatch)?;
        let end = position + u64::from(location.len);
        if end > segment.published.load() {
            return Err(mismatch());
        }
        let bytes: &[u8] = match segment.sealed_info() {
            Some(sealed) => {
                let map = segment.data_ref(sealed)?;
                map.get(start as usize..end as usize).ok_or_else(mismatch)?
            }
            None => {
                scratch.clear();
                scratch.resize((end - start) as usize, 0);
                segment
                    .file
                    .read_exact_at(scratch, start)
                    .map_err(|e| Error::io("read", &segment.path, e))?;
                scratch
            }
        };
        let (found_key, value) = bytes.split_at(key.len());
        if found_key != key {
            return Err(mismatch());
        }
        Ok(value)
    }
}

/// The checksum word of a segment's first batch, if it has a whole header's worth of bytes.
fn first_batch_crc(segment: &Segment) -> Option<u32> {
    if segment.published.load() < crate::batch::HEADER_LEN as u64 {
        return None;
    }
    let mut word = [0u8; 4];
    segment.file.read_exact_at(&mut word, 4).ok()?;
    Some(u32::from_le_bytes(word))
}
