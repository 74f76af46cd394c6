//! The physical baseline: plain `std::fs` calls, no format, no recovery.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;

use crate::peer::{KEY_BYTES, Peer, Reader, Result, Setting, VALUE_BYTES, Workload, Writer, joined, puts};

/// The physical baseline; `preallocated`: the durable tiers write into a file whose size was
/// set ahead (`set_len`), so that an fdatasync has no size change to journal.
pub struct Raw {
    pub preallocated: bool,
}

/// What the preallocated baseline sets the file's size to before the first record.
const PREALLOCATED_BYTES: u64 = 256 << 20;

enum RawWriter {
    Buffered(Mutex<BufWriter<File>>),
    /// The file, and the next write position, taken in turn.
    Synced(File, Mutex<u64>),
}

impl Writer for RawWriter {
    fn write(&self, key: &[u8], value: &[u8]) -> Result {
        match self {
            RawWriter::Buffered(writer) => {
                let mut writer = writer.lock().map_err(|_| "poisoned")?;
                writer.write_all(key)?;
                writer.write_all(value)?;
            }
            RawWriter::Synced(file, position) => {
                let record = joined(key, value);
                // The write in turn, the fdatasync outside the lock: the kernel may let one
                // fdatasync cover several writers' records.
                {
                    let mut position = position.lock().map_err(|_| "poisoned")?;
                    file.write_all_at(&record, *position)?;
                    *position += record.len() as u64;
                }
                file.sync_data()?;
            }
        }
        Ok(())
    }

    fn finish(&self) -> Result {
        if let RawWriter::Buffered(writer) = self {
            writer.lock().map_err(|_| "poisoned")?.flush()?;
        }
        Ok(())
    }
}

const FILE: &str = "raw";

impl Peer for Raw {
    fn name(&self) -> &'static str {
        if self.preallocated { "raw (size set ahead)" } else { "raw std::fs" }
    }

    fn version(&self) -> &'static str {
        "std::fs, no format (the physical baseline)"
    }

    fn setting(&self, workload: Workload) -> Setting {
        if self.preallocated {
            return match workload {
                Workload::Commit | Workload::Group => Setting::Offered(
                    "as raw std::fs, into a file whose size was set to 256 MiB first (`set_len`): the fdatasync journals no size change",
                ),
                _ => Setting::Same("raw std::fs"),
            };
        }
        match workload {
            Workload::Append => {
                Setting::Offered("`BufWriter` (256 KiB) of key and value bytes, `flush` at the end")
            }
            Workload::Commit | Workload::Group => Setting::Offered(
                "`write_all_at` of the record at the next position (writers take turns) then `sync_data` (fdatasync) on one file, which grows with each write",
            ),
            Workload::Restore | Workload::Get => Setting::Offered(
                "read the file of 116 B records (`std::fs::read`) and replay it into a `HashMap<Vec<u8>, Vec<u8>>`",
            ),
        }
    }

    fn writer(&self, dir: &Path, workload: Workload) -> Result<Box<dyn Writer>> {
        let file = File::create(dir.join(FILE))?;
        if self.preallocated {
            file.set_len(PREALLOCATED_BYTES)?;
            file.sync_all()?;
        }
        Ok(Box::new(if workload.durable() {
            RawWriter::Synced(file, Mutex::new(0))
        } else {
            RawWriter::Buffered(Mutex::new(BufWriter::with_capacity(256 << 10, file)))
        }))
    }

    fn load(&self, dir: &Path, keys: u64) -> Result {
        let file = File::create(dir.join(FILE))?;
        let mut writer = BufWriter::with_capacity(256 << 10, file);
        for (key, value) in puts(keys) {
            writer.write_all(&key)?;
            writer.write_all(&value)?;
        }
        writer.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        Ok(())
    }

    fn reopen(&self, dir: &Path) -> Result<Box<dyn Reader>> {
        let bytes = std::fs::read(dir.join(FILE))?;
        let mut map = HashMap::new();
        for record in bytes.chunks_exact(KEY_BYTES + VALUE_BYTES) {
            let (key, value) = record.split_at(KEY_BYTES);
            map.insert(key.to_vec(), value.to_vec());
        }
        Ok(Box::new(map))
    }

    fn rebuilds_from_log(&self) -> bool {
        true
    }
}
