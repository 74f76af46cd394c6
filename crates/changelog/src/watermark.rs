//! A published position: the single release store / acquire load pair through which the writer
//! tells readers how far they may read (DESIGN §4).

use crate::mutants;
use crate::sync::{AtomicU64, Ordering};

/// A `u64` position written by one party under its lock and read by anyone without one.
#[derive(Debug)]
pub(crate) struct Watermark(AtomicU64);

impl Watermark {
    pub(crate) fn new(value: u64) -> Watermark {
        Watermark(AtomicU64::new(value))
    }

    /// Publishes `value`. Release: every write made before this call (file bytes, index
    /// entries, segment list) is visible to a thread whose [`Watermark::load`] returns `value`.
    pub(crate) fn publish(&self, value: u64) {
        let ordering = if mutants::active(mutants::PUBLISH_RELAXED) {
            Ordering::Relaxed
        } else {
            Ordering::Release
        };
        self.0.store(value, ordering);
    }

    /// The last published value. Acquire: pairs with the release in [`Watermark::publish`], so
    /// whatever was written before that value was published can be read now.
    pub(crate) fn load(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}
