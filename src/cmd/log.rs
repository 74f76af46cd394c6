//! `cairn log stat | dump | verify | repair | compact`.

use std::io::{self, BufRead, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use cairn::changelog::{
    Blocked, CompactOptions, CompactionReport, Inspection, LocatedRecord, Log, LogDir, LogOptions, Problem,
    RecoveryReport, Repair, RepairPlan, Severity,
};
use serde::Serialize;

use super::{
    BoxError, Exit, JsonBytes, JsonFinding, byte_progress, print_json, real_fs, require_exists, show_bytes,
    show_finding, show_ms, show_size, spinner,
};

/// Before a command opens a log (which recovers it): refuses damage opening would refuse
/// anyway, and, unless `recover`, a torn tail opening would cut without saving it, since those
/// bytes may hold records a task's checkpoint needs. Returns the inspection, or the exit code of
/// the refusal (after saying why on stderr).
pub fn check_before_open(dir: &Path, recover: bool) -> Result<Result<Inspection, Exit>, BoxError> {
    let inspection = LogDir::open(real_fs(), dir)?.stat()?;
    let damage = inspection.findings.iter().filter(|f| f.severity == Severity::Damage);
    let tears = inspection.findings.iter().filter(|f| matches!(f.problem, Problem::TornTail { .. }));
    if damage.clone().next().is_some() {
        for finding in damage {
            eprintln!("{}", show_finding(finding));
        }
        eprintln!(
            "{}: damaged; not opened. `cairn log verify` shows every problem, `cairn log repair` cuts it",
            dir.display()
        );
        return Ok(Err(Exit::Damage));
    }
    if !recover && tears.clone().next().is_some() {
        for finding in tears {
            eprintln!("{}", show_finding(finding));
        }
        eprintln!(
            "{}: opening would cut this torn tail without saving it. Pass --recover to let it, or run \
             `cairn log repair`, which saves the bytes first",
            dir.display()
        );
        return Ok(Err(Exit::Recoverable));
    }
    Ok(Ok(inspection))
}

/// `cairn log stat DIR`: the log's shape from its index headers (only the segments after the
/// last durability marker are read).
pub fn stat(dir: &Path, json: bool) -> Result<Exit, BoxError> {
    let inspection = LogDir::open(real_fs(), dir)?.stat()?;
    if json {
        print_json(&JsonInspection::new(&inspection))?;
    } else {
        print_inspection(&inspection)?;
    }
    Ok(Exit::Success)
}

/// `cairn log verify DIR`: every batch, index and segment boundary checked, read-only.
pub fn verify(dir: &Path, json: bool) -> Result<Exit, BoxError> {
    let log_dir = LogDir::open(real_fs(), dir)?;
    let bar = byte_progress(log_dir.bytes(), "verifying");
    let inspection = log_dir.verify(&mut |done| bar.set_position(done));
    bar.finish_and_clear();
    let inspection = inspection?;
    if json {
        print_json(&JsonInspection::new(&inspection))?;
    } else {
        print_inspection(&inspection)?;
        let verdict = match inspection.worst() {
            None => "clean: every batch, index and segment boundary checked".to_string(),
            Some(Severity::Recoverable) => {
                "recoverable: opening the log repairs everything found by itself".to_string()
            }
            Some(Severity::Damage) => format!(
                "DAMAGED: opening refuses this log or reads fail; `cairn log repair {}` cuts it at the first damage",
                dir.display()
            ),
        };
        println!("{verdict}");
    }
    Ok(exit_for(&inspection))
}

fn exit_for(inspection: &Inspection) -> Exit {
    match inspection.worst() {
        None => Exit::Success,
        Some(Severity::Recoverable) => Exit::Recoverable,
        Some(Severity::Damage) => Exit::Damage,
    }
}

/// Options of `cairn log dump`.
#[derive(Debug)]
pub struct DumpOptions {
    /// The first offset to show.
    pub from: u64,
    /// How many records at most.
    pub limit: Option<u64>,
    /// Keys only, no values.
    pub keys_only: bool,
    /// One JSON object per record.
    pub json: bool,
}

/// A record in `log dump --json`.
#[derive(Serialize)]
struct JsonRecord {
    offset: u64,
    timestamp_ms: i64,
    key: JsonBytes,
    /// `null` for a tombstone; absent with `--keys-only`.
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<Option<JsonBytes>>,
    tombstone: bool,
    segment: u64,
    position: u64,
}

/// `cairn log dump DIR`: records with offsets, timestamps, keys and values, read-only.
pub fn dump(dir: &Path, options: &DumpOptions) -> Result<Exit, BoxError> {
    let log_dir = LogDir::open(real_fs(), dir)?;
    let mut out = io::BufWriter::new(io::stdout().lock());
    let mut shown = 0u64;
    let mut failed: Option<io::Error> = None;
    let mut each = |located: &LocatedRecord<'_>| {
        if options.limit.is_some_and(|limit| shown >= limit) {
            return ControlFlow::Break(());
        }
        shown += 1;
        let written = write_record(&mut out, located, options);
        match written {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                failed = Some(e);
                ControlFlow::Break(())
            }
        }
    };
    let stopped = log_dir.for_each_record(options.from, &mut each)?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    out.flush()?;
    drop(out);
    match stopped {
        None => Ok(Exit::Success),
        Some(finding) if finding.severity == Severity::Recoverable => {
            eprintln!("end of the log at a torn tail (opening cuts it): {}", show_finding(&finding));
            Ok(Exit::Success)
        }
        Some(finding) => {
            eprintln!("stopped at {}", show_finding(&finding));
            Ok(Exit::Damage)
        }
    }
}

