//! SIGHUP makes `IdentityFileWhoIs` re-read its file (its own test binary, since it signals the
//! whole process).
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use identity::{IdentityFileWhoIs, ReloadOptions, WhoIs};

fn one_entry(login: &str) -> String {
    format!(
        "entries:\n  - sources: [\"100.64.0.0/10\"]\n    Node: {{StableID: n1, Name: n1.ts.net.}}\n    UserProfile: {{LoginName: {login}}}\n"
    )
}

#[tokio::test]
async fn sighup_reloads_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ids.yaml");
    std::fs::write(&path, one_entry("before@example.com")).unwrap();
    // Polling off: only the signal can trigger the reload.
    let whois = IdentityFileWhoIs::watch(
        &path,
        ReloadOptions {
            poll_interval: None,
            reload_on_sighup: true,
        },
    )
    .unwrap();
    std::fs::write(&path, one_entry("after@example.com")).unwrap();
    let peer = "100.64.0.1:1".parse().unwrap();
    assert_eq!(
        whois.whois(peer).await.unwrap().identity.login_name,
        "before@example.com"
    );

    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());

    let deadline = Instant::now() + Duration::from_secs(60);
    while whois.whois(peer).await.unwrap().identity.login_name != "after@example.com" {
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not reload the identity file"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(whois.generation(), 2);
}
