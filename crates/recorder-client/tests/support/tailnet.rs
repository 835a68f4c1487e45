//! Stand-ins for the ways a proxy without a TUN device reaches tailnet recorders: a fake
//! tailscaled LocalAPI (`POST /localapi/v0/dial` upgraded to the raw stream, `Dial-Self`, and
//! `GET /localapi/v0/status`) and a SOCKS5 server (fast-socks5, as tailscaled's
//! `--socks5-server`). Both route tailnet addresses to real loopback listeners, as tailscaled's
//! netstack routes them to peers; anything else fails the way tailscaled fails it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use fast_socks5::server::{run_tcp_proxy, DnsResolveHelper as _, Socks5ServerProtocol};
use fast_socks5::util::target_addr::TargetAddr;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream, UnixListener};
use tokio::task::JoinHandle;

/// Tailnet address → where it really is (a loopback listener).
pub type Routes = HashMap<IpAddr, SocketAddr>;

/// One `POST /localapi/v0/dial` as the fake saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenDial {
    pub host: String,
    pub port: String,
    pub network: String,
    pub upgrade: String,
    pub connection: String,
    pub host_header: String,
    pub sec_tailscale: String,
}

/// A fake tailscaled LocalAPI on a unix socket.
pub struct FakeTailscaled {
    pub socket: PathBuf,
    pub dials: Arc<Mutex<Vec<SeenDial>>>,
    pub status_gets: Arc<Mutex<usize>>,
    _dir: tempfile::TempDir,
    task: JoinHandle<()>,
}

impl Drop for FakeTailscaled {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Shared {
    routes: Routes,
    /// Answer `Dial-Self` (newer tailscaled: 1.102 does, 1.96 does not) for addresses that are not routes, instead of 502.
    dial_self: bool,
    status: String,
    dials: Arc<Mutex<Vec<SeenDial>>>,
    status_gets: Arc<Mutex<usize>>,
}

impl FakeTailscaled {
    /// Serves `routes` for dials and `status` (a JSON document) for status requests.
    pub fn start(routes: Routes, dial_self: bool, status: String) -> FakeTailscaled {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("tailscaled.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let dials = Arc::new(Mutex::new(Vec::new()));
        let status_gets = Arc::new(Mutex::new(0));
        let shared = Arc::new(Shared {
            routes,
            dial_self,
            status,
            dials: dials.clone(),
            status_gets: status_gets.clone(),
        });
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(serve(&shared, req)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        FakeTailscaled {
            socket,
            dials,
            status_gets,
            _dir: dir,
            task,
        }
    }

    pub fn dial_count(&self) -> usize {
        self.dials.lock().unwrap().len()
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{body}\n"))));
    *response.status_mut() = status;
    response
}

fn header(req: &Request<Incoming>, name: &str) -> String {
    req.headers()
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default()
}

/// tailscaled's `serveDial` and `serveStatus`, as far as their answers go.
fn serve(shared: &Shared, mut req: Request<Incoming>) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/localapi/v0/status") => {
            *shared.status_gets.lock().unwrap() += 1;
            text(StatusCode::OK, &shared.status)
        }
        (&Method::POST, "/localapi/v0/dial") => {
            let seen = SeenDial {
                host: header(&req, "dial-host"),
                port: header(&req, "dial-port"),
                network: header(&req, "dial-network"),
                upgrade: header(&req, "upgrade"),
                connection: header(&req, "connection"),
                host_header: header(&req, "host"),
                sec_tailscale: header(&req, "sec-tailscale"),
            };
            shared.dials.lock().unwrap().push(seen.clone());
            if !seen.connection.contains("upgrade") || seen.upgrade != "ts-dial" {
                return text(StatusCode::BAD_REQUEST, "bad ts-dial upgrade");
            }
            if seen.host.is_empty() || seen.port.is_empty() {
                return text(
                    StatusCode::BAD_REQUEST,
                    "missing Dial-Host or Dial-Port header",
                );
            }
            let addr = format!("{}:{}", seen.host, seen.port);
            let Ok(target) = addr.parse::<SocketAddr>() else {
                return text(StatusCode::BAD_GATEWAY, &format!("resolve failure: {addr}"));
            };
            let Some(&real) = shared.routes.get(&target.ip()) else {
                if shared.dial_self {
                    let mut response = text(StatusCode::OK, "");
                    response
                        .headers_mut()
                        .insert("Dial-Self", "true".parse().unwrap());
                    response
                        .headers_mut()
                        .insert("Dial-Addr", addr.parse().unwrap());
                    return response;
                }
                return text(
                    StatusCode::BAD_GATEWAY,
                    &format!("dial failure: dial tcp {addr}: connect: network is unreachable"),
                );
            };
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let Ok(upgraded) = on_upgrade.await else {
                    return;
                };
                let Ok(mut peer) = TcpStream::connect(real).await else {
                    return;
                };
                let mut client = TokioIo::new(upgraded);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut peer).await;
            });
            let mut response = text(StatusCode::SWITCHING_PROTOCOLS, "");
            *response.body_mut() = Full::new(Bytes::new());
            response
                .headers_mut()
                .insert("Upgrade", "ts-dial".parse().unwrap());
            response
                .headers_mut()
                .insert("Connection", "upgrade".parse().unwrap());
            response
        }
        _ => text(StatusCode::NOT_FOUND, "404 page not found"),
    }
}

/// A SOCKS5 server (no authentication) that routes tailnet addresses like [`FakeTailscaled`].
pub struct Socks5Server {
    pub addr: SocketAddr,
    /// Every CONNECT target asked for, as the client sent it.
    pub targets: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Drop for Socks5Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Socks5Server {
    pub async fn start(routes: Routes) -> Socks5Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let targets = Arc::new(Mutex::new(Vec::new()));
        let seen = targets.clone();
        let routes = Arc::new(routes);
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let (seen, routes) = (seen.clone(), routes.clone());
                tokio::spawn(async move {
                    let Ok(accepted) = Socks5ServerProtocol::accept_no_auth(socket).await else {
                        return;
                    };
                    let Ok(command) = accepted.read_command().await else {
                        return;
                    };
                    let Ok((proto, _cmd, target)) = command.resolve_dns().await else {
                        return;
                    };
                    seen.lock().unwrap().push(target.to_string());
                    let target = match &target {
                        TargetAddr::Ip(ip) => match routes.get(&ip.ip()) {
                            Some(real) => TargetAddr::Ip(*real),
                            None => target,
                        },
                        TargetAddr::Domain(..) => target,
                    };
                    let _ = run_tcp_proxy(proto, &target, Duration::from_secs(5), true).await;
                });
            }
        });
        Socks5Server {
            addr,
            targets,
            task,
        }
    }
}
