//! The kube-rs client through the proxy to the real kube-apiserver, doing what the kubectl test
//! does: discovery (plain and aggregated), OpenAPI, access and self-subject reviews, create,
//! replace, server-side apply (and its conflict), dry-run, get, list, watch with a change during
//! it, merge, JSON and strategic patches, delete, delete collection. Once directly as the same
//! effective user and group (the administrator's kubeconfig with kube's `impersonate` and
//! `impersonate_groups`), once through the proxy (the caller's kubeconfig). Every operation must
//! end the same way both ways, and as expected; every request it sent through the proxy must have
//! its event.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Secret, Service};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, Discovery};
use kubescribe_system_tests::client_comparison::{
    assert_recorded_and_no_failures, ClientComparison,
};
use serde_json::{json, Value};

const LOGIN: &str = "kube-rs@example.com";
const GROUP: &str = "kube-rs-testers";
/// Each operation's deadline: a hung request fails the test instead of hanging it.
const DEADLINE: Duration = Duration::from_secs(60);
const WATCH_SECONDS: u32 = 4;

/// How an operation ended: `Ok(what it returned)`, or `Err(the API server's status code)`, or
/// `Err(0)` with the client's own error.
type Outcome = Result<Value, (u16, String)>;

struct Op {
    name: &'static str,
    /// `None`: success; `Some(code)`: the API server refuses with `code`.
    expect: Option<u16>,
    outcome: Outcome,
}

async fn client(kubeconfig: &Path, impersonate: bool) -> Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig).unwrap();
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    if impersonate {
        config.auth_info.impersonate = Some(LOGIN.into());
        config.auth_info.impersonate_groups = Some(vec![GROUP.into()]);
    }
    Client::try_from(config).unwrap()
}

fn outcome<T: serde::Serialize>(result: Result<T, kube::Error>) -> Outcome {
    match result {
        Ok(value) => Ok(serde_json::to_value(value).unwrap_or(Value::Null)),
        Err(kube::Error::Api(status)) => Err((status.code, status.reason.clone())),
        Err(other) => Err((0, other.to_string())),
    }
}

fn configmap(name: &str, greeting: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"app": "kubescribe"}},
        "data": {"greeting": greeting},
    }))
    .unwrap()
}

fn deployment(replicas: i32) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "kubescribe"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"run": "web"}},
            "template": {"metadata": {"labels": {"run": "web"}},
                         "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}},
        },
    })
}

fn names<K: kube::Resource + Clone>(list: kube::core::ObjectList<K>) -> Value {
    let mut names: Vec<String> = list
        .items
        .iter()
        .map(|o| o.meta().name.clone().unwrap_or_default())
        .collect();
    names.sort();
    json!(names)
}

async fn raw_get(client: &Client, path: &str) -> Result<Value, kube::Error> {
    let request = http::Request::get(path)
        .header("accept", "application/json")
        .body(Vec::new())
        .unwrap();
    let text = client.request_text(request).await?;
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn can_i(
    client: &Client,
    ns: &str,
    verb: &str,
    group: &str,
    resource: &str,
) -> Result<bool, kube::Error> {
    let review: SelfSubjectAccessReview = serde_json::from_value(json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"namespace": ns, "verb": verb, "group": group, "resource": resource}},
    }))
    .unwrap();
    let answer = Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

/// Watches the namespace's configmaps until the API server ends the watch; changes app-config once,
/// after its ADDED event.
async fn watch_configmaps(configmaps: &Api<ConfigMap>) -> Result<Value, kube::Error> {
    let params = WatchParams::default()
        .labels("app=kubescribe")
        .timeout(WATCH_SECONDS);
    let mut stream = configmaps.watch(&params, "0").await?.boxed();
    let mut seen = Vec::new();
    while let Some(event) = stream.try_next().await? {
        let (kind, cm) = match event {
            WatchEvent::Added(cm) => ("ADDED", cm),
            WatchEvent::Modified(cm) => ("MODIFIED", cm),
            WatchEvent::Deleted(cm) => ("DELETED", cm),
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Error(status) => return Err(kube::Error::Api(status)),
        };
        let greeting = cm.data.as_ref().and_then(|d| d.get("greeting").cloned());
        seen.push(json!([kind, cm.metadata.name, greeting]));
        if seen.len() == 1 {
            configmaps
                .patch(
                    "app-config",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"data": {"greeting": "watched"}})),
                )
                .await?;
        }
    }
    Ok(json!(seen))
}

