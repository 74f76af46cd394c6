//! File surgery on a real task directory (DESIGN §7 rung 4): a task is run in a child process
//! that exits, without clean-up, after 10 commits of 100 messages and 30 uncommitted messages (every write
//! reaching the files at once, 4 KiB segments); each case copies that directory, damages its
//! files by hand, reopens the task and runs it to the end. It prints one line per reopening:
//! `OUTCOME <case> exact` (recovered exactly the last checkpoint, finished equal to the model,
//! leftovers removed), `OUTCOME <case> error <message>` (the open failed), or
//! `OUTCOME <case> wrong <what>` (never acceptable). The expected outcome of each case is
//! stated in docs/crash-testing.md, and `cargo xtask crash surgery` checks it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use cairn_fs::RealFs;
use cairn_task::TaskRunner;

use crate::say;
use crate::workload::{self, Fold, INPUT, State, Variant};

const MESSAGES: u64 = 1500;
const COMMIT_EVERY: u64 = 100;
const COMMITS: u64 = 10;
const TAIL: u64 = 30;

/// One kind of damage; `damage` is called with k = 0, 1, … until it returns `None`, each time on
/// a fresh copy of the prepared task directory.
pub struct Case {
    pub name: &'static str,
    damage: fn(&Prepared, &Path, usize) -> Result<Option<Damage>, String>,
}

/// What a damage did: the file it changed, and files the reopening must remove.
struct Damage {
    file: PathBuf,
    vanish: Vec<PathBuf>,
}

impl Damage {
    fn of(file: PathBuf) -> Option<Damage> {
        Some(Damage { file, vanish: Vec::new() })
    }
}

/// The prepared task and what its last commit recorded.
pub struct Prepared {
    seed: u64,
    /// The checkpointed input position.
    position: u64,
    /// The checkpointed end of the `counts` changelog.
    changelog_end: u64,
}

pub const CASES: &[Case] = &[
    Case { name: "tail-cut-at-every-byte", damage: tail_cut },
    Case { name: "tail-garbage", damage: |_, dir, k| once(k, || append(&active(dir)?, &garbage(1000))) },
    Case { name: "tail-zeros", damage: |_, dir, k| once(k, || append(&active(dir)?, &[0; 8192])) },
    Case { name: "tail-bit-flip", damage: tail_flip },
    Case { name: "sealed-segment-bit-flip", damage: sealed_flip },
    Case { name: "committed-batch-bit-flip", damage: committed_flip },
    Case { name: "missing-segment", damage: missing_segment },
    Case { name: "duplicated-segment", damage: duplicated_segment },
    Case { name: "stale-temp-files", damage: stale_temp_files },
    Case { name: "uncommitted-compaction-output", damage: uncommitted_compaction },
    Case { name: "snapshot-bit-flip", damage: snapshot_flip },
    Case { name: "checkpoint-bit-flip", damage: |_, dir, k| once(k, || flip(&dir.join("checkpoint"), 30)) },
    Case { name: "checkpoint-truncated", damage: checkpoint_truncated },
    Case { name: "checkpoint-future-version", damage: checkpoint_future_version },
    Case { name: "checkpoint-ahead-of-log", damage: checkpoint_ahead_of_log },
];

/// Runs `case` in `dir` (created here).
pub fn run(dir: &Path, seed: u64, case: &str) -> Result<(), String> {
    let case = CASES.iter().find(|c| c.name == case).ok_or(format!("no surgery case {case}"))?;
    let prepared = prepare(dir, seed)?;
    let original = dir.join("prepared");
    for k in 0.. {
        let copy = dir.join(format!("case-{k}"));
        copy_dir(&original, &copy)?;
        let Some(damage) = (case.damage)(&prepared, &copy, k)? else {
            fs::remove_dir_all(&copy).map_err(|e| format!("remove {}: {e}", copy.display()))?;
            break;
        };
        say(&format!("DAMAGED {}", damage.file.display()));
        let outcome = match reopen_and_finish(&prepared, &copy) {
            Ok(()) => match damage.vanish.iter().find(|p| p.exists()) {
                Some(left) => format!("wrong {} was not removed", left.display()),
                None => "exact".to_string(),
            },
            Err(outcome) => outcome,
        };
        say(&format!("OUTCOME {} {outcome}", case.name));
        if !outcome.starts_with("wrong") {
            fs::remove_dir_all(&copy).map_err(|e| format!("remove {}: {e}", copy.display()))?;
        }
    }
    Ok(())
}

