//! The embedded files and which one answers which path.

use std::sync::OnceLock;

/// The vendored asciinema-player version (see
/// `assets/vendor/asciinema-player/VENDORED.md`).
pub const ASCIINEMA_PLAYER_VERSION: &str = "3.17.0";

/// Where the app's files are served from.
const ASSETS_PREFIX: &str = "/ui/assets/";

/// Longest page path answered with the shell (anything longer is not a
/// link the app made).
const MAX_PAGE_PATH: usize = 2048;

/// One embedded file, ready to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asset {
    /// The file's bytes.
    pub body: &'static [u8],
    /// The `Content-Type` to send.
    pub content_type: &'static str,
    /// The `Cache-Control` to send: `no-cache` everywhere, so browsers keep
    /// a copy but revalidate it with [`Asset::etag`] (answer `304 Not
    /// Modified` when [`Asset::matches`] says so). An upgraded recorder is
    /// therefore picked up on the next page load.
    pub cache_control: &'static str,
    /// A strong `ETag` (quoted) derived from the bytes.
    pub etag: &'static str,
}

impl Asset {
    /// Whether an `If-None-Match` request header value names this asset's
    /// current version (then answer `304 Not Modified` without a body).
    pub fn matches(&self, if_none_match: &str) -> bool {
        if_none_match.trim() == "*"
            || if_none_match
                .split(',')
                .map(|tag| tag.trim().trim_start_matches("W/"))
                .any(|tag| tag == self.etag)
    }
}

struct Embedded {
    /// Path under [`ASSETS_PREFIX`] (or the shell's own name).
    name: &'static str,
    body: &'static [u8],
}

macro_rules! embed {
    ($($name:literal),* $(,)?) => {
        &[$(Embedded { name: $name, body: include_bytes!(concat!("../assets/", $name)) }),*]
    };
}

const SHELL: &str = "index.html";

/// Every file the app needs. `index.html` is the shell; the others are
/// served under `/ui/assets/`.
const FILES: &[Embedded] = embed![
    "index.html",
    "app.css",
    "icon.svg",
    "app.js",
    "js/api.js",
    "js/cast.js",
    "js/dom.js",
    "js/events.js",
    "js/event.js",
    "js/format.js",
    "js/sessions.js",
    "js/session.js",
    "js/router.js",
    "vendor/asciinema-player/asciinema-player.min.js",
    "vendor/asciinema-player/asciinema-player.css",
    "vendor/asciinema-player/LICENSE",
    "vendor/asciinema-player/VENDORED.md",
];

/// The content type for a file name, by extension.
fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") | Some("mjs") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("md") => "text/markdown; charset=utf-8",
        Some("json") => "application/json",
        _ => "text/plain; charset=utf-8",
    }
}

/// FNV-1a (64 bit): cheap, stable across builds and platforms; enough to
/// tell versions of a file apart.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        FILES
            .iter()
            .map(|f| format!("\"{:016x}-{:x}\"", fnv1a(f.body), f.body.len()))
            .collect()
    })
}

fn serve(index: usize) -> Option<Asset> {
    let file = FILES.get(index)?;
    Some(Asset {
        body: file.body,
        content_type: content_type(file.name),
        cache_control: "no-cache",
        etag: etags().get(index).map(String::as_str).unwrap_or("\"\""),
    })
}

fn find(name: &str) -> Option<Asset> {
    FILES.iter().position(|f| f.name == name).and_then(serve)
}

/// Whether `path` is a page of the app (answered with the shell): `/`,
/// `/ui`, or `/ui/<route>` where the route is not under `/ui/assets/`.
fn is_page(path: &str) -> bool {
    if path.len() > MAX_PAGE_PATH || path.bytes().any(|b| b.is_ascii_control()) {
        return false;
    }
    path == "/" || path == "/ui" || (path.starts_with("/ui/") && !path.starts_with(ASSETS_PREFIX))
}

