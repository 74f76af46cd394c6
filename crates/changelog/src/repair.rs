//! The explicit repair of a damaged log (DESIGN P5: never silent, a separate operation).
//!
//! [`Repair::prepare`] takes the log directory's lock, verifies every batch
//! ([`LogDir::verify`]) and plans: cut the log at its first invalid batch or segment boundary,
//! whether in the known-durable region (damage opening refuses) or in the tail window (a torn
//! tail opening would cut by itself), remove the segments after it, and remove index files
//! that are damaged or disagree with their segment (opening rebuilds them) and a damaged
//! compaction commit record. Nothing changes until [`Repair::apply`], which first copies every
//! byte it will remove into a directory of the caller's choosing and makes the copies durable,
//! then changes the log in an order that a crash at any step leaves repairable by running the
//! repair again, and finally opens the log (the rest is ordinary recovery) to check it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_fs::{FileLock, Fs, OpenMode};

use crate::compaction::swap::{self, SWAP_NAME, remove_if_present};
use crate::error::{CorruptionKind, Error, Result};
use crate::inspect::{Finding, Inspection, LogDir, Problem};
use crate::log::Log;
use crate::mutants;
use crate::options::LogOptions;
use crate::recovery::{LOCK_NAME, RecoveryReport};
use crate::segment::{index_name, log_name};

/// What a [`Repair`] will do, for the operator to confirm.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RepairPlan {
    /// The finding the log is cut at, if it is cut.
    pub cause: Option<Finding>,
    /// The segment file cut short, and the byte position it is cut at.
    pub cut: Option<(PathBuf, u64)>,
    /// Bytes removed from that file.
    pub cut_bytes: u64,
    /// Segment files removed whole, in offset order.
    pub removed_segments: Vec<PathBuf>,
    /// Index files removed: those of the cut and removed segments, and damaged ones (opening
    /// rebuilds them).
    pub removed_indexes: Vec<PathBuf>,
    /// The damaged compaction commit record, removed.
    pub removed_swap_record: Option<PathBuf>,
    /// Leftover files (temporary files, the output of a compaction pass that did not commit,
    /// index files without a segment), which the open at the end of the repair removes: saved
    /// first like the rest.
    pub leftovers: Vec<PathBuf>,
    /// The log's end offset before the repair, as its files claim it (the furthest segment's
    /// end).
    pub end_offset_before: u64,
    /// The log's end offset after the repair.
    pub end_offset_after: u64,
    /// Bytes removed in all (segments and index files), all of them saved first.
    pub bytes_removed: u64,
}

impl RepairPlan {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.cut.is_none()
            && self.removed_segments.is_empty()
            && self.removed_indexes.is_empty()
            && self.removed_swap_record.is_none()
            && self.leftovers.is_empty()
    }
}

/// What [`Repair::apply`] did.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RepairReport {
    /// The files written under the save directory, each holding the bytes removed from the file
    /// of the same name (a cut segment's as `<name>.cut-at-<position>`).
    pub saved: Vec<PathBuf>,
    /// What opening the repaired log did.
    pub recovery: RecoveryReport,
    /// The log's end offset after the repair.
    pub end_offset: u64,
}

/// A repair of a log directory, planned and holding the directory's lock.
#[derive(Debug)]
pub struct Repair {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    lock: FileLock,
    inspection: Inspection,
    plan: RepairPlan,
    /// The plan by base offset: the segment cut and where, the segments removed, the indexes
    /// removed.
    cut_base: Option<(u64, u64)>,
    removed_bases: Vec<u64>,
    index_bases: Vec<u64>,
}

fn io<'p>(op: &'static str, path: &'p Path) -> impl FnOnce(std::io::Error) -> Error + 'p {
    move |e| Error::io(op, path, e)
}

