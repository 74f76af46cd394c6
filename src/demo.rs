//! `cairn demo`: a counting task over a partitioned input of page views, killed with SIGKILL
//! at random moments and restarted, then checked against counts computed from the input.
//!
//! The parent process generates the input, then runs `cairn demo-worker` (the same binary) as
//! a child: the worker recovers every task from its checkpoint and processes until the inputs
//! are consumed. The parent kills it a few times (`--crashes`), restarts it, lets the last run
//! finish, and compares the final stores and outputs with a fold of the input.

use std::collections::BTreeMap;
use std::error::Error;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cairn::changelog::{Log, LogOptions, Record};
use cairn::fs::{Fs, RealFs};
use cairn::store::StoreOptions;
use cairn::task::{Context, Message, Runtime, StreamTask, TaskConfig, TaskError, TaskRunner};

/// What `cairn demo` was asked to do.
pub struct DemoOptions {
    pub dir: Option<PathBuf>,
    pub events: u64,
    pub partitions: u32,
    pub users: u64,
    pub crashes: u32,
    pub seed: Option<u64>,
    pub keep: bool,
}

type DemoResult<T = ()> = Result<T, Box<dyn Error>>;

/// `println!` that returns an error instead of panicking when stdout is closed (`| head`).
macro_rules! say {
    ($($arg:tt)*) => {{
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

/// A small xorshift generator: the demo's choices replay from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn input_dir(dir: &Path, partition: u32) -> PathBuf {
    dir.join("input").join(format!("p{partition}"))
}

fn task_dir(dir: &Path, partition: u32) -> PathBuf {
    dir.join("tasks").join(format!("p{partition}"))
}

fn user_key(user: u64) -> Vec<u8> {
    format!("user-{user:07}").into_bytes()
}

/// Which partition holds a user's events (all of them: each task's counts are complete).
fn partition_of(key: &[u8], partitions: u32) -> u32 {
    let hash =
        key.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3));
    (hash % u64::from(partitions)) as u32
}

pub fn run(options: &DemoOptions) -> DemoResult {
    let (dir, temporary) = match &options.dir {
        Some(dir) => (dir.clone(), false),
        None => (temp_dir(), true),
    };
    let seed = options.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
            | 1
    });
    say!(
        "cairn demo: {} page views of {} users over {} partitions, {} crashes, seed {seed}, in {}",
        options.events,
        options.users,
        options.partitions,
        options.crashes,
        dir.display()
    );
    let result = run_in(&dir, seed, options);
    if temporary && !options.keep {
        // The demo's own scratch space; not a durability path.
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        say!("data kept in {}", dir.display());
    }
    result
}

fn temp_dir() -> PathBuf {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    std::env::temp_dir().join(format!("cairn-demo-{}-{nanos}", std::process::id()))
}

