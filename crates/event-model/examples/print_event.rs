//! Builds an event as kubescribe's proxy does and prints it as Go would.
//!
//! `cargo run -p kubescribe-event-model --example print_event`

use event_model::{to_go_json, Event, Extension, Request, RequestInfo, Source};

fn main() -> Result<(), serde_json::Error> {
    let event = Event {
        timestamp: 1_767_225_600,
        user_agent: "kubectl/v1.37.1".into(),
        request: Request {
            method: "DELETE".into(),
            path: "/apis/apps/v1/namespaces/prod/deployments/web".into(),
            ..Request::default()
        },
        kubernetes: RequestInfo {
            is_resource_request: true,
            path: "/apis/apps/v1/namespaces/prod/deployments/web".into(),
            verb: "delete".into(),
            api_prefix: "apis".into(),
            api_group: "apps".into(),
            api_version: "v1".into(),
            namespace: "prod".into(),
            resource: "deployments".into(),
            name: "web".into(),
            parts: Some(vec!["deployments".into(), "web".into()]),
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
            key: "example-key".into(),
            ..Extension::default()
        }),
        ..Event::default()
    };
    let bytes = to_go_json(&event)?;
    print!("{}", String::from_utf8_lossy(&bytes));
    Ok(())
}
