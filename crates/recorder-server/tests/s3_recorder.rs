//! The recorder on S3 (real SeaweedFS): events and sessions round-trip
//! through the wire endpoints, storage and the query API, including after a
//! restart.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::*;
use http::StatusCode;
use kubescribe_recorder::storage::Storage;

#[tokio::test]
async fn events_and_sessions_round_trip_on_s3() {
    let weed = Seaweed::start("recordings").unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path());
    let args = ["--upload-token-file", token.to_str().unwrap()];
    let storage: Arc<dyn Storage> = Arc::new(weed.storage(S3_SECRET).unwrap());
    let (addr, _app) = kubescribe_recorder::spawn(config(&args), storage.clone())
        .await
        .unwrap();

    let (status, v) = post_event(addr, &event_json("delete", "db-0", Some("s3-key-1"))).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let cast = b"{\"version\":2,\"width\":80,\"height\":24,\"timestamp\":1767225600}\n[0.1,\"o\",\"$ \"]\n[0.2,\"r\",\"24x80\"]\n".to_vec();
    let bearer = format!("Bearer {TOKEN}");
    let (status, _, body) = call(
        addr,
        "POST",
        "/record",
        &[("authorization", &bearer)],
        cast.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    let session = serde_json::from_slice::<serde_json::Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // In the bucket, in the documented layout.
    let events = storage.list("events/").await.unwrap();
    assert_eq!(events.len(), 1);
    assert!(events[0].key.starts_with("events/date="), "{events:?}");
    let stored = storage.get(&events[0].key).await.unwrap();
    let line: serde_json::Value = serde_json::from_slice(&stored).unwrap();
    assert_eq!(line["id"], id.as_str());
    let sessions = storage.list("sessions/").await.unwrap();
    assert_eq!(sessions.len(), 1);
    assert!(sessions[0].key.ends_with(&format!("{session}.cast")));
    assert_eq!(&storage.get(&sessions[0].key).await.unwrap()[..], &cast[..]);

    // A second recorder on the same bucket rebuilds its indexes and dedups.
    let (addr2, _app2) = kubescribe_recorder::spawn(config(&args), storage.clone())
        .await
        .unwrap();
    let (status, v) = get_json(addr2, &format!("/api/v1/events/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["event"]["kubernetes"]["Name"], "db-0");
    let (_, v) = post_event(addr2, &event_json("delete", "db-0", Some("s3-key-1"))).await;
    assert_eq!(v["id"], id.as_str());
    assert_eq!(v["duplicate"], true);
    let (_, _, got) = call(
        addr2,
        "GET",
        &format!("/api/v1/sessions/{session}/cast"),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(&got[..], &cast[..]);
}
