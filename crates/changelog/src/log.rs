//! The log: appends, group-committed syncs, rolls, truncation and close.
//!
//! Locks, always taken in this order: maintenance (held by a compaction pass, a retention pass or
//! a truncation, for its whole length), the group commit's leadership (held across an fsync or a
//! truncation, never while waiting for the others), then the writer, then the segment list.
//! Readers take only the segment list, to clone it: briefly, except while a truncation cuts a
//! segment in place.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use cairn_fs::{File, FileLock, Fs, OpenMode};

use crate::batch::{self, OpenBatch};
use crate::compaction::{self, CompactOptions, CompactionBacklog, CompactionListener, CompactionReport};
use crate::error::{Error, Result};
use crate::group_commit::{CommitError, GroupCommit};
use crate::index::{Entry, Summary};
use crate::locate::{SegmentSet, ValueLocation};
use crate::maintenance::{Control, MaintenanceStatus, Worker};
use crate::mutants;
use crate::options::LogOptions;
use crate::reader::{ReadLimit, Reader};
use crate::record::Record;
use crate::recovery::{self, RecoveryReport};
use crate::retention::{self, Retention, RetentionReport};
use crate::segment::{FileScan, Segment, Stats, Step, TEMP_SUFFIX, index_name, log_name, scan_file};
use crate::sync::{AtomicBool, AtomicU64, Mutex, Ordering, lock};
use crate::watermark::Watermark;

/// Write-back hints cover whole pages of this size.
const WRITEBACK_PAGE: u64 = 4096;

/// An append-only, segmented, checksummed log of records, stored in one directory.
///
/// Appends return offsets at once; records become visible to readers when written from the
/// write buffer to the file, and durable when [`Log::sync`] returns. Concurrent callers of
/// `sync` share fsyncs (group commit). All methods take `&self`: share a log between threads
/// with an `Arc`.
///
/// ```
/// use std::sync::Arc;
/// use cairn_changelog::{Log, LogOptions, Record};
/// use cairn_fs::SimFs;
///
/// # fn main() -> Result<(), cairn_changelog::Error> {
/// let fs = Arc::new(SimFs::new(1));
/// let log = Log::open(fs.clone(), "/log", LogOptions::default())?;
/// let first = log.append(Record::new(b"key", Some(b"value"), 1_700_000_000_000))?;
/// log.append_batch(&[Record::new(b"a", Some(b"1"), 0), Record::new(b"a", None, 0)])?;
/// assert_eq!(log.sync()?, 3); // offsets 0, 1 and 2 are durable
///
/// let mut reader = log.reader(first)?;
/// while let Some(batch) = reader.next_batch()? {
///     for record in batch.records() {
///         let record = record?;
///         println!("{} {:?} {:?}", record.offset, record.key, record.value);
///     }
/// }
/// log.close()?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Log {
    shared: Arc<Shared>,
    report: RecoveryReport,
    /// The maintenance thread, if the options asked for one; stopped by close and drop.
    worker: std::sync::Mutex<Option<Worker>>,
}

/// State shared by the log handle and its readers.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) fs: Arc<dyn Fs>,
    pub(crate) dir: PathBuf,
    pub(crate) options: LogOptions,
    writer: Mutex<Writer>,
    /// The segments, oldest first; the last is active. Replaced whole, never edited in place,
    /// so a reader's clone stays consistent.
    pub(crate) segments: Mutex<Arc<Vec<Arc<Segment>>>>,
    /// Offsets below this are written to the files and readable.
    pub(crate) end: Watermark,
    /// The durable watermark and the group commit guarding it.
    pub(crate) commit: GroupCommit,
    /// Counts truncations, so that readers notice one happened under them.
    pub(crate) truncations: AtomicU64,
    /// The offset of every truncation, in order: the `n`-th is where truncation `n + 1` cut.
    truncated_at: Mutex<Vec<u64>>,
    /// Held by compaction, retention and truncation: one at a time changes sealed segments.
    pub(crate) maintenance: Mutex<()>,
    /// Shared with the maintenance thread: its limit, requests and status.
    pub(crate) control: Arc<Control>,
    poisoned: AtomicBool,
    poison_cause: OnceLock<Arc<Error>>,
    /// Held until the log and every reader of it are dropped: a reader may map a sealed
    /// segment, and another handle on the directory could otherwise cut that file under it.
    _lock: FileLock,
}

/// The writer's state, under the writer lock.
#[derive(Debug)]
struct Writer {
    active: Arc<Segment>,
    /// Bytes of the active file holding written batches.
    written: u64,
    /// The active file's size as last set by preallocation ([`LogOptions::preallocate_bytes`]),
    /// or 0; at least `written` whenever it is not 0. Only a hint: a write past it extends the
    /// file, as without preallocation.
    allocated: u64,
    /// Where in the active file the write-back of written bytes was last started
    /// ([`LogOptions::writeback_bytes`]).
    writeback_from: u64,
    /// Encoded batches not yet written; the open batch, if any, is at the end.
    buf: Vec<u8>,
    open: Option<OpenBatch>,
    /// Start in `buf` and base offset of every batch in `buf`, for the index.
    batch_starts: Vec<(usize, u64)>,
    /// The next offset to assign.
    next_offset: u64,
    /// Position of the last index entry of the active segment.
    last_indexed: u64,
    /// What the active segment holds, for its index header when it is sealed.
    stats: Stats,
    /// When the active segment was started (or the log opened).
    started: Instant,
    /// Sealed segments whose data is not yet fsynced, oldest first: rolls flush no data, the
    /// next sync (or truncation, or close) flushes and marks them.
    unflushed: Vec<PendingSeal>,
    closed: bool,
}

/// A sealed segment waiting for its fsync, with what its index file (its durability marker)
/// will say.
#[derive(Debug)]
struct PendingSeal {
    segment: Arc<Segment>,
    summary: Summary,
    entries: Vec<Entry>,
}

