from taskgrant import builders, constants
from taskgrant.models import GrantRef

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
