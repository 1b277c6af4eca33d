"""The Helm chart, deploy/install.yaml and the kustomization, checked without a cluster.

Every value set (the defaults and each file in the chart's ci/ folder) must pass `helm lint
--strict`, render, and give manifests that the schemas of the minimum supported Kubernetes accept.
The chart's CRDs must be byte-identical to crds/, and deploy/install.yaml to a fresh render.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from . import (
    CHART,
    INSTALL_NAMESPACE,
    INSTALL_YAML,
    REGENERATE,
    ROOT,
    helm,
    helm_binary,
    render_install_yaml,
    template,
)

pytestmark = pytest.mark.skipif(
    helm_binary() is None,
    reason="helm is not on PATH (`make test` puts it there; or run `python scripts/install-helm.py`)",
)

Doc = dict[str, Any]

CI_DIR = CHART / "ci"
VALUE_FILES: list[Path | None] = [None, *sorted(CI_DIR.glob("*.yaml"))]
OBSERVABILITY = CI_DIR / "observability-values.yaml"
NAMESPACED = CI_DIR / "namespaced-values.yaml"
ESCALATE_AND_BIND = CI_DIR / "escalate-and-bind-values.yaml"
# Kinds with no schema among Kubernetes' own, each from an optional CRD of another project.
FOREIGN_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
AGGREGATE_LABEL = "taskgrant.dev/aggregate-to-grantable"
RBAC = "rbac.authorization.k8s.io"


def file_id(path: Path | None) -> str:
    return "defaults" if path is None else path.name


def values_args(values_file: Path | None) -> tuple[str, ...]:
    return () if values_file is None else ("--values", str(values_file))


def min_kubernetes_version() -> str:
    """The lowest version Chart.yaml's kubeVersion (">=1.29.0-0") allows, as "1.29.0"."""
    constraint = yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"]
    match = re.fullmatch(r">=\s*v?(\d+\.\d+\.\d+)(-0)?", constraint)
    assert match, f"kubeVersion {constraint!r} is not of the form >=X.Y.Z-0"
    return match.group(1)


@functools.cache
def render(values_file: Path | None, *extra: str) -> tuple[Doc, ...]:
    """Every manifest of one value set, CRDs included, as the minimum Kubernetes would get them."""
    result = template(
        "--include-crds", "--kube-version", min_kubernetes_version(), *values_args(values_file), *extra
    )
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def only(docs: tuple[Doc, ...], kind: str, name: str | None = None) -> Doc:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def kinds(docs: tuple[Doc, ...]) -> set[str]:
    return {doc["kind"] for doc in docs}


def operator_cluster_role(docs: tuple[Doc, ...]) -> Doc:
    """The ClusterRole bound to the operator that holds its own rules (not the aggregated one)."""
    deployment = only(docs, "Deployment")
    return only(docs, "ClusterRole", deployment["metadata"]["name"])


def pod_spec(docs: tuple[Doc, ...]) -> Doc:
    spec: Doc = only(docs, "Deployment")["spec"]["template"]["spec"]
    return spec


def container_args(docs: tuple[Doc, ...]) -> list[str]:
    args: list[str] = pod_spec(docs)["containers"][0]["args"]
    return args


def permissions(role: Doc) -> dict[tuple[str, str], set[str]]:
    found: dict[tuple[str, str], set[str]] = {}
    for rule in role.get("rules") or []:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                found.setdefault((group, resource), set()).update(rule["verbs"])
    return found


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


