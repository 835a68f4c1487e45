//! Runs the real command of an exec/attach session in the pod's sandbox directory:
//! through pipes, or in a pseudo-terminal (`tty=true`) with resize support.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// What the transport sends to the process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Bytes for stdin.
    Data(Bytes),
    /// The client closed stdin.
    Eof,
    /// New terminal size (columns, rows).
    Resize(u16, u16),
}

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// stdout (the terminal, with a tty).
    Stdout,
    /// stderr.
    Stderr,
}

/// How the process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// Exit code (128 + signal when killed by a signal).
    Code(i32),
    /// The command could not be started.
    StartFailed(String),
}

/// Options of one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionOptions {
    /// argv.
    pub command: Vec<String>,
    /// Run in a pseudo-terminal.
    pub tty: bool,
    /// Connect stdin.
    pub stdin: bool,
    /// Connect stdout.
    pub stdout: bool,
    /// Connect stderr (ignored with a tty).
    pub stderr: bool,
    /// Initial terminal size (columns, rows).
    pub size: (u16, u16),
}

/// A running session: feed `input`, read `output` until it closes, then await `exit`.
pub struct Session {
    /// Input to the process.
    pub input: mpsc::Sender<Input>,
    /// Output chunks; closes when the process's outputs are closed.
    pub output: mpsc::Receiver<(Output, Bytes)>,
    /// The exit status.
    pub exit: oneshot::Receiver<Exit>,
    /// Dropping (or sending on) this kills the process: hold it for the session's life.
    pub kill: oneshot::Sender<()>,
}

/// How long output may trail the process's exit (background children holding the
/// terminal or pipes open) before the session ends anyway.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

fn exit_of(status: std::io::Result<std::process::ExitStatus>) -> Exit {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(status) => Exit::Code(
            status
                .code()
                .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
        ),
        Err(e) => Exit::StartFailed(e.to_string()),
    }
}

