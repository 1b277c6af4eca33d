"""Table-driven tests of the guardrails: the never-grant list and TaskGrantPolicy evaluation."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import pytest
from pydantic import ValidationError

from taskgrant.domain import policy
from taskgrant.domain.models import (
    LabelSelector,
    PolicyRule,
    RuleCeiling,
    TaskGrantSpec,
    parse_policy,
    parse_spec,
)
from taskgrant.domain.policy import (
    Policy,
    Verdict,
    ceiling_gaps,
    evaluate,
    never_grant_violations,
    selector_matches,
)

NS = "ci"
NO_LABELS: dict[str, dict[str, str]] = {}


def rule(
    groups: Sequence[str], resources: Sequence[str], verbs: Sequence[str], names: Sequence[str] = ()
) -> dict[str, Any]:
    out: dict[str, Any] = {"apiGroups": list(groups), "resources": list(resources), "verbs": list(verbs)}
    if names:
        out["resourceNames"] = list(names)
    return out


def grant(*access: Mapping[str, Any], duration: str | None = None) -> TaskGrantSpec:
    spec: dict[str, Any] = {"job": {"name": "release-42"}, "access": [dict(entry) for entry in access]}
    if duration is not None:
        spec["duration"] = duration
    return parse_spec(spec)


def rules_grant(*rules: Mapping[str, Any], duration: str | None = None) -> TaskGrantSpec:
    return grant({"rules": list(rules)}, duration=duration)


def make_policy(
    name: str,
    *ceilings: Mapping[str, Any],
    selector: Mapping[str, Any] | None = None,
    targets: Mapping[str, Any] | None = None,
    max_duration: str | None = None,
) -> Policy:
    spec: dict[str, Any] = {"namespaceSelector": dict(selector or {}), "rules": [dict(c) for c in ceilings]}
    if targets is not None:
        spec["targetNamespaces"] = dict(targets)
    if max_duration is not None:
        spec["maxDuration"] = max_duration
    return Policy(name, parse_policy(spec))


ALLOW_ALL = make_policy("allow-all", rule(["*"], ["*"], ["*"]))
HARMLESS = rule([""], ["configmaps"], ["get"])
CONFIGMAPS = rule([""], ["configmaps"], ["get", "list"])


def show(group: str, resource: str) -> str:
    return f"{resource}.{group}" if group else resource


def offending_at_1_1(offending: Mapping[str, Any]) -> TaskGrantSpec:
    """A grant whose only offending rule sits at spec.access[1].rules[1], so paths are checked for real."""
    return grant({"rules": [HARMLESS]}, {"namespace": NS, "rules": [HARMLESS, offending]})


# --- the never-grant list -------------------------------------------------------------------------------

ESCALATION = "it allows privilege escalation"
SECRETS = "listing or watching secrets reveals every secret's content"
WORKLOAD = "a workload can run as any ServiceAccount in its namespace"
TOKEN = "it mints tokens for any ServiceAccount"
EXEC = "it runs commands in or reaches into running pods"
KUBELET = "it reaches the kubelet API"
RBAC = "writing RBAC objects grants anything"
ADMISSION = "admission control guards the whole cluster"
NAMESPACES = "namespace labels decide Pod Security admission"
CSR = "approving certificate requests mints credentials"
PV = "persistent volumes can expose host paths"
SELF = "grants must never govern grants"

RBAC_GROUP = "rbac.authorization.k8s.io"
ADMISSION_GROUP = "admissionregistration.k8s.io"
CSR_GROUP = "certificates.k8s.io"


class Case(NamedTuple):
    group: str
    resource: str
    verb: str
    why: str


# Written out by hand from the issue, not derived from NEVER_GRANT: dropping an item there fails here.
NEVER_GRANT_CASES = [
    Case(RBAC_GROUP, "roles", "escalate", ESCALATION),
    Case(RBAC_GROUP, "rolebindings", "bind", ESCALATION),
    Case("", "serviceaccounts", "impersonate", ESCALATION),
    Case("", "users", "impersonate", ESCALATION),
    Case("", "configmaps", "impersonate", ESCALATION),
    Case(CSR_GROUP, "signers", "approve", ESCALATION),
    Case("", "secrets", "list", SECRETS),
    Case("", "secrets", "watch", SECRETS),
    Case("", "pods", "create", WORKLOAD),
    Case("", "pods", "update", WORKLOAD),
    Case("", "pods", "patch", WORKLOAD),
    Case("batch", "jobs", "create", WORKLOAD),
    Case("batch", "cronjobs", "create", WORKLOAD),
    Case("apps", "deployments", "create", WORKLOAD),
    Case("apps", "deployments", "patch", WORKLOAD),
    Case("apps", "statefulsets", "create", WORKLOAD),
    Case("apps", "daemonsets", "create", WORKLOAD),
    Case("apps", "replicasets", "update", WORKLOAD),
    Case("", "replicationcontrollers", "create", WORKLOAD),
    Case("", "serviceaccounts/token", "create", TOKEN),
    Case("", "serviceaccounts/token", "get", TOKEN),
    Case("", "pods/exec", "create", EXEC),
    Case("", "pods/exec", "get", EXEC),
    Case("", "pods/attach", "create", EXEC),
    Case("", "pods/portforward", "create", EXEC),
    Case("", "pods/ephemeralcontainers", "patch", EXEC),
    Case("", "nodes/proxy", "get", KUBELET),
    Case(RBAC_GROUP, "roles", "create", RBAC),
    Case(RBAC_GROUP, "roles", "patch", RBAC),
    Case(RBAC_GROUP, "rolebindings", "create", RBAC),
    Case(RBAC_GROUP, "rolebindings", "update", RBAC),
    Case(RBAC_GROUP, "rolebindings", "delete", RBAC),
    Case(RBAC_GROUP, "clusterroles", "create", RBAC),
    Case(RBAC_GROUP, "clusterrolebindings", "deletecollection", RBAC),
    Case(ADMISSION_GROUP, "validatingwebhookconfigurations", "create", ADMISSION),
    Case(ADMISSION_GROUP, "mutatingwebhookconfigurations", "patch", ADMISSION),
    Case(ADMISSION_GROUP, "validatingadmissionpolicies", "update", ADMISSION),
    Case(ADMISSION_GROUP, "validatingadmissionpolicybindings", "create", ADMISSION),
    Case(ADMISSION_GROUP, "mutatingadmissionpolicies", "delete", ADMISSION),
    Case(ADMISSION_GROUP, "mutatingadmissionpolicybindings", "create", ADMISSION),
    Case("", "namespaces", "create", NAMESPACES),
    Case("", "namespaces", "patch", NAMESPACES),
    Case("", "namespaces", "update", NAMESPACES),
    Case(CSR_GROUP, "certificatesigningrequests/approval", "update", CSR),
    Case(CSR_GROUP, "signers", "sign", CSR),
    Case("", "persistentvolumes", "create", PV),
    Case("", "persistentvolumes", "delete", PV),
    Case("taskgrant.dev", "taskgrants", "get", SELF),
    Case("taskgrant.dev", "taskgrantpolicies", "list", SELF),
    Case("taskgrant.dev", "taskgrants/status", "patch", SELF),
]


def _case_id(case: Case) -> str:
    return f"{case.verb}-{show(case.group, case.resource)}"


@pytest.mark.parametrize("case", NEVER_GRANT_CASES, ids=_case_id)
def test_never_grant_entry_is_refused(case: Case) -> None:
    spec = offending_at_1_1(rule([case.group], [case.resource], [case.verb]))
    expected = (
        f"spec.access[1].rules[1]: '{case.verb}' on {show(case.group, case.resource)} "
        f"is never granted: {case.why}"
    )
    problems = never_grant_violations(spec)
    assert expected in problems
    assert all(problem.startswith("spec.access[1].rules[1]: ") for problem in problems)
    verdict = evaluate(NS, spec, [ALLOW_ALL], NO_LABELS)
    assert not verdict.allowed
    assert verdict.policy is None
    assert expected in verdict.reasons
    assert expected in verdict.message


def test_the_table_covers_every_never_grant_entry() -> None:
    """A new NEVER_GRANT entry without a case above fails here."""
    assert {case.why for case in NEVER_GRANT_CASES} == {entry.why for entry in policy.NEVER_GRANT}


@pytest.mark.parametrize("case", NEVER_GRANT_CASES, ids=_case_id)
def test_each_case_hits_the_entry_it_names(case: Case) -> None:
    [entry] = [entry for entry in policy.NEVER_GRANT if entry.why == case.why]
    assert entry.hits(case.group, case.resource, case.verb)


def _every_listed_item() -> list[Any]:
    """Every group/resource/verb each entry names (one stand-in where an entry says "any")."""
    params = []
    for entry in policy.NEVER_GRANT:
        for group in sorted(entry.groups or {"example.com"}):
            for resource in sorted(entry.resources or {"things"}):
                for verb in sorted(entry.verbs or {"get", "create"}):
                    params.append(
                        pytest.param(group, resource, verb, entry.why, id=f"{verb}-{show(group, resource)}")
                    )
    return params


@pytest.mark.parametrize(("group", "resource", "verb", "why"), _every_listed_item())
def test_every_item_of_every_entry_is_refused(group: str, resource: str, verb: str, why: str) -> None:
    spec = rules_grant(rule([group], [resource], [verb]))
    expected = f"spec.access[0].rules[0]: '{verb}' on {show(group, resource)} is never granted: {why}"
    assert expected in never_grant_violations(spec)
    assert expected in evaluate(NS, spec, [ALLOW_ALL], NO_LABELS).reasons


@pytest.mark.parametrize(("group", "resource"), sorted(policy.CLUSTER_SCOPED), ids=lambda v: v or "core")
def test_cluster_scoped_resource_is_refused(group: str, resource: str) -> None:
    spec = offending_at_1_1(rule([group], [resource], ["get"]))
    expected = (
        f"spec.access[1].rules[1]: {show(group, resource)} is cluster-scoped; "
        "grants make namespaced Roles only"
    )
    assert expected in never_grant_violations(spec)
    verdict = evaluate(NS, spec, [ALLOW_ALL], NO_LABELS)
    assert not verdict.allowed
    assert expected in verdict.reasons


def test_subresources_of_cluster_scoped_resources_are_refused() -> None:
    spec = rules_grant(rule([""], ["nodes/status"], ["get"]))
    assert never_grant_violations(spec) == [
        "spec.access[0].rules[0]: nodes/status is cluster-scoped; grants make namespaced Roles only"
    ]


@pytest.mark.parametrize(
    ("requested", "field"),
    [
        pytest.param(rule(["*"], ["configmaps"], ["get"]), "apiGroups", id="apiGroups-star"),
        pytest.param(rule(["", "*"], ["configmaps"], ["get"]), "apiGroups", id="apiGroups-star-among-others"),
        pytest.param(rule([""], ["*"], ["get"]), "resources", id="resources-star"),
        pytest.param(rule([""], ["pods/*"], ["get"]), "resources", id="resources-subresource-star"),
        pytest.param(rule([""], ["configmaps"], ["*"]), "verbs", id="verbs-star"),
        pytest.param(rule([""], ["configmaps"], ["get", "*"]), "verbs", id="verbs-star-among-others"),
    ],
)
def test_wildcards_are_refused(requested: dict[str, Any], field: str) -> None:
    spec = offending_at_1_1(requested)
    expected = f"spec.access[1].rules[1]: wildcard in {field} is never granted"
    assert expected in never_grant_violations(spec)
    verdict = evaluate(NS, spec, [ALLOW_ALL], NO_LABELS)
    assert not verdict.allowed
    assert expected in verdict.reasons


def test_violations_are_reported_once_each_and_all_of_them() -> None:
    spec = rules_grant(rule(["", "apps"], ["pods", "deployments"], ["create", "create"]))
    assert never_grant_violations(spec) == [
        f"spec.access[0].rules[0]: 'create' on pods is never granted: {WORKLOAD}",
        f"spec.access[0].rules[0]: 'create' on deployments is never granted: {WORKLOAD}",
        f"spec.access[0].rules[0]: 'create' on pods.apps is never granted: {WORKLOAD}",
        f"spec.access[0].rules[0]: 'create' on deployments.apps is never granted: {WORKLOAD}",
    ]


@pytest.mark.parametrize(
    "requested",
    [
        pytest.param(rule([""], ["secrets"], ["get"], ["signing-key"]), id="get-one-named-secret"),
        pytest.param(rule([""], ["configmaps"], ["get", "list"]), id="get-list-configmaps"),
        pytest.param(rule([""], ["configmaps"], ["watch"]), id="watch-configmaps"),
        pytest.param(rule([""], ["configmaps"], ["update"], ["settings"]), id="update-one-configmap"),
        pytest.param(rule([""], ["pods/log"], ["get"]), id="get-pods-log"),
        pytest.param(rule([""], ["pods"], ["get", "list", "watch", "delete"]), id="read-delete-pods"),
        pytest.param(rule(["apps"], ["deployments"], ["get", "list"]), id="read-deployments"),
        pytest.param(rule(["apps"], ["deployments/scale"], ["patch"]), id="scale-deployment"),
        pytest.param(rule(["batch"], ["jobs"], ["get", "delete"]), id="read-delete-jobs"),
        pytest.param(rule([""], ["serviceaccounts"], ["get"]), id="get-serviceaccounts"),
        pytest.param(rule([RBAC_GROUP], ["roles", "rolebindings"], ["get", "list"]), id="read-rbac"),
        pytest.param(rule([""], ["services", "endpoints"], ["create", "update"]), id="write-services"),
        pytest.param(rule(["example.com"], ["widgets"], ["create"]), id="write-custom-resource"),
    ],
)
def test_ordinary_requests_are_not_refused(requested: dict[str, Any]) -> None:
    spec = rules_grant(requested)
    assert never_grant_violations(spec) == []
    assert evaluate(NS, spec, [ALLOW_ALL], NO_LABELS) == Verdict(True, "allow-all")


# --- evaluate: default deny and namespace selectors --------------------------------------------------------


def test_no_policy_at_all_denies() -> None:
    verdict = evaluate(NS, rules_grant(HARMLESS), [], NO_LABELS)
    assert verdict == Verdict(False, reasons=["no TaskGrantPolicy governs namespace ci"])
    assert verdict.message == "no TaskGrantPolicy governs namespace ci"


def test_policy_for_other_namespaces_does_not_govern() -> None:
    other = make_policy("other", CONFIGMAPS, selector={"matchLabels": {"team": "b"}})
    verdict = evaluate(NS, rules_grant(HARMLESS), [other], {NS: {"team": "a"}})
    assert verdict.reasons == ["no TaskGrantPolicy governs namespace ci"]


def test_never_grant_is_reported_before_governance() -> None:
    verdict = evaluate(NS, rules_grant(rule([""], ["secrets"], ["list"])), [], NO_LABELS)
    assert verdict.reasons == [f"spec.access[0].rules[0]: 'list' on secrets is never granted: {SECRETS}"]


NAME = policy.NAMESPACE_NAME_LABEL
TEAM_IN: dict[str, Any] = {"matchExpressions": [{"key": "team", "operator": "In", "values": ["a", "b"]}]}
TEAM_NOT_IN: dict[str, Any] = {"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["a"]}]}
TEAM_EXISTS: dict[str, Any] = {"matchExpressions": [{"key": "team", "operator": "Exists"}]}
TEAM_ABSENT: dict[str, Any] = {"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]}


@pytest.mark.parametrize(
    ("selector", "labels", "governs"),
    [
        pytest.param({}, {}, True, id="empty-selector-governs-all"),
        pytest.param({"matchLabels": {"team": "a"}}, {"team": "a"}, True, id="matchLabels-match"),
        pytest.param({"matchLabels": {"team": "a"}}, {"team": "b"}, False, id="matchLabels-other-value"),
        pytest.param({"matchLabels": {"team": "a"}}, {}, False, id="matchLabels-missing"),
        pytest.param(
            {"matchLabels": {"team": "a", "env": "ci"}}, {"team": "a"}, False, id="matchLabels-all-needed"
        ),
        pytest.param(
            {"matchLabels": {"team": "a", "env": "ci"}},
            {"team": "a", "env": "ci", "x": "y"},
            True,
            id="matchLabels-all-present",
        ),
        pytest.param(TEAM_IN, {"team": "b"}, True, id="In-match"),
        pytest.param(TEAM_IN, {"team": "c"}, False, id="In-other-value"),
        pytest.param(TEAM_IN, {}, False, id="In-missing"),
        pytest.param(
            TEAM_NOT_IN,
            {"team": "b"},
            True,
            id="NotIn-other-value",
        ),
        pytest.param(TEAM_NOT_IN, {"team": "a"}, False, id="NotIn-listed-value"),
        pytest.param(TEAM_NOT_IN, {}, True, id="NotIn-missing"),
        pytest.param(
            TEAM_EXISTS,
            {"team": ""},
            True,
            id="Exists-present",
        ),
        pytest.param(TEAM_EXISTS, {"env": "x"}, False, id="Exists-missing"),
        pytest.param(
            TEAM_ABSENT,
            {"env": "x"},
            True,
            id="DoesNotExist-missing",
        ),
        pytest.param(TEAM_ABSENT, {"team": "a"}, False, id="DoesNotExist-present"),
        pytest.param(
            {
                "matchLabels": {"env": "ci"},
                "matchExpressions": [{"key": "team", "operator": "In", "values": ["a"]}],
            },
            {"env": "ci", "team": "b"},
            False,
            id="labels-and-expressions-all-needed",
        ),
        pytest.param({"matchLabels": {NAME: "ci"}}, {}, True, id="name-label-implied"),
        pytest.param({"matchLabels": {NAME: "ci"}}, {"team": "a"}, True, id="name-label-implied-with-others"),
        pytest.param({"matchLabels": {NAME: "prod"}}, {}, False, id="name-label-other-namespace"),
        pytest.param(
            {"matchExpressions": [{"key": NAME, "operator": "In", "values": ["dev", "ci"]}]},
            {},
            True,
            id="name-label-In",
        ),
        pytest.param(
            {"matchExpressions": [{"key": NAME, "operator": "NotIn", "values": ["ci"]}]},
            {},
            False,
            id="name-label-NotIn",
        ),
        pytest.param(
            {"matchExpressions": [{"key": NAME, "operator": "DoesNotExist"}]},
            {},
            False,
            id="name-label-exists",
        ),
    ],
)
def test_namespace_selector_decides_governance(
    selector: dict[str, Any], labels: dict[str, str], governs: bool
) -> None:
    spec = rules_grant(HARMLESS)
    verdict = evaluate(NS, spec, [make_policy("p", CONFIGMAPS, selector=selector)], {NS: labels})
    if governs:
        assert verdict == Verdict(True, "p")
    else:
        assert verdict == Verdict(False, reasons=["no TaskGrantPolicy governs namespace ci"])
    # Selectors match the same way on their own.
    full = {NAME: NS, **labels}
    assert selector_matches(LabelSelector.model_validate(selector), full) is governs


def test_name_label_is_implied_for_namespaces_never_seen() -> None:
    by_name = make_policy("p", CONFIGMAPS, selector={"matchLabels": {NAME: "ci"}})
    assert evaluate(NS, rules_grant(HARMLESS), [by_name], {"other": {"team": "a"}}).allowed


# --- evaluate: rule ceilings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "gap"),
    [
        pytest.param(
            rule([""], ["configmaps"], ["get", "update"]), "verbs ['update'] not allowed", id="verb"
        ),
        pytest.param(
            rule([""], ["configmaps", "services"], ["get"]),
            "resources ['services'] not allowed",
            id="resource",
        ),
        pytest.param(
            rule(["", "apps"], ["configmaps"], ["get"]), "apiGroups ['apps'] not allowed", id="apiGroup"
        ),
        pytest.param(
            rule([""], ["configmaps/status"], ["get"]),
            "resources ['configmaps/status'] not allowed",
            id="subresource-is-not-the-resource",
        ),
    ],
)
def test_rule_broader_than_the_ceiling_is_denied(requested: dict[str, Any], gap: str) -> None:
    spec = grant({"rules": [HARMLESS, requested]})
    verdict = evaluate(NS, spec, [make_policy("p", CONFIGMAPS)], NO_LABELS)
    assert verdict == Verdict(
        False, reasons=[f"policy p: spec.access[0].rules[1]: no policy rule covers it ({gap})"]
    )


def test_rule_within_the_ceiling_is_allowed() -> None:
    spec = rules_grant(rule([""], ["configmaps"], ["list"]), rule([""], ["configmaps"], ["get", "list"]))
    assert evaluate(NS, spec, [make_policy("p", CONFIGMAPS)], NO_LABELS) == Verdict(True, "p")


def test_closest_ceiling_is_the_one_reported() -> None:
    far = rule(["apps"], ["deployments"], ["get"])
    near = rule([""], ["configmaps"], ["get"])
    spec = rules_grant(rule([""], ["configmaps"], ["get", "delete"]))
    verdict = evaluate(NS, spec, [make_policy("p", far, near)], NO_LABELS)
    assert verdict.reasons == [
        "policy p: spec.access[0].rules[0]: no policy rule covers it (verbs ['delete'] not allowed)"
    ]


def test_each_rule_needs_one_ceiling_covering_all_of_it() -> None:
    """Two ceilings that together span a rule do not cover it: RBAC rules are not split."""
    get_cm = rule([""], ["configmaps"], ["get"])
    list_cm = rule([""], ["configmaps"], ["list"])
    spec = rules_grant(rule([""], ["configmaps"], ["get", "list"]))
    assert not evaluate(NS, spec, [make_policy("p", get_cm, list_cm)], NO_LABELS).allowed
    assert evaluate(NS, rules_grant(get_cm, list_cm), [make_policy("p", get_cm, list_cm)], NO_LABELS).allowed


NAMED = {**rule([""], ["secrets"], ["get"]), "requireResourceNames": True}
LISTED: dict[str, Any] = {**NAMED, "resourceNames": ["signing-key", "ca"]}
PREFIXED: dict[str, Any] = {**NAMED, "resourceNamePrefixes": ["release-"]}
LISTED_OR_PREFIXED: dict[str, Any] = {**NAMED, "resourceNames": ["ca"], "resourceNamePrefixes": ["release-"]}


@pytest.mark.parametrize(
    ("ceiling", "names", "gap"),
    [
        pytest.param(NAMED, [], "resourceNames are required", id="names-required-missing"),
        pytest.param(NAMED, ["anything"], None, id="names-required-any-name"),
        pytest.param(rule([""], ["secrets"], ["get"]), [], None, id="names-not-required"),
        pytest.param(rule([""], ["secrets"], ["get"]), ["x"], None, id="names-not-required-but-given"),
        pytest.param(LISTED, ["ca"], None, id="listed"),
        pytest.param(LISTED, ["signing-key", "ca"], None, id="all-listed"),
        pytest.param(LISTED, ["ca", "other"], "resourceNames ['other'] not allowed", id="one-not-listed"),
        pytest.param(LISTED, [], "resourceNames are required", id="listed-but-none-given"),
        pytest.param(PREFIXED, ["release-42"], None, id="prefixed"),
        pytest.param(PREFIXED, ["release-"], None, id="prefix-itself"),
        pytest.param(
            PREFIXED,
            ["pre-release-1"],
            "resourceNames ['pre-release-1'] not allowed",
            id="prefix-not-at-start",
        ),
        pytest.param(
            LISTED_OR_PREFIXED,
            ["ca", "release-1"],
            None,
            id="listed-or-prefixed",
        ),
        pytest.param(
            LISTED_OR_PREFIXED, ["cab"], "resourceNames ['cab'] not allowed", id="listed-names-are-exact"
        ),
    ],
)
def test_resource_names(ceiling: dict[str, Any], names: list[str], gap: str | None) -> None:
    spec = rules_grant(rule([""], ["secrets"], ["get"], names))
    verdict = evaluate(NS, spec, [make_policy("p", ceiling)], NO_LABELS)
    if gap is None:
        assert verdict == Verdict(True, "p")
    else:
        assert verdict.reasons == [f"policy p: spec.access[0].rules[0]: no policy rule covers it ({gap})"]


@pytest.mark.parametrize(
    ("ceiling", "requested"),
    [
        pytest.param(
            rule(["*"], ["configmaps"], ["get"]),
            rule(["", "apps", "x.io"], ["configmaps"], ["get"]),
            id="star-apiGroups",
        ),
        pytest.param(
            rule([""], ["*"], ["get"]),
            rule([""], ["configmaps", "services", "pods/log"], ["get"]),
            id="star-resources",
        ),
        pytest.param(
            rule([""], ["configmaps"], ["*"]),
            rule([""], ["configmaps"], ["get", "delete", "sign"]),
            id="star-verbs",
        ),
        pytest.param(
            rule([""], ["configmaps", "*"], ["get"]),
            rule([""], ["services"], ["get"]),
            id="star-among-others",
        ),
    ],
)
def test_star_in_a_ceiling_covers_any_value(ceiling: dict[str, Any], requested: dict[str, Any]) -> None:
    assert evaluate(NS, rules_grant(requested), [make_policy("p", ceiling)], NO_LABELS) == Verdict(True, "p")


@pytest.mark.parametrize("case", NEVER_GRANT_CASES, ids=_case_id)
def test_star_in_a_ceiling_does_not_lift_the_never_grant_list(case: Case) -> None:
    star = make_policy("p", rule([case.group, "*"], ["*"], ["*"]))
    spec = rules_grant(rule([case.group], [case.resource], [case.verb]))
    verdict = evaluate(NS, spec, [star], NO_LABELS)
    assert not verdict.allowed
    assert verdict.reasons == never_grant_violations(spec) != []


# --- evaluate: target namespaces ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("targets", "namespace", "allowed"),
    [
        pytest.param(None, None, True, id="own-namespace-implicit"),
        pytest.param(None, "ci", True, id="own-namespace-explicit"),
        pytest.param(None, "prod", False, id="no-targets-other-namespace"),
        pytest.param({}, "prod", False, id="empty-targets"),
        pytest.param({"names": ["dev"]}, "prod", False, id="not-named"),
        pytest.param({"names": ["dev", "prod"]}, "prod", True, id="by-name"),
        pytest.param({"names": ["dev"]}, "ci", True, id="own-namespace-not-named"),
        pytest.param({"selector": {"matchLabels": {"env": "prod"}}}, "prod", True, id="by-selector"),
        pytest.param({"selector": {"matchLabels": {"env": "prod"}}}, "dev", False, id="selector-no-match"),
        pytest.param(
            {"selector": {"matchLabels": {"env": "prod"}}}, "unknown", False, id="selector-unknown-ns"
        ),
        pytest.param(
            {"selector": {"matchLabels": {NAME: "unknown"}}}, "unknown", True, id="selector-by-name"
        ),
        pytest.param({"selector": {}}, "anywhere", True, id="empty-selector-any-namespace"),
        pytest.param(
            {"names": ["dev"], "selector": {"matchLabels": {"env": "prod"}}},
            "prod",
            True,
            id="names-or-selector",
        ),
    ],
)
def test_target_namespaces(targets: dict[str, Any] | None, namespace: str | None, allowed: bool) -> None:
    labels = {"ci": {"env": "ci"}, "dev": {"env": "dev"}, "prod": {"env": "prod"}}
    entry: dict[str, Any] = {"rules": [HARMLESS]}
    if namespace is not None:
        entry["namespace"] = namespace
    spec = grant({"rules": [HARMLESS]}, entry)
    verdict = evaluate(NS, spec, [make_policy("p", CONFIGMAPS, targets=targets)], labels)
    if allowed:
        assert verdict == Verdict(True, "p")
    else:
        assert verdict.reasons == [
            f"policy p: spec.access[1]: namespace {namespace} is not a target namespace"
        ]


# --- evaluate: durations -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("duration", "max_duration", "allowed"),
    [
        pytest.param("2h", "1h30m", False, id="longer"),
        pytest.param("90m", "1h30m", True, id="equal"),
        pytest.param("5401s", "1h30m", False, id="one-second-longer"),
        pytest.param("15m", "1h30m", True, id="shorter"),
        pytest.param(None, "1h30m", True, id="none-asked-capped-later"),
        pytest.param("100h", None, True, id="no-maximum"),
    ],
)
def test_duration(duration: str | None, max_duration: str | None, allowed: bool) -> None:
    spec = rules_grant(HARMLESS, duration=duration)
    verdict = evaluate(NS, spec, [make_policy("p", CONFIGMAPS, max_duration=max_duration)], NO_LABELS)
    expected_max = (
        None
        if max_duration is None
        else parse_policy(
            {"namespaceSelector": {}, "rules": [CONFIGMAPS], "maxDuration": max_duration}
        ).max_duration
    )
    if allowed:
        assert verdict == Verdict(True, "p", expected_max)
    else:
        assert not verdict.allowed
        assert len(verdict.reasons) == 1
        assert verdict.reasons[0].startswith("policy p: spec.duration ")
        assert verdict.reasons[0].endswith(" exceeds maxDuration 1h30m")


def test_duration_message_names_both_durations() -> None:
    spec = rules_grant(HARMLESS, duration="2h")
    verdict = evaluate(NS, spec, [make_policy("p", CONFIGMAPS, max_duration="1h30m")], NO_LABELS)
    assert verdict.reasons == ["policy p: spec.duration 2h exceeds maxDuration 1h30m"]


def test_verdict_reports_max_duration_of_the_allowing_policy() -> None:
    verdict = evaluate(
        NS, rules_grant(HARMLESS), [make_policy("p", CONFIGMAPS, max_duration="45m")], NO_LABELS
    )
    assert verdict.max_duration == datetime.timedelta(minutes=45)
    assert verdict.message == "allowed by TaskGrantPolicy p"


# --- evaluate: several policies ----------------------------------------------------------------------------


def test_first_covering_policy_by_name_wins() -> None:
    policies = [
        make_policy("zulu", CONFIGMAPS, max_duration="10m"),
        make_policy("bravo", CONFIGMAPS, max_duration="20m"),
        make_policy("alpha", rule([""], ["services"], ["get"])),
        make_policy("charlie", CONFIGMAPS),
    ]
    verdict = evaluate(NS, rules_grant(HARMLESS), policies, NO_LABELS)
    assert verdict == Verdict(True, "bravo", datetime.timedelta(minutes=20))
    assert evaluate(NS, rules_grant(HARMLESS), reversed(policies), NO_LABELS) == verdict


def test_non_governing_policies_are_skipped_even_if_first() -> None:
    policies = [
        make_policy("alpha", CONFIGMAPS, selector={"matchLabels": {NAME: "prod"}}),
        make_policy("bravo", CONFIGMAPS),
    ]
    assert evaluate(NS, rules_grant(HARMLESS), policies, NO_LABELS) == Verdict(True, "bravo")


def test_reasons_from_every_governing_policy_when_none_covers() -> None:
    policies = [
        make_policy("bravo", rule([""], ["configmaps"], ["list"]), max_duration="10m"),
        make_policy("alpha", rule([""], ["services"], ["get"])),
        make_policy("other", CONFIGMAPS, selector={"matchLabels": {"team": "x"}}),
    ]
    verdict = evaluate(NS, rules_grant(HARMLESS, duration="1h"), policies, NO_LABELS)
    assert verdict.reasons == [
        "policy alpha: spec.access[0].rules[0]: no policy rule covers it "
        "(resources ['configmaps'] not allowed)",
        "policy bravo: spec.access[0].rules[0]: no policy rule covers it (verbs ['get'] not allowed)",
        "policy bravo: spec.duration 1h exceeds maxDuration 10m",
    ]
    assert verdict.message == "; ".join(verdict.reasons)


def test_one_policy_must_cover_all_of_the_grant() -> None:
    """Rule A allowed by policy 1 only, rule B by policy 2 only: together they do not make a grant."""
    rule_a = rule([""], ["configmaps"], ["get"])
    rule_b = rule(["apps"], ["deployments"], ["get"])
    policies = [make_policy("one", rule_a), make_policy("two", rule_b)]
    verdict = evaluate(NS, rules_grant(rule_a, rule_b), policies, NO_LABELS)
    assert verdict.reasons == [
        "policy one: spec.access[0].rules[1]: no policy rule covers it "
        "(apiGroups ['apps'] not allowed; resources ['deployments'] not allowed)",
        "policy two: spec.access[0].rules[0]: no policy rule covers it "
        "(apiGroups [''] not allowed; resources ['configmaps'] not allowed)",
    ]
    # Across access entries too, and for namespaces versus rules.
    split = grant({"rules": [rule_a]}, {"namespace": "prod", "rules": [rule_a]})
    policies = [
        make_policy("one", rule_a),
        make_policy("two", rule([""], ["services"], ["get"]), targets={"names": ["prod"]}),
    ]
    assert not evaluate(NS, split, policies, NO_LABELS).allowed
    assert evaluate(NS, rules_grant(rule_a, rule_b), [make_policy("both", rule_a, rule_b)], NO_LABELS).allowed


# --- selector_matches and ceiling_gaps directly ------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        pytest.param({}, {}, True, id="empty-matches-nothing-labelled"),
        pytest.param({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True, id="labels-subset"),
        pytest.param({"matchLabels": {"a": "1"}}, {"a": "2"}, False, id="labels-value"),
        pytest.param({"matchLabels": {"a": ""}}, {}, False, id="empty-value-still-needs-key"),
        pytest.param(
            {"matchExpressions": [{"key": "a", "operator": "In", "values": []}]},
            {"a": "1"},
            False,
            id="In-no-values",
        ),
        pytest.param(
            {"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1", "2"]}]},
            {"a": "3"},
            True,
            id="NotIn-other",
        ),
        pytest.param(
            {
                "matchExpressions": [
                    {"key": "a", "operator": "Exists"},
                    {"key": "b", "operator": "DoesNotExist"},
                ]
            },
            {"a": "1"},
            True,
            id="expressions-all",
        ),
        pytest.param(
            {
                "matchExpressions": [
                    {"key": "a", "operator": "Exists"},
                    {"key": "b", "operator": "DoesNotExist"},
                ]
            },
            {"a": "1", "b": "2"},
            False,
            id="expressions-one-fails",
        ),
    ],
)
def test_selector_matches(selector: dict[str, Any], labels: dict[str, str], expected: bool) -> None:
    assert selector_matches(LabelSelector.model_validate(selector), labels) is expected


@pytest.mark.parametrize(
    ("requested", "ceiling", "gaps"),
    [
        pytest.param(rule([""], ["pods"], ["get"]), rule([""], ["pods"], ["get"]), [], id="equal"),
        pytest.param(
            rule([""], ["pods"], ["get"]), rule(["", "apps"], ["pods", "x"], ["get", "list"]), [], id="subset"
        ),
        pytest.param(
            rule(["a", "b"], ["r", "s"], ["get", "list"]),
            rule(["a"], ["r"], ["get"]),
            ["apiGroups ['b'] not allowed", "resources ['s'] not allowed", "verbs ['list'] not allowed"],
            id="all-three-broader",
        ),
        pytest.param(rule([""], ["pods"], ["get"]), rule(["*"], ["*"], ["*"]), [], id="stars"),
        pytest.param(
            rule([""], ["pods"], ["get"]),
            {**rule([""], ["pods"], ["get"]), "requireResourceNames": True},
            ["resourceNames are required"],
            id="names-required",
        ),
        pytest.param(
            rule([""], ["pods"], ["list"]),
            {**rule([""], ["pods"], ["get"]), "requireResourceNames": True},
            ["verbs ['list'] not allowed", "resourceNames are required"],
            id="verbs-and-names",
        ),
        pytest.param(
            rule([""], ["pods"], ["get"], ["web-1", "db-1"]),
            {**rule([""], ["pods"], ["get"]), "requireResourceNames": True, "resourceNamePrefixes": ["web-"]},
            ["resourceNames ['db-1'] not allowed"],
            id="stray-name",
        ),
    ],
)
def test_ceiling_gaps(requested: dict[str, Any], ceiling: dict[str, Any], gaps: list[str]) -> None:
    assert ceiling_gaps(PolicyRule.model_validate(requested), RuleCeiling.model_validate(ceiling)) == gaps


# --- RuleCeiling validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"resourceNames": ["a"]}, id="names"),
        pytest.param({"resourceNamePrefixes": ["a-"]}, id="prefixes"),
        pytest.param({"resourceNames": ["a"], "requireResourceNames": False}, id="names-require-false"),
    ],
)
def test_names_without_require_resource_names_are_refused(extra: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="need requireResourceNames: true"):
        parse_policy({"namespaceSelector": {}, "rules": [{**CONFIGMAPS, **extra}]})


def test_names_with_require_resource_names_are_accepted() -> None:
    spec = parse_policy(
        {
            "namespaceSelector": {},
            "rules": [
                {
                    **CONFIGMAPS,
                    "requireResourceNames": True,
                    "resourceNames": ["a"],
                    "resourceNamePrefixes": ["b-"],
                }
            ],
        }
    )
    assert spec.rules[0].resource_names == ["a"]
    assert spec.rules[0].resource_name_prefixes == ["b-"]


def test_the_namespace_name_label_cannot_be_forged() -> None:
    # Kubernetes sets kubernetes.io/metadata.name to the namespace's name; hand-written labels can't.
    assert policy.namespace_labels("ci", {"ci": {"kubernetes.io/metadata.name": "prod", "tier": "x"}}) == {
        "kubernetes.io/metadata.name": "ci",
        "tier": "x",
    }
