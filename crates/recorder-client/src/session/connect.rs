//! [`connect_session`]: try each recorder address in order, v2 then v1,
//! within the dial and total budgets.

use std::net::SocketAddr;

use tokio::time::{timeout_at, Instant};

use super::upload::SessionUpload;
use super::v1;
use super::v2::{self, Probe};
use crate::config::SessionOptions;
use crate::error::{ConnectError, SessionAttemptError};

/// Opens a session upload to the first of `addrs` that accepts one.
///
/// Per address, in order: probe `HEAD /v2/record` over h2c; if it answers
/// 200 over HTTP/2, stream `POST /v2/record` with ack tracking, otherwise
/// fall back to `POST /record` with `Expect: 100-continue`. Each dial is
/// bounded by [`SessionOptions::dial_timeout`], the probe by
/// [`SessionOptions::probe_timeout`], the wait for the recorder's answer by
/// [`SessionOptions::response_timeout`], and everything together by
/// [`SessionOptions::total_timeout`]. The upload itself outlives the caller's
/// request (it runs on its own tasks).
#[tracing::instrument(level = "debug", skip_all, fields(recorders = ?addrs))]
pub async fn connect_session(
    addrs: &[SocketAddr],
    opts: &SessionOptions,
) -> Result<SessionUpload, ConnectError> {
    if addrs.is_empty() {
        return Err(ConnectError::NoRecorders);
    }
    let deadline = Instant::now() + opts.total_timeout;
    let mut attempts = Vec::new();
    for &addr in addrs {
        if Instant::now() >= deadline {
            return Err(ConnectError::AllFailed {
                attempts,
                budget_exhausted: Some(opts.total_timeout),
            });
        }
        let result = timeout_at(deadline, attempt(addr, opts, deadline))
            .await
            .unwrap_or(Err(SessionAttemptError::BudgetExhausted));
        match result {
            Ok(upload) => {
                tracing::info!(recorder = %addr, protocol = ?upload.protocol(), "connected to session recorder");
                if let Some(m) = &opts.metrics {
                    m.session_started();
                }
                return Ok(upload);
            }
            Err(e) => {
                tracing::warn!(recorder = %addr, error = %e, "cannot start session recording");
                attempts.push((addr, e));
            }
        }
    }
    Err(ConnectError::AllFailed {
        attempts,
        budget_exhausted: None,
    })
}

async fn attempt(
    addr: SocketAddr,
    opts: &SessionOptions,
    deadline: Instant,
) -> Result<SessionUpload, SessionAttemptError> {
    match v2::probe(addr, opts, deadline).await? {
        Probe::V2(send, conn) => v2::start(addr, send, conn, opts, deadline).await,
        Probe::NotV2(why) => {
            tracing::debug!(recorder = %addr, why, "recorder has no /v2/record; using /record");
            v1::start(addr, opts, deadline).await
        }
    }
}
