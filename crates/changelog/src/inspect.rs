//! Looking inside a log directory without changing it: what `cairn log stat`, `dump` and
//! `verify` show, and what [`Repair`](crate::Repair) acts on.
//!
//! [`Log::open`](crate::Log::open) recovers as it opens: it cuts a torn tail, rebuilds index
//! files and finishes a committed compaction. An operator looking at a log must see it as it
//! is, so [`LogDir`] opens every file read-only, takes no lock (a running writer is not
//! disturbed; what it is writing may show as a torn tail), and splits the directory the way
//! recovery does (docs/format.md, "Recovery"): the known-durable region, up to the last segment
//! whose index file is a valid durability marker, where damage is corruption, and the tail
//! window after it, where the first invalid batch ends the log. Each [`Finding`] says which of
//! the two it is: [`Severity::Damage`], which opening refuses or a read would fail on (the
//! explicit [`Repair`](crate::Repair) cuts there), or [`Severity::Recoverable`], which opening
//! handles by itself.

use std::fmt;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_fs::{File, Fs, OpenMode};

use crate::compaction::swap::{self, COMPACTING_SUFFIX, SWAP_NAME};
use crate::error::{CorruptionKind, Error, Result};
use crate::index::{self, Entries, Header};
use crate::record::RecordView;
use crate::recovery::{describe_tail, read_index_header};
use crate::segment::{FileScan, INDEX_SUFFIX, LOG_SUFFIX, Stats, Step, TEMP_SUFFIX, index_name, parse_name};

/// How serious a [`Finding`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Opening the log handles it by itself: a torn tail in the tail window (cut), a missing or
    /// damaged index file (rebuilt), a leftover file (removed), a committed compaction pass not
    /// yet installed (finished).
    Recoverable,
    /// Stored data is damaged where it must be valid (DESIGN P5): opening refuses the log, or a
    /// read of the damaged part fails. [`Repair`](crate::Repair) is the explicit fix.
    Damage,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Recoverable => "recoverable",
            Severity::Damage => "damage",
        })
    }
}

/// What is wrong at a [`Finding`]'s place.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// Bytes where the known-durable region must hold a valid batch, or segments that do not
    /// follow each other (a gap, an overlap, a missing segment).
    Data(CorruptionKind),
    /// The first invalid batch of the tail window: the log ends here, and opening cuts the rest
    /// of the file.
    TornTail {
        /// What is wrong with the bytes.
        kind: CorruptionKind,
        /// Bytes from here to the file's last non-zero byte (zeros after it are preallocated
        /// space), as recovery's `TailCut` counts them.
        bytes: u64,
    },
    /// A segment after the end of the log (after a torn tail): opening removes it.
    BeyondEnd {
        /// The segment's length.
        bytes: u64,
    },
    /// A sealed segment of the known-durable region has no index file; opening scans the
    /// segment and writes it.
    IndexMissing,
    /// An index file that is not a valid index of its segment (damaged, or left from an
    /// earlier state of the segment); opening or the first read rebuilds it.
    IndexDamaged,
    /// A valid index header that disagrees with its segment's data.
    IndexMismatch {
        /// The field that differs.
        field: &'static str,
        /// Its value in the index.
        index: u64,
        /// Its value found by reading the segment.
        data: u64,
    },
    /// An index entry that does not point at the start of the batch holding its offset.
    IndexEntry {
        /// The entry's number in the index.
        entry: u64,
    },
    /// A leftover of an interrupted write or of a compaction pass that did not commit; opening
    /// removes it.
    Leftover,
    /// A compaction pass committed but did not finish installing its segments; opening
    /// finishes it. The inspection shows the log as it will be then.
    UnfinishedCompaction,
    /// The compaction commit record is damaged: opening refuses the log.
    SwapRecord(CorruptionKind),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Data(kind) => write!(f, "{kind}"),
            Problem::TornTail { kind, bytes } => {
                write!(f, "torn tail, {kind}: the log ends here and opening cuts {bytes} bytes")
            }
            Problem::BeyondEnd { bytes } => {
                write!(f, "segment after a torn tail ({bytes} bytes): opening removes it")
            }
            Problem::IndexMissing => f.write_str("index file missing: opening rebuilds it"),
            Problem::IndexDamaged => f.write_str("index file damaged or stale: it is rebuilt"),
            Problem::IndexMismatch { field, index, data } => {
                write!(f, "index says {field} = {index}, the segment has {data}")
            }
            Problem::IndexEntry { entry } => {
                write!(f, "index entry {entry} does not point at the batch holding its offset")
            }
            Problem::Leftover => f.write_str("leftover file: opening removes it"),
            Problem::UnfinishedCompaction => {
                f.write_str("a committed compaction pass is not installed yet: opening finishes it")
            }
            Problem::SwapRecord(kind) => write!(f, "compaction commit record damaged: {kind}"),
        }
    }
}