/// Runs the task in a child process (this binary) to 10 commits and 30 more messages.
fn prepare(dir: &Path, seed: u64) -> Result<Prepared, String> {
    let original = dir.join("prepared");
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let output = Command::new(exe)
        .args(["run", "--variant", "tiny-segments", "--unbuffered"])
        .args(["--seed", &seed.to_string(), "--messages", &MESSAGES.to_string()])
        .args(["--commit-every", &COMMIT_EVERY.to_string(), "--exit-after-commits", &COMMITS.to_string()])
        .args(["--tail", &TAIL.to_string()])
        .arg("--dir")
        .arg(&original)
        .output()
        .map_err(|e| format!("cannot run the preparing worker: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let acked = stdout.lines().rev().filter_map(|l| l.strip_prefix("ACK ")).find_map(|n| n.parse().ok());
    let (true, Some(position)) = (output.status.success(), acked) else {
        return Err(format!("the preparing worker failed: {}\n{stdout}", output.status));
    };
    // The checkpoint's changelog end, read from a throwaway copy (opening cuts the tail).
    let probe = dir.join("probe");
    copy_dir(&original, &probe)?;
    let changelog_end = {
        let config = workload::config(&probe, seed, MESSAGES, Variant::TinySegments, true);
        let runner = TaskRunner::open(Arc::new(RealFs::new()), config, Fold).map_err(|e| e.to_string())?;
        let checkpoint = runner.checkpoint().ok_or("no checkpoint after 10 commits")?;
        checkpoint.changelogs.get("counts").copied().ok_or("no counts changelog in the checkpoint")?
    };
    fs::remove_dir_all(&probe).map_err(|e| format!("remove {}: {e}", probe.display()))?;
    let prepared = Prepared { seed, position, changelog_end };
    let last = batches(&active(&original)?)?.last().copied().ok_or("the active segment is empty")?;
    if last.base < prepared.changelog_end {
        return Err(format!("the prepared changelog has no batch past its checkpoint ({last:?})"));
    }
    Ok(prepared)
}

/// Reopens the task in `dir`: it must come back at the checkpoint equal to the model, and run
/// to the end equal to the model. `Err` holds the outcome otherwise.
fn reopen_and_finish(prepared: &Prepared, dir: &Path) -> Result<(), String> {
    let config = workload::config(dir, prepared.seed, MESSAGES, Variant::TinySegments, true);
    let mut runner = match TaskRunner::open(Arc::new(RealFs::new()), config, Fold) {
        Ok(runner) => runner,
        Err(e) => return Err(format!("error {e}")),
    };
    let position = |runner: &TaskRunner<Fold>| runner.positions().get(INPUT).copied().unwrap_or(0);
    let at = position(&runner);
    if at != prepared.position {
        return Err(format!(
            "wrong recovered at input offset {at}, the checkpoint holds {}",
            prepared.position
        ));
    }
    let check = |runner: &TaskRunner<Fold>, upto: u64, when: &str| -> Result<(), String> {
        let state = State::of(runner).map_err(|e| format!("wrong cannot read the state {when}: {e}"))?;
        if state != State::model(prepared.seed, upto) {
            return Err(format!("wrong the state {when} differs from the model at offset {upto}"));
        }
        Ok(())
    };
    check(&runner, at, "after recovery")?;
    while position(&runner) < MESSAGES {
        runner.poll_once().map_err(|e| format!("wrong a run after recovery failed: {e}"))?;
        runner.commit().map_err(|e| format!("wrong a commit after recovery failed: {e}"))?;
    }
    runner.finish_snapshots().map_err(|e| format!("wrong a snapshot after recovery failed: {e}"))?;
    check(&runner, MESSAGES, "at the end")
}

fn once(k: usize, damage: impl FnOnce() -> Result<PathBuf, String>) -> Result<Option<Damage>, String> {
    if k > 0 { Ok(None) } else { damage().map(Damage::of) }
}

fn changelog_dir(dir: &Path) -> PathBuf {
    dir.join("stores").join("counts").join("changelog")
}

/// The `counts` changelog's segments by base offset.
fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, String> {
    let dir = changelog_dir(dir);
    let mut found = Vec::new();
    for entry in fs::read_dir(&dir).map_err(|e| format!("list {}: {e}", dir.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        let base = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".log"));
        if let Some(base) = base.and_then(|b| b.parse().ok()) {
            found.push((base, path));
        }
    }
    found.sort();
    Ok(found)
}

fn active(dir: &Path) -> Result<PathBuf, String> {
    segments(dir)?.pop().map(|(_, path)| path).ok_or("no segments".into())
}

fn index_of(segment: &Path) -> PathBuf {
    segment.with_extension("index")
}

/// A batch in a segment file: where it lies and the offsets it starts at and ends before.
#[derive(Clone, Copy, Debug)]
struct Batch {
    position: u64,
    len: u64,
    base: u64,
    end: u64,
}

/// The whole batches of a segment file, read from their headers (docs/format.md, "Batch").
fn batches(path: &Path) -> Result<Vec<Batch>, String> {
    let bytes = fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let word = |at: usize, n: usize| -> Option<u64> {
        let field = bytes.get(at..at + n)?;
        Some(field.iter().rev().fold(0, |v, b| v << 8 | u64::from(*b)))
    };
    let mut found = Vec::new();
    let mut at = 0;
    while let (Some(len), Some(base), Some(count)) = (word(at + 8, 4), word(at + 16, 8), word(at + 24, 4)) {
        if len < 48 || at + len as usize > bytes.len() {
            break;
        }
        found.push(Batch { position: at as u64, len, base, end: base + count });
        at += len as usize;
    }
    Ok(found)
}

fn garbage(len: usize) -> Vec<u8> {
    (0..len as u64).map(|i| (workload::mix(0xBAD, i) & 0xff) as u8).collect()
}

fn append(path: &Path, bytes: &[u8]) -> Result<PathBuf, String> {
    let mut contents = fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    contents.extend_from_slice(bytes);
    fs::write(path, contents).map_err(|e| format!("write {}: {e}", path.display()))?;
    Ok(path.to_path_buf())
}

fn flip(path: &Path, position: u64) -> Result<PathBuf, String> {
    let mut contents = fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let byte = contents.get_mut(position as usize).ok_or(format!("{} is too short", path.display()))?;
    *byte ^= 0x10;
    fs::write(path, contents).map_err(|e| format!("write {}: {e}", path.display()))?;
    Ok(path.to_path_buf())
}

fn truncate(path: &Path, len: u64) -> Result<PathBuf, String> {
    let file =
        fs::OpenOptions::new().write(true).open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
    file.set_len(len).map_err(|e| format!("truncate {}: {e}", path.display()))?;
    Ok(path.to_path_buf())
}

/// Cuts the last batch (past the checkpoint) at its k-th byte, for every byte.
fn tail_cut(_: &Prepared, dir: &Path, k: usize) -> Result<Option<Damage>, String> {
    let path = active(dir)?;
    let last = batches(&path)?.last().copied().ok_or("no batch")?;
    if k as u64 >= last.len {
        return Ok(None);
    }
    truncate(&path, last.position + k as u64).map(Damage::of)
}

fn tail_flip(_: &Prepared, dir: &Path, k: usize) -> Result<Option<Damage>, String> {
    let path = active(dir)?;
    let last = batches(&path)?.last().copied().ok_or("no batch")?;
    once(k, || flip(&path, last.position + last.len / 2))
}

/// The segments of the changelog below its active one.
fn sealed(dir: &Path) -> Result<Vec<(u64, PathBuf)>, String> {
    let mut all = segments(dir)?;
    all.pop();
    if all.len() < 3 {
        return Err(format!("only {} sealed segments", all.len()));
    }
    Ok(all)
}

/// Flips a bit in the newest committed batch of a sealed, marked segment past the newest snapshot (which
/// restore replays). Damage below the snapshot is not read by a restore: see
/// docs/crash-testing.md.
fn sealed_flip(prepared: &Prepared, dir: &Path, k: usize) -> Result<Option<Damage>, String> {
    let mut found = None;
    // Marked segments only (an index file, written once the segment was fsynced): a segment
    // sealed by a roll after the last sync is still a tail to recovery.
    for (_, path) in sealed(dir)?.iter().rev().filter(|(_, p)| index_of(p).exists()) {
        if let Some(batch) = batches(path)?.iter().rev().find(|b| b.end <= prepared.changelog_end) {
            found = Some((path.clone(), *batch));
            break;
        }
    }
    let (newest, batch) = found.ok_or("no committed batch in a sealed segment")?;
    let snapshot = snapshots(dir)?.pop().ok_or("no snapshot")?;
    let snapshot_offset: u64 = snapshot
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse().ok())
        .ok_or(format!("a snapshot name {}", snapshot.display()))?;
    if batch.base < snapshot_offset {
        return Err(format!("the newest committed sealed batch {batch:?} lies below the snapshot"));
    }
    once(k, || flip(&newest, batch.position + batch.len / 2))
}

