//! Opening a log directory: finding the segments, checking what must be valid, cutting the torn
//! tail durably, and reporting what was done (DESIGN §2 P4/P5, §4).
//!
//! Sealed segments (all but the last) lie in the known-durable region: they were fsynced, and
//! the directory too, before the next segment was created. Their index headers give their end
//! offset and length without a scan; a missing or damaged index is rebuilt by scanning the
//! segment, and any invalid batch found then is corruption. The last segment is scanned from
//! its start: the first invalid batch ends the log, and whatever follows is cut off and fsynced
//! before the log accepts appends, unless the caller's known-durable end says those offsets were
//! durable, in which case the damage is reported as corruption and nothing is changed.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_fs::{File, FileLock, Fs, OpenMode};

use crate::batch::{self, HEADER_LEN};
use crate::error::{CorruptionKind, Error, Result};
use crate::index::{self, Entry};
use crate::mutants;
use crate::options::LogOptions;
use crate::segment::{
    INDEX_SUFFIX, LOG_SUFFIX, Scan, Sealed, Segment, TEMP_SUFFIX, index_name, log_name, parse_name,
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
    /// Index files rebuilt because they were missing or damaged.
    pub indexes_rebuilt: usize,
    /// Leftover temporary files removed.
    pub temp_files_removed: usize,
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
    pub(crate) active_max_ts: Option<i64>,
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
    if !fs.exists(dir).map_err(io("stat", dir))? {
        fs.create_dir_all(dir).map_err(io("create_dir", dir))?;
        let parent = match dir.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        fs.sync_dir(parent).map_err(io("sync_dir", parent))?;
    }
    let lock_path = dir.join(LOCK_NAME);
    let lock = fs.lock_file(&lock_path).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock => Error::Locked {
            path: lock_path.clone(),
        },
        _ => Error::io("lock", &lock_path, e),
    })?;

    let mut report = RecoveryReport::default();
    let listing = Listing::read(fs, dir)?;
    let mut dir_changed = false;
    for name in &listing.temps {
        let path = dir.join(name);
        fs.remove_file(&path).map_err(io("remove", &path))?;
        report.temp_files_removed += 1;
        dir_changed = true;
    }
    for base in listing
        .indexes
        .iter()
        .filter(|base| !listing.logs.contains(base))
    {
        let path = dir.join(index_name(*base));
        fs.remove_file(&path).map_err(io("remove", &path))?;
        dir_changed = true;
    }

    let mut logs = listing.logs.clone();
    if logs.is_empty() {
        let path = dir.join(log_name(0));
        drop(
            fs.open(&path, OpenMode::CreateNew)
                .map_err(io("create", &path))?,
        );
        dir_changed = true;
        logs.push(0);
    }

    let mut segments = Vec::with_capacity(logs.len());
    let mut expected: Option<u64> = None;
    let (sealed_bases, active_base) = match logs.split_last() {
        Some((last, sealed)) => (sealed, *last),
        None => (&[][..], 0),
    };
    for &base in sealed_bases {
        let path = dir.join(log_name(base));
        check_follows(&path, expected, base)?;
        let file = fs
            .open(&path, OpenMode::ReadWrite)
            .map_err(io("open", &path))?;
        let has_index = listing.indexes.contains(&base);
        let (sealed, rebuilt) =
            open_sealed(fs, dir, &path, file.as_ref(), base, has_index, options)?;
        report.indexes_rebuilt += usize::from(rebuilt);
        expected = Some(sealed.summary.next_offset);
        segments.push(Arc::new(Segment::sealed(base, path, file, sealed)));
    }

    // The active segment.
    let path = dir.join(log_name(active_base));
    check_follows(&path, expected, active_base)?;
    let file = fs
        .open(&path, OpenMode::ReadWrite)
        .map_err(io("open", &path))?;
    let len = file.len().map_err(io("stat", &path))?;
    let (scan, stop) = scan_file(
        file.as_ref(),
        active_base,
        len,
        options.index_interval_bytes,
    )
    .map_err(io("read", &path))?;
    if let Some(durable_end) = options.known_durable_end
        && durable_end > scan.next_offset
    {
        let (position, kind) = match stop {
            Some((position, _)) => (
                position,
                CorruptionKind::MissingDurableData {
                    durable_end,
                    found_end: scan.next_offset,
                },
            ),
            None => (
                scan.end,
                CorruptionKind::MissingDurableData {
                    durable_end,
                    found_end: scan.next_offset,
                },
            ),
        };
        return Err(Error::corruption(&path, position, kind));
    }
    if let Some((position, reason)) = stop {
        let (bytes, records) =
            describe_tail(file.as_ref(), position, len).map_err(io("read", &path))?;
        if bytes > 0 {
            report.tail_cut = Some(TailCut {
                file: path.clone(),
                position,
                bytes,
                records,
                reason,
            });
        }
        if !mutants::active(mutants::OPEN_SKIPS_TAIL_CUT) {
            file.set_len(position).map_err(io("set_len", &path))?;
        }
    } else if len > scan.end {
        file.set_len(scan.end).map_err(io("set_len", &path))?;
    }
    if listing.indexes.contains(&active_base) {
        let index_path = dir.join(index_name(active_base));
        fs.remove_file(&index_path)
            .map_err(io("remove", &index_path))?;
        dir_changed = true;
    }
    // Whatever survived is made durable now, so that the durable end starts at the log's end and
    // a cut tail cannot reappear.
    file.sync_data().map_err(io("sync_data", &path))?;
    if dir_changed {
        fs.sync_dir(dir).map_err(io("sync_dir", dir))?;
    }

    let active = Segment::active(active_base, path, file, scan.end, scan.entries.clone());
    segments.push(Arc::new(active));
    report.segments = segments.len();
    report.start_offset = segments.first().map_or(0, |s| s.base);
    report.end_offset = scan.next_offset;
    report.duration = started.elapsed();
    Ok(Recovered {
        segments,
        active_len: scan.end,
        next_offset: scan.next_offset,
        active_max_ts: scan.max_ts,
        active_last_indexed: scan.entries.last().map_or(0, |e| u64::from(e.position)),
        lock,
        report,
    })
}

