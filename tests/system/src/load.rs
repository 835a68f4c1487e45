//! A closed-loop request load through one caller's forwarder, with every
//! reply timed: `workers` connections, each sending its next request as soon
//! as the previous one is answered, until stopped. The recorder-stall test
//! (`tests/recorder_stall.rs`) checks what each request got; the `bench_stall`
//! example reports how fast refusals came.
//!
//! Every request has a path of its own (`…/configmaps/load-<worker>-<n>`),
//! so its event and what the API server saw can be found by path.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::stack::CALLER_TOKEN;

/// Longest a request may take; one that takes longer is recorded with status 0.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(30);

/// One request and what it got.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The request's path.
    pub path: String,
    /// When it was sent.
    pub sent: Instant,
    /// How long until the whole reply had arrived.
    pub latency: Duration,
    /// The reply's status; 0 when there was none (connection failure or
    /// [`REQUEST_DEADLINE`]).
    pub status: u16,
    /// The start of the reply's body (or why there was no reply).
    pub body: String,
}

impl Sample {
    /// When the reply had arrived.
    pub fn answered(&self) -> Instant {
        self.sent + self.latency
    }
}

/// A running load. Dropping it stops it (without waiting).
pub struct Load {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Starts `workers` closed-loop senders on `runtime` to the caller forwarder at `addr`,
    /// each `GET /api/v1/namespaces/<namespace>/configmaps/load-<worker>-<n>`, waiting `pause`
    /// after each answer (zero: none).
    pub fn start(
        runtime: &tokio::runtime::Runtime,
        addr: SocketAddr,
        namespace: &str,
        workers: usize,
        pause: Duration,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let workers = (0..workers)
            .map(|worker| {
                let (stop, samples) = (stop.clone(), samples.clone());
                let prefix = format!("/api/v1/namespaces/{namespace}/configmaps/load-{worker}");
                runtime.spawn(async move {
                    // One keep-alive connection per worker, as a client would hold.
                    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
                        .pool_max_idle_per_host(1)
                        .build_http();
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let path = format!("{prefix}-{n}");
                        n += 1;
                        let sample = send(&client, addr, path).await;
                        samples
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(sample);
                        if !pause.is_zero() {
                            tokio::time::sleep(pause).await;
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            samples,
            workers,
        }
    }

    /// Samples of the requests answered so far.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Stops sending, waits for the requests in flight, and returns every sample in the order
    /// they were answered.
    pub fn stop(mut self, runtime: &tokio::runtime::Runtime) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        for worker in std::mem::take(&mut self.workers) {
            let _ = runtime.block_on(worker);
        }
        self.samples()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

async fn send(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    addr: SocketAddr,
    path: String,
) -> Sample {
    let sent = Instant::now();
    let request = http::Request::get(format!("http://{addr}{path}"))
        .header("authorization", format!("Bearer {CALLER_TOKEN}"))
        .header("user-agent", "kubescribe-load")
        .header("accept", "application/json")
        .body(Full::new(Bytes::new()));
    let request = match request {
        Ok(r) => r,
        Err(e) => return failed(path, sent, format!("building the request: {e}")),
    };
    let exchange = async {
        let response = client.request(request).await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok::<_, String>((status, body))
    };
    match tokio::time::timeout(REQUEST_DEADLINE, exchange).await {
        Ok(Ok((status, body))) => Sample {
            path,
            sent,
            latency: sent.elapsed(),
            status,
            body: String::from_utf8_lossy(&body[..body.len().min(600)]).into_owned(),
        },
        Ok(Err(e)) => failed(path, sent, format!("no reply: {e}")),
        Err(_) => failed(path, sent, format!("no reply within {REQUEST_DEADLINE:?}")),
    }
}

fn failed(path: String, sent: Instant, why: String) -> Sample {
    Sample {
        path,
        sent,
        latency: sent.elapsed(),
        status: 0,
        body: why,
    }
}

/// The `q`-quantile (0..=1) of `values`, which must be sorted; `None` when empty.
pub fn quantile(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}
