//! Inputs and outputs: the [`Source`] and [`Sink`] traits, and the built-in ones over
//! `cairn-changelog` logs (a partition is a log directory).

use std::path::Path;
use std::sync::Arc;

use cairn_changelog::{Log, LogOptions, Reader, Record};
use cairn_fs::Fs;

use crate::error::{Error, Result};

/// One input message, borrowed from the input for the duration of a
/// [`StreamTask::process`](crate::StreamTask::process) call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    /// The input (partition) it came from, as named in the task's configuration.
    pub input: &'a str,
    /// Its offset in that input.
    pub offset: u64,
    /// Its key.
    pub key: &'a [u8],
    /// Its value; `None` for a tombstone (a changelog delete).
    pub value: Option<&'a [u8]>,
    /// Milliseconds since the Unix epoch, as the producer stamped it.
    pub timestamp_ms: i64,
}

/// A message as a [`Source`] hands it to the runtime (the input's name is added by the runtime).
#[derive(Clone, Copy, Debug)]
pub struct SourceMessage<'a> {
    /// Its offset in the source.
    pub offset: u64,
    /// Its key.
    pub key: &'a [u8],
    /// Its value, or `None` for a tombstone.
    pub value: Option<&'a [u8]>,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
}

/// What a [`Source::poll`] callback tells the source after a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Hand over the next message.
    Continue,
    /// Stop after this one: [`Source::poll`] returns; the next poll resumes after it.
    Stop,
}

/// An input partition: a sequence of messages at increasing offsets, read from a position.
///
/// The runtime checkpoints the offset after the last message it processed and, after a crash,
/// [`seek`](Source::seek)s back to it: a source must deliver the same messages again from
/// there (its own durability is its business).
pub trait Source: Send {
    /// Moves the source so that the next message delivered is the first at or after `offset`.
    ///
    /// # Errors
    /// [`Error::CheckpointPastInputEnd`] if `offset` lies past the source's end; the source's own
    /// errors.
    fn seek(&mut self, offset: u64) -> Result<()>;

    /// The offset after the last message available now.
    fn end_offset(&self) -> u64;

    /// Hands up to `max` messages, in offset order, to `deliver`; returns how many it handed
    /// (0 when nothing is available now). Stops early when `deliver` returns [`Flow::Stop`]
    /// (that message counts as handed) or an error (that message does not; the next poll
    /// hands it again).
    ///
    /// # Errors
    /// The source's read errors; the first error of `deliver`.
    fn poll(
        &mut self,
        max: usize,
        deliver: &mut dyn FnMut(SourceMessage<'_>) -> Result<Flow>,
    ) -> Result<usize>;
}

/// An output: messages appended in order, made durable on demand, and cut back on recovery.
pub trait Sink: Send {
    /// Appends a message (durable only after [`Sink::sync`]).
    ///
    /// # Errors
    /// The sink's write errors.
    fn send(&mut self, key: &[u8], value: &[u8], timestamp_ms: i64) -> Result<()>;

    /// Writes what was sent towards the device without making it durable, so that the
    /// [`Sink::sync`] that follows has little left to do. A commit calls it on every output
    /// (and flushes every store) before its first fsync, so that the devices' writes overlap.
    /// Default: nothing.
    ///
    /// # Errors
    /// The sink's write errors.
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }

    /// Makes everything sent durable; returns the end offset, which the checkpoint records.
    ///
    /// # Errors
    /// The sink's write or sync errors.
    fn sync(&mut self) -> Result<u64>;

    /// The end offset: the offset the next message sent will get.
    fn end_offset(&self) -> u64;

    /// Discards everything at and after `offset` (recovery to a checkpoint).
    ///
    /// # Errors
    /// [`Error::OutputBehindCheckpoint`] if the sink ends before `offset`; the sink's errors.
    fn truncate(&mut self, offset: u64) -> Result<()>;

    /// The `cairn-changelog` log underneath, if the sink is one (for reading the output while
    /// the task holds it open). Default `None`.
    fn as_log(&self) -> Option<&Log> {
        None
    }
}

/// The built-in input: a `cairn-changelog` log read from a position.
pub struct LogSource {
    name: String,
    log: Log,
    reader: Reader,
    /// The next offset to deliver.
    position: u64,
    /// The reader stopped inside a batch: seek it to `position` before reading on.
    reseek: bool,
}

impl std::fmt::Debug for LogSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogSource").field("name", &self.name).field("position", &self.position).finish()
    }
}

