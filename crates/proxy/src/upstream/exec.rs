//! Exec credential plugins (`client.authentication.k8s.io/v1` and `v1beta1`),
//! the way client-go runs them, configured by kube-rs's [`ExecConfig`]:
//!
//! - run when a request needs a credential and none is cached; the
//!   credential is cached until its `expirationTimestamp` (for ever without
//!   one), and dropped when the API server answers 401 to it, so the next
//!   request runs the plugin again;
//! - `args` and `env` as the kubeconfig says, on top of the proxy's own
//!   environment, and `KUBERNETES_EXEC_INFO` (`interactive: false`, the
//!   cluster with `provideClusterInfo`); stdin is empty and never a terminal;
//! - one run at a time; a run that takes longer than the timeout is killed;
//!   a failure (its exit status and stderr) is logged once until the plugin
//!   works again, and answered to every request that needed it within
//!   [`RETRY_AFTER_FAILURE`] without running the plugin again.
//!
//! kube-rs runs plugins itself too, but synchronously, without a bound on
//! their run time and with no way to drop a credential the API server
//! refused; hence this module.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use http::HeaderValue;
use kube::config::ExecConfig;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::token;

/// After a failed run, requests get that failure without a new run for this long.
pub(crate) const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// The most of a plugin's stdout read (an ExecCredential is a few KiB).
const MAX_OUTPUT: u64 = 1024 * 1024;

/// The most of a plugin's stderr quoted in an error.
const MAX_STDERR_QUOTED: usize = 2000;

/// A credential a plugin gave.
#[derive(Debug)]
pub(crate) struct Issued {
    /// `Bearer <token>`, if the plugin gave a token.
    pub(crate) authorization: Option<HeaderValue>,
    /// PEM client certificate and key, if the plugin gave them.
    pub(crate) identity: Option<Identity>,
    /// `expirationTimestamp` (None: valid until the API server refuses it).
    pub(crate) expires: Option<SystemTime>,
    /// Which run gave it (1, 2, …).
    pub(crate) serial: u64,
}

/// A client certificate and key (PEM) from a plugin.
#[derive(Debug)]
pub(crate) struct Identity {
    /// The certificate chain.
    pub(crate) cert_pem: String,
    /// The private key.
    pub(crate) key_pem: String,
}

impl Issued {
    fn valid(&self) -> bool {
        self.expires.is_none_or(|at| SystemTime::now() < at)
    }
}

/// Why a plugin gave no credential.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum ExecError {
    /// The command could not be started.
    #[error("exec credential plugin {command} could not be started: {reason}{hint}")]
    Start {
        /// The command.
        command: String,
        /// Why.
        reason: String,
        /// The kubeconfig's `installHint`, prefixed, or empty.
        hint: String,
    },
    /// It ran longer than the timeout and was killed.
    #[error("exec credential plugin {command} did not finish within {after:?} and was killed")]
    TimedOut {
        /// The command.
        command: String,
        /// The timeout.
        after: Duration,
    },
    /// It exited unsuccessfully.
    #[error("exec credential plugin {command} failed ({status}): {stderr}")]
    Failed {
        /// The command.
        command: String,
        /// Its exit status.
        status: String,
        /// The end of its stderr.
        stderr: String,
    },
    /// Its output is not a usable ExecCredential.
    #[error("exec credential plugin {command} gave no usable credential: {reason}")]
    Output {
        /// The command.
        command: String,
        /// What is wrong with the output.
        reason: String,
    },
}

/// What a plugin prints.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExecCredential {
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    status: Option<ExecCredentialStatus>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExecCredentialStatus {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    expiration_timestamp: Option<String>,
    #[serde(default)]
    client_certificate_data: Option<String>,
    #[serde(default)]
    client_key_data: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    issued: Option<Arc<Issued>>,
    /// The last failure, while no run has succeeded since.
    failure: Option<(Instant, ExecError)>,
    runs: u64,
}

/// One exec credential plugin, its cached credential and its failures.
#[derive(Debug)]
pub(crate) struct ExecPlugin {
    config: ExecConfig,
    command: String,
    api_version: String,
    timeout: Duration,
    /// Held while the plugin runs: one run at a time.
    running: tokio::sync::Mutex<()>,
    state: Mutex<State>,
}

