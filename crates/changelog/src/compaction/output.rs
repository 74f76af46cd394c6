//! Writing a pass's new segments: surviving records in sparse batches at their own offsets, the
//! batches tiling each replaced run's offsets exactly, cut into segments of at most
//! `segment_bytes_max`, each with its index (entries, key filter, first-seen runs), all under
//! `.compacting` names until the pass commits. A run that ends in a segment only partly in the
//! key map ends with a *dirty* segment: that segment's remaining batches, copied as they are.

use std::path::{Path, PathBuf};

use cairn_fs::{File, Fs, OpenMode};

use crate::batch::{BatchInfo, SparseBatch};
use crate::error::{Error, Result};
use crate::filter::KeyFilter;
use crate::index::{Entry, SeenRun, Summary};
use crate::mutants;
use crate::record::{Record, RecordView};
use crate::segment::{Stats, index_name, log_name};

use super::swap::compacting;

/// The most offsets one batch (or segment) covers: its span is a `u32`.
const MAX_SPAN: u64 = 1 << 32;
/// Bytes gathered before a write to the output file.
const WRITE_CHUNK: usize = 1 << 20;

/// A finished output segment, synced, under its `.compacting` names.
#[derive(Debug)]
pub(crate) struct Written {
    pub(crate) base: u64,
    /// Written by compaction (else a dirty segment's copied batches).
    pub(crate) clean: bool,
    pub(crate) file: Box<dyn File>,
    pub(crate) summary: Summary,
    pub(crate) entries: Vec<Entry>,
    pub(crate) filter: KeyFilter,
    pub(crate) runs: Vec<SeenRun>,
}

/// The output segment being written.
#[derive(Debug)]
struct Current {
    base: u64,
    clean: bool,
    path: PathBuf,
    file: Box<dyn File>,
    /// Bytes of the segment written to its file.
    written: u64,
    /// Bytes of the segment so far (written, and sealed batches in `Output::buf`).
    len: u64,
    next_offset: u64,
    entries: Vec<Entry>,
    last_indexed: u64,
    stats: Stats,
    hashes: Vec<u64>,
    runs: Vec<SeenRun>,
}

/// What the output needs to know of the log.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shape {
    pub(crate) segment_bytes_max: u64,
    pub(crate) index_interval_bytes: u64,
    pub(crate) batch_bytes_target: usize,
    /// When the pass runs: the new segments' cleaning time.
    pub(crate) now_ms: i64,
}

/// The writer of a pass's output.
#[derive(Debug)]
pub(crate) struct Output<'a> {
    fs: &'a dyn Fs,
    dir: &'a Path,
    shape: Shape,
    /// Finished segments, in offset order.
    pub(crate) written: Vec<Written>,
    /// Every file created, finished or not (removed if the pass fails).
    pub(crate) created: Vec<PathBuf>,
    current: Option<Current>,
    /// The current segment's sealed batches not yet written, then the open batch.
    buf: Vec<u8>,
    batch: Option<SparseBatch>,
    /// Where the open (or just sealed) batch starts in `buf`.
    batch_start: usize,
    /// Key hashes and first-seen runs of the open batch.
    batch_hashes: Vec<u64>,
    batch_runs: Vec<SeenRun>,
    /// The first offset no sealed batch covers yet.
    covered: u64,
    pub(crate) bytes_written: u64,
}

