//! Readers: sequential reads from any offset, concurrent with the writer.
//!
//! A reader never reads past what the writer has published: the log's end offset and, inside the
//! active segment, its published length (DESIGN §4). Sealed segments are read through a memory
//! mapping, and records borrow their keys and values straight from it; the active segment is
//! read with positional reads into the reader's buffer. Every batch is checked (magic, checksum,
//! offset) as it is read; a bad one is [`Error::Corruption`], never skipped.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;

use cairn_fs::Mapping;

use crate::batch::{self, BatchInfo};
use crate::error::{CorruptionKind, Error, Result};
use crate::locate::{SegmentId, ValueLocation};
use crate::log::Shared;
use crate::record::{OwnedRecord, RecordView};
use crate::segment::{FileScan, Segment, Step};
use crate::segment_list;
use crate::sync::Ordering;

/// How far a reader reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadLimit {
    /// Every record written to the files ([`Log::written_offset`](crate::Log::written_offset)),
    /// durable or not.
    #[default]
    Written,
    /// Only records known durable ([`Log::durable_offset`](crate::Log::durable_offset)).
    Durable,
}

/// A sequential reader of a [`Log`](crate::Log), from [`Log::reader`](crate::Log::reader).
///
/// [`Reader::next_batch`] returns the next batch (or the rest of one, when the reader started
/// inside it); records borrow from the reader, so a batch must be dropped before the next call.
/// A reader that reaches the end returns `None` and can be called again later to see records
/// written since.
#[derive(Debug)]
pub struct Reader {
    shared: Arc<Shared>,
    limit: ReadLimit,
    /// The next offset to return.
    next: u64,
    /// Truncations seen; a change means the cursor may point at removed bytes.
    epoch: u64,
    cursor: Option<Cursor>,
    /// The segments from the one holding `next` on, as the segment list had them when the reader
    /// last took them: a compaction swap does not move a reader off the segments it holds.
    ahead: VecDeque<Arc<Segment>>,
    scan: FileScan,
}

/// Where the reader is: a segment (held, so it stays readable even if removed from the log)
/// and the position and base offset of the next batch in it.
#[derive(Debug)]
struct Cursor {
    segment: Arc<Segment>,
    map: Option<Arc<Mapping>>,
    position: u64,
    expected: u64,
}

/// A batch found by [`Reader::advance`], to be viewed from the cursor's bytes.
struct Found {
    position: u64,
    info: BatchInfo,
    /// The reader's position before this batch.
    from: u64,
}

impl Reader {
    pub(crate) fn new(shared: Arc<Shared>, offset: u64, limit: ReadLimit) -> Result<Reader> {
        let epoch = check_offset(&shared, offset)?;
        let ahead = segment_list::ahead_of(&shared.segments(), offset);
        Ok(Reader { shared, limit, next: offset, epoch, cursor: None, ahead, scan: FileScan::default() })
    }

    /// The offset of the next record this reader returns.
    pub fn position(&self) -> u64 {
        self.next
    }

    /// Moves the reader to `offset`.
    ///
    /// # Errors
    /// [`Error::OffsetOutOfRange`] if `offset` is below the start or past the written end.
    pub fn seek(&mut self, offset: u64) -> Result<()> {
        self.epoch = check_offset(&self.shared, offset)?;
        self.next = offset;
        self.cursor = None;
        self.ahead = segment_list::ahead_of(&self.shared.segments(), offset);
        Ok(())
    }

