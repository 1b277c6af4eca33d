"""The Helm chart, deploy/install.yaml and the kustomization, checked without a cluster.

Every value set (the defaults and each file in the chart's ci/ folder) must pass `helm lint
--strict`, render, and give manifests that the schemas of the minimum supported Kubernetes accept.
The chart's CRDs must be byte-identical to crds/, and deploy/install.yaml to a fresh render.
"""

from __future__ import annotations

import base64
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
from cryptography import x509

from taskgrant.controller import webhooks

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
FOREIGN_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("cert-manager.io/v1", "Issuer"),
    ("cert-manager.io/v1", "Certificate"),
}
# Value sets given with --set rather than a ci/ file.
CERT_MANAGER = ("--set", "webhook.certManager.enabled=true")
SET_VALUES = {"cert-manager": CERT_MANAGER, "no-webhook": ("--set", "webhook.enabled=false")}
VALUE_SETS: list[tuple[Path | None, tuple[str, ...]]] = [
    *((path, ()) for path in VALUE_FILES),
    *((None, extra) for extra in SET_VALUES.values()),
]
VALUE_SET_IDS = [*("defaults" if path is None else path.name for path in VALUE_FILES), *SET_VALUES]
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


@pytest.mark.parametrize(("values_file", "extra"), VALUE_SETS, ids=VALUE_SET_IDS)
def test_lint_strict(values_file: Path | None, extra: tuple[str, ...]) -> None:
    result = helm("lint", "--strict", str(CHART), *values_args(values_file), *extra, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("values_file", "extra"), VALUE_SETS, ids=VALUE_SET_IDS)
def test_manifests_are_valid_for_the_minimum_kubernetes(
    values_file: Path | None, extra: tuple[str, ...]
) -> None:
    docs = render(values_file, *extra)
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
        if not doc["apiVersion"].startswith(
            "cert-manager.io/"
        ):  # no built-in schema for cert-manager's kinds
            kubernetes_validate.validate(doc, min_kubernetes_version(), strict=True)
        cluster_scoped = ("Namespace", "CustomResourceDefinition", *WEBHOOK_KINDS)
        if doc["kind"] not in cluster_scoped and not doc["kind"].startswith("Cluster"):
            assert doc["metadata"]["namespace"] == INSTALL_NAMESPACE, doc["metadata"]["name"]
    # The examples are documentation, never installed.
    assert not {"TaskGrant", "TaskGrantPolicy", "Job"} & kinds(docs)
    # No private key in the repository: the certificate comes from cert-manager.
    assert "Secret" not in kinds(docs) and "PRIVATE KEY" not in INSTALL_YAML.read_text()
    assert "Certificate" in kinds(docs)


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
    service = only(
        render(OBSERVABILITY), "Service", f"{only(render(None), 'Deployment')['metadata']['name']}-metrics"
    )
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
    docs = render(None)
    webhook = webhook_service(docs)["metadata"]["name"]
    assert not OPTIONAL_KINDS & {d["kind"] for d in docs if d["metadata"]["name"] != webhook}


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


# --- The admission webhook. ---

WEBHOOK_KINDS = {"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"}
# (configuration kind, resource) -> (path, operations): the operator's handler ids are the paths.
WEBHOOK_RULES = {
    ("MutatingWebhookConfiguration", "taskgrants"): (webhooks.MUTATE_GRANT, ["CREATE"]),
    ("MutatingWebhookConfiguration", "taskgrantapprovals"): (webhooks.MUTATE_APPROVAL, ["CREATE"]),
    ("ValidatingWebhookConfiguration", "taskgrants"): (webhooks.VALIDATE_GRANT, ["CREATE", "UPDATE"]),
    ("ValidatingWebhookConfiguration", "taskgrantapprovals"): (
        webhooks.VALIDATE_APPROVAL,
        ["CREATE", "UPDATE"],
    ),
}


def webhook_service(docs: tuple[Doc, ...]) -> Doc:
    [service] = [d for d in docs if d["kind"] == "Service" and d["metadata"]["name"].endswith("-webhook")]
    return service


def webhook_entries(docs: tuple[Doc, ...]) -> Iterator[tuple[str, Doc]]:
    for doc in docs:
        if doc["kind"] in WEBHOOK_KINDS:
            for entry in doc["webhooks"]:
                yield doc["kind"], entry


def cert_volume(docs: tuple[Doc, ...]) -> tuple[str, str]:
    """The webhook certificate's Secret and where the operator reads it (--webhook-cert-dir)."""
    pod = pod_spec(docs)
    [container] = pod["containers"]
    args = container_args(docs)
    cert_dir = args[args.index("--webhook-cert-dir") + 1]
    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == cert_dir]
    assert mount["readOnly"] is True
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    return volume["secret"]["secretName"], cert_dir


