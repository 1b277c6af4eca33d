"""Names shared by the operator, the chart and the tests: the API group, labels, annotations."""

from typing import Final

GROUP: Final = "taskgrant.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "TaskGrant"
PLURAL: Final = "taskgrants"
POLICY_PLURAL: Final = "taskgrantpolicies"

# One finalizer, named after the API group: cleanup runs before a grant can disappear.
FINALIZER: Final = f"{GROUP}/cleanup"
# kopf keeps its handler bookkeeping in annotations under our own prefix, not kopf.zalando.org.
ANNOTATION_PREFIX: Final = GROUP

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
