//! Opening a log directory: finding the segments, checking what must be valid, cutting the torn
//! tail durably, and reporting what was done (DESIGN §2 P4/P5, §4).
//!
//! A sealed segment's index file doubles as its *durability marker*: the writer writes it only
//! after the segment's data was fsynced (at the first `sync` after the roll, not at the roll
//! itself, so that rolls put no data flush on the append path; a roll only fsyncs the
//! directory, so segment names become durable in order). So the directory splits in two:
//!
//! - the known-durable region: every segment up to the last one with a valid marker (an index
//!   whose header matches the segment's length). Their headers give their end offsets without a
//!   scan; a missing or damaged index there is rebuilt by scanning, and any invalid batch, gap or
//!   overlap is corruption (P5);
//! - the tail window: the sealed segments after it and the last segment, scanned in order. The
//!   first must follow the durable region. The first invalid batch ends the log, and so does a
//!   segment starting after the previous one's end (that one lost its unflushed end); the later
//!   segments are removed and the segment holding the tear is cut, durably, before the log
//!   accepts appends (P4), unless the caller's known-durable end says those offsets were
//!   durable, in which case the damage is reported as corruption. An overlap is corruption.
//!
//! Nothing is changed on disk until all of this is checked. Whatever the tail window keeps is
//! then fsynced and marked, so after a successful open the whole log is durable and recovery is
//! idempotent.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_fs::{File, FileLock, Fs, OpenMode};

use crate::batch::{self, HEADER_LEN};
use crate::error::{CorruptionKind, Error, Result};
use crate::index::{self, Entry, SeenRun};
use crate::mutants;
use crate::options::LogOptions;
use crate::segment::{
    INDEX_SUFFIX, LOG_SUFFIX, Scan, Sealed, Segment, Stats, TEMP_SUFFIX, index_name, log_name, parse_name,
    scan_file,
};

/// The name of the lock file in a log directory.
pub(crate) const LOCK_NAME: &str = "LOCK";

/// What opening a log found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// Segments in the log after opening.
    pub segments: usize,
    /// The first offset of the log.
    pub start_offset: u64,
    /// One past the last offset of the log.
    pub end_offset: u64,
    /// The invalid tail cut from the last segment, if any.
    pub tail_cut: Option<TailCut>,
    /// Index files written by the open: missing or damaged ones of segments known durable, and
    /// the markers of segments sealed but not yet flushed when the log was last used.
    pub indexes_rebuilt: usize,
    /// Leftover temporary files removed (including the new segments of a compaction pass
    /// that did not commit).
    pub temp_files_removed: usize,
    /// Whether a compaction pass had committed but not finished installing its segments, and
    /// the open finished it (docs/format.md, "Compaction protocol").
    pub compaction_completed: bool,
    /// Wall time spent opening.
    pub duration: Duration,
}

/// An invalid tail found after the last valid batch and cut off (DESIGN P4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TailCut {
    /// The segment file.
    pub file: PathBuf,
    /// Where the file was cut: the end of the last valid batch.
    pub position: u64,
    /// Non-zero bytes that followed it and were removed.
    pub bytes: u64,
    /// Records in the removed bytes, as far as their batch headers could still be read.
    pub records: u64,
    /// Why the bytes at `position` were not a valid batch.
    pub reason: CorruptionKind,
}

/// What the log starts from after a successful open.
pub(crate) struct Recovered {
    pub(crate) segments: Vec<Arc<Segment>>,
    /// Bytes of valid batches in the active (last) segment.
    pub(crate) active_len: u64,
    pub(crate) next_offset: u64,
    pub(crate) active_stats: Stats,
    /// Position of the active segment's last index entry.
    pub(crate) active_last_indexed: u64,
    pub(crate) lock: FileLock,
    pub(crate) report: RecoveryReport,
}

fn io<'p>(op: &'static str, path: &'p Path) -> impl FnOnce(std::io::Error) -> Error + 'p {
    move |e| Error::io(op, path, e)
}

