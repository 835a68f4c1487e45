//! What identity costs the proxy per request: grant parsing and merging, impersonation headers,
//! identity-file lookup, and a LocalAPI WhoIs (cache hit and miss against a fake tailscaled).
#![allow(clippy::unwrap_used, missing_docs)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use identity::{
    impersonation_headers, Caller, IdentityFile, LocalApiConfig, LocalApiWhoIs, RecordingRules,
    WhoIs, WhoIsResponse,
};

const USER_JSON: &str = include_str!("../tests/fixtures/whois-user.json");

fn grants(c: &mut Criterion) {
    let caller = Caller::from(WhoIsResponse::from_json(USER_JSON.as_bytes()).unwrap());
    c.bench_function("whois_response_parse", |b| {
        b.iter(|| WhoIsResponse::from_json(USER_JSON.as_bytes()).unwrap())
    });
    c.bench_function("recording_rules_from_caps", |b| {
        b.iter(|| RecordingRules::from_caps(&caller.caps).unwrap())
    });
    c.bench_function("impersonation_headers", |b| {
        b.iter(|| impersonation_headers(&caller).unwrap())
    });
}

fn identity_file(c: &mut Criterion) {
    let mut text = String::from("entries:\n");
    for i in 0..1000 {
        text.push_str(&format!(
            "  - sources: [\"10.{}.{}.0/24\"]\n    Node: {{StableID: n{i}, Name: n{i}.ts.net.}}\n    UserProfile: {{LoginName: u{i}@example.com}}\n",
            i / 256,
            i % 256
        ));
    }
    let file = IdentityFile::parse(text.as_bytes(), std::path::Path::new("bench.yaml")).unwrap();
    let last: std::net::IpAddr = "10.3.231.7".parse().unwrap();
    c.bench_function("identity_file_lookup_1000_entries_last", |b| {
        b.iter(|| file.lookup(last, None).unwrap())
    });
}

fn localapi(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("ts.sock");
    let listener = runtime.block_on(async { tokio::net::UnixListener::bind(&socket).unwrap() });
    runtime.spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|_req| async {
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                        USER_JSON.as_bytes(),
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let peer: SocketAddr = "100.101.102.103:51234".parse().unwrap();
    let uncached = LocalApiWhoIs::new(LocalApiConfig {
        socket_path: socket.clone(),
        cache_ttl: Duration::ZERO,
        ..LocalApiConfig::default()
    });
    c.bench_function("localapi_whois_uncached", |b| {
        b.iter(|| runtime.block_on(uncached.whois(peer)).unwrap())
    });
    let cached = LocalApiWhoIs::with_socket(&socket);
    runtime.block_on(cached.whois(peer)).unwrap();
    c.bench_function("localapi_whois_cache_hit", |b| {
        b.iter(|| runtime.block_on(cached.whois(peer)).unwrap())
    });
}

criterion_group!(benches, grants, identity_file, localapi);
criterion_main!(benches);
