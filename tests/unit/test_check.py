"""`taskgrant check`: the operator's admission verdict for manifests on disk, in-process and as a script."""

import datetime
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from taskgrant.cli.check import main
from taskgrant.domain.models import Reason, parse_spec
from taskgrant.domain.policy import InvalidPolicy, admission_verdict, parse_policies

EXAMPLES = Path(__file__).parents[2] / "deploy" / "examples"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.yaml"))
SCRIPT = Path(sys.executable).with_name("taskgrant")  # the installed console script

ALLOWED_LINES = [
    "agents/agent-case-1234: ALLOWED by policy agent-cases (maxDuration 5m)",
    "backup/backup-orders-20261201: ALLOWED by policy nightly-backup (maxDuration 2h)",
    "ci/release-42: ALLOWED by policy ci-signing (maxDuration 15m)",
    "migrations/orders-v1-to-v2: ALLOWED by policy orders-migration (maxDuration 1h)",
]
EXTRA_VERB = (
    "policy ci-signing: spec.access[0].rules[0]: no policy rule covers it (verbs ['update'] not allowed)"
)
PODS_EXEC = (
    "spec.access[0].rules[0]: 'create' on pods/exec is never granted: "
    "it runs commands in or reaches into running pods"
)
UNTARGETED = "policy orders-migration: spec.access[1]: namespace payments is not a target namespace"


