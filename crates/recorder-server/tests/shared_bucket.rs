//! Two recorder binaries sharing one bucket of a real SeaweedFS, each
//! `kill -9`ed and restarted in turn (the leader too) while sessions are live
//! on both and events go to both: no live session is finalised early or
//! changed, every session of a killed replica is finalised by the leader
//! with every acknowledged byte, every acknowledged event is stored (once,
//! unless its first answer was lost in a kill and it was sent again) and
//! listed exactly once by both replicas, and the manifests form one chain
//! that verifies clean across the leader changes.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::StatusCode;
use kubescribe_recorder::storage::Storage;

const LEASE_TTL: &str = "3s";
/// Longer than a lease, a renewal and a peer pass: a killed replica's
/// sessions are finalised, and what one replica stored is in the other's index.
const SETTLE: Duration = Duration::from_secs(6);
const ROUNDS: usize = 4;

struct Replica {
    name: &'static str,
    addr: SocketAddr,
    child: Option<Child>,
    log: std::path::PathBuf,
}

impl Replica {
    fn start(&mut self, weed: &Seaweed, token: &std::path::Path) {
        self.start_with_ttl(weed, token, LEASE_TTL);
    }

    fn start_with_ttl(&mut self, weed: &Seaweed, token: &std::path::Path, ttl: &str) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_kubescribe-recorder"))
            .args(["--admin-listen", "off", "--allow-readers", "loopback"])
            .args(["--listen", &self.addr.to_string()])
            .args(["--signing-key", signing_key()])
            .args(["--dst", &format!("s3://{}", weed.endpoint())])
            .args(["--bucket", weed.bucket(), "--s3-allow-http"])
            .args(["--replica-name", self.name, "--lease-ttl", ttl])
            .args(["--peer-sync-interval", "300ms", "--manifest-interval", "1s"])
            .args(["--ack-interval", "100ms"])
            .arg("--upload-token-file")
            .arg(token)
            .env("AWS_ACCESS_KEY_ID", S3_KEY)
            .env("AWS_SECRET_ACCESS_KEY", S3_SECRET)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// Waits for the listener (after the rebuild from the bucket).
    async fn wait_ready(&self) {
        for _ in 0..600 {
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{} did not start; see {}", self.name, self.log.display());
    }

    /// SIGTERM, and waits for the process to end.
    fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let status = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .unwrap();
            assert!(status.success());
            child.wait().unwrap();
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One session upload (h2c `POST /v2/record`), a line every 20 ms.
struct Upload {
    /// The replica it went to, and in which round.
    replica: usize,
    round: usize,
    sent: Arc<Mutex<Vec<u8>>>,
    max_ack: Arc<Mutex<u64>>,
    /// Dropped to end the upload cleanly.
    tx: Option<tokio::sync::mpsc::Sender<Bytes>>,
    writer: tokio::task::JoinHandle<()>,
    reader: tokio::task::JoinHandle<()>,
}

impl Upload {
    async fn start(addr: SocketAddr, replica: usize, round: usize) -> Self {
        let mut client = h2c(addr).await;
        let (tx, req) = streaming_record_request("r");
        let sent = Arc::new(Mutex::new(Vec::<u8>::new()));
        let writer = {
            let (sent, tx) = (sent.clone(), tx.clone());
            tokio::spawn(async move {
                let header = format!(
                    "{{\"version\":2,\"width\":80,\"height\":24,\"timestamp\":1767225600,\"title\":\"r{replica}-round{round}\"}}\n"
                )
                .into_bytes();
                for i in 0u64.. {
                    let line = if i == 0 {
                        header.clone()
                    } else {
                        format!("[{i}.0,\"o\",\"line {i} {}\"]\n", "y".repeat(100)).into_bytes()
                    };
                    if tx.send(Bytes::from(line.clone())).await.is_err() {
                        return;
                    }
                    sent.lock().unwrap().extend_from_slice(&line);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        let res = client.send_request(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let (max_ack, reader) = track_acks(res);
        Self {
            replica,
            round,
            sent,
            max_ack,
            tx: Some(tx),
            writer,
            reader,
        }
    }

    fn title(&self) -> String {
        format!("r{}-round{}", self.replica, self.round)
    }
}

/// Posts `key` to replica `first`, and again to the other one when no answer
/// came (as the proxy does). Returns (the id acknowledged, whether the first
/// attempt was left without an answer).
async fn send_event(addrs: [SocketAddr; 2], first: usize, key: &str) -> Option<(String, bool)> {
    let body = event_json("get", key, Some(key));
    let mut uncertain = false;
    for attempt in 0..20 {
        let addr = addrs[(first + attempt) % 2];
        let answer =
            tokio::time::timeout(Duration::from_secs(5), try_post_event(addr, &body)).await;
        match answer {
            Ok(Ok((StatusCode::OK, v))) => {
                return Some((v["id"].as_str().unwrap().to_owned(), uncertain));
            }
            // Not connected: nothing was sent.
            Ok(Err(CallError::Connect(_))) => {}
            // Sent, and no answer (or an error): it may be stored.
            _ => uncertain = true,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// Every event a replica lists, paging through the query API: key → ids listed.
async fn listed_keys(addr: SocketAddr) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/events?limit=1000&cursor={c}"),
            None => "/api/v1/events?limit=1000".to_owned(),
        };
        let (status, v) = get_json(addr, &path).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        for row in v["events"].as_array().unwrap() {
            if let Some(key) = row["event"]["kubescribe"]["key"].as_str() {
                out.entry(key.to_owned())
                    .or_default()
                    .push(row["id"].as_str().unwrap().to_owned());
            }
        }
        match v["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_one_bucket_survive_kills_of_either() {
    let weed = Seaweed::start("shared").unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path());
    // Kept after a failure, to read.
    let logs = std::env::temp_dir().join(format!("shared-bucket-{}", std::process::id()));
    std::fs::create_dir_all(&logs).unwrap();
    eprintln!("replica logs: {}", logs.display());
    let mut replicas = ["r0", "r1"].map(|name| Replica {
        name,
        addr: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        child: None,
        log: logs.join(format!("{name}.log")),
    });
    let addrs = [replicas[0].addr, replicas[1].addr];
    for r in &mut replicas {
        r.start(&weed, &token);
        r.wait_ready().await;
    }

    // Events: two senders, one starting at each replica, unique keys.
    let acked = Arc::new(Mutex::new(BTreeMap::<String, (String, bool)>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut senders = Vec::new();
    for s in 0..2usize {
        let (acked, stop) = (acked.clone(), stop.clone());
        senders.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let key = format!("ev-{s}-{i}");
                if let Some(answer) = send_event(addrs, s, &key).await {
                    acked.lock().unwrap().insert(key, answer);
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
    }

    let mut finished = Vec::new(); // uploads ended cleanly: (title, sent)
    let mut cut = Vec::new(); // uploads whose replica was killed: (title, sent, max_ack)
    for round in 0..ROUNDS {
        // A live session on each replica.
        let mut uploads = Vec::new();
        for (i, addr) in addrs.iter().enumerate() {
            uploads.push(Upload::start(*addr, i, round).await);
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        // Kill one (the first round r1, then r0, which led: the leader changes).
        let victim = (round + 1) % 2;
        replicas[victim].kill();
        // The survivor's session stays live across the kill, the restart
        // and more than a lease: nobody may finalise it meanwhile.
        tokio::time::sleep(Duration::from_millis(500)).await;
        replicas[victim].start(&weed, &token);
        replicas[victim].wait_ready().await;
        tokio::time::sleep(SETTLE).await;
        for mut upload in uploads {
            let title = upload.title();
            if upload.replica == victim {
                upload.writer.abort();
                let _ = upload.reader.await;
                let max_ack = *upload.max_ack.lock().unwrap();
                assert!(max_ack > 0, "{title}: nothing was acknowledged");
                let sent = upload.sent.lock().unwrap().clone();
                cut.push((title, sent, max_ack));
            } else {
                upload.writer.abort();
                drop(upload.tx.take());
                tokio::time::timeout(Duration::from_secs(10), upload.reader)
                    .await
                    .expect("the upload on the surviving replica ends when its body ends")
                    .unwrap();
                let sent = upload.sent.lock().unwrap().clone();
                finished.push((title, sent));
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for s in senders {
        s.await.unwrap();
    }
    tokio::time::sleep(SETTLE).await;

    // Sessions, as both replicas list them, and their casts.
    for addr in addrs {
        let (status, v) = get_json(addr, "/api/v1/sessions?limit=1000").await;
        assert_eq!(status, StatusCode::OK);
        let by_title: HashMap<String, serde_json::Value> = v["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["header"]["title"].as_str().unwrap_or("").to_owned(),
                    s.clone(),
                )
            })
            .collect();
        for (title, sent) in &finished {
            let s = by_title
                .get(title)
                .unwrap_or_else(|| panic!("{addr}: {title} not listed: {v}"));
            assert_eq!(
                s["state"], "finished",
                "{addr}: {title}, live on a replica that was never killed, must not be finalised by another: {s}"
            );
            let cast = session_cast(addr, s["id"].as_str().unwrap()).await;
            assert_eq!(
                &cast[..],
                &sent[..],
                "{addr}: {title} holds exactly what was sent"
            );
        }
        for (title, sent, max_ack) in &cut {
            let s = by_title.get(title).unwrap_or_else(|| {
                panic!("{addr}: {title} (its replica was killed) not finalised: {v}")
            });
            let cast = session_cast(addr, s["id"].as_str().unwrap()).await;
            assert!(
                cast.len() as u64 >= *max_ack,
                "{addr}: {title} has {} bytes, {max_ack} were acknowledged",
                cast.len()
            );
            assert_eq!(
                &cast[..],
                &sent[..cast.len()],
                "{addr}: {title} is a prefix of what was sent"
            );
        }
        assert_eq!(
            by_title.len(),
            finished.len() + cut.len(),
            "{addr}: one listing per session: {v}"
        );
    }

    // Events: stored once each (twice at most when the first answer was
    // lost in a kill), and listed exactly once by both replicas.
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 200,
        "too little load to mean anything: {}",
        acked.len()
    );
    let storage = weed.storage(S3_SECRET).unwrap();
    let mut stored: HashMap<String, usize> = HashMap::new();
    for info in storage.list("events/").await.unwrap() {
        let data = storage.get(&info.key).await.unwrap();
        for line in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let v: serde_json::Value = serde_json::from_slice(line).unwrap();
            if let Some(key) = v["kubescribe"]["key"].as_str() {
                *stored.entry(key.to_owned()).or_default() += 1;
            }
        }
    }
    let mut resent_twice = 0;
    for (key, (_, uncertain)) in &acked {
        let n = stored.get(key).copied().unwrap_or(0);
        assert!(n >= 1, "acknowledged event {key} is not stored");
        if *uncertain {
            assert!(n <= 2, "{key} stored {n} times");
            resent_twice += usize::from(n == 2);
        } else {
            assert_eq!(
                n, 1,
                "{key}, acknowledged at its first attempt, stored {n} times"
            );
        }
    }
    for addr in addrs {
        let listed = listed_keys(addr).await;
        for key in acked.keys() {
            let ids = listed.get(key).map(Vec::len).unwrap_or(0);
            assert_eq!(ids, 1, "{addr} lists {key} {ids} times");
        }
    }

    // One chain of manifests across the leader changes, covering everything
    // (the reads above were recorded too: the leader's next passes cover them).
    let mut report = Default::default();
    for _ in 0..20 {
        report = kubescribe_recorder::tamper::verify::verify(&storage, &Default::default())
            .await
            .unwrap();
        let pending_only = report
            .findings
            .iter()
            .all(|f| f.kind.ends_with("-unmanifested"));
        if report.findings.is_empty() || !pending_only {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let report: kubescribe_recorder::tamper::verify::Report = report;
    assert!(report.findings.is_empty(), "{report:?}");
    assert_eq!(
        report.sessions_verified,
        finished.len() + cut.len(),
        "{report:?}"
    );
    let uncertain = acked.values().filter(|(_, u)| *u).count();
    eprintln!(
        "events acknowledged {}, sent again after a lost answer {uncertain} (stored twice {resent_twice}); sessions finished {}, cut by a kill {}; records verified {}",
        acked.len(),
        finished.len(),
        cut.len(),
        report.records_verified
    );
    for r in &replicas {
        eprintln!(
            "--- {} log ---\n{}",
            r.name,
            std::fs::read_to_string(&r.log)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("WARN") || l.contains("leader") || l.contains("finalised"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// A replica stopped with SIGTERM leaves the bucket: the other finalises its
/// session and takes the lead at its next passes, long before the stopped
/// one's lease (a minute here) could have expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_stopped_by_sigterm_hands_its_sessions_and_the_lead_over_at_once() {
    const TTL: &str = "60s";
    let weed = Seaweed::start("handover").unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let token = token_file(dir.path());
    let mut replicas = ["a", "b"].map(|name| Replica {
        name,
        addr: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        child: None,
        log: dir.path().join(format!("{name}.log")),
    });
    for r in &mut replicas {
        r.start_with_ttl(&weed, &token, TTL);
        r.wait_ready().await;
    }
    let (a, b) = (replicas[0].addr, replicas[1].addr);
    let upload = Upload::start(a, 0, 0).await;
    for _ in 0..100 {
        if *upload.max_ack.lock().unwrap() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let max_ack = *upload.max_ack.lock().unwrap();
    assert!(max_ack > 0, "nothing acknowledged");
    replicas[0].terminate();
    upload.writer.abort();
    let sent = upload.sent.lock().unwrap().clone();

    // Within a third of the stopped replica's TTL: b finalised a's session
    // (so it leads: only the leader finalises), and the cast holds every
    // acknowledged byte.
    let mut found = None;
    for _ in 0..200 {
        let (_, v) = get_json(b, "/api/v1/sessions").await;
        if let Some(s) = v["sessions"]
            .as_array()
            .and_then(|all| all.iter().find(|s| s["header"]["title"] == "r0-round0"))
        {
            found = Some(s.clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let s = found.unwrap_or_else(|| {
        panic!(
            "a's session not finalised by b within 20 s (a's lease lasts 60 s); b's log: {}",
            std::fs::read_to_string(&replicas[1].log).unwrap_or_default()
        )
    });
    assert_eq!(s["state"], "recovered", "{s}");
    let cast = session_cast(b, s["id"].as_str().unwrap()).await;
    assert!(cast.len() as u64 >= max_ack);
    assert_eq!(&cast[..], &sent[..cast.len()]);
    let log = std::fs::read_to_string(&replicas[0].log).unwrap_or_default();
    assert!(log.contains("left the bucket"), "{log}");
}
