//! The README documents every flag and environment variable each binary's
//! `--help` lists, so the two cannot drift apart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use test_support::process::workspace_bin;

fn help(binary: &str, args: &[&str]) -> String {
    let path = workspace_bin(binary).unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(path)
        .args(args)
        .arg("--help")
        .output()
        .expect("running --help");
    assert!(out.status.success(), "{binary} --help failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `--flag` names and `[env: NAME=]` variables in clap's long help.
fn documented_names(help: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in help.lines() {
        let trimmed = line.trim_start();
        // A short form first (`-h, --help`, `-o, --output <FORMAT>`).
        let bytes = trimmed.as_bytes();
        let flag_part = if bytes.len() > 4
            && bytes[0] == b'-'
            && bytes[1].is_ascii_alphanumeric()
            && &bytes[2..4] == b", "
        {
            &trimmed[4..]
        } else {
            trimmed
        };
        if let Some(rest) = flag_part.strip_prefix("--") {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            if name != "help" && name != "version" {
                names.insert(format!("--{name}"));
            }
        }
        if let Some(start) = trimmed.find("[env: ") {
            let var: String = trimmed[start + 6..]
                .chars()
                .take_while(|c| *c != '=')
                .collect();
            names.insert(var);
        }
    }
    names
}

/// Fails naming every one of `names` the README does not mention.
fn assert_documented(readme: &str, names: &BTreeSet<String>) {
    let missing: Vec<_> = names
        .iter()
        .filter(|n| !readme.contains(n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "README.md does not document: {missing:?}"
    );
}

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
        .expect("README.md")
}

#[test]
fn readme_documents_every_proxy_flag_and_env_var() {
    let readme = readme();
    let names = documented_names(&help("kubescribe-proxy", &[]));
    assert!(
        names.contains("--listen"),
        "could not read the proxy's --help: {names:?}"
    );
    let missing: Vec<_> = names
        .iter()
        .filter(|n| !readme.contains(&format!("`{n}")) && !readme.contains(n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "README.md does not document: {missing:?}"
    );
}

#[test]
fn readme_documents_every_whois_flag() {
    let readme = readme();
    let names = documented_names(&help("kubescribe-proxy", &["whois"]));
    assert_documented(&readme, &names);
}

#[test]
fn readme_documents_every_recorder_flag_and_env_var() {
    let readme = readme();
    let names = documented_names(&help("kubescribe-recorder", &[]));
    assert!(
        names.contains("--dst") && names.contains("TSRECORDER_DST"),
        "could not read the recorder's --help: {names:?}"
    );
    assert_documented(&readme, &names);
}

#[test]
fn readme_documents_every_flag_of_the_command_line() {
    let readme = readme();
    let mut names = documented_names(&help("kubescribe", &[]));
    for sub in ["events", "sessions", "play", "completions"] {
        names.extend(documented_names(&help("kubescribe", &[sub])));
    }
    assert!(
        names.contains("--recorder") && names.contains("--follow") && names.contains("--speed"),
        "could not read kubescribe's --help: {names:?}"
    );
    assert_documented(&readme, &names);
}

#[test]
fn readme_documents_every_operator_flag_and_env_var() {
    let readme = readme();
    let mut names = documented_names(&help("kubescribe-operator", &[]));
    names.extend(documented_names(&help("kubescribe-operator", &["crds"])));
    assert!(
        names.contains("--metrics-addr")
            && names.contains("--lease-duration")
            && names.contains("--out-dir"),
        "could not read kubescribe-operator's --help: {names:?}"
    );
    assert_documented(&readme, &names);
}