impl ExecPlugin {
    /// A plugin as the kubeconfig describes it (checked when the spec was
    /// made: a command, a known `apiVersion`, not `interactiveMode: Always`).
    pub(crate) fn new(config: ExecConfig, timeout: Duration) -> Self {
        ExecPlugin {
            command: config.command.clone().unwrap_or_default(),
            api_version: config.api_version.clone().unwrap_or_default(),
            config,
            timeout,
            running: tokio::sync::Mutex::new(()),
            state: Mutex::new(State::default()),
        }
    }

    /// `command (apiVersion)`, for the start-up log.
    pub(crate) fn describe(&self) -> String {
        format!("{} ({})", self.command, self.api_version)
    }

    fn cached(&self) -> Option<Arc<Issued>> {
        let state = self.state.lock().ok()?;
        state.issued.clone().filter(|i| i.valid())
    }

    fn recent_failure(&self) -> Option<ExecError> {
        let state = self.state.lock().ok()?;
        match &state.failure {
            Some((at, e)) if at.elapsed() < RETRY_AFTER_FAILURE => Some(e.clone()),
            _ => None,
        }
    }

    /// The cached credential, or a fresh one from a run of the plugin.
    pub(crate) async fn credential(&self) -> Result<Arc<Issued>, ExecError> {
        if let Some(issued) = self.cached() {
            return Ok(issued);
        }
        let _running = self.running.lock().await;
        // Another request may have run the plugin while this one waited.
        if let Some(issued) = self.cached() {
            return Ok(issued);
        }
        if let Some(e) = self.recent_failure() {
            return Err(e);
        }
        let serial = self.state.lock().map(|s| s.runs + 1).unwrap_or(1);
        let result = self.run(serial).await;
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.runs = serial;
        match result {
            Ok(issued) => {
                if state.failure.take().is_some() {
                    tracing::info!(plugin = %self.command, "exec credential plugin works again");
                }
                tracing::debug!(plugin = %self.command, run = serial, expires = ?issued.expires, "exec credential plugin gave a credential");
                let issued = Arc::new(issued);
                state.issued = Some(issued.clone());
                Ok(issued)
            }
            Err(e) => {
                if state.failure.is_none() {
                    tracing::error!(
                        "{e}; requests that need the proxy's credentials are answered 502 until it works again (logged once)"
                    );
                }
                state.issued = None;
                state.failure = Some((Instant::now(), e.clone()));
                Err(e)
            }
        }
    }

