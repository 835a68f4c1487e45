//! The in-memory query index: recent event lines (bounded by a byte budget)
//! joined with their response records, and a cursor order that survives
//! restarts (record ids sort by commit time).
//!
//! It is rebuilt from storage at start-up, newest first, until the budget is
//! full. Events older than the budget stay in storage (and are still served
//! by `GET /api/v1/events/{id}`, which reads storage directly); listing and
//! filtering see only indexed events, and the API says how far back that is.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use bytes::Bytes;

use crate::storage::layout::{parse_record_id, RecordKind};

/// What the index keeps about a record besides its JSON line.
#[derive(Debug, Clone, PartialEq)]
pub enum Summary {
    /// A `kubernetes-api-request` event.
    Event(EventSummary),
    /// A `kubescribe-api-response` record.
    Response(ResponseSummary),
}

/// Filterable fields of an event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventSummary {
    /// Event timestamp (Unix seconds, from the proxy).
    pub timestamp: i64,
    /// `source.nodeUser`.
    pub user: String,
    /// `source.node`.
    pub node: String,
    /// `source.nodeTags`.
    pub tags: Vec<String>,
    /// `kubernetes.Verb`.
    pub verb: String,
    /// `kubernetes.Resource`.
    pub resource: String,
    /// `kubernetes.Namespace`.
    pub namespace: String,
    /// `kubernetes.Name`.
    pub name: String,
    /// `kubescribe.key` (unprefixed), joining the response record.
    pub key: Option<String>,
}

/// Joinable fields of a response record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResponseSummary {
    /// The event's idempotency key.
    pub key: String,
}

/// The sort order of records: (batch UUID, line).
pub type OrderKey = (u128, u32);

/// Parses a record id into its sort order.
pub fn order_key(id: &str) -> Option<(RecordKind, OrderKey)> {
    let loc = parse_record_id(id)?;
    let mut parts = id.splitn(3, '-');
    parts.next();
    let batch = u128::from_str_radix(parts.next()?, 16).ok()?;
    Some((loc.kind, (batch, u32::try_from(loc.line).ok()?)))
}

struct IndexedEvent {
    line: Bytes,
    summary: EventSummary,
}

#[derive(Default)]
struct Inner {
    events: BTreeMap<OrderKey, IndexedEvent>,
    responses: BTreeMap<OrderKey, (String, Bytes)>,
    response_by_key: HashMap<String, OrderKey>,
    event_bytes: usize,
    response_bytes: usize,
}

/// Filters for [`QueryIndex::query`]. Empty strings mean "any".
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Earliest event timestamp (Unix seconds, inclusive).
    pub since: Option<i64>,
    /// Latest event timestamp (Unix seconds, exclusive).
    pub until: Option<i64>,
    /// `source.nodeUser`, exact.
    pub user: Option<String>,
    /// `source.node`, exact.
    pub node: Option<String>,
    /// A tag in `source.nodeTags`.
    pub tag: Option<String>,
    /// `kubernetes.Verb`.
    pub verb: Option<String>,
    /// `kubernetes.Resource`.
    pub resource: Option<String>,
    /// `kubernetes.Namespace`.
    pub namespace: Option<String>,
    /// `kubernetes.Name`.
    pub name: Option<String>,
    /// Case-insensitive substring of the stored JSON line.
    pub q: Option<String>,
    /// Only events before this record id (exclusive): the cursor.
    pub before: Option<OrderKey>,
    /// Page size.
    pub limit: usize,
}

/// One result row: the stored event line and its response record line.
#[derive(Debug, Clone)]
pub struct Row {
    /// The event id.
    pub id: String,
    /// The event as stored (one JSON line).
    pub event: Bytes,
    /// The joined response record as stored, if one arrived.
    pub response: Option<Bytes>,
}

/// A page of results.
#[derive(Debug, Clone)]
pub struct Page {
    /// Newest first.
    pub rows: Vec<Row>,
    /// The cursor for the next (older) page, if there may be one.
    pub next: Option<String>,
    /// The oldest event id still indexed (listing cannot go further back).
    pub oldest_indexed: Option<String>,
}

