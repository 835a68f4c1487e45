//! The signal to shut down gracefully.

/// Completes when the process receives SIGTERM (what Kubernetes and systemd send) or an interrupt
/// (Ctrl-C), logging which. Create it early: the SIGTERM handler is installed when this is called, not
/// when the future is first polled, so a signal arriving during start-up is not lost.
pub fn signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        #[cfg(unix)]
        if let Some(mut term) = term {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = tokio::signal::ctrl_c() => tracing::info!("interrupt received"),
            }
            return;
        }
        // Without a SIGTERM handler, an interrupt is the only signal; if even that cannot be
        // installed, never complete rather than shut down at once.
        match tokio::signal::ctrl_c().await {
            Ok(()) => tracing::info!("interrupt received"),
            Err(_) => std::future::pending::<()>().await,
        }
    }
}
