//! `cargo xtask oracle`: kube-apiserver's audit log as the oracle for kubescribe's request info.
//!
//! Starts the whole system in front of the real kube-apiserver (auth mode, the recorder on disk),
//! sends a corpus of well over a thousand requests through the proxy with a plain HTTP client
//! (request-targets byte for byte) as two callers, one allowed everything and one whose group RBAC
//! mostly refuses, then runs real kubectl through it. Every kubescribe event is then joined to the
//! audit event kube-apiserver wrote for the same request (the proxy sends the event's key as
//! `Audit-ID`, which kube-apiserver takes as its `auditID`) and compared field by field: verb,
//! objectRef, requestURI, user agent, user, impersonation and response status. Requests
//! kube-apiserver refuses before auditing are sent to it directly as well, and kubescribe's parser
//! must refuse them with the same status.
//!
//! Prints a table of mismatches by field (also written to `target/oracle/report.md`) and a detail
//! line per mismatch; exits non-zero on any mismatch.

#[path = "oracle/client.rs"]
mod client;
#[path = "oracle/compare.rs"]
mod compare;
#[path = "oracle/corpus.rs"]
mod corpus;
#[path = "oracle/generate.rs"]
mod generate;
#[path = "oracle/golang.rs"]
mod golang;
#[path = "oracle/report.rs"]
mod report;
#[path = "oracle/run.rs"]
mod run;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use kubescribe_system_tests::stack::{Stack, Storage};
use kubescribe_system_tests::upstream::UpstreamKind;
use kubescribe_system_tests::Error;
use serde_json::{json, Value};
use test_support::apiserver::{ControlPlane, ADMIN, PROXY};
use test_support::http::{self, Tls};
use test_support::peers;

use compare::{Direct, Inputs, Stored};
use corpus::{Expect, Phase};
use report::{Counts, Report};
use run::{Callers, Sent};

fn main() {
    let started = Instant::now();
    match run_oracle(started) {
        Ok(clean) => std::process::exit(if clean { 0 } else { 1 }),
        Err(err) => {
            eprintln!("oracle: could not finish: {err}");
            std::process::exit(2);
        }
    }
}

