//! The whole system on a real tailnet (see `kubescribe_system_tests::tailnet_stack`): real
//! tailscaled nodes joined to Tailscale's test control server, identities and grants from the
//! proxy node's real LocalAPI, the proxy and recorders behind real `tailscale serve` with PROXY
//! protocol v2, kubectl on caller nodes through their tailscaled's SOCKS5 proxy, recorders
//! reached through the proxy node's tailscaled. Each test re-runs itself in a sealed network
//! namespace of its own (`test_support::netns`), so nothing can reach Tailscale's servers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use kubescribe_system_tests::proxy_protocol::ProxyProtocolForwarder;
use kubescribe_system_tests::run::{
    expect_success, in_sealed_netns, output_text, send_signal, wait_until,
};
use kubescribe_system_tests::tailnet_stack::{
    TailnetStack, TailnetStackOptions, KUBERNETES_CAP, PROXY_NODE,
};
use kubescribe_system_tests::upstream::UpstreamKind;
use serde_json::{json, Value};
use test_support::peers;

fn kubectl() -> std::path::PathBuf {
    peers::kubectl().unwrap_or_else(|e| panic!("{e}"))
}

/// The audit event of the request whose URI contains `needle` and whose impersonated user is
/// `user`.
fn audit(stack: &TailnetStack, needle: &str, user: &str) -> Value {
    stack
        .upstream
        .control_plane()
        .expect("the real API server")
        .wait_for_audit_event(Duration::from_secs(15), |e| {
            e["requestURI"].as_str().is_some_and(|u| u.contains(needle))
                && e["impersonatedUser"]["username"] == user
        })
        .unwrap_or_else(|e| panic!("no audit event for {needle} as {user}: {e}"))
}

