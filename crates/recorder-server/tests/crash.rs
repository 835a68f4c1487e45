//! `kill -9` of the recorder binary under concurrent load loses no
//! acknowledged event and no acknowledged session byte.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::StatusCode;
use http_body_util::BodyExt;

fn start(data: &std::path::Path, token: &std::path::Path, port: u16) -> Child {
    start_binary(data, token, port, &["--ack-interval", "100ms"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_load_loses_nothing_acknowledged() {
    let store = BinaryStore::new();
    let (data, token) = (store.data.clone(), store.token.clone());
    let (port, addr) = (store.port, store.addr);
    let mut child = start(&data, &token, port);
    wait_ready(addr).await;

    // 32 senders posting events as fast as they can; remember every 200.
    let acked = Arc::new(Mutex::new(HashSet::<String>::new()));
    let mut senders = Vec::new();
    for s in 0..32 {
        let acked = acked.clone();
        senders.push(tokio::spawn(async move {
            for i in 0.. {
                let body = event_json("get", &format!("s{s}-{i}"), Some(&format!("key-{s}-{i}")));
                let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
                    break;
                };
                let Ok((mut send, conn)) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                        .await
                else {
                    break;
                };
                tokio::spawn(conn);
                let req = http::Request::post("/v2/event")
                    .header("host", "r")
                    .header("content-type", "application/json")
                    .header("authorization", format!("Bearer {TOKEN}"))
                    .body(http_body_util::Full::new(Bytes::from(body)))
                    .unwrap();
                let Ok(res) = send.send_request(req).await else {
                    break;
                };
                if res.status() != StatusCode::OK {
                    break;
                }
                let Ok(body) = res.into_body().collect().await else {
                    break;
                };
                let v: serde_json::Value = serde_json::from_slice(&body.to_bytes()).unwrap();
                acked
                    .lock()
                    .unwrap()
                    .insert(v["id"].as_str().unwrap().to_owned());
            }
        }));
    }

    // One live session over h2c; remember the highest ack.
    let mut client = h2c(addr).await;
    let (tx, req) = streaming_record_request("r");
    let res = client.send_request(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let sent = Arc::new(Mutex::new(Vec::<u8>::new()));
    let writer = {
        let sent = sent.clone();
        tokio::spawn(async move {
            let header =
                b"{\"version\":2,\"width\":80,\"height\":24,\"timestamp\":1767225600}\n".to_vec();
            sent.lock().unwrap().extend_from_slice(&header);
            if tx.send(Bytes::from(header)).await.is_err() {
                return;
            }
            for i in 0.. {
                let line =
                    format!("[{}.0,\"o\",\"line {i} {}\"]\n", i, "x".repeat(200)).into_bytes();
                sent.lock().unwrap().extend_from_slice(&line);
                if tx.send(Bytes::from(line)).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let (max_ack, reader) = track_acks(res);

    // Let load build up, then SIGKILL.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    for s in senders {
        let _ = s.await;
    }
    let _ = reader.await;
    writer.abort();
    let acked = acked.lock().unwrap().clone();
    let max_ack = *max_ack.lock().unwrap();
    assert!(
        acked.len() > 100,
        "load too small to mean anything: {}",
        acked.len()
    );
    assert!(max_ack > 0, "no session bytes were acknowledged");

    // Restart: interrupted session finalised, indexes rebuilt.
    let mut child = start(&data, &token, port);
    wait_ready(addr).await;
    let stored: HashSet<String> = stored_lines(&data, "events")
        .into_iter()
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .collect();
    let lost: Vec<&String> = acked.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged events lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    // Every acknowledged event is also served by the API after restart.
    for id in acked.iter().take(50) {
        let (status, v) = get_json(addr, &format!("/api/v1/events/{id}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["event"]["id"], id.as_str());
    }
    let (_, list) = get_json(addr, "/api/v1/sessions").await;
    let s = &list["sessions"][0];
    assert_eq!(s["state"], "recovered", "{s}");
    let size = s["size"].as_u64().unwrap();
    assert!(
        size >= max_ack,
        "session has {size} bytes but {max_ack} were acknowledged"
    );
    let cast = session_cast(addr, s["id"].as_str().unwrap()).await;
    let sent = sent.lock().unwrap().clone();
    assert_eq!(
        &cast[..],
        &sent[..cast.len()],
        "stored session is a prefix of what was sent"
    );
    // What recovery kept is what the start-up manifest signed: the store verifies clean.
    let storage = kubescribe_recorder::storage::disk::DiskStorage::open(&data).unwrap();
    let report = kubescribe_recorder::tamper::verify::verify(&storage, &Default::default())
        .await
        .unwrap();
    assert!(report.findings.is_empty(), "{report:?}");
    assert!(report.records_verified >= acked.len() as u64, "{report:?}");
    assert_eq!(report.sessions_verified, 1, "{report:?}");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A second recorder on the same storage directory is refused with a clear error, and the first one
/// keeps serving; once the first is gone (even by `kill -9`), the directory can be used again.
#[tokio::test]
async fn a_second_recorder_on_the_same_directory_is_refused() {
    let store = BinaryStore::new();
    let (data, token) = (store.data.clone(), store.token.clone());
    let (port, addr) = (store.port, store.addr);
    let mut first = start(&data, &token, port);
    wait_ready(addr).await;

    let second = Command::new(env!("CARGO_BIN_EXE_kubescribe-recorder"))
        .args(["--admin-listen", "off", "--listen", "127.0.0.1:0"])
        .args(["--signing-key", signing_key()])
        .arg("--dst")
        .arg(&data)
        .arg("--upload-token-file")
        .arg(&token)
        .output()
        .unwrap();
    assert!(!second.status.success(), "the second recorder started");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("is in use by another kubescribe-recorder"),
        "{stderr}"
    );
    let (status, _) = post_event(addr, &event_json("get", "still-served", None)).await;
    assert_eq!(status, StatusCode::OK);

    first.kill().unwrap();
    first.wait().unwrap();
    let mut again = start(&data, &token, port);
    wait_ready(addr).await;
    let (status, _) = post_event(addr, &event_json("get", "after-kill", None)).await;
    assert_eq!(status, StatusCode::OK);
    again.kill().unwrap();
    let _ = again.wait();
}
