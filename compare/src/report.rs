//! The results: a Markdown report, a JSON file and one SVG bar chart per workload.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use crate::Figure;
use crate::peer::{Peer, Result, Setting, Workload};

/// The name of the physical baseline and of cairn among the systems.
const RAW: &str = "raw std::fs";
const CAIRN: &str = "cairn";

/// One system: what it is, how it ran each workload, and what it measured.
pub struct System {
    name: &'static str,
    version: &'static str,
    rebuilds_from_log: bool,
    settings: Vec<(Workload, Setting)>,
    figures: Vec<(Workload, Figure)>,
    syncs: Vec<(Workload, String)>,
}

impl System {
    fn setting(&self, workload: Workload) -> &Setting {
        // Every workload has a setting: `Results::new` asked for all of them.
        let found = self.settings.iter().find(|(w, _)| *w == workload).map(|(_, s)| s);
        found.unwrap_or(&Setting::Same("not asked"))
    }

    fn figure(&self, workload: Workload) -> Option<&Figure> {
        self.figures.iter().find(|(w, _)| *w == workload).map(|(_, f)| f)
    }

    fn syncs(&self, workload: Workload) -> Option<&str> {
        // Group commit makes the calls the single-writer commit makes.
        let counted = if workload == Workload::Group { Workload::Commit } else { workload };
        self.syncs.iter().find(|(w, _)| *w == counted).map(|(_, s)| s.as_str())
    }

    /// Whether this is a peer (not the baseline, not cairn in either setting).
    fn is_peer(&self) -> bool {
        !self.name.starts_with("raw") && !self.name.starts_with(CAIRN)
    }
}

pub struct Results {
    systems: Vec<System>,
    runs: usize,
    keys: u64,
}

impl Results {
    pub fn new(peers: &[Box<dyn Peer>], runs: usize, keys: u64) -> Results {
        let systems = peers
            .iter()
            .map(|p| System {
                name: p.name(),
                version: p.version(),
                rebuilds_from_log: p.rebuilds_from_log(),
                settings: Workload::ALL.iter().map(|w| (*w, p.setting(*w))).collect(),
                figures: Vec::new(),
                syncs: Vec::new(),
            })
            .collect();
        Results { systems, runs, keys }
    }

    pub fn set(&mut self, name: &str, workload: Workload, figure: Figure) {
        if let Some(s) = self.systems.iter_mut().find(|s| s.name == name) {
            s.figures.push((workload, figure));
        }
    }

    pub fn set_syncs(&mut self, name: &str, workload: Workload, syncs: String) {
        if let Some(s) = self.systems.iter_mut().find(|s| s.name == name) {
            s.syncs.push((workload, syncs));
        }
    }

    fn system(&self, name: &str) -> Option<&System> {
        self.systems.iter().find(|s| s.name == name)
    }

    fn figure(&self, name: &str, workload: Workload) -> Option<f64> {
        self.system(name).and_then(|s| s.figure(workload)).map(|f| f.value)
    }
}

/// The median of each field over the runs.
pub fn median(figures: &[Figure]) -> Figure {
    fn mid(mut values: Vec<f64>) -> Option<f64> {
        values.sort_by(f64::total_cmp);
        let n = values.len();
        match (values.get(n.saturating_sub(1) / 2), values.get(n / 2)) {
            (Some(a), Some(b)) => Some((a + b) / 2.0),
            _ => None,
        }
    }
    Figure {
        value: mid(figures.iter().map(|f| f.value).collect()).unwrap_or(f64::NAN),
        p50_us: mid(figures.iter().filter_map(|f| f.p50_us).collect()),
        p99_us: mid(figures.iter().filter_map(|f| f.p99_us).collect()),
    }
}

/// A figure with its unit.
pub fn show(workload: Workload, figure: &Figure) -> String {
    let v = figure.value;
    match workload {
        Workload::Restore if v < 1.0 => format!("{:.1} ms", v * 1e3),
        Workload::Restore => format!("{v:.2} s"),
        _ if v >= 1e6 => format!("{:.2} M/s", v / 1e6),
        _ => format!("{:.1} k/s", v / 1e3),
    }
}

/// How much better `a` is than `b` for the workload: above 1 when `a` is better.
fn advantage(workload: Workload, a: f64, b: f64) -> f64 {
    if workload.higher_is_better() { a / b } else { b / a }
}