fn write_record(out: &mut impl Write, located: &LocatedRecord<'_>, options: &DumpOptions) -> io::Result<()> {
    let record = &located.record;
    if options.json {
        let json = JsonRecord {
            offset: record.offset,
            timestamp_ms: record.timestamp_ms,
            key: JsonBytes::new(record.key),
            value: (!options.keys_only).then(|| record.value.map(JsonBytes::new)),
            tombstone: record.value.is_none(),
            segment: located.segment_base,
            position: located.batch_position,
        };
        serde_json::to_writer(&mut *out, &json)?;
        return writeln!(out);
    }
    write!(
        out,
        "offset {} at {} key {}",
        record.offset,
        show_ms(record.timestamp_ms),
        show_bytes(record.key)
    )?;
    match (options.keys_only, record.value) {
        (_, None) => writeln!(out, " tombstone"),
        (true, Some(_)) => writeln!(out),
        (false, Some(value)) => writeln!(out, " value {}", show_bytes(value)),
    }
}

/// Options of `cairn log repair`.
#[derive(Debug)]
pub struct RepairOptions {
    /// Where the cut bytes go; default `<DIR>.repair-<seconds since the epoch>` beside `DIR`.
    pub save_to: Option<PathBuf>,
    /// Do not ask for confirmation.
    pub yes: bool,
    /// JSON output.
    pub json: bool,
}

#[derive(Serialize)]
struct JsonPlan {
    cause: Option<JsonFinding>,
    cut_file: Option<String>,
    cut_position: Option<u64>,
    cut_bytes: u64,
    removed_segments: Vec<String>,
    removed_indexes: Vec<String>,
    removed_swap_record: Option<String>,
    leftovers: Vec<String>,
    end_offset_before: u64,
    end_offset_after: u64,
    bytes_removed: u64,
}

