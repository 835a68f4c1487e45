//! Recording `kubectl exec`/`attach` sessions: the [`SessionHook`] that
//! connects to the caller's recorders *before* the request reaches the API
//! server, and, once the API server answers `101`, taps the upgraded stream
//! with the `session-recording` parsers and uploads the asciicast through the
//! `recorder-client`.
//!
//! Unlike Tailscale's proxy, which connects to the recorder only after the
//! `101` (when the command is already running in the pod), a fail-closed
//! session that cannot be recorded is refused before the API server sees it.
//!
//! Which upgrades are recorded (as Tailscale's proxy does): `pods/exec` and
//! `pods/attach` in the core group (so also `kubectl debug` and `run -it`),
//! over SPDY (`POST`, `Upgrade: SPDY/3.1`) or WebSocket (`GET`, `Upgrade:
//! websocket`). Port-forward and other upgrades pass through untouched.
//!
//! Failure policy, per caller:
//!
//! | what fails | fail open | fail closed |
//! | --- | --- | --- |
//! | no recorder accepts the upload | session continues unrecorded (logged, counted) | `403` with a body; the API server never sees the request |
//! | the `Upgrade` header is not exactly `SPDY/3.1` / `websocket` | unrecorded (logged) | `403` with Tailscale's message |
//! | the upload or the parser fails mid-session | recording stops, the gap is logged and counted; the session continues | the session ends, with a message on the error channel where the protocol allows |

use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use event_model::{CastExtension, CastHeader, CastKubernetes};
use http::Method;
use recorder_client::{
    FailurePolicy, Outcome, PushError, RecorderClient, Refusal, SessionUpload, UploadError,
};
use session_recording::{
    channel_sink, copy_bidirectional_recorded, CastLineReceiver, CopyOptions, Protocol, SessionTap,
    TapOptions,
};

use crate::session_hook::{CopyRelay, SessionContext, SessionHook, SessionRelay, UpgradedStream};

/// Cast bytes that may wait between the data path and the upload. Above half
/// of it the session's output is paused until the upload catches up.
const SINK_LIMIT_BYTES: usize = 8 * 1024 * 1024;

/// Records exec/attach sessions of callers that have recorders.
#[derive(Clone)]
pub struct RecordingHook {
    client: RecorderClient,
}

impl std::fmt::Debug for RecordingHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingHook").finish_non_exhaustive()
    }
}

impl RecordingHook {
    /// A hook uploading through `client`.
    pub fn new(client: RecorderClient) -> Self {
        Self { client }
    }
}

/// What kind of session an upgrade is, if it is one we record.
fn session_kind(ctx: &SessionContext) -> Option<&'static str> {
    let info = &ctx.request_info;
    if !info.is_resource_request
        || info.api_prefix != "api"
        || info.resource != "pods"
        || info.namespace.is_empty()
        || info.name.is_empty()
    {
        return None;
    }
    let method = &ctx.request.method;
    if method != Method::POST && method != Method::GET {
        return None;
    }
    match info.subresource.as_str() {
        "exec" => Some("exec"),
        "attach" => Some("attach"),
        _ => None,
    }
}

/// The protocol the route implies: `POST` is SPDY, `GET` is WebSocket.
fn expected_upgrade(method: &Method) -> (&'static str, &'static str) {
    if method == Method::POST {
        ("SPDY/3.1", "SPDY")
    } else {
        ("websocket", "WebSocket")
    }
}

