//! How a log is opened and runs.

use crate::error::{Error, Result};
use crate::maintenance::Maintenance;

/// The [`LogOptions::writeback_bytes`] that the store and the task runtime use: 1 MiB.
pub const WRITEBACK_BYTES: u64 = 1 << 20;

/// Options of a [`Log`](crate::Log). Start from [`LogOptions::default`] and change fields.
///
/// ```
/// let mut options = cairn_changelog::LogOptions::default();
/// options.segment_bytes_max = 16 << 20;
/// options.segment_age_ms_max = Some(60_000);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogOptions {
    /// A segment is sealed and a new one started before it would grow past this many bytes.
    /// At least 4096 and below 4 GiB. Default 64 MiB.
    pub segment_bytes_max: u64,
    /// A non-empty active segment older than this (since it was started or reopened) is sealed
    /// at the next append. Default `None`: no age limit.
    pub segment_age_ms_max: Option<u64>,
    /// One index entry per this many bytes of segment data. Default 4096.
    pub index_interval_bytes: u64,
    /// Appended records are encoded into a buffer of this size and written to the file when it
    /// fills, on [`Log::flush`](crate::Log::flush), [`Log::sync`](crate::Log::sync) and at a roll;
    /// readers see records once written. Consecutive appends in the buffer share one batch. 0
    /// writes every append at once. Default 256 KiB.
    pub write_buffer_bytes: usize,
    /// Once this many bytes (whole pages) have been written to the active segment since the
    /// last time, and at each [`Log::flush`](crate::Log::flush), the log asks the OS to start
    /// writing them to the device without waiting
    /// ([`File::start_writeback`](cairn_fs::File::start_writeback)), so that a sync finds at
    /// most about this much dirty data instead of everything written since the last one. It
    /// makes nothing durable earlier. For logs synced at intervals, where the sync's latency
    /// matters (a store's changelog and a task's outputs use [`WRITEBACK_BYTES`]); it costs
    /// throughput where nothing is synced (the device writes now, not later or never). 0, the
    /// default, leaves write-back to the OS.
    pub writeback_bytes: u64,
    /// The active segment's file is extended ahead of the writes in steps of this many bytes
    /// (`set_len`, a hole the file system reads as zeros), and cut back to its batches when
    /// the segment is sealed or the log closed. A durable commit then writes inside the file's
    /// size, so its fdatasync has no size change to journal: on ext4 that is about 30% off
    /// every commit's latency (README, "Compared with peers"). After a crash the file may end
    /// in zeros; opening cuts them without calling them a torn tail (zeros never parse as a
    /// batch: docs/format.md). 0 turns it off: the file grows with each write. Default 4 MiB.
    pub preallocate_bytes: u64,
    /// The largest batch one append may produce, in encoded bytes; capped at
    /// `segment_bytes_max`. Default 16 MiB.
    pub batch_bytes_max: u64,
    /// Recovery: the end offset the caller knows was made durable (say, the offset in its last
    /// checkpoint). A log that ends before it is reported as corruption instead of being cut.
    /// Default `None`.
    pub known_durable_end: Option<u64>,
    /// Recovery: check every batch of every sealed segment on open, instead of trusting their
    /// index headers (batches are always checked when read). Default `false`.
    pub verify_on_open: bool,
    /// A background thread that compacts and applies retention (see [`Maintenance`]), started
    /// by [`Log::open`](crate::Log::open) and stopped by close or drop. Default `None`.
    pub maintenance: Option<Maintenance>,
}

impl Default for LogOptions {
    fn default() -> LogOptions {
        LogOptions {
            segment_bytes_max: 64 << 20,
            segment_age_ms_max: None,
            index_interval_bytes: 4096,
            write_buffer_bytes: 256 << 10,
            writeback_bytes: 0,
            preallocate_bytes: 4 << 20,
            batch_bytes_max: 16 << 20,
            known_durable_end: None,
            verify_on_open: false,
            maintenance: None,
        }
    }
}

impl LogOptions {
    pub(crate) fn validate(&self) -> Result<()> {
        if !(4096..u64::from(u32::MAX)).contains(&self.segment_bytes_max) {
            return Err(Error::InvalidOptions {
                option: "segment_bytes_max",
                reason: "must be at least 4096 and below 4 GiB",
            });
        }
        if self.index_interval_bytes == 0 {
            return Err(Error::InvalidOptions { option: "index_interval_bytes", reason: "must be positive" });
        }
        if self.batch_bytes_max < crate::batch::MIN_BATCH_LEN as u64 {
            return Err(Error::InvalidOptions {
                option: "batch_bytes_max",
                reason: "must hold at least one batch header and record",
            });
        }
        Ok(())
    }

    /// The effective batch limit.
    pub(crate) fn batch_limit(&self) -> u64 {
        self.batch_bytes_max.min(self.segment_bytes_max)
    }
}
