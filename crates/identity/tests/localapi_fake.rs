//! `LocalApiWhoIs` against a fake tailscaled LocalAPI (hyper server on a unix socket) that serves
//! real `WhoIsResponse` JSON and records the requests it gets.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use identity::{
    impersonation_headers, LocalApiConfig, LocalApiWhoIs, RecordingRules, WhoIs, WhoIsError,
};
use tokio::net::UnixListener;

const USER_JSON: &str = include_str!("fixtures/whois-user.json");
const TAGGED_JSON: &str = include_str!("fixtures/whois-tagged.json");

/// The key of `start`'s answers that `/localapi/v0/status` serves.
const STATUS_KEY: &str = "status";

/// A netmap with two peers tagged `tag:k8s-recorder` and one untagged.
const STATUS_JSON: &str = r#"{"BackendState":"Running","Peer":{
  "nodekey:b":{"HostName":"rec-b","TailscaleIPs":["100.64.0.9","fd7a:115c:a1e0::9"],"Tags":["tag:k8s-recorder"]},
  "nodekey:a":{"HostName":"rec-a","TailscaleIPs":["100.64.0.3"],"Tags":["tag:k8s-recorder"]},
  "nodekey:c":{"HostName":"laptop","TailscaleIPs":["100.64.0.2"]}}}"#;

/// What the fake saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: Option<String>,
    host: Option<String>,
    sec_tailscale: Option<String>,
}

