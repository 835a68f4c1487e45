//! The web UI against the real `kubescribe-recorder` binary: HTTP-level
//! checks (deep links, content types, ETags, security headers, refusals), and
//! a real browser (Debian's Chromium driven by playwright-core) running
//! `crates/recorder-ui/tests/browser/ui.spec.mjs`: filter events, open one,
//! play a session, live tail, and refusal of an unauthorised caller.
//! Screenshots go to `target/ui-artifacts/`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use test_support::net::free_port;
use test_support::peers::dir as peers_dir;

const UPLOAD_TOKEN: &str = "ui-test-upload-token-0123456789";
const READ_TOKEN: &str = "ui-test-read-token-0123456789";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A recorder process, killed (by its own pid) on drop.
struct Recorder {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `kubescribe-recorder --ui` on a fresh directory with an upload
/// token, plus `extra` flags; waits until it answers.
fn start_recorder(extra: &[&str]) -> Recorder {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("upload-token");
    std::fs::write(&token, UPLOAD_TOKEN).unwrap();
    let read_token = dir.path().join("read-token");
    std::fs::write(&read_token, READ_TOKEN).unwrap();
    let data = dir.path().join("data");
    let log = std::fs::File::create(dir.path().join("recorder.log")).unwrap();
    for _ in 0..5 {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port().unwrap())
            .parse()
            .unwrap();
        let mut args: Vec<String> = vec![
            "--listen".into(),
            addr.to_string(),
            "--dst".into(),
            data.display().to_string(),
            "--upload-token-file".into(),
            token.display().to_string(),
            "--ui".into(),
            "--admin-listen".into(),
            "off".into(),
            "--signing-key".into(),
            dir.path().join("signing.key").display().to_string(),
            "--generate-signing-key".into(),
            "--manifest-interval".into(),
            "200ms".into(),
        ];
        if !extra.iter().any(|e| e == &"--allow-readers") {
            args.extend(["--allow-readers".into(), "loopback".into()]);
        }
        for e in extra {
            args.push(e.replace("{read_token}", &read_token.display().to_string()));
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_kubescribe-recorder"))
            .args(&args)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log.try_clone().unwrap()))
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                let log = std::fs::read_to_string(dir.path().join("recorder.log")).unwrap();
                if log.contains("cannot listen") {
                    break; // port taken meanwhile: try another
                }
                panic!("kubescribe-recorder exited with {status}:\n{log}");
            }
            if TcpStream::connect(addr).is_ok() && http(addr, "GET", "/healthz", &[], b"").0 == 200
            {
                return Recorder {
                    child,
                    addr,
                    _dir: dir,
                };
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("kubescribe-recorder did not start");
}

/// One HTTP/1.1 request (`Connection: close`): status, headers, body.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let reply = test_support::http::request(addr, None, method, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    (reply.status, reply.headers, reply.body)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn b64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

struct Req<'a> {
    verb: &'a str,
    method: &'a str,
    resource: &'a str,
    namespace: &'a str,
    name: &'a str,
    body: &'a [u8],
    key: &'a str,
    status: u16,
    tagged: bool,
}

fn event(r: &Req<'_>) -> serde_json::Value {
    let (resource, subresource) = r.resource.split_once('/').unwrap_or((r.resource, ""));
    let mut path = String::from("/api/v1");
    if r.resource == "deployments" {
        path = "/apis/apps/v1".into();
    }
    if !r.namespace.is_empty() {
        path.push_str(&format!("/namespaces/{}", r.namespace));
    }
    path.push_str(&format!("/{resource}"));
    if !r.name.is_empty() {
        path.push_str(&format!("/{}", r.name));
    }
    let mut parts = vec![resource, r.name];
    if !subresource.is_empty() {
        path.push_str(&format!("/{subresource}"));
        parts.push(subresource);
    }
    let source = if r.tagged {
        serde_json::json!({"node": "ci-runner.tail1234.ts.net", "nodeID": "nCI1CNTRL", "nodeTags": ["tag:ci"]})
    } else {
        serde_json::json!({"node": "laptop.tail1234.ts.net", "nodeID": "nAbC123CNTRL", "nodeUserID": 4242, "nodeUser": "alice@example.com"})
    };
    serde_json::json!({
        "type": "kubernetes-api-request", "id": "", "timestamp": 1767225600,
        "userAgent": "kubectl/v1.37.1 (linux/amd64) kubernetes/0000000",
        "request": {"method": r.method, "path": path, "body": b64(r.body), "queryParameters": {}},
        "kubernetes": {"IsResourceRequest": true, "Path": path, "Verb": r.verb,
            "APIPrefix": if r.resource == "deployments" { "apis" } else { "api" },
            "APIGroup": if r.resource == "deployments" { "apps" } else { "" }, "APIVersion": "v1",
            "Namespace": r.namespace, "Resource": resource, "Subresource": subresource, "Name": r.name,
            "Parts": parts, "FieldSelector": "", "LabelSelector": ""},
        "source": source,
        "destination": {"node": "", "nodeID": ""},
        "kubescribe": {"key": r.key, "requestID": format!("req-{}", r.key)}
    })
}

