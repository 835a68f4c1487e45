//! DuckDB (the real one, from the peers venv) queries the disk layout as
//! `docs/storage.md` shows: segments holding many commits, the Hive
//! partitions, and the event/response join.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::*;
use http::StatusCode;

const QUERY: &str = r#"
import duckdb, json, sys
data = sys.argv[1]
rows = duckdb.sql(f"""
SELECT e.id, e.kubernetes.Verb AS verb, e.kubescribe.key AS key, r.status, e.date, e.hour
FROM read_json('{data}/events/*/*/*.ndjson', format='newline_delimited', hive_partitioning=true, union_by_name=true) e
LEFT JOIN read_json('{data}/responses/*/*/*.ndjson', format='newline_delimited', hive_partitioning=true, union_by_name=true) r
  ON r.key = e.kubescribe.key
ORDER BY e.id
""").fetchall()
print(json.dumps([[str(c) for c in row] for row in rows]))
"#;

#[tokio::test]
async fn duckdb_reads_segments_and_joins_responses() {
    let python = peers_dir().join("venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `cargo xtask peers`",
        python.display()
    );
    let r = disk_recorder(&[]).await;
    // Several group commits (sequential requests), single and batched.
    let mut ids = Vec::new();
    for i in 0..5 {
        let (status, v) = post_event(
            r.addr,
            &event_json("get", &format!("p{i}"), Some(&format!("k{i}"))),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    let mut batch = Vec::new();
    batch.extend(event_json("delete", "p5", Some("k5")));
    for (key, status) in [("k1", 403), ("k5", 200)] {
        batch.extend(
            format!(
                "{{\"type\":\"kubescribe-api-response\",\"id\":\"\",\"key\":\"{key}\",\"timestamp\":1767225601,\"status\":{status},\"durationMs\":1.5,\"responseBytes\":9}}\n"
            )
            .into_bytes(),
        );
    }
    let bearer = format!("Bearer {TOKEN}");
    let (status, _, body) = call(
        r.addr,
        "POST",
        "/v2/events",
        &[
            ("content-type", "application/x-ndjson"),
            ("authorization", &bearer),
        ],
        batch,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    ids.push(v["ids"][0].as_str().unwrap().to_owned());
    // Six commits went to at most two event segments (one per lane).
    let data = data_dir(&r);
    let files: Vec<_> = walk(&data.join("events"));
    assert!(
        (1..=2).contains(&files.len()),
        "expected segments, not one file per commit: {files:?}"
    );

    let out = Command::new(&python)
        .arg("-c")
        .arg(QUERY)
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "duckdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Vec<String>> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 6, "{rows:?}");
    // ORDER BY id is commit order.
    let got: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(got, ids.iter().map(String::as_str).collect::<Vec<_>>());
    let by_key = |k: &str| rows.iter().find(|r| r[2] == k).unwrap().clone();
    assert_eq!(by_key("k1")[3], "403");
    assert_eq!(by_key("k5")[3], "200");
    assert_eq!(by_key("k5")[1], "delete");
    assert_eq!(by_key("k0")[3], "None");
    // Hive partitions come from the path.
    for row in &rows {
        let part = format!("date={}/hour={:0>2}", row[4], row[5]);
        assert!(
            files.iter().any(|f| f.to_string_lossy().contains(&part)),
            "{part} not in {files:?}"
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}
