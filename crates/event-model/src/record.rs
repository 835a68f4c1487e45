//! Reading any record a recorder accepts, told apart by its `type`.

use serde::{Deserialize, Serialize};

use crate::event::{Event, KUBERNETES_API_EVENT_TYPE};
use crate::response::{ResponseRecord, RESPONSE_RECORD_TYPE};

/// A record uploaded to `/v2/event`: an [`Event`] or a [`ResponseRecord`].
// A record is parsed, handled and dropped one at a time; boxing the larger
// variant would cost an allocation per record and buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Record {
    /// A `kubernetes-api-request` event.
    Event(Event),
    /// A `kubescribe-api-response` record.
    Response(ResponseRecord),
}

/// Why bytes are not a record.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Not JSON, or JSON of the wrong shape for its type.
    #[error("invalid record JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The record has no `type` field.
    #[error("record has no \"type\" field; expected \"{KUBERNETES_API_EVENT_TYPE}\" or \"{RESPONSE_RECORD_TYPE}\"")]
    MissingType,
    /// The record's `type` is not one this version knows.
    #[error("unknown record type {0:?}; expected \"{KUBERNETES_API_EVENT_TYPE}\" or \"{RESPONSE_RECORD_TYPE}\"")]
    UnknownType(String),
}

#[derive(Deserialize)]
struct TypeOnly {
    #[serde(rename = "type")]
    record_type: Option<String>,
}

impl Record {
    /// Parses one JSON record, choosing its type by the `type` field.
    ///
    /// Unknown record types are an error rather than stored blindly, so a
    /// sender learns at once that this recorder does not understand them.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, RecordError> {
        let TypeOnly { record_type } = serde_json::from_slice(bytes)?;
        match record_type.as_deref() {
            Some(KUBERNETES_API_EVENT_TYPE) => Ok(Record::Event(serde_json::from_slice(bytes)?)),
            Some(RESPONSE_RECORD_TYPE) => Ok(Record::Response(serde_json::from_slice(bytes)?)),
            Some(other) => Err(RecordError::UnknownType(other.to_owned())),
            None => Err(RecordError::MissingType),
        }
    }

    /// The record's `id` (empty until a recorder stores it).
    pub fn id(&self) -> &str {
        match self {
            Record::Event(event) => &event.id,
            Record::Response(response) => &response.id,
        }
    }

    /// Sets the record's `id`.
    pub fn set_id(&mut self, id: String) {
        match self {
            Record::Event(event) => event.id = id,
            Record::Response(response) => response.id = id,
        }
    }

    /// The record's idempotency key: an event's `kubescribe.key`, or the key
    /// of the event a response record belongs to, prefixed so the two never
    /// collide. `None` for events from senders that attach no key.
    pub fn idempotency_key(&self) -> Option<String> {
        match self {
            Record::Event(event) => event.key().map(|key| format!("event:{key}")),
            Record::Response(response) if !response.key.is_empty() => {
                Some(format!("response:{}", response.key))
            }
            Record::Response(_) => None,
        }
    }

    /// The record's Unix timestamp in seconds.
    pub fn timestamp(&self) -> i64 {
        match self {
            Record::Event(event) => event.timestamp,
            Record::Response(response) => response.timestamp,
        }
    }
}
