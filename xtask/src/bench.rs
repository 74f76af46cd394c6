//! `cargo xtask bench`: runs the criterion benches and reports each figure beside the baseline
//! measured in the same run, as a ratio (medians; the machine is noisy).

use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

use crate::{Result, cargo, root};

/// How a figure is read.
#[derive(Clone, Copy)]
enum Unit {
    /// Bytes per second, from the bench's byte throughput.
    BytesPerSec,
    /// Records (elements) per second, from the bench's element throughput or from the byte
    /// throughput divided by the record size given.
    RecordsPerSec(Option<u64>),
    /// Median time per iteration; lower is better.
    Latency,
}

/// One line of the report: a bench, its baseline, and the project's target for the ratio.
struct Row {
    label: &'static str,
    bench: &'static str,
    baseline: &'static str,
    unit: Unit,
    target: &'static str,
}

const ROWS: &[Row] = &[
    Row {
        label: "append 100 B values, no fsync",
        bench: "append/log_100B",
        baseline: "append/raw_100B",
        unit: Unit::RecordsPerSec(Some(116)),
        target: ">= 3 M records/s",
    },
    Row {
        label: "append 100 B values, no fsync (bytes)",
        bench: "append/log_100B",
        baseline: "append/raw_100B",
        unit: Unit::BytesPerSec,
        target: "",
    },
    Row {
        label: "append 1 KiB values, no fsync",
        bench: "append/log_1KiB",
        baseline: "append/raw_1KiB",
        unit: Unit::BytesPerSec,
        target: ">= 0.70 of raw",
    },
    Row {
        label: "append + sync per record (latency)",
        bench: "sync/log_every_append",
        baseline: "sync/raw_write_fdatasync",
        unit: Unit::Latency,
        target: "<= 1.2x raw",
    },
    Row {
        label: "append + sync per record (latency, vs a file whose size was set ahead)",
        bench: "sync/log_every_append",
        baseline: "sync/raw_write_fdatasync_size_set",
        unit: Unit::Latency,
        target: "<= 1.2x raw",
    },
    Row {
        label: "append, sync per 100 records",
        bench: "sync/log_every_100_appends",
        baseline: "sync/raw_write_fdatasync",
        unit: Unit::RecordsPerSec(None),
        target: "",
    },
    Row {
        label: "group commit, 4 threads vs 1",
        bench: "group_commit/log_4_threads",
        baseline: "group_commit/log_1_thread",
        unit: Unit::RecordsPerSec(None),
        target: ">= 3x",
    },
    Row {
        label: "checkpoint write (criterion median)",
        bench: "checkpoint/write",
        baseline: "checkpoint/raw_replace",
        unit: Unit::Latency,
        target: "p50 <= 1.15x raw",
    },
    Row {
        label: "sequential read",
        bench: "read/log_sequential",
        baseline: "read/raw_sequential",
        unit: Unit::BytesPerSec,
        target: ">= 0.50 of raw",
    },
    Row {
        label: "compaction, 10% of records overwrite (input MB/s)",
        bench: "compaction/log_10pct",
        baseline: "compaction/raw_10pct",
        unit: Unit::BytesPerSec,
        target: ">= 400 MB/s",
    },
    Row {
        label: "compaction, 90% of records overwrite (input MB/s)",
        bench: "compaction/log_90pct",
        baseline: "compaction/raw_90pct",
        unit: Unit::BytesPerSec,
        target: ">= 400 MB/s",
    },
    Row {
        label: "store put, buffered, 1 M random keys (vs BufWriter of the bytes)",
        bench: "store/put_100B",
        baseline: "store/raw_put_100B",
        unit: Unit::RecordsPerSec(None),
        target: ">= 1 M/s",
    },
    Row {
        label: "store get, 1 M random keys (vs HashMap)",
        bench: "store/get_100B",
        baseline: "store/hashmap_get_100B",
        unit: Unit::RecordsPerSec(None),
        target: ">= 3 M/s",
    },
    Row {
        label: "store get with a value cache holding every value (vs HashMap)",
        bench: "store/get_100B_cached",
        baseline: "store/hashmap_get_100B",
        unit: Unit::RecordsPerSec(None),
        target: "",
    },
    Row {
        label: "store range scans, 1000 ranges covering 1 M keys (entries/s, vs BTreeMap)",
        bench: "store/range_100B",
        baseline: "store/btreemap_range_100B",
        unit: Unit::RecordsPerSec(None),
        target: "",
    },
    Row {
        label: "store restore from snapshot, 1 M keys / 1.5 M puts (vs naive replay)",
        bench: "store/restore_snapshot",
        baseline: "store/naive_replay_hashmap",
        unit: Unit::Latency,
        target: "< 0.5 s",
    },
    Row {
        label: "store restore by full replay (log bytes/s, vs naive replay)",
        bench: "store/restore_replay",
        baseline: "store/naive_replay_hashmap",
        unit: Unit::BytesPerSec,
        target: ">= 1 GB/s",
    },
    Row {
        label: "counting task, 1 partition on 1 thread, commit every second (messages/s)",
        bench: "task/count_commit_1s",
        baseline: "task/raw_count",
        unit: Unit::RecordsPerSec(None),
        target: ">= 1 M/s",
    },
];