fn groups(event: &Value) -> Vec<String> {
    event["impersonatedUser"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

/// The stored events of recorder `index` from tailnet node `node` (FQDN without the dot).
fn events_from(stack: &TailnetStack, index: usize, node: &str) -> Vec<Value> {
    stack
        .events(index, &format!("node={node}"))
        .unwrap()
        .into_iter()
        .map(|listed| listed["event"].clone())
        .collect()
}

/// Whether recorder `index` stored the event of the request whose field selector named `marker`.
fn stored(stack: &TailnetStack, index: usize, marker: &str) -> bool {
    stack
        .events(index, &format!("q={marker}"))
        .is_ok_and(|events| {
            events.iter().any(|e| {
                e["event"]["kubernetes"]["FieldSelector"] == format!("metadata.name={marker}")
            })
        })
}

/// `kubectl get configmaps` selecting the name `marker`: a request whose path, event and audit
/// entry can be found by that name.
fn marked_get<'a>(marker: &'a str, selector: &'a mut String) -> [&'a str; 6] {
    *selector = format!("metadata.name={marker}");
    [
        "get",
        "configmaps",
        "-n",
        "default",
        "--field-selector",
        selector.as_str(),
    ]
}

/// kubectl from a user's node (by the proxy's MagicDNS name) and from a tagged node (by its
/// address): the API server sees the identities the proxy node's WhoIs reports, with the groups of
/// the real grants; the recorder stores an event for each request with the caller's node name,
/// stable ID, and tags or user exactly as WhoIs reports them, and the proxy node as destination. A
/// node without grants is impersonated as itself with no groups and nothing is recorded.
#[test]
fn identities_grants_and_events_over_the_tailnet() {
    if !in_sealed_netns("identities_grants_and_events_over_the_tailnet") {
        return;
    }
    let stack = TailnetStack::start(TailnetStackOptions::new(UpstreamKind::ApiServer)).unwrap();
    let kubectl = kubectl();
    let alice = stack.tailnet.node("alice").unwrap().info().clone();
    let ci = stack.tailnet.node("ci").unwrap().info().clone();
    let eve = stack.tailnet.node("eve").unwrap().info().clone();
    let proxy = stack.tailnet.node(PROXY_NODE).unwrap().info().clone();
    let name = |fqdn: &str| fqdn.trim_end_matches('.').to_owned();

    expect_success(
        stack
            .kubectl(
                &kubectl,
                "alice",
                &["create", "configmap", "tn-alice", "-n", "default"],
            )
            .unwrap(),
        "alice creates a configmap",
    );
    expect_success(
        stack
            .kubectl(
                &kubectl,
                "ci",
                &["get", "configmaps", "-n", "default", "-o", "name"],
            )
            .unwrap(),
        "ci lists configmaps",
    );
    let denied = stack
        .kubectl(&kubectl, "eve", &["get", "pods", "-n", "default"])
        .unwrap();
    assert!(
        !denied.status.success() && output_text(&denied).contains("forbidden"),
        "eve (no grants, no RBAC) is the API server's to refuse: {}",
        output_text(&denied)
    );

    // What the API server saw.
    let event = audit(&stack, "/configmaps", &alice.user_login);
    assert!(
        groups(&event).contains(&"system:masters".to_owned()),
        "alice's granted group: {event}"
    );
    let event = audit(&stack, "/configmaps", &name(&ci.fqdn));
    assert!(
        groups(&event).contains(&"ci-deployers".to_owned()),
        "ci's granted group: {event}"
    );
    let event = audit(&stack, "/pods", &eve.user_login);
    assert!(
        !groups(&event)
            .iter()
            .any(|g| g == "system:masters" || g == "ci-deployers"),
        "eve has no granted group: {event}"
    );

    // What the recorder stored.
    wait_until(
        "alice's and ci's events stored",
        Duration::from_secs(20),
        || {
            !events_from(&stack, 0, &name(&alice.fqdn)).is_empty()
                && !events_from(&stack, 0, &name(&ci.fqdn)).is_empty()
        },
    );
    let alice_events = events_from(&stack, 0, &name(&alice.fqdn));
    let create = alice_events
        .iter()
        .find(|e| e["kubernetes"]["Verb"] == "create")
        .unwrap_or_else(|| panic!("alice's create event: {alice_events:?}"));
    let source = &create["source"];
    assert_eq!(source["nodeID"], alice.stable_id, "{create}");
    assert_eq!(source["nodeUser"], alice.user_login, "{create}");
    assert_eq!(source["nodeUserID"], alice.user_id, "{create}");
    assert!(source["nodeTags"].is_null(), "{create}");
    assert_eq!(create["destination"]["node"], name(&proxy.fqdn), "{create}");
    assert_eq!(create["destination"]["nodeID"], proxy.stable_id, "{create}");
    let ci_events = events_from(&stack, 0, &name(&ci.fqdn));
    let list = &ci_events[0];
    assert_eq!(list["source"]["nodeID"], ci.stable_id, "{list}");
    assert_eq!(list["source"]["nodeTags"], json!(["tag:ci"]), "{list}");
    assert!(list["source"]["nodeUser"].is_null(), "{list}");
    assert!(
        events_from(&stack, 0, &name(&eve.fqdn)).is_empty(),
        "nothing is recorded for a caller without grants"
    );
}

/// `kubectl exec` over SPDY (kubectl 1.27) and WebSocket (1.33) from alice's node, recorded through
/// the tailnet: each session's cast names alice as WhoIs reports her and plays (asciinema).
#[test]
fn exec_sessions_over_the_tailnet() {
    if !in_sealed_netns("exec_sessions_over_the_tailnet") {
        return;
    }
    let stack = TailnetStack::start(TailnetStackOptions::new(UpstreamKind::Sim)).unwrap();
    let alice = stack.tailnet.node("alice").unwrap().info().clone();
    for minor in ["1.27", "1.33"] {
        let kubectl = peers::kubectl_version(minor).unwrap_or_else(|e| panic!("{e}"));
        let marker = format!("hello-from-{minor}");
        let output = expect_success(
            stack
                .kubectl(&kubectl, "alice", &["exec", "demo", "--", "echo", &marker])
                .unwrap(),
            &format!("kubectl {minor} exec"),
        );
        assert!(
            output_text(&output).contains(&marker),
            "{}",
            output_text(&output)
        );
    }
    wait_until("two sessions stored", Duration::from_secs(20), || {
        stack.sessions(0).unwrap().len() >= 2
    });
    for session in stack.sessions(0).unwrap() {
        let id = session["id"].as_str().unwrap();
        let played = stack
            .play_session(0, id, &alice)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            played.contains("hello-from-"),
            "the cast plays the command's output: {played}"
        );
    }
}

