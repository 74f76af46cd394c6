//! The batch: the unit of atomicity and of checksum (docs/format.md, "Batch").
//!
//! ```text
//! 0   u32 magic        0xB7C3_1A5E, never zero
//! 4   u32 crc32c       of bytes [8, length)
//! 8   u32 length       of the whole batch, header included
//! 12  u16 version      1
//! 14  u16 flags        bit 0: sparse (records carry their offsets); others 0
//! 16  u64 base_offset  first offset the batch covers
//! 24  u32 count        records in the batch: at least 1, or 0 in a sparse batch
//! 28  u32 span         sparse: last offset covered minus base_offset; dense: reserved, 0
//! 32  i64 first_ts     timestamp of the first record (ms)
//! 40  i64 max_ts       largest timestamp in the batch (ms)
//! 48  records          count × ([sparse: varint offset delta,] varint zigzag ts delta,
//!                      varint key_len, varint value_len+1 or 0 for a tombstone, key, value)
//! ```
//! All integers little-endian. The checksum covers everything after itself, the base offset
//! included, so a well-formed batch copied to the wrong place does not validate at the offset
//! the reader expects.
//!
//! A batch covers offsets `[base_offset, base_offset + span]`, and batches tile the offsets of a
//! segment without gaps. Appends write dense batches (a record at every offset). Compaction
//! writes sparse ones: they keep the surviving records at their offsets, strictly increasing
//! deltas within the span, and may hold no record at all (a batch that only covers offsets
//! whose records were dropped).

use crate::error::CorruptionKind;
use crate::record::{Record, RecordView};

/// Marks the start of a batch. Not zero, not ASCII, no repeated byte.
pub(crate) const MAGIC: u32 = 0xB7C3_1A5E;
/// Bytes of the batch header.
pub(crate) const HEADER_LEN: usize = 48;
/// The only format version this build writes and reads.
pub(crate) const VERSION: u16 = 1;
/// The smallest possible batch: a header and one empty record (three one-byte varints).
pub(crate) const MIN_BATCH_LEN: usize = HEADER_LEN + 3;
/// Flag bit: the records carry their offsets (a batch written by compaction).
pub(crate) const FLAG_SPARSE: u16 = 1;

/// What a valid batch header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BatchInfo {
    pub(crate) length: u32,
    pub(crate) base_offset: u64,
    pub(crate) count: u32,
    /// Last offset covered minus the base offset.
    pub(crate) span: u32,
    pub(crate) sparse: bool,
    pub(crate) first_ts: i64,
    pub(crate) max_ts: i64,
    /// Tombstones among the records, and their smallest timestamp (`i64::MAX` if none): known
    /// once the records were read ([`check`], or the writer), 0 and `i64::MAX` before.
    pub(crate) tombstones: u32,
    pub(crate) min_tombstone_ts: i64,
}

impl BatchInfo {
    /// One past the last offset the batch covers.
    pub(crate) fn next_offset(&self) -> u64 {
        self.base_offset.saturating_add(u64::from(self.span)).saturating_add(1)
    }

    pub(crate) fn len(&self) -> usize {
        self.length as usize
    }
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    let mut word = [0; 2];
    if let Some(src) = bytes.get(at..at + 2) {
        word.copy_from_slice(src);
    }
    u16::from_le_bytes(word)
}

pub(crate) fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0; 4];
    if let Some(src) = bytes.get(at..at + 4) {
        word.copy_from_slice(src);
    }
    u32::from_le_bytes(word)
}

pub(crate) fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0; 8];
    if let Some(src) = bytes.get(at..at + 8) {
        word.copy_from_slice(src);
    }
    u64::from_le_bytes(word)
}

fn put_at(bytes: &mut [u8], at: usize, value: &[u8]) {
    if let Some(target) = bytes.get_mut(at..at + value.len()) {
        target.copy_from_slice(value);
    }
}

