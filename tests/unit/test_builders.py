import datetime

from taskgrant.domain import builders, constants
from taskgrant.domain.models import GrantRef

from .conftest import make_spec

LABELS = {
    "app.kubernetes.io/managed-by": "taskgrant-operator",
    "taskgrant.dev/grant-name": "release-42",
    "taskgrant.dev/grant-namespace": "ci",
    "taskgrant.dev/grant-uid": "1111-2222",
}
OWNER = {
    "apiVersion": "taskgrant.dev/v1alpha1",
    "kind": "TaskGrant",
    "name": "release-42",
    "uid": "1111-2222",
    "controller": True,
}


def test_service_account_is_exact(grant: GrantRef) -> None:
    spec = make_spec(reason="release pipeline run 42")
    assert builders.build_service_account(grant, spec) == {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": "release-42",
            "namespace": "ci",
            "labels": LABELS,
            "ownerReferences": [OWNER],
            "annotations": {"taskgrant.dev/reason": "release pipeline run 42"},
        },
        "automountServiceAccountToken": False,
    }


def test_service_account_name_can_be_chosen(grant: GrantRef) -> None:
    spec = make_spec(serviceAccountName="signer")
    assert builders.build_service_account(grant, spec)["metadata"]["name"] == "signer"
    binding = builders.build_role_bindings(grant, spec)[0]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "signer", "namespace": "ci"}]


def test_role_has_exactly_the_requested_rules(grant: GrantRef) -> None:
    [role] = builders.build_roles(grant, make_spec())
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["signing-key"], "verbs": ["get"]}
    ]
    assert role["metadata"]["labels"] == LABELS
    assert role["metadata"]["ownerReferences"] == [OWNER]
    assert role["metadata"]["namespace"] == "ci"


def test_rules_without_resource_names_carry_none(grant: GrantRef) -> None:
    spec = make_spec(
        access=[{"rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]}]}]
    )
    assert builders.build_roles(grant, spec)[0]["rules"] == [
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]}
    ]


def test_binding_binds_the_role_to_the_grant_service_account_only(grant: GrantRef) -> None:
    spec = make_spec()
    [role] = builders.build_roles(grant, spec)
    [binding] = builders.build_role_bindings(grant, spec)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "release-42", "namespace": "ci"}]
    assert binding["metadata"]["name"] == role["metadata"]["name"]


def test_cross_namespace_objects_have_no_owner_reference(grant: GrantRef) -> None:
    rule = {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}
    spec = make_spec(access=[{"rules": [rule]}, {"namespace": "prod", "rules": [rule]}])
    local, remote = builders.build_roles(grant, spec)
    assert local["metadata"]["namespace"] == "ci" and "ownerReferences" in local["metadata"]
    assert remote["metadata"]["namespace"] == "prod" and "ownerReferences" not in remote["metadata"]
    assert remote["metadata"]["labels"] == LABELS


def test_names_are_unique_across_grants_entries_and_recreations() -> None:
    rule = {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}
    spec = make_spec(
        access=[{"namespace": "shared", "rules": [rule]}, {"namespace": "shared", "rules": [rule]}]
    )
    grants = [
        GrantRef(namespace="a", name="job", uid="u1"),
        GrantRef(namespace="b", name="job", uid="u2"),
        GrantRef(namespace="a", name="job", uid="u3"),  # same name, recreated
    ]
    names = [target.name for grant in grants for target in builders.role_targets(grant, spec)]
    assert len(set(names)) == len(names) == 6


def test_names_fit_kubernetes_limits() -> None:
    grant = GrantRef(namespace="ci", name="x" * 63, uid="u")
    [target] = builders.role_targets(grant, make_spec())
    assert len(target.name) <= 63
    assert target.name.startswith("tg-" + "x" * 40 + "-")


def test_names_are_stable_for_one_grant(grant: GrantRef) -> None:
    assert builders.role_targets(grant, make_spec()) == builders.role_targets(grant, make_spec())


def test_every_object_is_labelled_for_its_grant(grant: GrantRef) -> None:
    spec = make_spec()
    objects = [
        builders.build_service_account(grant, spec),
        *builders.build_roles(grant, spec),
        *builders.build_role_bindings(grant, spec),
    ]
    for obj in objects:
        assert obj["metadata"]["labels"][constants.LABEL_GRANT_UID] == grant.uid