/// A create by alice (fail closed) and by ci (fail open) while the recorder cannot be reached:
/// first with the recorder node's tailscaled stopped, then with the recorder process stopped.
/// Alice's is refused and never reaches the API server; ci's is forwarded, and its event arrives
/// once the recorder is back.
#[test]
fn recorder_outages_fail_closed_and_fail_open() {
    if !in_sealed_netns("recorder_outages_fail_closed_and_fail_open") {
        return;
    }
    let mut stack = TailnetStack::start(TailnetStackOptions::new(UpstreamKind::ApiServer)).unwrap();
    let kubectl = kubectl();
    let ci = stack.tailnet.node("ci").unwrap().info().clone();
    let ci_name = ci.fqdn.trim_end_matches('.').to_owned();
    for outage in ["tailscaled", "recorder"] {
        match outage {
            "tailscaled" => stack.tailnet.node_mut("rec-1").unwrap().stop().unwrap(),
            _ => stack.stop_recorder(0).unwrap(),
        }
        let refused_marker = format!("tn-refused-{outage}");
        let mut selector = String::new();
        let refused = stack
            .kubectl(
                &kubectl,
                "alice",
                &marked_get(&refused_marker, &mut selector),
            )
            .unwrap();
        assert!(
            !refused.status.success(),
            "alice is fail closed: refused with the {outage} down"
        );
        let forwarded_marker = format!("tn-forwarded-{outage}");
        expect_success(
            stack
                .kubectl(
                    &kubectl,
                    "ci",
                    &marked_get(&forwarded_marker, &mut selector),
                )
                .unwrap(),
            &format!("ci is fail open: forwarded with the {outage} down"),
        );
        let plane = stack.upstream.control_plane().unwrap();
        let reached = plane.audit_events().unwrap().into_iter().any(|e| {
            e["requestURI"]
                .as_str()
                .is_some_and(|u| u.contains(&refused_marker))
        });
        assert!(
            !reached,
            "a refused fail-closed request never reached the API server"
        );
        match outage {
            "tailscaled" => stack.tailnet.node_mut("rec-1").unwrap().start().unwrap(),
            _ => stack.start_recorder(0).unwrap(),
        }
        wait_until(
            &format!("ci's event from the {outage} outage stored"),
            Duration::from_secs(60),
            || stored(&stack, 0, &forwarded_marker),
        );
        let events = stack.events(0, &format!("q={forwarded_marker}")).unwrap();
        assert!(
            events
                .iter()
                .all(|e| e["event"]["source"]["node"] == ci_name.as_str()),
            "the spooled event names ci: {events:?}"
        );
        // The refused request's event arrives too, saying it was refused.
        let refused_events = stack.events(0, &format!("q={refused_marker}")).unwrap();
        assert!(
            refused_events
                .iter()
                .all(|e| e["event"]["kubescribe"]["decision"] == "refused-fail-closed"),
            "a refused request is recorded as refused, never as forwarded: {refused_events:?}"
        );
    }
}

