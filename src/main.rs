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
    /// Appends records to a changelog, syncs, reopens, verifies every record, simulates a torn
    /// write and recovers from it, printing throughput and recovery times.
    Demo {
        /// Directory for the log; a new temporary directory (removed afterwards) if not given.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Records to append.
        #[arg(long, default_value_t = 1_000_000)]
        records: u64,
        /// Bytes of each record's value.
        #[arg(long, default_value_t = 100)]
        value_bytes: usize,
        /// Keep the temporary directory instead of removing it.
        #[arg(long)]
        keep: bool,
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
        Command::Demo { dir, records, value_bytes, keep } => {
            demo::run(&demo::DemoOptions { dir, records, value_bytes, keep })
        }
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
