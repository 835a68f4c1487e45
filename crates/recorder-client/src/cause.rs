//! [`Cause`]: the lower-level error inside this crate's failures.

use std::fmt;
use std::sync::Arc;

/// The lower-level error behind a failure (an I/O, HTTP or JSON error, or a
/// plain message where there is none).
///
/// Shared, so that the failures holding it stay `Clone`: an upload's failure
/// goes both to whoever watches its status and to
/// [`SessionUpload::finish`](crate::SessionUpload::finish). Its message is the
/// error's own followed by those of the errors beneath it that it does not
/// already quote, so one log line names the whole cause. Two causes are equal
/// when their messages are.
#[derive(Clone)]
pub struct Cause(Arc<dyn std::error::Error + Send + Sync + 'static>);

impl Cause {
    /// Wraps an error.
    pub(crate) fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Arc::new(error))
    }

    /// A cause that is only a message (nothing failed beneath it).
    pub(crate) fn msg(text: impl Into<String>) -> Self {
        Self::new(Message(text.into()))
    }
}

/// The error behind a [`Cause::msg`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Message(String);

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = self.0.to_string();
        let mut source = self.0.source();
        while let Some(error) = source {
            let more = error.to_string();
            if !text.contains(&more) {
                text.push_str(": ");
                text.push_str(&more);
            }
            source = error.source();
        }
        f.write_str(&text)
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Eq for Cause {}
