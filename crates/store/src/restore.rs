//! Restore: the index from the newest usable snapshot plus a replay of the changelog after it,
//! or from a replay of the whole changelog.
//!
//! A snapshot is used only if it lies at or below the changelog's end, reads back whole (the
//! durable file's checksum), and decodes (lengths, key order, offsets, segment references all
//! checked). Its locations are used where the segment they name is still the same file (or the
//! active segment grown since); entries in segments that compaction rewrote since are found
//! again by offset in the changelog ("rescan"). An entry that cannot be found again means the
//! snapshot does not belong to this changelog: it is skipped and the next older one tried. A
//! skipped snapshot is reported, never trusted; the changelog stays the truth.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_changelog::{Log, SegmentInfo, ValueLocation};
use cairn_fs::Fs;

use crate::error::Result;
use crate::index::{Index, Key, KeyBytes, Slot};
use crate::options::{ProgressListener, StoreOptions};
use crate::snapshot::{self, Payload};
use crate::store::State;

/// Bytes of changelog read between two progress calls.
const PROGRESS_BYTES: u64 = 16 << 20;

/// What a restore did, from [`Store::restore_report`](crate::Store::restore_report).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RestoreReport {
    /// Where the index came from.
    pub source: RestoreSource,
    /// Snapshots passed over, newest first, and why.
    pub skipped_snapshots: Vec<SkippedSnapshot>,
    /// Snapshot entries whose segment compaction had rewritten, found again in the changelog.
    pub entries_relocated: u64,
    /// Records read from the changelog after the snapshot (or all of them).
    pub records_replayed: u64,
    /// Bytes of changelog read (replay and relocation).
    pub bytes_read: u64,
    /// Keys in the restored store.
    pub keys: usize,
    /// The changelog's end offset.
    pub end_offset: u64,
    /// Wall time of the restore (after the changelog was opened).
    pub duration: Duration,
}

/// Where a restore's index came from.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RestoreSource {
    /// A snapshot covering the changelog below `offset`, plus a replay after it.
    Snapshot {
        /// The snapshot's offset.
        offset: u64,
        /// Its file.
        path: PathBuf,
    },
    /// A replay of the whole changelog.
    Replay,
}

/// A snapshot restore did not use.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SkippedSnapshot {
    /// The snapshot's file.
    pub path: PathBuf,
    /// Its offset (from its name).
    pub offset: u64,
    /// Why it was not used.
    pub reason: SkipReason,
}

/// Why a snapshot was not used.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum SkipReason {
    /// It covers more than the changelog holds.
    PastLogEnd {
        /// The changelog's end.
        end: u64,
    },
    /// The file is damaged or unreadable (checksum, length, kind, version, decoding, I/O).
    Unreadable(Arc<cairn_checkpoint::Error>),
    /// The payload reads but its entries do not decode.
    BadEntries {
        /// Byte position within the entries.
        position: usize,
        /// What is wrong.
        what: &'static str,
    },
    /// Entries point where the changelog has no such record: not a snapshot of this log.
    Inconsistent {
        /// Entries that could not be placed.
        entries: u64,
    },
}

/// How far a restore is, given to [`StoreOptions::on_restore_progress`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RestoreProgress {
    /// The step running.
    pub phase: RestorePhase,
    /// Bytes of changelog read so far.
    pub bytes_done: u64,
    /// Bytes of changelog the restore reads in all (for a snapshot restore: the segments from
    /// the snapshot's on, plus any it relocates in).
    pub bytes_total: u64,
    /// Records read so far.
    pub records_done: u64,
}

/// A step of a restore.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RestorePhase {
    /// Loading a snapshot.
    Snapshot,
    /// Finding again the entries of segments compaction rewrote since the snapshot.
    Relocate,
    /// Replaying the changelog.
    Replay,
    /// Finished.
    Done,
}

struct Progress<'a> {
    listener: Option<&'a ProgressListener>,
    phase: RestorePhase,
    bytes_done: u64,
    bytes_total: u64,
    records_done: u64,
    next_report: u64,
}

impl Progress<'_> {
    fn report(&mut self, force: bool) {
        let Some(listener) = self.listener else { return };
        if force || self.bytes_done >= self.next_report {
            self.next_report = self.bytes_done + PROGRESS_BYTES;
            (listener.0)(&RestoreProgress {
                phase: self.phase,
                bytes_done: self.bytes_done,
                bytes_total: self.bytes_total.max(self.bytes_done),
                records_done: self.records_done,
            });
        }
    }

    fn phase(&mut self, phase: RestorePhase) {
        self.phase = phase;
        self.report(true);
    }
}

