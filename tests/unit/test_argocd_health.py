"""contrib/argocd/health.lua, run the way Argo CD runs a custom health check, on every testdata manifest.

Argo CD (util/lua/lua.go) runs the script in gopher-lua (Lua 5.1) with only the base, table and
package libraries (and a safe os subset) open: no string or math library. `obj` is the resource
converted to Lua tables (maps keyed by string, lists indexed from 1, numbers as Lua numbers), and the
table the script returns is read as {status, message}. The tests run it the same way, under lupa's
Lua 5.1, with the other libraries removed, so a script that works here works in Argo CD.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import lua51

ROOT = Path(__file__).parents[2]
ARGOCD = ROOT / "contrib" / "argocd"
SCRIPT = (ARGOCD / "health.lua").read_text()
GITOPS_DOC = ROOT / "docs" / "gitops.md"
HEALTH_KEY = "resource.customizations.health.taskgrant.dev_TaskGrant"
HEALTH_CODES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}
TESTS: list[dict[str, Any]] = yaml.safe_load((ARGOCD / "health_test.yaml").read_text())["tests"]


class JsonLikeLoader(yaml.SafeLoader):
    """YAML as the API server serves it: timestamps stay strings (PyYAML would make datetimes)."""


JsonLikeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_manifest(path: Path) -> dict[str, Any]:
    manifest = yaml.load(path.read_text(), Loader=JsonLikeLoader)  # a SafeLoader, less timestamps
    assert isinstance(manifest, dict)
    return manifest


def to_lua(runtime: Any, value: Any) -> Any:
    """Argo CD's decodeValue: maps and lists become tables (lists from index 1), numbers Lua numbers."""
    if isinstance(value, dict):
        table = runtime.table()
        for key, item in value.items():
            if item is not None:
                table[str(key)] = to_lua(runtime, item)
        return table
    if isinstance(value, list):
        table = runtime.table()
        for index, item in enumerate((item for item in value if item is not None), start=1):
            table[index] = to_lua(runtime, item)
        return table
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        return float(value)
    raise TypeError(f"not a JSON value: {value!r}")


def argo_health(obj: dict[str, Any], script: str = SCRIPT) -> dict[str, str]:
    runtime = lua51.LuaRuntime(register_eval=False, register_builtins=False)
    # Only what Argo CD opens for a custom health check: base, table and package. No string
    # library, so no string methods either ("x"):sub(...) would fail there too.
    runtime.execute(
        "debug.setmetatable('', nil)\n"
        "string, math, io, os, debug, coroutine = nil, nil, nil, nil, nil, nil\n"
        "package.loaded.string, package.loaded.math, package.loaded.io = nil, nil, nil\n"
        "package.loaded.os, package.loaded.debug, package.loaded.coroutine = nil, nil, nil\n"
    )
    runtime.globals().obj = to_lua(runtime, obj)
    result = runtime.execute(script)
    assert lua51.lua_type(result) == "table", f"the script returned {result!r}, not a table"
    health = {key: result[key] for key in ("status", "message")}
    assert set(dict(result.items())) <= {"status", "message"}, "Argo CD reads only status and message"
    assert health["status"] in HEALTH_CODES, health
    assert isinstance(health["message"], str), health
    return health


@pytest.mark.parametrize("case", TESTS, ids=[case["inputPath"] for case in TESTS])
def test_health_of_each_testdata_manifest(case: dict[str, Any]) -> None:
    obj = load_manifest(ARGOCD / case["inputPath"])
    assert argo_health(obj) == case["healthStatus"]


def test_every_testdata_manifest_has_an_expected_health() -> None:
    listed = sorted(case["inputPath"] for case in TESTS)
    present = sorted(f"testdata/{path.name}" for path in (ARGOCD / "testdata").glob("*.yaml"))
    assert listed == present
    for name in ("pending", "active", "revoked", "denied", "no-status", "generation-lag"):
        assert f"testdata/{name}.yaml" in listed


def test_testdata_is_taskgrants() -> None:
    for case in TESTS:
        obj = load_manifest(ARGOCD / case["inputPath"])
        assert (obj["apiVersion"], obj["kind"]) == ("taskgrant.dev/v1alpha1", "TaskGrant")


