//! The offsets checkpoint of a task: the commit point of DESIGN §5.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use cairn_fs::Fs;
use serde::{Deserialize, Serialize};

use crate::durable::{DurableFile, DurableOptions};
use crate::error::{Error, Result};

/// Where a task's last commit left off: what it resumes from after a crash.
///
/// Written only after the task's changelogs and outputs were fsynced up to the offsets it
/// records (DESIGN §5), so that state, outputs and inputs come back from the same commit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Checkpoint {
    /// Increases with every checkpoint of the task.
    pub id: u64,
    /// The next input offset to process, per input partition.
    pub inputs: BTreeMap<String, u64>,
    /// The changelog end offset, per store.
    pub changelogs: BTreeMap<String, u64>,
    /// The end offset, per local output log.
    pub outputs: BTreeMap<String, u64>,
    /// When the checkpoint was made, in milliseconds since the Unix epoch.
    pub created_ms: i64,
}

impl Checkpoint {
    /// An empty checkpoint with the given id, stamped with the current time.
    pub fn new(id: u64) -> Checkpoint {
        let created_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Checkpoint { id, created_ms, ..Checkpoint::default() }
    }

    /// The same checkpoint with the next offset of input partition `name`.
    pub fn input(mut self, name: impl Into<String>, next_offset: u64) -> Checkpoint {
        self.inputs.insert(name.into(), next_offset);
        self
    }

    /// The same checkpoint with the changelog end offset of store `name`.
    pub fn changelog(mut self, name: impl Into<String>, end_offset: u64) -> Checkpoint {
        self.changelogs.insert(name.into(), end_offset);
        self
    }

    /// The same checkpoint with the end offset of output log `name`.
    pub fn output(mut self, name: impl Into<String>, end_offset: u64) -> Checkpoint {
        self.outputs.insert(name.into(), end_offset);
        self
    }
}

/// Options of a [`CheckpointFile`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckpointOptions {
    /// Keep the previous checkpoint as `<name>.prev`, for inspection. Default `false`.
    pub keep_previous: bool,
}

/// The checkpoint file of a task: a [`DurableFile`] of [`Checkpoint`]s whose ids only grow.
///
/// ```
/// use std::sync::Arc;
/// use cairn_checkpoint::{Checkpoint, CheckpointFile, CheckpointOptions};
/// use cairn_fs::{Fs, SimFs};
///
/// # fn main() -> Result<(), cairn_checkpoint::Error> {
/// let fs = SimFs::new(1);
/// fs.create_dir_all("/task".as_ref()).unwrap();
/// let mut file = CheckpointFile::open(Arc::new(fs), "/task/checkpoint", CheckpointOptions::default())?;
/// assert!(file.current().is_none()); // a new task starts from nothing
/// file.write(&Checkpoint::new(1).input("clicks/0", 1200).changelog("counts", 88))?;
/// assert!(file.write(&Checkpoint::new(1)).is_err()); // ids must grow
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct CheckpointFile {
    file: DurableFile<Checkpoint>,
    current: Option<Checkpoint>,
}

impl CheckpointFile {
    /// The kind tag of checkpoint files (docs/format.md).
    pub const KIND: [u8; 4] = *b"CKPT";
    /// The schema version of the checkpoint payload.
    pub const VERSION: u32 = 1;

    /// Opens the checkpoint file at `path` (its directory must exist) and reads the current
    /// checkpoint, if any.
    ///
    /// # Errors
    /// [`Error::Corruption`] if the file exists but is damaged: a damaged checkpoint is never
    /// taken for "no checkpoint"; [`Error::Io`] and the other errors of [`DurableFile::read`].
    pub fn open(
        fs: Arc<dyn Fs>,
        path: impl AsRef<Path>,
        options: CheckpointOptions,
    ) -> Result<CheckpointFile> {
        let mut durable = DurableOptions::new(Self::KIND, Self::VERSION);
        durable.keep_previous = options.keep_previous;
        let file = DurableFile::open(fs, path, durable)?;
        let current = file.read()?;
        Ok(CheckpointFile { file, current })
    }

    /// The checkpoint in the file at `path`, or `None` if there is no file, read without
    /// changing anything (no leftover temporary file is removed), as inspection tools need.
    ///
    /// # Errors
    /// [`Error::Corruption`] naming the file and byte position if it is damaged, and the other
    /// errors of [`DurableFile::read`].
    pub fn read_from(fs: Arc<dyn Fs>, path: impl AsRef<Path>) -> Result<Option<Checkpoint>> {
        DurableFile::read_from(fs, path, DurableOptions::new(Self::KIND, Self::VERSION))
    }

    /// The last checkpoint read or written, or `None` if there is none yet.
    pub fn current(&self) -> Option<&Checkpoint> {
        self.current.as_ref()
    }

    /// The previous checkpoint, kept with [`CheckpointOptions::keep_previous`].
    ///
    /// # Errors
    /// As for [`DurableFile::read`].
    pub fn previous(&self) -> Result<Option<Checkpoint>> {
        self.file.read_previous()
    }

    /// Writes `checkpoint` durably: the commit point of a task.
    ///
    /// # Errors
    /// [`Error::NotNewer`] if its id is not greater than the current one's (nothing is written,
    /// the handle stays usable); the errors of [`DurableFile::write`], which poison the handle.
    pub fn write(&mut self, checkpoint: &Checkpoint) -> Result<()> {
        if let Some(current) = &self.current
            && checkpoint.id <= current.id
        {
            return Err(Error::NotNewer { last: current.id, given: checkpoint.id });
        }
        self.file.write(checkpoint)?;
        self.current = Some(checkpoint.clone());
        Ok(())
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Whether a failed write poisoned the handle.
    pub fn is_poisoned(&self) -> bool {
        self.file.is_poisoned()
    }
}