def test_webhook_configurations_are_on_by_default_and_fail_closed() -> None:
    docs = render(None)
    service = webhook_service(docs)
    [container] = pod_spec(docs)["containers"]
    args = container_args(docs)
    [port] = [p for p in container["ports"] if p["name"] == service["spec"]["ports"][0]["targetPort"]]
    assert args[args.index("--webhook-port") + 1] == str(port["containerPort"]) == "9443"
    found = {}
    for kind, entry in webhook_entries(docs):
        [rule] = entry["rules"]
        assert rule["apiGroups"] == ["taskgrant.dev"] and rule["apiVersions"] == ["v1alpha1"]
        [resource] = rule["resources"]
        client = entry["clientConfig"]["service"]
        assert (client["name"], client["namespace"], client["port"]) == (
            service["metadata"]["name"],
            INSTALL_NAMESPACE,
            service["spec"]["ports"][0]["port"],
        )
        found[(kind, resource)] = (client["path"].lstrip("/"), rule["operations"])
        assert entry["failurePolicy"] == "Fail"
        assert entry["sideEffects"] == "None"
        assert entry["matchPolicy"] == "Equivalent"
        assert entry["timeoutSeconds"] == 5
        assert entry["admissionReviewVersions"] == ["v1"]
        assert "namespaceSelector" not in entry  # every namespace: the operator serves them all
    assert found == WEBHOOK_RULES
    assert sorted(path for path, _ in found.values()) == sorted(webhooks.PATHS)


def check_self_signed_webhook(docs: tuple[Doc, ...]) -> None:
    """The Secret holds a certificate for the webhook Service signed by the CA in every caBundle."""
    secret_name, _ = cert_volume(docs)
    secret = only(docs, "Secret", secret_name)
    assert secret["type"] == "kubernetes.io/tls"
    data = {key: base64.b64decode(value) for key, value in secret["data"].items()}
    ca_bundles = {entry["clientConfig"]["caBundle"] for _, entry in webhook_entries(docs)}
    assert ca_bundles == {secret["data"]["ca.crt"]}
    ca = x509.load_pem_x509_certificate(data["ca.crt"])
    served = x509.load_pem_x509_certificate(data["tls.crt"])
    served.verify_directly_issued_by(ca)
    service = webhook_service(docs)["metadata"]["name"]
    names = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"{service}.{INSTALL_NAMESPACE}.svc" in names.get_values_for_type(x509.DNSName)
    assert b"PRIVATE KEY" in data["tls.key"]


def test_self_signed_mode_has_a_ca_bundle_and_a_secret() -> None:
    docs = render(None)
    assert all(entry["clientConfig"]["caBundle"] for _, entry in webhook_entries(docs))
    check_self_signed_webhook(docs)
    assert not {"Issuer", "Certificate"} & kinds(docs)


def test_cert_manager_mode_injects_the_ca_and_has_no_secret() -> None:
    docs = render(None, *CERT_MANAGER)
    assert "Secret" not in kinds(docs)
    secret_name, _ = cert_volume(docs)
    certificate = only(docs, "Certificate")
    assert certificate["spec"]["secretName"] == secret_name
    service = webhook_service(docs)["metadata"]["name"]
    assert f"{service}.{INSTALL_NAMESPACE}.svc" in certificate["spec"]["dnsNames"]
    issuer = only(docs, "Issuer")
    assert issuer["spec"] == {"selfSigned": {}}
    assert certificate["spec"]["issuerRef"]["name"] == issuer["metadata"]["name"]
    inject = f"{INSTALL_NAMESPACE}/{certificate['metadata']['name']}"
    for doc in docs:
        if doc["kind"] in WEBHOOK_KINDS:
            assert doc["metadata"]["annotations"] == {"cert-manager.io/inject-ca-from": inject}
    assert all("caBundle" not in entry["clientConfig"] for _, entry in webhook_entries(docs))


def test_cert_manager_mode_with_an_issuer_of_ones_own() -> None:
    docs = render(
        None,
        *CERT_MANAGER,
        "--set",
        "webhook.certManager.issuerRef.name=corp-ca",
        "--set",
        "webhook.certManager.issuerRef.kind=ClusterIssuer",
    )
    assert "Issuer" not in kinds(docs)
    assert only(docs, "Certificate")["spec"]["issuerRef"] == {"name": "corp-ca", "kind": "ClusterIssuer"}
    result = template(*CERT_MANAGER, "--set", "webhook.certManager.issuerRef.kind=ClusterIssuer", check=False)
    assert result.returncode != 0 and "missing property 'name'" in result.stderr


def test_no_webhook_without_webhook_enabled() -> None:
    docs = render(None, "--set", "webhook.enabled=false")
    assert not (WEBHOOK_KINDS | {"Secret", "Service"}) & kinds(docs)
    assert not [arg for arg in container_args(docs) if arg.startswith("--webhook")]
    assert [v["name"] for v in pod_spec(docs)["volumes"]] == ["tmp"]


def test_webhooks_match_only_the_watched_namespaces() -> None:
    values = yaml.safe_load(NAMESPACED.read_text())
    for _, entry in webhook_entries(render(NAMESPACED)):
        assert entry["namespaceSelector"] == {
            "matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "In", "values": values["watchNamespaces"]}
            ]
        }


def test_network_policy_lets_the_api_server_reach_the_webhook() -> None:
    ingress = only(render(OBSERVABILITY), "NetworkPolicy")["spec"]["ingress"]
    assert [rule["ports"] for rule in ingress] == [
        [{"port": "webhook", "protocol": "TCP"}],
        [{"port": "metrics", "protocol": "TCP"}],
    ]
    assert "from" not in ingress[0]  # the API server's source address differs by cluster


@pytest.mark.parametrize(
    "values", ["webhook.failurePolicy=Open", "webhook.timeoutSeconds=31", "webhook.port=443"]
)
def test_schema_rejects_bad_webhook_values(values: str) -> None:
    assert template("--set", values, check=False).returncode != 0