fn response(key: &str, status: u16) -> serde_json::Value {
    serde_json::json!({"type": "kubescribe-api-response", "id": "", "key": key, "timestamp": 1767225601,
        "status": status, "durationMs": 12.5, "responseBytes": 345})
}

const DEPLOYMENT: &[u8] = br#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"default"},"spec":{"replicas":12345678901234567890,"template":{"spec":{"containers":[{"name":"nginx","image":"nginx:1.27"}]}}}}"#;

/// Uploads the test events (one batch with responses, one single event).
fn upload_events(addr: SocketAddr) -> usize {
    let reqs = [
        Req {
            verb: "create",
            method: "POST",
            resource: "deployments",
            namespace: "default",
            name: "",
            body: DEPLOYMENT,
            key: "k-create",
            status: 201,
            tagged: false,
        },
        Req {
            verb: "get",
            method: "GET",
            resource: "pods",
            namespace: "default",
            name: "web-0",
            body: b"",
            key: "k-get",
            status: 200,
            tagged: false,
        },
        Req {
            verb: "list",
            method: "GET",
            resource: "pods",
            namespace: "default",
            name: "",
            body: b"",
            key: "k-list",
            status: 200,
            tagged: true,
        },
        Req {
            verb: "patch",
            method: "PATCH",
            resource: "configmaps",
            namespace: "kube-system",
            name: "coredns",
            body: br#"{"data":{"Corefile":".:53 {\n errors\n}"}}"#,
            key: "k-patch",
            status: 403,
            tagged: false,
        },
        Req {
            verb: "delete",
            method: "DELETE",
            resource: "deployments",
            namespace: "default",
            name: "web",
            body: b"",
            key: "k-delete",
            status: 200,
            tagged: false,
        },
        Req {
            verb: "get",
            method: "GET",
            resource: "pods/exec",
            namespace: "default",
            name: "web-0",
            body: b"",
            key: "k-exec",
            status: 101,
            tagged: false,
        },
    ];
    let mut ndjson = Vec::new();
    for r in &reqs {
        ndjson.extend(serde_json::to_vec(&event(r)).unwrap());
        ndjson.push(b'\n');
        ndjson.extend(serde_json::to_vec(&response(r.key, r.status)).unwrap());
        ndjson.push(b'\n');
    }
    let bearer = format!("Bearer {UPLOAD_TOKEN}");
    let (status, _, body) = http(
        addr,
        "POST",
        "/v2/events",
        &[
            ("content-type", "application/x-ndjson"),
            ("authorization", &bearer),
        ],
        &ndjson,
    );
    assert_eq!(
        status,
        200,
        "batch upload: {}",
        String::from_utf8_lossy(&body)
    );
    // One plain Tailscale-style event (no key, no response record).
    let mut plain = event(&Req {
        verb: "get",
        method: "GET",
        resource: "secrets",
        namespace: "prod",
        name: "db-password",
        body: b"",
        key: "",
        status: 0,
        tagged: false,
    });
    plain.as_object_mut().unwrap().remove("kubescribe");
    let (status, _, body) = http(
        addr,
        "POST",
        "/v2/event",
        &[
            ("content-type", "application/json"),
            ("authorization", &bearer),
        ],
        &serde_json::to_vec(&plain).unwrap(),
    );
    assert_eq!(
        status,
        200,
        "event upload: {}",
        String::from_utf8_lossy(&body)
    );
    reqs.len() + 1
}

