//! Running a client program (kubectl, a Python script) to completion, with
//! a deadline: a client that hangs is killed, and the test says so instead
//! of hanging with it.

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::Error;

/// Runs `command` (stdin closed, stdout and stderr captured) until it exits, killing it after
/// `timeout`, which is an error naming the program ([`test_support::process::with_deadline`]).
pub fn with_deadline(command: &mut Command, timeout: Duration) -> Result<Output, Error> {
    Ok(test_support::process::with_deadline(command, timeout)?)
}

/// Like [`with_deadline`], but hands each line of stdout to `on_line` as it arrives (while the
/// program runs): a test can act on what a streaming client (`kubectl get --watch`) has shown so
/// far. The returned stdout holds every line.
pub fn with_lines(
    command: &mut Command,
    timeout: Duration,
    mut on_line: impl FnMut(&str),
) -> Result<Output, Error> {
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running {program}: {e}"))?;
    let stderr = child.stderr.take().map(|mut pipe| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    });
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    if let Some(pipe) = child.stdout.take() {
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    let deadline = Instant::now() + timeout;
    let mut stdout = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                on_line(&line);
                stdout.push_str(&line);
                stdout.push('\n');
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{program} did not finish within {timeout:?}: killed").into());
            }
        }
    }
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{program} did not exit within {timeout:?}: killed").into());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(Output {
        status,
        stdout: stdout.into_bytes(),
        stderr: stderr.and_then(|t| t.join().ok()).unwrap_or_default(),
    })
}