/// Two recorders on two tailnet nodes, in control's order, dialed through the proxy node's SOCKS5
/// proxy this time (`--recorder-dial socks5://…`): events go to the first; with its process
/// killed, to the second.
#[test]
fn ordered_failover_between_recorders_on_two_nodes() {
    if !in_sealed_netns("ordered_failover_between_recorders_on_two_nodes") {
        return;
    }
    let mut options = TailnetStackOptions::new(UpstreamKind::ApiServer);
    options.recorders = 2;
    options.recorder_dial_socks5 = true;
    let mut stack = TailnetStack::start(options).unwrap();
    let kubectl = kubectl();
    let get = |stack: &TailnetStack, marker: &str| {
        let mut selector = String::new();
        expect_success(
            stack
                .kubectl(&kubectl, "alice", &marked_get(marker, &mut selector))
                .unwrap(),
            marker,
        );
    };
    get(&stack, "tn-first");
    assert!(
        stored(&stack, 0, "tn-first"),
        "the first recorder takes events"
    );
    assert!(!stored(&stack, 1, "tn-first"), "and only the first");
    stack.kill_recorder(0).unwrap();
    get(&stack, "tn-second");
    assert!(
        stored(&stack, 1, "tn-second"),
        "with the first stopped, the second takes them"
    );
}

/// The recorders authorise by the real WhoIs of the connecting node: an upload from a node that
/// is not `tag:k8s-proxy` and a read from a node that is not the auditor are refused; the auditor
/// reads.
#[test]
fn recorder_refuses_untrusted_nodes() {
    if !in_sealed_netns("recorder_refuses_untrusted_nodes") {
        return;
    }
    let stack = TailnetStack::start(TailnetStackOptions::new(UpstreamKind::Sim)).unwrap();
    let recorder = SocketAddr::new(IpAddr::V4(stack.tailnet.node("rec-1").unwrap().ipv4()), 80);
    let event = br#"{"type":"kubernetes-api-request","request":{"verb":"get"}}"#;
    for uploader in ["eve", "ci"] {
        let reply = test_support::http::request_via_socks5(
            stack.tailnet.node(uploader).unwrap().socks5(),
            recorder,
            None,
            "POST",
            "/v2/event",
            &[("Content-Type", "application/json")],
            event,
        )
        .unwrap();
        assert_eq!(
            reply.status,
            403,
            "upload from {uploader}: {}",
            reply.text()
        );
    }
    for reader in ["eve", "alice", PROXY_NODE] {
        let reply = stack.read_as(reader, 0, "/api/v1/events").unwrap();
        assert_eq!(reply.status, 403, "read by {reader}: {}", reply.text());
        let reply = stack.read_as(reader, 0, "/").unwrap();
        assert_eq!(reply.status, 403, "UI read by {reader}: {}", reply.text());
    }
    let reply = stack.read_as("auditor", 0, "/api/v1/events").unwrap();
    assert_eq!(reply.status, 200, "read by the auditor: {}", reply.text());
    let reply = stack.read_as("auditor", 0, "/").unwrap();
    assert_eq!(
        reply.status,
        200,
        "UI read by the auditor: {}",
        reply.text()
    );
}

