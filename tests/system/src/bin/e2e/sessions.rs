//! Session-recording scenarios: a real terminal with resizes, piped stdin,
//! attach, and the recorder failing before and during sessions.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use kubescribe_system_tests::report::Report;
use kubescribe_system_tests::stack::{Caller, Stack};
use serde_json::Value;

use crate::{eq, find_session, run_ok};

pub(crate) fn scenarios(report: &mut Report, stack: &mut Stack, kubectl: &Path) {
    report.scenario(
        "alice runs `exec -it` in a real terminal (tmux) and resizes it",
        |r| {
            r.check(
                "the TTY session is recorded with its size and resize",
                tty_session(stack, kubectl),
            );
        },
    );

    report.scenario("alice pipes stdin into `exec -i` and attaches", |r| {
        r.check(
            "`exec -i … cat` echoes piped stdin",
            piped(
                kubectl,
                &stack.alice,
                &["exec", "-i", "demo", "--", "cat"],
                "piped-stdin-line\n",
            )
            .and_then(|out| {
                if out.contains("piped-stdin-line") {
                    Ok(())
                } else {
                    Err(format!("output {out:?}"))
                }
            }),
        );
        r.check(
            "the cast holds cat's output and no input events",
            find_session(stack, "piped-stdin-line").and_then(|(header, events)| {
                eq(&header["kubernetes"]["SessionType"], "exec")?;
                eq(&header["command"], "cat")?;
                if events.iter().any(|e| e[1] == "i") {
                    return Err("stdin was recorded as input events".into());
                }
                Ok(())
            }),
        );
        r.check(
            "`attach -i` runs commands in the pod's main process",
            piped(
                kubectl,
                &stack.alice,
                &["attach", "-i", "demo"],
                "echo attached-$((40+2))\nexit\n",
            )
            .and_then(|out| {
                if out.contains("attached-42") {
                    Ok(())
                } else {
                    Err(format!("output {out:?}"))
                }
            }),
        );
        r.check(
            "the attach session is recorded as SessionType attach",
            find_session(stack, "attached-42").and_then(|(header, _)| {
                eq(&header["kubernetes"]["SessionType"], "attach")?;
                if header.get("command").is_some() {
                    return Err(format!("attach header has a command: {header}"));
                }
                Ok(())
            }),
        );
    });

    report.scenario("bob (sessions fail closed, no events): recorder down refuses exec before it reaches the API server", |r| {
        r.check("the recorder stops", stack.stop_recorder().map_err(|e| e.to_string()));
        r.check("bob's ordinary request still goes through (nothing to record)", run_ok(stack, kubectl, &stack.bob, &["get", "pods", "-l", "e2e-step=bob"]).map(|_| ()));
        r.check("bob's exec is refused with a clear message", stack.kubectl(kubectl, &stack.bob, &["exec", "demo", "--", "sh", "-c", "echo bob-must-not-run"]).map_err(|e| e.to_string()).and_then(|out| {
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() || stdout.contains("bob-must-not-run") {
                Err(format!("exec ran: {stdout}"))
            } else if stderr.contains("record") || stderr.contains("Forbidden") || stderr.contains("403") {
                Ok(())
            } else {
                Err(format!("unclear refusal: {stderr}"))
            }
        }));
        r.check("the API server never received bob's exec", stack.upstream_requests().map_err(|e| e.to_string()).and_then(|seen| {
            let execs = seen.iter().filter(|req| {
                req.impersonated_user.as_deref() == Some("bob@example.com") && req.uri.contains("/exec")
            }).count();
            if execs == 0 { Ok(()) } else { Err(format!("upstream saw {execs} exec requests from bob")) }
        }));
        r.check("the recorder starts again", stack.start_recorder().map_err(|e| e.to_string()));
        r.check("bob's exec works and is recorded once the recorder is back", run_ok(stack, kubectl, &stack.bob, &["exec", "demo", "--", "sh", "-c", "echo bob-recorded"]).and_then(|_| find_session(stack, "bob-recorded")).and_then(|(header, _)| eq(&header["srcNodeUser"], "bob@example.com")));
    });

    report.scenario("the recorder dies mid-session", |r| {
        let script = "for i in $(seq 1 30); do echo tick-$i; sleep 0.2; done; echo ticks-done";
        let alice = start_streaming(stack, kubectl, &stack.alice, script, "alice");
        let ci = start_streaming(stack, kubectl, &stack.ci, script, "ci");
        // Kill once both sessions have streamed for over two ack intervals
        // (the recorder acks, after fsync, at least every second), so the
        // first lines are acknowledged and must survive the crash.
        let both_running = [&alice, &ci].iter().try_for_each(|s| {
            s.as_ref()
                .map_err(Clone::clone)
                .and_then(|s| s.wait_for_output("tick-12"))
        });
        r.check("both sessions are streaming output", both_running);
        r.check(
            "the recorder is killed (SIGKILL) while both sessions run",
            stack.kill_recorder().map_err(|e| e.to_string()),
        );
        r.check(
            "alice's fail-closed session is ended with an error",
            alice.and_then(finish).and_then(|(ok, out, err)| {
                if ok || out.contains("ticks-done") {
                    Err(format!("the session ran to the end: {out}"))
                } else if err.trim().is_empty() {
                    Err("kubectl gave no error".into())
                } else {
                    Ok(())
                }
            }),
        );
        r.check(
            "ci's fail-open session runs to the end",
            ci.and_then(finish).and_then(|(ok, out, err)| {
                if ok && out.contains("ticks-done") {
                    Ok(())
                } else {
                    Err(format!("exit ok={ok}, output {out:?}, stderr {err:?}"))
                }
            }),
        );
        r.check(
            "the recorder starts again",
            stack.start_recorder().map_err(|e| e.to_string()),
        );
        r.check(
            "what alice's recorder acknowledged before the crash was kept",
            find_session(stack, "tick-1").map(|_| ()),
        );
    });
}