impl Repair {
    /// Takes the lock of the log in `dir`, verifies it and plans the repair. `progress` is
    /// called with the bytes verified so far (see [`LogDir::verify`]).
    ///
    /// # Errors
    /// [`Error::Locked`] if the log is open elsewhere; [`Error::NotALog`]; [`Error::Io`] if a
    /// file cannot be read.
    pub fn prepare(fs: Arc<dyn Fs>, dir: impl AsRef<Path>, progress: &mut dyn FnMut(u64)) -> Result<Repair> {
        let dir = dir.as_ref().to_path_buf();
        let log_dir = LogDir::open(Arc::clone(&fs), &dir)?;
        let lock_path = dir.join(LOCK_NAME);
        let lock = fs.lock_file(&lock_path).map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock => Error::Locked { path: lock_path.clone() },
            _ => Error::io("lock", &lock_path, e),
        })?;
        // Listed again under the lock: a writer may have changed the directory.
        let log_dir = LogDir::open(Arc::clone(&fs), log_dir.dir())?;
        let inspection = log_dir.verify(progress)?;
        let mut repair = Repair {
            fs,
            dir,
            lock,
            plan: RepairPlan {
                cause: None,
                cut: None,
                cut_bytes: 0,
                removed_segments: Vec::new(),
                removed_indexes: Vec::new(),
                removed_swap_record: None,
                leftovers: Vec::new(),
                end_offset_before: inspection.segments.iter().map(|s| s.next_offset).max().unwrap_or(0),
                end_offset_after: inspection.end_offset,
                bytes_removed: 0,
            },
            inspection,
            cut_base: None,
            removed_bases: Vec::new(),
            index_bases: Vec::new(),
        };
        repair.make_plan(&log_dir)?;
        Ok(repair)
    }

    fn make_plan(&mut self, log_dir: &LogDir) -> Result<()> {
        let segments: Vec<(u64, PathBuf, Option<PathBuf>, u64)> = log_dir
            .segment_files()
            .map(|(base, log, index, bytes)| (base, log.to_path_buf(), index.map(Path::to_path_buf), bytes))
            .collect();
        let position_of = |file: &Path| segments.iter().position(|(_, log, _, _)| log == file);
        // The first finding that ends the log: everything from there on goes.
        let first_cut = self.inspection.findings.iter().find_map(|finding| {
            let at = position_of(&finding.file)?;
            match &finding.problem {
                Problem::Data(CorruptionKind::SegmentGap { .. })
                | Problem::TornTail { kind: CorruptionKind::SegmentGap { .. }, .. } => {
                    Some((finding.clone(), at, None))
                }
                Problem::Data(CorruptionKind::SegmentMissing { .. }) => None,
                Problem::Data(_) | Problem::TornTail { .. } => {
                    Some((finding.clone(), at, Some(finding.position)))
                }
                _ => None,
            }
        });
        let plan = &mut self.plan;
        let mut kept = segments.len();
        if let Some((finding, at, position)) = first_cut {
            match position {
                Some(position) => {
                    if let Some((base, log, _, bytes)) = segments.get(at) {
                        plan.cut = Some((log.clone(), position));
                        plan.cut_bytes = bytes - position;
                        plan.bytes_removed += bytes - position;
                        self.cut_base = Some((*base, position));
                    }
                    kept = at + 1;
                }
                None => kept = at,
            }
            plan.cause = Some(finding);
        }
        for (base, log, _, bytes) in segments.iter().skip(kept) {
            plan.removed_segments.push(log.clone());
            plan.bytes_removed += bytes;
            self.removed_bases.push(*base);
        }
        // Index files: of every segment removed or cut, and damaged ones of the segments kept.
        let damaged_index = |path: &Path| {
            self.inspection.findings.iter().any(|f| {
                f.file == path
                    && matches!(
                        f.problem,
                        Problem::IndexDamaged | Problem::IndexMismatch { .. } | Problem::IndexEntry { .. }
                    )
            })
        };
        let last_kept = kept.checked_sub(1);
        for (i, (base, _, index, _)) in segments.iter().enumerate() {
            let Some(index) = index else { continue };
            let cut_here = self.cut_base.is_some_and(|(b, _)| b == *base);
            // The last segment kept becomes the active one: a marker there would say that the
            // segments after it are missing.
            let becomes_last = last_kept == Some(i)
                && (kept < segments.len()
                    || self.inspection.findings.iter().any(|f| {
                        matches!(f.problem, Problem::Data(CorruptionKind::SegmentMissing { .. }))
                            && position_of(&f.file) == Some(i)
                    }));
            if i >= kept || cut_here || becomes_last || damaged_index(index) {
                plan.bytes_removed += self.fs.file_len(index).map_err(io("stat", index))?;
                plan.removed_indexes.push(index.clone());
                self.index_bases.push(*base);
            }
        }
        if let Some(finding) =
            self.inspection.findings.iter().find(|f| matches!(f.problem, Problem::SwapRecord(_)))
        {
            plan.bytes_removed += self.fs.file_len(&finding.file).map_err(io("stat", &finding.file))?;
            plan.removed_swap_record = Some(finding.file.clone());
        }
        for finding in self.inspection.findings.iter().filter(|f| f.problem == Problem::Leftover) {
            plan.bytes_removed += self.fs.file_len(&finding.file).map_err(io("stat", &finding.file))?;
            plan.leftovers.push(finding.file.clone());
        }
        Ok(())
    }

    /// What the repair will do.
    pub fn plan(&self) -> &RepairPlan {
        &self.plan
    }

    /// The verification the plan is based on.
    pub fn inspection(&self) -> &Inspection {
        &self.inspection
    }

    /// Copies every byte the plan removes into `save_to` (a new directory, made durable before
    /// the log is touched), applies the plan, releases the lock, opens the log (finishing the
    /// rest of recovery: leftovers removed, indexes rebuilt) and closes it.
    ///
    /// # Errors
    /// [`Error::Io`] if `save_to` exists or any step fails (a crash or error part-way leaves a
    /// log that running the repair again finishes, with the copies already saved); an error
    /// from opening the repaired log.
    pub fn apply(self, save_to: &Path) -> Result<RepairReport> {
        let Repair { fs, dir, lock, plan, cut_base, removed_bases, index_bases, .. } = self;
        let fs_ref = fs.as_ref();
        let mut saved = Vec::new();
        if !plan.is_empty() {
            if fs_ref.exists(save_to).map_err(io("stat", save_to))? {
                return Err(Error::io(
                    "create",
                    save_to,
                    std::io::Error::new(std::io::ErrorKind::AlreadyExists, "the save directory exists"),
                ));
            }
            cairn_fs::create_dir_durably(fs_ref, save_to).map_err(|e| Error::io(e.op, e.path, e.source))?;
            if let Some((path, position)) = &plan.cut {
                let name = format!("{}.cut-at-{position}", file_name(path));
                saved.push(save_copy(fs_ref, path, *position, &save_to.join(name))?);
            }
            let whole = plan
                .removed_segments
                .iter()
                .chain(&plan.removed_indexes)
                .chain(&plan.removed_swap_record)
                .chain(&plan.leftovers);
            for path in whole {
                saved.push(save_copy(fs_ref, path, 0, &save_to.join(file_name(path)))?);
            }
            if !mutants::active(mutants::REPAIR_REMOVES_BEFORE_SAVED) {
                fs_ref.sync_dir(save_to).map_err(io("sync_dir", save_to))?;
            }

            // The compaction record first: damaged, it is removed (its uncommitted output goes
            // at the next open); whole, its pass is finished, so that the files below carry
            // their final names.
            if let Some(path) = &plan.removed_swap_record {
                remove_if_present(fs_ref, path)?;
                fs_ref.sync_dir(&dir).map_err(io("sync_dir", &dir))?;
            } else if fs_ref.exists(&dir.join(SWAP_NAME)).map_err(io("stat", &dir.join(SWAP_NAME)))? {
                swap::recover(fs_ref, &dir)?;
            }
            // Markers before data, so that a crash in between never leaves a marked segment
            // without the data its marker describes.
            for base in &index_bases {
                remove_if_present(fs_ref, &dir.join(index_name(*base)))?;
            }
            fs_ref.sync_dir(&dir).map_err(io("sync_dir", &dir))?;
            for base in removed_bases.iter().rev() {
                remove_if_present(fs_ref, &dir.join(log_name(*base)))?;
            }
            if let Some((base, position)) = cut_base {
                let path = dir.join(log_name(base));
                let file = fs_ref.open(&path, OpenMode::ReadWrite).map_err(io("open", &path))?;
                file.set_len(position).map_err(io("set_len", &path))?;
                file.sync_data().map_err(io("sync_data", &path))?;
            }
            fs_ref.sync_dir(&dir).map_err(io("sync_dir", &dir))?;
        }
        // Opening takes the lock itself. Another process may open the log in between: then this
        // open fails with `Locked`, after the repair is complete and durable.
        drop(lock);
        let log = Log::open(Arc::clone(&fs), &dir, LogOptions::default())?;
        let recovery = log.recovery_report().clone();
        let end_offset = log.end_offset();
        log.close()?;
        Ok(RepairReport { saved, recovery, end_offset })
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Copies `from[position..]` into the new file `to`, durably (its directory entry is made
/// durable by the caller's directory sync).
fn save_copy(fs: &dyn Fs, from: &Path, position: u64, to: &Path) -> Result<PathBuf> {
    const CHUNK: u64 = 1 << 20;
    let source = fs.open(from, OpenMode::Read).map_err(io("open", from))?;
    let len = source.len().map_err(io("stat", from))?;
    let target = fs.open(to, OpenMode::CreateNew).map_err(io("create", to))?;
    let mut buf = Vec::new();
    let mut at = position;
    while at < len {
        let n = CHUNK.min(len - at);
        buf.resize(n as usize, 0);
        source.read_exact_at(&mut buf, at).map_err(io("read", from))?;
        target.write_all_at(&buf, at - position).map_err(io("write", to))?;
        at += n;
    }
    if !mutants::active(mutants::REPAIR_REMOVES_BEFORE_SAVED) {
        target.sync_all().map_err(io("sync_all", to))?;
    }
    Ok(to.to_path_buf())
}
