//! [`copy_bidirectional_recorded`]: the proxy's copy loop for an upgraded
//! exec/attach connection, with the recorder tapped in.
//!
//! Each direction reads into one large buffer, shows the chunk to the
//! recorder, and writes the very same bytes on. Half-closes are propagated.
//! With [`CopyOptions::end_on_recording_failure`] (fail closed) the copy ends
//! as soon as the recording fails — including an upload that ends while the
//! session is quiet (seen through [`CopyOptions::backpressure`]) — after
//! sending the client an error-channel message when one can be placed at a
//! frame boundary. The chunk whose recording found the failure is still
//! forwarded (the client's framing stays whole for that message).

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};

use crate::error::{Direction, RecordingError, SinkError};
use crate::session_tap::SessionTap;
use crate::sink::SinkPressure;

/// Default size of each direction's copy buffer.
pub const DEFAULT_COPY_BUFFER: usize = 64 * 1024;

/// How [`copy_bidirectional_recorded`] behaves.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    /// Size of each direction's buffer (one read, one observe, one write per fill).
    pub buffer_size: usize,
    /// Fail closed: end the session when the recording fails (sink lost or
    /// full, parse error). Fail open (false): keep copying; the failure stays
    /// visible in [`SessionTap::status`].
    pub end_on_recording_failure: bool,
    /// The message kubectl shows when a fail-closed session is ended.
    pub termination_message: String,
    /// When set, reading the server's output pauses while the cast queue is
    /// more than half full (see [`SinkPressure`]): fast output is slowed to
    /// the recorder's pace instead of overflowing the recording. Fail closed,
    /// it is also how the copy learns at once that the upload has ended.
    pub backpressure: Option<SinkPressure>,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            buffer_size: DEFAULT_COPY_BUFFER,
            end_on_recording_failure: false,
            termination_message:
                "session recording failed and the recording policy is fail closed; \
                                  the session was ended"
                    .to_owned(),
            backpressure: None,
        }
    }
}

/// What [`copy_bidirectional_recorded`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopySummary {
    /// Bytes forwarded from the client to the upstream.
    pub client_to_server: u64,
    /// Bytes forwarded from the upstream to the client.
    pub server_to_client: u64,
    /// Set when the session was ended because the recording failed (fail closed).
    pub ended_by_recording_failure: Option<RecordingError>,
    /// Whether an error-channel message was sent to the client when ending it.
    pub sent_termination_message: bool,
}

enum PumpEnd {
    Eof(u64),
    Stopped(u64),
}

async fn pump<R, W>(
    reader: &mut ReadHalf<R>,
    writer: &mut WriteHalf<W>,
    recorder: &SessionTap,
    direction: Direction,
    options: &CopyOptions,
) -> io::Result<PumpEnd>
where
    R: AsyncRead + AsyncWrite,
    W: AsyncRead + AsyncWrite,
{
    let status = recorder.status();
    let failed = status.failed();
    tokio::pin!(failed);
    let mut buf = vec![0u8; options.buffer_size.max(1)];
    let mut total = 0u64;
    let upload_closed = upload_closed(options);
    tokio::pin!(upload_closed);
    loop {
        let n = if options.end_on_recording_failure {
            tokio::select! {
                biased;
                _ = &mut failed => return Ok(PumpEnd::Stopped(total)),
                () = &mut upload_closed => {
                    // The upload ended while nothing was written: the
                    // recording is over now, not at the next chunk.
                    status.fail(RecordingError::SinkClosed { source: SinkError::Closed });
                    return Ok(PumpEnd::Stopped(total));
                }
                read = reader.read(&mut buf) => read?,
            }
        } else {
            reader.read(&mut buf).await?
        };
        if n == 0 {
            writer.shutdown().await?;
            return Ok(PumpEnd::Eof(total));
        }
        let chunk = &buf[..n];
        recorder.observe(direction, chunk);
        writer.write_all(chunk).await?;
        total += n as u64;
        if direction == Direction::ServerToClient {
            if let Some(pressure) = &options.backpressure {
                pressure.wait_for_room().await;
            }
        }
    }
}

/// Resolves when the upload behind the sink has closed (never without a
/// [`CopyOptions::backpressure`] handle).
async fn upload_closed(options: &CopyOptions) {
    match &options.backpressure {
        Some(pressure) => pressure.closed().await,
        None => std::future::pending().await,
    }
}

/// Copies an upgraded exec/attach connection both ways until both sides
/// have closed (or, fail closed, until the recording fails), recording it.
///
/// `client` is the connection to kubectl, `upstream` the one to the API
/// server, both already past the `101` response. The recorder is finished
/// when this returns.
pub async fn copy_bidirectional_recorded<C, U>(
    client: &mut C,
    upstream: &mut U,
    recorder: &SessionTap,
    options: &CopyOptions,
) -> io::Result<CopySummary>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut upstream_read, mut upstream_write) = tokio::io::split(upstream);
    let result = tokio::try_join!(
        pump(
            &mut client_read,
            &mut upstream_write,
            recorder,
            Direction::ClientToServer,
            options
        ),
        pump(
            &mut upstream_read,
            &mut client_write,
            recorder,
            Direction::ServerToClient,
            options
        ),
    );
    let (to_server, to_client) = match result {
        Ok(ends) => ends,
        Err(err) => {
            recorder.finish();
            return Err(err);
        }
    };
    let mut summary = CopySummary::default();
    let mut stopped = false;
    for (end, slot) in [
        (to_server, &mut summary.client_to_server),
        (to_client, &mut summary.server_to_client),
    ] {
        *slot = match end {
            PumpEnd::Eof(n) => n,
            PumpEnd::Stopped(n) => {
                stopped = true;
                n
            }
        };
    }
    if stopped {
        let failure = recorder.status().failure();
        tracing::warn!(
            error = failure
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            "failure mode is 'fail closed'; closing connection."
        );
        if let Some(frame) = recorder.termination_frame(&options.termination_message) {
            if client_write.write_all(&frame).await.is_ok() {
                summary.sent_termination_message = true;
            }
        }
        let _ = client_write.shutdown().await;
        let _ = upstream_write.shutdown().await;
        summary.ended_by_recording_failure = failure;
    }
    recorder.finish();
    Ok(summary)
}