fn tty_session(stack: &Stack, kubectl: &Path) -> Result<(), String> {
    let socket = format!("kubescribe-e2e-{}", std::process::id());
    let tmux = |args: &[&str]| -> Result<(), String> {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&socket)
            .args(args)
            .output()
            .map_err(|e| format!("tmux: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "tmux {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    };
    let command = format!(
        "{} --kubeconfig {} exec -it demo -- sh -c 'stty size; echo tty-ready; sleep 2; stty size; echo tty-done'; sleep 30",
        kubectl.display(),
        stack.alice.kubeconfig.display()
    );
    tmux(&[
        "new-session",
        "-d",
        "-s",
        "tty",
        "-x",
        "120",
        "-y",
        "40",
        &command,
    ])?;
    std::thread::sleep(Duration::from_millis(1200));
    let resized = tmux(&["resize-window", "-t", "tty", "-x", "100", "-y", "30"]);
    let found = find_session(stack, "tty-done");
    let _ = tmux(&["kill-server"]);
    resized?;
    let (header, events) = found?;
    eq(&header["width"], 120)?;
    eq(&header["height"], 40)?;
    eq(&header["kubescribe"]["tty"], true)?;
    let resizes: Vec<&Value> = events.iter().filter(|e| e[1] == "r").collect();
    if !resizes.iter().any(|e| e[2] == "30x100") {
        return Err(format!(
            "no height-first resize \"30x100\" among {resizes:?}"
        ));
    }
    let output: String = events
        .iter()
        .filter(|e| e[1] == "o")
        .filter_map(|e| e[2].as_str())
        .collect();
    // The shell may start before the first resize reaches the pod (as with a
    // real kubelet), so its first `stty size` can print the default size;
    // after the resize it must print the new one.
    for want in ["tty-ready", "30 100", "tty-done"] {
        if !output.contains(want) {
            return Err(format!("terminal output lacks {want:?}: {output:?}"));
        }
    }
    Ok(())
}

fn piped(kubectl: &Path, caller: &Caller, args: &[&str], stdin: &str) -> Result<String, String> {
    use std::io::Write as _;
    let mut child = Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(&caller.kubeconfig)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    if let Some(mut input) = child.stdin.take() {
        input
            .write_all(stdin.as_bytes())
            .map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "kubectl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A kubectl running in the background, its output going to files.
struct Streaming {
    child: std::process::Child,
    stdout: std::path::PathBuf,
    stderr: std::path::PathBuf,
}

fn start_streaming(
    stack: &Stack,
    kubectl: &Path,
    caller: &Caller,
    script: &str,
    name: &str,
) -> Result<Streaming, String> {
    let stdout = stack.dir.path().join(format!("{name}.stream.out"));
    let stderr = stack.dir.path().join(format!("{name}.stream.err"));
    let child = Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(&caller.kubeconfig)
        .args(["exec", "demo", "--", "sh", "-c", script])
        .stdout(std::fs::File::create(&stdout).map_err(|e| e.to_string())?)
        .stderr(std::fs::File::create(&stderr).map_err(|e| e.to_string())?)
        .spawn()
        .map_err(|e| e.to_string())?;
    Ok(Streaming {
        child,
        stdout,
        stderr,
    })
}

impl Streaming {
    /// Waits (up to 30 s) until the command's output contains `needle`.
    fn wait_for_output(&self, needle: &str) -> Result<(), String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if std::fs::read_to_string(&self.stdout)
                .unwrap_or_default()
                .contains(needle)
            {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(format!("no {needle:?} in the session's output within 30 s"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Waits (up to 60 s) for a streaming kubectl; returns (success, stdout, stderr).
fn finish(mut streaming: Streaming) -> Result<(bool, String, String), String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = streaming.child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = streaming.child.kill();
            return Err("kubectl did not finish within 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let read = |path: &std::path::Path| std::fs::read_to_string(path).unwrap_or_default();
    Ok((
        status.success(),
        read(&streaming.stdout),
        read(&streaming.stderr),
    ))
}
