"""Tests of the emulated Kubernetes API (taskgrant.emulator) through the real kubernetes client."""

import json
import pathlib
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import kmock
import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from taskgrant.emulator import ClusterEmulator, EmulatedCluster, load_crds, parse_label_selector

GROUP, VERSION, PLURAL = "example.dev", "v1", "widgets"
WIDGETS = f"{GROUP}/{VERSION}/{PLURAL}"
CRD_YAML = f"""
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {PLURAL}.{GROUP}
spec:
  group: {GROUP}
  scope: Namespaced
  names: {{kind: Widget, plural: {PLURAL}, singular: widget, shortNames: [wd], categories: [all]}}
  versions:
    - name: {VERSION}
      served: true
      storage: true
      subresources: {{status: {{}}}}
      schema: {{openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}}}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.{GROUP}
spec:
  group: {GROUP}
  scope: Cluster
  names: {{kind: Gadget, plural: gadgets}}
  versions:
    - {{name: {VERSION}, served: true, storage: true}}
"""
pytestmark = pytest.mark.filterwarnings("ignore:read_binary is deprecated:DeprecationWarning")  # kmock's

RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


@pytest.fixture
def crd_path(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "crds.yaml"
    path.write_text(CRD_YAML)
    return path


@pytest.fixture
def cluster(crd_path: pathlib.Path) -> Iterator[EmulatedCluster]:
    with EmulatedCluster(crds=[crd_path]) as cluster:
        yield cluster
        errors = cluster.errors()
    assert not errors  # 5xx & crashes; 4xx answers are not errors


@pytest.fixture
def api(cluster: EmulatedCluster, tmp_path: pathlib.Path) -> kubernetes.client.ApiClient:
    path = cluster.write_kubeconfig(tmp_path / "kubeconfig")
    return kubernetes.config.new_client_from_config(config_file=str(path))


@pytest.fixture
def core(api: kubernetes.client.ApiClient) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(api)


@pytest.fixture
def custom(api: kubernetes.client.ApiClient) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(api)


@pytest.fixture
def batch(api: kubernetes.client.ApiClient) -> kubernetes.client.BatchV1Api:
    return kubernetes.client.BatchV1Api(api)


def widget(name: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Widget",
        "metadata": {"name": name, "labels": labels},
        "spec": {"size": 1},
    }


def create_widget(
    custom: kubernetes.client.CustomObjectsApi, name: str, ns: str = "default", **labels: str
) -> dict[str, Any]:
    result: dict[str, Any] = custom.create_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, widget(name, **labels)
    )
    return result


def watch_events(func: Any, *args: Any, **kwargs: Any) -> list[tuple[str, str, str]]:
    """Collect (type, name, resourceVersion) from a watch that the server ends after 1 second."""
    events = kubernetes.watch.Watch().stream(func, *args, timeout_seconds=1, **kwargs)
    result = []
    for event in events:
        obj = event["object"]
        meta = obj["metadata"] if isinstance(obj, dict) else obj.metadata.to_dict()
        result.append(
            (event["type"], meta["name"], meta.get("resourceVersion") or meta.get("resource_version"))
        )
    return result


def http_watch(cluster: EmulatedCluster, path: str, **params: str) -> list[tuple[str, str]]:
    """A raw watch (shorter than the client's integer timeouts): (type, name) until the server ends it."""
    query = urllib.parse.urlencode(dict(params, watch="true", timeoutSeconds="0.3"))
    with urllib.request.urlopen(f"{cluster.url}{path}?{query}", timeout=5) as response:
        events = [json.loads(line) for line in response.read().splitlines() if line.strip()]
    return [(event["type"], event["object"]["metadata"]["name"]) for event in events]


def get_json(cluster: EmulatedCluster, path: str) -> dict[str, Any]:
    with urllib.request.urlopen(cluster.url + path, timeout=5) as response:
        data: dict[str, Any] = json.loads(response.read())
        return data


# a. Creation: server-managed metadata & validation.


