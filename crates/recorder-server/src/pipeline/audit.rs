//! The read audit record: before recorded content is served — a session's
//! cast, the events (a list or one), the sessions (a list or one's
//! metadata) — the recorder stores a `kubernetes-api-request` event
//! describing the read (who read what, when, with which client), through the
//! same group commit as ingested events. No record, no content: a read that
//! cannot be recorded is refused.
//!
//! The record is an ordinary event, so the index, the query API's filters,
//! the UI and offline tools show it unchanged. It is marked as kubescribe's
//! audit record by `kubescribe.auditOf` (documented in `docs/api.md` and
//! `docs/storage.md`).

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use event_model::{Destination, Event, Extension, Request, Source};
use k8s_request_parse::RequestInfo;
use serde_json::{json, Map};

use super::commit::{CommitError, Committer};
use super::prepare::{prepare, PrepareError};
use crate::access::{Reader, Uploader};

/// The `source.node` of a viewing by a read-token holder.
pub(crate) const READ_TOKEN_NODE: &str = "read-token";
/// The `source.node` of a viewing from a loopback address.
pub(crate) const LOOPBACK_NODE: &str = "loopback";

/// What a read revealed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Viewed<'a> {
    /// A session's cast, by session id (`auditOf.session`).
    Cast(&'a str),
    /// One session's metadata, by id (`auditOf.sessionInfo`).
    Session(&'a str),
    /// The sessions list (`auditOf.sessions`, the raw query).
    Sessions,
    /// One event, by id (`auditOf.event`).
    Event(&'a str),
    /// The events list (`auditOf.events`, the raw query).
    Events,
}

impl Viewed<'_> {
    /// The `auditOf` object.
    fn audit_of(&self, query: &str) -> serde_json::Value {
        match self {
            Viewed::Cast(id) => json!({ "session": id }),
            Viewed::Session(id) => json!({ "sessionInfo": id }),
            Viewed::Sessions => json!({ "sessions": { "query": query } }),
            Viewed::Event(id) => json!({ "event": id }),
            Viewed::Events => json!({ "events": { "query": query } }),
        }
    }
}

/// One read of recorded content.
#[derive(Debug, Clone)]
pub(crate) struct Viewing<'a> {
    /// Who is reading.
    pub(crate) reader: &'a Reader,
    /// The reader's connection address.
    pub(crate) peer: SocketAddr,
    /// What the read reveals.
    pub(crate) viewed: Viewed<'a>,
    /// The request path with `?` and the raw query, as received.
    pub(crate) target: &'a str,
    /// The request's `User-Agent` (`""` when absent).
    pub(crate) user_agent: &'a str,
}

/// Why a viewing could not be recorded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AuditError {
    /// The record could not be encoded (never expected).
    #[error("cannot encode the audit record: {0}")]
    Encode(#[from] PrepareError),
    /// Storing it failed.
    #[error(transparent)]
    Commit(#[from] CommitError),
}

fn reader_source(reader: &Reader) -> (Source, &'static str) {
    match reader {
        Reader::Token => (
            Source {
                node: READ_TOKEN_NODE.to_owned(),
                ..Source::default()
            },
            "read-token",
        ),
        Reader::Loopback(_) => (
            Source {
                node: LOOPBACK_NODE.to_owned(),
                ..Source::default()
            },
            "loopback",
        ),
        // As the proxy records a caller: tagged nodes by tags, others by user.
        Reader::Identity(identity) => (identity.event_source(), "whois"),
    }
}

/// The audit event for `viewing` at `timestamp` (Unix seconds), with a
/// fresh UUIDv7 idempotency key.
pub(crate) fn view_event(viewing: &Viewing<'_>, timestamp: i64) -> Event {
    let query = viewing.target.split_once('?').map(|(_, q)| q).unwrap_or("");
    // Exactly what kube-apiserver would derive for this request; the target
    // was routed here so it parses, but never fail a viewing over it.
    let kubernetes =
        k8s_request_parse::request_info("GET", viewing.target).unwrap_or_else(|_| RequestInfo {
            path: viewing.target.split('?').next().unwrap_or("").to_owned(),
            verb: "get".to_owned(),
            ..RequestInfo::default()
        });
    let (source, via) = reader_source(viewing.reader);
    let mut unknown = Map::new();
    unknown.insert("auditOf".to_owned(), viewing.viewed.audit_of(query));
    unknown.insert(
        "reader".to_owned(),
        json!({ "via": via, "address": viewing.peer.to_string() }),
    );
    Event {
        timestamp,
        user_agent: viewing.user_agent.to_owned(),
        request: Request {
            method: "GET".to_owned(),
            path: viewing.target.to_owned(),
            body: Vec::new(),
            query_parameters: k8s_request_parse::query::parse_query(query),
            unknown: Map::new(),
        },
        kubernetes,
        source,
        destination: Destination::default(),
        kubescribe: Some(Extension {
            key: uuid::Uuid::now_v7().to_string(),
            unknown,
            ..Extension::default()
        }),
        ..Event::default()
    }
}

/// Stores the audit record of `viewing` durably through `committer`;
/// returns its record id.
pub(crate) async fn record_viewing(
    committer: &Committer,
    viewing: &Viewing<'_>,
) -> Result<String, AuditError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let event = view_event(viewing, now);
    let line = event_model::to_go_json(&event).map_err(PrepareError::Encode)?;
    let prepared = prepare(&line, &Uploader::default())?;
    let acks = committer.commit(vec![prepared]).await?;
    Ok(acks.into_iter().next().map(|a| a.id).unwrap_or_default())
}