/// Opens (creating if needed) the log in `dir`.
pub(crate) fn open(fs: &dyn Fs, dir: &Path, options: &LogOptions) -> Result<Recovered> {
    let started = Instant::now();
    options.validate()?;
    let missing_durable = |found_end| match options.known_durable_end {
        Some(durable_end) if durable_end > found_end => {
            Err(Error::corruption(dir, 0, CorruptionKind::MissingDurableData { durable_end, found_end }))
        }
        _ => Ok(()),
    };
    if !fs.exists(dir).map_err(io("stat", dir))? {
        missing_durable(0)?;
        cairn_fs::create_dir_durably(fs, dir).map_err(|e| Error::io(e.op, e.path, e.source))?;
    }
    let lock_path = dir.join(LOCK_NAME);
    let lock = fs.lock_file(&lock_path).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock => Error::Locked { path: lock_path.clone() },
        _ => Error::io("lock", &lock_path, e),
    })?;

    let mut report = RecoveryReport::default();
    let (completed, removed) = crate::compaction::swap::recover(fs, dir)?;
    report.compaction_completed = completed;
    report.temp_files_removed += removed;
    let listing = Listing::read(fs, dir)?;
    let mut dir_changed = false;
    let mut logs = listing.logs.clone();
    if logs.is_empty() {
        missing_durable(0)?;
        let path = dir.join(log_name(0));
        drop(fs.open(&path, OpenMode::CreateNew).map_err(io("create", &path))?);
        dir_changed = true;
        logs.push(0);
    }

    // Check first, change nothing until the log is known to be recoverable.
    let plan = plan(fs, dir, &logs, &listing, options)?;
    let Plan { durable, mut tail, mut scans, stop, removed } = plan;

    for name in &listing.temps {
        let path = dir.join(name);
        fs.remove_file(&path).map_err(io("remove", &path))?;
        report.temp_files_removed += 1;
        dir_changed = true;
    }
    for base in listing.indexes.iter().filter(|base| !logs.contains(base)) {
        let path = dir.join(index_name(*base));
        fs.remove_file(&path).map_err(io("remove", &path))?;
        dir_changed = true;
    }
    let mut segments: Vec<Arc<Segment>> = Vec::with_capacity(durable.len() + tail.len());
    for (opened, sealed, rebuilt) in durable {
        if rebuilt {
            let path = dir.join(index_name(opened.base));
            write_index(fs, &path, &sealed.summary, sealed.memory_entries(), &[], &[])?;
            report.indexes_rebuilt += 1;
            dir_changed = true;
        }
        segments.push(Arc::new(Segment::sealed(opened.base, opened.path, opened.file, sealed)));
    }

    // `scans.len()` segments of the tail window are kept; the last kept becomes the active one.
    let (Some(active_scan), Some(active)) = (scans.pop(), tail.pop()) else {
        return Err(Error::io("open", dir, std::io::Error::other("recovery found no segment to write to")));
    };
    let end_offset = active_scan.next_offset;

    // Cut: later segments first, their removal durable before the cut below, so that a crash in
    // between leaves the tear in place to be found again; then the torn segment.
    let mut cut_bytes = 0;
    let mut cut_records = 0;
    for opened in removed.iter().rev() {
        let (bytes, records) =
            describe_tail(opened.file.as_ref(), 0, opened.len).map_err(io("read", &opened.path))?;
        cut_bytes += bytes;
        cut_records += records;
        for path in [dir.join(index_name(opened.base)), opened.path.clone()] {
            match fs.remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove", &path, e)),
            }
        }
    }
    if !removed.is_empty() {
        fs.sync_dir(dir).map_err(io("sync_dir", dir))?;
    }
    let position = active_scan.end;
    if position < active.len {
        let (bytes, records) =
            describe_tail(active.file.as_ref(), position, active.len).map_err(io("read", &active.path))?;
        cut_bytes += bytes;
        cut_records += records;
        if !mutants::active(mutants::OPEN_SKIPS_TAIL_CUT) {
            active.file.set_len(position).map_err(io("set_len", &active.path))?;
        }
    }
    if cut_bytes > 0 {
        let reason = stop.map_or(CorruptionKind::BadMagic { found: 0 }, |(_, kind)| kind);
        report.tail_cut = Some(TailCut {
            file: active.path.clone(),
            position,
            bytes: cut_bytes,
            records: cut_records,
            reason,
        });
    }

    // Make the tail window durable and mark its sealed segments.
    for (opened, scan) in tail.into_iter().zip(scans) {
        if opened.len > scan.end {
            // Preallocated zeros (see above): a sealed segment is exactly its batches.
            opened.file.set_len(scan.end).map_err(io("set_len", &opened.path))?;
        }
        opened.file.sync_data().map_err(io("sync_data", &opened.path))?;
        let summary = summary_of(opened.base, &scan);
        write_index(fs, &dir.join(index_name(opened.base)), &summary, &scan.entries, &[], &[])?;
        report.indexes_rebuilt += 1;
        dir_changed = true;
        let sealed = Sealed::built(summary, scan.entries);
        segments.push(Arc::new(Segment::sealed(opened.base, opened.path, opened.file, sealed)));
    }
    if listing.indexes.contains(&active.base) {
        // The active segment's index lives in memory; a marker from an earlier seal is stale.
        let index_path = dir.join(index_name(active.base));
        match fs.remove_file(&index_path) {
            Ok(()) => dir_changed = true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", &index_path, e)),
        }
    }
    active.file.sync_data().map_err(io("sync_data", &active.path))?;
    if dir_changed {
        fs.sync_dir(dir).map_err(io("sync_dir", dir))?;
    }

    let active_len = active_scan.end;
    let active_last_indexed = active_scan.entries.last().map_or(0, |e| u64::from(e.position));
    let active_stats = active_scan.stats;
    segments.push(Arc::new(Segment::active(
        active.base,
        active.path,
        active.file,
        active_len,
        active_scan.entries,
    )));
    report.segments = segments.len();
    report.start_offset = segments.first().map_or(0, |s| s.base);
    report.end_offset = end_offset;
    report.duration = started.elapsed();
    Ok(Recovered {
        segments,
        active_len,
        next_offset: end_offset,
        active_stats,
        active_last_indexed,
        lock,
        report,
    })
}