fn eq(want: &Option<String>, have: &str) -> bool {
    want.as_deref().is_none_or(|w| w == have)
}

fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty()
        || hay
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

impl EventFilter {
    fn matches(&self, e: &IndexedEvent) -> bool {
        let s = &e.summary;
        self.since.is_none_or(|t| s.timestamp >= t)
            && self.until.is_none_or(|t| s.timestamp < t)
            && eq(&self.user, &s.user)
            && eq(&self.node, &s.node)
            && self
                .tag
                .as_ref()
                .is_none_or(|t| s.tags.iter().any(|x| x == t))
            && eq(&self.verb, &s.verb)
            && eq(&self.resource, &s.resource)
            && eq(&self.namespace, &s.namespace)
            && eq(&self.name, &s.name)
            && self
                .q
                .as_ref()
                .is_none_or(|q| contains_ignore_case(&e.line, q.as_bytes()))
    }
}

fn format_id(kind: RecordKind, key: OrderKey) -> String {
    format!("{}-{:032x}-{}", kind.id_prefix(), key.0, key.1)
}

/// The in-memory index of recent records.
pub struct QueryIndex {
    inner: RwLock<Inner>,
    max_bytes: usize,
}

impl QueryIndex {
    /// An empty index with a memory budget (event and response lines).
    pub fn new(max_bytes: usize) -> Self {
        Self {
            inner: RwLock::new(Inner::default()),
            max_bytes,
        }
    }

    /// Adds stored records: `(id, line, summary)`.
    pub fn insert_all(&self, records: impl IntoIterator<Item = (String, Bytes, Summary)>) {
        let Ok(mut inner) = self.inner.write() else {
            return;
        };
        for (id, line, summary) in records {
            let Some((_, order)) = order_key(&id) else {
                continue;
            };
            match summary {
                Summary::Event(summary) => {
                    inner.event_bytes += line.len();
                    if let Some(old) = inner.events.insert(order, IndexedEvent { line, summary }) {
                        inner.event_bytes -= old.line.len();
                    }
                }
                Summary::Response(summary) => {
                    inner.response_bytes += line.len();
                    if let Some(old) = inner.response_by_key.insert(summary.key.clone(), order) {
                        if let Some((_, old_line)) = inner.responses.remove(&old) {
                            inner.response_bytes -= old_line.len();
                        }
                    }
                    inner.responses.insert(order, (summary.key, line));
                }
            }
        }
        // Evict oldest first; responses get a quarter of the budget.
        let response_budget = self.max_bytes / 4;
        while inner.response_bytes > response_budget {
            let Some((_, (key, line))) = inner.responses.pop_first() else {
                break;
            };
            inner.response_bytes -= line.len();
            inner.response_by_key.remove(&key);
        }
        while inner.event_bytes > self.max_bytes - response_budget {
            let Some((_, e)) = inner.events.pop_first() else {
                break;
            };
            inner.event_bytes -= e.line.len();
        }
    }

    /// Whether the budget is full (start-up rebuild stops there).
    pub fn is_full(&self) -> bool {
        self.inner
            .read()
            .map(|i| i.event_bytes + i.response_bytes >= self.max_bytes.saturating_mul(9) / 10)
            .unwrap_or(true)
    }

    /// Number of indexed events.
    pub fn len(&self) -> usize {
        self.inner.read().map(|i| i.events.len()).unwrap_or(0)
    }

