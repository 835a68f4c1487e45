//! The only recorder frozen (SIGSTOP) under a fail-closed load through
//! kubescribe-proxy in front of the real kube-apiserver, then resumed
//! (SIGCONT). 8 closed-loop connections as alice (events on, fail closed,
//! one recorder) each `GET` a ConfigMap path of their own:
//!
//! - every request sent while the recorder is frozen and answered before it
//!   resumes is refused with the recorder client's 502
//!   (`error recording Kubernetes API request: …`);
//! - nothing reaches the API server unrecorded: every request kube-apiserver
//!   audited has its event stored, and no refused request was audited;
//! - after SIGCONT requests are forwarded again, with the same processes;
//! - each refused request ends up on the record as refused: once the
//!   proxy's spool has drained, its event is stored, and its event
//!   (`kubescribe.decision`) or its response record (`decision`) says
//!   `refused-fail-closed`.
//!
//! How fast refusals come is measured by `cargo xtask bench-stall`, never
//! asserted here. Needs the peers (`cargo xtask peers`) and the workspace's
//! binaries.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use kubescribe_system_tests::load::{Load, Sample};
use kubescribe_system_tests::stack::{Stack, Storage};
use kubescribe_system_tests::upstream::UpstreamKind;

const WORKERS: usize = 8;
/// Each worker waits this long after an answer (about 400 requests/s in all at most).
const PAUSE: Duration = Duration::from_millis(20);
const WARM: Duration = Duration::from_secs(3);
const STALL: Duration = Duration::from_secs(10);
const AFTER: Duration = Duration::from_secs(8);
/// Requests sent this long after SIGCONT must all be forwarded.
const RECOVERED: Duration = Duration::from_secs(3);
const REFUSAL: &str = "error recording Kubernetes API request: ";

fn forwarded(s: &Sample) -> bool {
    // The API server's own answer: the ConfigMaps do not exist.
    s.status == 404 && !s.body.starts_with(REFUSAL)
}

fn refused(s: &Sample) -> bool {
    s.status == 502 && s.body.starts_with(REFUSAL)
}

/// Stored events of the load's requests by path: the event's
/// `kubescribe.decision` and the joined response record's `decision`.
fn stored(stack: &Stack) -> HashMap<String, (Option<String>, Option<String>)> {
    stack
        .all_events("resource=configmaps&q=%2Fconfigmaps%2Fload-")
        .unwrap()
        .into_iter()
        .filter_map(|e| {
            let path = e["event"]["request"]["path"].as_str()?.to_owned();
            let on_event = e["event"]["kubescribe"]["decision"]
                .as_str()
                .map(str::to_owned);
            let on_response = e["response"]["decision"].as_str().map(str::to_owned);
            Some((path, (on_event, on_response)))
        })
        .collect()
}

fn says_refused(decisions: &(Option<String>, Option<String>)) -> bool {
    [&decisions.0, &decisions.1]
        .iter()
        .any(|d| d.as_deref() == Some("refused-fail-closed"))
}

#[test]
fn the_only_recorder_frozen_under_fail_closed_load_refuses_then_recovers() {
    let mut stack = Stack::start_with(UpstreamKind::ApiServer, Storage::Disk)
        .unwrap_or_else(|e| panic!("starting the stack: {e}"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let load = Load::start(&runtime, stack.alice.addr(), "default", WORKERS, PAUSE);
    std::thread::sleep(WARM);
    stack.pause_recorder().unwrap();
    let stopped = Instant::now();
    std::thread::sleep(STALL);
    let before_resume = Instant::now();
    stack.resume_recorder().unwrap();
    std::thread::sleep(AFTER);
    let samples = load.stop(&runtime);
    let mut problems: Vec<String> = Vec::new();

    let warm: Vec<&Sample> = samples.iter().filter(|s| s.answered() < stopped).collect();
    if !warm.iter().any(|s| forwarded(s)) {
        problems.push(format!(
            "no request was forwarded before the stall: {:?}",
            warm.first()
        ));
    }
    let during: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.sent >= stopped && s.answered() < before_resume)
        .collect();
    if during.is_empty() {
        problems.push("no request was answered during the stall".into());
    }
    for s in &during {
        if !refused(s) {
            problems.push(format!(
                "{} sent during the stall got {} {:?}, not the 502 refusal",
                s.path, s.status, s.body
            ));
        }
    }
    let recovered_at = before_resume + RECOVERED;
    let late: Vec<&Sample> = samples.iter().filter(|s| s.sent >= recovered_at).collect();
    if late.is_empty() {
        problems.push("no request was sent after the recorder resumed".into());
    }
    for s in &late {
        if !forwarded(s) {
            problems.push(format!(
                "{} sent {:?} after SIGCONT got {} {:?}",
                s.path,
                s.sent.duration_since(before_resume),
                s.status,
                s.body
            ));
        }
    }
    for s in &samples {
        if !forwarded(s) && !refused(s) {
            problems.push(format!("{} got {} {:?}", s.path, s.status, s.body));
        }
    }

    // What the API server saw, and what the recorder stored. Refused
    // requests reach the recorder through the proxy's spool once it has
    // resumed: wait until each has its event.
    let refused_paths: Vec<&str> = samples
        .iter()
        .filter(|s| refused(s))
        .map(|s| s.path.as_str())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut events = stored(&stack);
    while Instant::now() < deadline
        && refused_paths
            .iter()
            .any(|p| !events.get(*p).is_some_and(says_refused))
    {
        std::thread::sleep(Duration::from_secs(1));
        events = stored(&stack);
    }
    for path in &refused_paths {
        match events.get(*path) {
            None => problems.push(format!("refused {path} has no stored event")),
            Some(d) if !says_refused(d) => problems.push(format!(
                "refused {path}: neither its event nor its response record says refused-fail-closed: {d:?}"
            )),
            Some(_) => {}
        }
    }
    let audited: Vec<String> = stack
        .upstream_requests()
        .unwrap()
        .into_iter()
        .map(|r| r.uri)
        .filter(|uri| uri.contains("/configmaps/load-"))
        .collect();
    if audited.is_empty() {
        problems.push("kube-apiserver audited none of the load's requests".into());
    }
    for uri in &audited {
        if !events.contains_key(uri) {
            problems.push(format!(
                "{uri} reached the API server without a stored event"
            ));
        }
        if refused_paths.contains(&uri.as_str()) {
            problems.push(format!("{uri} was refused, yet reached the API server"));
        }
    }
    for s in samples.iter().filter(|s| forwarded(s)) {
        if let Some((Some(on_event), _)) = events.get(&s.path) {
            problems.push(format!(
                "forwarded {} has an event that says {on_event}",
                s.path
            ));
        }
    }
    assert!(
        stack.proxy.is_running() && stack.recorder.as_mut().is_some_and(|r| r.is_running()),
        "a process died"
    );
    if !problems.is_empty() {
        let refused_n = samples.iter().filter(|s| refused(s)).count();
        eprintln!(
            "{} requests, {refused_n} refused; --- proxy log tail ---\n{}",
            samples.len(),
            stack.proxy.log_tail()
        );
        problems.truncate(30);
        panic!("{}", problems.join("\n"));
    }
}