def test_script_uses_only_the_base_and_table_libraries() -> None:
    code = "\n".join(line.split("--", 1)[0] for line in SCRIPT.splitlines())
    assert not re.search(r"\b(string|math|os|io|debug|coroutine|require|load|loadstring|dofile)\b", code)
    assert not re.search(r"[\w)\]\"']:\w+\(", code), "no method calls: strings have no methods in Argo CD"


def with_status(source: str, **status: Any) -> dict[str, Any]:
    obj = copy.deepcopy(load_manifest(ARGOCD / "testdata" / source))
    obj["status"] = status
    return obj


def conditions(**states: bool) -> list[dict[str, Any]]:
    return [
        {"type": kind, "status": "True" if state else "False", "reason": "R", "message": f"{kind} message"}
        for kind, state in states.items()
    ]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({}, {"status": "Progressing", "message": "Waiting for the operator"}),
        (
            {"phase": "Revoked", "reason": "DeadlineExceeded"},
            {"status": "Healthy", "message": "Access revoked (DeadlineExceeded)"},
        ),
        (
            {"phase": "Denied", "reason": "InvalidSpec"},
            {"status": "Degraded", "message": "Denied (InvalidSpec)"},
        ),
        (
            {"phase": "Pending", "reason": "WaitingForJob"},
            {"status": "Progressing", "message": "Pending (WaitingForJob)"},
        ),
        ({"phase": "Active"}, {"status": "Healthy", "message": "Access active"}),
        # No phase this script knows: the conditions decide, as kstatus reads them.
        (
            {"conditions": conditions(Ready=False, Active=False, Reconciling=False, Stalled=True)},
            {"status": "Degraded", "message": "Stalled message"},
        ),
        (
            {"phase": "Paused", "conditions": conditions(Ready=False, Reconciling=True, Stalled=False)},
            {"status": "Progressing", "message": "Reconciling message"},
        ),
        (
            {"phase": "Archived", "conditions": conditions(Ready=True, Reconciling=False, Stalled=False)},
            {"status": "Healthy", "message": "Ready message"},
        ),
    ],
    ids=[
        "empty",
        "revoked-no-message",
        "denied-no-message",
        "pending-no-message",
        "active-no-message",
        "stalled-no-phase",
        "unknown-phase-reconciling",
        "unknown-phase-ready",
    ],
)
def test_fallbacks(status: dict[str, Any], expected: dict[str, str]) -> None:
    assert argo_health(with_status("no-status.yaml", **status)) == expected


@pytest.mark.parametrize("source", ["revoked.yaml", "denied.yaml"])
def test_final_phases_never_wait_for_the_operator(source: str) -> None:
    """Revoked and Denied are never reconciled again: a later generation must not look stuck."""
    obj = load_manifest(ARGOCD / "testdata" / source)
    expected = argo_health(obj)
    obj["metadata"]["generation"] = 5
    assert argo_health(obj) == expected


def test_generation_lag_is_read_from_status_without_conditions() -> None:
    obj = with_status("no-status.yaml", phase="Active", message="m", observedGeneration=1)
    obj["metadata"]["generation"] = 3
    assert argo_health(obj) == {
        "status": "Progressing",
        "message": "Waiting for the operator to observe generation 3 (observed 1)",
    }


def gitops_doc_health_scripts() -> list[str]:
    """The value of the health key in every YAML block of docs/gitops.md that sets it."""
    blocks = re.findall(r"^```ya?ml\n(.*?)^```", GITOPS_DOC.read_text(), re.S | re.M)
    found = []
    for block in blocks:
        for document in yaml.safe_load_all(block):
            if isinstance(document, dict) and HEALTH_KEY in (document.get("data") or {}):
                found.append(document["data"][HEALTH_KEY])
    return found


def test_docs_embed_the_script_verbatim() -> None:
    scripts = gitops_doc_health_scripts()
    assert scripts, f"docs/gitops.md has no argocd-cm block with {HEALTH_KEY}"
    for script in scripts:
        assert script == SCRIPT, "docs/gitops.md's health check differs from contrib/argocd/health.lua"
