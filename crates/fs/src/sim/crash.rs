//! Crash images: what a power cut leaves of a simulated file system.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::sync::Arc;

use super::rng::Rng;
use super::tree::{Id, Inode, Node, Pending, ROOT, Tree, to_usize, write_into};

/// How a power cut treats the changes that were not yet synced.
///
/// Each pending write is, by weighted choice, kept whole, dropped, torn (a prefix to a random
/// byte, or a random subset of its 512-byte sectors or 4 KiB pages), replaced by garbage, or
/// replaced by zeros (its length reached the disk, its data did not). Writes between two length
/// changes of a file may land in any order when `reorder` is set. Each pending length change and
/// each pending directory operation survives with the given chance; the two halves of a rename
/// between directories survive or vanish together.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CrashOptions {
    /// Weight of keeping a pending write whole.
    pub keep: u32,
    /// Weight of losing a pending write entirely.
    pub drop: u32,
    /// Weight of keeping a prefix of a write, cut at a random byte.
    pub torn_byte: u32,
    /// Weight of keeping a random subset of the write's 512-byte sectors.
    pub torn_sector: u32,
    /// Weight of keeping a random subset of the write's 4 KiB pages.
    pub torn_page: u32,
    /// Weight of the write's range holding random bytes.
    pub garbage: u32,
    /// Weight of the write's range holding zeros (the size change survived, the data did not).
    pub zeroes: u32,
    /// Whether surviving writes between two length changes of a file apply in a random order.
    pub reorder: bool,
    /// Chance in percent that a pending length change survives.
    pub set_len_survives_percent: u8,
    /// Chance in percent that a pending directory operation survives.
    pub dir_op_survives_percent: u8,
}

impl CrashOptions {
    /// Every outcome possible, the default for seeded sweeps.
    pub fn adversarial() -> CrashOptions {
        CrashOptions {
            keep: 40,
            drop: 20,
            torn_byte: 10,
            torn_sector: 8,
            torn_page: 8,
            garbage: 7,
            zeroes: 7,
            reorder: true,
            set_len_survives_percent: 50,
            dir_op_survives_percent: 50,
        }
    }

    /// Only what was synced survives: every pending change is lost.
    pub fn durable_only() -> CrashOptions {
        CrashOptions {
            keep: 0,
            drop: 1,
            torn_byte: 0,
            torn_sector: 0,
            torn_page: 0,
            garbage: 0,
            zeroes: 0,
            reorder: false,
            set_len_survives_percent: 0,
            dir_op_survives_percent: 0,
        }
    }

    /// Every pending change survives, in order: what a process kill leaves (the kernel's page
    /// cache outlives the process).
    pub fn keep_all() -> CrashOptions {
        CrashOptions {
            keep: 1,
            drop: 0,
            torn_byte: 0,
            torn_sector: 0,
            torn_page: 0,
            garbage: 0,
            zeroes: 0,
            reorder: false,
            set_len_survives_percent: 100,
            dir_op_survives_percent: 100,
        }
    }
}

impl Default for CrashOptions {
    fn default() -> CrashOptions {
        CrashOptions::adversarial()
    }
}

#[derive(Clone, Copy)]
enum Outcome {
    Keep,
    Drop,
    TornByte,
    Torn(u64),
    Garbage,
    Zeroes,
}

impl CrashOptions {
    fn pick(&self, rng: &mut Rng) -> Outcome {
        let table = [
            (self.keep, Outcome::Keep),
            (self.drop, Outcome::Drop),
            (self.torn_byte, Outcome::TornByte),
            (self.torn_sector, Outcome::Torn(512)),
            (self.torn_page, Outcome::Torn(4096)),
            (self.garbage, Outcome::Garbage),
            (self.zeroes, Outcome::Zeroes),
        ];
        let total: u64 = table.iter().map(|(weight, _)| u64::from(*weight)).sum();
        let mut roll = rng.below(total);
        for (weight, outcome) in table {
            if roll < u64::from(weight) {
                return outcome;
            }
            roll -= u64::from(weight);
        }
        Outcome::Drop
    }
}

