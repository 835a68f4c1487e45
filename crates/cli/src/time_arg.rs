//! `--since` and `--until`: a time ago (`90s`, `15m`, `2h`, `7d`), an RFC 3339 time, or Unix
//! seconds — turned into the Unix seconds the recorder takes.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Unix seconds for `text`, relative times counted back from `now` (Unix seconds).
pub(crate) fn unix_seconds(text: &str, now: i64) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<i64>() {
        return Ok(seconds);
    }
    if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(at.unix_timestamp());
    }
    match humantime::parse_duration(text) {
        Ok(ago) => {
            let ago =
                i64::try_from(ago.as_secs()).map_err(|_| format!("{text:?} is too long ago"))?;
            Ok(now.saturating_sub(ago))
        }
        Err(_) => Err(format!(
            "{text:?} is neither a time ago (15m, 2h, 7d), an RFC 3339 time nor Unix seconds"
        )),
    }
}

/// Unix seconds now.
pub(crate) fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// `seconds` as an RFC 3339 time in UTC (seconds precision), or the number if out of range.
pub(crate) fn rfc3339(seconds: i64) -> String {
    OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| seconds.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_absolute_and_unix_times() {
        let now = 1_800_000_000;
        assert_eq!(unix_seconds("15m", now), Ok(now - 900));
        assert_eq!(unix_seconds("7d", now), Ok(now - 7 * 86_400));
        assert_eq!(unix_seconds("1764356885", now), Ok(1_764_356_885));
        assert_eq!(unix_seconds("2025-11-28T19:08:05Z", now), Ok(1_764_356_885));
        assert!(unix_seconds("yesterday", now).is_err());
        assert_eq!(rfc3339(1_764_356_885), "2025-11-28T19:08:05Z");
    }
}
