"""Typed views of the TaskGrant resource: pydantic models that mirror crds/taskgrants.yaml.

tests/test_crd_drift.py keeps these models and the CRD schema from drifting apart.
"""

from __future__ import annotations

import datetime
import enum
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel

DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DURATION_PATTERN = r"^([0-9]+h)?([0-9]+m)?([0-9]+s)?$"
MAX_DURATION_LENGTH = 32
# Grant names become label values, which Kubernetes caps at 63 characters.
MAX_GRANT_NAME_LENGTH = 63


class Phase(enum.StrEnum):
    AWAITING_APPROVAL = "AwaitingApproval"
    PENDING = "Pending"
    ACTIVE = "Active"
    REVOKED = "Revoked"
    DENIED = "Denied"


TERMINAL_PHASES = frozenset({Phase.REVOKED, Phase.DENIED})


class Reason(enum.StrEnum):
    # Pending
    WAITING_FOR_JOB = "WaitingForJob"
    WAITING_FOR_NOT_BEFORE = "WaitingForNotBefore"
    # Active
    JOB_RUNNING = "JobRunning"
    # AwaitingApproval
    WAITING_FOR_APPROVAL = "WaitingForApproval"
    # Revoked
    JOB_SUCCEEDED = "JobSucceeded"
    JOB_FAILED = "JobFailed"
    JOB_DELETED = "JobDeleted"
    JOB_ALREADY_FINISHED = "JobAlreadyFinished"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    SPEC_CHANGED = "SpecChanged"
    POLICY_REVOKED = "PolicyRevoked"
    SERVICE_ACCOUNT_DELETED = "ServiceAccountDeleted"
    GRANT_DELETED = "GrantDeleted"
    MANUALLY_REVOKED = "ManuallyRevoked"
    # Denied
    INVALID_SPEC = "InvalidSpec"
    SERVICE_ACCOUNT_CONFLICT = "ServiceAccountConflict"
    NAME_CONFLICT = "NameConflict"
    APPROVAL_DENIED = "ApprovalDenied"
    APPROVAL_TIMEOUT = "ApprovalTimeout"
    REQUESTER_LACKS_PERMISSION = "RequesterLacksPermission"
    JOB_SERVICE_ACCOUNT_MISMATCH = "JobServiceAccountMismatch"
    POLICY_DENIED = "PolicyDenied"


def parse_duration(value: Any) -> Any:
    """Parse a Go-style duration ("15m", "1h30m", "90s") as the CRD's pattern allows it."""
    if not isinstance(value, str):
        return value
    if not value or len(value) > MAX_DURATION_LENGTH or not re.fullmatch(DURATION_PATTERN, value):
        raise ValueError(f"{value!r} is not a duration such as 90s, 15m or 1h30m")
    parts = dict.fromkeys("hms", 0) | {
        unit: int(amount) for amount, unit in re.findall(r"([0-9]+)([hms])", value)
    }
    try:
        return datetime.timedelta(hours=parts["h"], minutes=parts["m"], seconds=parts["s"])
    except OverflowError:  # pydantic reports ValueError as a field error; an overflow would escape
        raise ValueError(f"{value!r} is longer than any duration Python can represent") from None


def format_duration(value: datetime.timedelta) -> str:
    total = int(value.total_seconds())
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    text = (
        (f"{hours}h" if hours else "")
        + (f"{minutes}m" if minutes else "")
        + (f"{seconds}s" if seconds else "")
    )
    return text or "0s"


Duration = Annotated[
    datetime.timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {"type": "string", "pattern": DURATION_PATTERN, "minLength": 2, "maxLength": MAX_DURATION_LENGTH}
    ),
]


DEFAULT_TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
TOKEN_VOLUME = "taskgrant-token"
MIN_TOKEN_SECONDS = 600  # the Kubernetes minimum for projected tokens
MAX_TOKEN_SECONDS = 86400
# API servers silently extend exactly 3607 s (the kubelet's default request) to a year.
EXTENDED_TOKEN_SECONDS = 3607
CONTEXT_KEY = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"


class Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class JobReference(Model):
    """The Job, in the grant's namespace, whose run bounds the access."""

    name: str = Field(min_length=1, max_length=63, pattern=DNS1123_SUBDOMAIN)


class PolicyRule(Model):
    """One RBAC PolicyRule, namespaced resources only."""

    api_groups: list[Annotated[str, Field(max_length=253)]] = Field(min_length=1, max_length=16)
    resources: list[Annotated[str, Field(min_length=1, max_length=253)]] = Field(min_length=1, max_length=32)
    resource_names: list[Annotated[str, Field(min_length=1, max_length=253)]] = Field(
        default_factory=list, max_length=64
    )
    verbs: list[Annotated[str, Field(min_length=1, max_length=63)]] = Field(min_length=1, max_length=16)


class AccessEntry(Model):
    """Rules for one namespace; the operator makes one Role and one RoleBinding of it."""

    namespace: str | None = Field(default=None, min_length=1, max_length=63, pattern=DNS1123_LABEL)
    rules: list[PolicyRule] = Field(min_length=1, max_length=32)


class TokenSpec(Model):
    """The projected ServiceAccount token that an operator-run Job gets."""

    audiences: list[Annotated[str, Field(min_length=1, max_length=253)]] = Field(
        default_factory=list, max_length=8
    )
    expiration_seconds: int = Field(default=MIN_TOKEN_SECONDS, ge=MIN_TOKEN_SECONDS, le=MAX_TOKEN_SECONDS)
    mount_path: str = Field(default=DEFAULT_TOKEN_PATH, min_length=2, max_length=1024, pattern=r"^/")

    @model_validator(mode="after")
    def _check_expiration(self) -> TokenSpec:
        if self.expiration_seconds == EXTENDED_TOKEN_SECONDS:
            raise ValueError(
                "token.expirationSeconds 3607 is refused: API servers silently extend it to a year"
            )
        return self


class JobTemplateMetadata(Model):
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class JobTemplate(Model):
    """A Job for the operator to create (named after the grant) once the grant's RBAC exists."""

    metadata: JobTemplateMetadata | None = None
    spec: dict[str, Any]

    def pod_spec(self) -> dict[str, Any]:
        pod: dict[str, Any] = self.spec.get("template", {}).get("spec") or {}
        return pod


def job_name(named: str | None, grant_name: str) -> str:
    """The one rule: the Job spec.job names, else (a jobTemplate) the Job the operator creates under
    the grant's own name."""
    return named if named is not None else grant_name


def _template_problems(template: JobTemplate, mount_path: str) -> list[str]:
    pod = template.pod_spec()
    problems = []
    containers = pod.get("containers")
    if not isinstance(containers, list) or not containers:
        problems.append("jobTemplate.spec.template.spec.containers must list at least one container")
        containers = []
    for field in ("serviceAccountName", "serviceAccount"):
        if pod.get(field):
            problems.append(
                f"jobTemplate sets {field}: the operator runs the Job as the grant's ServiceAccount"
            )
    if any(volume.get("name") == TOKEN_VOLUME for volume in pod.get("volumes") or []):
        problems.append(f"jobTemplate already has a volume named {TOKEN_VOLUME}")
    for kind, items in (("initContainers", pod.get("initContainers") or []), ("containers", containers)):
        for container in items:
            for mount in container.get("volumeMounts") or []:
                if mount.get("mountPath", "").rstrip("/") == mount_path.rstrip("/"):
                    problems.append(
                        f"jobTemplate {kind} {container.get('name')} already mounts {mount.get('name')} at "
                        f"{mount_path}, where the grant's token goes"
                    )
    return problems


