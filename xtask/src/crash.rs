//! `cargo xtask crash <kill|points|sim|surgery|all> [--iterations N] [--seed S] [--profile ci|long]
//! [--mutant NAME]`: the crash-recovery harness (DESIGN §7 rungs 2-5; docs/crash-testing.md).
//!
//! `kill`, `points` and `surgery` drive the worker process `cairn-crash-worker`
//! (xtask/crash-worker), built here in release mode with the crash points compiled in; `sim`
//! runs the simulator's sweeps of the crates' test suites, scaled by `CAIRN_SIM_SCALE`. Every
//! mode prints its seed, progress, and `N passed, N failed`; a failure leaves an artifact
//! directory under `target/crash-artifacts/` (seed, operation log, crash point, a copy of the
//! data) and the command that replays it. `--mutant NAME` builds the worker with that
//! deliberate bug switched on, to show that the harness catches it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::{Result, cargo, root, run};

const VARIANTS: [&str; 4] = ["default", "tiny-segments", "compaction", "snapshots"];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Profile {
    Ci,
    Long,
}

struct Options {
    profile: Profile,
    seed: u64,
    iterations: Option<u64>,
    mutant: Option<String>,
}

/// What a mode did: cases passed and failed, and counts worth reporting.
#[derive(Default)]
struct Tally {
    passed: u64,
    failed: u64,
    notes: Vec<String>,
}

impl Tally {
    fn summary(&self, mode: &str, started: Instant) -> String {
        format!(
            "crash {mode}: {} passed, {} failed in {:.0} s{}",
            self.passed,
            self.failed,
            started.elapsed().as_secs_f64(),
            self.notes.iter().map(|n| format!("; {n}")).collect::<String>()
        )
    }
}

pub fn main(args: &[String]) -> Result {
    let mode = args.first().map(String::as_str).ok_or(USAGE)?;
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let profile = match value("--profile").as_deref() {
        None | Some("ci") => Profile::Ci,
        Some("long") => Profile::Long,
        Some(other) => return Err(format!("unknown profile {other}\n{USAGE}")),
    };
    let number = |name: &str| -> Result<Option<u64>> {
        value(name).map(|v| v.parse().map_err(|_| format!("{name} takes a number, not {v}"))).transpose()
    };
    let seed = number("--seed")?.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
            % 1_000_000_007
    });
    let options = Options { profile, seed, iterations: number("--iterations")?, mutant: value("--mutant") };
    eprintln!("crash {mode}: seed {seed}, profile {}", if profile == Profile::Ci { "ci" } else { "long" });
    let modes: &[&str] = match mode {
        "all" => &["sim", "surgery", "points", "kill"],
        "kill" | "points" | "sim" | "surgery" => std::slice::from_ref(&mode),
        _ => return Err(USAGE.into()),
    };
    let worker = if modes.iter().any(|m| *m != "sim") { Some(build_worker(&options)?) } else { None };
    let mut failed = 0;
    let mut lines = Vec::new();
    let all_started = Instant::now();
    for mode in modes {
        let started = Instant::now();
        let tally = match (*mode, &worker) {
            ("sim", _) => sim(&options)?,
            ("kill", Some(worker)) => kill(worker, &options)?,
            ("points", Some(worker)) => points(worker, &options)?,
            ("surgery", Some(worker)) => surgery(worker, &options)?,
            _ => unreachable!("the worker is built for every mode but sim"),
        };
        let line = tally.summary(mode, started);
        eprintln!("{line}");
        lines.push(line);
        failed += tally.failed;
    }
    if modes.len() > 1 {
        eprintln!("crash all, seed {seed}, {:.0} s:", all_started.elapsed().as_secs_f64());
        for line in &lines {
            eprintln!("  {line}");
        }
    }
    if failed > 0 { Err(format!("crash {mode}: {failed} failed (seed {seed})")) } else { Ok(()) }
}

pub const USAGE: &str = "cargo xtask crash <kill | points | sim | surgery | all> [--iterations N] [--seed S] \
                         [--profile ci|long] [--mutant NAME]";

/// Builds the worker with the crash points (and the mutant, if any) and returns its path.
fn build_worker(options: &Options) -> Result<PathBuf> {
    let mut command = cargo();
    command.args(["build", "--quiet", "--release", "-p", "cairn-crash-worker", "--features"]);
    let target = match &options.mutant {
        None => {
            command.arg("crash-points");
            root().join("target")
        }
        Some(_) => {
            // Its own directory: the mutant build's features must not evict the normal one.
            command.arg("crash-points,mutants");
            root().join("target/crash-mutant")
        }
    };
    command.env("CARGO_TARGET_DIR", &target);
    run(command)?;
    Ok(target.join("release/cairn-crash-worker"))
}

