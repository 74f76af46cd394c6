//! `cairn store stat | get | scan`.

use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

use cairn::changelog::{Inspection, LogDir};
use cairn::store::{ProgressListener, RestoreSource, SkipReason, Store, StoreOptions};
use serde::Serialize;

use super::log::{JsonInspection, check_before_open};
use super::{
    BoxError, Exit, JsonBytes, byte_progress, parse_hex, print_json, real_fs, show_bytes, show_size,
};

/// The store's changelog and snapshot directories (cairn-store's layout, docs/format.md).
const CHANGELOG_DIR: &str = "changelog";
const SNAPSHOT_DIR: &str = "snapshots";
const SNAPSHOT_SUFFIX: &str = ".snapshot";

/// Opens the store in `dir`, restoring it with a progress bar, after looking at its changelog
/// (returned): refuses a directory without a store's changelog (opening would create an empty
/// store there), a damaged changelog, and, unless `recover`, one with a torn tail that opening
/// would cut (`Err(exit)`, after saying why).
fn open(dir: &Path, recover: bool) -> Result<Result<(Store, Inspection), Exit>, BoxError> {
    let changelog = dir.join(CHANGELOG_DIR);
    if let Err(e) = LogDir::open(real_fs(), &changelog) {
        return Err(format!("{}: not a store directory ({e})", dir.display()).into());
    }
    let inspection = match check_before_open(&changelog, recover)? {
        Ok(inspection) => inspection,
        Err(exit) => return Ok(Err(exit)),
    };
    let bar = byte_progress(0, "restoring");
    let progress_bar = bar.clone();
    let mut options = StoreOptions::default();
    options.on_restore_progress = Some(ProgressListener(Arc::new(move |progress| {
        progress_bar.set_length(progress.bytes_total);
        progress_bar.set_position(progress.bytes_done);
    })));
    let store = Store::open(real_fs(), dir, options);
    bar.finish_and_clear();
    let store = store?;
    let recovery = store.changelog().recovery_report();
    if let Some(cut) = &recovery.tail_cut {
        eprintln!(
            "opening cut a torn tail: {} at byte {} ({} bytes, {} records)",
            cut.file.display(),
            cut.position,
            cut.bytes,
            cut.records
        );
    }
    Ok(Ok((store, inspection)))
}

/// A key given on the command line: text, or hex with `--hex`.
pub fn parse_key(text: &str, is_hex: bool) -> Result<Vec<u8>, BoxError> {
    if is_hex { Ok(parse_hex(text)?) } else { Ok(text.as_bytes().to_vec()) }
}

#[derive(Serialize)]
struct JsonGet {
    key: JsonBytes,
    found: bool,
    value: Option<JsonBytes>,
}

/// `cairn store get DIR KEY`.
pub fn get(dir: &Path, key: &[u8], recover: bool, json: bool) -> Result<Exit, BoxError> {
    let store = match open(dir, recover)? {
        Ok((store, _)) => store,
        Err(exit) => return Ok(exit),
    };
    let value = store.get(key)?;
    store.close()?;
    if json {
        print_json(&JsonGet {
            key: JsonBytes::new(key),
            found: value.is_some(),
            value: value.as_deref().map(JsonBytes::new),
        })?;
    } else {
        match &value {
            Some(value) => println!("{}", show_bytes(value)),
            None => eprintln!("{}: no such key", show_bytes(key)),
        }
    }
    Ok(if value.is_some() { Exit::Success } else { Exit::NotFound })
}

/// Options of `cairn store scan`.
#[derive(Debug)]
pub struct ScanOptions {
    /// The first key (inclusive).
    pub from: Option<Vec<u8>>,
    /// The key to stop before (exclusive).
    pub to: Option<Vec<u8>>,
    /// How many entries at most.
    pub limit: Option<u64>,
    /// Keys only.
    pub keys_only: bool,
    /// Let opening cut a torn tail.
    pub recover: bool,
    /// One JSON object per entry.
    pub json: bool,
}

#[derive(Serialize)]
struct JsonEntry {
    key: JsonBytes,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<JsonBytes>,
}

/// `cairn store scan DIR`: entries in key byte order.
pub fn scan(dir: &Path, options: &ScanOptions) -> Result<Exit, BoxError> {
    let store = match open(dir, options.recover)? {
        Ok((store, _)) => store,
        Err(exit) => return Ok(exit),
    };
    let entries = match (&options.from, &options.to) {
        (from, Some(to)) => store.range(from.as_deref().unwrap_or_default(), to)?,
        _ => store.iter()?,
    };
    let mut out = io::BufWriter::new(io::stdout().lock());
    let mut shown = 0;
    for entry in entries {
        if options.limit.is_some_and(|limit| shown >= limit) {
            break;
        }
        let (key, value) = entry?;
        if options.from.as_ref().is_some_and(|from| key < *from) {
            continue;
        }
        shown += 1;
        if options.json {
            let value = (!options.keys_only).then(|| JsonBytes::new(&value));
            serde_json::to_writer(&mut out, &JsonEntry { key: JsonBytes::new(&key), value })?;
            writeln!(out)?;
        } else if options.keys_only {
            writeln!(out, "{}", show_bytes(&key))?;
        } else {
            writeln!(out, "{} = {}", show_bytes(&key), show_bytes(&value))?;
        }
    }
    out.flush()?;
    drop(out);
    store.close()?;
    Ok(Exit::Success)
}

