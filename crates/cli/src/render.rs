//! Events and sessions as a table, JSON or JSON lines.
//!
//! Table cells are recorded data that callers control (paths, user agents, names): every control
//! character is shown as `?`, so nothing a caller recorded can move the cursor or retitle the
//! terminal of whoever reads the table. JSON output escapes what JSON escapes; pipe it to a
//! program, not to a terminal, when records may be hostile.

use std::io::Write;

use serde_json::Value;

use crate::error::CliError;
use crate::time_arg;

/// How results are printed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// Aligned columns for people.
    #[default]
    Table,
    /// One JSON array of the records as the API lists them.
    Json,
    /// One record per line, as the API lists it.
    Jsonl,
}

/// Column names of the events table.
pub(crate) const EVENT_COLUMNS: [&str; 8] = [
    "TIME",
    "CALLER",
    "VERB",
    "RESOURCE",
    "NAMESPACE",
    "NAME",
    "STATUS",
    "ID",
];

/// Column names of the sessions table.
pub(crate) const SESSION_COLUMNS: [&str; 8] = [
    "ID",
    "STARTED",
    "CALLER",
    "POD",
    "CONTAINER",
    "STATE",
    "DURATION",
    "SIZE",
];

/// `text` with every control character (C0, DEL, C1) shown as `?`.
pub(crate) fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn str_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// Who made the request: the login of a user's node, else the node's tags, else the node.
fn caller(user: &str, tags: Option<&Value>, node: &str) -> String {
    if !user.is_empty() {
        return user.to_owned();
    }
    let tags: Vec<&str> = tags
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if tags.is_empty() {
        node.to_owned()
    } else {
        tags.join(",")
    }
}