fn run_in(dir: &Path, seed: u64, options: &DemoOptions) -> DemoResult {
    if options.partitions == 0 || options.users == 0 {
        return Err("--partitions and --users must be at least 1".into());
    }
    let fs: Arc<dyn Fs> = Arc::new(RealFs::new());
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    if input_dir(dir, 0).exists() {
        say!("input already present: using it");
    } else {
        let started = Instant::now();
        generate(&fs, dir, options, &mut rng)?;
        say!("generated the input in {:.2} s", started.elapsed().as_secs_f64());
    }

    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let interrupted = Arc::clone(&interrupted);
        // Ctrl-C reaches the worker too (same process group): it commits and exits; the demo
        // then stops after it.
        ctrlc::set_handler(move || interrupted.store(true, Ordering::SeqCst))?;
    }
    let mut runs = Vec::new();
    let mut crashes = 0;
    while crashes < options.crashes && !interrupted.load(Ordering::SeqCst) {
        // Killed after a random share (10% to 70%) of what is left to process.
        let share = 0.1 + rng.next(600) as f64 / 1000.0;
        let run = run_worker(dir, options.partitions, Some(share), &interrupted)?;
        let killed = run.killed;
        say!(
            "run {}: {} after {:.2} s; restore {:.0} ms ({} records replayed); {} messages processed",
            runs.len() + 1,
            if killed { "killed with SIGKILL" } else { "finished before the kill" },
            run.wall.as_secs_f64(),
            run.restore_ms,
            run.replayed,
            run.processed
        );
        runs.push(run);
        if killed {
            crashes += 1;
        } else {
            break;
        }
    }
    if runs.last().is_none_or(|r| r.killed) {
        let run = run_worker(dir, options.partitions, None, &interrupted)?;
        say!(
            "run {}: finished in {:.2} s; restore {:.0} ms ({} records replayed); {} messages processed",
            runs.len() + 1,
            run.wall.as_secs_f64(),
            run.restore_ms,
            run.replayed,
            run.processed
        );
        runs.push(run);
    }
    if interrupted.load(Ordering::SeqCst) {
        say!("interrupted: the worker committed and stopped; run the demo again with --dir to resume");
        return Ok(());
    }

    let started = Instant::now();
    let check = verify(&fs, dir, options)?;
    say!("verified the stores and outputs against the input in {:.2} s", started.elapsed().as_secs_f64());
    let processed: u64 = runs.iter().map(|r| r.processed).sum();
    let wall: f64 = runs.iter().map(|r| r.wall.as_secs_f64()).sum();
    let last = runs.last().ok_or("no run")?;
    let restores: Vec<String> = runs.iter().skip(1).map(|r| format!("{:.0} ms", r.restore_ms)).collect();
    say!(
        "summary: events {}, keys {}, crashes {crashes}, mismatches {}, throughput {:.0} messages/s \
         ({} processed in {:.2} s of worker time, {} re-processed after crashes), commit p50 {:.2} ms \
         p99 {:.2} ms, restore times [{}]",
        check.events,
        check.keys,
        check.mismatches,
        processed as f64 / wall.max(1e-9),
        processed,
        wall,
        processed.saturating_sub(check.events),
        last.commit_p50_ms,
        last.commit_p99_ms,
        restores.join(", ")
    );
    if check.mismatches > 0 {
        return Err(format!("{} mismatches between the task's state and the input", check.mismatches).into());
    }
    Ok(())
}

/// Writes the page views into the partitions' logs.
fn generate(fs: &Arc<dyn Fs>, dir: &Path, options: &DemoOptions, rng: &mut Rng) -> DemoResult {
    let logs = (0..options.partitions)
        .map(|p| Log::open(Arc::clone(fs), input_dir(dir, p), LogOptions::default()))
        .collect::<Result<Vec<_>, _>>()?;
    let mut pending: Vec<Vec<(Vec<u8>, Vec<u8>)>> = vec![Vec::new(); logs.len()];
    let flush = |log: &Log, batch: &mut Vec<(Vec<u8>, Vec<u8>)>, ts: i64| -> DemoResult {
        let records: Vec<Record<'_>> = batch.iter().map(|(k, v)| Record::new(k, Some(v), ts)).collect();
        log.append_batch(&records)?;
        batch.clear();
        Ok(())
    };
    for event in 0..options.events {
        let key = user_key(rng.next(options.users));
        let value = format!("/page/{}", rng.next(1000)).into_bytes();
        let p = partition_of(&key, options.partitions) as usize;
        let (Some(batch), Some(log)) = (pending.get_mut(p), logs.get(p)) else { continue };
        batch.push((key, value));
        if batch.len() == 1000 {
            flush(log, batch, event as i64)?;
        }
    }
    for (log, batch) in logs.iter().zip(&mut pending) {
        flush(log, batch, options.events as i64)?;
        log.sync()?;
        log.close()?;
    }
    Ok(())
}

/// What one worker run reported.
struct WorkerRun {
    killed: bool,
    wall: Duration,
    restore_ms: f64,
    replayed: u64,
    processed: u64,
    commit_p50_ms: f64,
    commit_p99_ms: f64,
}

