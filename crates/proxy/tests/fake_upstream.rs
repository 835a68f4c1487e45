//! The proxy end to end against an in-process fake API server that records
//! exactly what reached it, with real identity files and an in-memory sink
//! (the real recorder client is used in `recorder_client.rs`).
#![allow(clippy::unwrap_used, clippy::type_complexity)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use common::*;
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use kubescribe_proxy::Mode;
use kubescribe_proxy::{Outcome, Refusal};
use sha2::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const EVENTS_GRANT: &str = r#"{recorderAddrs: ["127.0.0.1:9"], enableEvents: true, impersonate: {groups: ["eng", "system:authenticated", "eng"]}}"#;

async fn setup(
    grant: &str,
    mode: Mode,
) -> (
    tempfile::TempDir,
    FakeUpstream,
    MemorySink,
    kubescribe_proxy::RunningProxy,
) {
    let dir = tempfile::tempdir().unwrap();
    let up = FakeUpstream::start().await;
    let sink = MemorySink::new(Outcome::Forward);
    let cfg = config(identity_file(dir.path(), grant), mode);
    let proxy = start_proxy(&cfg, Arc::new(sink.clone()), up.addr).await;
    (dir, up, sink, proxy)
}

#[tokio::test]
async fn each_verb_gives_one_event_with_request_info_and_identity_and_one_response_record() {
    let (_d, up, sink, proxy) = setup(EVENTS_GRANT, Mode::Auth).await;
    let cases: Vec<(http::Request<Full<Bytes>>, &str, &str, &str, u16)> = vec![
        (
            get("/api/v1/namespaces/default/pods/web-0"),
            "get",
            "pods",
            "web-0",
            200,
        ),
        (
            get("/api/v1/namespaces/default/pods?labelSelector=app%3Dweb&limit=500"),
            "list",
            "pods",
            "",
            200,
        ),
        (
            with_body(
                "POST",
                "/api/v1/namespaces/default/configmaps?fieldManager=kubectl-client-side-apply",
                r#"{"kind":"ConfigMap"}"#,
            ),
            "create",
            "configmaps",
            "",
            200,
        ),
        (
            with_body(
                "PATCH",
                "/apis/apps/v1/namespaces/default/deployments/web?fieldManager=kubectl-patch",
                r#"{"spec":{"replicas":2}}"#,
            ),
            "patch",
            "deployments",
            "web",
            200,
        ),
        (
            with_body(
                "PUT",
                "/api/v1/namespaces/default/configmaps/cm",
                r#"{"kind":"ConfigMap"}"#,
            ),
            "update",
            "configmaps",
            "cm",
            200,
        ),
        (
            {
                let mut r = get("/api/v1/namespaces/default/pods/missing");
                r.headers_mut()
                    .insert("x-test-status", "404".parse().unwrap());
                *r.method_mut() = http::Method::DELETE;
                r
            },
            "delete",
            "pods",
            "missing",
            404,
        ),
    ];
    let n = cases.len();
    for (i, (req, verb, resource, name, status)) in cases.into_iter().enumerate() {
        let sent_body = req.body().clone().collect().await.unwrap().to_bytes();
        let target = req.uri().to_string();
        let got = send(proxy.addr, b"", req).await;
        assert_eq!(got.status.as_u16(), status, "{target}");
        let events = sink.events();
        assert_eq!(events.len(), i + 1, "exactly one event per request");
        let ev = &events[i];
        assert_eq!(ev.event_type, "kubernetes-api-request");
        assert_eq!(ev.request.path, target);
        assert_eq!(ev.request.body, sent_body.to_vec());
        assert_eq!(ev.kubernetes.verb, verb, "{target}");
        assert_eq!(ev.kubernetes.resource, resource);
        assert_eq!(ev.kubernetes.name, name);
        assert_eq!(ev.kubernetes.namespace, "default");
        assert_eq!(ev.source.node, "alice-laptop.tail1234.ts.net");
        assert_eq!(ev.source.node_id, "nAlice7CNTRL");
        assert_eq!(ev.source.node_user, "alice@example.com");
        assert_eq!(ev.source.node_user_id, 42);
        assert!(ev.source.node_tags.is_empty());
        assert_eq!(ev.destination.node, "");
        assert!(ev.timestamp > 1_700_000_000);
        let key = ev.key().unwrap().to_string();
        let responses = sink.wait_responses(i + 1).await;
        assert_eq!(responses.len(), i + 1, "one response record per request");
        assert_eq!(responses[i].key, key);
        assert_eq!(responses[i].status, status);
        assert_eq!(responses[i].response_bytes, got.body.len() as u64);
        assert!(responses[i].error.is_none());
    }
    let ev = &sink.events()[1];
    assert_eq!(ev.kubernetes.label_selector, "app=web");
    assert_eq!(
        ev.request.query_parameters.get("labelSelector").cloned(),
        Some(vec!["app=web".to_string()])
    );
    assert_eq!(up.seen().len(), n);
    proxy.shutdown().await;
}