pub fn write(results: &Results, out: &Path) -> Result {
    let mut md = String::new();
    let _ = writeln!(md, "# cairn beside its peers\n");
    let _ = writeln!(
        md,
        "Measured {} on {}. Each figure is the median of {} run(s), all in one run of `cargo xtask compare`. \
         The restore data set is {} keys written by {} puts (16 B keys, 100 B values).\n",
        today(),
        machine(out),
        results.runs,
        results.keys,
        results.keys + results.keys.div_ceil(2)
    );
    summary(results, &mut md);
    targets(results, &mut md);
    for workload in Workload::ALL {
        if results.systems.iter().all(|s| s.figure(workload).is_none()) {
            continue;
        }
        detail(results, workload, &mut md);
        chart(results, workload, &out.join(format!("{}.svg", workload.id())))?;
    }
    versions(results, &mut md);
    std::fs::write(out.join("report.md"), &md)?;
    std::fs::write(out.join("results.json"), json(results))?;
    println!("{md}");
    println!("written to {}", out.join("report.md").display());
    Ok(())
}

fn cell(system: &System, workload: Workload) -> String {
    match (system.figure(workload), system.setting(workload)) {
        (Some(figure), _) => show(workload, figure),
        (None, Setting::NotOffered(_)) => "n/a".to_owned(),
        (None, Setting::Same(_)) => "—".to_owned(),
        (None, Setting::Offered(_)) => "not run".to_owned(),
    }
}

fn summary(results: &Results, md: &mut String) {
    let _ = writeln!(md, "## Summary\n");
    let _ = write!(md, "| system |");
    for w in Workload::ALL {
        let _ = write!(md, " {} |", w.title());
    }
    let _ = writeln!(md, "\n|---|{}", "---|".repeat(Workload::ALL.len()));
    for system in &results.systems {
        let _ = write!(md, "| {} |", system.name);
        for w in Workload::ALL {
            let _ = write!(md, " {} |", cell(system, w));
        }
        let _ = writeln!(md);
    }
    let _ = writeln!(
        md,
        "\nn/a: the system offers no setting with that guarantee (the reason is under the workload below); \
         —: not a separate system for that workload. Higher is better except for the restore, which is a time.\n"
    );
}

/// The project's goals, each with what was reached.
fn targets(results: &Results, md: &mut String) {
    let _ = writeln!(md, "## Targets\n");
    let _ = writeln!(md, "| target | measured | met |");
    let _ = writeln!(md, "|---|---|---|");
    let Some(cairn) = results.system(CAIRN) else { return };
    let mut row = |target: String, measured: String, met: Option<bool>| {
        let met = match met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "not measured",
        };
        let _ = writeln!(md, "| {target} | {measured} | {met} |");
    };
    let ours = |w: Workload| cairn.figure(w).map(|f| f.value);
    let versus = |w: Workload,
                  peer: &str,
                  goal: f64,
                  target: &str,
                  row: &mut dyn FnMut(String, String, Option<bool>)| {
        match (ours(w), results.figure(peer, w)) {
            (Some(a), Some(b)) => {
                let x = advantage(w, a, b);
                row(target.to_owned(), format!("{x:.2}x ({} vs {})", fmt(w, a), fmt(w, b)), Some(x >= goal))
            }
            _ => row(target.to_owned(), format!("{peer} not measured"), None),
        }
    };
    versus(Workload::Append, "commitlog", 1.5, "append, no fsync: >= 1.5x commitlog", &mut row);
    versus(Workload::Commit, "fjall", 1.0, "durable commits/s, 1 writer: >= fjall", &mut row);
    // The best system the filter admits.
    let best = |w: Workload, filter: &dyn Fn(&System) -> bool| {
        results
            .systems
            .iter()
            .filter(|s| filter(s))
            .filter_map(|s| s.figure(w).map(|f| (s.name, f.value)))
            .max_by(|a, b| advantage(w, a.1, b.1).total_cmp(&1.0))
    };
    match best(Workload::Group, &System::is_peer) {
        Some((name, _)) => versus(Workload::Group, name, 2.0, "4 writers: >= 2x the best peer", &mut row),
        None => row("4 writers: >= 2x the best peer".into(), "no peer measured".into(), None),
    }
    match best(Workload::Restore, &|s| s.is_peer() && s.rebuilds_from_log) {
        Some((name, _)) => versus(
            Workload::Restore,
            name,
            3.0,
            "restore: >= 3x faster than the fastest peer that rebuilds every key in memory from a log",
            &mut row,
        ),
        None => {
            row("restore: >= 3x faster than the fastest log-rebuilding peer".into(), "no peer".into(), None)
        }
    }
    // The physical limit: the best raw baseline of the workload.
    for w in Workload::ALL {
        if let Some((name, _)) = best(w, &|s| s.name.starts_with("raw")) {
            versus(w, name, 0.5, &format!("{}: within 2x of the raw baseline ({name})", w.id()), &mut row);
        }
    }
    let _ = writeln!(md);
    if let (Some((name, value)), Some(ours)) =
        (best(Workload::Restore, &System::is_peer), ours(Workload::Restore))
    {
        let _ = writeln!(
            md,
            "The fastest of all peers to reopen: {name}, {} (cairn {}); see the restore table for how each opens.\n",
            fmt(Workload::Restore, value),
            fmt(Workload::Restore, ours)
        );
    }
}

