//! Shared by the fault tests: a client with deadlines, a bounded load, and
//! the joins that say whether every request has its event and response
//! record, and every request the API server audited has its event.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub use kubescribe_system_tests::client;
pub mod load;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kubescribe_system_tests::stack::Stack;
use kubescribe_system_tests::upstream::Upstream;
use serde_json::{json, Value};
use test_support::apiserver::{ControlPlane, PROXY};
use test_support::http;

use client::{Reply, Streamed};
use load::{Plan, Sender, Sent};

/// The text the proxy's 502 starts with when it could not reach the API server.
pub const FORWARD_ERROR: &str = "error forwarding to the API server: ";
/// What follows it when no connection could be made.
pub const CANNOT_CONNECT: &str = "cannot connect to ";
/// What it says when the connection ended before the API server answered.
pub const ENDED_BEFORE_ANSWER: &str = "ended before it answered";

/// The control plane behind the stack (which must run the real API server).
pub fn plane(stack: &mut Stack) -> &mut ControlPlane {
    match &mut stack.upstream {
        Upstream::ApiServer(plane) => plane,
        Upstream::Sim { .. } => panic!("the fault tests need the real kube-apiserver upstream"),
    }
}

/// The callers the load sends as: alice (fail closed) and ci (fail open).
pub fn senders(stack: &Stack, alice: usize, ci: usize) -> Vec<Sender> {
    let mut senders = vec![
        Sender {
            name: "alice",
            addr: stack.alice.addr(),
        };
        alice
    ];
    senders.extend(vec![
        Sender {
            name: "ci",
            addr: stack.ci.addr(),
        };
        ci
    ]);
    senders
}

/// Creates `namespace` and its ConfigMap `seed` (directly, as the admin).
pub fn prepare_namespace(plane: &ControlPlane, namespace: &str) {
    plane
        .create(
            "/api/v1/namespaces",
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
        )
        .unwrap();
    plane
        .create(
            &format!("/api/v1/namespaces/{namespace}/configmaps"),
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "seed"}, "data": {"k": "v"}}),
        )
        .unwrap();
}

/// A plan for `phase` in `namespace`.
pub fn plan(phase: &str, namespace: &str, query: &str) -> Plan {
    Plan {
        prefix: format!("kubescribe-faults/{phase}"),
        namespace: namespace.into(),
        query: query.into(),
    }
}

/// One event from the recorder with its joined response record.
#[derive(Debug, Clone)]
pub struct Stored {
    pub event: Value,
    pub response: Option<Value>,
}