/// Grants changed through control change the next request's treatment once the proxy's WhoIs
/// cache has expired; a grant that does not parse refuses alice's requests with 403 and the
/// reason.
#[test]
fn grant_changes_and_bad_grants() {
    if !in_sealed_netns("grant_changes_and_bad_grants") {
        return;
    }
    let mut options = TailnetStackOptions::new(UpstreamKind::ApiServer);
    options.proxy_args = vec!["--whois-cache-ttl".into(), "2".into()];
    let stack = TailnetStack::start(options).unwrap();
    let kubectl = kubectl();
    let alice = stack.tailnet.node("alice").unwrap().info().clone();
    let alice_src = format!("user:{}", alice.user_login);
    let mut selector = String::new();

    expect_success(
        stack
            .kubectl(&kubectl, "alice", &marked_get("before", &mut selector))
            .unwrap(),
        "alice before the change",
    );
    let before = audit(&stack, "metadata.name%3Dbefore", &alice.user_login);
    assert!(
        groups(&before).contains(&"system:masters".to_owned()),
        "{before}"
    );

    let changed = Instant::now();
    stack
        .set_grants(&json!([{
            "src": [alice_src],
            "dst": ["tag:k8s-proxy"],
            "app": {KUBERNETES_CAP: [{
                "impersonate": {"groups": ["ci-deployers"]},
                "recorder": ["tag:k8s-recorder"],
                "enforceRecorder": true,
                "enableEvents": true
            }]}
        }]))
        .unwrap();
    let reached_proxy_node = changed.elapsed();
    // The next request after the cache time has the new group.
    std::thread::sleep(Duration::from_secs(2));
    expect_success(
        stack
            .kubectl(&kubectl, "alice", &marked_get("after", &mut selector))
            .unwrap(),
        "alice after the change",
    );
    let after = audit(&stack, "metadata.name%3Dafter", &alice.user_login);
    assert!(
        groups(&after).contains(&"ci-deployers".to_owned())
            && !groups(&after).contains(&"system:masters".to_owned()),
        "the changed grant applies: {after}"
    );
    println!(
        "grant change: on the proxy's node after {reached_proxy_node:?}, applied {:?} after the change",
        changed.elapsed()
    );

    // A grant the proxy cannot parse: refused with the reason, never forwarded.
    stack
        .set_grants(&json!([{
            "src": [alice_src],
            "dst": ["tag:k8s-proxy"],
            "app": {KUBERNETES_CAP: [{"enforceRecorder": "yes"}]}
        }]))
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let refused = stack
        .kubectl(&kubectl, "alice", &marked_get("malformed", &mut selector))
        .unwrap();
    let message = output_text(&refused);
    assert!(!refused.status.success(), "{message}");
    assert!(
        message.contains("Forbidden") || message.contains("forbidden"),
        "403: {message}"
    );
    assert!(
        message.contains("enforceRecorder"),
        "the reason names the key: {message}"
    );
    let reached = stack
        .upstream
        .control_plane()
        .unwrap()
        .audit_events()
        .unwrap()
        .iter()
        .any(|e| {
            e["requestURI"]
                .as_str()
                .is_some_and(|u| u.contains("metadata.name%3Dmalformed"))
        });
    assert!(
        !reached,
        "a request with a malformed grant never reaches the API server"
    );
}

