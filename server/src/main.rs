//! The `stockd` binary: command-line parsing and dispatch. Each subcommand
//! lives in its own module; this file only wires them to clap.
//!
//! Today: `stockd demo`. The HTTP server (`serve`), `loadgen` and the WAL
//! tools arrive with their issues.
#![forbid(unsafe_code)]

mod demo;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "stockd", version, about = "In-memory inventory reservation engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run an in-process flash sale and report throughput, latency and the oversell check.
    Demo(demo::DemoArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Demo(args) => demo::run(args),
    }
}
