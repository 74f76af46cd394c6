//! The background maintenance thread of a log: compaction when the dirty share of the log below
//! the limit passes a threshold (or on request), and retention, every interval.
//!
//! A failed pass is reported (status, listener) and tried again at the next interval; its new
//! files are removed, so nothing is left half-done. Only an error that poisons the log (a
//! durability-path failure) stops the thread, as it stops every other use of the log. Closing or
//! dropping the log stops the thread, cancelling a pass in progress between two segments.
//!
//! Stopping is the one handshake here: the stop flag is raised, then the thread is woken while
//! its lock is held, so that a thread between checking the flag and waiting cannot miss the
//! wake-up (loom model `loom_close_stops_and_joins_the_maintenance_thread`, in `log_loom`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::mutants;
use crate::sync::thread::{self, JoinHandle};
use crate::sync::{AtomicBool, Condvar, Mutex, Ordering, lock};

use crate::compaction::{self, CompactOptions, CompactionListener, CompactionReport};
use crate::error::{Error, Result};
use crate::log::Shared;
use crate::retention::{self, Retention, RetentionReport};

/// Background maintenance of a log, started by [`Log::open`](crate::Log::open) when
/// [`LogOptions::maintenance`](crate::LogOptions::maintenance) is set.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Maintenance {
    /// How often the thread looks at the log. Default 10 s.
    pub interval: Duration,
    /// Compaction by the thread; `None`: none.
    pub compaction: Option<CompactionPolicy>,
    /// Retention by the thread; `None`: none.
    pub retention: Option<Retention>,
    /// Hears of every pass and of the records each moved.
    pub listener: Option<Listener>,
}

impl Default for Maintenance {
    fn default() -> Maintenance {
        Maintenance {
            interval: Duration::from_secs(10),
            compaction: Some(CompactionPolicy::default()),
            retention: None,
            listener: None,
        }
    }
}

/// When the maintenance thread compacts, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompactionPolicy {
    /// Compact when the dirty bytes below the limit make up at least this percentage of the
    /// bytes below it (and there are some), or when asked with
    /// [`Log::request_compaction`](crate::Log::request_compaction). Default 50.
    pub dirty_percent_min: u8,
    /// Where the limit comes from. Default [`CompactionLimit::Explicit`].
    pub limit: CompactionLimit,
    /// How each pass runs.
    pub options: CompactOptions,
}

impl Default for CompactionPolicy {
    fn default() -> CompactionPolicy {
        CompactionPolicy {
            dirty_percent_min: 50,
            limit: CompactionLimit::Explicit,
            options: CompactOptions::default(),
        }
    }
}

/// The limit offset of background compaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CompactionLimit {
    /// The last value given to [`Log::set_compaction_limit`](crate::Log::set_compaction_limit)
    /// (0 until then): what a task runtime uses, passing its last checkpointed offset.
    Explicit,
    /// The durable end: for a log that is never rolled back.
    DurableEnd,
}

/// A shared [`CompactionListener`], as options hold it (two are equal if they are the same
/// listener).
#[derive(Clone)]
pub struct Listener(pub Arc<dyn CompactionListener>);

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Listener(..)")
    }
}

impl PartialEq for Listener {
    fn eq(&self, other: &Listener) -> bool {
        std::ptr::addr_eq(Arc::as_ptr(&self.0), Arc::as_ptr(&other.0))
    }
}

impl Eq for Listener {}

/// What the maintenance thread has done so far.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct MaintenanceStatus {
    /// Whether the thread runs (it stops when the log closes or is poisoned).
    pub running: bool,
    /// Compaction passes that finished.
    pub compactions: u64,
    /// Retention passes that finished.
    pub retentions: u64,
    /// Passes that failed (each tried again at the next interval).
    pub failures: u64,
    /// The report of the last compaction pass that finished.
    pub last_compaction: Option<CompactionReport>,
    /// The report of the last retention pass that removed something.
    pub last_retention: Option<RetentionReport>,
    /// The error of the last failed pass.
    pub last_error: Option<Arc<Error>>,
}

/// The state the thread shares with the log.
#[derive(Debug, Default)]
pub(crate) struct Control {
    state: Mutex<State>,
    wake: Condvar,
    stop: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    limit: u64,
    requested: bool,
    status: MaintenanceStatus,
}

impl Control {
    pub(crate) fn set_limit(&self, limit: u64) {
        lock(&self.state).limit = limit;
    }

    pub(crate) fn limit(&self) -> u64 {
        lock(&self.state).limit
    }

    pub(crate) fn request(&self) {
        lock(&self.state).requested = true;
        self.wake.notify_all();
    }

