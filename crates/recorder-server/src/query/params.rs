//! Query strings turned into filters: `since`/`until` (Unix seconds or RFC
//! 3339), exact-match strings (an empty value means "any"), `limit`, and
//! cursors. Unknown parameters are refused, so that a typo never silently
//! widens a query.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{QueryError, DEFAULT_LIMIT, MAX_LIMIT};
use crate::index::{EventFilter, ListFilter, Reads, SessionFilter};
use crate::record::{order_key, parse_session_id, RecordKind};

fn parse_time(name: &'static str, value: String) -> Result<i64, QueryError> {
    if let Ok(secs) = value.parse::<i64>() {
        return Ok(secs);
    }
    OffsetDateTime::parse(&value, &Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|_| QueryError::BadTime { name, value })
}

fn parse_limit(value: String) -> Result<usize, QueryError> {
    match value.parse::<usize>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(QueryError::BadLimit { value }),
    }
}

fn non_empty(v: String) -> Option<String> {
    (!v.is_empty()).then_some(v)
}

/// A list's filter, as query parameters fill it.
trait Filter: Default {
    /// Every parameter the list takes, for the error naming an unknown one.
    const KNOWN: &'static str;

    /// The parameters every list takes: time range, who, namespace; and the
    /// page size.
    fn shared(&mut self) -> (&mut ListFilter, &mut usize);

    /// Applies `key=value` if it is one of the list's own parameters;
    /// `Ok(false)` if the list takes no such parameter.
    fn apply_own(&mut self, key: &str, value: String) -> Result<bool, QueryError>;
}

/// Parses the decoded query `pairs` into a filter of type `F`.
fn parse<F: Filter>(pairs: Vec<(String, String)>) -> Result<F, QueryError> {
    let mut f = F::default();
    *f.shared().1 = DEFAULT_LIMIT;
    for (key, value) in pairs {
        let (list, limit) = f.shared();
        match key.as_str() {
            "since" => list.since = Some(parse_time("since", value)?),
            "until" => list.until = Some(parse_time("until", value)?),
            "user" => list.user = non_empty(value),
            "node" => list.node = non_empty(value),
            "namespace" => list.namespace = non_empty(value),
            "limit" => *limit = parse_limit(value)?,
            _ => {
                if !f.apply_own(&key, value)? {
                    return Err(QueryError::UnknownParameter {
                        name: key,
                        known: F::KNOWN,
                    });
                }
            }
        }
    }
    Ok(f)
}

impl Filter for EventFilter {
    const KNOWN: &'static str =
        "since, until, user, node, tag, verb, resource, namespace, name, q, reads, limit, cursor";

    fn shared(&mut self) -> (&mut ListFilter, &mut usize) {
        (&mut self.list, &mut self.limit)
    }