fn fmt(w: Workload, v: f64) -> String {
    show(w, &Figure { value: v, ..Figure::default() })
}

fn detail(results: &Results, workload: Workload, md: &mut String) {
    let _ = writeln!(md, "## {}\n", capitalized(workload.title()));
    let _ = writeln!(md, "![{}]({}.svg)\n", workload.id(), workload.id());
    let timed = workload.durable();
    let _ = write!(md, "| system | figure | raw baseline ÷ this | cairn ÷ this |");
    if timed {
        let _ = write!(md, " p50 | p99 |");
    }
    let restore = matches!(workload, Workload::Restore);
    if restore {
        let _ = write!(md, " rebuilds every key in memory from a log |");
    }
    let _ = writeln!(md, " sync calls per record (strace) | setting |");
    let _ = writeln!(
        md,
        "|---|---|---|---|{}{}---|---|",
        if timed { "---|---|" } else { "" },
        if restore { "---|" } else { "" }
    );
    let raw = results.figure(RAW, workload);
    let cairn = results.figure(CAIRN, workload);
    for system in results.systems.iter().filter(|s| !matches!(s.setting(workload), Setting::Same(_))) {
        let ratio = |other: Option<f64>| match (other, system.figure(workload)) {
            (Some(o), Some(f)) => format!("{:.2}", advantage(workload, o, f.value)),
            _ => String::new(),
        };
        let _ = write!(
            md,
            "| {} | {} | {} | {} |",
            system.name,
            cell(system, workload),
            ratio(raw),
            ratio(cairn)
        );
        if timed {
            let us = |v: Option<f64>| v.map(|v| format!("{v:.0} µs")).unwrap_or_default();
            let f = system.figure(workload);
            let _ = write!(md, " {} | {} |", us(f.and_then(|f| f.p50_us)), us(f.and_then(|f| f.p99_us)));
        }
        if restore {
            let _ = write!(md, " {} |", if system.rebuilds_from_log { "yes" } else { "no (lazy)" });
        }
        let syncs = if matches!(workload, Workload::Append | Workload::Commit | Workload::Group) {
            system.syncs(workload).unwrap_or("not counted")
        } else {
            ""
        };
        let setting = match system.setting(workload) {
            Setting::Offered(s) => (*s).to_owned(),
            Setting::NotOffered(why) => format!("**not offered**: {why}"),
            Setting::Same(name) => format!("as {name}"),
        };
        let _ = writeln!(md, " {syncs} | {setting} |");
    }
    let _ = writeln!(md);
}