/// The proxy node's LocalAPI under faults, with requests arriving as `tailscale serve` would send
/// them (a PROXY header naming the caller): tailscaled hung (SIGSTOP) answers 500 `failed to
/// authenticate caller` within the WhoIs deadline; an address tailscaled does not know is refused;
/// tailscaled restarted while requests keep coming: the proxy recovers without a restart, and
/// holds no more connections than before.
#[test]
fn localapi_faults_on_the_proxy_node() {
    if !in_sealed_netns("localapi_faults_on_the_proxy_node") {
        return;
    }
    let mut stack = TailnetStack::start(TailnetStackOptions::new(UpstreamKind::ApiServer)).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let alice = stack.tailnet.node("alice").unwrap().info().clone();
    let as_alice = runtime
        .block_on(ProxyProtocolForwarder::start(
            stack.proxy_local,
            IpAddr::V4(alice.ipv4),
        ))
        .unwrap();
    let stranger = runtime
        .block_on(ProxyProtocolForwarder::start(
            stack.proxy_local,
            IpAddr::V4(Ipv4Addr::new(100, 64, 99, 99)),
        ))
        .unwrap();
    let tls = test_support::http::Tls::trusting(&stack.proxy_ca_pem).unwrap();
    let get = |via: SocketAddr| {
        let started = Instant::now();
        let reply = test_support::http::request(
            via,
            Some(&tls),
            "GET",
            "/api/v1/namespaces/default/configmaps",
            &[],
            b"",
        )
        .unwrap();
        (reply, started.elapsed())
    };
    let (reply, _) = get(as_alice.addr());
    assert_eq!(reply.status, 200, "{}", reply.text());
    let fds_before = open_fds(stack.proxy.pid());

    let (reply, _) = get(stranger.addr());
    assert!(
        reply.status == 403 || reply.status == 500,
        "an address tailscaled does not know: {} {}",
        reply.status,
        reply.text()
    );

    // Hung: SIGSTOP the proxy node's tailscaled.
    let pid = stack.tailnet.node(PROXY_NODE).unwrap().pid().unwrap();
    send_signal(pid, "STOP");
    std::thread::sleep(Duration::from_secs(3)); // past the WhoIs cache
    let (reply, took) = get(as_alice.addr());
    send_signal(pid, "CONT");
    assert_eq!(reply.status, 500, "{}", reply.text());
    assert!(
        reply.text().contains("failed to authenticate caller"),
        "{}",
        reply.text()
    );
    assert!(
        took < Duration::from_secs(15),
        "bounded wait, took {took:?}"
    );
    println!("hung LocalAPI: 500 after {took:?}");

    // Restarted while requests keep coming, each answered in bounded time: 200; 500 while the
    // LocalAPI is gone; 502 (alice is fail closed) while the tailnet to the recorder comes back.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (stop, via, tls) = (stop.clone(), as_alice.addr(), tls.clone());
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let started = Instant::now();
                let status = test_support::http::request(
                    via,
                    Some(&tls),
                    "GET",
                    "/api/v1/namespaces/default/configmaps",
                    &[],
                    b"",
                )
                .map_or(0, |reply| reply.status);
                seen.push((status, started.elapsed()));
                std::thread::sleep(Duration::from_millis(100));
            }
            seen
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    stack.tailnet.node_mut(PROXY_NODE).unwrap().stop().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let (reply, took) = get(as_alice.addr());
    assert_eq!(reply.status, 500, "socket missing: {}", reply.text());
    assert!(
        took < Duration::from_secs(15),
        "bounded wait, took {took:?}"
    );
    stack.tailnet.node_mut(PROXY_NODE).unwrap().start().unwrap();
    let mut recovered = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let (reply, _) = get(as_alice.addr());
        if reply.status == 200 {
            recovered = Some(reply);
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = load.join().unwrap();
    let count = |want: u16| seen.iter().filter(|(status, _)| *status == want).count();
    assert!(
        count(500) > 0,
        "some requests met the stopped tailscaled: {seen:?}"
    );
    assert!(
        seen.iter()
            .all(|(status, took)| [200, 500, 502].contains(status)
                && *took < Duration::from_secs(15)),
        "each request answered 200, 500 or 502 within the deadline: {seen:?}"
    );
    let slowest = seen.iter().map(|(_, took)| *took).max().unwrap_or_default();
    println!(
        "tailscaled restarted under requests: {} requests: {} answered 200, {} 500 (LocalAPI gone), \
         {} 502 (fail closed, recorder not yet reachable); slowest {slowest:?}",
        seen.len(),
        count(200),
        count(500),
        count(502)
    );
    assert!(
        recovered.is_some(),
        "the proxy recovers once tailscaled is back"
    );
    assert!(stack.proxy.is_running(), "without a restart");
    // And over the tailnet again, `tailscale serve` restored from tailscaled's state.
    expect_success(
        stack
            .kubectl(&kubectl(), "alice", &["get", "configmaps", "-n", "default"])
            .unwrap(),
        "alice over the tailnet after tailscaled's restart",
    );
    let fds_after = open_fds(stack.proxy.pid());
    assert!(
        fds_after <= fds_before + 8,
        "no connection leak: {fds_before} open files before the faults, {fds_after} after"
    );
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}
