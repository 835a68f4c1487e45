//! The log of every request the simulator received, for tests to assert on.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::auth::UserInfo;

/// How many requests are kept (oldest dropped first).
const CAPACITY: usize = 20_000;

/// One received request, with its full headers (credentials included: the log lives
/// only in memory and is meant for tests).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRequest {
    /// Sequence number, from 1.
    pub seq: u64,
    /// When it arrived (RFC 3339).
    pub time: String,
    /// The client's address.
    pub remote_addr: String,
    /// HTTP method.
    pub method: String,
    /// Path and query, as received.
    pub uri: String,
    /// Every header, in order, repeated names repeated.
    pub headers: Vec<(String, String)>,
    /// Who the credentials authenticated as (`None` when authentication failed).
    pub authenticated_user: Option<UserInfo>,
    /// Who the request ran as after impersonation (`None` when refused).
    pub user: Option<UserInfo>,
    /// The response status (101 for upgraded exec/attach).
    pub status: Option<u16>,
    /// The stream protocol the simulator chose for an upgraded exec/attach
    /// (`v5.channel.k8s.io` or `v4.channel.k8s.io`; the `Sec-WebSocket-Protocol` or
    /// `X-Stream-Protocol-Version` it answered with). `None` for other requests.
    #[serde(default)]
    pub subprotocol: Option<String>,
}

impl RecordedRequest {
    /// The first value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The bounded request log.
#[derive(Debug, Default)]
pub struct RequestLog {
    inner: Mutex<(u64, VecDeque<RecordedRequest>)>,
}

impl RequestLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, VecDeque<RecordedRequest>)> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends a request and returns its sequence number.
    pub fn push(&self, mut request: RecordedRequest) -> u64 {
        let mut inner = self.lock();
        inner.0 += 1;
        request.seq = inner.0;
        if inner.1.len() == CAPACITY {
            inner.1.pop_front();
        }
        inner.1.push_back(request);
        inner.0
    }

    /// Fills in the outcome of a logged request.
    pub fn complete(
        &self,
        seq: u64,
        authenticated: Option<UserInfo>,
        user: Option<UserInfo>,
        status: u16,
    ) {
        let mut inner = self.lock();
        if let Some(entry) = inner.1.iter_mut().rev().find(|r| r.seq == seq) {
            entry.authenticated_user = authenticated;
            entry.user = user;
            entry.status = Some(status);
        }
    }

    /// Records the stream protocol negotiated for an upgraded request.
    pub fn set_subprotocol(&self, seq: u64, protocol: String) {
        let mut inner = self.lock();
        if let Some(entry) = inner.1.iter_mut().rev().find(|r| r.seq == seq) {
            entry.subprotocol = Some(protocol);
        }
    }

    /// A copy of the log.
    pub fn snapshot(&self) -> Vec<RecordedRequest> {
        self.lock().1.iter().cloned().collect()
    }

    /// Empties the log (sequence numbers keep counting).
    pub fn clear(&self) {
        self.lock().1.clear();
    }
}