    pub(crate) fn status(&self) -> MaintenanceStatus {
        lock(&self.state).status.clone()
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

/// The running thread, owned by the log handle.
#[derive(Debug)]
pub(crate) struct Worker {
    control: Arc<Control>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Starts the thread.
    ///
    /// # Errors
    /// [`Error::Io`] if the thread cannot be spawned.
    pub(crate) fn start(shared: Arc<Shared>, control: Arc<Control>, config: Maintenance) -> Result<Worker> {
        lock(&control.state).status.running = true;
        let thread_control = Arc::clone(&control);
        let dir = shared.dir.clone();
        let builder = thread::Builder::new().name("cairn-maintenance".into());
        #[cfg(loom)]
        let builder = builder.stack_size(cairn_fs::loom_support::STACK_BYTES);
        let thread = builder
            .spawn(move || {
                let _stopped = Stopped(&thread_control);
                run(&shared, &thread_control, &config);
            })
            .map_err(|e| Error::io("spawn", &dir, e))?;
        Ok(Worker { control, thread: Some(thread) })
    }

    /// Stops the thread and waits for it (unless called from the thread itself, by a listener).
    pub(crate) fn stop(&mut self) {
        self.control.stop.store(true, Ordering::Release);
        if mutants::active(mutants::STOP_WITHOUT_LOCK) {
            // The mutant: a wake-up that a thread about to wait can miss.
            self.control.wake.notify_all();
        } else {
            let _state = lock(&self.control.state);
            self.control.wake.notify_all();
        }
        if let Some(thread) = self.thread.take() {
            if thread.thread().id() == thread::current().id() {
                return;
            }
            let _ = thread.join();
        }
    }
}

/// Marks the thread stopped however it ends, a panic included.
struct Stopped<'a>(&'a Control);

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        lock(&self.0.state).status.running = false;
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(shared: &Shared, control: &Control, config: &Maintenance) {
    let listener = config.listener.as_ref().map(|l| l.0.as_ref());
    let mut next = Instant::now() + config.interval;
    loop {
        let requested = {
            let mut state = lock(&control.state);
            loop {
                if control.stopping() {
                    state.status.running = false;
                    return;
                }
                let now = Instant::now();
                if state.requested || now >= next {
                    break;
                }
                state = match control.wake.wait_timeout(state, next - now) {
                    Ok((state, _)) => state,
                    Err(poisoned) => poisoned.into_inner().0,
                };
            }
            std::mem::take(&mut state.requested)
        };
        next = Instant::now() + config.interval;
        if let Some(policy) = &config.compaction {
            let limit = match policy.limit {
                CompactionLimit::Explicit => lock(&control.state).limit,
                CompactionLimit::DurableEnd => shared.commit.durable(),
            };
            let backlog = compaction::backlog(shared, limit, &policy.options);
            let dirty_share_due = backlog.dirty_bytes > 0
                && backlog.dirty_bytes * 100
                    >= u64::from(policy.dirty_percent_min) * (backlog.dirty_bytes + backlog.clean_bytes);
            let due = dirty_share_due || backlog.expired_segments > 0;
            if requested || due {
                let result =
                    compaction::run(shared, limit, &policy.options, listener, &|| control.stopping());
                if !record(shared, control, listener, result.map(Done::Compaction)) {
                    return;
                }
            }
        }
        if let Some(retention) = &config.retention {
            let result = retention::run(shared, retention);
            if !record(shared, control, listener, result.map(Done::Retention)) {
                return;
            }
        }
    }
}

enum Done {
    Compaction(CompactionReport),
    Retention(RetentionReport),
}

/// Records a pass's outcome; returns whether the thread goes on.
fn record(
    shared: &Shared,
    control: &Control,
    listener: Option<&dyn CompactionListener>,
    result: Result<Done>,
) -> bool {
    match result {
        Ok(Done::Compaction(report)) => {
            if let Some(listener) = listener {
                listener.pass_finished(&report);
            }
            let mut state = lock(&control.state);
            state.status.compactions += 1;
            state.status.last_compaction = Some(report);
            true
        }
        Ok(Done::Retention(report)) => {
            let mut state = lock(&control.state);
            state.status.retentions += 1;
            if report.segments_removed > 0 {
                state.status.last_retention = Some(report);
            }
            true
        }
        Err(_) if control.stopping() => {
            lock(&control.state).status.running = false;
            false
        }
        Err(error) => {
            if let Some(listener) = listener {
                listener.pass_failed(&error);
            }
            let goes_on = !shared.is_poisoned() && !matches!(error, Error::Closed | Error::Poisoned { .. });
            let mut state = lock(&control.state);
            state.status.failures += 1;
            state.status.last_error = Some(Arc::new(error));
            state.status.running = goes_on;
            goes_on
        }
    }
}