/// What criterion stored for one bench: the median time per iteration and the throughput.
struct Measured {
    median_ns: f64,
    bytes: Option<f64>,
    elements: Option<f64>,
}

fn load(criterion: &Path, id: &str) -> Result<Measured> {
    let dir = criterion.join(id).join("new");
    let read = |name: &str| -> Result<Value> {
        let path = dir.join(name);
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    };
    let estimates = read("estimates.json")?;
    let benchmark = read("benchmark.json")?;
    let median_ns =
        estimates["median"]["point_estimate"].as_f64().ok_or(format!("{id}: no median estimate"))?;
    let throughput = &benchmark["throughput"];
    Ok(Measured { median_ns, bytes: throughput["Bytes"].as_f64(), elements: throughput["Elements"].as_f64() })
}

fn value(m: &Measured, unit: Unit) -> Option<f64> {
    let per_sec = 1e9 / m.median_ns;
    match unit {
        Unit::BytesPerSec => m.bytes.map(|b| b * per_sec),
        Unit::RecordsPerSec(Some(record_bytes)) => {
            m.elements.or_else(|| m.bytes.map(|b| b / record_bytes as f64)).map(|n| n * per_sec)
        }
        Unit::RecordsPerSec(None) => m.elements.or(Some(1.0)).map(|n| n * per_sec),
        Unit::Latency => Some(m.median_ns),
    }
}

fn show(v: f64, unit: Unit) -> String {
    match unit {
        Unit::BytesPerSec => format!("{:.0} MB/s", v / 1e6),
        Unit::RecordsPerSec(_) if v >= 1e6 => format!("{:.2} M/s", v / 1e6),
        Unit::RecordsPerSec(_) => format!("{:.1} k/s", v / 1e3),
        Unit::Latency => format!("{:.0} µs", v / 1e3),
    }
}

pub(crate) fn run(quick: bool) -> Result {
    let mut command = cargo();
    command.args(["bench", "-p", "cairn", "--"]);
    if quick {
        // Criterion's own --quick keeps two samples; shorter phases keep real statistics. Groups
        // that set their own measurement time shorten it through CAIRN_BENCH_QUICK.
        command.args(["--warm-up-time", "1", "--measurement-time", "2"]).env("CAIRN_BENCH_QUICK", "1");
    }
    crate::run(command)?;
    let criterion = root().join("target/criterion");
    let mut table = String::new();
    limits(&criterion, &mut table)?;
    let _ = writeln!(table, "| workload | cairn | baseline (same run) | ratio | target |");
    let _ = writeln!(table, "|---|---|---|---|---|");
    for row in ROWS {
        let bench = load(&criterion, row.bench)?;
        let baseline = load(&criterion, row.baseline)?;
        let (Some(ours), Some(theirs)) = (value(&bench, row.unit), value(&baseline, row.unit)) else {
            return Err(format!("{}: throughput missing", row.label));
        };
        let ratio = ours / theirs;
        let _ = writeln!(
            table,
            "| {} | {} | {} ({}) | {:.2} | {} |",
            row.label,
            show(ours, row.unit),
            show(theirs, row.unit),
            row.baseline,
            ratio,
            row.target
        );
    }
    latency_rows(&mut table)?;
    compaction_latency_rows(&mut table)?;
    commit_latency_rows(&mut table)?;
    println!("\n{table}");
    let out = root().join("target/bench");
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let path = out.join("report.md");
    std::fs::write(&path, &table).map_err(|e| format!("{}: {e}", path.display()))?;
    println!("written to {}", path.display());
    Ok(())
}

