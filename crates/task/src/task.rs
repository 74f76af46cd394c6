//! The task API ([`StreamTask`], [`Context`]) and the runner of one task: recovery on open, the
//! processing loop, and the commit protocol (DESIGN §5).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cairn_checkpoint::{Checkpoint, CheckpointFile, CheckpointOptions};
use cairn_fs::Fs;
use cairn_store::{PendingSnapshot, RestoreSource, Store, TypedStore};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::{InputKind, OutputKind, TaskConfig};
use crate::error::{Error, Result, TaskError};
use crate::io::{Flow, LogSink, LogSource, Message, Sink, Source};
use crate::metrics::TaskMetrics;

/// A stateful stream task: the user's code. The runtime calls [`init`](StreamTask::init) once
/// after recovery, [`process`](StreamTask::process) for every input message in each input's
/// offset order, [`window`](StreamTask::window) at the configured interval, and
/// [`close`](StreamTask::close) before the final commit of a clean shutdown.
///
/// What a task writes to its stores and outputs while processing a message is committed
/// together with that message's input offset, or not at all: after a crash the task resumes
/// from its last checkpoint with the stores and outputs of that checkpoint, and processes the
/// messages after it again. A task's effects outside its stores and outputs are not covered.
pub trait StreamTask: Send {
    /// Called once after recovery, before the first message.
    ///
    /// # Errors
    /// Any error stops the task before it processes anything.
    fn init(&mut self, _ctx: &mut Context<'_>) -> Result<(), TaskError> {
        Ok(())
    }

    /// Processes one message.
    ///
    /// # Errors
    /// Any error stops the task without committing; reopening it resumes from the last
    /// checkpoint.
    fn process(&mut self, message: &Message<'_>, ctx: &mut Context<'_>) -> Result<(), TaskError>;

    /// Called every [`TaskConfig::window_interval`], between messages.
    ///
    /// # Errors
    /// As for [`StreamTask::process`].
    fn window(&mut self, _ctx: &mut Context<'_>) -> Result<(), TaskError> {
        Ok(())
    }

    /// Called at a clean shutdown, before the final commit.
    ///
    /// # Errors
    /// The final commit is not made.
    fn close(&mut self, _ctx: &mut Context<'_>) -> Result<(), TaskError> {
        Ok(())
    }
}

/// What a task's code can reach while it runs: its stores, its outputs, and requests to the
/// runtime.
pub struct Context<'a> {
    stores: &'a mut BTreeMap<String, Store>,
    outputs: &'a mut BTreeMap<String, Box<dyn Sink>>,
    requests: &'a mut Requests,
    metrics: &'a mut TaskMetrics,
    now_ms: i64,
}

#[derive(Debug, Default)]
struct Requests {
    commit: bool,
    shutdown: bool,
}

impl Context<'_> {
    /// The store named `name`. The runtime commits and snapshots it: a task should not call
    /// its `sync`, `write_snapshot` or `close` itself (a sync is harmless; a snapshot written
    /// beside the runtime's wastes work).
    ///
    /// # Errors
    /// [`Error::UnknownStore`] if the task has no such store.
    pub fn store(&mut self, name: &str) -> Result<&mut Store> {
        self.stores.get_mut(name).ok_or_else(|| Error::UnknownStore { name: name.to_string() })
    }

    /// The store named `name`, with typed keys and values (`cairn_store::TypedStore`'s
    /// encoding).
    ///
    /// # Errors
    /// [`Error::UnknownStore`] if the task has no such store.
    pub fn typed_store<K, V>(&mut self, name: &str) -> Result<TypedStore<K, V, &mut Store>>
    where
        K: Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
    {
        Ok(TypedStore::new(self.store(name)?))
    }

    /// Sends a message to the output named `output`, stamped with the time of the message
    /// being processed (or of the call, outside `process`).
    ///
    /// # Errors
    /// [`Error::UnknownOutput`] if the task has no such output; the output's write errors.
    pub fn send(&mut self, output: &str, key: &[u8], value: &[u8]) -> Result<()> {
        let sink =
            self.outputs.get_mut(output).ok_or_else(|| Error::UnknownOutput { name: output.to_string() })?;
        sink.send(key, value, self.now_ms)?;
        self.metrics.output_messages += 1;
        self.metrics.output_bytes += (key.len() + value.len()) as u64;
        Ok(())
    }

    /// Asks for a commit after the current message.
    pub fn commit(&mut self) {
        self.requests.commit = true;
    }

    /// Asks the runtime to stop this task (with a final commit) after the current message.
    pub fn shutdown(&mut self) {
        self.requests.shutdown = true;
    }
}

