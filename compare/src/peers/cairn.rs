//! cairn: the changelog (`cairn-changelog`) for the write workloads, the store (`cairn-store`)
//! for restore and get.

use std::path::Path;
use std::sync::Arc;

use cairn::changelog::{Log, LogOptions, Record};
use cairn::fs::RealFs;
use cairn::store::{RestoreSource, Store, StoreOptions};

use crate::peer::{Peer, Reader, Result, Setting, Workload, Writer, puts};

/// cairn, restoring from its newest snapshot plus the changelog's tail (`snapshots = true`), or
/// by replaying the whole changelog.
pub struct Cairn {
    pub snapshots: bool,
}

struct LogWriter {
    log: Log,
    sync: bool,
}

impl Writer for LogWriter {
    fn write(&self, key: &[u8], value: &[u8]) -> Result {
        self.log.append(Record::new(key, Some(value), 0))?;
        if self.sync {
            self.log.sync()?;
        }
        Ok(())
    }

    fn finish(&self) -> Result {
        self.log.flush()?;
        Ok(())
    }
}

struct StoreReader(Store);

impl Reader for StoreReader {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.0.get(key)?)
    }
}

/// The share of the restore data set written before the snapshot; the rest is the tail a
/// restore replays, as after a task's commits between two snapshots.
const SNAPSHOT_AT: f64 = 0.9;

impl Peer for Cairn {
    fn name(&self) -> &'static str {
        if self.snapshots { "cairn" } else { "cairn (replay only)" }
    }

    fn version(&self) -> &'static str {
        concat!("cairn ", env!("CARGO_PKG_VERSION"), " (this checkout)")
    }

    fn setting(&self, workload: Workload) -> Setting {
        match (workload, self.snapshots) {
            (Workload::Append, true) => Setting::Offered(
                "`Log::append` per record (encoded into a 256 KiB buffer), `Log::flush` at the end; default `LogOptions`",
            ),
            (Workload::Commit | Workload::Group, true) => Setting::Offered(
                "`Log::append` + `Log::sync` per record: fdatasync of the active segment; concurrent syncs share one (group commit)",
            ),
            (Workload::Restore | Workload::Get, true) => Setting::Offered(
                "`Store::open`, default `StoreOptions`: newest snapshot (taken after 90% of the puts) plus a replay of the changelog's tail; values read from the mapped segments",
            ),
            (Workload::Restore, false) => Setting::Offered(
                "`Store::open` with `restore_from_snapshots = false`: replays the whole changelog into the key index",
            ),
            (_, false) => Setting::Same("cairn"),
        }
    }

    fn writer(&self, dir: &Path, workload: Workload) -> Result<Box<dyn Writer>> {
        let log = Log::open(Arc::new(RealFs::new()), dir, LogOptions::default())?;
        Ok(Box::new(LogWriter { log, sync: workload.durable() }))
    }

    fn load(&self, dir: &Path, keys: u64) -> Result {
        let mut store = Store::open(Arc::new(RealFs::new()), dir, StoreOptions::default())?;
        let total = keys + keys.div_ceil(2);
        let snapshot_at = (total as f64 * SNAPSHOT_AT) as u64;
        for (n, (key, value)) in puts(keys).enumerate() {
            if n as u64 == snapshot_at {
                store.write_snapshot()?;
            }
            store.put(&key, &value)?;
        }
        store.close()?;
        Ok(())
    }

    fn reopen(&self, dir: &Path) -> Result<Box<dyn Reader>> {
        let mut options = StoreOptions::default();
        options.restore_from_snapshots = self.snapshots;
        let store = Store::open(Arc::new(RealFs::new()), dir, options)?;
        let from_snapshot = matches!(store.restore_report().source, RestoreSource::Snapshot { .. });
        if from_snapshot != self.snapshots {
            return Err(format!("restored from {:?}", store.restore_report().source).into());
        }
        Ok(Box::new(StoreReader(store)))
    }

    fn rebuilds_from_log(&self) -> bool {
        true
    }
}
