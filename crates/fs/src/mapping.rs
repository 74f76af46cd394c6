//! Read-only views of a file's bytes: a memory mapping on [`RealFs`](crate::RealFs), a shared
//! byte buffer on [`SimFs`](crate::SimFs). With `writeback.rs`, the only module of the
//! workspace with `unsafe` code.
#![allow(unsafe_code)]

use std::fmt;
use std::io;
use std::ops::Deref;
use std::sync::Arc;

/// An immutable view of a file's contents, dereferencing to `[u8]`.
///
/// Created by [`File::map`](crate::File::map). The view is as long as the file was when it was
/// mapped. Holders must make sure the mapped bytes do not change and the file is not cut shorter
/// while the view is alive (see [`File::map`](crate::File::map)).
pub struct Mapping {
    inner: Inner,
}

enum Inner {
    Empty,
    Mapped(memmap2::Mmap),
    Bytes(Arc<[u8]>),
}

impl Mapping {
    /// A view over bytes held in memory.
    pub fn from_bytes(bytes: impl Into<Arc<[u8]>>) -> Mapping {
        Mapping { inner: Inner::Bytes(bytes.into()) }
    }

    /// Maps `file` read-only, or returns an empty view for an empty file (mmap refuses length 0).
    pub(crate) fn map_file(file: &std::fs::File) -> io::Result<Mapping> {
        if file.metadata()?.len() == 0 {
            return Ok(Mapping { inner: Inner::Empty });
        }
        // SAFETY: memmap2 requires that the mapped file is not modified or truncated while the
        // map is alive, or reads may observe changing bytes or fault. The contract of
        // `File::map` puts that duty on the caller: cairn maps only sealed segments and
        // finished index files, which are never written again, and replaces a file by rename
        // (the old inode stays intact for existing maps) instead of cutting it while mapped.
        let map = unsafe { memmap2::Mmap::map(file)? };
        Ok(Mapping { inner: Inner::Mapped(map) })
    }

    /// Advises the kernel that the view will be read sequentially (read-ahead); a no-op for
    /// in-memory views.
    pub fn advise_sequential(&self) {
        if let Inner::Mapped(map) = &self.inner {
            // Advice is a hint; failure changes nothing that matters.
            let _ = map.advise(memmap2::Advice::Sequential);
        }
    }
}

impl Deref for Mapping {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.inner {
            Inner::Empty => &[],
            Inner::Mapped(map) => map,
            Inner::Bytes(bytes) => bytes,
        }
    }
}

impl AsRef<[u8]> for Mapping {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl fmt::Debug for Mapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.inner {
            Inner::Empty => "empty",
            Inner::Mapped(_) => "mmap",
            Inner::Bytes(_) => "bytes",
        };
        f.debug_struct("Mapping").field("kind", &kind).field("len", &self.len()).finish()
    }
}
