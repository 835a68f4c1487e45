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

    /// Also serve the API server proxy in this process (Tailscale's in-process mode): kubescribe-proxy
    /// with the --proxy-arg flags, upstream credentials the operator's own (its --kubeconfig and
    /// --context, else the in-cluster service account) unless the flags name others. Every replica
    /// serves, leading or not; the operator stops when the proxy does.
    #[arg(long, env = "KUBESCRIBE_PROXY_IN_PROCESS", default_value_t = false)]
    pub proxy_in_process: bool,

    /// A kubescribe-proxy flag for --proxy-in-process (repeatable, one flag or value each, e.g.
    /// `--proxy-arg=--listen=0.0.0.0:8443`); the proxy's README lists them.
    #[arg(
        long = "proxy-arg",
        value_name = "FLAG",
        allow_hyphen_values = true,
        requires = "proxy_in_process"
    )]
    pub proxy_args: Vec<String>,

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
    /// The in-process proxy's arguments (--proxy-in-process), parsed as `kubescribe-proxy` parses
    /// its own: the --proxy-arg flags, after the operator's --kubeconfig and --context unless they
    /// name their own; `None` without --proxy-in-process.
    pub fn in_process_proxy(&self) -> Result<Option<kubescribe_proxy::ServeArgs>, clap::Error> {
        if !self.proxy_in_process {
            return Ok(None);
        }
        let names = |flag: &str| {
            self.proxy_args
                .iter()
                .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
        };
        let mut argv = vec!["kubescribe-proxy".to_owned()];
        if let (Some(path), false) = (&self.kubeconfig, names("--kubeconfig")) {
            argv.push(format!("--kubeconfig={}", path.display()));
        }
        if let (Some(context), false) = (&self.context, names("--context")) {
            argv.push(format!("--context={context}"));
        }
        argv.extend(self.proxy_args.iter().cloned());
        let cli = kubescribe_proxy::Cli::try_parse_from(argv)?;
        match cli.command {
            None => Ok(Some(cli.serve)),
            Some(_) => Err(clap::Error::raw(
                clap::error::ErrorKind::InvalidSubcommand,
                "--proxy-arg: flags only, no kubescribe-proxy subcommand",
            )),
        }
    }

    /// The Lease's namespace: `--lease-namespace`, else `--namespace`, else `default`.
    pub fn effective_lease_namespace(&self) -> &str {
        self.lease_namespace
            .as_deref()
            .or(self.namespace.as_deref())
            .unwrap_or("default")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn run_args(args: &[&str]) -> RunArgs {
        let argv = std::iter::once("kubescribe-operator").chain(args.iter().copied());
        Cli::try_parse_from(argv).unwrap().run
    }

    #[test]
    fn the_in_process_proxy_gets_the_operators_credentials_unless_told_otherwise() {
        assert!(run_args(&[]).in_process_proxy().unwrap().is_none());
        let args = run_args(&[
            "--kubeconfig=/op.kubeconfig",
            "--context=prod",
            "--proxy-in-process",
            "--proxy-arg=--listen=127.0.0.1:9443",
            "--proxy-arg=--identity-file=/ids.yaml",
        ]);
        let serve = args.in_process_proxy().unwrap().unwrap();
        assert_eq!(serve.listen.to_string(), "127.0.0.1:9443");
        assert_eq!(
            serve.kubeconfig.as_deref(),
            Some(std::path::Path::new("/op.kubeconfig"))
        );
        assert_eq!(serve.context.as_deref(), Some("prod"));
        let own = run_args(&[
            "--kubeconfig=/op.kubeconfig",
            "--proxy-in-process",
            "--proxy-arg=--kubeconfig=/proxy.kubeconfig",
            "--proxy-arg=--identity-file=/ids.yaml",
        ]);
        assert_eq!(
            own.in_process_proxy()
                .unwrap()
                .unwrap()
                .kubeconfig
                .as_deref(),
            Some(std::path::Path::new("/proxy.kubeconfig"))
        );
        let bad = run_args(&["--proxy-in-process", "--proxy-arg=--no-such-flag"]);
        assert!(bad.in_process_proxy().is_err());
        // --proxy-arg needs --proxy-in-process.
        assert!(Cli::try_parse_from(["kubescribe-operator", "--proxy-arg=--listen=x"]).is_err());
    }

    #[test]
    fn the_lease_goes_to_the_namespace_unless_named() {
        assert_eq!(run_args(&[]).effective_lease_namespace(), "default");
        assert_eq!(
            run_args(&["--namespace=team"]).effective_lease_namespace(),
            "team"
        );
        assert_eq!(
            run_args(&["--namespace=team", "--lease-namespace=ops"]).effective_lease_namespace(),
            "ops"
        );
    }
}
