//! Field selectors as apimachinery's `fields.ParseSelector` reads them, and
//! `RequiresExactMatch`, which is how a list/watch gets its `Name` from
//! `metadata.name=…`.
//!
//! Rules: terms are split on unescaped `,` (a backslash escapes the next
//! character) and **sorted** as byte strings; empty terms are skipped. In each
//! term the first position where `!=`, `==` or `=` starts (tested in that
//! order) splits an untrimmed field from the value. The value is unescaped:
//! `\\`, `\,` and `\=` are literal, any other escape, a dangling `\`, or an
//! unescaped `,`/`=` is an error.

use std::borrow::Cow;

/// Why a field selector does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FieldSelectorError {
    /// A term without `=`, `==` or `!=`.
    NoOperator,
    /// A backslash escape other than `\\`, `\,`, `\=`, or a dangling `\`.
    InvalidEscape,
    /// An unescaped `,` or `=` inside a value.
    UnescapedRune,
}

/// The operator of one term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operator {
    /// `=` or `==`.
    Equals,
    /// `!=`.
    NotEquals,
}

/// One `field op value` term, value unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Term<'a> {
    pub(crate) field: &'a [u8],
    pub(crate) operator: Operator,
    pub(crate) value: Cow<'a, [u8]>,
}

/// A parsed field selector: its terms in sorted order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct FieldSelector<'a> {
    terms: Vec<Term<'a>>,
}

impl<'a> FieldSelector<'a> {
    /// `fields.ParseSelector`.
    pub(crate) fn parse(selector: &'a [u8]) -> Result<Self, FieldSelectorError> {
        let mut parts = split_terms(selector);
        parts.sort_unstable();
        let mut terms = Vec::with_capacity(parts.len());
        for part in parts {
            if part.is_empty() {
                continue;
            }
            let (field, operator, raw_value) =
                split_term(part).ok_or(FieldSelectorError::NoOperator)?;
            let value = unescape_value(raw_value)?;
            // A term whose field and value are both empty selects everything
            // and is dropped (`Transform`).
            if field.is_empty() && value.is_empty() {
                continue;
            }
            terms.push(Term {
                field,
                operator,
                value,
            });
        }
        Ok(FieldSelector { terms })
    }

    /// `RequiresExactMatch(field)`: the value of the first equality term (in
    /// sorted order) on exactly `field`.
    #[cfg(test)]
    pub(crate) fn requires_exact_match(&self, field: &[u8]) -> Option<&[u8]> {
        self.terms
            .iter()
            .find(|term| term.operator == Operator::Equals && term.field == field)
            .map(|term| &*term.value)
    }

    /// [`requires_exact_match`](Self::requires_exact_match) by value, so a
    /// value that needed no unescaping stays borrowed from the input.
    pub(crate) fn into_exact_match(self, field: &[u8]) -> Option<Cow<'a, [u8]>> {
        self.terms
            .into_iter()
            .find(|term| term.operator == Operator::Equals && term.field == field)
            .map(|term| term.value)
    }
}

/// `splitTerms`: split on `,` not preceded by an escaping backslash.
fn split_terms(selector: &[u8]) -> Vec<&[u8]> {
    if selector.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::with_capacity(2);
    let mut start = 0;
    let mut in_slash = false;
    for (i, &b) in selector.iter().enumerate() {
        if in_slash {
            in_slash = false;
        } else if b == b'\\' {
            in_slash = true;
        } else if b == b',' {
            terms.push(&selector[start..i]);
            start = i + 1;
        }
    }
    terms.push(&selector[start..]);
    terms
}

/// `splitTerm`: the first position where `!=`, `==` or `=` starts.
fn split_term(term: &[u8]) -> Option<(&[u8], Operator, &[u8])> {
    for i in 0..term.len() {
        let rest = &term[i..];
        if rest.starts_with(b"!=") {
            return Some((&term[..i], Operator::NotEquals, &term[i + 2..]));
        }
        if rest.starts_with(b"==") {
            return Some((&term[..i], Operator::Equals, &term[i + 2..]));
        }
        if rest.starts_with(b"=") {
            return Some((&term[..i], Operator::Equals, &term[i + 1..]));
        }
    }
    None
}

/// `fields.UnescapeValue`.
fn unescape_value(value: &[u8]) -> Result<Cow<'_, [u8]>, FieldSelectorError> {
    if !value.iter().any(|&b| matches!(b, b'\\' | b',' | b'=')) {
        return Ok(Cow::Borrowed(value));
    }
    let mut out = Vec::with_capacity(value.len());
    let mut in_slash = false;
    for &b in value {
        if in_slash {
            match b {
                b'\\' | b',' | b'=' => out.push(b),
                _ => return Err(FieldSelectorError::InvalidEscape),
            }
            in_slash = false;
            continue;
        }
        match b {
            b'\\' => in_slash = true,
            b',' | b'=' => return Err(FieldSelectorError::UnescapedRune),
            _ => out.push(b),
        }
    }
    if in_slash {
        return Err(FieldSelectorError::InvalidEscape);
    }
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name_of(selector: &str) -> Result<Option<String>, FieldSelectorError> {
        FieldSelector::parse(selector.as_bytes()).map(|s| {
            s.requires_exact_match(b"metadata.name")
                .map(|v| String::from_utf8_lossy(v).into_owned())
        })
    }

    #[test]
    fn exact_match_rules() {
        assert_eq!(name_of("metadata.name=foo"), Ok(Some("foo".into())));
        assert_eq!(name_of("metadata.name==foo"), Ok(Some("foo".into())));
        assert_eq!(name_of("metadata.name!=foo"), Ok(None));
        assert_eq!(name_of("metadata.name = foo"), Ok(None));
        assert_eq!(
            name_of("metadata.name=zeta,metadata.name=alpha"),
            Ok(Some("alpha".into()))
        );
        assert_eq!(name_of("metadata.name=a,"), Ok(Some("a".into())));
        assert_eq!(name_of("metadata.name="), Ok(Some("".into())));
        assert_eq!(
            name_of("metadata.name=a\\,b\\=c\\\\"),
            Ok(Some("a,b=c\\".into()))
        );
        assert_eq!(
            name_of("spec.nodeName=n1,metadata.name=x"),
            Ok(Some("x".into()))
        );
        assert_eq!(name_of(""), Ok(None));
        assert_eq!(name_of("="), Ok(None));
        assert_eq!(name_of(",,"), Ok(None));
        // The field is not unescaped: an escaped '=' on the left still splits.
        assert_eq!(name_of("a\\=b=c"), Err(FieldSelectorError::UnescapedRune));
    }

    #[test]
    fn invalid_selectors() {
        assert_eq!(
            name_of("metadata.name=name1,foo"),
            Err(FieldSelectorError::NoOperator)
        );
        assert_eq!(
            name_of("metadata.name=a=b"),
            Err(FieldSelectorError::UnescapedRune)
        );
        assert_eq!(
            name_of("metadata.name===x"),
            Err(FieldSelectorError::UnescapedRune)
        );
        assert_eq!(
            name_of("metadata.name=a\\x"),
            Err(FieldSelectorError::InvalidEscape)
        );
        assert_eq!(
            name_of("metadata.name=a\\"),
            Err(FieldSelectorError::InvalidEscape)
        );
    }

    #[test]
    fn escaped_comma_does_not_split_terms() {
        assert_eq!(
            split_terms(b"a=1\\,2,b=3"),
            vec![&b"a=1\\,2"[..], &b"b=3"[..]]
        );
        assert_eq!(split_terms(b"a=\\\\,b"), vec![&b"a=\\\\"[..], &b"b"[..]]);
    }
}