/// Reads the fixed part of the header at the start of `bytes` (magic, format, length) and
/// returns the batch length, without looking at the checksum. `bytes` may be only the header or
/// hold more; `available` is how many bytes the file has from the batch's start, so that a
/// length running past the file is refused before anything is allocated for it.
pub(crate) fn peek_length(bytes: &[u8], available: u64) -> Result<usize, CorruptionKind> {
    if bytes.len() < 4 {
        return Err(CorruptionKind::Truncated { needed: HEADER_LEN as u64, available });
    }
    let magic = u32_at(bytes, 0);
    if magic != MAGIC {
        return Err(CorruptionKind::BadMagic { found: magic });
    }
    if bytes.len() < HEADER_LEN {
        return Err(CorruptionKind::Truncated { needed: HEADER_LEN as u64, available });
    }
    let version = u16_at(bytes, 12);
    let flags = u16_at(bytes, 14);
    if version != VERSION || flags & !FLAG_SPARSE != 0 {
        return Err(CorruptionKind::UnsupportedFormat { version, flags });
    }
    let length = u32_at(bytes, 8);
    if (length as usize) < HEADER_LEN {
        return Err(CorruptionKind::BadLength { length: u64::from(length) });
    }
    if u64::from(length) > available {
        return Err(CorruptionKind::Truncated { needed: u64::from(length), available });
    }
    Ok(length as usize)
}

/// Reads the header at the start of `bytes` and checks magic, format, length and checksum, but
/// not the records. `bytes` may extend past the batch.
pub(crate) fn check_header(bytes: &[u8]) -> Result<BatchInfo, CorruptionKind> {
    let length = peek_length(bytes, bytes.len() as u64)?;
    let batch = bytes.get(..length).unwrap_or_default();
    let stored = u32_at(bytes, 4);
    let computed = crc32c::crc32c(batch.get(8..).unwrap_or_default());
    if stored != computed {
        return Err(CorruptionKind::Checksum { stored, computed });
    }
    let sparse = u16_at(bytes, 14) & FLAG_SPARSE != 0;
    let count = u32_at(bytes, 24);
    // A dense batch keeps byte 28 reserved, as the first batches written did: its span follows
    // from its count.
    let span = match (sparse, u32_at(bytes, 28)) {
        (true, span) => span,
        (false, 0) => count.saturating_sub(1),
        (false, _) => {
            return Err(CorruptionKind::UnsupportedFormat {
                version: u16_at(bytes, 12),
                flags: u16_at(bytes, 14),
            });
        }
    };
    Ok(BatchInfo {
        length: length as u32,
        base_offset: u64_at(bytes, 16),
        count,
        span,
        sparse,
        tombstones: 0,
        min_tombstone_ts: i64::MAX,
        first_ts: u64_at(bytes, 32) as i64,
        max_ts: u64_at(bytes, 40) as i64,
    })
}

/// Fully validates the batch at the start of `bytes`: header, checksum, that it starts at
/// `expected_offset`, and that its records parse to exactly its length and count.
pub(crate) fn check(bytes: &[u8], expected_offset: u64) -> Result<BatchInfo, CorruptionKind> {
    check_each(bytes, expected_offset, |_| true)
}

/// [`check`], handing every record to `each` as it is parsed (so that a caller reads each
/// record once); `each` returning `false` stops the check there, with the counts so far. On an
/// error, `each` may have seen records of the batch before the bad one.
pub(crate) fn check_each<'a>(
    bytes: &'a [u8],
    expected_offset: u64,
    mut each: impl FnMut(RecordView<'a>) -> bool,
) -> Result<BatchInfo, CorruptionKind> {
    let info = check_header(bytes)?;
    if info.base_offset != expected_offset {
        return Err(CorruptionKind::OffsetMismatch { expected: expected_offset, found: info.base_offset });
    }
    // A dense batch has a record at every offset it covers; only a sparse one may have none.
    if (!info.sparse && info.count == 0) || (info.sparse && u64::from(info.count) > u64::from(info.span) + 1)
    {
        return Err(CorruptionKind::BadRecord { record: 0 });
    }
    // Offsets must stay below u64::MAX (a segment named near the top of the offset space could
    // otherwise hold a batch whose offsets overflow); the first record past it is the bad one.
    let room = u64::MAX - info.base_offset;
    if u64::from(info.span) >= room {
        return Err(CorruptionKind::BadRecord { record: u32::try_from(room).unwrap_or(u32::MAX) });
    }
    let mut info = info;
    let mut records = Records::new(bytes.get(..info.len()).unwrap_or_default(), &info);
    for _ in 0..info.count {
        let Some(record) = records.next().transpose()? else { break };
        if record.value.is_none() {
            info.tombstones += 1;
            info.min_tombstone_ts = info.min_tombstone_ts.min(record.timestamp_ms);
        }
        if !each(record) {
            return Ok(info);
        }
    }
    if !records.body.is_empty() || records.index != info.count {
        return Err(CorruptionKind::BadRecord { record: records.index });
    }
    Ok(info)
}

