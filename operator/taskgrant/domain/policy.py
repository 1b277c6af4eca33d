"""Guardrails as pure functions: the built-in never-grant list and TaskGrantPolicy evaluation.

The operator and the offline `taskgrant check` command both call `parse_policies` and
`admission_verdict`, so a verdict in CI is the verdict the cluster will give.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from taskgrant.domain.models import (
    MAX_GRANT_NAME_LENGTH,
    ApprovalPolicy,
    LabelSelector,
    PolicyRule,
    Reason,
    RuleCeiling,
    TaskGrantPolicySpec,
    TaskGrantSpec,
    describe_validation_error,
    format_duration,
    parse_policy,
    parse_spec,
)

WILDCARD = "*"
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
WORKLOAD_WRITE_VERBS = frozenset({"create", "update", "patch"})
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


@dataclass(frozen=True)
class Forbidden:
    """One entry of the never-grant list: which verbs on which resources, and why."""

    why: str
    groups: frozenset[str] | None  # None: any group
    resources: frozenset[str] | None  # None: any resource
    verbs: frozenset[str] | None  # None: any verb

    def hits(self, group: str, resource: str, verb: str) -> bool:
        return (
            (self.groups is None or group in self.groups)
            and (self.resources is None or resource in self.resources)
            and (self.verbs is None or verb in self.verbs)
        )


def _set(*items: str) -> frozenset[str]:
    return frozenset(items)


WORKLOADS = _set(
    "pods",
    "deployments",
    "replicasets",
    "statefulsets",
    "daemonsets",
    "jobs",
    "cronjobs",
    "replicationcontrollers",
)
# From the Kubernetes RBAC good practices, "Kubernetes RBAC - privilege escalation risks".
NEVER_GRANT: tuple[Forbidden, ...] = (
    Forbidden(
        "it allows privilege escalation", None, None, _set("escalate", "bind", "impersonate", "approve")
    ),
    Forbidden(
        "listing or watching secrets reveals every secret's content",
        _set(""),
        _set("secrets"),
        _set("list", "watch"),
    ),
    Forbidden(
        "a workload can run as any ServiceAccount in its namespace",
        _set("", "apps", "batch"),
        WORKLOADS,
        WORKLOAD_WRITE_VERBS,
    ),
    Forbidden("it mints tokens for any ServiceAccount", _set(""), _set("serviceaccounts/token"), None),
    Forbidden(
        "it runs commands in or reaches into running pods",
        _set(""),
        _set("pods/exec", "pods/attach", "pods/portforward", "pods/ephemeralcontainers"),
        None,
    ),
    Forbidden("it reaches the kubelet API", _set(""), _set("nodes/proxy"), None),
    Forbidden(
        "writing RBAC objects grants anything",
        _set("rbac.authorization.k8s.io"),
        _set("roles", "rolebindings", "clusterroles", "clusterrolebindings"),
        WRITE_VERBS,
    ),
    Forbidden(
        "admission control guards the whole cluster",
        _set("admissionregistration.k8s.io"),
        _set(
            "validatingwebhookconfigurations",
            "mutatingwebhookconfigurations",
            "validatingadmissionpolicies",
            "validatingadmissionpolicybindings",
            "mutatingadmissionpolicies",
            "mutatingadmissionpolicybindings",
        ),
        WRITE_VERBS,
    ),
    Forbidden("namespace labels decide Pod Security admission", _set(""), _set("namespaces"), WRITE_VERBS),
    Forbidden(
        "approving certificate requests mints credentials",
        _set("certificates.k8s.io"),
        _set("certificatesigningrequests/approval", "signers"),
        None,
    ),
    Forbidden("persistent volumes can expose host paths", _set(""), _set("persistentvolumes"), WRITE_VERBS),
    Forbidden("grants must never govern grants", _set("taskgrant.dev"), None, None),
)
# A Role cannot grant these: they are cluster-scoped. Asking for them is a mistake, said plainly.
CLUSTER_SCOPED = frozenset(
    {
        ("", "nodes"),
        ("", "namespaces"),
        ("", "persistentvolumes"),
        ("", "componentstatuses"),
        ("rbac.authorization.k8s.io", "clusterroles"),
        ("rbac.authorization.k8s.io", "clusterrolebindings"),
        ("storage.k8s.io", "storageclasses"),
        ("apiextensions.k8s.io", "customresourcedefinitions"),
        ("certificates.k8s.io", "certificatesigningrequests"),
        ("scheduling.k8s.io", "priorityclasses"),
    }
)


def rule_path(entry: int, rule: int) -> str:
    return f"spec.access[{entry}].rules[{rule}]"


def never_grant_violations(spec: TaskGrantSpec) -> list[str]:
    """Every request that no policy can allow, each naming its rule."""
    problems = []
    for e, entry in enumerate(spec.access):
        for r, rule in enumerate(entry.rules):
            problems += [f"{rule_path(e, r)}: {problem}" for problem in _rule_violations(rule)]
    return problems


def _rule_violations(rule: PolicyRule) -> list[str]:
    problems = []
    for name, values in (
        ("apiGroups", rule.api_groups),
        ("resources", rule.resources),
        ("verbs", rule.verbs),
    ):
        if any(WILDCARD in value for value in values):
            problems.append(f"wildcard in {name} is never granted")
    for group in rule.api_groups:
        for resource in rule.resources:
            if (group, resource.split("/")[0]) in CLUSTER_SCOPED:
                problems.append(
                    f"{_show(group, resource)} is cluster-scoped; grants make namespaced Roles only"
                )
            for verb in rule.verbs:
                for forbidden in NEVER_GRANT:
                    if forbidden.hits(group, resource, verb):
                        problems.append(
                            f"'{verb}' on {_show(group, resource)} is never granted: {forbidden.why}"
                        )
    return list(dict.fromkeys(problems))


def _show(group: str, resource: str) -> str:
    return f"{resource}.{group}" if group else resource


def selector_matches(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    if any(labels.get(key) != value for key, value in selector.match_labels.items()):
        return False
    for requirement in selector.match_expressions:
        present = requirement.key in labels
        value = labels.get(requirement.key)
        match requirement.operator:
            case "In":
                ok = present and value in requirement.values
            case "NotIn":
                ok = not present or value not in requirement.values
            case "Exists":
                ok = present
            case "DoesNotExist":
                ok = not present
        if not ok:
            return False
    return True


def _within(requested: Iterable[str], allowed: Sequence[str]) -> list[str]:
    """The requested values that the allowed ones do not cover ("*" in a policy covers all)."""
    return [] if WILDCARD in allowed else [value for value in requested if value not in allowed]


def ceiling_gaps(rule: PolicyRule, ceiling: RuleCeiling) -> list[str]:
    """Why `ceiling` does not cover `rule`; empty when it does."""
    gaps = []
    for name, requested, allowed in (
        ("apiGroups", rule.api_groups, ceiling.api_groups),
        ("resources", rule.resources, ceiling.resources),
        ("verbs", rule.verbs, ceiling.verbs),
    ):
        missing = _within(requested, allowed)
        if missing:
            gaps.append(f"{name} {missing} not allowed")
    if ceiling.require_resource_names:
        if not rule.resource_names:
            gaps.append("resourceNames are required")
        elif ceiling.resource_names or ceiling.resource_name_prefixes:
            stray = [
                name
                for name in rule.resource_names
                if name not in ceiling.resource_names
                and not any(name.startswith(prefix) for prefix in ceiling.resource_name_prefixes)
            ]
            if stray:
                gaps.append(f"resourceNames {stray} not allowed")
    return gaps


@dataclass(frozen=True)
class Policy:
    name: str
    spec: TaskGrantPolicySpec


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    policy: str | None = None
    max_duration: datetime.timedelta | None = None
    reasons: list[str] = field(default_factory=list)
    approval: ApprovalPolicy | None = None  # the allowing policy's approval requirement
    check_requester: bool = False  # the allowing policy's requireRequesterPermissions

    @property
    def message(self) -> str:
        if self.allowed:
            return f"allowed by TaskGrantPolicy {self.policy}"
        return "; ".join(self.reasons)


def namespace_labels(name: str, known: Mapping[str, Mapping[str, str]]) -> Mapping[str, str]:
    """A namespace's labels; Kubernetes always sets kubernetes.io/metadata.name, even when unknown here."""
    return {**known.get(name, {}), NAMESPACE_NAME_LABEL: name}


