//! The wire protocol as Tailscale's proxy (and kubescribe's client) speaks it:
//! `/v2/event`, batches, `/v2/record` over h2c with acks, legacy `/record`
//! with `Expect: 100-continue`, and the bad-input cases.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use clap::Parser as _;
use common::*;
use http::StatusCode;
use http_body_util::BodyExt;
use rand::{Rng, RngCore, SeedableRng};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn event_is_stored_with_id_and_destination_from_whois() {
    let dir = tempfile::tempdir().unwrap();
    let idfile = dir.path().join("identities.yaml");
    std::fs::write(&idfile, IDENTITY_FILE).unwrap();
    let data = dir.path().join("data");
    let cfg = config(&[
        "--dst",
        data.to_str().unwrap(),
        "--identity-file",
        idfile.to_str().unwrap(),
    ]);
    let storage =
        std::sync::Arc::new(kubescribe_recorder::storage::disk::DiskStorage::open(&data).unwrap());
    let (addr, _app) = kubescribe_recorder::spawn(cfg, storage).await.unwrap();

    // Tailscale's probe.
    let (status, headers, _) = call(addr, "HEAD", "/v2/event", &[], Bytes::new()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers.get("x-kubescribe-recorder").unwrap(), "1");

    let (status, headers, body) = call(
        addr,
        "POST",
        "/v2/event",
        &[("content-type", "application/json")],
        event_json("get", "web-0", None),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    assert_eq!(headers.get("x-kubescribe-recorder").unwrap(), "1");
    let id = serde_json::from_slice::<serde_json::Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(id.starts_with("e-"), "{id}");

    // Durable before the 200: it is in storage now, with id and destination set.
    let lines = stored_lines(&data, "events");
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["id"], id.as_str());
    assert_eq!(
        lines[0]["destination"],
        serde_json::json!({"node": "proxy.tail1234.ts.net", "nodeID": "nProxyCNTRL"})
    );
    assert_eq!(lines[0]["source"]["nodeUser"], "alice@example.com");

    let (status, v) = get_json(addr, &format!("/api/v1/events/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["event"]["kubernetes"]["Name"], "web-0");
}

#[tokio::test]
async fn uploads_without_credentials_are_refused_and_nothing_is_stored() {
    let r = disk_recorder(&[]).await;
    let (status, _, body) = call(
        r.addr,
        "POST",
        "/v2/event",
        &[("content-type", "application/json")],
        event_json("get", "a", None),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        String::from_utf8_lossy(&body).contains("no upload credentials"),
        "{body:?}"
    );
    let (status, _, _) = call(
        r.addr,
        "POST",
        "/v2/event",
        &[
            ("content-type", "application/json"),
            ("authorization", "Bearer wrong-token-wrong-token"),
        ],
        event_json("get", "a", None),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = call(
        r.addr,
        "POST",
        "/record",
        &[],
        Bytes::from_static(b"{\"version\":2}\n"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(stored_lines(&data_dir(&r), "events").is_empty());
    assert!(!data_dir(&r).join("sessions").exists());
}

/// Tailscale's proxy sends a request's whole body in its event, base64: for the largest body
/// kube-apiserver reads (3 MiB) that is an event of over 4 MiB, which the default
/// `--max-event-bytes` takes (tests/system/tests/tailscale_interop.rs sends one through
/// Tailscale's own proxy; docs/compatibility.md).
#[tokio::test]
async fn the_largest_event_tailscales_proxy_sends_is_taken_by_default() {
    let r = disk_recorder(&[]).await;
    let mut event: serde_json::Value =
        serde_json::from_slice(&event_json("create", "big", None)).unwrap();
    // Base64 of a body of 3 MiB less a byte: 4 MiB of characters.
    let body_base64 = "eHh4".repeat((3 * 1024 * 1024 - 1) / 3 + 1);
    event["request"]["body"] = serde_json::Value::String(body_base64);
    let mut line = serde_json::to_vec(&event).unwrap();
    line.push(b'\n');
    assert!(line.len() > 4 * 1024 * 1024, "{}", line.len());
    let (status, reply) = post_event(r.addr, &line).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(stored_lines(&data_dir(&r), "events").len(), 1);
}

#[tokio::test]
async fn idempotency_key_stores_once() {
    let r = disk_recorder(&[]).await;
    let ev = event_json("create", "web-1", Some("0193f2c1-key-1"));
    let (s1, v1) = post_event(r.addr, &ev).await;
    let (s2, v2) = post_event(r.addr, &ev).await;
    assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK));
    assert_eq!(v1["id"], v2["id"]);
    assert_eq!(v2["duplicate"], true);
    assert_eq!(stored_lines(&data_dir(&r), "events").len(), 1);
}

#[tokio::test]
async fn concurrent_events_are_group_committed_and_all_stored() {
    let r = disk_recorder(&[]).await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let addr = r.addr;
        tasks.push(tokio::spawn(async move {
            post_event(
                addr,
                &event_json("get", &format!("p{i}"), Some(&format!("k{i}"))),
            )
            .await
        }));
    }
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        let (status, v) = t.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        ids.insert(v["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 200);
    let stored = stored_lines(&data_dir(&r), "events");
    assert_eq!(stored.len(), 200);
    for line in &stored {
        assert!(ids.contains(line["id"].as_str().unwrap()));
    }
}

#[tokio::test]
async fn batch_is_all_or_nothing_and_joins_responses() {
    let r = disk_recorder(&[]).await;
    let bearer = format!("Bearer {TOKEN}");
    let mut body = Vec::new();
    body.extend(event_json("delete", "gone", Some("kb1")));
    body.extend(event_json("get", "kept", Some("kb2")));
    body.extend(br#"{"type":"kubescribe-api-response","id":"","key":"kb1","timestamp":1767225601,"status":200,"durationMs":12.5,"responseBytes":99}"#);
    body.push(b'\n');
    let (status, headers, resp) = call(
        r.addr,
        "POST",
        "/v2/events",
        &[
            ("content-type", "application/x-ndjson"),
            ("authorization", &bearer),
        ],
        body.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{resp:?}");
    assert_eq!(headers.get("x-kubescribe-recorder").unwrap(), "1");
    let v: serde_json::Value = serde_json::from_slice(&resp).unwrap();
    assert_eq!(v["ids"].as_array().unwrap().len(), 3);
    assert!(v["ids"][2].as_str().unwrap().starts_with("r-"));
    assert_eq!(stored_lines(&data_dir(&r), "responses").len(), 1);

    // Query: newest first, response joined, filters.
    let (status, page) = get_json(r.addr, "/api/v1/events?verb=delete").await;
    assert_eq!(status, StatusCode::OK);
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["response"]["status"], 200);
    assert_eq!(events[0]["response"]["durationMs"], 12.5);
    let (_, page) = get_json(r.addr, "/api/v1/events?q=KEPT").await;
    assert_eq!(page["events"].as_array().unwrap().len(), 1);
    assert!(page["events"][0]["response"].is_null());
    let (_, page) = get_json(r.addr, "/api/v1/events?limit=1").await;
    assert_eq!(page["events"][0]["event"]["kubernetes"]["Name"], "kept");
    let cursor = page["nextCursor"].as_str().unwrap().to_owned();
    let (_, page2) = get_json(r.addr, &format!("/api/v1/events?limit=1&cursor={cursor}")).await;
    assert_eq!(page2["events"][0]["event"]["kubernetes"]["Name"], "gone");

    // The same batch again with a bad line: 400, nothing stored.
    let mut bad = event_json("get", "new", Some("kb3"));
    bad.extend(b"{\"type\":\"kubernetes-api-request\",\"timestamp\":\n");
    let (status, _, resp) = call(
        r.addr,
        "POST",
        "/v2/events",
        &[
            ("content-type", "application/x-ndjson"),
            ("authorization", &bearer),
        ],
        bad,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        String::from_utf8_lossy(&resp).contains("line 2"),
        "{resp:?}"
    );
    assert_eq!(stored_lines(&data_dir(&r), "events").len(), 2);

    // NDJSON on /v2/event is a batch too; re-sent keys are duplicates.
    let (status, _, resp) = call(
        r.addr,
        "POST",
        "/v2/event",
        &[
            ("content-type", "application/x-ndjson"),
            ("authorization", &bearer),
        ],
        body,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&resp).unwrap()["duplicates"],
        3
    );
    assert_eq!(stored_lines(&data_dir(&r), "events").len(), 2);
}

#[tokio::test]
async fn bad_events_get_clear_4xx_and_nothing_is_stored() {
    let r = disk_recorder(&["--max-event-bytes", "2048"]).await;
    let bearer = format!("Bearer {TOKEN}");
    let h = |ct: &'static str| vec![("content-type", ct)];
    type Case<'a> = (Vec<(&'a str, &'a str)>, Vec<u8>, StatusCode, &'a str);
    let cases: Vec<Case> = vec![
        (
            h("text/plain"),
            event_json("get", "a", None),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type",
        ),
        (
            vec![],
            event_json("get", "a", None),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "missing Content-Type",
        ),
        (
            h("application/json"),
            event_json("get", "a", None)[..100].to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid record JSON",
        ),
        (
            h("application/json"),
            br#"{"type":"something-else"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "unknown record type",
        ),
        (
            h("application/json"),
            br#"{"id":""}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "has no",
        ),
        (
            h("application/json"),
            vec![b' '; 3000],
            StatusCode::PAYLOAD_TOO_LARGE,
            "limit of 2048",
        ),
        (
            h("application/json"),
            b"\xff\xfe".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid record JSON",
        ),
    ];
    for (mut headers, body, want, text) in cases {
        headers.push(("authorization", &bearer));
        let (status, _, resp) = call(r.addr, "POST", "/v2/event", &headers, body).await;
        assert_eq!(status, want, "{}", String::from_utf8_lossy(&resp));
        assert!(
            String::from_utf8_lossy(&resp).contains(text),
            "{resp:?} lacks {text}"
        );
    }
    // Oversized without Content-Length (chunked) is cut off too.
    let (status, _, _) = call(r.addr, "GET", "/v2/event", &[], Bytes::new()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(stored_lines(&data_dir(&r), "events").is_empty());
    let (_, metrics) = {
        let admin = r.app.admin_addr().unwrap();
        let (s, _, b) = call(admin, "GET", "/metrics", &[], Bytes::new()).await;
        (s, String::from_utf8(b.to_vec()).unwrap())
    };
    assert!(
        metrics.contains("kubescribe_recorder_requests_rejected_total{reason=\"content_type\"} 2"),
        "{metrics}"
    );
}

/// A random cast of about `size` bytes: header + output lines.
fn random_cast(size: usize, seed: u64) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out = br#"{"version":2,"width":120,"height":40,"timestamp":1767225600,"command":"/bin/sh","srcNode":"laptop.tail1234.ts.net","srcNodeID":"nAbC","env":null,"sshUser":"","localUser":"","connectionID":"","kubernetes":{"PodName":"web-0","Namespace":"default","Container":"nginx","SessionType":"exec"}}"#.to_vec();
    out.push(b'\n');
    let mut t = 0.0f64;
    while out.len() < size {
        let mut data = vec![0u8; rng.gen_range(1..2048)];
        rng.fill_bytes(&mut data);
        t += rng.gen_range(0.0..0.5);
        let text: String = data.iter().map(|b| char::from(b' ' + b % 94)).collect();
        out.extend(serde_json::to_vec(&serde_json::json!([t, "o", text])).unwrap());
        out.push(b'\n');
    }
    out
}

#[tokio::test]
async fn v2_record_over_h2c_acks_durable_bytes_and_stores_exact_bytes() {
    let r = disk_recorder(&["--ack-interval", "200ms"]).await;
    let cast = random_cast(1024 * 1024, 7);
    let want = hex::encode(Sha256::digest(&cast));

    let mut client = h2c(r.addr).await;
    // Probe as Tailscale does: HEAD over h2c, 200 and HTTP/2.
    let head = http::Request::head("http://recorder/v2/record")
        .body(
            http_body_util::Empty::new()
                .map_err(|never| match never {})
                .boxed(),
        )
        .unwrap();
    let res = client.send_request(head).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.version(), http::Version::HTTP_2);

    // Stream the cast in random-sized chunks with pauses.
    let (tx, req) = streaming_record_request("recorder");
    let res_fut = tokio::spawn(async move { client.send_request(req).await });
    let sender = {
        let cast = cast.clone();
        tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(9);
            let mut pos = 0;
            while pos < cast.len() {
                let n = rng.gen_range(1..65536).min(cast.len() - pos);
                tx.send(Bytes::copy_from_slice(&cast[pos..pos + n]))
                    .await
                    .unwrap();
                pos += n;
                if rng.gen_bool(0.05) {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            }
            // Idle for a while before EOF: acks must keep coming.
            tokio::time::sleep(Duration::from_millis(700)).await;
        })
    };
    let res = res_fut.await.unwrap().unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers().get("x-kubescribe-recorder").unwrap(), "1");
    let mut body = res.into_body();
    let mut buf = Vec::new();
    let mut acks = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            buf.extend_from_slice(&data);
            while let Some(p) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=p).collect();
                let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
                assert!(v.get("error").is_none(), "{v}");
                acks.push(v["ack"].as_u64().unwrap());
            }
        }
    }
    sender.await.unwrap();
    assert!(acks.len() >= 3, "acks: {acks:?}");
    assert!(
        acks.windows(2).all(|w| w[0] <= w[1]),
        "acks never go back: {acks:?}"
    );
    assert_eq!(
        *acks.last().unwrap(),
        cast.len() as u64,
        "final ack = every byte stored"
    );

    let (status, list) = get_json(r.addr, "/api/v1/sessions").await;
    assert_eq!(status, StatusCode::OK);
    let s = &list["sessions"][0];
    assert_eq!(s["state"], "finished");
    assert_eq!(s["size"], cast.len() as u64);
    assert_eq!(s["header"]["kubernetes"]["PodName"], "web-0");
    let id = s["id"].as_str().unwrap();
    let stored = session_cast(r.addr, id).await;
    assert_eq!(hex::encode(Sha256::digest(&stored)), want);
}

