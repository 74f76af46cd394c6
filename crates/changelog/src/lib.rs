//! The changelog of cairn: an append-only, segmented, checksummed log of key-value records.
//!
//! A [`Log`] lives in one directory as a sequence of segment files named by their first offset
//! (`00000000000000000000.log`), each with a sparse offset index once sealed. Records are framed
//! in batches, the unit of atomicity and of checksum (CRC32C over everything after the checksum,
//! the batch's offset included). Appends return offsets; [`Log::sync`] makes everything appended
//! durable and returns the durable end, sharing one fsync among concurrent callers (group
//! commit); readers from any offset run beside the writer and never see unpublished bytes;
//! [`Log::truncate`] removes a suffix durably; opening recovers from any crash: the torn tail of
//! the last segment is cut (and the cut fsynced), damage where the log must be valid is a typed
//! [`Error::Corruption`] naming file and byte position.
//!
//! [`Log::compact`] keeps, below a limit offset, only the latest record of every key (and a
//! tombstone until its [`DeleteHorizon`]), at its own offset; it rewrites only segments that gain
//! something, runs beside appends and readers, and a crash during it leaves the log as before
//! or after the pass. [`Log::apply_retention`] deletes old segments of logs that are not
//! compacted. [`LogOptions::maintenance`] runs both on a background thread. The byte formats and
//! protocols are in `docs/format.md`; the durability promise (P1-P8) in `DESIGN.md`.
//!
//! All file I/O goes through [`cairn_fs::Fs`], so the same code runs on the real file system and
//! on the power-loss simulator.
//!
//! ```
//! use std::sync::Arc;
//! use cairn_changelog::{Log, LogOptions, Record};
//!
//! # fn main() -> Result<(), cairn_changelog::Error> {
//! let fs = Arc::new(cairn_fs::SimFs::new(0));
//! let log = Log::open(fs.clone(), "/changelog", LogOptions::default())?;
//! log.append(Record::new(b"user:1", Some(b"alice"), 0))?;
//! log.append(Record::new(b"user:1", None, 1))?; // a tombstone
//! assert_eq!(log.sync()?, 2);
//! drop(log);
//!
//! let log = Log::open(fs, "/changelog", LogOptions::default())?;
//! let records: Vec<_> = log.reader(0)?.into_records().collect::<Result<_, _>>()?;
//! assert_eq!(records.len(), 2);
//! assert_eq!(records[1].value, None);
//! # Ok(())
//! # }
//! ```

mod batch;
mod compaction;
mod error;
mod filter;
mod group_commit;
mod index;
mod inspect;
mod locate;
mod log;
#[cfg(all(test, loom))]
mod log_loom;
mod maintenance;
#[doc(hidden)]
pub mod mutants;
mod options;
mod reader;
mod record;
mod recovery;
mod repair;
mod retention;
mod segment;
mod segment_list;
mod sync;
mod watermark;

pub use compaction::{
    Blocked, CompactOptions, CompactionBacklog, CompactionListener, CompactionReport, DeleteHorizon,
    RecordMove,
};
pub use error::{CorruptionKind, Error, Result};
pub use inspect::{Finding, Inspection, LocatedRecord, LogDir, Problem, SegmentInspection, Severity};
pub use locate::{SegmentId, SegmentInfo, SegmentSet, ValueLocation};
pub use log::Log;
pub use maintenance::{CompactionLimit, CompactionPolicy, Listener, Maintenance, MaintenanceStatus};
pub use options::{LogOptions, WRITEBACK_BYTES};
pub use reader::{BatchRecords, BatchView, OwnedRecords, ReadLimit, Reader};
pub use record::{OwnedRecord, Record, RecordView};
pub use recovery::{RecoveryReport, TailCut};
pub use repair::{Repair, RepairPlan, RepairReport};
pub use retention::{Retention, RetentionReport};