def _policy_gaps(
    grant_namespace: str,
    spec: TaskGrantSpec,
    policy: TaskGrantPolicySpec,
    labels_of: Mapping[str, Mapping[str, str]],
) -> list[str]:
    gaps = []
    targets = policy.target_namespaces
    for e, entry in enumerate(spec.access):
        namespace = entry.namespace or grant_namespace
        allowed_namespace = namespace == grant_namespace or (
            targets is not None
            and (
                namespace in targets.names
                or (
                    targets.selector is not None
                    and selector_matches(targets.selector, namespace_labels(namespace, labels_of))
                )
            )
        )
        if not allowed_namespace:
            gaps.append(f"spec.access[{e}]: namespace {namespace} is not a target namespace")
        for r, rule in enumerate(entry.rules):
            misses = [ceiling_gaps(rule, ceiling) for ceiling in policy.rules]
            if all(misses):
                closest = min(misses, key=len)
                gaps.append(f"{rule_path(e, r)}: no policy rule covers it ({'; '.join(closest)})")
    if spec.job_template is not None:
        gaps += _token_gaps(spec, policy)
    if policy.max_duration is not None and spec.duration is not None and spec.duration > policy.max_duration:
        gaps.append(
            f"spec.duration {format_duration(spec.duration)} exceeds "
            f"maxDuration {format_duration(policy.max_duration)}"
        )
    return gaps