TOKEN_MOUNT = {
    "name": "taskgrant-token",
    "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
    "readOnly": True,
}
CA_AND_NAMESPACE = [
    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
    {
        "downwardAPI": {
            "items": [
                {"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}
            ]
        }
    },
]
# A realistic template: init container, two containers, existing volumes and mounts, labels.
TEMPLATE = {
    "metadata": {"labels": {"app": "release"}, "annotations": {"team": "ci"}},
    "spec": {
        "backoffLimit": 0,
        "activeDeadlineSeconds": 900,
        "template": {
            "metadata": {"labels": {"app": "release"}},
            "spec": {
                "restartPolicy": "Never",
                "initContainers": [
                    {
                        "name": "fetch",
                        "image": "git",
                        "volumeMounts": [{"name": "work", "mountPath": "/work"}],
                    }
                ],
                "containers": [
                    {
                        "name": "sign",
                        "image": "cosign",
                        "args": ["sign"],
                        "volumeMounts": [{"name": "work", "mountPath": "/work"}],
                    },
                    {"name": "sidecar", "image": "log-shipper"},
                ],
                "volumes": [{"name": "work", "emptyDir": {}}],
            },
        },
    },
}


def test_job_from_template_changes_only_identity_and_token(grant: GrantRef) -> None:
    spec = make_spec(
        job=None, jobTemplate=TEMPLATE, token={"audiences": ["sigstore"], "expirationSeconds": 900}
    )
    job = builders.build_job(grant, spec)
    assert job["metadata"] == {
        "name": "release-42",
        "namespace": "ci",
        "labels": {"app": "release", **LABELS},
        "ownerReferences": [OWNER],
        "annotations": {"team": "ci"},
    }
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "release-42"
    assert pod["automountServiceAccountToken"] is False
    assert pod["volumes"] == [
        {"name": "work", "emptyDir": {}},
        {
            "name": "taskgrant-token",
            "projected": {
                "defaultMode": 0o444,
                "sources": [
                    {
                        "serviceAccountToken": {
                            "path": "token",
                            "expirationSeconds": 900,
                            "audience": "sigstore",
                        }
                    },
                    *CA_AND_NAMESPACE,
                ],
            },
        },
    ]
    assert pod["initContainers"][0]["volumeMounts"] == [{"name": "work", "mountPath": "/work"}, TOKEN_MOUNT]
    assert pod["containers"][0]["volumeMounts"] == [{"name": "work", "mountPath": "/work"}, TOKEN_MOUNT]
    assert pod["containers"][1]["volumeMounts"] == [TOKEN_MOUNT]
    # Everything else exactly as written.
    untouched = {k: v for k, v in job["spec"].items() if k != "template"}
    assert untouched == {"backoffLimit": 0, "activeDeadlineSeconds": 900}
    assert job["spec"]["template"]["metadata"] == {"labels": {"app": "release"}}
    assert pod["containers"][0]["args"] == ["sign"] and pod["restartPolicy"] == "Never"
    # The template held by the spec is not modified by building.
    assert "serviceAccountName" not in spec.job_template.spec["template"]["spec"]  # type: ignore[union-attr]


def test_default_token_is_the_api_server_audience_for_ten_minutes(grant: GrantRef) -> None:
    spec = make_spec(job=None, jobTemplate=TEMPLATE)
    [*_, volume] = builders.build_job(grant, spec)["spec"]["template"]["spec"]["volumes"]
    assert volume["projected"]["sources"][0] == {
        "serviceAccountToken": {"path": "token", "expirationSeconds": 600}
    }


def test_each_audience_gets_its_own_token_file_and_custom_mount_path(grant: GrantRef) -> None:
    spec = make_spec(
        job=None,
        jobTemplate=TEMPLATE,
        token={"audiences": ["a.example", "b.example"], "mountPath": "/var/run/secrets/task"},
    )
    pod = builders.build_job(grant, spec)["spec"]["template"]["spec"]
    tokens = [s["serviceAccountToken"] for s in pod["volumes"][-1]["projected"]["sources"][:2]]
    assert tokens == [
        {"path": "token", "expirationSeconds": 600, "audience": "a.example"},
        {"path": "token-1", "expirationSeconds": 600, "audience": "b.example"},
    ]
    assert pod["containers"][1]["volumeMounts"] == [{**TOKEN_MOUNT, "mountPath": "/var/run/secrets/task"}]


def test_context_lands_on_the_service_account(grant: GrantRef) -> None:
    spec = make_spec(
        job=None,
        jobTemplate=TEMPLATE,
        access=[],
        token={"audiences": ["tickets"]},
        context={"caseId": "4711", "system": "jira"},
    )
    assert builders.build_service_account(grant, spec)["metadata"]["annotations"] == {
        "context.taskgrant.dev/caseId": "4711",
        "context.taskgrant.dev/system": "jira",
    }
    assert builders.build_roles(grant, spec) == [] and builders.build_role_bindings(grant, spec) == []


def test_events_name_the_grant() -> None:
    body = {
        "apiVersion": "taskgrant.dev/v1alpha1",
        "kind": "TaskGrant",
        "metadata": {"name": "g", "namespace": "ci", "uid": "u"},
    }
    now = datetime.datetime(2026, 12, 1, 2, 0, tzinfo=datetime.UTC)
    event = builders.build_event(body, "Warning", "Denied", "PolicyDenied: nope", now)
    assert event["involvedObject"] == {
        "apiVersion": "taskgrant.dev/v1alpha1",
        "kind": "TaskGrant",
        "name": "g",
        "namespace": "ci",
        "uid": "u",
    }
    assert (event["type"], event["reason"], event["message"]) == ("Warning", "Denied", "PolicyDenied: nope")
    assert event["metadata"]["namespace"] == "ci" and event["metadata"]["name"].startswith("g.")
    assert event["firstTimestamp"] == event["lastTimestamp"] == "2026-12-01T02:00:00Z"