/// The raw physical limits this run measured, the baselines of the rows below.
fn limits(criterion: &Path, table: &mut String) -> Result {
    let _ = writeln!(table, "Physical limits measured in this run (raw `std::fs`, no format):\n");
    let _ = writeln!(table, "| limit | bench | median |");
    let _ = writeln!(table, "|---|---|---|");
    for (label, bench, unit) in [
        ("buffered write, 16 B key + 1 KiB value records", "append/raw_1KiB", Unit::BytesPerSec),
        ("buffered sequential read of the log's files", "read/raw_sequential", Unit::BytesPerSec),
        ("write of one record + fdatasync (the file grows)", "sync/raw_write_fdatasync", Unit::Latency),
        (
            "write of one record + fdatasync (the file's size set ahead)",
            "sync/raw_write_fdatasync_size_set",
            Unit::Latency,
        ),
        ("temp file write + sync_all + rename + directory fsync", "checkpoint/raw_replace", Unit::Latency),
    ] {
        let measured = load(criterion, bench)?;
        let figure = value(&measured, unit).ok_or(format!("{bench}: throughput missing"))?;
        let _ = writeln!(table, "| {label} | `{bench}` | {} |", show(figure, unit));
    }
    let _ = writeln!(table);
    Ok(())
}

/// The JSON a bench's direct pass wrote under `target/bench/`, with its path.
fn read_json(name: &str) -> Result<(std::path::PathBuf, Value)> {
    let path = root().join("target/bench").join(name);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let json = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((path, json))
}

/// Rows for append + sync latency while a compaction pass runs, against idle, from the direct
/// pass of `benches/compaction.rs`.
fn compaction_latency_rows(table: &mut String) -> Result {
    let (path, json) = read_json("compaction-latency.json")?;
    for (label, key, target) in [("p50", "p50_us", ""), ("p99", "p99_us", "<= 2x idle")] {
        let busy = json["compacting"][key].as_f64().ok_or(format!("{}: no {key}", path.display()))?;
        let idle = json["idle"][key].as_f64().ok_or(format!("{}: no idle {key}", path.display()))?;
        let _ = writeln!(
            table,
            "| append + sync {label} during compaction ({} ops) | {busy:.0} µs | {idle:.0} µs (idle, {} ops) | {:.2} | {target} |",
            json["compacting"]["ops"],
            json["idle"]["ops"],
            busy / idle
        );
    }
    Ok(())
}

/// Rows for the counting task's commit latency, from `benches/task.rs`, beside the raw
/// replacement of a checkpoint-sized file from `benches/checkpoint.rs` (the commit's last step
/// alone, with nothing else to make durable).
fn commit_latency_rows(table: &mut String) -> Result {
    let (path, json) = read_json("task-commit-latency.json")?;
    let (raw_path, raw) = read_json("checkpoint-latency.json")?;
    for (runs, label) in
        [("default", "snapshots every 10th"), ("snapshot_every_commit", "a snapshot at every")]
    {
        for (quantile, target) in [("p50", ""), ("p99", "< 5 ms")] {
            let ours = json[runs][format!("{quantile}_ms")]
                .as_f64()
                .ok_or(format!("{}: no {runs} {quantile}", path.display()))?;
            let base = raw["raw"][format!("{quantile}_us")]
                .as_f64()
                .ok_or(format!("{}: no raw {quantile}", raw_path.display()))?;
            let _ = writeln!(
                table,
                "| task commit {quantile}, {label} commit ({} commits) | {ours:.2} ms | {:.2} ms (checkpoint-sized file replaced) | {:.1} | {target} |",
                json[runs]["commits"],
                base / 1e3,
                ours * 1e3 / base
            );
        }
    }
    Ok(())
}

/// Rows for the checkpoint's p50 and p99 from the direct latency pass of `benches/checkpoint.rs`.
fn latency_rows(table: &mut String) -> Result {
    let (path, json) = read_json("checkpoint-latency.json")?;
    for (label, key, target) in
        [("checkpoint write p50", "p50_us", "<= 1.15x"), ("checkpoint write p99", "p99_us", "")]
    {
        let ours =
            json["checkpoint"][key].as_f64().ok_or(format!("{}: no checkpoint {key}", path.display()))?;
        let raw = json["raw"][key].as_f64().ok_or(format!("{}: no raw {key}", path.display()))?;
        let _ = writeln!(
            table,
            "| {label} (2000 single writes, {} B) | {ours:.0} µs | {raw:.0} µs (write + sync_all + rename + dir fsync) | {:.2} | {target} |",
            json["bytes"],
            ours / raw
        );
    }
    Ok(())
}
