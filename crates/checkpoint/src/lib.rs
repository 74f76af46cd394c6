//! Small durable files replaced atomically, and the offsets checkpoint of a cairn task.
//!
//! A [`DurableFile`] holds one serde value, framed with a magic, a payload kind and schema
//! version, the payload length and a CRC32C (docs/format.md, "Durable file"). Writing follows
//! DESIGN §3 to the letter: a uniquely named temporary file created with `create_new` in the
//! same directory, `sync_all`, rename over the target, fsync of the directory; so after a crash
//! the file is the old value or the new one, whole. Reading tells "no file" (`Ok(None)`) apart
//! from every kind of damage (a typed [`Error::Corruption`] naming the file and the byte
//! position), so a damaged file is never taken for "nothing".
//!
//! [`CheckpointFile`] keeps a task's [`Checkpoint`]: the commit point of DESIGN §5. Store
//! snapshots and other small metadata use [`DurableFile`] directly with their own kind tag.

mod checkpoint;
pub mod codec;
mod durable;
mod error;
mod frame;
#[doc(hidden)]
pub mod mutants;

pub use checkpoint::{Checkpoint, CheckpointFile, CheckpointOptions};
pub use durable::{DurableFile, DurableOptions};
pub use error::{CorruptionKind, Error, Result};
