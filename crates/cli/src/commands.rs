//! The subcommands, start to end: flags in, records out.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use futures_util::StreamExt;
use serde_json::Value;

use crate::client::{ClientOptions, RecorderClient};
use crate::error::CliError;
use crate::play::{play_cast, PlayOptions};
use crate::query::{EventFilters, SessionFilters};
use crate::render::{self, Format};
use crate::time_arg;

/// The most records one page of the query API holds.
const PAGE_LIMIT: usize = 1000;

/// `kubescribe`: read what a kubescribe recorder stored — API request events and `kubectl
/// exec`/`attach` sessions — and play sessions in the terminal.
#[derive(Debug, Parser)]
#[command(name = "kubescribe", version, about, long_about = None)]
pub struct Cli {
    /// The recorder's URL (its upload/query listener, e.g. http://recorder.tail1234.ts.net).
    #[arg(long, env = "KUBESCRIBE_RECORDER", value_name = "URL", global = true)]
    recorder: Option<String>,
    /// A file holding a read token the recorder accepts (its --read-token-file); without one, the
    /// recorder must admit this machine's tailnet identity (--allow-readers).
    #[arg(
        long,
        env = "KUBESCRIBE_READ_TOKEN_FILE",
        value_name = "FILE",
        global = true
    )]
    token_file: Option<PathBuf>,
    /// A CA certificate (PEM) to trust for an https recorder, besides the system's.
    #[arg(
        long,
        env = "KUBESCRIBE_RECORDER_CA",
        value_name = "FILE",
        global = true
    )]
    ca_file: Option<PathBuf>,
    /// Bound on connecting to the recorder and on each wait for more of its answer.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, value_name = "DURATION", global = true)]
    timeout: Duration,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List stored API request events, newest first (with --follow: oldest first, then new ones
    /// as they are stored).
    Events {
        #[command(flatten)]
        filters: EventFilters,
        /// How many events at most (with --follow: how many of the latest to show first).
        #[arg(long, default_value_t = 50, value_name = "N")]
        limit: usize,
        /// Keep listing new events as they are stored, until interrupted.
        #[arg(long, short = 'f')]
        follow: bool,
        /// How often --follow asks for new events.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration, value_name = "DURATION")]
        interval: Duration,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// List recorded exec/attach sessions, newest first.
    Sessions {
        #[command(flatten)]
        filters: SessionFilters,
        /// How many sessions at most.
        #[arg(long, default_value_t = 50, value_name = "N")]
        limit: usize,
        /// Output format.
        #[arg(long, short = 'o', value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Play a session's recording in this terminal with its timing (like asciinema play).
    Play {
        /// The session's id (the ID column of `kubescribe sessions`).
        session: String,
        /// Playback speed (2 plays twice as fast).
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
        /// Cut pauses longer than this many seconds to it (default: the recording's own limit).
        #[arg(long, value_name = "SECONDS")]
        idle_limit: Option<f64>,
        /// Print the recording (asciicast v2) as stored instead of playing it, e.g. to save it.
        #[arg(long)]
        raw: bool,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Runs the command line `cli`, writing results to `out`.
pub async fn run(cli: Cli, out: &mut impl Write) -> Result<(), CliError> {
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(shell, &mut Cli::command(), "kubescribe", out);
        return Ok(());
    }
    let client = connect(&cli)?;
    match cli.command {
        Command::Events {
            filters,
            limit,
            follow,
            interval,
            output,
        } => {
            let query = filters.to_query(time_arg::now())?;
            if follow {
                follow_events(&client, &query, limit, interval, output, out).await
            } else {
                let events = list(&client, "/api/v1/events", "events", &query, limit).await?;
                render::write_records(
                    out,
                    output,
                    &events,
                    &render::EVENT_COLUMNS,
                    render::event_row,
                )
            }
        }
        Command::Sessions {
            filters,
            limit,
            output,
        } => {
            let query = filters.to_query(time_arg::now())?;
            let sessions = list(&client, "/api/v1/sessions", "sessions", &query, limit).await?;
            render::write_records(
                out,
                output,
                &sessions,
                &render::SESSION_COLUMNS,
                render::session_row,
            )
        }
        Command::Play {
            session,
            speed,
            idle_limit,
            raw,
        } => {
            play(
                &client,
                &session,
                PlayOptions { speed, idle_limit },
                raw,
                out,
            )
            .await
        }
        Command::Completions { .. } => Ok(()),
    }
}

fn read_file(flag: &'static str, path: &PathBuf) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|source| CliError::File {
        flag,
        path: path.clone(),
        source,
    })
}

fn connect(cli: &Cli) -> Result<RecorderClient, CliError> {
    let recorder = cli.recorder.clone().ok_or(CliError::Usage {
        flag: "--recorder",
        reason: "say which recorder to read (or set KUBESCRIBE_RECORDER)".to_owned(),
    })?;
    let token = match &cli.token_file {
        Some(path) => {
            let token = String::from_utf8_lossy(&read_file("--token-file", path)?)
                .trim()
                .to_owned();
            if token.is_empty() {
                return Err(CliError::Usage {
                    flag: "--token-file",
                    reason: format!("{} is empty", path.display()),
                });
            }
            Some(token)
        }
        None => None,
    };
    let ca_pem = cli
        .ca_file
        .as_ref()
        .map(|path| read_file("--ca-file", path))
        .transpose()?;
    RecorderClient::new(&ClientOptions {
        recorder,
        token,
        ca_pem,
        timeout: cli.timeout,
    })
}

/// Up to `limit` records of a list endpoint, newest first, following `nextCursor`.
async fn list(
    client: &RecorderClient,
    path: &str,
    key: &str,
    query: &[(String, String)],
    limit: usize,
) -> Result<Vec<Value>, CliError> {
    let mut records = Vec::new();
    let mut cursor: Option<String> = None;
    while records.len() < limit {
        let mut page_query = query.to_vec();
        let want = (limit - records.len()).min(PAGE_LIMIT);
        page_query.push(("limit".to_owned(), want.to_string()));
        if let Some(cursor) = &cursor {
            page_query.push(("cursor".to_owned(), cursor.clone()));
        }
        let page = client.get_json(path, &page_query).await?;
        let Some(items) = page[key].as_array() else {
            return Err(CliError::Protocol(format!(
                "{path} answered without {key:?}"
            )));
        };
        records.extend(items.iter().take(limit - records.len()).cloned());
        match page["nextCursor"].as_str() {
            Some(next) if !items.is_empty() => cursor = Some(next.to_owned()),
            _ => break,
        }
    }
    Ok(records)
}

/// A stored record's place in storage order: `e-<batch>-<n>` sorts by batch (a UUIDv7), then n.
fn storage_order(id: &str) -> Option<(String, u64)> {
    let (batch_part, n) = id.rsplit_once('-')?;
    Some((batch_part.to_owned(), n.parse().ok()?))
}

/// The latest `limit` events oldest first, then every newer one as it is stored.
async fn follow_events(
    client: &RecorderClient,
    query: &[(String, String)],
    limit: usize,
    interval: Duration,
    format: Format,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let mut newest: Option<(String, u64)> = None;
    let mut first = true;
    loop {
        // Newest first; read pages until one reaches what was already shown.
        let window = if first { limit } else { PAGE_LIMIT };
        let listed = list(client, "/api/v1/events", "events", query, window).await?;
        let mut fresh: Vec<Value> = listed
            .into_iter()
            .take_while(|e| {
                let order = e["id"].as_str().and_then(storage_order);
                newest.is_none() || order > newest
            })
            .collect();
        fresh.reverse();
        if let Some(last) = fresh.last() {
            newest = last["id"].as_str().and_then(storage_order).or(newest);
        }
        match format {
            Format::Table if first => {
                let rows: Vec<Vec<String>> = fresh.iter().map(render::event_row).collect();
                render::write_table(out, &render::EVENT_COLUMNS, &rows)?;
            }
            Format::Table => {
                for event in &fresh {
                    let row = render::event_row(event).join("  ");
                    writeln!(out, "{row}").map_err(CliError::Output)?;
                }
            }
            _ => {
                for event in &fresh {
                    writeln!(out, "{event}").map_err(CliError::Output)?;
                }
            }
        }
        out.flush().map_err(CliError::Output)?;
        first = false;
        tokio::time::sleep(interval).await;
    }
}

async fn play(
    client: &RecorderClient,
    session: &str,
    options: PlayOptions,
    raw: bool,
    out: &mut impl Write,
) -> Result<(), CliError> {
    if session.is_empty() || !session.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(CliError::Usage {
            flag: "SESSION",
            reason: format!("{session:?} is not a session id (see `kubescribe sessions`)"),
        });
    }
    let path = format!("/api/v1/sessions/{session}/cast");
    let response = client.get(&path, &[]).await?;
    let chunks = response
        .bytes_stream()
        .map(|chunk| chunk.map(|b| b.to_vec()).map_err(|e| e.to_string()));
    if raw {
        futures_util::pin_mut!(chunks);
        while let Some(chunk) = chunks.next().await {
            let chunk =
                chunk.map_err(|e| CliError::Protocol(format!("the cast broke off: {e}")))?;
            out.write_all(&chunk).map_err(CliError::Output)?;
        }
        return out.flush().map_err(CliError::Output);
    }
    play_cast(chunks, out, options).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn ids_sort_by_batch_then_line() {
        let a = storage_order("e-019a0000000070008000000000000001-9");
        let b = storage_order("e-019a0000000070008000000000000001-10");
        let c = storage_order("e-019a0000000070008000000000000002-0");
        assert!(a < b && b < c);
        assert_eq!(storage_order("nonsense"), None);
    }
}