    /// The API server answered 401 to the credential of run `serial`: drop it
    /// (if still cached), so the next request runs the plugin again.
    pub(crate) fn rejected(&self, serial: u64) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if state.issued.as_ref().is_some_and(|i| i.serial == serial) {
            state.issued = None;
            tracing::info!(plugin = %self.command, "the API server answered 401 to the exec plugin's credential; the plugin runs again for the next request");
        }
    }

    async fn run(&self, serial: u64) -> Result<Issued, ExecError> {
        let mut cmd = tokio::process::Command::new(&self.command);
        if let Some(args) = &self.config.args {
            cmd.args(args);
        }
        for var in self.config.env.iter().flatten() {
            if let (Some(name), Some(value)) = (var.get("name"), var.get("value")) {
                cmd.env(name, value);
            }
        }
        let mut spec = serde_json::json!({ "interactive": false });
        if self.config.provide_cluster_info {
            if let Some(cluster) = &self.config.cluster {
                spec["cluster"] = serde_json::to_value(cluster).unwrap_or_default();
            }
        }
        let info = serde_json::json!({
            "apiVersion": self.api_version,
            "kind": "ExecCredential",
            "spec": spec,
        });
        cmd.env("KUBERNETES_EXEC_INFO", info.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| ExecError::Start {
            command: self.command.clone(),
            reason: e.to_string(),
            hint: self
                .config
                .install_hint
                .as_deref()
                .map(|h| format!(" ({})", h.trim()))
                .unwrap_or_default(),
        })?;
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let finished = tokio::time::timeout(self.timeout, async {
            tokio::join!(read_some(stdout), read_some(stderr), child.wait())
        })
        .await;
        let Ok((stdout, stderr, status)) = finished else {
            let _ = child.kill().await;
            return Err(ExecError::TimedOut {
                command: self.command.clone(),
                after: self.timeout,
            });
        };
        let status = status.map_err(|e| ExecError::Start {
            command: self.command.clone(),
            reason: e.to_string(),
            hint: String::new(),
        })?;
        if !status.success() {
            return Err(ExecError::Failed {
                command: self.command.clone(),
                status: status.to_string(),
                stderr: quote_stderr(&stderr),
            });
        }
        self.parse(&stdout, serial)
    }

    /// Checks the output as client-go does and makes the credential.
    fn parse(&self, stdout: &[u8], serial: u64) -> Result<Issued, ExecError> {
        let bad = |reason: String| ExecError::Output {
            command: self.command.clone(),
            reason,
        };
        // Plugins print JSON; client-go decodes YAML too.
        let cred: ExecCredential = serde_json::from_slice(stdout)
            .or_else(|json| serde_yaml_ng::from_slice(stdout).map_err(|_| json))
            .map_err(|e| bad(format!("not an ExecCredential: {e}")))?;
        if cred.kind.as_deref().is_some_and(|k| k != "ExecCredential") {
            return Err(bad(format!("kind is {:?}, not ExecCredential", cred.kind)));
        }
        if cred.api_version.as_deref() != Some(self.api_version.as_str()) {
            return Err(bad(format!(
                "apiVersion is {:?}, but the kubeconfig asks for {}",
                cred.api_version.unwrap_or_default(),
                self.api_version
            )));
        }
        let status = cred.status.ok_or_else(|| bad("no status".into()))?;
        let expires = match status.expiration_timestamp.as_deref() {
            None | Some("") => None,
            Some(t) => Some(
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                    .map(SystemTime::from)
                    .map_err(|e| bad(format!("expirationTimestamp {t:?}: {e}")))?,
            ),
        };
        let nonempty = |s: Option<String>| s.filter(|s| !s.is_empty());
        let identity = match (
            nonempty(status.client_certificate_data),
            nonempty(status.client_key_data),
        ) {
            (Some(cert_pem), Some(key_pem)) => Some(Identity { cert_pem, key_pem }),
            (None, None) => None,
            _ => {
                return Err(bad(
                    "only one of clientCertificateData and clientKeyData".into()
                ))
            }
        };
        let authorization = match nonempty(status.token) {
            Some(t) => Some(
                token::bearer(&t)
                    .ok_or_else(|| bad("the token is not a valid header value".into()))?,
            ),
            None => None,
        };
        if authorization.is_none() && identity.is_none() {
            return Err(bad(
                "neither a token nor a client certificate and key".into()
            ));
        }
        Ok(Issued {
            authorization,
            identity,
            expires,
            serial,
        })
    }
}

/// Reads up to [`MAX_OUTPUT`] bytes of a child's pipe.
async fn read_some(pipe: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(pipe) = pipe {
        let _ = pipe.take(MAX_OUTPUT).read_to_end(&mut out).await;
    }
    out
}