/// What to serve for a request path (the URI's path only, without the query
/// string), or `None` for a path the UI does not own (answer 404).
///
/// * `/`, `/ui` and any `/ui/<route>` (for example
///   `/ui/events/e-…-3` or `/ui/sessions?live=true`'s path `/ui/sessions`)
///   → the app shell (`index.html`), so a deep link survives a reload; the
///   app decides what the route shows.
/// * `/ui/assets/<file>` → that embedded file, if it exists. Lookup is an
///   exact match against a fixed table: `..`, encoded or not, cannot reach
///   anything else.
pub fn asset(path: &str) -> Option<Asset> {
    if let Some(name) = path.strip_prefix(ASSETS_PREFIX) {
        if name == SHELL {
            return None;
        }
        return find(name);
    }
    if is_page(path) {
        return find(SHELL);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_file_is_reachable_with_its_content_type() {
        for file in FILES.iter().filter(|f| f.name != SHELL) {
            let path = format!("{ASSETS_PREFIX}{}", file.name);
            let got = asset(&path).unwrap_or_else(|| panic!("{path} is not served"));
            assert_eq!(got.body, file.body, "{path}");
            assert!(!got.body.is_empty(), "{path} is empty");
        }
        let ct = |p: &str| asset(p).map(|a| a.content_type);
        assert_eq!(ct("/ui/assets/app.css"), Some("text/css; charset=utf-8"));
        assert_eq!(
            ct("/ui/assets/js/events.js"),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(ct("/ui/assets/icon.svg"), Some("image/svg+xml"));
        assert_eq!(
            ct("/ui/assets/vendor/asciinema-player/asciinema-player.min.js"),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(
            ct("/ui/assets/vendor/asciinema-player/LICENSE"),
            Some("text/plain; charset=utf-8")
        );
    }

    #[test]
    fn deep_links_get_the_shell() {
        let shell = asset("/").map(|a| a.body);
        assert!(shell.is_some());
        for path in [
            "/ui",
            "/ui/",
            "/ui/events",
            "/ui/events/e-0190f0c1a2b37c4d8e9f000000000001-12",
            "/ui/sessions",
            "/ui/sessions/0190f0c1a2b37c4d8e9f000000000001",
            "/ui/no-such-page",
        ] {
            let got = asset(path).unwrap_or_else(|| panic!("{path}: no shell"));
            assert_eq!(Some(got.body), shell, "{path}");
            assert_eq!(got.content_type, "text/html; charset=utf-8");
        }
    }

    #[test]
    fn foreign_and_unknown_paths_are_not_served() {
        for path in [
            "",
            "/api/v1/events",
            "/metrics",
            "/index.html",
            "/uix",
            "/ui/assets/",
            "/ui/assets/index.html",
            "/ui/assets/missing.js",
            "/ui/assets/../../Cargo.toml",
            "/ui/assets/%2e%2e/src/lib.rs",
            "/ui/assets//app.js",
            "/ui/assets/APP.JS",
            "/ui/\u{7f}",
        ] {
            assert!(asset(path).is_none(), "{path:?} must not be served");
        }
        assert!(asset(&format!("/ui/{}", "a".repeat(MAX_PAGE_PATH))).is_none());
    }

    #[test]
    fn shell_loads_only_embedded_files_without_inline_script() {
        let shell = std::str::from_utf8(asset("/").map(|a| a.body).unwrap_or_default()).unwrap();
        // No inline script or style (the CSP forbids both).
        assert!(!shell.contains("<script>"), "inline script in the shell");
        assert!(!shell.contains("<style"), "inline style in the shell");
        for word in shell.split(|c: char| c.is_whitespace() || c == '<') {
            assert!(
                !(word.starts_with("on") && word.contains('=')),
                "inline event handler {word:?} in the shell"
            );
        }
        // Every src/href in the shell is served by asset().
        for attr in ["src=\"", "href=\""] {
            for rest in shell.split(attr).skip(1) {
                let url = rest.split('"').next().unwrap_or_default();
                if url.starts_with('#') || url.starts_with("/api/") {
                    continue;
                }
                assert!(url.starts_with('/'), "{url}: not same-origin absolute");
                assert!(asset(url).is_some(), "{url}: referenced but not embedded");
            }
        }
    }

    #[test]
    fn every_module_import_is_embedded() {
        for file in FILES
            .iter()
            .filter(|f| f.name.ends_with(".js") && !f.name.contains("vendor/"))
        {
            let text = std::str::from_utf8(file.body).unwrap();
            let dir = file.name.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
            for rest in text.split(" from '").skip(1) {
                let spec = rest.split('\'').next().unwrap_or_default();
                let spec = spec.strip_prefix("./").unwrap_or(spec);
                let path = if dir.is_empty() {
                    format!("{ASSETS_PREFIX}{spec}")
                } else {
                    format!("{ASSETS_PREFIX}{dir}/{spec}")
                };
                assert!(
                    asset(&path).is_some(),
                    "{}: import {path} is not embedded",
                    file.name
                );
            }
        }
    }

    #[test]
    fn etags_differ_per_file_and_match_if_none_match() {
        let a = asset("/ui/assets/app.js").unwrap();
        let b = asset("/ui/assets/app.css").unwrap();
        assert_ne!(a.etag, b.etag);
        assert_eq!(a.cache_control, "no-cache");
        assert!(a.matches(a.etag));
        assert!(a.matches(&format!("\"x\", W/{}", a.etag)));
        assert!(a.matches("*"));
        assert!(!a.matches(b.etag));
        assert!(!a.matches(""));
    }
}