/// Builds the tree a power cut leaves of `tree`: its durable state plus pending changes as
/// `options` and `seed` decide. Everything in the result is durable.
pub(crate) fn crash_tree(tree: &Tree, seed: u64, options: &CrashOptions) -> Tree {
    let mut rng = Rng::new(seed);

    // Directories first: which pending operations survive, decided once per group.
    let mut survives: BTreeMap<u64, bool> = BTreeMap::new();
    let mut dirs: BTreeMap<Id, BTreeMap<OsString, Node>> = BTreeMap::new();
    for (id, dir) in &tree.dirs {
        let mut entries = dir.durable.clone();
        for op in &dir.pending {
            let kept =
                *survives.entry(op.group()).or_insert_with(|| rng.percent(options.dir_op_survives_percent));
            if kept {
                op.apply(&mut entries);
            }
        }
        dirs.insert(*id, entries);
    }

    // Keep what the root reaches.
    let mut reachable_dirs = BTreeSet::new();
    let mut reachable_files = BTreeSet::new();
    let mut stack = vec![ROOT];
    while let Some(dir) = stack.pop() {
        if !reachable_dirs.insert(dir) {
            continue;
        }
        for node in dirs.get(&dir).into_iter().flat_map(|entries| entries.values()) {
            match node {
                Node::Dir(id) => stack.push(*id),
                Node::File(id) => {
                    reachable_files.insert(*id);
                }
            }
        }
    }
    dirs.retain(|id, _| reachable_dirs.contains(id));

    let mut files = BTreeMap::new();
    for id in reachable_files {
        if let Some(inode) = tree.inodes.get(&id) {
            files.insert(id, crash_bytes(inode, &mut rng, options));
        }
    }
    Tree::from_durable(dirs, files)
}

/// The bytes of one file after the power cut.
fn crash_bytes(inode: &Inode, rng: &mut Rng, options: &CrashOptions) -> Vec<u8> {
    let mut bytes = Vec::clone(&inode.durable);
    let mut run: Vec<(u64, &Arc<[u8]>)> = Vec::new();
    for change in &inode.pending {
        match change {
            Pending::Write { pos, data } => run.push((*pos, data)),
            Pending::SetLen(len) => {
                apply_writes(&mut bytes, &mut run, rng, options);
                if rng.percent(options.set_len_survives_percent) {
                    bytes.resize(to_usize(*len), 0);
                }
            }
        }
    }
    apply_writes(&mut bytes, &mut run, rng, options);
    bytes
}

fn apply_writes(
    bytes: &mut Vec<u8>,
    run: &mut Vec<(u64, &Arc<[u8]>)>,
    rng: &mut Rng,
    options: &CrashOptions,
) {
    if options.reorder {
        rng.shuffle(run);
    }
    for (pos, data) in run.drain(..) {
        match options.pick(rng) {
            Outcome::Keep => write_into(bytes, pos, data),
            Outcome::Drop => {}
            Outcome::TornByte => {
                let keep = to_usize(rng.below(data.len() as u64));
                write_into(bytes, pos, data.get(..keep).unwrap_or_default());
            }
            Outcome::Torn(unit) => {
                // Split at absolute multiples of `unit`, as a device writes sectors or pages.
                let end = pos + data.len() as u64;
                let mut start = pos;
                while start < end {
                    let stop = ((start / unit) + 1).saturating_mul(unit).min(end);
                    if rng.percent(50) {
                        let from = to_usize(start - pos);
                        let to = to_usize(stop - pos);
                        write_into(bytes, start, data.get(from..to).unwrap_or_default());
                    }
                    start = stop;
                }
            }
            Outcome::Garbage => {
                let mut junk = vec![0; data.len()];
                rng.fill(&mut junk);
                write_into(bytes, pos, &junk);
            }
            Outcome::Zeroes => write_into(bytes, pos, &vec![0; data.len()]),
        }
    }
}
