//! A bounded load through the proxy: a few workers doing gets, lists and
//! creates for as long as the test runs a fault, plus open watches; every
//! request named by a unique User-Agent so its event, response record and
//! audit event can be joined to what the caller got.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::client::{Call, Failure, Reply, StreamEnd, Streamed};

/// Every request's deadline: a request still unanswered then has hung.
pub const DEADLINE: Duration = Duration::from_secs(45);
/// A pause between one worker's requests, to keep the load bounded; longer
/// after a failure, as a client backs off.
const PAUSE: Duration = Duration::from_millis(20);
const PAUSE_AFTER_FAILURE: Duration = Duration::from_millis(100);
/// At most this many requests per worker (a bound on count besides time).
const MAX_PER_WORKER: u64 = 5_000;

/// Who a worker sends as.
#[derive(Debug, Clone, Copy)]
pub struct Sender {
    pub name: &'static str,
    pub addr: SocketAddr,
}

/// One request the load made, and what came of it.
#[derive(Debug, Clone)]
pub struct Sent {
    pub caller: &'static str,
    pub user_agent: String,
    pub op: &'static str,
    pub method: &'static str,
    pub path: String,
    pub started: Instant,
    pub took: Duration,
    pub result: Result<Reply, Failure>,
}

impl Sent {
    pub fn status(&self) -> Option<u16> {
        self.result.as_ref().ok().map(|r| r.status)
    }
}

/// The running load.
pub struct Load {
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
    sent: Arc<Mutex<Vec<Sent>>>,
}

/// What the workers send: `prefix` names the run in every User-Agent, the
/// objects live in `namespace`, `query` is added to every request (e.g.
/// `timeout=3s`).
#[derive(Debug, Clone)]
pub struct Plan {
    pub prefix: String,
    pub namespace: String,
    pub query: String,
}

impl Plan {
    /// The User-Agent of `caller`'s request `seq` from `worker`.
    fn user_agent(&self, caller: &str, worker: usize, seq: u64) -> String {
        format!("{}/{caller}/w{worker}/{seq}", self.prefix)
    }

    fn request(&self, worker: usize, seq: u64) -> (&'static str, &'static str, String, Vec<u8>) {
        let ns = &self.namespace;
        let q = if self.query.is_empty() {
            String::new()
        } else {
            format!("&{}", self.query)
        };
        match seq % 3 {
            0 => (
                "get",
                "GET",
                format!("/api/v1/namespaces/{ns}/configmaps/seed?x=1{q}"),
                Vec::new(),
            ),
            1 => (
                "list",
                "GET",
                format!("/api/v1/namespaces/{ns}/configmaps?limit=20{q}"),
                Vec::new(),
            ),
            _ => (
                "create",
                "POST",
                format!("/api/v1/namespaces/{ns}/configmaps?x=1{q}"),
                serde_json::json!({
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": format!("w{worker}-{seq}")},
                    "data": {"worker": worker.to_string()}
                })
                .to_string()
                .into_bytes(),
            ),
        }
    }
}

impl Load {
    /// Starts one worker per sender.
    pub fn start(plan: &Plan, senders: &[Sender]) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let workers = senders
            .iter()
            .enumerate()
            .map(|(worker, sender)| {
                let (stop, sent, plan, sender) =
                    (stop.clone(), sent.clone(), plan.clone(), *sender);
                std::thread::spawn(move || {
                    let mut seq = 0;
                    while !stop.load(Ordering::SeqCst) && seq < MAX_PER_WORKER {
                        let (op, method, path, body) = plan.request(worker, seq);
                        let user_agent = plan.user_agent(sender.name, worker, seq);
                        let started = Instant::now();
                        let result = Call {
                            addr: sender.addr,
                            method,
                            path: &path,
                            user_agent: &user_agent,
                            body: &body,
                            deadline: DEADLINE,
                        }
                        .send();
                        let record = Sent {
                            caller: sender.name,
                            user_agent,
                            op,
                            method,
                            path,
                            started,
                            took: started.elapsed(),
                            result,
                        };
                        let failed = !record.status().is_some_and(|c| (200..300).contains(&c));
                        if let Ok(mut all) = sent.lock() {
                            all.push(record);
                        }
                        seq += 1;
                        std::thread::sleep(if failed { PAUSE_AFTER_FAILURE } else { PAUSE });
                    }
                })
            })
            .collect();
        Load {
            stop,
            workers,
            sent,
        }
    }

    /// Stops the workers (each finishes its request) and returns every request sent.
    pub fn finish(self) -> Vec<Sent> {
        self.stop.store(true, Ordering::SeqCst);
        for worker in self.workers {
            let _ = worker.join();
        }
        let mut sent = self.sent.lock().map(|s| s.clone()).unwrap_or_default();
        sent.sort_by_key(|s| s.started);
        sent
    }
}

/// An open watch, read on its own thread.
pub struct Watch {
    pub caller: &'static str,
    pub user_agent: String,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Streamed>,
}

impl Watch {
    /// Opens `?watch=true` on `path` as `sender`; it runs until the server
    /// ends it, [`Watch::close`] or `deadline`.
    pub fn open(sender: Sender, path: &str, user_agent: String, deadline: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (path, ua, flag) = (path.to_owned(), user_agent.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            Call {
                addr: sender.addr,
                method: "GET",
                path: &path,
                user_agent: &ua,
                body: b"",
                deadline,
            }
            .stream(&flag)
        });
        Watch {
            caller: sender.name,
            user_agent,
            stop,
            thread,
        }
    }

    /// Whether the stream has ended (by itself).
    pub fn ended(&self) -> bool {
        self.thread.is_finished()
    }

    /// Waits for the stream to end by itself (up to its deadline).
    pub fn join(self) -> Streamed {
        self.thread.join().unwrap_or_else(|_| Streamed {
            status: None,
            lines: 0,
            first_line: String::new(),
            end: StreamEnd::Failed("the reading thread panicked".into()),
            ended_at: Instant::now(),
        })
    }

    /// Ends the stream from this side, then returns what it carried.
    pub fn close(self) -> Streamed {
        self.stop.store(true, Ordering::SeqCst);
        self.join()
    }
}
