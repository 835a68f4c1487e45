//! `AllowList`: who may upload to / read from a recorder.
#![allow(clippy::unwrap_used)]

use identity::{AllowList, AllowListError, Identity};

fn user(login: &str) -> Identity {
    Identity {
        node_name: "laptop.ts.net".into(),
        login_name: login.into(),
        ..Identity::default()
    }
}

fn tagged(tags: &[&str]) -> Identity {
    Identity {
        node_name: "proxy.ts.net".into(),
        login_name: "tagged-devices".into(),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        ..Identity::default()
    }
}

#[test]
fn default_permits_any_tagged_node_and_no_user() {
    let list = AllowList::tagged_nodes();
    assert!(list.permits(&tagged(&["tag:k8s"])));
    assert!(list.permits(&tagged(&["tag:anything", "tag:else"])));
    assert!(!list.permits(&user("alice@example.com")));
    assert!(!list.permits(&user("tagged-devices")));
    assert_eq!(list.to_string(), "tag:*");
}

#[test]
fn parses_tags_and_users() {
    let list: AllowList = " tag:k8s , user:alice@example.com,tag:ci ".parse().unwrap();
    assert!(list.permits(&tagged(&["tag:ci"])));
    assert!(list.permits(&tagged(&["tag:other", "tag:k8s"])));
    assert!(!list.permits(&tagged(&["tag:other"])));
    assert!(list.permits(&user("alice@example.com")));
    assert!(!list.permits(&user("Alice@example.com")));
    assert!(!list.permits(&user("bob@example.com")));
    assert_eq!(list.to_string(), "tag:k8s,tag:ci,user:alice@example.com");
    assert_eq!(list.to_string().parse::<AllowList>().unwrap(), list);
}

#[test]
fn a_user_entry_never_matches_a_tagged_node() {
    // Tagged nodes report the "tagged-devices" pseudo-user; that is not a person.
    let list = AllowList::parse("user:tagged-devices").unwrap();
    assert!(!list.permits(&tagged(&["tag:k8s"])));
    // An untagged identity with no login name is never permitted.
    let list = AllowList::parse("user:alice@example.com").unwrap();
    assert!(!list.permits(&user("")));
}

#[test]
fn bad_specs_are_errors() {
    assert_eq!(AllowList::parse(""), Err(AllowListError::Empty));
    assert_eq!(AllowList::parse(" , "), Err(AllowListError::Empty));
    for bad in [
        "k8s",
        "tag:",
        "user:",
        "group:eng",
        "tag:a b",
        "user:*",
        "TAG:k8s",
    ] {
        let err = AllowList::parse(bad).unwrap_err();
        assert!(matches!(err, AllowListError::BadEntry(_)), "{bad}: {err:?}");
        assert!(err.to_string().contains("tag:NAME"), "{err}");
    }
}