/// Iterates over the records of a batch whose header was checked.
#[derive(Clone, Debug)]
pub(crate) struct Records<'a> {
    body: &'a [u8],
    index: u32,
    count: u32,
    base_offset: u64,
    first_ts: i64,
    /// For a sparse batch: the span, and the delta of the previous record.
    sparse: Option<(u32, Option<u64>)>,
}

impl<'a> Records<'a> {
    /// `batch` is the whole batch, header included.
    pub(crate) fn new(batch: &'a [u8], info: &BatchInfo) -> Records<'a> {
        Records {
            body: batch.get(HEADER_LEN..).unwrap_or_default(),
            index: 0,
            count: info.count,
            base_offset: info.base_offset,
            first_ts: info.first_ts,
            sparse: info.sparse.then_some((info.span, None)),
        }
    }

    fn parse_one(&mut self) -> Option<RecordView<'a>> {
        let mut body = self.body;
        let offset_delta = match &mut self.sparse {
            None => u64::from(self.index),
            Some((span, previous)) => {
                let delta = read_varint(&mut body)?;
                if delta > u64::from(*span) || previous.is_some_and(|p| delta <= p) {
                    return None;
                }
                *previous = Some(delta);
                delta
            }
        };
        let delta = unzigzag(read_varint(&mut body)?);
        let key_len = usize::try_from(read_varint(&mut body)?).ok()?;
        let value_tag = read_varint(&mut body)?;
        let key = body.get(..key_len)?;
        body = body.get(key_len..)?;
        let value = match value_tag {
            0 => None,
            n => {
                let value_len = usize::try_from(n - 1).ok()?;
                let value = body.get(..value_len)?;
                body = body.get(value_len..)?;
                Some(value)
            }
        };
        self.body = body;
        Some(RecordView {
            offset: self.base_offset + offset_delta,
            timestamp_ms: self.first_ts.wrapping_add(delta),
            key,
            value,
        })
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<RecordView<'a>, CorruptionKind>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.index >= self.count {
            return None;
        }
        match self.parse_one() {
            Some(record) => {
                self.index += 1;
                Some(Ok(record))
            }
            None => {
                let record = self.index;
                self.index = self.count;
                Some(Err(CorruptionKind::BadRecord { record }))
            }
        }
    }
}