struct Input {
    name: String,
    source: Box<dyn Source>,
    /// The next offset to process.
    next: u64,
}

/// Why [`TaskRunner::run`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stopped {
    /// The stop flag was raised.
    Signalled,
    /// The task called [`Context::shutdown`].
    TaskRequested,
    /// Every input was consumed to its end (only with [`TaskRunner::run_to_end`]).
    InputsExhausted,
}

/// One task: its inputs, stores, outputs and checkpoint. [`TaskRunner::open`] recovers it;
/// [`TaskRunner::run`] processes and commits until told to stop.
pub struct TaskRunner<T> {
    name: String,
    task: T,
    inputs: Vec<Input>,
    stores: BTreeMap<String, Store>,
    outputs: BTreeMap<String, Box<dyn Sink>>,
    checkpoint: CheckpointFile,
    requests: Requests,
    metrics: TaskMetrics,
    commit_interval: Duration,
    commit_every_messages: Option<u64>,
    window_interval: Option<Duration>,
    snapshot_every_commits: u64,
    poll_batch: usize,
    since_commit: u64,
    last_commit: Instant,
    last_window: Instant,
    /// Changelog bytes at the last commit, per store (for the bytes-appended metric).
    changelog_bytes: BTreeMap<String, u64>,
    background_snapshots: bool,
    /// The snapshots being written on a background thread (at most one batch at a time).
    snapshots: Option<SnapshotJob>,
    poison: Option<Arc<str>>,
}

impl<T> Drop for TaskRunner<T> {
    /// Waits for snapshots still being written: none outlives its runner (a reopened store
    /// must not meet a writer of the old one in its directory). Their error, if any, is lost
    /// here: [`TaskRunner::finish_snapshots`] reports it.
    fn drop(&mut self) {
        if let Some(job) = self.snapshots.take() {
            let _ = job.join();
        }
    }
}

/// Snapshot files being written off the task's thread: what each store's
/// [`Store::prepare_snapshot`] encoded at one commit; the thread returns each store's snapshot
/// offset.
type SnapshotJob = std::thread::JoinHandle<Result<Vec<(String, u64)>>>;

/// Writes each store's encoded snapshot; returns each store's snapshot offset.
fn write_snapshots(pending: Vec<(String, PendingSnapshot)>) -> Result<Vec<(String, u64)>> {
    pending
        .into_iter()
        .map(|(name, snapshot)| {
            let offset = snapshot.offset();
            snapshot.write().map_err(|source| Error::Store { store: name.clone(), source })?;
            Ok((name, offset))
        })
        .collect()
}

impl<T> std::fmt::Debug for TaskRunner<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskRunner")
            .field("name", &self.name)
            .field("positions", &self.positions())
            .field("poisoned", &self.poison.is_some())
            .finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn check_names<'a>(kind: &str, names: impl Iterator<Item = &'a String>) -> Result<()> {
    let mut seen = std::collections::BTreeSet::new();
    for name in names {
        if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
            return Err(Error::InvalidConfig(format!("{kind} name {name:?} is not a plain name")));
        }
        if !seen.insert(name) {
            return Err(Error::InvalidConfig(format!("two {kind}s named {name:?}")));
        }
    }
    Ok(())
}

impl<T> TaskRunner<T> {
    /// The next offset to process of every input, by name.
    pub fn positions(&self) -> BTreeMap<String, u64> {
        self.inputs.iter().map(|i| (i.name.clone(), i.next)).collect()
    }

    /// Messages available but not yet processed, per input (end offset minus position).
    pub fn lag(&self) -> BTreeMap<String, u64> {
        self.inputs.iter().map(|i| (i.name.clone(), i.source.end_offset().saturating_sub(i.next))).collect()
    }

    /// The task's metrics so far.
    pub fn metrics(&self) -> &TaskMetrics {
        &self.metrics
    }

    /// The task's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The store named `name`, for inspection.
    pub fn store(&self, name: &str) -> Option<&Store> {
        self.stores.get(name)
    }

