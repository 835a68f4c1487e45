//! Tamper evidence end to end: a store written by the real recorder binary across `kill -9` and
//! restarts verifies clean with `kubescribe-recorder verify`, and each kind of tampering (a byte
//! of a line edited, a line removed, two lines swapped, a line appended, a segment deleted or
//! added, a manifest deleted or edited, a cast edited) is found and named. The same on S3
//! (real SeaweedFS).
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::StatusCode;
use kubescribe_recorder::storage::Storage;
use kubescribe_recorder::tamper::verify::{verify, VerifyOptions};

const BIN: &str = env!("CARGO_BIN_EXE_kubescribe-recorder");

fn start(data: &Path, token: &Path, port: u16) -> Child {
    start_binary(data, token, port, &["--manifest-interval", "200ms"])
}

fn public_key_file() -> String {
    format!("{}.pub", signing_key())
}

/// Runs `kubescribe-recorder verify -o json` with `args`: exit code and report.
fn verify_cli(args: &[&str]) -> (i32, serde_json::Value) {
    let out = Command::new(BIN)
        .arg("verify")
        .args(["-o", "json"])
        .args(args)
        .output()
        .unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify printed no report ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap(), report)
}

fn verify_dir(dir: &Path) -> (i32, serde_json::Value) {
    verify_cli(&[
        "--dir",
        dir.to_str().unwrap(),
        "--public-key",
        &public_key_file(),
    ])
}

/// The finding kinds of a report, with their objects.
fn findings(report: &serde_json::Value) -> Vec<(String, String, Option<u64>)> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap().to_owned(),
                f["object"].as_str().unwrap().to_owned(),
                f["line"].as_u64(),
            )
        })
        .collect()
}

fn cast() -> Vec<u8> {
    b"{\"version\":2,\"width\":80,\"height\":24,\"timestamp\":1767225600}\n[0.1,\"o\",\"$ whoami\"]\n[0.2,\"o\",\"root\"]\n".to_vec()
}

async fn upload_cast(addr: SocketAddr) {
    let (a, v) = auth();
    let (status, _, body) = call(addr, "POST", "/record", &[(a, &v)], cast()).await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
}

/// Every file under `dir` (relative), sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

/// A copy of the store to tamper with.
fn copy(src: &Path, parent: &Path, name: &str) -> PathBuf {
    let dst = parent.join(name);
    let status = Command::new("cp")
        .arg("-a")
        .arg(src)
        .arg(&dst)
        .status()
        .unwrap();
    assert!(status.success());
    let _ = std::fs::remove_file(dst.join(".kubescribe-recorder.lock"));
    dst
}

