//! fjall: an LSM-tree store with a journal.

use std::path::Path;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use crate::peer::{Peer, Reader, Result, Setting, Workload, Writer, puts};

pub struct Fjall;

struct FjallWriter {
    db: Database,
    keyspace: Keyspace,
    durable: bool,
}

impl Writer for FjallWriter {
    fn write(&self, key: &[u8], value: &[u8]) -> Result {
        self.keyspace.insert(key, value)?;
        if self.durable {
            self.db.persist(PersistMode::SyncData)?;
        }
        Ok(())
    }

    fn finish(&self) -> Result {
        self.db.persist(PersistMode::Buffer)?;
        Ok(())
    }
}

struct FjallReader {
    _db: Database,
    keyspace: Keyspace,
}

impl Reader for FjallReader {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.keyspace.get(key)?.map(|v| v.to_vec()))
    }
}

fn open(dir: &Path, manual_persist: bool) -> Result<(Database, Keyspace)> {
    let db = Database::builder(dir).manual_journal_persist(manual_persist).open()?;
    let keyspace = db.keyspace("bench", KeyspaceCreateOptions::default)?;
    Ok((db, keyspace))
}

impl Peer for Fjall {
    fn name(&self) -> &'static str {
        "fjall"
    }

    fn version(&self) -> &'static str {
        "fjall 3.1.13"
    }

    fn setting(&self, workload: Workload) -> Setting {
        match workload {
            Workload::Append => Setting::Offered(
                "`Keyspace::insert` per record with `manual_journal_persist(true)` (the journal stays in fjall's buffer), `persist(PersistMode::Buffer)` at the end",
            ),
            Workload::Commit | Workload::Group => Setting::Offered(
                "`Keyspace::insert` + `Database::persist(PersistMode::SyncData)` (fdatasync of the journal) per record; default options",
            ),
            Workload::Restore | Workload::Get => Setting::Offered(
                "`Database::builder(dir).open()` + `keyspace(..)`, default options: opens its sorted tables (read lazily on gets) and replays the journal not yet flushed into them",
            ),
        }
    }

    fn writer(&self, dir: &Path, workload: Workload) -> Result<Box<dyn Writer>> {
        let (db, keyspace) = open(dir, !workload.durable())?;
        Ok(Box::new(FjallWriter { db, keyspace, durable: workload.durable() }))
    }

    fn load(&self, dir: &Path, keys: u64) -> Result {
        let (db, keyspace) = open(dir, false)?;
        let mut batch = db.batch();
        for (n, (key, value)) in puts(keys).enumerate() {
            batch.insert(&keyspace, key, value);
            if n % 1000 == 999 {
                batch.commit()?;
                batch = db.batch();
            }
        }
        batch.commit()?;
        db.persist(PersistMode::SyncAll)?;
        Ok(())
    }

    fn reopen(&self, dir: &Path) -> Result<Box<dyn Reader>> {
        let (db, keyspace) = open(dir, false)?;
        Ok(Box::new(FjallReader { _db: db, keyspace }))
    }

    fn rebuilds_from_log(&self) -> bool {
        false
    }
}