fn read_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn write_varint(buf: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        buf.push((value as u8) | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

fn varint_len(value: u64) -> usize {
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

/// The bytes `record` takes inside a batch whose first timestamp is `first_ts`.
pub(crate) fn record_len(record: &Record<'_>, first_ts: i64) -> usize {
    let value_tag = record.value.map_or(0, |v| v.len() as u64 + 1);
    varint_len(zigzag(record.timestamp_ms.wrapping_sub(first_ts)))
        + varint_len(record.key.len() as u64)
        + varint_len(value_tag)
        + record.key.len()
        + record.value.map_or(0, <[u8]>::len)
}

/// The bytes a batch of `records` takes, header included.
pub(crate) fn batch_len(records: &[Record<'_>]) -> u64 {
    let first_ts = records.first().map_or(0, |r| r.timestamp_ms);
    HEADER_LEN as u64 + records.iter().map(|r| record_len(r, first_ts) as u64).sum::<u64>()
}

/// What both kinds of batch builder keep: where the batch starts in its buffer, its base
/// offset, and what its records hold so far.
#[derive(Clone, Debug)]
struct Building {
    start: usize,
    base_offset: u64,
    count: u32,
    max_ts: i64,
    tombstones: u32,
    min_tombstone_ts: i64,
}

impl Building {
    /// Reserves a header at the end of `buf`.
    fn begin(buf: &mut Vec<u8>, base_offset: u64, max_ts: i64) -> Building {
        let start = buf.len();
        buf.resize(start + HEADER_LEN, 0);
        Building { start, base_offset, count: 0, max_ts, tombstones: 0, min_tombstone_ts: i64::MAX }
    }

    /// Appends a record's fields after any offset delta, its timestamp encoded against
    /// `first_ts`, and counts it.
    fn push(&mut self, buf: &mut Vec<u8>, record: &Record<'_>, first_ts: i64) {
        write_varint(buf, zigzag(record.timestamp_ms.wrapping_sub(first_ts)));
        write_varint(buf, record.key.len() as u64);
        write_varint(buf, record.value.map_or(0, |v| v.len() as u64 + 1));
        buf.extend_from_slice(record.key);
        if let Some(value) = record.value {
            buf.extend_from_slice(value);
        }
        self.count += 1;
        self.max_ts = self.max_ts.max(record.timestamp_ms);
        if record.value.is_none() {
            self.tombstones += 1;
            self.min_tombstone_ts = self.min_tombstone_ts.min(record.timestamp_ms);
        }
    }

    /// Fills in the header and the checksum. A sparse batch stores its `span` at byte 28; a
    /// dense one keeps that word reserved (0).
    fn seal(self, buf: &mut [u8], sparse: bool, span: u32, first_ts: i64) -> BatchInfo {
        let length = (buf.len() - self.start) as u32;
        let batch = buf.get_mut(self.start..).unwrap_or_default();
        let (flags, word28) = if sparse { (FLAG_SPARSE, span) } else { (0, 0) };
        put_at(batch, 0, &MAGIC.to_le_bytes());
        put_at(batch, 8, &length.to_le_bytes());
        put_at(batch, 12, &VERSION.to_le_bytes());
        put_at(batch, 14, &flags.to_le_bytes());
        put_at(batch, 16, &self.base_offset.to_le_bytes());
        put_at(batch, 24, &self.count.to_le_bytes());
        put_at(batch, 28, &word28.to_le_bytes());
        put_at(batch, 32, &first_ts.to_le_bytes());
        put_at(batch, 40, &self.max_ts.to_le_bytes());
        let crc = crc32c::crc32c(batch.get(8..).unwrap_or_default());
        put_at(batch, 4, &crc.to_le_bytes());
        BatchInfo {
            length,
            base_offset: self.base_offset,
            count: self.count,
            span,
            sparse,
            first_ts,
            max_ts: self.max_ts,
            tombstones: self.tombstones,
            min_tombstone_ts: self.min_tombstone_ts,
        }
    }
}

/// A batch being built at the end of a buffer; records can be added until it is sealed.
#[derive(Clone, Debug)]
pub(crate) struct OpenBatch {
    building: Building,
    pub(crate) first_ts: i64,
}

impl OpenBatch {
    /// Starts a batch at the end of `buf`, for records from `base_offset` on.
    pub(crate) fn begin(buf: &mut Vec<u8>, base_offset: u64, first_ts: i64) -> OpenBatch {
        OpenBatch { building: Building::begin(buf, base_offset, first_ts), first_ts }
    }

    /// Bytes the batch takes so far.
    pub(crate) fn len(&self, buf: &[u8]) -> usize {
        buf.len() - self.building.start
    }

    /// Appends a record. The caller has checked that lengths fit the format.
    pub(crate) fn push(&mut self, buf: &mut Vec<u8>, record: &Record<'_>) {
        self.building.push(buf, record, self.first_ts);
    }

    /// Fills in the header and checksum. The batch must hold at least one record.
    pub(crate) fn seal(self, buf: &mut [u8]) -> BatchInfo {
        let span = self.building.count.saturating_sub(1);
        self.building.seal(buf, false, span, self.first_ts)
    }
}

/// A sparse batch being built: records at increasing offsets, covering `[base, end)`.
#[derive(Clone, Debug)]
pub(crate) struct SparseBatch {
    building: Building,
    first_ts: Option<i64>,
}

impl SparseBatch {
    /// Starts a sparse batch at the end of `buf` covering offsets from `base_offset` on.
    pub(crate) fn begin(buf: &mut Vec<u8>, base_offset: u64) -> SparseBatch {
        // An empty batch keeps `i64::MIN` as its largest timestamp: it adds nothing.
        SparseBatch { building: Building::begin(buf, base_offset, i64::MIN), first_ts: None }
    }

    /// Bytes the batch takes so far.
    pub(crate) fn len(&self, buf: &[u8]) -> usize {
        buf.len() - self.building.start
    }

    pub(crate) fn base_offset(&self) -> u64 {
        self.building.base_offset
    }

    /// The bytes `record` would add at `offset`.
    pub(crate) fn record_len(&self, record: &Record<'_>, offset: u64) -> usize {
        varint_len(offset - self.building.base_offset)
            + record_len(record, self.first_ts.unwrap_or(record.timestamp_ms))
    }

    /// Appends `record` at `offset`, above every offset pushed so far and below `base + 2^32`.
    pub(crate) fn push(&mut self, buf: &mut Vec<u8>, record: &Record<'_>, offset: u64) {
        let first_ts = *self.first_ts.get_or_insert(record.timestamp_ms);
        write_varint(buf, offset - self.building.base_offset);
        self.building.push(buf, record, first_ts);
    }

    /// Fills in the header: the batch covers offsets up to `end` (exclusive), at most 2^32
    /// offsets from its base.
    pub(crate) fn seal(self, buf: &mut [u8], end: u64) -> BatchInfo {
        let span = (end - self.building.base_offset - 1) as u32;
        self.building.seal(buf, true, span, self.first_ts.unwrap_or(0))
    }
}

/// How many records of the (checked) batch lie before `offset`.
pub(crate) fn records_before(batch: &[u8], info: &BatchInfo, offset: u64) -> u32 {
    if offset <= info.base_offset {
        return 0;
    }
    if !info.sparse {
        return u32::try_from(offset - info.base_offset).unwrap_or(u32::MAX).min(info.count);
    }
    let before =
        Records::new(batch, info).take_while(|r| r.as_ref().is_ok_and(|r| r.offset < offset)).count();
    u32::try_from(before).unwrap_or(u32::MAX)
}

/// Encodes `records`, at the given offsets (increasing, from `base`), as one sparse batch
/// covering `[base, end)`.
pub(crate) fn encode_sparse(
    buf: &mut Vec<u8>,
    base: u64,
    end: u64,
    records: &[(u64, Record<'_>)],
) -> BatchInfo {
    let mut batch = SparseBatch::begin(buf, base);
    for (offset, record) in records {
        batch.push(buf, record, *offset);
    }
    batch.seal(buf, end)
}

/// Encodes `records` as one sealed batch starting at `base_offset`.
pub(crate) fn encode(buf: &mut Vec<u8>, base_offset: u64, records: &[Record<'_>]) -> BatchInfo {
    let first_ts = records.first().map_or(0, |r| r.timestamp_ms);
    let mut batch = OpenBatch::begin(buf, base_offset, first_ts);
    for record in records {
        batch.push(buf, record);
    }
    batch.seal(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let records = [
            Record::new(b"k1", Some(b"v1"), 1_000),
            Record::new(b"", None, 990),
            Record::new(b"key3", Some(b""), i64::MAX),
        ];
        let mut buf = Vec::new();
        encode(&mut buf, 42, &records);
        buf
    }

    #[test]
    fn encoded_batch_round_trips() {
        let buf = sample();
        let info = check(&buf, 42).unwrap();
        assert_eq!((info.base_offset, info.count, info.len()), (42, 3, buf.len()));
        assert_eq!(info.max_ts, i64::MAX);
        let records: Vec<_> = Records::new(&buf, &info).map(Result::unwrap).collect();
        assert_eq!(records[0].key, b"k1");
        assert_eq!(records[1].value, None);
        assert_eq!(records[1].timestamp_ms, 990);
        assert_eq!(records[2].value, Some(&b""[..]));
        assert_eq!(records[2].offset, 44);
        assert_eq!(records[2].timestamp_ms, i64::MAX);
    }

    #[test]
    fn batch_len_predicts_encoding() {
        let records = [Record::new(b"abc", Some(&[7; 300]), -5), Record::new(&[1; 200], None, 1 << 40)];
        let mut buf = Vec::new();
        encode(&mut buf, 0, &records);
        assert_eq!(batch_len(&records), buf.len() as u64);
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let buf = sample();
        for bit in 0..buf.len() * 8 {
            let mut damaged = buf.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(check(&damaged, 42).is_err(), "bit {bit} flip not detected");
        }
    }

    #[test]
    fn every_truncation_is_detected() {
        let buf = sample();
        for len in 0..buf.len() {
            assert!(check(&buf[..len], 42).is_err(), "cut at {len} not detected");
        }
    }

    #[test]
    fn zeros_never_parse() {
        assert_eq!(check(&[0; 128], 0), Err(CorruptionKind::BadMagic { found: 0 }));
    }

    #[test]
    fn batch_at_wrong_offset_is_rejected() {
        let buf = sample();
        assert_eq!(check(&buf, 41), Err(CorruptionKind::OffsetMismatch { expected: 41, found: 42 }));
    }

    fn sparse_sample() -> Vec<u8> {
        let mut buf = Vec::new();
        let records = [
            (100, Record::new(b"a", Some(b"1"), 5)),
            (103, Record::new(b"b", None, 9)),
            (140, Record::new(b"c", Some(b""), -2)),
        ];
        encode_sparse(&mut buf, 100, 150, &records);
        buf
    }

    #[test]
    fn a_sparse_batch_keeps_its_records_at_their_offsets() {
        let buf = sparse_sample();
        let info = check(&buf, 100).unwrap();
        assert!(info.sparse);
        assert_eq!((info.count, info.next_offset()), (3, 150));
        let records: Vec<_> = Records::new(&buf, &info).map(Result::unwrap).collect();
        let offsets: Vec<_> = records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, [100, 103, 140]);
        assert_eq!((records[1].value, records[2].timestamp_ms), (None, -2));
        assert_eq!(records_before(&buf, &info, 104), 2);
        assert_eq!(records_before(&buf, &info, 141), 3);
        assert_eq!(records_before(&buf, &info, 100), 0);
    }

    #[test]
    fn an_empty_sparse_batch_only_covers_offsets() {
        let mut buf = Vec::new();
        encode_sparse(&mut buf, 7, 1_000_007, &[]);
        let info = check(&buf, 7).unwrap();
        assert_eq!((info.count, info.next_offset(), info.max_ts), (0, 1_000_007, i64::MIN));
        assert_eq!(Records::new(&buf, &info).count(), 0);
    }

    #[test]
    fn every_flipped_bit_of_a_sparse_batch_is_detected() {
        let buf = sparse_sample();
        for bit in 0..buf.len() * 8 {
            let mut damaged = buf.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(check(&damaged, 100).is_err(), "bit {bit} flip not detected");
        }
        for len in 0..buf.len() {
            assert!(check(&buf[..len], 100).is_err(), "cut at {len} not detected");
        }
    }

    /// Rewrites the header fields of a batch and reseals its checksum.
    fn reseal(buf: &mut [u8], at: usize, value: &[u8]) {
        buf[at..at + value.len()].copy_from_slice(value);
        let crc = crc32c::crc32c(&buf[8..]);
        buf[4..8].copy_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn inconsistent_spans_and_offsets_are_refused_even_with_a_valid_checksum() {
        // A dense batch with something in its reserved word.
        let mut dense = sample();
        reseal(&mut dense, 28, &2u32.to_le_bytes());
        assert!(matches!(check(&dense, 42), Err(CorruptionKind::UnsupportedFormat { .. })));
        // A dense batch with no record.
        let mut empty = Vec::new();
        encode(&mut empty, 0, &[Record::new(b"k", None, 0)]);
        reseal(&mut empty, 24, &0u32.to_le_bytes());
        assert!(check(&empty, 0).is_err());
        // A sparse batch whose last record lies beyond its span.
        let mut short = sparse_sample();
        reseal(&mut short, 28, &39u32.to_le_bytes());
        assert!(check(&short, 100).is_err());
        // A sparse batch with more records than offsets.
        let mut crowded = sparse_sample();
        reseal(&mut crowded, 28, &1u32.to_le_bytes());
        assert!(check(&crowded, 100).is_err());
        // Offsets that do not increase.
        let mut buf = Vec::new();
        let twice = [(5, Record::new(b"a", None, 0)), (5, Record::new(b"b", None, 0))];
        encode_sparse(&mut buf, 5, 10, &twice);
        assert!(check(&buf, 5).is_err());
        // A span reaching past the last offset.
        let mut top = Vec::new();
        encode_sparse(&mut top, u64::MAX - 10, u64::MAX, &[]);
        reseal(&mut top, 28, &20u32.to_le_bytes());
        assert!(check(&top, u64::MAX - 10).is_err());
    }

    #[test]
    fn varints_round_trip() {
        for value in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut buf = Vec::new();
            write_varint(&mut buf, value);
            assert_eq!(buf.len(), varint_len(value));
            let mut slice = &buf[..];
            assert_eq!(read_varint(&mut slice), Some(value));
        }
        for value in [0, -1, 1, i64::MIN, i64::MAX] {
            assert_eq!(unzigzag(zigzag(value)), value);
        }
    }
}
