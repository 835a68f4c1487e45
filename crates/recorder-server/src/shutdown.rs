//! Graceful shutdown: a future that resolves on SIGTERM or Ctrl-C.
//!
//! Plumbing shared in shape with the proxy binary; kept to one function so
//! that it can move to a crate both binaries use.

/// Resolves when the process receives SIGTERM or Ctrl-C (SIGINT). If the
/// SIGTERM handler cannot be installed, never resolves: the process then
/// runs until it is killed.
pub async fn signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
