//! Real kubectl against the simulator: `logs -f`, `exec` over WebSocket (kubectl 1.37)
//! and over SPDY/3.1 (the machine image's kubectl 1.27 / 1.29, when present).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{ok, stderr, stdout, Harness};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test(flavor = "multi_thread")]
async fn logs_follow_streams_new_lines() {
    let h = Harness::start().await;
    let snapshot = ok(&h.kubectl(&["logs", "demo"]).await);
    let known = snapshot.lines().count() as u64;
    assert!(known >= kube_sim::LOG_INITIAL_LINES);
    assert_eq!(
        snapshot.lines().next().unwrap(),
        kube_sim::log_line_text("default", "demo", "main", 1)
    );
    let tail = ok(&h.kubectl(&["logs", "demo", "--tail=1"]).await);
    assert_eq!(tail.lines().count(), 1);

    let mut follower = h
        .command(
            &common::kubectl(),
            &h.kubeconfig,
            &["logs", "-f", "demo", "-c", "main"],
        )
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follower.stdout.take().unwrap()).lines();
    let target = known + 5; // only reachable by following: the log grows while we read
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            seen.push(line);
            if seen.last().unwrap() == &kube_sim::log_line_text("default", "demo", "main", target) {
                break;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("logs -f never reached line {target}: {seen:?}"));
    follower.kill().await.unwrap();
    let expected: Vec<String> = (1..=target)
        .map(|k| kube_sim::log_line_text("default", "demo", "main", k))
        .collect();
    assert_eq!(
        seen, expected,
        "a followed log is every line, in order, once"
    );
    h.sim.shutdown().await;
}

/// The exec checks every kubectl must pass, whatever its transport.
async fn exec_checks(h: &Harness, kubectl: &std::path::Path) {
    let echoed = h
        .run(
            kubectl,
            &h.kubeconfig,
            &["exec", "-i", "demo", "--", "cat"],
            Some(b"line one\nline two\n"),
        )
        .await;
    assert_eq!(ok(&echoed), "line one\nline two\n");

    let failed = h
        .run(
            kubectl,
            &h.kubeconfig,
            &[
                "exec",
                "demo",
                "--",
                "sh",
                "-c",
                "echo hi; echo oops >&2; exit 3",
            ],
            None,
        )
        .await;
    assert_eq!(failed.status.code(), Some(3), "stderr: {}", stderr(&failed));
    assert_eq!(stdout(&failed), "hi\n");
    assert!(stderr(&failed).contains("oops\n"), "{}", stderr(&failed));

    let sandboxed = h
        .run(
            kubectl,
            &h.kubeconfig,
            &[
                "exec",
                "demo",
                "-c",
                "main",
                "--",
                "sh",
                "-c",
                "pwd; echo $HOSTNAME",
            ],
            None,
        )
        .await;
    let sandbox = h.sim.sandbox().join("default").join("demo");
    assert_eq!(ok(&sandboxed), format!("{}\ndemo\n", sandbox.display()));

    let missing = h
        .run(
            kubectl,
            &h.kubeconfig,
            &["exec", "demo", "--", "no-such-command"],
            None,
        )
        .await;
    assert_ne!(missing.status.code(), Some(0));
    assert!(
        stderr(&missing).contains("executable file not found"),
        "{}",
        stderr(&missing)
    );

    // Megabytes each way (beyond any SPDY/WebSocket window or buffer).
    let big = vec![b'x'; 3_000_000];
    let counted = h
        .run(
            kubectl,
            &h.kubeconfig,
            &["exec", "-i", "demo", "--", "wc", "-c"],
            Some(&big),
        )
        .await;
    assert_eq!(ok(&counted).trim(), "3000000");
    let produced = h
        .run(
            kubectl,
            &h.kubeconfig,
            &["exec", "demo", "--", "head", "-c", "3000000", "/dev/zero"],
            None,
        )
        .await;
    assert_eq!(produced.stdout.len(), 3_000_000);

    attach_checks(h, kubectl).await;
}

