"""Names shared by the operator, the chart and the tests: the API group, labels, annotations."""

from typing import Final

GROUP: Final = "taskgrant.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "TaskGrant"
PLURAL: Final = "taskgrants"
POLICY_PLURAL: Final = "taskgrantpolicies"
APPROVAL_KIND: Final = "TaskGrantApproval"
APPROVAL_PLURAL: Final = "taskgrantapprovals"

# One finalizer, named after the API group: cleanup runs before a grant can disappear.
FINALIZER: Final = f"{GROUP}/cleanup"

MANAGER: Final = "taskgrant-operator"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_GRANT_NAME: Final = f"{GROUP}/grant-name"
LABEL_GRANT_NAMESPACE: Final = f"{GROUP}/grant-namespace"
LABEL_GRANT_UID: Final = f"{GROUP}/grant-uid"

ANNOTATION_REASON: Final = f"{GROUP}/reason"
# spec.context entries land on the ServiceAccount as context.taskgrant.dev/<key>, for token consumers.
CONTEXT_ANNOTATION_PREFIX: Final = f"context.{GROUP}/"

# Without an explicit end, no grant outlives this (overridable with --max-duration).
DEFAULT_MAX_DURATION_SECONDS: Final = 3600

# Who asked and who approved: stamped by the admission webhook from the API server's own view of the
# requesting user; nobody can set or change them by hand (a forged value is refused).
ANNOTATION_REQUESTER_USERNAME: Final = f"{GROUP}/requester-username"
ANNOTATION_REQUESTER_UID: Final = f"{GROUP}/requester-uid"
ANNOTATION_REQUESTER_GROUPS: Final = f"{GROUP}/requester-groups"  # a JSON list
ANNOTATION_APPROVER_USERNAME: Final = f"{GROUP}/approver-username"
ANNOTATION_APPROVER_UID: Final = f"{GROUP}/approver-uid"
ANNOTATION_APPROVER_GROUPS: Final = f"{GROUP}/approver-groups"  # a JSON list
REQUESTER_ANNOTATIONS: Final = (
    ANNOTATION_REQUESTER_USERNAME,
    ANNOTATION_REQUESTER_UID,
    ANNOTATION_REQUESTER_GROUPS,
)
APPROVER_ANNOTATIONS: Final = (
    ANNOTATION_APPROVER_USERNAME,
    ANNOTATION_APPROVER_UID,
    ANNOTATION_APPROVER_GROUPS,
)
# `kubectl taskgrant revoke` asks the operator to end an active grant now (reason ManuallyRevoked);
# the value is the person's comment.
ANNOTATION_REVOKE: Final = f"{GROUP}/revoke"
DEFAULT_APPROVAL_TIMEOUT_SECONDS: Final = 3600
