//! The kubescribe recorder's web UI: a small single-page app (events table
//! with filters and live tail, event detail with the decoded request body,
//! session list and in-browser playback with asciinema-player), every file
//! embedded in the binary so it works offline and needs no CDN.
//!
//! The crate does no I/O and has no dependencies: the recorder asks it what
//! to answer for a path and adds the headers it recommends.
//!
//! * [`asset`]: what to serve for a request path. `/` and every `/ui/…` page
//!   route return the app shell, so deep links survive a reload; files live
//!   under `/ui/assets/`.
//! * [`Asset`]: the body, content type, `Cache-Control` and `ETag`.
//! * [`SECURITY_HEADERS`]: headers for every UI response (a
//!   Content-Security-Policy without inline scripts, `frame-ancestors
//!   'none'`, `nosniff`, …).
//! * [`refused_page`]: the "not authorised" page for a caller the
//!   recorder's read policy refuses.
//!
//! # Layers
//!
//! Bottom to top; the three modules do not import each other.
//!
//! 1. `headers`: the response headers the recorder adds
//!    ([`SECURITY_HEADERS`], [`REFUSED_PAGE_HEADERS`]).
//! 2. `assets`: the embedded files and the path routing ([`asset`]).
//! 3. `refused`: the "not authorised" page ([`refused_page`]).
//!
//! ```
//! let shell = recorder_ui::asset("/ui/events/e-0190f0c1a2b37c4d8e9f000000000001-0").unwrap();
//! assert_eq!(shell.content_type, "text/html; charset=utf-8");
//! assert!(std::str::from_utf8(shell.body).unwrap().contains("<main"));
//!
//! let js = recorder_ui::asset("/ui/assets/app.js").unwrap();
//! assert_eq!(js.content_type, "text/javascript; charset=utf-8");
//! assert!(js.etag.starts_with('"'));
//!
//! assert!(recorder_ui::asset("/ui/assets/../../etc/passwd").is_none());
//! assert!(recorder_ui::asset("/api/v1/events").is_none());
//! ```

#![warn(unreachable_pub)]

mod assets;
mod headers;
mod refused;

pub use assets::{asset, Asset, ASCIINEMA_PLAYER_VERSION};
pub use headers::{REFUSED_PAGE_HEADERS, SECURITY_HEADERS};
pub use refused::refused_page;

/// The README's example runs as a doc-test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}
