//! `pods/exec` and `pods/attach`: protocol negotiation (WebSocket `v4`/`v5.channel.k8s.io`
//! or SPDY/3.1), a real process per session, and the final exit `Status`.
//!
//! `attach` connects to the container's long-running main process (see [`attach`]).

pub mod spdy;
pub mod ws;

use std::sync::Arc;

use http::{header, Request, Response};
use hyper::body::Incoming;
use serde_json::{json, Value};

use crate::containers::attach;
use crate::containers::process::{self, Exit, SessionOptions};
use crate::http_util::{Body, Query};
use crate::state::SimState;
use crate::status::ApiError;

/// Channel protocols the simulator speaks, most preferred first.
pub const PROTOCOLS: &[&str] = &["v5.channel.k8s.io", "v4.channel.k8s.io"];

/// A parsed exec/attach request.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    /// Session options (command, tty, which streams).
    pub options: SessionOptions,
    /// Pod namespace.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// Container name.
    pub container: String,
    /// Flips when the simulator shuts down: the session ends and its process is killed.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// For attach: the registry of main processes, the pod's uid and whether the
    /// container has a tty. `None` for exec.
    pub attach: Option<(Arc<attach::AttachRegistry>, String, bool)>,
}

impl ExecRequest {
    /// Starts the session: a new process for exec, the container's main process for attach.
    pub fn start(&self, sandbox: &std::path::Path) -> process::Session {
        match &self.attach {
            Some((registry, uid, tty)) => {
                registry.attach(uid, &self.container, *tty, sandbox, &self.pod)
            }
            None => process::spawn(&self.options, sandbox, &self.pod),
        }
    }
}

/// The error-channel `Status` for an exit, as the kubelet writes it.
pub fn exit_status(exit: &Exit) -> Value {
    match exit {
        Exit::Code(0) => json!({"metadata": {}, "status": "Success"}),
        Exit::Code(code) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: exit status {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Exit::StartFailed(message) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: {message}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": "127"}]},
        }),
    }
}

fn parse_request(
    pod: &Value,
    query: &Query,
    attach: bool,
    state: &SimState,
) -> Result<ExecRequest, ApiError> {
    let name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let namespace = pod
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let containers: Vec<&Value> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|c| c.iter().collect())
        .unwrap_or_default();
    let container = match query.get("container").filter(|c| !c.is_empty()) {
        Some(c) => containers
            .iter()
            .find(|x| x["name"] == c)
            .map(|_| c.to_string())
            .ok_or_else(|| {
                ApiError::bad_request(format!("container {c} is not valid for pod {name}"))
            })?,
        None => containers
            .first()
            .and_then(|c| c["name"].as_str())
            .map(str::to_string)
            .ok_or_else(|| ApiError::bad_request(format!("pod {name} has no containers")))?,
    };
    let command = if attach {
        vec!["sh".to_string(), "-i".to_string()]
    } else {
        query.all("command")
    };
    if command.is_empty() {
        return Err(ApiError::bad_request("you must specify at least 1 command"));
    }
    let tty = query.flag("tty");
    let options = SessionOptions {
        command,
        tty,
        stdin: query.flag("stdin"),
        stdout: query.flag("stdout"),
        stderr: query.flag("stderr") && !tty,
        size: (80, 24),
    };
    if !options.stdin && !options.stdout && !options.stderr {
        return Err(ApiError::bad_request(
            "you must specify at least one of stdin, stdout, stderr",
        ));
    }
    let attach = attach.then(|| {
        let uid = pod
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let container_tty = containers
            .iter()
            .find(|c| c["name"] == container.as_str())
            .is_some_and(|c| c["tty"] == serde_json::json!(true));
        (state.attach.clone(), uid, container_tty)
    });
    Ok(ExecRequest {
        shutdown: state.shutdown.clone(),
        attach,
        options,
        namespace,
        pod: name,
        container,
    })
}

fn header_values(req: &Request<Incoming>, name: &str) -> Vec<String> {
    req.headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

/// Picks the channel protocol from the client's offer.
pub fn negotiate(offered: &[String]) -> Option<&'static str> {
    PROTOCOLS
        .iter()
        .copied()
        .find(|p| offered.iter().any(|o| o == p))
}

/// Answers an exec/attach request by upgrading the connection.
pub async fn handle(
    state: Arc<SimState>,
    req: Request<Incoming>,
    pod: Value,
    query: &Query,
    attach: bool,
) -> Result<Response<Body>, ApiError> {
    let request = parse_request(&pod, query, attach, &state)?;
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let sandbox = state.sandbox.join(&request.namespace).join(&request.pod);
    if upgrade == "websocket" {
        let offered = header_values(&req, "sec-websocket-protocol");
        let protocol = negotiate(&offered).ok_or_else(|| {
            ApiError::bad_request(format!(
                "unsupported WebSocket subprotocols {offered:?}; this server speaks {PROTOCOLS:?}"
            ))
        })?;
        ws::upgrade(req, protocol, request, sandbox)
    } else if upgrade.starts_with("spdy/3.1") {
        let offered = header_values(&req, "x-stream-protocol-version");
        let protocol = negotiate(&offered).ok_or_else(|| {
            ApiError::forbidden(format!("unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports {PROTOCOLS:?}"))
        })?;
        spdy::upgrade(req, protocol, request, sandbox)
    } else {
        Err(ApiError::bad_request("Upgrade request required"))
    }
}

/// Parses a terminal-size message (`{"Width":W,"Height":H}`, keys matched
/// case-insensitively as Go does) into (columns, rows).
pub fn parse_resize(data: &[u8]) -> Option<(u16, u16)> {
    let value: Value = serde_json::from_slice(data).ok()?;
    let map = value.as_object()?;
    let field = |name: &str| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_u64())
            .and_then(|v| u16::try_from(v).ok())
    };
    Some((field("width")?, field("height")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_messages() {
        assert_eq!(
            parse_resize(br#"{"Width":120,"Height":40}"#),
            Some((120, 40))
        );
        assert_eq!(parse_resize(br#"{"width":80,"height":24}"#), Some((80, 24)));
        assert_eq!(parse_resize(b"{\"Width\":99999999,\"Height\":1}"), None);
        assert_eq!(parse_resize(b"nope"), None);
    }

    #[test]
    fn exit_statuses_follow_kubelet_conventions() {
        assert_eq!(exit_status(&Exit::Code(0))["status"], "Success");
        let failed = exit_status(&Exit::Code(3));
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(
            failed["details"]["causes"][0],
            json!({"reason": "ExitCode", "message": "3"})
        );
    }
}
