//! Compaction: keeping, below a limit offset, only the latest record of every key (DESIGN §4).
//!
//! The sealed segments below the limit split in two: a *clean* prefix, written by earlier
//! passes, in which every key appears at most once, and the *dirty* segments after it, written by
//! appends. A pass
//!
//! 1. reads the dirty segments, oldest first, into a [`KeyMap`] (key → offset of its latest
//!    record), as many whole segments as the map's budget holds;
//! 2. asks each clean segment's key filter whether it may hold a key of the map, and looks at
//!    its tombstones' delete horizon: a clean segment that certainly holds no such key and no
//!    expired tombstone has gained nothing to drop and is left alone;
//! 3. rewrites the dirty segments it read, the clean segments that gain something, and small
//!    neighbours (merged), keeping every record whose key has no later record in the map and
//!    every tombstone whose horizon has not passed, at its own offset, in sparse batches;
//! 4. installs the new segments through a durable commit record ([`swap`]), swaps them into the
//!    segment list in one step, and tells the listener where the surviving records moved.
//!
//! So a pass reads each dirty byte twice and writes what survives of it once, and reads and
//! writes a clean segment only when a key written since may be in it (or a tombstone in it
//! expired). Nothing at or above the limit (or the durable end, or in the active segment) is
//! read or changed. After the pass the dirty segments it read are clean, and the clean prefix
//! again holds every key at most once.

mod keymap;
mod output;
pub(crate) mod swap;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_fs::OpenMode;

use crate::batch::{self, BatchInfo};
use crate::error::{CorruptionKind, Error, Result};
use crate::filter::key_hash;
use crate::index::SeenRun;
use crate::locate::{SegmentId, SegmentSet, ValueLocation};
use crate::log::{PoisonOnPanic, Shared};
use crate::mutants;
use crate::record::{Record, RecordView, now_ms};
use crate::segment::{CleanInfo, Sealed, Segment, TEMP_SUFFIX, log_name};
use crate::segment_list;
use crate::sync::lock;

use keymap::KeyMap;
use output::{Output, Shape};
use swap::SwapRecord;

/// When compaction may drop a tombstone that is the latest record of its key.
///
/// Until then the tombstone stays, so that a reader who holds the key (a store restoring from
/// the log, a consumer) learns of the delete. Earlier records of the key are dropped at once
/// either way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeleteHorizon {
    /// Kept until this long after the compaction pass that first saw it (Kafka's
    /// `delete.retention.ms`): a reader that reads the log from its start in less time than
    /// this sees every delete.
    AfterFirstSeen(Duration),
    /// Kept until its own timestamp is this far in the past.
    AfterTimestamp(Duration),
    /// Kept for ever.
    Never,
}

impl DeleteHorizon {
    /// When a tombstone stamped `timestamp_ms` and first seen at `seen_ms` may be dropped.
    fn droppable_at(self, timestamp_ms: i64, seen_ms: i64) -> i64 {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        match self {
            DeleteHorizon::AfterFirstSeen(d) => seen_ms.saturating_add(ms(d)),
            DeleteHorizon::AfterTimestamp(d) => timestamp_ms.saturating_add(ms(d)),
            DeleteHorizon::Never => i64::MAX,
        }
    }
}

/// Options of a compaction pass. Start from [`CompactOptions::default`] and change fields.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompactOptions {
    /// When a tombstone may be dropped. Default: a day after it was first seen.
    pub delete_horizon: DeleteHorizon,
    /// Memory for the key map: about the keys' bytes plus 40 bytes per key and 4 per record. A
    /// pass maps the dirty records, oldest first, until the map is full; where it fills, inside
    /// a segment, that segment's clean part and its unmapped rest are written as two segments,
    /// and the rest waits for the next pass (a pass maps at least one record, so passes always
    /// make progress). At least 1 KiB. Default 64 MiB.
    pub key_map_bytes_max: usize,
    /// Seal the active segment first, so that it can be compacted, when it lies wholly below
    /// the limit and holds at least this many bytes. `None`: never. Default 1 MiB.
    pub roll_active_bytes_min: Option<u64>,
    /// Clean segments smaller than this are merged with their neighbours when a pass rewrites
    /// next to them (or when two or more of them sit side by side). `None`: a quarter of
    /// [`LogOptions::segment_bytes_max`](crate::LogOptions::segment_bytes_max).
    pub merge_below_bytes: Option<u64>,
    /// The size the pass aims for when it packs surviving records into batches (a record larger
    /// than this gets a batch of its own). At least 4 KiB. Default 64 KiB.
    pub batch_bytes_target: usize,
    /// The time the pass takes as now, for delete horizons and first-seen times, in
    /// milliseconds since the Unix epoch. `None`: the system clock.
    pub now_ms: Option<i64>,
    /// Tests only: hash every key alike in the key map, to show that a collision never costs a
    /// live record.
    #[doc(hidden)]
    pub collide_keys: bool,
}

