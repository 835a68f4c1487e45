//! How the proxy wires a recorder into an upgraded exec connection.
//!
//! In-memory pipes stand in for kubectl and the API server: kubectl sends its
//! terminal size and a command on stdin, the "server" answers on stdout, and
//! the cast lines arrive on the channel the upload task would drain.
//!
//! Run with `cargo run -p kubescribe-session-recording --example record_session`.

use event_model::{CastHeader, CastKubernetes};
use session_recording::ws::frame::{encode_frame, Opcode};
use session_recording::{
    channel_sink, copy_bidirectional_recorded, CopyOptions, Protocol, SessionTap, TapOptions,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 1. After the upstream answered 101: the proxy builds the header from the
    //    caller's identity and the pod, and a byte-bounded queue to the upload.
    let header = CastHeader {
        timestamp: 1_767_225_600,
        command: "/bin/sh".into(),
        src_node: "laptop.example.ts.net".into(),
        kubernetes: Some(CastKubernetes {
            pod_name: "web-0".into(),
            namespace: "default".into(),
            container: "nginx".into(),
            session_type: "exec".into(),
        }),
        ..Default::default()
    };
    let (sink, mut cast_lines) = channel_sink(8 << 20);
    let protocol = Protocol::from_upgrade_header("websocket").ok_or("not a recordable protocol")?;
    let recorder = SessionTap::new(TapOptions::new(protocol, true), header, sink);

    // 2. The proxy copies both ways through the recorder (fail open here).
    let (mut kubectl, mut proxy_client) = tokio::io::duplex(64 * 1024);
    let (mut proxy_upstream, mut apiserver) = tokio::io::duplex(64 * 1024);
    let copy = {
        let recorder = recorder.clone();
        tokio::spawn(async move {
            copy_bidirectional_recorded(
                &mut proxy_client,
                &mut proxy_upstream,
                &recorder,
                &CopyOptions::default(),
            )
            .await
        })
    };

    // kubectl: terminal size on channel 4, then stdin on channel 0 (masked).
    let mask = Some([1, 2, 3, 4]);
    kubectl
        .write_all(&encode_frame(
            true,
            Opcode::Binary,
            mask,
            b"\x04{\"Width\":100,\"Height\":30}",
        ))
        .await?;
    kubectl
        .write_all(&encode_frame(true, Opcode::Binary, mask, b"\x00uname\n"))
        .await?;
    // The API server: output on channel 1, the final status on channel 3.
    apiserver
        .write_all(&encode_frame(true, Opcode::Binary, None, b"\x01Linux\r\n"))
        .await?;
    apiserver
        .write_all(&encode_frame(
            true,
            Opcode::Binary,
            None,
            b"\x03{\"metadata\":{},\"status\":\"Success\"}",
        ))
        .await?;
    apiserver.shutdown().await?;
    kubectl.shutdown().await?;
    let mut rest = Vec::new();
    kubectl.read_to_end(&mut rest).await?;
    apiserver.read_to_end(&mut Vec::new()).await?;
    let summary = copy.await??;

    // 3. The upload task's view: the cast, line by line.
    while let Some(line) = cast_lines.recv().await {
        print!("{}", String::from_utf8_lossy(&line));
    }
    let status = recorder.status();
    println!(
        "forwarded {} + {} bytes; lines written {}, dropped {}; exit code {:?}; failure {:?}",
        summary.client_to_server,
        summary.server_to_client,
        status.lines_written(),
        status.lines_dropped(),
        status.exec_status().and_then(|s| s.exit_code),
        status.failure(),
    );
    Ok(())
}