@pytest.mark.parametrize("values_file", VALUE_FILES, ids=file_id)
def test_lint_strict(values_file: Path | None) -> None:
    result = helm("lint", "--strict", str(CHART), *values_args(values_file), check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("values_file", VALUE_FILES, ids=file_id)
def test_manifests_are_valid_for_the_minimum_kubernetes(values_file: Path | None) -> None:
    docs = render(values_file)
    assert {"CustomResourceDefinition", "Deployment", "ClusterRole"} <= kinds(docs)
    for doc in docs:
        where = f"{doc['kind']} {doc['metadata']['name']}"
        if (doc["apiVersion"], doc["kind"]) in FOREIGN_KINDS:
            with pytest.raises(kubernetes_validate.SchemaNotFoundError):
                kubernetes_validate.validate(doc, min_kubernetes_version(), strict=True)
            continue
        try:
            kubernetes_validate.validate(doc, min_kubernetes_version(), strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            pytest.fail(f"{where} is invalid for Kubernetes {error.version}: {path}: {error.message}")


def test_kubernetes_older_than_the_minimum_is_refused() -> None:
    major, minor, _ = min_kubernetes_version().split(".")
    result = template("--kube-version", f"{major}.{int(minor) - 1}.0", check=False)
    assert result.returncode != 0
    assert "kubeVersion" in result.stderr


def test_chart_crds_are_the_repository_crds() -> None:
    source = {path.name: path.read_bytes() for path in sorted((ROOT / "crds").glob("*.yaml"))}
    copy = {path.name: path.read_bytes() for path in sorted((CHART / "crds").glob("*.yaml"))}
    assert source, "crds/ has no CRDs"
    assert copy == source, "charts/taskgrant-operator/crds/ drifted from crds/: run `make chart-crds`"


def test_install_yaml_is_a_fresh_render() -> None:
    assert INSTALL_YAML.is_file(), f"deploy/install.yaml is missing: run `{REGENERATE}`"
    assert INSTALL_YAML.read_text() == render_install_yaml(), (
        f"deploy/install.yaml drifted from the chart: run `{REGENERATE}`"
    )


def test_install_yaml_is_valid_and_complete() -> None:
    docs = tuple(doc for doc in yaml.safe_load_all(INSTALL_YAML.read_text()) if doc)
    namespace = only(docs, "Namespace")
    assert namespace["metadata"]["name"] == INSTALL_NAMESPACE
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    crds = {yaml.safe_load(path.read_text())["metadata"]["name"] for path in (ROOT / "crds").glob("*.yaml")}
    assert {doc["metadata"]["name"] for doc in docs if doc["kind"] == "CustomResourceDefinition"} == crds
    for doc in docs:
        kubernetes_validate.validate(doc, min_kubernetes_version(), strict=True)
        if doc["kind"] not in ("Namespace", "CustomResourceDefinition") and not doc["kind"].startswith(
            "Cluster"
        ):
            assert doc["metadata"]["namespace"] == INSTALL_NAMESPACE, doc["metadata"]["name"]
    # The examples are documentation, never installed.
    assert not {"TaskGrant", "TaskGrantPolicy", "Job"} & kinds(docs)


def test_kustomization_builds_install_yaml() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not on PATH (`python scripts/install-helm.py` puts it there)")
    built = subprocess.run(
        [kubectl, "kustomize", str(ROOT / "deploy")], capture_output=True, text=True, check=True
    ).stdout

    def identities(text: str) -> set[tuple[str, str]]:
        return {(d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(text) if d}

    assert identities(built) == identities(INSTALL_YAML.read_text())


@pytest.mark.parametrize("values_file", VALUE_FILES, ids=file_id)
def test_deployment_is_single_and_restricted(values_file: Path | None) -> None:
    docs = render(values_file)
    deployment = only(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1  # kopf has no leader election
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = pod_spec(docs)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    [container] = pod["containers"]
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["readOnlyRootFilesystem"] is True
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert {"requests", "limits"} <= set(container["resources"])
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    args = container_args(docs)
    assert args[args.index("--log-format") + 1] == "json"
    liveness = args[args.index("--liveness") + 1]
    assert liveness.endswith(":{port}/healthz".format(port=container["ports"][0]["containerPort"]))


def test_watch_namespaces_become_namespace_arguments() -> None:
    values = yaml.safe_load(NAMESPACED.read_text())
    args = container_args(render(NAMESPACED))
    named = [args[i + 1] for i, arg in enumerate(args) if arg == "--namespace"]
    assert named == values["watchNamespaces"]
    assert "--namespace" not in container_args(render(None))


def test_metrics_port_only_with_metrics() -> None:
    assert "--metrics-port" not in container_args(render(None))
    args = container_args(render(OBSERVABILITY))
    assert args[args.index("--metrics-port") + 1] == "9090"
    service = only(render(OBSERVABILITY), "Service")
    assert service["spec"]["ports"][0]["port"] == 9090


@pytest.mark.parametrize("values_file", VALUE_FILES, ids=file_id)
def test_no_wildcards_and_no_resource_names_in_operator_rules(values_file: Path | None) -> None:
    docs = render(values_file)
    for role in (d for d in docs if d["kind"] in ("ClusterRole", "Role")):
        assert "*" not in set(strings(role.get("rules") or [])), role["metadata"]["name"]
    for rule in operator_cluster_role(docs)["rules"]:
        assert "resourceNames" not in rule
        assert len(rule["apiGroups"]) == 1 and len(rule["resources"]) == 1, rule  # one rule per resource


# That the default rules are exactly the operator's API calls is checked against the calls it really
# makes, in tests/integration/test_rbac_coverage.py.


@pytest.mark.parametrize("values_file", [f for f in VALUE_FILES if f != ESCALATE_AND_BIND], ids=file_id)
def test_no_escalation_verbs_by_default(values_file: Path | None) -> None:
    docs = render(values_file)
    for role in (d for d in docs if d["kind"] == "ClusterRole"):
        verbs = {verb for rule in role.get("rules") or [] for verb in rule["verbs"]}
        assert not verbs & {"escalate", "bind", "impersonate"}, role["metadata"]["name"]


def test_escalate_and_bind_only_on_roles() -> None:
    docs = render(ESCALATE_AND_BIND)
    granted = permissions(operator_cluster_role(docs))
    escalation = {key: verbs & {"escalate", "bind", "impersonate"} for key, verbs in granted.items()}
    assert {key: verbs for key, verbs in escalation.items() if verbs} == {
        (RBAC, "roles"): {"escalate", "bind"}
    }
    default = permissions(operator_cluster_role(render(None)))
    assert {key: verbs - escalation[key] for key, verbs in granted.items()} == default
    # Policies are the only ceiling then: no grantable aggregation.
    assert not [
        d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"].endswith("-grantable")
    ]


@pytest.mark.parametrize("values_file", [f for f in VALUE_FILES if f != ESCALATE_AND_BIND], ids=file_id)
def test_grantable_ceiling_is_aggregated_and_bound(values_file: Path | None) -> None:
    docs = render(values_file)
    values = yaml.safe_load(helm("show", "values", str(CHART)).stdout)
    if values_file is not None:
        values |= yaml.safe_load(values_file.read_text()) or {}
    roles = [d for d in docs if d["kind"] == "ClusterRole"]
    [aggregated] = [
        r for r in roles if "aggregationRule" in r and r["metadata"]["name"].endswith("-grantable")
    ]
    assert "rules" not in aggregated  # the controller manager owns them, not Helm
    assert aggregated["aggregationRule"]["clusterRoleSelectors"] == [
        {"matchLabels": {AGGREGATE_LABEL: "true"}}
    ]
    [labelled] = [r for r in roles if r["metadata"]["labels"].get(AGGREGATE_LABEL) == "true"]
    assert labelled["rules"] == values["grantable"]["rules"]
    account = only(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
    bound = {
        b["roleRef"]["name"]
        for b in docs
        if b["kind"] == "ClusterRoleBinding"
        and {"kind": "ServiceAccount", "name": account, "namespace": INSTALL_NAMESPACE} in b["subjects"]
    }
    assert bound == {aggregated["metadata"]["name"], operator_cluster_role(docs)["metadata"]["name"]}


@pytest.mark.parametrize("values", ["unknownKey=1", "image.unknownKey=1", "metrics.serviceMonitor.unknown=1"])
def test_schema_rejects_unknown_keys(values: str) -> None:
    result = template("--set", values, check=False)
    assert result.returncode != 0
    assert "additional properties" in result.stderr


def test_schema_rejects_wildcards_in_grantable_rules(tmp_path: Path) -> None:
    # The operator would hold "*" itself, cluster-wide: list what grants need instead.
    rule = {"apiGroups": [""], "resources": ["*"], "verbs": ["get"]}
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"grantable": {"rules": [rule]}}))
    result = template("--values", str(values), check=False)
    assert result.returncode != 0
    assert "/grantable/rules/0/resources/0" in result.stderr


def test_service_monitor_needs_metrics() -> None:
    result = template("--set", "metrics.serviceMonitor.enabled=true", check=False)
    assert result.returncode != 0
    assert "needs metrics.enabled" in result.stderr


OPTIONAL_KINDS = {"Service", "ServiceMonitor", "NetworkPolicy", "PodDisruptionBudget"}


def test_optional_objects_are_off_by_default() -> None:
    assert not OPTIONAL_KINDS & kinds(render(None))


def test_optional_objects_render_when_enabled() -> None:
    docs = render(OBSERVABILITY)
    assert kinds(docs) >= OPTIONAL_KINDS
    policy = only(docs, "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["podSelector"]["matchLabels"] == only(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    monitor = only(docs, "ServiceMonitor")["spec"]
    assert monitor["endpoints"][0]["path"] == "/metrics"
    assert only(docs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


def schema() -> Doc:
    loaded: Doc = json.loads((CHART / "values.schema.json").read_text())
    return loaded


def leaf_keys(node: yaml.Node, schema: Doc, prefix: str = "") -> Iterator[tuple[str, yaml.Node]]:
    """(dotted path, key node) of every value in values.yaml, down to the schema's free-form maps.

    Fails on a key that the schema does not describe, or beside which it accepts unknown keys.
    """
    assert isinstance(node, yaml.MappingNode)
    assert schema.get("additionalProperties") is False, f"the schema accepts unknown keys in {prefix!r}"
    for key, value in node.value:
        path = f"{prefix}{key.value}"
        assert key.value in schema["properties"], f"{path} is not in values.schema.json"
        child = schema["properties"][key.value]
        if "properties" in child:
            yield from leaf_keys(value, child, f"{path}.")
        else:
            yield path, key


def values_leaves() -> list[tuple[str, yaml.Node]]:
    root = yaml.compose((CHART / "values.yaml").read_text())
    assert root is not None, "values.yaml is empty"
    return list(leaf_keys(root, schema()))


def test_every_value_has_a_comment_and_a_schema() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    for path, key in values_leaves():
        assert lines[key.start_mark.line - 1].lstrip().startswith("#"), f"{path} has no comment"


def test_every_value_is_in_the_chart_readme() -> None:
    readme = (CHART / "README.md").read_text()
    assert [path for path, _ in values_leaves() if f"`{path}`" not in readme] == []


def test_approvers_get_an_aggregated_role_to_decide_with() -> None:
    docs = render(None)
    roles = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ClusterRole"}
    approver = roles["taskgrant-operator-approver"]
    assert approver["aggregationRule"]["clusterRoleSelectors"] == [
        {"matchLabels": {"taskgrant.dev/aggregate-to-approver": "true"}}
    ]
    rules = roles["taskgrant-operator-approver-rules"]["rules"]
    assert {
        "apiGroups": ["taskgrant.dev"],
        "resources": ["taskgrantapprovals"],
        "verbs": ["get", "list", "watch", "create"],
    } in rules
    # Deciding never includes changing the grant itself, or anyone's RBAC.
    assert all(set(rule["verbs"]) <= {"get", "list", "watch", "create"} for rule in rules)
    assert all("taskgrantapprovals" in rule["resources"] or "create" not in rule["verbs"] for rule in rules)