/// Rewrites a (possibly read-only, i.e. sealed) file, as an attacker with write access would.
fn rewrite(path: &Path, f: impl FnOnce(Vec<u8>) -> Vec<u8>) {
    let data = std::fs::read(path).unwrap();
    let mut perms = std::fs::metadata(path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(path, perms.clone()).unwrap();
    std::fs::write(path, f(data)).unwrap();
    perms.set_readonly(true);
    std::fs::set_permissions(path, perms).unwrap();
}

fn lines_of(data: &[u8]) -> Vec<Vec<u8>> {
    data.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn join(lines: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(l);
        out.push(b'\n');
    }
    out
}

fn has(found: &[(String, String, Option<u64>)], kind: &str, object: &str) -> bool {
    found.iter().any(|(k, o, _)| k == kind && o == object)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_written_across_kill_9_verifies_clean_and_every_tampering_is_named() {
    let store = BinaryStore::new();
    let (data, token) = (store.data.clone(), store.token.clone());
    let (port, addr) = (store.port, store.addr);

    // Run 1: events in several commits and a finished session; then kill -9 (segments left open).
    let mut child = start(&data, &token, port);
    wait_ready(addr).await;
    for i in 0..12 {
        let (status, v) = post_event(addr, &event_json("get", &format!("pod-{i}"), None)).await;
        assert_eq!(status, StatusCode::OK, "{v}");
    }
    upload_cast(addr).await;
    tokio::time::sleep(Duration::from_millis(800)).await; // a manifest covers the session
    child.kill().unwrap();
    child.wait().unwrap();

    // Run 2: recovery seals run 1's segments; more events; kill -9 again.
    let mut child = start(&data, &token, port);
    wait_ready(addr).await;
    for i in 0..6 {
        let (status, _) = post_event(addr, &event_json("list", &format!("again-{i}"), None)).await;
        assert_eq!(status, StatusCode::OK);
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // Run 3 seals run 2's segments at start-up.
    let mut child = start(&data, &token, port);
    wait_ready(addr).await;
    child.kill().unwrap();
    child.wait().unwrap();

    let (code, report) = verify_dir(&data);
    assert_eq!(code, 0, "{report}");
    assert!(findings(&report).is_empty(), "{report}");
    assert!(report["manifests"].as_u64().unwrap() >= 2, "{report}");
    assert!(
        report["segmentsVerified"].as_u64().unwrap() >= 2,
        "{report}"
    );
    assert_eq!(report["recordsVerified"], 18, "{report}");
    assert_eq!(report["sessionsVerified"], 1, "{report}");
    assert_eq!(report["openSegments"], serde_json::json!([]), "{report}");
    assert_eq!(report["unsignedManifests"], 0, "{report}");

    // The objects to tamper with.
    let all = files(&data);
    let rel = |p: &PathBuf| p.to_str().unwrap().to_owned();
    let segments: Vec<&PathBuf> = all
        .iter()
        .filter(|p| p.starts_with("events") && p.extension().is_some_and(|e| e == "ndjson"))
        .collect();
    let segment = *segments
        .iter()
        .max_by_key(|p| lines_of(&std::fs::read(data.join(p)).unwrap()).len())
        .unwrap();
    assert!(lines_of(&std::fs::read(data.join(segment)).unwrap()).len() >= 3);
    let session = all
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "cast"))
        .unwrap();
    let manifests: Vec<&PathBuf> = all
        .iter()
        .filter(|p| {
            p.starts_with("_kubescribe/manifests") && p.extension().is_some_and(|e| e == "json")
        })
        .collect();
    let first_manifest = manifests[0];
    let work = tempfile::tempdir().unwrap();

    // A byte of a line edited.
    let d = copy(&data, work.path(), "edit");
    rewrite(&d.join(segment), |mut b| {
        let at = b.iter().position(|c| *c == b'p').unwrap(); // in "pods"
        b[at] = b'q';
        b
    });
    let (code, r) = verify_dir(&d);
    assert_eq!(code, 1, "{r}");
    assert_eq!(
        findings(&r),
        vec![("record-edited".into(), rel(segment), Some(0))],
        "{r}"
    );

    // A line removed.
    let d = copy(&data, work.path(), "remove");
    rewrite(&d.join(segment), |b| {
        let mut l = lines_of(&b);
        l.remove(1);
        join(&l)
    });
    let (code, r) = verify_dir(&d);
    assert_eq!(code, 1);
    assert_eq!(
        findings(&r),
        vec![("record-removed".into(), rel(segment), Some(1))],
        "{r}"
    );

    // Two lines swapped.
    let d = copy(&data, work.path(), "swap");
    rewrite(&d.join(segment), |b| {
        let mut l = lines_of(&b);
        l.swap(0, 2);
        join(&l)
    });
    let (code, r) = verify_dir(&d);
    assert_eq!(code, 1);
    assert_eq!(
        findings(&r),
        vec![("record-reordered".into(), rel(segment), Some(0))],
        "{r}"
    );

    // A line appended after sealing.
    let d = copy(&data, work.path(), "append");
    let n = lines_of(&std::fs::read(data.join(segment)).unwrap()).len() as u64;
    rewrite(&d.join(segment), |mut b| {
        b.extend_from_slice(&event_json("delete", "forged", None));
        b
    });
    let (code, r) = verify_dir(&d);
    assert_eq!(code, 1);
    assert_eq!(
        findings(&r),
        vec![("record-appended".into(), rel(segment), Some(n))],
        "{r}"
    );

    // A segment deleted.
    let d = copy(&data, work.path(), "delete-segment");
    std::fs::remove_file(d.join(segment)).unwrap();
    let (code, r) = verify_dir(&d);
    assert_eq!(code, 1);
    assert_eq!(
        findings(&r),
        vec![("segment-missing".into(), rel(segment), None)],
        "{r}"
    );

    // A segment added (no manifest names it): a later UUIDv7 in the same partition.
    let d = copy(&data, work.path(), "add-segment");
    let forged = segment.with_file_name(format!("{}.ndjson", uuid::Uuid::now_v7().simple()));
    std::fs::write(d.join(&forged), event_json("delete", "forged", None)).unwrap();
    let mut perms = std::fs::metadata(d.join(&forged)).unwrap().permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(d.join(&forged), perms).unwrap();
    let (code, r) = verify_dir(&d);
    assert_eq!(code, 1);
    assert_eq!(
        findings(&r),
        vec![("segment-unmanifested".into(), rel(&forged), None)],
        "{r}"
    );

    // A manifest deleted: the next one's link is broken, and what it covered is uncovered.
    let d = copy(&data, work.path(), "delete-manifest");
    std::fs::remove_file(d.join(first_manifest)).unwrap();
    let (code, r) = verify_dir(&d);
    assert_eq!(code, 1);
    let f = findings(&r);
    assert!(has(&f, "manifest-removed", &rel(manifests[1])), "{r}");
    assert!(
        f.iter().any(|(k, _, _)| k.ends_with("-unmanifested")),
        "what it covered is covered no more: {r}"
    );

    // A manifest edited: its signature fails, and the next one's link is broken.
    let d = copy(&data, work.path(), "edit-manifest");
    rewrite(&d.join(first_manifest), |b| {
        String::from_utf8(b)
            .unwrap()
            .replacen("\"version\":2", "\"version\":3", 1)
            .into_bytes()
    });
    let (code, r) = verify_dir(&d);
    assert_eq!(code, 1);
    let f = findings(&r);
    assert!(has(&f, "manifest-edited", &rel(first_manifest)), "{r}");
    assert!(has(&f, "manifest-removed", &rel(manifests[1])), "{r}");

    // A cast edited.
    let d = copy(&data, work.path(), "edit-cast");
    rewrite(&d.join(session), |b| {
        String::from_utf8(b)
            .unwrap()
            .replace("root", "user")
            .into_bytes()
    });
    let (code, r) = verify_dir(&d);
    assert_eq!(code, 1);
    assert_eq!(
        findings(&r),
        vec![("session-edited".into(), rel(session), None)],
        "{r}"
    );

    // Another key than the recorder's.
    let other = work.path().join("other.key");
    kubescribe_recorder::signing::generate_signing_key(&other).unwrap();
    let (code, r) = verify_cli(&[
        "--dir",
        data.to_str().unwrap(),
        "--public-key",
        &format!("{}.pub", other.display()),
    ]);
    assert_eq!(code, 1);
    assert!(
        findings(&r)
            .iter()
            .all(|(k, _, _)| k == "manifest-wrong-key"),
        "{r}"
    );

    // Text output and `--since` (nothing written after 2100: only manifests are checked).
    let out = Command::new(BIN)
        .args([
            "verify",
            "--since",
            "2100-01-01",
            "--dir",
            data.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("0 segments (0 records) and 0 sessions verified"),
        "{text}"
    );
}

#[tokio::test]
async fn without_a_key_the_recorder_refuses_to_start_and_unsigned_manifests_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "off",
            "--insecure-allow-any-uploader",
        ])
        .arg("--dst")
        .arg(dir.path().join("data"))
        .env_remove("KUBESCRIBE_SIGNING_KEY_FILE")
        .env_remove("KUBESCRIBE_UNSIGNED")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--signing-key") && stderr.contains("--unsigned"),
        "{stderr}"
    );

    // keygen writes a key the recorder takes, and prints its public key.
    let key = dir.path().join("k");
    let out = Command::new(BIN).arg("keygen").arg(&key).output().unwrap();
    assert!(out.status.success());
    let public = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(
        public,
        std::fs::read_to_string(dir.path().join("k.pub"))
            .unwrap()
            .trim()
    );
    let r = disk_recorder(&["--signing-key", key.to_str().unwrap()]).await;
    let (status, v) = get_json(r.addr, "/api/v1/signing-key").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        v,
        serde_json::json!({"alg": "ed25519", "publicKey": public})
    );

    // --unsigned: hashes still checked, verify says unsigned (and fails if a key is required).
    let r = disk_recorder(&["--unsigned", "--manifest-interval", "100ms"]).await;
    let (_, v) = get_json(r.addr, "/api/v1/signing-key").await;
    assert_eq!(v, serde_json::json!({"alg": "none"}));
    upload_cast(r.addr).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (code, report) = verify_cli(&["--dir", data_dir(&r).to_str().unwrap()]);
    assert_eq!(code, 0, "{report}");
    assert!(
        report["unsignedManifests"].as_u64().unwrap() >= 1,
        "{report}"
    );
    assert_eq!(report["sessionsVerified"], 1, "{report}");
    let (code, report) = verify_dir(&data_dir(&r));
    assert_eq!(code, 1);
    assert!(
        findings(&report)
            .iter()
            .any(|(k, _, _)| k == "manifest-unsigned"),
        "{report}"
    );
}

