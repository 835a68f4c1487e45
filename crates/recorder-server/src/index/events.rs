//! The event index: recent event lines (bounded by a byte budget) joined
//! with their response records, in a cursor order that survives restarts
//! (record ids sort by commit time).
//!
//! It is rebuilt from storage at start-up, newest first, until the budget is
//! full. Events older than the budget stay in storage (and are still served
//! by `GET /api/v1/events/{id}`, which reads storage directly); listing and
//! filtering see only indexed events, and the API says how far back that is.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use bytes::Bytes;

use super::filter::{eq, ListFilter};
use crate::record::{order_id, order_key, EventSummary, OrderKey, RecordKind, Summary};

struct IndexedEvent {
    line: Bytes,
    summary: EventSummary,
}

#[derive(Default)]
struct Inner {
    events: BTreeMap<OrderKey, IndexedEvent>,
    responses: BTreeMap<OrderKey, (String, Bytes)>,
    response_by_key: HashMap<String, OrderKey>,
    /// Events by their key: replicas sharing a bucket may each have stored
    /// a retried event once; the index keeps the first stored.
    event_by_key: HashMap<String, OrderKey>,
    event_bytes: usize,
    response_bytes: usize,
}

/// Filters for [`EventIndex::query`].
#[derive(Debug, Clone, Default)]
pub(crate) struct EventFilter {
    /// Time (of the event's `timestamp`), user, node, namespace.
    pub(crate) list: ListFilter,
    /// A tag in `source.nodeTags`.
    pub(crate) tag: Option<String>,
    /// `kubernetes.Verb`.
    pub(crate) verb: Option<String>,
    /// `kubernetes.Resource`.
    pub(crate) resource: Option<String>,
    /// `kubernetes.Name`.
    pub(crate) name: Option<String>,
    /// Case-insensitive substring of the stored JSON line.
    pub(crate) q: Option<String>,
    /// Whether the recorder's audit records of reads are listed.
    pub(crate) reads: Reads,
    /// Only events before this record id (exclusive): the cursor.
    pub(crate) before: Option<OrderKey>,
    /// Page size.
    pub(crate) limit: usize,
}

/// Which events a listing holds, as to the recorder's audit records of reads (`?reads=`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Reads {
    /// Not them (the default: reading the list must not fill it with its own reads).
    #[default]
    Exclude,
    /// Only them: who read what, when.
    Only,
    /// Them and every other event.
    Include,
}

/// One result row: the stored event line and its response record line.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    /// The event id.
    pub(crate) id: String,
    /// The event as stored (one JSON line).
    pub(crate) event: Bytes,
    /// The joined response record as stored, if one arrived.
    pub(crate) response: Option<Bytes>,
}

/// A page of results.
#[derive(Debug, Clone)]
pub(crate) struct Page {
    /// Newest first.
    pub(crate) rows: Vec<Row>,
    /// The cursor for the next (older) page, if there may be one.
    pub(crate) next: Option<String>,
    /// The oldest event id still indexed (listing cannot go further back).
    pub(crate) oldest_indexed: Option<String>,
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
        self.list
            .matches(s.timestamp, &s.user, &s.node, &s.namespace)
            && self
                .tag
                .as_ref()
                .is_none_or(|t| s.tags.iter().any(|x| x == t))
            && eq(&self.verb, &s.verb)
            && eq(&self.resource, &s.resource)
            && eq(&self.name, &s.name)
            && match self.reads {
                Reads::Exclude => !s.read_audit,
                Reads::Only => s.read_audit,
                Reads::Include => true,
            }
            && self
                .q
                .as_ref()
                .is_none_or(|q| contains_ignore_case(&e.line, q.as_bytes()))
    }
}

/// The in-memory index of recent events and response records.
pub(crate) struct EventIndex {
    inner: RwLock<Inner>,
    max_bytes: usize,
}

impl EventIndex {
    /// An empty index with a memory budget (event and response lines).
    pub(crate) fn new(max_bytes: usize) -> Self {
        Self {
            inner: RwLock::new(Inner::default()),
            max_bytes,
        }
    }

