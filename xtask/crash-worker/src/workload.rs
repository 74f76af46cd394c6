//! The seeded workload: a generated input, the task that folds it into two stores and an output,
//! the same fold over plain maps (the reference model), and digests that compare the two.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use cairn_changelog::{CompactionPolicy, LogOptions, Maintenance};
use cairn_store::StoreOptions;
use cairn_task::{
    Context, Error, Flow, Message, OutputKind, Source, SourceMessage, StreamTask, TaskConfig, TaskError,
    TaskRunner,
};

/// The input's name in the task's configuration and checkpoint.
pub const INPUT: &str = "in";
/// The output's name.
pub const OUTPUT: &str = "out";
/// Distinct keys: few, so that keys are overwritten and deleted often (compaction has work).
const KEYS: u64 = 48;

/// The store and log settings a run uses, each stressing one mechanism.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Variant {
    /// The defaults a user gets (one segment per log for a workload this size).
    Default,
    /// 4 KiB segments and tiny write buffers: a roll every few records, writes reach the files
    /// at once.
    TinySegments,
    /// 16 KiB segments and background compaction checking every 2 ms, at any dirty ratio.
    Compaction,
    /// A snapshot of every store at every commit (written on their own thread).
    Snapshots,
}

/// `seed` mixed with `i` (splitmix64): message `i` of a seed is the same in every process.
pub fn mix(seed: u64, i: u64) -> u64 {
    let mut z = seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What one input message asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    /// Add to the key's counter in `counts`, and send the new count.
    Add(u64),
    /// Delete the key's counter (a tombstone message), and send `deleted`.
    Delete,
    /// Put a blob of this many bytes under the key in `blobs` (large values make segments roll).
    Blob(usize),
}

fn op_of(value: Option<&[u8]>) -> Option<Op> {
    let value = match value {
        None => return Some(Op::Delete),
        Some(value) => value,
    };
    let (tag, number) = value.split_first()?;
    let number: u64 = std::str::from_utf8(number).ok()?.parse().ok()?;
    match tag {
        b'+' => Some(Op::Add(number)),
        b'b' => Some(Op::Blob(usize::try_from(number).ok()?)),
        _ => None,
    }
}

/// Message `i` of the input of `seed`: its key and value.
pub fn message(seed: u64, i: u64) -> (Vec<u8>, Option<Vec<u8>>) {
    let r = mix(seed, i);
    let key = format!("k{:02}", r % KEYS).into_bytes();
    let value = match (r >> 16) % 10 {
        0..=6 => Some(format!("+{}", 1 + (r >> 24) % 100).into_bytes()),
        7 => None,
        _ => Some(format!("b{}", (r >> 24) % 3000).into_bytes()),
    };
    (key, value)
}

/// The blob message `offset` puts: `len` bytes that depend on the offset.
fn blob(offset: u64, len: usize) -> Vec<u8> {
    (0..len).map(|j| (offset as u8).wrapping_add(j as u8)).collect()
}

/// The task's state and output as plain values: what the task holds after a run, and what the
/// model computes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct State {
    pub counts: BTreeMap<Vec<u8>, Vec<u8>>,
    pub blobs: BTreeMap<Vec<u8>, Vec<u8>>,
    pub outputs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl State {
    /// The reference fold of the first `upto` messages of `seed`'s input.
    pub fn model(seed: u64, upto: u64) -> State {
        let mut state = State::default();
        for i in 0..upto {
            let (key, value) = message(seed, i);
            match op_of(value.as_deref()) {
                Some(Op::Add(n)) => {
                    let count = state.counts.get(&key).map_or(0, |v| parse_count(v)) + n;
                    let text = count.to_string().into_bytes();
                    state.counts.insert(key.clone(), text.clone());
                    state.outputs.push((key, text));
                }
                Some(Op::Delete) => {
                    state.counts.remove(&key);
                    state.outputs.push((key, b"deleted".to_vec()));
                }
                Some(Op::Blob(len)) => {
                    state.blobs.insert(key, blob(i, len));
                }
                None => unreachable!("the generator only makes valid messages"),
            }
        }
        state
    }

    /// What the runner holds: both stores and the whole output log.
    pub fn of<T: StreamTask>(runner: &TaskRunner<T>) -> Result<State, String> {
        let read_store = |name: &str| -> Result<BTreeMap<Vec<u8>, Vec<u8>>, String> {
            let store = runner.store(name).ok_or(format!("no store {name}"))?;
            store.iter().map_err(|e| e.to_string())?.map(|entry| entry.map_err(|e| e.to_string())).collect()
        };
        let mut outputs = Vec::new();
        let log = runner.output(OUTPUT).and_then(|sink| sink.as_log()).ok_or("no output log")?;
        if log.end_offset() > log.start_offset() {
            let mut reader = log.reader(log.start_offset()).map_err(|e| e.to_string())?;
            while let Some(batch) = reader.next_batch().map_err(|e| e.to_string())? {
                for record in batch.records() {
                    let record = record.map_err(|e| e.to_string())?;
                    outputs.push((record.key.to_vec(), record.value.unwrap_or_default().to_vec()));
                }
            }
        }
        Ok(State { counts: read_store("counts")?, blobs: read_store("blobs")?, outputs })
    }

    /// A digest of the stores and one of the outputs, with their sizes, as one line's fields:
    /// `<state digest> <output digest> <keys> <outputs>`.
    pub fn summary(&self) -> String {
        let mut state = Fnv::default();
        for map in [&self.counts, &self.blobs] {
            state.feed(&(map.len() as u64).to_le_bytes());
            for (key, value) in map {
                state.feed(key);
                state.feed(value);
            }
        }
        let mut outputs = Fnv::default();
        for (key, value) in &self.outputs {
            outputs.feed(key);
            outputs.feed(value);
        }
        format!(
            "{:016x} {:016x} {} {}",
            state.0,
            outputs.0,
            self.counts.len() + self.blobs.len(),
            self.outputs.len()
        )
    }
}