impl Log {
    /// Opens the log in directory `dir`, creating it if needed, and recovers it (DESIGN §4,
    /// docs/format.md): segments known durable are checked through their index headers (or
    /// fully, with [`LogOptions::verify_on_open`]); the rest (segments sealed since the last
    /// sync, and the last one) are scanned batch by batch, and an invalid tail after the last
    /// valid batch is cut off and the cut fsynced. Afterwards the whole log is durable. What was
    /// found is in [`Log::recovery_report`]. Takes the directory's lock file.
    ///
    /// # Errors
    /// [`Error::Corruption`] for damage where the log must be valid (a segment known durable, a
    /// missing or overlapping segment, data below [`LogOptions::known_durable_end`]); nothing is
    /// changed on disk then.
    /// [`Error::Locked`] if another handle has the log open, [`Error::InvalidOptions`], or
    /// [`Error::Io`].
    pub fn open(fs: Arc<dyn Fs>, dir: impl AsRef<Path>, options: LogOptions) -> Result<Log> {
        let dir = dir.as_ref().to_path_buf();
        let recovered = recovery::open(fs.as_ref(), &dir, &options)?;
        let active = recovered.segments.last().map(Arc::clone).ok_or_else(|| {
            Error::io("open", &dir, std::io::Error::other("recovery produced no active segment"))
        })?;
        let writer = Writer {
            active,
            written: recovered.active_len,
            allocated: 0,
            writeback_from: recovered.active_len,
            buf: Vec::new(),
            open: None,
            batch_starts: Vec::new(),
            next_offset: recovered.next_offset,
            last_indexed: recovered.active_last_indexed,
            stats: recovered.active_stats,
            started: Instant::now(),
            unflushed: Vec::new(),
            closed: false,
        };
        let shared = Shared {
            fs,
            dir,
            options,
            writer: Mutex::new(writer),
            segments: Mutex::new(Arc::new(recovered.segments)),
            end: Watermark::new(recovered.next_offset),
            commit: GroupCommit::new(recovered.next_offset),
            truncations: AtomicU64::new(0),
            truncated_at: Mutex::new(Vec::new()),
            maintenance: Mutex::new(()),
            control: Arc::new(Control::default()),
            poisoned: AtomicBool::new(false),
            poison_cause: OnceLock::new(),
            _lock: recovered.lock,
        };
        let shared = Arc::new(shared);
        let worker = match shared.options.maintenance.clone() {
            Some(config) => Some(Worker::start(Arc::clone(&shared), Arc::clone(&shared.control), config)?),
            None => None,
        };
        Ok(Log { shared, report: recovered.report, worker: std::sync::Mutex::new(worker) })
    }

    /// What opening the log found and did.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// The directory of the log.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The options the log was opened with.
    pub fn options(&self) -> &LogOptions {
        &self.shared.options
    }

    /// Appends one record and returns its offset.
    ///
    /// # Errors
    /// As for [`Log::append_batch`].
    pub fn append(&self, record: Record<'_>) -> Result<u64> {
        Ok(self.append_batch(std::slice::from_ref(&record))?.start)
    }

