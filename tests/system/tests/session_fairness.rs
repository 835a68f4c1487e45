//! Fair session uploads, end to end: real kubectl through the real proxy to the simulator, the real
//! recorder with a small per-caller limit. Alice (fail closed) holds her maximum of idle `kubectl
//! exec … sleep` sessions; her next exec is refused by the recorder once its cast header names her
//! (the proxy, failing closed, ends it, and logs the recorder's reason), while Bob's exec, another
//! identity's, runs and is recorded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kubescribe_system_tests::stack::{Caller, Stack, StackOptions, Storage};
use kubescribe_system_tests::upstream::UpstreamKind;
use serde_json::Value;

/// Alice's limit in this test (the default is 32).
const PER_CALLER: usize = 2;

/// Background kubectl processes, killed when the test ends (pass or fail).
struct Background(Vec<Child>);

impl Drop for Background {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts `kubectl exec demo -- sleep 120` as `caller` (non-TTY: the cast header goes out at once).
fn idle_exec(caller: &Caller) -> Child {
    Command::new(Stack::kubectl_path().unwrap())
        .arg("--kubeconfig")
        .arg(&caller.kubeconfig)
        .args(["exec", "demo", "--", "sleep", "120"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting kubectl: {e}"))
}

/// Sessions of `user`, as the recorder lists them.
fn sessions_of(stack: &Stack, user: &str) -> Vec<Value> {
    stack
        .sessions()
        .unwrap()
        .into_iter()
        .filter(|s| s["header"]["srcNodeUser"] == user)
        .collect()
}

fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn one_caller_holding_its_maximum_of_idle_execs_does_not_keep_another_callers_exec_from_being_recorded(
) {
    let kubectl = Stack::kubectl_path().unwrap_or_else(|e| panic!("{e}"));
    let options = StackOptions::new(UpstreamKind::Sim, Storage::Disk)
        .unwrap()
        .recorder_args(&["--max-uploads-per-caller", &PER_CALLER.to_string()]);
    let stack = Stack::start_with_options(options).unwrap_or_else(|e| panic!("{e}"));

    // Alice holds her maximum of idle sessions.
    let mut held = Background(Vec::new());
    for _ in 0..PER_CALLER {
        held.0.push(idle_exec(&stack.alice));
    }
    wait_for(
        "alice's idle sessions to be recorded live",
        Duration::from_secs(30),
        || {
            let live = sessions_of(&stack, "alice@example.com")
                .iter()
                .filter(|s| s["state"] == "live")
                .count();
            (live == PER_CALLER).then_some(())
        },
    );

    // One more of hers: the recorder refuses it once the header names her; fail closed, the
    // proxy ends the session before the command's second line.
    let third = stack
        .kubectl(
            &kubectl,
            &stack.alice,
            &[
                "exec",
                "demo",
                "--",
                "sh",
                "-c",
                "echo alice-third-start; sleep 3; echo alice-third-end",
            ],
        )
        .unwrap();
    let out = String::from_utf8_lossy(&third.stdout);
    let err = String::from_utf8_lossy(&third.stderr);
    assert!(
        !third.status.success() && !out.contains("alice-third-end"),
        "alice's exec over her limit ran to its end: {out} / {err}\n--- proxy log\n{}\n--- recorder log\n{}",
        stack.proxy.log_tail(),
        stack.recorder.as_ref().map(|r| r.log_tail()).unwrap_or_default()
    );
    // (kubectl shows the proxy's fail-closed message when the proxy can place it on the error
    // channel; the recorder's reason is in the proxy's log.)
    let proxy_log = wait_for(
        "the proxy to log the recorder's refusal",
        Duration::from_secs(10),
        || {
            let log = stack.proxy.log();
            log.contains("--max-uploads-per-caller").then_some(log)
        },
    );
    assert!(
        proxy_log.contains("user alice@example.com already has 2 sessions being recorded"),
        "the refusal names the caller and the limit: {}",
        stack.proxy.log_tail()
    );

    // Bob's exec, meanwhile, runs and is recorded.
    let bob = stack
        .kubectl(
            &kubectl,
            &stack.bob,
            &[
                "exec",
                "demo",
                "--",
                "sh",
                "-c",
                "echo bob-recorded-while-alice-holds-hers",
            ],
        )
        .unwrap();
    assert!(
        bob.status.success(),
        "bob's exec: {}",
        String::from_utf8_lossy(&bob.stderr)
    );
    assert!(String::from_utf8_lossy(&bob.stdout).contains("bob-recorded-while-alice-holds-hers"));
    let session = wait_for(
        "bob's session to be stored",
        Duration::from_secs(20),
        || {
            sessions_of(&stack, "bob@example.com")
                .into_iter()
                .find(|s| s["state"] == "finished")
        },
    );
    let cast = stack.session_cast(session["id"].as_str().unwrap()).unwrap();
    assert!(
        String::from_utf8_lossy(&cast).contains("bob-recorded-while-alice-holds-hers"),
        "bob's cast: {}",
        String::from_utf8_lossy(&cast)
    );

    // Alice's held sessions are still recorded, and her refused one stored nothing.
    let alices = sessions_of(&stack, "alice@example.com");
    assert_eq!(alices.len(), PER_CALLER, "alice's sessions: {alices:?}");
    assert!(alices.iter().all(|s| s["state"] == "live"), "{alices:?}");

    // Once one of hers ends, she may start another, and it is recorded.
    let mut first = held.0.remove(0);
    let _ = first.kill();
    let _ = first.wait();
    wait_for(
        "alice's ended session to leave her count",
        Duration::from_secs(30),
        || {
            let live = sessions_of(&stack, "alice@example.com")
                .iter()
                .filter(|s| s["state"] == "live")
                .count();
            (live < PER_CALLER).then_some(())
        },
    );
    let again = stack
        .kubectl(
            &kubectl,
            &stack.alice,
            &["exec", "demo", "--", "sh", "-c", "echo alice-again"],
        )
        .unwrap();
    assert!(
        again.status.success(),
        "alice's exec within her limit: {}",
        String::from_utf8_lossy(&again.stderr)
    );
    drop(held);
}
