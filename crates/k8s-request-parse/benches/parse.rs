//! Parsing cost of typical request-targets (goal: well under 1 µs each).

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, Criterion};

/// (benchmark name, HTTP method, request-target)
const TYPICAL: &[(&str, &str, &str)] = &[
    ("pod_get", "GET", "/api/v1/namespaces/default/pods/web-0"),
    (
        "list_label_selector",
        "GET",
        "/api/v1/namespaces/default/pods?labelSelector=app%3Dweb%2Ctier+in+%28frontend%2Cbackend%29&limit=500",
    ),
    (
        "watch_resource_version",
        "GET",
        "/apis/apps/v1/namespaces/default/deployments?allowWatchBookmarks=true&resourceVersion=123456&timeoutSeconds=540&watch=true",
    ),
    (
        "crd_get",
        "GET",
        "/apis/stable.example.com/v1/namespaces/default/crontabs/my-cron",
    ),
    ("non_resource", "GET", "/version"),
];

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("request_info");
    for (name, method, target) in TYPICAL {
        group.bench_function(*name, |b| {
            b.iter(|| k8s_request_parse::request_info(black_box(method), black_box(target)))
        });
    }
    group.finish();

    c.bench_function("parse_query/list_label_selector", |b| {
        b.iter(|| {
            k8s_request_parse::query::parse_query(black_box(
                "labelSelector=app%3Dweb%2Ctier+in+%28frontend%2Cbackend%29&limit=500",
            ))
        })
    });
}

criterion_group!(benches, parse);
criterion_main!(benches);
