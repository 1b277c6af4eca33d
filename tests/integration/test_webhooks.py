"""The admission webhook of the real operator process, over HTTPS, against the emulated API.

The emulator calls no webhooks, so the tests play the API server: they POST AdmissionReview v1
requests to the operator's webhook server, verifying its certificate against a CA made here.
"""

from __future__ import annotations

import base64
import datetime
import json
import socket
import ssl
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonpatch  # type: ignore[import-untyped]
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from taskgrant.controller import webhooks
from taskgrant.domain import constants
from taskgrant.domain.admission import stamp
from taskgrant.domain.manifests import SECRET_RULE, grant_manifest
from taskgrant.emulator import EmulatedCluster

from .harness import CRDS, Api, OperatorProcess, operator_process, wait_for

APPROVALS_NS = "release"  # grants here need approval
ALICE = {"username": "alice", "uid": "uid-alice", "groups": ["dev", "system:authenticated"]}
BOB = {"username": "bob", "uid": "uid-bob", "groups": ["system:authenticated"]}
CAROL = {"username": "carol", "uid": "uid-carol", "groups": ["release-approvers"]}
MALLORY = {"username": "mallory", "uid": "uid-mallory", "groups": ["dev"]}
REQUESTER = constants.REQUESTER_ANNOTATIONS
APPROVER = constants.APPROVER_ANNOTATIONS
GRANTS_RESOURCE = {"group": constants.GROUP, "version": constants.VERSION, "resource": constants.PLURAL}
APPROVALS_RESOURCE = {**GRANTS_RESOURCE, "resource": constants.APPROVAL_PLURAL}