    /// Appends records atomically, as one batch: after a crash either all of them are in the
    /// log or none is. Returns their offsets. An empty slice appends nothing.
    ///
    /// # Errors
    /// [`Error::BatchTooLarge`] if the records encode to more than
    /// [`LogOptions::batch_bytes_max`], or [`Error::OffsetsExhausted`] if their offsets would
    /// pass `u64::MAX` (nothing is appended in either case); [`Error::Io`] if writing or rolling
    /// fails, which poisons the log; [`Error::Poisoned`] or [`Error::Closed`] after that.
    pub fn append_batch(&self, records: &[Record<'_>]) -> Result<Range<u64>> {
        self.append_inner(records, None)
    }

    /// [`Log::append_batch`], also pushing onto `locations` where each record's value will lie
    /// (in order; a tombstone's is empty), for point reads through a [`SegmentSet`] once the
    /// records are written ([`Log::flush`]). On error nothing is pushed.
    ///
    /// # Errors
    /// As for [`Log::append_batch`].
    pub fn append_batch_located(
        &self,
        records: &[Record<'_>],
        locations: &mut Vec<ValueLocation>,
    ) -> Result<Range<u64>> {
        self.append_inner(records, Some(locations))
    }

    /// The segments of the log as they are now, for reading values by location.
    pub fn segment_set(&self) -> SegmentSet {
        SegmentSet::of(&self.shared.segments())
    }

    fn append_inner(
        &self,
        records: &[Record<'_>],
        mut locations: Option<&mut Vec<ValueLocation>>,
    ) -> Result<Range<u64>> {
        let shared = &*self.shared;
        let bytes = batch::batch_len(records);
        let limit = shared.options.batch_limit();
        if bytes > limit {
            return Err(Error::BatchTooLarge { bytes, max: limit });
        }
        let _guard = PoisonOnPanic(shared);
        let mut w = if mutants::active(mutants::POISON_CHECK_BEFORE_LOCK) {
            // The mutant: the check and the lock are two steps.
            shared.check_open()?;
            lock(&shared.writer)
        } else {
            let w = lock(&shared.writer);
            shared.check_usable(&w)?;
            w
        };
        let Some(first) = records.first() else {
            return Ok(w.next_offset..w.next_offset);
        };
        if w.next_offset.checked_add(records.len() as u64).is_none() {
            return Err(Error::OffsetsExhausted { end: w.next_offset, wanted: records.len() as u64 });
        }
        // Joining the open batch, the records' timestamps are encoded against its first one.
        let joined = w.open.as_ref().and_then(|open| {
            let body: u64 = records.iter().map(|r| batch::record_len(r, open.first_ts) as u64).sum();
            (open.len(&w.buf) as u64 + body <= limit).then_some(body)
        });
        let mut join = joined.is_some();
        if w.should_roll(&shared.options, joined.unwrap_or(bytes), records.len() as u64) {
            shared.roll(&mut w)?;
            join = false;
        }
        if !join {
            w.seal_open();
            let start = w.buf.len();
            let next = w.next_offset;
            w.open = Some(OpenBatch::begin(&mut w.buf, next, first.timestamp_ms));
            w.batch_starts.push((start, next));
        }
        let Writer { buf, open, active, written, .. } = &mut *w;
        if let Some(open) = open.as_mut() {
            for record in records {
                open.push(buf, record);
                if let Some(locations) = locations.as_deref_mut() {
                    // The buffer is written to the file at `written`, whole: the value ends
                    // where the buffer does. Segments stay below 4 GiB (options check).
                    let len = record.value.map_or(0, <[u8]>::len);
                    let position = *written + (buf.len() - len) as u64;
                    locations.push(ValueLocation {
                        segment: active.id,
                        position: position as u32,
                        len: len as u32,
                    });
                }
            }
        }
        let start = w.next_offset;
        w.next_offset += records.len() as u64;
        if w.buf.len() >= shared.options.write_buffer_bytes {
            shared.write_out(&mut w)?;
        }
        Ok(start..w.next_offset)
    }

    /// Writes buffered records to the file, making them visible to readers (not durable), and
    /// starts the write-back of what is written (see [`LogOptions::writeback_bytes`]), so that
    /// a [`Log::sync`] soon after is short. Returns the end offset written.
    ///
    /// # Errors
    /// [`Error::Io`] if the write fails, which poisons the log; [`Error::Poisoned`] or
    /// [`Error::Closed`].
    pub fn flush(&self) -> Result<u64> {
        let _guard = PoisonOnPanic(&self.shared);
        let mut w = lock(&self.shared.writer);
        self.shared.check_usable(&w)?;
        self.shared.write_out(&mut w)?;
        self.shared.start_writeback(&mut w, 1)?;
        Ok(w.next_offset)
    }

    /// Makes every record appended so far durable and returns the durable end: offsets below it
    /// survive any crash (DESIGN P1). Concurrent callers share one fsync; none returns before an
    /// fsync covering its records has returned. The result is below the caller's records only if
    /// a concurrent [`Log::truncate`] removed them.
    ///
    /// # Errors
    /// [`Error::Io`] if the write or the fsync fails, which poisons the log (a failed fsync is
    /// never retried); [`Error::Poisoned`] if another caller's fsync failed; [`Error::Closed`].
    pub fn sync(&self) -> Result<u64> {
        self.shared.sync()
    }

    /// Compacts the log below `limit`: for every key, only its record with the highest offset
    /// below `limit` stays (and a tombstone only until its delete horizon), at its own offset
    /// (see [`CompactOptions`] and docs/format.md, "Compaction protocol"). Nothing at or above
    /// `limit` or the durable end changes; the active segment is compacted only once sealed (the
    /// pass seals it when [`CompactOptions::roll_active_bytes_min`] allows). Appends, syncs and
    /// readers go on during the pass; a reader keeps reading the segments it holds. A crash at
    /// any point leaves the log as it was before the pass or after it.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use cairn_changelog::{CompactOptions, DeleteHorizon, Log, LogOptions, Record};
    ///
    /// # fn main() -> Result<(), cairn_changelog::Error> {
    /// let log = Log::open(Arc::new(cairn_fs::SimFs::new(3)), "/log", LogOptions::default())?;
    /// for i in 0..100u32 {
    ///     log.append(Record::new(b"counter", Some(&i.to_le_bytes()), 0))?;
    /// }
    /// let end = log.sync()?;
    /// let mut options = CompactOptions::default();
    /// options.roll_active_bytes_min = Some(0); // compact even this small active segment
    /// let report = log.compact(end, &options)?;
    /// assert_eq!((report.records_before, report.records_after), (100, 1));
    /// let latest: Vec<_> = log.reader(0)?.into_records().collect::<Result<_, _>>()?;
    /// assert_eq!((latest.len(), latest[0].offset), (1, 99));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidOptions`]; [`Error::Corruption`] if a segment it reads is damaged (nothing
    /// changes); [`Error::Io`]: a failure while writing the new segments removes them and leaves
    /// the log usable, a failure from the commit on (or of a directory sync) poisons it (the next
    /// open completes the pass); [`Error::Poisoned`] or [`Error::Closed`].
    pub fn compact(&self, limit: u64, options: &CompactOptions) -> Result<CompactionReport> {
        compaction::run(&self.shared, limit, options, None, &|| false)
    }

    /// [`Log::compact`], telling `listener` where the surviving records of rewritten segments
    /// now are, once the new segments are installed, and then the report.
    ///
    /// # Errors
    /// As for [`Log::compact`]. If reading the new segments for the listener fails (damage or
    /// an I/O error), that error is returned although the pass is installed: a caller holding
    /// positions should then reload them.
    pub fn compact_with(
        &self,
        limit: u64,
        options: &CompactOptions,
        listener: &dyn CompactionListener,
    ) -> Result<CompactionReport> {
        let report = compaction::run(&self.shared, limit, options, Some(listener), &|| false)?;
        listener.pass_finished(&report);
        Ok(report)
    }
}

impl Log {
    /// Deletes old sealed segments as `retention` says (see [`Retention`]): the oldest first,
    /// while the log is larger than [`Retention::bytes_max`] or their newest record is older
    /// than [`Retention::age_max`]; never the active segment or one not yet durable. Readers
    /// reading a deleted segment finish it; new readers start at the new first offset.
    ///
    /// # Errors
    /// [`Error::Io`] if a removal or directory sync fails, which poisons the log;
    /// [`Error::Poisoned`] or [`Error::Closed`].
    pub fn apply_retention(&self, retention: &Retention) -> Result<RetentionReport> {
        retention::run(&self.shared, retention)
    }

    /// How much of the log below `limit` is clean and how much dirty, for a pass with `options`
    /// (from the segments' summaries, without reading them).
    pub fn compaction_backlog(&self, limit: u64, options: &CompactOptions) -> CompactionBacklog {
        compaction::backlog(&self.shared, limit, options)
    }

    /// Sets the limit offset of background compaction (with [`CompactionLimit::Explicit`]):
    /// a task runtime passes its last checkpointed changelog offset.
    ///
    /// [`CompactionLimit::Explicit`]: crate::CompactionLimit::Explicit
    pub fn set_compaction_limit(&self, offset: u64) {
        self.shared.control.set_limit(offset);
    }

    /// The explicit compaction limit last set with [`Log::set_compaction_limit`] (0 before).
    pub fn compaction_limit(&self) -> u64 {
        self.shared.control.limit()
    }

    /// Asks the maintenance thread for a compaction pass now, whatever the dirty share.
    pub fn request_compaction(&self) {
        self.shared.control.request();
    }

    /// What the maintenance thread has done (all zero without one).
    pub fn maintenance_status(&self) -> MaintenanceStatus {
        self.shared.control.status()
    }

    /// The shared state, for the loom models.
    #[cfg(all(test, loom))]
    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    fn stop_worker(&self) {
        let worker = self.worker.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(mut worker) = worker {
            worker.stop();
        }
    }
}

impl Shared {
    /// [`Log::sync`].
    pub(crate) fn sync(&self) -> Result<u64> {
        let shared = self;
        let target = {
            let mut w = lock(&shared.writer);
            shared.check_usable(&w)?;
            shared.write_out(&mut w)?;
            w.next_offset
        };
        let result = shared.commit.sync_to(target, || {
            let _guard = PoisonOnPanic(shared);
            let (end, pending) = {
                let mut w = lock(&shared.writer);
                if w.closed && !shared.poisoned.load(Ordering::Acquire) {
                    // Closed while this caller waited: close made everything appended durable
                    // (a failure of the group commit here would read as a failed fsync).
                    return Ok(w.next_offset);
                }
                shared.check_usable(&w)?;
                shared.write_out(&mut w)?;
                (w.next_offset, w.take_pending())
            };
            shared.make_durable(pending)?;
            Ok(end)
        });
        match result {
            Ok(durable) => Ok(durable),
            Err(CommitError::Sync(e)) => Err(e),
            Err(CommitError::Failed) => Err(shared.poisoned_error()),
        }
    }

    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    /// Fails if the log is poisoned or closed.
    pub(crate) fn check_open(&self) -> Result<()> {
        self.check_usable(&lock(&self.writer))
    }

    /// Seals the active segment if all of it lies below `limit` and it holds at least
    /// `min_bytes` (and some record), and makes it durable and marked, as a sync would (under
    /// the commit's leadership, so that no sync runs meanwhile). Returns whether it did.
    pub(crate) fn roll_below(&self, limit: u64, min_bytes: u64) -> Result<bool> {
        let outcome = self.commit.exclusive(|| {
            let _guard = PoisonOnPanic(self);
            let mut w = lock(&self.writer);
            let rolled = (|| {
                self.check_usable(&w)?;
                let bytes = w.written + w.buf.len() as u64;
                if w.next_offset > limit || bytes == 0 || bytes < min_bytes {
                    return Ok(false);
                }
                self.roll(&mut w)?;
                self.make_durable(w.take_pending())?;
                Ok(true)
            })();
            match rolled {
                Ok(true) => (Ok(true), Some(w.next_offset)),
                other => (other, None),
            }
        });
        match outcome {
            Ok(result) => result,
            Err(_) => Err(self.poisoned_error()),
        }
    }
}

impl Log {
    /// One past the last appended offset (appended, not necessarily written or durable).
    pub fn end_offset(&self) -> u64 {
        lock(&self.shared.writer).next_offset
    }

    /// One past the last offset readers can see.
    pub fn written_offset(&self) -> u64 {
        self.shared.end.load()
    }

    /// One past the last offset known durable.
    pub fn durable_offset(&self) -> u64 {
        self.shared.commit.durable()
    }

    /// The first offset of the log.
    pub fn start_offset(&self) -> u64 {
        self.shared.start_offset()
    }

    /// Whether an error has poisoned the log.
    pub fn is_poisoned(&self) -> bool {
        self.shared.poisoned.load(Ordering::Acquire)
    }

    /// A reader from `offset`, seeing records as they are written.
    ///
    /// # Errors
    /// [`Error::OffsetOutOfRange`] if `offset` is below the start or past the end of the log.
    pub fn reader(&self, offset: u64) -> Result<Reader> {
        self.reader_with(offset, ReadLimit::Written)
    }

    /// A reader from `offset` that sees records up to `limit`.
    ///
    /// # Errors
    /// As for [`Log::reader`].
    pub fn reader_with(&self, offset: u64, limit: ReadLimit) -> Result<Reader> {
        Reader::new(Arc::clone(&self.shared), offset, limit)
    }

    /// Removes every record at and after `offset`, durably: when this returns, the log ends at
    /// `offset` and stays so after a crash. Records below `offset` are durable afterwards too.
    /// Readers that had passed `offset` get [`Error::ReaderTruncated`] until moved with
    /// [`Reader::seek`](crate::Reader::seek). A crash during the call leaves the
    /// log ending somewhere between `offset` and its old end. At or past the end, nothing
    /// changes and nothing is synced.
    ///
    /// # Errors
    /// [`Error::OffsetOutOfRange`] if `offset` is below the log's start; [`Error::Io`] on a file
    /// system error, which poisons the log; [`Error::Poisoned`] or [`Error::Closed`].
    pub fn truncate(&self, offset: u64) -> Result<()> {
        let shared = &*self.shared;
        let _maintenance = lock(&shared.maintenance);
        match shared.commit.exclusive(|| match shared.truncate(offset) {
            Ok(Some(end)) => (Ok(()), Some(end)),
            Ok(None) => (Ok(()), None),
            Err(e) => (Err(e), None),
        }) {
            Ok(result) => result,
            Err(_) => Err(shared.poisoned_error()),
        }
    }

    /// Writes and fsyncs what is buffered and makes every later call fail with
    /// [`Error::Closed`]. Readers keep reading what was written. The directory's lock is
    /// released when the log and all its readers are dropped.
    ///
    /// # Errors
    /// [`Error::Io`] if the final write or fsync fails (poisoning the log); [`Error::Poisoned`].
    pub fn close(&self) -> Result<()> {
        self.stop_worker();
        let shared = &*self.shared;
        let result = shared.commit.exclusive(|| {
            let _guard = PoisonOnPanic(shared);
            let mut w = lock(&shared.writer);
            if w.closed {
                return (Ok(()), None);
            }
            if let Err(e) = shared
                .check_usable(&w)
                .and_then(|()| shared.write_out(&mut w))
                .and_then(|()| shared.trim_preallocated(&mut w))
            {
                return (Err(e), None);
            }
            let pending = w.take_pending();
            if !mutants::active(mutants::CLOSE_SKIPS_FINAL_SYNC)
                && let Err(e) = shared.make_durable(pending)
            {
                return (Err(e), None);
            }
            w.closed = true;
            (Ok(()), Some(w.next_offset))
        });
        match result {
            Ok(result) => result,
            Err(_) => Err(shared.poisoned_error()),
        }
    }
}

impl Drop for Log {
    /// Writes buffered records to the file, best effort and without fsync; use
    /// [`Log::close`] to learn of errors.
    fn drop(&mut self) {
        self.stop_worker();
        let mut w = lock(&self.shared.writer);
        if !w.closed && self.shared.check_usable(&w).is_ok() {
            // The trim, best effort like the write: a file left longer ends in zeros, which
            // the next open cuts.
            let _ = self.shared.write_out(&mut w).and_then(|()| self.shared.trim_preallocated(&mut w));
        }
        w.closed = true;
    }
}

/// Poisons the log if dropped while its thread panics: a panic (in a file-system
/// implementation, or a bug) that interrupts a write, sync, truncation or close leaves the files
/// in an unknown state, so no later call may succeed (P6).
pub(crate) struct PoisonOnPanic<'a>(pub(crate) &'a Shared);

impl Drop for PoisonOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let panicked = std::io::Error::other(
                "a panic interrupted a write, sync, truncation, close or maintenance pass",
            );
            drop(self.0.poison(Error::io("panic", &self.0.dir, panicked)));
        }
    }
}