impl LogSource {
    /// Opens the log in `dir` (which must exist: a missing partition is an error, not a new
    /// empty one) as the input `name`, positioned at its start.
    ///
    /// # Errors
    /// [`Error::InputMissing`] if `dir` does not exist; [`Error::Log`] if the log fails to open.
    pub fn open(fs: Arc<dyn Fs>, name: &str, dir: &Path, options: LogOptions) -> Result<LogSource> {
        let io = |op, source| Error::Io { op, path: dir.to_path_buf(), source };
        if !fs.exists(dir).map_err(|e| io("look for", e))? {
            return Err(Error::InputMissing { input: name.to_string(), path: dir.to_path_buf() });
        }
        let log = Log::open(fs, dir, options).map_err(log_error("input", name))?;
        let position = log.start_offset();
        let reader = log.reader(position).map_err(log_error("input", name))?;
        Ok(LogSource { name: name.to_string(), log, reader, position, reseek: false })
    }

    /// The log underneath.
    pub fn log(&self) -> &Log {
        &self.log
    }
}

impl Source for LogSource {
    fn seek(&mut self, offset: u64) -> Result<()> {
        let end = self.log.end_offset();
        if offset > end {
            return Err(Error::CheckpointPastInputEnd { input: self.name.clone(), offset, end });
        }
        self.reader.seek(offset).map_err(log_error("input", &self.name))?;
        self.position = offset;
        self.reseek = false;
        Ok(())
    }

    fn end_offset(&self) -> u64 {
        self.log.end_offset()
    }

    fn poll(
        &mut self,
        max: usize,
        deliver: &mut dyn FnMut(SourceMessage<'_>) -> Result<Flow>,
    ) -> Result<usize> {
        if self.reseek {
            self.reader.seek(self.position).map_err(log_error("input", &self.name))?;
            self.reseek = false;
        }
        let mut delivered = 0;
        while delivered < max {
            let batch = match self.reader.next_batch() {
                Ok(Some(batch)) => batch,
                Ok(None) => break,
                Err(e) => return Err(log_error("input", &self.name)(e)),
            };
            for record in batch.records() {
                let record = record.map_err(log_error("input", &self.name))?;
                if record.offset < self.position {
                    continue;
                }
                if delivered == max {
                    // The rest of this batch is read again after a seek.
                    self.reseek = true;
                    return Ok(delivered);
                }
                let flow = deliver(SourceMessage {
                    offset: record.offset,
                    key: record.key,
                    value: record.value,
                    timestamp_ms: record.timestamp_ms,
                });
                let flow = match flow {
                    Ok(flow) => flow,
                    Err(e) => {
                        self.reseek = true;
                        return Err(e);
                    }
                };
                self.position = record.offset + 1;
                delivered += 1;
                if flow == Flow::Stop {
                    self.reseek = true;
                    return Ok(delivered);
                }
            }
        }
        Ok(delivered)
    }
}

/// The built-in output: a `cairn-changelog` log under the task's directory.
pub struct LogSink {
    name: String,
    log: Log,
}

impl std::fmt::Debug for LogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogSink").field("name", &self.name).field("end", &self.log.end_offset()).finish()
    }
}

impl LogSink {
    /// Opens (or creates) the log in `dir` as the output `name`.
    ///
    /// # Errors
    /// [`Error::Log`] if the log fails to open.
    pub fn open(fs: Arc<dyn Fs>, name: &str, dir: &Path, options: LogOptions) -> Result<LogSink> {
        let log = Log::open(fs, dir, options).map_err(|source| Error::Log {
            kind: "output",
            name: name.to_string(),
            source,
        })?;
        Ok(LogSink { name: name.to_string(), log })
    }

    /// The log underneath (readers of the output should stop at the checkpointed end: what
    /// lies after it is not committed and is cut on recovery).
    pub fn log(&self) -> &Log {
        &self.log
    }
}

impl Sink for LogSink {
    fn send(&mut self, key: &[u8], value: &[u8], timestamp_ms: i64) -> Result<()> {
        self.log
            .append(Record::new(key, Some(value), timestamp_ms))
            .map_err(log_error("output", &self.name))?;
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.log.flush().map_err(log_error("output", &self.name))?;
        Ok(())
    }

    fn sync(&mut self) -> Result<u64> {
        self.log.sync().map_err(log_error("output", &self.name))
    }

    fn end_offset(&self) -> u64 {
        self.log.end_offset()
    }

    fn truncate(&mut self, offset: u64) -> Result<()> {
        let end = self.log.end_offset();
        if offset > end {
            return Err(Error::OutputBehindCheckpoint { output: self.name.clone(), offset, end });
        }
        self.log.truncate(offset).map_err(log_error("output", &self.name))
    }

    fn as_log(&self) -> Option<&Log> {
        Some(&self.log)
    }
}

/// The error of the input or output log `name` (`kind` is `"input"` or `"output"`).
fn log_error<'a>(kind: &'static str, name: &'a str) -> impl Fn(cairn_changelog::Error) -> Error + 'a {
    move |source| Error::Log { kind, name: name.to_string(), source }
}