/// A fake LocalAPI: answers per `addr` query value (as decoded), 404 `no match for IP:port`
/// otherwise.
struct FakeLocalApi {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeLocalApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn decode_addr(query: &str) -> Option<String> {
    let raw = query.strip_prefix("addr=")?;
    percent_decode(raw)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

async fn start(answers: HashMap<String, (StatusCode, String)>) -> FakeLocalApi {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("tailscaled.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let answers = Arc::new(answers);
    let seen2 = Arc::clone(&seen);
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let seen = Arc::clone(&seen2);
            let answers = Arc::clone(&answers);
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let seen = Arc::clone(&seen);
                    let answers = Arc::clone(&answers);
                    async move {
                        let header = |name: &str| {
                            req.headers()
                                .get(name)
                                .map(|v| v.to_str().unwrap().to_owned())
                        };
                        seen.lock().unwrap().push(Seen {
                            method: req.method().to_string(),
                            path: req.uri().path().to_owned(),
                            query: req.uri().query().map(str::to_owned),
                            host: header("host"),
                            sec_tailscale: header("sec-tailscale"),
                        });
                        let addr = req.uri().query().and_then(decode_addr);
                        let (status, body) = if req.uri().path() == "/localapi/v0/status" {
                            answers.get(STATUS_KEY).cloned().unwrap_or((
                                StatusCode::INTERNAL_SERVER_ERROR,
                                "no status\n".to_owned(),
                            ))
                        } else {
                            match addr.and_then(|a| answers.get(&a).cloned()) {
                                Some(answer) => answer,
                                None => {
                                    (StatusCode::NOT_FOUND, "no match for IP:port\n".to_owned())
                                }
                            }
                        };
                        Ok::<_, Infallible>(
                            Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::from(body)))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    FakeLocalApi {
        _dir: dir,
        socket,
        seen,
        task,
    }
}

fn client(socket: &Path) -> LocalApiWhoIs {
    LocalApiWhoIs::new(LocalApiConfig {
        socket_path: socket.to_owned(),
        cache_ttl: Duration::ZERO,
        ..LocalApiConfig::default()
    })
}

fn peer(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn resolves_a_user_from_real_whois_json_and_sends_the_localapi_request_shape() {
    let fake = start(HashMap::from([(
        "100.101.102.103:51234".to_owned(),
        (StatusCode::OK, USER_JSON.to_owned()),
    )]))
    .await;
    let caller = client(&fake.socket)
        .whois(peer("100.101.102.103:51234"))
        .await
        .unwrap();

    let id = &caller.identity;
    assert_eq!(id.node_name, "alice-laptop.tail1234.ts.net");
    assert_eq!(id.stable_node_id, "nKf3tZ7CNTRL");
    assert_eq!(id.node_id, 7219368236843719);
    assert!(!id.is_tagged());
    assert_eq!(id.user_id, 3459871234567890);
    assert_eq!(id.node_user_id, 3459871234567890);
    assert_eq!(id.login_name, "alice@example.com");
    assert_eq!(id.display_name, "Alice Example");
    assert_eq!(
        id.addresses,
        vec![
            "100.101.102.103/32".parse().unwrap(),
            "fd7a:115c:a1e0::a901:6667/128".parse().unwrap()
        ]
    );
    // The node's own CapMap (node capabilities) must not leak into the peer capabilities.
    assert!(!caller.caps.contains_key("https://tailscale.com/cap/ssh"));

    let policy = RecordingRules::from_caps(&caller.caps).unwrap();
    assert_eq!(
        policy,
        RecordingRules {
            recorder_addrs: vec![peer("100.64.0.5:80"), peer("[fd7a:115c:a1e0::5]:80")],
            recorder_tags: vec!["tag:tsrecorder".to_owned()],
            fail_open: false,
            enable_events: true,
        }
    );
    // Control resolved the tags: its addresses are used, the tags are not looked up.
    assert!(!policy.needs_tag_resolution());
    let imp = impersonation_headers(&caller).unwrap();
    assert_eq!(imp.user(), "alice@example.com");
    assert_eq!(imp.groups(), ["system:masters", "eng", "viewers"]);

    let seen = fake.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let req = &seen[0];
    assert_eq!(req.method, "GET");
    assert_eq!(req.path, "/localapi/v0/whois");
    // Go's url.QueryEscape form, as tailscale's own client sends it.
    assert_eq!(req.query.as_deref(), Some("addr=100.101.102.103%3A51234"));
    assert_eq!(req.sec_tailscale.as_deref(), Some("localapi"));
    assert_eq!(req.host.as_deref(), Some("local-tailscaled.sock"));
}

#[tokio::test]
async fn resolves_a_tagged_node_and_ipv6_peer() {
    let fake = start(HashMap::from([(
        "[fd7a:115c:a1e0::1:107]:443".to_owned(),
        (StatusCode::OK, TAGGED_JSON.to_owned()),
    )]))
    .await;
    let caller = client(&fake.socket)
        .whois(peer("[fd7a:115c:a1e0::1:107]:443"))
        .await
        .unwrap();
    assert!(caller.identity.is_tagged());
    assert_eq!(caller.identity.tags, ["tag:ci", "tag:k8s-readers"]);
    assert_eq!(caller.identity.node_name, "ci-runner-7.tail1234.ts.net");
    assert_eq!(caller.identity.login_name, "tagged-devices");
    let imp = impersonation_headers(&caller).unwrap();
    assert_eq!(imp.user(), "ci-runner-7.tail1234.ts.net");
    assert_eq!(imp.groups(), ["tag:ci", "tag:k8s-readers"]);
    let seen = fake.seen.lock().unwrap().clone();
    assert_eq!(
        seen[0].query.as_deref(),
        Some("addr=%5Bfd7a%3A115c%3Aa1e0%3A%3A1%3A107%5D%3A443")
    );
}

#[tokio::test]
async fn unknown_address_is_no_match_with_tailscaleds_words() {
    let fake = start(HashMap::new()).await;
    let err = client(&fake.socket)
        .whois(peer("100.64.9.9:1000"))
        .await
        .unwrap_err();
    match &err {
        WhoIsError::NoMatch { peer: p, detail } => {
            assert_eq!(*p, peer("100.64.9.9:1000"));
            assert_eq!(detail, "no match for IP:port");
        }
        other => panic!("expected NoMatch, got {other:?}"),
    }
    assert!(err.is_no_match());
}

#[tokio::test]
async fn forbidden_is_permission_denied() {
    let fake = start(HashMap::from([(
        "100.64.0.1:1".to_owned(),
        (StatusCode::FORBIDDEN, "whois access denied\n".to_owned()),
    )]))
    .await;
    let err = client(&fake.socket)
        .whois(peer("100.64.0.1:1"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, WhoIsError::PermissionDenied { detail, .. } if detail.contains("whois access denied")),
        "{err:?}"
    );
}

#[tokio::test]
async fn garbage_and_unexpected_status_are_bad_response() {
    let fake = start(HashMap::from([
        (
            "100.64.0.1:1".to_owned(),
            (StatusCode::OK, "{\"Node\": [".to_owned()),
        ),
        ("100.64.0.1:2".to_owned(), (StatusCode::OK, "[]".to_owned())),
        (
            "100.64.0.1:3".to_owned(),
            (StatusCode::INTERNAL_SERVER_ERROR, "boom".to_owned()),
        ),
        (
            "100.64.0.1:4".to_owned(),
            (StatusCode::OK, " ".repeat(5 * 1024 * 1024)),
        ),
        ("100.64.0.1:5".to_owned(), (StatusCode::OK, "{}".to_owned())),
        (
            "100.64.0.1:6".to_owned(),
            (
                StatusCode::OK,
                r#"{"Node":{"StableID":"n1","Name":"."}}"#.to_owned(),
            ),
        ),
    ]))
    .await;
    let c = client(&fake.socket);
    for (port, status) in [(1, 200), (2, 200), (3, 500), (4, 200), (5, 200), (6, 200)] {
        let err = c
            .whois(SocketAddr::from(([100, 64, 0, 1], port)))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, WhoIsError::BadResponse { status: Some(s), .. } if *s == status),
            "port {port}: {err:?}"
        );
    }
}

#[tokio::test]
async fn missing_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.sock");
    let err = client(&path).whois(peer("100.64.0.1:1")).await.unwrap_err();
    assert!(
        matches!(&err, WhoIsError::SocketMissing { path: p } if *p == path),
        "{err:?}"
    );
    assert!(err.to_string().contains("does not exist"));
}

#[tokio::test]
async fn stale_socket_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let err = client(&path).whois(peer("100.64.0.1:1")).await.unwrap_err();
    assert!(matches!(err, WhoIsError::Unreachable { .. }), "{err:?}");
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("silent.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let whois = LocalApiWhoIs::new(LocalApiConfig {
        socket_path: path.clone(),
        timeout: Duration::from_millis(300),
        ..LocalApiConfig::default()
    });
    let err = whois.whois(peer("100.64.0.1:1")).await.unwrap_err();
    assert!(
        matches!(&err, WhoIsError::Timeout { after, .. } if *after == Duration::from_millis(300)),
        "{err:?}"
    );
    hold.abort();
}