/// What a fsync must cover to make everything written durable.
struct Pending {
    active: Arc<Segment>,
    sealed: Vec<PendingSeal>,
}

impl Writer {
    /// Takes what the next fsync must cover; the caller must make it durable or poison the log.
    fn take_pending(&mut self) -> Pending {
        Pending { active: Arc::clone(&self.active), sealed: std::mem::take(&mut self.unflushed) }
    }

    fn should_roll(&self, options: &LogOptions, incoming: u64, records: u64) -> bool {
        let used = self.written + self.buf.len() as u64;
        if used == 0 {
            return false;
        }
        // Index entries hold offsets relative to the segment's base in 32 bits. Appends alone
        // never get near (a record takes at least 3 bytes of a segment below 4 GiB), but a
        // compacted segment kept as the active one by a truncation may cover 2^32 offsets.
        let too_many = self.next_offset - self.active.base + records > u64::from(u32::MAX);
        let too_big = used + incoming > options.segment_bytes_max || too_many;
        let too_old = options
            .segment_age_ms_max
            .is_some_and(|age| self.started.elapsed().as_millis() >= u128::from(age));
        too_big || too_old
    }

    /// Seals the open batch, if any, in the buffer.
    fn seal_open(&mut self) {
        if let Some(open) = self.open.take() {
            let info = open.seal(&mut self.buf);
            self.stats.add(&info);
        }
    }
}