def _token_gaps(spec: TaskGrantSpec, policy: TaskGrantPolicySpec) -> list[str]:
    """An operator-run Job's token: explicit audiences must be listed; no audience is the API server's."""
    token = spec.effective_token
    gaps = [
        f"spec.token.audiences: {audience} is not an allowed audience"
        for audience in token.audiences
        if audience not in policy.allowed_audiences
    ]
    limit = policy.max_token_expiration_seconds
    if limit is not None and token.expiration_seconds > limit:
        gaps.append(
            f"spec.token.expirationSeconds {token.expiration_seconds} exceeds "
            f"maxTokenExpirationSeconds {limit}"
        )
    return gaps


def evaluate(
    grant_namespace: str,
    spec: TaskGrantSpec,
    policies: Iterable[Policy],
    labels_of: Mapping[str, Mapping[str, str]],
) -> Verdict:
    """Default deny: allowed only if one policy governing the grant's namespace covers all of it."""
    forbidden = never_grant_violations(spec)
    if forbidden:
        return Verdict(False, reasons=forbidden)
    governing = [
        p
        for p in sorted(policies, key=lambda p: p.name)
        if selector_matches(p.spec.namespace_selector, namespace_labels(grant_namespace, labels_of))
    ]
    if not governing:
        return Verdict(False, reasons=[f"no TaskGrantPolicy governs namespace {grant_namespace}"])
    reasons = []
    for policy in governing:
        gaps = _policy_gaps(grant_namespace, spec, policy.spec, labels_of)
        if not gaps:
            return Verdict(
                True,
                policy.name,
                policy.spec.max_duration,
                approval=policy.spec.approval,
                check_requester=policy.spec.require_requester_permissions,
            )
        reasons += [f"policy {policy.name}: {gap}" for gap in gaps]
    return Verdict(False, reasons=reasons)


def namespaces_to_label(grant_namespace: str, raw_spec: Mapping[str, Any]) -> set[str]:
    """The namespaces whose labels `admission_verdict` may need, read from a spec not yet validated."""
    entries = raw_spec.get("access")
    named = (
        {
            entry["namespace"]
            for entry in entries
            if isinstance(entry, Mapping) and isinstance(entry.get("namespace"), str)
        }
        if isinstance(entries, list)
        else set()
    )
    return {grant_namespace} | named


