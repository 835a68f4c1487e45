//! `kubescribe-recorder`: parse the command line, set up logging, run until
//! SIGTERM or Ctrl-C. No logic lives here.

use clap::Parser;
use kubescribe_recorder::Cli;
use service::logging;

/// mimalloc: request handling makes many small, short-lived allocations
/// across threads, which it serves faster than the system allocator.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let args: Vec<_> = std::env::args_os().collect();
    if let Some(code) = kubescribe_recorder::run_subcommand(&args) {
        return code;
    }
    let cli = Cli::parse_from(args);
    logging::init(cli.log_format);
    let config = match cli.validate() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("invalid configuration: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(kubescribe_recorder::run(config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}