#[derive(Serialize)]
struct JsonStoreStat {
    dir: String,
    keys: usize,
    end_offset: u64,
    restore: JsonRestore,
    snapshots: Vec<JsonSnapshot>,
    changelog: JsonInspection,
}

#[derive(Serialize)]
struct JsonRestore {
    /// `"snapshot"` or `"replay"`.
    source: &'static str,
    snapshot_offset: Option<u64>,
    records_replayed: u64,
    bytes_read: u64,
    duration_ms: f64,
    skipped_snapshots: Vec<JsonSkipped>,
}

#[derive(Serialize)]
struct JsonSkipped {
    file: String,
    offset: u64,
    reason: String,
}

#[derive(Serialize)]
struct JsonSnapshot {
    file: String,
    offset: Option<u64>,
    bytes: u64,
    used: bool,
}

/// `cairn store stat DIR`: size, restore and snapshot state, and the changelog's shape.
pub fn stat(dir: &Path, recover: bool, json: bool) -> Result<Exit, BoxError> {
    // The changelog as it was before the store was opened (and recovered).
    let (store, changelog) = match open(dir, recover)? {
        Ok(opened) => opened,
        Err(exit) => return Ok(exit),
    };
    let report = store.restore_report().clone();
    let (keys, end_offset) = (store.len(), store.end_offset());
    store.close()?;
    let used = match &report.source {
        RestoreSource::Snapshot { path, .. } => Some(path.clone()),
        _ => None,
    };
    let mut snapshots = Vec::new();
    let snapshot_dir = dir.join(SNAPSHOT_DIR);
    let mut names: Vec<_> = std::fs::read_dir(&snapshot_dir)
        .map_err(|e| format!("list {}: {e}", snapshot_dir.display()))?
        .filter_map(|entry| entry.ok())
        .collect();
    names.sort_by_key(|entry| entry.file_name());
    for entry in names {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(offset) = name.strip_suffix(SNAPSHOT_SUFFIX) else { continue };
        let path = entry.path();
        let bytes = entry.metadata().map(|m| m.len()).unwrap_or(0);
        let used = used.as_ref().is_some_and(|u| *u == path);
        snapshots.push(JsonSnapshot {
            file: path.display().to_string(),
            offset: offset.parse().ok(),
            bytes,
            used,
        });
    }
    let restore = JsonRestore {
        source: if used.is_some() { "snapshot" } else { "replay" },
        snapshot_offset: match &report.source {
            RestoreSource::Snapshot { offset, .. } => Some(*offset),
            _ => None,
        },
        records_replayed: report.records_replayed,
        bytes_read: report.bytes_read,
        duration_ms: report.duration.as_secs_f64() * 1000.0,
        skipped_snapshots: report
            .skipped_snapshots
            .iter()
            .map(|s| JsonSkipped {
                file: s.path.display().to_string(),
                offset: s.offset,
                reason: show_skip(&s.reason),
            })
            .collect(),
    };
    if json {
        let stat = JsonStoreStat {
            dir: dir.display().to_string(),
            keys,
            end_offset,
            restore,
            snapshots,
            changelog: JsonInspection::new(&changelog),
        };
        print_json(&stat)?;
        return Ok(Exit::Success);
    }
    println!("store {}", dir.display());
    println!("  keys          {keys}");
    println!(
        "  changelog     {} segments, {} ({} records), ends at offset {end_offset}",
        changelog.segments.len(),
        show_size(changelog.bytes()),
        changelog.records()
    );
    println!("  dirty ratio   {:.1}% of the changelog not yet compacted", changelog.dirty_ratio() * 100.0);
    match restore.snapshot_offset {
        Some(offset) => println!(
            "  restored      from the snapshot at offset {offset}, then {} records replayed ({}), in {:.1} ms",
            restore.records_replayed,
            show_size(restore.bytes_read),
            restore.duration_ms
        ),
        None => println!(
            "  restored      by replaying the changelog: {} records ({}), in {:.1} ms",
            restore.records_replayed,
            show_size(restore.bytes_read),
            restore.duration_ms
        ),
    }
    if snapshots.is_empty() {
        println!("  snapshots     none");
    }
    for snapshot in &snapshots {
        let offset = snapshot.offset.map_or_else(|| "?".to_string(), |o| o.to_string());
        println!(
            "  snapshot      at offset {offset}, {}{}",
            show_size(snapshot.bytes),
            if snapshot.used { " (used)" } else { "" }
        );
    }
    for skipped in &restore.skipped_snapshots {
        println!("  skipped       {} (offset {}): {}", skipped.file, skipped.offset, skipped.reason);
    }
    for finding in &changelog.findings {
        println!("  changelog: {}", super::show_finding(finding));
    }
    Ok(Exit::Success)
}

fn show_skip(reason: &SkipReason) -> String {
    match reason {
        SkipReason::PastLogEnd { end } => format!("covers more than the changelog, which ends at {end}"),
        SkipReason::Unreadable(e) => format!("unreadable: {e}"),
        SkipReason::BadEntries { position, what } => {
            format!("entries do not decode at byte {position}: {what}")
        }
        SkipReason::Inconsistent { entries } => {
            format!("{entries} entries point where the changelog has no such record")
        }
        other => format!("{other:?}"),
    }
}
