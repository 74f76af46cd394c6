//! Following compaction: a pass moves surviving records to new segments; the follower points
//! the index at their new places, from what the pass reports, without reading the log again.
//!
//! Order (the index invariant, see `index.rs`): the pass's new segments join the store's
//! segment set first ([`CompactionListener::segments_installed`]); moves are applied in chunks
//! under the index's write lock, each only if the key still names the moved record's offset (a
//! newer write wins); the replaced segments leave the set only when the pass finished, when no
//! slot points into them any more. A pass that fails half-way leaves slots pointing into the
//! old segments, which the set keeps: reads stay correct.

use std::sync::{Arc, Weak};

use cairn_changelog::{
    CompactionListener, CompactionReport, RecordMove, SegmentId, SegmentSet, ValueLocation,
};

use crate::index::{KeyBytes, Slot};
use crate::store::Shared;
use crate::sync::{Mutex, MutexGuard};

/// Moves applied per acquisition of the write lock, so that gets go on during a big pass.
const MOVES_PER_LOCK: usize = 4096;

/// The compaction listener of a store.
#[derive(Debug)]
pub(crate) struct Follower {
    shared: Weak<Shared>,
    pass: Mutex<Pass>,
}

#[derive(Debug, Default)]
struct Pass {
    moves: Vec<(Box<[u8]>, u64, ValueLocation)>,
    replaced: Vec<SegmentId>,
}

impl Follower {
    pub(crate) fn new(shared: Weak<Shared>) -> Follower {
        Follower { shared, pass: Mutex::new(Pass::default()) }
    }

    fn pass(&self) -> MutexGuard<'_, Pass> {
        self.pass.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn apply(shared: &Shared, moves: &mut Vec<(Box<[u8]>, u64, ValueLocation)>) {
        let mut state = shared.write();
        let index = Arc::make_mut(&mut state.index);
        for (key, offset, at) in moves.drain(..) {
            if let Some(slot) = index.get_mut(KeyBytes::new(&key))
                && matches!(slot, Slot::Logged { offset: o, .. } if *o == offset)
            {
                *slot = Slot::Logged { offset, at };
            }
        }
    }
}

impl CompactionListener for Follower {
    fn segments_installed(&self, installed: &SegmentSet, replaced: &[SegmentId]) {
        let mut pass = self.pass();
        pass.moves.clear();
        pass.replaced = replaced.to_vec();
        if let Some(shared) = self.shared.upgrade() {
            let mut state = shared.write();
            state.segments = state.segments.merged(installed);
        }
    }

    fn record_moved(&self, moved: &RecordMove<'_>) {
        if crate::mutants::active(crate::mutants::FOLLOWER_DROPS_MOVES) {
            return;
        }
        let mut pass = self.pass();
        pass.moves.push((moved.key.into(), moved.offset, moved.location));
        if pass.moves.len() >= MOVES_PER_LOCK
            && let Some(shared) = self.shared.upgrade()
        {
            Follower::apply(&shared, &mut pass.moves);
        }
    }

    fn pass_finished(&self, _report: &CompactionReport) {
        let mut pass = self.pass();
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        Follower::apply(&shared, &mut pass.moves);
        let replaced = std::mem::take(&mut pass.replaced);
        let mut state = shared.write();
        state.segments = state.segments.without(&replaced);
    }

    fn pass_failed(&self, _error: &cairn_changelog::Error) {
        // Slots still pointing into replaced segments stay readable: the set keeps them.
        let mut pass = self.pass();
        pass.moves.clear();
        pass.replaced.clear();
    }
}