impl<'a> Output<'a> {
    pub(crate) fn new(fs: &'a dyn Fs, dir: &'a Path, shape: Shape) -> Output<'a> {
        Output {
            fs,
            dir,
            shape,
            written: Vec::new(),
            created: Vec::new(),
            current: None,
            buf: Vec::with_capacity(WRITE_CHUNK + (64 << 10)),
            batch: None,
            batch_start: 0,
            batch_hashes: Vec::new(),
            batch_runs: Vec::new(),
            covered: 0,
            bytes_written: 0,
        }
    }

    fn io<'p>(op: &'static str, path: &'p Path) -> impl FnOnce(std::io::Error) -> Error + 'p {
        move |e| Error::io(op, path, e)
    }

    /// Starts a run of offsets from `base`: a new segment starts with it.
    pub(crate) fn begin_run(&mut self, base: u64) {
        self.covered = base;
    }

    /// Adds a surviving record at `offset`, whose key hashes to `hash` (`filter::key_hash`), first
    /// seen by compaction at `seen_ms`.
    pub(crate) fn push(
        &mut self,
        offset: u64,
        record: &RecordView<'_>,
        hash: u64,
        seen_ms: i64,
    ) -> Result<()> {
        let record = Record { key: record.key, value: record.value, timestamp_ms: record.timestamp_ms };
        // An open batch holds at least one record; it ends where the next one starts.
        if let Some(batch) = &self.batch {
            let base = batch.base_offset();
            let full =
                batch.len(&self.buf) + batch.record_len(&record, offset) > self.shape.batch_bytes_target;
            if full || offset - base >= MAX_SPAN {
                self.seal_batch(offset.min(base + MAX_SPAN))?;
            }
        }
        if self.batch.is_none() {
            while offset - self.covered >= MAX_SPAN {
                self.empty_batch(self.covered + MAX_SPAN)?;
            }
            self.begin_batch();
        }
        if let Some(batch) = self.batch.as_mut() {
            batch.push(&mut self.buf, &record, offset);
        }
        self.batch_hashes.push(hash);
        if self.batch_runs.last().is_none_or(|r| r.seen_ms != seen_ms) {
            self.batch_runs.push(SeenRun { offset, seen_ms });
        }
        Ok(())
    }

    /// Adds a batch copied as it is (`bytes`, checked, described by `info`) to a dirty segment,
    /// after the clean part of its run has ended.
    pub(crate) fn copy_dirty(&mut self, bytes: &[u8], info: &BatchInfo) -> Result<()> {
        self.batch_start = self.buf.len();
        self.buf.extend_from_slice(bytes);
        self.covered = info.next_offset();
        self.emit(info, false)
    }

    /// Ends a run whose last part was copied with [`Output::copy_dirty`].
    pub(crate) fn end_dirty(&mut self) -> Result<()> {
        self.write_out(self.buf.len())?;
        self.finish_segment()
    }

    /// Ends the run at `end` (exclusive): the last batch covers up to it, and the segment ends.
    pub(crate) fn end_run(&mut self, end: u64) -> Result<()> {
        if let Some(batch) = &self.batch {
            let sealed_end = end.min(batch.base_offset() + MAX_SPAN);
            self.seal_batch(sealed_end)?;
        }
        while self.covered < end {
            self.empty_batch(end.min(self.covered + MAX_SPAN))?;
        }
        self.write_out(self.buf.len())?;
        self.finish_segment()
    }

    /// Emits a batch with no record covering `[covered, end)`: offsets whose records were all
    /// dropped.
    fn empty_batch(&mut self, end: u64) -> Result<()> {
        self.begin_batch();
        self.seal_batch(end)
    }

    /// Opens a batch from `covered` at the end of `buf`.
    fn begin_batch(&mut self) {
        self.batch_start = self.buf.len();
        self.batch = Some(SparseBatch::begin(&mut self.buf, self.covered));
    }

    /// Seals the open batch to cover up to `end` and adds it to the current segment.
    fn seal_batch(&mut self, end: u64) -> Result<()> {
        let Some(batch) = self.batch.take() else { return Ok(()) };
        let info = batch.seal(&mut self.buf, end);
        self.covered = end;
        let result = self.emit(&info, true);
        self.batch_hashes.clear();
        self.batch_runs.clear();
        result
    }

    /// Adds the batch just sealed (or copied) at `batch_start` in `buf` to the current segment,
    /// or to a new one if it does not fit or is not of the same kind (`clean`).
    fn emit(&mut self, info: &BatchInfo, clean: bool) -> Result<()> {
        let length = u64::from(info.length);
        let starts_new = self.current.as_ref().is_some_and(|c| {
            c.len + length > self.shape.segment_bytes_max
                || info.next_offset() - c.base > MAX_SPAN
                || c.clean != clean
        });
        if starts_new {
            // The bytes before the batch end the current segment.
            self.write_out(self.batch_start)?;
            self.finish_segment()?;
        }
        if self.current.is_none() {
            let base = info.base_offset;
            let path = self.dir.join(compacting(&log_name(base)));
            self.created.push(path.clone());
            let file = self.fs.open(&path, OpenMode::CreateTruncate).map_err(Self::io("create", &path))?;
            self.current = Some(Current {
                base,
                clean,
                path,
                file,
                written: 0,
                len: 0,
                next_offset: base,
                entries: Vec::new(),
                last_indexed: 0,
                stats: Stats::default(),
                hashes: Vec::new(),
                runs: Vec::new(),
            });
        }
        let Some(current) = self.current.as_mut() else { return Ok(()) };
        if current.len > 0 && current.len - current.last_indexed >= self.shape.index_interval_bytes {
            current.entries.push(Entry {
                rel_offset: (info.base_offset - current.base) as u32,
                position: current.len as u32,
            });
            current.last_indexed = current.len;
        }
        current.len += length;
        current.next_offset = info.next_offset();
        current.stats.add(info);
        current.hashes.extend_from_slice(&self.batch_hashes);
        for run in &self.batch_runs {
            if current.runs.last().is_none_or(|r| r.seen_ms != run.seen_ms) {
                // The segment's first run starts at its base.
                let offset = if current.runs.is_empty() { current.base } else { run.offset };
                current.runs.push(SeenRun { offset, seen_ms: run.seen_ms });
            }
        }
        if self.buf.len() >= WRITE_CHUNK {
            self.write_out(self.buf.len())?;
        }
        Ok(())
    }

    /// Writes the first `upto` bytes of `buf`, the next bytes of the current segment, to its
    /// file, and drops them from `buf`.
    fn write_out(&mut self, upto: usize) -> Result<()> {
        let Some(current) = self.current.as_mut() else { return Ok(()) };
        let bytes = self.buf.get(..upto).unwrap_or_default();
        current.file.write_all_at(bytes, current.written).map_err(Self::io("write", &current.path))?;
        current.written += upto as u64;
        self.bytes_written += upto as u64;
        self.buf.drain(..upto);
        Ok(())
    }

    /// Fsyncs the current segment, whose bytes are all written, and writes and fsyncs its index.
    fn finish_segment(&mut self) -> Result<()> {
        let Some(current) = self.current.take() else { return Ok(()) };
        let skip_sync = mutants::active(mutants::COMPACTION_SKIPS_OUTPUT_SYNC);
        if !skip_sync {
            current.file.sync_data().map_err(Self::io("sync_data", &current.path))?;
        }
        let mut filter = KeyFilter::with_capacity(current.hashes.len());
        for hash in &current.hashes {
            filter.insert(*hash);
        }
        let cleaned = current.clean.then_some(self.shape.now_ms);
        let summary = current.stats.summary(current.base, current.next_offset, current.len, cleaned);
        let index_path = self.dir.join(compacting(&index_name(current.base)));
        self.created.push(index_path.clone());
        let (filter_bytes, runs) =
            if current.clean { (filter.encode(), &current.runs[..]) } else { (Vec::new(), &[][..]) };
        let bytes = crate::index::encode(&summary, &current.entries, &filter_bytes, runs);
        let index =
            self.fs.open(&index_path, OpenMode::CreateTruncate).map_err(Self::io("create", &index_path))?;
        index.write_all_at(&bytes, 0).map_err(Self::io("write", &index_path))?;
        if !skip_sync {
            index.sync_data().map_err(Self::io("sync_data", &index_path))?;
        }
        self.bytes_written += bytes.len() as u64;
        self.written.push(Written {
            base: current.base,
            clean: current.clean,
            file: current.file,
            summary,
            entries: current.entries,
            filter,
            runs: current.runs,
        });
        Ok(())
    }

    /// Removes every file the output created (best effort: open removes what is left).
    pub(crate) fn discard(self) {
        for path in &self.created {
            let _ = self.fs.remove_file(path);
        }
    }
}
