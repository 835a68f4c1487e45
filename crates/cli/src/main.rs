//! `kubescribe`: the command line for a kubescribe recorder (see the crate documentation).

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cli = kubescribe_cli::Cli::parse();
    let mut out = std::io::stdout();
    if let Err(err) = kubescribe_cli::run(cli, &mut out).await {
        eprintln!("kubescribe: {err}");
        std::process::exit(err.exit_code());
    }
}
