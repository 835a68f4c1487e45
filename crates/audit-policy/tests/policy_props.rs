//! Properties of the Policy parser and evaluator: any text is refused or read without a panic;
//! a generated Policy is read back rule for rule; the first matching rule decides.

use audit_policy::{Attributes, Level, Policy};
use proptest::prelude::*;

const LEVELS: [&str; 4] = ["None", "Metadata", "Request", "RequestResponse"];

fn name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,8}"
}

/// One rule as YAML, with its level.
fn rule() -> impl Strategy<Value = (usize, String)> {
    (
        0..4usize,
        prop::collection::vec(name(), 0..3),
        prop::collection::vec(
            prop::sample::select(vec!["get", "list", "create", "delete"]),
            0..3,
        ),
        prop::collection::vec(name(), 0..3),
        any::<bool>(),
    )
        .prop_map(|(level, users, verbs, resources, catch_all)| {
            let mut yaml = format!("  - level: {}\n", LEVELS[level]);
            if !catch_all {
                if !users.is_empty() {
                    yaml.push_str(&format!("    users: {users:?}\n"));
                }
                if !verbs.is_empty() {
                    yaml.push_str(&format!("    verbs: {verbs:?}\n"));
                }
                if !resources.is_empty() {
                    yaml.push_str(&format!(
                        "    resources: [{{group: \"\", resources: {resources:?}}}]\n"
                    ));
                }
            }
            (level, yaml)
        })
}

proptest! {
    #[test]
    fn any_text_is_refused_or_read(text in "\\PC{0,300}") {
        let _ = Policy::from_yaml(&text);
    }

    #[test]
    fn any_policy_shaped_text_is_refused_or_read(
        text in "(apiVersion: audit.k8s.io/v1\nkind: Policy\n)?(rules:\n)?( *- ?(level|users|verbs|resources|group|namespaces|nonResourceURLs|omitStages)?: ?[\\[\\]{}a-zA-Z*/\"]{0,12}\n){0,8}"
    ) {
        let _ = Policy::from_yaml(&text);
    }

    #[test]
    fn generated_policies_read_back_and_the_first_match_decides(
        rules in prop::collection::vec(rule(), 0..8),
        user in name(),
        method in prop::sample::select(vec!["GET", "POST", "DELETE"]),
        resource in name(),
    ) {
        let yaml = format!(
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n{}",
            rules.iter().map(|(_, r)| r.as_str()).collect::<String>()
        );
        let yaml = if rules.is_empty() { yaml.replace("rules:\n", "") } else { yaml };
        let policy = Policy::from_yaml(&yaml).map_err(|e| TestCaseError::fail(format!("{e}\n{yaml}")))?;
        prop_assert_eq!(policy.rules().len(), rules.len());
        for (read, (level, _)) in policy.rules().iter().zip(&rules) {
            prop_assert_eq!(read.level.as_str(), LEVELS[*level]);
        }
        let path = format!("/api/v1/namespaces/default/{resource}");
        let info = k8s_request_parse::request_info(method, &path).expect("valid");
        let config = policy.evaluate(&Attributes { user: &user, groups: &[], request: &info });
        match config.rule {
            Some(i) => {
                prop_assert_eq!(config.level, policy.rules()[i].level);
                // No earlier rule is a catch-all.
                for earlier in &policy.rules()[..i] {
                    let catch_all = earlier.users.is_empty() && earlier.verbs.is_empty() && earlier.resources.is_empty();
                    prop_assert!(!catch_all);
                }
            }
            None => {
                prop_assert_eq!(config.level, Level::None);
                prop_assert!(policy.rules().iter().all(|r| !(r.users.is_empty() && r.verbs.is_empty() && r.resources.is_empty())));
            }
        }
    }
}
