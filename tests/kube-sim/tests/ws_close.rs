//! A WebSocket exec client that ends the session by closing the WebSocket (what a v4
//! client does to end stdin, e.g. kube-rs when v5 is not available) gets the Close
//! reply and a clean end of the TLS stream, as kube-apiserver gives it; and the
//! request log records the negotiated subprotocol.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use kube_sim::{KubeSim, SimConfig};
use rustls::pki_types::ServerName;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const GUARD: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn client_close_gets_a_close_reply_and_a_clean_tls_end() {
    let sim = KubeSim::start(SimConfig::default()).await.unwrap();
    let ca_pem = sim.ca_pem().unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();

    let url = format!(
        "wss://{}/api/v1/namespaces/default/pods/demo/exec?command=cat&stdin=true&stdout=true",
        sim.addr()
    );
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "v4.channel.k8s.io".parse().unwrap(),
    );
    let (mut ws, response) = tokio_tungstenite::client_async(request, tls).await.unwrap();
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        "v4.channel.k8s.io"
    );

    // stdin reaches `cat`, its output comes back on channel 1.
    ws.send(Message::binary(b"\x00ping\n".to_vec()))
        .await
        .unwrap();
    let echoed = tokio::time::timeout(GUARD, async {
        let mut out = Vec::new();
        while out != b"ping\n" {
            match ws.next().await.unwrap().unwrap() {
                Message::Binary(data) if data.first() == Some(&1) => {
                    out.extend_from_slice(&data[1..])
                }
                _ => {}
            }
        }
        out
    })
    .await
    .expect("cat's output");
    assert_eq!(echoed, b"ping\n");

    // The client closes the WebSocket: the server answers with a Close frame, then the
    // stream ends cleanly (TLS close_notify), not with "peer closed connection without
    // sending TLS close_notify".
    ws.close(None).await.unwrap();
    let rest = tokio::time::timeout(GUARD, async {
        let mut rest = Vec::new();
        while let Some(item) = ws.next().await {
            rest.push(item.map_err(|e| e.to_string()));
        }
        rest
    })
    .await
    .expect("the server ends the connection");
    let closes = rest
        .iter()
        .filter(|item| matches!(item, Ok(Message::Close(_))))
        .count();
    assert_eq!(closes, 1, "one Close reply: {rest:?}");
    assert!(
        rest.iter().all(Result::is_ok),
        "the stream ends without an error: {rest:?}"
    );

    let exec = sim
        .requests()
        .into_iter()
        .find(|r| r.uri.contains("/exec?"))
        .unwrap();
    assert_eq!(exec.status, Some(101));
    assert_eq!(exec.subprotocol.as_deref(), Some("v4.channel.k8s.io"));
    let get = sim
        .requests()
        .into_iter()
        .find(|r| !r.uri.contains("/exec?"));
    assert!(get.is_none(), "only the exec was logged");
    sim.shutdown().await;
}
