//! The changelog's error type.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// A specialized `Result` for changelog operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What is wrong with bytes that should hold a batch, an index or a segment sequence.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CorruptionKind {
    /// The batch does not start with the batch magic (zeros, stale or foreign bytes).
    BadMagic {
        /// The four bytes found, little-endian.
        found: u32,
    },
    /// The batch header names a format version or flags this build does not know.
    UnsupportedFormat {
        /// The version field.
        version: u16,
        /// The flags field.
        flags: u16,
    },
    /// The batch length is smaller than a header or larger than the format allows.
    BadLength {
        /// The length field.
        length: u64,
    },
    /// The batch runs past the end of the file.
    Truncated {
        /// Bytes the batch needs from its start.
        needed: u64,
        /// Bytes the file has from the batch's start.
        available: u64,
    },
    /// The batch's CRC32C does not match its bytes.
    Checksum {
        /// The checksum stored in the header.
        stored: u32,
        /// The checksum of the bytes as read.
        computed: u32,
    },
    /// The batch's first offset is not the one after the previous batch.
    OffsetMismatch {
        /// The offset that should come next.
        expected: u64,
        /// The base offset in the header.
        found: u64,
    },
    /// A record inside a checksummed batch does not parse, or the count or length disagree.
    BadRecord {
        /// The index of the record within its batch.
        record: u32,
    },
    /// A segment does not start where the previous one ends (a missing or overlapping segment).
    SegmentGap {
        /// The offset the previous segment ends at.
        expected: u64,
        /// The base offset of this segment.
        found: u64,
    },
    /// The last segment is marked sealed (it has a valid index file), so segments after it are
    /// missing.
    SegmentMissing {
        /// The base offset of the segment that should follow.
        expected: u64,
    },
    /// The bytes at a [`ValueLocation`](crate::ValueLocation) are not the record expected there
    /// (a stale or damaged location, or damaged bytes): the key before it differs, or the
    /// location lies outside the segment.
    LocationMismatch {
        /// The length of the key expected to end at the location.
        key_len: u64,
        /// The value length the location names.
        value_len: u32,
    },
    /// The log ends before an offset the caller knows was made durable.
    MissingDurableData {
        /// The end offset the caller knows is durable.
        durable_end: u64,
        /// The end offset found.
        found_end: u64,
    },
}

impl fmt::Display for CorruptionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorruptionKind::BadMagic { found } => write!(f, "no batch magic (found {found:#010x})"),
            CorruptionKind::UnsupportedFormat { version, flags } => {
                write!(f, "unsupported batch format (version {version}, flags {flags:#06x})")
            }
            CorruptionKind::BadLength { length } => write!(f, "impossible batch length {length}"),
            CorruptionKind::Truncated { needed, available } => {
                write!(f, "batch needs {needed} bytes, only {available} left in the file")
            }
            CorruptionKind::Checksum { stored, computed } => {
                write!(f, "checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")
            }
            CorruptionKind::OffsetMismatch { expected, found } => {
                write!(f, "batch starts at offset {found}, expected {expected}")
            }
            CorruptionKind::BadRecord { record } => {
                write!(f, "record {record} of the batch does not parse")
            }
            CorruptionKind::SegmentGap { expected, found } => {
                write!(f, "segment starts at offset {found}, the previous one ends at {expected}")
            }
            CorruptionKind::SegmentMissing { expected } => {
                write!(f, "the last segment is sealed; the segment starting at offset {expected} is missing")
            }
            CorruptionKind::LocationMismatch { key_len, value_len } => {
                write!(f, "no record with the expected {key_len}-byte key and {value_len}-byte value here")
            }
            CorruptionKind::MissingDurableData { durable_end, found_end } => {
                write!(f, "log ends at offset {found_end}, but offsets up to {durable_end} were durable")
            }
        }
    }
}