fn environment(dir: &Path, pod: &str, tty: bool) -> Vec<(String, String)> {
    let mut env = vec![
        (
            "PATH".to_string(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        ),
        ("HOME".to_string(), dir.display().to_string()),
        ("HOSTNAME".to_string(), pod.to_string()),
        ("PS1".to_string(), format!("{pod}:$ ")),
    ];
    if tty {
        env.push(("TERM".to_string(), "xterm".to_string()));
    }
    env
}

/// Starts `options.command` in `dir` (created if needed). `pod` names the pod for
/// `HOSTNAME` and the prompt.
pub(crate) fn spawn(options: &SessionOptions, dir: &Path, pod: &str) -> Session {
    let (input_tx, input_rx) = mpsc::channel(64);
    let (output_tx, output_rx) = mpsc::channel(64);
    let (exit_tx, exit_rx) = oneshot::channel();
    let (kill_tx, kill_rx) = oneshot::channel::<()>();
    let session = Session {
        input: input_tx,
        output: output_rx,
        exit: exit_rx,
        kill: kill_tx,
    };
    if let Err(e) = std::fs::create_dir_all(dir) {
        let _ = exit_tx.send(Exit::StartFailed(format!(
            "cannot create sandbox {}: {e}",
            dir.display()
        )));
        return session;
    }
    let result = if options.tty {
        spawn_tty(options, dir, pod, input_rx, output_tx)
    } else {
        spawn_pipes(options, dir, pod, input_rx, output_tx)
    };
    match result {
        Ok(child) => {
            tokio::spawn(async move {
                // Dropping the child future kills the process (`kill_on_drop`).
                tokio::select! {
                    exit = child => {
                        let _ = exit_tx.send(exit);
                    }
                    _ = kill_rx => {}
                }
            });
        }
        Err(e) => {
            let _ = exit_tx.send(Exit::StartFailed(e));
        }
    }
    session
}

type ChildFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Exit> + Send>>;

fn start_error(command: &[String], e: &std::io::Error) -> String {
    let program = command.first().map(String::as_str).unwrap_or_default();
    if e.kind() == std::io::ErrorKind::NotFound {
        format!("exec: \"{program}\": executable file not found in $PATH")
    } else {
        format!("exec: \"{program}\": {e}")
    }
}

fn spawn_pipes(
    options: &SessionOptions,
    dir: &Path,
    pod: &str,
    mut input: mpsc::Receiver<Input>,
    output: mpsc::Sender<(Output, Bytes)>,
) -> Result<ChildFuture, String> {
    let program = options.command.first().ok_or("no command")?;
    let mut command = tokio::process::Command::new(program);
    command
        .args(&options.command[1..])
        .current_dir(dir)
        .env_clear()
        .envs(environment(dir, pod, false))
        .stdin(if options.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(if options.stdout {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(if options.stderr {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|e| start_error(&options.command, &e))?;
    let mut stdin = child.stdin.take();
    tokio::spawn(async move {
        while let Some(message) = input.recv().await {
            match message {
                Input::Data(data) => {
                    if let Some(pipe) = stdin.as_mut() {
                        if pipe.write_all(&data).await.is_err() {
                            stdin = None;
                        }
                    }
                }
                Input::Eof => stdin = None,
                Input::Resize(..) => {}
            }
        }
    });
    let readers = vec![
        child
            .stdout
            .take()
            .map(|r| copy_out(Box::new(r), Output::Stdout, output.clone())),
        child
            .stderr
            .take()
            .map(|r| copy_out(Box::new(r), Output::Stderr, output.clone())),
    ];
    drop(output);
    Ok(Box::pin(async move {
        let status = child.wait().await;
        finish_readers(readers.into_iter().flatten().collect()).await;
        exit_of(status)
    }))
}

fn spawn_tty(
    options: &SessionOptions,
    dir: &Path,
    pod: &str,
    mut input: mpsc::Receiver<Input>,
    output: mpsc::Sender<(Output, Bytes)>,
) -> Result<ChildFuture, String> {
    let program = options.command.first().ok_or("no command")?;
    let (pty, pts) =
        pty_process::open().map_err(|e| format!("cannot open a pseudo-terminal: {e}"))?;
    let (cols, rows) = options.size;
    let _ = pty.resize(pty_process::Size::new(rows.max(1), cols.max(1)));
    let mut child = pty_process::Command::new(program)
        .args(&options.command[1..])
        .current_dir(dir)
        .env_clear()
        .envs(environment(dir, pod, true))
        .kill_on_drop(true)
        .spawn(pts)
        .map_err(|e| match e {
            pty_process::Error::Io(io) => start_error(&options.command, &io),
            other => format!("cannot start {program}: {other}"),
        })?;
    let (reader, mut writer) = pty.into_split();
    let accept_stdin = options.stdin;
    tokio::spawn(async move {
        while let Some(message) = input.recv().await {
            match message {
                Input::Data(data) if accept_stdin => {
                    if writer.write_all(&data).await.is_err() {
                        break;
                    }
                }
                Input::Resize(cols, rows) => {
                    let _ = writer.resize(pty_process::Size::new(rows.max(1), cols.max(1)));
                }
                // A terminal has no separate end-of-input: ^D is data.
                Input::Data(_) | Input::Eof => {}
            }
        }
    });
    let reader = copy_out(Box::new(reader), Output::Stdout, output);
    Ok(Box::pin(async move {
        let status = child.wait().await;
        finish_readers(vec![reader]).await;
        exit_of(status)
    }))
}

async fn finish_readers(readers: Vec<tokio::task::JoinHandle<()>>) {
    for mut reader in readers {
        if tokio::time::timeout(OUTPUT_GRACE, &mut reader)
            .await
            .is_err()
        {
            reader.abort();
        }
    }
}

fn copy_out(
    mut reader: Box<dyn AsyncRead + Send + Unpin>,
    which: Output,
    output: mpsc::Sender<(Output, Bytes)>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return, // EIO from a pty whose child exited is the end
                Ok(n) => {
                    if output
                        .send((which, Bytes::copy_from_slice(&buf[..n])))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    })
}