impl Default for CompactOptions {
    fn default() -> CompactOptions {
        CompactOptions {
            delete_horizon: DeleteHorizon::AfterFirstSeen(Duration::from_secs(24 * 3600)),
            key_map_bytes_max: 64 << 20,
            roll_active_bytes_min: Some(1 << 20),
            merge_below_bytes: None,
            batch_bytes_target: 64 << 10,
            now_ms: None,
            collide_keys: false,
        }
    }
}

impl CompactOptions {
    fn validate(&self) -> Result<()> {
        if self.key_map_bytes_max < 1024 {
            return Err(Error::InvalidOptions {
                option: "key_map_bytes_max",
                reason: "must be at least 1 KiB",
            });
        }
        if self.batch_bytes_target < 4096 {
            return Err(Error::InvalidOptions {
                option: "batch_bytes_target",
                reason: "must be at least 4 KiB",
            });
        }
        Ok(())
    }
}

/// What kept a pass from cleaning more.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Blocked {
    /// Dirty sealed segments at or above the limit (the limit passed, or the durable end if
    /// lower), or not yet marked durable by a sync, wait.
    Limit {
        /// The limit the pass used.
        limit: u64,
        /// Bytes of those segments.
        dirty_bytes: u64,
    },
    /// The active segment holds records below the limit; it is compacted once sealed (see
    /// [`CompactOptions::roll_active_bytes_min`]).
    ActiveSegment {
        /// Bytes in the active segment.
        bytes: u64,
    },
    /// Tombstones were kept because their delete horizon has not passed.
    DeleteHorizon {
        /// Tombstones kept (in the segments the pass rewrote or looked at).
        tombstones: u64,
        /// The earliest time one of them may be dropped (ms since the Unix epoch).
        earliest_drop_ms: i64,
    },
    /// The key map filled: dirty segments below the limit wait for the next pass.
    KeyMapFull {
        /// Bytes of those segments.
        dirty_bytes: u64,
    },
}

/// What a compaction pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompactionReport {
    /// The limit the pass used: the one asked for, or the durable end if lower.
    pub limit: u64,
    /// Whether the pass sealed the active segment to compact it.
    pub rolled_active: bool,
    /// Dirty segments read into the key map (and rewritten, now clean).
    pub dirty_segments: usize,
    /// Distinct keys in the key map.
    pub keys_mapped: usize,
    /// Clean segments rewritten because they gained something to drop, or merged.
    pub clean_segments_rewritten: usize,
    /// Clean segments left alone: nothing to drop in them.
    pub clean_segments_skipped: usize,
    /// Segments written (replacing `dirty_segments + clean_segments_rewritten`).
    pub segments_written: usize,
    /// Bytes of the segments replaced, and of their replacements.
    pub bytes_before: u64,
    /// Bytes of the new segments.
    pub bytes_after: u64,
    /// Records in the segments replaced.
    pub records_before: u64,
    /// Records in the new segments.
    pub records_after: u64,
    /// Tombstones dropped: replaced by a later record of their key, or past their horizon.
    pub tombstones_dropped: u64,
    /// Bytes read (the dirty segments twice, the rewritten clean ones once).
    pub bytes_read: u64,
    /// Bytes written (segments and their indexes).
    pub bytes_written: u64,
    /// Wall time of the pass.
    pub duration: Duration,
    /// What kept the pass from cleaning more.
    pub blocked: Vec<Blocked>,
    /// The segments the pass replaced (no longer in the log; a [`SegmentSet`] holding them
    /// keeps them readable until it drops them).
    ///
    /// [`SegmentSet`]: crate::SegmentSet
    pub replaced_segments: Vec<SegmentId>,
}

/// How much of a log below a limit offset is clean and how much dirty (from the segments'
/// summaries, without reading them): what a pass would have to do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompactionBacklog {
    /// The limit used: the one asked for, or the durable end if lower.
    pub limit: u64,
    /// Bytes of clean segments below the limit.
    pub clean_bytes: u64,
    /// Bytes of dirty segments below the limit (counting the active segment when a pass would
    /// seal it).
    pub dirty_bytes: u64,
    /// Clean segments below the limit holding tombstones whose delete horizon has passed.
    pub expired_segments: usize,
}