/// Sends `/record` the way Go's client does: `Expect: 100-continue`, wait
/// for the interim response, then a chunked body.
async fn legacy_record(addr: std::net::SocketAddr, cast: &[u8], stall: bool) -> (String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("POST /record HTTP/1.1\r\nHost: recorder\r\nAuthorization: Bearer {TOKEN}\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    let interim = String::from_utf8_lossy(&buf[..n]).to_string();
    for chunk in cast.chunks(10000) {
        s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await
            .unwrap();
        s.write_all(chunk).await.unwrap();
        s.write_all(b"\r\n").await.unwrap();
    }
    if !stall {
        s.write_all(b"0\r\n\r\n").await.unwrap();
    }
    let mut rest = Vec::new();
    let mut tmp = vec![0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(30), s.read(&mut tmp)).await {
            Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                rest.extend_from_slice(&tmp[..n]);
                if rest.windows(4).any(|w| w == b"\r\n\r\n") && rest.ends_with(b"\n") {
                    break;
                }
            }
        }
    }
    (interim, String::from_utf8_lossy(&rest).to_string())
}

#[tokio::test]
async fn legacy_record_sends_100_continue_and_200_once_stored() {
    let r = disk_recorder(&[]).await;
    let cast = random_cast(200_000, 3);
    let (interim, fin) = legacy_record(r.addr, &cast, false).await;
    assert!(interim.starts_with("HTTP/1.1 100 Continue"), "{interim}");
    assert!(fin.starts_with("HTTP/1.1 200"), "{fin}");
    let (_, list) = get_json(r.addr, "/api/v1/sessions").await;
    let id = list["sessions"][0]["id"].as_str().unwrap();
    let (_, _, stored) = call(
        r.addr,
        "GET",
        &format!("/api/v1/sessions/{id}/cast"),
        &[],
        Bytes::new(),
    )
    .await;
    assert_eq!(Sha256::digest(&stored), Sha256::digest(&cast));
}

