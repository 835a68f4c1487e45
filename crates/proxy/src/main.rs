//! `kubescribe-proxy`: the Kubernetes API server proxy binary. Parses the
//! configuration, builds the components, runs; no logic lives here.

use clap::Parser;
use kubescribe_proxy::config::{Cli, Command, LogFormat};
use kubescribe_proxy::{app, upstream, whois_cmd};

/// mimalloc: request handling makes many small, short-lived allocations
/// across threads, which it serves faster than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Some(Command::Whois(args)) = cli.command {
        std::process::exit(whois_cmd::run(args).await);
    }
    init_logging(cli.serve.log_format);
    let config = match cli.serve.validate(upstream::in_cluster::available()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("invalid configuration: {e}");
            std::process::exit(2);
        }
    };
    let mut registry = prometheus_client::registry::Registry::default();
    let components = match app::components_from_config(&config, &mut registry) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("cannot start: {e}");
            std::process::exit(1);
        }
    };
    let signal = app::shutdown_signal();
    let running = match app::start(&config, components, registry).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("cannot start: {e}");
            std::process::exit(1);
        }
    };
    let trigger = running.shutdown_trigger();
    tokio::spawn(async move {
        signal.await;
        let _ = trigger.send(true);
    });
    running.wait().await;
    tracing::info!("stopped");
}
