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
        let ordering =
            if mutants::active(mutants::PUBLISH_RELAXED) { Ordering::Relaxed } else { Ordering::Release };
        self.0.store(value, ordering);
    }

    /// The last published value. Acquire: pairs with the release in [`Watermark::publish`], so
    /// whatever was written before that value was published can be read now.
    pub(crate) fn load(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// loom model: the end-offset publication (DESIGN §4, §7 rung 6). A writer fills slots of a
/// buffer standing in for the file and publishes how many are filled; a reader that loads the
/// watermark must find every slot below it written, and the watermark never goes back.
#[cfg(all(test, loom))]
#[allow(unsafe_code)] // loom's UnsafeCell is how the model lets loom see the data accesses
#[allow(clippy::unwrap_used)] // a test: a panicked model thread fails it
mod loom_model {
    use loom::cell::UnsafeCell;
    use loom::sync::Arc;

    use super::Watermark;
    use crate::mutants;

    struct File {
        slots: [UnsafeCell<u64>; 2],
        end: Watermark,
    }

    // SAFETY (test only): slots are written only below the published end by the single writer,
    // and read only below it; loom checks exactly that this is race-free.
    unsafe impl Sync for File {}

    fn model() {
        loom::model(|| {
            let file =
                Arc::new(File { slots: [UnsafeCell::new(0), UnsafeCell::new(0)], end: Watermark::new(0) });
            let writer = {
                let file = Arc::clone(&file);
                loom::thread::spawn(move || {
                    for (i, slot) in file.slots.iter().enumerate() {
                        slot.with_mut(|p| unsafe { *p = i as u64 + 1 });
                        file.end.publish(i as u64 + 1);
                    }
                })
            };
            let first = file.end.load();
            for (i, slot) in file.slots.iter().enumerate().take(first as usize) {
                assert_eq!(slot.with(|p| unsafe { *p }), i as u64 + 1, "read an unpublished byte");
            }
            let second = file.end.load();
            assert!(second >= first, "the end went back");
            writer.join().unwrap();
        });
    }

    #[test]
    fn loom_reader_never_sees_unpublished_bytes() {
        let _serial = mutants::exclusive();
        model();
    }

    // The mutant: `cargo xtask loom` runs it in its own process and expects it to fail.
    #[test]
    #[ignore = "mutant: run by `cargo xtask loom`, must fail with \"Causality violation\""]
    fn loom_mutant_publish_relaxed() {
        mutants::set(Some(mutants::PUBLISH_RELAXED));
        model();
    }
}