#[tokio::test]
async fn stalled_upload_times_out() {
    let r = disk_recorder(&["--upload-idle-timeout", "1s"]).await;
    let cast = random_cast(5000, 4);
    let (_, fin) = legacy_record(r.addr, &cast, true).await;
    assert!(fin.starts_with("HTTP/1.1 408"), "{fin}");
    assert!(fin.contains("stalled"), "{fin}");
    // What arrived before the stall is kept (whole lines), marked failed.
    let (_, list) = get_json(r.addr, "/api/v1/sessions").await;
    assert_eq!(list["sessions"][0]["state"], "failed");
}

#[tokio::test]
async fn invalid_casts_are_rejected() {
    let r = disk_recorder(&[]).await;
    // Not a cast header: 400, nothing stored.
    let (_, fin) = legacy_record(r.addr, b"hello world\n[0.1,\"o\",\"x\"]\n", false).await;
    assert!(fin.starts_with("HTTP/1.1 400"), "{fin}");
    assert!(fin.contains("not an asciicast v2 header"), "{fin}");
    assert!(!data_dir(&r).join("sessions").exists());
    // Invalid UTF-8 on line 3: 400 naming it; lines 1-2 kept, nothing after.
    let mut cast = random_cast(100, 5);
    let good_len = cast.len();
    cast.extend(b"[1.0,\"o\",\"\xff\xfe\"]\n[2.0,\"o\",\"after\"]\n");
    let (_, fin) = legacy_record(r.addr, &cast, false).await;
    assert!(fin.starts_with("HTTP/1.1 400"), "{fin}");
    assert!(fin.contains("not valid UTF-8"), "{fin}");
    let (_, list) = get_json(r.addr, "/api/v1/sessions").await;
    let s = &list["sessions"][0];
    assert_eq!(s["state"], "failed");
    let id = s["id"].as_str().unwrap().to_owned();
    let error = s["error"].as_str().unwrap().to_owned();
    assert!(error.contains("not valid UTF-8"), "{error}");
    let (_, _, stored) = call(
        r.addr,
        "GET",
        &format!("/api/v1/sessions/{id}/cast"),
        &[],
        Bytes::new(),
    )
    .await;
    // What was validated is kept, followed by one asciicast marker line saying why the upload
    // failed (the cast stays playable, and the failure is stored with it).
    assert_eq!(&stored[..good_len], &cast[..good_len]);
    assert_eq!(s["size"], stored.len() as u64);
    let marker: serde_json::Value =
        serde_json::from_slice(stored[good_len..].strip_suffix(b"\n").unwrap()).unwrap();
    assert_eq!(marker[1], "m");
    assert_eq!(
        marker[2].as_str().unwrap(),
        format!("kubescribe: upload failed: {error}")
    );

    // A recorder started again on the same storage still knows it failed, and why.
    let data = data_dir(&r);
    let cfg = config(&[
        "--dst",
        data.to_str().unwrap(),
        "--insecure-allow-any-uploader",
    ]);
    let storage =
        std::sync::Arc::new(kubescribe_recorder::storage::disk::DiskStorage::open(&data).unwrap());
    let (again, _app) = kubescribe_recorder::spawn(cfg, storage).await.unwrap();
    let (_, list) = get_json(again, "/api/v1/sessions").await;
    let s = &list["sessions"][0];
    assert_eq!(s["id"], id.as_str());
    assert_eq!(s["state"], "failed");
    assert_eq!(s["error"], error.as_str());
}

