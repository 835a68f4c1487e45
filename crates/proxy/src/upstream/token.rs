//! Upstream credentials that need no plugin: a static bearer token, basic
//! auth, or a token file that is re-read (projected service-account tokens
//! rotate; kubelet rewrites the file).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use http::HeaderValue;

/// How often a token file is re-read, like client-go's cached token source.
pub(crate) const TOKEN_REFRESH: Duration = Duration::from_secs(60);

/// A bearer token read from a file, cached for [`TOKEN_REFRESH`] and re-read
/// early after the API server answered 401.
#[derive(Debug)]
pub(crate) struct TokenFile {
    path: PathBuf,
    refresh: Duration,
    cached: Mutex<Option<(HeaderValue, Instant)>>,
}

/// The token file could not give a usable token.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Reading failed.
    #[error("cannot read token file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is empty or has bytes not allowed in a header.
    #[error("token file {0} is empty or holds characters not allowed in an HTTP header")]
    Invalid(String),
}

impl TokenFile {
    /// A token file re-read every `refresh`.
    pub(crate) fn new(path: PathBuf, refresh: Duration) -> Self {
        TokenFile {
            path,
            refresh,
            cached: Mutex::new(None),
        }
    }

    /// The file.
    pub(crate) fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Read the file now (used at start-up so a broken file fails early).
    pub(crate) fn load(&self) -> Result<HeaderValue, TokenError> {
        let text = std::fs::read_to_string(&self.path).map_err(|source| TokenError::Read {
            path: self.path.display().to_string(),
            source,
        })?;
        let value = bearer(text.trim())
            .ok_or_else(|| TokenError::Invalid(self.path.display().to_string()))?;
        if let Ok(mut c) = self.cached.lock() {
            *c = Some((value.clone(), Instant::now()));
        }
        Ok(value)
    }

    /// The current `Authorization` value: cached, re-read when stale. When a
    /// re-read fails the last good token is kept (and the failure logged).
    pub(crate) fn authorization(&self) -> Result<HeaderValue, TokenError> {
        let cached = self.cached.lock().ok().and_then(|c| c.clone());
        match cached {
            Some((v, at)) if at.elapsed() < self.refresh => Ok(v),
            Some((v, _)) => match self.load() {
                Ok(fresh) => Ok(fresh),
                Err(e) => {
                    tracing::warn!(error = %e, "keeping the previous upstream token");
                    Ok(v)
                }
            },
            None => self.load(),
        }
    }

    /// Force a re-read on next use (after a 401 from the API server).
    pub(crate) fn invalidate(&self) {
        if let Ok(mut c) = self.cached.lock() {
            if let Some((_, at)) = c.as_mut() {
                if let Some(past) = Instant::now().checked_sub(self.refresh) {
                    *at = past;
                }
            }
        }
    }
}

/// `Bearer <token>` as a sensitive header value.
pub(crate) fn bearer(token: &str) -> Option<HeaderValue> {
    if token.is_empty() {
        return None;
    }
    let mut v = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
    v.set_sensitive(true);
    Some(v)
}

/// `Basic base64(user:password)` as a sensitive header value.
pub(crate) fn basic(username: &str, password: &str) -> Option<HeaderValue> {
    let enc = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    let mut v = HeaderValue::from_str(&format!("Basic {enc}")).ok()?;
    v.set_sensitive(true);
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_file_is_picked_up_after_invalidate() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let p = dir.path().join("token");
        std::fs::write(&p, "one\n").unwrap_or_else(|e| panic!("{e}"));
        let t = TokenFile::new(p.clone(), Duration::from_secs(3600));
        assert_eq!(t.authorization().ok(), bearer("one"));
        std::fs::write(&p, "two").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            t.authorization().ok(),
            bearer("one"),
            "cached within refresh"
        );
        t.invalidate();
        assert_eq!(t.authorization().ok(), bearer("two"));
        std::fs::remove_file(&p).unwrap_or_else(|e| panic!("{e}"));
        t.invalidate();
        assert_eq!(
            t.authorization().ok(),
            bearer("two"),
            "last good token kept"
        );
    }

    #[test]
    fn empty_or_bad_tokens_are_rejected() {
        assert!(bearer("").is_none());
        assert!(bearer("a\nb").is_none());
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let p = dir.path().join("token");
        std::fs::write(&p, "  \n").unwrap_or_else(|e| panic!("{e}"));
        assert!(TokenFile::new(p, TOKEN_REFRESH).load().is_err());
    }
}