impl JsonPlan {
    fn new(plan: &RepairPlan) -> JsonPlan {
        let show = |paths: &[PathBuf]| paths.iter().map(|p| p.display().to_string()).collect();
        JsonPlan {
            cause: plan.cause.as_ref().map(JsonFinding::new),
            cut_file: plan.cut.as_ref().map(|(file, _)| file.display().to_string()),
            cut_position: plan.cut.as_ref().map(|(_, position)| *position),
            cut_bytes: plan.cut_bytes,
            removed_segments: show(&plan.removed_segments),
            removed_indexes: show(&plan.removed_indexes),
            removed_swap_record: plan.removed_swap_record.as_ref().map(|p| p.display().to_string()),
            leftovers: show(&plan.leftovers),
            end_offset_before: plan.end_offset_before,
            end_offset_after: plan.end_offset_after,
            bytes_removed: plan.bytes_removed,
        }
    }
}

#[derive(Serialize)]
struct JsonRepair {
    plan: JsonPlan,
    applied: bool,
    saved_to: Option<String>,
    saved: Vec<String>,
    end_offset: Option<u64>,
    recovery: Option<JsonRecovery>,
}

/// `cairn log repair DIR`: cut the log at its first damage, after saving the cut bytes.
pub fn repair(dir: &Path, options: &RepairOptions) -> Result<Exit, BoxError> {
    require_exists(dir)?;
    let bar = byte_progress(LogDir::open(real_fs(), dir)?.bytes(), "verifying");
    let prepared = Repair::prepare(real_fs(), dir, &mut |done| bar.set_position(done));
    bar.finish_and_clear();
    let repair = prepared?;
    let plan = repair.plan().clone();
    let save_to = match &options.save_to {
        Some(path) => path.clone(),
        None => default_save_dir(dir)?,
    };
    // With --json the plan still goes to people, on stderr, before any question.
    let mut people: Box<dyn Write> =
        if options.json { Box::new(io::stderr()) } else { Box::new(io::stdout()) };
    for finding in &repair.inspection().findings {
        writeln!(people, "{}", show_finding(finding))?;
    }
    print_plan(&mut people, &plan, &save_to)?;
    people.flush()?;
    drop(people);
    if !plan.is_empty() && !options.yes && !confirm()? {
        if options.json {
            let report = JsonRepair {
                plan: JsonPlan::new(&plan),
                applied: false,
                saved_to: None,
                saved: Vec::new(),
                end_offset: None,
                recovery: None,
            };
            print_json(&report)?;
        } else {
            println!("not confirmed: nothing changed");
        }
        return Ok(Exit::Declined);
    }
    let report = repair.apply(&save_to)?;
    if options.json {
        let report = JsonRepair {
            plan: JsonPlan::new(&plan),
            applied: true,
            saved_to: (!report.saved.is_empty()).then(|| save_to.display().to_string()),
            saved: report.saved.iter().map(|p| p.display().to_string()).collect(),
            end_offset: Some(report.end_offset),
            recovery: Some(JsonRecovery::new(&report.recovery)),
        };
        print_json(&report)?;
    } else {
        if !report.saved.is_empty() {
            println!("saved {} files under {}", report.saved.len(), save_to.display());
        }
        print_recovery(&report.recovery);
        println!("repaired: the log opens and ends at offset {}", report.end_offset);
    }
    Ok(Exit::Success)
}

/// `<DIR>.repair-<seconds since the epoch>` beside the (absolute) log directory, with a
/// counter if that exists.
fn default_save_dir(dir: &Path) -> Result<PathBuf, BoxError> {
    let dir = std::fs::canonicalize(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let seconds = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "log".into());
    let mut candidate = dir.with_file_name(format!("{name}.repair-{seconds}"));
    let mut n = 1;
    while candidate.exists() {
        n += 1;
        candidate = dir.with_file_name(format!("{name}.repair-{seconds}-{n}"));
    }
    Ok(candidate)
}

