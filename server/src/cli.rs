//! The command line: clap definitions and dispatch. Every subcommand lives
//! in its own module; this file only wires them.

use crate::config::{Config, ServeArgs};
use crate::wal_tools::WalCommand;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "stockd",
    version,
    about = "In-memory inventory reservation engine: hold, commit, release; never oversell"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API on a data directory (recovering it first).
    Serve(Box<ServeArgs>),
    /// Run an in-process flash sale and report throughput, latency and the oversell check.
    Demo(crate::demo::DemoArgs),
    /// Drive a running server with a flash sale over HTTP.
    Loadgen(crate::loadgen::LoadgenArgs),
    /// Inspect, verify and replay the WAL of a stopped server.
    #[command(subcommand)]
    Wal(WalCommand),
    /// Write a fresh snapshot of every shard of a stopped server's data directory.
    Snapshot {
        #[arg(env = "STOCKD_DATA_DIR")]
        dir: PathBuf,
    },
}

/// Runs the command line; returns the process exit code.
pub fn main() -> anyhow::Result<i32> {
    let cli = Cli::parse();
    init_logs();
    match cli.command {
        Command::Serve(args) => {
            let config = Config::resolve(*args)?;
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(crate::serve::run(config))?;
            Ok(0)
        }
        Command::Demo(args) => crate::demo::run(args).map(|()| 0),
        Command::Loadgen(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(crate::loadgen::run(args)).map(|()| 0)
        }
        Command::Wal(command) => crate::wal_tools::run(command),
        Command::Snapshot { dir } => crate::wal_tools::snapshot(&dir).map(|()| 0),
    }
}

/// Structured logs on stderr; `STOCKD_LOG` (or `RUST_LOG`) filters them,
/// except the `listening on` line (scripts read the port from it).
fn init_logs() {
    let filter = std::env::var("STOCKD_LOG").or_else(|_| std::env::var("RUST_LOG")).unwrap_or_else(|_| "info".into());
    let filter = format!("{filter},{}=info", crate::serve::LISTENING_TARGET);
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
