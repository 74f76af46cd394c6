//! The task runtime of cairn: stateful stream tasks over partitioned inputs, committed durably
//! and recovered exactly (DESIGN §5, P8).
//!
//! A [`StreamTask`] processes [`Message`]s from its inputs (by default `cairn-changelog` logs,
//! one directory per partition; any [`Source`]), keeps state in named `cairn-store` stores and
//! sends messages to named outputs (by default logs under the task's directory; any
//! [`Sink`]). A [`TaskRunner`] drives one task: on open it recovers from the task's
//! checkpoint, then it processes messages and commits every
//! [`TaskConfig::commit_interval`] or [`TaskConfig::commit_every_messages`], on request, and at
//! a clean stop. A [`Runtime`] runs many tasks on threads.
//!
//! The commit, in order: every store's pending writes flushed into its changelog and every
//! output's into its log (write-back started), every changelog fsynced, every output fsynced;
//! the checkpoint (input offsets, changelog ends, output ends) written by fsync-and-rename: the
//! commit point; snapshots when due (written off the task's thread); the stores' compaction
//! limits raised to the checkpoint. Recovery reads the checkpoint, cuts
//! every changelog and output back to it, restores the stores, and resumes every input at its
//! checkpointed offset: the stores, outputs and input positions after a crash are exactly those
//! of the last commit, so every input message is reflected once in state and outputs.
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::AtomicBool;
//! use cairn_changelog::{Log, Record};
//! use cairn_fs::{Fs, SimFs};
//! use cairn_store::StoreOptions;
//! use cairn_task::{Context, Message, StreamTask, TaskConfig, TaskError, TaskRunner};
//!
//! /// Counts messages per key.
//! struct Count;
//!
//! impl StreamTask for Count {
//!     fn process(&mut self, m: &Message<'_>, ctx: &mut Context<'_>) -> Result<(), TaskError> {
//!         let mut counts = ctx.typed_store::<Vec<u8>, u64>("counts")?;
//!         let n = counts.get(&m.key.to_vec())?.unwrap_or(0) + 1;
//!         counts.put(&m.key.to_vec(), &n)?;
//!         Ok(())
//!     }
//! }
//!
//! let fs: Arc<dyn Fs> = Arc::new(SimFs::new(1));
//! let input = Log::open(Arc::clone(&fs), "/in/0", Default::default())?;
//! for key in [b"a", b"b", b"a"] {
//!     input.append(Record::put(key, b""))?;
//! }
//! input.close()?;
//! drop(input);
//! let config = TaskConfig::new("count", "/task").input_log("in-0", "/in/0").store("counts", StoreOptions::default());
//! let mut runner = TaskRunner::open(fs, config, Count)?;
//! runner.run_to_end(&AtomicBool::new(false))?;
//! assert_eq!(runner.positions()["in-0"], 3);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod config;
mod error;
mod io;
mod metrics;
#[doc(hidden)]
pub mod mutants;
mod runtime;
mod task;

pub use config::{InputKind, OutputKind, TaskConfig};
pub use error::{Error, Result, TaskError};
pub use io::{Flow, LogSink, LogSource, Message, Sink, Source, SourceMessage};
pub use metrics::TaskMetrics;
pub use runtime::{Runtime, TaskOutcome};
pub use task::{Context, Stopped, StreamTask, TaskRunner};
