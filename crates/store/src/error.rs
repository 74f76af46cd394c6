//! The store's error type.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// The result type of the store.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error from the store.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The changelog failed: damage (a typed corruption naming file and byte), an I/O error,
    /// or a poisoned log.
    Changelog(cairn_changelog::Error),
    /// Writing a snapshot failed.
    Snapshot(cairn_checkpoint::Error),
    /// A file-system operation of the store itself (its directories, snapshot clean-up) failed.
    Io {
        /// The operation, such as `"remove"` or `"sync_dir"`.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Keys must not be empty.
    EmptyKey,
    /// A key longer than [`StoreOptions::key_bytes_max`](crate::StoreOptions::key_bytes_max).
    KeyTooLarge {
        /// The key's length.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// A value longer than [`StoreOptions::value_bytes_max`](crate::StoreOptions::value_bytes_max).
    ValueTooLarge {
        /// The value's length.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// A range whose start lies after its end.
    InvalidRange,
    /// [`Store::open_at`](crate::Store::open_at) asked for an offset past the changelog's end.
    OffsetPastEnd {
        /// The offset asked for.
        offset: u64,
        /// The changelog's end.
        end: u64,
    },
    /// A typed key or value could not be encoded or decoded.
    Codec {
        /// What failed: `"encode key"`, `"decode value"`, ...
        what: &'static str,
        /// The codec's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Options that cannot work.
    InvalidOptions {
        /// The option at fault.
        option: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// An earlier error on a durability path poisoned this store; reopen it (P6).
    Poisoned {
        /// The error that poisoned the store.
        cause: Arc<Error>,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io { op, path: path.into(), source }
    }

    /// A copy of the error, kept as the cause of a poisoned store.
    pub(crate) fn duplicate(&self) -> Error {
        match self {
            Error::Poisoned { cause } => Error::Poisoned { cause: Arc::clone(cause) },
            other => {
                Error::Io { op: "earlier", path: PathBuf::new(), source: io::Error::other(other.to_string()) }
            }
        }
    }
}

impl From<cairn_changelog::Error> for Error {
    fn from(e: cairn_changelog::Error) -> Error {
        Error::Changelog(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Changelog(e) => write!(f, "changelog: {e}"),
            Error::Snapshot(e) => write!(f, "snapshot: {e}"),
            Error::Io { op, path, source } => write!(f, "{op} {}: {source}", path.display()),
            Error::EmptyKey => f.write_str("empty key"),
            Error::KeyTooLarge { bytes, max } => write!(f, "key of {bytes} bytes exceeds the limit of {max}"),
            Error::ValueTooLarge { bytes, max } => {
                write!(f, "value of {bytes} bytes exceeds the limit of {max}")
            }
            Error::InvalidRange => f.write_str("range start lies after its end"),
            Error::OffsetPastEnd { offset, end } => {
                write!(f, "offset {offset} is past the changelog's end {end}")
            }
            Error::Codec { what, source } => write!(f, "cannot {what}: {source}"),
            Error::InvalidOptions { option, reason } => write!(f, "invalid option {option}: {reason}"),
            Error::Poisoned { cause } => write!(f, "store poisoned by an earlier error ({cause}); reopen it"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Changelog(e) => Some(e),
            Error::Snapshot(e) => Some(e),
            Error::Io { source, .. } => Some(source),
            Error::Codec { source, .. } => Some(source.as_ref()),
            Error::Poisoned { cause } => Some(cause.as_ref()),
            _ => None,
        }
    }
}
