//! A stand-in for tailscaled's LocalAPI: `GET /localapi/v0/whois?addr=IP:PORT`
//! on a unix socket, answering real `WhoIsResponse` JSON by source IP.
//!
//! Like tailscaled, it requires the `Sec-Tailscale: localapi` header and
//! answers an unknown address with 404 `no match for IP:port`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::UnixListener;
use tokio::task::JoinHandle;

use crate::Error;

/// A running fake LocalAPI; stops when dropped.
pub struct FakeLocalApi {
    socket: PathBuf,
    answers: Arc<Mutex<HashMap<IpAddr, Value>>>,
    asked: Arc<Mutex<HashMap<IpAddr, u64>>>,
    task: JoinHandle<()>,
}

impl FakeLocalApi {
    /// Serves `answers` (source IP → `WhoIsResponse`) on a new socket at `socket`.
    /// Must be called inside a tokio runtime.
    pub fn start(socket: &Path, answers: HashMap<IpAddr, Value>) -> Result<Self, Error> {
        let _ = std::fs::remove_file(socket);
        let listener = UnixListener::bind(socket)?;
        let answers = Arc::new(Mutex::new(answers));
        let asked = Arc::new(Mutex::new(HashMap::new()));
        let shared = Arc::clone(&answers);
        let counts = Arc::clone(&asked);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let answers = Arc::clone(&shared);
                let counts = Arc::clone(&counts);
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let answers = Arc::clone(&answers);
                        let counts = Arc::clone(&counts);
                        async move { Ok::<_, Infallible>(answer(&req, &answers, &counts)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self {
            socket: socket.to_path_buf(),
            answers,
            asked,
            task,
        })
    }

    /// How many WhoIs questions were asked about addresses of `ip` so far (answered or not).
    pub fn whois_asked(&self, ip: IpAddr) -> u64 {
        self.asked
            .lock()
            .map_or(0, |asked| asked.get(&ip).copied().unwrap_or(0))
    }

    /// The socket path to give the proxy or recorder (`--localapi-socket`).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Adds or replaces the identity for `ip`.
    pub fn set(&self, ip: IpAddr, whois: Value) {
        if let Ok(mut answers) = self.answers.lock() {
            answers.insert(ip, whois);
        }
    }
}

impl Drop for FakeLocalApi {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn answer(
    req: &Request<Incoming>,
    answers: &Mutex<HashMap<IpAddr, Value>>,
    asked: &Mutex<HashMap<IpAddr, u64>>,
) -> Response<Full<Bytes>> {
    if req.headers().get("sec-tailscale").map(|v| v.as_bytes()) != Some(b"localapi") {
        return text(
            StatusCode::FORBIDDEN,
            "localapi: missing Sec-Tailscale header\n",
        );
    }
    if req.uri().path() != "/localapi/v0/whois" {
        return text(StatusCode::NOT_FOUND, "404 page not found\n");
    }
    let addr = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("addr="))
        .map(|raw| {
            raw.replace("%3A", ":")
                .replace("%3a", ":")
                .replace("%5B", "[")
                .replace("%5D", "]")
        })
        .unwrap_or_default();
    let Ok(peer) = addr.parse::<SocketAddr>() else {
        return text(
            StatusCode::BAD_REQUEST,
            &format!("invalid 'addr' parameter: {addr:?}\n"),
        );
    };
    if let Ok(mut asked) = asked.lock() {
        *asked.entry(peer.ip()).or_default() += 1;
    }
    let found = answers.lock().ok().and_then(|a| a.get(&peer.ip()).cloned());
    match found {
        Some(whois) => Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(whois.to_string())))
            .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "")),
        None => text(StatusCode::NOT_FOUND, &format!("no match for {peer}\n")),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_owned())));
    *response.status_mut() = status;
    response
}
