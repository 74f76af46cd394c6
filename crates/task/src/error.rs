//! The runtime's errors: each names the task and the input, store or output involved.

use std::path::PathBuf;
use std::sync::Arc;

/// A result of the task runtime.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error of the user's task code, returned from [`StreamTask`](crate::StreamTask) methods.
pub type TaskError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong in the runtime.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An input partition's log directory does not exist.
    InputMissing {
        /// The input's name.
        input: String,
        /// Its directory.
        path: PathBuf,
    },
    /// The checkpoint resumes an input past the input's end: the input lost messages the task
    /// had already consumed, or the checkpoint belongs to another input.
    CheckpointPastInputEnd {
        /// The input's name.
        input: String,
        /// The checkpointed next offset.
        offset: u64,
        /// The input's end offset.
        end: u64,
    },
    /// A checkpoint exists but does not name this input, store or output: it belongs to a task
    /// of another shape. Nothing is guessed.
    NotInCheckpoint {
        /// `"input"`, `"store"` or `"output"`.
        kind: &'static str,
        /// The name missing from the checkpoint.
        name: String,
        /// The checkpoint file.
        checkpoint: PathBuf,
    },
    /// A checkpointed output end lies past the output log's end: committed output was lost.
    OutputBehindCheckpoint {
        /// The output's name.
        output: String,
        /// The checkpointed end offset.
        offset: u64,
        /// The output log's end offset.
        end: u64,
    },
    /// The task asked for a store it was not configured with.
    UnknownStore {
        /// The name asked for.
        name: String,
    },
    /// The task sent to an output it was not configured with.
    UnknownOutput {
        /// The name asked for.
        name: String,
    },
    /// Two inputs, stores or outputs share a name, or another setting is invalid.
    InvalidConfig(String),
    /// A store failed.
    Store {
        /// The store's name.
        store: String,
        /// What failed.
        source: cairn_store::Error,
    },
    /// An input or output log failed.
    Log {
        /// `"input"` or `"output"`.
        kind: &'static str,
        /// Its name.
        name: String,
        /// What failed.
        source: cairn_changelog::Error,
    },
    /// Reading or writing the checkpoint failed.
    Checkpoint(cairn_checkpoint::Error),
    /// Creating the task's directories failed.
    Io {
        /// The operation.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The task's own code failed (in `init`, `process`, `window` or `close`).
    Task {
        /// The task's name.
        task: String,
        /// The task's error.
        source: TaskError,
    },
    /// An earlier error on a durability path (or in the task's code) stopped the task; reopen
    /// it to recover from its last checkpoint.
    Poisoned(Arc<str>),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::InputMissing { input, path } => {
                write!(f, "input {input}: no log directory at {}", path.display())
            }
            Error::CheckpointPastInputEnd { input, offset, end } => write!(
                f,
                "input {input}: the checkpoint resumes at offset {offset}, past the input's end {end}"
            ),
            Error::NotInCheckpoint { kind, name, checkpoint } => write!(
                f,
                "{kind} {name} is not in the checkpoint {}: it belongs to a task of another shape",
                checkpoint.display()
            ),
            Error::OutputBehindCheckpoint { output, offset, end } => write!(
                f,
                "output {output}: the checkpoint ends it at offset {offset}, but the log ends at {end}"
            ),
            Error::UnknownStore { name } => write!(f, "no store named {name:?}"),
            Error::UnknownOutput { name } => write!(f, "no output named {name:?}"),
            Error::InvalidConfig(what) => write!(f, "invalid task configuration: {what}"),
            Error::Store { store, source } => write!(f, "store {store}: {source}"),
            Error::Log { kind, name, source } => write!(f, "{kind} {name}: {source}"),
            Error::Checkpoint(source) => write!(f, "checkpoint: {source}"),
            Error::Io { op, path, source } => write!(f, "{op} {}: {source}", path.display()),
            Error::Task { task, source } => write!(f, "task {task}: {source}"),
            Error::Poisoned(cause) => write!(f, "the task stopped after an earlier error: {cause}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Store { source, .. } => Some(source),
            Error::Log { source, .. } => Some(source),
            Error::Checkpoint(source) => Some(source),
            Error::Io { source, .. } => Some(source),
            Error::Task { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}

impl From<cairn_checkpoint::Error> for Error {
    fn from(source: cairn_checkpoint::Error) -> Error {
        Error::Checkpoint(source)
    }
}
