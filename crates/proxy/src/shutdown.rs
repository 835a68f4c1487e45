//! Graceful-shutdown signals: SIGTERM (how Kubernetes stops a pod) or ctrl-c.

use std::future::Future;

/// A future that resolves on SIGTERM or ctrl-c, logging which arrived. The
/// handlers are installed when this is called, so no signal is missed once
/// it returns.
pub(crate) fn signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let ctrl_c = tokio::signal::ctrl_c();
    async move {
        #[cfg(unix)]
        if let Some(mut term) = term {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = ctrl_c => tracing::info!("interrupt received"),
            }
            return;
        }
        let _ = ctrl_c.await;
        tracing::info!("interrupt received");
    }
}
