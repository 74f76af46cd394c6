//! cairn: durable local state for stream processing.
//!
//! This package is the facade over cairn's crates, each usable on its own:
//! - [`fs`] (`cairn-fs`): the file-system seam, `RealFs` and the power-loss simulator `SimFs`;
//! - [`changelog`] (`cairn-changelog`): the segmented, checksummed, append-only log;
//! - [`checkpoint`] (`cairn-checkpoint`): small durable files replaced atomically, and the
//!   offsets checkpoint of a task;
//! - [`store`] (`cairn-store`): the key-value store rebuilt from its changelog, with snapshots;
//! - [`task`] (`cairn-task`): the task runtime: stream tasks, the commit protocol, recovery.
//!
//! It also holds the `cairn` command-line tool, the cross-crate tests and the benchmarks.

pub use cairn_changelog as changelog;
pub use cairn_checkpoint as checkpoint;
pub use cairn_fs as fs;
pub use cairn_store as store;
pub use cairn_task as task;

/// The README's examples, compiled and run as doc tests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeExamples;
