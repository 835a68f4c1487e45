//! `cargo xtask e2e`: the whole system against real kubectl.
//!
//! Starts the upstream API server, recorder and proxy as real processes (see
//! [`kubescribe_system_tests::stack`]), runs scripted kubectl scenarios as a
//! user (fail closed) and a tagged node (fail open), and checks every stored
//! event and recording against what was done. Prints a report; exits
//! non-zero on any mismatch.
//!
//! `--upstream sim` (the default) runs everything against the simulator,
//! which plays the kubelet too; `--upstream apiserver` runs the scenarios that
//! need no kubelet (no exec, attach or logs) against the real kube-apiserver,
//! whose audit log then says what the API server received.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

mod sessions;

use base64::Engine as _;
use kubescribe_system_tests::report::Report;
use kubescribe_system_tests::stack::{Caller, Stack, Storage};
use kubescribe_system_tests::upstream::{SeenRequest, UpstreamKind};
use kubescribe_system_tests::Error;
use serde_json::Value;
use test_support::peers;
use test_support::seaweed::{self, Seaweed};

pub(crate) const WAIT: Duration = Duration::from_secs(15);

fn main() {
    let mut report = Report::default();
    if let Err(err) = run(&mut report) {
        report.check(
            "the end-to-end run could set up and finish",
            Err(err.to_string()),
        );
    }
    report.summary();
    std::process::exit(if report.failed() == 0 { 0 } else { 1 });
}

fn run(report: &mut Report) -> Result<(), Error> {
    let upstream = upstream_arg()?;
    let kubectl = peers::kubectl()?;
    println!("kubectl: {}", kubectl.display());
    println!("upstream: {upstream}");
    let mut stack = Stack::start_with(upstream, Storage::Disk)?;
    println!("scratch: {}", stack.dir.path().display());
    let result = scenarios(report, &mut stack, &kubectl);
    if report.failed() > 0 {
        print_logs(&stack);
    }
    result?;
    if upstream == UpstreamKind::Sim {
        // Sessions land in S3 too: this needs the simulator's kubelet.
        s3_scenario(report, &kubectl)?;
    }
    Ok(())
}

/// `--upstream sim|apiserver` (default `sim`).
fn upstream_arg() -> Result<UpstreamKind, Error> {
    let mut args = std::env::args().skip(1);
    let mut kind = UpstreamKind::Sim;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--upstream" => {
                kind = args
                    .next()
                    .ok_or("--upstream needs a value: sim or apiserver")?
                    .parse()?;
            }
            other => {
                return Err(format!(
                    "unknown argument {other:?} (usage: e2e [--upstream sim|apiserver])"
                )
                .into())
            }
        }
    }
    Ok(kind)
}

