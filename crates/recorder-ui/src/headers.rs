//! Response headers the recorder adds to UI responses.

/// The Content-Security-Policy of the app: scripts, styles, images and API
/// requests from the recorder's own origin only; no inline scripts; no
/// framing. `'wasm-unsafe-eval'` lets asciinema-player instantiate its
/// WebAssembly terminal emulator (it allows WebAssembly compilation only,
/// not `eval`).
const APP_CSP: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; \
style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; \
base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Headers for every response the UI serves (the shell and its assets).
/// The recorder should also send them on `/api/…` responses (harmless for
/// JSON, and `nosniff` matters there).
///
/// `(name, value)` pairs, lower-case names, static values.
pub const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("content-security-policy", APP_CSP),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    (
        "permissions-policy",
        "camera=(), microphone=(), geolocation=(), clipboard-read=()",
    ),
];

/// Headers for [`refused_page`](crate::refused_page): no scripts at all; the
/// page's own inline `<style>` is the only thing allowed (the page is
/// served to callers who may not load the app's stylesheet). Never cached.
pub const REFUSED_PAGE_HEADERS: &[(&str, &str)] = &[
    (
        "content-security-policy",
        "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; \
         form-action 'none'; frame-ancestors 'none'",
    ),
    ("content-type", "text/html; charset=utf-8"),
    ("cache-control", "no-store"),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
];