#[tokio::test]
async fn on_s3_every_commit_object_is_sealed_and_verified() {
    let weed = Seaweed::start("recordings").unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path());
    let args = [
        "--upload-token-file",
        token.to_str().unwrap(),
        "--manifest-interval",
        "200ms",
    ];
    let storage: Arc<dyn Storage> = Arc::new(weed.storage(S3_SECRET).unwrap());
    let (addr, _app) = kubescribe_recorder::spawn(config(&args), storage.clone())
        .await
        .unwrap();
    for i in 0..5 {
        let (status, _) = post_event(addr, &event_json("get", &format!("s3-{i}"), None)).await;
        assert_eq!(status, StatusCode::OK);
    }
    upload_cast(addr).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let public_key = std::fs::read_to_string(public_key_file())
        .unwrap()
        .trim()
        .to_owned();
    let options = VerifyOptions {
        public_key: Some(public_key),
        since_ms: None,
        day: None,
    };
    let report = verify(&*storage, &options).await.unwrap();
    assert!(report.findings.is_empty(), "{report:?}");
    assert_eq!(report.records_verified, 5, "{report:?}");
    assert_eq!(report.sessions_verified, 1, "{report:?}");
    // Fewer manifests than commit objects: not one PUT per commit.
    assert!(report.manifests < 5, "{report:?}");

    // The binary against the bucket.
    let out = Command::new(BIN)
        .args([
            "verify",
            "-o",
            "json",
            "--s3-allow-http",
            "--bucket",
            "recordings",
        ])
        .arg("--dst")
        .arg(format!("s3://{}", weed.endpoint()))
        .args(["--public-key", &public_key_file()])
        .env("AWS_ACCESS_KEY_ID", S3_KEY)
        .env("AWS_SECRET_ACCESS_KEY", S3_SECRET)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // An object edited, another deleted.
    let events = list_keys(&*storage, "events/").await;
    let edited = storage.get(&events[0]).await.unwrap();
    let edited = String::from_utf8(edited.to_vec())
        .unwrap()
        .replace("s3-", "s4-");
    let key = kubescribe_recorder::storage::layout::parse_key(&events[0])
        .unwrap()
        .0;
    storage.put(&key, Bytes::from(edited)).await.unwrap();
    storage.delete(&events[1]).await.unwrap();
    let report = verify(&*storage, &options).await.unwrap();
    let found: Vec<(String, String)> = report
        .findings
        .iter()
        .map(|f| (f.kind.clone(), f.object.clone()))
        .collect();
    assert!(
        found.contains(&("record-edited".into(), events[0].clone())),
        "{found:?}"
    );
    assert!(
        found.contains(&("segment-missing".into(), events[1].clone())),
        "{found:?}"
    );
    assert_eq!(found.len(), 2, "{found:?}");
}