/// One problem found in a log directory: where, what, and how serious.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The file.
    pub file: PathBuf,
    /// The byte position in the file where the problem starts.
    pub position: u64,
    /// What is wrong.
    pub problem: Problem,
    /// Whether opening handles it.
    pub severity: Severity,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}: {} [{}]", self.file.display(), self.position, self.problem, self.severity)
    }
}

/// What an inspection found in one segment.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SegmentInspection {
    /// The segment's first offset (from its file name).
    pub base_offset: u64,
    /// The segment file (a `.compacting` file while a committed pass is not installed).
    pub file: PathBuf,
    /// The file's length.
    pub bytes: u64,
    /// One past the last offset of its valid batches.
    pub next_offset: u64,
    /// Bytes of its valid batches, from the start of the file.
    pub valid_bytes: u64,
    /// Records in its valid batches.
    pub records: u64,
    /// Tombstones among them.
    pub tombstones: u64,
    /// The largest record timestamp, if it holds a record.
    pub max_timestamp_ms: Option<i64>,
    /// When compaction wrote the segment (ms since the Unix epoch); `None` for a segment
    /// written by appends (dirty) or whose index does not record it.
    pub compacted_ms: Option<i64>,
    /// Whether it lies in the known-durable region.
    pub durable: bool,
    /// Whether its batches were read (`false`: the figures come from its index header).
    pub scanned: bool,
    /// Whether it lies after the end of the log (after a torn tail or a gap in the tail window),
    /// so that opening removes it.
    pub beyond_end: bool,
}

/// The result of [`LogDir::stat`] or [`LogDir::verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Inspection {
    /// The log directory.
    pub dir: PathBuf,
    /// Its segments in offset order.
    pub segments: Vec<SegmentInspection>,
    /// Every problem found, in the order of the files.
    pub findings: Vec<Finding>,
    /// The first offset of the log.
    pub start_offset: u64,
    /// One past the last offset of the log as opening would keep it (before the first torn tail
    /// or damage).
    pub end_offset: u64,
    /// Whether every batch was read ([`LogDir::verify`]) or the sealed segments' index headers
    /// were trusted ([`LogDir::stat`]).
    pub verified: bool,
}

impl Inspection {
    /// The most serious finding's severity, or `None` if the log is clean.
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }

    /// Bytes of all segment files on disk (a live log's preallocated space included; the
    /// segments' `valid_bytes` count only their batches).
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Records in all segments (as far as they are valid).
    pub fn records(&self) -> u64 {
        self.segments.iter().filter(|s| !s.beyond_end).map(|s| s.records).sum()
    }

    /// The share of the log's bytes in segments that compaction has not written (dirty ones,
    /// the active segment included): what a compaction pass would read, as Kafka's "dirty
    /// ratio". 0 for an empty log.
    pub fn dirty_ratio(&self) -> f64 {
        let kept = self.segments.iter().filter(|s| !s.beyond_end);
        let (dirty, total) = kept.fold((0u64, 0u64), |(dirty, total), s| {
            (dirty + if s.compacted_ms.is_none() { s.valid_bytes } else { 0 }, total + s.valid_bytes)
        });
        if total == 0 { 0.0 } else { dirty as f64 / total as f64 }
    }

    /// When compaction last wrote a segment still in the log (ms since the Unix epoch).
    pub fn last_compaction_ms(&self) -> Option<i64> {
        self.segments.iter().filter_map(|s| s.compacted_ms).max()
    }
}

/// A record found by [`LogDir::for_each_record`], with where it lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LocatedRecord<'a> {
    /// The record.
    pub record: RecordView<'a>,
    /// The base offset of the segment holding it.
    pub segment_base: u64,
    /// The byte position of its batch in the segment file.
    pub batch_position: u64,
}

