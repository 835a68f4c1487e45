//! How a client wants objects rendered (`Accept: …;as=Table`, `as=PartialObjectMetadata`, or plain),
//! shared by reads and watches.

use serde_json::{json, Value};

use crate::http_util::Query;
use crate::resources::{to_table, ResourceDef};

/// How the client wants objects rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rendering {
    /// Plain objects.
    Object,
    /// `meta.k8s.io/v1` Table, with `includeObject` policy.
    Table(String),
    /// `PartialObjectMetadata(List)`.
    Metadata,
}

impl Rendering {
    /// From the `Accept` header and `includeObject` query parameter.
    pub(crate) fn negotiate(accept: &str, query: &Query) -> Self {
        let first = accept
            .split(',')
            .next()
            .unwrap_or_default()
            .replace(' ', "");
        if first.contains("as=Table") {
            Self::Table(query.get("includeObject").unwrap_or("Metadata").to_string())
        } else if first.contains("as=PartialObjectMetadata") {
            Self::Metadata
        } else {
            Self::Object
        }
    }

    /// Renders one object.
    pub(crate) fn one(&self, def: &ResourceDef, obj: &Value, rv: &str) -> Value {
        match self {
            Self::Object => obj.clone(),
            Self::Table(include) => to_table(def, std::slice::from_ref(obj), rv, include),
            Self::Metadata => metadata_only(obj),
        }
    }
}

/// The object reduced to its metadata, as `PartialObjectMetadata`.
pub(crate) fn metadata_only(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata").cloned().unwrap_or(json!({}))})
}
