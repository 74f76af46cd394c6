//! sled: a lock-free B-tree over a log-structured page store.

use std::path::Path;

use crate::peer::{Peer, Reader, Result, Setting, Workload, Writer, puts};

pub struct Sled;

/// `.1`: the tier asks for durability, and `Db::flush` is the nearest call sled has.
struct SledWriter(sled::Db, bool);

impl Writer for SledWriter {
    fn write(&self, key: &[u8], value: &[u8]) -> Result {
        self.0.insert(key, value)?;
        if self.1 {
            self.0.flush()?;
        }
        Ok(())
    }

    fn finish(&self) -> Result {
        Ok(())
    }
}

struct SledReader(sled::Db);

impl Reader for SledReader {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.0.get(key)?.map(|v| v.to_vec()))
    }
}

fn config(dir: &Path) -> sled::Config {
    sled::Config::new().path(dir)
}

impl Peer for Sled {
    fn name(&self) -> &'static str {
        "sled"
    }

    fn version(&self) -> &'static str {
        "sled 0.34.7"
    }

    fn setting(&self, workload: Workload) -> Setting {
        match workload {
            Workload::Append => Setting::Offered(
                "`Db::insert` per record, `flush_every_ms(None)` (no background flusher); nothing at the end (its log buffers are written as they fill)",
            ),
            Workload::Commit | Workload::Group => Setting::NotOffered(
                "`Db::flush` is sled's only durability call and makes sync_file_range calls, never fsync or fdatasync (strace): no metadata, no device cache flush",
            ),
            Workload::Restore | Workload::Get => Setting::Offered(
                "`Config::new().path(dir).open()`: reads its page-table snapshot and scans the log after it; tree pages are read lazily on gets",
            ),
        }
    }

    fn writer(&self, dir: &Path, workload: Workload) -> Result<Box<dyn Writer>> {
        Ok(Box::new(SledWriter(config(dir).flush_every_ms(None).open()?, workload.durable())))
    }

    fn load(&self, dir: &Path, keys: u64) -> Result {
        let db = config(dir).open()?;
        let mut batch = sled::Batch::default();
        for (n, (key, value)) in puts(keys).enumerate() {
            batch.insert(&key[..], &value[..]);
            if n % 1000 == 999 {
                db.apply_batch(std::mem::take(&mut batch))?;
            }
        }
        db.apply_batch(batch)?;
        db.flush()?;
        Ok(())
    }

    fn reopen(&self, dir: &Path) -> Result<Box<dyn Reader>> {
        Ok(Box::new(SledReader(config(dir).open()?)))
    }

    fn rebuilds_from_log(&self) -> bool {
        false
    }
}