/// Restores the index of the changelog `log`, with the snapshots in `dir`.
pub(crate) fn restore(
    fs: &Arc<dyn Fs>,
    dir: &Path,
    log: &Log,
    options: &StoreOptions,
) -> Result<(State, RestoreReport)> {
    let started = Instant::now();
    let segments = log.segment_set();
    let infos = segments.infos();
    let end = log.end_offset();
    let mut report = RestoreReport {
        source: RestoreSource::Replay,
        skipped_snapshots: Vec::new(),
        entries_relocated: 0,
        records_replayed: 0,
        bytes_read: 0,
        keys: 0,
        end_offset: end,
        duration: Duration::ZERO,
    };
    let mut progress = Progress {
        listener: options.on_restore_progress.as_ref(),
        phase: RestorePhase::Snapshot,
        bytes_done: 0,
        bytes_total: 0,
        records_done: 0,
        next_report: 0,
    };
    let mut restored = None;
    if options.restore_from_snapshots {
        for (offset, path) in snapshot::list(fs.as_ref(), dir)? {
            let skip = |reason| SkippedSnapshot { path: path.clone(), offset, reason };
            if offset > end {
                report.skipped_snapshots.push(skip(SkipReason::PastLogEnd { end }));
                continue;
            }
            progress.phase(RestorePhase::Snapshot);
            let payload = match snapshot::read(Arc::clone(fs), &path) {
                Ok(Some(payload)) if payload.offset == offset => payload,
                Ok(Some(_)) => {
                    let reason =
                        SkipReason::BadEntries { position: 0, what: "offset differs from the file name's" };
                    report.skipped_snapshots.push(skip(reason));
                    continue;
                }
                // Removed since it was listed: nothing to skip.
                Ok(None) => continue,
                Err(e) => {
                    report.skipped_snapshots.push(skip(SkipReason::Unreadable(Arc::new(e))));
                    continue;
                }
            };
            match from_snapshot(&payload, log, &infos, &mut progress, &mut report)? {
                Ok(index) => {
                    report.source = RestoreSource::Snapshot { offset, path };
                    restored = Some(index);
                    break;
                }
                Err(reason) => report.skipped_snapshots.push(skip(reason)),
            }
        }
    }
    let index = match restored {
        Some(index) => index,
        None => {
            let mut index = Index::new();
            progress.bytes_total = infos.iter().map(|i| i.bytes).sum();
            progress.phase(RestorePhase::Replay);
            replay(log, log.start_offset(), &mut index, &mut progress, &mut report)?;
            index
        }
    };
    report.keys = index.len();
    report.duration = started.elapsed();
    progress.phase(RestorePhase::Done);
    Ok((State { index: Arc::new(index), segments }, report))
}

/// The index from `payload` and the changelog after it; `Ok(Err(reason))` if the snapshot
/// cannot be used.
fn from_snapshot(
    payload: &Payload,
    log: &Log,
    infos: &[SegmentInfo],
    progress: &mut Progress<'_>,
    report: &mut RestoreReport,
) -> Result<Result<Index, SkipReason>> {
    // Which of the snapshot's segments are still the same file, and as which id.
    let same: Vec<Option<&SegmentInfo>> =
        payload.segments.iter().map(|s| infos.iter().find(|i| s.same_as(i))).collect();
    let mut entries: Vec<(Key, Slot)> = Vec::with_capacity(payload.keys.min(1 << 24) as usize);
    let mut out_of_bounds = false;
    let mut changed = vec![false; payload.segments.len()];
    let decoded = snapshot::decode_entries(payload, |e| {
        let slot = match same.get(e.segment).copied().flatten() {
            Some(info) => {
                let end = u64::from(e.position) + u64::from(e.len);
                if u64::from(e.position) < e.key.len() as u64 || end > info.bytes {
                    out_of_bounds = true;
                }
                let at = ValueLocation { segment: info.id, position: e.position, len: e.len };
                Slot::Logged { offset: e.offset, at }
            }
            None => {
                if let Some(c) = changed.get_mut(e.segment) {
                    *c = true;
                }
                Slot::Unresolved { offset: e.offset }
            }
        };
        entries.push((Key::new(e.key), slot));
    });
    if let Err(bad) = decoded {
        return Ok(Err(SkipReason::BadEntries { position: bad.position, what: bad.what }));
    }
    if out_of_bounds {
        return Ok(Err(SkipReason::BadEntries { position: 0, what: "a location lies outside its segment" }));
    }
    // Sorted input: the tree is built in one pass.
    let mut index: Index = entries.into_iter().collect();

    // Rescan the offset ranges of the changed segments: from their base to the next segment's.
    let mut bases: Vec<(u64, bool)> =
        payload.segments.iter().zip(&changed).map(|(s, c)| (s.base_offset, *c)).collect();
    bases.sort_unstable();
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for (i, (base, changed)) in bases.iter().enumerate() {
        if !changed {
            continue;
        }
        let until = bases.get(i + 1).map_or(payload.offset, |(next, _)| *next).min(payload.offset);
        match ranges.last_mut() {
            Some(last) if last.1 == *base => last.1 = until,
            _ => ranges.push((*base, until)),
        }
    }
    let start = log.start_offset();
    let tail_bytes: u64 = infos
        .iter()
        .filter(|i| i.base_offset >= segment_base_of(infos, payload.offset))
        .map(|i| i.bytes)
        .sum();
    progress.bytes_total = tail_bytes;
    if !ranges.is_empty() {
        progress.phase(RestorePhase::Relocate);
        for &(from, until) in &ranges {
            report.entries_relocated += relocate(log, from.max(start), until, &mut index, progress, report)?;
        }
    }
    progress.phase(RestorePhase::Replay);
    cairn_fs::crash_point(cairn_fs::crash_point::RESTORE_SNAPSHOT_LOADED);
    replay(log, payload.offset.max(start), &mut index, progress, report)?;
    let unresolved = index.values().filter(|s| matches!(s, Slot::Unresolved { .. })).count() as u64;
    if unresolved > 0 {
        return Ok(Err(SkipReason::Inconsistent { entries: unresolved }));
    }
    Ok(Ok(index))
}