impl Shared {
    pub(crate) fn start_offset(&self) -> u64 {
        lock(&self.segments).first().map_or(0, |s| s.base)
    }

    /// The lowest offset cut by the truncations after the first `epoch` ones, if any.
    pub(crate) fn truncated_since(&self, epoch: u64) -> Option<u64> {
        lock(&self.truncated_at).iter().skip(usize::try_from(epoch).unwrap_or(usize::MAX)).min().copied()
    }

    pub(crate) fn segments(&self) -> Arc<Vec<Arc<Segment>>> {
        Arc::clone(&lock(&self.segments))
    }

    fn check_usable(&self, w: &Writer) -> Result<()> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(self.poisoned_error());
        }
        if w.closed {
            return Err(Error::Closed);
        }
        Ok(())
    }

    fn poisoned_error(&self) -> Error {
        if self.poison_cause.get().is_none() {
            // The group commit failed without an error of ours: a leader panicked mid-fsync.
            let panicked = std::io::Error::other("an earlier sync panicked during its fsync");
            drop(self.poison(Error::io("sync", &self.dir, panicked)));
        }
        match self.poison_cause.get() {
            Some(cause) => Error::Poisoned { cause: Arc::clone(cause) },
            None => Error::Closed,
        }
    }

    /// Poisons the log for good (P6) and returns `error` for the caller to report.
    pub(crate) fn poison(&self, error: Error) -> Error {
        let _ = self.poison_cause.set(Arc::new(error.duplicate()));
        self.poisoned.store(true, Ordering::Release);
        self.commit.fail();
        error
    }

    /// Writes the buffer to the active file and publishes it to readers.
    fn write_out(&self, w: &mut Writer) -> Result<()> {
        w.seal_open();
        if w.buf.is_empty() {
            return Ok(());
        }
        let active = Arc::clone(&w.active);
        if mutants::active(mutants::END_BEFORE_WRITE) {
            self.end.publish(w.next_offset);
        }
        self.preallocate(w)?;
        if let Err(e) = active.file.write_all_at(&w.buf, w.written) {
            return Err(self.poison(Error::io("write", &active.path, e)));
        }
        let mut entries = Vec::new();
        for &(start, base_offset) in &w.batch_starts {
            let position = w.written + start as u64;
            if position > 0 && position - w.last_indexed >= self.options.index_interval_bytes {
                entries.push(Entry {
                    rel_offset: (base_offset - active.base) as u32,
                    position: position as u32,
                });
                w.last_indexed = position;
            }
        }
        active.push_entries(&entries);
        w.written += w.buf.len() as u64;
        w.buf.clear();
        w.batch_starts.clear();
        // Bytes first, then the end offset: a reader that sees the new end finds the bytes.
        active.published.publish(w.written);
        self.end.publish(w.next_offset);
        cairn_fs::crash_point(cairn_fs::crash_point::CHANGELOG_WRITTEN);
        self.start_writeback(w, self.options.writeback_bytes)
    }

    /// Extends the active file ahead of the buffer about to be written, in steps of
    /// [`LogOptions::preallocate_bytes`], when the buffer would pass its size. A failure poisons
    /// the log: the write it prepares is on the durability path.
    fn preallocate(&self, w: &mut Writer) -> Result<()> {
        let step = self.options.preallocate_bytes;
        let end = w.written + w.buf.len() as u64;
        if step == 0 || end <= w.allocated {
            return Ok(());
        }
        let size = end.div_ceil(step).saturating_mul(step).min(self.options.segment_bytes_max).max(end);
        if let Err(e) = w.active.file.set_len(size) {
            return Err(self.poison(Error::io("set_len", &w.active.path, e)));
        }
        w.allocated = size;
        Ok(())
    }

    /// Cuts the active file back to its written batches if preallocation extended it: before
    /// the segment is sealed (a sealed segment's file is exactly its batches) and at close.
    /// The cut becomes durable with the segment's next fsync, which precedes any marker.
    fn trim_preallocated(&self, w: &mut Writer) -> Result<()> {
        // With preallocation on, always: `allocated` is only a hint, and a sealed segment must
        // be exactly its batches (its marker's length must match the file's).
        if (w.allocated > w.written || self.options.preallocate_bytes > 0)
            && let Err(e) = w.active.file.set_len(w.written)
        {
            return Err(self.poison(Error::io("set_len", &w.active.path, e)));
        }
        w.allocated = 0;
        Ok(())
    }

    /// Starts the write-back of the active segment's written whole pages not yet started, if
    /// there are at least `at_least` bytes of them (and write-back is on): the pages go to the
    /// device now rather than all at the next fsync, which then finds little to do. The last
    /// partial page is left for later: the next append would dirty it again.
    fn start_writeback(&self, w: &mut Writer, at_least: u64) -> Result<()> {
        let end = w.written & !(WRITEBACK_PAGE - 1);
        let unstarted = end.saturating_sub(w.writeback_from);
        if self.options.writeback_bytes == 0 || unstarted == 0 || unstarted < at_least {
            return Ok(());
        }
        // An error here may be a failed write-back of earlier data: as for a failed fsync.
        if let Err(e) = w.active.file.start_writeback(w.writeback_from, unstarted) {
            return Err(self.poison(Error::io("start_writeback", &w.active.path, e)));
        }
        w.writeback_from = end;
        Ok(())
    }

    /// Makes durable what `pending` covers: each sealed segment's data, then its index file as
    /// its durability marker (recovery trusts a sealed segment only once marked), then the
    /// active segment's data, then the directory if markers were written (so that damage in a
    /// flushed segment is reported as corruption after a crash, not cut as a torn tail). Any
    /// failure poisons the log.
    fn make_durable(&self, pending: Pending) -> Result<()> {
        for seal in &pending.sealed {
            let segment = &seal.segment;
            segment.file.sync_data().map_err(|e| self.poison(Error::io("sync_data", &segment.path, e)))?;
            let index_path = self.dir.join(index_name(segment.base));
            if mutants::active(mutants::MARK_BEFORE_INDEX) {
                segment.mark();
            }
            recovery::write_index(self.fs.as_ref(), &index_path, &seal.summary, &seal.entries, &[], &[])
                .map_err(|e| self.poison(e))?;
            segment.mark();
        }
        let active = &pending.active;
        active.file.sync_data().map_err(|e| self.poison(Error::io("sync_data", &active.path, e)))?;
        if !pending.sealed.is_empty() && !mutants::active(mutants::NO_DIR_SYNC_ON_APPEND_PATH) {
            self.fs.sync_dir(&self.dir).map_err(|e| self.poison(Error::io("sync_dir", &self.dir, e)))?;
        }
        cairn_fs::crash_point(cairn_fs::crash_point::CHANGELOG_SYNCED);
        Ok(())
    }

    /// Seals the active segment and starts a new one at the next offset. The sealed segment's
    /// data is not fsynced here (that would put a flush of a whole segment on the append path):
    /// it waits in `unflushed` for the next sync. Only the directory is synced, so that segment
    /// names become durable in order (a later segment never survives without an earlier one)
    /// and the new name is durable before any record in it is acknowledged.
    fn roll(&self, w: &mut Writer) -> Result<()> {
        self.write_out(w)?;
        self.trim_preallocated(w)?;
        let old = Arc::clone(&w.active);
        let summary = w.stats.summary(old.base, w.next_offset, w.written, None);
        let entries = old.entries_below(u64::MAX);
        let path = self.dir.join(log_name(w.next_offset));
        let file = self
            .fs
            .open(&path, OpenMode::CreateNew)
            .map_err(|e| self.poison(Error::io("create", &path, e)))?;
        old.seal(summary);
        w.unflushed.push(PendingSeal { segment: old, summary, entries });
        if !mutants::active(mutants::NEW_SEGMENT_SKIPS_DIR_SYNC)
            && !mutants::active(mutants::NO_DIR_SYNC_ON_APPEND_PATH)
        {
            self.fs.sync_dir(&self.dir).map_err(|e| self.poison(Error::io("sync_dir", &self.dir, e)))?;
        }
        cairn_fs::crash_point(cairn_fs::crash_point::CHANGELOG_ROLLED);
        let active = Arc::new(Segment::active(w.next_offset, path, file, 0, Vec::new()));
        {
            let mut segments = lock(&self.segments);
            let mut list = Vec::clone(&segments);
            list.push(Arc::clone(&active));
            *segments = Arc::new(list);
        }
        w.active = active;
        w.written = 0;
        w.writeback_from = 0;
        w.last_indexed = 0;
        w.stats = Stats::default();
        w.started = Instant::now();
        Ok(())
    }

    /// Truncation under the commit's leadership. Returns the new durable end, or `None` if
    /// nothing changed.
    fn truncate(&self, offset: u64) -> Result<Option<u64>> {
        let _guard = PoisonOnPanic(self);
        let mut w = lock(&self.writer);
        self.check_usable(&w)?;
        self.write_out(&mut w)?;
        if offset >= w.next_offset {
            return Ok(None);
        }
        let start = self.start_offset();
        if offset < start {
            return Err(Error::OffsetOutOfRange { offset, start, end: w.next_offset });
        }
        // What stays must be durable when this returns; flush it all first.
        self.make_durable(w.take_pending())?;
        let segments = self.segments();
        let holder = segments.iter().rposition(|s| s.base <= offset).unwrap_or(0);
        // The segment that ends up last, and where it is cut.
        let (keep, cut) = match segments.get(holder) {
            Some(s) if s.base == offset && holder > 0 => (holder - 1, None),
            _ => (holder, Some(offset)),
        };
        // Markers first, from the kept segment on: a marked segment must never end up last
        // (recovery would take that for a missing segment), whichever removals a crash keeps.
        for segment in segments.iter().skip(keep) {
            self.remove_if_present(&self.dir.join(index_name(segment.base)))?;
        }
        self.fs.sync_dir(&self.dir).map_err(|e| self.poison(Error::io("sync_dir", &self.dir, e)))?;
        for doomed in segments.iter().skip(keep + 1).rev() {
            self.remove_segment(doomed)?;
        }
        let Some(segment) = segments.get(keep).map(Arc::clone) else {
            let missing = std::io::Error::other("no segment to keep");
            return Err(self.poison(Error::io("truncate", &self.dir, missing)));
        };
        drop(segments);
        let scan = self.cut_segment(&mut w, keep, &segment, cut)?;
        w.written = scan.end;
        // The kept segment's file ends at its batches (cut in place, rewritten, or sealed).
        w.allocated = 0;
        // What is kept was made durable before the cut.
        w.writeback_from = scan.end;
        w.last_indexed = scan.entries.last().map_or(0, |e| u64::from(e.position));
        w.stats = scan.stats;
        w.next_offset = offset;
        w.started = Instant::now();
        w.buf.clear();
        w.open = None;
        w.batch_starts.clear();
        // The offset, then the epoch (release), then the end: a reader that sees the new end
        // sees the new epoch, and one that sees the epoch finds its offset.
        lock(&self.truncated_at).push(offset);
        self.truncations.fetch_add(1, Ordering::AcqRel);
        self.end.publish(offset);
        Ok(Some(offset))
    }

    /// Removes the file at `path` if it exists; any other failure poisons the log.
    fn remove_if_present(&self, path: &Path) -> Result<()> {
        match self.fs.remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.poison(Error::io("remove", path, e))),
        }
    }

    /// Removes a whole segment (and its index), durably, before anything before it changes.
    pub(crate) fn remove_segment(&self, segment: &Segment) -> Result<()> {
        self.remove_if_present(&self.dir.join(index_name(segment.base)))?;
        self.fs.remove_file(&segment.path).map_err(|e| self.poison(Error::io("remove", &segment.path, e)))?;
        // One directory sync per segment: removals that became durable out of order could leave
        // a gap, which the next open would rightly call corruption.
        self.fs.sync_dir(&self.dir).map_err(|e| self.poison(Error::io("sync_dir", &self.dir, e)))
    }

    /// Cuts `segment` (at position `keep` of the list) so that it ends just before `cut`, or
    /// keeps it whole for `None`, and installs it as the active segment, the last of the list.
    /// Returns the scan of what it keeps.
    ///
    /// In place when no reader can reach the segment: the check and the cut happen under the
    /// segment-list lock, and a reader holds either the segment itself or a clone of the list,
    /// both counted. Otherwise, or when the cut falls inside a batch, the kept part is written
    /// to a new file renamed over the old one, so that readers holding the old file, or a
    /// mapping of it, keep reading it intact (a mapping of a file cut shorter would fault).
    fn cut_segment(
        &self,
        w: &mut Writer,
        keep: usize,
        segment: &Arc<Segment>,
        cut: Option<u64>,
    ) -> Result<crate::segment::Scan> {
        let fs = self.fs.as_ref();
        let (position, replacement) = match cut {
            None => (segment.published.load(), None),
            // Later segments may be gone already: a failure here (damage found in the kept
            // segment, a failed mapping) must poison like any other, or appends would go on
            // into a removed file (P6).
            Some(offset) => self.find_cut(segment, offset).map_err(|e| self.poison(e))?,
        };
        let poison_io = |op, path: &Path, e| self.poison(Error::io(op, path, e));
        let mut list = lock(&self.segments);
        // Holders besides readers: the list, our clone, and the writer if it is the active one.
        let holders = 2 + usize::from(Arc::ptr_eq(segment, &w.active));
        let unreachable = Arc::strong_count(&*list) == 1 && Arc::strong_count(segment) == holders;
        let file = if cut.is_some() && replacement.is_none() && unreachable {
            segment.file.set_len(position).map_err(|e| poison_io("set_len", &segment.path, e))?;
            segment.file.sync_data().map_err(|e| poison_io("sync_data", &segment.path, e))?;
            fs.open(&segment.path, OpenMode::ReadWrite).map_err(|e| poison_io("open", &segment.path, e))?
        } else {
            drop(list);
            let file = match cut {
                // Kept whole: only a new handle for the new active segment.
                None => fs
                    .open(&segment.path, OpenMode::ReadWrite)
                    .map_err(|e| poison_io("open", &segment.path, e))?,
                Some(_) => self.rewrite_prefix(segment, position, replacement.as_deref())?,
            };
            list = lock(&self.segments);
            file
        };
        fs.sync_dir(&self.dir).map_err(|e| poison_io("sync_dir", &self.dir, e))?;
        let len = file.len().map_err(|e| poison_io("stat", &segment.path, e))?;
        let (scan, stop) = scan_file(file.as_ref(), segment.base, len, self.options.index_interval_bytes)
            .map_err(|e| poison_io("read", &segment.path, e))?;
        if let Some((position, kind)) = stop {
            return Err(self.poison(Error::corruption(&segment.path, position, kind)));
        }
        let active = Arc::new(Segment::active(
            segment.base,
            segment.path.clone(),
            file,
            scan.end,
            scan.entries.clone(),
        ));
        let mut kept: Vec<_> = list.iter().take(keep).cloned().collect();
        kept.push(Arc::clone(&active));
        *list = Arc::new(kept);
        w.active = active;
        Ok(scan)
    }

    /// Writes the first `position` bytes of `segment`, then `tail` if given, to a temporary
    /// file, fsyncs it and renames it over the segment. Returns the new file.
    fn rewrite_prefix(&self, segment: &Segment, position: u64, tail: Option<&[u8]>) -> Result<Box<dyn File>> {
        let fs = self.fs.as_ref();
        let poison_io = |op, path: &Path, e| self.poison(Error::io(op, path, e));
        let temp = self.dir.join(format!("{}.truncate{TEMP_SUFFIX}", log_name(segment.base)));
        self.remove_if_present(&temp)?;
        let file = fs.open(&temp, OpenMode::CreateNew).map_err(|e| poison_io("create", &temp, e))?;
        let mut buf = vec![0; 1 << 20];
        let mut at = 0;
        while at < position {
            let n = (position - at).min(buf.len() as u64) as usize;
            let chunk = buf.get_mut(..n).unwrap_or_default();
            segment.file.read_exact_at(chunk, at).map_err(|e| poison_io("read", &segment.path, e))?;
            file.write_all_at(chunk, at).map_err(|e| poison_io("write", &temp, e))?;
            at += n as u64;
        }
        if let Some(bytes) = tail {
            file.write_all_at(bytes, position).map_err(|e| poison_io("write", &temp, e))?;
        }
        file.sync_data().map_err(|e| poison_io("sync_data", &temp, e))?;
        fs.rename(&temp, &segment.path).map_err(|e| poison_io("rename", &temp, e))?;
        Ok(file)
    }

    /// Where to cut `segment` so that it ends before `offset`: the position of the batch holding
    /// `offset`, and, if `offset` falls inside that batch, the re-encoded records before it.
    fn find_cut(&self, segment: &Segment, offset: u64) -> Result<(u64, Option<Vec<u8>>)> {
        let fs = self.fs.as_ref();
        let (position, base) = segment.seek(fs, offset, self.options.index_interval_bytes)?;
        let limit = segment.published.load();
        let mut scan = FileScan::new(position);
        let mut expected = base;
        loop {
            let step = scan
                .next(segment.file.as_ref(), limit, expected)
                .map_err(|e| self.poison(Error::io("read", &segment.path, e)))?;
            match step {
                Step::Batch { position, info, bytes } => {
                    if info.base_offset == offset {
                        return Ok((position, None));
                    }
                    if info.next_offset() > offset {
                        // The cut falls inside this batch: the records before it, re-encoded as
                        // a batch that ends just before the cut.
                        let kept: Vec<_> = batch::Records::new(bytes, &info)
                            .take_while(|r| r.as_ref().map_or(true, |r| r.offset < offset))
                            .collect::<Result<_, _>>()
                            .map_err(|kind| Error::corruption(&segment.path, position, kind))?;
                        let kept: Vec<(u64, Record<'_>)> = kept
                            .iter()
                            .map(|r| {
                                (
                                    r.offset,
                                    Record { key: r.key, value: r.value, timestamp_ms: r.timestamp_ms },
                                )
                            })
                            .collect();
                        let mut buf = Vec::new();
                        if info.sparse {
                            batch::encode_sparse(&mut buf, info.base_offset, offset, &kept);
                        } else {
                            let records: Vec<Record<'_>> = kept.into_iter().map(|(_, r)| r).collect();
                            batch::encode(&mut buf, info.base_offset, &records);
                        }
                        return Ok((position, Some(buf)));
                    }
                    expected = info.next_offset();
                }
                Step::End => return Ok((limit, None)),
                Step::Invalid { position, kind } => {
                    return Err(Error::corruption(&segment.path, position, kind));
                }
            }
        }
    }
}
