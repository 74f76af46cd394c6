//! Starting the write-back of a file range without waiting for it (`sync_file_range` with
//! `SYNC_FILE_RANGE_WRITE` on Linux), for [`RealFs`](crate::RealFs). Besides the mapping module,
//! the only module of the workspace with `unsafe` code: one system call that std and the
//! well-kept wrappers (nix, rustix) do not offer.
#![allow(unsafe_code)]

use std::io;

/// Asks the kernel to start writing the dirty pages of `len` bytes at `offset` of `file` to the
/// device. Returns at once on other platforms.
#[cfg(target_os = "linux")]
pub(crate) fn start(file: &std::fs::File, offset: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "write-back range past i64::MAX"));
    };
    // SAFETY: sync_file_range takes a file descriptor and three integers, no pointers; the
    // descriptor stays open for the call because `file` is borrowed.
    let result = unsafe { libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE) };
    if result == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        // A kernel, sandbox or file that does not offer the call: the hint is lost, nothing
        // else (our arguments are valid, so EINVAL means the same).
        Some(libc::ENOSYS | libc::EOPNOTSUPP | libc::EINVAL | libc::ESPIPE) => Ok(()),
        _ => Err(error),
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn start(_file: &std::fs::File, _offset: u64, _len: u64) -> io::Result<()> {
    Ok(())
}
