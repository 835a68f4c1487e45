//! Fuzz the audit Policy parser and evaluator with arbitrary text: a Policy is refused with an
//! error or read; a read Policy evaluates any request without a panic, and its decision names
//! a rule of that level (or none: level `None`).

#![no_main]

use audit_policy::{Attributes, Level, Policy};
use libfuzzer_sys::fuzz_target;

const REQUESTS: [(&str, &str); 5] = [
    ("GET", "/api/v1/namespaces/default/pods/p/log"),
    ("POST", "/api/v1/namespaces/a/configmaps"),
    ("DELETE", "/apis/apps/v1/namespaces/a/deployments/web"),
    ("GET", "/healthz/etcd"),
    ("PUT", "/api/v1/nodes/n/status"),
];

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(policy) = Policy::from_yaml(&text) else {
        return;
    };
    let groups = vec!["system:authenticated".to_owned(), "eng".to_owned()];
    for (method, path) in REQUESTS {
        let info = k8s_request_parse::request_info(method, path).expect("valid request");
        let config = policy.evaluate(&Attributes {
            user: "alice@example.com",
            groups: &groups,
            request: &info,
        });
        match config.rule {
            Some(i) => assert_eq!(policy.rules()[i].level, config.level),
            None => assert_eq!(config.level, Level::None),
        }
    }
});
