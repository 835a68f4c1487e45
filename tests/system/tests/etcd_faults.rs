//! The real kube-apiserver's storage (etcd) stopped (SIGTERM), then killed
//! (SIGKILL), and restarted each time on the same data, while the API server
//! runs, under a bounded load through kubescribe-proxy (6 workers as alice,
//! fail closed, 2 as ci, fail open; every request with `timeout=3s`, so the
//! API server answers within it) with watches open:
//!
//! - the API server's own answers (its Status objects: timeouts, 5xx) reach
//!   the caller unchanged: the same status, content type and Status (or
//!   text) as the same request sent directly; the proxy answers 502 only
//!   when the API server closed the connection without answering (it does
//!   so when a request times out just as its handler writes; the direct
//!   requests show it too), never "cannot connect";
//! - a caller that gives up before the API server answers still leaves a
//!   response record;
//! - nothing hangs; once etcd is back and the API server ready, requests
//!   succeed;
//! - every request has its event and a response record with the status the
//!   caller got, and every audited request has its event.
//!
//! Needs the peers (`cargo xtask peers`) and the workspace's binaries.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod faults;

use std::time::{Duration, Instant};

use faults::client::{Call, Failure, Reply, StreamEnd};
use faults::load::{Load, Sent, Watch};
use faults::{
    assert_no_problems, join_records, plan, plane, prepare_namespace, proxy_answered, senders,
    tally,
};
use faults::{stored_events, Problems, ENDED_BEFORE_ANSWER};
use kubescribe_system_tests::stack::{Stack, Storage};
use kubescribe_system_tests::upstream::UpstreamKind;
use serde_json::Value;
use test_support::apiserver::{ADMIN, PROXY};
use test_support::http::{self, Tls};

const WARM: Duration = Duration::from_secs(3);
const DOWN: Duration = Duration::from_secs(10);
const AFTER: Duration = Duration::from_secs(9);
/// After kube-apiserver reads from etcd again, requests may still time out for a moment
/// (kube-apiserver's storage clients reconnect); from then on all succeed.
const SETTLE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy)]
enum Fault {
    Stop,
    Kill,
}

#[test]
fn etcd_stopped_and_killed_under_load_then_restarted() {
    let mut stack = Stack::start_with(UpstreamKind::ApiServer, Storage::Disk)
        .unwrap_or_else(|e| panic!("starting the stack: {e}"));
    let mut problems = Problems::default();
    for fault in [Fault::Stop, Fault::Kill] {
        phase(&mut stack, fault, &mut problems);
    }
    assert_no_problems(&mut stack, &problems, "etcd stopped and killed under load");
}

