//! The decision on the record: for each thing the proxy can do with a
//! request — forward it, fail to get an answer upstream, refuse it because
//! its event (or its session recording) could not be stored, refuse it by
//! grant — what the caller gets, what the records say
//! (`kubescribe.decision` on an event sent after a refusal, `decision` on
//! the response record) and `kubescribe_proxy_decisions_total`. Against an
//! in-process fake API server and an in-memory sink.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use common::*;
use event_model::Decision;
use http::StatusCode;
use kubescribe_proxy::{
    Components, Mode, Outcome, Refusal, RunningProxy, SessionContext, SessionHook, SessionRelay,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const FAIL_CLOSED: &str =
    r#"{recorderAddrs: ["127.0.0.1:9"], enforceRecorder: true, enableEvents: true}"#;

/// A session hook that refuses every session, as the recording hook does
/// under fail closed when no recorder takes the upload.
struct RefusingHook;

#[async_trait]
impl SessionHook for RefusingHook {
    async fn start(&self, _ctx: &SessionContext) -> Result<Box<dyn SessionRelay>, Refusal> {
        Err(Refusal::new(
            StatusCode::FORBIDDEN,
            "error connecting to session recorders: recording: error starting recording on \"127.0.0.1:9\": dial tcp 127.0.0.1:9: connection refused; failure mode is 'fail closed'; closing connection.",
        ))
    }
}

async fn proxy(
    grant: &str,
    sink: &MemorySink,
    upstream: SocketAddr,
    hook: Arc<dyn SessionHook>,
) -> (tempfile::TempDir, RunningProxy) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(identity_file(dir.path(), grant), Mode::Auth);
    let components = Components {
        whois: cfg.identity.open().unwrap(),
        sink: Arc::new(sink.clone()),
        hook,
        upstream: upstream_spec(upstream),
    };
    let running = kubescribe_proxy::start(&cfg, components, Default::default())
        .await
        .unwrap();
    (dir, running)
}