def write_certificates(directory: Path) -> Path:
    """A CA, and a serving certificate for 127.0.0.1 signed by it; returns the CA's file."""
    now = datetime.datetime.now(datetime.UTC)

    def build(
        subject: str,
        key: ec.EllipticCurvePrivateKey,
        issuer: str,
        signer: ec.EllipticCurvePrivateKey,
        ca: bool,
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            import ipaddress

            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = build("test webhook CA", ca_key, "test webhook CA", ca_key, ca=True)
    server = build("127.0.0.1", server_key, "test webhook CA", ca_key, ca=False)
    directory.mkdir()
    pem = serialization.Encoding.PEM
    (directory / "ca.crt").write_bytes(ca.public_bytes(pem))
    (directory / webhooks.CERT_FILE).write_bytes(server.public_bytes(pem))
    (directory / webhooks.KEY_FILE).write_bytes(
        server_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return directory / "ca.crt"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Webhook:
    """The API server's side of the webhook: AdmissionReview out, its response back."""

    def __init__(self, port: int, cafile: Path) -> None:
        self.url = f"https://127.0.0.1:{port}"
        self.context = ssl.create_default_context(cafile=str(cafile))  # verified, never verify=False

    def review(
        self,
        path: str,
        operation: str,
        user: dict[str, Any],
        obj: dict[str, Any],
        old: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        resource = APPROVALS_RESOURCE if obj["kind"] == constants.APPROVAL_KIND else GRANTS_RESOURCE
        uid = str(uuid.uuid4())
        request = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": uid,
                "kind": {"group": constants.GROUP, "version": constants.VERSION, "kind": obj["kind"]},
                "resource": resource,
                "requestKind": {"group": constants.GROUP, "version": constants.VERSION, "kind": obj["kind"]},
                "requestResource": resource,
                "name": obj["metadata"].get("name", ""),
                "namespace": obj["metadata"]["namespace"],
                "operation": operation,
                "userInfo": user,
                "object": obj,
                "oldObject": old,
                "dryRun": False,
                "options": None,
            },
        }
        http = urllib.request.Request(
            f"{self.url}/{path}",
            data=json.dumps(request).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(http, timeout=10, context=self.context) as answer:
            review: dict[str, Any] = json.loads(answer.read())
        assert review["kind"] == "AdmissionReview" and review["response"]["uid"] == uid
        response: dict[str, Any] = review["response"]
        return response

    def refusal(self, *args: Any) -> str:
        response = self.review(*args)
        assert response["allowed"] is False, response
        message: str = response["status"]["message"]
        return message

    def allowed(self, *args: Any) -> dict[str, Any]:
        response = self.review(*args)
        assert response["allowed"] is True, response
        return response

    def up(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", int(self.url.rsplit(":", 1)[1])), timeout=1):
                return True
        except OSError:
            return False


def patched(obj: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    assert response["patchType"] == "JSONPatch"
    patch = json.loads(base64.b64decode(response["patch"]))
    result: dict[str, Any] = jsonpatch.apply_patch(obj, patch)
    return result


@pytest.fixture(scope="module")
def cluster() -> Iterator[EmulatedCluster]:
    with EmulatedCluster(crds=CRDS) as emulated:
        yield emulated


@pytest.fixture(scope="module")
def api(cluster: EmulatedCluster) -> Api:
    api = Api(cluster.url, cluster.token)
    api.create_policy(
        "ci-anything-allowed", namespaceSelector={"matchLabels": {"kubernetes.io/metadata.name": "ci"}}
    )
    api.create_policy(
        "release-approved",
        namespaceSelector={"matchLabels": {"kubernetes.io/metadata.name": APPROVALS_NS}},
        approval={"required": True, "approvers": {"users": ["bob"], "groups": ["release-approvers"]}},
    )
    return api


@pytest.fixture(scope="module")
def webhook(
    cluster: EmulatedCluster, api: Api, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Webhook]:
    tmp = tmp_path_factory.mktemp("webhook")
    cafile = write_certificates(tmp / "certs")
    port = free_port()
    args = ("--webhook-port", str(port), "--webhook-cert-dir", str(tmp / "certs"))
    for operator in operator_process(cluster, tmp, *args):
        served = Webhook(port, cafile)
        wait_for(served.up, timeout=30, what="the webhook server")
        yield served
        assert_alive(operator)


def assert_alive(operator: OperatorProcess) -> None:
    assert operator.process is not None and operator.process.poll() is None, operator.logs()


def grant(
    name: str, namespace: str = "ci", annotations: dict[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    manifest = grant_manifest(namespace, name, **spec)
    if annotations is not None:
        manifest["metadata"]["annotations"] = annotations
    return manifest


def approval(
    name: str, grant_name: str, grant_uid: str, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": APPROVALS_NS}
    if annotations is not None:
        meta["annotations"] = annotations
    return {
        "apiVersion": constants.API_VERSION,
        "kind": constants.APPROVAL_KIND,
        "metadata": meta,
        "spec": {"grant": {"name": grant_name, "uid": grant_uid}, "decision": "Approve", "comment": "ok"},
    }


# --- Who asked: the requester's identity on every new TaskGrant. ---


@pytest.mark.parametrize(
    "annotations",
    [None, {"team": "ci"}, {"team": "ci", **stamp(BOB, REQUESTER)}],
    ids=["none", "others", "forged"],
)
def test_the_requesters_identity_is_stamped(webhook: Webhook, annotations: dict[str, str] | None) -> None:
    obj = grant("stamped", annotations=annotations)
    result = patched(obj, webhook.allowed(webhooks.MUTATE_GRANT, "CREATE", ALICE, obj))
    expected = {**(annotations or {}), **stamp(ALICE, REQUESTER)}
    assert result["metadata"]["annotations"] == expected
    assert {key: expected[key] for key in REQUESTER} == {
        constants.ANNOTATION_REQUESTER_USERNAME: "alice",
        constants.ANNOTATION_REQUESTER_UID: "uid-alice",
        constants.ANNOTATION_REQUESTER_GROUPS: '["dev", "system:authenticated"]',
    }
    assert {k: v for k, v in result.items() if k != "metadata"} == {
        k: v for k, v in obj.items() if k != "metadata"
    }


def test_the_mutating_webhook_leaves_updates_alone(webhook: Webhook) -> None:
    obj = grant("updated", annotations=stamp(ALICE, REQUESTER))
    assert "patch" not in webhook.allowed(webhooks.MUTATE_GRANT, "UPDATE", BOB, obj, obj)


def test_a_stamped_grant_is_admitted(webhook: Webhook) -> None:
    obj = grant("admitted", annotations=stamp(ALICE, REQUESTER))
    webhook.allowed(webhooks.VALIDATE_GRANT, "CREATE", ALICE, obj)


def test_a_forged_identity_that_survived_mutation_is_refused(webhook: Webhook) -> None:
    obj = grant("forged", annotations=stamp(BOB, REQUESTER))
    message = webhook.refusal(webhooks.VALIDATE_GRANT, "CREATE", ALICE, obj)
    assert "cannot be set by hand" in message and constants.ANNOTATION_REQUESTER_USERNAME in message
    unstamped = grant("unstamped")
    assert "cannot be set by hand" in webhook.refusal(webhooks.VALIDATE_GRANT, "CREATE", ALICE, unstamped)


@pytest.mark.parametrize("change", ["change", "remove", "add"])
def test_updates_never_change_the_identity(webhook: Webhook, change: str) -> None:
    old = grant("kept", annotations=stamp(ALICE, REQUESTER))
    new = grant(
        "kept", annotations={**stamp(ALICE, REQUESTER), constants.ANNOTATION_REQUESTER_USERNAME: "bob"}
    )
    if change == "remove":
        new = grant("kept", annotations={})
    elif change == "add":
        old, new = grant("kept"), old
    message = webhook.refusal(webhooks.VALIDATE_GRANT, "UPDATE", ALICE, new, old)
    assert message.endswith("cannot be added, changed or removed")


def test_updates_that_keep_the_identity_pass(webhook: Webhook) -> None:
    # The operator's own finalizer and kopf's annotations, even on a grant no policy allows any more.
    old = grant(
        "finalized",
        annotations=stamp(ALICE, REQUESTER),
        access=[{"rules": [{**SECRET_RULE, "verbs": ["list"]}]}],
    )
    new = json.loads(json.dumps(old))
    new["metadata"]["finalizers"] = [constants.FINALIZER]
    new["metadata"]["annotations"]["taskgrant.dev/last-handled-configuration"] = "{}"
    webhook.allowed(webhooks.VALIDATE_GRANT, "UPDATE", BOB, new, old)


def final_status(api: Api, namespace: str, name: str) -> dict[str, Any] | None:
    status: dict[str, Any] = (api.grant(namespace, name) or {}).get("status") or {}
    return status if status.get("reason") else None


# --- Bad grants fail at `kubectl apply`, with the operator's own reason and message. ---

BAD_GRANTS = {
    "InvalidSpec": {"job": None, "access": [{"rules": [SECRET_RULE]}]},
    "PolicyDenied": {
        "access": [{"rules": [{"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}]}]
    },
}


@pytest.mark.parametrize("reason", sorted(BAD_GRANTS))
def test_a_bad_grant_is_refused_as_the_operator_would_deny_it(
    webhook: Webhook, api: Api, reason: str
) -> None:
    name = f"bad-{reason.lower()}"
    obj = grant(name, annotations=stamp(ALICE, REQUESTER), **BAD_GRANTS[reason])
    message = webhook.refusal(webhooks.VALIDATE_GRANT, "CREATE", ALICE, obj)
    # The same grant created behind the webhook's back: the operator denies it with the same words.
    api.ok("POST", f"/apis/{constants.API_VERSION}/namespaces/ci/taskgrants", obj)
    status = wait_for(lambda: final_status(api, "ci", name), what=f"grant {name} to be denied")
    assert (status["phase"], status["reason"]) == ("Denied", reason)
    assert message == f"{reason}: {status['message']}"


def test_a_grant_in_a_namespace_no_policy_governs_is_refused(webhook: Webhook) -> None:
    obj = grant("nowhere", namespace="elsewhere", annotations=stamp(ALICE, REQUESTER))
    message = webhook.refusal(webhooks.VALIDATE_GRANT, "CREATE", ALICE, obj)
    assert message == "PolicyDenied: no TaskGrantPolicy governs namespace elsewhere"


# --- Who approved: TaskGrantApprovals. ---


@pytest.fixture(scope="module")
def awaiting(api: Api, webhook: Webhook) -> dict[str, Any]:
    """A grant by alice, stamped as the webhook would have, under the policy that needs approval."""
    created = api.ok(
        "POST",
        f"/apis/{constants.API_VERSION}/namespaces/{APPROVALS_NS}/taskgrants",
        grant("needs-approval", APPROVALS_NS, annotations=stamp(ALICE, REQUESTER)),
    )
    return dict(created)


def stamped_approval(
    user: dict[str, Any], grant_body: dict[str, Any], uid: str | None = None
) -> dict[str, Any]:
    meta = grant_body["metadata"]
    return approval(f"by-{user['username']}", meta["name"], uid or meta["uid"], stamp(user, APPROVER))


@pytest.mark.parametrize("user", [BOB, CAROL], ids=["listed-user", "listed-group"])
def test_a_listed_approver_is_stamped_and_admitted(
    webhook: Webhook, awaiting: dict[str, Any], user: dict[str, Any]
) -> None:
    meta = awaiting["metadata"]
    obj = approval("by-listed", meta["name"], meta["uid"], {**stamp(ALICE, APPROVER), "note": "x"})
    result = patched(obj, webhook.allowed(webhooks.MUTATE_APPROVAL, "CREATE", user, obj))
    assert result["metadata"]["annotations"] == {"note": "x", **stamp(user, APPROVER)}
    webhook.allowed(webhooks.VALIDATE_APPROVAL, "CREATE", user, result)


def test_self_approval_is_refused(webhook: Webhook, awaiting: dict[str, Any]) -> None:
    # Even when alice is a listed approver by group.
    alice = {**ALICE, "groups": ["release-approvers"]}
    message = webhook.refusal(webhooks.VALIDATE_APPROVAL, "CREATE", alice, stamped_approval(alice, awaiting))
    assert message == "self-approval is refused: alice requested grant needs-approval"


def test_an_unlisted_approver_is_refused(webhook: Webhook, awaiting: dict[str, Any]) -> None:
    message = webhook.refusal(
        webhooks.VALIDATE_APPROVAL, "CREATE", MALLORY, stamped_approval(MALLORY, awaiting)
    )
    assert message == "mallory is not an approver listed by policy release-approved"


def test_an_approval_for_another_grant_uid_is_refused(webhook: Webhook, awaiting: dict[str, Any]) -> None:
    obj = stamped_approval(BOB, awaiting, uid="not-the-grant")
    message = webhook.refusal(webhooks.VALIDATE_APPROVAL, "CREATE", BOB, obj)
    actual = awaiting["metadata"]["uid"]
    assert message == f"names grant needs-approval with uid not-the-grant, but the grant has uid {actual}"
    missing = approval("for-nothing", "no-such-grant", "u", stamp(BOB, APPROVER))
    assert "does not exist" in webhook.refusal(webhooks.VALIDATE_APPROVAL, "CREATE", BOB, missing)


def test_an_approvers_identity_cannot_be_forged(webhook: Webhook, awaiting: dict[str, Any]) -> None:
    forged = stamped_approval(BOB, awaiting)  # stamped as bob, sent by mallory
    message = webhook.refusal(webhooks.VALIDATE_APPROVAL, "CREATE", MALLORY, forged)
    assert "cannot be set by hand" in message


def test_an_approval_never_changes(webhook: Webhook, awaiting: dict[str, Any]) -> None:
    old = stamped_approval(BOB, awaiting)
    denied = json.loads(json.dumps(old))
    denied["spec"]["decision"] = "Deny"
    assert webhook.refusal(webhooks.VALIDATE_APPROVAL, "UPDATE", BOB, denied, old) == (
        "an approval is immutable: create a new one"
    )
    restamped = {**old, "metadata": {**old["metadata"], "annotations": stamp(CAROL, APPROVER)}}
    assert "cannot be added" in webhook.refusal(webhooks.VALIDATE_APPROVAL, "UPDATE", CAROL, restamped, old)


def test_an_approval_of_a_grant_needing_none_is_refused(webhook: Webhook, api: Api) -> None:
    created = api.ok(
        "POST",
        f"/apis/{constants.API_VERSION}/namespaces/ci/taskgrants",
        grant("no-approval", annotations=stamp(ALICE, REQUESTER)),
    )
    obj = stamped_approval(BOB, created)
    obj["metadata"]["namespace"] = "ci"
    message = webhook.refusal(webhooks.VALIDATE_APPROVAL, "CREATE", BOB, obj)
    assert message == "policy ci-anything-allowed requires no approval for grant no-approval"