    /// The output named `name`, for inspection.
    pub fn output(&self, name: &str) -> Option<&dyn Sink> {
        self.outputs.get(name).map(|s| s.as_ref())
    }

    /// The last checkpoint written or recovered.
    pub fn checkpoint(&self) -> Option<&Checkpoint> {
        self.checkpoint.current()
    }

    /// The checkpoint file's path.
    pub fn checkpoint_path(&self) -> PathBuf {
        self.checkpoint.path().to_path_buf()
    }

    /// The task itself.
    pub fn task(&self) -> &T {
        &self.task
    }

    /// Whether an error stopped the runner.
    pub fn is_poisoned(&self) -> bool {
        self.poison.is_some()
    }
}

impl<T: StreamTask> TaskRunner<T> {
    /// Opens the task in `config.dir` and recovers it (DESIGN §5): reads the checkpoint
    /// (none: start from nothing), truncates every store's changelog and every output log to
    /// the checkpoint, restores the stores (snapshot plus tail), positions every input at its
    /// checkpointed offset, and calls [`StreamTask::init`].
    ///
    /// # Errors
    /// [`Error::Checkpoint`] if the checkpoint is damaged (never taken for "no checkpoint");
    /// [`Error::NotInCheckpoint`] if it lacks one of the task's inputs, stores or outputs;
    /// [`Error::InputMissing`], [`Error::CheckpointPastInputEnd`],
    /// [`Error::OutputBehindCheckpoint`]; [`Error::Store`] (for instance a changelog that ends
    /// before its checkpointed offset); [`Error::Task`] if `init` fails;
    /// [`Error::InvalidConfig`] for duplicate or unusable names.
    pub fn open(fs: Arc<dyn Fs>, config: TaskConfig, task: T) -> Result<TaskRunner<T>> {
        let started = Instant::now();
        check_names("input", config.inputs.iter().map(|(n, _)| n))?;
        check_names("store", config.stores.iter().map(|(n, _)| n))?;
        check_names("output", config.outputs.iter().map(|(n, _)| n))?;
        if config.poll_batch == 0 {
            return Err(Error::InvalidConfig("poll_batch must be at least 1".into()));
        }
        let dir = config.dir.clone();
        cairn_fs::create_dir_durably(fs.as_ref(), &dir).map_err(|e| Error::Io {
            op: e.op,
            path: e.path,
            source: e.source,
        })?;
        let checkpoint_path = dir.join("checkpoint");
        let checkpoint =
            CheckpointFile::open(Arc::clone(&fs), &checkpoint_path, CheckpointOptions::default())?;
        let current = checkpoint.current().cloned();
        // The checkpointed offset of one input, store or output (0 with no checkpoint).
        let offset_of =
            |kind: &'static str, map: Option<&BTreeMap<String, u64>>, name: &str| -> Result<u64> {
                match map {
                    None => Ok(0),
                    Some(map) => map.get(name).copied().ok_or_else(|| Error::NotInCheckpoint {
                        kind,
                        name: name.to_string(),
                        checkpoint: checkpoint_path.clone(),
                    }),
                }
            };

        let mut outputs: BTreeMap<String, Box<dyn Sink>> = BTreeMap::new();
        for (name, kind) in config.outputs {
            let offset = offset_of("output", current.as_ref().map(|c| &c.outputs), &name)?;
            let mut sink: Box<dyn Sink> = match kind {
                OutputKind::Log(options) => {
                    let path = dir.join("outputs").join(&name);
                    Box::new(LogSink::open(Arc::clone(&fs), &name, &path, *options)?)
                }
                OutputKind::Custom(sink) => sink,
            };
            sink.truncate(offset)?;
            outputs.insert(name, sink);
        }

        let mut stores = BTreeMap::new();
        let mut metrics = TaskMetrics::default();
        for (name, options) in config.stores {
            let offset = offset_of("store", current.as_ref().map(|c| &c.changelogs), &name)?;
            let path = dir.join("stores").join(&name);
            let store = Store::open_at(Arc::clone(&fs), &path, options, offset)
                .map_err(|source| Error::Store { store: name.clone(), source })?;
            // Compaction may only rewrite what the checkpoint covers, and, with snapshots on,
            // what the newest snapshot covers (see `TaskRunner::snapshots_written`).
            store.set_compaction_limit(match &store.restore_report().source {
                _ if config.snapshot_every_commits == 0 => offset,
                RestoreSource::Snapshot { offset: snapshot, .. } => (*snapshot).min(offset),
                _ => 0,
            });
            metrics.records_replayed += store.restore_report().records_replayed;
            stores.insert(name, store);
        }

