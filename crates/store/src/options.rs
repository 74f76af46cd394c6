//! How a store is opened and runs.

use std::fmt;
use std::sync::Arc;

use cairn_changelog::{LogOptions, Maintenance};

use crate::error::{Error, Result};
use crate::restore::RestoreProgress;

/// Options of a [`Store`](crate::Store). Start from [`StoreOptions::default`] and change fields.
///
/// ```
/// let mut options = cairn_store::StoreOptions::default();
/// options.value_bytes_max = 64 << 10;
/// options.log.segment_bytes_max = 16 << 20;
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StoreOptions {
    /// Options of the changelog under `<dir>/changelog`. Its `maintenance` must stay `None`:
    /// background compaction is [`StoreOptions::compaction`]. Default: the log's defaults with
    /// 32 MiB segments and write-back started every
    /// [`WRITEBACK_BYTES`](cairn_changelog::WRITEBACK_BYTES), which keeps syncs short.
    pub log: LogOptions,
    /// The longest key accepted. Default 64 KiB.
    pub key_bytes_max: usize,
    /// The longest value accepted; with its key it must fit one changelog batch. Default 1 MiB.
    pub value_bytes_max: usize,
    /// Writes wait in memory (visible to reads) until [`Store::flush`](crate::Store::flush),
    /// [`Store::sync`](crate::Store::sync), or until they hold this many bytes, when they are
    /// appended to the changelog. Default 256 KiB: a commit's flush then stays short.
    pub write_buffer_bytes: usize,
    /// Snapshots kept after a new one is written (the newest ones). At least 1. Default 2.
    pub snapshots_kept: usize,
    /// Restore from the newest usable snapshot (`true`), or always by replaying the whole
    /// changelog (`false`). Default `true`.
    pub restore_from_snapshots: bool,
    /// Background compaction of the changelog: the log's maintenance thread, with the store
    /// following every record a pass moves (the `listener` field is set by the store; the
    /// `retention` field must be `None`: a store's changelog is never cut by age or size).
    /// Default `None`: compaction only when [`Store::compact`](crate::Store::compact) is called.
    pub compaction: Option<Maintenance>,
    /// Called as restore progresses. Default `None`.
    pub on_restore_progress: Option<ProgressListener>,
    /// Bytes of values kept in memory for point reads ([`Store::get`](crate::Store::get),
    /// [`Store::get_all`](crate::Store::get_all) and a view's `get`), beside the operating
    /// system's page cache of the mapped segments. Values are cached by where they lie in the
    /// changelog, so an entry is never stale; iteration bypasses the cache. Worth it for hot
    /// keys whose values are in the active segment (read with a system call, not a mapping)
    /// or when the page cache is under pressure. Default 0: no cache.
    pub value_cache_bytes: usize,
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        let mut log = LogOptions::default();
        log.segment_bytes_max = 32 << 20;
        log.writeback_bytes = cairn_changelog::WRITEBACK_BYTES;
        StoreOptions {
            log,
            key_bytes_max: 64 << 10,
            value_bytes_max: 1 << 20,
            write_buffer_bytes: 256 << 10,
            snapshots_kept: 2,
            restore_from_snapshots: true,
            compaction: None,
            on_restore_progress: None,
            value_cache_bytes: 0,
        }
    }
}

impl StoreOptions {
    pub(crate) fn validate(&self) -> Result<()> {
        if self.log.maintenance.is_some() {
            return Err(Error::InvalidOptions {
                option: "log.maintenance",
                reason: "a store schedules its changelog's compaction itself: use StoreOptions::compaction",
            });
        }
        if self.compaction.as_ref().is_some_and(|m| m.retention.is_some()) {
            return Err(Error::InvalidOptions {
                option: "compaction.retention",
                reason: "retention would delete a store's data",
            });
        }
        if self.key_bytes_max == 0 {
            return Err(Error::InvalidOptions { option: "key_bytes_max", reason: "must be positive" });
        }
        // A record's framing: at most three 10-byte varints, inside a 48-byte batch header.
        let record_max = (self.key_bytes_max as u64).saturating_add(self.value_bytes_max as u64) + 30 + 48;
        if record_max > self.log.batch_bytes_max.min(self.log.segment_bytes_max) {
            return Err(Error::InvalidOptions {
                option: "value_bytes_max",
                reason: "the largest key and value must fit one changelog batch (log.batch_bytes_max)",
            });
        }
        if self.snapshots_kept == 0 {
            return Err(Error::InvalidOptions { option: "snapshots_kept", reason: "must be at least 1" });
        }
        Ok(())
    }
}

/// A shared restore-progress callback, as options hold it.
#[derive(Clone)]
pub struct ProgressListener(pub Arc<dyn Fn(&RestoreProgress) + Send + Sync>);

impl fmt::Debug for ProgressListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProgressListener(..)")
    }
}
