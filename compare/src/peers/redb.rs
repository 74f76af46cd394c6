//! redb: a copy-on-write B-tree in one file; nothing to replay on open.

use std::path::Path;

use redb::{Database, Durability, ReadOnlyTable, ReadableDatabase, TableDefinition};

use crate::peer::{Peer, Reader, Result, Setting, Workload, Writer, puts};

pub struct Redb;

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("bench");
const FILE: &str = "redb";

struct RedbWriter {
    db: Database,
    durability: Durability,
}

impl Writer for RedbWriter {
    fn write(&self, key: &[u8], value: &[u8]) -> Result {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(self.durability)?;
        txn.open_table(TABLE)?.insert(key, value)?;
        txn.commit()?;
        Ok(())
    }

    fn finish(&self) -> Result {
        Ok(())
    }
}

struct RedbReader {
    table: ReadOnlyTable<&'static [u8], &'static [u8]>,
    _db: Database,
}

impl Reader for RedbReader {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.table.get(key)?.map(|v| v.value().to_vec()))
    }
}

impl Peer for Redb {
    fn name(&self) -> &'static str {
        "redb"
    }

    fn version(&self) -> &'static str {
        "redb 4.4.0"
    }

    fn setting(&self, workload: Workload) -> Setting {
        match workload {
            Workload::Append => Setting::Offered(
                "a write transaction per record with `Durability::None` (the commit stays in memory until a durable one); nothing at the end",
            ),
            Workload::Commit | Workload::Group => Setting::Offered(
                "a write transaction per record, `Durability::Immediate` (its default): fsyncs per commit; writers take turns, no group commit",
            ),
            Workload::Restore | Workload::Get => {
                Setting::Offered("`Database::create` on the existing file: a B-tree, nothing replayed")
            }
        }
    }

    fn writer(&self, dir: &Path, workload: Workload) -> Result<Box<dyn Writer>> {
        let db = Database::create(dir.join(FILE))?;
        let durability = if workload.durable() { Durability::Immediate } else { Durability::None };
        Ok(Box::new(RedbWriter { db, durability }))
    }

    fn load(&self, dir: &Path, keys: u64) -> Result {
        let db = Database::create(dir.join(FILE))?;
        let mut puts = puts(keys).peekable();
        while puts.peek().is_some() {
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(TABLE)?;
                for (key, value) in puts.by_ref().take(10_000) {
                    table.insert(key.as_slice(), value.as_slice())?;
                }
            }
            txn.commit()?;
        }
        Ok(())
    }

    fn reopen(&self, dir: &Path) -> Result<Box<dyn Reader>> {
        let db = Database::create(dir.join(FILE))?;
        let table = db.begin_read()?.open_table(TABLE)?;
        Ok(Box::new(RedbReader { table, _db: db }))
    }

    fn rebuilds_from_log(&self) -> bool {
        false
    }
}