        let mut inputs = Vec::new();
        for (name, kind) in config.inputs {
            let offset = offset_of("input", current.as_ref().map(|c| &c.inputs), &name)?;
            let mut source: Box<dyn Source> = match kind {
                InputKind::Log(path, options) => {
                    Box::new(LogSource::open(Arc::clone(&fs), &name, &path, *options)?)
                }
                InputKind::Custom(source) => source,
            };
            source.seek(offset)?;
            inputs.push(Input { name, source, next: offset });
        }

        metrics.restore_time = started.elapsed();
        metrics.recovered_checkpoint = current.as_ref().map(|c| c.id);
        let changelog_bytes = stores.iter().map(|(n, s)| (n.clone(), changelog_bytes(s))).collect();
        let now = Instant::now();
        let mut runner = TaskRunner {
            name: config.name,
            task,
            inputs,
            stores,
            outputs,
            checkpoint,
            requests: Requests::default(),
            metrics,
            commit_interval: config.commit_interval,
            commit_every_messages: config.commit_every_messages,
            window_interval: config.window_interval,
            snapshot_every_commits: config.snapshot_every_commits,
            poll_batch: config.poll_batch,
            since_commit: 0,
            last_commit: now,
            last_window: now,
            changelog_bytes,
            background_snapshots: config.background_snapshots,
            snapshots: None,
            poison: None,
        };
        runner.call_task(|task, ctx| task.init(ctx))?;
        Ok(runner)
    }

    /// Runs until `stop` is raised or the task asks to shut down, then closes the task and
    /// commits. Commits on the way as configured. Idle inputs are polled every millisecond.
    ///
    /// # Errors
    /// The first error of processing or committing; the runner is then poisoned and the
    /// stores and outputs hold uncommitted work: reopen to recover.
    pub fn run(&mut self, stop: &AtomicBool) -> Result<Stopped> {
        self.run_inner(stop, false)
    }

    /// As [`TaskRunner::run`], and also stops (closing and committing) once every input is
    /// consumed to its end.
    ///
    /// # Errors
    /// As for [`TaskRunner::run`].
    pub fn run_to_end(&mut self, stop: &AtomicBool) -> Result<Stopped> {
        self.run_inner(stop, true)
    }

    fn run_inner(&mut self, stop: &AtomicBool, until_end: bool) -> Result<Stopped> {
        self.check_usable()?;
        let stopped = loop {
            if stop.load(Ordering::Relaxed) {
                break Stopped::Signalled;
            }
            let processed = self.poll_once()?;
            if let Some(interval) = self.window_interval
                && self.last_window.elapsed() >= interval
            {
                self.last_window = Instant::now();
                self.call_task(|task, ctx| task.window(ctx))?;
            }
            if self.commit_due() {
                self.commit()?;
            }
            if self.requests.shutdown {
                break Stopped::TaskRequested;
            }
            if processed == 0 {
                if until_end && self.inputs.iter().all(|i| i.next >= i.source.end_offset()) {
                    break Stopped::InputsExhausted;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        self.call_task(|task, ctx| task.close(ctx))?;
        self.commit()?;
        self.finish_snapshots()?;
        Ok(stopped)
    }

    /// Waits for the snapshots being written in the background, if any. [`TaskRunner::run`]
    /// and [`TaskRunner::run_to_end`] call it before they return, and each commit joins a
    /// finished batch before it writes anything; a runner dropped with a batch in flight waits
    /// for it but cannot report its error: call this first to learn of it.
    ///
    /// # Errors
    /// The first error of writing them ([`Error::Store`]), or [`Error::Io`] if the thread
    /// panicked; the runner is then poisoned.
    pub fn finish_snapshots(&mut self) -> Result<()> {
        let Some(job) = self.snapshots.take() else { return Ok(()) };
        let result = match job.join() {
            Ok(result) => result,
            Err(_) => Err(Error::Io {
                op: "write snapshots",
                path: self.checkpoint_path().with_file_name("stores"),
                source: std::io::Error::other("the snapshot thread panicked"),
            }),
        };
        let written = self.poison_on_error(result)?;
        self.snapshots_written(&written);
        Ok(())
    }

    /// With snapshots on, compaction may rewrite a store's changelog only below its newest
    /// written snapshot: past it, compaction could drop records the snapshot points to, and
    /// restore would have to skip the snapshot and replay everything.
    fn snapshots_written(&mut self, written: &[(String, u64)]) {
        for (name, offset) in written {
            if let Some(store) = self.stores.get(name) {
                store.set_compaction_limit(*offset);
            }
        }
        self.metrics.snapshots += 1;
    }

    fn commit_due(&self) -> bool {
        self.requests.commit
            || self.commit_every_messages.is_some_and(|n| self.since_commit >= n)
            || (self.since_commit > 0 && self.last_commit.elapsed() >= self.commit_interval)
    }

    /// Takes up to one poll batch from each input in turn and processes it; returns how many
    /// messages were processed.
    ///
    /// # Errors
    /// The first error of an input or of the task's `process`; the runner is then poisoned.
    pub fn poll_once(&mut self) -> Result<usize> {
        self.check_usable()?;
        let result = self.poll_inputs();
        self.poison_on_error(result)
    }

    fn poll_inputs(&mut self) -> Result<usize> {
        let TaskRunner {
            name,
            task,
            inputs,
            stores,
            outputs,
            requests,
            metrics,
            poll_batch,
            commit_every_messages,
            since_commit,
            ..
        } = self;
        let mut total = 0;
        for input in inputs.iter_mut() {
            // Stop at the message that makes a commit due, so that it happens right after it.
            let mut max = *poll_batch;
            if let Some(every) = *commit_every_messages {
                max = max.min(every.saturating_sub(*since_commit).max(1) as usize);
            }
            let Input { name: input_name, source, next } = input;
            let delivered = source.poll(max, &mut |m| {
                let message = Message {
                    input: input_name,
                    offset: m.offset,
                    key: m.key,
                    value: m.value,
                    timestamp_ms: m.timestamp_ms,
                };
                let mut ctx = Context { stores, outputs, requests, metrics, now_ms: m.timestamp_ms };
                task.process(&message, &mut ctx)
                    .map_err(|source| Error::Task { task: name.clone(), source })?;
                *next = m.offset + 1;
                metrics.messages += 1;
                // Stop right after a message that asked for a commit or a shutdown.
                Ok(if requests.commit || requests.shutdown { Flow::Stop } else { Flow::Continue })
            })?;
            *since_commit += delivered as u64;
            total += delivered;
            if requests.shutdown || requests.commit {
                break;
            }
            if commit_every_messages.is_some_and(|n| *since_commit >= n) {
                break;
            }
        }
        Ok(total)
    }

    /// Commits, in DESIGN §5's order: every store and output flushed (their write-back
    /// started), every store's changelog fsynced, then every output fsynced, then the
    /// checkpoint written (the commit point), then snapshots when due (encoded here, written on
    /// a thread of their own once the previous ones are finished), then each store's compaction
    /// limit raised to its checkpointed offset (with snapshots on, to its newest written
    /// snapshot's offset instead). Returns the checkpoint written.
    ///
    /// # Errors
    /// [`Error::Store`], [`Error::Log`] or [`Error::Checkpoint`], including a failure of the
    /// previous snapshots' writing; any of them poisons the runner (reopen to recover from the
    /// last checkpoint).
    pub fn commit(&mut self) -> Result<Checkpoint> {
        self.check_usable()?;
        let started = Instant::now();
        let result = self.commit_steps();
        let checkpoint = self.poison_on_error(result)?;
        self.metrics.record_commit(started.elapsed());
        self.since_commit = 0;
        self.last_commit = Instant::now();
        self.requests.commit = false;
        Ok(checkpoint)
    }

    fn commit_steps(&mut self) -> Result<Checkpoint> {
        let id = self.checkpoint.current().map_or(1, |c| c.id + 1);
        let snapshot_due = self.snapshot_every_commits > 0 && id.is_multiple_of(self.snapshot_every_commits);
        // Earlier snapshots: a failure fails this commit before it writes anything; a commit
        // due a snapshot waits for the previous one.
        if snapshot_due || self.snapshots.as_ref().is_some_and(std::thread::JoinHandle::is_finished) {
            self.finish_snapshots()?;
        }
        let mut checkpoint = Checkpoint::new(id);
        checkpoint.created_ms = now_ms();
        let checkpoint_first = crate::mutants::active(crate::mutants::CHECKPOINT_BEFORE_CHANGELOG_SYNC);
        // 1. Every store's pending writes into its changelog, and every output's into its
        // files, with the write-back started: the fsyncs that follow overlap on the device.
        for (name, store) in &mut self.stores {
            store.flush().map_err(|source| Error::Store { store: name.clone(), source })?;
        }
        for sink in self.outputs.values_mut() {
            sink.flush()?;
        }
        cairn_fs::crash_point(cairn_fs::crash_point::TASK_FLUSHED);
        // 2. The changelogs, fsynced.
        for (name, store) in &mut self.stores {
            let end = if checkpoint_first { store.flush() } else { store.sync() }
                .map_err(|source| Error::Store { store: name.clone(), source })?;
            checkpoint.changelogs.insert(name.clone(), end);
        }
        // 3. The outputs, fsynced.
        for (name, sink) in &mut self.outputs {
            checkpoint.outputs.insert(name.clone(), sink.sync()?);
        }
        for input in &self.inputs {
            checkpoint.inputs.insert(input.name.clone(), input.next);
        }
        // 4. The commit point.
        self.checkpoint.write(&checkpoint)?;
        cairn_fs::crash_point(cairn_fs::crash_point::TASK_CHECKPOINTED);
        if checkpoint_first {
            for (name, store) in &mut self.stores {
                store.sync().map_err(|source| Error::Store { store: name.clone(), source })?;
            }
        }
        // 5. Snapshots, when due: encoded here, written on a thread of their own, so that the
        // next commits do not wait for their I/O.
        if snapshot_due {
            let mut pending = Vec::new();
            for (name, store) in &mut self.stores {
                let snapshot = store
                    .prepare_snapshot()
                    .map_err(|source| Error::Store { store: name.clone(), source })?;
                pending.push((name.clone(), snapshot));
            }
            if self.background_snapshots {
                let job = std::thread::Builder::new()
                    .name(format!("cairn-snapshot-{}", self.name))
                    .spawn(move || write_snapshots(pending))
                    .map_err(|source| Error::Io {
                        op: "spawn the snapshot thread",
                        path: self.checkpoint_path().with_file_name("stores"),
                        source,
                    })?;
                self.snapshots = Some(job);
            } else {
                let written = write_snapshots(pending)?;
                self.snapshots_written(&written);
            }
        }
        // 6. Compaction may now rewrite what this checkpoint covers (with snapshots on, what
        // the newest written snapshot covers: `snapshots_written`).
        for (name, store) in &self.stores {
            if let Some(end) = checkpoint.changelogs.get(name)
                && self.snapshot_every_commits == 0
            {
                store.set_compaction_limit(*end);
            }
            let bytes = changelog_bytes(store);
            let before = self.changelog_bytes.insert(name.clone(), bytes).unwrap_or(0);
            self.metrics.changelog_bytes += bytes.saturating_sub(before);
        }
        self.metrics.last_checkpoint = Some(id);
        Ok(checkpoint)
    }

    fn call_task(&mut self, f: impl FnOnce(&mut T, &mut Context<'_>) -> Result<(), TaskError>) -> Result<()> {
        self.check_usable()?;
        let mut ctx = Context {
            stores: &mut self.stores,
            outputs: &mut self.outputs,
            requests: &mut self.requests,
            metrics: &mut self.metrics,
            now_ms: now_ms(),
        };
        let result =
            f(&mut self.task, &mut ctx).map_err(|source| Error::Task { task: self.name.clone(), source });
        self.poison_on_error(result)
    }

    fn poison_on_error<R>(&mut self, result: Result<R>) -> Result<R> {
        if let Err(e) = &result
            && self.poison.is_none()
        {
            self.poison = Some(Arc::from(e.to_string()));
        }
        result
    }

    fn check_usable(&self) -> Result<()> {
        match &self.poison {
            Some(cause) => Err(Error::Poisoned(Arc::clone(cause))),
            None => Ok(()),
        }
    }
}

fn changelog_bytes(store: &Store) -> u64 {
    store.changelog().segment_set().infos().iter().map(|i| i.bytes).sum()
}