/// The base of the segment holding `offset` (0 if none does).
fn segment_base_of(infos: &[SegmentInfo], offset: u64) -> u64 {
    infos.iter().map(|i| i.base_offset).filter(|b| *b <= offset).max().unwrap_or(0)
}

/// Points the unresolved entries of `[from, until)` at their records; returns how many.
fn relocate(
    log: &Log,
    from: u64,
    until: u64,
    index: &mut Index,
    progress: &mut Progress<'_>,
    report: &mut RestoreReport,
) -> Result<u64> {
    let mut reader = log.reader(from)?;
    let mut found = 0;
    while let Some(batch) = reader.next_batch()? {
        if batch.first_offset() >= until {
            break;
        }
        report.bytes_read += batch.encoded_len();
        progress.bytes_total += batch.encoded_len();
        progress.bytes_done += batch.encoded_len();
        for record in batch.records() {
            let record = record?;
            if record.offset >= until {
                break;
            }
            progress.records_done += 1;
            if record.value.is_none() {
                continue;
            }
            if let Some(slot) = index.get_mut(KeyBytes::new(record.key))
                && matches!(slot, Slot::Unresolved { offset } if *offset == record.offset)
            {
                *slot = Slot::Logged { offset: record.offset, at: locate(&batch, &record) };
                found += 1;
            }
        }
        progress.report(false);
    }
    Ok(found)
}

/// Applies every record from `from` on to `index`.
fn replay(
    log: &Log,
    from: u64,
    index: &mut Index,
    progress: &mut Progress<'_>,
    report: &mut RestoreReport,
) -> Result<()> {
    let mut reader = log.reader(from)?;
    let mut run: Vec<Op> = Vec::new();
    while let Some(batch) = reader.next_batch()? {
        report.bytes_read += batch.encoded_len();
        progress.bytes_done += batch.encoded_len();
        for record in batch.records() {
            let record = record?;
            report.records_replayed += 1;
            progress.records_done += 1;
            let at = record.value.map(|_| locate(&batch, &record));
            run.push(Op::new(record.key, record.offset, at));
        }
        if run.len() >= RUN_MIN.max(index.len()) {
            apply_run(index, &mut run);
        }
        progress.report(false);
        cairn_fs::crash_point(cairn_fs::crash_point::RESTORE_REPLAYING);
    }
    apply_run(index, &mut run);
    Ok(())
}

/// Records gathered before a run is applied, at least (a run also grows to the index's size).
const RUN_MIN: usize = 1 << 20;

/// A replayed record: the key's value at `at`, or deleted.
struct Op {
    /// The key's first bytes as an integer, held here so that sorting rarely looks further.
    prefix: u64,
    key: Key,
    offset: u64,
    at: Option<ValueLocation>,
}

impl Op {
    fn new(key: &[u8], offset: u64, at: Option<ValueLocation>) -> Op {
        Op { prefix: crate::index::prefix(key), key: Key::new(key), offset, at }
    }