/// What recovery found, before it changes anything.
struct Plan {
    /// The known-durable region, with whether each index must be rewritten.
    durable: Vec<(Opened, Sealed, bool)>,
    /// The tail window's segments kept (at least as many as `scans`).
    tail: Vec<Opened>,
    /// Scans of the kept tail segments, in order; the last one's segment becomes active.
    scans: Vec<Scan>,
    /// Where and why the last kept segment's valid batches end, if before its end.
    stop: Option<(u64, CorruptionKind)>,
    /// Tail segments after the tear, to be removed.
    removed: Vec<Opened>,
}

/// Reads and checks the segments; returns `Corruption` for damage where the log must be valid.
fn plan(fs: &dyn Fs, dir: &Path, logs: &[u64], listing: &Listing, options: &LogOptions) -> Result<Plan> {
    // Open every segment and find the last durability marker among the sealed ones.
    let mut files: Vec<Opened> = Vec::with_capacity(logs.len());
    for &base in logs {
        let path = dir.join(log_name(base));
        let file = fs.open(&path, OpenMode::ReadWrite).map_err(io("open", &path))?;
        let len = file.len().map_err(io("stat", &path))?;
        let header = if listing.indexes.contains(&base) {
            read_index_header(fs, &dir.join(index_name(base)), base)
                .filter(|h| h.summary.segment_bytes == len)
        } else {
            None
        };
        files.push(Opened { base, path, file, len, header });
    }
    let sealed_count = files.len().saturating_sub(1);
    let durable_count =
        files.iter().take(sealed_count).rposition(|f| f.header.is_some()).map_or(0, |i| i + 1);
    // The last segment never carries a valid marker: markers are written only for segments
    // sealed behind a later one, and a truncation removes them before removing any segment.
    // So a marked last segment means the segments after it are gone.
    if let Some(last) = files.last()
        && let Some(header) = last.header
    {
        return Err(Error::corruption(
            &last.path,
            header.summary.segment_bytes,
            CorruptionKind::SegmentMissing { expected: header.summary.next_offset },
        ));
    }

    // The known-durable region: index headers trusted (or every batch checked).
    let mut tail = files.split_off(durable_count);
    let mut durable = Vec::with_capacity(files.len());
    let mut expected: Option<u64> = None;
    for opened in files {
        check_follows(&opened.path, expected, opened.base)?;
        let (sealed, rebuilt) = open_sealed(&opened, options)?;
        expected = Some(sealed.summary.next_offset);
        durable.push((opened, sealed, rebuilt));
    }

    // The tail window: every batch checked, in order, up to the first invalid one. Its first
    // segment must follow the durable region exactly. A later one may start after the end of
    // the previous one: that segment, never fsynced, lost its end in the crash (segment names
    // become durable in order, at each roll, so the later one can outlive it); the log ends
    // there. Starting before that end is an overlap no crash produces.
    let mut scans: Vec<Scan> = Vec::with_capacity(tail.len());
    let mut stop = None;
    for (i, opened) in tail.iter().enumerate() {
        if let (Some(expected), Some(previous)) = (expected, scans.last())
            && opened.base > expected
        {
            stop = Some((previous.end, CorruptionKind::SegmentGap { expected, found: opened.base }));
            break;
        }
        check_follows(&opened.path, expected, opened.base)?;
        let (scan, invalid) =
            scan_file(opened.file.as_ref(), opened.base, opened.len, options.index_interval_bytes)
                .map_err(io("read", &opened.path))?;
        expected = Some(scan.next_offset);
        // Zeros after a sealed segment's last batch, with the next segment starting right
        // after it: the segment's preallocated space, whose cut at the roll the crash lost
        // (it becomes durable with the segment's first fsync). Not a tear: the log goes on.
        let preallocated = match (&invalid, tail.get(i + 1)) {
            (Some((position, _)), Some(next)) if next.base == scan.next_offset => {
                describe_tail(opened.file.as_ref(), *position, opened.len)
                    .map_err(io("read", &opened.path))?
                    .0
                    == 0
            }
            _ => false,
        };
        scans.push(scan);
        if invalid.is_some() && !preallocated {
            stop = invalid;
            break;
        }
    }
    let removed = tail.split_off(scans.len());
    let end_offset = expected.unwrap_or(0);
    if let Some(durable_end) = options.known_durable_end
        && durable_end > end_offset
    {
        let (path, position) = match (tail.last(), scans.last()) {
            (Some(opened), Some(scan)) => (opened.path.clone(), stop.as_ref().map_or(scan.end, |(p, _)| *p)),
            _ => (dir.to_path_buf(), 0),
        };
        return Err(Error::corruption(
            path,
            position,
            CorruptionKind::MissingDurableData { durable_end, found_end: end_offset },
        ));
    }
    Ok(Plan { durable, tail, scans, stop, removed })
}

