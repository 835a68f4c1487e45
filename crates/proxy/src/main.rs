//! `kubescribe-proxy`: the Kubernetes API server proxy binary. Parses the
//! command line and runs the command; no logic lives here.

use std::process::ExitCode;

use clap::Parser;
use kubescribe_proxy::{Cli, Command};

/// mimalloc: request handling makes many small, short-lived allocations
/// across threads, which it serves faster than the system allocator.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Whois(args)) => kubescribe_proxy::whois(args).await,
        None => kubescribe_proxy::serve(cli.serve).await,
    }
}