    fn apply_own(&mut self, key: &str, value: String) -> Result<bool, QueryError> {
        match key {
            "tag" => self.tag = non_empty(value),
            "verb" => self.verb = non_empty(value),
            "resource" => self.resource = non_empty(value),
            "name" => self.name = non_empty(value),
            "q" => self.q = non_empty(value),
            "reads" => {
                self.reads = match value.as_str() {
                    "exclude" | "" => Reads::Exclude,
                    "only" => Reads::Only,
                    "include" => Reads::Include,
                    _ => return Err(QueryError::BadReads { value }),
                }
            }
            "cursor" => {
                let Some((kind, order)) = order_key(&value) else {
                    return Err(QueryError::BadCursor { value });
                };
                if kind != RecordKind::Event {
                    return Err(QueryError::NotEventCursor { value });
                }
                self.before = Some(order);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

impl Filter for SessionFilter {
    const KNOWN: &'static str = "since, until, user, node, namespace, pod, live, limit, cursor";

    fn shared(&mut self) -> (&mut ListFilter, &mut usize) {
        (&mut self.list, &mut self.limit)
    }

    fn apply_own(&mut self, key: &str, value: String) -> Result<bool, QueryError> {
        match key {
            "pod" => self.pod = non_empty(value),
            "live" => {
                self.live = Some(match value.as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(QueryError::BadLive { value }),
                })
            }
            "cursor" => {
                let Some(id) = parse_session_id(&value) else {
                    return Err(QueryError::BadCursor { value });
                };
                self.before = Some(id.as_u128());
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// Parses `value` as a UTC day, exactly `YYYY-MM-DD` (four, two and two
/// ASCII digits) naming a real date.
fn parse_date(value: String) -> Result<time::Date, QueryError> {
    let b = value.as_bytes();
    let shaped = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    let date = shaped
        .then(|| {
            let year = value[0..4].parse::<i32>().ok()?;
            let month = time::Month::try_from(value[5..7].parse::<u8>().ok()?).ok()?;
            let day = value[8..10].parse::<u8>().ok()?;
            time::Date::from_calendar_date(year, month, day).ok()
        })
        .flatten();
    date.ok_or(QueryError::BadDate { value })
}

/// The day of `GET /api/v1/verification?date=YYYY-MM-DD` (`pairs`: the
/// decoded query): `date` exactly once, no other parameter.
pub(crate) fn verification_day(pairs: Vec<(String, String)>) -> Result<time::Date, QueryError> {
    let mut date = None;
    for (key, value) in pairs {
        if key != "date" {
            return Err(QueryError::UnknownParameter {
                name: key,
                known: "date",
            });
        }
        if date.is_some() {
            return Err(QueryError::RepeatedParameter { name: "date" });
        }
        date = Some(parse_date(value)?);
    }
    date.ok_or(QueryError::MissingParameter { name: "date" })
}

/// The decoded `key=value` pairs of a query string (`application/x-www-form-urlencoded`).
pub(crate) fn pairs(raw_query: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw_query.as_bytes())
        .into_owned()
        .collect()
}

/// Parses `raw_query` (a query string, any text) as `GET /api/v1/events` and as
/// `GET /api/v1/sessions` do, and returns what each would refuse it with, if anything: the
/// entry point of the query-parameter fuzz target (`fuzz/`).
pub fn check_query(raw_query: &str) -> [Result<(), String>; 2] {
    [
        event_filter(pairs(raw_query))
            .map(|_| ())
            .map_err(|e| e.to_string()),
        session_filter(pairs(raw_query))
            .map(|_| ())
            .map_err(|e| e.to_string()),
    ]
}

/// The filter of `GET /api/v1/events?…` (`pairs`: the decoded query).
pub(crate) fn event_filter(pairs: Vec<(String, String)>) -> Result<EventFilter, QueryError> {
    parse(pairs)
}

/// The filter of `GET /api/v1/sessions?…` (`pairs`: the decoded query).
pub(crate) fn session_filter(pairs: Vec<(String, String)>) -> Result<SessionFilter, QueryError> {
    parse(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(q: &str) -> Result<time::Date, String> {
        verification_day(pairs(q)).map_err(|e| e.to_string())
    }

    #[test]
    fn a_verification_day_is_exactly_one_real_yyyy_mm_dd() {
        let want = time::Date::from_calendar_date(2026, time::Month::February, 28).ok();
        assert_eq!(day("date=2026-02-28").ok(), want);
        assert!(day("date=2024-02-29").is_ok(), "a leap day");
        for bad in [
            "date=2026-02-29",
            "date=2026-13-01",
            "date=2026-00-10",
            "date=2026-1-01",
            "date=26-01-01",
            "date=2026-01-01T00:00:00Z",
            "date=+026-01-01",
            "date=2026-01-0%0A",
            "date=2026/01/01",
            "date=",
            "date=%EF%BC%92026-01-01",
        ] {
            let err = day(bad).unwrap_err();
            assert!(
                err.contains("expected a UTC day as YYYY-MM-DD"),
                "{bad}: {err}"
            );
        }
        assert!(day("").unwrap_err().contains("required"));
        assert!(day("date=2026-01-01&date=2026-01-02")
            .unwrap_err()
            .contains("more than once"));
        assert!(day("date=2026-01-01&since=1")
            .unwrap_err()
            .contains("unknown query parameter \"since\""));
    }

    proptest::proptest! {
        #[test]
        fn parse_date_never_panics_and_round_trips(s in "\\PC{0,16}", y in 0i32..=9999, o in 1u8..=12, d in 1u8..=31) {
            let _ = parse_date(s);
            let text = format!("{y:04}-{o:02}-{d:02}");
            match parse_date(text.clone()) {
                Ok(date) => {
                    proptest::prop_assert_eq!(
                        format!("{:04}-{:02}-{:02}", date.year(), u8::from(date.month()), date.day()),
                        text
                    );
                }
                Err(_) => proptest::prop_assert!(d > 28),
            }
        }
    }
}
