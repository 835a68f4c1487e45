//! The subcommands beside serving: `kubescribe-recorder keygen FILE` and
//! `kubescribe-recorder verify …`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, ValueEnum};

use crate::config::{Destination, StorageArgs};
use crate::signing::{generate_signing_key, public_hex, read_public_key};
use crate::storage::disk::DiskStorage;
use crate::storage::s3::{S3Config, S3Storage};
use crate::storage::Storage;
use crate::tamper::verify::{verify, VerifyOptions};

/// `kubescribe-recorder keygen FILE`: creates an Ed25519 signing key for --signing-key.
#[derive(Debug, Parser)]
#[command(name = "kubescribe-recorder keygen")]
pub struct KeygenCli {
    /// Where to write the key (64 hex digits, mode 0600; never overwritten). The public key goes
    /// to FILE.pub.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// How `verify` prints its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// One finding a line, then a summary line.
    Text,
    /// One JSON object (the whole report).
    Json,
}

/// `kubescribe-recorder verify`: checks every manifest, chain and session hash of a store; exits
/// 1 on any finding, 2 if the store cannot be read.
#[derive(Debug, Parser)]
#[command(name = "kubescribe-recorder verify")]
pub struct VerifyCli {
    /// A local storage directory (the same as --dst PATH).
    #[arg(long, value_name = "PATH", conflicts_with = "dst")]
    pub dir: Option<PathBuf>,
    /// The store (as the recorder's flags and environment name it).
    #[command(flatten)]
    pub storage: StorageArgs,
    /// The recorder's public key (64 hex digits: FILE.pub from keygen, or `GET
    /// /api/v1/signing-key`): every manifest must be signed by it. Without it, any valid
    /// signature counts and the report names the signers.
    #[arg(long, value_name = "FILE")]
    pub public_key: Option<PathBuf>,
    /// Check only data written at or after this time (RFC 3339, or a date `YYYY-MM-DD`, UTC);
    /// manifests are always all checked.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    pub output: Output,
}

fn parse_since(text: &str) -> Result<i64, String> {
    use time::format_description::well_known::Rfc3339;
    let at = time::OffsetDateTime::parse(text, &Rfc3339)
        .or_else(|_| time::OffsetDateTime::parse(&format!("{text}T00:00:00Z"), &Rfc3339))
        .map_err(|_| format!("--since {text:?}: expected RFC 3339 or YYYY-MM-DD"))?;
    Ok((at.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// Runs `keygen` or `verify` when `args` (the whole command line) names one;
/// `None` otherwise (the recorder serves).
pub fn run_subcommand(args: &[OsString]) -> Option<ExitCode> {
    let rest = args.get(2..).unwrap_or_default();
    let name = |n: &str| std::iter::once(OsString::from(n)).chain(rest.iter().cloned());
    match args.get(1).and_then(|a| a.to_str()) {
        Some("keygen") => Some(keygen(KeygenCli::parse_from(name(
            "kubescribe-recorder keygen",
        )))),
        Some("verify") => Some(verify_main(VerifyCli::parse_from(name(
            "kubescribe-recorder verify",
        )))),
        _ => None,
    }
}

fn keygen(cli: KeygenCli) -> ExitCode {
    match generate_signing_key(&cli.file) {
        Ok(key) => {
            println!("{}", public_hex(&key.verifying_key()));
            eprintln!(
                "wrote the signing key to {} and its public key (printed above) to {}.pub",
                cli.file.display(),
                cli.file.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("keygen: {e}");
            ExitCode::from(2)
        }
    }
}

fn open(cli: &VerifyCli) -> Result<Arc<dyn Storage>, String> {
    let dest = match &cli.dir {
        Some(dir) => Destination::Disk(dir.clone()),
        None => cli.storage.destination().map_err(|e| e.to_string())?,
    };
    Ok(match dest {
        Destination::Disk(dir) => {
            if !dir.is_dir() {
                return Err(format!("{}: no such directory", dir.display()));
            }
            Arc::new(DiskStorage::open(dir).map_err(|e| e.to_string())?)
        }
        Destination::S3 {
            endpoint,
            bucket,
            region,
            allow_http,
        } => Arc::new(
            S3Storage::new(S3Config {
                endpoint,
                bucket,
                region,
                allow_http,
                credentials: None,
            })
            .map_err(|e| e.to_string())?,
        ),
    })
}

fn verify_main(cli: VerifyCli) -> ExitCode {
    let prepared = (|| {
        let storage = open(&cli)?;
        let public_key = match &cli.public_key {
            Some(path) => Some(public_hex(
                &read_public_key(path).map_err(|e| e.to_string())?,
            )),
            None => None,
        };
        let since_ms = cli.since.as_deref().map(parse_since).transpose()?;
        Ok::<_, String>((
            storage,
            VerifyOptions {
                public_key,
                since_ms,
                day: None,
            },
        ))
    })();
    let (storage, options) = match prepared {
        Ok(p) => p,
        Err(e) => {
            eprintln!("verify: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("verify: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let report = match runtime.block_on(verify(&*storage, &options)) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("verify: {}: {e}", storage.describe());
            return ExitCode::from(2);
        }
    };
    match cli.output {
        Output::Json => println!("{}", serde_json::to_string(&report).unwrap_or_default()),
        Output::Text => print!("{}", report.to_text()),
    }
    if report.findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_forms() {
        assert_eq!(parse_since("1970-01-02").unwrap(), 86_400_000);
        assert_eq!(parse_since("1970-01-01T00:00:01Z").unwrap(), 1000);
        assert!(parse_since("yesterday").is_err());
    }
}