/// One listed event (`{"id", "event", "response"}`) as a table row.
pub(crate) fn event_row(listed: &Value) -> Vec<String> {
    let event = &listed["event"];
    let k8s = &event["kubernetes"];
    let resource = if k8s["IsResourceRequest"].as_bool().unwrap_or(false) {
        [
            str_at(k8s, "/APIGroup"),
            str_at(k8s, "/Resource"),
            str_at(k8s, "/Subresource"),
        ]
        .iter()
        .filter(|part| !part.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("/")
    } else {
        str_at(event, "/request/path").to_owned()
    };
    let decision = str_at(event, "/kubescribe/decision");
    let status = match listed["response"]["status"].as_u64() {
        _ if decision.starts_with("refused") => decision.to_owned(),
        Some(0) | None => "-".to_owned(),
        Some(code) => code.to_string(),
    };
    let verb = match str_at(k8s, "/Verb") {
        "" => str_at(event, "/request/method").to_lowercase(),
        verb => verb.to_owned(),
    };
    [
        event["timestamp"]
            .as_i64()
            .map(time_arg::rfc3339)
            .unwrap_or_default(),
        caller(
            str_at(event, "/source/nodeUser"),
            event.pointer("/source/nodeTags"),
            str_at(event, "/source/node"),
        ),
        verb,
        resource,
        str_at(k8s, "/Namespace").to_owned(),
        str_at(k8s, "/Name").to_owned(),
        status,
        str_at(listed, "/id").to_owned(),
    ]
    .iter()
    .map(|cell| sanitize(cell))
    .collect()
}

/// `bytes` in B, KiB, MiB or GiB.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `seconds` as `1h02m03s`, `2m03s` or `3.4s`.
fn duration(seconds: f64) -> String {
    let whole = seconds.max(0.0) as u64;
    match whole {
        0..60 => format!("{seconds:.1}s"),
        60..3600 => format!("{}m{:02}s", whole / 60, whole % 60),
        _ => format!("{}h{:02}m{:02}s", whole / 3600, whole / 60 % 60, whole % 60),
    }
}

/// One listed session as a table row.
pub(crate) fn session_row(session: &Value) -> Vec<String> {
    let header = &session["header"];
    let pod = match (
        str_at(header, "/kubernetes/namespace"),
        str_at(header, "/kubernetes/podName"),
    ) {
        ("", pod) => pod.to_owned(),
        (namespace, pod) => format!("{namespace}/{pod}"),
    };
    [
        str_at(session, "/id").to_owned(),
        session["startedMs"]
            .as_i64()
            .map(|ms| time_arg::rfc3339(ms / 1000))
            .unwrap_or_default(),
        caller(
            str_at(header, "/srcNodeUser"),
            header.get("srcNodeTags"),
            str_at(header, "/srcNode"),
        ),
        pod,
        str_at(header, "/kubernetes/container").to_owned(),
        str_at(session, "/state").to_owned(),
        session["durationSeconds"]
            .as_f64()
            .map(duration)
            .unwrap_or_default(),
        session["size"].as_u64().map(size).unwrap_or_default(),
    ]
    .iter()
    .map(|cell| sanitize(cell))
    .collect()
}

/// Rows under `columns`, each column as wide as its widest cell, two spaces apart.
pub(crate) fn write_table(
    out: &mut impl Write,
    columns: &[&str],
    rows: &[Vec<String>],
) -> Result<(), CliError> {
    let mut widths: Vec<usize> = columns.iter().map(|c| c.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut line = |cells: &mut dyn Iterator<Item = &str>| -> std::io::Result<()> {
        let mut text = String::new();
        for (i, (cell, width)) in cells.zip(&widths).enumerate() {
            if i + 1 == widths.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  "));
            }
        }
        writeln!(out, "{}", text.trim_end())
    };
    line(&mut columns.iter().copied()).map_err(CliError::Output)?;
    for row in rows {
        line(&mut row.iter().map(String::as_str)).map_err(CliError::Output)?;
    }
    Ok(())
}

/// `records` in `format` (`table` needs `columns` and `row`).
pub(crate) fn write_records(
    out: &mut impl Write,
    format: Format,
    records: &[Value],
    columns: &[&str],
    row: fn(&Value) -> Vec<String>,
) -> Result<(), CliError> {
    match format {
        Format::Table => {
            let rows: Vec<Vec<String>> = records.iter().map(row).collect();
            write_table(out, columns, &rows)
        }
        Format::Json => {
            let text = serde_json::to_string_pretty(records)
                .map_err(|e| CliError::Protocol(e.to_string()))?;
            writeln!(out, "{text}").map_err(CliError::Output)
        }
        Format::Jsonl => {
            for record in records {
                writeln!(out, "{record}").map_err(CliError::Output)?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    #[test]
    fn an_event_row_names_caller_resource_and_outcome() {
        let listed = json!({
            "id": "e-019a-3",
            "event": {
                "timestamp": 1764356885,
                "request": {"method": "DELETE", "path": "/apis/apps/v1/namespaces/prod/deployments/web"},
                "kubernetes": {"IsResourceRequest": true, "Verb": "delete", "APIGroup": "apps",
                    "Resource": "deployments", "Namespace": "prod", "Name": "web"},
                "source": {"node": "ci-runner", "nodeTags": ["tag:ci", "tag:prod"]}
            },
            "response": {"status": 200}
        });
        assert_eq!(
            event_row(&listed),
            [
                "2025-11-28T19:08:05Z",
                "tag:ci,tag:prod",
                "delete",
                "apps/deployments",
                "prod",
                "web",
                "200",
                "e-019a-3"
            ]
        );
        let refused = json!({"event": {"request": {"method": "GET", "path": "/healthz"},
            "kubernetes": {"IsResourceRequest": false},
            "source": {"node": "laptop", "nodeUser": "alice@example.com"},
            "kubescribe": {"decision": "refused-fail-closed"}}, "response": null});
        let row = event_row(&refused);
        assert_eq!(
            (
                row[1].as_str(),
                row[2].as_str(),
                row[3].as_str(),
                row[6].as_str()
            ),
            (
                "alice@example.com",
                "get",
                "/healthz",
                "refused-fail-closed"
            )
        );
    }

    #[test]
    fn terminal_escapes_in_records_are_neutralised() {
        let listed = json!({"event": {"request": {"method": "GET",
            "path": "/x\u{1b}]0;pwned\u{7}\u{9b}31m"}, "kubernetes": {}}});
        let row = event_row(&listed);
        assert_eq!(row[3], "/x?]0;pwned??31m");
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(3 * 1024 * 1024), "3.0 MiB");
        assert_eq!(duration(4.25), "4.2s");
        assert_eq!(duration(125.0), "2m05s");
        assert_eq!(duration(3723.0), "1h02m03s");
    }

    #[test]
    fn tables_align_their_columns() {
        let mut out = Vec::new();
        let rows = vec![
            vec!["a".to_owned(), "long cell".to_owned()],
            vec!["wider".to_owned(), "b".to_owned()],
        ];
        write_table(&mut out, &["X", "Y"], &rows).expect("written");
        assert_eq!(
            String::from_utf8_lossy(&out),
            "X      Y\na      long cell\nwider  b\n"
        );
    }

    proptest! {
        /// Whatever a record holds, a table row has every column and no control character.
        #[test]
        fn rows_never_carry_control_characters(
            path in ".*", user in ".*", name in "\\PC*", status in proptest::option::of(0u64..1000),
        ) {
            let listed = json!({"event": {"request": {"path": path}, "kubernetes": {"Name": name},
                "source": {"nodeUser": user}}, "response": {"status": status}});
            let row = event_row(&listed);
            prop_assert_eq!(row.len(), EVENT_COLUMNS.len());
            prop_assert!(row.iter().all(|cell| !cell.chars().any(char::is_control)));
        }
    }
}
