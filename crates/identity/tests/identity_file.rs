//! `IdentityFileWhoIs`: format, matching, validation and reload on change.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use identity::{
    explain, impersonation_headers, IdentityFile, IdentityFileError, IdentityFileWhoIs, Outcome,
    RecordingRules, ReloadOptions, WhoIs, WhoIsError,
};

const EXAMPLE: &str = include_str!("../examples/identities.yaml");

fn peer(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn example_file_resolves_users_and_tagged_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "ids.yaml", EXAMPLE);
    let whois = IdentityFileWhoIs::load(&path).unwrap();

    let alice = whois.whois(peer("100.101.102.103:4000")).await.unwrap();
    assert_eq!(alice.identity.node_name, "alice-laptop.tail1234.ts.net");
    assert_eq!(alice.identity.login_name, "alice@example.com");
    assert_eq!(alice.identity.user_id, 3459871234567890);
    assert_eq!(
        RecordingRules::from_caps(&alice.caps).unwrap(),
        RecordingRules {
            recorder_addrs: vec![peer("127.0.0.1:8080"), peer("[::1]:8080")],
            recorder_tags: vec![],
            fail_open: false,
            enable_events: true
        }
    );
    assert_eq!(
        impersonation_headers(&alice).unwrap().groups(),
        ["system:masters"]
    );

    // IPv6 source of the same entry.
    let again = whois
        .whois(peer("[fd7a:115c:a1e0::a901:6667]:1"))
        .await
        .unwrap();
    assert_eq!(again.identity, alice.identity);

    let local = whois.whois(peer("127.0.0.1:5555")).await.unwrap();
    assert!(local.identity.is_tagged());
    assert_eq!(local.identity.node_name, "localhost.example.internal");
    assert_eq!(
        RecordingRules::from_caps(&local.caps).unwrap(),
        RecordingRules::default()
    );
    let local6 = whois.whois(peer("[::1]:5555")).await.unwrap();
    assert_eq!(local6.identity, local.identity);
    // IPv4-mapped IPv6 (dual-stack listeners) matches the IPv4 CIDR.
    let mapped = whois.whois(peer("[::ffff:127.0.0.1]:5555")).await.unwrap();
    assert_eq!(mapped.identity, local.identity);
}

#[tokio::test]
async fn cert_subject_entries_need_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let whois = IdentityFileWhoIs::load(write(dir.path(), "ids.yaml", EXAMPLE)).unwrap();
    // From the CI subnet without a certificate: no entry matches.
    let err = whois.whois(peer("10.20.3.4:1")).await.unwrap_err();
    assert!(matches!(err, WhoIsError::NoMatch { .. }), "{err:?}");
    // With the wrong subject: no match either.
    assert!(whois
        .lookup_with_cert_subject(peer("10.20.3.4:1"), "CN=someone-else,O=example")
        .unwrap_err()
        .is_no_match());
    // With the right subject but from elsewhere: the sources condition still applies.
    assert!(whois
        .lookup_with_cert_subject(peer("10.99.0.1:1"), "CN=ci-runner,O=example")
        .unwrap_err()
        .is_no_match());
    let ci = whois
        .lookup_with_cert_subject(peer("10.20.3.4:1"), "CN=ci-runner,O=example")
        .unwrap();
    assert_eq!(ci.identity.tags, ["tag:ci"]);
    // An entry without certSubject matches any subject.
    let local = whois
        .lookup_with_cert_subject(peer("127.0.0.1:1"), "CN=whoever")
        .unwrap();
    assert_eq!(local.identity.tags, ["tag:k8s-readers"]);
}