def test_create_sets_server_managed_metadata(cluster: EmulatedCluster, custom: Any) -> None:
    first = create_widget(custom, "w1")
    second = create_widget(custom, "w2")
    meta = first["metadata"]
    assert meta["namespace"] == "default"  # from the URL
    assert re.fullmatch(r"[0-9a-f-]{36}", meta["uid"])
    assert RFC3339.fullmatch(meta["creationTimestamp"])
    assert meta["generation"] == 1
    assert int(second["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])
    assert first["metadata"]["uid"] != second["metadata"]["uid"]
    fetched = custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "w1")
    assert fetched["metadata"] == meta
    assert cluster.objects(WIDGETS) == [first, second]


def test_create_without_name_is_422(custom: Any) -> None:
    with pytest.raises(ApiException) as err:
        custom.create_namespaced_custom_object(
            GROUP, VERSION, "default", PLURAL, {"metadata": {}, "spec": {}}
        )
    assert err.value.status == 422
    body = json.loads(err.value.body)
    assert body["kind"] == "Status" and body["reason"] == "Invalid"
    assert "metadata.name" in body["message"]


def test_create_with_generate_name(custom: Any) -> None:
    body = {"metadata": {"generateName": "gen-"}, "spec": {}}
    one = custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, body)
    two = custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, body)
    assert re.fullmatch(r"gen-[a-z0-9]{5}", one["metadata"]["name"])
    assert one["metadata"]["name"] != two["metadata"]["name"]


def test_duplicate_create_is_409_and_missing_delete_is_404(custom: Any, batch: Any) -> None:
    create_widget(custom, "w1")
    with pytest.raises(ApiException) as err:
        create_widget(custom, "w1")
    assert err.value.status == 409
    assert json.loads(err.value.body)["reason"] == "AlreadyExists"
    with pytest.raises(ApiException) as err:
        batch.delete_namespaced_job("nope", "default")
    assert err.value.status == 404
    assert json.loads(err.value.body)["reason"] == "NotFound"


def test_namespace_mismatch_is_400(custom: Any) -> None:
    body = widget("w1")
    body["metadata"]["namespace"] = "other"
    with pytest.raises(ApiException) as err:
        custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, body)
    assert err.value.status == 400


def test_cluster_scoped_custom_resource(cluster: EmulatedCluster, custom: Any) -> None:
    created = custom.create_cluster_custom_object(GROUP, VERSION, "gadgets", {"metadata": {"name": "g1"}})
    assert "namespace" not in created["metadata"]
    assert custom.get_cluster_custom_object(GROUP, VERSION, "gadgets", "g1")["metadata"]["uid"]
    assert [obj["metadata"]["name"] for obj in cluster.objects(f"{GROUP}/{VERSION}/gadgets")] == ["g1"]


# b. Writes: resourceVersion, generation, the status subresource.


def test_spec_patch_bumps_generation_and_resource_version(custom: Any) -> None:
    created = create_widget(custom, "w1")
    rv0 = int(created["metadata"]["resourceVersion"])
    meta_only = custom.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "w1", {"metadata": {"annotations": {"a": "b"}}}
    )
    assert meta_only["metadata"]["generation"] == 1
    rv1 = int(meta_only["metadata"]["resourceVersion"])
    assert rv1 > rv0
    spec = custom.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "w1", {"spec": {"size": 2}}
    )
    assert spec["metadata"]["generation"] == 2
    assert int(spec["metadata"]["resourceVersion"]) > rv1
    assert spec["metadata"]["uid"] == created["metadata"]["uid"]
    assert spec["metadata"]["creationTimestamp"] == created["metadata"]["creationTimestamp"]


