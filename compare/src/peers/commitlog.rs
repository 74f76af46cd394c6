//! commitlog: a Kafka-like segmented log, the closest peer to cairn's changelog.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use commitlog::message::{MessageBuf, MessageSet};
use commitlog::{CommitLog, LogOptions, ReadLimit};

use crate::peer::{Peer, Reader, Result, Setting, Workload, Writer, joined, puts, split};

pub struct Commitlog;

/// `.1`: the tier asks for durability, and `flush` is the nearest call commitlog has.
struct LogWriter(Mutex<CommitLog>, bool);

impl Writer for LogWriter {
    fn write(&self, key: &[u8], value: &[u8]) -> Result {
        let mut log = self.0.lock().map_err(|_| "poisoned")?;
        log.append_msg(joined(key, value)).map_err(|e| format!("{e:?}"))?;
        if self.1 {
            log.flush()?;
        }
        Ok(())
    }

    fn finish(&self) -> Result {
        self.0.lock().map_err(|_| "poisoned")?.flush()?;
        Ok(())
    }
}

impl Peer for Commitlog {
    fn name(&self) -> &'static str {
        "commitlog"
    }

    fn version(&self) -> &'static str {
        "commitlog 0.2.0"
    }

    fn setting(&self, workload: Workload) -> Setting {
        match workload {
            Workload::Append => Setting::Offered(
                "`append_msg` of key + value per record, `flush` at the end; default `LogOptions`",
            ),
            Workload::Commit | Workload::Group => Setting::NotOffered(
                "no call makes a write durable: `flush`, the nearest (strace ran `append_msg` + `flush` per record), is `File::flush`, which syncs nothing",
            ),
            Workload::Restore | Workload::Get => Setting::Offered(
                "a log, not a store: reopen (`CommitLog::new`) and replay every message (`read`, 1 MiB at a time) into a `HashMap`",
            ),
        }
    }

    fn writer(&self, dir: &Path, workload: Workload) -> Result<Box<dyn Writer>> {
        Ok(Box::new(LogWriter(Mutex::new(CommitLog::new(LogOptions::new(dir))?), workload.durable())))
    }

    fn load(&self, dir: &Path, keys: u64) -> Result {
        let mut log = CommitLog::new(LogOptions::new(dir))?;
        let mut batch = MessageBuf::default();
        for (n, (key, value)) in puts(keys).enumerate() {
            batch.push(joined(&key, &value)).map_err(|e| format!("{e:?}"))?;
            if n % 1000 == 999 {
                log.append(&mut batch).map_err(|e| format!("{e:?}"))?;
                batch = MessageBuf::default();
            }
        }
        if batch.len() > 0 {
            log.append(&mut batch).map_err(|e| format!("{e:?}"))?;
        }
        log.flush()?;
        Ok(())
    }

    fn reopen(&self, dir: &Path) -> Result<Box<dyn Reader>> {
        let log = CommitLog::new(LogOptions::new(dir))?;
        let mut map = HashMap::new();
        let mut next = 0;
        while next < log.next_offset() {
            let messages = log.read(next, ReadLimit::max_bytes(1 << 20)).map_err(|e| format!("{e:?}"))?;
            if messages.len() == 0 {
                return Err(format!("no message readable at offset {next}").into());
            }
            for message in messages.iter() {
                let (key, value) = split(message.payload())?;
                map.insert(key.to_vec(), value.to_vec());
                next = message.offset() + 1;
            }
        }
        Ok(Box::new(map))
    }

    fn rebuilds_from_log(&self) -> bool {
        true
    }
}