/// The session an event's `kubescribe` object names as viewed, when the
/// event is a session-view audit record.
#[cfg(test)]
fn audited_session(extension: &Extension) -> Option<&str> {
    extension
        .unknown
        .get("auditOf")
        .and_then(|v| v.get("session"))
        .and_then(serde_json::Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn view_event_is_a_get_of_the_cast_url() {
        let peer: SocketAddr = "127.0.0.1:5555".parse().unwrap_or_else(|_| unreachable!());
        let reader = Reader::Loopback(peer);
        let target = "/api/v1/sessions/s-0190f0c1a2b37c4d8e9f000000000001/cast?x=1";
        let e = view_event(
            &Viewing {
                reader: &reader,
                peer,
                viewed: Viewed::Cast("s-0190f0c1a2b37c4d8e9f000000000001"),
                target,
                user_agent: "curl/8",
            },
            1_767_225_600,
        );
        assert_eq!(e.request.method, "GET");
        assert_eq!(e.request.path, target);
        assert_eq!(e.request.query_parameters["x"], vec!["1".to_owned()]);
        // kube-apiserver reads `/api/v1/sessions/<id>/cast` as the `cast`
        // subresource of a core-group resource `sessions`.
        assert!(e.kubernetes.is_resource_request);
        assert_eq!(e.kubernetes.verb, "get");
        assert_eq!(e.kubernetes.resource, "sessions");
        assert_eq!(e.kubernetes.name, "s-0190f0c1a2b37c4d8e9f000000000001");
        assert_eq!(e.kubernetes.subresource, "cast");
        assert_eq!(
            e.kubernetes.path,
            "/api/v1/sessions/s-0190f0c1a2b37c4d8e9f000000000001/cast"
        );
        assert_eq!(e.source.node, LOOPBACK_NODE);
        assert_eq!(e.user_agent, "curl/8");
        let ext = e.kubescribe.as_ref().unwrap_or_else(|| unreachable!());
        assert_eq!(
            uuid::Uuid::parse_str(&ext.key).map(|u| u.get_version_num()),
            Ok(7)
        );
        assert_eq!(
            audited_session(ext),
            Some("s-0190f0c1a2b37c4d8e9f000000000001")
        );
        assert_eq!(ext.unknown["reader"]["address"], "127.0.0.1:5555");
    }

    #[test]
    fn identity_readers_are_recorded_as_the_proxy_records_callers() {
        let identity = identity::Identity {
            node_name: "laptop.tail1234.ts.net".into(),
            stable_node_id: "nLaptop".into(),
            user_id: 42,
            login_name: "alice@example.com".into(),
            ..Default::default()
        };
        let (s, via) = reader_source(&Reader::Identity(identity.clone()));
        assert_eq!(via, "whois");
        assert_eq!(
            (s.node.as_str(), s.node_id.as_str()),
            ("laptop.tail1234.ts.net", "nLaptop")
        );
        assert_eq!(
            (s.node_user_id, s.node_user.as_str()),
            (42, "alice@example.com")
        );
        assert!(s.node_tags.is_empty());
        let tagged = identity::Identity {
            tags: vec!["tag:ops".into()],
            ..identity
        };
        let (s, _) = reader_source(&Reader::Identity(tagged));
        assert_eq!(s.node_tags, vec!["tag:ops".to_owned()]);
        assert_eq!((s.node_user_id, s.node_user.as_str()), (0, ""));
        let (s, via) = reader_source(&Reader::Token);
        assert_eq!((s.node.as_str(), via), (READ_TOKEN_NODE, "read-token"));
    }
}
