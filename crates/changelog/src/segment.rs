//! A segment: one `<base>.log` file of batches, its sparse index, and how it is read.
//!
//! A segment is *active* while the writer appends to it (readers see its bytes up to the
//! published length, through positional reads) and *sealed* once the writer has moved on (its
//! bytes never change again, so readers map it and read without copying).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use cairn_fs::{File, Mapping};

use crate::batch::{self, BatchInfo, HEADER_LEN};
use crate::error::{CorruptionKind, Error, Result};
use crate::filter::{KeyFilter, key_hash};
use crate::index::{Entries, Entry, Header, SeenRun, Summary};
use crate::locate::SegmentId;
use crate::sync::{AtomicBool, Mutex, Ordering, lock};
use crate::watermark::Watermark;

/// Digits in a segment's file name: every `u64` fits.
const NAME_DIGITS: usize = 20;
/// Suffix of segment data files.
pub(crate) const LOG_SUFFIX: &str = ".log";
/// Suffix of sealed segments' index files.
pub(crate) const INDEX_SUFFIX: &str = ".index";
/// Suffix of temporary files, removed on open.
pub(crate) const TEMP_SUFFIX: &str = ".tmp";

/// `00000000000000000042.log` for base offset 42.
pub(crate) fn log_name(base: u64) -> String {
    format!("{base:0NAME_DIGITS$}{LOG_SUFFIX}")
}

/// `00000000000000000042.index` for base offset 42.
pub(crate) fn index_name(base: u64) -> String {
    format!("{base:0NAME_DIGITS$}{INDEX_SUFFIX}")
}