fn run_oracle(started: Instant) -> Result<bool, Error> {
    let kubectl = peers::kubectl()?;
    let stack = Stack::start_with(UpstreamKind::ApiServer, Storage::Disk)?;
    let plane = stack
        .upstream
        .control_plane()
        .ok_or("the oracle needs the real kube-apiserver upstream")?;
    println!("scratch: {}", stack.dir.path().display());
    println!("audit log: {}", plane.audit_log_path().display());
    let stack_ready = started.elapsed();

    for ns in [corpus::NS, corpus::QUOTA_NS] {
        plane.create(
            "/api/v1/namespaces",
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )?;
    }
    let proxy_identity = proxy_identity(plane)?;
    println!("the proxy authenticates as {proxy_identity}");
    let callers = Callers {
        alice: stack.alice.addr(),
        ci: stack.ci.addr(),
    };

    // The vectors first: some delete whole collections (nodes, pods in a namespace).
    let (vector_phase, skipped) = vector_phase()?;
    let kinds = corpus::kinds();
    let phases: Vec<Phase> = vec![
        vector_phase,
        vec![corpus::crd_group()],
        kinds.iter().map(corpus::kind_group).collect(),
        {
            let mut late = vec![
                corpus::subresource_group(),
                corpus::crd_after_group(),
                corpus::non_resource_group(),
                corpus::encoding_group(),
                corpus::agent_group(),
                corpus::rbac_group(),
            ];
            late.extend(corpus::selector_groups());
            late
        },
    ];
    let numbered = run::number(phases, 1);
    let sending = Instant::now();
    let mut sent: Vec<Sent> = Vec::new();
    for (index, phase) in numbered.into_iter().enumerate() {
        let phase_started = Instant::now();
        let results = run::run_phase(callers, phase);
        println!(
            "phase {}: {} requests in {:.1?}",
            index + 1,
            results.len(),
            phase_started.elapsed()
        );
        sent.extend(results);
        if index == 1 {
            wait_for_crds(plane)?;
        }
    }
    let corpus_took = sending.elapsed();

    let kubectl_started = Instant::now();
    let kubectl_runs = run::kubectl(&kubectl, &stack.alice.kubeconfig, stack.dir.path());
    let kubectl_took = kubectl_started.elapsed();

    // Generated requests last: random paths may delete what kubectl used.
    let seed = std::env::var("KUBESCRIBE_ORACLE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(generate::SEED);
    let first = sent.len() + 1;
    let generated_started = Instant::now();
    for phase in run::number(vec![generate::groups(seed)], first) {
        let results = run::run_phase(callers, phase);
        println!(
            "generated (seed {seed}): {} requests in {:.1?}",
            results.len(),
            generated_started.elapsed()
        );
        sent.extend(results);
    }
    let corpus_took = corpus_took + generated_started.elapsed();

    let collecting = Instant::now();
    let direct = send_direct(plane, &sent)?;

    // Everything recorded: events (with their response records) and audit events.
    let expected: Vec<String> = sent
        .iter()
        .filter(|s| s.outcome() == Expect::Audited)
        .filter_map(|s| s.audit_id().map(str::to_owned))
        .collect();
    let events = wait_for_events(&stack, &expected)?;
    let audit = wait_for_audit(plane, &events)?;
    let collected = collecting.elapsed();

    let (tally, kubectl_keys) = compare::compare(&Inputs {
        sent: &sent,
        events: &events,
        audit: &audit,
        direct: &direct,
        proxy_identity: &proxy_identity,
    });
    let counts = Counts::new(&sent, kubectl_keys.len(), &kubectl_runs, &skipped);
    let report = Report {
        tally: &tally,
        counts: &counts,
        kubectl: &kubectl_runs,
        timings: vec![
            (
                "stack start (etcd, kube-apiserver, recorder, proxy)",
                stack_ready,
            ),
            ("corpus sent through the proxy", corpus_took),
            ("kubectl invocations", kubectl_took),
            ("collecting events and audit events", collected),
            ("whole run", started.elapsed()),
        ],
    };
    let text = report.render();
    println!("\n{text}");
    let path = report_path();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, &text)?;
    println!("report written to {}", path.display());
    if !tally.mismatches.is_empty() {
        println!("\n== proxy log (last lines)\n{}", stack.proxy.log_tail());
    }
    if std::env::var_os("KUBESCRIBE_E2E_KEEP").is_some() {
        let kept = stack.dir.path().join("audit.log");
        std::fs::copy(plane.audit_log_path(), &kept)?;
        println!("audit log kept as {}", kept.display());
    }
    // An oracle that compared little proves little.
    let compared = tally.compared.get(compare::FIELDS[2]).copied().unwrap_or(0);
    if compared < MIN_COMPARED {
        println!("only {compared} requests were compared, fewer than {MIN_COMPARED}: the corpus did not run");
        return Ok(false);
    }
    Ok(tally.mismatches.is_empty())
}

/// The fewest requests whose events and audit events must have been compared.
const MIN_COMPARED: usize = 1000;

/// Who kube-apiserver says the proxy's own credential is (a SelfSubjectReview with it): the
/// `user` of every audit event of a proxied request must be exactly this.
fn proxy_identity(plane: &ControlPlane) -> Result<Value, Error> {
    let review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"});
    let bearer = format!("Bearer {}", PROXY.token);
    let reply = http::request(
        plane.addr(),
        Some(&Tls::trusting(plane.ca_pem())?),
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        &[
            ("Authorization", bearer.as_str()),
            ("Content-Type", "application/json"),
            ("Audit-ID", "oracle-proxy-identity"),
        ],
        review.to_string().as_bytes(),
    )?;
    let user = reply.json()?["status"]["userInfo"].clone();
    if reply.status != 201 || !user["username"].is_string() {
        return Err(format!(
            "SelfSubjectReview as the proxy: {} {}",
            reply.status,
            reply.text()
        )
        .into());
    }
    Ok(user)
}

/// The vectors that make sense live (the shared ones and those checked live before), as one phase
/// of four groups; and the skipped ones.
fn vector_phase() -> Result<(Phase, Vec<(u64, String)>), Error> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../crates/k8s-request-parse/tests/data/requestinfo-vectors.json");
    let vectors: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    let mut groups: Phase = vec![Vec::new(), Vec::new(), Vec::new(), Vec::new()];
    let mut skipped = Vec::new();
    for (index, v) in vectors.iter().enumerate() {
        let id = v["id"].as_u64().unwrap_or(0);
        let url = v["url"].as_str().unwrap_or("");
        if let Some(why) = corpus::vector_unsendable(url) {
            skipped.push((id, why.to_owned()));
            continue;
        }
        groups[index % 4].push(corpus::vector_entry(v));
    }
    Ok((groups, skipped))
}

