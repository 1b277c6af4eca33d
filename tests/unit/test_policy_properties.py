"""Property-based tests: whatever `evaluate` allows is never broader than the policy that allows it.

The oracle below is written from the CRD's description of TaskGrantPolicy, with plain loops and sets over
the raw dicts; it calls nothing in taskgrant.policy.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from taskgrant.domain.models import LabelSelector, PolicyRule, RuleCeiling, parse_policy, parse_spec
from taskgrant.domain.policy import (
    Policy,
    Verdict,
    ceiling_gaps,
    evaluate,
    never_grant_violations,
    selector_matches,
)

GROUPS = ["", "apps", "batch", "taskgrant.dev"]
RESOURCES = ["configmaps", "secrets", "pods", "pods/log", "deployments", "services"]
VERBS = ["get", "list", "watch", "update", "patch", "create", "delete"]
NAMES = ["app-a", "app-b", "db-1", "cfg", "my-app-1"]
PREFIXES = ["app-", "db-"]
NAMESPACES = ["ci", "dev", "prod", "tools"]
LABEL_KEYS = ["team", "env"]
LABEL_VALUES = ["a", "b"]
NAME_LABEL = "kubernetes.io/metadata.name"
GRANT_MINUTES = [10, 30, 60, 90, 120]
POLICY_MINUTES = [30, 60, 90]
POLICY_NAMES = ["alpha", "bravo", "charlie", "delta"]

Rule = dict[str, Any]
Labels = dict[str, dict[str, str]]

# --- the oracle ---------------------------------------------------------------------------------------------


def oracle_forbidden(rule: Mapping[str, Any]) -> bool:
    """My reading of the never-grant list, complete for the alphabet drawn here."""
    for group in rule["apiGroups"]:
        for resource in rule["resources"]:
            for verb in rule["verbs"]:
                if "*" in (group, resource, verb):
                    return True
                if group == "taskgrant.dev":
                    return True
                if group == "" and resource == "secrets" and verb in {"list", "watch"}:
                    return True
                if (
                    group in {"", "apps", "batch"}
                    and resource in {"pods", "deployments"}
                    and verb in {"create", "update", "patch"}
                ):
                    return True
    return False


def oracle_labels(namespace: str, labels_of: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    return {**labels_of.get(namespace, {}), NAME_LABEL: namespace}


def oracle_selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    for key, value in selector.get("matchLabels", {}).items():
        if key not in labels or labels[key] != value:
            return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        if operator == "In" and not (key in labels and labels[key] in values):
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def oracle_rule_covered(rule: Mapping[str, Any], ceiling: Mapping[str, Any]) -> bool:
    for field in ("apiGroups", "resources", "verbs"):
        if "*" not in ceiling[field] and not set(rule[field]) <= set(ceiling[field]):
            return False
    if ceiling.get("requireResourceNames", False):
        names = rule.get("resourceNames", [])
        if not names:
            return False
        listed = ceiling.get("resourceNames", [])
        prefixes = ceiling.get("resourceNamePrefixes", [])
        if listed or prefixes:
            for name in names:
                if name not in listed and not any(name[: len(p)] == p for p in prefixes):
                    return False
    return True


def oracle_covers(
    grant_namespace: str, grant: Mapping[str, Any], spec: Mapping[str, Any], labels_of: Labels
) -> bool:
    targets = spec.get("targetNamespaces")
    for entry in grant["access"]:
        namespace = entry.get("namespace", grant_namespace)
        if namespace != grant_namespace:
            if targets is None:
                return False
            by_name = namespace in targets.get("names", [])
            by_selector = "selector" in targets and oracle_selects(
                targets["selector"], oracle_labels(namespace, labels_of)
            )
            if not (by_name or by_selector):
                return False
        for rule in entry["rules"]:
            if not any(oracle_rule_covered(rule, ceiling) for ceiling in spec["rules"]):
                return False
    limit = spec.get("maxDuration")
    asked = grant.get("duration")
    return limit is None or asked is None or int(asked[:-1]) <= int(limit[:-1])


def oracle_allowing(
    grant_namespace: str,
    grant: Mapping[str, Any],
    policies: Mapping[str, Mapping[str, Any]],
    labels_of: Labels,
) -> str | None:
    """The policy that allows the grant (first by name), or None."""
    if any(oracle_forbidden(rule) for entry in grant["access"] for rule in entry["rules"]):
        return None
    for name in sorted(policies):
        spec = policies[name]
        governs = oracle_selects(spec["namespaceSelector"], oracle_labels(grant_namespace, labels_of))
        if governs and oracle_covers(grant_namespace, grant, spec, labels_of):
            return name
    return None


# --- strategies ---------------------------------------------------------------------------------------------


def subset(items: list[str], min_size: int = 1, max_size: int = 2) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(items), min_size=min_size, max_size=max_size, unique=True)


# Built once: building strategies inside every draw costs more than drawing from them.
FIELDS = ("apiGroups", "resources", "verbs")
TAME = {
    "apiGroups": subset(["", "apps", "batch"]),
    "resources": subset(RESOURCES),
    "verbs": subset(VERBS, 1, 3),
}
WILD = {
    "apiGroups": subset([*GROUPS, "*"]),
    "resources": subset([*RESOURCES, "*"]),
    "verbs": subset([*VERBS, "*"], 1, 3),
}
CEILING = {
    "apiGroups": subset([*GROUPS, "*"], 1, 3),
    "resources": subset([*RESOURCES, "*"], 1, 3),
    "verbs": subset([*VERBS, "*"], 1, 3),
}
EXTRA = {field: st.lists(strategy.map(lambda v: v[0]), max_size=1) for field, strategy in CEILING.items()}
SOME_NAMES = subset(NAMES, 0)
SOME_PREFIXES = subset(PREFIXES, 0, 1)
SOME_NAMESPACES = subset(NAMESPACES, 0, 3)
BOOLS = st.booleans()
ONE_IN = {n: st.integers(0, n - 1) for n in (2, 4, 10)}
SHORT = st.sampled_from([*[None] * 9, "apiGroups", "resources", "verbs"])
INDEX = st.integers(0, 7)
GRANT_NAMESPACES = st.sampled_from(NAMESPACES)
ENTRY_NAMESPACES = st.sampled_from([None, None, None, *NAMESPACES])
ENTRIES = st.integers(1, 2)
RULES = st.integers(1, 2)
POLICY_COUNTS = st.sampled_from([0, 1, 1, 2, 2, 3, 3])
POLICY_ORDERS = st.permutations(POLICY_NAMES)
GRANT_DURATIONS = st.sampled_from([None, *GRANT_MINUTES])
POLICY_DURATIONS = st.sampled_from([None, None, *POLICY_MINUTES])
LABELS_OF = st.dictionaries(
    st.sampled_from(NAMESPACES), st.dictionaries(st.sampled_from(LABEL_KEYS), st.sampled_from(LABEL_VALUES))
)


def _selectors() -> st.SearchStrategy[dict[str, Any]]:
    keys = [*LABEL_KEYS, NAME_LABEL]
    values = LABEL_VALUES + NAMESPACES
    expression = st.one_of(
        st.fixed_dictionaries(
            {
                "key": st.sampled_from(keys),
                "operator": st.sampled_from(["In", "NotIn"]),
                "values": subset(values, max_size=3),
            }
        ),
        st.fixed_dictionaries(
            {"key": st.sampled_from(keys), "operator": st.sampled_from(["Exists", "DoesNotExist"])}
        ),
    )
    return st.one_of(
        st.just({}),
        st.fixed_dictionaries(
            {},
            optional={
                "matchLabels": st.dictionaries(st.sampled_from(keys), st.sampled_from(values), max_size=1),
                "matchExpressions": st.lists(expression, min_size=1, max_size=2),
            },
        ),
    )


SELECTORS = _selectors()


def draw_requested_rule(draw: st.DrawFn, wild_one_in: int = 10) -> Rule:
    """Mostly rules the never-grant list allows; one in ten anything from the alphabet, "*" included."""
    wild = draw(ONE_IN[wild_one_in]) == 0
    rule: Rule = {field: draw((WILD if wild else TAME)[field]) for field in FIELDS}
    if not wild:  # keep only verbs the never-grant list allows on every drawn group and resource
        allowed = [v for v in rule["verbs"] if not oracle_forbidden({**rule, "verbs": [v]})]
        rule["verbs"] = allowed or ["get"]
    names = draw(SOME_NAMES)
    if names:
        rule["resourceNames"] = names
    return rule


def draw_name_limits(draw: st.DrawFn, like: Rule | None = None) -> Rule:
    names = draw(SOME_NAMES)
    if like is not None and draw(BOOLS):
        names = list(dict.fromkeys(names + like.get("resourceNames", [])))
    prefixes = draw(SOME_PREFIXES)
    limits: Rule = {"requireResourceNames": True}
    if names:
        limits["resourceNames"] = names
    if prefixes:
        limits["resourceNamePrefixes"] = prefixes
    return limits


def draw_ceiling(draw: st.DrawFn) -> Rule:
    ceiling: Rule = {field: draw(CEILING[field]) for field in FIELDS}
    if draw(BOOLS):
        ceiling.update(draw_name_limits(draw))
    return ceiling


def draw_ceiling_like(draw: st.DrawFn, like: Rule) -> Rule:
    """A ceiling grown from a requested rule, so that coverage is common; now and then one value short."""
    ceiling: Rule = {field: list(dict.fromkeys(like[field] + draw(EXTRA[field]))) for field in FIELDS}
    short = draw(SHORT)
    if short is not None and len(ceiling[short]) > 1:
        del ceiling[short][draw(INDEX) % len(ceiling[short])]
    if draw(ONE_IN[4]) == 0:
        ceiling.update(draw_name_limits(draw, like))
    return ceiling


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[str, dict[str, Any], dict[str, dict[str, Any]], Labels]:
    grant_namespace = draw(GRANT_NAMESPACES)
    access = []
    for _ in range(draw(ENTRIES)):
        entry: dict[str, Any] = {"rules": [draw_requested_rule(draw) for _ in range(draw(RULES))]}
        namespace = draw(ENTRY_NAMESPACES)
        if namespace is not None:
            entry["namespace"] = namespace
        access.append(entry)
    grant: dict[str, Any] = {"job": {"name": "job"}, "access": access}
    minutes = draw(GRANT_DURATIONS)
    if minutes is not None:
        grant["duration"] = f"{minutes}m"
    requested = [rule for entry in access for rule in entry["rules"]]

    policies: dict[str, dict[str, Any]] = {}
    for name in draw(POLICY_ORDERS)[: draw(POLICY_COUNTS)]:
        rules = [draw_ceiling_like(draw, like) for like in requested if draw(ONE_IN[10])]
        if not rules or draw(ONE_IN[2]) == 0:
            rules.append(draw_ceiling(draw))
        spec: dict[str, Any] = {"namespaceSelector": draw(SELECTORS), "rules": rules}
        if draw(BOOLS):
            targets: dict[str, Any] = {}
            target_names = draw(SOME_NAMESPACES)
            if target_names:
                targets["names"] = target_names
            if draw(BOOLS):
                targets["selector"] = draw(SELECTORS)
            spec["targetNamespaces"] = targets
        limit = draw(POLICY_DURATIONS)
        if limit is not None:
            spec["maxDuration"] = f"{limit}m"
        policies[name] = spec
    return grant_namespace, grant, policies, draw(LABELS_OF)


# Half of them anything from the alphabet, for the never-grant property.
REQUESTED_RULES = st.composite(lambda draw: draw_requested_rule(draw, wild_one_in=2))()
CEILINGS = st.composite(draw_ceiling)()
CEILINGS_LIKE = REQUESTED_RULES.flatmap(
    lambda like: st.tuples(st.just(like), st.composite(lambda draw: draw_ceiling_like(draw, like))())
)


Scenario = tuple[str, dict[str, Any], dict[str, dict[str, Any]], Labels]


def run(scenario: Scenario) -> tuple[Verdict, str | None]:
    grant_namespace, grant, policies, labels_of = scenario
    parsed = [Policy(name, parse_policy(spec)) for name, spec in policies.items()]
    verdict = evaluate(grant_namespace, parse_spec(grant), parsed, labels_of)
    expected = oracle_allowing(grant_namespace, grant, policies, labels_of)
    event("allowed" if verdict.allowed else "denied")
    return verdict, expected


# --- properties ---------------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_what_evaluate_allows_is_covered_by_the_policy(scenario: Scenario) -> None:
    """(a) Never broader than the policy, and never anything on the never-grant list."""
    grant_namespace, grant, policies, labels_of = scenario
    verdict, _ = run(scenario)
    if not verdict.allowed:
        return
    assert verdict.policy is not None
    spec = policies[verdict.policy]
    assert oracle_selects(spec["namespaceSelector"], oracle_labels(grant_namespace, labels_of))
    assert oracle_covers(grant_namespace, grant, spec, labels_of)
    assert not any(oracle_forbidden(rule) for entry in grant["access"] for rule in entry["rules"])
    limit = spec.get("maxDuration")
    seconds = None if verdict.max_duration is None else verdict.max_duration.total_seconds()
    assert seconds == (None if limit is None else 60 * int(limit[:-1]))


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_what_the_oracle_allows_evaluate_allows(scenario: Scenario) -> None:
    """(b) Not stricter than specified either: the same verdict, by the same (first by name) policy."""
    verdict, expected = run(scenario)
    assert verdict.allowed == (expected is not None), verdict.message
    assert verdict.policy == expected


@settings(max_examples=300, deadline=None)
@given(scenarios(), st.randoms(use_true_random=False))
def test_evaluate_is_deterministic_and_ignores_policy_order(scenario: Scenario, rnd: random.Random) -> None:
    """(c) The same verdict, reasons included, however often and in whatever order the policies come."""
    grant_namespace, grant, policies, labels_of = scenario
    spec = parse_spec(grant)
    parsed = [Policy(name, parse_policy(body)) for name, body in policies.items()]
    first = evaluate(grant_namespace, spec, parsed, labels_of)
    assert evaluate(grant_namespace, spec, parsed, labels_of) == first
    shuffled = parsed[:]
    rnd.shuffle(shuffled)
    assert evaluate(grant_namespace, spec, iter(shuffled), labels_of) == first
    assert evaluate(grant_namespace, spec, reversed(parsed), labels_of) == first


@settings(max_examples=300, deadline=None)
@given(st.lists(REQUESTED_RULES, min_size=1, max_size=4))
def test_never_grant_violations_match_my_reading_of_the_list(rules: list[Rule]) -> None:
    spec = parse_spec({"job": {"name": "job"}, "access": [{"rules": rules}]})
    problems = never_grant_violations(spec)
    for index, rule in enumerate(rules):
        mine = oracle_forbidden(rule)
        theirs = [p for p in problems if p.startswith(f"spec.access[0].rules[{index}]: ")]
        assert bool(theirs) == mine, (rule, theirs)
    assert all("never granted" in problem for problem in problems)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.tuples(REQUESTED_RULES, CEILINGS), CEILINGS_LIKE))
def test_ceiling_gaps_agree_with_the_oracle(pair: tuple[Rule, Rule]) -> None:
    rule, ceiling = pair
    gaps = ceiling_gaps(PolicyRule.model_validate(rule), RuleCeiling.model_validate(ceiling))
    assert (gaps == []) == oracle_rule_covered(rule, ceiling), gaps


@settings(max_examples=300, deadline=None)
@given(SELECTORS, GRANT_NAMESPACES, LABELS_OF)
def test_selector_matches_agrees_with_the_oracle(
    selector: dict[str, Any], namespace: str, labels_of: Labels
) -> None:
    labels = oracle_labels(namespace, labels_of)
    assert selector_matches(LabelSelector.model_validate(selector), labels) == oracle_selects(
        selector, labels
    )
