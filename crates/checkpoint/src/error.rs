//! The checkpoint crate's error type.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// A specialized `Result` for durable files.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What is wrong with a durable file that exists.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CorruptionKind {
    /// The file is empty: never "no value" (an empty file is what a crash can leave of a file
    /// written without the atomic protocol, and taking it for "nothing" loses the state).
    Empty,
    /// The file ends before its header or before the length its header declares.
    Truncated {
        /// Bytes the file needs.
        needed: u64,
        /// Bytes it has.
        available: u64,
    },
    /// The file does not start with the durable-file magic.
    BadMagic {
        /// The four bytes found.
        found: [u8; 4],
    },
    /// The framing version or flags are not ones this build reads.
    UnsupportedFrame {
        /// The version found.
        version: u16,
        /// The flags found.
        flags: u16,
    },
    /// The file holds another kind of payload (say, a snapshot where a checkpoint belongs).
    WrongKind {
        /// The kind this handle reads.
        expected: [u8; 4],
        /// The kind in the file.
        found: [u8; 4],
    },
    /// The payload's schema version is not the one this handle reads (a newer writer, or an
    /// older format needing migration).
    UnsupportedVersion {
        /// The version this handle reads.
        expected: u32,
        /// The version in the file.
        found: u32,
    },
    /// The checksum does not match the bytes.
    Checksum {
        /// The checksum stored at the end of the file.
        stored: u32,
        /// The checksum of the bytes as read.
        computed: u32,
    },
    /// Bytes follow the checksum.
    TrailingBytes {
        /// How many.
        bytes: u64,
    },
    /// The payload passed its checksum but does not decode as the expected type.
    Decode,
}

impl fmt::Display for CorruptionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorruptionKind::Empty => f.write_str("empty file"),
            CorruptionKind::Truncated { needed, available } => {
                write!(f, "file needs {needed} bytes but has {available}")
            }
            CorruptionKind::BadMagic { found } => write!(f, "not a durable file (magic {found:02x?})"),
            CorruptionKind::UnsupportedFrame { version, flags } => {
                write!(f, "unknown framing (version {version}, flags {flags:#06x})")
            }
            CorruptionKind::WrongKind { expected, found } => write!(
                f,
                "holds a {} payload, expected {}",
                String::from_utf8_lossy(found),
                String::from_utf8_lossy(expected)
            ),
            CorruptionKind::UnsupportedVersion { expected, found } => {
                write!(f, "payload version {found}, this build reads version {expected}")
            }
            CorruptionKind::Checksum { stored, computed } => {
                write!(f, "checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")
            }
            CorruptionKind::TrailingBytes { bytes } => write!(f, "{bytes} bytes after the checksum"),
            CorruptionKind::Decode => f.write_str("payload does not decode"),
        }
    }
}

/// An error from a durable file or the checkpoint.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A file-system operation failed.
    Io {
        /// The operation, such as `"rename"` or `"sync_dir"`.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The file exists but is not a valid durable file of the expected kind.
    Corruption {
        /// The file.
        file: PathBuf,
        /// The byte position where the problem is.
        position: u64,
        /// What is wrong.
        kind: CorruptionKind,
        /// The decoder's error, for [`CorruptionKind::Decode`].
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The file is larger than the handle's limit
    /// ([`DurableOptions::max_bytes`](crate::DurableOptions::max_bytes)); it is not read.
    TooLarge {
        /// The file.
        file: PathBuf,
        /// Its length.
        bytes: u64,
        /// The limit.
        max: u64,
    },
    /// The value could not be encoded (the serializer refused it).
    Encode {
        /// The file it was for.
        file: PathBuf,
        /// The encoder's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An earlier write failed; the handle refuses everything until it is reopened (P6).
    Poisoned {
        /// The error that poisoned the handle.
        cause: Arc<Error>,
    },
    /// A checkpoint whose id is not greater than the last one written.
    NotNewer {
        /// The id of the last checkpoint.
        last: u64,
        /// The id given.
        given: u64,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io { op, path: path.into(), source }
    }

    pub(crate) fn corruption(file: impl Into<PathBuf>, position: u64, kind: CorruptionKind) -> Error {
        Error::Corruption { file: file.into(), position, kind, source: None }
    }

    /// The corruption kind, if this is a [`Error::Corruption`].
    pub fn corruption_kind(&self) -> Option<&CorruptionKind> {
        match self {
            Error::Corruption { kind, .. } => Some(kind),
            _ => None,
        }
    }

    /// A copy kept as the cause of a poisoned handle (sources are kept as their messages).
    pub(crate) fn duplicate(&self) -> Error {
        let message =
            |e: &dyn std::error::Error| -> Box<dyn std::error::Error + Send + Sync> { e.to_string().into() };
        match self {
            Error::Io { op, path, source } => Error::Io {
                op,
                path: path.clone(),
                source: io::Error::new(source.kind(), source.to_string()),
            },
            Error::Corruption { file, position, kind, source } => Error::Corruption {
                file: file.clone(),
                position: *position,
                kind: kind.clone(),
                source: source.as_deref().map(|s| message(s)),
            },
            Error::TooLarge { file, bytes, max } => {
                Error::TooLarge { file: file.clone(), bytes: *bytes, max: *max }
            }
            Error::Encode { file, source } => {
                Error::Encode { file: file.clone(), source: message(source.as_ref()) }
            }
            Error::Poisoned { cause } => Error::Poisoned { cause: Arc::clone(cause) },
            Error::NotNewer { last, given } => Error::NotNewer { last: *last, given: *given },
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { op, path, source } => write!(f, "{op} {}: {source}", path.display()),
            Error::Corruption { file, position, kind, .. } => {
                write!(f, "corruption in {} at byte {position}: {kind}", file.display())
            }
            Error::TooLarge { file, bytes, max } => {
                write!(f, "{} has {bytes} bytes, more than the limit of {max}", file.display())
            }
            Error::Encode { file, source } => {
                write!(f, "cannot encode the value for {}: {source}", file.display())
            }
            Error::Poisoned { cause } => {
                write!(f, "handle poisoned by an earlier error ({cause}); reopen it")
            }
            Error::NotNewer { last, given } => {
                write!(f, "checkpoint id {given} is not greater than the last one, {last}")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Corruption { source, .. } => source.as_deref().map(|s| s as _),
            Error::Encode { source, .. } => Some(source.as_ref()),
            Error::Poisoned { cause } => Some(cause.as_ref()),
            _ => None,
        }
    }
}