/// A JSON patch (RFC 6902) sent with the kube client: its `Patch::Json` needs a feature the
/// workspace does not enable, so the request is built here and sent by `Client::request`.
async fn json_patch(client: &Client, ns: &str, patch: Value) -> Result<ConfigMap, kube::Error> {
    let request = http::Request::patch(format!("/api/v1/namespaces/{ns}/configmaps/app-config"))
        .header("content-type", "application/json-patch+json")
        .body(serde_json::to_vec(&patch).unwrap())
        .unwrap();
    client.request(request).await
}

async fn guarded<T>(
    future: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, kube::Error> {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("a kube-rs request hung for {DEADLINE:?}"))
}

async fn ops(client: Client, ns: &str) -> Vec<Op> {
    let mut ops = Vec::new();
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    macro_rules! op {
        ($name:expr, $expect:expr, $future:expr) => {
            ops.push(Op {
                name: $name,
                expect: $expect,
                outcome: outcome(guarded($future).await),
            })
        };
    }
    op!("version", None, async {
        client.apiserver_version().await.map(|v| v.git_version)
    });
    op!("core API versions", None, async {
        client.list_core_api_versions().await.map(|v| v.versions)
    });
    op!("API groups", None, async {
        client.list_api_groups().await.map(|l| {
            let mut names: Vec<String> = l.groups.into_iter().map(|g| g.name).collect();
            names.sort();
            names
        })
    });
    op!("aggregated discovery: groups", None, async {
        client.list_api_groups_aggregated().await.map(|l| {
            let mut names: Vec<String> = l
                .items
                .into_iter()
                .filter_map(|g| g.metadata.and_then(|m| m.name))
                .collect();
            names.sort();
            names
        })
    });
    op!("core resources", None, async {
        client.list_core_api_resources("v1").await.map(|l| {
            let mut names: Vec<String> = l.resources.into_iter().map(|r| r.name).collect();
            names.sort();
            names
        })
    });
    op!("discovery: apps resources", None, async {
        Discovery::new(client.clone())
            .filter(&["apps"])
            .run()
            .await
            .map(|d| {
                let mut names: Vec<String> = d
                    .groups()
                    .flat_map(|g| g.recommended_resources())
                    .map(|(r, _)| r.plural)
                    .collect();
                names.sort();
                names
            })
    });
    op!("OpenAPI v3 paths", None, async {
        raw_get(&client, "/openapi/v3").await.map(|v| {
            let mut paths: Vec<String> = v["paths"]
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            paths.sort();
            paths
        })
    });
    op!("OpenAPI v3: DeploymentSpec.replicas", None, async {
        raw_get(&client, "/openapi/v3/apis/apps/v1").await.map(|v| {
            v["components"]["schemas"]["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]
                ["replicas"]
                .clone()
        })
    });
    op!(
        "can I create deployments",
        None,
        can_i(&client, ns, "create", "apps", "deployments")
    );
    op!(
        "can I delete nodes",
        None,
        can_i(&client, ns, "delete", "", "nodes")
    );
    op!(
        "can I list secrets",
        None,
        can_i(&client, ns, "list", "", "secrets")
    );
    op!("who am I", None, async {
        let review: SelfSubjectReview = serde_json::from_value(json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"
        }))
        .unwrap();
        Api::<SelfSubjectReview>::all(client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map(|r| {
                let user = r.status.and_then(|s| s.user_info).unwrap_or_default();
                let mut groups = user.groups.unwrap_or_default();
                groups.sort();
                json!([user.username, groups])
            })
    });
    op!("create configmap", None, async {
        configmaps
            .create(&PostParams::default(), &configmap("app-config", "hello"))
            .await
            .map(|c| c.data)
    });
    op!("create it again", Some(409), async {
        configmaps
            .create(&PostParams::default(), &configmap("app-config", "hello"))
            .await
            .map(|c| c.data)
    });
    op!("replace configmap", None, async {
        configmaps
            .replace(
                "app-config",
                &PostParams::default(),
                &configmap("app-config", "changed"),
            )
            .await
            .map(|c| c.data)
    });
    for (name, manager, replicas, expect) in [
        ("server-side apply deployment", "kube-rs", 1, None),
        ("server-side apply it scaled", "kube-rs", 3, None),
        (
            "server-side apply by another manager: conflict",
            "another",
            2,
            Some(409),
        ),
    ] {
        op!(name, expect, async {
            deployments
                .patch(
                    "web",
                    &PatchParams::apply(manager),
                    &Patch::Apply(deployment(replicas)),
                )
                .await
                .map(|d| d.spec.replicas)
        });
    }
    op!("dry-run patch (diff)", None, async {
        let params = PatchParams {
            dry_run: true,
            ..PatchParams::default()
        };
        configmaps
            .patch(
                "app-config",
                &params,
                &Patch::Merge(json!({"data": {"greeting": "dry"}})),
            )
            .await
            .map(|c| c.data)
    });
    op!("get configmap", None, async {
        configmaps.get("app-config").await.map(|c| c.data)
    });
    op!("get deployment", None, async {
        deployments.get("web").await.map(|d| d.spec.replicas)
    });
    op!("get missing", Some(404), async {
        configmaps.get("no-such-thing").await.map(|c| c.data)
    });
    op!("list configmaps -l", None, async {
        configmaps
            .list(&ListParams::default().labels("app=kubescribe"))
            .await
            .map(names)
    });
    op!("list deployments", None, async {
        deployments.list(&ListParams::default()).await.map(names)
    });
    op!("list services", None, async {
        Api::<Service>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await
            .map(names)
    });
    op!("list configmaps -A -l", None, async {
        Api::<ConfigMap>::all(client.clone())
            .list(&ListParams::default().labels("fixture=kube-rs"))
            .await
            .map(|l| {
                let mut found: Vec<(String, String)> = l
                    .items
                    .into_iter()
                    .map(|c| {
                        (
                            c.metadata.namespace.unwrap_or_default(),
                            c.metadata.name.unwrap_or_default(),
                        )
                    })
                    .collect();
                found.sort();
                found
            })
    });
    op!("list secrets (refused)", Some(403), async {
        Api::<Secret>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await
            .map(names)
    });
    op!("list nodes (refused)", Some(403), async {
        Api::<Node>::all(client.clone())
            .list(&ListParams::default())
            .await
            .map(names)
    });
    op!(
        "watch configmaps, changed during it",
        None,
        watch_configmaps(&configmaps)
    );
    op!("merge patch", None, async {
        configmaps
            .patch(
                "app-config",
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"merge": "yes"}})),
            )
            .await
            .map(|c| c.data)
    });
    op!("JSON patch", None, async {
        json_patch(
            &client,
            ns,
            json!([{"op": "add", "path": "/data/json", "value": "yes"}]),
        )
        .await
        .map(|c| c.data)
    });
    op!("JSON patch whose test fails", Some(422), async {
        json_patch(
            &client,
            ns,
            json!([{"op": "test", "path": "/data/greeting", "value": "nope"}]),
        )
        .await
        .map(|c| c.data)
    });
    op!("strategic merge patch", None, async {
        deployments
            .patch(
                "web",
                &PatchParams::default(),
                &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.28"}]}}}})),
            )
            .await
            .map(|d| {
                d.spec
                    .template
                    .spec
                    .and_then(|s| s.containers.into_iter().next())
                    .and_then(|c| c.image)
            })
    });
    op!("delete configmap", None, async {
        configmaps
            .delete("app-config", &DeleteParams::default())
            .await
            .map(|_| ())
    });
    op!("delete it again", Some(404), async {
        configmaps
            .delete("app-config", &DeleteParams::default())
            .await
            .map(|_| ())
    });
    op!("delete deployment", None, async {
        deployments
            .delete("web", &DeleteParams::default())
            .await
            .map(|_| ())
    });
    op!("create two more", None, async {
        for name in ["one", "two"] {
            configmaps
                .create(&PostParams::default(), &configmap(name, name))
                .await?;
        }
        Ok(())
    });
    op!("delete collection -l", None, async {
        configmaps
            .delete_collection(
                &DeleteParams::default(),
                &ListParams::default().labels("app=kubescribe"),
            )
            .await
            .map(|_| ())
    });
    op!("list configmaps -l after", None, async {
        configmaps
            .list(&ListParams::default().labels("app=kubescribe"))
            .await
            .map(names)
    });
    ops
}