fn parse_count(bytes: &[u8]) -> u64 {
    std::str::from_utf8(bytes).ok().and_then(|s| s.parse().ok()).unwrap_or(u64::MAX)
}

/// FNV-1a over length-prefixed fields.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn feed(&mut self, bytes: &[u8]) {
        for b in (bytes.len() as u64).to_le_bytes().iter().chain(bytes) {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
}

/// The input: `messages` generated messages, the same after every restart.
pub struct Generated {
    pub seed: u64,
    pub messages: u64,
    next: u64,
}

impl Generated {
    pub fn new(seed: u64, messages: u64) -> Generated {
        Generated { seed, messages, next: 0 }
    }
}

impl Source for Generated {
    fn seek(&mut self, offset: u64) -> cairn_task::Result<()> {
        if offset > self.messages {
            return Err(Error::CheckpointPastInputEnd { input: INPUT.into(), offset, end: self.messages });
        }
        self.next = offset;
        Ok(())
    }

    fn end_offset(&self) -> u64 {
        self.messages
    }

    fn poll(
        &mut self,
        max: usize,
        deliver: &mut dyn FnMut(SourceMessage<'_>) -> cairn_task::Result<Flow>,
    ) -> cairn_task::Result<usize> {
        let mut handed = 0;
        while handed < max && self.next < self.messages {
            let (key, value) = message(self.seed, self.next);
            let flow = deliver(SourceMessage {
                offset: self.next,
                key: &key,
                value: value.as_deref(),
                timestamp_ms: self.next as i64,
            })?;
            self.next += 1;
            handed += 1;
            if flow == Flow::Stop {
                break;
            }
        }
        Ok(handed)
    }
}

/// The task: the fold [`State::model`] computes, through the stores and the output.
pub struct Fold;

impl StreamTask for Fold {
    fn process(&mut self, m: &Message<'_>, ctx: &mut Context<'_>) -> Result<(), TaskError> {
        match op_of(m.value).ok_or("a message the generator does not make")? {
            Op::Add(n) => {
                let store = ctx.store("counts")?;
                let count = store.get(m.key)?.map_or(0, |v| parse_count(&v)) + n;
                let text = count.to_string();
                store.put(m.key, text.as_bytes())?;
                ctx.send(OUTPUT, m.key, text.as_bytes())?;
            }
            Op::Delete => {
                ctx.store("counts")?.delete(m.key)?;
                ctx.send(OUTPUT, m.key, b"deleted")?;
            }
            Op::Blob(len) => ctx.store("blobs")?.put(m.key, &blob(m.offset, len))?,
        }
        Ok(())
    }
}

/// The task's configuration in `dir` for `variant`. Commits happen only when the worker asks.
/// With `unbuffered`, every write reaches the files at once (file surgery needs the last
/// batches on disk).
pub fn config(dir: &Path, seed: u64, messages: u64, variant: Variant, unbuffered: bool) -> TaskConfig {
    let mut store = StoreOptions::default();
    let mut output = LogOptions::default();
    // Blobs stay below 3000 bytes: small enough for one batch of a 4 KiB segment.
    store.key_bytes_max = 16;
    store.value_bytes_max = 3072;
    match variant {
        Variant::Default | Variant::Snapshots => {}
        Variant::TinySegments => {
            for log in [&mut store.log, &mut output] {
                log.segment_bytes_max = 4096;
                log.write_buffer_bytes = 512;
            }
            store.write_buffer_bytes = 300;
        }
        Variant::Compaction => {
            store.log.segment_bytes_max = 16 << 10;
            let mut policy = CompactionPolicy::default();
            policy.dirty_percent_min = 1;
            let mut maintenance = Maintenance::default();
            maintenance.interval = Duration::from_millis(2);
            maintenance.compaction = Some(policy);
            store.compaction = Some(maintenance);
        }
    }
    if unbuffered {
        store.write_buffer_bytes = 0;
        store.log.write_buffer_bytes = 0;
        output.write_buffer_bytes = 0;
    }
    let mut config = TaskConfig::new("crash", dir)
        .input_source(INPUT, Box::new(Generated::new(seed, messages)))
        .store("counts", store.clone())
        .store("blobs", store);
    config.outputs.push((OUTPUT.into(), OutputKind::Log(Box::new(output))));
    config.commit_interval = Duration::from_secs(24 * 3600);
    config.snapshot_every_commits = if variant == Variant::Snapshots { 1 } else { 4 };
    config.poll_batch = 1 + (mix(seed, u64::MAX) % 64) as usize;
    config
}
