//! Sends one event and one short session to the recorders given on the
//! command line, under both failure policies, and prints what the proxy
//! would do.
//!
//! ```text
//! kubescribe-recorder --listen 127.0.0.1:8080 --dst /tmp/rec --insecure-allow-any-uploader &
//! cargo run -p kubescribe-recorder-client --example send_event -- 127.0.0.1:8080
//! ```
//!
//! With no recorder listening, fail open forwards (and spools the event in
//! `./spool-example`) and fail closed refuses with upstream's 502.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use bytes::Bytes;
use recorder_client::{ClientConfig, FailurePolicy, Outcome, RecorderClient, Refusal, SpoolConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt::init();
    let recorders: Vec<SocketAddr> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;

    let mut registry = prometheus_client::registry::Registry::default();
    let config = ClientConfig {
        spool: Some(SpoolConfig::new("spool-example")),
        ..Default::default()
    };
    let client = RecorderClient::start(config, &mut registry)?;

    let mut event = event_model::Event {
        timestamp: 1_767_225_600,
        user_agent: "kubectl/v1.37.1".into(),
        ..Default::default()
    };
    event.request.method = "GET".into();
    event.request.path = "/api/v1/namespaces/default/pods".into();
    event.kubescribe = Some(event_model::Extension {
        key: format!("example-{}", std::process::id()),
        ..Default::default()
    });

    for policy in [FailurePolicy::FailClosed, FailurePolicy::FailOpen] {
        match client
            .record_event(&recorders, policy, &event, &event.request.path)
            .await
        {
            Outcome::Forward => println!("{policy}: event stored; forward the request"),
            Outcome::Queued => println!("{policy}: event queued; forward the request"),
            Outcome::ForwardUnrecorded { reason } => {
                println!("{policy}: forward unrecorded: {reason}")
            }
            Outcome::Refuse(Refusal { status, message }) => {
                println!("{policy}: refuse {status}: {message}")
            }
        }
    }

    match client.connect_session(&recorders).await {
        Ok(upload) => {
            println!(
                "session: connected to {} over {:?}",
                upload.recorder(),
                upload.protocol()
            );
            upload.push(Bytes::from_static(
                b"{\"version\":2,\"width\":80,\"height\":24,\"timestamp\":1767225600}\n",
            ))?;
            upload.push(Bytes::from_static(b"[0.5,\"o\",\"$ \"]\n"))?;
            let summary = upload.finish().await?;
            println!("session: uploaded {} bytes", summary.bytes_sent);
        }
        Err(e) => match FailurePolicy::FailClosed.session_connect_failed(&e) {
            Outcome::Refuse(Refusal { status, message }) => {
                println!("session (fail closed): {status} {message}")
            }
            other => println!("session: {other:?}"),
        },
    }

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)?;
    println!("\nmetrics:\n{text}");
    client.shutdown().await;
    Ok(())
}