#[tokio::test]
async fn the_session_verification_route_says_verified_then_failed_after_an_edit() {
    let r = disk_recorder(&["--manifest-interval", "100ms"]).await;
    upload_cast(r.addr).await;
    let (_, list) = get_json(r.addr, "/api/v1/sessions").await;
    let id = list["sessions"][0]["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/sessions/{id}/verification");
    let mut v = serde_json::Value::Null;
    for _ in 0..50 {
        v = get_json(r.addr, &path).await.1;
        if v["state"] != "pending" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(v["state"], "verified", "{v}");
    let cast = files(&data_dir(&r))
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "cast"))
        .unwrap();
    rewrite(&data_dir(&r).join(cast), |b| {
        String::from_utf8(b)
            .unwrap()
            .replace("root", "toor")
            .into_bytes()
    });
    let (status, v) = get_json(r.addr, &path).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["state"], "failed", "{v}");
    assert_eq!(
        v["detail"], "the cast is not the one its manifest hashed",
        "{v}"
    );
}

#[tokio::test]
async fn segments_sealed_while_the_recorder_runs_are_covered_within_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path());
    let data = dir.path().join("data");
    // Every commit closes the segment before it (64-byte segments).
    let storage = kubescribe_recorder::storage::disk::DiskStorage::open(&data)
        .unwrap()
        .with_segment_max_bytes(64);
    let args = [
        "--upload-token-file",
        token.to_str().unwrap(),
        "--manifest-interval",
        "100ms",
    ];
    let storage: Arc<dyn Storage> = Arc::new(storage);
    let (addr, _app) = kubescribe_recorder::spawn(config(&args), storage.clone())
        .await
        .unwrap();
    for i in 0..6 {
        let (status, _) = post_event(addr, &event_json("get", &format!("roll-{i}"), None)).await;
        assert_eq!(status, StatusCode::OK);
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let report = verify(&*storage, &VerifyOptions::default()).await.unwrap();
    assert!(report.findings.is_empty(), "{report:?}");
    assert_eq!(report.segments_verified, 5, "{report:?}");
    assert_eq!(report.open_segments.len(), 1, "{report:?}");
}

