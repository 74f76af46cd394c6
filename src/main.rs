//! The `cairn` command-line tool.

mod demo;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// cairn: durable local state for stream processing.
#[derive(Debug, Parser)]
#[command(name = "cairn", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs a page-view counting task over a partitioned input, kills its worker process with
    /// SIGKILL at random moments, restarts it, and checks the final counts and outputs against
    /// the input: every view must be counted exactly once.
    Demo {
        /// Directory for the input and the tasks' state; a new temporary directory (removed
        /// afterwards) if not given. An input already there is reused.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Page views to generate.
        #[arg(long, default_value_t = 2_000_000)]
        events: u64,
        /// Input partitions (one task, on its own thread, per partition).
        #[arg(long, default_value_t = 2)]
        partitions: u32,
        /// Distinct users.
        #[arg(long, default_value_t = 100_000)]
        users: u64,
        /// Times the worker is killed before it may finish.
        #[arg(long, default_value_t = 3)]
        crashes: u32,
        /// Seed of the input and of the kill times (default: from the clock).
        #[arg(long)]
        seed: Option<u64>,
        /// Keep the temporary directory instead of removing it.
        #[arg(long)]
        keep: bool,
    },
    /// The demo's worker process (run by `cairn demo`).
    #[command(hide = true)]
    DemoWorker {
        /// The demo's directory.
        #[arg(long)]
        dir: PathBuf,
        /// Input partitions.
        #[arg(long)]
        partitions: u32,
    },
}

/// Whether the error is stdout having been closed by the reader (`cairn demo | head`): the
/// output was cut short on purpose, so there is nothing to report.
fn is_broken_pipe(error: &(dyn std::error::Error + 'static)) -> bool {
    error.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo { dir, events, partitions, users, crashes, seed, keep } => {
            demo::run(&demo::DemoOptions { dir, events, partitions, users, crashes, seed, keep })
        }
        Command::DemoWorker { dir, partitions } => demo::worker(&dir, partitions),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(e.as_ref()) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            let mut source = std::error::Error::source(e.as_ref());
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}
