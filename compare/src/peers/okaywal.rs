//! okaywal: a write-ahead log with group commit, meant to sit in front of a store that takes
//! its checkpoints.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use okaywal::{Configuration, Entry, EntryId, LogManager, SegmentReader, WriteAheadLog};

use crate::peer::{Peer, Reader, Result, Setting, Workload, Writer, joined, puts, split};

pub struct Okaywal;

/// Replays recovered entries into a map; checkpoints are accepted and dropped (the store that
/// would take them is not what is measured).
#[derive(Default, Clone)]
struct Replay(Arc<Mutex<HashMap<Vec<u8>, Vec<u8>>>>);

impl fmt::Debug for Replay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Replay")
    }
}

impl LogManager for Replay {
    fn recover(&mut self, entry: &mut Entry<'_>) -> std::io::Result<()> {
        let Some(chunks) = entry.read_all_chunks()? else { return Ok(()) };
        let mut map = self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?;
        for chunk in chunks {
            let (key, value) = split(&chunk).map_err(std::io::Error::other)?;
            map.insert(key.to_vec(), value.to_vec());
        }
        Ok(())
    }

    fn checkpoint_to(&mut self, _: EntryId, _: &mut SegmentReader, _: &WriteAheadLog) -> std::io::Result<()> {
        Ok(())
    }
}

struct WalWriter(WriteAheadLog);

impl Writer for WalWriter {
    fn write(&self, key: &[u8], value: &[u8]) -> Result {
        let mut entry = self.0.begin_entry()?;
        entry.write_chunk(&joined(key, value))?;
        entry.commit()?;
        Ok(())
    }

    fn finish(&self) -> Result {
        Ok(())
    }
}

/// The map, and the log kept open as a store built on it would keep it.
struct MapReader(Replay, #[allow(dead_code)] WriteAheadLog);

impl Reader for MapReader {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.0.0.lock().map_err(|_| "poisoned")?.get(key).cloned())
    }
}

/// The restore data set stays in the log: no checkpoint is ever due.
fn keep_everything(dir: &Path) -> Configuration {
    Configuration::default_for(dir).checkpoint_after_bytes(u64::MAX)
}

impl Peer for Okaywal {
    fn name(&self) -> &'static str {
        "okaywal"
    }

    fn version(&self) -> &'static str {
        "okaywal 0.3.1"
    }

    fn setting(&self, workload: Workload) -> Setting {
        match workload {
            Workload::Append => Setting::NotOffered(
                "every `EntryWriter::commit` fsyncs; an entry not committed is rolled back",
            ),
            Workload::Commit | Workload::Group => Setting::Offered(
                "`begin_entry` + `write_chunk` + `commit` per record (fdatasync, shared by concurrent commits: group commit); default `Configuration`: 1 MiB files preallocated, a checkpoint every 768 KiB taken by a checkpointer that does nothing, so its files are recycled for free",
            ),
            Workload::Restore | Workload::Get => Setting::Offered(
                "a WAL, not a store: `Configuration::open` with a `LogManager` that replays every entry into a `HashMap` (`checkpoint_after_bytes(u64::MAX)`, so the log keeps every put); gets go through the replay's mutex",
            ),
        }
    }

    fn writer(&self, dir: &Path, _workload: Workload) -> Result<Box<dyn Writer>> {
        Ok(Box::new(WalWriter(WriteAheadLog::recover(dir, Replay::default())?)))
    }

    fn load(&self, dir: &Path, keys: u64) -> Result {
        let wal = keep_everything(dir).open(Replay::default())?;
        let mut puts = puts(keys).peekable();
        while puts.peek().is_some() {
            let mut entry = wal.begin_entry()?;
            for (key, value) in puts.by_ref().take(10_000) {
                entry.write_chunk(&joined(&key, &value))?;
            }
            entry.commit()?;
        }
        wal.shutdown()?;
        Ok(())
    }

    fn reopen(&self, dir: &Path) -> Result<Box<dyn Reader>> {
        let replay = Replay::default();
        let wal = keep_everything(dir).open(replay.clone())?;
        Ok(Box::new(MapReader(replay, wal)))
    }

    fn rebuilds_from_log(&self) -> bool {
        true
    }
}
