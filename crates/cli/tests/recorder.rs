//! `kubescribe` against the real recorder (the workspace's `kubescribe-recorder`, storing on
//! disk): events uploaded as the proxy uploads them and a session uploaded over `/record` are
//! listed, filtered and played back by the real binary, with the recorder's read token; without
//! it the recorder refuses and `kubescribe` says why; `play` runs in a real terminal under tmux.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{json, Value};
use test_support::http;
use test_support::net::free_port;
use test_support::process::{with_deadline, workspace_bin, Spawned};

const TOKEN: &str = "read-token-0123456789abcdef";

struct Recorder {
    addr: SocketAddr,
    _process: Spawned,
    dir: tempfile::TempDir,
}

impl Recorder {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("read-token");
        std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port().unwrap())
            .parse()
            .unwrap();
        let path = |p: &Path| p.to_string_lossy().into_owned();
        let args = vec![
            "--listen".to_owned(),
            addr.to_string(),
            "--admin-listen".to_owned(),
            "off".to_owned(),
            "--dst".to_owned(),
            path(&dir.path().join("data")),
            "--insecure-allow-any-uploader".to_owned(),
            "--read-token-file".to_owned(),
            path(&token),
            "--signing-key".to_owned(),
            path(&dir.path().join("signing.key")),
            "--generate-signing-key".to_owned(),
        ];
        let recorder = workspace_bin("kubescribe-recorder").unwrap();
        let mut process = Spawned::start("recorder", &recorder, &args, &[], dir.path()).unwrap();
        process
            .wait_for_tcp(addr, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{e}: {}", process.log_tail()));
        Self {
            addr,
            _process: process,
            dir,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn token_file(&self) -> String {
        self.dir
            .path()
            .join("read-token")
            .to_string_lossy()
            .into_owned()
    }
}

fn event(verb: &str, resource: &str, name: &str, user: &str, at: i64) -> Value {
    json!({
        "type": "kubernetes-api-request",
        "timestamp": at,
        "userAgent": "kubectl/v1.37.2",
        "request": {"method": "GET", "path": format!("/api/v1/namespaces/prod/{resource}/{name}"),
            "body": "", "queryParameters": {}},
        "kubernetes": {"IsResourceRequest": true, "Path": format!("/api/v1/namespaces/prod/{resource}/{name}"),
            "Verb": verb, "APIPrefix": "api", "APIGroup": "", "APIVersion": "v1", "Namespace": "prod",
            "Resource": resource, "Subresource": "", "Name": name, "Parts": [resource, name],
            "FieldSelector": "", "LabelSelector": ""},
        "source": {"node": format!("{}-laptop.tail1234.ts.net", user.split('@').next().unwrap()),
            "nodeID": "n1", "nodeUserID": 7, "nodeUser": user},
        "destination": {"node": "proxy", "nodeID": "n2"}
    })
}

const CAST_HEADER: &str = r#"{"version":2,"width":80,"height":24,"timestamp":1764356885,"command":"sh","srcNode":"alice-laptop.tail1234.ts.net","srcNodeID":"n1","srcNodeUser":"alice@example.com","kubernetes":{"podName":"web-0","namespace":"prod","container":"app","sessionType":"exec"}}"#;

/// A session whose screen, once played, shows two known lines at the top.
fn cast() -> String {
    [
        CAST_HEADER.to_owned(),
        json!([0.1, "o", "\u{1b}[2J\u{1b}[H$ cat motd\r\n"]).to_string(),
        json!([0.2, "i", "typed by the caller"]).to_string(),
        json!([0.3, "o", "welcome to web-0\r\n"]).to_string(),
    ]
    .join("\n")
        + "\n"
}

/// Three events (alice's get and delete, bob's list) and alice's session; the session's id.
fn seed(recorder: &Recorder) -> String {
    let batch: String = [
        event("get", "pods", "web-0", "alice@example.com", 1_764_356_000),
        event("list", "configmaps", "", "bob@example.com", 1_764_356_100),
        event(
            "delete",
            "pods",
            "web-0",
            "alice@example.com",
            1_764_356_200,
        ),
    ]
    .iter()
    .map(|e| format!("{e}\n"))
    .collect();
    let stored = http::request(
        recorder.addr,
        None,
        "POST",
        "/v2/events",
        &[("Content-Type", "application/x-ndjson")],
        batch.as_bytes(),
    )
    .unwrap();
    assert_eq!(stored.status, 200, "{}", stored.text());
    let session = http::request(
        recorder.addr,
        None,
        "POST",
        "/record",
        &[("Content-Type", "application/x-asciicast")],
        cast().as_bytes(),
    )
    .unwrap();
    assert_eq!(session.status, 200, "{}", session.text());
    session.json().unwrap()["id"].as_str().unwrap().to_owned()
}

fn kubescribe(recorder: &Recorder, args: &[&str], with_token: bool) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kubescribe"));
    command.args(["--recorder", &recorder.url()]).args(args);
    if with_token {
        command.args(["--token-file", &recorder.token_file()]);
    }
    with_deadline(&mut command, Duration::from_secs(30)).unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "kubescribe failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn events_and_sessions_are_listed_filtered_and_played() {
    let recorder = Recorder::start();
    let session = seed(&recorder);

    // The table: newest first, every uploaded event, the caller and the resource named.
    let table = stdout(&kubescribe(&recorder, &["events"], true));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(
        lines[0].starts_with("TIME") && lines[0].contains("CALLER"),
        "{table}"
    );
    assert!(
        lines[1].contains("alice@example.com") && lines[1].contains("delete"),
        "{table}"
    );
    assert!(
        lines[2].contains("bob@example.com") && lines[2].contains("configmaps"),
        "{table}"
    );
    assert!(
        lines[3].contains("2025-11-28T18:53:20Z") && lines[3].contains("get"),
        "{table}"
    );

    // Filters reach the recorder: alice's only, then alice's deletes, then a time window.
    let jsonl = stdout(&kubescribe(
        &recorder,
        &["events", "--user", "alice@example.com", "-o", "jsonl"],
        true,
    ));
    let verbs: Vec<String> = jsonl
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["event"]["kubernetes"]["Verb"].to_string()
        })
        .collect();
    assert_eq!(verbs, ["\"delete\"", "\"get\""]);
    let deletes = stdout(&kubescribe(
        &recorder,
        &[
            "events",
            "--user",
            "alice@example.com",
            "--verb",
            "delete",
            "-o",
            "json",
        ],
        true,
    ));
    assert_eq!(
        serde_json::from_str::<Value>(&deletes)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let window = stdout(&kubescribe(
        &recorder,
        &[
            "events",
            "--since",
            "1764356050",
            "--until",
            "2025-11-28T18:56:00Z",
            "-o",
            "jsonl",
        ],
        true,
    ));
    assert_eq!(window.lines().count(), 1, "{window}");
    assert!(window.contains("bob@example.com"));
    // --limit pages through the list.
    let one = stdout(&kubescribe(
        &recorder,
        &["events", "--limit", "1", "-o", "jsonl"],
        true,
    ));
    assert_eq!(one.lines().count(), 1);

    // Sessions: alice's, with its pod, state and size.
    let sessions = stdout(&kubescribe(&recorder, &["sessions"], true));
    assert!(sessions.lines().count() == 2, "{sessions}");
    let row = sessions.lines().nth(1).unwrap();
    for needle in [
        session.as_str(),
        "alice@example.com",
        "prod/web-0",
        "app",
        "finished",
    ] {
        assert!(row.contains(needle), "{needle} in {sessions}");
    }
    let none = stdout(&kubescribe(
        &recorder,
        &["sessions", "--pod", "db-0", "-o", "jsonl"],
        true,
    ));
    assert!(none.is_empty(), "{none}");

    // The cast as stored, byte for byte; and played: the output events only, in order.
    let raw = kubescribe(&recorder, &["play", &session, "--raw"], true);
    assert_eq!(String::from_utf8_lossy(&raw.stdout), cast());
    let played = stdout(&kubescribe(
        &recorder,
        &["play", &session, "--speed", "50"],
        true,
    ));
    assert_eq!(
        played,
        "\u{1b}[2J\u{1b}[H$ cat motd\r\nwelcome to web-0\r\n"
    );
    assert!(!played.contains("typed by the caller"));

    // Every read above was recorded by the recorder, and can be listed as such.
    let reads = stdout(&kubescribe(
        &recorder,
        &["events", "--reads", "only", "-o", "jsonl"],
        true,
    ));
    assert!(reads.lines().count() >= 8, "{reads}");
    assert!(
        reads.contains(&format!("/api/v1/sessions/{session}/cast")),
        "{reads}"
    );
}