/// The backlog of a pass at `limit` with `options`.
pub(crate) fn backlog(shared: &Shared, limit: u64, options: &CompactOptions) -> CompactionBacklog {
    let now = options.now_ms.unwrap_or_else(now_ms);
    let list = shared.segments();
    let mut backlog =
        CompactionBacklog { limit: limit.min(shared.commit.durable()), ..CompactionBacklog::default() };
    let Some((active, sealed)) = list.split_last() else { return backlog };
    for segment in sealed {
        let summary = summary_of(segment);
        if summary.next_offset > backlog.limit || !segment.is_marked() {
            break;
        }
        match summary.cleaned_ms {
            None => backlog.dirty_bytes += summary.segment_bytes,
            Some(cleaned) => {
                backlog.clean_bytes += summary.segment_bytes;
                // The cleaning time bounds the first-seen times from above: never early.
                let expires = options.delete_horizon.droppable_at(summary.min_tombstone_ts, cleaned);
                if summary.tombstones > 0 && expires <= now {
                    backlog.expired_segments += 1;
                }
            }
        }
    }
    let active_bytes = active.published.load();
    if options.roll_active_bytes_min.is_some_and(|min| active_bytes >= min.max(1))
        && shared.end.load() <= limit
        && shared.commit.durable() >= shared.end.load()
    {
        backlog.dirty_bytes += active_bytes;
    }
    backlog
}

/// Where a record that survived a pass now lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordMove<'a> {
    /// The record's key.
    pub key: &'a [u8],
    /// Its offset (unchanged by compaction).
    pub offset: u64,
    /// The base offset of the segment now holding it.
    pub segment_base: u64,
    /// The byte position, in that segment's file, of the batch holding it.
    pub batch_position: u64,
    /// Where its value now lies, for [`SegmentSet::read_value`](crate::SegmentSet::read_value).
    pub location: ValueLocation,
}

/// Hears what compaction passes do: where surviving records moved, so that a caller holding
/// positions (a store's key directory) can follow a swap without reading the log again, and
/// each pass's report. Called on the compacting thread, after the new segments are installed;
/// it must not call back into the log's maintenance (compaction, retention, truncation, close).
pub trait CompactionListener: Send + Sync {
    /// Whether [`CompactionListener::record_moved`] is wanted (it costs a read of the new
    /// segments). Default `true`.
    fn wants_moves(&self) -> bool {
        true
    }

    /// A pass installed `installed` (its new segments) in place of the segments `replaced`;
    /// called before the pass's [`CompactionListener::record_moved`] calls, so that a holder of
    /// locations can read the new segments as soon as it learns of a move into them.
    fn segments_installed(&self, installed: &SegmentSet, replaced: &[SegmentId]) {
        let _ = (installed, replaced);
    }

    /// A surviving record in a rewritten segment.
    fn record_moved(&self, moved: &RecordMove<'_>) {
        let _ = moved;
    }

    /// A pass finished.
    fn pass_finished(&self, report: &CompactionReport) {
        let _ = report;
    }

    /// A background pass failed; it is retried on the next interval unless the log is poisoned.
    fn pass_failed(&self, error: &Error) {
        let _ = error;
    }
}

/// The role of a segment in a pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// A dirty segment whose records are all in the key map.
    Dirty,
    /// A dirty segment whose records before this offset are in the key map (which filled
    /// there): the rest is copied as it is, into a dirty segment.
    Partial(u64),
    Clean,
}

/// Tombstones kept because of their horizon.
#[derive(Default)]
struct Pending {
    tombstones: u64,
    earliest: i64,
}

impl Pending {
    fn add(&mut self, count: u64, at: i64) {
        if self.tombstones == 0 || at < self.earliest {
            self.earliest = at;
        }
        self.tombstones += count;
    }
}