    /// The next batch of records from the reader's position, or `None` if there is nothing more
    /// to read now.
    ///
    /// # Errors
    /// [`Error::Corruption`] for a damaged batch (naming the file and position);
    /// [`Error::ReaderTruncated`] if a truncation removed records this reader had passed (again
    /// on every call, until [`Reader::seek`] moves it);
    /// [`Error::OffsetOutOfRange`] if the reader's position is no longer in the log;
    /// [`Error::Io`] if reading fails.
    pub fn next_batch(&mut self) -> Result<Option<BatchView<'_>>> {
        loop {
            let Some(found) = self.advance()? else {
                return Ok(None);
            };
            // Records before the reader's position are skipped; a compacted stretch may leave
            // none in this batch, and then the next one is read.
            let skip = batch::records_before(self.found_bytes(&found), &found.info, found.from);
            if skip < found.info.count {
                let Some(cursor) = self.cursor.as_ref() else {
                    return Ok(None);
                };
                let bytes = self.found_bytes(&found);
                return Ok(Some(BatchView {
                    bytes,
                    info: found.info,
                    skip,
                    file: &cursor.segment.path,
                    segment: cursor.segment.id,
                    position: found.position,
                }));
            }
        }
    }

    /// The bytes of a batch found by [`Reader::advance`], from the cursor's mapping or buffer.
    fn found_bytes(&self, found: &Found) -> &[u8] {
        let length = found.info.len();
        match self.cursor.as_ref().and_then(|c| c.map.as_ref()) {
            Some(map) => {
                map.get(found.position as usize..found.position as usize + length).unwrap_or_default()
            }
            None => self.scan.window(found.position, length),
        }
    }

    /// Turns the reader into an iterator of owned records.
    pub fn into_records(self) -> OwnedRecords {
        OwnedRecords { reader: self, pending: VecDeque::new(), failed: false }
    }

    fn read_limit(&self) -> u64 {
        let written = self.shared.end.load();
        match self.limit {
            ReadLimit::Written => written,
            ReadLimit::Durable => self.shared.commit.durable().min(written),
        }
    }

    /// Finds the segment holding `self.next` and the batch to start scanning from: among the
    /// segments the reader holds, or, once it has read past them all, in the segment list.
    fn locate(&mut self) -> Result<Cursor> {
        segment_list::pass_behind(&mut self.ahead, self.next);
        let stale = self.ahead.front().is_none_or(|front| {
            let passed = self.ahead.len() == 1
                && front.sealed_info().is_some_and(|s| s.summary.next_offset <= self.next);
            front.base > self.next || passed
        });
        if stale {
            self.ahead = segment_list::ahead_of(&self.shared.segments(), self.next);
        }
        let Some(segment) = self.ahead.front() else {
            let start = self.shared.start_offset();
            return Err(Error::OffsetOutOfRange { offset: self.next, start, end: self.shared.end.load() });
        };
        let (position, expected) =
            segment.seek(self.shared.fs.as_ref(), self.next, self.shared.options.index_interval_bytes)?;
        let map = match segment.sealed_info() {
            Some(sealed) => Some(segment.data(sealed)?),
            None => None,
        };
        Ok(Cursor { segment: Arc::clone(segment), map, position, expected })
    }

    /// Notices truncations since the reader last looked: if one cut below the reader's
    /// position, what the reader returned is gone, so it fails (until moved with `seek`);
    /// otherwise it drops its cursor, which may point into a replaced file.
    fn check_truncations(&mut self) -> Result<()> {
        let epoch = self.shared.truncations.load(Ordering::Acquire);
        if epoch == self.epoch {
            return Ok(());
        }
        let lowest = self.shared.truncated_since(self.epoch);
        if let Some(cut) = lowest
            && cut < self.next
        {
            return Err(Error::ReaderTruncated { position: self.next, end: cut });
        }
        self.epoch = epoch;
        self.cursor = None;
        self.ahead.clear();
        Ok(())
    }

    /// Moves to the next batch holding `self.next` or later, within the read limit.
    fn advance(&mut self) -> Result<Option<Found>> {
        loop {
            // The limit first: a truncation publishes its epoch before its new end, so a limit
            // that already counts records appended after a truncation comes with its epoch.
            let limit = self.read_limit();
            self.check_truncations()?;
            if self.next >= limit {
                return Ok(None);
            }
            if self.cursor.is_none() {
                // A new cursor may be on another file: the scan buffer holds the old one's.
                self.scan.reset();
                self.cursor = Some(self.locate()?);
            }
            let Some(cursor) = self.cursor.as_mut() else { continue };
            let segment = Arc::clone(&cursor.segment);
            let found = match (&cursor.map, segment.sealed_info()) {
                (Some(map), Some(sealed)) => {
                    let end = sealed.summary.segment_bytes;
                    if cursor.position >= end {
                        if cursor.expected != sealed.summary.next_offset {
                            return Err(Error::corruption(
                                &segment.path,
                                end,
                                CorruptionKind::OffsetMismatch {
                                    expected: sealed.summary.next_offset,
                                    found: cursor.expected,
                                },
                            ));
                        }
                        None
                    } else {
                        let bytes = map.get(cursor.position as usize..end as usize).unwrap_or_default();
                        let info = batch::check(bytes, cursor.expected)
                            .map_err(|kind| Error::corruption(&segment.path, cursor.position, kind))?;
                        Some((cursor.position, info))
                    }
                }
                _ => {
                    let published = segment.published.load();
                    self.scan.seek(cursor.position);
                    let step = self
                        .scan
                        .next(segment.file.as_ref(), published, cursor.expected)
                        .map_err(|e| Error::io("read", &segment.path, e))?;
                    match step {
                        Step::Batch { position, info, .. } => Some((position, info)),
                        Step::End => None,
                        Step::Invalid { position, kind } => {
                            return Err(Error::corruption(&segment.path, position, kind));
                        }
                    }
                }
            };
            let Some((position, info)) = found else {
                // The end of this segment. Once it is sealed, the rest is in the next segment.
                if segment.sealed_info().is_none() {
                    return Ok(None);
                }
                let next = self.locate()?;
                if Arc::ptr_eq(&next.segment, &segment) {
                    return Ok(None);
                }
                self.scan.reset();
                self.cursor = Some(next);
                continue;
            };
            if info.next_offset() > limit {
                // Written after the limit was read, or not yet durable: not now.
                return Ok(None);
            }
            cursor.position = position + info.length as u64;
            cursor.expected = info.next_offset();
            if info.next_offset() <= self.next {
                continue;
            }
            // A truncation may have happened since the check above (a reader can wait on the
            // segment list while one cuts a file). Bytes of the history after it are published
            // only after its epoch, so seeing the same epoch now means these bytes are not from
            // it; otherwise start over, where the check decides.
            if self.shared.truncations.load(Ordering::Acquire) != self.epoch {
                continue;
            }
            let from = self.next;
            self.next = info.next_offset();
            return Ok(Some(Found { position, info, from }));
        }
    }
}

