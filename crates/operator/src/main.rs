//! `kubescribe-operator`: parses the command line and runs the command; no logic lives here.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use kubescribe_operator::{Cli, Command};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Crds(args)) => match args.out_dir {
            Some(dir) => kubescribe_operator::write_crds(&dir),
            None => kubescribe_operator::crds_yaml().and_then(|yaml| {
                std::io::stdout()
                    .write_all(yaml.as_bytes())
                    .map_err(Into::into)
            }),
        },
        None => kubescribe_operator::run(cli.run).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("kubescribe-operator: {err}");
            ExitCode::FAILURE
        }
    }
}
