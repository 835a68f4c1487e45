//! The load: a few workers per failure policy sending API requests through the proxy (gets,
//! lists, creates; one connection each, a unique `User-Agent`, a deadline), and against kube-sim
//! one worker per policy running `kubectl exec` now and then. Bounded in time (the fault window)
//! and in count (per worker).

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use kubescribe_system_tests::client::{Call, Failure, Reply};
use kubescribe_system_tests::run::with_deadline;
use kubescribe_system_tests::stack::Stack;
use kubescribe_system_tests::Error;
use test_support::peers;

/// API request workers per policy.
const WORKERS: usize = 4;
/// Every API request's deadline: one still unanswered then has hung. Far above the proxy's own
/// bounds (3 s per recorder attempt, 10 s to connect upstream).
pub(crate) const DEADLINE: Duration = Duration::from_secs(30);
/// An exec session's deadline (kubectl started, command run, output read, kubectl exited).
pub(crate) const EXEC_DEADLINE: Duration = Duration::from_secs(60);
/// The pause between one worker's requests, longer after a failure, as a client backs off.
const PAUSE: Duration = Duration::from_millis(20);
const PAUSE_AFTER_FAILURE: Duration = Duration::from_millis(100);
/// The pause between one exec worker's sessions.
const EXEC_PAUSE: Duration = Duration::from_millis(2500);
/// At most this many requests per worker, and sessions per exec worker: kube-sim keeps the last
/// 20,000 requests it received, and the join needs all of them.
const MAX_PER_WORKER: u64 = 2_000;
const MAX_SESSIONS: u64 = 200;
/// The namespace the load works in (exists in both upstreams).
const NAMESPACE: &str = "default";

/// A caller's failure policy; each has its own caller in the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Policy {
    /// alice: fail closed.
    Closed,
    /// ci: fail open.
    Open,
}

impl Policy {
    /// The stack's caller with this policy.
    pub(crate) fn caller(self) -> &'static str {
        match self {
            Policy::Closed => "alice",
            Policy::Open => "ci",
        }
    }
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Policy::Closed => "closed",
            Policy::Open => "open",
        })
    }
}

/// One API request and what came of it.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) policy: Policy,
    pub(crate) user_agent: String,
    pub(crate) op: &'static str,
    pub(crate) took: Duration,
    /// When it was sent (wall clock).
    pub(crate) sent_at: SystemTime,
    /// When the reply (or the failure) was in (wall clock, as the recorder's record ids).
    pub(crate) answered_at: SystemTime,
    pub(crate) result: Result<Reply, Failure>,
}

/// One exec session and what came of it.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) policy: Policy,
    /// The word the session echoes; also in its request URI (`command=…`).
    pub(crate) marker: String,
    pub(crate) took: Duration,
    /// When kubectl started and when it ended (wall clock).
    pub(crate) started_at: SystemTime,
    pub(crate) ended_at: SystemTime,
    pub(crate) outcome: SessionOutcome,
}

/// How an exec session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SessionOutcome {
    /// kubectl exited 0 and printed the session's last line.
    Ran,
    /// kubectl failed; its stderr's first line.
    Failed(String),
    /// kubectl was still running at the deadline (killed).
    Hung,
}

/// Everything the load sent.
#[derive(Debug, Default)]
pub(crate) struct Sent {
    pub(crate) requests: Vec<Request>,
    pub(crate) sessions: Vec<Session>,
}

/// The running load.
pub(crate) struct Load {
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
    sent: Arc<Mutex<Sent>>,
}

