//! The runtime: many tasks, each on its own thread, stopped together.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use crate::error::{Error, Result};
use crate::metrics::TaskMetrics;
use crate::task::{Stopped, StreamTask, TaskRunner};

/// How a task's thread ended.
#[derive(Debug)]
#[non_exhaustive]
pub struct TaskOutcome {
    /// The task's name.
    pub name: String,
    /// Why it stopped, or the error that stopped it (its work since the last checkpoint is
    /// then recovered on the next open).
    pub result: Result<Stopped>,
    /// Its metrics at the end.
    pub metrics: TaskMetrics,
}

/// Runs tasks on threads, one thread per task, until they finish or [`Runtime::stop`] is
/// called; every task commits as it stops.
#[derive(Debug, Default)]
pub struct Runtime {
    stop: Arc<AtomicBool>,
    threads: Vec<(String, JoinHandle<TaskOutcome>)>,
}

impl Runtime {
    /// A runtime with no tasks.
    pub fn new() -> Runtime {
        Runtime::default()
    }

    /// The flag that stops every task (for a Ctrl-C handler: raise it, and [`Runtime::join`]
    /// returns once every task has made its final commit).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stop)
    }

    /// Starts `runner` on its own thread. With `until_end`, the task also stops when all its
    /// inputs are consumed to their end.
    ///
    /// # Errors
    /// [`Error::Io`] if the thread cannot be started.
    pub fn spawn<T: StreamTask + 'static>(
        &mut self,
        mut runner: TaskRunner<T>,
        until_end: bool,
    ) -> Result<()> {
        let stop = Arc::clone(&self.stop);
        let name = runner.name().to_string();
        let thread = std::thread::Builder::new()
            .name(format!("cairn-task-{name}"))
            .spawn(move || {
                let result = if until_end { runner.run_to_end(&stop) } else { runner.run(&stop) };
                TaskOutcome { name: runner.name().to_string(), result, metrics: runner.metrics().clone() }
            })
            .map_err(|source| Error::Io { op: "spawn a thread for", path: name.clone().into(), source })?;
        self.threads.push((name, thread));
        Ok(())
    }

    /// Asks every task to stop (each commits and returns).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Waits for every task's thread; a thread that panicked is reported as a poisoned task.
    pub fn join(self) -> Vec<TaskOutcome> {
        self.threads
            .into_iter()
            .map(|(name, thread)| {
                thread.join().unwrap_or_else(|_| TaskOutcome {
                    name,
                    result: Err(Error::Poisoned(Arc::from("the task's thread panicked"))),
                    metrics: TaskMetrics::default(),
                })
            })
            .collect()
    }
}
