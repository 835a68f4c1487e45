//! The part of kube-apiserver's `ListOptions` decoding that request info
//! depends on (`docs/request-info.md#algorithm` and `#list-options`): whether
//! the request is a watch, and the `metadata.name` a field selector pins.
//!
//! Decoding converts `labelSelector` (`labels.Parse`), `fieldSelector`
//! (`fields.ParseSelector`), `limit` and `timeoutSeconds`
//! (`strconv.ParseInt(v, 10, 64)`); any failure aborts the whole decode.
//! kube-apiserver then logs the error, resets the options, and re-reads only
//! `watch` with a slightly different rule (`strings.ToLower(v)` is `false` or
//! `0`). The other parameters convert without error and do not matter here.

use std::borrow::Cow;

use crate::field_selector::{FieldSelector, FieldSelectorError};
use crate::go_text::{go_fallback_watch, go_parses_int64, go_query_bool};
use crate::label_selector::{self, LabelSelectorError};
use crate::query::ListQuery;

/// What request info takes from the decoded options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListDecision<'q> {
    /// The verb is `watch` rather than `list`.
    pub(crate) watch: bool,
    /// The value of the first `metadata.name` equality term of a field
    /// selector that decoded, before the path-segment check.
    pub(crate) field_selector_name: Option<Cow<'q, [u8]>>,
}

/// Why the `ListOptions` decode failed (kube-apiserver only logs this).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// `fieldSelector` did not parse.
    FieldSelector(FieldSelectorError),
    /// `labelSelector` did not parse or validate.
    LabelSelector(LabelSelectorError),
    /// `limit` is not a base-10 int64.
    Limit,
    /// `timeoutSeconds` is not a base-10 int64.
    TimeoutSeconds,
}

/// Decodes the options the way `NewRequestInfo` does, including the
/// fallback after a decode failure.
pub(crate) fn decide<'q>(query: &'q ListQuery<'_>) -> ListDecision<'q> {
    match decode(query) {
        Ok(decision) => decision,
        Err(_) => ListDecision {
            watch: query.watch.as_deref().is_some_and(go_fallback_watch),
            field_selector_name: None,
        },
    }
}

/// The strict decode (`ParameterCodec.DecodeParameters`).
pub(crate) fn decode<'q>(query: &'q ListQuery<'_>) -> Result<ListDecision<'q>, DecodeError> {
    let mut field_selector_name = None;
    if let Some(raw) = query.field_selector.as_deref() {
        let selector = FieldSelector::parse(raw).map_err(DecodeError::FieldSelector)?;
        field_selector_name = selector.into_exact_match(b"metadata.name");
    }
    if let Some(raw) = query.label_selector.as_deref() {
        label_selector::validate(raw).map_err(DecodeError::LabelSelector)?;
    }
    if let Some(raw) = query.limit.as_deref() {
        if !go_parses_int64(raw) {
            return Err(DecodeError::Limit);
        }
    }
    if let Some(raw) = query.timeout_seconds.as_deref() {
        if !go_parses_int64(raw) {
            return Err(DecodeError::TimeoutSeconds);
        }
    }
    Ok(ListDecision {
        watch: query.watch.as_deref().is_some_and(go_query_bool),
        field_selector_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (watch, name) as decided for a raw query.
    fn decide_raw(raw: &str) -> (bool, Option<Vec<u8>>) {
        let query = ListQuery::scan(raw);
        let decision = decide(&query);
        (
            decision.watch,
            decision.field_selector_name.map(Cow::into_owned),
        )
    }

    #[test]
    fn watch_and_name() {
        assert_eq!(
            decide_raw("watch=1&fieldSelector=metadata.name%3Dfoo"),
            (true, Some(b"foo".to_vec()))
        );
        assert_eq!(decide_raw(""), (false, None));
        assert!(!decide_raw("watch=FALSE").0);
        assert!(decide_raw("watch=").0);
    }

    #[test]
    fn failures_drop_the_name_but_keep_watch() {
        for bad in [
            "limit=abc",
            "limit=",
            "timeoutSeconds=9223372036854775808",
            "labelSelector=app%3Da%2Fb",
            "fieldSelector=metadata.name=a,b",
        ] {
            let raw = format!("watch=true&fieldSelector=metadata.name=x&{bad}");
            // The field selector in `bad` (if any) comes second and is ignored,
            // so build the failing cases so the first values fail.
            let raw = if bad.starts_with("fieldSelector") {
                format!("watch=true&{bad}")
            } else {
                raw
            };
            assert_eq!(decide_raw(&raw), (true, None), "{raw}");
        }
        // The fallback lower-cases instead of folding: the long s is not an s.
        assert!(!decide_raw("watch=fal%C5%BFe").0);
        assert!(decide_raw("watch=fal%C5%BFe&limit=x").0);
        assert!(!decide_raw("watch=FaLsE&limit=x").0);
    }

    #[test]
    fn decode_error_kinds() {
        let q = ListQuery::scan("limit=1&timeoutSeconds=-5&labelSelector=a%20in%20(b)");
        assert!(decode(&q).is_ok());
        let q = ListQuery::scan("timeoutSeconds=x");
        assert_eq!(decode(&q), Err(DecodeError::TimeoutSeconds));
    }
}
