"""The Python `kubernetes` client doing what the kubectl test does with kubectl.

Run once directly against kube-apiserver (an administrator's kubeconfig with
--as-user/--as-group: the Impersonate-* headers) and once through
kubescribe-proxy, each in a namespace of its own; prints one JSON line per
operation: {"op", "expect", "status", "out"}, where status is "ok" or the HTTP
status of the ApiException, and out is what the operation returned (only what
is the same on every run, the namespace written as {ns}).
"""

import argparse
import json
import threading

from kubernetes import client, config, dynamic, watch
from kubernetes.client.exceptions import ApiException

WATCH_SECONDS = 4


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--cache-file", required=True)
    parser.add_argument("--as-user")
    parser.add_argument("--as-group")
    args = parser.parse_args()
    api = config.new_client_from_config(config_file=args.kubeconfig)
    if args.as_user:
        api.set_default_header("Impersonate-User", args.as_user)
    if args.as_group:
        api.set_default_header("Impersonate-Group", args.as_group)
    Ops(api, args.namespace, args.cache_file).run()


class Ops:
    def __init__(self, api, ns, cache_file):
        self.api = api
        self.ns = ns
        self.cache_file = cache_file
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)

    def op(self, name, expect, fn):
        try:
            record = {"status": "ok", "out": fn()}
        except ApiException as e:
            record = {"status": e.status}
        except Exception as e:  # a client failure, not the API server's answer
            record = {"status": "error", "error": f"{type(e).__name__}: {e}"}
        text = json.dumps(dict(record, op=name, expect=expect), sort_keys=True)
        print(text.replace(self.ns, "{ns}"), flush=True)

    def raw_get(self, path):
        params = self.api.param_serialize(
            "GET", path, header_params={"Accept": "application/json"}, auth_settings=["BearerToken"]
        )
        response = self.api.call_api(*params)
        response.read()
        if not 200 <= response.status <= 299:
            raise ApiException(status=response.status, reason=response.reason)
        return json.loads(response.data)

    def can_i(self, verb, resource, group=""):
        review = client.V1SelfSubjectAccessReview(
            spec=client.V1SelfSubjectAccessReviewSpec(
                resource_attributes=client.V1ResourceAttributes(
                    namespace=self.ns, verb=verb, group=group, resource=resource
                )
            )
        )
        return client.AuthorizationV1Api(self.api).create_self_subject_access_review(review).status.allowed

    def configmap(self, greeting):
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "app-config", "labels": {"app": "kubescribe"}},
            "data": {"greeting": greeting},
        }

    def deployment(self, replicas):
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "kubescribe"}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"run": "web"}},
                "template": {
                    "metadata": {"labels": {"run": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
                },
            },
        }

    def names(self, items):
        return sorted(item.metadata.name for item in items)

    def watch_configmaps(self):
        """Watches the namespace's configmaps until the API server ends the watch; changes
        app-config once, after its ADDED event, so the watch sees ADDED then MODIFIED."""
        seen = []
        for event in watch.Watch().stream(
            self.core.list_namespaced_config_map,
            self.ns,
            label_selector="app=kubescribe",
            timeout_seconds=WATCH_SECONDS,
        ):
            obj = event["object"]
            seen.append([event["type"], obj.metadata.name, obj.data.get("greeting")])
            if len(seen) == 1:
                changer = threading.Thread(
                    target=self.core.patch_namespaced_config_map,
                    args=("app-config", self.ns, {"data": {"greeting": "watched"}}),
                    kwargs={"_content_type": "application/merge-patch+json"},
                )
                changer.start()
                changer.join()
        return seen

    def run(self):
        core, apps, ns = self.core, self.apps, self.ns
        op = self.op
        # Discovery, OpenAPI, who am I and what may I do (version, api-resources, explain, auth).
        op("version", "ok", lambda: client.VersionApi(self.api).get_code().git_version)
        op("core API versions", "ok", lambda: client.CoreApi(self.api).get_api_versions().versions)
        op("API groups", "ok", lambda: sorted(g.name for g in client.ApisApi(self.api).get_api_versions().groups))
        op("core resources", "ok", lambda: sorted(r.name for r in core.get_api_resources().resources))
        op("apps/v1 resources", "ok", lambda: sorted(r.name for r in apps.get_api_resources().resources))
        dyn = dynamic.DynamicClient(self.api, cache_file=self.cache_file)
        deployments = dyn.resources.get(api_version="apps/v1", kind="Deployment")
        op("dynamic discovery: Deployment", "ok", lambda: [deployments.name, deployments.namespaced])
        op("dynamic discovery: namespaced kinds", "ok", lambda: sorted({r.kind for r in dyn.resources.search(namespaced=True)}))
        op("OpenAPI v3 paths", "ok", lambda: sorted(self.raw_get("/openapi/v3")["paths"]))
        op(
            "OpenAPI v3: DeploymentSpec.replicas",
            "ok",
            lambda: self.raw_get("/openapi/v3/apis/apps/v1")["components"]["schemas"]["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["replicas"],
        )
        op("OpenAPI v2 is served", "ok", lambda: self.raw_get("/openapi/v2")["swagger"])
        op("can I create deployments", "ok", lambda: self.can_i("create", "deployments", "apps"))
        op("can I delete nodes", "ok", lambda: self.can_i("delete", "nodes"))
        op("can I list secrets", "ok", lambda: self.can_i("list", "secrets"))
        op("who am I", "ok", lambda: (lambda u: [u.username, sorted(u.groups)])(
            client.AuthenticationV1Api(self.api).create_self_subject_review(client.V1SelfSubjectReview()).status.user_info
        ))
        # Create, apply (server-side), dry-run (what diff does), get, list.
        op("create configmap", "ok", lambda: core.create_namespaced_config_map(ns, self.configmap("hello")).data)
        op("create it again", 409, lambda: core.create_namespaced_config_map(ns, self.configmap("hello")).data)
        op("replace configmap", "ok", lambda: core.replace_namespaced_config_map("app-config", ns, self.configmap("changed")).data)
        op(
            "server-side apply deployment",
            "ok",
            lambda: dyn.server_side_apply(deployments, body=self.deployment(1), namespace=ns, field_manager="python").spec.replicas,
        )
        op(
            "server-side apply it scaled",
            "ok",
            lambda: dyn.server_side_apply(deployments, body=self.deployment(3), namespace=ns, field_manager="python").spec.replicas,
        )
        op(
            "server-side apply by another manager: conflict",
            409,
            lambda: dyn.server_side_apply(deployments, body=self.deployment(2), namespace=ns, field_manager="another").spec.replicas,
        )
        op(
            "dry-run patch (diff)",
            "ok",
            lambda: core.patch_namespaced_config_map(
                "app-config", ns, {"data": {"greeting": "dry"}}, dry_run="All", _content_type="application/merge-patch+json"
            ).data,
        )
        op("get configmap", "ok", lambda: core.read_namespaced_config_map("app-config", ns).data)
        op("get deployment", "ok", lambda: apps.read_namespaced_deployment("web", ns).spec.replicas)
        op("get missing", 404, lambda: core.read_namespaced_config_map("no-such-thing", ns).data)
        op("list configmaps -l", "ok", lambda: self.names(core.list_namespaced_config_map(ns, label_selector="app=kubescribe").items))
        op("list deployments", "ok", lambda: self.names(apps.list_namespaced_deployment(ns).items))
        op("list services", "ok", lambda: self.names(core.list_namespaced_service(ns).items))
        op("list pods", "ok", lambda: self.names(core.list_namespaced_pod(ns).items))
        op(
            "list configmaps -A -l",
            "ok",
            lambda: sorted(
                [c.metadata.namespace, c.metadata.name]
                for c in core.list_config_map_for_all_namespaces(label_selector="fixture=python").items
            ),
        )
        op("list secrets (refused)", 403, lambda: self.names(core.list_namespaced_secret(ns).items))
        op("list nodes (refused)", 403, lambda: self.names(core.list_node().items))
        op("watch configmaps, changed during it", "ok", self.watch_configmaps)
        # Patch: merge, JSON, strategic; a JSON patch whose test fails.
        op(
            "merge patch",
            "ok",
            lambda: core.patch_namespaced_config_map(
                "app-config", ns, {"data": {"merge": "yes"}}, _content_type="application/merge-patch+json"
            ).data,
        )
        op(
            "JSON patch",
            "ok",
            lambda: core.patch_namespaced_config_map(
                "app-config", ns, [{"op": "add", "path": "/data/json", "value": "yes"}], _content_type="application/json-patch+json"
            ).data,
        )
        op(
            "JSON patch whose test fails",
            422,
            lambda: core.patch_namespaced_config_map(
                "app-config", ns, [{"op": "test", "path": "/data/greeting", "value": "nope"}], _content_type="application/json-patch+json"
            ).data,
        )
        op(
            "strategic merge patch",
            "ok",
            lambda: apps.patch_namespaced_deployment(
                "web",
                ns,
                {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.28"}]}}}},
                _content_type="application/strategic-merge-patch+json",
            ).spec.template.spec.containers[0].image,
        )
        # Delete, one and a collection.
        op("delete configmap", "ok", lambda: core.delete_namespaced_config_map("app-config", ns) and None)
        op("delete it again", 404, lambda: core.delete_namespaced_config_map("app-config", ns) and None)
        op("delete deployment", "ok", lambda: apps.delete_namespaced_deployment("web", ns) and None)
        op("create two more", "ok", lambda: [
            core.create_namespaced_config_map(ns, dict(self.configmap(g), metadata={"name": g, "labels": {"app": "kubescribe"}})).metadata.name
            for g in ("one", "two")
        ])
        op(
            "delete collection -l",
            "ok",
            lambda: core.delete_collection_namespaced_config_map(ns, label_selector="app=kubescribe") and None,
        )
        op("list configmaps -l after", "ok", lambda: self.names(core.list_namespaced_config_map(ns, label_selector="app=kubescribe").items))


if __name__ == "__main__":
    main()