fn phase(stack: &mut Stack, fault: Fault, problems: &mut Problems) {
    let name = match fault {
        Fault::Stop => "etcd-sigterm",
        Fault::Kill => "etcd-sigkill",
    };
    let namespace = format!("faults-{name}");
    prepare_namespace(plane(stack), &namespace);
    let plan = plan(name, &namespace, "timeout=3s");
    let senders = senders(stack, 6, 2);
    let watch_path = format!("/api/v1/namespaces/{namespace}/configmaps?watch=true");
    let watches: Vec<Watch> = [senders[0], senders[6]]
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let ua = format!("{}/{}/watch{i}", plan.prefix, s.name);
            // Open until the test closes them, unless the API server ends them.
            Watch::open(*s, &watch_path, ua, Duration::from_secs(900))
        })
        .collect();

    let load = Load::start(&plan, &senders);
    std::thread::sleep(WARM);
    let t_fault = Instant::now();
    match fault {
        Fault::Stop => plane(stack).stop_etcd().unwrap(),
        Fault::Kill => plane(stack).kill_etcd().unwrap(),
    }
    let t_dead = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let compared = compare_with_direct(stack, &plan.prefix, &namespace, problems);
    let gave_up = give_up_early(stack, &plan.prefix, &namespace);
    std::thread::sleep(DOWN.saturating_sub(t_dead.elapsed()));
    let t_restart = Instant::now();
    plane(stack).start_etcd().unwrap();
    plane(stack)
        .wait_until_ready(Duration::from_secs(120))
        .unwrap_or_else(|e| {
            panic!("kube-apiserver did not become ready after etcd came back: {e}")
        });
    // `/readyz` can say 200 while storage reads still time out: kube-apiserver's etcd client
    // reconnects with a backoff, longer on a busy machine. Ready is when a direct read succeeds.
    let seed = format!("/api/v1/namespaces/{namespace}/configmaps/seed?timeout=3s");
    let reads_again = Instant::now() + Duration::from_secs(90);
    while Instant::now() < reads_again
        && !plane(stack)
            .request(&ADMIN, "GET", &seed, b"")
            .is_ok_and(|reply| reply.status == 200)
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    let t_ready = Instant::now();
    std::thread::sleep(AFTER);
    let sent = load.finish();
    let streams: Vec<_> = watches
        .into_iter()
        .map(|w| {
            let ended_by_itself = w.ended();
            (w.user_agent.clone(), ended_by_itself, w.close())
        })
        .collect();

    let first_success = sent
        .iter()
        .filter(|s| s.started >= t_restart)
        .find(|s| s.status().is_some_and(|c| (200..300).contains(&c)))
        .map(|s| (s.started + s.took).saturating_duration_since(t_restart));
    let window = |s: &Sent| -> &'static str {
        if s.started >= t_ready + SETTLE {
            "4 settled"
        } else if s.started >= t_ready {
            "3 after ready"
        } else if s.started >= t_restart {
            "2 etcd restarting"
        } else if s.started >= t_fault || s.started + s.took >= t_fault {
            "1 etcd down"
        } else {
            "0 before"
        }
    };
    for s in &sent {
        let w = window(s);
        let ua = &s.user_agent;
        let reply = match &s.result {
            Ok(reply) => reply,
            Err(failure) => {
                problems.add(format!("{name} {w}: {ua} got no reply: {failure}"));
                continue;
            }
        };
        let aborted = proxy_answered(reply) && reply.text().contains(ENDED_BEFORE_ANSWER);
        problems.check((!proxy_answered(reply) || aborted) && reply.complete, || {
            format!(
                "{name} {w}: {ua}: the API server was up, yet the caller got {} {:?} (complete: {})",
                reply.status,
                reply.text(),
                reply.complete
            )
        });
        match w {
            "0 before" | "4 settled" => problems.check((200..300).contains(&reply.status), || {
                format!(
                    "{name} {w}: {ua} {} {}: {} {}",
                    s.method,
                    s.path,
                    reply.status,
                    reply.text().trim()
                )
            }),
            // The API server's own errors: a Status object saying so.
            _ if reply.status >= 400 && !aborted => problems.check(is_status_of(reply), || {
                format!(
                    "{name} {w}: {ua}: {} without the API server's Status: {:?}",
                    reply.status,
                    reply.text()
                )
            }),
            _ => {}
        }
    }

    let mut stream_rows = String::new();
    for (ua, by_itself, streamed) in &streams {
        stream_rows.push_str(&format!(
            "| {ua} | {:?} | {} lines | {} | {:?} |\n",
            streamed.status,
            streamed.lines,
            if *by_itself {
                format!(
                    "ended by itself {:.2?} after the signal",
                    streamed.ended_at.saturating_duration_since(t_fault)
                )
            } else {
                "open until the test closed it".into()
            },
            streamed.end,
        ));
        problems.check(streamed.status == Some(200), || {
            format!("{name}: watch {ua} did not start: {streamed:?}")
        });
        problems.check(
            matches!(
                streamed.end,
                StreamEnd::Ended | StreamEnd::Closed | StreamEnd::ClosedByUs
            ),
            || format!("{name}: watch {ua} ended badly: {:?}", streamed.end),
        );
    }

    let stream_uas: Vec<_> = streams
        .iter()
        .map(|(ua, _, streamed)| (ua.clone(), streamed.clone()))
        .collect();
    let mut all_sent = sent.clone();
    all_sent.extend(compared.sent.iter().cloned());
    let joined = join_records(stack, &plan.prefix, &all_sent, &stream_uas, problems);

    // The caller who gave up: an event, and a response record saying the caller left.
    let gave_up_record = stored_events(stack, &gave_up.0)
        .remove(&gave_up.0)
        .and_then(|mut list| list.pop())
        .and_then(|stored| stored.response);
    problems.check(
        gave_up_record
            .as_ref()
            .is_some_and(|r| r["error"].as_str().is_some_and(|e| !e.is_empty())),
        || {
            format!(
                "{name}: a caller that gave up after {:?} ({}) left no response record with an error: {gave_up_record:?}",
                gave_up.1, gave_up.0
            )
        },
    );

    println!(
        "\n## {name}\n\n{} requests; etcd gone {:.2?} after the signal; down {DOWN:?}; first success {first_success:.2?} and kube-apiserver ready (/readyz 200 and a direct read answered) {:.2?} after etcd was started again\n\n{}\n\
         | request | through the proxy | directly |\n|---|---|---|\n{}\n\
         connections the API server closed without answering during the comparison: through the proxy {}, directly {}\n\n\
         | watch | status | carried | how it ended | end |\n|---|---|---|---|---|\n{stream_rows}\n\
         a caller that gave up after {:?}: response record {}\n\n\
         events {} / response records {} (with error {}) / audited through the proxy {}\n\
         response record errors: {:#?}\nstream response records: {:#?}\n",
        sent.len(),
        t_dead - t_fault,
        t_ready - t_restart,
        tally(&sent, window),
        compared.rows.join("\n"),
        compared.aborts_proxied,
        compared.aborts_direct,
        gave_up.1,
        gave_up_record
            .map(|r| r.to_string())
            .unwrap_or_else(|| "none".into()),
        joined.events,
        joined.response_records,
        joined.records_with_error,
        joined.audited,
        joined.record_errors,
        joined.stream_records,
    );
}

