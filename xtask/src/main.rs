//! `cargo xtask`: cairn's developer tasks (matklad's xtask convention).
//!
//! - `cargo xtask ci`: what CI runs: formatting, clippy with `-D warnings`, every test (with the
//!   simulator's crash sweeps and the mutant probes), doc tests, benches once in test mode, and
//!   the loom models with their mutants.
//! - `cargo xtask loom [--deep]`: clippy on the loom-only code, the loom models (`--cfg loom`,
//!   their own target directory, `LOOM_MAX_PREEMPTIONS=2`, or 3 with `--deep`), then each
//!   mutant in its own process, which must fail with the message it names.
//! - `cargo xtask crash <kill|points|sim|surgery|all> [--iterations N] [--seed S] [--profile
//!   ci|long] [--mutant NAME]`: the crash-recovery harness (crash.rs, docs/crash-testing.md);
//!   `ci` runs `crash all --profile ci`.
//! - `cargo xtask bench [--quick]`: the criterion benches and a Markdown table of each figure
//!   beside its baseline from the same run, written to `target/bench/report.md`.
//! - `cargo xtask compare [--quick] [options]`: the peer comparisons (`compare/`, a workspace of
//!   its own, never built by `ci`), written to `target/compare/` (report.md, results.json, one
//!   SVG chart per workload).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod bench;
mod crash;

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

type Result<T = ()> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let flag = |name: &str| args.iter().any(|a| a == name);
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("loom") => loom(flag("--deep")),
        Some("bench") => bench::run(flag("--quick")),
        Some("crash") => crash::main(&args[1..]),
        Some("compare") => compare(&args[1..]),
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "usage: cargo xtask <ci | loom [--deep] | bench [--quick] | compare [--quick] [options] | crash <kill|points|sim|surgery|all> [options]>";

/// The workspace root (the parent of this crate's directory).
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

pub(crate) fn cargo() -> Command {
    let mut command = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(root());
    command
}

/// Runs `command`, echoing it, and fails if it fails.
pub(crate) fn run(mut command: Command) -> Result {
    let shown = format!("{command:?}").replace('"', "");
    eprintln!("$ {shown}");
    let started = Instant::now();
    let status = command.status().map_err(|e| format!("cannot run {shown}: {e}"))?;
    eprintln!("  ({:.1} s)", started.elapsed().as_secs_f64());
    if status.success() { Ok(()) } else { Err(format!("{shown} failed: {status}")) }
}

/// Builds the comparison crate (its own workspace and lockfile, its own target directory) and
/// runs it; the arguments go to `cairn-compare` (`--help` lists them).
fn compare(args: &[String]) -> Result {
    let mut command = cargo();
    command
        .args(["run", "--release", "--locked", "--manifest-path", "compare/Cargo.toml", "--"])
        .args(["--out", "target/compare"])
        .args(args)
        .env("CARGO_TARGET_DIR", root().join("target/compare-build"));
    run(command)
}

