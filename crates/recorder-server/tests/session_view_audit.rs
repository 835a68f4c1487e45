//! Every viewing of a session's cast is itself recorded, durably and before
//! the cast is served; a viewing that cannot be recorded is refused. API
//! responses carry the UI's security headers.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::*;
use http::StatusCode;

const READ_TOKEN: &str = "test-read-token-abcdefghijklmnop";

fn cast_bytes() -> Vec<u8> {
    let mut cast = br#"{"version":2,"width":80,"height":24,"timestamp":1767225600,"kubernetes":{"podName":"web-0","namespace":"default","container":"app","sessionID":"x"}}"#.to_vec();
    cast.extend_from_slice(b"\n[0.1,\"o\",\"$ whoami\\r\\n\"]\n[0.2,\"o\",\"root\\r\\n\"]\n");
    cast
}

/// Uploads a finished session over legacy `/record`; returns its id.
async fn upload_session(r: &TestRecorder, cast: &[u8]) -> String {
    let (a, v) = auth();
    let (status, _, body) = call(r.addr, "POST", "/record", &[(a, &v)], cast.to_vec()).await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    let (_, list) = get_json(r.addr, "/api/v1/sessions").await;
    assert_eq!(list["sessions"].as_array().unwrap().len(), 1, "{list}");
    list["sessions"][0]["id"].as_str().unwrap().to_owned()
}

/// The stored audit records of cast viewings (reads marked `kubescribe.auditOf.session`).
fn stored_viewings(r: &TestRecorder) -> Vec<serde_json::Value> {
    stored_reads(&data_dir(r))
        .into_iter()
        .filter(|e| !e["kubescribe"]["auditOf"]["session"].is_null())
        .collect()
}

fn assert_security_headers(headers: &http::HeaderMap, what: &str) {
    for (name, value) in recorder_ui::SECURITY_HEADERS {
        assert_eq!(
            headers.get(*name).and_then(|v| v.to_str().ok()),
            Some(*value),
            "{what}: header {name}"
        );
    }
    assert_eq!(
        headers.get("cache-control").unwrap(),
        "no-store",
        "{what}: cache-control"
    );
}