/// The base offset in a segment or index file name with the given suffix.
pub(crate) fn parse_name(name: &str, suffix: &str) -> Option<u64> {
    let digits = name.strip_suffix(suffix)?;
    if digits.len() != NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Where a sealed segment's index entries come from.
#[derive(Debug)]
pub(crate) enum IndexSource {
    /// Built by scanning or by the writer; already in `entries`.
    Built,
    /// The `.index` file, whose header was checked at open; its entries are checked when first
    /// needed.
    File { path: PathBuf, header: Header },
}

/// What compaction needs of a compacted segment besides its summary: the filter of its keys
/// and when its records were first seen by compaction.
#[derive(Debug)]
pub(crate) struct CleanInfo {
    pub(crate) filter: KeyFilter,
    /// Increasing by offset; the first starts at the segment's base.
    pub(crate) runs: Vec<SeenRun>,
}

/// What is fixed once a segment is sealed.
#[derive(Debug)]
pub(crate) struct Sealed {
    pub(crate) summary: Summary,
    source: IndexSource,
    entries: OnceLock<Entries>,
    data: OnceLock<Arc<Mapping>>,
    clean: OnceLock<Arc<CleanInfo>>,
}

impl Sealed {
    pub(crate) fn built(summary: Summary, entries: Vec<Entry>) -> Sealed {
        let sealed = Sealed {
            summary,
            source: IndexSource::Built,
            entries: OnceLock::new(),
            data: OnceLock::new(),
            clean: OnceLock::new(),
        };
        let _ = sealed.entries.set(Entries::Memory(entries));
        sealed
    }

    /// Sets what compaction wrote into the index of a segment it produced.
    pub(crate) fn set_clean_info(&self, info: CleanInfo) {
        let _ = self.clean.set(Arc::new(info));
    }

    /// The entries of a sealed segment built in memory (none for one backed by its index file).
    pub(crate) fn memory_entries(&self) -> &[Entry] {
        match self.entries.get() {
            Some(Entries::Memory(entries)) => entries,
            _ => &[],
        }
    }

    pub(crate) fn from_index_file(path: PathBuf, header: Header) -> Sealed {
        Sealed {
            summary: header.summary,
            source: IndexSource::File { path, header },
            entries: OnceLock::new(),
            data: OnceLock::new(),
            clean: OnceLock::new(),
        }
    }
}

/// One segment file, shared by the writer, the segment list and readers.
#[derive(Debug)]
pub(crate) struct Segment {
    /// Unique to this segment file generation in this process (see [`SegmentId`]).
    pub(crate) id: SegmentId,
    pub(crate) base: u64,
    pub(crate) path: PathBuf,
    pub(crate) file: Box<dyn File>,
    /// Bytes of the file holding published batches. Readers never read past it.
    pub(crate) published: Watermark,
    /// Index entries of published batches while active.
    active_entries: Mutex<Vec<Entry>>,
    sealed: OnceLock<Sealed>,
    /// Whether the segment's index file (its durability marker) is written: from open, from a
    /// compaction pass, or from the first sync after its roll. Compaction and retention touch
    /// only marked segments (the sync writing a marker must not find its segment replaced).
    marked: AtomicBool,
}

impl crate::segment_list::Based for Segment {
    fn base(&self) -> u64 {
        self.base
    }
}

impl Segment {
    /// An active segment whose first `published` bytes hold the batches indexed by `entries`.
    pub(crate) fn active(
        base: u64,
        path: PathBuf,
        file: Box<dyn File>,
        published: u64,
        entries: Vec<Entry>,
    ) -> Segment {
        Segment {
            id: SegmentId::next(),
            base,
            path,
            file,
            published: Watermark::new(published),
            active_entries: Mutex::new(entries),
            sealed: OnceLock::new(),
            marked: AtomicBool::new(false),
        }
    }

    /// A sealed segment.
    pub(crate) fn sealed(base: u64, path: PathBuf, file: Box<dyn File>, sealed: Sealed) -> Segment {
        let segment = Segment {
            id: SegmentId::next(),
            base,
            path,
            file,
            published: Watermark::new(sealed.summary.segment_bytes),
            active_entries: Mutex::new(Vec::new()),
            sealed: OnceLock::new(),
            marked: AtomicBool::new(true),
        };
        let _ = segment.sealed.set(sealed);
        segment
    }

    /// Whether the segment's durability marker is written.
    pub(crate) fn is_marked(&self) -> bool {
        self.marked.load(Ordering::Acquire)
    }

    /// Records that the segment's durability marker is written.
    pub(crate) fn mark(&self) {
        self.marked.store(true, Ordering::Release);
    }

    pub(crate) fn sealed_info(&self) -> Option<&Sealed> {
        self.sealed.get()
    }

    /// Seals an active segment: its bytes will not change any more.
    pub(crate) fn seal(&self, summary: Summary) {
        let entries = std::mem::take(&mut *lock(&self.active_entries));
        let _ = self.sealed.set(Sealed::built(summary, entries));
    }

    /// Adds index entries for newly published batches (call before publishing them).
    pub(crate) fn push_entries(&self, entries: &[Entry]) {
        lock(&self.active_entries).extend_from_slice(entries);
    }

    /// A copy of the active index entries below `position` (for truncation).
    pub(crate) fn entries_below(&self, position: u64) -> Vec<Entry> {
        let entries = lock(&self.active_entries);
        entries.iter().copied().filter(|e| u64::from(e.position) < position).collect()
    }

    /// The mapped bytes of a sealed segment, mapped on first use.
    pub(crate) fn data(&self, sealed: &Sealed) -> Result<Arc<Mapping>> {
        self.data_ref(sealed).map(Arc::clone)
    }

    /// [`Segment::data`], borrowed.
    pub(crate) fn data_ref<'s>(&self, sealed: &'s Sealed) -> Result<&'s Arc<Mapping>> {
        if let Some(map) = sealed.data.get() {
            return Ok(map);
        }
        let map = self.file.map().map_err(|e| Error::io("map", &self.path, e))?;
        if (map.len() as u64) < sealed.summary.segment_bytes {
            return Err(Error::corruption(
                &self.path,
                map.len() as u64,
                CorruptionKind::Truncated {
                    needed: sealed.summary.segment_bytes,
                    available: map.len() as u64,
                },
            ));
        }
        map.advise_sequential();
        Ok(sealed.data.get_or_init(|| Arc::new(map)))
    }

    /// A batch at or before the one holding `offset`: its byte position and base offset.
    pub(crate) fn seek(&self, fs: &dyn cairn_fs::Fs, offset: u64, interval: u64) -> Result<(u64, u64)> {
        let rel = u32::try_from(offset.saturating_sub(self.base)).unwrap_or(u32::MAX);
        let entry = match self.sealed.get() {
            None => {
                let entries = lock(&self.active_entries);
                crate::index::floor_by(entries.len(), |i| entries.get(i).copied(), rel)
            }
            Some(sealed) => self.sealed_entries(fs, sealed, interval)?.floor(rel),
        };
        Ok((u64::from(entry.position), self.base + u64::from(entry.rel_offset)))
    }

    /// The key filter and first-seen runs of a compacted segment: from its index file, or, if
    /// that is missing or damaged, the filter rebuilt from its records and one run from its
    /// base at its cleaning time.
    pub(crate) fn clean_info(
        &self,
        fs: &dyn cairn_fs::Fs,
        sealed: &Sealed,
        interval: u64,
    ) -> Result<Arc<CleanInfo>> {
        if let Some(info) = sealed.clean.get() {
            return Ok(Arc::clone(info));
        }
        let entries = self.sealed_entries(fs, sealed, interval)?;
        let from_index = entries.filter_bytes().and_then(KeyFilter::decode).map(|f| (f, entries.seen_runs()));
        let info = match from_index {
            Some((filter, runs)) if runs.first().is_some_and(|r| r.offset == self.base) => {
                CleanInfo { filter, runs }
            }
            _ => {
                let filter = key_filter_of(self.file.as_ref(), self.base, sealed.summary.segment_bytes)
                    .map_err(|e| Error::io("read", &self.path, e))?
                    .map_err(|(position, kind)| Error::corruption(&self.path, position, kind))?;
                let seen_ms = sealed.summary.cleaned_ms.unwrap_or(i64::MIN);
                CleanInfo { filter, runs: vec![SeenRun { offset: self.base, seen_ms }] }
            }
        };
        Ok(Arc::clone(sealed.clean.get_or_init(|| Arc::new(info))))
    }

    /// The index entries of a sealed segment: from its checked index file, or rebuilt by
    /// scanning the segment if that file is missing or damaged.
    fn sealed_entries<'s>(
        &self,
        fs: &dyn cairn_fs::Fs,
        sealed: &'s Sealed,
        interval: u64,
    ) -> Result<&'s Entries> {
        if let Some(entries) = sealed.entries.get() {
            return Ok(entries);
        }
        let from_file = match &sealed.source {
            IndexSource::Built => None,
            IndexSource::File { path, header } => fs
                .open(path, cairn_fs::OpenMode::Read)
                .and_then(|file| file.map())
                .ok()
                .and_then(|map| Entries::from_mapping(map, header)),
        };
        let entries = match from_file {
            Some(entries) => entries,
            None => {
                let data = self.data(sealed)?;
                let bytes = data.get(..sealed.summary.segment_bytes as usize).unwrap_or_default();
                let scan = scan_mapped(&self.path, bytes, self.base, interval)?;
                if scan.next_offset != sealed.summary.next_offset || scan.end != sealed.summary.segment_bytes
                {
                    return Err(Error::corruption(
                        &self.path,
                        scan.end,
                        CorruptionKind::OffsetMismatch {
                            expected: sealed.summary.next_offset,
                            found: scan.next_offset,
                        },
                    ));
                }
                Entries::Memory(scan.entries)
            }
        };
        Ok(sealed.entries.get_or_init(|| entries))
    }
}

