//! The audit Policy in force (`--audit-policy FILE`, or the built-in
//! `Request` level for every request), its reload (SIGHUP, or the file
//! changing: its modification time and size are polled), and who a
//! request's user is for the Policy's `users` and `userGroups`.
//!
//! * **auth mode**: the user and groups the proxy impersonates, plus
//!   `system:authenticated` (kube-apiserver adds it to every authenticated
//!   user), exactly what kube-apiserver's audit Policy sees.
//! * **noauth mode**: the proxy does not know the Kubernetes user (the
//!   caller's own credentials reach the API server). The Policy's user is
//!   then the caller's tailnet identity: the login name (`alice@example.com`),
//!   or, for a tagged node, its node name (`ci.tail1234.ts.net`); its groups
//!   are the node's tags (`tag:ci`). No `system:authenticated` is added.
//!
//! An invalid new file keeps the Policy in force and logs why; reloads are
//! counted (`kubescribe_proxy_audit_policy_reloads_total{result}`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use audit_policy::{Attributes, AuditConfig, Policy, PolicyError};
use k8s_request_parse::RequestInfo;

use crate::caller::CallerInfo;
use crate::metrics::Metrics;
use crate::mode::Mode;

/// The group kube-apiserver adds to every authenticated user.
const AUTHENTICATED: &str = "system:authenticated";
/// How often the Policy file's modification time is looked at.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// The Policy file's identity for change detection: modification time and size.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// The audit Policy in force, swapped whole on reload.
#[derive(Debug)]
pub(crate) struct PolicyInForce {
    current: RwLock<Arc<Policy>>,
    file: Option<PathBuf>,
    stamp: Mutex<Stamp>,
}

impl PolicyInForce {
    /// `policy`, read from `file` (`None`: the built-in default).
    pub(crate) fn new(policy: Policy, file: Option<PathBuf>) -> Self {
        let stamp = file.as_deref().and_then(stamp);
        PolicyInForce {
            current: RwLock::new(Arc::new(policy)),
            file,
            stamp: Mutex::new(stamp),
        }
    }

    /// The Policy now.
    pub(crate) fn current(&self) -> Arc<Policy> {
        match self.current.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The decision for one request of `caller`.
    pub(crate) fn evaluate(
        &self,
        caller: &CallerInfo,
        info: &RequestInfo,
        mode: Mode,
    ) -> AuditConfig {
        let (user, groups) = policy_user(caller, mode);
        self.current().evaluate(&Attributes {
            user: &user,
            groups: &groups,
            request: info,
        })
    }

    /// Reads the file again and, when valid, puts it in force. `Ok(false)`:
    /// no file configured.
    pub(crate) fn reload(&self) -> Result<bool, PolicyError> {
        let Some(file) = &self.file else {
            return Ok(false);
        };
        let new_stamp = stamp(file);
        let policy = Policy::load(file)?;
        if let Ok(mut s) = self.stamp.lock() {
            *s = new_stamp;
        }
        match self.current.write() {
            Ok(mut p) => *p = Arc::new(policy),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(policy),
        }
        Ok(true)
    }

    /// Whether the file changed (modification time or size) since it was last read.
    fn changed(&self) -> bool {
        let Some(file) = &self.file else {
            return false;
        };
        let now = stamp(file);
        match self.stamp.lock() {
            Ok(mut s) if *s != now => {
                // Remembered even when the new file is invalid: one log line per change.
                *s = now;
                true
            }
            _ => false,
        }
    }

    /// Reloads, logging and counting the result.
    fn reload_logged(&self, why: &str, metrics: &Metrics) {
        match self.reload() {
            Ok(false) => {}
            Ok(true) => {
                metrics.policy_reloaded(true);
                tracing::info!(
                    "audit policy reloaded ({why}): {} rules",
                    self.current().rules().len()
                );
            }
            Err(e) => {
                metrics.policy_reloaded(false);
                tracing::error!(
                    "audit policy not reloaded ({why}), the previous one stays in force: {e}"
                );
            }
        }
    }
}

/// Reloads `policy` on SIGHUP and when its file changes, until `stop` resolves.
pub(crate) async fn watch(
    policy: Arc<PolicyInForce>,
    metrics: Metrics,
    stop: impl std::future::Future<Output = ()>,
) {
    if policy.file.is_none() {
        return;
    }
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("audit policy: no SIGHUP reload ({e}); the file is still polled");
            None
        }
    };
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            Some(()) = async {
                match hangup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            } => policy.reload_logged("SIGHUP", &metrics),
            _ = tick.tick() => {
                if policy.changed() {
                    policy.reload_logged("file changed", &metrics);
                }
            }
        }
    }
}

/// The user and groups the Policy's rules are matched against (see the module documentation).
pub(crate) fn policy_user(caller: &CallerInfo, mode: Mode) -> (String, Vec<String>) {
    match (&caller.impersonation, mode) {
        (Some(imp), Mode::Auth) => {
            let mut groups = imp.groups().to_vec();
            if !groups.iter().any(|g| g == AUTHENTICATED) {
                groups.push(AUTHENTICATED.to_owned());
            }
            (imp.user().to_owned(), groups)
        }
        _ => {
            let identity = &caller.identity;
            let user = if identity.is_tagged() {
                identity.node_name.clone()
            } else {
                identity.login_name.clone()
            };
            (user, identity.tags.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use identity::{Identity, RecordingRules};

    fn caller(identity: Identity) -> CallerInfo {
        CallerInfo {
            identity,
            source: Default::default(),
            policy: RecordingRules {
                recorder_addrs: Vec::new(),
                recorder_tags: Vec::new(),
                fail_open: true,
                enable_events: false,
            },
            impersonation: None,
        }
    }

    #[test]
    fn noauth_users_are_tailnet_identities() {
        let alice = caller(Identity {
            node_name: "alice-laptop.tail1234.ts.net".into(),
            login_name: "alice@example.com".into(),
            ..Default::default()
        });
        assert_eq!(
            policy_user(&alice, Mode::Noauth),
            ("alice@example.com".to_owned(), vec![])
        );
        let ci = caller(Identity {
            node_name: "ci.tail1234.ts.net".into(),
            login_name: "tagged-devices".into(),
            tags: vec!["tag:ci".into()],
            ..Default::default()
        });
        assert_eq!(
            policy_user(&ci, Mode::Noauth),
            ("ci.tail1234.ts.net".to_owned(), vec!["tag:ci".to_owned()])
        );
    }

    #[test]
    fn an_invalid_reload_keeps_the_policy_in_force() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("policy.yaml");
        let valid = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: Metadata\n";
        std::fs::write(&path, valid).expect("write");
        let held = PolicyInForce::new(Policy::load(&path).expect("valid"), Some(path.clone()));
        assert!(!held.changed());
        std::fs::write(&path, "kind: Policy\nrules: 7\n").expect("write");
        assert!(held.changed());
        assert!(held.reload().is_err());
        assert_eq!(held.current().rules().len(), 1);
        assert_eq!(
            PolicyInForce::new(Policy::request_level_for_all(), None)
                .reload()
                .ok(),
            Some(false)
        );
    }
}