#[tokio::test]
async fn auth_mode_sends_exactly_the_impersonation_headers_and_the_proxy_credentials() {
    let (_d, up, sink, proxy) = setup(EVENTS_GRANT, Mode::Auth).await;
    let mut req = get("/api/v1/pods");
    for (k, v) in [
        ("authorization", "Bearer stolen"),
        ("audit-id", "forged-audit-id"),
        ("audit-id", "second-forged-audit-id"),
        ("impersonate-user", "admin"),
        ("impersonate-group", "system:masters"),
        ("impersonate-uid", "0"),
        ("impersonate-extra-scopes", "all"),
        ("x-forwarded-for", "203.0.113.7"),
        ("forwarded", "for=203.0.113.7"),
        ("user-agent", "kubectl/v1.37.1"),
    ] {
        req.headers_mut().append(k, v.parse().unwrap());
    }
    let got = send(proxy.addr, b"", req).await;
    assert_eq!(got.status, StatusCode::OK);
    let seen = up.seen().pop().unwrap();
    let h = &seen.headers;
    let all = |n: &str| {
        h.get_all(n)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(all("authorization"), vec!["Bearer proxy-sa-token"]);
    assert_eq!(all("impersonate-user"), vec!["alice@example.com"]);
    assert_eq!(
        all("impersonate-group"),
        vec!["eng", "system:authenticated"]
    );
    assert!(all("impersonate-uid").is_empty());
    assert!(all("impersonate-extra-scopes").is_empty());
    assert!(all("x-forwarded-for").is_empty());
    assert!(all("forwarded").is_empty());
    assert_eq!(all("user-agent"), vec!["kubectl/v1.37.1"]);
    assert_eq!(
        all("host"),
        vec!["kubernetes"],
        "Host is forwarded as received"
    );
    // The caller's Audit-ID lines are replaced by exactly one: the event's key.
    let ev = sink.events().pop().unwrap();
    let key = ev.key().unwrap().to_string();
    assert_eq!(all("audit-id"), vec![key.clone()]);
    let ext = ev.kubescribe.unwrap();
    assert_eq!(ext.audit_id, key);
    assert_eq!(ext.impersonated_user, "alice@example.com");
    assert_eq!(ext.impersonated_groups, vec!["eng", "system:authenticated"]);

    // A tagged node (caller address from PROXY protocol is not on; use a second proxy with it).
    proxy.shutdown().await;
}

#[tokio::test]
async fn tagged_node_via_proxy_protocol_is_impersonated_as_its_fqdn_with_tag_groups() {
    let dir = tempfile::tempdir().unwrap();
    let up = FakeUpstream::start().await;
    let sink = MemorySink::new(Outcome::Forward);
    let mut cfg = config(
        identity_file(
            dir.path(),
            r#"{recorderAddrs: ["127.0.0.1:9"], enableEvents: true}"#,
        ),
        Mode::Auth,
    );
    cfg.proxy_protocol = true;
    let proxy = start_proxy(&cfg, Arc::new(sink.clone()), up.addr).await;
    let got = send(
        proxy.addr,
        &proxy_v2("100.64.0.9:41000".parse().unwrap()),
        get("/api/v1/namespaces/ci/pods"),
    )
    .await;
    assert_eq!(got.status, StatusCode::OK);
    let seen = up.seen().pop().unwrap();
    assert_eq!(
        seen.headers.get("impersonate-user").unwrap(),
        "ci.tail1234.ts.net"
    );
    let groups: Vec<_> = seen.headers.get_all("impersonate-group").iter().collect();
    assert_eq!(groups, vec!["tag:ci"]);
    let ev = sink.events().pop().unwrap();
    let ext = ev.kubescribe.clone().unwrap();
    assert_eq!(ext.impersonated_user, "ci.tail1234.ts.net");
    assert_eq!(ext.impersonated_groups, vec!["tag:ci"]);
    assert_eq!(seen.headers.get("audit-id").unwrap(), ext.audit_id.as_str());
    assert_eq!(ev.source.node, "ci.tail1234.ts.net");
    assert_eq!(ev.source.node_tags, vec!["tag:ci"]);
    assert_eq!(ev.source.node_user, "");
    assert_eq!(ev.source.node_user_id, 0);

    // An address nobody knows → 500 with Tailscale's text, upstream untouched.
    let before = up.seen().len();
    let got = send(
        proxy.addr,
        &proxy_v2("100.99.0.1:1".parse().unwrap()),
        get("/api/v1/pods"),
    )
    .await;
    assert_eq!(got.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(&got.body[..], b"failed to authenticate caller\n");
    assert_eq!(up.seen().len(), before);
    proxy.shutdown().await;
}

#[tokio::test]
async fn noauth_mode_passes_the_callers_token_and_adds_only_an_audit_id() {
    let (_d, up, sink, proxy) = setup(EVENTS_GRANT, Mode::Noauth).await;
    let mut req = get("/api/v1/pods");
    req.headers_mut()
        .insert("authorization", "Bearer caller-token".parse().unwrap());
    req.headers_mut()
        .insert("impersonate-user", "bob".parse().unwrap());
    let got = send(proxy.addr, b"", req).await;
    assert_eq!(got.status, StatusCode::OK);
    let seen = up.seen().pop().unwrap();
    assert_eq!(
        seen.headers.get("authorization").unwrap(),
        "Bearer caller-token"
    );
    assert_eq!(seen.headers.get("impersonate-user").unwrap(), "bob");
    assert_eq!(seen.headers.get_all("impersonate-group").iter().count(), 0);
    // No Audit-ID from the caller: the event's key is sent and recorded; the
    // proxy impersonated no one, so the event names no impersonation.
    let ev = sink.events().pop().unwrap();
    let ext = ev.kubescribe.clone().unwrap();
    assert_eq!(seen.headers.get("audit-id").unwrap(), ext.key.as_str());
    assert_eq!(ext.audit_id, ext.key);
    assert_eq!(ext.impersonated_user, "");
    assert!(ext.impersonated_groups.is_empty());

    // The caller's own Audit-ID is kept (the first line, which kube-apiserver
    // reads), and recorded as the one sent.
    let mut req = get("/api/v1/pods");
    req.headers_mut()
        .append("audit-id", "callers-own-id".parse().unwrap());
    req.headers_mut()
        .append("audit-id", "ignored-second".parse().unwrap());
    send(proxy.addr, b"", req).await;
    let seen = up.seen().pop().unwrap();
    let sent: Vec<_> = seen.headers.get_all("audit-id").iter().collect();
    assert_eq!(sent, vec!["callers-own-id"]);
    let ext = sink.events().pop().unwrap().kubescribe.unwrap();
    assert_eq!(ext.audit_id, "callers-own-id");
    assert_ne!(ext.key, "callers-own-id");
    proxy.shutdown().await;
}

#[tokio::test]
async fn every_request_carries_its_own_audit_id_even_without_an_event() {
    let (_d, up, sink, proxy) = setup(r#"{impersonate: {groups: ["eng"]}}"#, Mode::Auth).await;
    for _ in 0..3 {
        let mut req = get("/api/v1/namespaces/default/configmaps");
        req.headers_mut()
            .insert("audit-id", "forged".parse().unwrap());
        assert_eq!(send(proxy.addr, b"", req).await.status, StatusCode::OK);
    }
    assert!(sink.events().is_empty(), "this grant asks for no events");
    let ids: Vec<String> = up
        .seen()
        .iter()
        .map(|seen| {
            let lines: Vec<_> = seen.headers.get_all("audit-id").iter().collect();
            assert_eq!(lines.len(), 1, "exactly one Audit-ID line");
            lines[0].to_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(ids.len(), 3);
    for id in &ids {
        assert_ne!(id, "forged");
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{id} is a UUID");
    }
    assert!(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2]);
    proxy.shutdown().await;
}

#[tokio::test]
async fn fail_closed_without_recorders_refuses_every_request_before_upstream() {
    let (_d, up, sink, proxy) = setup(r#"{enforceRecorder: true}"#, Mode::Auth).await;
    let got = send(proxy.addr, b"", get("/api/v1/pods?limit=1")).await;
    assert_eq!(got.status, StatusCode::FORBIDDEN);
    assert_eq!(
        std::str::from_utf8(&got.body).unwrap(),
        "forbidden: api request \"/api/v1/pods?limit=1\" must be recorded, but no recorders are available.\n"
    );
    assert!(up.seen().is_empty());
    assert!(sink.events().is_empty());
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_refused_event_refuses_the_request_and_upstream_sees_nothing() {
    let (_d, up, sink, proxy) = setup(EVENTS_GRANT, Mode::Auth).await;
    *sink.outcome.lock().unwrap() = Outcome::Refuse(Refusal {
        status: StatusCode::BAD_GATEWAY,
        message: "error recording Kubernetes API request: connection refused".into(),
    });
    let got = send(
        proxy.addr,
        b"",
        with_body("POST", "/api/v1/namespaces/default/pods", "{}"),
    )
    .await;
    assert_eq!(got.status, StatusCode::BAD_GATEWAY);
    assert!(std::str::from_utf8(&got.body)
        .unwrap()
        .starts_with("error recording Kubernetes API request"));
    assert!(up.seen().is_empty());
    // Its records say it was refused (see tests/decisions.rs).
    assert_eq!(sink.refused.lock().unwrap().len(), 1);
    let record = sink.wait_responses(1).await.pop().unwrap();
    assert_eq!(record.status, 502);
    proxy.shutdown().await;
}

struct BadGrantWhoIs;

#[async_trait]
impl identity::WhoIs for BadGrantWhoIs {
    async fn whois(&self, _peer: SocketAddr) -> Result<identity::Caller, identity::WhoIsError> {
        let json = br#"{"Node":{"ID":1,"StableID":"n1","Name":"x.ts.net.","User":2},
            "UserProfile":{"ID":2,"LoginName":"bob@example.com"},
            "CapMap":{"tailscale.com/cap/kubernetes":[{"enforceRecorder":"yes"}]}}"#;
        Ok(identity::Caller::from(
            identity::WhoIsResponse::from_json(json).unwrap(),
        ))
    }
}

#[tokio::test]
async fn a_grant_that_does_not_parse_is_403_with_the_reason_not_an_empty_200() {
    let dir = tempfile::tempdir().unwrap();
    let up = FakeUpstream::start().await;
    let cfg = config(identity_file(dir.path(), "{}"), Mode::Auth);
    let components = kubescribe_proxy::Components {
        whois: Arc::new(BadGrantWhoIs),
        sink: Arc::new(MemorySink::new(Outcome::Forward)),
        hook: Arc::new(kubescribe_proxy::PassThrough),
        upstream: upstream_spec(up.addr),
    };
    let proxy = kubescribe_proxy::start(&cfg, components, Default::default())
        .await
        .unwrap();
    let got = send(proxy.addr, b"", get("/api/v1/pods")).await;
    assert_eq!(got.status, StatusCode::FORBIDDEN);
    let body = std::str::from_utf8(&got.body).unwrap();
    assert!(body.contains("grant is invalid"), "{body}");
    assert!(body.contains("enforceRecorder"), "{body}");
    assert!(up.seen().is_empty());
    proxy.shutdown().await;
}

#[tokio::test]
async fn bodies_over_the_cap_are_forwarded_whole_and_recorded_truncated_with_size_and_sha() {
    let dir = tempfile::tempdir().unwrap();
    let up = FakeUpstream::start().await;
    let sink = MemorySink::new(Outcome::Forward);
    let mut cfg = config(identity_file(dir.path(), EVENTS_GRANT), Mode::Auth);
    cfg.max_body_capture = 1000;
    let proxy = start_proxy(&cfg, Arc::new(sink.clone()), up.addr).await;
    let big: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let got = send(
        proxy.addr,
        b"",
        with_body("POST", "/api/v1/namespaces/default/configmaps", big.clone()),
    )
    .await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(
        up.seen().pop().unwrap().body.to_vec(),
        big,
        "upstream got the whole body"
    );
    let ev = sink.events().pop().unwrap();
    assert_eq!(ev.request.body, big[..1000].to_vec());
    let ext = ev.kubescribe.clone().unwrap().body.unwrap();
    assert!(ext.truncated);
    assert_eq!(ext.captured_bytes, 1000);
    let rec = sink.wait_responses(1).await.pop().unwrap();
    assert_eq!(rec.request_body_bytes, Some(big.len() as u64));
    assert_eq!(
        rec.request_body_sha256,
        Some(hex::encode(sha2::Sha256::digest(&big)))
    );

    // Exactly at the cap: whole, not truncated, no digest needed.
    let exact = vec![b'x'; 1000];
    send(
        proxy.addr,
        b"",
        with_body(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            exact.clone(),
        ),
    )
    .await;
    let ev = sink.events().pop().unwrap();
    assert_eq!(ev.request.body, exact);
    assert!(!ev.kubescribe.unwrap().body.unwrap().truncated);
    proxy.shutdown().await;
}

#[tokio::test]
async fn watch_streams_through_without_buffering() {
    let (_d, up, sink, proxy) = setup(EVENTS_GRANT, Mode::Auth).await;
    let tcp = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = sender
        .send_request(get("/api/v1/namespaces/default/pods?watch=true"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    // The first event arrives while the upstream still holds the stream open.
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], b"{\"type\":\"ADDED\"}\n");
    assert!(
        sink.responses().is_empty(),
        "no response record before the stream ends"
    );
    up.release.notify_one();
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(&rest[..], b"{\"type\":\"MODIFIED\"}\n");
    let rec = sink.wait_responses(1).await.pop().unwrap();
    assert_eq!(rec.status, 200);
    assert_eq!(rec.response_bytes, (first.len() + rest.len()) as u64);
    assert_eq!(sink.events().pop().unwrap().kubernetes.verb, "watch");
    proxy.shutdown().await;
}

#[tokio::test]
async fn exec_upgrade_passes_through_both_ways() {
    let (_d, up, sink, proxy) = setup(EVENTS_GRANT, Mode::Auth).await;
    let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
    tcp.write_all(
        b"POST /api/v1/namespaces/default/pods/web-0/exec?command=sh&stdin=true&tty=true HTTP/1.1\r\n\
          Host: kubernetes\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
          X-Stream-Protocol-Version: v4.channel.k8s.io\r\nAuthorization: Bearer stolen\r\n\
          Audit-ID: forged\r\nContent-Length: 0\r\n\r\n",
    )
    .await
    .unwrap();
    let head = read_head(&mut tcp).await.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: spdy/3.1"), "{head}");
    assert!(
        head.contains("x-stream-protocol-version: v4.channel.k8s.io"),
        "{head}"
    );
    tcp.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 10];
    tcp.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"echo:hello");
    let seen = up.seen().pop().unwrap();
    assert_eq!(seen.headers.get("upgrade").unwrap(), "SPDY/3.1");
    assert_eq!(
        seen.headers.get("authorization").unwrap(),
        "Bearer proxy-sa-token"
    );
    assert_eq!(
        seen.headers.get("impersonate-user").unwrap(),
        "alice@example.com"
    );
    let ev = sink.events().pop().unwrap();
    assert_eq!(
        (
            ev.kubernetes.verb.as_str(),
            ev.kubernetes.subresource.as_str()
        ),
        ("create", "exec")
    );
    // The upgrade request carries the event's Audit-ID like any other, the
    // caller's replaced.
    let ext = ev.kubescribe.clone().unwrap();
    let sent: Vec<_> = seen.headers.get_all("audit-id").iter().collect();
    assert_eq!(sent, vec![ext.key.as_str()]);
    assert_eq!(ext.audit_id, ext.key);
    assert_eq!(ext.impersonated_user, "alice@example.com");
    drop(tcp);
    proxy.shutdown().await;
}

#[tokio::test]
async fn malformed_requests_and_oversized_heads_get_clear_errors() {
    let (_d, up, _sink, proxy) = setup(EVENTS_GRANT, Mode::Auth).await;
    let raw = |bytes: Vec<u8>| async move {
        let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
        let _ = tcp.write_all(&bytes).await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).to_string()
    };
    let r = raw(b"GARBAGE\r\n\r\n".to_vec()).await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    let mut huge = b"GET /api/v1/pods HTTP/1.1\r\nHost: k\r\nX-Big: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 200 * 1024));
    huge.extend_from_slice(b"\r\n\r\n");
    let r = raw(huge).await;
    assert!(r.starts_with("HTTP/1.1 431"), "{r}");
    let r =
        raw(b"GET /api/v1/pods HTTP/1.1\r\nHost: k\r\nContent-Length: nope\r\n\r\n".to_vec()).await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    assert!(
        up.seen().is_empty(),
        "nothing malformed reached the API server"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn broken_proxy_headers_close_the_connection_without_a_response() {
    let dir = tempfile::tempdir().unwrap();
    let up = FakeUpstream::start().await;
    let mut cfg = config(identity_file(dir.path(), EVENTS_GRANT), Mode::Auth);
    cfg.proxy_protocol = true;
    let proxy = start_proxy(&cfg, Arc::new(MemorySink::new(Outcome::Forward)), up.addr).await;
    let mut bad_v2 = proxy_v2("100.64.0.7:1000".parse().unwrap());
    bad_v2[12] = 0x99; // invalid version/command
    for bytes in [
        b"GET /api/v1/pods HTTP/1.1\r\nHost: k\r\n\r\n".to_vec(),
        bad_v2,
        b"PROXY TCP4 not-an-ip 127.0.0.1 1 2\r\nGET / HTTP/1.1\r\n\r\n".to_vec(),
    ] {
        let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
        let _ = tcp.write_all(&bytes).await;
        let mut out = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out)).await;
        assert!(n.is_ok(), "connection must be closed");
        assert!(
            out.is_empty(),
            "no HTTP response on a bad PROXY header: {out:?}"
        );
    }
    // A good one still works afterwards (the listener survived).
    let got = send(
        proxy.addr,
        &proxy_v2("100.64.0.7:1000".parse().unwrap()),
        get("/api/v1/pods"),
    )
    .await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(up.seen().len() == 1);
    proxy.shutdown().await;
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let (_d, up, _sink, proxy) = setup(EVENTS_GRANT, Mode::Auth).await;
    let addr = proxy.addr;
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = sender
        .send_request(get("/api/v1/pods?watch=true"))
        .await
        .unwrap();
    let mut body = resp.into_body();
    let _first = body.frame().await.unwrap().unwrap();
    let stopping = tokio::spawn(proxy.shutdown());
    // New connections are refused once shutdown began.
    let mut refused = false;
    for _ in 0..200 {
        if TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "listener still accepting after shutdown");
    up.release.notify_one();
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(
        &rest[..],
        b"{\"type\":\"MODIFIED\"}\n",
        "in-flight watch finished"
    );
    stopping.await.unwrap();
}

#[tokio::test]
async fn admin_endpoints_report_health_readiness_and_metrics() {
    let (_d, _up, _sink, proxy) = setup(EVENTS_GRANT, Mode::Auth).await;
    send(proxy.addr, b"", get("/api/v1/pods")).await;
    let h = send(proxy.admin_addr, b"", get("/healthz")).await;
    assert_eq!(h.status, StatusCode::OK);
    let r = send(proxy.admin_addr, b"", get("/readyz")).await;
    assert_eq!(r.status, StatusCode::OK);
    let m = send(proxy.admin_addr, b"", get("/metrics")).await;
    let text = String::from_utf8(m.body.to_vec()).unwrap();
    for needle in [
        "kubescribe_proxy_requests_total{code=\"200\"} 1",
        "kubescribe_proxy_events_attempted_total 1",
        "kubescribe_proxy_events_delivered_total 1",
        "kubescribe_proxy_added_latency_seconds_count 1",
        "k8s_auth_proxy_requests_proxied 1",
        "k8s_auth_proxy_api_request_event_recording_attempted 1",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    proxy.shutdown().await;
}

#[tokio::test]
async fn invalid_request_targets_get_kube_apiservers_status_and_are_never_forwarded() {
    let (_d, up, sink, proxy) = setup(EVENTS_GRANT, Mode::Auth).await;
    // kube-apiserver answers a watch path verb with nothing after it with
    // 500 (its request-info filter fails), and a malformed escape with 400
    // (Go's HTTP server); neither is audited, so neither is forwarded.
    let got = send(proxy.addr, b"", get("/api/v1/watch")).await;
    assert_eq!(
        got.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{:?}",
        got.body
    );
    let got = send(proxy.addr, b"", get("/api/v1/namespaces/default/pods/%zz")).await;
    assert_eq!(got.status, StatusCode::BAD_REQUEST, "{:?}", got.body);
    assert!(up.seen().is_empty());
    assert!(sink.events().is_empty());
    proxy.shutdown().await;
}

#[tokio::test]
async fn connect_requests_are_refused_and_never_forwarded() {
    let (_d, up, sink, proxy) = setup(EVENTS_GRANT, Mode::Auth).await;
    let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
    tcp.write_all(
        b"CONNECT /api/v1/namespaces/default/pods/foo/exec HTTP/1.1\r\nHost: kubernetes\r\nContent-Length: 0\r\n\r\n",
    )
    .await
    .unwrap();
    let head = read_head(&mut tcp).await;
    assert!(head.starts_with("HTTP/1.1 405"), "{head}");
    assert!(up.seen().is_empty());
    assert!(sink.events().is_empty());
    proxy.shutdown().await;
}

#[tokio::test]
async fn http10_requests_without_host_get_the_upstream_authority_as_host() {
    let (_d, up, _sink, proxy) = setup(EVENTS_GRANT, Mode::Auth).await;
    let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
    tcp.write_all(b"GET /api/v1/namespaces/default/pods HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out)).await;
    let out = String::from_utf8_lossy(&out);
    assert!(
        out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200"),
        "{out}"
    );
    let seen = up.seen().pop().unwrap();
    assert_eq!(
        seen.headers.get("host").unwrap().to_str().unwrap(),
        up.addr.to_string()
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn x_forwarded_for_is_used_only_when_trusted_and_only_as_a_whois_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let ident = dir.path().join("only-tailnet.yaml");
    std::fs::write(
        &ident,
        "entries:\n  - sources: [\"100.64.0.7/32\"]\n    Node: {ID: 7, StableID: nAlice7CNTRL, Name: alice-laptop.tail1234.ts.net., User: 42}\n    UserProfile: {ID: 42, LoginName: alice@example.com}\n",
    )
    .unwrap();
    let up = FakeUpstream::start().await;
    let with_xff_value = |value: &'static str| {
        let mut r = get("/api/v1/pods");
        r.headers_mut()
            .insert("x-forwarded-for", value.parse().unwrap());
        r
    };
    let with_xff = || with_xff_value("100.64.0.7:5000");
    // Default: the header is ignored; loopback is unknown → 500.
    let cfg = config(ident.clone(), Mode::Auth);
    let proxy = start_proxy(&cfg, Arc::new(MemorySink::new(Outcome::Forward)), up.addr).await;
    assert_eq!(
        send(proxy.addr, b"", with_xff()).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    proxy.shutdown().await;
    // Trusted: the fallback finds alice; the header itself is not forwarded.
    let mut cfg = config(ident, Mode::Auth);
    cfg.trust_forwarded_for = true;
    let proxy = start_proxy(&cfg, Arc::new(MemorySink::new(Outcome::Forward)), up.addr).await;
    assert_eq!(
        send(proxy.addr, b"", with_xff()).await.status,
        StatusCode::OK
    );
    let seen = up.seen().pop().unwrap();
    assert_eq!(
        seen.headers.get("impersonate-user").unwrap(),
        "alice@example.com"
    );
    assert!(seen.headers.get("x-forwarded-for").is_none());
    // The usual form, a bare IP without a port, works too.
    assert_eq!(
        send(proxy.addr, b"", with_xff_value("100.64.0.7"))
            .await
            .status,
        StatusCode::OK
    );
    // A comma list is ambiguous and is not trusted.
    assert_eq!(
        send(proxy.addr, b"", with_xff_value("100.64.0.7, 10.0.0.1"))
            .await
            .status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    proxy.shutdown().await;
}

/// Counts WhoIs calls and answers one fixed user whose grant enables events.
struct CountingWhoIs(std::sync::atomic::AtomicUsize);

#[async_trait]
impl identity::WhoIs for CountingWhoIs {
    async fn whois(&self, _peer: SocketAddr) -> Result<identity::Caller, identity::WhoIsError> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let json = br#"{"Node":{"ID":1,"StableID":"n1","Name":"x.ts.net.","User":2},
            "UserProfile":{"ID":2,"LoginName":"carol@example.com"},
            "CapMap":{"tailscale.com/cap/kubernetes":[{"recorderAddrs":["127.0.0.1:9"],"enableEvents":true}]}}"#;
        Ok(identity::Caller::from(
            identity::WhoIsResponse::from_json(json).unwrap(),
        ))
    }
}

/// Three requests on one keep-alive connection through a proxy with `ttl`;
/// returns the WhoIs calls made and the events recorded.
async fn requests_on_one_connection(ttl: Duration) -> (usize, usize) {
    let dir = tempfile::tempdir().unwrap();
    let up = FakeUpstream::start().await;
    let mut cfg = config(identity_file(dir.path(), "{}"), Mode::Auth);
    cfg.whois_cache_ttl = ttl;
    let whois = Arc::new(CountingWhoIs(Default::default()));
    let sink = MemorySink::new(Outcome::Forward);
    let components = kubescribe_proxy::Components {
        whois: whois.clone(),
        sink: Arc::new(sink.clone()),
        hook: Arc::new(kubescribe_proxy::PassThrough),
        upstream: upstream_spec(up.addr),
    };
    let proxy = kubescribe_proxy::start(&cfg, components, Default::default())
        .await
        .unwrap();
    let tcp = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    for name in ["a", "b", "c"] {
        let resp = sender
            .send_request(get(&format!("/api/v1/namespaces/default/pods/{name}")))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let _ = resp.into_body().collect().await;
    }
    let events = sink.events();
    for event in &events {
        assert_eq!(event.source.node_user, "carol@example.com");
    }
    proxy.shutdown().await;
    (
        whois.0.load(std::sync::atomic::Ordering::SeqCst),
        events.len(),
    )
}

#[tokio::test]
async fn a_resolved_caller_is_reused_on_its_connection_within_the_ttl() {
    assert_eq!(
        requests_on_one_connection(Duration::from_secs(60)).await,
        (1, 3),
        "one WhoIs for three requests, each still recorded with the caller"
    );
    assert_eq!(
        requests_on_one_connection(Duration::ZERO).await,
        (3, 3),
        "--whois-cache-ttl 0: WhoIs on every request"
    );
}

/// Reads a response head byte by byte (so nothing after it is consumed).
async fn read_head(tcp: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            tcp.read(&mut byte).await.unwrap(),
            1,
            "response head cut short"
        );
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// Opens an exec upgrade through the proxy and reads the 101 head.
async fn open_exec(proxy: SocketAddr) -> TcpStream {
    let mut tcp = TcpStream::connect(proxy).await.unwrap();
    tcp.write_all(
        b"POST /api/v1/namespaces/default/pods/web-0/exec?command=sh&stdin=true HTTP/1.1\r\n\
          Host: kubernetes\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
          X-Stream-Protocol-Version: v4.channel.k8s.io\r\nContent-Length: 0\r\n\r\n",
    )
    .await
    .unwrap();
    let head = read_head(&mut tcp).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    tcp
}

async fn echo(tcp: &mut TcpStream, text: &[u8]) {
    tcp.write_all(text).await.unwrap();
    let mut buf = vec![0u8; text.len() + 5];
    tcp.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf[..5], b"echo:");
    assert_eq!(&buf[5..], text);
}

#[tokio::test]
async fn graceful_shutdown_waits_for_a_relaying_exec_session_to_end() {
    let (_d, _up, _sink, proxy) = setup(EVENTS_GRANT, Mode::Auth).await;
    let mut session = open_exec(proxy.addr).await;
    echo(&mut session, b"before").await;
    let shutdown = tokio::spawn(proxy.shutdown());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !shutdown.is_finished(),
        "shutdown must not finish while a session relays"
    );
    echo(&mut session, b"during shutdown").await;
    drop(session);
    tokio::time::timeout(Duration::from_secs(5), shutdown)
        .await
        .expect("shutdown finishes once the session has ended")
        .unwrap();
}