/// The result of scanning a run of batches.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// Position after the last valid batch.
    pub(crate) end: u64,
    /// Offset after the last valid batch.
    pub(crate) next_offset: u64,
    pub(crate) stats: Stats,
    pub(crate) entries: Vec<Entry>,
    pub(crate) batches: u64,
}

/// What a segment's batches hold, accumulated batch by batch (for its index header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stats {
    pub(crate) records: u64,
    pub(crate) tombstones: u64,
    pub(crate) min_tombstone_ts: i64,
    pub(crate) max_ts: i64,
}

impl Default for Stats {
    fn default() -> Stats {
        Stats { records: 0, tombstones: 0, min_tombstone_ts: i64::MAX, max_ts: i64::MIN }
    }
}

impl Stats {
    pub(crate) fn add(&mut self, info: &BatchInfo) {
        self.records += u64::from(info.count);
        self.tombstones += u64::from(info.tombstones);
        self.min_tombstone_ts = self.min_tombstone_ts.min(info.min_tombstone_ts);
        if info.count > 0 {
            self.max_ts = self.max_ts.max(info.max_ts);
        }
    }

    /// The summary of a segment with these contents.
    pub(crate) fn summary(
        &self,
        base: u64,
        next_offset: u64,
        segment_bytes: u64,
        cleaned_ms: Option<i64>,
    ) -> Summary {
        Summary {
            base_offset: base,
            next_offset,
            segment_bytes,
            max_ts: self.max_ts,
            record_count: self.records,
            tombstones: self.tombstones,
            min_tombstone_ts: self.min_tombstone_ts,
            cleaned_ms,
        }
    }
}