/// A segment file opened for recovery, with its durability marker if valid.
struct Opened {
    base: u64,
    path: PathBuf,
    file: Box<dyn File>,
    len: u64,
    header: Option<index::Header>,
}

/// The files of a log directory, by kind.
struct Listing {
    logs: Vec<u64>,
    indexes: Vec<u64>,
    temps: Vec<OsString>,
}

impl Listing {
    fn read(fs: &dyn Fs, dir: &Path) -> Result<Listing> {
        let mut listing = Listing { logs: Vec::new(), indexes: Vec::new(), temps: Vec::new() };
        for name in fs.list_dir(dir).map_err(io("list", dir))? {
            let Some(text) = name.to_str() else { continue };
            if text.ends_with(TEMP_SUFFIX) {
                listing.temps.push(name);
            } else if let Some(base) = parse_name(text, LOG_SUFFIX) {
                listing.logs.push(base);
            } else if let Some(base) = parse_name(text, INDEX_SUFFIX) {
                listing.indexes.push(base);
            }
        }
        listing.logs.sort_unstable();
        listing.indexes.sort_unstable();
        Ok(listing)
    }
}

fn check_follows(path: &Path, expected: Option<u64>, base: u64) -> Result<()> {
    match expected {
        Some(expected) if expected != base => {
            Err(Error::corruption(path, 0, CorruptionKind::SegmentGap { expected, found: base }))
        }
        _ => Ok(()),
    }
}

