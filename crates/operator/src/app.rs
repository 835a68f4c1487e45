//! The operator, start to end: the client, metrics, leader election, and the controllers and
//! clean-up running only while this replica leads.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::events::{Recorder as EventRecorder, Reporter};
use kube::{Client, Config};
use kube_lease_manager::LeaseManagerBuilder;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::cli::RunArgs;
use crate::context::Context;
use crate::error::Error;
use crate::meta::{Scope, MANAGER};
use crate::metrics::{self, Metrics};
use crate::{cleanup, proxy_controller, recorder_controller};

/// How long shutdown waits for the Lease to be released.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// The Kubernetes client: the kubeconfig (`--kubeconfig`, `--context`), else inferred (the
/// `KUBECONFIG` default file, or the in-cluster service account).
async fn client(args: &RunArgs) -> Result<Client, Error> {
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?
        }
        None if args.context.is_some() => Config::from_kubeconfig(&options)
            .await
            .map_err(|e| Error::Config(e.to_string()))?,
        None => Config::infer()
            .await
            .map_err(|e| Error::Config(e.to_string()))?,
    };
    Client::try_from(config).map_err(Error::Client)
}

/// This replica's default identity: the host name and process id.
fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "kubescribe-operator".to_owned());
    format!("{host}-{}", std::process::id())
}

/// Completes when `rx` holds `want`; false if its sender is gone first.
async fn until(rx: &mut watch::Receiver<bool>, want: bool) -> bool {
    rx.wait_for(|v| *v == want).await.is_ok()
}

/// What the leader does: both controllers and the clean-up sweeps, until aborted.
async fn act(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let metrics = ctx.metrics.clone();
    let scope = ctx.scope.clone();
    tokio::join!(
        recorder_controller::run(ctx.clone()),
        proxy_controller::run(ctx),
        cleanup::run(client, scope, metrics),
    );
}

/// Runs the operator until SIGTERM or Ctrl-C.
pub async fn run(args: RunArgs) -> Result<(), Error> {
    service::logging::init(args.log_format);
    if args.lease_grace >= args.lease_duration {
        return Err(Error::Config(format!(
            "--lease-grace ({}) must be less than --lease-duration ({})",
            args.lease_grace, args.lease_duration
        )));
    }
    // kube-rs builds its rustls configuration from the process-wide provider: kubescribe's (ring).
    let _ = Arc::unwrap_or_clone(service::tls::crypto_provider()).install_default();
    let proxy_args = args
        .in_process_proxy()
        .map_err(|e| Error::ProxyArgs(e.to_string()))?;
    let client = client(&args).await?;
    let identity = args.identity.clone().unwrap_or_else(default_identity);

    let metrics = Metrics::default();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .map_err(|source| Error::MetricsListen {
            addr: args.metrics_addr,
            source,
        })?;
    tracing::info!(addr = %args.metrics_addr, "serving /metrics and /healthz");

    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let signalled = Arc::new(AtomicBool::new(false));
    let signal = service::shutdown::signal();
    {
        let (stop_tx, signalled) = (stop_tx.clone(), signalled.clone());
        tokio::spawn(async move {
            signal.await;
            signalled.store(true, Ordering::SeqCst);
            let _ = stop_tx.send(true);
        });
    }
    // The in-process proxy serves on every replica, leading or not, and takes SIGTERM itself
    // (a graceful stop of its own); if it ends first, the operator ends too (the pod restarts).
    let proxy = proxy_args.map(|serve| {
        tracing::info!(listen = %serve.listen, "serving the API server proxy in this process");
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            let code = kubescribe_proxy::serve(serve).await;
            let _ = stop_tx.send(true);
            code
        })
    });
    let mut metrics_stop = stop_rx.clone();
    tokio::spawn(metrics::serve(listener, Arc::new(registry), async move {
        until(&mut metrics_stop, true).await;
    }));

    let reporter = Reporter {
        controller: MANAGER.to_owned(),
        instance: Some(identity.clone()),
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        metrics.clone(),
        EventRecorder::new(client.clone(), reporter),
        Scope::new(args.namespace.clone()),
    ));
    match &args.namespace {
        Some(ns) => tracing::info!(namespace = %ns, "acting in one namespace only"),
        None => tracing::info!("acting in every namespace"),
    }
    let operated = operate(&args, client, identity, ctx, metrics, stop_rx).await;
    if let Some(proxy) = proxy {
        // After SIGTERM the proxy finishes its own graceful stop; before it, it ended by itself.
        let code = proxy.await.unwrap_or(ExitCode::FAILURE);
        if !signalled.load(Ordering::SeqCst) {
            return Err(Error::InProcessProxy(code));
        }
    }
    operated
}

/// Leads or waits to, as leader election says, until `stop`; then releases the Lease.
async fn operate(
    args: &RunArgs,
    client: Client,
    identity: String,
    ctx: Arc<Context>,
    metrics: Metrics,
    stop_rx: watch::Receiver<bool>,
) -> Result<(), Error> {
    let mut stop = stop_rx;

    if !args.leader_elect {
        tracing::info!(%identity, "leader election off: acting");
        metrics.leader.set(1);
        tokio::select! {
            _ = until(&mut stop, true) => {}
            _ = act(ctx) => {}
        }
        return Ok(());
    }

    let lease_namespace = args.effective_lease_namespace().to_owned();
    let manager = LeaseManagerBuilder::new(client, &args.lease_name)
        .with_namespace(&lease_namespace)
        .with_identity(&identity)
        .with_duration(args.lease_duration)
        .with_grace(args.lease_grace)
        .with_field_manager(format!("{MANAGER}/{identity}"))
        .build()
        .await
        .map_err(|source| Error::Lease {
            namespace: lease_namespace.clone(),
            name: args.lease_name.clone(),
            source,
        })?;
    let (mut leader, lease_task) = manager.watch().await;
    tracing::info!(%identity, lease = %format!("{lease_namespace}/{}", args.lease_name), "waiting to lead");
    loop {
        tokio::select! {
            _ = until(&mut stop, true) => break,
            led = until(&mut leader, true) => if !led { break },
        }
        tracing::info!(%identity, "leading: starting the controllers");
        metrics.leader.set(1);
        let acting = tokio::spawn(act(ctx.clone()));
        let stopping = tokio::select! {
            _ = until(&mut stop, true) => true,
            _ = until(&mut leader, false) => false,
        };
        // Never act without the Lease: the controllers stop before anything else happens.
        acting.abort();
        let _ = acting.await;
        metrics.leader.set(0);
        if stopping {
            break;
        }
        tracing::warn!(%identity, "lost the Lease: controllers stopped, waiting to lead again");
    }
    // Closing the channel makes the lease task release the Lease (if held) and end.
    drop(leader);
    match tokio::time::timeout(RELEASE_TIMEOUT, lease_task).await {
        Ok(Ok(Ok(_))) => tracing::info!("Lease released"),
        Ok(Ok(Err(err))) => tracing::warn!(error = %err, "releasing the Lease"),
        Ok(Err(err)) => tracing::warn!(error = %err, "the Lease task failed"),
        Err(_) => tracing::warn!("releasing the Lease timed out"),
    }
    Ok(())
}