/// Runs one pass on `shared` (see the module documentation). `cancel` is asked between segments;
/// when it says so the pass stops, removes what it wrote, and returns [`Error::Closed`].
pub(crate) fn run(
    shared: &Shared,
    limit: u64,
    options: &CompactOptions,
    listener: Option<&dyn CompactionListener>,
    cancel: &dyn Fn() -> bool,
) -> Result<CompactionReport> {
    let started = Instant::now();
    options.validate()?;
    let _maintenance = lock(&shared.maintenance);
    shared.check_open()?;
    let now = options.now_ms.unwrap_or_else(now_ms);
    let mut report = CompactionReport { limit, ..CompactionReport::default() };
    if let Some(min) = options.roll_active_bytes_min
        && shared.roll_below(limit, min)?
    {
        report.rolled_active = true;
    }
    let limit = limit.min(shared.commit.durable());
    report.limit = limit;

    let list = shared.segments();
    let Some((active, sealed)) = list.split_last() else {
        return Ok(report);
    };
    // Sealed segments whose marker is not written yet (rolled since the last sync) wait.
    let compactable =
        sealed.iter().take_while(|s| s.is_marked() && summary_of(s).next_offset <= limit).count();
    let (below, beyond) = sealed.split_at(compactable);
    let dirty_beyond: u64 =
        beyond.iter().map(|s| summary_of(s)).filter(|s| !s.compacted()).map(|s| s.segment_bytes).sum();
    if dirty_beyond > 0 {
        report.blocked.push(Blocked::Limit { limit, dirty_bytes: dirty_beyond });
    }
    let active_bytes = active.published.load();
    if active_bytes > 0 && active.base < limit {
        report.blocked.push(Blocked::ActiveSegment { bytes: active_bytes });
    }
    let clean_count = below.iter().take_while(|s| summary_of(s).compacted()).count();
    let dirty = below.get(clean_count..).unwrap_or_default();

    // 1. The key map, over the dirty records, oldest first, as many as it holds.
    let fs = shared.fs.as_ref();
    let interval = shared.options.index_interval_bytes;
    let dirty_records = dirty.iter().map(|s| summary_of(s).record_count).sum();
    // Slots for as many keys as the first dirty segment has records, to start with.
    let first_records = dirty.first().map_or(0, |s| summary_of(s).record_count);
    let mut map = KeyMap::new(options.key_map_bytes_max, dirty_records, first_records, options.collide_keys);
    let mut processed = 0;
    // Where the map filled inside a dirty segment: its records from there on stay dirty.
    let mut partial_cut = None;
    for segment in dirty {
        if cancel() {
            return Err(Error::Closed);
        }
        let mut stopped_at = None;
        let mut inserted = 0u64;
        let mut hashes = Vec::new();
        let read = for_each_batch(segment, |records, _| {
            hashes.clear();
            hashes.extend(records.iter().map(|r| map.hash(r.key)));
            map.touch(hashes.iter().copied());
            for (record, hash) in records.iter().zip(&hashes) {
                if map.insert_hashed(record.key, *hash, record.offset).is_none() {
                    stopped_at = Some(record.offset);
                    return false;
                }
                inserted += 1;
            }
            true
        })?;
        report.bytes_read += read;
        if let Some(at) = stopped_at {
            if inserted > 0 {
                partial_cut = Some(at);
            }
            break;
        }
        processed += 1;
    }
    if processed < dirty.len() {
        let left = dirty.get(processed..).unwrap_or_default();
        report.blocked.push(Blocked::KeyMapFull {
            dirty_bytes: left.iter().map(|s| summary_of(s).segment_bytes).sum(),
        });
    }
    report.keys_mapped = map.len();
    let candidates =
        below.get(..clean_count + processed + usize::from(partial_cut.is_some())).unwrap_or_default();

    // 2. What gains something.
    let horizon = options.delete_horizon;
    let probes: Vec<u64> = map.filter_hashes().collect();
    let mut pending = Pending::default();
    let mut roles = Vec::with_capacity(candidates.len());
    let mut needed = Vec::with_capacity(candidates.len());
    let mut infos: Vec<Option<Arc<CleanInfo>>> = Vec::with_capacity(candidates.len());
    for (i, segment) in candidates.iter().enumerate() {
        if i >= clean_count {
            roles.push(match partial_cut {
                Some(cut) if i == clean_count + processed => Role::Partial(cut),
                _ => Role::Dirty,
            });
            needed.push(true);
            infos.push(None);
            continue;
        }
        let sealed = sealed_of(segment)?;
        let info = segment.clean_info(fs, sealed, interval)?;
        let hit = probes.iter().any(|h| info.filter.may_contain(*h));
        roles.push(Role::Clean);
        needed.push(hit || expiry(&sealed.summary, &info, horizon) <= now);
        infos.push(Some(info));
    }
    let merge_below = options.merge_below_bytes.unwrap_or(shared.options.segment_bytes_max / 4);
    let small: Vec<bool> = candidates.iter().map(|s| summary_of(s).segment_bytes < merge_below).collect();
    let included = include_neighbours(&needed, &small);
    for (i, segment) in candidates.iter().enumerate() {
        if roles.get(i) == Some(&Role::Clean) && !included.get(i).copied().unwrap_or(false) {
            report.clean_segments_skipped += 1;
            let summary = summary_of(segment);
            if let Some(Some(info)) = infos.get(i)
                && summary.tombstones > 0
            {
                pending.add(summary.tombstones, expiry(&summary, info, horizon));
            }
        }
    }
    let Some(first) = included.iter().position(|i| *i) else {
        finish(&mut report, pending, started);
        return Ok(report);
    };
    let last = included.iter().rposition(|i| *i).unwrap_or(first);

    // 3. Rewrite, run by run.
    let shape = Shape {
        segment_bytes_max: shared.options.segment_bytes_max,
        index_interval_bytes: interval,
        batch_bytes_target: options.batch_bytes_target.min(shared.options.batch_limit() as usize),
        now_ms: now,
    };
    let mut output = Output::new(fs, &shared.dir, shape);
    let mut runs: Vec<(u64, u64)> = Vec::new();
    let mut rewriter = Rewriter {
        map: &map,
        output: &mut output,
        pending: &mut pending,
        tombstones_dropped: 0,
        nth_dirty: 0,
        now,
        horizon,
        collide: options.collide_keys,
    };
    let written = (|| -> Result<()> {
        let mut i = first;
        while i <= last {
            if !included.get(i).copied().unwrap_or(false) {
                i += 1;
                continue;
            }
            let start = i;
            while included.get(i + 1).copied().unwrap_or(false) {
                i += 1;
            }
            let run = candidates.get(start..=i).unwrap_or_default();
            let (Some(run_first), Some(run_last)) = (run.first(), run.last()) else { break };
            let run_end = summary_of(run_last).next_offset;
            rewriter.output.begin_run(run_first.base);
            let mut clean_ended = false;
            for (j, segment) in run.iter().enumerate() {
                if cancel() {
                    return Err(Error::Closed);
                }
                let role = roles.get(start + j).copied().unwrap_or(Role::Dirty);
                let info = infos.get(start + j).cloned().flatten();
                report.bytes_before += summary_of(segment).segment_bytes;
                report.records_before += summary_of(segment).record_count;
                match role {
                    Role::Dirty | Role::Partial(_) => report.dirty_segments += 1,
                    Role::Clean => report.clean_segments_rewritten += 1,
                }
                let mut failed = None;
                let read = for_each_batch(segment, |records, batch| {
                    match rewriter.batch(records, batch, role, info.as_deref(), &mut clean_ended) {
                        Ok(()) => true,
                        Err(e) => {
                            failed = Some(e);
                            false
                        }
                    }
                })?;
                report.bytes_read += read;
                if let Some(e) = failed {
                    return Err(e);
                }
            }
            if clean_ended {
                // The run ended with a partly mapped segment: its dirty rest ends the run.
                rewriter.output.end_dirty()?;
            } else {
                rewriter.output.end_run(run_end)?;
            }
            runs.push((run_first.base, run_end));
            i += 1;
        }
        Ok(())
    })();
    report.tombstones_dropped = rewriter.tombstones_dropped;
    if let Err(e) = written {
        output.discard();
        return Err(e);
    }
    report.bytes_written = output.bytes_written;

    // 4. Commit, install, swap.
    let old: Vec<Arc<Segment>> = candidates.get(first..=last).unwrap_or_default().to_vec();
    let replaced: Vec<&Arc<Segment>> = old
        .iter()
        .enumerate()
        .filter(|(j, _)| included.get(first + j).copied().unwrap_or(false))
        .map(|(_, s)| s)
        .collect();
    report.replaced_segments = replaced.iter().map(|s| s.id).collect();
    let record = SwapRecord {
        old: replaced.iter().map(|s| s.base).collect(),
        new: output.written.iter().map(|w| w.base).collect(),
    };
    // From here a panic (in a file system, or a bug) may leave a pass half installed: poison.
    let _guard = PoisonOnPanic(shared);
    let new_segments = commit(shared, output, &record)?;
    let mut replacement = Vec::with_capacity(old.len());
    let mut new_iter = new_segments.iter().peekable();
    for (j, segment) in old.iter().enumerate() {
        if !included.get(first + j).copied().unwrap_or(false) {
            replacement.push(Arc::clone(segment));
            continue;
        }
        // The first replaced segment of a run brings the run's new segments.
        if let Some(&(run_start, run_end)) = runs.iter().find(|(s, _)| *s == segment.base) {
            while let Some(new) = new_iter.next_if(|n| n.base >= run_start && n.base < run_end) {
                replacement.push(Arc::clone(new));
            }
        }
    }
    if !segment_list::swap(&shared.segments, &old, &replacement) {
        let changed = std::io::Error::other("the segment list changed under a compaction pass");
        return Err(shared.poison(Error::io("compact", &shared.dir, changed)));
    }
    for segment in &new_segments {
        let summary = summary_of(segment);
        report.bytes_after += summary.segment_bytes;
        report.records_after += summary.record_count;
    }
    report.segments_written = new_segments.len();
    if let Some(listener) = listener {
        listener.segments_installed(&SegmentSet::of(&new_segments), &report.replaced_segments);
        if listener.wants_moves() {
            for segment in &new_segments {
                report_moves(segment, listener)?;
            }
        }
    }
    finish(&mut report, pending, started);
    Ok(report)
}

