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

/// A finished program's stdout then stderr, as text (for assertion messages).
pub fn output_text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `output`, after panicking with `what` and the program's output unless it exited with 0.
pub fn expect_success(output: Output, what: &str) -> Output {
    assert!(output.status.success(), "{what}: {}", output_text(&output));
    output
}

/// Polls `done` every 200 ms until it holds; panics naming `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {timeout:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Sends `signal` (`STOP`, `CONT`, `KILL`, …) to process `pid` with kill(1); panics if it fails.
pub fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
    assert!(
        status.as_ref().is_ok_and(|s| s.success()),
        "kill -{signal} {pid}: {status:?}"
    );
}

/// [`test_support::netns::run_isolated`], for a test body: `true` inside the sealed namespace (run
/// the test), `false` outside once the re-run passed there; panics when the re-run failed.
pub fn in_sealed_netns(test: &str) -> bool {
    test_support::netns::run_isolated(test).unwrap_or_else(|e| panic!("{e}"))
}