/// attach: sessions share the container's long-running main process (an `sh`).
async fn attach_checks(h: &Harness, kubectl: &std::path::Path) {
    use tokio::io::AsyncWriteExt;
    // First attacher sets state in the shell, sees it, then goes away (detaches).
    let mut first = h
        .command(kubectl, &h.kubeconfig, &["attach", "-i", "demo"])
        .spawn()
        .unwrap();
    let mut stdin = first.stdin.take().unwrap();
    stdin
        .write_all(b"X=persisted; echo set-$X\n")
        .await
        .unwrap();
    let mut out = BufReader::new(first.stdout.take().unwrap());
    let mut seen = String::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        let mut line = String::new();
        while !seen.contains("set-persisted") {
            line.clear();
            if out.read_line(&mut line).await.unwrap() == 0 {
                break;
            }
            seen.push_str(&line);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("first attach never saw its output: {seen:?}"));
    assert!(seen.contains("set-persisted"), "{seen:?}");
    first.kill().await.unwrap();

    // A later attacher finds the same process (and its state); `exit 4` ends it.
    let second = h
        .run(
            kubectl,
            &h.kubeconfig,
            &["attach", "-i", "demo"],
            Some(b"echo again-$X\nexit 4\n"),
        )
        .await;
    assert!(
        stdout(&second).contains("again-persisted"),
        "{}",
        stdout(&second)
    );
    assert_eq!(second.status.code(), Some(4), "{}", stderr(&second));

    // The next attach starts a fresh main process.
    let third = h
        .run(
            kubectl,
            &h.kubeconfig,
            &["attach", "-i", "demo"],
            Some(b"echo fresh-[$X]\nexit 0\n"),
        )
        .await;
    assert!(stdout(&third).contains("fresh-[]"), "{}", stdout(&third));
    assert_eq!(third.status.code(), Some(0), "{}", stderr(&third));
    assert!(h.sim.requests().iter().any(|r| r
        .uri
        .starts_with("/api/v1/namespaces/default/pods/demo/attach?")
        && r.status == Some(101)));
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_over_websocket_with_kubectl_1_37() {
    let h = Harness::start().await;
    exec_checks(&h, &common::kubectl()).await;
    let execs: Vec<_> = h
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.uri.contains("/exec?"))
        .collect();
    assert!(!execs.is_empty());
    for request in &execs {
        assert_eq!(request.method, "GET");
        assert_eq!(
            request
                .header("upgrade")
                .map(str::to_ascii_lowercase)
                .as_deref(),
            Some("websocket")
        );
        assert_eq!(request.status, Some(101));
    }
    h.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_over_spdy_with_old_kubectl() {
    let mut ran = false;
    for minor in [27, 29] {
        let Some(old) = common::old_kubectl(minor) else {
            eprintln!("kubectl 1.{minor} is not on this machine: skipping its SPDY exec checks");
            continue;
        };
        ran = true;
        let h = Harness::start().await;
        exec_checks(&h, &old).await;
        let execs: Vec<_> = h
            .sim
            .requests()
            .into_iter()
            .filter(|r| r.uri.contains("/exec?"))
            .collect();
        assert!(!execs.is_empty());
        for request in &execs {
            assert_eq!(request.method, "POST");
            assert_eq!(request.header("upgrade"), Some("SPDY/3.1"));
            assert_eq!(request.status, Some(101));
        }
        h.sim.shutdown().await;
    }
    if !ran {
        eprintln!("no SPDY-only kubectl (1.27/1.29) on this machine: SPDY exec checked only by unit tests");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_ends_running_exec_sessions() {
    let mut clients = vec![common::kubectl()];
    clients.extend(common::old_kubectl(27)); // SPDY, when present
    for client in clients {
        let h = Harness::start().await;
        let mut session = h
            .command(
                &client,
                &h.kubeconfig,
                &["exec", "demo", "--", "sleep", "3600"],
            )
            .spawn()
            .unwrap();
        tokio::time::timeout(Duration::from_secs(60), async {
            while !h
                .sim
                .requests()
                .iter()
                .any(|r| r.uri.contains("/exec?") && r.status == Some(101))
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("exec never started");
        h.sim.shutdown().await;
        let status = tokio::time::timeout(Duration::from_secs(60), session.wait())
            .await
            .unwrap_or_else(|_| panic!("{} exec outlived the simulator", client.display()))
            .unwrap();
        assert!(!status.success(), "an interrupted session is not a success");
    }
}
