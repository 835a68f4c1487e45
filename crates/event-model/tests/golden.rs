//! Golden files: Tailscale-shaped JSON parses and re-serialises byte for byte.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use event_model::{
    to_go_json, CastEvent, CastEventCode, CastHeader, Record, ResizeOrder, TerminalSize,
};

fn data(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn event_round_trip(name: &str) -> event_model::Event {
    let bytes = data(name);
    let Record::Event(event) = Record::from_slice(&bytes).unwrap() else {
        panic!("{name} is not an event")
    };
    assert_eq!(
        to_go_json(&event).unwrap(),
        bytes,
        "{name}: re-serialised bytes differ"
    );
    event
}

#[test]
fn user_event_is_byte_identical_after_round_trip() {
    let event = event_round_trip("upstream-event-user.json");
    assert_eq!(event.request.body, br#"{"kind":"Pod"}"#);
    assert_eq!(event.kubernetes.verb, "create");
    assert_eq!(event.source.node_user_id, 4242);
    assert!(event.source.node_tags.is_empty());
    assert!(event.kubescribe.is_none());
}

#[test]
fn tagged_event_with_go_escapes_is_byte_identical_after_round_trip() {
    let event = event_round_trip("upstream-event-tagged.json");
    // Go wrote `&` as \u0026; we read the real character and write Go's escape back.
    assert_eq!(
        event.request.path,
        "/api/v1/pods?labelSelector=app%3Dfoo&limit=500"
    );
    assert_eq!(event.source.node_tags, ["tag:ci", "tag:k8s"]);
    assert_eq!(event.source.node_user_id, 0);
    assert_eq!(event.kubernetes.label_selector, "app=foo");
}

#[test]
fn go_nil_values_read_as_empty_and_parts_null_survives() {
    let bytes = data("upstream-event-nil.json");
    let Record::Event(event) = Record::from_slice(&bytes).unwrap() else {
        panic!()
    };
    assert!(event.request.body.is_empty());
    assert!(event.request.query_parameters.is_empty());
    assert_eq!(event.kubernetes.parts, None);
    assert_eq!(event.destination.node, "proxy.tail1234.ts.net");
    // The normalisation is documented: nil body and query become "" and {}.
    let text = String::from_utf8(to_go_json(&event).unwrap()).unwrap();
    assert!(text.contains(r#""body":"","queryParameters":{}"#), "{text}");
    assert!(text.contains(r#""Parts":null"#), "{text}");
}

#[test]
fn cast_headers_are_byte_identical_after_round_trip() {
    for name in [
        "upstream-cast-header.json",
        "upstream-cast-header-attach.json",
    ] {
        let bytes = data(name);
        let header: CastHeader = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(to_go_json(&header).unwrap(), bytes, "{name}");
        assert_eq!(header.resize_order(), ResizeOrder::HeightFirst);
    }
}

#[test]
fn cast_stream_parses_with_height_first_resizes() {
    let bytes = data("upstream-session.cast");
    let mut lines = bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty());
    let header: CastHeader = serde_json::from_slice(lines.next().unwrap()).unwrap();
    assert_eq!((header.width, header.height), (120, 40));
    let events: Vec<CastEvent> = lines.map(|l| serde_json::from_slice(l).unwrap()).collect();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0].code, CastEventCode::Output);
    assert_eq!(events[1].code, CastEventCode::Resize);
    let size = TerminalSize::from_resize_data(&events[1].data, header.resize_order()).unwrap();
    assert_eq!(
        size,
        TerminalSize {
            width: 200,
            height: 50
        }
    );
    assert_eq!(events[2].data, "ls\r\nbin  etc\r\n<done> & ok");
}

#[test]
fn unknown_fields_from_newer_senders_are_kept_in_place() {
    let mut value: serde_json::Value =
        serde_json::from_slice(&data("upstream-event-user.json")).unwrap();
    value["futureTopLevel"] = serde_json::json!({"x": 1});
    value["source"]["nodeOS"] = serde_json::json!("linux");
    let bytes = serde_json::to_vec(&value).unwrap();
    let Record::Event(event) = Record::from_slice(&bytes).unwrap() else {
        panic!()
    };
    assert_eq!(event.unknown["futureTopLevel"], serde_json::json!({"x": 1}));
    assert_eq!(event.source.unknown["nodeOS"], "linux");
    let back: serde_json::Value = serde_json::from_slice(&to_go_json(&event).unwrap()).unwrap();
    assert_eq!(back, value);
}

#[test]
fn unknown_record_types_and_garbage_are_errors() {
    assert!(matches!(
        Record::from_slice(br#"{"type":"something-else"}"#),
        Err(event_model::RecordError::UnknownType(t)) if t == "something-else"
    ));
    assert!(matches!(
        Record::from_slice(br#"{"id":""}"#),
        Err(event_model::RecordError::MissingType)
    ));
    assert!(Record::from_slice(b"{").is_err());
    assert!(
        Record::from_slice(br#"{"type":"kubernetes-api-request","request":{"body":"!!"}}"#)
            .is_err()
    );
    assert!(
        Record::from_slice(br#"{"type":"kubernetes-api-request","timestamp":"soon"}"#).is_err()
    );
}

#[test]
fn cast_event_shapes() {
    let line = CastEvent::resize(
        1.5,
        TerminalSize {
            width: 80,
            height: 24,
        },
        ResizeOrder::HeightFirst,
    )
    .to_line();
    assert_eq!(line, b"[1.5,\"r\",\"24x80\"]\n");
    assert!(serde_json::from_str::<CastEvent>(r#"[1,"o"]"#).is_err());
    assert!(serde_json::from_str::<CastEvent>(r#"[1,"o","a","b"]"#).is_err());
    let odd: CastEvent = serde_json::from_str(r#"[2.25,"x","y"]"#).unwrap();
    assert_eq!(odd.code, CastEventCode::Other("x".into()));
    assert_eq!(
        TerminalSize::from_resize_data("80x24", ResizeOrder::WidthFirst).unwrap(),
        TerminalSize {
            width: 80,
            height: 24
        }
    );
    assert!(TerminalSize::from_resize_data("80by24", ResizeOrder::WidthFirst).is_err());
    assert!(TerminalSize::from_resize_data("-1x24", ResizeOrder::WidthFirst).is_err());
}

#[test]
fn extension_audit_and_impersonation_fields_have_their_keys_and_are_omitted_when_empty() {
    use event_model::{Event, Extension};
    let bare = Event {
        kubescribe: Some(Extension {
            key: "k".into(),
            ..Extension::default()
        }),
        ..Event::default()
    };
    let text = String::from_utf8(to_go_json(&bare).unwrap()).unwrap();
    assert!(text.contains(r#""kubescribe":{"key":"k"}"#), "{text}");

    let full = Event {
        kubescribe: Some(Extension {
            key: "k".into(),
            request_id: "k".into(),
            audit_id: "a-1".into(),
            impersonated_user: "alice@example.com".into(),
            impersonated_groups: vec!["eng".into(), "system:masters".into()],
            ..Extension::default()
        }),
        ..Event::default()
    };
    let text = String::from_utf8(to_go_json(&full).unwrap()).unwrap();
    assert!(
        text.contains(
            r#""kubescribe":{"key":"k","requestID":"k","auditID":"a-1","impersonatedUser":"alice@example.com","impersonatedGroups":["eng","system:masters"]}"#
        ),
        "{text}"
    );
    let Record::Event(back) = Record::from_slice(text.as_bytes()).unwrap() else {
        panic!("not an event")
    };
    assert_eq!(back, full);
}

#[test]
fn decisions_are_hyphenated_strings_omitted_when_absent_and_unknown_ones_are_kept() {
    use event_model::{Decision, Event, Extension, ResponseRecord};
    let refused = Event {
        kubescribe: Some(Extension {
            key: "k".into(),
            impersonated_user: "alice@example.com".into(),
            decision: Some(Decision::RefusedFailClosed),
            ..Extension::default()
        }),
        ..Event::default()
    };
    let text = String::from_utf8(to_go_json(&refused).unwrap()).unwrap();
    assert!(
        text.contains(
            r#""kubescribe":{"key":"k","impersonatedUser":"alice@example.com","decision":"refused-fail-closed"}"#
        ),
        "{text}"
    );
    let Record::Event(back) = Record::from_slice(text.as_bytes()).unwrap() else {
        panic!("not an event")
    };
    assert_eq!(back, refused);

    let undecided = ResponseRecord {
        key: "k".into(),
        status: 200,
        ..ResponseRecord::default()
    };
    let text = String::from_utf8(to_go_json(&undecided).unwrap()).unwrap();
    assert!(!text.contains("decision"), "{text}");

    for (decision, wire) in [
        (Decision::Forwarded, "forwarded"),
        (Decision::UpstreamError, "upstream-error"),
        (Decision::RefusedFailClosed, "refused-fail-closed"),
        (Decision::RefusedByGrant, "refused-by-grant"),
        (
            Decision::Other("queued-for-approval".into()),
            "queued-for-approval",
        ),
    ] {
        let record = ResponseRecord {
            key: "k".into(),
            status: 502,
            error: Some("why".into()),
            decision: Some(decision.clone()),
            ..ResponseRecord::default()
        };
        let text = String::from_utf8(to_go_json(&record).unwrap()).unwrap();
        let tail = format!(r#""error":"why","decision":"{wire}"}}"#);
        assert!(text.trim_end().ends_with(&tail), "{text}");
        let Record::Response(back) = Record::from_slice(text.as_bytes()).unwrap() else {
            panic!("not a response record")
        };
        assert_eq!(back.decision, Some(decision));
    }
}