fn print_plan(out: &mut dyn Write, plan: &RepairPlan, save_to: &Path) -> io::Result<()> {
    if plan.is_empty() {
        return writeln!(out, "nothing to repair: no damage, and nothing the repair would remove");
    }
    writeln!(out, "the repair will:")?;
    if let Some(cause) = &plan.cause {
        writeln!(out, "  cut at the first damage: {}", show_finding(cause))?;
    }
    if let Some((file, position)) = &plan.cut {
        writeln!(
            out,
            "  cut {} at byte {} ({} removed)",
            file.display(),
            position,
            show_size(plan.cut_bytes)
        )?;
    }
    for path in &plan.removed_segments {
        writeln!(out, "  remove segment {}", path.display())?;
    }
    for path in &plan.removed_indexes {
        writeln!(out, "  remove index {} (rebuilt on open)", path.display())?;
    }
    if let Some(path) = &plan.removed_swap_record {
        writeln!(out, "  remove the damaged compaction record {}", path.display())?;
    }
    for path in &plan.leftovers {
        writeln!(out, "  let opening remove the leftover {}", path.display())?;
    }
    writeln!(
        out,
        "  end offset {} -> {} ({} removed, all of it first copied under {})",
        plan.end_offset_before,
        plan.end_offset_after,
        show_size(plan.bytes_removed),
        save_to.display()
    )
}

/// Asks on stderr, reads the answer from stdin: only `y` or `yes` confirms.
fn confirm() -> Result<bool, BoxError> {
    eprint!("repair? [y/N] ");
    io::stderr().flush()?;
    let mut answer = String::new();
    io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
}

#[derive(Serialize)]
struct JsonCompaction {
    recovery: JsonRecovery,
    limit: u64,
    rolled_active: bool,
    dirty_segments: usize,
    keys_mapped: usize,
    clean_segments_rewritten: usize,
    clean_segments_skipped: usize,
    segments_written: usize,
    bytes_before: u64,
    bytes_after: u64,
    records_before: u64,
    records_after: u64,
    tombstones_dropped: u64,
    bytes_read: u64,
    bytes_written: u64,
    duration_ms: f64,
    blocked: Vec<String>,
}

/// `cairn log compact DIR`: one compaction pass below `limit` (default: the log's end).
pub fn compact(dir: &Path, limit: Option<u64>, recover: bool, json: bool) -> Result<Exit, BoxError> {
    if let Err(exit) = check_before_open(dir, recover)? {
        return Ok(exit);
    }
    let log = Log::open(real_fs(), dir, LogOptions::default())?;
    let recovery = log.recovery_report().clone();
    let limit = limit.unwrap_or_else(|| log.end_offset());
    let bar = spinner("compacting");
    let report = log.compact(limit, &CompactOptions::default());
    bar.finish_and_clear();
    let report = report?;
    log.close()?;
    if json {
        print_json(&json_compaction(&recovery, &report))?;
    } else {
        print_recovery(&recovery);
        print_compaction(&report);
    }
    Ok(Exit::Success)
}

fn json_compaction(recovery: &RecoveryReport, report: &CompactionReport) -> JsonCompaction {
    JsonCompaction {
        recovery: JsonRecovery::new(recovery),
        limit: report.limit,
        rolled_active: report.rolled_active,
        dirty_segments: report.dirty_segments,
        keys_mapped: report.keys_mapped,
        clean_segments_rewritten: report.clean_segments_rewritten,
        clean_segments_skipped: report.clean_segments_skipped,
        segments_written: report.segments_written,
        bytes_before: report.bytes_before,
        bytes_after: report.bytes_after,
        records_before: report.records_before,
        records_after: report.records_after,
        tombstones_dropped: report.tombstones_dropped,
        bytes_read: report.bytes_read,
        bytes_written: report.bytes_written,
        duration_ms: report.duration.as_secs_f64() * 1000.0,
        blocked: report.blocked.iter().map(show_blocked).collect(),
    }
}