/// An error from the changelog.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A file-system operation failed.
    Io {
        /// The operation, such as `"write"` or `"sync_data"`.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Stored bytes are damaged where they must be valid (DESIGN P5).
    Corruption {
        /// The file.
        file: PathBuf,
        /// The byte position in the file where the damage starts.
        position: u64,
        /// What is wrong.
        kind: CorruptionKind,
    },
    /// An earlier error on a durability path poisoned this log; reopen it to recover.
    Poisoned {
        /// The error that poisoned the log.
        cause: Arc<Error>,
    },
    /// Another handle holds the log directory's lock.
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// The log was closed.
    Closed,
    /// An offset outside the log's range.
    OffsetOutOfRange {
        /// The offset asked for.
        offset: u64,
        /// The first offset of the log.
        start: u64,
        /// One past the last offset of the log.
        end: u64,
    },
    /// A batch larger than [`LogOptions::batch_bytes_max`](crate::LogOptions::batch_bytes_max).
    BatchTooLarge {
        /// The encoded size of the batch.
        bytes: u64,
        /// The limit.
        max: u64,
    },
    /// The log's offsets would pass `u64::MAX`.
    OffsetsExhausted {
        /// The next offset of the log.
        end: u64,
        /// How many offsets were asked for.
        wanted: u64,
    },
    /// A reader's position was removed by [`Log::truncate`](crate::Log::truncate) after the
    /// reader had passed it; what it returned beyond the new end is no longer in the log.
    ReaderTruncated {
        /// The reader's next offset.
        position: u64,
        /// Where the log was truncated (the lowest cut since the reader last looked).
        end: u64,
    },
    /// A [`ValueLocation`](crate::ValueLocation) names a segment the
    /// [`SegmentSet`](crate::SegmentSet) read from does not hold.
    UnknownSegment {
        /// The segment named.
        id: crate::SegmentId,
    },
    /// The directory holds no segment file (it is not a log directory).
    NotALog {
        /// The directory.
        path: PathBuf,
    },
    /// Options that cannot work together.
    InvalidOptions {
        /// The option at fault.
        option: &'static str,
        /// Why.
        reason: &'static str,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io { op, path: path.into(), source }
    }

    pub(crate) fn corruption(file: impl Into<PathBuf>, position: u64, kind: CorruptionKind) -> Error {
        Error::Corruption { file: file.into(), position, kind }
    }

    /// A copy of the error, kept as the cause of a poisoned log (an `io::Error` is copied as its
    /// kind and message).
    pub(crate) fn duplicate(&self) -> Error {
        match self {
            Error::Io { op, path, source } => Error::Io {
                op,
                path: path.clone(),
                source: io::Error::new(source.kind(), source.to_string()),
            },
            Error::Corruption { file, position, kind } => {
                Error::Corruption { file: file.clone(), position: *position, kind: kind.clone() }
            }
            Error::Poisoned { cause } => Error::Poisoned { cause: Arc::clone(cause) },
            Error::Locked { path } => Error::Locked { path: path.clone() },
            Error::Closed => Error::Closed,
            Error::OffsetOutOfRange { offset, start, end } => {
                Error::OffsetOutOfRange { offset: *offset, start: *start, end: *end }
            }
            Error::BatchTooLarge { bytes, max } => Error::BatchTooLarge { bytes: *bytes, max: *max },
            Error::OffsetsExhausted { end, wanted } => Error::OffsetsExhausted { end: *end, wanted: *wanted },
            Error::ReaderTruncated { position, end } => {
                Error::ReaderTruncated { position: *position, end: *end }
            }
            Error::UnknownSegment { id } => Error::UnknownSegment { id: *id },
            Error::NotALog { path } => Error::NotALog { path: path.clone() },
            Error::InvalidOptions { option, reason } => Error::InvalidOptions { option, reason },
        }
    }

    /// The corruption kind, if this is a [`Error::Corruption`].
    pub fn corruption_kind(&self) -> Option<&CorruptionKind> {
        match self {
            Error::Corruption { kind, .. } => Some(kind),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { op, path, source } => write!(f, "{op} {}: {source}", path.display()),
            Error::Corruption { file, position, kind } => {
                write!(f, "corruption in {} at byte {position}: {kind}", file.display())
            }
            Error::Poisoned { cause } => {
                write!(f, "log poisoned by an earlier error ({cause}); reopen it")
            }
            Error::Locked { path } => write!(f, "{} is locked by another handle", path.display()),
            Error::Closed => f.write_str("log is closed"),
            Error::OffsetOutOfRange { offset, start, end } => {
                write!(f, "offset {offset} is outside the log [{start}, {end})")
            }
            Error::BatchTooLarge { bytes, max } => {
                write!(f, "batch of {bytes} bytes exceeds the limit of {max}")
            }
            Error::OffsetsExhausted { end, wanted } => {
                write!(f, "{wanted} more offsets after {end} would pass the largest offset")
            }
            Error::ReaderTruncated { position, end } => {
                write!(
                    f,
                    "reader at offset {position} passed offset {end}, where the log was since truncated"
                )
            }
            Error::UnknownSegment { id } => write!(f, "segment {id:?} is not in the segment set"),
            Error::NotALog { path } => {
                write!(f, "{} holds no segment file: not a log directory", path.display())
            }
            Error::InvalidOptions { option, reason } => {
                write!(f, "invalid option {option}: {reason}")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Poisoned { cause } => Some(cause.as_ref()),
            _ => None,
        }
    }
}