/// Every stored event whose JSON contains `needle`, by User-Agent; waits
/// (up to 60 s) until each has its response record. More than one event
/// with one User-Agent is a failure of the caller.
pub fn stored_events(stack: &Stack, needle: &str) -> HashMap<String, Vec<Stored>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let all = read_events(stack.recorder_addr, needle);
        let waiting = all.iter().filter(|s| s.response.is_none()).count();
        if waiting == 0 || Instant::now() > deadline {
            let mut by_ua: HashMap<String, Vec<Stored>> = HashMap::new();
            for stored in all {
                let ua = stored.event["userAgent"].as_str().unwrap_or("").to_owned();
                by_ua.entry(ua).or_default().push(stored);
            }
            return by_ua;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn read_events(recorder: SocketAddr, needle: &str) -> Vec<Stored> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/events?limit=1000&q={needle}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let reply = http::get(recorder, &path).unwrap();
        assert_eq!(reply.status, 200, "GET {path}: {}", reply.text());
        let page = reply.json().unwrap();
        for item in page["events"].as_array().into_iter().flatten() {
            out.push(Stored {
                event: item["event"].clone(),
                response: item.get("response").filter(|r| !r.is_null()).cloned(),
            });
        }
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

/// Audit events of requests the proxy forwarded (its user) whose
/// User-Agent starts with `prefix`.
pub fn audited(plane: &ControlPlane, prefix: &str) -> Vec<Value> {
    plane
        .audit_events()
        .unwrap()
        .into_iter()
        .filter(|e| {
            e["user"]["username"] == PROXY.name
                && e["userAgent"]
                    .as_str()
                    .is_some_and(|ua| ua.starts_with(prefix))
        })
        .collect()
}

/// Problems found, collected so the test reports all of them at once.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<String>);

impl Problems {
    pub fn add(&mut self, problem: impl Into<String>) {
        self.0.push(problem.into());
    }

    pub fn check(&mut self, ok: bool, problem: impl FnOnce() -> String) {
        if !ok {
            self.add(problem());
        }
    }

    /// Panics with every kind of problem (alike up to digits and quoted
    /// text), counted, with one example each, if there are any.
    pub fn assert_none(&self, what: &str) {
        if self.0.is_empty() {
            return;
        }
        let mut kinds: BTreeMap<String, (usize, &String)> = BTreeMap::new();
        for problem in &self.0 {
            kinds.entry(kind_of(problem)).or_insert((0, problem)).0 += 1;
        }
        let lines: Vec<String> = kinds
            .values()
            .map(|(n, example)| format!("{n} × {example}"))
            .collect();
        panic!(
            "{what}: {} problem(s) of {} kind(s):\n  {}",
            self.0.len(),
            kinds.len(),
            lines.join("\n  ")
        );
    }
}

/// Prints the proxy's and kube-apiserver's log tails when there are problems,
/// then panics with them (see [`Problems::assert_none`]).
pub fn assert_no_problems(stack: &mut Stack, problems: &Problems, what: &str) {
    if !problems.0.is_empty() {
        eprintln!(
            "--- proxy log tail ---\n{}\n--- kube-apiserver log tail ---\n{}",
            stack.proxy.log_tail(),
            plane(stack).apiserver().log_tail()
        );
    }
    problems.assert_none(what);
}

/// A problem with its digits and quoted text blanked, to count alike ones.
fn kind_of(problem: &str) -> String {
    let mut out = String::new();
    let mut quoted = false;
    for c in problem.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                out.push('"');
            }
            _ if quoted => {}
            '0'..='9' => {
                if !out.ends_with('#') {
                    out.push('#');
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// The joins every fault phase must pass:
/// - every request the load sent has exactly one event, and a response
///   record whose status is the one the caller got; a reply the proxy wrote
///   itself (`proxy_answered`) or one cut short has the record's `error`;
/// - every request the API server audited (the proxy's user, this run's
///   User-Agents) has its event, and the caller got the audited status
///   unless the proxy answered it.
pub fn join_records(
    stack: &Stack,
    prefix: &str,
    sent: &[Sent],
    watches: &[(String, Streamed)],
    problems: &mut Problems,
) -> JoinSummary {
    let plane = stack
        .upstream
        .control_plane()
        .expect("the fault tests need the real kube-apiserver upstream");
    let stored = stored_events(stack, prefix);
    let mut summary = JoinSummary::default();
    let mut check_one =
        |ua: &str, got: Option<&Reply>, cut: bool, problems: &mut Problems| match stored.get(ua) {
            None => problems.add(format!("{ua}: no event")),
            Some(list) if list.len() > 1 => {
                problems.add(format!("{ua}: {} events, expected one", list.len()))
            }
            Some(list) => {
                summary.events += 1;
                let Some(response) = &list[0].response else {
                    problems.add(format!("{ua}: event without a response record"));
                    return;
                };
                summary.response_records += 1;
                let status = response["status"].as_u64().unwrap_or(0) as u16;
                let error = response["error"].as_str().unwrap_or("");
                if let Some(reply) = got {
                    if status != reply.status {
                        problems.add(format!(
                            "{ua}: response record says {status}, the caller got {}",
                            reply.status
                        ));
                    }
                    if proxy_answered(reply) || cut {
                        if error.is_empty() {
                            problems.add(format!(
                                "{ua}: the caller got {} {:?} but the response record has no error",
                                reply.status,
                                reply.text().trim()
                            ));
                        } else {
                            summary.records_with_error += 1;
                        }
                    }
                }
                if !error.is_empty() {
                    *summary.record_errors.entry(error_kind(error)).or_default() += 1;
                }
                if got.is_none() {
                    summary
                        .stream_records
                        .push((ua.to_owned(), status, error.to_owned()));
                }
            }
        };
    for s in sent {
        let reply = s.result.as_ref().ok();
        check_one(
            &s.user_agent,
            reply,
            reply.is_some_and(|r| !r.complete),
            problems,
        );
    }
    for (ua, streamed) in watches {
        check_one(ua, None, false, problems);
        let _ = streamed;
    }
    let by_ua: HashMap<&str, &Sent> = sent.iter().map(|s| (s.user_agent.as_str(), s)).collect();
    for audit in audited(plane, prefix) {
        summary.audited += 1;
        let ua = audit["userAgent"].as_str().unwrap_or("");
        if !stored.contains_key(ua) {
            problems.add(format!(
                "audited {} {} ({ua}) has no kubescribe event",
                audit["verb"], audit["requestURI"]
            ));
        }
        let code = audit["responseStatus"]["code"].as_u64().unwrap_or(0) as u16;
        if let Some(Ok(reply)) = by_ua.get(ua).map(|s| &s.result) {
            // kube-apiserver's timeout filter answers 504 while the audit
            // event keeps what its handler wrote when the deadline hit: 500,
            // or 200 when the handler finished in the same instant (seen once
            // in 1,541 requests while etcd restarted; the 504 is the API
            // server's own JSON Status, passed on as it came).
            let timed_out = (code == 500 || code == 200) && reply.status == 504;
            if !proxy_answered(reply) && reply.status != code && !timed_out {
                problems.add(format!(
                    "{ua}: the API server audited {code}, the caller got {}",
                    reply.status
                ));
            }
        }
    }
    summary
}

/// Whether the proxy wrote this reply itself (its `http.Error`-shaped text).
pub fn proxy_answered(reply: &Reply) -> bool {
    reply
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/plain"))
        && reply.status == 502
}

/// The first words of a response record's error, for counting.
fn error_kind(error: &str) -> String {
    error.chars().take(90).collect()
}

/// What the joins found.
#[derive(Debug, Default)]
pub struct JoinSummary {
    pub events: usize,
    pub response_records: usize,
    pub records_with_error: usize,
    pub audited: usize,
    pub record_errors: BTreeMap<String, usize>,
    /// The response records of the streams: User-Agent, status, error.
    pub stream_records: Vec<(String, u16, String)>,
}

/// Requests by (window, op, status or failure), with the slowest answer.
pub fn tally(sent: &[Sent], window: impl Fn(&Sent) -> &'static str) -> String {
    let mut rows: BTreeMap<(&'static str, &'static str, String), (usize, Duration, String)> =
        BTreeMap::new();
    for s in sent {
        let (outcome, sample) = match &s.result {
            Ok(r) => (
                format!("{}{}", r.status, if r.complete { "" } else { " (cut)" }),
                r.text().trim().chars().take(110).collect::<String>(),
            ),
            Err(f) => ("no reply".into(), f.to_string()),
        };
        let row = rows
            .entry((window(s), s.op, outcome))
            .or_insert((0, Duration::ZERO, sample));
        row.0 += 1;
        row.1 = row.1.max(s.took);
    }
    let mut out = String::from(
        "| window | op | caller got | count | slowest | sample body |\n|---|---|---|---|---|---|\n",
    );
    for ((w, op, outcome), (n, slowest, sample)) in rows {
        out.push_str(&format!(
            "| {w} | {op} | {outcome} | {n} | {slowest:.2?} | {} |\n",
            sample.replace('|', "/")
        ));
    }
    out
}
