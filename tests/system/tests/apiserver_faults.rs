//! The real kube-apiserver stopped (SIGTERM), then killed (SIGKILL), and
//! restarted each time on the same port and data, under a bounded load
//! through kubescribe-proxy (6 workers as alice, fail closed, and 2 as ci,
//! fail open, doing gets, lists and creates) with watches open:
//!
//! - requests in flight when it goes away are answered (its own answer, or
//!   the proxy's 502 naming the upstream failure), never left without a reply;
//! - requests made while it is down get the proxy's 502 within its connect
//!   timeout;
//! - watches end (the response ends or the connection closes), none hangs;
//! - once it is ready again requests succeed, with the same proxy process;
//! - every request has its event and a response record saying what the
//!   caller got (a 502's record carries the error), and every request the
//!   API server audited has its event.
//!
//! Every request has a deadline; one that passes it is a failure. Needs the
//! peers (`cargo xtask peers`) and the workspace's binaries.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod faults;

use std::time::{Duration, Instant};

use faults::client::StreamEnd;
use faults::load::{Load, Sent, Watch};
use faults::{
    assert_no_problems, join_records, plan, plane, prepare_namespace, proxy_answered, senders,
    tally,
};
use faults::{Problems, CANNOT_CONNECT, FORWARD_ERROR};
use kubescribe_system_tests::stack::{Stack, Storage};
use kubescribe_system_tests::upstream::UpstreamKind;

/// The proxy's bound on connecting to the API server (crates/proxy/src/upstream/client.rs).
const PROXY_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Load before the fault, time down, load after the restart.
const WARM: Duration = Duration::from_secs(3);
const DOWN: Duration = Duration::from_secs(4);
const AFTER: Duration = Duration::from_secs(4);
/// A watch opened before the fault must have ended by this long after it was opened.
const WATCH_DEADLINE: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Copy)]
enum Fault {
    Stop,
    Kill,
}

#[test]
fn the_api_server_stopped_and_killed_under_load_then_restarted() {
    let mut stack = Stack::start_with(UpstreamKind::ApiServer, Storage::Disk)
        .unwrap_or_else(|e| panic!("starting the stack: {e}"));
    let proxy_pid = stack.proxy.pid();
    let mut problems = Problems::default();
    for fault in [Fault::Stop, Fault::Kill] {
        phase(&mut stack, fault, &mut problems);
    }
    problems.check(
        stack.proxy.is_running() && stack.proxy.pid() == proxy_pid,
        || "the proxy did not keep running".into(),
    );
    assert_no_problems(
        &mut stack,
        &problems,
        "the API server stopped and killed under load",
    );
}