#[async_trait]
impl SessionHook for RecordingHook {
    async fn start(&self, ctx: &SessionContext) -> Result<Box<dyn SessionRelay>, Refusal> {
        let Some(kind) = session_kind(ctx) else {
            return Ok(Box::new(CopyRelay));
        };
        let policy = &ctx.caller.policy;
        if policy.recorder_addrs.is_empty() {
            // Fail closed without recorders was refused before forwarding.
            return Ok(Box::new(CopyRelay));
        }
        let fail_open = policy.fail_open;
        let failure = FailurePolicy::from_fail_open(fail_open);
        let request_id = ctx.request.id.as_str();
        ctx.metrics.recording_attempted();

        let (want, protocol_name) = expected_upgrade(&ctx.request.method);
        let protocol = (ctx.upgrade == want)
            .then(|| Protocol::from_upgrade_header(&ctx.upgrade))
            .flatten();
        let Some(protocol) = protocol else {
            let reason = format!(
                "[unexpected] unable to verify that streaming protocol is {protocol_name}, wants Upgrade header {want:?}, got: {:?}",
                ctx.upgrade
            );
            let outcome = failure.session_protocol_unverified(&reason);
            return unrecorded(outcome, request_id, kind, &reason);
        };

        tracing::info!(
            request_id,
            recorders = ?policy.recorder_addrs,
            fail_open,
            "kubectl {kind} session will be recorded, recorders: {:?}, fail open policy: {fail_open}",
            policy.recorder_addrs
        );
        // The fail-open/closed outcome (and its message) is the recorder
        // client's decision, as for events.
        let upload = match self.client.connect_session(&policy.recorder_addrs).await {
            Ok(upload) => upload,
            Err(err) => {
                let reason = format!("error connecting to session recorders: {err}");
                let outcome = failure.session_connect_failed(&err);
                return unrecorded(outcome, request_id, kind, &reason);
            }
        };
        tracing::info!(request_id, recorder = %upload.recorder(), protocol = ?upload.protocol(), "connected to session recorder");

        Ok(Box::new(RecordingRelay {
            protocol,
            upload,
            fail_open,
            kind,
        }))
    }
}

/// A session that cannot be recorded, as the failure policy decided: fail
/// open relays it unrecorded and says why (`reason`); fail closed refuses it.
fn unrecorded(
    outcome: Outcome,
    request_id: &str,
    kind: &str,
    reason: &str,
) -> Result<Box<dyn SessionRelay>, Refusal> {
    match outcome {
        Outcome::Refuse(refusal) => {
            tracing::warn!(request_id, "{refusal}");
            Err(refusal)
        }
        Outcome::Forward | Outcome::Queued | Outcome::ForwardUnrecorded { .. } => {
            tracing::warn!(request_id, "{reason}; failure mode is 'fail open'; continuing kubectl {kind} session without recording.");
            Ok(Box::new(CopyRelay))
        }
    }
}

/// The cast header: identity of the caller, the pod, the command.
fn cast_header(
    ctx: &SessionContext,
    kind: &str,
    query: &std::collections::BTreeMap<String, Vec<String>>,
    tty: bool,
) -> CastHeader {
    let identity = &ctx.caller.identity;
    let tagged = identity.is_tagged();
    let joined = |key: &str, sep: &str| query.get(key).map(|v| v.join(sep)).unwrap_or_default();
    CastHeader {
        timestamp: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default(),
        command: joined("command", " "),
        src_node: identity.node_name.clone(),
        src_node_id: identity.stable_node_id.clone(),
        src_node_tags: if tagged {
            identity.tags.clone()
        } else {
            Vec::new()
        },
        src_node_user_id: if tagged { 0 } else { identity.node_user_id },
        src_node_user: if tagged {
            String::new()
        } else {
            identity.login_name.clone()
        },
        kubernetes: Some(CastKubernetes {
            pod_name: ctx.request_info.name.clone(),
            namespace: ctx.request_info.namespace.clone(),
            container: joined("container", ""),
            session_type: kind.to_owned(),
        }),
        kubescribe: Some(CastExtension {
            session_id: ctx.request.id.clone(),
            event_key: ctx.event_key.clone().unwrap_or_default(),
            tty,
            ..CastExtension::default()
        }),
        ..CastHeader::default()
    }
}

/// Relays one recorded session and drives its upload.
struct RecordingRelay {
    protocol: Protocol,
    upload: SessionUpload,
    fail_open: bool,
    kind: &'static str,
}

