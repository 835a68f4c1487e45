//! The `requestinfo` example's line contract: one JSON line out per line in,
//! the `kubernetes` keys in Go order with `Parts` always a list, plus
//! `"error"`. Tested through `cli::process_line` and, end to end, through
//! the built example binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use k8s_request_parse::cli::{process_line, process_line_bytes};
use serde_json::Value;

const KEYS: [&str; 14] = [
    "IsResourceRequest",
    "Path",
    "Verb",
    "APIPrefix",
    "APIGroup",
    "APIVersion",
    "Namespace",
    "Resource",
    "Subresource",
    "Name",
    "Parts",
    "FieldSelector",
    "LabelSelector",
    "error",
];

fn keys_in_order(line: &str) -> Vec<String> {
    // serde_json is built with preserve_order in this workspace, so the
    // object keeps the line's key order.
    let value: Value = serde_json::from_str(line).unwrap();
    value.as_object().unwrap().keys().cloned().collect()
}

/// Input lines with the fields each answer must have.
fn cases() -> Vec<(&'static [u8], Value)> {
    vec![
        (
            br#"{"method":"GET","url":"/api/v1/pods?watch=1"}"#,
            serde_json::json!({"IsResourceRequest":true,"Path":"/api/v1/pods","Verb":"watch","APIPrefix":"api","APIGroup":"","APIVersion":"v1","Namespace":"","Resource":"pods","Subresource":"","Name":"","Parts":["pods"],"FieldSelector":"","LabelSelector":"","error":null}),
        ),
        (
            br#"{"method":"GET","url":"/healthz","extra":"ignored"}"#,
            serde_json::json!({"IsResourceRequest":false,"Path":"/healthz","Verb":"get","APIPrefix":"","APIGroup":"","APIVersion":"","Namespace":"","Resource":"","Subresource":"","Name":"","Parts":[],"FieldSelector":"","LabelSelector":"","error":null}),
        ),
        (
            br#"{"method":"DELETE","url":"/apis/apps/v1/namespaces/dev/deployments?labelSelector=app%3Dweb"}"#,
            serde_json::json!({"IsResourceRequest":true,"Path":"/apis/apps/v1/namespaces/dev/deployments","Verb":"deletecollection","APIPrefix":"apis","APIGroup":"apps","APIVersion":"v1","Namespace":"dev","Resource":"deployments","Subresource":"","Name":"","Parts":["deployments"],"FieldSelector":"","LabelSelector":"app=web","error":null}),
        ),
    ]
}

#[test]
fn successful_lines() {
    for (input, expected) in cases() {
        let out = process_line_bytes(input);
        assert_eq!(keys_in_order(&out), KEYS, "{out}");
        assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), expected);
    }
}

#[test]
fn path_verb_error_keeps_the_partial_info() {
    let out = process_line(r#"{"method":"GET","url":"/api/v1/watch"}"#);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(keys_in_order(&out), KEYS);
    assert_eq!(v["IsResourceRequest"], true);
    assert_eq!(v["Verb"], "get");
    assert_eq!(v["APIVersion"], "v1");
    assert_eq!(v["Parts"], serde_json::json!([]));
    let error = v["error"].as_str().unwrap();
    assert!(error.contains("watch") && error.contains("500"), "{error}");
}

#[test]
fn invalid_targets_and_invalid_lines_get_an_error_line() {
    for input in [
        &br#"{"method":"GET","url":"/api/v1/pods/%zz"}"#[..],
        br#"{"method":"GET"}"#,
        br#"{"url":"/api"}"#,
        br#"{"method":1,"url":"/api"}"#,
        b"not json",
        b"",
        b"[1,2]",
        b"{\"method\":\"GET\",\"url\":\"/\xff\"}",
    ] {
        let out = process_line_bytes(input);
        assert!(!out.contains('\n'));
        assert_eq!(keys_in_order(&out), KEYS, "{out}");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert!(v["error"].is_string(), "{out}");
        assert_eq!(v["Parts"], serde_json::json!([]));
    }
    let v: Value =
        serde_json::from_str(&process_line(r#"{"method":"GET","url":"/a%zz"}"#)).unwrap();
    assert!(v["error"].as_str().unwrap().contains("%zz"));
}

/// The example binary, which `cargo test` builds next to the test binaries.
fn example_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    // target/<profile>/deps/example_contract-<hash> -> target/<profile>/examples
    let dir = exe.parent()?.parent()?.join("examples");
    let path = dir.join(format!("requestinfo{}", std::env::consts::EXE_SUFFIX));
    path.is_file().then_some(path)
}

#[test]
fn example_binary_end_to_end() {
    let Some(binary) = example_binary() else {
        eprintln!(
            "SKIPPED: the requestinfo example is not built (run `cargo test -p kubescribe-k8s-request-parse`, which builds examples)"
        );
        return;
    };
    let mut input = Vec::new();
    for (line, _) in cases() {
        input.extend_from_slice(line);
        input.push(b'\n');
    }
    input.extend_from_slice(b"garbage\n");
    input.extend_from_slice(br#"{"method":"GET","url":"/api/v1/proxy"}"#); // no final newline

    let mut child = Command::new(&binary)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), cases().len() + 2, "{stdout}");
    for (line, (_, expected)) in lines.iter().zip(cases()) {
        assert_eq!(keys_in_order(line), KEYS);
        assert_eq!(serde_json::from_str::<Value>(line).unwrap(), expected);
    }
    let garbage: Value = serde_json::from_str(lines[cases().len()]).unwrap();
    assert!(garbage["error"]
        .as_str()
        .unwrap()
        .contains("invalid input line"));
    let proxy: Value = serde_json::from_str(lines[cases().len() + 1]).unwrap();
    assert!(proxy["error"].as_str().unwrap().contains("proxy"));
    assert_eq!(proxy["IsResourceRequest"], true);
}
