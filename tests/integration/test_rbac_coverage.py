"""The chart's RBAC is sufficient and minimal for what the operator really does.

Every API call that an operator process made during the integration tests (recorded by the
emulator) must be allowed by the chart's rules, and every chart rule must be used by some call.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest
import yaml

from .harness import OPERATOR_CALLS, ROOT

CHART = ROOT / "charts" / "taskgrant-operator"
pytestmark = pytest.mark.after_integration


def operator_rules() -> list[dict[str, Any]]:
    """The rules of the chart's (default values) ClusterRoles bound to the operator's ServiceAccount."""
    helm = shutil.which("helm")
    if helm is None:
        pytest.skip("helm is not on PATH: run `make test`, which installs it (scripts/install-helm.py)")
    rendered = subprocess.run(
        [helm, "template", "taskgrant", str(CHART), "--namespace", "taskgrant-system"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    docs = [doc for doc in yaml.safe_load_all(rendered) if doc]
    account = next(doc for doc in docs if doc["kind"] == "ServiceAccount")["metadata"]["name"]
    bound = {
        doc["roleRef"]["name"]
        for doc in docs
        if doc["kind"] == "ClusterRoleBinding"
        and any(s.get("name") == account for s in doc.get("subjects") or [])
    }
    roles = [doc for doc in docs if doc["kind"] == "ClusterRole" and doc["metadata"]["name"] in bound]
    # The aggregated "grantable" role holds what grants may give, not what the operator calls.
    return [rule for role in roles if "aggregationRule" not in role for rule in role.get("rules") or []]


def allows(rule: dict[str, Any], verb: str, group: str, resource: str) -> bool:
    return group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]


def test_every_call_is_allowed_and_every_rule_is_used() -> None:
    if not OPERATOR_CALLS:
        pytest.skip("no operator API calls were recorded: run this with tests/integration")
    rules = operator_rules()
    denied = sorted(call for call in OPERATOR_CALLS if not any(allows(rule, *call) for rule in rules))
    assert denied == [], f"the operator made calls its chart RBAC does not allow: {denied}"
    granted = {
        (verb, group, resource)
        for rule in rules
        for verb in rule["verbs"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert sorted(granted - OPERATOR_CALLS) == [], "chart rules that no call of the operator uses"