fn ci() -> Result {
    let started = Instant::now();
    let steps: &[&[&str]] = &[
        &["fmt", "--all", "--", "--check"],
        &["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"],
        // Unit, integration and CLI tests, the simulator's crash sweeps and mutant probes, and
        // every bench run once in criterion's test mode.
        &["test", "--workspace", "--all-targets"],
        &["test", "--workspace", "--doc"],
    ];
    for step in steps {
        let mut command = cargo();
        command.args(*step);
        run(command)?;
    }
    loom(false)?;
    crash::main(&["all".into(), "--profile".into(), "ci".into()])?;
    eprintln!("xtask ci: all green in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// A loom mutant: the package, the test's path, and what its failure must say.
const LOOM_MUTANTS: &[(&str, &str, &str)] = &[
    ("cairn-changelog", "watermark::loom_model::loom_mutant_publish_relaxed", "Causality violation"),
    (
        "cairn-changelog",
        "group_commit::loom_model::loom_mutant_ack_without_sync",
        "acknowledged before a covering fsync",
    ),
    ("cairn-changelog", "group_commit::loom_model::loom_mutant_wake_one", "deadlock"),
    ("cairn-changelog", "segment_list::loom_model::loom_mutant_swap_in_two_steps", "a gap"),
    ("cairn-changelog", "log_loom::loom_mutant_end_before_write", "a published record was not readable"),
    ("cairn-changelog", "log_loom::loom_mutant_durable_before_fsync", "ahead of its fsync"),
    (
        "cairn-changelog",
        "log_loom::loom_mutant_poison_check_before_lock",
        "whose append failed reached the file",
    ),
    ("cairn-changelog", "log_loom::loom_mutant_close_skips_final_sync", "no fsync covered"),
    ("cairn-changelog", "log_loom::loom_mutant_stop_without_lock", "deadlock"),
    ("cairn-changelog", "log_loom::loom_mutant_ack_without_sync", "no fsync covered"),
    ("cairn-changelog", "log_loom::loom_mutant_mark_before_index", "marked before its index file"),
    ("cairn-store", "cache::loom_model::loom_mutant_cache_ignores_segment", "cached for the wrong location"),
];

/// Packages with loom models.
const LOOM_PACKAGES: &[&str] = &["cairn-changelog", "cairn-store"];

fn loom_command(package: &str, preemptions: u32) -> Command {
    let mut command = cargo();
    command
        .args(["test", "--release", "-p", package, "--lib"])
        .env("RUSTFLAGS", "--cfg loom")
        .env("CARGO_TARGET_DIR", root().join("target/loom"))
        .env("LOOM_MAX_PREEMPTIONS", preemptions.to_string());
    command
}

/// The loom tests of `package` (`loom_` in their names): the ignored ones (mutants) or all.
fn list_loom_tests(package: &str, preemptions: u32, ignored: bool) -> Result<Vec<String>> {
    let mut list = loom_command(package, preemptions);
    list.args(["loom_", "--", "--list"]);
    if ignored {
        list.arg("--ignored");
    }
    let output = list.output().map_err(|e| format!("cannot list the loom tests of {package}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cannot list the loom tests of {package}:\n{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.strip_suffix(": test"))
        .map(str::to_owned)
        .collect())
}

fn loom(deep: bool) -> Result {
    let preemptions = if deep { 3 } else { 2 };
    for package in LOOM_PACKAGES {
        // The code compiled only under loom is linted too.
        let mut lint = cargo();
        lint.args(["clippy", "-p", package, "--lib", "--tests", "--", "-D", "warnings"])
            .env("RUSTFLAGS", "--cfg loom")
            .env("CARGO_TARGET_DIR", root().join("target/loom"));
        run(lint)?;
        // Each model in a process of its own, timed.
        let mutants = list_loom_tests(package, preemptions, true)?;
        let models: Vec<String> = list_loom_tests(package, preemptions, false)?
            .into_iter()
            .filter(|t| !mutants.contains(t))
            .collect();
        if models.is_empty() {
            return Err(format!("no loom models found in {package}"));
        }
        for name in &models {
            let mut command = loom_command(package, preemptions);
            command.args([name, "--", "--exact", "--test-threads=1"]);
            let started = Instant::now();
            let output = command.output().map_err(|e| format!("cannot run loom model {name}: {e}"))?;
            if !output.status.success() {
                return Err(format!(
                    "loom model {name} failed:\n{}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ));
            }
            eprintln!("  model {name}: passed ({:.2} s)", started.elapsed().as_secs_f64());
        }

        // Every ignored loom test must be a known mutant, and every known mutant must exist.
        let listed = mutants;
        let known: Vec<&str> =
            LOOM_MUTANTS.iter().filter(|(p, _, _)| p == package).map(|(_, name, _)| *name).collect();
        for name in &listed {
            if !known.contains(&name.as_str()) {
                return Err(format!("loom mutant {name} has no expected failure in xtask's LOOM_MUTANTS"));
            }
        }
        for (_, name, expected) in LOOM_MUTANTS.iter().filter(|(p, _, _)| p == package) {
            if !listed.iter().any(|l| l == name) {
                return Err(format!("loom mutant {name} is listed in xtask but not found in {package}"));
            }
            let mut command = loom_command(package, preemptions);
            command.args([name, "--", "--ignored", "--exact", "--test-threads=1"]);
            let started = Instant::now();
            let output = command.output().map_err(|e| format!("cannot run loom mutant {name}: {e}"))?;
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            let verdict = if output.status.success() {
                Err(format!("loom mutant {name} passed: the model cannot see its bug"))
            } else if !text.contains(expected) {
                Err(format!("loom mutant {name} failed without \"{expected}\":\n{text}"))
            } else {
                Ok(())
            };
            eprintln!(
                "  mutant {name}: {} ({:.1} s)",
                if verdict.is_ok() { "caught" } else { "NOT CAUGHT" },
                started.elapsed().as_secs_f64()
            );
            verdict?;
        }
    }
    Ok(())
}