#[tokio::test]
async fn concurrent_upload_limit_gives_503() {
    // One uploader (the token) allowed more than the total: the total is what refuses.
    let r = disk_recorder(&[
        "--max-concurrent-uploads",
        "1",
        "--max-uploads-per-uploader",
        "2",
    ])
    .await;
    let mut s = tokio::net::TcpStream::connect(r.addr).await.unwrap();
    s.write_all(format!("POST /record HTTP/1.1\r\nHost: r\r\nAuthorization: Bearer {TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n").as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A second upload is refused before its body is read (no 100 Continue).
    let mut s2 = tokio::net::TcpStream::connect(r.addr).await.unwrap();
    s2.write_all(format!("POST /record HTTP/1.1\r\nHost: r\r\nAuthorization: Bearer {TOKEN}\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n").as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s2.read(&mut buf).await.unwrap();
    let all = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(all.starts_with("HTTP/1.1 503"), "{all}");
    assert!(all.contains("--max-concurrent-uploads"), "{all}");
    drop(s);
}

#[tokio::test]
async fn nobody_reads_by_default_and_api_validates_params() {
    // The default: no reader at all, loopback included.
    let closed = disk_recorder(&["--allow-readers", "none"]).await;
    let (status, _) = get_json(closed.addr, "/api/v1/events").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = get_json(closed.addr, "/api/v1/sessions").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        kubescribe_recorder::Cli::try_parse_from([
            "kubescribe-recorder",
            "--insecure-allow-any-uploader",
            "--signing-key",
            common::signing_key(),
        ])
        .unwrap()
        .validate()
        .unwrap()
        .allow_readers,
        kubescribe_recorder::config::Readers {
            loopback: false,
            identities: None
        }
    );
    // Loopback readers when asked for (a laptop demo).
    let r = disk_recorder(&[]).await;
    let (status, v) = get_json(r.addr, "/api/v1/events?verb=get&bogus=1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().contains("bogus"));
    let (status, _) = get_json(r.addr, "/api/v1/events/e-..%2f..-1").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = get_json(r.addr, "/api/v1/sessions/../../etc/passwd").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = get_json(
        r.addr,
        "/api/v1/events?since=2026-01-01T00:00:00Z&until=yesterday",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

const USER_IDENTITY_FILE: &str = r#"entries:
  - name: alice
    sources: ["127.0.0.1/32"]
    Node: {ID: 8, StableID: nAliceCNTRL, Name: alice-laptop.tail1234.ts.net., User: 42}
    UserProfile: {ID: 42, LoginName: alice@example.com, DisplayName: Alice}
"#;

async fn whois_recorder(
    identities: &str,
    extra: &[&str],
) -> (std::net::SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let idfile = dir.path().join("identities.yaml");
    std::fs::write(&idfile, identities).unwrap();
    let data = dir.path().join("data");
    let mut args = vec![
        "--dst",
        data.to_str().unwrap(),
        "--identity-file",
        idfile.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let storage =
        std::sync::Arc::new(kubescribe_recorder::storage::disk::DiskStorage::open(&data).unwrap());
    let (addr, _app) = kubescribe_recorder::spawn(config(&args), storage)
        .await
        .unwrap();
    (addr, dir)
}

#[tokio::test]
async fn whois_identities_are_checked_against_the_allow_lists() {
    // An untagged user's node may not upload by default (tagged nodes only).
    let (addr, dir) = whois_recorder(USER_IDENTITY_FILE, &[]).await;
    let (status, _, body) = call(
        addr,
        "POST",
        "/v2/event",
        &[("content-type", "application/json")],
        event_json("get", "a", None),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("alice@example.com") && text.contains("may not upload"),
        "{text}"
    );
    assert!(stored_lines(&dir.path().join("data"), "events").is_empty());
    // ... unless listed.
    let (addr, _dir) = whois_recorder(
        USER_IDENTITY_FILE,
        &["--allow-uploaders", "user:alice@example.com"],
    )
    .await;
    let (status, _, _) = call(
        addr,
        "POST",
        "/v2/event",
        &[("content-type", "application/json")],
        event_json("get", "a", None),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // Readers by WhoIs: loopback turned off, tag allowed.
    let (addr, _dir) = whois_recorder(IDENTITY_FILE, &["--allow-readers", "none,tag:k8s"]).await;
    let (status, _) = get_json(addr, "/api/v1/events").await;
    assert_eq!(status, StatusCode::OK);
    let (addr, _dir) =
        whois_recorder(IDENTITY_FILE, &["--allow-readers", "user:bob@example.com"]).await;
    let (status, v) = get_json(addr, "/api/v1/sessions").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(v["error"].as_str().unwrap().contains("may not read"), "{v}");
}

#[tokio::test]
async fn oversized_chunked_event_is_cut_off() {
    let r = disk_recorder(&["--max-event-bytes", "2048"]).await;
    let mut s = tokio::net::TcpStream::connect(r.addr).await.unwrap();
    s.write_all(format!("POST /v2/event HTTP/1.1\r\nHost: r\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").as_bytes()).await.unwrap();
    let chunk = vec![b' '; 1000];
    for _ in 0..5 {
        if s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await
            .is_err()
        {
            break;
        }
        let _ = s.write_all(&chunk).await;
        let _ = s.write_all(b"\r\n").await;
    }
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(stored_lines(&data_dir(&r), "events").is_empty());
}

#[tokio::test]
async fn metrics_count_commits_and_sessions() {
    let r = disk_recorder(&[]).await;
    for i in 0..3 {
        let (status, _) = post_event(r.addr, &event_json("get", &format!("m{i}"), None)).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (_, fin) = legacy_record(r.addr, &random_cast(1000, 2), false).await;
    assert!(fin.starts_with("HTTP/1.1 200"), "{fin}");
    // Metrics are served on the admin listener only, never on the upload port.
    let (status, _, _) = call(r.addr, "GET", "/metrics", &[], Bytes::new()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let admin = r.app.admin_addr().unwrap();
    let (status, headers, body) = call(admin, "GET", "/metrics", &[], Bytes::new()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let text = String::from_utf8(body.to_vec()).unwrap();
    for want in [
        "kubescribe_recorder_records_received_total{kind=\"event\"} 3",
        "kubescribe_recorder_records_stored_total 3",
        "kubescribe_recorder_session_uploads_total{outcome=\"finished\"} 1",
        "kubescribe_recorder_session_uploads_active 0",
        "kubescribe_recorder_commit_duration_seconds_count 3",
    ] {
        assert!(text.contains(want), "missing {want} in\n{text}");
    }
}

const TAILNET_READERS: &str = r#"entries:
  - name: carol
    sources: ["100.64.0.5/32"]
    Node: {ID: 5, StableID: nCarolCNTRL, Name: carol-laptop.tail1234.ts.net., User: 45}
    UserProfile: {ID: 45, LoginName: carol@example.com, DisplayName: Carol}
  - name: mallory
    sources: ["100.64.0.6/32"]
    Node: {ID: 6, StableID: nMalloryCNTRL, Name: mallory-laptop.tail1234.ts.net., User: 46}
    UserProfile: {ID: 46, LoginName: mallory@example.com, DisplayName: Mallory}
"#;

/// `GET path` over a fresh connection that starts with a PROXY v2 header naming `source` (what
/// `tailscale serve` sends); the whole response, or "" when the recorder closed without one.
async fn get_through_forwarder(
    addr: std::net::SocketAddr,
    source: Option<&str>,
    path: &str,
) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    if let Some(source) = source {
        let src: std::net::SocketAddr = source.parse().unwrap();
        let header = ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Stream,
            (src, addr),
        )
        .build()
        .unwrap();
        s.write_all(&header).await.unwrap();
    }
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn behind_a_forwarder_readers_are_who_whois_says_never_loopback() {
    let (addr, _dir) = whois_recorder(
        TAILNET_READERS,
        &[
            "--proxy-protocol",
            "--allow-readers",
            "user:carol@example.com",
        ],
    )
    .await;
    let carol = get_through_forwarder(addr, Some("100.64.0.5:40000"), "/api/v1/events").await;
    assert!(carol.starts_with("HTTP/1.1 200"), "{carol}");
    let mallory = get_through_forwarder(addr, Some("100.64.0.6:40000"), "/api/v1/events").await;
    assert!(mallory.starts_with("HTTP/1.1 403"), "{mallory}");
    assert!(mallory.contains("mallory-laptop"), "{mallory}");
    let cast = get_through_forwarder(addr, Some("100.64.0.6:40000"), "/api/v1/sessions").await;
    assert!(cast.starts_with("HTTP/1.1 403"), "{cast}");
    // Everyone arrives from loopback here, but loopback is no identity: without a PROXY header the
    // connection is closed unanswered.
    assert_eq!(
        get_through_forwarder(addr, None, "/api/v1/events").await,
        ""
    );
}