/// Whether the reply is a Kubernetes Status object whose code is the reply's
/// status (kube-apiserver's timeout filter writes its 504 without `kind`).
fn is_status_of(reply: &Reply) -> bool {
    serde_json::from_slice::<Value>(&reply.body).is_ok_and(|v| {
        (v["kind"] == "Status" || v["kind"].is_null())
            && v["status"] == "Failure"
            && v["code"].as_u64() == Some(reply.status.into())
    })
}

/// What the comparison of proxied and direct requests found.
struct Compared {
    /// Every proxied request, for the joins.
    sent: Vec<Sent>,
    /// One row per request: the answer through the proxy and directly.
    rows: Vec<String>,
    /// Connections the API server closed without answering: through the
    /// proxy (its 502) and directly.
    aborts_proxied: usize,
    aborts_direct: usize,
}

/// Sends the same requests through the proxy (as alice) and directly to the
/// API server (as the proxy's user impersonating alice, as the proxy does),
/// and checks the caller gets the API server's answer unchanged. An attempt
/// where either side got no answer (the API server closed the connection)
/// is counted and tried again, up to five times.
fn compare_with_direct(
    stack: &mut Stack,
    prefix: &str,
    namespace: &str,
    problems: &mut Problems,
) -> Compared {
    let plane = plane(stack);
    let tls = Tls::trusting(plane.ca_pem()).unwrap();
    let direct_addr = plane.addr();
    let alice = stack.alice.addr();
    let create = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "compared"}
    })
    .to_string();
    let requests: Vec<(&'static str, String, Vec<u8>)> = vec![
        (
            "GET",
            format!("/api/v1/namespaces/{namespace}/configmaps/seed?timeout=3s"),
            vec![],
        ),
        (
            "GET",
            format!("/api/v1/namespaces/{namespace}/configmaps?timeout=3s"),
            vec![],
        ),
        (
            "POST",
            format!("/api/v1/namespaces/{namespace}/configmaps?timeout=3s"),
            create.into_bytes(),
        ),
        (
            "DELETE",
            format!("/api/v1/namespaces/{namespace}/configmaps/never-made?timeout=3s"),
            vec![],
        ),
        ("GET", "/readyz".into(), vec![]),
        ("GET", "/livez".into(), vec![]),
    ];
    let mut out = Compared {
        sent: Vec::new(),
        rows: Vec::new(),
        aborts_proxied: 0,
        aborts_direct: 0,
    };
    for (i, (method, path, body)) in requests.into_iter().enumerate() {
        let mut pair = None;
        // With etcd down, kube-apiserver itself answers the same request sometimes with a 504 and
        // sometimes by closing the connection. What each way did over the attempts, for when no
        // single attempt paired them.
        let (mut proxy_closed, mut direct_closed) = (false, false);
        let (mut proxy_answer, mut direct_answer) = (None, None);
        for attempt in 0..5 {
            let ua = format!("{prefix}/alice/compare{i}-{attempt}");
            let started = Instant::now();
            let proxied = Call {
                addr: alice,
                method,
                path: &path,
                user_agent: &ua,
                body: &body,
                deadline: Duration::from_secs(30),
            }
            .send();
            out.sent.push(Sent {
                caller: "alice",
                user_agent: ua,
                op: "compare",
                method,
                path: path.clone(),
                started,
                took: started.elapsed(),
                result: proxied.clone(),
            });
            let bearer = format!("Bearer {}", PROXY.token);
            let mut headers = vec![
                ("authorization", bearer.as_str()),
                ("impersonate-user", "alice@example.com"),
                ("impersonate-group", "system:masters"),
                ("user-agent", "kubescribe-faults-direct"),
                ("accept", "application/json"),
            ];
            if !body.is_empty() {
                headers.push(("content-type", "application/json"));
            }
            let direct = http::request(direct_addr, Some(&tls), method, &path, &headers, &body);
            let mut through_proxy_failed = false;
            let proxied = match proxied {
                Ok(p) if proxy_answered(&p) && p.text().contains(ENDED_BEFORE_ANSWER) => {
                    out.aborts_proxied += 1;
                    None
                }
                Ok(p) => Some(p),
                Err(f) => {
                    through_proxy_failed = true;
                    problems.add(format!("{method} {path}: no reply through the proxy: {f}"));
                    None
                }
            };
            let direct = match direct {
                Ok(d) => Some(d),
                Err(_) => {
                    out.aborts_direct += 1;
                    None
                }
            };
            proxy_closed |= proxied.is_none() && !through_proxy_failed;
            direct_closed |= direct.is_none();
            match (proxied, direct) {
                (Some(p), Some(d)) => {
                    pair = Some(Some((p, d)));
                    break;
                }
                // The API server closed both without answering: the same behaviour.
                (None, None) if !through_proxy_failed => {
                    pair = Some(None);
                    break;
                }
                (p, d) => {
                    proxy_answer = p.or(proxy_answer);
                    direct_answer = d.or(direct_answer);
                }
            }
        }
        // Each way closed once, or each answered once (then compared below like a pair).
        let pair = pair.or(if proxy_closed && direct_closed {
            Some(None)
        } else {
            proxy_answer.zip(direct_answer).map(Some)
        });
        let Some(pair) = pair else {
            problems.add(format!(
                "{method} {path}: in five attempts, the API server never did the same through the proxy and directly"
            ));
            continue;
        };
        let Some((p, d)) = pair else {
            out.rows.push(format!(
                "| {method} {path} | 502: the API server closed the connection without answering | no answer: the API server closed the connection |"
            ));
            continue;
        };
        let same_body = if is_status_of(&p) {
            // A Status object: the same status, reason, code and message.
            let (pv, dv): (Value, Value) = (
                serde_json::from_slice(&p.body).unwrap_or_default(),
                serde_json::from_slice(&d.body).unwrap_or_default(),
            );
            ["kind", "status", "reason", "code", "message", "details"]
                .iter()
                .all(|k| pv[k] == dv[k])
        } else if p.status >= 300 {
            p.body == d.body
        } else {
            true
        };
        problems.check(
            p.status == d.status
                && p.header("content-type") == d.header("content-type")
                && same_body,
            || {
                format!(
                    "{method} {path}: through the proxy {} {:?} {:?}, directly {} {:?} {:?}",
                    p.status,
                    p.header("content-type"),
                    p.text(),
                    d.status,
                    d.header("content-type"),
                    d.text()
                )
            },
        );
        let first = |status: u16, text: String| {
            format!("{status} {}", text.trim().replace('\n', " "))
                .chars()
                .take(120)
                .collect::<String>()
        };
        out.rows.push(format!(
            "| {method} {path} | {} | {} |",
            first(p.status, p.text()),
            first(d.status, d.text())
        ));
    }
    out
}

/// A caller that asks for a ConfigMap without a timeout (the API server
/// then waits up to its 60 s request timeout for etcd) and gives up after
/// 2 s. Returns its User-Agent and how long it waited.
fn give_up_early(stack: &Stack, prefix: &str, namespace: &str) -> (String, Duration) {
    let ua = format!("{prefix}/alice/gave-up");
    let wait = Duration::from_secs(2);
    let path = format!("/api/v1/namespaces/{namespace}/configmaps");
    let body = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "gave-up"}
    })
    .to_string();
    let result = Call {
        addr: stack.alice.addr(),
        method: "POST",
        path: &path,
        user_agent: &ua,
        body: body.as_bytes(),
        deadline: wait,
    }
    .send();
    assert!(
        matches!(result, Err(Failure::Deadline { .. })),
        "a create without a timeout answered within {wait:?} while etcd was down: {result:?}"
    );
    (ua, wait)
}