class TaskGrantSpec(Model):
    job: JobReference | None = None
    job_template: JobTemplate | None = None
    service_account_name: str | None = Field(
        default=None, min_length=1, max_length=253, pattern=DNS1123_SUBDOMAIN
    )
    access: list[AccessEntry] = Field(default_factory=list, max_length=16)
    token: TokenSpec | None = None
    context: dict[
        Annotated[str, Field(min_length=1, max_length=63, pattern=CONTEXT_KEY)],
        Annotated[str, Field(max_length=256)],
    ] = Field(default_factory=dict, max_length=16)
    not_before: AwareDatetime | None = None
    deadline: AwareDatetime | None = None
    duration: Duration | None = None
    reason: str | None = Field(default=None, max_length=1024)

    @model_validator(mode="after")
    def _check_consistency(self) -> TaskGrantSpec:
        if (self.job is None) == (self.job_template is None):
            raise ValueError("exactly one of job and jobTemplate must be set")
        if self.token is not None and self.job_template is None:
            raise ValueError(
                "token needs jobTemplate: only a Job the operator creates gets the grant's token"
            )
        if not self.access and not (self.token and self.token.audiences):
            raise ValueError(
                "access must have at least one entry, unless token.audiences names an external service"
            )
        if self.duration is not None and self.duration <= datetime.timedelta(0):
            raise ValueError("duration must be longer than 0s")
        if self.deadline and self.not_before and self.deadline <= self.not_before:
            raise ValueError("deadline must be later than notBefore")
        if self.job_template is not None:
            problems = _template_problems(self.job_template, self.effective_token.mount_path)
            if problems:
                raise ValueError("; ".join(problems))
        return self

    @property
    def effective_token(self) -> TokenSpec:
        return self.token or TokenSpec()

    def job_name(self, grant_name: str) -> str:
        return job_name(self.job.name if self.job is not None else None, grant_name)


class ApprovalGrant(Model):
    name: str = Field(min_length=1, max_length=63)
    uid: str = Field(min_length=1, max_length=64)


class TaskGrantApprovalSpec(Model):
    grant: ApprovalGrant
    decision: Literal["Approve", "Deny"]
    comment: str | None = Field(default=None, max_length=1024)


class NamespacedName(Model):
    namespace: str
    name: str


class JobStatus(Model):
    name: str
    uid: str | None = None


class Condition(Model):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: AwareDatetime
    observed_generation: int | None = None


class RecordedApproval(Model):
    name: str
    approver: str
    decision: str


class TaskGrantStatus(Model):
    model_config = ConfigDict(extra="ignore")

    phase: Phase | None = None
    reason: str | None = None
    message: str | None = None
    service_account_name: str | None = None
    policy: str | None = None
    roles: list[NamespacedName] = Field(default_factory=list)
    job: JobStatus | None = None
    approved_at: AwareDatetime | None = None
    approvals: list[RecordedApproval] = Field(default_factory=list)
    activated_at: AwareDatetime | None = None
    expires_at: AwareDatetime | None = None
    revoked_at: AwareDatetime | None = None
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)


class LabelSelectorRequirement(Model):
    key: str = Field(min_length=1, max_length=317)
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[Annotated[str, Field(max_length=63)]] = Field(default_factory=list, max_length=64)


class LabelSelector(Model):
    """A standard Kubernetes label selector; an empty one matches everything."""

    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list, max_length=32)


class TargetNamespaces(Model):
    """Namespaces, besides the grant's own, where access may be given."""

    names: list[Annotated[str, Field(min_length=1, max_length=63, pattern=DNS1123_LABEL)]] = Field(
        default_factory=list, max_length=64
    )
    selector: LabelSelector | None = None


