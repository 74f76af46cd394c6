//! The store's locks: std's in normal builds, loom's under `--cfg loom`, so that the loom model
//! of the read path (in `cache`) runs the store's own code with the changelog's (tokio's
//! pattern, as in `cairn-changelog`).

#[cfg(loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