def check(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main(["check", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def files(*paths: Path) -> list[str | Path]:
    return [part for path in paths for part in ("-f", path)]


def write(path: Path, *documents: Any) -> Path:
    path.write_text(yaml.safe_dump_all(documents))
    return path


def grant(name: str, namespace: str | None, **spec: Any) -> dict[str, Any]:
    meta = {"name": name} | ({"namespace": namespace} if namespace else {})
    body = {
        "job": {"name": name},
        "access": [{"rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]}],
    }
    return {
        "apiVersion": "taskgrant.dev/v1alpha1",
        "kind": "TaskGrant",
        "metadata": meta,
        "spec": body | spec,
    }


def policy(name: str, selector: dict[str, Any], **spec: Any) -> dict[str, Any]:
    body = {
        "namespaceSelector": selector,
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}],
    }
    return {
        "apiVersion": "taskgrant.dev/v1alpha1",
        "kind": "TaskGrantPolicy",
        "metadata": {"name": name},
        "spec": body | spec,
    }


def namespace(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def test_every_example_grant_is_allowed(capsys: pytest.CaptureFixture[str]) -> None:
    assert [path.name for path in EXAMPLE_FILES] == [
        "agent-case.yaml",
        "backup-window.yaml",
        "ci-signing.yaml",
        "migration.yaml",
    ]
    code, out, err = check(capsys, *files(*EXAMPLE_FILES))
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        *ALLOWED_LINES,
        "4 grants: 4 allowed, 0 denied (4 policies, 0 namespaces read; 4 other documents ignored)",
    ]


def test_a_directory_is_read_recursively_and_denials_name_the_rule(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = check(capsys, "-f", EXAMPLES)
    assert (code, err) == (1, "")
    # Files in path order: deploy/examples/{agent-case,backup-window,ci-signing}, denied/*, migration.
    assert out.splitlines() == [
        ALLOWED_LINES[0],
        ALLOWED_LINES[1],
        ALLOWED_LINES[2],
        "ci/release-43: DENIED (PolicyDenied)",
        f"  {EXTRA_VERB}",
        "agents/agent-case-1235: DENIED (PolicyDenied)",
        f"  {PODS_EXEC}",
        "migrations/orders-to-payments: DENIED (PolicyDenied)",
        f"  {UNTARGETED}",
        ALLOWED_LINES[3],
        "7 grants: 4 allowed, 3 denied (4 policies, 0 namespaces read; 4 other documents ignored)",
    ]


def test_stdin_with_a_directory(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO((EXAMPLES / "ci-signing.yaml").read_text()))
    code, out, err = check(capsys, "-f", EXAMPLES / "denied", "-f", "-")
    assert (code, err) == (1, "")
    assert out.splitlines() == [
        "ci/release-43: DENIED (PolicyDenied)",
        f"  {EXTRA_VERB}",
        "agents/agent-case-1235: DENIED (PolicyDenied)",
        f"  {PODS_EXEC}",
        "migrations/orders-to-payments: DENIED (PolicyDenied)",
        "  no TaskGrantPolicy governs namespace migrations",
        "ci/release-42: ALLOWED by policy ci-signing (maxDuration 15m)",
        "4 grants: 1 allowed, 3 denied (1 policy, 0 namespaces read; 1 other document ignored)",
    ]


def test_json_output(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = check(capsys, "-f", EXAMPLES, "-o", "json")
    assert (code, err) == (1, "")
    report = json.loads(out)
    assert (report["allowed"], report["denied"], report["ignoredDocuments"]) == (4, 3, 4)
    assert report["invalidPolicies"] == []
    grants = {(g["namespace"], g["name"]): g for g in report["grants"]}
    assert list(grants)[:4] == [
        ("agents", "agent-case-1234"),
        ("backup", "backup-orders-20261201"),
        ("ci", "release-42"),
        ("ci", "release-43"),
    ]
    assert grants["ci", "release-42"] == {
        "namespace": "ci",
        "name": "release-42",
        "allowed": True,
        "reason": None,
        "message": "allowed by TaskGrantPolicy ci-signing",
        "policy": "ci-signing",
        "maxDuration": "15m",
        "reasons": [],
    }
    assert grants["ci", "release-43"] == {
        "namespace": "ci",
        "name": "release-43",
        "allowed": False,
        "reason": "PolicyDenied",
        "message": EXTRA_VERB,
        "policy": None,
        "maxDuration": None,
        "reasons": [EXTRA_VERB],
    }
    assert grants["agents", "agent-case-1235"]["reasons"] == [PODS_EXEC]
    assert grants["migrations", "orders-to-payments"]["reasons"] == [UNTARGETED]


def test_invalid_spec_names_each_field(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rules = [{"apiGroups": [""], "resources": ["configmaps"], "verbs": []}]
    path = write(
        tmp_path / "bad.yaml",
        policy("all", {}),
        grant("bad", "ci", access=[{"rules": rules}], colour="blue"),
        grant("n" * 64, "ci", job={"name": "short"}),
    )
    code, out, err = check(capsys, "-f", path)
    assert (code, err) == (1, "")
    assert out.splitlines() == [
        "ci/bad: DENIED (InvalidSpec)",
        "  spec.access[0].rules[0].verbs: List should have at least 1 item after validation, not 0",
        "  spec.colour: Extra inputs are not permitted",
        f"ci/{'n' * 64}: DENIED (InvalidSpec)",
        "  metadata.name: must be at most 63 characters (it is copied into label values)",
        "2 grants: 0 allowed, 2 denied (1 policy, 0 namespaces read; 0 other documents ignored)",
    ]


def test_without_a_governing_policy_the_grant_is_denied(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = write(tmp_path / "g.yaml", grant("nightly-1", "nightly"))
    code, out, _ = check(capsys, *files(path, EXAMPLES / "ci-signing.yaml"))
    assert code == 1
    assert out.splitlines()[:2] == [
        "nightly/nightly-1: DENIED (PolicyDenied)",
        "  no TaskGrantPolicy governs namespace nightly",
    ]


def test_an_invalid_policy_is_reported_and_allows_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    loose = [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"], "resourceNames": ["x"]}]
    path = write(tmp_path / "p.yaml", policy("broken", {}, rules=loose), grant("g", "ci"))
    error = (
        "spec.rules[0]: Value error, resourceNames and resourceNamePrefixes need requireResourceNames: true"
    )
    code, out, err = check(capsys, "-f", path, "-o", "json")
    assert code == 1
    assert err == f"warning: ignoring invalid TaskGrantPolicy broken: {error}\n"
    report = json.loads(out)
    assert report["invalidPolicies"] == [{"name": "broken", "error": error}]
    assert report["grants"][0]["reasons"] == ["no TaskGrantPolicy governs namespace ci"]


def test_namespace_manifests_feed_the_selectors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    team = {"matchLabels": {"team": "payments"}}
    access = [
        {"namespace": "ledger", "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]}
    ]
    policies = write(tmp_path / "policy.yaml", policy("payments", team, targetNamespaces={"selector": team}))
    grants = write(tmp_path / "grant.yaml", grant("pay-1", "pay", access=access))
    namespaces = write(tmp_path / "namespaces.yaml", namespace("pay", team="payments"), namespace("ledger"))
    code, out, _ = check(capsys, *files(policies, grants, namespaces))
    assert code == 1
    assert out.splitlines() == [
        "pay/pay-1: DENIED (PolicyDenied)",
        "  policy payments: spec.access[0]: namespace ledger is not a target namespace",
        "1 grant: 0 allowed, 1 denied (1 policy, 2 namespaces read; 0 other documents ignored)",
    ]
    write(namespaces, namespace("pay", team="payments"), namespace("ledger", team="payments"))
    code, out, _ = check(capsys, *files(policies, grants, namespaces))
    assert code == 0
    assert out.splitlines()[0] == "pay/pay-1: ALLOWED by policy payments"
    code, out, _ = check(capsys, *files(policies, grants))
    assert code == 1
    assert out.splitlines()[1] == "  no TaskGrantPolicy governs namespace pay"


def test_lists_json_files_and_the_default_namespace(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    listed = {"apiVersion": "v1", "kind": "List", "items": [grant("a", None), {"kind": "ConfigMap"}, "junk"]}
    (tmp_path / "grants.json").write_text(json.dumps(listed, indent="\t"))  # tabs: JSON, not YAML
    write(tmp_path / "policy.yml", policy("all", {}))
    (tmp_path / "README.md").write_text("not a manifest")
    code, out, err = check(capsys, "-f", tmp_path, "--namespace", "ci")
    assert code == 0
    assert err == f"warning: {tmp_path / 'grants.json'} document 1: not a Kubernetes object; ignored\n"
    assert out.splitlines() == [
        "ci/a: ALLOWED by policy all",
        "1 grant: 1 allowed, 0 denied (1 policy, 0 namespaces read; 2 other documents ignored)",
    ]
    code, out, _ = check(capsys, "-f", tmp_path)
    assert (code, out.splitlines()[0]) == (0, "default/a: ALLOWED by policy all")


def test_unreadable_input_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    assert check(capsys, "-f", missing) == (2, "", f"error: {missing}: No such file or directory\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: TaskGrant\nspec: {job: [\n")
    assert check(capsys, "-f", broken) == (
        2,
        "",
        f"error: {broken}: line 3, column 1: YAML syntax error: "
        "expected the node content, but found '<stream end>'\n",
    )
    assert check(capsys, "-f", EXAMPLES / "migration.yaml", "-o", "yaml")[0] == 2
    code, out, err = check(capsys)
    assert (code, out) == (2, "")
    assert err.endswith("error: the following arguments are required: -f/--filename\n")


def test_no_grant_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = write(tmp_path / "policy.yaml", policy("all", {}))
    assert check(capsys, "-f", path) == (
        2,
        "",
        f"error: no TaskGrant (taskgrant.dev/v1alpha1) found in {path}\n",
    )


def run_script(*args: str | Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SCRIPT, "check", *map(str, args)], input=stdin, capture_output=True, text=True, check=False
    )


def test_script_allows_the_examples() -> None:
    done = run_script(*files(*EXAMPLE_FILES))
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines()[:-1] == ALLOWED_LINES


def test_script_denies_from_stdin_and_reports_json() -> None:
    manifests = (
        (EXAMPLES / "agent-case.yaml").read_text()
        + "---\n"
        + (EXAMPLES / "denied" / "pods-exec.yaml").read_text()
    )
    done = run_script("-f", "-", "-o", "json", stdin=manifests)
    assert (done.returncode, done.stderr) == (1, "")
    report = json.loads(done.stdout)
    assert [(g["name"], g["allowed"], g["reasons"]) for g in report["grants"]] == [
        ("agent-case-1234", True, []),
        ("agent-case-1235", False, [PODS_EXEC]),
    ]


def test_script_exits_2_on_a_missing_file(tmp_path: Path) -> None:
    done = run_script("-f", tmp_path / "nope.yaml")
    assert (done.returncode, done.stdout, done.stderr) == (
        2,
        "",
        f"error: {tmp_path / 'nope.yaml'}: No such file or directory\n",
    )


# The shared admission function, as the operator calls it.


def test_admission_verdict_allows_with_the_policy_and_its_ceiling() -> None:
    policies, invalid = parse_policies([policy("all", {}, maxDuration="10m")])
    admission = admission_verdict("ci", "g", grant("g", "ci")["spec"], policies, {})
    assert (invalid, admission.allowed, admission.reason, admission.policy) == ([], True, None, "all")
    assert admission.max_duration == datetime.timedelta(minutes=10)
    assert admission.spec == parse_spec(grant("g", "ci")["spec"])
    assert admission.message == "allowed by TaskGrantPolicy all"


def test_admission_verdict_denies_an_invalid_grant_before_any_policy() -> None:
    spec = grant("g", "ci", duration="0s")["spec"]
    admission = admission_verdict("ci", "g" * 64, spec, [], {})
    assert (admission.allowed, admission.reason, admission.spec) == (False, Reason.INVALID_SPEC, None)
    assert admission.reasons == (
        "metadata.name: must be at most 63 characters (it is copied into label values)",
        "spec: Value error, duration must be longer than 0s",
    )
    assert admission.message == "; ".join(admission.reasons)


def test_parse_policies_sets_invalid_ones_aside() -> None:
    policies, invalid = parse_policies([policy("ok", {}), policy("bad", {}, maxDuration="soon")])
    assert [p.name for p in policies] == ["ok"]
    assert invalid == [
        InvalidPolicy(
            "bad", "spec.maxDuration: Value error, 'soon' is not a duration such as 90s, 15m or 1h30m"
        )
    ]