/// The `counts` store's snapshot files, oldest first.
fn snapshots(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let dir = dir.join("stores").join("counts").join("snapshots");
    let mut found: Vec<PathBuf> = fs::read_dir(&dir)
        .map_err(|e| format!("list {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "snapshot"))
        .collect();
    found.sort();
    Ok(found)
}

/// Flips a bit in the last batch the checkpoint covers.
fn committed_flip(prepared: &Prepared, dir: &Path, k: usize) -> Result<Option<Damage>, String> {
    for (_, path) in segments(dir)?.iter().rev() {
        if let Some(batch) = batches(path)?.iter().rev().find(|b| b.end <= prepared.changelog_end) {
            return once(k, || flip(path, batch.position + batch.len / 2));
        }
    }
    Err("no batch below the checkpoint".into())
}

fn missing_segment(_: &Prepared, dir: &Path, k: usize) -> Result<Option<Damage>, String> {
    let sealed = sealed(dir)?;
    let (_, middle) = &sealed[sealed.len() / 2];
    once(k, || {
        for path in [middle.clone(), index_of(middle)] {
            fs::remove_file(&path).map_err(|e| format!("remove {}: {e}", path.display()))?;
        }
        Ok(middle.clone())
    })
}

/// A copy of the first segment under the name of the offset after its base.
fn duplicated_segment(_: &Prepared, dir: &Path, k: usize) -> Result<Option<Damage>, String> {
    let (base, first) = sealed(dir)?.swap_remove(0);
    let copy = first.with_file_name(format!("{:020}.log", base + 1));
    once(k, || fs::copy(&first, &copy).map(|_| copy.clone()).map_err(|e| e.to_string()))
}

/// Temporary files of every writer, as a crash leaves them.
fn stale_temp_files(_: &Prepared, dir: &Path, k: usize) -> Result<Option<Damage>, String> {
    if k > 0 {
        return Ok(None);
    }
    let active = active(dir)?;
    let name = active.file_name().and_then(|n| n.to_str()).ok_or("a segment name")?.to_string();
    let snapshots = dir.join("stores").join("counts").join("snapshots");
    let vanish = vec![
        dir.join(".checkpoint.tmp-4242-0"),
        changelog_dir(dir).join(format!("{name}.truncate.tmp")),
        snapshots.join(format!(".{:020}.snapshot.tmp-4242-0", 1)),
    ];
    for path in &vanish {
        fs::write(path, garbage(300)).map_err(|e| format!("write {}: {e}", path.display()))?;
    }
    Ok(Some(Damage { file: vanish[0].clone(), vanish }))
}

/// A pass's new segment written beside the segment it would replace, its swap record never
/// written: the pass did not commit.
fn uncommitted_compaction(_: &Prepared, dir: &Path, k: usize) -> Result<Option<Damage>, String> {
    let (_, first) = sealed(dir)?.swap_remove(0);
    let name = first.file_name().and_then(|n| n.to_str()).ok_or("a segment name")?;
    let output = first.with_file_name(format!("{name}.compacting"));
    if k > 0 {
        return Ok(None);
    }
    fs::write(&output, &fs::read(&first).map_err(|e| e.to_string())?[..1000]).map_err(|e| e.to_string())?;
    Ok(Some(Damage { file: output.clone(), vanish: vec![output] }))
}

fn snapshot_flip(_: &Prepared, dir: &Path, k: usize) -> Result<Option<Damage>, String> {
    let newest = snapshots(dir)?.pop().ok_or("no snapshot")?;
    once(k, || flip(&newest, 40))
}

fn checkpoint_truncated(_: &Prepared, dir: &Path, k: usize) -> Result<Option<Damage>, String> {
    let path = dir.join("checkpoint");
    let len = fs::metadata(&path).map_err(|e| e.to_string())?.len();
    once(k, || truncate(&path, len / 2))
}

/// The checkpoint with payload version 2, its checksum made right: a file from a newer build.
fn checkpoint_future_version(_: &Prepared, dir: &Path, k: usize) -> Result<Option<Damage>, String> {
    let path = dir.join("checkpoint");
    once(k, || {
        let mut bytes = fs::read(&path).map_err(|e| e.to_string())?;
        let body = bytes.len().checked_sub(4).ok_or("a checkpoint too short")?;
        bytes[12..16].copy_from_slice(&2u32.to_le_bytes());
        let crc = crc32c::crc32c(&bytes[..body]);
        bytes[body..].copy_from_slice(&crc.to_le_bytes());
        fs::write(&path, bytes).map_err(|e| e.to_string())?;
        Ok(path.clone())
    })
}

/// The changelog cut before the last batch the checkpoint covers (later segments removed): the
/// checkpoint points past the log's end.
fn checkpoint_ahead_of_log(prepared: &Prepared, dir: &Path, k: usize) -> Result<Option<Damage>, String> {
    if k > 0 {
        return Ok(None);
    }
    let segments = segments(dir)?;
    for (i, (_, path)) in segments.iter().enumerate().rev() {
        let Some(batch) = batches(path)?.iter().rev().find(|b| b.end <= prepared.changelog_end).copied()
        else {
            continue;
        };
        for (_, later) in &segments[i + 1..] {
            for file in [later.clone(), index_of(later)] {
                if file.exists() {
                    fs::remove_file(&file).map_err(|e| format!("remove {}: {e}", file.display()))?;
                }
            }
        }
        // Now the last segment: not sealed any more.
        let index = index_of(path);
        if index.exists() {
            fs::remove_file(&index).map_err(|e| format!("remove {}: {e}", index.display()))?;
        }
        return truncate(path, batch.position).map(Damage::of);
    }
    Err("no batch below the checkpoint".into())
}

/// Copies a directory tree (the damage is done to copies; the prepared one stays).
fn copy_dir(from: &Path, to: &Path) -> Result<(), String> {
    fs::create_dir_all(to).map_err(|e| format!("create {}: {e}", to.display()))?;
    for entry in fs::read_dir(from).map_err(|e| format!("list {}: {e}", from.display()))? {
        let entry = entry.map_err(|e| e.to_string())?;
        let target = to.join(entry.file_name());
        if entry.file_type().map_err(|e| e.to_string())?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            fs::copy(entry.path(), &target).map_err(|e| format!("copy {}: {e}", entry.path().display()))?;
        }
    }
    Ok(())
}