/// Waits until both CRDs are Established and their resources are served.
fn wait_for_crds(plane: &ControlPlane) -> Result<(), Error> {
    let deadline = Instant::now() + Duration::from_secs(60);
    for (crd, served) in [
        (
            "widgets",
            format!(
                "/apis/{}/v1/namespaces/{}/widgets",
                corpus::CRD_GROUP,
                corpus::NS
            ),
        ),
        ("gadgets", format!("/apis/{}/v1/gadgets", corpus::CRD_GROUP)),
    ] {
        let path = format!(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd}.{}",
            corpus::CRD_GROUP
        );
        loop {
            let established = plane
                .request(&ADMIN, "GET", &path, b"")
                .ok()
                .and_then(|r| r.json().ok())
                .is_some_and(|crd| {
                    crd["status"]["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|c| c["type"] == "Established" && c["status"] == "True")
                });
            if established
                && plane
                    .request(&ADMIN, "GET", &served, b"")
                    .is_ok_and(|r| r.status == 200)
            {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("CRD {crd} not Established and served within 60 s").into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

/// Sends each request refused before auditing (by kube-apiserver, or by the proxy) straight to
/// kube-apiserver (as the administrator, with an `Audit-ID` of its own), to learn its answer.
fn send_direct(plane: &ControlPlane, sent: &[Sent]) -> Result<HashMap<usize, Direct>, Error> {
    let tls = Tls::trusting(plane.ca_pem())?;
    let bearer = format!("Bearer {}", ADMIN.token);
    let mut direct = HashMap::new();
    for s in sent.iter().filter(|s| {
        matches!(
            s.outcome(),
            Expect::RefusedBeforeAudit | Expect::RefusedByProxy
        )
    }) {
        let audit_id = format!("oracle-direct-{}", s.id);
        let reply = http::request(
            plane.addr(),
            Some(&tls),
            &s.entry.method,
            &s.entry.target,
            &[
                ("Authorization", bearer.as_str()),
                ("Audit-ID", audit_id.as_str()),
            ],
            &s.body,
        )?;
        direct.insert(
            s.id,
            Direct {
                status: reply.status,
                audit_id,
            },
        );
    }
    Ok(direct)
}

/// Reads every stored event from the recorder's query API, waiting (up to a minute) until each of
/// `expected` is there with its response record.
fn wait_for_events(stack: &Stack, expected: &[String]) -> Result<HashMap<String, Stored>, Error> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let events = all_events(stack)?;
        let complete = expected
            .iter()
            .all(|key| events.get(key).is_some_and(|s| s.response.is_object()))
            && events.values().all(|s| s.response.is_object());
        if complete || Instant::now() > deadline {
            return Ok(events);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn all_events(stack: &Stack) -> Result<HashMap<String, Stored>, Error> {
    let mut events = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/api/v1/events?limit=1000".to_owned();
        if let Some(c) = &cursor {
            path.push_str("&cursor=");
            path.push_str(c);
        }
        let reply = http::get(stack.recorder_addr, &path)?;
        if reply.status != 200 {
            return Err(format!("GET {path}: {} {}", reply.status, reply.text()).into());
        }
        let page = reply.json()?;
        for row in page["events"].as_array().into_iter().flatten() {
            let stored = Stored {
                event: row["event"].clone(),
                response: row["response"].clone(),
            };
            events.insert(stored.key().to_owned(), stored);
        }
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Ok(events),
        }
    }
}

/// The audit log by `auditID`, once every event's audit event has been written (up to 30 s).
fn wait_for_audit(
    plane: &ControlPlane,
    events: &HashMap<String, Stored>,
) -> Result<HashMap<String, Vec<Value>>, Error> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut audit: HashMap<String, Vec<Value>> = HashMap::new();
        for event in plane.audit_events()? {
            if let Some(id) = event["auditID"].as_str() {
                audit.entry(id.to_owned()).or_default().push(event);
            }
        }
        // OPTIONS * never reaches kube-apiserver's handlers (Go's server answers it): no audit
        // event will come for it.
        let complete = events.values().filter(|s| !is_options_star(s)).all(|s| {
            audit.get(s.audit_id()).is_some_and(|stages| {
                stages
                    .iter()
                    .any(|a| a["stage"] == "ResponseComplete" || a["stage"] == "Panic")
                    || stages.iter().any(|a| a["user"]["username"].is_null())
            })
        });
        if complete || Instant::now() > deadline {
            return Ok(audit);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn is_options_star(stored: &Stored) -> bool {
    stored.event["request"]["method"] == "OPTIONS" && stored.event["request"]["path"] == "*"
}

/// `target/oracle/report.md` in the workspace (or `$CARGO_TARGET_DIR/oracle/report.md`).
fn report_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("oracle").join("report.md")
}