/// The files of a log directory, by kind.
struct Listing {
    logs: Vec<u64>,
    indexes: Vec<u64>,
    temps: Vec<OsString>,
}

impl Listing {
    fn read(fs: &dyn Fs, dir: &Path) -> Result<Listing> {
        let mut listing = Listing {
            logs: Vec::new(),
            indexes: Vec::new(),
            temps: Vec::new(),
        };
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
        Some(expected) if expected != base => Err(Error::corruption(
            path,
            0,
            CorruptionKind::SegmentGap {
                expected,
                found: base,
            },
        )),
        _ => Ok(()),
    }
}

/// A sealed segment's summary from its index header, or from a full scan (which then writes a
/// fresh index). Returns whether the index was rebuilt.
fn open_sealed(
    fs: &dyn Fs,
    dir: &Path,
    path: &Path,
    file: &dyn File,
    base: u64,
    has_index: bool,
    options: &LogOptions,
) -> Result<(Sealed, bool)> {
    let len = file.len().map_err(io("stat", path))?;
    let index_path = dir.join(index_name(base));
    let header = if has_index {
        read_index_header(fs, &index_path, base)
    } else {
        None
    };
    let header = header.filter(|h| h.summary.segment_bytes == len);
    if let Some(header) = header
        && !options.verify_on_open
    {
        return Ok((Sealed::from_index_file(index_path, header), false));
    }
    let (scan, stop) =
        scan_file(file, base, len, options.index_interval_bytes).map_err(io("read", path))?;
    if let Some((position, kind)) = stop {
        return Err(Error::corruption(path, position, kind));
    }
    let summary = summary_of(base, &scan);
    let rebuilt = header.is_none_or(|h| h.summary != summary);
    if rebuilt {
        write_index(fs, &index_path, &summary, &scan.entries)?;
    }
    Ok((Sealed::built(summary, scan.entries), rebuilt))
}

pub(crate) fn summary_of(base: u64, scan: &Scan) -> index::Summary {
    index::Summary {
        base_offset: base,
        next_offset: scan.next_offset,
        segment_bytes: scan.end,
        max_ts: scan.max_ts.unwrap_or(i64::MIN),
    }
}

fn read_index_header(fs: &dyn Fs, path: &Path, base: u64) -> Option<index::Header> {
    let file = fs.open(path, OpenMode::Read).ok()?;
    let mut bytes = [0; index::HEADER_LEN];
    file.read_exact_at(&mut bytes, 0).ok()?;
    index::decode_header(&bytes, base)
}

/// Writes a sealed segment's index file and makes its data durable (its directory entry is made
/// durable by the caller's next directory sync; a lost index is only rebuilt).
pub(crate) fn write_index(
    fs: &dyn Fs,
    path: &Path,
    summary: &index::Summary,
    entries: &[Entry],
) -> Result<()> {
    let file = fs
        .open(path, OpenMode::CreateTruncate)
        .map_err(io("create", path))?;
    file.write_all_at(&index::encode(summary, entries), 0)
        .map_err(io("write", path))?;
    file.sync_data().map_err(io("sync_data", path))
}

/// How many non-zero bytes lie in `[position, len)` (counting to the last non-zero byte), and
/// how many records the batch headers found there claim.
fn describe_tail(file: &dyn File, position: u64, len: u64) -> std::io::Result<(u64, u64)> {
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
