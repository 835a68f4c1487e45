//! `kube-sim`: the Kubernetes API server simulator binary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use kube_sim::{parse_token_file, Credentials, KubeSim, SimConfig};

/// A Kubernetes API server simulator for tests and demos: real kubectl, client-go and
/// the Python client work against it (discovery, CRUD, watch, logs, exec/attach over
/// WebSocket and SPDY). Prints one JSON line `{"addr","url","ca","kubeconfig","sandbox"}`
/// on stdout when ready; stops cleanly on SIGTERM or Ctrl-C.
#[derive(Debug, Parser)]
#[command(name = "kube-sim", version)]
struct Cli {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, env = "KUBE_SIM_LISTEN", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Serve HTTPS with a freshly generated CA (the default).
    #[arg(long, conflicts_with = "plain")]
    tls: bool,
    /// Serve plain HTTP instead of HTTPS.
    #[arg(long)]
    plain: bool,
    /// Directory for per-pod sandboxes that exec/attach commands run in
    /// (`DIR/<namespace>/<pod>`); default: a fresh temporary directory.
    #[arg(long, env = "KUBE_SIM_SANDBOX")]
    sandbox: Option<PathBuf>,
    /// Write a kubeconfig for this simulator here.
    #[arg(long)]
    kubeconfig_out: Option<PathBuf>,
    /// Write the CA certificate (PEM) here, for clients that want a file (with TLS).
    #[arg(long)]
    ca_out: Option<PathBuf>,
    /// Bearer-token allow-list: lines `token,username,group1|group2` or a JSON array of
    /// `{"token","user","groups"}`. Without it, authentication is off.
    #[arg(long, env = "KUBE_SIM_TOKENS")]
    tokens: Option<PathBuf>,
    /// A user allowed to send Impersonate-* headers (repeatable; members of
    /// system:masters always may).
    #[arg(long = "impersonator")]
    impersonators: Vec<String>,
    /// Token to put in the kubeconfig (default: the first one in --tokens).
    #[arg(long, conflicts_with = "kubeconfig_client_cert")]
    kubeconfig_token: Option<String>,
    /// Put a client certificate for this user in the kubeconfig instead of a token
    /// (`user` or `user:group1|group2`; needs TLS).
    #[arg(long)]
    kubeconfig_client_cert: Option<String>,
    /// Start empty: no namespaces, node or demo pod.
    #[arg(long)]
    no_seed: bool,
    /// Milliseconds between new lines of a followed pod log.
    #[arg(long, default_value_t = 1000)]
    log_interval_ms: u64,
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    if let Err(message) = run(Cli::parse()).await {
        eprintln!("kube-sim: {message}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let tokens = match &cli.tokens {
        Some(path) => Some(parse_token_file(path).map_err(|e| format!("--tokens: {e}"))?),
        None => None,
    };
    let config = SimConfig {
        listen: cli.listen,
        tls: !cli.plain,
        sandbox: cli.sandbox.clone(),
        tokens: tokens.clone(),
        impersonators: cli.impersonators.clone(),
        seed: !cli.no_seed,
        log_interval: Duration::from_millis(cli.log_interval_ms.max(1)),
    };
    let sim = KubeSim::start(config).await.map_err(|e| e.to_string())?;
    if let Some(path) = &cli.kubeconfig_out {
        let credentials = match (&cli.kubeconfig_client_cert, &cli.kubeconfig_token) {
            (Some(spec), _) => {
                let (user, groups) = spec.split_once(':').unwrap_or((spec, ""));
                let groups: Vec<String> = groups
                    .split('|')
                    .filter(|g| !g.is_empty())
                    .map(str::to_string)
                    .collect();
                sim.client_certificate(user, &groups)
                    .map_err(|e| format!("--kubeconfig-client-cert: {e}"))?
            }
            (None, Some(token)) => Credentials::Token(token.clone()),
            (None, None) => tokens
                .as_ref()
                .and_then(|t| t.first())
                .map_or(Credentials::None, |t| Credentials::Token(t.token.clone())),
        };
        sim.write_kubeconfig(path, &credentials)
            .map_err(|e| e.to_string())?;
    }
    if let Some(path) = &cli.ca_out {
        let pem = sim.ca_pem().ok_or("--ca-out needs TLS (drop --plain)")?;
        std::fs::write(path, pem).map_err(|e| format!("--ca-out {}: {e}", path.display()))?;
    }
    let ready = serde_json::json!({
        "addr": sim.addr().to_string(),
        "url": sim.url(),
        "ca": sim.ca_pem(),
        "kubeconfig": cli.kubeconfig_out.as_ref().map(|p| p.display().to_string()),
        "sandbox": sim.sandbox().display().to_string(),
    });
    println!("{ready}");
    wait_for_signal().await;
    tracing::info!("shutting down");
    sim.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