#[async_trait]
impl SessionRelay for RecordingRelay {
    async fn relay(
        self: Box<Self>,
        ctx: SessionContext,
        mut client: UpgradedStream,
        mut upstream: UpgradedStream,
    ) {
        let RecordingRelay {
            protocol,
            upload,
            fail_open,
            kind,
        } = *self;
        let request_id = ctx.request.id.clone();
        // The recording starts now that the API server has upgraded: its
        // clock and header timestamp count from here.
        let query = k8s_request_parse::query::parse_query(&ctx.request.raw_query);
        let tty = query.get("tty").map(|v| v.join("")).as_deref() == Some("true");
        let header = cast_header(&ctx, kind, &query, tty);
        let (sink, lines) = channel_sink(SINK_LIMIT_BYTES);
        let pressure = sink.pressure();
        let recorder = SessionTap::new(TapOptions::new(protocol, tty), header, sink);
        let pump = tokio::spawn(pump_upload(upload, lines, request_id.clone()));
        // Output faster than the recorder stores it is slowed to its pace,
        // never dropped: a dead upload still fails the recording at once.
        let options = CopyOptions {
            end_on_recording_failure: !fail_open,
            backpressure: Some(pressure),
            ..CopyOptions::default()
        };
        let copied =
            copy_bidirectional_recorded(&mut client, &mut upstream, &recorder, &options).await;
        recorder.finish();
        let status = recorder.status();
        drop(recorder);
        match &copied {
            Ok(summary) if summary.ended_by_recording_failure.is_some() => tracing::warn!(
                request_id,
                error = ?summary.ended_by_recording_failure,
                "recording of kubectl {kind} session failed; failure mode is 'fail closed'; closing connection."
            ),
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(request_id, error = %e, "kubectl {kind} session ended with an error")
            }
        }
        if let Some(failure) = status.failure() {
            if fail_open {
                tracing::warn!(
                    request_id,
                    error = %failure,
                    lines_dropped = status.lines_dropped(),
                    "recording of kubectl {kind} session failed; failure mode is 'fail open'; the rest of the session was not recorded."
                );
            }
        }
        match pump.await {
            Ok(Ok(())) => ctx.metrics.recording_uploaded(),
            Ok(Err(e)) => {
                tracing::warn!(request_id, error = %e, "kubectl {kind} session upload failed")
            }
            Err(e) => tracing::warn!(request_id, error = %e, "session upload task failed"),
        }
    }
}

/// Why a session's upload did not complete.
#[derive(Debug, thiserror::Error)]
enum UploadFailure {
    /// A cast line could not be handed to the upload.
    #[error(transparent)]
    Push(#[from] PushError),
    /// The upload failed while the session ran, or when it was finished.
    #[error(transparent)]
    Upload(#[from] UploadError),
    /// The upload stopped without saying why.
    #[error("upload ended early")]
    EndedEarly,
}

/// Moves cast lines from the recorder into the upload until the recording
/// ends, then completes the upload. An upload that fails closes the line
/// channel, which the recorder reports as a recording failure at once (so a
/// fail-closed session ends).
async fn pump_upload(
    upload: SessionUpload,
    mut lines: CastLineReceiver,
    request_id: String,
) -> Result<(), UploadFailure> {
    let failure = loop {
        tokio::select! {
            line = lines.recv() => match line {
                Some(line) => {
                    if let Err(e) = upload.send(line).await {
                        break Some(UploadFailure::from(e));
                    }
                }
                None => break None,
            },
            err = upload.failed() => {
                break Some(err.map_or(UploadFailure::EndedEarly, UploadFailure::from));
            }
        }
    };
    if let Some(err) = failure {
        lines.close();
        return Err(err);
    }
    let summary = upload.finish().await?;
    tracing::info!(request_id, ?summary, "session recording uploaded");
    Ok(())
}