    /// Adds stored records: `(id, line, summary)`.
    pub(crate) fn insert_all(&self, records: impl IntoIterator<Item = (String, Bytes, Summary)>) {
        let Ok(mut inner) = self.inner.write() else {
            return;
        };
        for (id, line, summary) in records {
            let Some((_, order)) = order_key(&id) else {
                continue;
            };
            match summary {
                Summary::Event(summary) => {
                    if let Some(key) = &summary.key {
                        match inner.event_by_key.get(key).copied() {
                            Some(first) if first < order => continue,
                            Some(later) if later > order => {
                                if let Some(old) = inner.events.remove(&later) {
                                    inner.event_bytes -= old.line.len();
                                }
                            }
                            _ => {}
                        }
                        inner.event_by_key.insert(key.clone(), order);
                    }
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
            let Some((order, e)) = inner.events.pop_first() else {
                break;
            };
            inner.event_bytes -= e.line.len();
            if let Some(key) = &e.summary.key {
                if inner.event_by_key.get(key) == Some(&order) {
                    inner.event_by_key.remove(key);
                }
            }
        }
    }

    /// Whether any record of commit batch `batch` is indexed (a replica
    /// reading what its peers stored skips its own commits).
    pub(crate) fn has_batch(&self, batch: u128) -> bool {
        let Ok(inner) = self.inner.read() else {
            return false;
        };
        let batch_keys = (batch, 0)..=(batch, u32::MAX);
        inner.events.range(batch_keys.clone()).next().is_some()
            || inner.responses.range(batch_keys).next().is_some()
    }

    /// Whether the budget is full (start-up rebuild stops there).
    pub(crate) fn is_full(&self) -> bool {
        self.inner
            .read()
            .map(|i| i.event_bytes + i.response_bytes >= self.max_bytes.saturating_mul(9) / 10)
            .unwrap_or(true)
    }

    /// Number of indexed events.
    pub(crate) fn len(&self) -> usize {
        self.inner.read().map(|i| i.events.len()).unwrap_or(0)
    }

    fn response_for(inner: &Inner, summary: &EventSummary) -> Option<Bytes> {
        let key = summary.key.as_ref()?;
        let order = inner.response_by_key.get(key)?;
        inner.responses.get(order).map(|(_, line)| line.clone())
    }

    /// Newest-first page of events matching `filter`.
    pub(crate) fn query(&self, filter: &EventFilter) -> Page {
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
                id: order_id(RecordKind::Event, *order),
                event: e.line.clone(),
                response: Self::response_for(&inner, &e.summary),
            });
        }
        Page {
            rows,
            next: if more {
                last.map(|o| order_id(RecordKind::Event, o))
            } else {
                None
            },
            oldest_indexed: inner
                .events
                .keys()
                .next()
                .map(|o| order_id(RecordKind::Event, *o)),
        }
    }

    /// One indexed event by id, with its response record.
    pub(crate) fn get(&self, id: &str) -> Option<Row> {
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
    pub(crate) fn response_by_event_key(&self, key: &str) -> Option<Bytes> {
        let inner = self.inner.read().ok()?;
        let order = inner.response_by_key.get(key)?;
        inner.responses.get(order).map(|(_, l)| l.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{new_id, record_id, ResponseSummary};

    fn ev(verb: &str, key: &str) -> Summary {
        Summary::Event(EventSummary {
            verb: verb.into(),
            key: Some(key.into()),
            ..Default::default()
        })
    }

    #[test]
    fn pages_newest_first_with_cursor_and_join() {
        let index = EventIndex::new(1 << 20);
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
        let index = EventIndex::new(400);
        let b = new_id();
        index.insert_all((0..20).map(|i| {
            (
                record_id(RecordKind::Event, &b, i),
                Bytes::from(vec![b'x'; 50]),
                ev("get", &format!("k{i}")),
            )
        }));
        assert!(index.len() <= 6);
        assert!(index.get(&record_id(RecordKind::Event, &b, 19)).is_some());
        assert!(index.get(&record_id(RecordKind::Event, &b, 0)).is_none());
    }

    #[test]
    fn an_event_stored_twice_by_two_replicas_is_listed_once_under_its_first_id() {
        let (first, second) = (new_id(), new_id());
        let first_id = record_id(RecordKind::Event, &first, 0);
        let second_id = record_id(RecordKind::Event, &second, 3);
        let line = || Bytes::from_static(b"{}\n");
        for order in [[&first_id, &second_id], [&second_id, &first_id]] {
            let index = EventIndex::new(1 << 20);
            for id in order {
                index.insert_all([(id.clone(), line(), ev("get", "retried"))]);
            }
            assert_eq!(index.len(), 1);
            assert!(index.get(&first_id).is_some(), "the first stored is kept");
            assert!(index.get(&second_id).is_none());
            assert!(index.has_batch(first.as_u128()));
            assert!(!index.has_batch(second.as_u128()));
        }
    }
}