fn phase(stack: &mut Stack, fault: Fault, problems: &mut Problems) {
    let name = match fault {
        Fault::Stop => "apiserver-sigterm",
        Fault::Kill => "apiserver-sigkill",
    };
    let namespace = format!("faults-{name}");
    prepare_namespace(plane(stack), &namespace);
    let plan = plan(name, &namespace, "");
    let senders = senders(stack, 6, 2);
    let watch_path = format!("/api/v1/namespaces/{namespace}/configmaps?watch=true");
    let watches: Vec<Watch> = [senders[0], senders[1], senders[6]]
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let ua = format!("{}/{}/watch{i}", plan.prefix, s.name);
            Watch::open(*s, &watch_path, ua, WATCH_DEADLINE)
        })
        .collect();

    let load = Load::start(&plan, &senders);
    std::thread::sleep(WARM);
    let t_fault = Instant::now();
    match fault {
        Fault::Stop => plane(stack).stop_apiserver().unwrap(),
        Fault::Kill => plane(stack).kill_apiserver().unwrap(),
    }
    let t_dead = Instant::now();
    std::thread::sleep(DOWN);
    let t_restart = Instant::now();
    let restart_took = plane(stack)
        .start_apiserver()
        .unwrap_or_else(|e| panic!("restarting kube-apiserver: {e}"));
    let t_ready = Instant::now();
    // A watch opened after the restart works: it lists what is there as ADDED events.
    let fresh = Watch::open(
        senders[0],
        &watch_path,
        format!("{}/alice/watch-after", plan.prefix),
        Duration::from_secs(60),
    );
    std::thread::sleep(AFTER);
    let sent = load.finish();
    let fresh = fresh.close();
    let old: Vec<_> = watches
        .into_iter()
        .map(|w| (w.user_agent.clone(), w.join()))
        .collect();

    let window = |s: &Sent| -> &'static str {
        let ended = s.started + s.took;
        if s.started >= t_ready {
            "5 after ready"
        } else if s.started >= t_restart {
            "4 restarting"
        } else if s.started >= t_dead {
            "3 down"
        } else if s.started >= t_fault {
            "2 stopping"
        } else if ended >= t_fault {
            "1 in flight"
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
        // A 502 of the proxy always names the upstream failure.
        if reply.status == 502 {
            let text = reply.text();
            problems.check(
                proxy_answered(reply)
                    && text.starts_with(FORWARD_ERROR)
                    && text.trim().len() > FORWARD_ERROR.len() + 5,
                || format!("{name} {w}: {ua}: a 502 without a reason: {text:?}"),
            );
        }
        match w {
            "0 before" | "5 after ready" => {
                problems.check((200..300).contains(&reply.status) && reply.complete, || {
                    format!(
                        "{name} {w}: {ua} {} {}: {} {}",
                        s.method,
                        s.path,
                        reply.status,
                        reply.text().trim()
                    )
                })
            }
            "3 down" => {
                problems.check(proxy_answered(reply) && reply.text().contains(CANNOT_CONNECT), || {
                    format!(
                        "{name} {w}: {ua}: {} {:?} while the API server was down, not the proxy's 502",
                        reply.status,
                        reply.text()
                    )
                });
                problems.check(
                    s.took <= PROXY_CONNECT_TIMEOUT + Duration::from_secs(5),
                    || {
                        format!(
                        "{name} {w}: {ua}: the 502 took {:.1?}, longer than the connect timeout",
                        s.took
                    )
                    },
                );
            }
            // In flight, stopping, restarting: the API server's answer or the
            // proxy's 502; cut short only after a 2xx head (then the proxy
            // closed the connection).
            _ => problems.check(reply.complete || (200..300).contains(&reply.status), || {
                format!("{name} {w}: {ua}: a {} cut short", reply.status)
            }),
        }
    }

    let mut watch_rows = String::new();
    for (ua, streamed) in &old {
        let after = streamed.ended_at.saturating_duration_since(t_fault);
        watch_rows.push_str(&format!(
            "| {ua} | {:?} | {} lines | {:?} | {after:.2?} after the signal |\n",
            streamed.status, streamed.lines, streamed.end
        ));
        problems.check(streamed.status == Some(200), || {
            format!("{name}: watch {ua} did not start: {streamed:?}")
        });
        problems.check(
            matches!(streamed.end, StreamEnd::Ended | StreamEnd::Closed),
            || format!("{name}: watch {ua} did not end cleanly: {:?}", streamed.end),
        );
    }
    problems.check(
        fresh.status == Some(200) && fresh.lines > 0 && fresh.end == StreamEnd::ClosedByUs,
        || format!("{name}: a watch opened after the restart did not work: {fresh:?}"),
    );

    let watch_uas: Vec<_> = old
        .iter()
        .cloned()
        .chain([(format!("{}/alice/watch-after", plan.prefix), fresh.clone())])
        .collect();
    let joined = join_records(stack, &plan.prefix, &sent, &watch_uas, problems);

    // The watches' records say how they ended, as their callers saw it.
    for (ua, streamed) in &old {
        let record = joined.stream_records.iter().find(|(u, _, _)| u == ua);
        let consistent = match (&streamed.end, record) {
            (StreamEnd::Ended, Some((_, 200, error))) => error.is_empty(),
            (StreamEnd::Closed, Some((_, 200, error))) => {
                error.starts_with("response incomplete: the API server's response broke off: ")
            }
            _ => false,
        };
        problems.check(consistent, || {
            format!(
                "{name}: watch {ua} ended {:?} for its caller, its record says {record:?}",
                streamed.end
            )
        });
    }

    let first_502 = sent
        .iter()
        .filter(|s| s.status() == Some(502))
        .map(|s| (s.started + s.took).saturating_duration_since(t_fault))
        .min();
    println!(
        "\n## {name}\n\n{} requests; the process was gone {:.2?} after the signal; down {DOWN:?}; \
         restarted and ready in {restart_took:.2?}; first 502 answered {first_502:.2?} after the signal\n\n{}\n\
         | watch | status | carried | end | ended |\n|---|---|---|---|---|\n{watch_rows}\
         | watch opened after the restart | {:?} | {} lines | {:?} | – |\n\n\
         events {} / response records {} (with error {}) / audited through the proxy {}\n\
         response record errors: {:#?}\nstream response records: {:#?}\n",
        sent.len(),
        t_dead - t_fault,
        tally(&sent, window),
        fresh.status,
        fresh.lines,
        fresh.end,
        joined.events,
        joined.response_records,
        joined.records_with_error,
        joined.audited,
        joined.record_errors,
        joined.stream_records,
    );
}
