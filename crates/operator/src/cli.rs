//! The command line: `kubescribe-operator` (run the controllers) and `kubescribe-operator crds`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use service::LogFormat;

/// kubescribe-operator: keeps Recorder and APIServerProxy resources (kubescribe.dev/v1alpha1) true:
/// their workloads, Services, ServiceAccounts and impersonation RBAC.
#[derive(Debug, Parser)]
#[command(name = "kubescribe-operator", version, about, long_about = None)]
pub struct Cli {
    /// A subcommand; without one, the operator runs.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// How the operator runs.
    #[command(flatten)]
    pub run: RunArgs,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the CustomResourceDefinitions (YAML), or write one file per CRD into a directory.
    Crds(CrdsArgs),
}

/// `kubescribe-operator crds`.
#[derive(Debug, Args)]
pub struct CrdsArgs {
    /// Write `<crd name>.yaml` files into this directory instead of printing them.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

/// How the operator runs.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The kubeconfig to use; without it (and without `KUBECONFIG`), the in-cluster service account.
    #[arg(long, env = "KUBECONFIG", value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// The kubeconfig context to use (default: its current context).
    #[arg(long, env = "KUBESCRIBE_CONTEXT", value_name = "NAME")]
    pub context: Option<String>,

    /// Act only in this namespace: watch, reconcile and clean up the Recorders and
    /// APIServerProxies there (and their children) and nothing elsewhere, so that a Role in it is
    /// all the RBAC needed besides the impersonation RBAC of auth-mode proxies; the Lease is
    /// kept there too unless --lease-namespace says otherwise. Default: every namespace.
    #[arg(long, env = "KUBESCRIBE_NAMESPACE", value_name = "NAMESPACE")]
    pub namespace: Option<String>,

    /// Where `/metrics` (Prometheus) and `/healthz` are served.
    #[arg(
        long,
        env = "KUBESCRIBE_METRICS_ADDR",
        value_name = "ADDR",
        default_value = "127.0.0.1:9104"
    )]
    pub metrics_addr: SocketAddr,

    /// Take part in leader election on a coordination.k8s.io Lease, so that of several replicas only
    /// the one holding the Lease acts (`false`: act at once, for a single replica).
    #[arg(long, env = "KUBESCRIBE_LEADER_ELECT", value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,

    /// The Lease's name.
    #[arg(
        long,
        env = "KUBESCRIBE_LEASE_NAME",
        value_name = "NAME",
        default_value = "kubescribe-operator"
    )]
    pub lease_name: String,

    /// The Lease's namespace (in a pod: its own namespace, from the downward API); default:
    /// --namespace when given, else `default`.
    #[arg(long, env = "POD_NAMESPACE", value_name = "NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// Seconds a leader's hold on the Lease lasts without renewal; when a leader dies, another
    /// replica takes over within about this long (a leader that stops gracefully releases it at once).
    #[arg(long, env = "KUBESCRIBE_LEASE_DURATION", value_name = "SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..=3600))]
    pub lease_duration: u64,

    /// Seconds before the hold expires at which the leader renews it (less than --lease-duration).
    #[arg(long, env = "KUBESCRIBE_LEASE_GRACE", value_name = "SECONDS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3599))]
    pub lease_grace: u64,

    /// This replica's identity in the Lease (in a pod: its name, from the downward API); default:
    /// the host name and process id.
    #[arg(long, env = "POD_NAME", value_name = "NAME")]
    pub identity: Option<String>,

    /// Log output format (`RUST_LOG` sets the level).
    #[arg(
        long,
        env = "KUBESCRIBE_LOG_FORMAT",
        value_enum,
        value_name = "FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,
}

impl RunArgs {
    /// The Lease's namespace: `--lease-namespace`, else `--namespace`, else `default`.
    pub fn effective_lease_namespace(&self) -> &str {
        self.lease_namespace
            .as_deref()
            .or(self.namespace.as_deref())
            .unwrap_or("default")
    }
}
