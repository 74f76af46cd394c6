//! `cairn-compare`: cairn beside its peers, the same workloads through one small trait
//! ([`peer::Peer`]), at matched durability tiers, measured in one run on one machine. Run it with
//! `cargo xtask compare` (see the README's "Compared with peers").
//!
//! ```text
//! cairn-compare [--out DIR] [--runs N] [--keys N] [--quick] [--peers a,b] [--workloads a,b] [--no-strace]
//! ```
//!
//! Every figure is the median of `--runs` runs (3 by default). Before measuring, each peer's
//! write tiers run under `strace -c` (when strace is installed) to count the sync calls one
//! record costs, so that the table shows what "durable" means for each setting.

mod peer;
mod peers;
mod report;
mod strace;

use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use peer::{COMMIT_VALUE_BYTES, Peer, Result, Setting, VALUE_BYTES, Workload, key, latest};

/// What one workload measured for one system.
#[derive(Clone, Debug, Default)]
pub struct Figure {
    /// Records or gets per second, or for [`Workload::Restore`] seconds.
    pub value: f64,
    /// Median and 99th percentile of one commit's latency, in microseconds (durable tiers).
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
}

/// How long and how much each workload runs, per run.
#[derive(Clone, Copy)]
struct Budget {
    seconds: f64,
    records: u64,
    keys: u64,
    gets: u64,
}

struct Options {
    out: PathBuf,
    runs: usize,
    budget: Budget,
    peers: Option<Vec<String>>,
    workloads: Vec<Workload>,
    strace: bool,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = if args.first().map(String::as_str) == Some("probe") {
        probe(&args[1..])
    } else {
        parse(&args).and_then(|options| run(&options))
    };
    if let Err(e) = result {
        eprintln!("cairn-compare: {e}");
        std::process::exit(1);
    }
}

const USAGE: &str = "usage: cairn-compare [--out DIR] [--runs N] [--keys N] [--quick] [--peers a,b] [--workloads append,commit,group,restore,get] [--no-strace]";

fn parse(args: &[String]) -> Result<Options> {
    let mut options = Options {
        out: PathBuf::from("target/compare"),
        runs: 3,
        budget: Budget { seconds: 2.0, records: 1_000_000, keys: 1_000_000, gets: 500_000 },
        peers: None,
        workloads: Workload::ALL.to_vec(),
        strace: true,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value\n{USAGE}"));
        match arg.as_str() {
            "--out" => options.out = PathBuf::from(value()?),
            "--runs" => options.runs = value()?.parse().map_err(|e| format!("--runs: {e}"))?,
            "--keys" => options.budget.keys = value()?.parse().map_err(|e| format!("--keys: {e}"))?,
            "--quick" => {
                options.runs = 1;
                options.budget = Budget { seconds: 0.5, records: 200_000, keys: 100_000, gets: 100_000 };
            }
            "--peers" => options.peers = Some(value()?.split(',').map(str::to_owned).collect()),
            "--workloads" => {
                options.workloads = value()?
                    .split(',')
                    .map(|w| Workload::from_id(w).ok_or_else(|| format!("no workload {w}\n{USAGE}")))
                    .collect::<std::result::Result<_, String>>()?;
            }
            "--no-strace" => options.strace = false,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}").into()),
        }
    }
    if options.runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    Ok(options)
}

/// A fresh empty directory under `work`, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(work: &Path, label: &str) -> Result<Scratch> {
        let path = work.join(label.replace([' ', ','], "-"));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)?;
        Ok(Scratch(path))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(options: &Options) -> Result {
    let peers: Vec<Box<dyn Peer>> = peers::all()
        .into_iter()
        .filter(|p| options.peers.as_ref().is_none_or(|names| names.iter().any(|n| n == p.name())))
        .collect();
    if peers.is_empty() {
        return Err("no peer selected".into());
    }
    std::fs::create_dir_all(&options.out)?;
    let out = std::fs::canonicalize(&options.out)?;
    let work = out.join("work");
    let mut results = report::Results::new(&peers, options.runs, options.budget.keys);

    if options.strace {
        match strace::available() {
            true => {
                for peer in &peers {
                    for workload in [Workload::Append, Workload::Commit] {
                        // Not-offered tiers too: their writers make the nearest calls.
                        if !matches!(peer.setting(workload), Setting::Same(_))
                            && options.workloads.contains(&workload)
                        {
                            let counted = strace::sync_calls_per_record(peer.name(), workload, &work)?;
                            eprintln!("strace {} {}: {counted}", peer.name(), workload.id());
                            results.set_syncs(peer.name(), workload, counted);
                        }
                    }
                }
            }
            false => eprintln!("strace is not installed: the sync calls are not counted"),
        }
    }

    for &workload in &options.workloads {
        if workload == Workload::Get && options.workloads.contains(&Workload::Restore) {
            continue; // measured with the restore
        }
        for peer in &peers {
            if !matches!(peer.setting(workload), Setting::Offered(_)) {
                continue;
            }
            let figures = match workload {
                Workload::Append | Workload::Commit | Workload::Group => {
                    let mut figures = Vec::new();
                    // Run 0 warms up (the VM is slow to hand out fresh page-cache memory) and is
                    // not counted.
                    for run in 0..=options.runs {
                        let scratch =
                            Scratch::new(&work, &format!("{}-{}-{run}", peer.name(), workload.id()))?;
                        let figure = measure_writes(peer.as_ref(), workload, &scratch.0, options.budget)?;
                        if run > 0 {
                            figures.push(figure);
                        }
                    }
                    vec![(workload, figures)]
                }
                Workload::Restore | Workload::Get => measure_restore(peer.as_ref(), &work, options)?,
            };
            for (workload, figures) in figures {
                let figure = report::median(&figures);
                eprintln!("{:<12} {:<20} {}", workload.id(), peer.name(), report::show(workload, &figure));
                results.set(peer.name(), workload, figure);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    report::write(&results, &out)
}

/// One run of a write workload in a fresh directory.
fn measure_writes(peer: &dyn Peer, workload: Workload, dir: &Path, budget: Budget) -> Result<Figure> {
    let writer = peer.writer(dir, workload)?;
    let value_bytes = if workload.durable() { COMMIT_VALUE_BYTES } else { VALUE_BYTES };
    let value = vec![0x5a; value_bytes];
    let limit = Duration::from_secs_f64(budget.seconds);
    let threads: u64 = if workload == Workload::Group { 4 } else { 1 };
    let records = if workload.durable() { budget.records / 20 } else { budget.records };
    let ready = Barrier::new(threads as usize + 1);
    let (started, mut outcomes) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (writer, value, ready) = (&writer, &value, &ready);
                scope.spawn(move || -> Result<(u64, Vec<Duration>)> {
                    ready.wait();
                    let started = Instant::now();
                    let mut latencies = Vec::new();
                    let mut written = 0;
                    while written < records / threads {
                        let begun = Instant::now();
                        writer.write(&key(t << 40 | written), value)?;
                        written += 1;
                        if workload.durable() {
                            latencies.push(begun.elapsed());
                        }
                        if written % 256 == 0 && started.elapsed() > limit {
                            break;
                        }
                    }
                    Ok((written, latencies))
                })
            })
            .collect();
        ready.wait();
        let started = Instant::now();
        let outcomes: Vec<_> =
            handles.into_iter().map(|h| h.join().map_err(|_| "a writer panicked")).collect();
        (started, outcomes)
    });
    writer.finish()?;
    let elapsed = started.elapsed();
    drop(writer);
    let mut written = 0;
    let mut latencies = Vec::new();
    for outcome in outcomes.drain(..) {
        let (n, mut l) = outcome??;
        written += n;
        latencies.append(&mut l);
    }
    latencies.sort();
    let quantile = |q: f64| {
        latencies.get(((latencies.len() as f64 - 1.0) * q).round() as usize).map(|d| d.as_secs_f64() * 1e6)
    };
    Ok(Figure {
        value: written as f64 / elapsed.as_secs_f64(),
        p50_us: quantile(0.5),
        p99_us: quantile(0.99),
    })
}