class RuleCeiling(Model):
    """The most a requested rule may ask: its groups, resources and verbs must be subsets of these."""

    api_groups: list[Annotated[str, Field(max_length=253)]] = Field(min_length=1, max_length=32)
    resources: list[Annotated[str, Field(min_length=1, max_length=253)]] = Field(min_length=1, max_length=64)
    verbs: list[Annotated[str, Field(min_length=1, max_length=63)]] = Field(min_length=1, max_length=16)
    require_resource_names: bool = False
    resource_names: list[Annotated[str, Field(min_length=1, max_length=253)]] = Field(
        default_factory=list, max_length=64
    )
    resource_name_prefixes: list[Annotated[str, Field(min_length=1, max_length=253)]] = Field(
        default_factory=list, max_length=64
    )

    @model_validator(mode="after")
    def _names_need_requirement(self) -> RuleCeiling:
        if (self.resource_names or self.resource_name_prefixes) and not self.require_resource_names:
            raise ValueError("resourceNames and resourceNamePrefixes need requireResourceNames: true")
        return self


class Approvers(Model):
    users: list[Annotated[str, Field(min_length=1, max_length=253)]] = Field(
        default_factory=list, max_length=64
    )
    groups: list[Annotated[str, Field(min_length=1, max_length=253)]] = Field(
        default_factory=list, max_length=64
    )


class ApprovalPolicy(Model):
    required: bool
    approvers: Approvers = Field(default_factory=Approvers)
    count: int = Field(default=1, ge=1, le=16)
    timeout: Duration = Field(default=datetime.timedelta(seconds=3600))

    def lists(self, username: str, groups: list[str]) -> bool:
        return username in self.approvers.users or any(group in self.approvers.groups for group in groups)


class TaskGrantPolicySpec(Model):
    namespace_selector: LabelSelector
    target_namespaces: TargetNamespaces | None = None
    rules: list[RuleCeiling] = Field(default_factory=list, max_length=64)
    max_duration: Duration | None = None
    allowed_audiences: list[Annotated[str, Field(min_length=1, max_length=253)]] = Field(
        default_factory=list, max_length=32
    )
    max_token_expiration_seconds: int | None = Field(default=None, ge=MIN_TOKEN_SECONDS, le=MAX_TOKEN_SECONDS)
    approval: ApprovalPolicy | None = None
    require_requester_permissions: bool = False

    @model_validator(mode="after")
    def _check_duration(self) -> TaskGrantPolicySpec:
        if self.max_duration is not None and self.max_duration <= datetime.timedelta(0):
            raise ValueError("maxDuration must be longer than 0s")
        return self


class TaskGrantPolicyStatus(Model):
    model_config = ConfigDict(extra="ignore")

    active_grants: int | None = None
    observed_generation: int | None = None


class GrantRef(Model):
    """Identity of one grant object, taken from its metadata."""

    namespace: str
    name: str
    uid: str
    generation: int | None = None
    created: AwareDatetime | None = None

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> GrantRef:
        meta = body.get("metadata", {})
        return cls(
            namespace=meta["namespace"],
            name=meta["name"],
            uid=meta["uid"],
            generation=meta.get("generation"),
            created=meta.get("creationTimestamp"),
        )


def describe_validation_error(error: ValidationError, prefix: str = "spec") -> str:
    """One line per problem, each naming the field as a user wrote it (spec.access[0].rules)."""
    lines = []
    for problem in error.errors(include_url=False):
        path = prefix
        for part in problem["loc"]:
            path += f"[{part}]" if isinstance(part, int) else f".{part}"
        lines.append(f"{path}: {problem['msg']}")
    return "; ".join(lines)


def parse_spec(spec: Mapping[str, Any]) -> TaskGrantSpec:
    return TaskGrantSpec.model_validate(dict(spec))


def parse_policy(spec: Mapping[str, Any]) -> TaskGrantPolicySpec:
    return TaskGrantPolicySpec.model_validate(dict(spec))


def parse_status(status: Mapping[str, Any] | None) -> TaskGrantStatus:
    return TaskGrantStatus.model_validate(dict(status or {}))