fn print_compaction(report: &CompactionReport) {
    println!("compaction below offset {}:", report.limit);
    println!(
        "  {} dirty segments read ({} keys), {} clean segments rewritten, {} left alone{}",
        report.dirty_segments,
        report.keys_mapped,
        report.clean_segments_rewritten,
        report.clean_segments_skipped,
        if report.rolled_active { ", the active segment sealed first" } else { "" }
    );
    println!(
        "  {} segments replaced by {}: {} -> {}, {} -> {} records, {} tombstones dropped",
        report.dirty_segments + report.clean_segments_rewritten,
        report.segments_written,
        show_size(report.bytes_before),
        show_size(report.bytes_after),
        report.records_before,
        report.records_after,
        report.tombstones_dropped
    );
    println!(
        "  read {}, wrote {}, in {:.1} ms",
        show_size(report.bytes_read),
        show_size(report.bytes_written),
        report.duration.as_secs_f64() * 1000.0
    );
    for blocked in &report.blocked {
        println!("  blocked: {}", show_blocked(blocked));
    }
}

fn show_blocked(blocked: &Blocked) -> String {
    match blocked {
        Blocked::Limit { limit, dirty_bytes } => {
            format!("{} of dirty segments at or above the limit {limit}", show_size(*dirty_bytes))
        }
        Blocked::ActiveSegment { bytes } => {
            format!("the active segment ({}) holds records below the limit", show_size(*bytes))
        }
        Blocked::DeleteHorizon { tombstones, earliest_drop_ms } => format!(
            "{tombstones} tombstones kept until their delete horizon (the first at {})",
            show_ms(*earliest_drop_ms)
        ),
        Blocked::KeyMapFull { dirty_bytes } => {
            format!("the key map filled; {} of dirty segments wait", show_size(*dirty_bytes))
        }
        other => format!("{other:?}"),
    }
}

#[derive(Serialize)]
struct JsonRecovery {
    tail_cut: Option<JsonTailCut>,
    indexes_rebuilt: usize,
    temp_files_removed: usize,
    compaction_completed: bool,
}

#[derive(Serialize)]
struct JsonTailCut {
    file: String,
    position: u64,
    bytes: u64,
    records: u64,
}

impl JsonRecovery {
    fn new(report: &RecoveryReport) -> JsonRecovery {
        JsonRecovery {
            tail_cut: report.tail_cut.as_ref().map(|cut| JsonTailCut {
                file: cut.file.display().to_string(),
                position: cut.position,
                bytes: cut.bytes,
                records: cut.records,
            }),
            indexes_rebuilt: report.indexes_rebuilt,
            temp_files_removed: report.temp_files_removed,
            compaction_completed: report.compaction_completed,
        }
    }
}

/// Says what opening the log changed, if anything.
pub fn print_recovery(report: &RecoveryReport) {
    if let Some(cut) = &report.tail_cut {
        println!(
            "opening cut a torn tail: {} at byte {} ({} bytes, {} records)",
            cut.file.display(),
            cut.position,
            cut.bytes,
            cut.records
        );
    }
    if report.indexes_rebuilt > 0 || report.temp_files_removed > 0 || report.compaction_completed {
        println!(
            "opening rebuilt {} index files, removed {} leftover files{}",
            report.indexes_rebuilt,
            report.temp_files_removed,
            if report.compaction_completed { ", finished a committed compaction" } else { "" }
        );
    }
}

/// An inspection in JSON (`log stat`, `log verify`).
#[derive(Serialize)]
pub struct JsonInspection {
    dir: String,
    verified: bool,
    clean: bool,
    worst: Option<String>,
    start_offset: u64,
    end_offset: u64,
    records: u64,
    bytes: u64,
    dirty_ratio: f64,
    last_compaction_ms: Option<i64>,
    segments: Vec<JsonSegment>,
    findings: Vec<JsonFinding>,
}

#[derive(Serialize)]
struct JsonSegment {
    base_offset: u64,
    file: String,
    bytes: u64,
    next_offset: u64,
    valid_bytes: u64,
    records: u64,
    tombstones: u64,
    max_timestamp_ms: Option<i64>,
    compacted_ms: Option<i64>,
    durable: bool,
    scanned: bool,
    beyond_end: bool,
}