/// A finished Kubernetes session: 100x30 terminal, resize events height
/// first ("30x100") as Tailscale's and kubescribe's proxies write them.
fn session_cast() -> Vec<u8> {
    let header = serde_json::json!({"version": 2, "width": 100, "height": 30, "timestamp": 1767225700,
        "command": "/bin/sh", "srcNode": "laptop.tail1234.ts.net", "srcNodeID": "nAbC123CNTRL",
        "srcNodeUserID": 4242, "srcNodeUser": "alice@example.com", "env": null, "sshUser": "",
        "localUser": "", "connectionID": "",
        "kubernetes": {"PodName": "web-0", "Namespace": "default", "Container": "nginx", "SessionType": "exec"},
        "kubescribe": {"sessionID": "s-1", "eventKey": "k-exec", "tty": true}});
    let wide = format!("WIDE:{}:END", "=".repeat(80));
    let mut lines = vec![serde_json::to_string(&header).unwrap()];
    for (t, code, data) in [
        (0.1, "o", "/ # ".to_owned()),
        (0.4, "o", "echo hello from kubescribe\r\n".to_owned()),
        (0.5, "o", "hello from kubescribe\r\n/ # ".to_owned()),
        (0.7, "r", "30x100".to_owned()),
        (0.9, "o", format!("echo $WIDE\r\n{wide}\r\n/ # ")),
        (1.2, "o", "exit\r\n".to_owned()),
    ] {
        lines.push(serde_json::to_string(&serde_json::json!([t, code, data])).unwrap());
    }
    let mut out = lines.join("\n").into_bytes();
    out.push(b'\n');
    out
}

fn upload_session(addr: SocketAddr, cast: &[u8]) {
    let bearer = format!("Bearer {UPLOAD_TOKEN}");
    let (status, _, body) = http(addr, "POST", "/record", &[("authorization", &bearer)], cast);
    assert_eq!(status, 200, "/record: {}", String::from_utf8_lossy(&body));
}

/// Starts a session upload and leaves it open: the session stays live.
fn start_live_session(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    let header = r#"{"version":2,"width":80,"height":24,"timestamp":1767225800,"command":"top","srcNode":"ci-runner.tail1234.ts.net","srcNodeID":"nCI1CNTRL","srcNodeTags":["tag:ci"],"env":null,"sshUser":"","localUser":"","connectionID":"","kubernetes":{"PodName":"db-0","Namespace":"prod","Container":"postgres","SessionType":"exec"}}
[0.2,"o","top - 12:00:00 up 1 day\r\n"]
"#;
    write!(
        s,
        "POST /record HTTP/1.1\r\nHost: r\r\nAuthorization: Bearer {UPLOAD_TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{header}\r\n",
        header.len()
    )
    .unwrap();
    s.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, _, body) = http(addr, "GET", "/api/v1/sessions?live=true", &[], b"");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        if v["sessions"].as_array().is_some_and(|a| !a.is_empty()) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "the live session never appeared: {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn ui_routes_headers_and_refusals_over_http() {
    let r = start_recorder(&[]);
    // Deep links get the shell with the security headers.
    for path in [
        "/",
        "/ui/events",
        "/ui/events/e-00000000000000000000000000000001-0",
        "/ui/sessions/abc",
    ] {
        let (status, headers, body) = http(r.addr, "GET", path, &[], b"");
        assert_eq!(status, 200, "{path}");
        assert_eq!(
            header(&headers, "content-type"),
            Some("text/html; charset=utf-8"),
            "{path}"
        );
        let csp = header(&headers, "content-security-policy").unwrap();
        assert!(
            csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"),
            "{csp}"
        );
        assert!(!csp.contains("'unsafe-inline'"), "{csp}");
        assert_eq!(header(&headers, "x-content-type-options"), Some("nosniff"));
        assert!(String::from_utf8_lossy(&body).contains("/ui/assets/app.js"));
    }
    // Assets: content type, ETag, 304 on revalidation, HEAD without body.
    let (status, headers, body) = http(r.addr, "GET", "/ui/assets/js/events.js", &[], b"");
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(header(&headers, "cache-control"), Some("no-cache"));
    assert!(!body.is_empty());
    let etag = header(&headers, "etag").unwrap().to_owned();
    let (status, _, body) = http(
        r.addr,
        "GET",
        "/ui/assets/js/events.js",
        &[("if-none-match", &etag)],
        b"",
    );
    assert_eq!((status, body.len()), (304, 0));
    let (status, headers, body) = http(r.addr, "HEAD", "/ui/assets/app.css", &[], b"");
    assert_eq!((status, body.len()), (200, 0));
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/css; charset=utf-8")
    );
    // Unknown assets and traversal attempts are 404; writes are 405.
    for path in [
        "/ui/assets/nope.js",
        "/ui/assets/../../Cargo.toml",
        "/favicon.ico",
    ] {
        assert_eq!(http(r.addr, "GET", path, &[], b"").0, 404, "{path}");
    }
    assert_eq!(http(r.addr, "POST", "/ui/events", &[], b"x").0, 405);
    // A bearer token that is not a read token: the refusal page, not the app.
    let (status, headers, body) = http(
        r.addr,
        "GET",
        "/ui/events",
        &[("authorization", "Bearer wrong-token-0123456789")],
        b"",
    );
    assert_eq!(status, 403);
    let page = String::from_utf8_lossy(&body);
    assert!(
        page.contains("Not authorised") && page.contains("not a valid read token"),
        "{page}"
    );
    assert!(!page.contains("/ui/assets/app.js"));
    assert!(header(&headers, "content-security-policy")
        .unwrap()
        .contains("default-src 'none'"));
    assert_eq!(header(&headers, "cache-control"), Some("no-store"));
}

