//! [`SharedError`]: a library's error (zlib, JSON) inside this crate's errors.

use std::fmt;
use std::sync::Arc;

/// A library's error (zlib's, JSON's) inside the SPDY parser's and the
/// recording's errors, shared so that those stay `Clone` (every reader of a
/// recording's status gets the failure). Shows as the error itself; two are
/// equal when their messages are.
pub struct SharedError<E>(Arc<E>);

impl<E> SharedError<E> {
    pub(crate) fn new(error: E) -> Self {
        Self(Arc::new(error))
    }
}

impl<E> Clone for SharedError<E> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<E: fmt::Debug> fmt::Debug for SharedError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<E: fmt::Display> fmt::Display for SharedError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<E: std::error::Error> std::error::Error for SharedError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl<E: fmt::Display> PartialEq for SharedError<E> {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl<E: fmt::Display> Eq for SharedError<E> {}
