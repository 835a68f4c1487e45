//! The real kubectl (`test_support::peers::kubectl`) as the cluster administrator of a test's
//! real kube-apiserver.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use test_support::apiserver::{ControlPlane, ADMIN};
use test_support::peers;

use crate::run::{expect_success, with_deadline};

/// How long one kubectl run may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// kubectl with the administrator's kubeconfig of one control plane.
#[derive(Debug, Clone)]
pub struct Kubectl {
    program: PathBuf,
    kubeconfig: PathBuf,
}

impl Kubectl {
    /// kubectl as [`ADMIN`] of `plane`; panics naming `cargo xtask peers` when kubectl is not
    /// installed.
    pub fn new(plane: &ControlPlane) -> Self {
        Self {
            program: peers::kubectl().unwrap_or_else(|e| panic!("{e}")),
            kubeconfig: plane.kubeconfig(&ADMIN),
        }
    }

    /// The administrator's kubeconfig.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// `kubectl --kubeconfig …`, for a caller to add arguments and options (a working directory).
    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command.arg("--kubeconfig").arg(&self.kubeconfig);
        command
    }

    /// Runs `kubectl --kubeconfig … ARGS` to completion (at most two minutes).
    pub fn run(&self, args: &[&str]) -> Output {
        with_deadline(self.command().args(args), COMMAND_TIMEOUT).expect("kubectl runs")
    }

    /// [`Kubectl::run`], its standard output, panicking with the output unless it succeeded.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = expect_success(self.run(args), &format!("kubectl {}", args.join(" ")));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}
