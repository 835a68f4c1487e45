//! The error channel (WebSocket channel 3, the SPDY `error` stream): the
//! server's final `metav1.Status`, which carries the command's exit code.

use serde_json::Value;

/// Most bytes of error-channel data kept; the rest is ignored.
pub(crate) const MAX_ERROR_CHANNEL_BYTES: usize = 64 * 1024;

/// What the server said on the error channel when the command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecStatus {
    /// The data as sent (lossy UTF-8), at most [`MAX_ERROR_CHANNEL_BYTES`].
    pub raw: String,
    /// `status` of the Status object: `Success` or `Failure` (None if not a Status).
    pub status: Option<String>,
    /// `reason`, e.g. `NonZeroExitCode` or `InternalError`.
    pub reason: Option<String>,
    /// `message`, e.g. `command terminated with non-zero exit code: ...`.
    pub message: Option<String>,
    /// The exit code: 0 for `Success`, the `ExitCode` cause for `NonZeroExitCode`.
    pub exit_code: Option<i32>,
}

impl ExecStatus {
    /// Interprets error-channel data. Protocols v1/v2 send plain text; v3+
    /// send a JSON `metav1.Status`.
    pub fn parse(data: &[u8]) -> Self {
        let raw = String::from_utf8_lossy(data).into_owned();
        let mut out = ExecStatus {
            raw,
            status: None,
            reason: None,
            message: None,
            exit_code: None,
        };
        let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(data) else {
            return out;
        };
        let text = |key: &str| map.get(key).and_then(Value::as_str).map(str::to_owned);
        out.status = text("status");
        out.reason = text("reason");
        out.message = text("message");
        out.exit_code = match (out.status.as_deref(), out.reason.as_deref()) {
            (Some("Success"), _) => Some(0),
            (_, Some("NonZeroExitCode")) => map
                .get("details")
                .and_then(|d| d.get("causes"))
                .and_then(Value::as_array)
                .and_then(|causes| {
                    causes.iter().find_map(|cause| {
                        (cause.get("reason").and_then(Value::as_str) == Some("ExitCode"))
                            .then(|| cause.get("message").and_then(Value::as_str))
                            .flatten()
                            .and_then(|m| m.trim().parse::<i32>().ok())
                    })
                }),
            _ => None,
        };
        out
    }
}

/// Collects error-channel bytes, bounded, and parses them at each message end.
#[derive(Debug, Default)]
pub(crate) struct ErrorChannelCapture {
    buf: Vec<u8>,
}

impl ErrorChannelCapture {
    pub(crate) fn push(&mut self, data: &[u8]) {
        let room = MAX_ERROR_CHANNEL_BYTES.saturating_sub(self.buf.len());
        self.buf.extend_from_slice(&data[..data.len().min(room)]);
    }

    /// The status so far, if any data arrived.
    pub(crate) fn status(&self) -> Option<ExecStatus> {
        (!self.buf.is_empty()).then(|| ExecStatus::parse(&self.buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_is_exit_zero() {
        let s = ExecStatus::parse(br#"{"metadata":{},"status":"Success"}"#);
        assert_eq!(s.exit_code, Some(0));
        assert_eq!(s.status.as_deref(), Some("Success"));
    }

    #[test]
    fn non_zero_exit_code_is_read_from_causes() {
        let s = ExecStatus::parse(
            br#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: exit status 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#,
        );
        assert_eq!(s.exit_code, Some(3));
        assert_eq!(s.reason.as_deref(), Some("NonZeroExitCode"));
    }

    #[test]
    fn plain_text_is_kept_raw() {
        let s = ExecStatus::parse(b"error: container not found");
        assert_eq!(s.exit_code, None);
        assert_eq!(s.raw, "error: container not found");
    }

    #[test]
    fn capture_is_bounded() {
        let mut c = ErrorChannelCapture::default();
        c.push(&vec![b'a'; MAX_ERROR_CHANNEL_BYTES + 10]);
        c.push(b"more");
        assert_eq!(c.status().unwrap().raw.len(), MAX_ERROR_CHANNEL_BYTES);
    }
}