/// One segment's files as the directory holds them.
#[derive(Debug)]
struct SegmentFiles {
    base: u64,
    log: PathBuf,
    index: Option<PathBuf>,
    bytes: u64,
    /// The index header, if the index file holds a valid one for this segment.
    header: Option<Header>,
}

impl SegmentFiles {
    /// Whether the index is a durability marker: valid and matching the segment's length.
    fn marked(&self) -> bool {
        self.header.is_some_and(|h| h.summary.segment_bytes == self.bytes)
    }
}

/// A log directory opened for inspection: read-only, without the lock.
#[derive(Debug)]
pub struct LogDir {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    segments: Vec<SegmentFiles>,
    /// Segments of the known-durable region (a prefix of `segments`).
    durable_count: usize,
    /// Findings about the directory itself (leftovers, the compaction record).
    listing_findings: Vec<Finding>,
}

fn io<'p>(op: &'static str, path: &'p Path) -> impl FnOnce(std::io::Error) -> Error + 'p {
    move |e| Error::io(op, path, e)
}

impl LogDir {
    /// Lists `dir` and reads its index headers (nothing else is read, nothing is written).
    /// A committed but unfinished compaction pass is applied in the view only: the segments
    /// are those opening would install.
    ///
    /// # Errors
    /// [`Error::Io`] if the directory cannot be listed or a file not opened;
    /// [`Error::NotALog`] if it holds no segment file.
    pub fn open(fs: Arc<dyn Fs>, dir: impl AsRef<Path>) -> Result<LogDir> {
        let dir = dir.as_ref().to_path_buf();
        let names = fs.list_dir(&dir).map_err(io("list", &dir))?;
        let names: Vec<String> = names.into_iter().filter_map(|n| n.into_string().ok()).collect();
        let mut listing_findings = Vec::new();
        let leftover = |name: &str| Finding {
            file: dir.join(name),
            position: 0,
            problem: Problem::Leftover,
            severity: Severity::Recoverable,
        };

        let swap_record = if names.iter().any(|n| n == SWAP_NAME) {
            match swap::read(fs.as_ref(), &dir) {
                Ok(record) => record,
                Err(Error::Corruption { file, position, kind }) => {
                    listing_findings.push(Finding {
                        file,
                        position,
                        problem: Problem::SwapRecord(kind),
                        severity: Severity::Damage,
                    });
                    None
                }
                Err(e) => return Err(e),
            }
        } else {
            None
        };
        if swap_record.is_some() {
            listing_findings.push(Finding {
                file: dir.join(SWAP_NAME),
                position: 0,
                problem: Problem::UnfinishedCompaction,
                severity: Severity::Recoverable,
            });
        }

        // Which file holds each segment and its index, as opening would leave them.
        let mut logs: Vec<(u64, String)> = Vec::new();
        let mut indexes: Vec<(u64, String)> = Vec::new();
        for name in &names {
            if name.ends_with(TEMP_SUFFIX) {
                listing_findings.push(leftover(name));
            } else if let Some(plain) = name.strip_suffix(COMPACTING_SUFFIX) {
                let installed = |suffix| {
                    parse_name(plain, suffix)
                        .filter(|base| swap_record.as_ref().is_some_and(|r| r.new.contains(base)))
                };
                if let Some(base) = installed(LOG_SUFFIX) {
                    logs.retain(|(b, _)| *b != base);
                    logs.push((base, name.clone()));
                } else if let Some(base) = installed(INDEX_SUFFIX) {
                    indexes.retain(|(b, _)| *b != base);
                    indexes.push((base, name.clone()));
                } else {
                    listing_findings.push(leftover(name));
                }
            } else if let Some(base) = parse_name(name, LOG_SUFFIX) {
                if !logs.iter().any(|(b, n)| *b == base && n.ends_with(COMPACTING_SUFFIX)) {
                    logs.push((base, name.clone()));
                }
            } else if let Some(base) = parse_name(name, INDEX_SUFFIX)
                && !indexes.iter().any(|(b, n)| *b == base && n.ends_with(COMPACTING_SUFFIX))
            {
                indexes.push((base, name.clone()));
            }
        }
        if let Some(record) = &swap_record {
            let replaced = |base: &u64| record.old.contains(base) && !record.new.contains(base);
            logs.retain(|(base, _)| !replaced(base));
            indexes.retain(|(base, _)| !replaced(base));
        }
        logs.sort_unstable();
        if logs.is_empty() && swap_record.is_none() {
            return Err(Error::NotALog { path: dir });
        }

        let mut segments = Vec::with_capacity(logs.len());
        for (base, name) in logs {
            let log = dir.join(&name);
            let bytes = fs.file_len(&log).map_err(io("stat", &log))?;
            let index = indexes.iter().find(|(b, _)| *b == base).map(|(_, n)| dir.join(n));
            let header = index.as_ref().and_then(|path| read_index_header(fs.as_ref(), path, base));
            segments.push(SegmentFiles { base, log, index, bytes, header });
        }
        for (base, name) in &indexes {
            if !segments.iter().any(|s| s.base == *base) {
                listing_findings.push(leftover(name));
            }
        }
        let sealed = segments.len().saturating_sub(1);
        let durable_count = segments.iter().take(sealed).rposition(SegmentFiles::marked).map_or(0, |i| i + 1);
        Ok(LogDir { fs, dir, segments, durable_count, listing_findings })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes of all segment files: what [`LogDir::verify`] reads.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// The log's shape and contents, trusting the index headers of the known-durable region
    /// (reading only the segments after it).
    ///
    /// # Errors
    /// [`Error::Io`] if a file cannot be read. Damage is a [`Finding`], not an error.
    pub fn stat(&self) -> Result<Inspection> {
        self.inspect(false, &mut |_| {})
    }

    /// Reads and checks every batch of every segment, every segment boundary, and every index
    /// file against its segment. `progress` is called with the bytes read so far.
    ///
    /// # Errors
    /// [`Error::Io`] if a file cannot be read. Damage is a [`Finding`], not an error.
    pub fn verify(&self, progress: &mut dyn FnMut(u64)) -> Result<Inspection> {
        self.inspect(true, progress)
    }

    fn inspect(&self, full: bool, progress: &mut dyn FnMut(u64)) -> Result<Inspection> {
        let mut findings = self.listing_findings.clone();
        let mut segments = Vec::with_capacity(self.segments.len());
        let mut read_before = 0;
        // The offset the next segment must start at; `None` after damage made it unknown.
        let mut expected: Option<u64> = None;
        // Whether the log ended (a torn tail, or a gap in the tail window).
        let mut ended = false;
        let mut end_offset = None;
        let last = self.segments.len().saturating_sub(1);
        for (i, files) in self.segments.iter().enumerate() {
            let durable = i < self.durable_count;
            let finding = |position, problem, severity| Finding {
                file: files.log.clone(),
                position,
                problem,
                severity,
            };
            if ended {
                findings.push(finding(0, Problem::BeyondEnd { bytes: files.bytes }, Severity::Recoverable));
                segments.push(beyond_end(files));
                continue;
            }
            if let Some(expected) = expected
                && expected != files.base
            {
                let kind = CorruptionKind::SegmentGap { expected, found: files.base };
                // A gap after the first segment of the tail window is where a segment that was
                // never fsynced lost its end: the log ends there (see recovery).
                let first_of_tail = i == self.durable_count;
                if files.base > expected && !durable && !first_of_tail {
                    end_offset.get_or_insert(expected);
                    ended = true;
                    let problem = Problem::TornTail { kind, bytes: files.bytes };
                    findings.push(finding(0, problem, Severity::Recoverable));
                    segments.push(beyond_end(files));
                    continue;
                }
                end_offset.get_or_insert(expected);
                findings.push(finding(0, Problem::Data(kind), Severity::Damage));
            }
            if i == last && files.marked() {
                // A marked last segment: the segments after it are gone (see recovery).
                let next = files.header.map_or(files.base, |h| h.summary.next_offset);
                let kind = CorruptionKind::SegmentMissing { expected: next };
                findings.push(finding(files.bytes, Problem::Data(kind), Severity::Damage));
            }
            let header = files.header.filter(|_| files.marked());
            match &files.index {
                None if durable => findings.push(Finding {
                    file: files.dir_index(&self.dir),
                    position: 0,
                    problem: Problem::IndexMissing,
                    severity: Severity::Recoverable,
                }),
                // Damaged, half written, or left from an earlier seal of the segment. (A
                // sealed segment of the tail window without an index file is normal: sealed,
                // not yet synced.)
                Some(path) if header.is_none() => findings.push(Finding {
                    file: path.clone(),
                    position: 0,
                    problem: Problem::IndexDamaged,
                    severity: Severity::Recoverable,
                }),
                _ => {}
            }

            let trusted = header.filter(|h| durable && !full && !h.legacy);
            let inspection = match trusted {
                Some(header) => from_header(files, &header, durable),
                None => {
                    let file = self.fs.open(&files.log, OpenMode::Read).map_err(io("open", &files.log))?;
                    let mut report = |done: u64| progress(read_before + done);
                    let scan = scan_segment(file.as_ref(), files.base, files.bytes, &mut report)
                        .map_err(io("read", &files.log))?;
                    // Zeros after the last batch of a tail-window segment are preallocated space
                    // (LogOptions::preallocate_bytes) when it is the last segment (the log ends
                    // there) or the next one starts right after it (a roll's cut the crash
                    // lost): opening cuts them without calling them a tear, as here.
                    let continues = self.segments.get(i + 1).is_some_and(|n| n.base == scan.next_offset);
                    let zero_tail = match &scan.invalid {
                        Some((position, _)) if (i == last || continues) && !durable => {
                            describe_tail(file.as_ref(), *position, files.bytes)
                                .map_err(io("read", &files.log))?
                                .0
                                == 0
                        }
                        _ => false,
                    };
                    if zero_tail {
                        if i == last {
                            end_offset.get_or_insert(scan.next_offset);
                        }
                    } else if let Some((position, kind)) = &scan.invalid {
                        if durable {
                            end_offset.get_or_insert(scan.next_offset);
                            findings.push(finding(*position, Problem::Data(kind.clone()), Severity::Damage));
                        } else {
                            end_offset.get_or_insert(scan.next_offset);
                            ended = true;
                            let bytes = describe_tail(file.as_ref(), *position, files.bytes)
                                .map_err(io("read", &files.log))?
                                .0;
                            let problem = Problem::TornTail { kind: kind.clone(), bytes };
                            findings.push(finding(*position, problem, Severity::Recoverable));
                        }
                    }
                    if let (Some(header), true) = (header, durable) {
                        self.check_index(files, &header, &scan, &mut findings)?;
                    }
                    from_scan(files, header.and_then(|h| h.summary.cleaned_ms), &scan, durable)
                }
            };
            read_before += files.bytes;
            progress(read_before);
            // After damage inside a durable segment only its index header (if any) still says
            // where it ends; without one, the next boundary cannot be checked.
            expected = if inspection.valid_bytes < files.bytes {
                header.map(|h| h.summary.next_offset)
            } else {
                Some(inspection.next_offset)
            };
            segments.push(inspection);
        }
        let start_offset = segments.first().map_or(0, |s| s.base_offset);
        let end_offset = end_offset.or(expected).unwrap_or(start_offset);
        Ok(Inspection { dir: self.dir.clone(), segments, findings, start_offset, end_offset, verified: full })
    }

    /// Checks a marked segment's index file against a scan of the segment.
    fn check_index(
        &self,
        files: &SegmentFiles,
        header: &Header,
        scan: &SegmentScan,
        findings: &mut Vec<Finding>,
    ) -> Result<()> {
        let Some(path) = &files.index else { return Ok(()) };
        // A wrong end offset misleads every reader (recovery trusts it); wrong counts only
        // mislead compaction's bookkeeping, and `verify_on_open` rewrites them.
        let mut mismatch = |field, index: u64, data: u64, severity| {
            if index != data {
                let problem = Problem::IndexMismatch { field, index, data };
                findings.push(Finding { file: path.clone(), position: 0, problem, severity });
            }
        };
        if scan.invalid.is_none() {
            let summary = &header.summary;
            mismatch("next_offset", summary.next_offset, scan.next_offset, Severity::Damage);
            if !header.legacy {
                mismatch("record_count", summary.record_count, scan.stats.records, Severity::Recoverable);
                mismatch("tombstones", summary.tombstones, scan.stats.tombstones, Severity::Recoverable);
            }
        }
        let entries = self
            .fs
            .open(path, OpenMode::Read)
            .and_then(|file| file.map())
            .ok()
            .and_then(|map| Entries::from_mapping(map, header));
        let Some(entries) = entries else {
            findings.push(Finding {
                file: path.clone(),
                position: index::HEADER_LEN as u64,
                problem: Problem::IndexDamaged,
                severity: Severity::Recoverable,
            });
            return Ok(());
        };
        for i in 0..entries.len() {
            let Some(entry) = entries.get(i) else { break };
            let position = u64::from(entry.position);
            if scan.invalid.as_ref().is_some_and(|(at, _)| position >= *at) {
                break;
            }
            let holds = scan
                .batch_starts
                .binary_search_by_key(&position, |(p, _, _)| *p)
                .ok()
                .and_then(|at| scan.batch_starts.get(at))
                .is_some_and(|(_, first, next)| {
                    let offset = files.base + u64::from(entry.rel_offset);
                    *first <= offset && offset < *next
                });
            if !holds {
                let at = (index::HEADER_LEN + i * index::ENTRY_LEN) as u64;
                let problem = Problem::IndexEntry { entry: i as u64 };
                findings.push(Finding {
                    file: path.clone(),
                    position: at,
                    problem,
                    severity: Severity::Damage,
                });
            }
        }
        Ok(())
    }

    /// Calls `each` with every record at or after offset `from`, in offset order, until it
    /// returns `Break` or the log ends. Returns where the records stopped short of the end of
    /// the files, if they did: the first invalid batch or segment boundary (a torn tail is
    /// [`Severity::Recoverable`]: the log ends there).
    ///
    /// # Errors
    /// [`Error::Io`] if a file cannot be read.
    pub fn for_each_record(
        &self,
        from: u64,
        each: &mut dyn FnMut(&LocatedRecord<'_>) -> ControlFlow<()>,
    ) -> Result<Option<Finding>> {
        // Whether a segment lies beyond the end of the log (after a torn tail or a gap in the
        // tail window) depends on the segments before it: learn it first, from the index
        // headers and a scan of the tail window.
        let shape = self.stat()?;
        let tear = shape.findings.iter().find(|f| matches!(f.problem, Problem::TornTail { .. })).cloned();
        let first = self.segments.iter().rposition(|s| s.base <= from).unwrap_or(0);
        let mut expected: Option<u64> = None;
        for (i, files) in self.segments.iter().enumerate().skip(first) {
            let durable = i < self.durable_count;
            let severity = if durable { Severity::Damage } else { Severity::Recoverable };
            if shape.segments.get(i).is_some_and(|s| s.beyond_end) {
                return Ok(tear);
            }
            if let Some(expected) = expected
                && expected != files.base
            {
                // Not a tear (that segment would lie beyond the end): a gap or an overlap.
                let kind = CorruptionKind::SegmentGap { expected, found: files.base };
                let problem = Problem::Data(kind);
                let finding =
                    Finding { file: files.log.clone(), position: 0, problem, severity: Severity::Damage };
                return Ok(Some(finding));
            }
            let file = self.fs.open(&files.log, OpenMode::Read).map_err(io("open", &files.log))?;
            // Start at the indexed batch at or before `from`, when the index is a valid marker.
            let (mut position, mut next) = (0, files.base);
            if from > files.base
                && let (Some(path), Some(header)) = (&files.index, files.header.filter(|_| files.marked()))
                && let Some(entries) = self
                    .fs
                    .open(path, OpenMode::Read)
                    .and_then(|f| f.map())
                    .ok()
                    .and_then(|map| Entries::from_mapping(map, &header))
            {
                let rel = u32::try_from(from - files.base).unwrap_or(u32::MAX);
                let entry = entries.floor(rel);
                (position, next) = (u64::from(entry.position), files.base + u64::from(entry.rel_offset));
            }
            let mut scan = FileScan::new(position);
            loop {
                match scan.next(file.as_ref(), files.bytes, next).map_err(io("read", &files.log))? {
                    Step::Batch { position, info, bytes } => {
                        next = info.next_offset();
                        if next <= from {
                            continue;
                        }
                        for record in crate::batch::Records::new(bytes, &info).flatten() {
                            if record.offset < from {
                                continue;
                            }
                            let located =
                                LocatedRecord { record, segment_base: files.base, batch_position: position };
                            if each(&located).is_break() {
                                return Ok(None);
                            }
                        }
                    }
                    Step::End => break,
                    Step::Invalid { position, .. }
                        if !durable
                            && self.segments.get(i + 1).is_none_or(|n| n.base == next)
                            && describe_tail(file.as_ref(), position, files.bytes)
                                .map_err(io("read", &files.log))?
                                .0
                                == 0 =>
                    {
                        // Preallocated space after the last batch, as in `stat`: the log ends
                        // here, or goes on in the next segment.
                        break;
                    }
                    Step::Invalid { position, kind } => {
                        let problem = if durable {
                            Problem::Data(kind)
                        } else {
                            let bytes = describe_tail(file.as_ref(), position, files.bytes)
                                .map_err(io("read", &files.log))?
                                .0;
                            Problem::TornTail { kind, bytes }
                        };
                        return Ok(Some(Finding { file: files.log.clone(), position, problem, severity }));
                    }
                }
            }
            expected = Some(next);
        }
        Ok(None)
    }

    /// The segments' files and lengths, in offset order (for [`Repair`](crate::Repair)).
    pub(crate) fn segment_files(&self) -> impl Iterator<Item = (u64, &Path, Option<&Path>, u64)> {
        self.segments.iter().map(|s| (s.base, s.log.as_path(), s.index.as_deref(), s.bytes))
    }
}

impl SegmentFiles {
    /// The index file's path (the name it would have if missing).
    fn dir_index(&self, dir: &Path) -> PathBuf {
        self.index.clone().unwrap_or_else(|| dir.join(index_name(self.base)))
    }
}

/// Reads an index header; `None` if the file does not hold a valid one for `base`.
/// A scan of a whole segment file for inspection.
struct SegmentScan {
    next_offset: u64,
    end: u64,
    stats: Stats,
    /// Each valid batch's position, first offset and next offset.
    batch_starts: Vec<(u64, u64, u64)>,
    invalid: Option<(u64, CorruptionKind)>,
}

fn scan_segment(
    file: &dyn File,
    base: u64,
    len: u64,
    progress: &mut dyn FnMut(u64),
) -> std::io::Result<SegmentScan> {
    const PROGRESS_BYTES: u64 = 8 << 20;
    let mut scan = SegmentScan {
        next_offset: base,
        end: 0,
        stats: Stats::default(),
        batch_starts: Vec::new(),
        invalid: None,
    };
    let mut reader = FileScan::new(0);
    let mut reported = 0;
    loop {
        match reader.next(file, len, scan.next_offset)? {
            Step::Batch { position, info, .. } => {
                scan.batch_starts.push((position, info.base_offset, info.next_offset()));
                scan.next_offset = info.next_offset();
                scan.end = position + info.length as u64;
                scan.stats.add(&info);
                if scan.end - reported >= PROGRESS_BYTES {
                    reported = scan.end;
                    progress(reported);
                }
            }
            Step::End => break,
            Step::Invalid { position, kind } => {
                scan.invalid = Some((position, kind));
                break;
            }
        }
    }
    Ok(scan)
}

fn from_header(files: &SegmentFiles, header: &Header, durable: bool) -> SegmentInspection {
    let summary = &header.summary;
    SegmentInspection {
        base_offset: files.base,
        file: files.log.clone(),
        bytes: files.bytes,
        next_offset: summary.next_offset,
        valid_bytes: summary.segment_bytes,
        records: summary.record_count,
        tombstones: summary.tombstones,
        max_timestamp_ms: (summary.record_count > 0).then_some(summary.max_ts),
        compacted_ms: summary.cleaned_ms,
        durable,
        scanned: false,
        beyond_end: false,
    }
}

fn from_scan(
    files: &SegmentFiles,
    compacted_ms: Option<i64>,
    scan: &SegmentScan,
    durable: bool,
) -> SegmentInspection {
    SegmentInspection {
        base_offset: files.base,
        file: files.log.clone(),
        bytes: files.bytes,
        next_offset: scan.next_offset,
        valid_bytes: scan.end,
        records: scan.stats.records,
        tombstones: scan.stats.tombstones,
        max_timestamp_ms: (scan.stats.records > 0).then_some(scan.stats.max_ts),
        compacted_ms,
        durable,
        scanned: true,
        beyond_end: false,
    }
}

fn beyond_end(files: &SegmentFiles) -> SegmentInspection {
    SegmentInspection {
        base_offset: files.base,
        file: files.log.clone(),
        bytes: files.bytes,
        next_offset: files.base,
        valid_bytes: 0,
        records: 0,
        tombstones: 0,
        max_timestamp_ms: None,
        compacted_ms: None,
        durable: false,
        scanned: false,
        beyond_end: true,
    }
}
