//! Starts a recorder on a temporary directory, stores one event over
//! `POST /v2/event`, and reads it back through the query API.
//!
//! `cargo run -p kubescribe-recorder --example post_event`

use std::error::Error;
use std::sync::Arc;

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use kubescribe_recorder::storage::disk::DiskStorage;

async fn request(
    addr: std::net::SocketAddr,
    req: http::Request<Full<Bytes>>,
) -> Result<Bytes, Box<dyn Error>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let res = send.send_request(req).await?;
    println!(
        "{} {}",
        res.status(),
        res.headers()
            .get("x-kubescribe-recorder")
            .map_or("", |v| v.to_str().unwrap_or(""))
    );
    Ok(res.into_body().collect().await?.to_bytes())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let dir = std::env::temp_dir().join(format!("kubescribe-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let key = dir.join("signing.key");
    let config = kubescribe_recorder::Cli::try_parse_from([
        "kubescribe-recorder",
        "--listen",
        "127.0.0.1:0",
        // Manifests are signed with a key made for this run (docs/storage.md, "Tamper evidence").
        "--signing-key",
        &key.to_string_lossy(),
        "--generate-signing-key",
        "--insecure-allow-any-uploader",
        // This example reads the event back over loopback, and needs no admin listener.
        "--allow-readers",
        "loopback",
        "--admin-listen",
        "off",
    ])?
    .validate()?;
    let (addr, _app) =
        kubescribe_recorder::spawn(config, Arc::new(DiskStorage::open(&dir)?)).await?;

    let event = r#"{"type":"kubernetes-api-request","id":"","timestamp":1767225600,"userAgent":"kubectl",
      "request":{"method":"GET","path":"/api/v1/pods","body":"","queryParameters":{}},
      "kubernetes":{"IsResourceRequest":true,"Path":"/api/v1/pods","Verb":"list","APIPrefix":"api","APIGroup":"",
        "APIVersion":"v1","Namespace":"","Resource":"pods","Subresource":"","Name":"","Parts":["pods"],
        "FieldSelector":"","LabelSelector":""},
      "source":{"node":"laptop.example.ts.net","nodeID":"n1","nodeUserID":1,"nodeUser":"alice@example.com"},
      "destination":{"node":"","nodeID":""},"kubescribe":{"key":"example-1"}}"#;
    let stored = request(
        addr,
        http::Request::post("/v2/event")
            .header("host", "recorder")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(event)))?,
    )
    .await?;
    println!("stored: {}", String::from_utf8_lossy(&stored));
    let listed = request(
        addr,
        http::Request::get("/api/v1/events?verb=list")
            .header("host", "recorder")
            .body(Full::new(Bytes::new()))?,
    )
    .await?;
    println!("listed: {}", String::from_utf8_lossy(&listed));
    println!("files under {}", dir.display());
    Ok(())
}