impl Scan {
    fn new(base: u64) -> Scan {
        Scan { next_offset: base, ..Scan::default() }
    }

    /// Records a valid batch at `position`, adding an index entry every `interval` bytes.
    pub(crate) fn add(&mut self, base: u64, position: u64, info: &BatchInfo, interval: u64) {
        let last_indexed = self.entries.last().map_or(0, |e| u64::from(e.position));
        if position > 0 && position - last_indexed >= interval {
            self.entries
                .push(Entry { rel_offset: (info.base_offset - base) as u32, position: position as u32 });
        }
        self.end = position + info.length as u64;
        self.next_offset = info.next_offset();
        self.stats.add(info);
        self.batches += 1;
    }
}

/// Scans a whole sealed segment in memory; every batch must be valid and the last must end at
/// the end of the bytes.
pub(crate) fn scan_mapped(path: &Path, data: &[u8], base: u64, interval: u64) -> Result<Scan> {
    let mut scan = Scan::new(base);
    while scan.end < data.len() as u64 {
        let position = scan.end;
        let rest = data.get(position as usize..).unwrap_or_default();
        let info =
            batch::check(rest, scan.next_offset).map_err(|kind| Error::corruption(path, position, kind))?;
        scan.add(base, position, &info, interval);
    }
    Ok(scan)
}

/// One step of a [`FileScan`].
#[derive(Debug)]
pub(crate) enum Step<'a> {
    /// A valid batch at `position`.
    Batch { position: u64, info: BatchInfo, bytes: &'a [u8] },
    /// The end of the scanned range, at a batch boundary.
    End,
    /// Bytes at `position` that are not a valid batch at the expected offset.
    Invalid { position: u64, kind: CorruptionKind },
}

/// Reads consecutive batches from a file with positional reads into a reused buffer.
#[derive(Debug, Default)]
pub(crate) struct FileScan {
    /// Next batch position.
    pub(crate) position: u64,
    buf: Vec<u8>,
    /// File position of `buf[0]`.
    buf_start: u64,
}

/// How much a [`FileScan`] reads at once.
const SCAN_CHUNK: usize = 256 * 1024;

impl FileScan {
    pub(crate) fn new(position: u64) -> FileScan {
        FileScan { position, buf: Vec::new(), buf_start: position }
    }

    /// Moves to `position`, keeping buffered bytes that are still valid.
    pub(crate) fn seek(&mut self, position: u64) {
        self.position = position;
    }