/// A sealed segment of the known-durable region: its summary from its index header, or from a
/// full scan (any damage is corruption). Returns whether its index must be rewritten.
fn open_sealed(opened: &Opened, options: &LogOptions) -> Result<(Sealed, bool)> {
    let index_path = opened.path.with_file_name(index_name(opened.base));
    if let Some(header) = opened.header
        && !options.verify_on_open
        && !header.legacy
    {
        return Ok((Sealed::from_index_file(index_path, header), false));
    }
    let (scan, stop) = scan_file(opened.file.as_ref(), opened.base, opened.len, options.index_interval_bytes)
        .map_err(io("read", &opened.path))?;
    if let Some((position, kind)) = stop {
        return Err(Error::corruption(&opened.path, position, kind));
    }
    let summary = summary_of(opened.base, &scan);
    // The data matches what its index says: keep the index (for a clean segment, its flag,
    // filter and first-seen runs, which a scan cannot recover).
    if let Some(header) = opened.header
        && !header.legacy
        && (index::Summary { cleaned_ms: None, ..header.summary }) == summary
    {
        return Ok((Sealed::from_index_file(index_path, header), false));
    }
    Ok((Sealed::built(summary, scan.entries), true))
}

/// The summary of a scanned segment. It is taken as dirty: whether compaction wrote it is
/// recorded only in its index, and guessing from its batches could call a segment that appends
/// reached after a truncation clean (duplicate keys in the clean prefix). Dirty is always safe:
/// the next pass reads it again.
pub(crate) fn summary_of(base: u64, scan: &Scan) -> index::Summary {
    scan.stats.summary(base, scan.next_offset, scan.end, None)
}

/// An index file's header, if it holds a valid one for `base` (an unreadable file holds none).
pub(crate) fn read_index_header(fs: &dyn Fs, path: &Path, base: u64) -> Option<index::Header> {
    let file = fs.open(path, OpenMode::Read).ok()?;
    // A version-1 index with few entries is shorter than the current header.
    let len = file.len().ok()?.min(index::HEADER_LEN as u64) as usize;
    let mut bytes = [0; index::HEADER_LEN];
    file.read_exact_at(bytes.get_mut(..len)?, 0).ok()?;
    index::decode_header(bytes.get(..len)?, base)
}

/// Writes a sealed segment's index file and makes its data durable (its directory entry is made
/// durable by the caller's next directory sync; a lost index is only rebuilt).
pub(crate) fn write_index(
    fs: &dyn Fs,
    path: &Path,
    summary: &index::Summary,
    entries: &[Entry],
    filter: &[u8],
    runs: &[SeenRun],
) -> Result<()> {
    let file = fs.open(path, OpenMode::CreateTruncate).map_err(io("create", path))?;
    file.write_all_at(&index::encode(summary, entries, filter, runs), 0).map_err(io("write", path))?;
    file.sync_data().map_err(io("sync_data", path))
}

/// How many non-zero bytes lie in `[position, len)` (counting to the last non-zero byte), and
/// how many records the batch headers found there claim.
pub(crate) fn describe_tail(file: &dyn File, position: u64, len: u64) -> std::io::Result<(u64, u64)> {
    const CHUNK: u64 = 1 << 20;
    let mut last_nonzero = None;
    let mut buf = Vec::new();
    let mut at = position;
    while at < len {
        let n = CHUNK.min(len - at);
        buf.resize(n as usize, 0);
        file.read_exact_at(&mut buf, at)?;
        if let Some(i) = buf.iter().rposition(|b| *b != 0) {
            last_nonzero = Some(at + i as u64);
        }
        at += n;
    }
    let Some(last_nonzero) = last_nonzero else {
        return Ok((0, 0));
    };
    // Walk whatever batch headers can still be read, for the report only.
    let mut records = 0u64;
    let mut at = position;
    let mut header = [0; HEADER_LEN];
    while at + HEADER_LEN as u64 <= len {
        file.read_exact_at(&mut header, at)?;
        match batch::peek_length(&header, len - at) {
            Ok(length) => {
                records += u64::from(batch::u32_at(&header, 24));
                at += length as u64;
            }
            Err(_) => break,
        }
    }
    Ok((last_nonzero + 1 - position, records))
}