@dataclass(frozen=True)
class InvalidPolicy:
    """A TaskGrantPolicy that fails validation; it allows nothing."""

    name: str
    error: str


def parse_policies(bodies: Iterable[Mapping[str, Any]]) -> tuple[list[Policy], list[InvalidPolicy]]:
    """Parse TaskGrantPolicy objects, setting the invalid ones aside with their errors."""
    policies, invalid = [], []
    for body in bodies:
        name = body["metadata"]["name"]
        try:
            policies.append(Policy(name, parse_policy(body.get("spec") or {})))
        except ValidationError as error:
            invalid.append(InvalidPolicy(name, describe_validation_error(error)))
    return policies, invalid


@dataclass(frozen=True)
class Admission:
    """The decision on a new grant: allowed by a policy, or denied with InvalidSpec or PolicyDenied."""

    allowed: bool
    reason: Reason | None  # None when allowed
    message: str
    reasons: tuple[str, ...] = ()  # the problems that `message` joins, one each; empty when allowed
    spec: TaskGrantSpec | None = None  # None when the grant is invalid
    policy: str | None = None
    max_duration: datetime.timedelta | None = None
    approval: ApprovalPolicy | None = None
    check_requester: bool = False

    @property
    def needs_approval(self) -> bool:
        return self.approval is not None and self.approval.required


def admission_verdict(
    grant_namespace: str,
    grant_name: str,
    raw_spec: Mapping[str, Any],
    policies: Iterable[Policy],
    labels_of: Mapping[str, Mapping[str, str]],
) -> Admission:
    """Validate a grant as its CRD does, then `evaluate` it; `labels_of` maps namespace names to labels."""
    problems = []
    if len(grant_name) > MAX_GRANT_NAME_LENGTH:
        # The API server enforces this with a CEL rule; files given to `taskgrant check` may not.
        problems.append(
            f"metadata.name: must be at most {MAX_GRANT_NAME_LENGTH} characters "
            "(it is copied into label values)"
        )
    spec: TaskGrantSpec | None = None
    try:
        spec = parse_spec(raw_spec)
    except ValidationError as error:
        problems += describe_validation_error(error).split("; ")
    if spec is None or problems:
        return Admission(False, Reason.INVALID_SPEC, "; ".join(problems), tuple(problems))
    verdict = evaluate(grant_namespace, spec, policies, labels_of)
    if not verdict.allowed:
        return Admission(False, Reason.POLICY_DENIED, verdict.message, tuple(verdict.reasons), spec)
    return Admission(
        True,
        None,
        verdict.message,
        (),
        spec,
        verdict.policy,
        verdict.max_duration,
        verdict.approval,
        verdict.check_requester,
    )


MAX_ACCESS_REVIEWS = 256


def access_reviews(grant_namespace: str, spec: TaskGrantSpec) -> list[tuple[str, dict[str, str]]]:
    """One SubjectAccessReview's resourceAttributes per requested (namespace, group, resource, verb, name),
    each with the rule path it checks. Raises ValueError past MAX_ACCESS_REVIEWS."""
    reviews = []
    for e, entry in enumerate(spec.access):
        namespace = entry.namespace or grant_namespace
        for r, rule in enumerate(entry.rules):
            for group in rule.api_groups:
                for resource in rule.resources:
                    base, _, subresource = resource.partition("/")
                    for verb in rule.verbs:
                        for name in rule.resource_names or [""]:
                            attributes = {
                                "namespace": namespace,
                                "verb": verb,
                                "group": group,
                                "resource": base,
                            }
                            if subresource:
                                attributes["subresource"] = subresource
                            if name:
                                attributes["name"] = name
                            reviews.append((rule_path(e, r), attributes))
    if len(reviews) > MAX_ACCESS_REVIEWS:
        raise ValueError(f"{len(reviews)} permission checks exceed {MAX_ACCESS_REVIEWS}; ask for less")
    return reviews
