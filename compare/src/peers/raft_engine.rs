//! raft-engine: TiKV's log-structured store for Raft logs and key-value metadata; its memtables
//! are rebuilt from the log on open.

use std::path::Path;

use raft_engine::{Config, Engine, LogBatch};

use crate::peer::{Peer, Reader, Result, Setting, Workload, Writer, puts};

pub struct RaftEngine;

/// The one Raft group every key goes to.
const REGION: u64 = 1;

struct EngineWriter {
    engine: Engine,
    sync: bool,
}

impl Writer for EngineWriter {
    fn write(&self, key: &[u8], value: &[u8]) -> Result {
        let mut batch = LogBatch::with_capacity(1);
        batch.put(REGION, key.to_vec(), value.to_vec())?;
        self.engine.write(&mut batch, self.sync)?;
        Ok(())
    }

    fn finish(&self) -> Result {
        Ok(())
    }
}

struct EngineReader(Engine);

impl Reader for EngineReader {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.0.get(REGION, key))
    }
}

fn open(dir: &Path) -> Result<Engine> {
    let dir = dir.to_str().ok_or("the directory's path is not UTF-8")?;
    Ok(Engine::open(Config { dir: dir.to_owned(), ..Config::default() })?)
}

impl Peer for RaftEngine {
    fn name(&self) -> &'static str {
        "raft-engine"
    }

    fn version(&self) -> &'static str {
        "raft-engine 0.4.2"
    }

    fn setting(&self, workload: Workload) -> Setting {
        match workload {
            Workload::Append => Setting::Offered(
                "a `LogBatch` of one `put` per record, `Engine::write(batch, sync = false)`; default `Config`; nothing at the end (each write reaches the OS)",
            ),
            Workload::Commit | Workload::Group => Setting::Offered(
                "a `LogBatch` of one `put` per record, `Engine::write(batch, sync = true)`: fdatasync, shared by concurrent writers (group commit); default `Config`",
            ),
            Workload::Restore | Workload::Get => Setting::Offered(
                "`Engine::open`, default `Config` (4 recovery threads): rebuilds the memtables by replaying the log",
            ),
        }
    }

    fn writer(&self, dir: &Path, workload: Workload) -> Result<Box<dyn Writer>> {
        Ok(Box::new(EngineWriter { engine: open(dir)?, sync: workload.durable() }))
    }

    fn load(&self, dir: &Path, keys: u64) -> Result {
        let engine = open(dir)?;
        let mut batch = LogBatch::with_capacity(1000);
        for (n, (key, value)) in puts(keys).enumerate() {
            batch.put(REGION, key.to_vec(), value.to_vec())?;
            if n % 1000 == 999 {
                engine.write(&mut batch, false)?;
                batch = LogBatch::with_capacity(1000);
            }
        }
        engine.write(&mut batch, true)?;
        Ok(())
    }

    fn reopen(&self, dir: &Path) -> Result<Box<dyn Reader>> {
        Ok(Box::new(EngineReader(open(dir)?)))
    }

    fn rebuilds_from_log(&self) -> bool {
        true
    }
}
