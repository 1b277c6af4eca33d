"""`kubectl taskgrant`: the installed `kubectl-taskgrant` command against the emulated API."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from taskgrant.cli import plugin
from taskgrant.domain import constants
from taskgrant.domain.manifests import grant_manifest
from taskgrant.emulator import EmulatedCluster, Fault

from .harness import CORE, GRANTS, RBAC, Api, OperatorProcess, wait_for, wait_for_phase

NS = "ci"
PLUGIN = Path(sys.executable).parent / "kubectl-taskgrant"
COMMANDS = ("list", "describe", "approve", "deny", "revoke", "audit")
APPROVALS = f"{GRANTS}/namespaces/{NS}/taskgrantapprovals"
pytestmark = pytest.mark.usefixtures("permissive_policy")


class Plugin:
    """Runs the installed executable as kubectl would: its own process, a kubeconfig, no KUBECONFIG."""

    def __init__(self, kubeconfig: Path, token: str) -> None:
        self.kubeconfig = kubeconfig
        self.token = token

    def __call__(self, *args: str, kubeconfig: bool = True) -> subprocess.CompletedProcess[str]:
        env = {key: value for key, value in os.environ.items() if key != "KUBECONFIG"}
        command = [str(PLUGIN), *(["--kubeconfig", str(self.kubeconfig)] if kubeconfig else []), *args]
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
        assert "Traceback" not in result.stderr, result.stderr
        assert self.token not in result.stdout + result.stderr, "the plugin printed a credential"
        return result


@pytest.fixture
def kubectl(cluster: EmulatedCluster, tmp_path: Path) -> Plugin:
    return Plugin(cluster.write_kubeconfig(tmp_path / "kubeconfig", namespace=NS), cluster.token)


def active_grant(api: Api, name: str, **spec: Any) -> dict[str, Any]:
    api.create_job(NS, name)
    api.create_grant(NS, name, **spec)
    return wait_for_phase(api, NS, name, "Active")


def rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line.strip()]


def approvals(api: Api) -> dict[str, dict[str, Any]]:
    return {item["metadata"]["name"]: item for item in api.items(APPROVALS)}


def test_list_prints_grants_as_kubectl_get_wide_does(
    api: Api, operator: OperatorProcess, kubectl: Plugin
) -> None:
    grant = active_grant(api, "release-42")
    api.create_grant(NS, "waiting-7")
    api.create_grant("nightly", "backup-1")
    wait_for_phase(api, NS, "waiting-7", "Pending")
    wait_for_phase(api, "nightly", "backup-1", "Pending")

    result = kubectl("list")
    assert result.returncode == 0, result.stderr
    header, active, waiting = rows(result.stdout)
    assert header == ["NAME", "PHASE", "REASON", "JOB", "POLICY", "EXPIRES", "AGE"]
    assert active[:6] == [
        "release-42",
        "Active",
        "JobRunning",
        "release-42",
        "allow-everything-allowed",
        grant["status"]["expiresAt"],
    ]
    assert re.fullmatch(r"\d+s", active[6])
    assert waiting[:4] == ["waiting-7", "Pending", "WaitingForJob", "waiting-7"]

    result = kubectl("list", "-A")
    table = rows(result.stdout)
    assert table[0][:2] == ["NAMESPACE", "NAME"]
    assert [row[:3] for row in table[1:]] == [
        [NS, "release-42", "Active"],
        [NS, "waiting-7", "Pending"],
        ["nightly", "backup-1", "Pending"],
    ]

    listed = json.loads(kubectl("list", "-o", "json").stdout)
    assert listed["kind"] == "List" and listed["apiVersion"] == "v1"
    assert [item["metadata"]["name"] for item in listed["items"]] == ["release-42", "waiting-7"]
    assert {(item["apiVersion"], item["kind"]) for item in listed["items"]} == {
        ("taskgrant.dev/v1alpha1", "TaskGrant")
    }
    assert listed["items"][0]["metadata"]["uid"] == grant["metadata"]["uid"]

    every = yaml.safe_load(kubectl("-o", "yaml", "list", "--all-namespaces").stdout)
    assert len(every["items"]) == 3
    assert kubectl("list", "-n", "nightly", "-o", "name").stdout == "taskgrant.taskgrant.dev/backup-1\n"

    empty = kubectl("list", "-n", "empty")
    assert (empty.returncode, empty.stdout, empty.stderr) == (
        0,
        "",
        "No resources found in empty namespace.\n",
    )
    refused = kubectl("list", "-o", "jsonpath")
    assert refused.returncode == 1 and "invalid choice" in refused.stderr


def test_describe_shows_spec_status_approvals_and_events(
    api: Api, operator: OperatorProcess, kubectl: Plugin
) -> None:
    api.create_job(NS, "release-42")
    body = grant_manifest(NS, "release-42", duration="15m", reason="release pipeline run 42")
    body["metadata"]["annotations"] = {  # as the admission webhook stamps them
        constants.ANNOTATION_REQUESTER_USERNAME: "bob",
        constants.ANNOTATION_REQUESTER_UID: "uid-bob",
        constants.ANNOTATION_REQUESTER_GROUPS: json.dumps(["dev"]),
    }
    api.ok("POST", f"{GRANTS}/namespaces/{NS}/taskgrants", body)
    grant = wait_for_phase(api, NS, "release-42", "Active")
    wait_for(lambda: api.events(NS, "release-42"), what="the Activated event")
    for name, uid, approver in (
        ("current", grant["metadata"]["uid"], "alice"),
        ("stale", "old-uid", "carol"),
        ("unstamped", grant["metadata"]["uid"], None),
    ):
        stamp = {constants.ANNOTATION_APPROVER_USERNAME: approver} if approver else {}
        api.ok(
            "POST",
            APPROVALS,
            {
                "apiVersion": "taskgrant.dev/v1alpha1",
                "kind": "TaskGrantApproval",
                "metadata": {"name": f"release-42-{name}", "annotations": stamp},
                "spec": {"grant": {"name": "release-42", "uid": uid}, "decision": "Approve", "comment": name},
            },
        )
    # An event on another kind of object with the grant's name is not the grant's.
    api.ok(
        "POST",
        f"{CORE}/namespaces/{NS}/events",
        {
            "metadata": {"name": "release-42.job"},
            "involvedObject": {"kind": "Job", "name": "release-42", "namespace": NS},
            "reason": "SuccessfulCreate",
            "message": "Created pod: release-42-abcde",
            "type": "Normal",
        },
    )

    result = kubectl("describe", "release-42")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    sections = ["Name:", "Spec:", "  Access:", "Status:", "Conditions:", "Approvals:", "Events:"]
    positions = [out.index(f"\n{section}") if i else out.index(section) for i, section in enumerate(sections)]
    assert positions == sorted(positions)
    assert re.search(r"^Requester: +bob \(uid uid-bob; groups dev\)$", out, re.M)
    assert re.search(r"^  Job: +release-42$", out, re.M)
    assert re.search(r"^  Reason: +release pipeline run 42$", out, re.M)
    assert re.search(r"^  Duration: +15m$", out, re.M)
    assert re.search(
        r"^    Namespace ci:\n +Resources +Resource Names +Verbs\n.*\n +secrets +\[signing-key\] +\[get\]$",
        out,
        re.M,
    )
    assert re.search(r"^  Phase: +Active$", out, re.M)
    assert re.search(rf"^  Expires At: +{grant['status']['expiresAt']}$", out, re.M)
    [role] = grant["status"]["roles"]
    assert re.search(rf"^  Roles: +ci/{role['name']}$", out, re.M)
    assert re.search(r"^  Active +True +JobRunning ", out, re.M)
    assert re.search(r"^  release-42-current +Approve +alice +yes +\S+ +current$", out, re.M)
    assert re.search(r"^  release-42-stale +Approve +carol +no: for uid old-uid +\S+ +stale$", out, re.M)
    assert re.search(
        r"^  release-42-unstamped +Approve +<not stamped> +no: approver not stamped +\S+ +unstamped$",
        out,
        re.M,
    )
    events = out[out.index("\nEvents:") :]
    assert re.search(
        r"^  Normal +Activated +\S+ +taskgrant-operator +access active for Job release-42", events, re.M
    )
    assert "SuccessfulCreate" not in events

    missing = kubectl("describe", "nothing-here")
    assert missing.returncode == 1
    assert (
        missing.stderr == 'Error from server (NotFound): taskgrants.taskgrant.dev "nothing-here" not found\n'
    )


def test_approve_and_deny_create_exactly_the_expected_approvals(
    api: Api, kubectl: Plugin, capsys: pytest.CaptureFixture[str]
) -> None:
    uid = api.create_grant(NS, "migrate-42")["metadata"]["uid"]

    approved = kubectl("approve", "migrate-42", "--comment", "change CHG-1234")
    assert approved.returncode == 0, approved.stderr
    match = re.fullmatch(
        r"taskgrantapproval\.taskgrant\.dev/(migrate-42-approve-[a-z0-9]{5}) created\n", approved.stdout
    )
    assert match, approved.stdout
    denied = kubectl("deny", "migrate-42", "-o", "json")
    assert denied.returncode == 0, denied.stderr
    deny_name = json.loads(denied.stdout)["metadata"]["name"]
    assert re.fullmatch(r"migrate-42-deny-[a-z0-9]{5}", deny_name)

    stored = approvals(api)
    assert sorted(stored) == sorted([match[1], deny_name])
    for name, decision, comment in ((match[1], "Approve", "change CHG-1234"), (deny_name, "Deny", None)):
        approval = stored[name]
        assert approval["apiVersion"] == "taskgrant.dev/v1alpha1"
        assert approval["kind"] == "TaskGrantApproval"
        assert approval["metadata"]["namespace"] == NS
        expected: dict[str, Any] = {"grant": {"name": "migrate-42", "uid": uid}, "decision": decision}
        if comment is not None:
            expected["comment"] = comment
        assert approval["spec"] == expected
        # Identity is the webhook's to stamp, never the plugin's.
        assert not set(approval["metadata"].get("annotations") or {}) & set(constants.APPROVER_ANNOTATIONS)

    missing = kubectl("approve", "nothing-here")
    assert missing.returncode == 1
    assert (
        missing.stderr == 'Error from server (NotFound): taskgrants.taskgrant.dev "nothing-here" not found\n'
    )

    # In-process: a comment the CRD would refuse is refused before anything is sent.
    assert (
        plugin.main(["--kubeconfig", str(kubectl.kubeconfig), "deny", "migrate-42", "--comment", "x" * 1025])
        == 1
    )
    assert "error: spec.comment: String should have at most 1024 characters" in capsys.readouterr().err
    assert sorted(approvals(api)) == sorted([match[1], deny_name])


def test_revoke_ends_an_active_grant_and_is_idempotent(
    api: Api, operator: OperatorProcess, kubectl: Plugin
) -> None:
    active_grant(api, "release-42")
    result = kubectl("revoke", "release-42", "--comment", "incident 77")
    assert (result.returncode, result.stdout) == (
        0,
        "taskgrant.taskgrant.dev/release-42 revocation requested\n",
    )
    grant = api.grant(NS, "release-42")
    assert grant is not None
    assert grant["metadata"]["annotations"][constants.ANNOTATION_REVOKE] == "incident 77"
    grant = wait_for_phase(api, NS, "release-42", "Revoked")
    assert grant["status"]["reason"] == "ManuallyRevoked"

    again = kubectl("revoke", "release-42", "--comment", "again")
    assert (again.returncode, again.stdout) == (
        0,
        "taskgrant.taskgrant.dev/release-42 is already Revoked (ManuallyRevoked)\n",
    )
    grant = api.grant(NS, "release-42")
    assert (
        grant is not None and grant["metadata"]["annotations"][constants.ANNOTATION_REVOKE] == "incident 77"
    )

    active_grant(api, "nightly-backup")
    waited = kubectl("revoke", "nightly-backup", "--wait", "--timeout", "20s")
    assert waited.returncode == 0, waited.stderr
    assert waited.stdout.splitlines() == [
        "taskgrant.taskgrant.dev/nightly-backup revocation requested",
        "taskgrant.taskgrant.dev/nightly-backup Revoked (ManuallyRevoked)",
    ]
    grant = api.grant(NS, "nightly-backup")
    assert (
        grant is not None
        and grant["metadata"]["annotations"][constants.ANNOTATION_REVOKE] == plugin.DEFAULT_REVOKE_COMMENT
    )
    assert not [obj for obj in api.managed_objects() if "nightly-backup" in obj[2]]

    api.create_job(NS, "wrong-account", service_account="someone-else")
    api.create_grant(NS, "wrong-account")
    wait_for_phase(api, NS, "wrong-account", "Denied")
    denied = kubectl("revoke", "wrong-account")
    assert (denied.returncode, denied.stdout) == (
        0,
        "taskgrant.taskgrant.dev/wrong-account is already Denied (JobServiceAccountMismatch)\n",
    )

    missing = kubectl("revoke", "nothing-here")
    assert missing.returncode == 1
    assert (
        missing.stderr == 'Error from server (NotFound): taskgrants.taskgrant.dev "nothing-here" not found\n'
    )


def test_revoke_wait_times_out_when_no_operator_acts(api: Api, kubectl: Plugin) -> None:
    api.create_grant(NS, "release-42")
    result = kubectl("revoke", "release-42", "--wait", "--timeout", "1s")
    assert result.returncode == 1
    assert result.stderr == "error: timed out waiting for the condition on taskgrants/release-42\n"
    grant = api.grant(NS, "release-42")
    assert (
        grant is not None
        and grant["metadata"]["annotations"][constants.ANNOTATION_REVOKE] == plugin.DEFAULT_REVOKE_COMMENT
    )
    assert kubectl("revoke", "release-42", "--wait", "--timeout", "soon").returncode == 1


def binding(
    kind: str, name: str, role: tuple[str, str], subjects: list[dict[str, str]], namespace: str | None = None
) -> dict[str, Any]:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": kind,
        "metadata": meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role[0], "name": role[1]},
        "subjects": subjects,
    }


def privilege(audit: dict[str, Any]) -> dict[str, tuple[str, list[tuple[str, str | None, str, str]]]]:
    return {
        f"{f['serviceAccount']['namespace']}/{f['serviceAccount']['name']}": (
            f["finding"],
            [
                (b["kind"], b["namespace"], b["name"], f"{b['roleRef']['kind']}/{b['roleRef']['name']}")
                for b in f["bindings"]
            ],
        )
        for f in audit["standingPrivilege"]
    }


def test_audit_reports_standing_privilege_and_leftovers_of_ended_grants(
    api: Api, cluster: EmulatedCluster, operator: OperatorProcess, kubectl: Plugin, tmp_path: Path
) -> None:
    active_grant(api, "release-42")
    clean = kubectl("audit")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert clean.stdout.startswith("No standing privilege found")
    assert json.loads(kubectl("audit", "-o", "json").stdout) == {
        "standingPrivilege": [],
        "endedGrantsWithObjects": [],
    }

    # Standing privilege made by hand, beside the grant's task-bound access.
    api.ok("POST", f"{CORE}/namespaces/{NS}/serviceaccounts", {"metadata": {"name": "deployer"}})
    api.ok("POST", f"{CORE}/namespaces/ops/serviceaccounts", {"metadata": {"name": "backup"}})
    api.ok(
        "POST",
        f"{RBAC}/namespaces/{NS}/rolebindings",
        binding(
            "RoleBinding",
            "deployer-edit",
            ("ClusterRole", "edit"),
            [{"kind": "ServiceAccount", "name": "deployer"}],
            NS,
        ),
    )
    api.ok(
        "POST",
        f"{RBAC}/clusterrolebindings",
        binding(
            "ClusterRoleBinding",
            "backup-view",
            ("ClusterRole", "view"),
            [{"kind": "ServiceAccount", "name": "backup", "namespace": "ops"}],
        ),
    )
    api.ok(
        "POST",
        f"{RBAC}/clusterrolebindings",
        binding(
            "ClusterRoleBinding",
            "ghost-admin",
            ("ClusterRole", "cluster-admin"),
            [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "ghost", "namespace": NS}],
        ),
    )
    # A binding the grant did not make, to the grant's own ServiceAccount, outlives the task.
    api.ok(
        "POST",
        f"{RBAC}/namespaces/{NS}/rolebindings",
        binding(
            "RoleBinding",
            "extra-secrets",
            ("Role", "secret-reader"),
            [{"kind": "User", "name": f"system:serviceaccount:{NS}:release-42"}],
            NS,
        ),
    )
    # A grant that has ended, with a Role labelled as its own left behind.
    old = active_grant(api, "old-7")
    api.finish_job(NS, "old-7")
    wait_for_phase(api, NS, "old-7", "Revoked")
    labels = {
        constants.LABEL_MANAGED_BY: constants.MANAGER,
        constants.LABEL_GRANT_NAME: "old-7",
        constants.LABEL_GRANT_NAMESPACE: NS,
        constants.LABEL_GRANT_UID: old["metadata"]["uid"],
    }
    api.ok(
        "POST",
        f"{RBAC}/namespaces/{NS}/roles",
        {"metadata": {"name": "tg-old-7-leftover", "labels": labels}, "rules": []},
    )

    result = kubectl("audit", "-o", "json")
    assert result.returncode == 3, result.stderr
    found = json.loads(result.stdout)
    assert privilege(found) == {
        "ci/deployer": ("standing privilege", [("RoleBinding", NS, "deployer-edit", "ClusterRole/edit")]),
        "ci/ghost": (
            "dangling subject",
            [("ClusterRoleBinding", None, "ghost-admin", "ClusterRole/cluster-admin")],
        ),
        "ci/release-42": ("standing privilege", [("RoleBinding", NS, "extra-secrets", "Role/secret-reader")]),
        "ops/backup": (
            "standing privilege",
            [("ClusterRoleBinding", None, "backup-view", "ClusterRole/view")],
        ),
    }
    assert found["endedGrantsWithObjects"] == [
        {
            "grant": {"namespace": NS, "name": "old-7", "uid": old["metadata"]["uid"]},
            "phase": "Revoked",
            "reason": "JobSucceeded",
            "expiresAt": old["status"]["expiresAt"],
            "problem": "grant is Revoked",
            "objects": [{"kind": "Role", "namespace": NS, "name": "tg-old-7-leftover"}],
        }
    ]

    text = kubectl("audit")
    assert text.returncode == 3
    table = rows(text.stdout)
    assert [
        "ci/deployer",
        "standing",
        "privilege",
        "RoleBinding",
        "ci/deployer-edit",
        "ClusterRole/edit",
    ] in table
    assert [
        "ci/ghost",
        "dangling",
        "subject",
        "ClusterRoleBinding",
        "ghost-admin",
        "ClusterRole/cluster-admin",
    ] in table
    assert [
        "ci/old-7",
        "Revoked",
        old["status"]["expiresAt"],
        "grant",
        "is",
        "Revoked",
        "Role",
        "ci/tg-old-7-leftover",
    ] in table
    assert "should never happen" in text.stdout
    assert not any(row[0] == "ci/release-42" and row[3].startswith("ci/tg-") for row in table if len(row) > 3)

    scoped = kubectl("audit", "-n", "ops", "-o", "yaml")
    assert scoped.returncode == 3
    assert set(privilege(yaml.safe_load(scoped.stdout))) == {"ops/backup"}
    assert kubectl("audit", "-n", "nightly").returncode == 0

    cluster.inject_fault(Fault("list", "clusterrolebindings", 403, reason="Forbidden"))
    forbidden = kubectl("audit")
    assert (forbidden.returncode, forbidden.stderr) == (1, "Error from server (Forbidden): injected fault\n")
    nowhere = tmp_path / "nowhere.kubeconfig"
    config = cluster.kubeconfig(NS)
    config["clusters"][0]["cluster"]["server"] = "http://127.0.0.1:9"
    nowhere.write_text(yaml.safe_dump(config))
    unreachable = kubectl("--kubeconfig", str(nowhere), "audit", kubeconfig=False)
    assert unreachable.returncode == 1 and unreachable.stderr.startswith("Unable to connect to the server:")


def test_context_and_namespace_follow_the_kubeconfig(
    api: Api,
    cluster: EmulatedCluster,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    api.create_grant(NS, "in-ci")
    api.create_grant("nightly", "in-nightly")
    config = cluster.kubeconfig(NS)
    config["contexts"].append(
        {"name": "nightly", "context": {"cluster": "emulated", "user": "emulated", "namespace": "nightly"}}
    )
    path = tmp_path / "contexts.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("KUBECONFIG", str(path))

    assert plugin.main(["list", "-o", "name"]) == 0
    assert capsys.readouterr().out == "taskgrant.taskgrant.dev/in-ci\n"
    assert plugin.main(["--context", "nightly", "list", "-o", "name"]) == 0
    assert capsys.readouterr().out == "taskgrant.taskgrant.dev/in-nightly\n"
    assert plugin.main(["list", "--context", "nightly", "-n", NS, "-o", "name"]) == 0
    assert capsys.readouterr().out == "taskgrant.taskgrant.dev/in-ci\n"
    assert plugin.main(["--context", "no-such-context", "list"]) == 1
    assert capsys.readouterr().err.startswith("error: ")


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_explains_every_command(command: str | None, kubectl: Plugin) -> None:
    result = kubectl(*([command] if command else []), "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: kubectl taskgrant{' ' + command if command else ''}")
    assert "Examples:\n  kubectl taskgrant " in result.stdout
    if command == "audit":
        assert "Exit status: 0 nothing found, 3 findings, 1 error." in result.stdout


def test_usage_errors_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert plugin.main(["frobnicate"]) == 1
    assert plugin.main(["describe"]) == 1
    assert plugin.main(["-o", "json", "describe", "x"]) == 1
    assert "describe does not support --output json" in capsys.readouterr().err