/// Checks that `offset` is in the log and returns the truncation epoch it was checked against:
/// the end and the epoch are read as a consistent pair (a truncation bumps the epoch before it
/// publishes its new end), so that a reader never holds an epoch newer than the end it checked.
fn check_offset(shared: &Shared, offset: u64) -> Result<u64> {
    loop {
        let epoch = shared.truncations.load(Ordering::Acquire);
        let start = shared.start_offset();
        let end = shared.end.load();
        if shared.truncations.load(Ordering::Acquire) != epoch {
            continue;
        }
        if offset < start || offset > end {
            return Err(Error::OffsetOutOfRange { offset, start, end });
        }
        return Ok(epoch);
    }
}

/// A batch read from the log, borrowing its bytes from the reader.
#[derive(Clone, Copy, Debug)]
pub struct BatchView<'a> {
    bytes: &'a [u8],
    info: BatchInfo,
    /// Records at the start of the batch that precede the reader's start offset.
    skip: u32,
    file: &'a Path,
    segment: SegmentId,
    position: u64,
}

impl<'a> BatchView<'a> {
    /// Where the value of `record`, one of this batch's records, lies in the log's files (for
    /// [`SegmentSet::read_value`](crate::SegmentSet::read_value)); `None` for a record that is
    /// not from this batch.
    pub fn value_location(&self, record: &RecordView<'a>) -> Option<ValueLocation> {
        let start = self.bytes.as_ptr() as usize;
        let key_end = (record.key.as_ptr() as usize).checked_add(record.key.len())?;
        let len = record.value.map_or(0, <[u8]>::len);
        let within = key_end.checked_sub(start)?;
        if within + len > self.bytes.len() {
            return None;
        }
        let position = u32::try_from(self.position + within as u64).ok()?;
        Some(ValueLocation { segment: self.segment, position, len: len as u32 })
    }

    /// The offset of the first record this view yields.
    pub fn first_offset(&self) -> u64 {
        if self.info.sparse {
            return self.records().next().and_then(Result::ok).map_or(self.next_offset(), |r| r.offset);
        }
        self.info.base_offset + u64::from(self.skip)
    }

    /// One past the last offset the batch covers (after the last record, and after any
    /// offsets compaction emptied at its end).
    pub fn next_offset(&self) -> u64 {
        self.info.next_offset()
    }

    /// The batch's length in the file, in bytes, header included.
    pub fn encoded_len(&self) -> u64 {
        u64::from(self.info.length)
    }

    /// How many records this view yields.
    pub fn len(&self) -> usize {
        (self.info.count - self.skip) as usize
    }

    /// Whether the view yields no records (never, for views returned by a reader).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The largest timestamp among the batch's records.
    pub fn max_timestamp_ms(&self) -> i64 {
        self.info.max_ts
    }

    /// The records, borrowing keys and values from the batch.
    pub fn records(&self) -> BatchRecords<'a> {
        BatchRecords {
            inner: batch::Records::new(self.bytes, &self.info),
            skip: self.skip,
            file: self.file,
            position: self.position,
        }
    }
}

/// The records of a [`BatchView`].
#[derive(Clone, Debug)]
pub struct BatchRecords<'a> {
    inner: batch::Records<'a>,
    skip: u32,
    file: &'a Path,
    position: u64,
}

impl<'a> Iterator for BatchRecords<'a> {
    type Item = Result<RecordView<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let item = self.inner.next()?.map_err(|kind| Error::corruption(self.file, self.position, kind));
            if self.skip > 0 && item.is_ok() {
                self.skip -= 1;
                continue;
            }
            return Some(item);
        }
    }
}

/// An iterator of owned records over a [`Reader`], from [`Reader::into_records`]. It ends at the
/// end of what is readable now, or after the first error.
#[derive(Debug)]
pub struct OwnedRecords {
    reader: Reader,
    pending: VecDeque<OwnedRecord>,
    failed: bool,
}

impl OwnedRecords {
    /// The reader back, positioned after the last record returned, or `None` while records
    /// fetched from the log are still waiting in the iterator.
    pub fn into_reader(self) -> Option<Reader> {
        self.pending.is_empty().then_some(self.reader)
    }
}

impl Iterator for OwnedRecords {
    type Item = Result<OwnedRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(record) = self.pending.pop_front() {
            return Some(Ok(record));
        }
        if self.failed {
            return None;
        }
        let batch = match self.reader.next_batch() {
            Ok(Some(batch)) => batch,
            Ok(None) => return None,
            Err(e) => {
                self.failed = true;
                return Some(Err(e));
            }
        };
        for record in batch.records() {
            match record {
                Ok(record) => self.pending.push_back(record.to_owned_record()),
                Err(e) => {
                    self.failed = true;
                    self.pending.clear();
                    return Some(Err(e));
                }
            }
        }
        self.pending.pop_front().map(Ok)
    }
}
