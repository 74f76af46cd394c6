//! The worker process of cairn's crash harness (`cargo xtask crash`, DESIGN §7 rungs 3-5).
//!
//! - `run`: recovers the crash task in `--dir` and runs its seeded workload (a generated input
//!   folded into two stores and an output log by the task runtime, on the real file system),
//!   committing every few polls. It prints, one line each, flushed at once:
//!   `RECOVERED <offset> <state digest> <output digest> <keys> <outputs>` after recovery,
//!   `START <offset>` before each commit and `ACK <offset>` when it returned,
//!   `DONE <offset>` when the input is consumed. The harness kills it at random moments (or a
//!   crash point armed by `CAIRN_CRASH_POINT` aborts it) and checks every recovery.
//! - `model`: prints `MODEL <offset> <state digest> <output digest> <keys> <outputs>`, the
//!   reference fold of the first `--upto` messages, for the harness to compare.
//! - `surgery`: one file-surgery case (see `surgery.rs` and docs/crash-testing.md).
//!
//! A `--mutant` build (`cargo xtask crash … --mutant NAME`) switches the named deliberate bug on
//! from `CAIRN_MUTANT`, to show that the harness catches it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

mod surgery;
mod workload;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use cairn_fs::RealFs;
use cairn_task::{TaskConfig, TaskRunner};
use clap::{Parser, Subcommand};
use workload::{Fold, INPUT, State, Variant};

#[derive(Parser)]
#[command(about = "The worker process of cairn's crash harness (cargo xtask crash)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Recover the task in DIR and run the workload, printing RECOVERED, START, ACK and DONE.
    Run {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        seed: u64,
        #[arg(long)]
        messages: u64,
        #[arg(long, value_enum)]
        variant: Variant,
        /// Exit (without a commit or any clean-up) right after this many commits of this run;
        /// 0: right after recovery.
        #[arg(long)]
        exit_after_commits: Option<u64>,
        /// With --exit-after-commits: process this many more messages (not committed) first.
        #[arg(long, default_value_t = 0)]
        tail: u64,
        /// Every write reaches the files at once (no write buffers).
        #[arg(long)]
        unbuffered: bool,
        /// Commit after every this many messages (default: after 1 to 4 polls, by seed).
        #[arg(long)]
        commit_every: Option<u64>,
        /// Write snapshots on the task's thread during the commit, so that every file
        /// operation happens in one order (crash points count hits across threads).
        #[arg(long)]
        inline_snapshots: bool,
    },
    /// Print the reference fold of the first UPTO messages.
    Model {
        #[arg(long)]
        seed: u64,
        #[arg(long)]
        upto: u64,
    },
    /// Run one file-surgery case in DIR (which must not exist) and print its OUTCOME lines.
    Surgery {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        seed: u64,
        #[arg(long)]
        case: String,
    },
    /// List the file-surgery cases.
    SurgeryCases,
    /// List the crash points compiled into this build (none without the crash-points feature).
    Points,
}

/// Prints one protocol line and flushes it, so that it is out before any crash.
pub(crate) fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // A closed stdout means the harness is gone: nothing to tell anyone.
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Run {
            dir,
            seed,
            messages,
            variant,
            exit_after_commits,
            tail,
            unbuffered,
            commit_every,
            inline_snapshots,
        } => {
            let mut config = workload::config(&dir, seed, messages, variant, unbuffered);
            config.background_snapshots = !inline_snapshots;
            run(config, seed, messages, commit_every, exit_after_commits.map(|c| (c, tail)))
        }
        Command::Model { seed, upto } => {
            say(&format!("MODEL {upto} {}", State::model(seed, upto).summary()));
            Ok(())
        }
        Command::Surgery { dir, seed, case } => surgery::run(&dir, seed, &case),
        Command::Points => {
            if cfg!(feature = "crash-points") {
                for point in cairn_fs::crash_point::ALL {
                    say(point);
                }
            }
            Ok(())
        }
        Command::SurgeryCases => {
            for case in surgery::CASES {
                say(case.name);
            }
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            say(&format!("ERROR {e}"));
            ExitCode::FAILURE
        }
    }
}

/// Runs the workload; with `exit_after` `(c, tail)`, exits after `c` commits and `tail` more
/// messages.
fn run(
    config: TaskConfig,
    seed: u64,
    messages: u64,
    commit_every: Option<u64>,
    exit_after: Option<(u64, u64)>,
) -> Result<(), String> {
    let mut runner = TaskRunner::open(Arc::new(RealFs::new()), config, Fold).map_err(|e| e.to_string())?;
    let position = |runner: &TaskRunner<Fold>| runner.positions().get(INPUT).copied().unwrap_or(0);
    say(&format!("RECOVERED {} {}", position(&runner), State::of(&runner)?.summary()));
    let exit = |runner: &mut TaskRunner<Fold>, tail: u64| -> Result<(), String> {
        let until = (position(runner) + tail).min(messages);
        while position(runner) < until {
            runner.poll_once().map_err(|e| e.to_string())?;
        }
        // Like a crash: no commit and no clean-up of any kind.
        std::process::exit(0)
    };
    if let Some((0, tail)) = exit_after {
        exit(&mut runner, tail)?;
    }
    let mut commits = 0;
    let mut round = position(&runner);
    while position(&runner) < messages {
        round += 1;
        match commit_every {
            Some(n) => {
                let until = position(&runner) + n;
                while position(&runner) < until.min(messages) {
                    runner.poll_once().map_err(|e| e.to_string())?;
                }
            }
            None => {
                for _ in 0..=workload::mix(seed ^ 0xC0FF_EE00, round) % 4 {
                    runner.poll_once().map_err(|e| e.to_string())?;
                }
            }
        }
        let at = position(&runner);
        say(&format!("START {at}"));
        runner.commit().map_err(|e| e.to_string())?;
        say(&format!("ACK {at}"));
        commits += 1;
        if let Some((after, tail)) = exit_after
            && after == commits
        {
            exit(&mut runner, tail)?;
        }
    }
    runner.finish_snapshots().map_err(|e| e.to_string())?;
    say(&format!("DONE {}", position(&runner)));
    Ok(())
}
