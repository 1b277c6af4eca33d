"""Random and hostile grant specs: every one ends with a clear verdict, none crashes the operator's code."""

from __future__ import annotations

import datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskgrant.domain import builders, lifecycle
from taskgrant.domain.models import GrantRef, Reason, TaskGrantStatus, parse_policy
from taskgrant.domain.policy import Policy, admission_verdict

ALLOW_ALL = [
    Policy(
        "all",
        parse_policy(
            {
                "namespaceSelector": {},
                "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
                "targetNamespaces": {"selector": {}},
            }
        ),
    )
]
FIELDS = [
    "job",
    "jobTemplate",
    "serviceAccountName",
    "access",
    "token",
    "context",
    "notBefore",
    "deadline",
    "duration",
    "reason",
    "namespace",
    "rules",
    "apiGroups",
    "resources",
    "resourceNames",
    "verbs",
    "name",
    "audiences",
    "expirationSeconds",
    "mountPath",
    "spec",
    "template",
    "containers",
]
ODD_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=80) | st.sampled_from(
    [
        "",
        " ",
        "*",
        "../..",
        "ci\x00",
        "\u202e",
        "é",
        "🔑",
        "a" * 63,
        "a" * 64,
        "a" * 253,
        "a" * 254,
        "secrets",
        "9999-12-31T23:59:59Z",
        "0001-01-01T00:00:00Z",
        "2026-12-01T02:00:00",
        "1h",
        "0s",
        "99999999999h",
    ]
)
SCALARS = ODD_TEXT | st.integers() | st.floats(allow_nan=True) | st.booleans() | st.none()
JSONISH = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=6)
        | st.dictionaries(st.sampled_from(FIELDS) | ODD_TEXT, children, max_size=6)
    ),
    max_leaves=40,
)
RULE = st.fixed_dictionaries(
    {
        "apiGroups": st.lists(st.sampled_from(["", "apps", "batch", "*"]) | ODD_TEXT, max_size=4),
        "resources": st.lists(
            st.sampled_from(["secrets", "pods/exec", "configmaps", "*"]) | ODD_TEXT, max_size=4
        ),
        "verbs": st.lists(st.sampled_from(["get", "list", "escalate", "*"]) | ODD_TEXT, max_size=4),
    },
    optional={"resourceNames": st.lists(ODD_TEXT, max_size=3)},
)
NEAR_VALID = st.fixed_dictionaries(
    {
        "job": st.fixed_dictionaries({"name": ODD_TEXT}),
        "access": st.lists(
            st.fixed_dictionaries({"rules": st.lists(RULE, max_size=3)}, optional={"namespace": ODD_TEXT}),
            max_size=3,
        ),
    },
    optional={
        "duration": ODD_TEXT,
        "deadline": ODD_TEXT,
        "notBefore": ODD_TEXT,
        "reason": ODD_TEXT,
        "serviceAccountName": ODD_TEXT,
        "context": st.dictionaries(ODD_TEXT, ODD_TEXT, max_size=3),
    },
)
NOW = datetime.datetime(2026, 12, 1, 2, 0, tzinfo=datetime.UTC)


def check(name: str, spec: Any) -> None:
    admission = admission_verdict(
        "ci", name, spec if isinstance(spec, dict) else {"spec": spec}, ALLOW_ALL, {}
    )
    assert admission.reason in (None, Reason.INVALID_SPEC, Reason.POLICY_DENIED)
    if not admission.allowed:
        assert admission.message and admission.reasons  # a clear status, naming what was wrong
        return
    # Allowed: every later step on it is total too, and the objects it yields fit Kubernetes' limits.
    assert admission.spec is not None
    grant = GrantRef(namespace="ci", name=name, uid="u", generation=1, created=NOW)
    for obj in (
        builders.build_service_account(grant, admission.spec),
        *builders.build_roles(grant, admission.spec),
    ):
        assert 0 < len(obj["metadata"]["name"]) <= 253
    for target in builders.role_targets(grant, admission.spec):
        assert len(target.name) <= 63
    for moment in (NOW, datetime.datetime(9999, 12, 31, tzinfo=datetime.UTC)):
        decision = lifecycle.decide(
            grant, admission.spec, TaskGrantStatus(), None, moment, datetime.timedelta(hours=1)
        )
        assert isinstance(decision, lifecycle.Wait | lifecycle.Revoke | lifecycle.Activate | lifecycle.Deny)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=ODD_TEXT, spec=JSONISH)
def test_arbitrary_input_gets_a_verdict(name: str, spec: Any) -> None:
    check(name, spec)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(["g", "a" * 63, "a" * 64]), spec=NEAR_VALID)
def test_nearly_valid_input_gets_a_verdict(name: str, spec: dict[str, Any]) -> None:
    check(name, spec)


def test_huge_lists_are_refused_by_their_bounds() -> None:
    spec = {
        "job": {"name": "g"},
        "access": [{"rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"] * 10_000}]}],
    }
    admission = admission_verdict("ci", "g", spec, ALLOW_ALL, {})
    assert admission.reason == Reason.INVALID_SPEC
    assert (
        admission.message
        == "spec.access[0].rules[0].verbs: List should have at most 16 items after validation, not 10000"
    )


def test_the_end_of_time_does_not_overflow() -> None:
    spec = {
        "job": {"name": "g"},
        "notBefore": "9999-12-31T23:59:59Z",
        "access": [{"rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]}],
    }
    admission = admission_verdict("ci", "g", spec, ALLOW_ALL, {})
    assert admission.allowed and admission.spec is not None
    grant = GrantRef(namespace="ci", name="g", uid="u", generation=1, created=NOW)
    decision = lifecycle.decide(
        grant, admission.spec, TaskGrantStatus(), None, NOW, datetime.timedelta(hours=1)
    )
    assert decision == lifecycle.Wait(Reason.WAITING_FOR_JOB, "waiting for Job g", lifecycle.FOREVER)