/// `kubescribe_proxy_decisions_total{decision="…"}` from the admin listener.
async fn decisions(proxy: &RunningProxy, decision: &str) -> u64 {
    let got = send(proxy.admin_addr, b"", get("/metrics")).await;
    let text = String::from_utf8_lossy(&got.body).into_owned();
    let prefix = format!("kubescribe_proxy_decisions_total{{decision=\"{decision}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn a_forwarded_request_has_an_undecided_event_and_a_forwarded_response_record() {
    let up = FakeUpstream::start().await;
    let sink = MemorySink::new(Outcome::Forward);
    let (_d, proxy) = proxy(
        FAIL_CLOSED,
        &sink,
        up.addr,
        Arc::new(kubescribe_proxy::PassThrough),
    )
    .await;
    let got = send(proxy.addr, b"", get("/api/v1/namespaces/default/pods")).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(up.seen().len(), 1);
    let event = sink.events().pop().unwrap();
    assert_eq!(event.kubescribe.unwrap().decision, None);
    let record = sink.wait_responses(1).await.pop().unwrap();
    assert_eq!(record.status, 200);
    assert_eq!(record.decision, Some(Decision::Forwarded));
    assert!(sink.refused.lock().unwrap().is_empty());
    assert_eq!(decisions(&proxy, "forwarded").await, 1);
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_request_whose_event_was_not_stored_is_refused_and_its_records_say_so() {
    let up = FakeUpstream::start().await;
    let sink = MemorySink::new(Outcome::Refuse(Refusal::new(
        StatusCode::BAD_GATEWAY,
        "error recording Kubernetes API request: recorder \"127.0.0.1:9\": recorder did not answer within 3s",
    )));
    let (_d, proxy) = proxy(
        FAIL_CLOSED,
        &sink,
        up.addr,
        Arc::new(kubescribe_proxy::PassThrough),
    )
    .await;
    let got = send(
        proxy.addr,
        b"",
        with_body("POST", "/api/v1/namespaces/default/configmaps", "{}"),
    )
    .await;
    assert_eq!(got.status, StatusCode::BAD_GATEWAY);
    let body = std::str::from_utf8(&got.body).unwrap();
    assert!(
        body.starts_with("error recording Kubernetes API request: "),
        "{body}"
    );
    assert!(up.seen().is_empty(), "the API server saw a refused request");

    // The event again, now saying it was refused…
    let refused = sink.refused.lock().unwrap().clone();
    assert_eq!(refused.len(), 1);
    let event = &refused[0];
    assert_eq!(event.request.method, "POST");
    assert_eq!(event.request.path, "/api/v1/namespaces/default/configmaps");
    assert_eq!(event.request.body, b"{}");
    let ext = event.kubescribe.clone().unwrap();
    assert_eq!(ext.decision, Some(Decision::RefusedFailClosed));
    // …and a response record with what the caller got, joined by key.
    let record = sink.wait_responses(1).await.pop().unwrap();
    assert_eq!(record.key, ext.key);
    assert_eq!(record.status, 502);
    assert_eq!(record.decision, Some(Decision::RefusedFailClosed));
    assert_eq!(record.error.as_deref(), Some(body.trim_end()));
    assert_eq!(record.response_bytes, got.body.len() as u64);
    assert_eq!(decisions(&proxy, "refused-fail-closed").await, 1);
    proxy.shutdown().await;
}

#[tokio::test]
async fn a_grant_that_requires_a_recorder_but_names_none_refuses_by_grant_with_no_record() {
    let up = FakeUpstream::start().await;
    let sink = MemorySink::new(Outcome::Forward);
    let (_d, proxy) = proxy(
        r#"{enforceRecorder: true, enableEvents: true}"#,
        &sink,
        up.addr,
        Arc::new(kubescribe_proxy::PassThrough),
    )
    .await;
    let got = send(proxy.addr, b"", get("/api/v1/pods")).await;
    assert_eq!(got.status, StatusCode::FORBIDDEN);
    assert!(up.seen().is_empty());
    assert!(sink.events().is_empty());
    assert!(sink.responses().is_empty());
    assert!(sink.refused.lock().unwrap().is_empty());
    assert_eq!(decisions(&proxy, "refused-by-grant").await, 1);
    assert_eq!(decisions(&proxy, "forwarded").await, 0);
    proxy.shutdown().await;
}

#[tokio::test]
async fn an_api_server_that_cannot_be_reached_is_an_upstream_error_on_the_response_record() {
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let sink = MemorySink::new(Outcome::Forward);
    let (_d, proxy) = proxy(
        FAIL_CLOSED,
        &sink,
        dead,
        Arc::new(kubescribe_proxy::PassThrough),
    )
    .await;
    let got = send(proxy.addr, b"", get("/api/v1/pods")).await;
    assert_eq!(got.status, StatusCode::BAD_GATEWAY);
    let event = sink.events().pop().unwrap();
    assert_eq!(event.kubescribe.unwrap().decision, None);
    let record = sink.wait_responses(1).await.pop().unwrap();
    assert_eq!(record.status, 502);
    assert_eq!(record.decision, Some(Decision::UpstreamError));
    assert!(
        record
            .error
            .as_deref()
            .unwrap()
            .starts_with("error forwarding to the API server"),
        "{record:?}"
    );
    assert!(sink.refused.lock().unwrap().is_empty());
    assert_eq!(decisions(&proxy, "upstream-error").await, 1);
    proxy.shutdown().await;
}

#[tokio::test]
async fn an_exec_session_that_cannot_be_recorded_is_refused_fail_closed_on_its_response_record() {
    let up = FakeUpstream::start().await;
    let sink = MemorySink::new(Outcome::Forward);
    let (_d, proxy) = proxy(FAIL_CLOSED, &sink, up.addr, Arc::new(RefusingHook)).await;
    let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
    tcp.write_all(
        b"POST /api/v1/namespaces/default/pods/web-0/exec?command=sh&stdin=true&tty=true HTTP/1.1\r\n\
          Host: kubernetes\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
          X-Stream-Protocol-Version: v4.channel.k8s.io\r\nContent-Length: 0\r\n\r\n",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        while !String::from_utf8_lossy(&answer).contains("closing connection.") {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), read)
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(up.seen().is_empty(), "the API server saw a refused session");
    // The event was stored before the session recording was tried; the
    // response record says what became of the request.
    assert_eq!(sink.events().len(), 1);
    let record = sink.wait_responses(1).await.pop().unwrap();
    assert_eq!(record.status, 403);
    assert_eq!(record.decision, Some(Decision::RefusedFailClosed));
    assert!(
        record
            .error
            .as_deref()
            .unwrap()
            .contains("failure mode is 'fail closed'"),
        "{record:?}"
    );
    assert_eq!(decisions(&proxy, "refused-fail-closed").await, 1);
    proxy.shutdown().await;
}