#[test]
fn refusals_and_bad_input_say_what_is_wrong() {
    let recorder = Recorder::start();
    let refused = kubescribe(&recorder, &["events"], false);
    assert_eq!(refused.status.code(), Some(3), "{refused:?}");
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("refused") && message.contains("--token-file"),
        "{message}"
    );

    let missing = kubescribe(
        &recorder,
        &["play", "0123456789abcdef0123456789abcdef"],
        true,
    );
    assert_eq!(missing.status.code(), Some(4), "{missing:?}");
    let bad_id = kubescribe(&recorder, &["play", "../../etc/passwd"], true);
    assert_eq!(bad_id.status.code(), Some(2), "{bad_id:?}");
    let bad_time = kubescribe(&recorder, &["events", "--since", "last tuesday"], true);
    assert_eq!(bad_time.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_time.stderr).contains("--since"));

    let nobody = Command::new(env!("CARGO_BIN_EXE_kubescribe"))
        .args([
            "--recorder",
            "http://127.0.0.1:9",
            "events",
            "--timeout",
            "2s",
        ])
        .output()
        .unwrap();
    assert_eq!(nobody.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&nobody.stderr).contains("cannot reach the recorder"));
}

/// `kubescribe play` in a real terminal (tmux, 80x24): the screen shows what the session showed.
#[test]
fn play_draws_the_session_in_a_real_terminal() {
    let Some(tmux) = which("tmux") else {
        panic!("tmux is needed (.ci/run installs it)");
    };
    let recorder = Recorder::start();
    let session = seed(&recorder);
    let socket = recorder.dir.path().join("tmux.sock");
    let socket = socket.to_string_lossy().into_owned();
    let command = format!(
        "{} --recorder {} --token-file {} play {session} --speed 10; sleep 30",
        env!("CARGO_BIN_EXE_kubescribe"),
        recorder.url(),
        recorder.token_file()
    );
    let tmux_cmd = |args: &[&str]| {
        let mut cmd = Command::new(&tmux);
        cmd.args(["-S", &socket]).args(args);
        with_deadline(&mut cmd, Duration::from_secs(10)).unwrap()
    };
    let started = tmux_cmd(&["new-session", "-d", "-x", "80", "-y", "24", &command]);
    assert!(started.status.success(), "{started:?}");
    let mut screen = String::new();
    for _ in 0..50 {
        let captured = tmux_cmd(&["capture-pane", "-p"]);
        screen = String::from_utf8_lossy(&captured.stdout).into_owned();
        if screen.contains("welcome to web-0") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = tmux_cmd(&["kill-server"]);
    let lines: Vec<&str> = screen.lines().collect();
    // The session cleared the screen and drew from the top-left corner.
    assert_eq!(lines.first().copied(), Some("$ cat motd"), "{screen}");
    assert_eq!(lines.get(1).copied(), Some("welcome to web-0"), "{screen}");
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
    })
}
