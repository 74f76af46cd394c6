//! The segment list: the log's segments, oldest first, replaced whole under its lock and never
//! edited in place, so that a copy taken by a reader stays consistent however the log changes.
//!
//! Three things change it: a roll appends a segment, a truncation or a retention pass drops
//! segments at an end, and a compaction pass swaps a run of sealed segments for the segments it
//! wrote, which cover exactly the same offsets. The swap happens in one step under the lock: a
//! reader that takes the list sees the old run or the new one, never a gap or an overlap
//! (checked by the loom model below). A reader keeps the segments ahead of it (the segment holding
//! its position and the later ones, as the list had them when it took them), so it finishes a
//! run on the segments it started with; a segment's file is closed when the last holder drops it,
//! after the last reader.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::mutants;
use crate::sync::{Mutex, lock};

/// A list of segments, each covering offsets from its base up to the next one's base.
pub(crate) type List<T> = Arc<Vec<Arc<T>>>;

/// What the list needs to know of a segment.
pub(crate) trait Based {
    /// The first offset the segment covers.
    fn base(&self) -> u64;
}

/// Replaces the run `old` (consecutive in the list, compared by identity) with `new`, in one
/// step. Returns `false`, changing nothing, if `old` is not a run of the list.
pub(crate) fn swap<T>(list: &Mutex<List<T>>, old: &[Arc<T>], new: &[Arc<T>]) -> bool {
    let mut guard = lock(list);
    let Some(start) = find_run(&guard, old) else {
        return false;
    };
    if mutants::active(mutants::SWAP_IN_TWO_STEPS) {
        // The mutant: remove the old run, let go of the lock, then insert the new one.
        let mut removed = Vec::clone(&guard);
        removed.drain(start..start + old.len());
        *guard = Arc::new(removed);
        drop(guard);
        guard = lock(list);
        let mut inserted = Vec::clone(&guard);
        inserted.splice(start..start, new.iter().cloned());
        *guard = Arc::new(inserted);
        return true;
    }
    let mut replaced = Vec::with_capacity(guard.len() - old.len() + new.len());
    replaced.extend(guard.iter().take(start).cloned());
    replaced.extend(new.iter().cloned());
    replaced.extend(guard.iter().skip(start + old.len()).cloned());
    *guard = Arc::new(replaced);
    true
}

/// Where the run `old` starts in `list`, if it is one.
fn find_run<T>(list: &[Arc<T>], old: &[Arc<T>]) -> Option<usize> {
    let first = old.first()?;
    let start = list.iter().position(|s| Arc::ptr_eq(s, first))?;
    let run = list.get(start..start + old.len())?;
    run.iter().zip(old).all(|(a, b)| Arc::ptr_eq(a, b)).then_some(start)
}

/// The segments of `list` from the one holding `offset` on; empty if `offset` is below the
/// first segment.
pub(crate) fn ahead_of<T: Based>(list: &[Arc<T>], offset: u64) -> VecDeque<Arc<T>> {
    match list.iter().rposition(|s| s.base() <= offset) {
        Some(at) => list.iter().skip(at).cloned().collect(),
        None => VecDeque::new(),
    }
}

/// Drops the segments at the front of `ahead` that end at or before `offset` (those followed by a
/// segment whose base is at or below it).
pub(crate) fn pass_behind<T: Based>(ahead: &mut VecDeque<Arc<T>>, offset: u64) {
    while ahead.get(1).is_some_and(|next| next.base() <= offset) {
        ahead.pop_front();
    }
}

/// loom model of the swap against a reader (DESIGN §7 rung 6): whatever the interleaving, a
/// reader walking the offsets finds each one in exactly one segment (no gap, no overlap), and a
/// segment it holds is not released before it lets go.
#[cfg(all(test, loom))]
#[allow(clippy::unwrap_used, clippy::expect_used)] // a test: a panicked model thread fails it
mod loom_model {
    use loom::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// A segment covering `[base, end)`, whose "file" is released when the last holder drops it.
    struct Seg {
        base: u64,
        end: u64,
        released: Arc<AtomicBool>,
    }

    impl Based for Seg {
        fn base(&self) -> u64 {
            self.base
        }
    }

    impl Drop for Seg {
        fn drop(&mut self) {
            self.released.store(true, Ordering::Release);
        }
    }

    fn seg(base: u64, end: u64) -> (Arc<Seg>, Arc<AtomicBool>) {
        let released = Arc::new(AtomicBool::new(false));
        (Arc::new(Seg { base, end, released: Arc::clone(&released) }), released)
    }

    fn model() {
        loom::model(|| {
            // Two sealed segments and the active one; compaction merges the sealed two.
            let (a, a_released) = seg(0, 10);
            let (b, _) = seg(10, 20);
            let (c, _) = seg(20, 30);
            let list: Arc<Mutex<List<Seg>>> =
                Arc::new(Mutex::new(Arc::new(vec![Arc::clone(&a), Arc::clone(&b), c])));
            let (merged, _) = seg(0, 20);
            let compactor = {
                let list = Arc::clone(&list);
                loom::thread::spawn(move || {
                    assert!(swap(&list, &[a, b], &[merged]), "the run was not found");
                })
            };
            // A reader from offset 5 that takes the list afresh for every segment (as one that
            // reached the end of what it holds does), and one that holds what it took.
            let mut offset = 5;
            while offset < 30 {
                let ahead = ahead_of(&lock(&list), offset);
                let segment = ahead.front().expect("a gap: no segment holds the offset");
                assert!(segment.base <= offset && offset < segment.end, "offset {offset} not in its segment");
                offset = segment.end;
            }
            let held = ahead_of(&lock(&list), 0);
            let mut offset = 0;
            for segment in &held {
                assert!(segment.base == offset || (segment.base < offset && offset < segment.end));
                assert!(!segment.released.load(Ordering::Acquire), "a held segment was released");
                offset = segment.end;
            }
            assert_eq!(offset, 30, "a gap: the held segments do not reach the end");
            compactor.join().unwrap();
            drop(held);
            let after = lock(&list);
            assert_eq!(after.len(), 2);
            assert!(a_released.load(Ordering::Acquire), "a replaced segment outlived its last reader");
        });
    }

    #[test]
    fn loom_swap_never_shows_a_reader_a_gap() {
        let _serial = mutants::exclusive();
        model();
    }

    // The mutant: `cargo xtask loom` runs it in its own process and expects it to fail.
    #[test]
    #[ignore = "mutant: run by `cargo xtask loom`, must fail with \"a gap\""]
    fn loom_mutant_swap_in_two_steps() {
        mutants::set(Some(mutants::SWAP_IN_TWO_STEPS));
        model();
    }
}
