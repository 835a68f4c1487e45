//! Fuzz the Secret body sniffer and the redaction of an event with
//! arbitrary bodies: the first byte picks whether the body counts as cut
//! short and which request it was sent with; the rest is the body. Nothing
//! may panic; a redacted event keeps no body and says why; a body the
//! sniffer calls a Secret is redacted wherever it was sent.

#![no_main]

use audit_policy::{names_secret, Reason, Redactor};
use event_model::Event;
use libfuzzer_sys::fuzz_target;

const REQUESTS: [(&str, &str); 4] = [
    ("POST", "/api/v1/namespaces/a/configmaps"),
    ("PATCH", "/api/v1/namespaces/a/secrets/s"),
    ("PUT", "/apis/example.com/v1/namespaces/a/credentials/c"),
    ("POST", "/api/v1/namespaces/a/pods"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&head, body)) = data.split_first() else {
        return;
    };
    let truncated = head & 1 == 1;
    let secret = names_secret(body, truncated);

    let (method, path) = REQUESTS[usize::from(head >> 1) % REQUESTS.len()];
    let redactor = Redactor::new(["example.com/credentials".parse().expect("valid")]);
    let mut event = Event::default();
    event.request.method = method.to_owned();
    event.request.path = path.to_owned();
    event.request.body = body.to_vec();
    if truncated {
        let ext = event.kubescribe.get_or_insert_with(Default::default);
        ext.body = Some(event_model::BodyCapture {
            truncated: true,
            captured_bytes: body.len() as u64,
        });
    }
    let reason = redactor.redact_event(&mut event);
    if body.is_empty() {
        assert!(reason.is_none());
        return;
    }
    match reason {
        Some(reason) => {
            assert!(event.request.body.is_empty());
            let redaction = event.kubescribe.and_then(|k| k.redaction).expect("says why");
            assert_eq!(redaction.reason, reason.as_str());
            assert_eq!(redaction.dropped_bytes, body.len() as u64);
        }
        None => {
            assert!(!secret, "a body naming a Secret was kept");
            assert_eq!(event.request.body, body);
            assert!(!path.contains("/secrets/") && !path.contains("/credentials/"));
        }
    }
    if secret {
        assert!(matches!(reason, Some(Reason::Secret)) || path.contains("/credentials/"));
    }
});