fn worker_command(worker: &Path, options: &Options) -> Command {
    let mut command = Command::new(worker);
    if let Some(mutant) = &options.mutant {
        command.env("CAIRN_MUTANT", mutant);
    }
    command.env_remove("CAIRN_CRASH_POINT");
    command
}

/// splitmix64: the harness's choices replay from its seed.
fn mix(seed: u64, i: u64) -> u64 {
    let mut z = seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn scratch(mode: &str, seed: u64) -> PathBuf {
    let dir = root().join("target/crash").join(format!("{mode}-{seed}"));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Keeps the evidence of a failure and says how to replay it.
fn save_artifact(mode: &str, options: &Options, name: &str, data: &Path, log: &str, replay: &str) -> PathBuf {
    let dir = root().join("target/crash-artifacts").join(format!("{mode}-{}-{name}", options.seed));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join("seed"), format!("{}\n", options.seed));
    let _ = std::fs::write(dir.join("log"), log);
    let _ = std::fs::write(dir.join("replay"), format!("{replay}\n"));
    let _ = copy_tree(data, &dir.join("data"));
    eprintln!("  FAILED: evidence kept in {}\n  replay: {replay}", dir.display());
    dir
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

fn replay_command(mode: &str, options: &Options, extra: &str) -> String {
    let profile = if options.profile == Profile::Long { " --profile long" } else { "" };
    let mutant = options.mutant.as_ref().map(|m| format!(" --mutant {m}")).unwrap_or_default();
    format!("cargo xtask crash {mode} --seed {}{profile}{mutant}{extra}", options.seed)
}

/// A worker run's output lines, with when each arrived.
struct Run {
    lines: Vec<(Duration, String)>,
    stderr: String,
    killed: bool,
    status: std::process::ExitStatus,
}

/// Runs the worker, killing it with SIGKILL after `kill_after` if it is still running.
fn run_worker(mut command: Command, kill_after: Option<Duration>) -> Result<Run> {
    let started = Instant::now();
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the worker: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut stderr = child.stderr.take().ok_or("no stderr")?;
    let (send, receive) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(std::io::Result::ok) {
            if send.send((started.elapsed(), line)).is_err() {
                break;
            }
        }
    });
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut killed = false;
    if let Some(after) = kill_after {
        loop {
            if child.try_wait().map_err(|e| e.to_string())?.is_some() {
                break;
            }
            if started.elapsed() >= after {
                // SIGKILL: no handler, no clean-up, at whatever instruction it is.
                let _ = child.kill();
                killed = true;
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    let _ = reader.join();
    let lines = receive.try_iter().collect();
    let stderr = errors.join().unwrap_or_default();
    let killed = killed && !status.success();
    Ok(Run { lines, stderr, killed, status })
}

impl Run {
    fn text(&self) -> String {
        let mut text = String::new();
        for (at, line) in &self.lines {
            let _ = writeln!(text, "{:>9.3} ms  {line}", at.as_secs_f64() * 1000.0);
        }
        let _ = writeln!(text, "status: {}, killed: {}\nstderr:\n{}", self.status, self.killed, self.stderr);
        text
    }
}

/// The reference model's summary line fields at `upto`, cached.
struct Models<'a> {
    worker: &'a Path,
    cache: HashMap<(u64, u64), String>,
}

impl Models<'_> {
    fn at(&mut self, seed: u64, upto: u64) -> Result<String> {
        if let Some(summary) = self.cache.get(&(seed, upto)) {
            return Ok(summary.clone());
        }
        let output = Command::new(self.worker)
            .args(["model", "--seed", &seed.to_string(), "--upto", &upto.to_string()])
            .output()
            .map_err(|e| format!("cannot run the model: {e}"))?;
        let text = String::from_utf8_lossy(&output.stdout);
        let summary = text
            .trim()
            .strip_prefix(&format!("MODEL {upto} "))
            .ok_or(format!("the model printed {text}"))?
            .to_string();
        self.cache.insert((seed, upto), summary.clone());
        Ok(summary)
    }
}

/// What the harness knows of one workload's commits across restarts.
struct Commits {
    acked: u64,
    started: u64,
}

impl Commits {
    /// Checks a run's lines against what came before: a recovery must land on the last
    /// acknowledged commit or the one in flight (acknowledged ⊆ recovered ⊆ started, a prefix),
    /// with the state and outputs of the model at that offset. `must` (a crash after the
    /// commit point) allows only the commit in flight.
    fn check(&mut self, run: &Run, seed: u64, models: &mut Models<'_>, must: bool) -> Result<Option<u64>> {
        let mut recovered = None;
        for (_, line) in &run.lines {
            let mut words = line.splitn(3, ' ');
            let (tag, offset) =
                (words.next().unwrap_or(""), words.next().and_then(|w| w.parse::<u64>().ok()));
            match (tag, offset) {
                ("RECOVERED", Some(at)) => {
                    let allowed =
                        if must { at == self.started } else { at == self.acked || at == self.started };
                    if !allowed {
                        return Err(format!(
                            "recovered input offset {at}; the last acknowledged commit is at {}, the last \
                             started at {}{}",
                            self.acked,
                            self.started,
                            if must { " (the crash came after the commit point)" } else { "" }
                        ));
                    }
                    let summary = words.next().unwrap_or("");
                    let model = models.at(seed, at)?;
                    if summary != model {
                        return Err(format!(
                            "recovered at {at} with state {summary}, the model has {model} \
                             (state digest, output digest, keys, outputs)"
                        ));
                    }
                    (self.acked, self.started) = (at, at);
                    recovered = Some(at);
                }
                ("START", Some(at)) => {
                    if at < self.acked {
                        return Err(format!(
                            "a commit started at {at}, behind the acknowledged {}",
                            self.acked
                        ));
                    }
                    self.started = at;
                }
                ("ACK", Some(at)) => {
                    if at != self.started {
                        return Err(format!(
                            "acknowledged {at}, but the commit in flight is {}",
                            self.started
                        ));
                    }
                    self.acked = at;
                }
                ("DONE", Some(_)) => {}
                _ if tag == "ERROR" => return Err(format!("the worker failed: {line}")),
                _ => return Err(format!("the worker printed {line:?}")),
            }
        }
        Ok(recovered)
    }
}

fn messages(variant: &str) -> u64 {
    // Tiny segments fsync a segment and its index every 4 KiB: fewer messages for a similar time.
    if variant == "tiny-segments" { 2_000 } else { 20_000 }
}

fn run_args(command: &mut Command, dir: &Path, seed: u64, variant: &str) {
    command
        .args(["run", "--seed", &seed.to_string(), "--messages", &messages(variant).to_string()])
        .args(["--variant", variant])
        .arg("--dir")
        .arg(dir);
}

/// `kill`: SIGKILL at random moments, restarts, and checks after each restart.
fn kill(worker: &Path, options: &Options) -> Result<Tally> {
    let target = options.iterations.unwrap_or(if options.profile == Profile::Ci { 200 } else { 2000 });
    let base = scratch("kill", options.seed);
    let mut models = Models { worker, cache: HashMap::new() };
    let mut tally = Tally::default();
    let (mut kills, mut early_kills, mut workloads) = (0u64, 0u64, 0u64);
    let mut expected: HashMap<&str, Duration> = HashMap::new();
    let mut choice = 0u64;
    while kills < target {
        let variant = VARIANTS[(workloads % 4) as usize];
        let seed = mix(options.seed, workloads);
        let dir = base.join(format!("w{workloads}-{variant}"));
        let mut commits = Commits { acked: 0, started: 0 };
        let mut log = format!("workload {workloads}: variant {variant}, worker seed {seed}\n");
        let mut failure = None;
        loop {
            choice += 1;
            let full = *expected.get(variant).unwrap_or(&Duration::from_millis(400));
            // A third of the kills fall in the first 15 ms: start-up and recovery.
            let r = mix(options.seed ^ 0x4B11, choice);
            let after = if r.is_multiple_of(3) {
                Duration::from_micros(r % 15_000)
            } else {
                Duration::from_micros((r >> 8) % (full.as_micros() as u64).max(1))
            };
            let mut command = worker_command(worker, options);
            run_args(&mut command, &dir, seed, variant);
            let run = run_worker(command, Some(after))?;
            let _ = writeln!(log, "run (kill after {:.1} ms):\n{}", after.as_secs_f64() * 1000.0, run.text());
            let check = commits.check(&run, seed, &mut models, false);
            if let Err(e) = check {
                failure = Some(e);
                break;
            }
            if run.killed {
                kills += 1;
                if !run.lines.iter().any(|(_, l)| l.starts_with("RECOVERED")) {
                    early_kills += 1;
                }
                if kills.is_multiple_of(50) {
                    eprintln!("  kill: {kills}/{target} kills, {workloads} workloads finished");
                }
                continue;
            }
            if !run.status.success() {
                failure = Some(format!("the worker failed: {}", run.text()));
                break;
            }
            // Finished: the final state must be the model's of the whole input.
            // How long a whole run takes, from this one's share of the input: kill delays are
            // drawn up to it.
            let resumed = run
                .lines
                .iter()
                .find_map(|(_, l)| l.strip_prefix("RECOVERED ")?.split(' ').next()?.parse().ok());
            let done = run.lines.iter().find(|(_, l)| l.starts_with("DONE")).map(|(at, _)| *at);
            if let (Some(resumed), Some(done)) = (resumed, done) {
                let left = messages(variant).saturating_sub(resumed).max(1);
                if left * 4 >= messages(variant) {
                    expected.insert(variant, done * (messages(variant) / left) as u32);
                }
            }
            let mut command = worker_command(worker, options);
            run_args(&mut command, &dir, seed, variant);
            command.args(["--exit-after-commits", "0"]);
            let last = run_worker(command, None)?;
            let _ = writeln!(log, "final check:\n{}", last.text());
            match commits.check(&last, seed, &mut models, true) {
                Ok(Some(at)) if at == messages(variant) => {}
                Ok(other) => failure = Some(format!("after the last run the task recovered at {other:?}")),
                Err(e) => failure = Some(e),
            }
            break;
        }
        match failure {
            None => {
                tally.passed += 1;
                let _ = std::fs::remove_dir_all(&dir);
            }
            Some(e) => {
                tally.failed += 1;
                eprintln!("  kill: workload {workloads} ({variant}) failed: {e}");
                let _ = writeln!(log, "FAILED: {e}");
                let replay = replay_command("kill", options, &format!(" --iterations {}", kills.max(1)));
                save_artifact("kill", options, &format!("w{workloads}"), &dir, &log, &replay);
                if tally.failed >= 3 {
                    break;
                }
            }
        }
        workloads += 1;
    }
    tally
        .notes
        .push(format!("{kills} kills ({early_kills} before recovery finished) over {workloads} workloads"));
    Ok(tally)
}

/// Where a point's rule comes from: a crash after the commit point must keep the commit.
fn point_rule(point: &str) -> (&'static str, bool) {
    match point {
        "changelog-rolled" => ("tiny-segments", false),
        "compaction-committed" => ("compaction", false),
        // After three commits: a snapshot to load in one variant, a whole changelog to replay
        // (no snapshot yet) in the other.
        "restore-snapshot-loaded" => ("snapshots", false),
        "restore-replaying" => ("default", false),
        "snapshot-written" => ("snapshots", true),
        "checkpoint-renamed" | "checkpoint-dir-synced" | "task-checkpointed" => ("default", true),
        _ => ("default", false),
    }
}

/// `points`: every named crash point, at several hits, each followed by a checked recovery.
fn points(worker: &Path, options: &Options) -> Result<Tally> {
    let listed = Command::new(worker).arg("points").output().map_err(|e| e.to_string())?;
    let names: Vec<String> = String::from_utf8_lossy(&listed.stdout).lines().map(str::to_owned).collect();
    if names.is_empty() {
        return Err("the worker lists no crash points: built without them?".into());
    }
    let hits: &[u64] = if options.profile == Profile::Ci { &[1, 3] } else { &[1, 2, 3, 5, 8, 13, 40] };
    let base = scratch("points", options.seed);
    let mut models = Models { worker, cache: HashMap::new() };
    let mut tally = Tally::default();
    let mut never = Vec::new();
    for (p, name) in names.iter().enumerate() {
        let (variant, must) = point_rule(name);
        let mut fired = 0;
        for &k in hits {
            let seed = mix(options.seed, p as u64 * 100 + k);
            let dir = base.join(format!("{name}-{k}"));
            let mut commits = Commits { acked: 0, started: 0 };
            let mut log = format!("point {name}, hit {k}, variant {variant}, worker seed {seed}\n");
            let restore = name.starts_with("restore-");
            let result = (|| -> Result<bool> {
                if restore {
                    // Something to restore: three commits, then an exit without clean-up.
                    let mut command = worker_command(worker, options);
                    run_args(&mut command, &dir, seed, variant);
                    command.args(["--exit-after-commits", "3", "--inline-snapshots"]);
                    let run = run_worker(command, None)?;
                    let _ = writeln!(log, "preparing run:\n{}", run.text());
                    commits.check(&run, seed, &mut models, false)?;
                }
                let mut command = worker_command(worker, options);
                run_args(&mut command, &dir, seed, variant);
                command.arg("--inline-snapshots").env("CAIRN_CRASH_POINT", format!("{name}@{k}"));
                let run = run_worker(command, None)?;
                let _ = writeln!(log, "armed run:\n{}", run.text());
                let hit = run.stderr.contains(&format!("crash point {name} hit {k}"));
                commits.check(&run, seed, &mut models, false)?;
                if !hit && !run.status.success() {
                    return Err(format!("the armed worker failed without its crash point: {}", run.text()));
                }
                let mut command = worker_command(worker, options);
                run_args(&mut command, &dir, seed, variant);
                command.args(["--exit-after-commits", "0"]);
                let last = run_worker(command, None)?;
                let _ = writeln!(log, "recovery:\n{}", last.text());
                // During a restore, nothing new was started: the rule is the strict one.
                let recovered = commits.check(&last, seed, &mut models, hit && (must || restore))?;
                if recovered.is_none() {
                    return Err(format!("the recovering worker printed no RECOVERED line: {}", last.text()));
                }
                Ok(hit)
            })();
            match result {
                Ok(hit) => {
                    tally.passed += 1;
                    fired += u64::from(hit);
                    let _ = std::fs::remove_dir_all(&dir);
                }
                Err(e) => {
                    tally.failed += 1;
                    eprintln!("  point {name} hit {k}: {e}");
                    let _ = writeln!(log, "FAILED: {e}");
                    save_artifact(
                        "points",
                        options,
                        &format!("{name}-{k}"),
                        &dir,
                        &log,
                        &replay_command("points", options, ""),
                    );
                }
            }
        }
        eprintln!(
            "  point {name}: fired at {fired} of {} hit counts ({variant}, {})",
            hits.len(),
            if must { "commit must survive" } else { "either commit" }
        );
        if fired == 0 {
            never.push(name.clone());
        }
    }
    if !never.is_empty() {
        tally.failed += never.len() as u64;
        eprintln!("  points that never fired: {}", never.join(", "));
    }
    tally.notes.push(format!("{} points", names.len()));
    Ok(tally)
}

/// The test targets holding the simulator's sweeps and fault scenarios.
const SIM_TESTS: &[&str] = &["crash", "crash_compaction", "faults", "runtime"];

/// `sim`: the `SimFs` sweeps of every crate, gathered, scaled in the long profile.
fn sim(options: &Options) -> Result<Tally> {
    let scale = options.iterations.unwrap_or(if options.profile == Profile::Ci { 1 } else { 40 });
    let mut command = cargo();
    command.args(["test", "--workspace"]);
    if options.profile == Profile::Long {
        command.arg("--release");
    }
    if let Some(mutant) = &options.mutant {
        // The test builds have the mutants compiled in; the variable switches one on everywhere.
        command.env("CAIRN_MUTANT", mutant);
    }
    for test in SIM_TESTS {
        command.args(["--test", test]);
    }
    command.args(["--", "--show-output"]).env("CAIRN_SIM_SCALE", scale.to_string());
    command.env("CAIRN_CRASH_SEED", options.seed.to_string());
    eprintln!("  sim: cargo test of {} with CAIRN_SIM_SCALE={scale}", SIM_TESTS.join(", "));
    let output = command.output().map_err(|e| format!("cannot run cargo test: {e}"))?;
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    let mut tally = Tally::default();
    let mut images = 0u64;
    for line in text.lines() {
        if let Some(n) = line.trim().strip_prefix("sim-images: ") {
            images += n.parse::<u64>().unwrap_or(0);
        }
        if let Some(rest) = line.strip_prefix("test result: ") {
            let count = |what: &str| -> u64 {
                rest.split(';')
                    .find_map(|part| {
                        part.trim()
                            .trim_start_matches("ok. ")
                            .trim_start_matches("FAILED. ")
                            .strip_suffix(what)
                    })
                    .and_then(|n| n.trim().parse().ok())
                    .unwrap_or(0)
            };
            tally.passed += count(" passed");
            tally.failed += count(" failed");
        }
    }
    if !output.status.success() {
        tally.failed = tally.failed.max(1);
        let log = root().join("target/crash-artifacts").join(format!("sim-{}.log", options.seed));
        let _ = std::fs::create_dir_all(log.parent().unwrap_or(Path::new(".")));
        let _ = std::fs::write(&log, &text);
        eprintln!(
            "  FAILED: output kept in {}\n  replay: {}",
            log.display(),
            replay_command("sim", options, "")
        );
    }
    tally.notes.push(format!("{images} simulated crash images (scale {scale})"));
    Ok(tally)
}

/// `surgery`: every case of docs/crash-testing.md, checked against its expected outcome.
fn surgery(worker: &Path, options: &Options) -> Result<Tally> {
    let expected = expected_surgery()?;
    let listed = Command::new(worker).arg("surgery-cases").output().map_err(|e| e.to_string())?;
    let cases: Vec<String> = String::from_utf8_lossy(&listed.stdout).lines().map(str::to_owned).collect();
    for case in &cases {
        if !expected.contains_key(case) {
            return Err(format!("surgery case {case} has no row in docs/crash-testing.md"));
        }
    }
    for case in expected.keys() {
        if !cases.contains(case) {
            return Err(format!("docs/crash-testing.md lists surgery case {case}, which the worker lacks"));
        }
    }
    let rounds = options.iterations.unwrap_or(if options.profile == Profile::Ci { 1 } else { 4 });
    let base = scratch("surgery", options.seed);
    let mut tally = Tally::default();
    for round in 0..rounds {
        let seed = mix(options.seed, 0x5_0000 + round);
        for case in &cases {
            let dir = base.join(format!("{case}-{round}"));
            let mut command = worker_command(worker, options);
            command.args(["surgery", "--seed", &seed.to_string(), "--case", case]).arg("--dir").arg(&dir);
            let run = run_worker(command, None)?;
            let want = &expected[case];
            let outcomes: Vec<&str> =
                run.lines.iter().filter_map(|(_, l)| l.strip_prefix(&format!("OUTCOME {case} "))).collect();
            let verdict = if outcomes.is_empty() {
                Err(format!("no outcome: {}", run.text()))
            } else {
                outcomes.iter().try_for_each(|o| surgery_matches(want, o, &dir))
            };
            match verdict {
                Ok(()) => {
                    tally.passed += outcomes.len() as u64;
                    let _ = std::fs::remove_dir_all(&dir);
                }
                Err(e) => {
                    tally.failed += 1;
                    eprintln!("  surgery {case} (seed {seed}): expected {want}: {e}");
                    let log = format!(
                        "case {case}, worker seed {seed}, expected {want}\n{}FAILED: {e}\n",
                        run.text()
                    );
                    save_artifact(
                        "surgery",
                        options,
                        case,
                        &dir,
                        &log,
                        &replay_command("surgery", options, ""),
                    );
                }
            }
        }
        eprintln!("  surgery: round {}/{rounds} done", round + 1);
    }
    tally.notes.push(format!("{} cases", cases.len()));
    Ok(tally)
}

/// Whether an outcome is the expected one: `exact`, or `corruption: <words>` (an error naming a
/// file of the damaged task directory and a byte position, and saying those words).
fn surgery_matches(expected: &str, outcome: &str, dir: &Path) -> Result {
    if expected == "exact" {
        return if outcome == "exact" { Ok(()) } else { Err(format!("got {outcome}")) };
    }
    let words = expected.strip_prefix("corruption: ").ok_or(format!("unknown expectation {expected}"))?;
    let named = format!("corruption in {}", dir.display());
    if outcome.starts_with("error ")
        && outcome.contains(&named)
        && outcome.contains(" at byte ")
        && outcome.contains(words)
    {
        Ok(())
    } else {
        Err(format!("got {outcome}"))
    }
}

/// The surgery table of docs/crash-testing.md: case name to expected outcome.
fn expected_surgery() -> Result<HashMap<String, String>> {
    let path = root().join("docs/crash-testing.md");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let mut table = HashMap::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with("## File surgery") {
            inside = true;
        } else if line.starts_with("## ") {
            inside = false;
        } else if inside && line.starts_with("| `") {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let (Some(case), Some(expected)) = (cells.get(1), cells.get(3)) else { continue };
            table.insert(case.trim_matches('`').to_string(), expected.trim_matches('`').to_string());
        }
    }
    if table.is_empty() {
        return Err(format!("no surgery table in {}", path.display()));
    }
    Ok(table)
}