/// Runs the worker; with `kill_at`, kills it once it has processed that share of the messages
/// left after its recovery.
fn run_worker(
    dir: &Path,
    partitions: u32,
    kill_at: Option<f64>,
    interrupted: &AtomicBool,
) -> DemoResult<WorkerRun> {
    let started = Instant::now();
    let mut child = Command::new(std::env::current_exe()?)
        .arg("demo-worker")
        .arg("--dir")
        .arg(dir)
        .arg("--partitions")
        .arg(partitions.to_string())
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("the worker has no stdout")?;
    let (lines_tx, lines) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut run = WorkerRun {
        killed: false,
        wall: Duration::ZERO,
        restore_ms: 0.0,
        replayed: 0,
        processed: 0,
        commit_p50_ms: 0.0,
        commit_p99_ms: 0.0,
    };
    let mut kill_after = None;
    let mut last_progress = Instant::now();
    loop {
        match lines.recv_timeout(Duration::from_millis(10)) {
            Ok(line) => {
                let fields: BTreeMap<&str, &str> =
                    line.split_whitespace().filter_map(|f| f.split_once('=')).collect();
                let number = |name: &str| fields.get(name).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
                if line.starts_with("READY") {
                    let remaining = number("remaining");
                    kill_after = kill_at.filter(|_| remaining > 0.0).map(|share| (remaining * share) as u64);
                    run.restore_ms = number("restore_ms");
                    run.replayed = number("replayed") as u64;
                } else if line.starts_with("PROGRESS") {
                    run.processed = number("processed") as u64;
                    if last_progress.elapsed() >= Duration::from_millis(500) {
                        last_progress = Instant::now();
                        say!("  ... {} messages processed in this run", run.processed);
                    }
                } else if line.starts_with("DONE") {
                    run.processed = number("processed") as u64;
                    run.commit_p50_ms = number("commit_p50_ms");
                    run.commit_p99_ms = number("commit_p99_ms");
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if let Some(after) = kill_after
            && run.processed >= after
            && !interrupted.load(Ordering::SeqCst)
        {
            // SIGKILL on Unix: no chance to commit or clean up.
            if child.kill().is_ok() {
                run.killed = true;
            }
            break;
        }
    }
    let status = child.wait()?;
    let _ = reader.join();
    run.wall = started.elapsed();
    if !run.killed && !status.success() && !interrupted.load(Ordering::SeqCst) {
        return Err(format!("the worker failed: {status}").into());
    }
    Ok(run)
}

/// Counts page views per user, and sends each user's running total to the output `totals`.
pub struct CountViews {
    processed: Arc<AtomicU64>,
}

impl StreamTask for CountViews {
    fn process(&mut self, message: &Message<'_>, ctx: &mut Context<'_>) -> Result<(), TaskError> {
        let counts = ctx.store("counts")?;
        let count = match counts.get(message.key)? {
            Some(bytes) => u64::from_le_bytes(bytes.as_slice().try_into()?),
            None => 0,
        } + 1;
        counts.put(message.key, &count.to_le_bytes())?;
        ctx.send("totals", message.key, &count.to_le_bytes())?;
        self.processed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fn task_config(dir: &Path, partition: u32) -> TaskConfig {
    let mut config = TaskConfig::new(format!("p{partition}"), task_dir(dir, partition))
        .input_log("views", input_dir(dir, partition))
        .store("counts", StoreOptions::default())
        .output_log("totals");
    config.commit_interval = Duration::from_millis(200);
    config.snapshot_every_commits = 5;
    config
}

/// `cairn demo-worker`: recovers every partition's task and runs them to the inputs' end.
pub fn worker(dir: &Path, partitions: u32) -> DemoResult {
    let fs: Arc<dyn Fs> = Arc::new(RealFs::new());
    let processed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let (mut replayed, mut remaining) = (0, 0);
    let mut runners = Vec::new();
    for p in 0..partitions {
        let task = CountViews { processed: Arc::clone(&processed) };
        let runner = TaskRunner::open(Arc::clone(&fs), task_config(dir, p), task)?;
        replayed += runner.metrics().records_replayed;
        remaining += runner.lag().values().sum::<u64>();
        runners.push(runner);
    }
    say!(
        "READY restore_ms={:.1} replayed={replayed} remaining={remaining}",
        started.elapsed().as_secs_f64() * 1e3
    );
    let mut runtime = Runtime::new();
    let stop = runtime.stop_flag();
    ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))?;
    for runner in runners {
        runtime.spawn(runner, true)?;
    }
    let done = Arc::new(AtomicBool::new(false));
    let printer = {
        let (done, processed) = (Arc::clone(&done), Arc::clone(&processed));
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(5));
                println!("PROGRESS processed={}", processed.load(Ordering::Relaxed));
            }
        })
    };
    let outcomes = runtime.join();
    done.store(true, Ordering::Relaxed);
    let _ = printer.join();
    for outcome in &outcomes {
        if let Err(e) = &outcome.result {
            return Err(format!("task {}: {e}", outcome.name).into());
        }
    }
    let p50 = outcomes.iter().filter_map(|o| o.metrics.commit_latency(0.5)).max().unwrap_or_default();
    let p99 = outcomes.iter().filter_map(|o| o.metrics.commit_latency(0.99)).max().unwrap_or_default();
    say!(
        "DONE processed={} commit_p50_ms={:.3} commit_p99_ms={:.3}",
        processed.load(Ordering::Relaxed),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );
    Ok(())
}