fn scenarios(report: &mut Report, stack: &mut Stack, kubectl: &Path) -> Result<(), Error> {
    report.scenario("alice (user, fail closed) lists pods", |r| {
        let out = run_ok(
            stack,
            kubectl,
            &stack.alice,
            &["get", "pods", "-l", "e2e-step=list"],
        );
        r.check("kubectl get pods succeeds", out.map(|_| ()));
        let rows =
            stack.wait_for_events("verb=list&resource=pods&user=alice%40example.com", 1, WAIT);
        r.check(
            "a list event for pods from alice is stored",
            rows.as_ref().map_err(|e| e.to_string()).and_then(|rows| {
                let row = find(rows, |e| {
                    e["kubernetes"]["LabelSelector"] == "e2e-step=list"
                })?;
                expect_user_source(&row["event"], &stack.alice)?;
                let e = &row["event"];
                eq(&e["type"], "kubernetes-api-request")?;
                eq(&e["kubernetes"]["Namespace"], "default")?;
                eq(&e["kubernetes"]["APIPrefix"], "api")?;
                eq(&e["kubernetes"]["APIVersion"], "v1")?;
                eq(&e["destination"]["node"], "k8s-proxy.tail1234.ts.net")?;
                eq(&e["destination"]["nodeID"], "nPROXY1CNTRL")?;
                if !e["request"]["path"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("/api/v1/namespaces/default/pods?")
                {
                    return Err(format!(
                        "request.path {} lacks the query",
                        e["request"]["path"]
                    ));
                }
                eq(
                    &e["request"]["queryParameters"]["labelSelector"][0],
                    "e2e-step=list",
                )?;
                Ok(())
            }),
        );
        r.check(
            "its response record says 200",
            wait_response(
                stack,
                "verb=list&resource=pods",
                |e| e["kubernetes"]["LabelSelector"] == "e2e-step=list",
                200,
            ),
        );
    });

    let manifest = stack.dir.path().join("cm.yaml");
    report.scenario("alice applies a ConfigMap twice, patches and deletes it", |r| {
        let write = |data: &str| std::fs::write(&manifest, format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: e2e-config\n  namespace: default\ndata:\n  greeting: {data}\n"));
        let path = manifest.to_string_lossy().into_owned();
        r.check("first apply creates it", write("hello").map_err(|e| e.to_string()).and_then(|_| run_ok(stack, kubectl, &stack.alice, &["apply", "-f", &path]).map(|_| ())));
        r.check("second apply patches it", write("changed").map_err(|e| e.to_string()).and_then(|_| run_ok(stack, kubectl, &stack.alice, &["apply", "-f", &path]).map(|_| ())));
        r.check("kubectl patch (merge) succeeds", run_ok(stack, kubectl, &stack.alice, &["patch", "configmap", "e2e-config", "--type", "merge", "-p", r#"{"data":{"extra":"merged"}}"#]).map(|_| ()));
        r.check("the simulator holds the merged object", run_ok(stack, kubectl, &stack.alice, &["get", "configmap", "e2e-config", "-o", "jsonpath={.data.greeting}/{.data.extra}"]).and_then(|out| if out.trim() == "changed/merged" { Ok(()) } else { Err(format!("got {out:?}")) }));
        r.check("kubectl delete succeeds", run_ok(stack, kubectl, &stack.alice, &["delete", "configmap", "e2e-config"]).map(|_| ()));
        r.check("a create event with the manifest as its body", stack.wait_for_events("verb=create&resource=configmaps", 1, WAIT).map_err(|e| e.to_string()).and_then(|rows| {
            let row = find(&rows, |e| e["kubernetes"]["Namespace"] == "default")?;
            let body = decode_body(&row["event"])?;
            if !body.contains("e2e-config") || !body.contains("hello") {
                return Err(format!("body does not hold the manifest: {body}"));
            }
            expect_user_source(&row["event"], &stack.alice)
        }));
        r.check("patch events name the object (apply and patch)", stack.wait_for_events("verb=patch&resource=configmaps&name=e2e-config", 2, WAIT).map_err(|e| e.to_string()).and_then(|rows| {
            if rows.len() < 2 { return Err(format!("{} patch events, want 2", rows.len())); }
            let merged = find(&rows, |e| decode_body(e).map(|b| b.contains("merged")).unwrap_or(false))?;
            eq(&merged["event"]["request"]["method"], "PATCH")
        }));
        r.check("a delete event names the object, response 200", wait_response(stack, "verb=delete&resource=configmaps&name=e2e-config", |_| true, 200));
    });

    report.scenario("alice watches pods", |r| {
        let watched = run_for(
            stack,
            kubectl,
            &stack.alice,
            &["get", "pods", "--watch", "-l", "e2e-step=watch"],
            Duration::from_secs(3),
        );
        r.check(
            "kubectl get --watch streams until stopped",
            watched.map(|_| ()),
        );
        r.check(
            "a watch event is stored",
            stack
                .wait_for_events("verb=watch&resource=pods", 1, WAIT)
                .map_err(|e| e.to_string())
                .and_then(|rows| {
                    find(&rows, |e| {
                        e["kubernetes"]["LabelSelector"] == "e2e-step=watch"
                    })
                    .map(|_| ())
                }),
        );
    });

    if !stack.upstream.has_kubelet() {
        println!(
            "\n== logs, exec and attach skipped: the real kube-apiserver has no kubelet behind it"
        );
        return upstream_scenarios(report, stack, kubectl);
    }

    report.scenario("alice reads logs", |r| {
        r.check(
            "kubectl logs demo prints the pod's log",
            run_ok(stack, kubectl, &stack.alice, &["logs", "demo", "--tail=5"]).and_then(|out| {
                if out.trim().is_empty() {
                    Err("empty log".into())
                } else {
                    Ok(())
                }
            }),
        );
        let followed = run_for(
            stack,
            kubectl,
            &stack.alice,
            &["logs", "-f", "demo"],
            Duration::from_secs(2),
        );
        r.check(
            "kubectl logs -f streams lines as they come",
            followed.and_then(|out| {
                if out.lines().count() >= 2 {
                    Ok(())
                } else {
                    Err(format!("only {out:?}"))
                }
            }),
        );
        r.check(
            "a get event for pods/log is stored",
            stored(stack, "verb=get&resource=pods&name=demo", |e| {
                e["kubernetes"]["Subresource"] == "log"
            })
            .map(|_| ()),
        );
    });

    report.scenario(
        "alice execs into the demo pod (WebSocket, kubectl 1.37)",
        |r| {
            r.check(
                "kubectl exec prints the command's output",
                run_ok(
                    stack,
                    kubectl,
                    &stack.alice,
                    &["exec", "demo", "--", "sh", "-c", "echo hello-from-e2e"],
                )
                .and_then(|out| expect_output(&out, "hello-from-e2e")),
            );
            r.check(
                "an exec event is stored",
                stored(stack, "resource=pods&name=demo", |e| {
                    e["kubernetes"]["Subresource"] == "exec"
                })
                .map(|_| ()),
            );
            r.check(
                "the session is recorded and its cast holds the output",
                check_session(stack, "hello-from-e2e"),
            );
        },
    );

    match peers::image_kubectl("1.27").or_else(|| peers::image_kubectl("1.29")) {
        Some(old) => report.scenario(&format!("alice execs over SPDY ({})", old.display()), |r| {
            r.check("kubectl exec over SPDY prints the output", run_ok(stack, &old, &stack.alice, &["exec", "demo", "--", "sh", "-c", "echo hello-over-spdy"]).and_then(|out| if out.contains("hello-over-spdy") { Ok(()) } else { Err(format!("output {out:?}")) }));
            r.check("the SPDY session is recorded", check_session(stack, "hello-over-spdy"));
        }),
        None => println!("\n== SPDY exec skipped: this machine image has no kubectl.1.27 or kubectl.1.29 beside kubectl"),
    }

    sessions::scenarios(report, stack, kubectl);
    upstream_scenarios(report, stack, kubectl)
}

/// The scenarios every upstream runs after the kubelet ones: the tagged node, what the API server
/// received, and a recorder outage.
fn upstream_scenarios(report: &mut Report, stack: &mut Stack, kubectl: &Path) -> Result<(), Error> {
    report.scenario("ci (tagged node, fail open) lists configmaps", |r| {
        r.check(
            "kubectl get configmaps succeeds",
            run_ok(
                stack,
                kubectl,
                &stack.ci,
                &["get", "configmaps", "-l", "e2e-step=ci"],
            )
            .map(|_| ()),
        );
        r.check(
            "the event carries the node's tags and no user",
            stack
                .wait_for_events("verb=list&resource=configmaps&tag=tag%3Aci", 1, WAIT)
                .map_err(|e| e.to_string())
                .and_then(|rows| {
                    let row = find(&rows, |e| e["kubernetes"]["LabelSelector"] == "e2e-step=ci")?;
                    let source = &row["event"]["source"];
                    eq(&source["node"], "ci-runner.tail1234.ts.net")?;
                    eq(&source["nodeID"], "nCI1CNTRL")?;
                    eq(&source["nodeTags"][0], "tag:ci")?;
                    if source.get("nodeUser").is_some() || source.get("nodeUserID").is_some() {
                        return Err(format!("tagged source has user fields: {source}"));
                    }
                    Ok(())
                }),
        );
    });

    report.scenario("what upstream saw (auth mode impersonation)", |r| {
        let seen = stack.upstream_requests();
        r.check(
            "the upstream's record of requests is readable",
            seen.as_ref().map(|_| ()).map_err(|e| e.to_string()),
        );
        let seen = seen.unwrap_or_default();
        let proxy_user = stack.upstream.proxy_user();
        r.check(
            "every request reached upstream as the proxy's own credential, never the caller's",
            {
                let others: Vec<&SeenRequest> =
                    seen.iter().filter(|req| req.user != proxy_user).collect();
                if seen.is_empty() {
                    Err("upstream saw no request".to_string())
                } else if others.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "{} requests authenticated as someone else, e.g. {:?}",
                        others.len(),
                        others[0]
                    ))
                }
            },
        );
        r.check(
            "alice's requests impersonate alice with her granted group",
            impersonations(&seen, "alice@example.com", &["system:masters"]),
        );
        r.check(
            "ci's requests impersonate the node's FQDN with its granted group",
            impersonations(&seen, "ci-runner.tail1234.ts.net", &["ci-deployers"]),
        );
    });

    report.scenario(
        "recorder down: alice (fail closed) is refused, ci (fail open) goes through",
        |r| {
            let before = count_upstream_with_label(stack, "e2e-step%3Doutage");
            r.check(
                "the recorder stops",
                stack.stop_recorder().map_err(|e| e.to_string()),
            );
            let refused = stack.kubectl(
                kubectl,
                &stack.alice,
                &["get", "pods", "-l", "e2e-step=outage"],
            );
            r.check(
                "alice's request is refused",
                refused.map_err(|e| e.to_string()).and_then(|out| {
                    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
                    if out.status.success() {
                        Err("kubectl succeeded".into())
                    } else if stderr.contains("record") {
                        Ok(())
                    } else {
                        Err(format!("unclear refusal: {stderr}"))
                    }
                }),
            );
            r.check("upstream never saw alice's refused request", {
                let after = count_upstream_with_label(stack, "e2e-step%3Doutage");
                if after == before {
                    Ok(())
                } else {
                    Err(format!("upstream saw {} such requests", after - before))
                }
            });
            r.check(
                "ci's request succeeds while the recorder is down",
                run_ok(
                    stack,
                    kubectl,
                    &stack.ci,
                    &["get", "pods", "-l", "e2e-step=spooled"],
                )
                .map(|_| ()),
            );
            r.check(
                "the recorder starts again",
                stack.start_recorder().map_err(|e| e.to_string()),
            );
            r.check(
                "ci's spooled event arrives once the recorder is back",
                stack
                    .wait_for_events(
                        "verb=list&resource=pods&tag=tag%3Aci",
                        1,
                        Duration::from_secs(60),
                    )
                    .map_err(|e| e.to_string())
                    .and_then(|rows| {
                        find(&rows, |e| {
                            e["kubernetes"]["LabelSelector"] == "e2e-step=spooled"
                        })
                        .map(|_| ())
                    }),
            );
            r.check(
                "alice is served again",
                run_ok(
                    stack,
                    kubectl,
                    &stack.alice,
                    &["get", "pods", "-l", "e2e-step=after-outage"],
                )
                .map(|_| ()),
            );
        },
    );
    Ok(())
}

fn s3_scenario(report: &mut Report, kubectl: &Path) -> Result<(), Error> {
    let weed = Seaweed::start("kubescribe-e2e")?;
    let mut stack = Stack::start(Storage::S3 {
        endpoint: weed.endpoint(),
        bucket: "kubescribe-e2e".into(),
        access_key: seaweed::ACCESS_KEY.into(),
        secret_key: seaweed::SECRET_KEY.into(),
    })?;
    report.scenario(
        "S3 storage (SeaweedFS): events and sessions round-trip",
        |r| {
            r.check(
                "kubectl get pods succeeds",
                run_ok(
                    &stack,
                    kubectl,
                    &stack.alice,
                    &["get", "pods", "-l", "e2e-step=s3"],
                )
                .map(|_| ()),
            );
            r.check(
                "the event is stored in S3 and served back",
                stack
                    .wait_for_events("verb=list&resource=pods", 1, WAIT)
                    .map_err(|e| e.to_string())
                    .and_then(|rows| {
                        find(&rows, |e| e["kubernetes"]["LabelSelector"] == "e2e-step=s3")
                            .map(|_| ())
                    }),
            );
            r.check(
                "the bucket holds event objects",
                weed.list("events/")
                    .map_err(|e| e.to_string())
                    .and_then(|keys| {
                        if keys.is_empty() {
                            Err("no objects under events/".into())
                        } else {
                            Ok(())
                        }
                    }),
            );
            r.check(
                "exec works and its session lands in S3",
                run_ok(
                    &stack,
                    kubectl,
                    &stack.alice,
                    &["exec", "demo", "--", "sh", "-c", "echo hello-s3"],
                )
                .and_then(|_| check_session(&stack, "hello-s3")),
            );
            r.check(
                "after a restart the recorder still serves the event",
                stack
                    .stop_recorder()
                    .and_then(|_| stack.start_recorder())
                    .map_err(|e| e.to_string())
                    .and_then(|_| {
                        stack
                            .wait_for_events("verb=list&resource=pods", 1, WAIT)
                            .map_err(|e| e.to_string())
                    })
                    .and_then(|rows| {
                        find(&rows, |e| e["kubernetes"]["LabelSelector"] == "e2e-step=s3")
                            .map(|_| ())
                    }),
            );
        },
    );
    if report.failed() > 0 {
        print_logs(&stack);
    }
    Ok(())
}

fn check_session(stack: &Stack, needle: &str) -> Result<(), String> {
    let (header, _) = find_session(stack, needle)?;
    eq(&header["kubernetes"]["PodName"], "demo")?;
    eq(&header["kubernetes"]["Namespace"], "default")?;
    eq(&header["srcNode"], "alice-laptop.tail1234.ts.net")
}

/// Waits for a recorded session whose cast contains `needle`; checks that
/// `asciinema cat` accepts it; returns its header and events.
pub(crate) fn find_session(stack: &Stack, needle: &str) -> Result<(Value, Vec<Value>), String> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let sessions = stack.sessions().map_err(|e| e.to_string())?;
        for session in &sessions {
            let id = session["id"].as_str().unwrap_or_default();
            let Ok(cast) = stack.session_cast(id) else {
                continue;
            };
            if !String::from_utf8_lossy(&cast).contains(needle) {
                continue;
            }
            let mut lines = cast.split(|b| *b == b'\n').filter(|l| !l.is_empty());
            let header: Value = lines
                .next()
                .and_then(|line| serde_json::from_slice(line).ok())
                .ok_or("the cast has no JSON header")?;
            eq(&header["version"], 2)?;
            let events = lines
                .map(|line| serde_json::from_slice(line).map_err(|e| format!("bad cast line: {e}")))
                .collect::<Result<Vec<Value>, String>>()?;
            validate_cast(stack, id, &cast)?;
            return Ok((header, events));
        }
        if std::time::Instant::now() > deadline {
            let seen: Vec<String> = sessions
                .iter()
                .map(|s| {
                    let id = s["id"].as_str().unwrap_or_default();
                    let cast = match stack.session_cast(id) {
                        Ok(bytes) => format!("{} bytes", bytes.len()),
                        Err(e) => e.to_string(),
                    };
                    format!("{id} live={} size={} cast: {cast}", s["live"], s["size"])
                })
                .collect();
            return Err(format!(
                "no recorded session contains {needle:?}; sessions:\n{}",
                seen.join("\n")
            ));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// `asciinema cat` (asciinema 2.4) must accept the cast.
fn validate_cast(stack: &Stack, id: &str, cast: &[u8]) -> Result<(), String> {
    let asciinema = peers::asciinema().map_err(|e| e.to_string())?;
    let path = stack.dir.path().join(format!("{id}.cast"));
    std::fs::write(&path, cast).map_err(|e| e.to_string())?;
    let out = Command::new(asciinema)
        .arg("cat")
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "asciinema cat rejected the cast: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

pub(crate) fn run_ok(
    stack: &Stack,
    kubectl: &Path,
    caller: &Caller,
    args: &[&str],
) -> Result<String, String> {
    let out = stack
        .kubectl(kubectl, caller, args)
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "kubectl {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Runs a streaming kubectl command for `duration`, then stops it; returns its output so far.
fn run_for(
    stack: &Stack,
    kubectl: &Path,
    caller: &Caller,
    args: &[&str],
    duration: Duration,
) -> Result<String, String> {
    let out_path = stack.dir.path().join("stream.out");
    let out = std::fs::File::create(&out_path).map_err(|e| e.to_string())?;
    let mut child = Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(&caller.kubeconfig)
        .args(args)
        .stdout(out)
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    std::thread::sleep(duration);
    let exited_early = child.try_wait().map_err(|e| e.to_string())?;
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    match exited_early {
        Some(status) if !status.success() => {
            Err(format!("kubectl {} exited early: {status}", args.join(" ")))
        }
        _ => Ok(text),
    }
}

fn wait_response(
    stack: &Stack,
    query: &str,
    pick: impl Fn(&Value) -> bool,
    status: u64,
) -> Result<(), String> {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let rows = stack.events(query).map_err(|e| e.to_string())?;
        if let Some(row) = rows.iter().find(|row| pick(&row["event"])) {
            if row["response"]["status"] == status {
                let key = &row["event"]["kubescribe"]["key"];
                return eq(&row["response"]["key"], key.as_str().unwrap_or("<no key>"));
            }
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("no {query} event with response status {status}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn find(rows: &[Value], pick: impl Fn(&Value) -> bool) -> Result<Value, String> {
    rows.iter()
        .find(|row| pick(&row["event"]))
        .cloned()
        .ok_or_else(|| format!("no matching event among {} rows", rows.len()))
}

/// Waits for events matching `query` and returns the first whose event satisfies `pick`.
fn stored(stack: &Stack, query: &str, pick: impl Fn(&Value) -> bool) -> Result<Value, String> {
    let rows = stack
        .wait_for_events(query, 1, WAIT)
        .map_err(|e| e.to_string())?;
    find(&rows, pick)
}

/// Passes when a command's output contains `needle`.
pub(crate) fn expect_output(out: &str, needle: &str) -> Result<(), String> {
    if out.contains(needle) {
        Ok(())
    } else {
        Err(format!("output lacks {needle:?}: {out:?}"))
    }
}

pub(crate) fn eq(value: &Value, want: impl Into<Value>) -> Result<(), String> {
    let want = want.into();
    if *value == want {
        Ok(())
    } else {
        Err(format!("got {value}, want {want}"))
    }
}

fn expect_user_source(event: &Value, caller: &Caller) -> Result<(), String> {
    let source = &event["source"];
    eq(
        &source["node"],
        caller.identity.node_name.trim_end_matches('.'),
    )?;
    eq(&source["nodeID"], caller.identity.stable_id.as_str())?;
    eq(&source["nodeUser"], caller.identity.login_name.as_str())?;
    eq(&source["nodeUserID"], caller.identity.user_id)?;
    if source.get("nodeTags").is_some() {
        return Err(format!("user source has tags: {source}"));
    }
    Ok(())
}

fn decode_body(event: &Value) -> Result<String, String> {
    let b64 = event["request"]["body"]
        .as_str()
        .ok_or("request.body is not a string")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn count_upstream_with_label(stack: &Stack, label: &str) -> usize {
    stack
        .upstream_requests()
        .map(|reqs| reqs.iter().filter(|r| r.uri.contains(label)).count())
        .unwrap_or(usize::MAX)
}

/// At least one request impersonated `user`, and every one that did carried exactly `groups`
/// (besides the `system:authenticated` kube-apiserver adds).
fn impersonations(seen: &[SeenRequest], user: &str, groups: &[&str]) -> Result<(), String> {
    let theirs: Vec<&SeenRequest> = seen
        .iter()
        .filter(|req| req.impersonated_user.as_deref() == Some(user))
        .collect();
    if theirs.is_empty() {
        return Err(format!("no request impersonated {user}"));
    }
    theirs.iter().try_for_each(|req| {
        let got: Vec<&str> = req
            .impersonated_groups
            .iter()
            .map(String::as_str)
            .filter(|g| *g != "system:authenticated")
            .collect();
        if got == groups {
            Ok(())
        } else {
            Err(format!(
                "{} {}: groups {got:?}, want {groups:?}",
                req.method, req.uri
            ))
        }
    })
}

fn print_logs(stack: &Stack) {
    let logs: PathBuf = stack.dir.path().join("logs");
    println!("\n== logs of the failed run ({})", logs.display());
    for (name, proc) in [
        ("proxy", Some(&stack.proxy)),
        ("recorder", stack.recorder.as_ref()),
        ("upstream", Some(stack.upstream.process())),
    ] {
        if let Some(p) = proc {
            println!("-- {name} (last lines)\n{}", p.log_tail());
        }
    }
}
