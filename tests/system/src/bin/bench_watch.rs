//! `cargo xtask bench-watch`: what open watches and idle keep-alive connections cost the proxy
//! (and the recorder), measured as users run them.
//!
//! The stack of the end-to-end run (release binaries when built with `--release`): the proxy and
//! the recorder as separate processes, the recorder storing durably on disk, the simulator
//! upstream. Two callers, alice (fail closed) and ci (fail open), each through its own
//! PROXY-protocol forwarder, open the connections in turn (half each: the proxy's per-source
//! limit is 512).
//!
//! 1. **Idle connections**: `--watches` connections (default 1,000) each send one request with
//!    keep-alive, read the answer, then stay open and idle. The proxy's RSS grows by the cost of
//!    an idle connection times their number.
//! 2. **Open watches**: as many `GET …/pods?watch=1` requests, each on its own connection, each
//!    recorded (an event per watch) and left open. Then one pod is created: every watch must
//!    deliver its `ADDED` event (so all of them are live streams, not stalled).
//!
//! Each phase runs on a stack of its own. RSS is `VmRSS` of `/proc/<pid>/status`, read a second
//! after the phase settles.
//!
//! ```text
//! cargo xtask bench-watch [--watches N]
//! ```

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kubescribe_system_tests::stack::{Stack, Storage, CALLER_TOKEN};
use kubescribe_system_tests::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Most bytes read while waiting for a response head.
const HEAD_LIMIT: usize = 64 << 10;

fn main() {
    if let Err(err) = run() {
        eprintln!("bench-watch: {err}");
        std::process::exit(1);
    }
}

fn watches_arg() -> Result<usize, Error> {
    let mut it = std::env::args().skip(1);
    let mut watches = 1000;
    while let Some(flag) = it.next() {
        match (flag.as_str(), it.next()) {
            ("--watches", Some(n)) => {
                watches = n.parse().map_err(|e| format!("--watches {n}: {e}"))?
            }
            _ => return Err(format!("unknown flag {flag}: --watches N").into()),
        }
    }
    Ok(watches.max(2))
}

/// What one phase opens and keeps open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Keep-alive connections idle after one request each.
    Idle,
    /// Open watches, each recorded.
    Watches,
}

/// RSS (KiB) of the proxy and the recorder before and after one phase.
struct Measured {
    proxy: (u64, u64),
    recorder: (u64, u64),
}

fn run() -> Result<(), Error> {
    let n = watches_arg()?;
    // Each phase on a stack of its own: memory an allocator kept from one phase does not hide
    // what the next one costs.
    let idle = phase(Phase::Idle, n)?;
    let watches = phase(Phase::Watches, n)?;
    let mib = |kib: u64| kib as f64 / 1024.0;
    let per = |(before, after): (u64, u64)| after.saturating_sub(before) as f64 / n as f64;
    println!();
    println!(
        "| {n} at once | proxy RSS before → after | per connection | recorder RSS before → after |"
    );
    println!("| --- | ---: | ---: | ---: |");
    for (what, m) in [
        ("idle keep-alive connections", &idle),
        ("open watches, each recorded", &watches),
    ] {
        println!(
            "| {what} | {:.1} → {:.1} MiB | {:.1} KiB | {:.1} → {:.1} MiB |",
            mib(m.proxy.0),
            mib(m.proxy.1),
            per(m.proxy),
            mib(m.recorder.0),
            mib(m.recorder.1)
        );
    }
    Ok(())
}

/// Starts a stack, warms it up, measures the RSS, opens `n` connections of `kind` and measures
/// again; watches must then each deliver a new pod.
fn phase(kind: Phase, n: usize) -> Result<Measured, Error> {
    let stack = Stack::start(Storage::Disk)?;
    let callers = [stack.caller("alice")?.addr(), stack.caller("ci")?.addr()];
    let recorder = stack.recorder.as_ref().ok_or("the stack has no recorder")?;
    let rss = |what: &str| -> Result<(u64, u64), Error> {
        let proxy = stack.proxy.rss_kib().ok_or("cannot read the proxy's RSS")?;
        let recorder = recorder.rss_kib().ok_or("cannot read the recorder's RSS")?;
        println!("{what}: proxy RSS {proxy} KiB, recorder RSS {recorder} KiB");
        Ok((proxy, recorder))
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        // Warm-up: both callers' identities resolved, connections to the recorder open.
        for round in 0..20 {
            let mut conn = TcpStream::connect(callers[round % 2]).await?;
            request(&mut conn, "/api/v1/namespaces/default/pods", true).await?;
        }
        settle().await;
        let (proxy_before, recorder_before) = rss("baseline (after 20 warm-up requests)")?;
        let started = Instant::now();
        let mut open = Vec::with_capacity(n);
        for i in 0..n {
            let mut conn = TcpStream::connect(callers[i % 2]).await?;
            let rest = match kind {
                Phase::Idle => request(&mut conn, "/version", false).await?,
                Phase::Watches => {
                    let path = "/api/v1/namespaces/default/pods?watch=1&resourceVersion=0";
                    request(&mut conn, path, false).await?
                }
            };
            open.push((conn, rest));
        }
        println!("{n} {kind:?} opened in {:?}", started.elapsed());
        settle().await;
        let (proxy_after, recorder_after) = rss(&format!("{n} {kind:?}"))?;
        if kind == Phase::Watches {
            every_watch_sees_a_new_pod(callers[0], &mut open).await?;
            println!("every one of the {n} watches delivered the new pod");
        }
        Ok(Measured {
            proxy: (proxy_before, proxy_after),
            recorder: (recorder_before, recorder_after),
        })
    })
}

