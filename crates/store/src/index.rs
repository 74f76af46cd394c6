//! The key directory: every live key, in byte order, with where its latest value is.
//!
//! Invariant: every [`Slot::Logged`] location names a segment of the store's current
//! [`SegmentSet`](cairn_changelog::SegmentSet) (new segments are added before a slot points
//! into them; replaced ones dropped only after no slot does).

use std::collections::BTreeMap;
use std::sync::Arc;

use cairn_changelog::ValueLocation;

/// Keys are shared between the index, pending writes and read views.
pub(crate) type Key = Arc<[u8]>;

/// The index: shared with read views, copied on the first write after a view was taken.
pub(crate) type Index = BTreeMap<Key, Slot>;

/// Where a key's latest value is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    /// Written, not yet appended to the changelog: the value itself.
    Pending(Arc<[u8]>),
    /// In the changelog at `offset`, the value at `at`.
    Logged { offset: u64, at: ValueLocation },
    /// Restore only: a snapshot's entry whose segment changed since; the record at `offset`
    /// must be found again in the changelog.
    Unresolved { offset: u64 },
}
