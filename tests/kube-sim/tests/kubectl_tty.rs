//! Interactive (`-it`) sessions through a real terminal (`script` gives kubectl a pty):
//! the simulator runs the command in a pseudo-terminal and applies kubectl's terminal size.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::Harness;
use tokio::process::Command;

async fn tty_session(h: &Harness, kubectl: &Path, verb: &str) {
    // Waits (no timing assumptions) until the pty has kubectl's size, then reports it.
    let inner = format!(
        "stty cols 99 rows 31; exec {} --kubeconfig {} --cache-dir {} {verb} -it demo -- sh -c 'until [ \"$(stty size)\" = \"31 99\" ]; do sleep 0.1; done; echo sized-$TERM; exit 7'",
        kubectl.display(),
        h.kubeconfig.display(),
        h.dir.path().join("tty-cache").display(),
    );
    let mut child = Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("`script` (util-linux) is needed to give kubectl a terminal");
    let stdin = child.stdin.take(); // held open: EOF would end the terminal session
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("tty session hung")
        .unwrap();
    drop(stdin);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("sized-xterm"),
        "{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        text.contains("command terminated with exit code 7"),
        "{text}"
    );
    assert_eq!(output.status.code(), Some(7), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_tty_over_websocket_applies_terminal_size() {
    let h = Harness::start().await;
    tty_session(&h, &common::kubectl(), "exec").await;
    h.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_tty_over_spdy_applies_terminal_size() {
    let Some(old) = common::old_kubectl(27).or_else(|| common::old_kubectl(29)) else {
        eprintln!("no SPDY-only kubectl (1.27/1.29) on this machine: skipping the SPDY tty check");
        return;
    };
    let h = Harness::start().await;
    tty_session(&h, &old, "exec").await;
    h.sim.shutdown().await;
}