impl JsonInspection {
    /// The inspection as JSON shows it.
    pub fn new(inspection: &Inspection) -> JsonInspection {
        JsonInspection {
            dir: inspection.dir.display().to_string(),
            verified: inspection.verified,
            clean: inspection.findings.is_empty(),
            worst: inspection.worst().map(|s| s.to_string()),
            start_offset: inspection.start_offset,
            end_offset: inspection.end_offset,
            records: inspection.records(),
            bytes: inspection.bytes(),
            dirty_ratio: inspection.dirty_ratio(),
            last_compaction_ms: inspection.last_compaction_ms(),
            segments: inspection
                .segments
                .iter()
                .map(|s| JsonSegment {
                    base_offset: s.base_offset,
                    file: s.file.display().to_string(),
                    bytes: s.bytes,
                    next_offset: s.next_offset,
                    valid_bytes: s.valid_bytes,
                    records: s.records,
                    tombstones: s.tombstones,
                    max_timestamp_ms: s.max_timestamp_ms,
                    compacted_ms: s.compacted_ms,
                    durable: s.durable,
                    scanned: s.scanned,
                    beyond_end: s.beyond_end,
                })
                .collect(),
            findings: inspection.findings.iter().map(JsonFinding::new).collect(),
        }
    }
}

/// Prints an inspection for people.
pub fn print_inspection(inspection: &Inspection) -> io::Result<()> {
    let mut out = io::stdout().lock();
    let sealed = inspection.segments.len().saturating_sub(1);
    writeln!(out, "log {}", inspection.dir.display())?;
    writeln!(
        out,
        "  segments      {} ({} sealed, {} in the known-durable region)",
        inspection.segments.len(),
        sealed,
        inspection.segments.iter().filter(|s| s.durable).count()
    )?;
    let tombstones: u64 = inspection.segments.iter().filter(|s| !s.beyond_end).map(|s| s.tombstones).sum();
    writeln!(
        out,
        "  offsets       {} .. {} ({} records, {} tombstones)",
        inspection.start_offset,
        inspection.end_offset,
        inspection.records(),
        tombstones
    )?;
    writeln!(out, "  bytes         {} ({})", inspection.bytes(), show_size(inspection.bytes()))?;
    writeln!(out, "  dirty ratio   {:.1}% of the bytes not yet compacted", inspection.dirty_ratio() * 100.0)?;
    let last = inspection.last_compaction_ms().map_or_else(|| "never".to_string(), show_ms);
    writeln!(out, "  compacted     {last}")?;
    if let Some(max) = inspection.segments.iter().filter_map(|s| s.max_timestamp_ms).max() {
        writeln!(out, "  newest record {}", show_ms(max))?;
    }
    writeln!(
        out,
        "  {:>20} {:>20} {:>12} {:>10} {:>10}  state",
        "base offset", "end offset", "bytes", "records", "tombstones"
    )?;
    for (i, s) in inspection.segments.iter().enumerate() {
        let state = if s.beyond_end {
            "beyond the end (opening removes it)".to_string()
        } else {
            let mut state = vec![match (i == sealed, s.durable) {
                (true, _) => "active",
                (false, true) => "sealed, durable",
                (false, false) => "sealed, not yet marked durable",
            }];
            if s.compacted_ms.is_some() {
                state.push("compacted");
            }
            if !s.scanned {
                state.push("from index");
            }
            state.join(", ")
        };
        writeln!(
            out,
            "  {:>20} {:>20} {:>12} {:>10} {:>10}  {state}",
            s.base_offset, s.next_offset, s.bytes, s.records, s.tombstones
        )?;
    }
    if inspection.findings.is_empty() {
        writeln!(
            out,
            "  no problems found{}",
            if inspection.verified {
                ""
            } else {
                " (sealed segments not read: `cairn log verify` reads them)"
            }
        )?;
    }
    for finding in &inspection.findings {
        writeln!(out, "  {}", show_finding(finding))?;
    }
    Ok(())
}
