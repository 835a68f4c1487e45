//! Property tests: every event and cast line survives a round trip.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use event_model::{
    to_go_json, BodyCapture, CastEvent, CastHeader, CastKubernetes, Destination, Event, Extension,
    Record, Request, RequestInfo, ResponseRecord, Source,
};
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;

fn text() -> impl Strategy<Value = String> {
    // Any Unicode, including the characters Go escapes (& < > U+2028 U+2029).
    prop_oneof![any::<String>(), "[&<>\u{2028}\u{2029}a-z/?=%\\\\\"]{0,12}",]
}

fn request_info() -> impl Strategy<Value = RequestInfo> {
    (
        any::<bool>(),
        text(),
        text(),
        text(),
        text(),
        option::of(vec(text(), 0..4)),
        text(),
    )
        .prop_map(
            |(is_resource, path, verb, resource, name, parts, selector)| RequestInfo {
                is_resource_request: is_resource,
                path,
                verb,
                resource,
                name,
                parts,
                label_selector: selector,
                ..RequestInfo::default()
            },
        )
}

prop_compose! {
    fn source()(node in text(), node_id in text(), tags in vec(text(), 0..3),
                user_id in any::<i64>(), user in text()) -> Source {
        Source { node, node_id, node_tags: tags, node_user_id: user_id, node_user: user,
                 ..Source::default() }
    }
}

prop_compose! {
    fn event()(timestamp in any::<i64>(), ua in text(), method in text(), path in text(),
               body in vec(any::<u8>(), 0..256),
               query in btree_map(text(), vec(text(), 0..3), 0..4),
               kubernetes in request_info(), source in source(),
               dest in (text(), text()),
               ext in option::of((text(), text(), option::of(any::<u64>()))),
               audit in (text(), text(), vec(text(), 0..3))) -> Event {
        Event {
            timestamp,
            user_agent: ua,
            request: Request { method, path, body, query_parameters: query, ..Request::default() },
            kubernetes,
            source,
            destination: Destination { node: dest.0, node_id: dest.1, ..Destination::default() },
            kubescribe: ext.map(|(key, request_id, captured)| Extension {
                key,
                request_id,
                body: captured.map(|n| BodyCapture { truncated: true, captured_bytes: n }),
                audit_id: audit.0,
                impersonated_user: audit.1,
                impersonated_groups: audit.2,
                ..Extension::default()
            }),
            ..Event::default()
        }
    }
}

proptest! {
    #[test]
    fn any_event_round_trips(event in event()) {
        let wire = to_go_json(&event).unwrap();
        prop_assert!(wire.ends_with(b"\n"));
        prop_assert!(!wire[..wire.len() - 1].contains(&b'\n'));
        let Record::Event(back) = Record::from_slice(&wire).unwrap() else {
            return Err(TestCaseError::fail("not an event"));
        };
        prop_assert_eq!(back, event);
    }

    #[test]
    fn any_body_bytes_survive(body in vec(any::<u8>(), 0..4096)) {
        let event = Event {
            request: Request { body: body.clone(), ..Request::default() },
            ..Event::default()
        };
        let Record::Event(back) = Record::from_slice(&to_go_json(&event).unwrap()).unwrap() else {
            return Err(TestCaseError::fail("not an event"));
        };
        prop_assert_eq!(back.request.body, body);
    }

    #[test]
    fn any_response_record_round_trips(key in text(), status in any::<u16>(),
                                       duration in 0.0f64..1e9, bytes in any::<u64>(),
                                       sha in option::of("[0-9a-f]{64}")) {
        let record = ResponseRecord { key, status, duration_ms: duration, response_bytes: bytes,
            request_body_sha256: sha, ..ResponseRecord::default() };
        let Record::Response(back) = Record::from_slice(&to_go_json(&record).unwrap()).unwrap() else {
            return Err(TestCaseError::fail("not a response"));
        };
        prop_assert_eq!(back, record);
    }

    #[test]
    fn any_cast_header_and_line_round_trip(width in any::<u32>(), height in any::<u32>(),
            command in text(), node in text(), pod in text(),
            time in 0.0f64..1e7, data in text(),
            env in option::of(btree_map(text(), text(), 0..3))) {
        let header = CastHeader { width, height, command, src_node: node, env,
            kubernetes: Some(CastKubernetes { pod_name: pod, ..CastKubernetes::default() }),
            ..CastHeader::default() };
        let back: CastHeader = serde_json::from_slice(&to_go_json(&header).unwrap()).unwrap();
        prop_assert_eq!(back, header);
        let line = CastEvent::output(time, data);
        let back: CastEvent = serde_json::from_slice(&line.to_line()).unwrap();
        prop_assert_eq!(back, line);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..512)) {
        let _ = Record::from_slice(&bytes);
        let _ = serde_json::from_slice::<CastHeader>(&bytes);
        let _ = serde_json::from_slice::<CastEvent>(&bytes);
    }
}

#[test]
fn empty_query_serialises_as_object() {
    let event = Event {
        request: Request {
            query_parameters: BTreeMap::new(),
            ..Request::default()
        },
        ..Event::default()
    };
    let text = String::from_utf8(to_go_json(&event).unwrap()).unwrap();
    assert!(text.contains(r#""queryParameters":{}"#));
    assert!(text.contains(r#""body":"""#));
    assert!(!text.contains("kubescribe"));
}
