//! Retention: deleting whole old segments of a log that is not compacted (an output stream, a
//! plain topic), by total size and by age. Never the active segment, never a segment not yet
//! known durable (its marker is still to be written), and always a prefix of the log, oldest
//! first, each removal made durable before the next, so that a crash never leaves a gap.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::log::{PoisonOnPanic, Shared};
use crate::record::now_ms;
use crate::segment::Segment;
use crate::sync::lock;

/// What a retention pass deletes. Start from [`Retention::default`] (which deletes nothing) and
/// set limits.
///
/// ```
/// use std::time::Duration;
/// let mut retention = cairn_changelog::Retention::default();
/// retention.bytes_max = Some(1 << 30);
/// retention.age_max = Some(Duration::from_secs(7 * 24 * 3600));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Retention {
    /// Delete the oldest sealed segments while the log's segments hold more bytes than this.
    pub bytes_max: Option<u64>,
    /// Delete the oldest sealed segments whose newest record (by timestamp) is older than this.
    /// A segment with no record counts as old.
    pub age_max: Option<Duration>,
    /// The time taken as now, in milliseconds since the Unix epoch. `None`: the system clock.
    pub now_ms: Option<i64>,
}

/// What a retention pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetentionReport {
    /// Segments deleted.
    pub segments_removed: usize,
    /// Their bytes.
    pub bytes_removed: u64,
    /// Their records.
    pub records_removed: u64,
    /// The log's first offset afterwards.
    pub start_offset: u64,
    /// Wall time of the pass.
    pub duration: Duration,
}

/// Runs a retention pass on `shared`.
pub(crate) fn run(shared: &Shared, retention: &Retention) -> Result<RetentionReport> {
    let started = Instant::now();
    let _maintenance = lock(&shared.maintenance);
    shared.check_open()?;
    let now = retention.now_ms.unwrap_or_else(now_ms);
    let durable = shared.commit.durable();
    let list = shared.segments();
    let total: u64 = list.iter().map(|s| bytes_of(s)).sum();
    let age_ms = retention.age_max.map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let mut doomed: Vec<Arc<Segment>> = Vec::new();
    let mut left = total;
    let sealed = list.len().saturating_sub(1);
    for segment in list.iter().take(sealed) {
        let Some(info) = segment.sealed_info() else { break };
        let summary = &info.summary;
        if summary.next_offset > durable || !segment.is_marked() {
            break;
        }
        let too_big = retention.bytes_max.is_some_and(|max| left > max);
        let too_old = age_ms.is_some_and(|age| summary.max_ts.saturating_add(age) < now);
        if !too_big && !too_old {
            break;
        }
        left -= summary.segment_bytes;
        doomed.push(Arc::clone(segment));
    }
    let mut report = RetentionReport::default();
    let _guard = PoisonOnPanic(shared);
    for segment in &doomed {
        // Out of the list first: new readers start after it; readers holding it keep it open.
        {
            let mut guard = lock(&shared.segments);
            if !guard.first().is_some_and(|first| Arc::ptr_eq(first, segment)) {
                let changed = std::io::Error::other("the segment list changed under a retention pass");
                return Err(shared.poison(Error::io("retention", &shared.dir, changed)));
            }
            *guard = Arc::new(guard.iter().skip(1).cloned().collect());
        }
        shared.remove_segment(segment)?;
        let summary = segment.sealed_info().map(|s| s.summary);
        report.segments_removed += 1;
        report.bytes_removed += summary.map_or(0, |s| s.segment_bytes);
        report.records_removed += summary.map_or(0, |s| s.record_count);
    }
    report.start_offset = shared.start_offset();
    report.duration = started.elapsed();
    Ok(report)
}

fn bytes_of(segment: &Segment) -> u64 {
    segment.sealed_info().map_or_else(|| segment.published.load(), |s| s.summary.segment_bytes)
}