#[tokio::test]
async fn first_matching_entry_wins_and_json_is_accepted() {
    let json = r#"{"entries":[
      {"sources":["100.64.0.0/24"],"Node":{"StableID":"nNarrow","Name":"narrow.ts.net."},
       "UserProfile":{"LoginName":"narrow@example.com"}},
      {"sources":["100.64.0.0/10"],"Node":{"StableID":"nWide","Name":"wide.ts.net."},
       "UserProfile":{"LoginName":"wide@example.com"}},
      {"sources":["100.64.0.7/32"],"Node":{"StableID":"nNever","Name":"never.ts.net."},
       "UserProfile":{"LoginName":"never@example.com"}}
    ]}"#;
    let dir = tempfile::tempdir().unwrap();
    let whois = IdentityFileWhoIs::load(write(dir.path(), "ids.json", json)).unwrap();
    let c = whois.whois(peer("100.64.0.7:1")).await.unwrap();
    assert_eq!(c.identity.stable_node_id, "nNarrow");
    let c = whois.whois(peer("100.65.0.7:1")).await.unwrap();
    assert_eq!(c.identity.stable_node_id, "nWide");
    let err = whois.whois(peer("192.0.2.1:1")).await.unwrap_err();
    match err {
        WhoIsError::NoMatch { peer: p, detail } => {
            assert_eq!(p, peer("192.0.2.1:1"));
            assert!(detail.contains("ids.json"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_real_whois_answer_pastes_into_an_entry() {
    // An entry can carry the whole Node object tailscaled prints (unknown Node fields ignored).
    let user: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/whois-user.json")).unwrap();
    let mut entry = user.as_object().unwrap().clone();
    entry.insert("sources".into(), serde_json::json!(["100.101.102.103/32"]));
    let doc = serde_json::json!({ "entries": [entry] }).to_string();
    let file = IdentityFile::parse(doc.as_bytes(), Path::new("pasted.json")).unwrap();
    let found = file
        .lookup("100.101.102.103".parse().unwrap(), None)
        .unwrap();
    assert_eq!(found.node.stable_id, "nKf3tZ7CNTRL");
    assert_eq!(found.cap_map["tailscale.com/cap/kubernetes"].len(), 2);
}

#[test]
fn invalid_files_are_rejected_with_the_reason() {
    let cases: &[(&str, &str)] = &[
        ("entries:\n  - sorces: [\"10.0.0.0/8\"]\n", "sorces"),
        ("entries:\n  - Node: {StableID: n, Name: a.}\n    UserProfile: {LoginName: a}\n", "can never match"),
        ("entries:\n  - sources: [10.0.0.0/33]\n", "sources"),
        ("entries:\n  - sources: [10.0.0.0/8]\n    UserProfile: {LoginName: a}\n", "Node.Name"),
        ("entries:\n  - sources: [10.0.0.0/8]\n    Node: {Name: a.}\n", "Impersonate-User"),
        (
            "entries:\n  - sources: [10.0.0.0/8]\n    Node: {Name: a.}\n    UserProfile: {LoginName: a}\n    CapMap:\n      tailscale.com/cap/kubernetes: [[]]\n",
            "CapMap",
        ),
        (
            "entries:\n  - sources: [10.0.0.0/8]\n    Node: {Name: a.}\n    UserProfile: {LoginName: a}\n    CapMap:\n      tailscale.com/cap/kubernetes: [{recorderAddrs: [\"nonsense\"], enforceRecorder: true}]\n",
            "nonsense",
        ),
        ("entries: [", "parse"),
        ("{\"entries\": 5}", "parse"),
        ("extra: 1\nentries: []\n", "extra"),
    ];
    for (text, needle) in cases {
        let err = IdentityFile::parse(text.as_bytes(), Path::new("bad.yaml")).unwrap_err();
        let message = err.to_string();
        assert!(message.contains(needle), "{text:?}: {message}");
        assert!(message.contains("bad.yaml"), "{message}");
    }
}

#[test]
fn yaml_alias_bombs_and_deep_nesting_are_rejected_cheaply() {
    // Billion laughs, aimed at a place that accepts any value (a grant rule).
    let mut bomb = String::from("entries:\n  - sources: [10.0.0.0/8]\n    Node: {Name: a.}\n    UserProfile: {LoginName: a}\n    CapMap:\n      a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let prev = format!("*a{}", i - 1);
        bomb.push_str(&format!(
            "      a{i}: &a{i} [{}]\n",
            std::iter::repeat_n(prev.as_str(), 10)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let err = IdentityFile::parse(bomb.as_bytes(), Path::new("bomb.yaml")).unwrap_err();
    assert!(matches!(err, IdentityFileError::Parse { .. }), "{err:?}");

    let deep = format!("entries: {}{}", "[".repeat(100_000), "]".repeat(100_000));
    let err = IdentityFile::parse(deep.as_bytes(), Path::new("deep.yaml")).unwrap_err();
    assert!(err.to_string().contains("nested"), "{err}");
    let deep_json = format!(
        "{{\"entries\": {}{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert!(IdentityFile::parse(deep_json.as_bytes(), Path::new("deep.json")).is_err());
    // Ordinary flow nesting is fine.
    let ok = "entries: [{sources: [10.0.0.0/8], Node: {Name: a.}, UserProfile: {LoginName: a},\n  CapMap: {x: [[[[{y: [[1]]}]]]]}}]\n";
    IdentityFile::parse(ok.as_bytes(), Path::new("ok.yaml")).unwrap();

    let huge = vec![b' '; identity::MAX_IDENTITY_FILE_BYTES + 1];
    assert!(matches!(
        IdentityFile::parse(&huge, Path::new("huge.yaml")),
        Err(IdentityFileError::TooLarge { .. })
    ));
}

#[test]
fn missing_file_is_a_read_error() {
    let err = IdentityFileWhoIs::load("/nonexistent/identities.yaml").unwrap_err();
    assert!(matches!(err, IdentityFileError::Read { .. }), "{err:?}");
}

#[tokio::test]
async fn explain_reports_policy_impersonation_and_grant_errors_as_values() {
    let dir = tempfile::tempdir().unwrap();
    let whois = IdentityFileWhoIs::load(write(dir.path(), "ids.yaml", EXAMPLE)).unwrap();
    let e = explain(&whois, peer("100.101.102.103:1"), None)
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(&e.to_json_pretty()).unwrap();
    assert_eq!(json["identity"]["login_name"], "alice@example.com");
    assert_eq!(json["recording_rules"]["ok"]["fail_open"], false);
    assert_eq!(
        json["recording_rules"]["ok"]["recorder_addrs"],
        serde_json::json!(["127.0.0.1:8080", "[::1]:8080"])
    );
    assert_eq!(json["impersonation"]["ok"]["user"], "alice@example.com");
    assert_eq!(
        json["impersonation"]["ok"]["headers"],
        serde_json::json!([
            "Impersonate-User: alice@example.com",
            "Impersonate-Group: system:masters"
        ])
    );
    assert_eq!(
        json["impersonation"]["ok"]["groups"],
        serde_json::json!(["system:masters"])
    );
    assert!(!e.verdict.is_empty());

    // WhoIs failure is the error.
    assert!(explain(&whois, peer("192.0.2.1:1"), None)
        .await
        .unwrap_err()
        .is_no_match());

    // A bad grant (only reachable through another WhoIs source; identity files reject it on
    // load) is a value.
    let mut caller = whois.lookup(peer("127.0.0.1:1")).unwrap();
    caller.caps.insert(
        "tailscale.com/cap/kubernetes".into(),
        vec![serde_json::json!({"enforceRecorder": "yes"})],
    );
    let e = identity::Explanation::of(peer("127.0.0.1:1"), caller);
    assert!(matches!(e.recording_rules, Outcome::Error(_)));
    assert!(matches!(e.impersonation, Outcome::Error(_)));
    assert!(e.verdict[0].contains("refused"), "{:?}", e.verdict);
}

fn one_entry(login: &str) -> String {
    format!(
        "entries:\n  - sources: [\"100.64.0.0/10\"]\n    Node: {{StableID: n1, Name: n1.ts.net.}}\n    UserProfile: {{LoginName: {login}}}\n"
    )
}

async fn wait_for_login(whois: &IdentityFileWhoIs, login: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let c = whois.whois(peer("100.64.0.1:1")).await.unwrap();
        if c.identity.login_name == login {
            return;
        }
        assert!(Instant::now() < deadline, "identity file was not reloaded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn reloads_on_change_and_keeps_the_previous_version_when_the_new_one_is_bad() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "ids.yaml", &one_entry("first@example.com"));
    let whois = IdentityFileWhoIs::watch(
        &path,
        ReloadOptions {
            poll_interval: Some(Duration::from_millis(50)),
            reload_on_sighup: false,
        },
    )
    .unwrap();
    assert_eq!(whois.generation(), 1);

    // Rewritten in place.
    std::fs::write(&path, one_entry("second@example.com")).unwrap();
    wait_for_login(&whois, "second@example.com").await;
    assert_eq!(whois.generation(), 2);

    // Replaced by rename (how editors and Kubernetes ConfigMaps update files).
    let tmp = write(dir.path(), "ids.yaml.tmp", &one_entry("third@example.com"));
    std::fs::rename(&tmp, &path).unwrap();
    wait_for_login(&whois, "third@example.com").await;

    // A broken version is rejected; the third stays in force. Then a good one is picked up.
    std::fs::write(&path, "entries: [ this is not yaml").unwrap();
    let generation = whois.generation();
    std::fs::write(dir.path().join("marker"), "").unwrap();
    // Give the poller a few rounds to see (and reject) the broken file.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(whois.generation(), generation);
    assert_eq!(
        whois
            .whois(peer("100.64.0.1:1"))
            .await
            .unwrap()
            .identity
            .login_name,
        "third@example.com"
    );
    std::fs::write(&path, one_entry("fourth@example.com")).unwrap();
    wait_for_login(&whois, "fourth@example.com").await;

    // Explicit reload reports the error and keeps the contents.
    std::fs::write(&path, "entries: 7").unwrap();
    assert!(matches!(
        whois.reload(),
        Err(IdentityFileError::Parse { .. })
    ));
    assert_eq!(
        whois.current().entries[0].user_profile.login_name,
        "fourth@example.com"
    );
}