/// Rewrites the records of a pass, segment by segment, into its output.
struct Rewriter<'p, 'o> {
    map: &'p KeyMap,
    output: &'p mut Output<'o>,
    pending: &'p mut Pending,
    tombstones_dropped: u64,
    /// The dirty records are read again in the order the map saw them: the next one's number.
    nth_dirty: usize,
    now: i64,
    horizon: DeleteHorizon,
    collide: bool,
}

impl Rewriter<'_, '_> {
    /// Rewrites one batch of a segment with the given role. `clean_ended` tells (and is set
    /// when) a partly mapped segment's clean part has ended.
    fn batch(
        &mut self,
        records: &[RecordView<'_>],
        batch: Batch<'_>,
        role: Role,
        info: Option<&CleanInfo>,
        clean_ended: &mut bool,
    ) -> Result<()> {
        let Role::Partial(cut) = role else {
            if role == Role::Dirty {
                self.map.touch_records(self.nth_dirty, records.len());
            }
            return records.iter().try_for_each(|record| self.record(record, role, info));
        };
        if batch.info.next_offset() <= cut {
            self.map.touch_records(self.nth_dirty, records.len());
            return records.iter().try_for_each(|record| self.record(record, Role::Dirty, None));
        }
        let (mapped, rest): (Vec<_>, Vec<_>) = records.iter().partition(|r| r.offset < cut);
        mapped.into_iter().try_for_each(|record| self.record(record, Role::Dirty, None))?;
        if !*clean_ended {
            self.output.end_run(cut)?;
            *clean_ended = true;
        }
        if batch.info.base_offset >= cut {
            return self.output.copy_dirty(batch.bytes, &batch.info);
        }
        // The batch holding the cut: its records from the cut on, as a batch of their own.
        let rest: Vec<(u64, Record<'_>)> = rest
            .into_iter()
            .map(|r| (r.offset, Record { key: r.key, value: r.value, timestamp_ms: r.timestamp_ms }))
            .collect();
        let mut buf = Vec::new();
        let info = if batch.info.sparse {
            batch::encode_sparse(&mut buf, cut, batch.info.next_offset(), &rest)
        } else {
            let records: Vec<Record<'_>> = rest.into_iter().map(|(_, r)| r).collect();
            batch::encode(&mut buf, cut, &records)
        };
        self.output.copy_dirty(&buf, &info)
    }

    /// Keeps or drops one record of a mapped dirty segment or of a clean one.
    fn record(&mut self, record: &RecordView<'_>, role: Role, info: Option<&CleanInfo>) -> Result<()> {
        let offset = record.offset;
        let (superseded, hash, seen) = match (role, info) {
            (Role::Clean, Some(info)) => {
                (self.map.get(record.key).is_some(), key_hash(record.key), info.seen_at(offset))
            }
            _ => {
                let (latest, hash) = self.map.nth_record(self.nth_dirty).unwrap_or((offset, 0));
                self.nth_dirty += 1;
                let hash = if self.collide { key_hash(record.key) } else { hash };
                (latest != offset, hash, self.now)
            }
        };
        let keep = if superseded {
            false
        } else if record.value.is_none() {
            let at = self.horizon.droppable_at(record.timestamp_ms, seen);
            if at > self.now {
                self.pending.add(1, at);
            }
            at > self.now
        } else {
            true
        };
        if !keep {
            self.tombstones_dropped += u64::from(record.value.is_none());
            return Ok(());
        }
        self.output.push(offset, record, hash, seen)
    }
}

fn finish(report: &mut CompactionReport, pending: Pending, started: Instant) {
    if pending.tombstones > 0 {
        report.blocked.push(Blocked::DeleteHorizon {
            tombstones: pending.tombstones,
            earliest_drop_ms: pending.earliest,
        });
    }
    report.duration = started.elapsed();
}

/// When the first tombstone of a clean segment may be dropped, at the earliest (`i64::MAX` if it
/// holds none): its oldest tombstone timestamp, or its earliest first-seen time.
fn expiry(summary: &crate::index::Summary, info: &CleanInfo, horizon: DeleteHorizon) -> i64 {
    if summary.tombstones == 0 {
        return i64::MAX;
    }
    let first_seen = info.runs.iter().map(|r| r.seen_ms).min().unwrap_or(i64::MIN);
    horizon.droppable_at(summary.min_tombstone_ts, first_seen)
}

/// Which candidates a pass rewrites: those that gain something, and the small ones next to
/// them or to each other (stretches of `needed`-or-`small` segments holding something needed,
/// or at least two small ones).
fn include_neighbours(needed: &[bool], small: &[bool]) -> Vec<bool> {
    let mut included = vec![false; needed.len()];
    let mut i = 0;
    while i < needed.len() {
        let eligible =
            |j: usize| needed.get(j).copied().unwrap_or(false) || small.get(j).copied().unwrap_or(false);
        if !eligible(i) {
            i += 1;
            continue;
        }
        let start = i;
        while eligible(i + 1) {
            i += 1;
        }
        let stretch = start..=i;
        let any_needed = stretch.clone().any(|j| needed.get(j).copied().unwrap_or(false));
        if any_needed || i > start {
            for j in stretch {
                if let Some(slot) = included.get_mut(j) {
                    *slot = true;
                }
            }
        }
        i += 1;
    }
    included
}

/// Makes the pass durable and installs it: syncs the directory holding the output, writes the
/// commit record, applies it. Returns the new segments, ready for the list. Failures before the
/// commit record leave the log as it was (the output is removed) and do not poison it, except a
/// failed directory sync; failures from the record's rename on poison it (recovery completes
/// the pass on the next open).
fn commit(shared: &Shared, output: Output<'_>, record: &SwapRecord) -> Result<Vec<Arc<Segment>>> {
    let fs = shared.fs.as_ref();
    let dir = &shared.dir;
    let poison_io = |op, path: &Path, e| shared.poison(Error::io(op, path, e));
    if mutants::active(mutants::COMPACTION_REMOVES_BEFORE_COMMIT) {
        for &base in record.old.iter().filter(|b| !record.new.contains(b)) {
            let _ = fs.remove_file(&dir.join(crate::segment::index_name(base)));
            let _ = fs.remove_file(&dir.join(log_name(base)));
        }
    }
    fs.sync_dir(dir).map_err(|e| poison_io("sync_dir", dir, e))?;
    let temp = dir.join(format!("{}{TEMP_SUFFIX}", swap::SWAP_NAME));
    let staged = (|| {
        let file = fs.open(&temp, OpenMode::CreateTruncate).map_err(|e| Error::io("create", &temp, e))?;
        file.write_all_at(&record.encode(), 0).map_err(|e| Error::io("write", &temp, e))?;
        file.sync_data().map_err(|e| Error::io("sync_data", &temp, e))
    })();
    if let Err(e) = staged {
        let _ = fs.remove_file(&temp);
        output.discard();
        return Err(e);
    }
    let path = dir.join(swap::SWAP_NAME);
    fs.rename(&temp, &path).map_err(|e| poison_io("rename", &temp, e))?;
    fs.sync_dir(dir).map_err(|e| poison_io("sync_dir", dir, e))?;
    cairn_fs::crash_point(cairn_fs::crash_point::COMPACTION_COMMITTED);
    swap::apply(fs, dir, record).map_err(|e| shared.poison(e))?;
    let mut segments = Vec::with_capacity(output.written.len());
    for written in output.written {
        let sealed = Sealed::built(written.summary, written.entries);
        if written.clean {
            sealed.set_clean_info(CleanInfo { filter: written.filter, runs: written.runs });
        }
        let path = dir.join(log_name(written.base));
        segments.push(Arc::new(Segment::sealed(written.base, path, written.file, sealed)));
    }
    Ok(segments)
}

fn sealed_of(segment: &Segment) -> Result<&Sealed> {
    segment.sealed_info().ok_or_else(|| {
        Error::io(
            "compact",
            &segment.path,
            std::io::Error::other("an active segment among the compacted ones"),
        )
    })
}

fn summary_of(segment: &Segment) -> crate::index::Summary {
    segment.sealed_info().map_or_else(|| crate::index::Summary::empty(segment.base), |s| s.summary)
}

/// A batch as a pass reads it: its header and bytes.
#[derive(Clone, Copy)]
struct Batch<'a> {
    info: BatchInfo,
    bytes: &'a [u8],
}

/// Calls `f` with the records of each batch of a sealed segment, in order, until it returns
/// `false`. Returns the bytes read.
fn for_each_batch(segment: &Segment, mut f: impl FnMut(&[RecordView<'_>], Batch<'_>) -> bool) -> Result<u64> {
    let sealed = sealed_of(segment)?;
    let data = segment.data(sealed)?;
    let end = sealed.summary.segment_bytes;
    let bytes = data.get(..end as usize).unwrap_or_default();
    let mut position = 0u64;
    let mut expected = segment.base;
    let mut records = Vec::new();
    while position < end {
        let rest = bytes.get(position as usize..).unwrap_or_default();
        records.clear();
        let info: BatchInfo = batch::check_each(rest, expected, |record| {
            records.push(record);
            true
        })
        .map_err(|kind| Error::corruption(&segment.path, position, kind))?;
        let batch = Batch { info, bytes: rest.get(..info.len()).unwrap_or_default() };
        position += info.length as u64;
        if !f(&records, batch) {
            return Ok(position);
        }
        expected = info.next_offset();
    }
    if expected != sealed.summary.next_offset {
        let kind = CorruptionKind::OffsetMismatch { expected: sealed.summary.next_offset, found: expected };
        return Err(Error::corruption(&segment.path, end, kind));
    }
    Ok(end)
}

/// Tells `listener` where every record of a new segment is.
fn report_moves(segment: &Segment, listener: &dyn CompactionListener) -> Result<()> {
    let sealed = sealed_of(segment)?;
    let data = segment.data(sealed)?;
    let end = sealed.summary.segment_bytes;
    let mut position = 0u64;
    let mut expected = segment.base;
    while position < end {
        let rest = data.get(position as usize..end as usize).unwrap_or_default();
        let info =
            batch::check(rest, expected).map_err(|kind| Error::corruption(&segment.path, position, kind))?;
        for record in batch::Records::new(rest.get(..info.len()).unwrap_or_default(), &info) {
            let record = record.map_err(|kind| Error::corruption(&segment.path, position, kind))?;
            let key_end = record.key.as_ptr() as usize + record.key.len() - rest.as_ptr() as usize;
            let location = ValueLocation {
                segment: segment.id,
                // Segments stay below 4 GiB (options check).
                position: (position + key_end as u64) as u32,
                len: record.value.map_or(0, <[u8]>::len) as u32,
            };
            listener.record_moved(&RecordMove {
                key: record.key,
                offset: record.offset,
                segment_base: segment.base,
                batch_position: position,
                location,
            });
        }
        position += info.length as u64;
        expected = info.next_offset();
    }
    Ok(())
}

impl CleanInfo {
    /// When compaction first saw the record at `offset`.
    pub(crate) fn seen_at(&self, offset: u64) -> i64 {
        let at = self.runs.partition_point(|r| r.offset <= offset);
        at.checked_sub(1)
            .and_then(|i| self.runs.get(i))
            .or(self.runs.first())
            .map_or(i64::MIN, |r: &SeenRun| r.seen_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_neighbours_join_a_rewrite_and_lone_untouched_ones_stay() {
        let (t, f) = (true, false);
        // needed, small → included
        assert_eq!(include_neighbours(&[f, t, f], &[t, f, t]), [t, t, t]);
        assert_eq!(include_neighbours(&[f, f, t, f], &[t, f, f, f]), [f, f, t, f]);
        assert_eq!(include_neighbours(&[f, f, f], &[t, t, f]), [t, t, f]);
        assert_eq!(include_neighbours(&[f, f, f], &[t, f, t]), [f, f, f]);
    }

    #[test]
    fn seen_runs_answer_by_offset() {
        let info = CleanInfo {
            filter: crate::filter::KeyFilter::with_capacity(1),
            runs: vec![SeenRun { offset: 10, seen_ms: 100 }, SeenRun { offset: 50, seen_ms: 200 }],
        };
        assert_eq!(info.seen_at(10), 100);
        assert_eq!(info.seen_at(49), 100);
        assert_eq!(info.seen_at(50), 200);
        assert_eq!(info.seen_at(5), 100);
    }
}
