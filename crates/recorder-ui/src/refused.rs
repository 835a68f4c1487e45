//! The page shown to a caller the recorder's read policy refuses.

/// Escapes text for an HTML element body or quoted attribute.
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// The longest reason shown (the rest is cut, never the page's markup).
const MAX_REASON_CHARS: usize = 1000;

/// A self-contained HTML page saying the caller may not read recordings,
/// with the recorder's reason (HTML-escaped, at most 1000 characters).
/// Serve it with the refusal's status (403, or 401/503) and
/// [`REFUSED_PAGE_HEADERS`](crate::REFUSED_PAGE_HEADERS); it loads nothing
/// else, so it renders even though every other UI path is refused too.
///
/// ```
/// let page = recorder_ui::refused_page(403, "forbidden: <bob> may not read");
/// assert!(page.contains("Not authorised"));
/// assert!(page.contains("&lt;bob&gt;"));
/// ```
pub fn refused_page(status: u16, reason: &str) -> String {
    let reason: String = reason.chars().take(MAX_REASON_CHARS).collect();
    let (title, advice) = match status {
        503 => (
            "Cannot check who you are",
            "The recorder could not verify your identity right now. Try again in a moment; \
             if it persists, ask an operator to check the recorder's identity source.",
        ),
        _ => (
            "Not authorised",
            "You are not allowed to read recordings on this recorder. Ask an operator to add \
             your identity to the recorder's <code>--allow-readers</code> list.",
        ),
    };
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · kubescribe recorder</title>
<style>
body {{ font: 16px/1.5 system-ui, sans-serif; color: #1a1a1a; background: #f6f7f9; margin: 0; }}
main {{ max-width: 40rem; margin: 4rem auto; padding: 2rem; background: #fff; border: 1px solid #c9ced6; border-radius: 6px; }}
h1 {{ margin-top: 0; color: #8a1c1c; }}
pre {{ white-space: pre-wrap; background: #f1f2f4; padding: .75rem; border-radius: 4px; }}
</style>
</head>
<body>
<main role="main" aria-labelledby="refused-title">
<h1 id="refused-title">{title}</h1>
<p>{advice}</p>
<p>The recorder answered <strong>HTTP {status}</strong>:</p>
<pre id="refused-reason">{reason}</pre>
</main>
</body>
</html>
"#,
        title = title,
        advice = advice,
        status = status,
        reason = escape_html(&reason),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_is_escaped_and_bounded() {
        let page = refused_page(403, "<script>alert('x')</script>&\"\u{1b}[31m");
        assert!(!page.contains("<script>"));
        assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"));
        assert!(!page.contains('\u{1b}'));
        let long = refused_page(403, &"x".repeat(10_000));
        assert!(long.len() < 4000);
        assert!(long.ends_with("</html>\n"));
    }

    #[test]
    fn identity_outage_is_worded_differently() {
        assert!(refused_page(503, "whois down").contains("Cannot check who you are"));
        assert!(refused_page(403, "nope").contains("Not authorised"));
        assert!(refused_page(401, "nope").contains("HTTP 401"));
    }
}