#[tokio::test]
async fn successful_answers_are_cached_errors_are_not() {
    let fake = start(HashMap::from([(
        "100.101.102.103:1".to_owned(),
        (StatusCode::OK, USER_JSON.to_owned()),
    )]))
    .await;
    let whois = LocalApiWhoIs::new(LocalApiConfig {
        socket_path: fake.socket.clone(),
        cache_ttl: Duration::from_secs(3600),
        ..LocalApiConfig::default()
    });
    for _ in 0..3 {
        whois.whois(peer("100.101.102.103:1")).await.unwrap();
        assert!(whois.whois(peer("100.64.0.9:1")).await.is_err());
    }
    let seen = fake.seen.lock().unwrap().clone();
    let hits = |q: &str| {
        seen.iter()
            .filter(|s| s.query.as_deref() == Some(q))
            .count()
    };
    assert_eq!(hits("addr=100.101.102.103%3A1"), 1);
    assert_eq!(hits("addr=100.64.0.9%3A1"), 3);
}

/// Permission denied on the socket. Root bypasses file permissions, so when run as root this test
/// re-runs itself as an unprivileged user in a user namespace (`unshare -U`).
#[test]
fn permission_denied_on_the_socket() {
    const CHILD: &str = "KUBESCRIBE_IDENTITY_PERMISSION_CHILD";
    if let Ok(path) = std::env::var(CHILD) {
        return expect_permission_denied(Path::new(&path));
    }
    let dir = tempfile::tempdir().unwrap();
    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    let socket = locked.join("tailscaled.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();

    if effective_uid() != 0 {
        expect_permission_denied(&socket);
    } else {
        let exe = std::env::current_exe().unwrap();
        let status = std::process::Command::new("unshare")
            .arg("-U")
            .arg(exe)
            .args(["--exact", "permission_denied_on_the_socket", "--nocapture"])
            .env(CHILD, &socket)
            .status()
            .expect("running `unshare -U` (util-linux) to drop root for this test");
        assert!(status.success(), "unprivileged child failed: {status}");
    }
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn expect_permission_denied(socket: &Path) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = runtime
        .block_on(client(socket).whois(peer("100.64.0.1:1")))
        .unwrap_err();
    assert!(
        matches!(err, WhoIsError::PermissionDenied { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("--operator"), "{err}");
}

fn effective_uid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|uid| uid.parse().ok())
        .unwrap()
}

/// `USER_JSON` with its Kubernetes grant replaced by `rule`.
fn user_with_rule(rule: serde_json::Value) -> String {
    let mut v: serde_json::Value = serde_json::from_str(USER_JSON).unwrap();
    v["CapMap"]["tailscale.com/cap/kubernetes"] = serde_json::json!([rule]);
    v.to_string()
}

#[tokio::test]
async fn recorder_tags_without_addresses_are_resolved_in_the_netmap_by_explain() {
    let tags_only = user_with_rule(serde_json::json!(
        {"recorder": ["tag:k8s-recorder"], "enforceRecorder": true, "enableEvents": true}
    ));
    let unknown_tag = user_with_rule(serde_json::json!(
        {"recorder": ["tag:nobody"], "enforceRecorder": true}
    ));
    let fake = start(HashMap::from([
        ("100.101.102.103:1".to_owned(), (StatusCode::OK, tags_only)),
        (
            "100.101.102.104:1".to_owned(),
            (StatusCode::OK, unknown_tag),
        ),
        (
            STATUS_KEY.to_owned(),
            (StatusCode::OK, STATUS_JSON.to_owned()),
        ),
    ]))
    .await;
    let whois = client(&fake.socket);
    let netmap = localapi::StatusCache::new(localapi::LocalApi::new(&fake.socket), Duration::ZERO);

    let e = identity::explain(&whois, peer("100.101.102.103:1"), Some(&netmap))
        .await
        .unwrap();
    let want = vec![
        peer("100.64.0.3:80"),
        peer("100.64.0.9:80"),
        peer("[fd7a:115c:a1e0::9]:80"),
    ];
    assert_eq!(
        e.recorders_from_tags,
        Some(identity::Outcome::Ok(want.clone()))
    );
    let identity::Outcome::Ok(rules) = &e.recording_rules else {
        panic!("{e:?}");
    };
    assert_eq!(rules.recorder_addrs, want);
    assert!(!rules.refuses_everything());
    assert!(
        e.verdict[0].contains("resolved in the proxy node's netmap to 3 address(es)"),
        "{:?}",
        e.verdict
    );
    let json = e.to_json_pretty();
    assert!(
        json.contains("\"recorders_from_tags\"") && json.contains("100.64.0.9:80"),
        "{json}"
    );

    // Without a netmap the tags stay unresolved: no recorders, refused under enforceRecorder.
    let e = identity::explain(&whois, peer("100.101.102.103:1"), None)
        .await
        .unwrap();
    assert_eq!(e.recorders_from_tags, None);
    let identity::Outcome::Ok(rules) = &e.recording_rules else {
        panic!("{e:?}");
    };
    assert!(rules.refuses_everything());

    // A tag no peer carries: nothing found, the same refusal as no recorders granted.
    let e = identity::explain(&whois, peer("100.101.102.104:1"), Some(&netmap))
        .await
        .unwrap();
    assert_eq!(e.recorders_from_tags, Some(identity::Outcome::Ok(vec![])));
    assert!(
        e.verdict
            .iter()
            .any(|l| l.starts_with("every request is refused (403)")),
        "{:?}",
        e.verdict
    );
}

#[tokio::test]
async fn a_netmap_that_cannot_be_read_is_reported_not_guessed() {
    let tags_only = user_with_rule(serde_json::json!(
        {"recorder": ["tag:k8s-recorder"], "enforceRecorder": true}
    ));
    // No status answer: tailscaled's 500.
    let fake = start(HashMap::from([(
        "100.101.102.103:1".to_owned(),
        (StatusCode::OK, tags_only),
    )]))
    .await;
    let whois = client(&fake.socket);
    let netmap = localapi::StatusCache::new(localapi::LocalApi::new(&fake.socket), Duration::ZERO);
    let e = identity::explain(&whois, peer("100.101.102.103:1"), Some(&netmap))
        .await
        .unwrap();
    let Some(identity::Outcome::Error(why)) = &e.recorders_from_tags else {
        panic!("{e:?}");
    };
    assert_eq!(
        why,
        "tailscaled answered 500 Internal Server Error: no status"
    );
    let identity::Outcome::Ok(rules) = &e.recording_rules else {
        panic!("{e:?}");
    };
    assert!(rules.recorder_addrs.is_empty() && rules.refuses_everything());
}

#[tokio::test]
async fn control_resolved_addresses_win_over_tags() {
    // Real control sends both: the tags are not looked up.
    let fake = start(HashMap::from([
        (
            "100.101.102.103:1".to_owned(),
            (StatusCode::OK, USER_JSON.to_owned()),
        ),
        (
            STATUS_KEY.to_owned(),
            (StatusCode::OK, STATUS_JSON.to_owned()),
        ),
    ]))
    .await;
    let whois = client(&fake.socket);
    let netmap = localapi::StatusCache::new(localapi::LocalApi::new(&fake.socket), Duration::ZERO);
    let e = identity::explain(&whois, peer("100.101.102.103:1"), Some(&netmap))
        .await
        .unwrap();
    assert_eq!(e.recorders_from_tags, None);
    let identity::Outcome::Ok(rules) = &e.recording_rules else {
        panic!("{e:?}");
    };
    assert_eq!(
        rules.recorder_addrs,
        [peer("100.64.0.5:80"), peer("[fd7a:115c:a1e0::5]:80")]
    );
    assert!(fake
        .seen
        .lock()
        .unwrap()
        .iter()
        .all(|s| s.path != "/localapi/v0/status"));
}
