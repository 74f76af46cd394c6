//! Helpers of cairn's loom models (compiled only under `--cfg loom`): model threads with a stack
//! deep enough for a log's recovery, and a model runner that starts the model on such a thread.

use std::sync::Arc;

/// The stack of a model thread: loom's default is too small for opening a log.
pub const STACK_BYTES: usize = 4 << 20;

/// The two tests of a loom model: `$test` explores `$model` with no mutant on (holding the
/// mutant switch's lock), and `$mutant_test`, ignored, explores it with `$mutant` switched on.
/// `cargo xtask loom` runs the mutant test in a process of its own and requires it to fail with
/// the message its table names; `$reason` says so to a reader of the test list.
#[macro_export]
macro_rules! loom_model_tests {
    ($model:ident: $test:ident, $mutant_test:ident = $mutant:expr, $reason:literal) => {
        #[test]
        fn $test() {
            let _serial = $crate::mutants::exclusive();
            $model();
        }

        #[test]
        #[ignore = $reason]
        fn $mutant_test() {
            $crate::mutants::set(Some($mutant));
            $model();
        }
    };
}

/// Spawns a model thread with [`STACK_BYTES`] of stack.
///
/// # Panics
/// If loom cannot spawn the thread (more than the model's `max_threads`).
#[allow(clippy::expect_used)] // only in loom models, where a panic fails the model
pub fn spawn<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> loom::thread::JoinHandle<T> {
    loom::thread::Builder::new().stack_size(STACK_BYTES).spawn(f).expect("a loom model thread")
}

/// Explores every interleaving of `model` that loom's bounds allow (`LOOM_MAX_PREEMPTIONS`), the
/// model itself running on a thread spawned by [`spawn`] (loom's first thread has a small
/// stack), with up to 5 threads in all.
///
/// # Panics
/// When the model panics in some interleaving, or loom finds a deadlock or a data race.
pub fn check(model: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.max_threads = 5;
    let model = Arc::new(model);
    builder.check(move || {
        let model = Arc::clone(&model);
        if spawn(move || model()).join().is_err() {
            panic!("a model thread panicked");
        }
    });
}