    /// Whether no events are indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn response_for(inner: &Inner, summary: &EventSummary) -> Option<Bytes> {
        let key = summary.key.as_ref()?;
        let order = inner.response_by_key.get(key)?;
        inner.responses.get(order).map(|(_, line)| line.clone())
    }

    /// Newest-first page of events matching `filter`.
    pub fn query(&self, filter: &EventFilter) -> Page {
        let Ok(inner) = self.inner.read() else {
            return Page {
                rows: Vec::new(),
                next: None,
                oldest_indexed: None,
            };
        };
        let limit = filter.limit.max(1);
        let range = match filter.before {
            Some(before) => inner.events.range(..before),
            None => inner.events.range(..),
        };
        let mut rows = Vec::new();
        let mut last = None;
        let mut more = false;
        for (order, e) in range.rev() {
            if !filter.matches(e) {
                continue;
            }
            if rows.len() == limit {
                more = true;
                break;
            }
            last = Some(*order);
            rows.push(Row {
                id: format_id(RecordKind::Event, *order),
                event: e.line.clone(),
                response: Self::response_for(&inner, &e.summary),
            });
        }
        Page {
            rows,
            next: if more {
                last.map(|o| format_id(RecordKind::Event, o))
            } else {
                None
            },
            oldest_indexed: inner
                .events
                .keys()
                .next()
                .map(|o| format_id(RecordKind::Event, *o)),
        }
    }

    /// One indexed event by id, with its response record.
    pub fn get(&self, id: &str) -> Option<Row> {
        let (kind, order) = order_key(id)?;
        let inner = self.inner.read().ok()?;
        match kind {
            RecordKind::Event => inner.events.get(&order).map(|e| Row {
                id: id.to_owned(),
                event: e.line.clone(),
                response: Self::response_for(&inner, &e.summary),
            }),
            RecordKind::Response => inner.responses.get(&order).map(|(_, line)| Row {
                id: id.to_owned(),
                event: line.clone(),
                response: None,
            }),
        }
    }

    /// The response record line joined to an event key, if indexed.
    pub fn response_by_event_key(&self, key: &str) -> Option<Bytes> {
        let inner = self.inner.read().ok()?;
        let order = inner.response_by_key.get(key)?;
        inner.responses.get(order).map(|(_, l)| l.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::layout::{new_id, record_id};

    fn ev(verb: &str, key: &str) -> Summary {
        Summary::Event(EventSummary {
            verb: verb.into(),
            key: Some(key.into()),
            ..Default::default()
        })
    }

    #[test]
    fn pages_newest_first_with_cursor_and_join() {
        let index = QueryIndex::new(1 << 20);
        let b = new_id();
        let ids: Vec<String> = (0..12)
            .map(|i| record_id(RecordKind::Event, &b, i))
            .collect();
        index.insert_all(ids.iter().enumerate().map(|(i, id)| {
            (
                id.clone(),
                Bytes::from(format!("{{\"n\":{i}}}\n")),
                ev(if i % 2 == 0 { "get" } else { "list" }, &format!("k{i}")),
            )
        }));
        let r = record_id(RecordKind::Response, &new_id(), 0);
        index.insert_all([(
            r,
            Bytes::from_static(b"{\"status\":200}\n"),
            Summary::Response(ResponseSummary { key: "k10".into() }),
        )]);
        let page = index.query(&EventFilter {
            verb: Some("get".into()),
            limit: 2,
            ..Default::default()
        });
        assert_eq!(
            page.rows.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
            vec![ids[10].clone(), ids[8].clone()]
        );
        assert!(page.rows[0].response.is_some());
        assert!(page.rows[1].response.is_none());
        let before = order_key(page.next.as_deref().unwrap()).unwrap().1;
        let page2 = index.query(&EventFilter {
            verb: Some("get".into()),
            limit: 10,
            before: Some(before),
            ..Default::default()
        });
        assert_eq!(page2.rows.len(), 4);
        assert!(page2.next.is_none());
    }

    #[test]
    fn budget_evicts_oldest() {
        let index = QueryIndex::new(400);
        let b = new_id();
        index.insert_all((0..20).map(|i| {
            (
                record_id(RecordKind::Event, &b, i),
                Bytes::from(vec![b'x'; 50]),
                ev("get", "k"),
            )
        }));
        assert!(index.len() <= 6);
        assert!(index.get(&record_id(RecordKind::Event, &b, 19)).is_some());
        assert!(index.get(&record_id(RecordKind::Event, &b, 0)).is_none());
    }
}