    /// Key order, then log order.
    fn cmp(&self, other: &Op) -> std::cmp::Ordering {
        self.prefix
            .cmp(&other.prefix)
            .then_with(|| self.key.as_bytes().cmp(other.key.as_bytes()))
            .then(self.offset.cmp(&other.offset))
    }

    fn same_key(&self, other: &Op) -> bool {
        self.prefix == other.prefix && self.key.as_bytes() == other.key.as_bytes()
    }
}

/// Applies a run of replayed records to `index` and empties it.
///
/// Inserting records one by one into a large tree faults in a random leaf per record; sorting
/// the run and merging it into the tree in one pass is about twice as fast (ARCHITECTURE.md).
/// Runs grow with the index, so a replay merges O(log n) times and stays O(n log n).
fn apply_run(index: &mut Index, run: &mut Vec<Op>) {
    // Offsets grow in log order: sorted by key and offset, a key's last op wins.
    run.sort_unstable_by(Op::cmp);
    run.dedup_by(|later, earlier| {
        let same = later.same_key(earlier);
        if same {
            std::mem::swap(later, earlier);
        }
        same
    });
    let slot = |op: Op| op.at.map(|at| (op.key, Slot::Logged { offset: op.offset, at }));
    if run.len().saturating_mul(8) < index.len() {
        for op in run.drain(..) {
            match op.at {
                None => {
                    index.remove(KeyBytes::new(&op.key));
                }
                Some(at) => {
                    index.insert(op.key, Slot::Logged { offset: op.offset, at });
                }
            }
        }
        return;
    }
    let old = std::mem::take(index);
    let mut old = old.into_iter().peekable();
    let mut new = run.drain(..).peekable();
    let mut merged: Vec<(Key, Slot)> = Vec::with_capacity(old.len() + new.len());
    loop {
        let take_new = match (old.peek(), new.peek()) {
            (None, None) => break,
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (Some((k, _)), Some(op)) => match k.cmp(&op.key) {
                std::cmp::Ordering::Less => false,
                std::cmp::Ordering::Equal => {
                    old.next();
                    true
                }
                std::cmp::Ordering::Greater => true,
            },
        };
        let next = if take_new { new.next().and_then(slot) } else { old.next() };
        merged.extend(next);
    }
    // Sorted and free of duplicates: the tree is built bottom-up in one pass.
    *index = merged.into_iter().collect();
}

fn locate(batch: &cairn_changelog::BatchView<'_>, record: &cairn_changelog::RecordView<'_>) -> ValueLocation {
    batch
        .value_location(record)
        .unwrap_or_else(|| panic!("broken invariant: record {} is not inside its own batch", record.offset))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use std::sync::LazyLock;

    use cairn_changelog::SegmentId;
    use cairn_fs::SimFs;
    use proptest::prelude::*;

    use super::*;

    /// A real segment id (ids are made only by the changelog).
    static SEGMENT: LazyLock<SegmentId> = LazyLock::new(|| {
        let fs: Arc<dyn Fs> = Arc::new(SimFs::new(1));
        let log = Log::open(fs, "/log", Default::default()).unwrap();
        log.segment_set().infos()[0].id
    });

    pub(crate) fn segment() -> SegmentId {
        *SEGMENT
    }

    fn location(offset: u64) -> ValueLocation {
        ValueLocation { segment: *SEGMENT, position: offset as u32, len: 1 }
    }

    proptest! {
        /// Runs applied in any chunking, merged or one by one, equal the records applied in order.
        #[test]
        fn runs_apply_as_records_in_order(
            records in prop::collection::vec((prop::collection::vec(0u8..4, 1..12), any::<bool>()), 0..400),
            cuts in prop::collection::vec(0usize..400, 0..6),
        ) {
            let mut expected: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
            for (offset, (key, put)) in records.iter().enumerate() {
                if *put { expected.insert(key.clone(), offset as u64); } else { expected.remove(key); }
            }
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(records.len())).collect();
            cuts.sort_unstable();
            cuts.push(records.len());
            let mut index = Index::new();
            let mut from = 0;
            for cut in cuts {
                let mut run: Vec<Op> = (from..cut).map(|offset| {
                    let (key, put) = &records[offset];
                    Op::new(key, offset as u64, put.then(|| location(offset as u64)))
                }).collect();
                apply_run(&mut index, &mut run);
                prop_assert!(run.is_empty());
                from = cut;
            }
            let got: BTreeMap<Vec<u8>, u64> = index.iter().map(|(k, s)| match s {
                Slot::Logged { offset, at } => {
                    assert_eq!(*at, location(*offset));
                    (k.to_vec(), *offset)
                }
                other => panic!("unexpected slot {other:?}"),
            }).collect();
            prop_assert_eq!(got, expected);
        }
    }
}
