//! A task's configuration: its directory, inputs, stores, outputs and commit policy.

use std::path::PathBuf;
use std::time::Duration;

use cairn_changelog::LogOptions;
use cairn_store::StoreOptions;

use crate::io::{Sink, Source};

/// Where an input's messages come from.
pub enum InputKind {
    /// A `cairn-changelog` log in this directory (it must exist).
    Log(PathBuf, Box<LogOptions>),
    /// Any other source.
    Custom(Box<dyn Source>),
}

/// Where an output's messages go.
pub enum OutputKind {
    /// A `cairn-changelog` log at `<task dir>/outputs/<name>`.
    Log(Box<LogOptions>),
    /// Any other sink.
    Custom(Box<dyn Sink>),
}

/// How one task runs. Built with [`TaskConfig::new`] and the `input_*`, `store`, `output_*`
/// methods; the other fields are public.
#[non_exhaustive]
pub struct TaskConfig {
    /// The task's name (in errors and metrics).
    pub name: String,
    /// The task's own directory: `checkpoint`, `stores/<name>`, `outputs/<name>`.
    pub dir: PathBuf,
    /// The inputs, by name.
    pub inputs: Vec<(String, InputKind)>,
    /// The stores, by name.
    pub stores: Vec<(String, StoreOptions)>,
    /// The outputs, by name.
    pub outputs: Vec<(String, OutputKind)>,
    /// Commit at least this often while messages arrive. Default 1 s.
    pub commit_interval: Duration,
    /// Commit after this many messages since the last commit, if set. Default `None`.
    pub commit_every_messages: Option<u64>,
    /// Call [`StreamTask::window`](crate::StreamTask::window) this often, if set. Default `None`.
    pub window_interval: Option<Duration>,
    /// Snapshot every store every this many commits (0: never). Default 10. The snapshot is
    /// encoded during the commit and written on a thread of its own, so that the commit does
    /// not wait for its file I/O ([`TaskRunner::finish_snapshots`](crate::TaskRunner::finish_snapshots)).
    pub snapshot_every_commits: u64,
    /// Write snapshots on a thread of their own (`true`, the default) or on the task's thread
    /// during the commit (`false`: slower commits, but every file operation happens in one
    /// order, which deterministic crash tests on the simulator need).
    pub background_snapshots: bool,
    /// Messages taken from one input before the next input's turn. Default 1024.
    pub poll_batch: usize,
}

impl std::fmt::Debug for TaskConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskConfig")
            .field("name", &self.name)
            .field("dir", &self.dir)
            .field("inputs", &self.inputs.iter().map(|(n, _)| n).collect::<Vec<_>>())
            .field("stores", &self.stores.iter().map(|(n, _)| n).collect::<Vec<_>>())
            .field("outputs", &self.outputs.iter().map(|(n, _)| n).collect::<Vec<_>>())
            .field("commit_interval", &self.commit_interval)
            .field("commit_every_messages", &self.commit_every_messages)
            .finish_non_exhaustive()
    }
}

impl TaskConfig {
    /// A task named `name` keeping its state in `dir`, with no inputs, stores or outputs yet.
    pub fn new(name: impl Into<String>, dir: impl Into<PathBuf>) -> TaskConfig {
        TaskConfig {
            name: name.into(),
            dir: dir.into(),
            inputs: Vec::new(),
            stores: Vec::new(),
            outputs: Vec::new(),
            commit_interval: Duration::from_secs(1),
            commit_every_messages: None,
            window_interval: None,
            snapshot_every_commits: 10,
            background_snapshots: true,
            poll_batch: 1024,
        }
    }

    /// Adds an input read from the `cairn-changelog` log in `dir`.
    pub fn input_log(mut self, name: impl Into<String>, dir: impl Into<PathBuf>) -> TaskConfig {
        self.inputs.push((name.into(), InputKind::Log(dir.into(), Box::default())));
        self
    }

    /// Adds an input from any [`Source`].
    pub fn input_source(mut self, name: impl Into<String>, source: Box<dyn Source>) -> TaskConfig {
        self.inputs.push((name.into(), InputKind::Custom(source)));
        self
    }

    /// Adds a store (at `<dir>/stores/<name>`).
    pub fn store(mut self, name: impl Into<String>, options: StoreOptions) -> TaskConfig {
        self.stores.push((name.into(), options));
        self
    }

    /// Adds an output log (at `<dir>/outputs/<name>`), with the log's default options but
    /// write-back started every [`WRITEBACK_BYTES`](cairn_changelog::WRITEBACK_BYTES), which
    /// keeps the commit's fsync short.
    pub fn output_log(mut self, name: impl Into<String>) -> TaskConfig {
        let mut options = LogOptions::default();
        options.writeback_bytes = cairn_changelog::WRITEBACK_BYTES;
        self.outputs.push((name.into(), OutputKind::Log(Box::new(options))));
        self
    }

    /// Adds an output to any [`Sink`].
    pub fn output_sink(mut self, name: impl Into<String>, sink: Box<dyn Sink>) -> TaskConfig {
        self.outputs.push((name.into(), OutputKind::Custom(sink)));
        self
    }

    /// Sets [`TaskConfig::commit_every_messages`].
    pub fn commit_every(mut self, messages: u64) -> TaskConfig {
        self.commit_every_messages = Some(messages);
        self
    }
}