def test_noop_patch_changes_nothing(cluster: EmulatedCluster, custom: Any) -> None:
    created = create_widget(custom, "w1")
    same = custom.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "w1", {"spec": {"size": 1}}
    )
    assert same["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert cluster.emulator.resource_version == int(created["metadata"]["resourceVersion"])


def test_status_subresource_changes_only_status(custom: Any) -> None:
    body = widget("w1")
    body["status"] = {"phase": "ignored-on-create"}
    created = custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, body)
    assert "status" not in created

    patched = custom.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        "default",
        PLURAL,
        "w1",
        {"status": {"phase": "Ready"}, "spec": {"size": 99}, "metadata": {"labels": {"x": "y"}}},
    )
    assert patched["status"] == {"phase": "Ready"}
    assert patched["spec"] == {"size": 1}
    assert patched["metadata"]["labels"] == {}
    assert patched["metadata"]["generation"] == 1
    assert int(patched["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])

    main = custom.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "w1", {"status": {"phase": "Hacked"}, "spec": {"size": 3}}
    )
    assert main["status"] == {"phase": "Ready"}
    assert main["spec"] == {"size": 3}
    assert main["metadata"]["generation"] == 2


def test_builtin_status_subresource_via_strategic_patch(batch: Any) -> None:
    job = {
        "metadata": {"name": "j1", "labels": {"a": "b"}},
        "spec": {
            "template": {"spec": {"containers": [{"name": "c", "image": "x"}], "restartPolicy": "Never"}}
        },
        "status": {"succeeded": 5},
    }
    created = batch.create_namespaced_job("default", job)
    assert created.status is None or created.status.succeeded is None
    assert (
        batch.patch_namespaced_job_status("j1", "default", {"status": {"succeeded": 1}}).status.succeeded == 1
    )
    patched = batch.patch_namespaced_job("j1", "default", {"metadata": {"labels": {"a": None, "c": "d"}}})
    assert patched.metadata.labels == {"c": "d"}
    assert patched.status.succeeded == 1


def test_json_patch_and_optimistic_concurrency(custom: Any) -> None:
    created = create_widget(custom, "w1")
    rv = created["metadata"]["resourceVersion"]
    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
        {"op": "add", "path": "/metadata/finalizers", "value": ["x/y"]},
    ]
    patched = custom.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "w1", ops, _content_type="application/json-patch+json"
    )
    assert patched["metadata"]["finalizers"] == ["x/y"]
    with pytest.raises(ApiException) as err:  # the same "test" op with a stale version
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, "default", PLURAL, "w1", ops, _content_type="application/json-patch+json"
        )
    assert err.value.status == 422
    with pytest.raises(ApiException) as err:
        custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            "default",
            PLURAL,
            "w1",
            {"metadata": {"resourceVersion": rv}, "spec": {"size": 5}},
        )
    assert err.value.status == 409


def test_finalizers_block_deletion_until_removed(cluster: EmulatedCluster, custom: Any) -> None:
    body = widget("w1")
    body["metadata"]["finalizers"] = ["example.dev/keep"]
    created = custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, body)
    marked = custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "w1")
    assert RFC3339.fullmatch(marked["metadata"]["deletionTimestamp"])
    assert int(marked["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    assert cluster.get(WIDGETS, "w1", "default") is not None
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "w1", {"metadata": {"finalizers": None}}
    )
    assert cluster.get(WIDGETS, "w1", "default") is None
    with pytest.raises(ApiException) as err:
        custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "w1")
    assert err.value.status == 404


def test_watch_events_carry_metadata_and_resume(custom: Any) -> None:
    w1 = create_widget(custom, "w1")
    rv_created = w1["metadata"]["resourceVersion"]
    patched = custom.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "w1", {"spec": {"size": 2}}
    )
    custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "w1")
    create_widget(custom, "w2")

    # Without a version: the current state as ADDED. With a version: the changes after it.
    assert [
        e[:2] for e in watch_events(custom.list_namespaced_custom_object, GROUP, VERSION, "default", PLURAL)
    ] == [("ADDED", "w2")]
    resumed = watch_events(
        custom.list_namespaced_custom_object, GROUP, VERSION, "default", PLURAL, resource_version=rv_created
    )
    assert [e[:2] for e in resumed] == [("MODIFIED", "w1"), ("DELETED", "w1"), ("ADDED", "w2")]
    assert resumed[0][2] == patched["metadata"]["resourceVersion"]
    versions = [int(e[2]) for e in resumed]
    assert versions == sorted(versions) and len(set(versions)) == 3

    listed = custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)
    assert int(listed["metadata"]["resourceVersion"]) == versions[-1]
    assert listed["items"][0]["metadata"]["generation"] == 1


# c. Label & field selectors on LIST & WATCH.