/// `GET /api/v1/verification?date=…`, retrying while the day is `pending` or a pass has not yet
/// covered what `done` waits for.
async fn day_until(
    addr: SocketAddr,
    date: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let path = format!("/api/v1/verification?date={date}");
    let mut v = serde_json::Value::Null;
    for _ in 0..100 {
        let (status, body) = get_json(addr, &path).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        v = body;
        if done(&v) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_day_verification_route_says_verified_then_names_an_edited_segment_and_other_days_stay_verified(
) {
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path());
    let read_token = dir.path().join("read-token");
    std::fs::write(&read_token, "day-read-token-0123456789").unwrap();
    let data = dir.path().join("data");
    // Every commit closes the segment before it (64-byte segments).
    let storage = kubescribe_recorder::storage::disk::DiskStorage::open(&data)
        .unwrap()
        .with_segment_max_bytes(64);
    let storage: Arc<dyn Storage> = Arc::new(storage);
    // Another day: a cast from 2026-01-05, sealed by the start-up pass.
    let past = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        1_767_614_400,
        0,
    ));
    let past_key = kubescribe_recorder::storage::layout::session_key(&past);
    assert!(past_key.as_str().starts_with("sessions/date=2026-01-05/"));
    storage.put(&past_key, Bytes::from(cast())).await.unwrap();
    let args = [
        "--upload-token-file",
        token.to_str().unwrap(),
        "--read-token-file",
        read_token.to_str().unwrap(),
        "--manifest-interval",
        "100ms",
    ];
    let (addr, _app) = kubescribe_recorder::spawn(config(&args), storage.clone())
        .await
        .unwrap();
    for i in 0..6 {
        let (status, _) = post_event(addr, &event_json("get", &format!("day-{i}"), None)).await;
        assert_eq!(status, StatusCode::OK);
    }
    upload_cast(addr).await;
    let today = time::OffsetDateTime::now_utc().date();
    let today = format!(
        "{:04}-{:02}-{:02}",
        today.year(),
        u8::from(today.month()),
        today.day()
    );

    // Today: five sealed segments and the cast verify; the open segment is pending.
    let v = day_until(addr, &today, |v| {
        v["status"] == "verified" && v["sessions"] == 1 && v["verified"].as_u64() >= Some(6)
    })
    .await;
    assert_eq!(v["status"], "verified", "{v}");
    assert_eq!(v["date"], today.as_str(), "{v}");
    assert_eq!(v["problems"], serde_json::json!([]), "{v}");
    assert_eq!(
        v["verified"].as_u64().unwrap() + v["pending"].as_u64().unwrap(),
        v["segments"].as_u64().unwrap() + v["sessions"].as_u64().unwrap(),
        "{v}"
    );
    let past_day = day_until(addr, "2026-01-05", |v| v["status"] == "verified").await;
    assert_eq!(past_day["status"], "verified", "{past_day}");
    assert_eq!(past_day["sessions"], 1, "{past_day}");
    assert_eq!(past_day["segments"], 0, "{past_day}");
    let (_, empty) = get_json(addr, "/api/v1/verification?date=2025-06-01").await;
    assert_eq!(empty["status"], "empty", "{empty}");

    // One stored line of a sealed segment of today edited on disk.
    let sealed = files(&data)
        .into_iter()
        .find(|p| {
            p.starts_with("events")
                && std::fs::metadata(data.join(p))
                    .unwrap()
                    .permissions()
                    .readonly()
        })
        .unwrap();
    rewrite(&data.join(&sealed), |b| {
        String::from_utf8(b)
            .unwrap()
            .replacen("day-", "yad-", 1)
            .into_bytes()
    });
    let key = sealed.to_str().unwrap().to_owned();
    let (status, v) = get_json(addr, &format!("/api/v1/verification?date={today}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["status"], "failed", "{v}");
    let problems: Vec<&str> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("record-edited: ") && p.contains(&key)),
        "{key}: {v}"
    );
    // The untouched day still verifies.
    let (_, v) = get_json(addr, "/api/v1/verification?date=2026-01-05").await;
    assert_eq!(v["status"], "verified", "{v}");

    // Bad dates are 400s that say why.
    for (query, says) in [
        ("date=2026-13-01", "expected a UTC day as YYYY-MM-DD"),
        ("date=yesterday", "expected a UTC day as YYYY-MM-DD"),
        (
            "date=2026-01-05T00:00:00Z",
            "expected a UTC day as YYYY-MM-DD",
        ),
        ("", "\"date\" is required"),
        (
            "date=2026-01-05&limit=3",
            "unknown query parameter \"limit\"",
        ),
    ] {
        let (status, _, body) = call(
            addr,
            "GET",
            &format!("/api/v1/verification?{query}"),
            &[],
            Bytes::new(),
        )
        .await;
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(says), "{query}: {body}");
    }
    // A reader refused for the other reads is refused here too.
    for path in ["/api/v1/events", "/api/v1/verification?date=2026-01-05"] {
        let (status, _, body) = call(
            addr,
            "GET",
            path,
            &[("authorization", "Bearer wrong-token-000000")],
            Bytes::new(),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body:?}");
        assert!(
            !String::from_utf8_lossy(&body).contains("verified"),
            "{body:?}"
        );
    }
    // The manifest that covered the other day's cast removed: once a newer manifest is written
    // (a new event closes a segment), that day fails; its cast is not merely pending.
    let manifests = data.join("_kubescribe/manifests");
    let covering = std::fs::read_dir(&manifests)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .contains(past_key.as_str())
        })
        .unwrap();
    std::fs::remove_file(&covering).unwrap();
    let (status, _) = post_event(addr, &event_json("get", "day-late", None)).await;
    assert_eq!(status, StatusCode::OK);
    let v = day_until(addr, "2026-01-05", |v| v["status"] == "failed").await;
    assert_eq!(v["status"], "failed", "{v}");
    assert!(
        v["problems"].as_array().unwrap().iter().any(|p| p
            .as_str()
            .unwrap()
            .starts_with(&format!("session-unmanifested: {}: ", past_key.as_str()))),
        "{v}"
    );
}
