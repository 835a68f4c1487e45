//! `audit-sink`: an audit webhook receiver that decodes every POSTed
//! `EventList` strictly with `k8s.io/apiserver/pkg/apis/audit/v1` (answering
//! 400 to anything else) and appends the events to a JSON lines file; and
//! the same strict check of JSON lines files (see
//! `tests/peers-go/apiserver/auditsink`). For the recorder's audit export.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::{http, peers, Error};

/// A running `audit-sink serve`; killed when dropped.
pub struct AuditSink {
    child: Child,
    addr: SocketAddr,
    out: PathBuf,
}

impl AuditSink {
    /// Starts a receiver on a free loopback port, appending to `out`.
    pub fn start(out: &Path) -> Result<Self, Error> {
        Self::start_on(out, "127.0.0.1:0")
    }

    /// Starts a receiver on `listen` (to come back on the address of one
    /// that was stopped), appending to `out`.
    pub fn start_on(out: &Path, listen: &str) -> Result<Self, Error> {
        let program = peers::audit_sink()?;
        let mut child = Command::new(&program)
            .args(["serve", "-listen", listen, "-out"])
            .arg(out)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|source| Error::Spawn {
                name: "audit-sink".into(),
                program,
                source,
            })?;
        let mut line = String::new();
        let read = match child.stdout.take() {
            Some(stdout) => BufReader::new(stdout).read_line(&mut line).map(|_| ()),
            None => Ok(()),
        };
        let addr = read
            .ok()
            .and_then(|()| line.trim().strip_prefix("listening on ")?.parse().ok());
        let Some(addr) = addr else {
            let _ = child.kill();
            let status = child.wait().map_err(Error::io("waiting for audit-sink"))?;
            return Err(Error::Exited {
                name: "audit-sink".into(),
                status,
                waiting_for: format!("listening on {listen}"),
                log_tail: line,
            });
        };
        Ok(Self {
            child,
            addr,
            out: out.to_owned(),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Writes a kubeconfig-style webhook file (kube-apiserver's
    /// `--audit-webhook-config-file` format) at `path` naming this receiver,
    /// with a bearer token the receiver does not check.
    pub fn webhook_config(&self, path: &Path) -> Result<(), Error> {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: siem\n  cluster:\n    server: http://{}/audit/ingest\n\
             users:\n- name: exporter\n  user:\n    token: not-checked-by-audit-sink\n\
             contexts:\n- name: default\n  context:\n    cluster: siem\n    user: exporter\ncurrent-context: default\n",
            self.addr
        );
        std::fs::write(path, text).map_err(Error::io(format!("writing {}", path.display())))
    }

    /// The events received so far, in arrival order.
    pub fn events(&self) -> Result<Vec<Value>, Error> {
        json_lines(&self.out)
    }

    /// Answer 500 to every batch from now on.
    pub fn fail(&self) -> Result<(), Error> {
        self.control("/control/fail").map(drop)
    }

    /// Wait `ms` milliseconds before each answer.
    pub fn stall(&self, ms: u64) -> Result<(), Error> {
        self.control(&format!("/control/stall?ms={ms}")).map(drop)
    }

    /// Back to answering at once, 200 for valid batches.
    pub fn ok(&self) -> Result<(), Error> {
        self.control("/control/ok").map(drop)
    }

    /// `{"batches":N,"events":N,"rejected":N}`: batches and events
    /// accepted, and batches that did not decode strictly (answered 400).
    pub fn stats(&self) -> Result<Value, Error> {
        self.control("/control/stats")
    }

    /// Batches that did not decode strictly (answered 400).
    pub fn rejected(&self) -> Result<u64, Error> {
        Ok(self.stats()?["rejected"].as_u64().unwrap_or(u64::MAX))
    }

    fn control(&self, path: &str) -> Result<Value, Error> {
        let reply = http::request(self.addr, None, "POST", path, &[], b"")?;
        if !(200..300).contains(&reply.status) {
            return Err(Error::Http {
                from: format!("audit-sink {path}"),
                problem: format!("status {}", reply.status),
            });
        }
        if reply.body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&reply.body).map_err(|source| Error::Json {
            what: format!("audit-sink {path}"),
            text: String::from_utf8_lossy(&reply.body).into_owned(),
            source,
        })
    }

    /// Kills it (a receiver that goes away).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for AuditSink {
    fn drop(&mut self) {
        self.stop();
    }
}

fn json_lines(path: &Path) -> Result<Vec<Value>, Error> {
    if path.exists() {
        crate::jsonl::read(path)
    } else {
        Ok(Vec::new())
    }
}

/// Every file in `dir` (the recorder's `--export-jsonl`), in name order,
/// each first decoded strictly by `audit-sink check`; their events in order.
/// A missing `dir` holds none.
pub fn jsonl_events(dir: &Path) -> Result<Vec<Value>, Error> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.flatten().map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    let program = peers::audit_sink()?;
    let mut events = Vec::new();
    for file in files {
        let output = Command::new(&program)
            .arg("check")
            .arg(&file)
            .output()
            .map_err(|source| Error::Spawn {
                name: "audit-sink check".into(),
                program: program.clone(),
                source,
            })?;
        if !output.status.success() {
            return Err(Error::Command {
                what: format!("audit-sink check {}", file.display()),
                status: output.status.to_string(),
                output: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        events.extend(json_lines(&file)?);
    }
    Ok(events)
}
