//! Serialising and parsing a typical event.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use event_model::{to_go_json, Event, Extension, Record, Request, RequestInfo, Source};

fn typical_event() -> Event {
    Event {
        timestamp: 1_767_225_600,
        user_agent: "kubectl/v1.37.1 (linux/amd64) kubernetes/0000000".into(),
        request: Request {
            method: "GET".into(),
            path: "/api/v1/namespaces/default/pods?labelSelector=app%3Dweb&limit=500".into(),
            body: Vec::new(),
            query_parameters: [
                ("labelSelector".to_owned(), vec!["app=web".to_owned()]),
                ("limit".to_owned(), vec!["500".to_owned()]),
            ]
            .into_iter()
            .collect(),
            ..Request::default()
        },
        kubernetes: RequestInfo {
            is_resource_request: true,
            path: "/api/v1/namespaces/default/pods".into(),
            verb: "list".into(),
            api_prefix: "api".into(),
            api_version: "v1".into(),
            namespace: "default".into(),
            resource: "pods".into(),
            parts: Some(vec!["pods".into()]),
            label_selector: "app=web".into(),
            ..RequestInfo::default()
        },
        source: Source {
            node: "laptop.tail1234.ts.net".into(),
            node_id: "nAbC123CNTRL".into(),
            node_user_id: 4242,
            node_user: "alice@example.com".into(),
            ..Source::default()
        },
        kubescribe: Some(Extension {
            key: "0195f2c4-8a7e-7cc0-9a5e-0b1c2d3e4f50".into(),
            ..Extension::default()
        }),
        ..Event::default()
    }
}

fn bench(c: &mut Criterion) {
    let event = typical_event();
    c.bench_function("event/to_go_json", |b| {
        b.iter(|| to_go_json(black_box(&event)))
    });
    let wire = to_go_json(&event).unwrap_or_default();
    c.bench_function("event/parse", |b| {
        b.iter(|| Record::from_slice(black_box(&wire)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