/// Loads the restore data set once, then per run reopens it (timed until the first get
/// answers), checks a sample of keys, and times random gets.
fn measure_restore(peer: &dyn Peer, work: &Path, options: &Options) -> Result<Vec<(Workload, Vec<Figure>)>> {
    let keys = options.budget.keys;
    let scratch = Scratch::new(work, &format!("{}-restore", peer.name()))?;
    let loading = Instant::now();
    peer.load(&scratch.0, keys)?;
    eprintln!("  {} loaded {keys} keys in {:.1} s", peer.name(), loading.elapsed().as_secs_f64());
    let (mut restores, mut gets) = (Vec::new(), Vec::new());
    for _ in 0..options.runs {
        // The page cache stays warm (dropping it needs root and would time the virtual disk):
        // every system reopens files it has just written, as a task restarted on the same
        // machine does.
        let started = Instant::now();
        let reader = peer.reopen(&scratch.0)?;
        let first = reader.get(&key(0))?;
        let elapsed = started.elapsed();
        if first.as_deref() != Some(&latest(0)[..]) {
            return Err(format!("{}: key 0 reads {first:?} after reopening", peer.name()).into());
        }
        for i in (0..keys).step_by((keys / 1000).max(1) as usize) {
            if reader.get(&key(i))?.as_deref() != Some(&latest(i)[..]) {
                return Err(format!("{}: key {i} lost or wrong after reopening", peer.name()).into());
            }
        }
        restores.push(Figure { value: elapsed.as_secs_f64(), ..Figure::default() });
        if !matches!(peer.setting(Workload::Get), Setting::Offered(_)) {
            continue;
        }

        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let started = Instant::now();
        for _ in 0..options.budget.gets {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if reader.get(&key(x % keys))?.is_none() {
                return Err(format!("{}: a present key is missing", peer.name()).into());
            }
        }
        gets.push(Figure {
            value: options.budget.gets as f64 / started.elapsed().as_secs_f64(),
            ..Figure::default()
        });
        drop(reader);
    }
    let mut out = Vec::new();
    if matches!(peer.setting(Workload::Restore), Setting::Offered(_))
        && options.workloads.contains(&Workload::Restore)
    {
        out.push((Workload::Restore, restores));
    }
    if !gets.is_empty() && options.workloads.contains(&Workload::Get) {
        out.push((Workload::Get, gets));
    }
    Ok(out)
}

/// `cairn-compare probe PEER WORKLOAD N DIR`: writes N records at the workload's tier, for
/// strace to count the sync calls (see strace.rs).
fn probe(args: &[String]) -> Result {
    let [name, workload, n, dir] = args else {
        return Err("usage: cairn-compare probe PEER WORKLOAD N DIR".into());
    };
    let peers = peers::all();
    let peer = peers.iter().find(|p| p.name() == name).ok_or_else(|| format!("no peer {name}"))?;
    let workload = Workload::from_id(workload).ok_or_else(|| format!("no workload {workload}"))?;
    let n: u64 = n.parse()?;
    let writer = peer.writer(Path::new(dir), workload)?;
    let value = vec![0x5a; if workload.durable() { COMMIT_VALUE_BYTES } else { VALUE_BYTES }];
    for i in 0..n {
        writer.write(&key(i), &value)?;
    }
    writer.finish()?;
    Ok(())
}