/// Creates a pod; every watch in `watches` must deliver it within 30 s (so all of them are live
/// streams, not stalled).
async fn every_watch_sees_a_new_pod(
    via: SocketAddr,
    watches: &mut [(TcpStream, Vec<u8>)],
) -> Result<(), Error> {
    let name = format!("bench-watch-{}", std::process::id());
    create_pod(via, &name).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    for (i, (conn, seen)) in watches.iter_mut().enumerate() {
        while !contains(seen, name.as_bytes()) {
            let mut buf = [0u8; 16 << 10];
            let left = deadline.saturating_duration_since(Instant::now());
            let read = tokio::time::timeout(left, conn.read(&mut buf))
                .await
                .map_err(|_| format!("watch {i} did not see pod {name} within 30 s"))??;
            if read == 0 {
                return Err(format!("watch {i} ended before it saw pod {name}").into());
            }
            seen.extend_from_slice(&buf[..read]);
        }
    }
    Ok(())
}

/// Lets the processes finish what the last phase started.
async fn settle() {
    tokio::time::sleep(Duration::from_secs(1)).await;
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Sends `GET path` on `conn` and reads the response head; with `whole`, the body too (by its
/// `Content-Length`). Returns what was read past the head.
async fn request(conn: &mut TcpStream, path: &str, whole: bool) -> Result<Vec<u8>, Error> {
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: kubernetes\r\nAuthorization: Bearer {CALLER_TOKEN}\r\nAccept: application/json\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).await?;
    let (status, length, mut rest) = read_head(conn).await?;
    if status != 200 {
        return Err(format!("GET {path}: status {status}").into());
    }
    if whole || length.is_some() {
        let want = length.unwrap_or(0);
        while rest.len() < want {
            let mut buf = vec![0u8; want - rest.len()];
            let read = conn.read(&mut buf).await?;
            if read == 0 {
                return Err(format!("GET {path}: body cut short").into());
            }
            rest.extend_from_slice(&buf[..read]);
        }
    }
    Ok(rest)
}

/// Reads a response head: its status, its `Content-Length` and the bytes read past it.
async fn read_head(conn: &mut TcpStream) -> Result<(u16, Option<usize>, Vec<u8>), Error> {
    let mut got = Vec::new();
    let end = loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        if got.len() > HEAD_LIMIT {
            return Err("response head too large".into());
        }
        let mut buf = [0u8; 4096];
        let read = tokio::time::timeout(Duration::from_secs(30), conn.read(&mut buf))
            .await
            .map_err(|_| "no response head within 30 s")??;
        if read == 0 {
            return Err("connection closed before a response head".into());
        }
        got.extend_from_slice(&buf[..read]);
    };
    let head = String::from_utf8_lossy(&got[..end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {head:?}"))?;
    let length = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())
            .flatten()
    });
    Ok((status, length, got[end + 4..].to_vec()))
}

/// Creates pod `name` in `default` through the proxy at `via`.
async fn create_pod(via: SocketAddr, name: &str) -> Result<(), Error> {
    let body = format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","namespace":"default"}},"spec":{{"containers":[{{"name":"c","image":"busybox"}}]}}}}"#
    );
    let head = format!(
        "POST /api/v1/namespaces/default/pods HTTP/1.1\r\nHost: kubernetes\r\nAuthorization: Bearer {CALLER_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut conn = TcpStream::connect(via).await?;
    conn.write_all(head.as_bytes()).await?;
    conn.write_all(body.as_bytes()).await?;
    let (status, _, _) = read_head(&mut conn).await?;
    if status != 201 && status != 200 {
        return Err(format!("creating pod {name}: status {status}").into());
    }
    Ok(())
}