@pytest.mark.parametrize(
    "selector, expected",
    [
        ("app=web", {"a", "b"}),
        ("app==web", {"a", "b"}),
        ("app!=web", {"c", "d"}),
        ("app in (web,db)", {"a", "b", "c"}),
        ("app notin (web)", {"c", "d"}),
        ("tier", {"a", "c"}),
        ("!tier", {"b", "d"}),
        ("app=web,tier=front", {"a"}),
        ("app in (web, db),!tier", {"b"}),
        ("", {"a", "b", "c", "d"}),
    ],
)
def test_label_selectors(cluster: EmulatedCluster, custom: Any, selector: str, expected: set[str]) -> None:
    create_widget(custom, "a", app="web", tier="front")
    create_widget(custom, "b", app="web")
    create_widget(custom, "c", app="db", tier="back")
    create_widget(custom, "d")
    listed = custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, label_selector=selector)
    assert {obj["metadata"]["name"] for obj in listed["items"]} == expected
    watched = http_watch(
        cluster, f"/apis/{GROUP}/{VERSION}/namespaces/default/{PLURAL}", labelSelector=selector
    )
    assert {name for _, name in watched} == expected


def test_label_selector_parser_rejects_garbage() -> None:
    assert parse_label_selector("a in (x,y),!b")({"a": "y"})
    for bad in ["a in x", "a=(b)", "=b", "a in ()", "a b"]:
        with pytest.raises(ValueError):
            parse_label_selector(bad)


def test_bad_selectors_are_400(custom: Any) -> None:
    for kwargs in [{"label_selector": "a in x"}, {"field_selector": "spec.size=1"}]:
        with pytest.raises(ApiException) as err:
            custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, **kwargs)
        assert err.value.status == 400


def test_watch_sees_objects_entering_and_leaving_the_selection(custom: Any) -> None:
    start = create_widget(custom, "w0")["metadata"]["resourceVersion"]
    create_widget(custom, "w1", app="web")
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "w0", {"metadata": {"labels": {"app": "web"}}}
    )
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "w1", {"metadata": {"labels": {"app": "db"}}}
    )
    events = watch_events(
        custom.list_namespaced_custom_object,
        GROUP,
        VERSION,
        "default",
        PLURAL,
        label_selector="app=web",
        resource_version=start,
    )
    assert [e[:2] for e in events] == [("ADDED", "w1"), ("ADDED", "w0"), ("DELETED", "w1")]


def test_field_selectors(cluster: EmulatedCluster, core: Any, custom: Any) -> None:
    core.create_namespace({"metadata": {"name": "other"}})
    create_widget(custom, "a")
    create_widget(custom, "b")
    create_widget(custom, "a", ns="other")
    by_name = custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, field_selector="metadata.name=a")
    assert sorted(o["metadata"]["namespace"] for o in by_name["items"]) == ["default", "other"]
    by_ns = custom.list_cluster_custom_object(
        GROUP, VERSION, PLURAL, field_selector="metadata.namespace!=default"
    )
    assert [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in by_ns["items"]] == [("other", "a")]
    both = custom.list_cluster_custom_object(
        GROUP, VERSION, PLURAL, field_selector="metadata.name==a,metadata.namespace=default"
    )
    assert len(both["items"]) == 1
    watched = http_watch(cluster, f"/apis/{GROUP}/{VERSION}/{PLURAL}", fieldSelector="metadata.name=b")
    assert watched == [("ADDED", "b")]


# d. Performance: matching a request must not re-filter the whole request history.


def test_many_requests_stay_fast(cluster: EmulatedCluster, core: Any) -> None:
    started = time.monotonic()
    for i in range(500):
        core.create_namespaced_config_map("default", {"metadata": {"name": f"cm{i}"}})
        core.delete_namespaced_config_map(f"cm{i}", "default")
    elapsed = time.monotonic() - started
    assert elapsed < 15, elapsed  # kmock's own dispatching needs ~130 s for these 1000 requests
    verbs = [r.verb for r in cluster.requests() if r.plural == "configmaps"]
    assert verbs.count("create") == 500 and verbs.count("delete") == 500
    assert cluster.objects("v1/configmaps") == []


def test_user_reactions_still_work(cluster: EmulatedCluster, core: Any) -> None:
    cluster.emulator["get /healthz"] << b"ok"
    cluster.emulator["list v1/pods"][:1] << {"items": [], "metadata": {}, "kind": "PodList"}
    with urllib.request.urlopen(cluster.url + "/healthz", timeout=5) as response:
        assert response.read() == b"ok"
    core.create_namespaced_pod("default", {"metadata": {"name": "p1"}, "spec": {"containers": []}})
    assert core.list_namespaced_pod("default").items == []  # intercepted once by the reaction
    assert [p.metadata.name for p in core.list_namespaced_pod("default").items] == ["p1"]  # then emulated