impl Load {
    /// Starts the workers for `policies`; they stop by themselves after `window` (or
    /// [`Load::finish`]).
    pub(crate) fn start(
        stack: &Stack,
        policies: &[Policy],
        window: Duration,
    ) -> Result<Self, Error> {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(Mutex::new(Sent::default()));
        let until = Instant::now() + window;
        let mut workers = Vec::new();
        for &policy in policies {
            let caller = stack.caller(policy.caller())?;
            for worker in 0..WORKERS {
                let (stop, sent, addr) = (stop.clone(), sent.clone(), caller.addr());
                workers.push(std::thread::spawn(move || {
                    let mut seq = 0u64;
                    while !stop.load(Ordering::SeqCst)
                        && Instant::now() < until
                        && seq < MAX_PER_WORKER
                    {
                        let (op, method, path, body) = request(policy, worker, seq);
                        let user_agent = format!(
                            "kubescribe-chaos/{}/{policy}/{worker}/{seq}",
                            policy.caller()
                        );
                        let (started, sent_at) = (Instant::now(), SystemTime::now());
                        let result = Call {
                            addr,
                            method,
                            path: &path,
                            user_agent: &user_agent,
                            body: &body,
                            deadline: DEADLINE,
                        }
                        .send();
                        let answered_at = SystemTime::now();
                        let ok = result.as_ref().is_ok_and(|r| r.status < 300);
                        let request = Request {
                            policy,
                            user_agent,
                            op,
                            took: started.elapsed(),
                            sent_at,
                            answered_at,
                            result,
                        };
                        if let Ok(mut sent) = sent.lock() {
                            sent.requests.push(request);
                        }
                        seq += 1;
                        std::thread::sleep(if ok { PAUSE } else { PAUSE_AFTER_FAILURE });
                    }
                }));
            }
            if stack.upstream.has_kubelet() {
                let kubectl = peers::kubectl()?;
                let kubeconfig = caller.kubeconfig.clone();
                let (stop, sent) = (stop.clone(), sent.clone());
                workers.push(std::thread::spawn(move || {
                    exec_worker(policy, &kubectl, &kubeconfig, &stop, until, &sent)
                }));
            }
        }
        Ok(Load {
            stop,
            workers,
            sent,
        })
    }

    /// Stops the workers (each finishes what it is sending, within its deadline) and returns
    /// everything sent.
    pub(crate) fn finish(self) -> Sent {
        self.stop.store(true, Ordering::SeqCst);
        for worker in self.workers {
            let _ = worker.join();
        }
        let mut sent = self
            .sent
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default();
        sent.requests
            .sort_by(|a, b| a.user_agent.cmp(&b.user_agent));
        sent
    }
}

/// Request `seq` of `worker`: a create, a get of what this worker created last, a list.
fn request(
    policy: Policy,
    worker: usize,
    seq: u64,
) -> (&'static str, &'static str, String, Vec<u8>) {
    let name = |seq: u64| format!("chaos-{policy}-{worker}-{seq}");
    let collection = format!("/api/v1/namespaces/{NAMESPACE}/configmaps");
    match seq % 3 {
        0 => (
            "create",
            "POST",
            collection,
            serde_json::json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": name(seq)},
                "data": {"policy": policy.to_string(), "seq": seq.to_string()}
            })
            .to_string()
            .into_bytes(),
        ),
        1 => (
            "get",
            "GET",
            format!("{collection}/{}", name(seq - 1)),
            Vec::new(),
        ),
        _ => ("list", "GET", format!("{collection}?limit=20"), Vec::new()),
    }
}

/// Runs `kubectl exec demo -- sh -c 'echo <marker>; sleep 0…3; echo <marker>-end'` as the caller
/// of `policy` every few seconds: sessions that last, so faults hit some mid-session.
fn exec_worker(
    policy: Policy,
    kubectl: &PathBuf,
    kubeconfig: &PathBuf,
    stop: &AtomicBool,
    until: Instant,
    sent: &Mutex<Sent>,
) {
    let mut seq = 0u64;
    while !stop.load(Ordering::SeqCst) && Instant::now() < until && seq < MAX_SESSIONS {
        // Fixed width: no marker is a prefix of another.
        let marker = format!("chaos-exec-{policy}-{seq:04}");
        let (started, started_at) = (Instant::now(), SystemTime::now());
        let result = with_deadline(
            Command::new(kubectl)
                .arg("--kubeconfig")
                .arg(kubeconfig)
                .args(["--request-timeout=30s", "exec", "demo", "--", "sh", "-c"])
                .arg(format!(
                    "echo {marker}; sleep {}; echo {marker}-end",
                    seq % 4
                )),
            EXEC_DEADLINE,
        );
        let took = started.elapsed();
        let outcome = match result {
            Ok(out)
                if out.status.success()
                    && String::from_utf8_lossy(&out.stdout).contains(&format!("{marker}-end")) =>
            {
                SessionOutcome::Ran
            }
            Ok(out) => SessionOutcome::Failed(
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .next()
                    .unwrap_or("(no stderr)")
                    .chars()
                    .take(200)
                    .collect(),
            ),
            Err(_) if took >= EXEC_DEADLINE => SessionOutcome::Hung,
            Err(e) => SessionOutcome::Failed(e.to_string()),
        };
        if let Ok(mut sent) = sent.lock() {
            sent.sessions.push(Session {
                policy,
                marker,
                took,
                started_at,
                ended_at: SystemTime::now(),
                outcome,
            });
        }
        seq += 1;
        let pause_until = Instant::now() + EXEC_PAUSE;
        while Instant::now() < pause_until && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
