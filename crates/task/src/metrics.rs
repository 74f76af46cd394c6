//! Per-task metrics.

use std::time::Duration;

/// Commit latencies kept for the percentiles (the most recent ones).
const LATENCIES_KEPT: usize = 4096;

/// What a task has done since it was opened.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct TaskMetrics {
    /// Input messages processed.
    pub messages: u64,
    /// Commits made.
    pub commits: u64,
    /// Messages sent to outputs.
    pub output_messages: u64,
    /// Key and value bytes sent to outputs.
    pub output_bytes: u64,
    /// Bytes the stores' changelogs grew by, measured at each commit (compaction can shrink
    /// a changelog; shrinking is not subtracted).
    pub changelog_bytes: u64,
    /// Snapshot batches written (one snapshot per store, written off the task's thread;
    /// counted once finished).
    pub snapshots: u64,
    /// Time taken by recovery in `TaskRunner::open` (checkpoint, truncations, store restores).
    pub restore_time: Duration,
    /// Changelog records the store restores replayed.
    pub records_replayed: u64,
    /// The checkpoint recovery started from, if any.
    pub recovered_checkpoint: Option<u64>,
    /// The last checkpoint written.
    pub last_checkpoint: Option<u64>,
    latencies: Vec<Duration>,
    next_latency: usize,
}

impl TaskMetrics {
    pub(crate) fn record_commit(&mut self, latency: Duration) {
        self.commits += 1;
        if self.latencies.len() < LATENCIES_KEPT {
            self.latencies.push(latency);
        } else if let Some(slot) = self.latencies.get_mut(self.next_latency) {
            *slot = latency;
        }
        self.next_latency = (self.next_latency + 1) % LATENCIES_KEPT;
    }

    /// The recent commit latencies (up to the last 4096), oldest first.
    pub fn recent_commit_latencies(&self) -> Vec<Duration> {
        let (newer, older) = self.latencies.split_at(self.next_latency.min(self.latencies.len()));
        if self.latencies.len() < LATENCIES_KEPT { self.latencies.clone() } else { [older, newer].concat() }
    }

    /// The `q`-quantile (0.0 to 1.0) of the recent commit latencies, or `None` before the first
    /// commit.
    pub fn commit_latency(&self, q: f64) -> Option<Duration> {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let last = sorted.len().checked_sub(1)?;
        let index = ((last as f64) * q.clamp(0.0, 1.0)).round() as usize;
        sorted.get(index).copied()
    }
}