    /// Forgets the buffered bytes: call before reading another file, whose bytes at the same
    /// positions differ.
    pub(crate) fn reset(&mut self) {
        self.buf.clear();
    }

    /// Makes `buf` hold `[position, position + need)`, reading at most up to `limit`;
    /// `need` never exceeds `limit - position`.
    fn fill(&mut self, file: &dyn File, limit: u64, need: usize) -> io::Result<()> {
        let covered = self.position >= self.buf_start
            && (self.buf.len() as u64) >= (self.position - self.buf_start) + need as u64;
        if !covered {
            let want = need.max(SCAN_CHUNK).min(limit.saturating_sub(self.position) as usize);
            self.buf.resize(want, 0);
            self.buf_start = self.position;
            if let Err(e) = file.read_exact_at(&mut self.buf, self.position) {
                self.buf.clear();
                return Err(e);
            }
        }
        Ok(())
    }

    pub(crate) fn window(&self, position: u64, len: usize) -> &[u8] {
        let from = position.saturating_sub(self.buf_start) as usize;
        self.buf.get(from..from + len).unwrap_or_default()
    }

    /// The next batch of `file` before byte `limit`, expected to start at offset `expected`.
    pub(crate) fn next(&mut self, file: &dyn File, limit: u64, expected: u64) -> io::Result<Step<'_>> {
        let position = self.position;
        let available = limit.saturating_sub(position);
        if available == 0 {
            return Ok(Step::End);
        }
        let head = HEADER_LEN.min(available as usize);
        self.fill(file, limit, head)?;
        let length = match batch::peek_length(self.window(position, head), available) {
            Ok(length) => length,
            Err(kind) => return Ok(Step::Invalid { position, kind }),
        };
        self.fill(file, limit, length)?;
        match batch::check(self.window(position, length), expected) {
            Ok(info) => {
                self.position += length as u64;
                Ok(Step::Batch { position, info, bytes: self.window(position, length) })
            }
            Err(kind) => Ok(Step::Invalid { position, kind }),
        }
    }
}

/// The key filter of the records of the first `len` bytes of a segment file, read in full (used
/// only when a clean segment's index is damaged). `Err` with the position and kind of the first
/// invalid batch: a filter missing keys would let compaction skip a segment that holds them.
pub(crate) fn key_filter_of(
    file: &dyn File,
    base: u64,
    len: u64,
) -> io::Result<std::result::Result<KeyFilter, (u64, CorruptionKind)>> {
    let mut hashes = Vec::new();
    let mut scan = FileScan::new(0);
    let mut expected = base;
    loop {
        match scan.next(file, len, expected)? {
            Step::Batch { info, bytes, .. } => {
                // The batch was checked: its records parse.
                hashes.extend(batch::Records::new(bytes, &info).flatten().map(|record| key_hash(record.key)));
                expected = info.next_offset();
            }
            Step::End => break,
            Step::Invalid { position, kind } => return Ok(Err((position, kind))),
        }
    }
    let mut filter = KeyFilter::with_capacity(hashes.len());
    for hash in hashes {
        filter.insert(hash);
    }
    Ok(Ok(filter))
}

/// Scans a file from position 0 to `limit`, stopping at the first invalid batch.
/// Returns the scan and, if it stopped early, where and why.
pub(crate) fn scan_file(
    file: &dyn File,
    base: u64,
    limit: u64,
    interval: u64,
) -> io::Result<(Scan, Option<(u64, CorruptionKind)>)> {
    let mut scan = Scan::new(base);
    let mut reader = FileScan::new(0);
    loop {
        match reader.next(file, limit, scan.next_offset)? {
            Step::Batch { position, info, .. } => scan.add(base, position, &info, interval),
            Step::End => return Ok((scan, None)),
            Step::Invalid { position, kind } => return Ok((scan, Some((position, kind)))),
        }
    }
}