fn describe(outcome: &Outcome) -> String {
    match outcome {
        Ok(_) => "ok".into(),
        Err((0, _)) => "error".into(),
        Err((code, _)) => code.to_string(),
    }
}

#[test]
fn the_kube_rs_client_works_through_the_proxy_as_it_does_directly() {
    let stack = ClientComparison {
        name: "kube-rs",
        login: LOGIN,
        group: GROUP,
        user_id: 6002,
        address: Ipv4Addr::new(100, 64, 2, 2),
        namespaces: ["kube-rs-d", "kube-rs-p"],
    }
    .start()
    .unwrap_or_else(|e| panic!("starting the system: {e}"));

    // object_store (through test-support) compiles aws-lc-rs into rustls beside kube's ring, so
    // there is no unambiguous default provider: pick ring, as the workspace does.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (direct, proxied) = runtime.block_on(async {
        let direct = ops(
            client(&stack.upstream.admin_kubeconfig(), true).await,
            "kube-rs-d",
        )
        .await;
        let proxied = ops(
            client(&stack.caller("kube-rs").unwrap().kubeconfig, false).await,
            "kube-rs-p",
        )
        .await;
        (direct, proxied)
    });

    let mut failures = Vec::new();
    println!("\nkube-rs through the proxy against directly (outcome direct/proxy):");
    for (d, p) in direct.iter().zip(&proxied) {
        let strip = |o: &Outcome| -> Outcome {
            match o {
                Ok(v) => Ok(serde_json::from_str(
                    &v.to_string()
                        .replace("kube-rs-d", "{ns}")
                        .replace("kube-rs-p", "{ns}"),
                )
                .unwrap_or(Value::Null)),
                Err((code, _)) => Err((*code, String::new())),
            }
        };
        let mut problems = Vec::new();
        if strip(&d.outcome) != strip(&p.outcome) {
            problems.push(format!(
                "directly {:?}\n    through the proxy {:?}",
                d.outcome, p.outcome
            ));
        }
        let wanted = match d.expect {
            None => d.outcome.is_ok(),
            Some(code) => matches!(d.outcome, Err((c, _)) if c == code),
        };
        if !wanted {
            problems.push(format!("expected {:?}, directly {:?}", d.expect, d.outcome));
        }
        println!(
            "  {:>5}/{:<5} {:4} {}",
            describe(&d.outcome),
            describe(&p.outcome),
            if problems.is_empty() { "ok" } else { "FAIL" },
            d.name
        );
        if !problems.is_empty() {
            failures.push(format!("{}: {}", d.name, problems.join("\n  ")));
        }
    }
    let find = |name: &str| {
        proxied
            .iter()
            .find(|o| o.name == name)
            .map(|o| o.outcome.clone())
    };
    for (name, want) in [
        ("who am I", json!([LOGIN, [GROUP, "system:authenticated"]])),
        ("can I create deployments", json!(true)),
        ("can I delete nodes", json!(false)),
        ("can I list secrets", json!(false)),
        (
            "watch configmaps, changed during it",
            json!([
                ["ADDED", "app-config", "changed"],
                ["MODIFIED", "app-config", "watched"]
            ]),
        ),
    ] {
        if find(name) != Some(Ok(want.clone())) {
            failures.push(format!("{name}: {:?}, want {want}", find(name)));
        }
    }

    assert_recorded_and_no_failures(&stack, LOGIN, failures);
}
