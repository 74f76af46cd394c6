//! Named crash points: places in cairn's durability paths where `cargo xtask crash points` makes
//! a worker process abort, to test the narrow windows a random kill rarely hits (DESIGN §7,
//! rung 3).
//!
//! Compiled in only with the `crash-points` feature, which only the crash harness's worker
//! enables; in every other build [`crash_point`] is an empty inline function. With the feature,
//! the environment variable `CAIRN_CRASH_POINT=<name>@<k>` arms one point: its `k`-th hit (from
//! 1, counted across threads) writes `crash point <name> hit <k>: aborting` to stderr and aborts
//! the process (`SIGABRT`, no unwinding, no destructors, buffers in user space lost), which is a
//! process crash at that instruction: what was written to files survives in the page cache.

#[cfg(feature = "crash-points")]
mod imp {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// The armed point and at which hit it fires, read once from the environment.
    fn armed() -> Option<&'static (String, u64)> {
        static ARMED: OnceLock<Option<(String, u64)>> = OnceLock::new();
        ARMED
            .get_or_init(|| {
                let value = std::env::var("CAIRN_CRASH_POINT").ok()?;
                let (name, k) = value.rsplit_once('@')?;
                Some((name.to_string(), k.parse().ok()?))
            })
            .as_ref()
    }

    /// Aborts the process at the armed hit of the point `name`.
    pub fn crash_point(name: &'static str) {
        static HITS: AtomicU64 = AtomicU64::new(0);
        if let Some((armed, k)) = armed()
            && armed == name
            && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *k
        {
            eprintln!("crash point {name} hit {k}: aborting");
            std::process::abort();
        }
    }
}

#[cfg(not(feature = "crash-points"))]
mod imp {
    /// Crash points are compiled out: does nothing.
    #[inline(always)]
    pub fn crash_point(_name: &'static str) {}
}

pub use imp::crash_point;

/// Every crash point in the workspace, with the step it follows: the list `cargo xtask crash
/// points` runs (it fails if one never fires).
pub const ALL: &[&str] = &[
    CHANGELOG_WRITTEN,
    CHANGELOG_ROLLED,
    CHANGELOG_SYNCED,
    COMPACTION_COMMITTED,
    CHECKPOINT_TEMP_SYNCED,
    CHECKPOINT_RENAMED,
    CHECKPOINT_DIR_SYNCED,
    TASK_FLUSHED,
    TASK_CHECKPOINTED,
    SNAPSHOT_WRITTEN,
    RESTORE_SNAPSHOT_LOADED,
    RESTORE_REPLAYING,
];

/// A changelog wrote its buffered batches to the active segment (not yet fsynced).
pub const CHANGELOG_WRITTEN: &str = "changelog-written";
/// A changelog created a new segment and synced its directory; the old one is not yet fsynced.
pub const CHANGELOG_ROLLED: &str = "changelog-rolled";
/// A changelog's sync fsynced its segments, before it returns the durable end.
pub const CHANGELOG_SYNCED: &str = "changelog-synced";
/// A compaction pass made its swap record durable, before it installs the new segments and
/// deletes the old ones.
pub const COMPACTION_COMMITTED: &str = "compaction-committed";
/// A durable file's (checkpoint's, snapshot's) temporary file is written and fsynced, before
/// the rename.
pub const CHECKPOINT_TEMP_SYNCED: &str = "checkpoint-temp-synced";
/// A durable file's rename is done, before the directory fsync.
pub const CHECKPOINT_RENAMED: &str = "checkpoint-renamed";
/// A durable file's directory fsync is done, before the write returns.
pub const CHECKPOINT_DIR_SYNCED: &str = "checkpoint-dir-synced";
/// A task commit flushed every store and output, before the first fsync.
pub const TASK_FLUSHED: &str = "task-flushed";
/// A task commit wrote its checkpoint, before snapshots and compaction limits.
pub const TASK_CHECKPOINTED: &str = "task-checkpointed";
/// A store snapshot is written, before older snapshots are pruned.
pub const SNAPSHOT_WRITTEN: &str = "snapshot-written";
/// A store's restore loaded a snapshot, before it replays the changelog's tail.
pub const RESTORE_SNAPSHOT_LOADED: &str = "restore-snapshot-loaded";
/// A store's restore is replaying the changelog (one hit per batch).
pub const RESTORE_REPLAYING: &str = "restore-replaying";