/// The end of a plugin's stderr, on one line.
fn quote_stderr(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        return "(nothing on stderr)".into();
    }
    let start = text
        .char_indices()
        .map(|(i, _)| i)
        .find(|&i| text.len() - i <= MAX_STDERR_QUOTED)
        .unwrap_or(0);
    let prefix = if start > 0 { "…" } else { "" };
    format!("{prefix}{}", &text[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(script: &str, api_version: &str, timeout: Duration) -> ExecPlugin {
        ExecPlugin::new(
            ExecConfig {
                api_version: Some(api_version.into()),
                command: Some("sh".into()),
                args: Some(vec!["-c".into(), script.into()]),
                env: Some(vec![[
                    ("name".to_string(), "GREETING".to_string()),
                    ("value".to_string(), "hello".to_string()),
                ]
                .into_iter()
                .collect()]),
                ..ExecConfig::default()
            },
            timeout,
        )
    }

    const V1: &str = "client.authentication.k8s.io/v1";

    #[tokio::test]
    async fn token_args_env_and_exec_info() {
        // The token is the env var, stdin's content and the exec info's interactive flag.
        let p = plugin(
            r#"in=$(cat); printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s-%s-%s"}}' "$GREETING" "${in:-empty}" "$(echo "$KUBERNETES_EXEC_INFO" | grep -c '"interactive":false')""#,
            V1,
            Duration::from_secs(20),
        );
        let issued = p.credential().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(issued.authorization, token::bearer("hello-empty-1"));
        assert_eq!(issued.expires, None);
        assert_eq!(issued.serial, 1);
        // Cached: no second run.
        assert_eq!(p.credential().await.map(|i| i.serial).ok(), Some(1));
        // A 401 to it: the next request runs the plugin again.
        p.rejected(1);
        assert_eq!(p.credential().await.map(|i| i.serial).ok(), Some(2));
        // A 401 to an older credential changes nothing.
        p.rejected(1);
        assert_eq!(p.credential().await.map(|i| i.serial).ok(), Some(2));
    }

    #[tokio::test]
    async fn expired_credentials_are_refreshed() {
        let p = plugin(
            r#"printf '{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","status":{"token":"t","expirationTimestamp":"2000-01-01T00:00:00Z"}}'"#,
            "client.authentication.k8s.io/v1beta1",
            Duration::from_secs(20),
        );
        assert_eq!(p.credential().await.map(|i| i.serial).ok(), Some(1));
        assert_eq!(p.credential().await.map(|i| i.serial).ok(), Some(2));
    }

    #[tokio::test]
    async fn failures_are_clear_and_bounded() {
        let p = plugin(
            "echo 'no cloud login' >&2; exit 3",
            V1,
            Duration::from_secs(20),
        );
        let e = p.credential().await.err().map(|e| e.to_string());
        let e = e.unwrap_or_default();
        assert!(
            e.contains("exit status: 3") && e.contains("no cloud login"),
            "{e}"
        );

        let p = plugin("exec sleep 600", V1, Duration::from_millis(300));
        let e = p.credential().await.err().map(|e| e.to_string());
        assert!(e
            .unwrap_or_default()
            .contains("did not finish within 300ms"));

        for (script, expect) in [
            ("echo '{}'", "apiVersion is \"\""),
            (
                r#"echo '{"apiVersion":"client.authentication.k8s.io/v1beta1","status":{"token":"t"}}'"#,
                "but the kubeconfig asks for client.authentication.k8s.io/v1",
            ),
            (
                r#"echo '{"apiVersion":"client.authentication.k8s.io/v1"}'"#,
                "no status",
            ),
            (
                r#"echo '{"apiVersion":"client.authentication.k8s.io/v1","status":{}}'"#,
                "neither a token",
            ),
            (
                r#"echo '{"apiVersion":"client.authentication.k8s.io/v1","status":{"clientKeyData":"k"}}'"#,
                "only one of",
            ),
            (
                r#"echo '{"apiVersion":"client.authentication.k8s.io/v1","status":{"token":"t","expirationTimestamp":"soon"}}'"#,
                "expirationTimestamp \"soon\"",
            ),
            ("echo 'not: [json'", "not an ExecCredential"),
        ] {
            let p = plugin(script, V1, Duration::from_secs(20));
            let e = p.credential().await.err().map(|e| e.to_string());
            let e = e.unwrap_or_default();
            assert!(e.contains(expect), "{script}: {e}");
        }
    }

    #[tokio::test]
    async fn yaml_output_and_certificates() {
        let p = plugin(
            "printf 'apiVersion: client.authentication.k8s.io/v1\\nkind: ExecCredential\\nstatus:\\n  clientCertificateData: CERT\\n  clientKeyData: KEY\\n'",
            V1,
            Duration::from_secs(20),
        );
        let issued = p.credential().await.unwrap_or_else(|e| panic!("{e}"));
        let id = issued.identity.as_ref();
        assert_eq!(id.map(|i| i.cert_pem.as_str()), Some("CERT"));
        assert_eq!(id.map(|i| i.key_pem.as_str()), Some("KEY"));
        assert!(issued.authorization.is_none());
    }

    #[tokio::test]
    async fn a_missing_command_names_the_install_hint() {
        let p = ExecPlugin::new(
            ExecConfig {
                api_version: Some(V1.into()),
                command: Some("/nonexistent/kubescribe-plugin".into()),
                install_hint: Some("install it with your package manager".into()),
                ..ExecConfig::default()
            },
            Duration::from_secs(5),
        );
        let e = p.credential().await.err().map(|e| e.to_string());
        let e = e.unwrap_or_default();
        assert!(
            e.contains("could not be started") && e.contains("install it with"),
            "{e}"
        );
    }
}