# e. Core v1 namespaces.


def test_namespaces_crud_and_watch(core: Any) -> None:
    created = core.create_namespace({"metadata": {"name": "ns1", "labels": {"team": "a"}}})
    assert created.status.phase == "Active"
    assert created.metadata.uid and created.metadata.resource_version
    assert core.read_namespace("ns1").metadata.labels == {"team": "a"}
    assert {ns.metadata.name for ns in core.list_namespace().items} == {"default", "ns1"}
    assert [ns.metadata.name for ns in core.list_namespace(label_selector="team=a").items] == ["ns1"]
    with pytest.raises(ApiException) as err:
        core.create_namespace({"metadata": {"name": "ns1"}})
    assert err.value.status == 409
    core.delete_namespace("ns1")
    with pytest.raises(ApiException) as err:
        core.read_namespace("ns1")
    assert err.value.status == 404
    events = watch_events(core.list_namespace, resource_version=created.metadata.resource_version)
    assert [e[:2] for e in events] == [("MODIFIED", "ns1"), ("DELETED", "ns1")]


def test_namespace_deletion_cascades(cluster: EmulatedCluster, core: Any, custom: Any, batch: Any) -> None:
    start = core.create_namespace({"metadata": {"name": "ns1"}}).metadata.resource_version
    create_widget(custom, "w1", ns="ns1")
    create_widget(custom, "w2", ns="ns1")
    create_widget(custom, "w3", ns="default")
    body = widget("kept")
    body["metadata"]["finalizers"] = ["example.dev/keep"]
    custom.create_namespaced_custom_object(GROUP, VERSION, "ns1", PLURAL, body)
    batch.create_namespaced_job("ns1", {"metadata": {"name": "j1"}, "spec": {"template": {}}})

    core.delete_namespace("ns1")
    assert core.read_namespace("ns1").status.phase == "Terminating"  # blocked by the finalizer
    assert {o["metadata"]["name"] for o in cluster.objects(WIDGETS)} == {"w3", "kept"}
    assert cluster.objects("batch/v1/jobs") == []
    with pytest.raises(ApiException) as err:
        create_widget(custom, "late", ns="ns1")
    assert err.value.status == 403

    custom.patch_namespaced_custom_object(
        GROUP, VERSION, "ns1", PLURAL, "kept", {"metadata": {"finalizers": []}}
    )
    assert [ns.metadata.name for ns in core.list_namespace().items] == ["default"]
    events = watch_events(custom.list_cluster_custom_object, GROUP, VERSION, PLURAL, resource_version=start)
    deleted = [name for etype, name, _ in events if etype == "DELETED"]
    assert sorted(deleted) == ["kept", "w1", "w2"]
    job_events = watch_events(batch.list_job_for_all_namespaces, resource_version=start)
    assert [e[:2] for e in job_events] == [("ADDED", "j1"), ("DELETED", "j1")]


def test_required_namespaces(crd_path: pathlib.Path, tmp_path: pathlib.Path) -> None:
    with EmulatedCluster(ClusterEmulator(require_namespaces=True), crds=crd_path) as cluster:
        api = kubernetes.config.new_client_from_config(
            config_file=str(cluster.write_kubeconfig(tmp_path / "kc"))
        )
        custom = kubernetes.client.CustomObjectsApi(api)
        with pytest.raises(ApiException) as err:
            create_widget(custom, "w1", ns="missing")
        assert err.value.status == 404
        assert create_widget(custom, "w1", ns="default")


# f. Discovery.


