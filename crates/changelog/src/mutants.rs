//! Deliberate bugs that cairn's own tests switch on to prove that a test can fail (the test
//! suite's "mutants"). Compiled in only with the `mutants` feature or under `--cfg loom`; in every
//! other build [`active`] is a constant `false` and the hooks vanish.
//!
//! The switch is process-wide: a test that enables a mutant must hold [`exclusive`] for as long
//! as the mutant is on, and tests that never enable one live in other test binaries.

#[cfg(any(loom, feature = "mutants"))]
mod imp {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Mutex, MutexGuard, PoisonError};

    static ACTIVE: Mutex<Option<&'static str>> = Mutex::new(None);
    // A fast path so that builds with the feature on (benches share the test build's features)
    // pay one relaxed load per hook while no mutant is on.
    static ANY: AtomicBool = AtomicBool::new(false);
    static EXCLUSIVE: Mutex<()> = Mutex::new(());

    /// Whether the named mutant is switched on.
    pub fn active(name: &'static str) -> bool {
        ANY.load(Ordering::Relaxed) && *ACTIVE.lock().unwrap_or_else(PoisonError::into_inner) == Some(name)
    }

    /// Serializes the tests that switch mutants; hold the guard while one is on.
    pub fn exclusive() -> MutexGuard<'static, ()> {
        EXCLUSIVE.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Switches the named mutant on (or all off with `None`).
    pub fn set(name: Option<&'static str>) {
        *ACTIVE.lock().unwrap_or_else(PoisonError::into_inner) = name;
        ANY.store(name.is_some(), Ordering::Relaxed);
    }
}

#[cfg(not(any(loom, feature = "mutants")))]
mod imp {
    /// Mutants are compiled out: always `false`.
    #[inline(always)]
    pub fn active(_name: &'static str) -> bool {
        false
    }
}

pub use imp::*;

/// Every mutant name, for tests that check each one is exercised.
pub const ALL: &[&str] = &[
    NEW_SEGMENT_SKIPS_DIR_SYNC,
    NO_DIR_SYNC_ON_APPEND_PATH,
    OPEN_SKIPS_TAIL_CUT,
    ACK_WITHOUT_SYNC,
    PUBLISH_RELAXED,
    WAKE_ONE,
];

/// A roll does not sync the directory after creating the new segment, so its name may not be
/// durable when its first record is acknowledged.
pub const NEW_SEGMENT_SKIPS_DIR_SYNC: &str = "new_segment_skips_dir_sync";
/// Neither a roll nor a sync fsyncs the directory: nothing makes a new segment's name durable.
pub const NO_DIR_SYNC_ON_APPEND_PATH: &str = "no_dir_sync_on_append_path";
/// Recovery leaves an invalid tail in place instead of cutting it durably.
pub const OPEN_SKIPS_TAIL_CUT: &str = "open_skips_tail_cut";
/// Group commit acknowledges a waiter while another caller's fsync is still running.
pub const ACK_WITHOUT_SYNC: &str = "ack_without_sync";
/// The end-offset publication uses a relaxed store instead of a release store.
pub const PUBLISH_RELAXED: &str = "publish_relaxed";
/// Group commit wakes one waiter instead of all after an fsync.
pub const WAKE_ONE: &str = "wake_one";