#[tokio::test]
async fn each_viewing_is_stored_before_the_cast_is_served() {
    let r = disk_recorder(&[]).await;
    let cast = cast_bytes();
    let id = upload_session(&r, &cast).await;
    // Nothing viewed yet: no events at all.
    let (_, events) = get_json(r.addr, "/api/v1/events").await;
    assert_eq!(events["events"].as_array().unwrap().len(), 0, "{events}");
    assert!(stored_viewings(&r).is_empty());

    let target = format!("/api/v1/sessions/{id}/cast?download=1");
    let (status, headers, body) = call(
        r.addr,
        "GET",
        &target,
        &[("user-agent", "audit-test/1.0")],
        Bytes::new(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], &cast[..]);
    assert_security_headers(&headers, "cast");

    // Durably stored: exactly one viewing on disk (besides the records of the list reads above),
    // and no other event.
    let stored = stored_viewings(&r);
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored_lines(&data_dir(&r), "events").len(), 0);

    // Visible through the API's filters (reads are listed on request), shaped like any API
    // request event.
    let (status, list) = get_json(r.addr, "/api/v1/events?verb=get&reads=only").await;
    assert_eq!(status, StatusCode::OK);
    let rows = list["events"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{list}");
    let e = &rows[0]["event"];
    assert_eq!(e["type"], "kubernetes-api-request");
    assert_eq!(e["id"], rows[0]["id"]);
    assert_eq!(e["userAgent"], "audit-test/1.0");
    assert_eq!(e["request"]["method"], "GET");
    assert_eq!(e["request"]["path"], target.as_str());
    assert_eq!(e["request"]["queryParameters"]["download"][0], "1");
    // What kube-apiserver derives for this path: `get` of the `cast`
    // subresource of `sessions/<id>` in the core group.
    let info = &e["kubernetes"];
    assert_eq!(info["IsResourceRequest"], true);
    assert_eq!(info["Verb"], "get");
    assert_eq!(info["Path"], format!("/api/v1/sessions/{id}/cast").as_str());
    assert_eq!(info["APIPrefix"], "api");
    assert_eq!(info["APIVersion"], "v1");
    assert_eq!(info["Resource"], "sessions");
    assert_eq!(info["Name"], id.as_str());
    assert_eq!(info["Subresource"], "cast");
    assert_eq!(info["Namespace"], "");
    let (_, by_resource) = get_json(
        r.addr,
        &format!("/api/v1/events?resource=sessions&name={id}&reads=only"),
    )
    .await;
    assert_eq!(by_resource["events"].as_array().unwrap().len(), 1);
    assert_eq!(e["source"]["node"], "loopback");
    assert!(e["source"]["nodeUser"].is_null(), "{e}");
    assert_eq!(e["kubescribe"]["auditOf"]["session"], id.as_str());
    assert_eq!(e["kubescribe"]["reader"]["via"], "loopback");
    assert!(e["kubescribe"]["reader"]["address"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    let key1 = e["kubescribe"]["key"].as_str().unwrap().to_owned();
    assert_eq!(uuid::Uuid::parse_str(&key1).unwrap().get_version_num(), 7);
    assert_eq!(stored[0], *e);

    // A second viewing is a second record with its own key; the listing of reads finds both.
    let (status, _, body) = call(r.addr, "GET", &target, &[], Bytes::new()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], &cast[..]);
    assert_eq!(stored_viewings(&r).len(), 2);
    let (_, list) = get_json(
        r.addr,
        &format!("/api/v1/events?verb=get&resource=sessions&name={id}&reads=only"),
    )
    .await;
    let rows = list["events"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{list}");
    assert_ne!(rows[0]["event"]["kubescribe"]["key"], key1.as_str());
    assert_eq!(rows[0]["event"]["userAgent"], "");

    // Reading a session's metadata is a read of its own (`auditOf.sessionInfo`), not a viewing
    // of the cast; HEAD reveals nothing and is not recorded at all.
    let reads_before = stored_reads(&data_dir(&r)).len();
    let (status, _) = get_json(r.addr, &format!("/api/v1/sessions/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = call(r.addr, "HEAD", &target, &[], Bytes::new()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stored_viewings(&r).len(), 2);
    let reads = stored_reads(&data_dir(&r));
    assert_eq!(reads.len(), reads_before + 1);
    assert_eq!(
        reads.last().unwrap()["kubescribe"]["auditOf"]["sessionInfo"],
        id.as_str()
    );
}

#[tokio::test]
async fn every_read_of_events_or_sessions_is_recorded_and_listed_on_request() {
    let r = disk_recorder(&[]).await;
    let (status, _) = post_event(r.addr, &event_json("get", "watched", Some("k-watched"))).await;
    assert_eq!(status, StatusCode::OK);
    let cast = cast_bytes();
    let session = upload_session(&r, &cast).await;
    let (_, list) = get_json(r.addr, "/api/v1/events?verb=get&user=").await;
    let event_id = list["events"][0]["id"].as_str().unwrap().to_owned();
    let (status, _) = get_json(r.addr, &format!("/api/v1/events/{event_id}")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = get_json(r.addr, "/api/v1/sessions?live=false").await;
    assert_eq!(status, StatusCode::OK);

    // Listings leave the reads out unless asked, so reading a list never fills it.
    let (_, plain) = get_json(r.addr, "/api/v1/events").await;
    assert_eq!(plain["events"].as_array().unwrap().len(), 1, "{plain}");
    let (_, reads) = get_json(r.addr, "/api/v1/events?reads=only").await;
    let of: Vec<serde_json::Value> = reads["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["event"]["kubescribe"]["auditOf"].clone())
        .collect();
    // Newest first: this listing's own read, the plain listing, the sessions list, the event, the
    // list that found it, then the sessions list of the upload helper.
    assert_eq!(of[0]["events"]["query"], "reads=only", "{of:?}");
    assert_eq!(of[1]["events"]["query"], "", "{of:?}");
    assert_eq!(of[2]["sessions"]["query"], "live=false", "{of:?}");
    assert_eq!(of[3]["event"], event_id.as_str(), "{of:?}");
    assert_eq!(of[4]["events"]["query"], "verb=get&user=", "{of:?}");
    assert_eq!(of[5]["sessions"]["query"], "", "{of:?}");
    assert!(
        of.iter().all(|o| o["session"] != session.as_str()),
        "no cast was viewed"
    );
    let (_, all) = get_json(r.addr, "/api/v1/events?reads=include&limit=100").await;
    assert_eq!(all["events"].as_array().unwrap().len(), of.len() + 2);
    let (status, bad) = get_json(r.addr, "/api/v1/events?reads=maybe").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(bad["error"].as_str().unwrap().contains("reads="), "{bad}");
}

#[tokio::test]
async fn a_read_token_viewing_names_the_token_as_the_reader() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("read-token");
    std::fs::write(&token, READ_TOKEN).unwrap();
    let r = disk_recorder(&["--read-token-file", token.to_str().unwrap()]).await;
    let id = upload_session(&r, &cast_bytes()).await;
    let bearer = format!("Bearer {READ_TOKEN}");
    let (status, _, _) = call(
        r.addr,
        "GET",
        &format!("/api/v1/sessions/{id}/cast"),
        &[("authorization", &bearer)],
        Bytes::new(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let stored = stored_viewings(&r);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["source"]["node"], "read-token");
    assert_eq!(stored[0]["kubescribe"]["reader"]["via"], "read-token");
}

/// An untagged user's node at 127.0.0.1, for WhoIs-identified readers.
const READER_IDENTITY: &str = r#"entries:
  - name: alice
    sources: ["127.0.0.1/32"]
    Node: {ID: 9, StableID: nAlice1CNTRL, Name: alice-laptop.tail1234.ts.net., User: 77, Tags: []}
    UserProfile: {ID: 77, LoginName: alice@example.com, DisplayName: Alice}
"#;

#[tokio::test]
async fn a_whois_viewing_names_the_reader_as_the_proxy_names_callers() {
    let dir = tempfile::tempdir().unwrap();
    let idfile = dir.path().join("identities.yaml");
    std::fs::write(&idfile, READER_IDENTITY).unwrap();
    let r = disk_recorder(&[
        "--identity-file",
        idfile.to_str().unwrap(),
        "--allow-readers",
        "user:alice@example.com",
    ])
    .await;
    let id = upload_session(&r, &cast_bytes()).await;
    session_cast(r.addr, &id).await;
    let (_, list) = get_json(
        r.addr,
        "/api/v1/events?user=alice@example.com&verb=get&reads=only",
    )
    .await;
    let rows = list["events"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{list}");
    let source = &rows[0]["event"]["source"];
    assert_eq!(source["node"], "alice-laptop.tail1234.ts.net");
    assert_eq!(source["nodeID"], "nAlice1CNTRL");
    assert_eq!(source["nodeUserID"], 77);
    assert_eq!(source["nodeUser"], "alice@example.com");
    assert!(source["nodeTags"].is_null());
    assert_eq!(rows[0]["event"]["kubescribe"]["reader"]["via"], "whois");
}

#[tokio::test]
async fn a_viewing_that_cannot_be_stored_is_refused() {
    let r = disk_recorder(&[]).await;
    let cast = cast_bytes();
    // Upload without reading anything back (a read would open an event segment, which later
    // appends would keep using whatever happens to its directory); the id is the file's name.
    let (a, v) = auth();
    let (status, _, _) = call(r.addr, "POST", "/record", &[(a, &v)], cast.clone()).await;
    assert_eq!(status, StatusCode::OK);
    let id = std::fs::read_dir(data_dir(&r).join("sessions"))
        .unwrap()
        .flatten()
        .flat_map(|date| std::fs::read_dir(date.path()).unwrap().flatten())
        .find_map(|f| {
            f.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".cast"))
                .map(str::to_owned)
        })
        .unwrap();
    // Make event storage fail for real (as root too): the events folder
    // becomes a file, so no batch object can be created under it.
    let events = data_dir(&r).join("events");
    if events.exists() {
        std::fs::remove_dir_all(&events).unwrap();
    }
    std::fs::write(&events, b"not a folder").unwrap();

    let target = format!("/api/v1/sessions/{id}/cast");
    let (status, headers, body) = call(r.addr, "GET", &target, &[], Bytes::new()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers.get("content-type").unwrap(), "application/json");
    assert_security_headers(&headers, "refused cast");
    let error: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let message = error["error"].as_str().unwrap();
    assert!(
        message.contains("could not be recorded") && message.contains("not served"),
        "{message}"
    );
    assert!(
        !body.windows(8).any(|w| w == b"whoami\\r"),
        "cast content leaked: {body:?}"
    );
    // Nothing about the refused viewing was stored (and listing now would be a read that cannot
    // be recorded either: refused too).
    assert!(stored_reads(&data_dir(&r)).is_empty());
    let (status, _) = get_json(r.addr, "/api/v1/events").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    // Storage back: the viewing is recorded and served.
    std::fs::remove_file(&events).unwrap();
    let (status, _, body) = call(r.addr, "GET", &target, &[], Bytes::new()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], &cast[..]);
    assert_eq!(stored_viewings(&r).len(), 1);
}

#[tokio::test]
async fn api_responses_carry_security_headers() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("read-token");
    std::fs::write(&token, READ_TOKEN).unwrap();
    let r = disk_recorder(&["--read-token-file", token.to_str().unwrap()]).await;
    for (path, auth, want) in [
        ("/api/v1/events", "", StatusCode::OK),
        ("/api/v1/sessions", "", StatusCode::OK),
        ("/api/v1/events?limit=0", "", StatusCode::BAD_REQUEST),
        ("/api/v1/nothing", "", StatusCode::NOT_FOUND),
        (
            "/api/v1/events",
            "Bearer wrong-token-000000",
            StatusCode::FORBIDDEN,
        ),
    ] {
        let headers: Vec<(&str, &str)> = if auth.is_empty() {
            vec![]
        } else {
            vec![("authorization", auth)]
        };
        let (status, h, _) = call(r.addr, "GET", path, &headers, Bytes::new()).await;
        assert_eq!(status, want, "{path}");
        assert_security_headers(&h, path);
    }
    // Other endpoints are unchanged.
    let (status, h, _) = call(r.addr, "GET", "/healthz", &[], Bytes::new()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(h.get("content-security-policy").is_none());
}
