//! The store of cairn: a key-value store whose durable form is a `cairn-changelog` log, rebuilt
//! from it on open, with snapshots of its index for fast restore (DESIGN §6).
//!
//! A [`Store`] keeps every key in memory, in byte order, with where its latest value lives: a
//! write not yet in the changelog holds its value, a flushed one points at the value's bytes in
//! a changelog segment (Bitcask's key directory), so state can be larger than memory; values
//! come through the operating system's page cache, plus an optional bounded cache of their own
//! ([`StoreOptions::value_cache_bytes`]). Writes are
//! visible at once, reach the changelog on [`Store::flush`] and are durable after
//! [`Store::sync`]; [`Store::put_all`] and [`Store::delete_all`] are atomic. [`Store::view`]
//! gives a consistent read view that later writes do not change; [`Store::range`] iterates
//! `[from, to)` in byte order.
//!
//! Restore is fast: [`Store::write_snapshot`] writes the index at a changelog offset into a
//! durable file ("hint file", docs/format.md "Store snapshot"); opening loads the newest
//! usable snapshot and replays the changelog after it, so restore costs the number of keys,
//! not the changelog's length. A damaged snapshot, or one the changelog no longer matches, is
//! skipped and reported ([`RestoreReport`]): the changelog is the truth.
//! [`Store::open_at`] first truncates the changelog to an offset: the task runtime's roll-back
//! to its checkpoint. Compaction of the changelog ([`Store::compact`],
//! [`StoreOptions::compaction`]) moves records; the store follows every move from the pass's
//! report, without reading the log again, and reads go on meanwhile.
//!
//! [`TypedStore`] puts serde keys and values on top, with a documented encoding.
//!
//! All file I/O goes through [`cairn_fs::Fs`], so the power-loss simulator sees it.

mod cache;
mod error;
mod follow;
mod index;
#[doc(hidden)]
pub mod mutants;
mod options;
mod restore;
mod snapshot;
mod store;
mod sync;
mod typed;
mod view;

pub use error::{Error, Result};
pub use options::{ProgressListener, StoreOptions};
pub use restore::{RestorePhase, RestoreProgress, RestoreReport, RestoreSource, SkipReason, SkippedSnapshot};
pub use snapshot::{PendingSnapshot, SnapshotInfo};
pub use store::Store;
pub use typed::{TypedEntries, TypedStore};
pub use view::{Entries, ReadView};