/// The result of checking the tasks against the input.
struct Check {
    events: u64,
    keys: u64,
    mismatches: u64,
}

/// Compares every task's store and output with counts computed directly from its input.
fn verify(fs: &Arc<dyn Fs>, dir: &Path, options: &DemoOptions) -> DemoResult<Check> {
    let mut check = Check { events: 0, keys: 0, mismatches: 0 };
    for p in 0..options.partitions {
        // Counts straight from the input.
        let mut expected: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        let input = Log::open(Arc::clone(fs), input_dir(dir, p), LogOptions::default())?;
        let mut reader = input.reader(input.start_offset())?;
        while let Some(batch) = reader.next_batch()? {
            for record in batch.records() {
                *expected.entry(record?.key.to_vec()).or_insert(0) += 1;
                check.events += 1;
            }
        }
        drop(reader);
        drop(input);
        // The task as recovery sees it (a no-op after a clean finish).
        let task = CountViews { processed: Arc::new(AtomicU64::new(0)) };
        let runner = TaskRunner::open(Arc::clone(fs), task_config(dir, p), task)?;
        let store = runner.store("counts").ok_or("no store")?;
        let mut got: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        for entry in store.iter()? {
            let (key, value) = entry?;
            got.insert(key, u64::from_le_bytes(value.as_slice().try_into()?));
        }
        check.keys += expected.len() as u64;
        for key in expected.keys().chain(got.keys()).collect::<std::collections::BTreeSet<_>>() {
            if expected.get(key) != got.get(key) {
                check.mismatches += 1;
            }
        }
        // The output: each user's running totals, 1, 2, ..., n: every message counted once.
        let output = runner.output("totals").ok_or("no output")?;
        let log = output.as_log().ok_or("the output is not a log")?;
        let end = output.end_offset();
        let mut totals: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        let mut reader = log.reader(log.start_offset())?;
        while let Some(batch) = reader.next_batch()? {
            for record in batch.records() {
                let record = record?;
                if record.offset >= end {
                    break;
                }
                let total = u64::from_le_bytes(record.value.ok_or("a tombstone in the output")?.try_into()?);
                let last = totals.entry(record.key.to_vec()).or_insert(0);
                if total != *last + 1 {
                    check.mismatches += 1;
                }
                *last = total;
            }
        }
        if totals != expected {
            check.mismatches += expected.iter().filter(|(k, v)| totals.get(*k) != Some(v)).count() as u64;
        }
    }
    Ok(check)
}