fn capitalized(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

fn versions(results: &Results, md: &mut String) {
    let _ = writeln!(md, "## Versions\n");
    for s in &results.systems {
        let _ = writeln!(md, "- {}: {}", s.name, s.version);
    }
}

/// One horizontal bar per system; "n/a" where a system offers no setting for the workload.
fn chart(results: &Results, workload: Workload, path: &Path) -> Result {
    // The first system at the top (the chart counts rows from the bottom); none that is only
    // another system again for this workload.
    let rows: Vec<(&str, Option<f64>)> = results
        .systems
        .iter()
        .rev()
        .filter(|s| !matches!(s.setting(workload), Setting::Same(_)))
        .map(|s| (s.name, s.figure(workload).map(|f| f.value)))
        .collect();
    let (scale, unit) = match workload {
        Workload::Restore => (1e3, "milliseconds (lower is better)"),
        Workload::Commit | Workload::Group => (1e-3, "thousand commits per second"),
        _ => (1e-6, "million per second"),
    };
    let max = rows.iter().filter_map(|r| r.1).fold(0.0, f64::max) * scale;
    let height = 90 + 34 * rows.len() as u32;
    let area = SVGBackend::new(path, (900, height)).into_drawing_area();
    area.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&area)
        .caption(workload.title(), ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(150)
        .build_cartesian_2d(0.0..(max * 1.25).max(1e-9), (0..rows.len()).into_segmented())?;
    let names: Vec<&str> = rows.iter().map(|r| r.0).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(rows.len())
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => names.get(*i).map_or(String::new(), |n| (*n).to_owned()),
            _ => String::new(),
        })
        .x_desc(unit)
        .draw()?;
    let color = |name: &str| {
        if name.starts_with("raw") {
            RGBColor(150, 150, 150)
        } else if name.starts_with(CAIRN) {
            RGBColor(200, 90, 30)
        } else {
            RGBColor(60, 110, 170)
        }
    };
    chart.draw_series(rows.iter().enumerate().filter_map(|(i, (name, v))| {
        v.map(|v| {
            let mut bar = Rectangle::new(
                [(0.0, SegmentValue::Exact(i)), (v * scale, SegmentValue::Exact(i + 1))],
                color(name).filled(),
            );
            bar.set_margin(4, 4, 0, 0);
            bar
        })
    }))?;
    chart.draw_series(rows.iter().enumerate().map(|(i, (_, v))| {
        let label = match v {
            Some(v) => fmt(workload, *v),
            None => "n/a".to_owned(),
        };
        let x = v.map_or(0.0, |v| v * scale);
        Text::new(format!(" {label}"), (x, SegmentValue::CenterOf(i)), ("sans-serif", 13))
    }))?;
    area.present()?;
    Ok(())
}

fn json(results: &Results) -> String {
    let systems: Vec<serde_json::Value> = results
        .systems
        .iter()
        .map(|s| {
            let workloads: serde_json::Map<String, serde_json::Value> = Workload::ALL
                .iter()
                .map(|w| {
                    let setting = match s.setting(*w) {
                        Setting::Offered(t) => serde_json::json!({ "offered": true, "setting": t }),
                        Setting::NotOffered(t) => serde_json::json!({ "offered": false, "why": t }),
                        Setting::Same(t) => serde_json::json!({ "offered": false, "same_as": t }),
                    };
                    let mut entry = setting;
                    if let Some(f) = s.figure(*w) {
                        entry["value"] = serde_json::json!(f.value);
                        entry["p50_us"] = serde_json::json!(f.p50_us);
                        entry["p99_us"] = serde_json::json!(f.p99_us);
                    }
                    if let Some(syncs) = s.syncs(*w) {
                        entry["sync_calls_per_record"] = serde_json::json!(syncs);
                    }
                    (w.id().to_owned(), entry)
                })
                .collect();
            serde_json::json!({ "name": s.name, "version": s.version, "workloads": workloads })
        })
        .collect();
    let doc = serde_json::json!({
        "date": today(),
        "runs": results.runs,
        "keys": results.keys,
        "units": { "append": "records/s", "commit": "commits/s", "group": "commits/s", "restore": "seconds", "get": "gets/s" },
        "systems": systems,
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// Today's date (UTC), from `date`.
fn today() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "(date unknown)".to_owned())
}

/// The CPU, its count, the memory, the kernel, and the file system the runs wrote to.
fn machine(out: &Path) -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, m)| m.trim()))
        .unwrap_or("unknown CPU");
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory_gib = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / (1 << 20) as f64);
    let kernel = read("/proc/sys/kernel/osrelease");
    let mounts = read("/proc/mounts");
    let fs = mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((*f.get(1)?, *f.get(2)?, *f.first()?))
        })
        .filter(|(mount, _, _)| out.starts_with(mount))
        .max_by_key(|(mount, _, _)| mount.len())
        .map_or("unknown file system".to_owned(), |(mount, kind, dev)| {
            format!("{kind} on {dev} (at {mount})")
        });
    format!("{cores} vCPU ({model}), {memory_gib:.0} GiB memory, Linux {}, {fs}", kernel.trim())
}