def test_discovery(cluster: EmulatedCluster) -> None:
    core_v1 = get_json(cluster, "/api/v1")
    assert core_v1["groupVersion"] == "v1"
    assert {"namespaces", "pods", "configmaps"} <= {r["name"] for r in core_v1["resources"]}
    assert get_json(cluster, "/api/v1/") == core_v1
    assert get_json(cluster, "/api/")["versions"] == ["v1"]

    widgets = get_json(cluster, f"/apis/{GROUP}/{VERSION}")
    assert widgets["groupVersion"] == f"{GROUP}/{VERSION}"
    by_name = {r["name"]: r for r in widgets["resources"]}
    assert set(by_name) == {"widgets", "widgets/status", "gadgets"}
    assert by_name["widgets"]["kind"] == "Widget" and by_name["widgets"]["namespaced"] is True
    assert by_name["widgets"]["shortNames"] == ["wd"] and by_name["widgets"]["categories"] == ["all"]
    assert by_name["gadgets"]["namespaced"] is False
    assert {"list", "watch", "patch"} <= set(by_name["widgets"]["verbs"])
    assert get_json(cluster, f"/apis/{GROUP}/{VERSION}/") == widgets
    assert get_json(cluster, f"/apis/{GROUP}/")["name"] == GROUP

    groups = {g["name"] for g in get_json(cluster, "/apis")["groups"]}
    assert {GROUP, "batch", "rbac.authorization.k8s.io", "apiextensions.k8s.io"} <= groups
    crds = get_json(cluster, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions")
    assert {crd["metadata"]["name"] for crd in crds["items"]} == {f"{PLURAL}.{GROUP}", f"gadgets.{GROUP}"}
    with pytest.raises(urllib.error.HTTPError) as err:
        get_json(cluster, "/apis/unknown.dev/v1")
    assert err.value.code == 404


# Helpers: CRD loading, kubeconfig, request log.


def test_load_crds(crd_path: pathlib.Path) -> None:
    emulator = ClusterEmulator()
    declared = load_crds(emulator, [crd_path])
    assert declared == [kmock.resource(GROUP, VERSION, PLURAL), kmock.resource(GROUP, VERSION, "gadgets")]
    info = emulator.resources[WIDGETS]
    assert (info.kind, info.singular, info.namespaced) == ("Widget", "widget", True)
    assert info.subresources == {"status"} and info.shortnames == {"wd"}
    assert emulator.resources[f"{GROUP}/{VERSION}/gadgets"].subresources == set()
    assert emulator.resolve("wd") == kmock.resource(GROUP, VERSION, PLURAL)


def test_project_crds_load() -> None:
    crds = pathlib.Path(__file__).parent.parent / "crds"
    if not list(crds.glob("*.yaml")):
        pytest.skip("no project CRDs yet")
    declared = load_crds(ClusterEmulator(), crds)
    assert kmock.resource("taskgrant.dev", "v1alpha1", "taskgrants") in declared


def test_kubeconfig_works_with_load_kube_config(cluster: EmulatedCluster, tmp_path: pathlib.Path) -> None:
    path = cluster.write_kubeconfig(tmp_path / "kubeconfig")
    kubernetes.config.load_kube_config(config_file=str(path))
    assert kubernetes.client.Configuration.get_default_copy().host == cluster.url
    names = [ns.metadata.name for ns in kubernetes.client.CoreV1Api().list_namespace().items]
    assert names == ["default"]
    served = cluster.requests()[-1]
    assert (served.verb, served.resource, served.status, served.path) == (
        "list",
        "v1/namespaces",
        200,
        "/api/v1/namespaces",
    )


def test_request_log_counts_verbs(cluster: EmulatedCluster, custom: Any) -> None:
    before = len(cluster.requests())
    create_widget(custom, "w1")
    custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "w1")
    custom.patch_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "w1", {"spec": {"size": 2}})
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, "default", PLURAL, "w1", {"status": {"x": 1}}
    )
    custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)
    custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "w1")
    served = cluster.requests()[before:]
    assert [(r.verb, r.subresource, r.status) for r in served] == [
        ("create", None, 201),
        ("get", None, 200),
        ("patch", None, 200),
        ("patch", "status", 200),
        ("list", None, 200),
        ("delete", None, 200),
    ]
    assert all(r.resource == WIDGETS and r.namespace == "default" for r in served)
    assert served[2].data == {"spec": {"size": 2}}


def test_sync_helpers_emit_watch_events(cluster: EmulatedCluster, custom: Any) -> None:
    start = str(cluster.emulator.resource_version)
    cluster.create(WIDGETS, widget("w1"), "default")
    cluster.patch(WIDGETS, "w1", {"status": {"phase": "Ready"}}, "default", subresource="status")
    cluster.delete(WIDGETS, "w1", "default")
    events = watch_events(
        custom.list_namespaced_custom_object, GROUP, VERSION, "default", PLURAL, resource_version=start
    )
    assert [e[0] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