fn find_chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return PathBuf::from(p);
    }
    let out = Command::new("sh")
        .args(["-c", "command -v chromium"])
        .output()
        .unwrap();
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        out.status.success() && !path.is_empty(),
        "Chromium not found (`command -v chromium` is empty): install Debian's chromium \
         (`apt-get install -y --no-install-recommends chromium`) or run `cargo xtask peers`"
    );
    PathBuf::from(path)
}

#[test]
fn ui_in_a_real_browser() {
    let chromium = find_chromium();
    let playwright = peers_dir().join("node/node_modules/playwright-core");
    assert!(
        playwright.join("index.mjs").exists(),
        "playwright-core not found at {}: run `cargo xtask peers` (or `npm install --prefix $KUBESCRIBE_PEERS/node playwright-core@1.65.1`)",
        playwright.display()
    );
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "node not found: install Node.js 20 (run `cargo xtask peers` for the other peers)"
    );

    let open = start_recorder(&[]);
    let events = upload_events(open.addr);
    let cast = session_cast();
    upload_session(open.addr, &cast);
    let _live = start_live_session(open.addr);
    // Only the read token may read here; loopback is not enough.
    let guarded = start_recorder(&[
        "--allow-readers",
        "none",
        "--read-token-file",
        "{read_token}",
    ]);

    let artifacts = workspace_root().join("target/ui-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let profile = tempfile::tempdir().unwrap();
    let cast_file = profile.path().join("expected.cast");
    std::fs::write(&cast_file, &cast).unwrap();
    let script = workspace_root().join("crates/recorder-ui/tests/browser/ui.spec.mjs");
    let out = Command::new("node")
        .arg(&script)
        .env("RECORDER_URL", format!("http://{}", open.addr))
        .env("GUARDED_URL", format!("http://{}", guarded.addr))
        .env("UPLOAD_TOKEN", UPLOAD_TOKEN)
        .env("READ_TOKEN", READ_TOKEN)
        .env("EXPECTED_EVENTS", events.to_string())
        .env("EXPECTED_CAST", &cast_file)
        .env("CHROMIUM", &chromium)
        .env("PLAYWRIGHT_CORE_DIR", &playwright)
        .env("USER_DATA_DIR", profile.path().join("chromium-profile"))
        .env("ARTIFACTS", &artifacts)
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser test failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n(screenshots in {})",
        out.status,
        artifacts.display()
    );
    println!("{stdout}");
}
