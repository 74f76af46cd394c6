//! Deliberate bugs that cairn's own tests switch on to prove that a test can fail (the test
//! suite's "mutants"): the switch shared by every cairn crate, each of which names its own
//! mutants. Compiled in only with the `mutants` feature or under `--cfg loom`; in every other
//! build [`active`] is a constant `false` and the hooks vanish.
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

    /// Whether the named mutant is switched on: by [`set`], or for the whole process by the
    /// environment variable `CAIRN_MUTANT` (how `cargo xtask crash --mutant` breaks a build).
    pub fn active(name: &'static str) -> bool {
        (ANY.load(Ordering::Relaxed) && *ACTIVE.lock().unwrap_or_else(PoisonError::into_inner) == Some(name))
            || from_env() == Some(name)
    }

    fn from_env() -> Option<&'static str> {
        static NAME: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
        NAME.get_or_init(|| std::env::var("CAIRN_MUTANT").ok()).as_deref()
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
