"""`kubectl taskgrant`: list, describe, approve, deny and revoke TaskGrants, and audit standing privilege.

kubectl runs any `kubectl-<name>` executable on PATH as `kubectl <name>`; the package installs
`kubectl-taskgrant`. Every API call goes through taskgrant.kube.KubeApi with the credentials kubectl
would use (--kubeconfig, KUBECONFIG, ~/.kube/config, --context).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib.metadata
import json
import secrets
import sys
import textwrap
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import urllib3
import yaml
from pydantic import ValidationError

from taskgrant.domain import constants
from taskgrant.domain.models import (
    TERMINAL_PHASES,
    ApprovalGrant,
    Phase,
    TaskGrantApprovalSpec,
    describe_validation_error,
    parse_duration,
)
from taskgrant.k8s.client import KubeApi
from taskgrant.k8s.errors import ApiError
from taskgrant.k8s.kubeconfig import ConfigError, context_namespace
from taskgrant.k8s.resources import (
    CLUSTER_ROLE_BINDINGS,
    EVENTS,
    ROLE_BINDINGS,
    ROLES,
    SERVICE_ACCOUNTS,
    TASKGRANT_APPROVALS,
    TASKGRANTS,
    Resource,
    has_labels,
)


def _version() -> str:
    try:
        return importlib.metadata.version("taskgrant-operator")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        return "unknown"


EXIT_OK, EXIT_ERROR, EXIT_FINDINGS = 0, 1, 3
EXIT_INTERRUPTED = 130  # as a shell reports SIGINT
GRANT_TYPE = f"{constants.KIND.lower()}.{constants.GROUP}"  # as kubectl prints it: taskgrant.taskgrant.dev
APPROVAL_TYPE = f"{constants.APPROVAL_KIND.lower()}.{constants.GROUP}"
DEFAULT_REVOKE_COMMENT = "revoked with kubectl taskgrant"
# The alphabet and length of generateName suffixes: no vowels, no look-alike characters.
SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
SUFFIX_LENGTH = 5
WAIT_INTERVAL_SECONDS = 0.25
# The operator revokes at expiresAt; deletions take a moment, so only objects this long past it count.
EXPIRY_GRACE = datetime.timedelta(seconds=10)
MANAGED = {constants.LABEL_MANAGED_BY: constants.MANAGER}
SERVICE_ACCOUNT_USER_PREFIX = "system:serviceaccount:"
NONE = "<none>"
NOT_STAMPED = "<not stamped>"
USER_AGENT = f"kubectl-taskgrant/{_version()}"
HELP_WIDTH = 100


class CommandError(Exception):
    """An expected failure, printed as kubectl prints its own: `error: ...`."""


# ---------------------------------------------------------------------------------------------------
# Formatting


def parse_time(value: Any) -> datetime.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def human_duration(seconds: float) -> str:
    """kubectl's AGE format (apimachinery's HumanDuration): 45s, 3m20s, 17m, 5h3m, 36h, 3d4h, 120d, 2y."""
    if seconds < -1:
        return "<invalid>"
    total = max(int(seconds), 0)
    minutes, hours, days = total // 60, total // 3600, total // 86400
    if total < 120:
        return f"{total}s"
    if minutes < 10:
        return f"{minutes}m" if total % 60 == 0 else f"{minutes}m{total % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 192:
        return f"{days}d" if hours % 24 == 0 else f"{days}d{hours % 24}h"
    if days < 730:
        return f"{days}d"
    years = days // 365
    return f"{years}y" if days % 365 == 0 or days >= 2920 else f"{years}y{days % 365}d"


def age(timestamp: Any, now: datetime.datetime) -> str:
    moment = parse_time(timestamp)
    return human_duration((now - moment).total_seconds()) if moment else "<unknown>"


def table(rows: Sequence[Sequence[str]], indent: str = "") -> str:
    """Columns padded to the widest cell plus three spaces, as kubectl's tabwriter does."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        indent + "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def underlined(*header: str) -> list[list[str]]:
    """A describe sub-table's header and its dashes."""
    return [list(header), ["-" * len(title) for title in header]]


def fields(pairs: Sequence[tuple[str, str]], indent: str = "") -> str:
    """`Label:  value` lines aligned as in kubectl describe."""
    width = max(len(label) for label, _ in pairs) + 2
    return "\n".join(f"{indent}{(label + ':').ljust(width)}{value}".rstrip() for label, value in pairs)


def dump(obj: Any, output: str) -> str:
    if output == "json":
        return json.dumps(obj, indent=4)
    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False).rstrip("\n")


def as_list(items: Iterable[Mapping[str, Any]], kind: str) -> dict[str, Any]:
    """A `kind: List`, as `kubectl get -o json` prints it; list items lack apiVersion and kind."""
    return {
        "apiVersion": "v1",
        "kind": "List",
        "metadata": {"resourceVersion": ""},
        "items": [{"apiVersion": constants.API_VERSION, "kind": kind, **item} for item in items],
    }


def value(text: Any) -> str:
    return str(text) if text not in (None, "", []) else NONE


def identity(annotations: Mapping[str, Any], keys: Sequence[str]) -> str:
    """The identity the admission webhook stamped (username, uid, JSON list of groups), for display."""
    username_key, uid_key, groups_key = keys
    username = annotations.get(username_key)
    if not username:
        return NOT_STAMPED
    try:
        groups = json.loads(annotations.get(groups_key) or "[]")
    except ValueError:
        groups = []
    details = [f"uid {annotations[uid_key]}"] if annotations.get(uid_key) else []
    if isinstance(groups, list) and groups:
        details.append("groups " + ", ".join(str(group) for group in groups))
    return f"{username} ({'; '.join(details)})" if details else str(username)


def metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def phase_of(grant: Mapping[str, Any]) -> tuple[str, str]:
    status = grant.get("status") or {}
    return str(status.get("phase") or ""), str(status.get("reason") or "")


def job_of(grant: Mapping[str, Any]) -> str:
    spec = grant.get("spec") or {}
    job = spec.get("job") or {}
    # A jobTemplate grant's Job is named after the grant (TaskGrantSpec.job_name).
    return str(job.get("name") or (metadata(grant).get("name") if "jobTemplate" in spec else NONE))


def not_found(resource: Resource, name: str) -> ApiError:
    what = f"{resource.plural}.{resource.group}" if resource.group else resource.plural
    return ApiError(404, "NotFound", f'{what} "{name}" not found')


async def get_grant(api: KubeApi, namespace: str, name: str) -> dict[str, Any]:
    grant = await api.get(TASKGRANTS, namespace, name)
    if grant is None:
        raise not_found(TASKGRANTS, name)
    return grant


# ---------------------------------------------------------------------------------------------------
# list


async def list_command(api: KubeApi, args: argparse.Namespace) -> int:
    namespace = None if args.all_namespaces else args.namespace
    grants = sorted(
        await api.list(TASKGRANTS, namespace),
        key=lambda grant: (metadata(grant).get("namespace", ""), metadata(grant).get("name", "")),
    )
    if args.output in ("json", "yaml"):
        print(dump(as_list(grants, constants.KIND), args.output))
        return EXIT_OK
    if args.output == "name":
        for grant in grants:
            print(f"{GRANT_TYPE}/{metadata(grant).get('name')}")
        return EXIT_OK
    if not grants:
        print(
            "No resources found" + ("" if namespace is None else f" in {namespace} namespace."),
            file=sys.stderr,
        )
        return EXIT_OK
    now = datetime.datetime.now(datetime.UTC)
    header = ["NAME", "PHASE", "REASON", "JOB", "POLICY", "EXPIRES", "AGE"]
    rows = []
    for grant in grants:
        meta, status = metadata(grant), grant.get("status") or {}
        phase, reason = phase_of(grant)
        row = [
            str(meta.get("name")),
            value(phase),
            value(reason),
            job_of(grant),
            value(status.get("policy")),
            value(status.get("expiresAt")),
            age(meta.get("creationTimestamp"), now),
        ]
        rows.append([str(meta.get("namespace")), *row] if namespace is None else row)
    print(table([["NAMESPACE", *header] if namespace is None else header, *rows]))
    return EXIT_OK


# ---------------------------------------------------------------------------------------------------
# describe


def describe_rules(rules: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """One row per resource, as `kubectl describe role` shows them: resource.group, names, verbs."""
    rows = underlined("Resources", "Resource Names", "Verbs")
    for rule in rules:
        names = "[" + " ".join(rule.get("resourceNames") or []) + "]"
        verbs = "[" + " ".join(rule.get("verbs") or []) + "]"
        for group in rule.get("apiGroups") or [""]:
            for resource in rule.get("resources") or []:
                rows.append([f"{resource}.{group}" if group else resource, names, verbs])
    return rows


def render_describe(
    grant: Mapping[str, Any],
    approvals: Sequence[Mapping[str, Any]],
    events: Sequence[Mapping[str, Any]],
    now: datetime.datetime,
) -> str:
    meta, spec, status = metadata(grant), grant.get("spec") or {}, grant.get("status") or {}
    annotations = meta.get("annotations") or {}
    created = meta.get("creationTimestamp")
    lines = [
        fields(
            [
                ("Name", str(meta.get("name"))),
                ("Namespace", str(meta.get("namespace"))),
                ("Created", f"{created} ({age(created, now)} ago)" if created else NONE),
                ("Requester", identity(annotations, constants.REQUESTER_ANNOTATIONS)),
                ("Revoke Request", value(annotations.get(constants.ANNOTATION_REVOKE))),
            ]
        ),
        "Spec:",
    ]
    job = job_of(grant) + (" (created by the operator from jobTemplate)" if "jobTemplate" in spec else "")
    token = spec.get("token")
    spec_fields = [
        ("Job", job),
        ("Service Account", value(spec.get("serviceAccountName") or meta.get("name"))),
        ("Reason", value(spec.get("reason"))),
        ("Not Before", value(spec.get("notBefore"))),
        ("Deadline", value(spec.get("deadline"))),
        ("Duration", value(spec.get("duration"))),
    ]
    if token is not None:
        audiences = ", ".join(token.get("audiences") or []) or "the API server"
        spec_fields.append(("Token", f"for {audiences}, {token.get('expirationSeconds', 600)}s"))
    lines.append(fields(spec_fields, "  "))
    lines.append("  Access:")
    for entry in spec.get("access") or []:
        lines.append(f"    Namespace {entry.get('namespace') or meta.get('namespace')}:")
        lines.append(table(describe_rules(entry.get("rules") or []), "      "))
    if not spec.get("access"):
        lines.append(f"    {NONE}")
    job_status = status.get("job") or {}
    lines.append("Status:")
    lines.append(
        fields(
            [
                ("Phase", value(status.get("phase"))),
                ("Reason", value(status.get("reason"))),
                ("Message", value(status.get("message"))),
                ("Policy", value(status.get("policy"))),
                ("Service Account", value(status.get("serviceAccountName"))),
                (
                    "Roles",
                    value(
                        ", ".join(f"{r.get('namespace')}/{r.get('name')}" for r in status.get("roles") or [])
                    ),
                ),
                ("Job", f"{job_status.get('name')} (uid {job_status.get('uid')})" if job_status else NONE),
                ("Approved At", value(status.get("approvedAt"))),
                ("Activated At", value(status.get("activatedAt"))),
                ("Expires At", value(status.get("expiresAt"))),
                ("Revoked At", value(status.get("revokedAt"))),
            ],
            "  ",
        )
    )
    lines.append("Conditions:")
    conditions = status.get("conditions") or []
    if conditions:
        rows = underlined("Type", "Status", "Reason", "Last Transition", "Message")
        rows += [
            [
                str(c.get("type")),
                str(c.get("status")),
                value(c.get("reason")),
                value(c.get("lastTransitionTime")),
                str(c.get("message") or ""),
            ]
            for c in conditions
        ]
        lines.append(table(rows, "  "))
    else:
        lines.append(f"  {NONE}")
    lines.append("Approvals:")
    if approvals:
        rows = underlined("Name", "Decision", "Approver", "Counts", "Age", "Comment")
        for approval in approvals:
            approval_meta, approval_spec = metadata(approval), approval.get("spec") or {}
            uid = (approval_spec.get("grant") or {}).get("uid")
            # An approval counts only for the grant with the UID it names, never a recreated one, and
            # only with the identity the webhook stamps (the operator's policy checks come on top).
            approver = identity(approval_meta.get("annotations") or {}, constants.APPROVER_ANNOTATIONS)
            if uid != meta.get("uid"):
                counts = f"no: for uid {uid}"
            elif approver == NOT_STAMPED:
                counts = "no: approver not stamped"
            else:
                counts = "yes"
            rows.append(
                [
                    str(approval_meta.get("name")),
                    value(approval_spec.get("decision")),
                    approver,
                    counts,
                    age(approval_meta.get("creationTimestamp"), now),
                    str(approval_spec.get("comment") or ""),
                ]
            )
        lines.append(table(rows, "  "))
    else:
        lines.append(f"  {NONE}")
    lines.append("Events:")
    if events:
        rows = underlined("Type", "Reason", "Age", "From", "Message")
        for event in events:
            when = (
                event.get("lastTimestamp")
                or event.get("eventTime")
                or metadata(event).get("creationTimestamp")
            )
            source = (event.get("source") or {}).get("component") or event.get("reportingComponent")
            rows.append(
                [
                    value(event.get("type")),
                    value(event.get("reason")),
                    age(when, now),
                    value(source),
                    str(event.get("message") or ""),
                ]
            )
        lines.append(table(rows, "  "))
    else:
        lines.append(f"  {NONE}")
    return "\n".join(lines)


def event_time(event: Mapping[str, Any]) -> str:
    return str(
        event.get("lastTimestamp") or event.get("eventTime") or metadata(event).get("creationTimestamp") or ""
    )


async def grant_events(api: KubeApi, grant: Mapping[str, Any]) -> list[dict[str, Any]]:
    meta = metadata(grant)
    selector = f"involvedObject.kind={constants.KIND},involvedObject.name={meta.get('name')}"
    result = await api.request(
        "list", "GET", EVENTS.path(meta.get("namespace")), query={"fieldSelector": selector}
    )
    # Filter again, as KubeApi.list does for labels; and, as kubectl describe does, skip the events of
    # an earlier grant of the same name.
    events = [
        event
        for event in result.get("items") or []
        if (event.get("involvedObject") or {}).get("kind") == constants.KIND
        and (event.get("involvedObject") or {}).get("name") == meta.get("name")
        and (event.get("involvedObject") or {}).get("uid") in (None, meta.get("uid"))
    ]
    return sorted(events, key=event_time)


async def describe_command(api: KubeApi, args: argparse.Namespace) -> int:
    grant = await get_grant(api, args.namespace, args.name)
    approvals = [
        approval
        for approval in await api.list(TASKGRANT_APPROVALS, args.namespace)
        if ((approval.get("spec") or {}).get("grant") or {}).get("name") == args.name
    ]
    approvals.sort(key=lambda approval: str(metadata(approval).get("creationTimestamp", "")))
    events = await grant_events(api, grant)
    print(render_describe(grant, approvals, events, datetime.datetime.now(datetime.UTC)))
    return EXIT_OK


# ---------------------------------------------------------------------------------------------------
# approve, deny


def approval_name(grant: str, decision: str) -> str:
    suffix = "".join(secrets.choice(SUFFIX_ALPHABET) for _ in range(SUFFIX_LENGTH))
    return f"{grant}-{decision.lower()}-{suffix}"


async def decide_command(api: KubeApi, args: argparse.Namespace) -> int:
    grant = await get_grant(api, args.namespace, args.name)
    try:
        spec = TaskGrantApprovalSpec(
            grant=ApprovalGrant(name=args.name, uid=metadata(grant)["uid"]),
            decision=args.decision,
            comment=args.comment,
        )
    except ValidationError as error:
        raise CommandError(describe_validation_error(error)) from None
    phase, reason = phase_of(grant)
    if phase in TERMINAL_PHASES:
        print(f"warning: {GRANT_TYPE}/{args.name} is already {phase} ({reason})", file=sys.stderr)
    # No identity annotations: the admission webhook stamps them from the API server's own record.
    meta: dict[str, str] = {"namespace": args.namespace}
    body = {
        "apiVersion": constants.API_VERSION,
        "kind": constants.APPROVAL_KIND,
        "metadata": meta,
        "spec": spec.model_dump(by_alias=True, exclude_none=True),
    }
    # An explicit name rather than generateName: KubeApi.create needs one; a clash (409) draws again.
    for _ in range(3):
        meta["name"] = approval_name(args.name, args.decision)
        approval, created = await api.create(TASKGRANT_APPROVALS, body)
        if created:
            break
    else:
        raise CommandError("could not find a free name for the approval; try again")
    name = metadata(approval).get("name")
    if args.output in ("json", "yaml"):
        print(dump(approval, args.output))
    elif args.output == "name":
        print(f"{APPROVAL_TYPE}/{name}")
    else:
        print(f"{APPROVAL_TYPE}/{name} created")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------------
# revoke


async def wait_for_end(api: KubeApi, namespace: str, name: str, uid: str, timeout: float) -> str:
    """Poll until the grant is Revoked or Denied (or gone); return what became of it."""
    deadline = time.monotonic() + timeout
    while True:
        grant = await api.get(TASKGRANTS, namespace, name)
        if grant is None or metadata(grant).get("uid") != uid:
            return "deleted"
        phase, reason = phase_of(grant)
        if phase in TERMINAL_PHASES:
            return f"{phase} ({reason})"
        if time.monotonic() >= deadline:
            raise CommandError(f"timed out waiting for the condition on {constants.PLURAL}/{name}")
        await asyncio.sleep(WAIT_INTERVAL_SECONDS)


async def revoke_command(api: KubeApi, args: argparse.Namespace) -> int:
    grant = await get_grant(api, args.namespace, args.name)
    ref = f"{GRANT_TYPE}/{args.name}"
    phase, reason = phase_of(grant)
    if phase in TERMINAL_PHASES:  # single use: an ended grant can't end again, and that's fine
        print(f"{ref} is already {phase} ({reason})")
        return EXIT_OK
    comment = args.comment or DEFAULT_REVOKE_COMMENT
    await api.patch(
        TASKGRANTS,
        args.namespace,
        args.name,
        {"metadata": {"annotations": {constants.ANNOTATION_REVOKE: comment}}},
    )
    print(f"{ref} revocation requested")
    if args.wait:
        ended = await wait_for_end(api, args.namespace, args.name, metadata(grant)["uid"], args.timeout)
        print(f"{ref} {ended}")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------------
# audit


@dataclass(frozen=True)
class Binding:
    kind: str
    namespace: str | None
    name: str
    role_kind: str
    role_name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "roleRef": {"kind": self.role_kind, "name": self.role_name},
        }


@dataclass
class PrivilegeFinding:
    """A ServiceAccount whose bindings are not the live, task-bound ones of an Active grant."""

    namespace: str
    name: str
    exists: bool
    bindings: list[Binding] = field(default_factory=list)

    @property
    def finding(self) -> str:
        return "standing privilege" if self.exists else "dangling subject"

    def as_dict(self) -> dict[str, Any]:
        return {
            "serviceAccount": {"namespace": self.namespace, "name": self.name},
            "finding": self.finding,
            "exists": self.exists,
            "bindings": [binding.as_dict() for binding in self.bindings],
        }


@dataclass
class LeftoverFinding:
    """A grant that has ended (or is gone) while objects labelled with its UID remain."""

    namespace: str
    name: str
    uid: str
    phase: str
    reason: str
    expires_at: str | None
    problem: str
    objects: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, namespace, name)

    def as_dict(self) -> dict[str, Any]:
        return {
            "grant": {"namespace": self.namespace, "name": self.name, "uid": self.uid},
            "phase": self.phase or None,
            "reason": self.reason or None,
            "expiresAt": self.expires_at,
            "problem": self.problem,
            "objects": [{"kind": k, "namespace": ns, "name": n} for k, ns, n in self.objects],
        }


@dataclass
class Audit:
    standing_privilege: list[PrivilegeFinding]
    ended_grants_with_objects: list[LeftoverFinding]

    def as_dict(self) -> dict[str, Any]:
        return {
            "standingPrivilege": [finding.as_dict() for finding in self.standing_privilege],
            "endedGrantsWithObjects": [finding.as_dict() for finding in self.ended_grants_with_objects],
        }


class Lookup:
    """Objects by (namespace, name): from one listing, and fetched one by one only outside its scope."""

    def __init__(
        self, api: KubeApi, resource: Resource, items: Iterable[Mapping[str, Any]], scope: str | None
    ) -> None:
        self._api, self._resource, self._scope = api, resource, scope
        self._known: dict[tuple[str, str], Mapping[str, Any] | None] = {
            (str(metadata(item).get("namespace")), str(metadata(item).get("name"))): item for item in items
        }

    async def get(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        key = (namespace, name)
        if key not in self._known:
            listed = self._scope is None or namespace == self._scope
            self._known[key] = None if listed else await self._api.get(self._resource, namespace, name)
        return self._known[key]


def service_account_subject(
    subject: Mapping[str, Any], binding_namespace: str | None
) -> tuple[str, str] | None:
    """The ServiceAccount a subject names: kind ServiceAccount, or the user system:serviceaccount:NS:NAME."""
    kind, name = subject.get("kind"), str(subject.get("name") or "")
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace  # a RoleBinding's own namespace by default
        return (str(namespace), name) if namespace and name else None
    if kind == "User" and name.startswith(SERVICE_ACCOUNT_USER_PREFIX):
        namespace, _, account = name.removeprefix(SERVICE_ACCOUNT_USER_PREFIX).partition(":")
        return (namespace, account) if namespace and account else None
    return None


def grant_label_ref(obj: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """(namespace, name, uid) of the grant an object is labelled as made by, if it is."""
    labels = metadata(obj).get("labels") or {}
    if not has_labels(obj, MANAGED):
        return None
    return (
        str(labels.get(constants.LABEL_GRANT_NAMESPACE, "")),
        str(labels.get(constants.LABEL_GRANT_NAME, "")),
        str(labels.get(constants.LABEL_GRANT_UID, "")),
    )


async def run_audit(api: KubeApi, scope: str | None, now: datetime.datetime) -> Audit:
    """Scope None: the whole cluster. A namespace: its RoleBindings, ServiceAccounts, Roles and grants,
    and the ClusterRoleBindings of its ServiceAccounts."""
    role_bindings, cluster_role_bindings, accounts, grants, roles = await asyncio.gather(
        api.list(ROLE_BINDINGS, scope),
        api.list(CLUSTER_ROLE_BINDINGS),
        api.list(SERVICE_ACCOUNTS, scope),
        api.list(TASKGRANTS, scope),
        api.list(ROLES, scope, labels=MANAGED),
    )
    account_lookup = Lookup(api, SERVICE_ACCOUNTS, accounts, scope)
    grant_lookup = Lookup(api, TASKGRANTS, grants, scope)

    # (1) Every ServiceAccount subject, with the bindings that give it access.
    subjects: dict[tuple[str, str], list[tuple[Mapping[str, Any], Binding]]] = {}
    for kind, items in (("RoleBinding", role_bindings), ("ClusterRoleBinding", cluster_role_bindings)):
        for binding in items:
            meta, role_ref = metadata(binding), binding.get("roleRef") or {}
            namespace = meta.get("namespace") if kind == "RoleBinding" else None
            ref = Binding(
                kind, namespace, str(meta.get("name")), str(role_ref.get("kind")), str(role_ref.get("name"))
            )
            for subject in binding.get("subjects") or []:
                subject_key = service_account_subject(subject, namespace)
                if subject_key is None or (
                    kind == "ClusterRoleBinding" and scope not in (None, subject_key[0])
                ):
                    continue
                entries = subjects.setdefault(subject_key, [])
                if all(existing != ref for _, existing in entries):  # one binding may name it twice
                    entries.append((binding, ref))
    standing = []
    for (namespace, name), entries in sorted(subjects.items()):
        account = await account_lookup.get(namespace, name)
        owner = grant_label_ref(account) if account is not None else None
        live_uid = None
        if owner is not None:
            grant = await grant_lookup.get(owner[0], owner[1])
            if (
                grant is not None
                and metadata(grant).get("uid") == owner[2]
                and phase_of(grant)[0] == Phase.ACTIVE
            ):
                live_uid = owner[2]
        # An Active grant's own bindings are task-bound; any other binding to its account is not.
        extra = [
            ref
            for binding, ref in entries
            if live_uid is None or (grant_label_ref(binding) or ("", "", ""))[2] != live_uid
        ]
        if extra:
            standing.append(PrivilegeFinding(namespace, name, account is not None, extra))

    # (2) Objects labelled with a grant that has ended, expired or is gone.
    labelled: dict[tuple[str, str, str], list[tuple[str, str, str]]] = {}
    for kind, items in (("ServiceAccount", accounts), ("Role", roles), ("RoleBinding", role_bindings)):
        for obj in items:
            owner = grant_label_ref(obj)
            if owner is not None:
                labelled.setdefault(owner, []).append(
                    (kind, str(metadata(obj).get("namespace")), str(metadata(obj).get("name")))
                )
    leftovers = []
    for (namespace, name, uid), objects in sorted(labelled.items()):
        grant = await grant_lookup.get(namespace, name)
        if grant is None or metadata(grant).get("uid") != uid:  # deleted, or recreated under its name
            leftovers.append(
                LeftoverFinding(namespace, name, uid, "", "", None, "grant deleted", sorted(objects))
            )
            continue
        phase, reason = phase_of(grant)
        expires_at = (grant.get("status") or {}).get("expiresAt")
        expiry = parse_time(expires_at)
        if phase in TERMINAL_PHASES:
            problem = f"grant is {phase}"
        elif expiry is not None and now - expiry > EXPIRY_GRACE:
            problem = "grant is past its expiry"
        else:
            continue
        leftovers.append(
            LeftoverFinding(namespace, name, uid, phase, reason, expires_at, problem, sorted(objects))
        )
    return Audit(standing, leftovers)


def render_audit(audit: Audit) -> str:
    sections = []
    if audit.standing_privilege:
        rows = [["SERVICEACCOUNT", "FINDING", "BINDING", "ROLE"]]
        for finding in audit.standing_privilege:
            for binding in finding.bindings:
                rows.append(
                    [
                        f"{finding.namespace}/{finding.name}",
                        finding.finding,
                        str(binding),
                        f"{binding.role_kind}/{binding.role_name}",
                    ]
                )
        sections.append("ServiceAccounts with standing privilege:\n" + table(rows))
    if audit.ended_grants_with_objects:
        rows = [["GRANT", "PHASE", "EXPIRES", "PROBLEM", "OBJECT"]]
        for leftover in audit.ended_grants_with_objects:
            for kind, namespace, name in leftover.objects:
                rows.append(
                    [
                        f"{leftover.namespace}/{leftover.name}",
                        value(leftover.phase),
                        value(leftover.expires_at),
                        leftover.problem,
                        f"{kind} {namespace}/{name}",
                    ]
                )
        sections.append("Ended grants that still have objects (this should never happen):\n" + table(rows))
    if not sections:
        return (
            "No standing privilege found: every ServiceAccount binding belongs to an Active grant, "
            "and no ended grant has objects left."
        )
    return "\n\n".join(sections)


async def audit_command(api: KubeApi, args: argparse.Namespace) -> int:
    # Cluster-wide unless -n is given explicitly: the context's namespace is no reason to look less.
    scope = None if args.all_namespaces or not args.namespace_given else args.namespace
    audit = await run_audit(api, scope, datetime.datetime.now(datetime.UTC))
    print(dump(audit.as_dict(), args.output) if args.output in ("json", "yaml") else render_audit(audit))
    return EXIT_FINDINGS if audit.standing_privilege or audit.ended_grants_with_objects else EXIT_OK


# ---------------------------------------------------------------------------------------------------
# Command line


def timeout_seconds(text: str) -> float:
    try:
        duration = parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return float(duration.total_seconds())


@dataclass(frozen=True)
class Command:
    run: Callable[[KubeApi, argparse.Namespace], Coroutine[Any, Any, int]]
    outputs: frozenset[str]
    help: str
    description: str
    examples: str
    all_namespaces: bool = False


COMMANDS: dict[str, Command] = {
    "list": Command(
        list_command,
        frozenset({"table", "wide", "json", "yaml", "name"}),
        "list TaskGrants",
        "List TaskGrants with their phase, reason, Job, policy and expiry, as `kubectl get tg -o wide`.",
        "  kubectl taskgrant list -n ci\n  kubectl taskgrant list -A\n  kubectl taskgrant list -o yaml",
        all_namespaces=True,
    ),
    "describe": Command(
        describe_command,
        frozenset({"table"}),
        "show one TaskGrant with its approvals and events",
        "Show a TaskGrant's spec (Job, rules per namespace, times), status, conditions, requester, the "
        "TaskGrantApprovals naming it (an approval counts only if it names the grant's current uid) and "
        "its events.",
        "  kubectl taskgrant describe release-42 -n ci",
    ),
    "approve": Command(
        decide_command,
        frozenset({"table", "json", "yaml", "name"}),
        "approve a TaskGrant that awaits approval",
        "Create a TaskGrantApproval with decision Approve for the grant's current uid. The admission "
        "webhook records who you are; you cannot approve a grant you requested.",
        '  kubectl taskgrant approve migrate-42 -n migrations --comment "change CHG-1234"',
    ),
    "deny": Command(
        decide_command,
        frozenset({"table", "json", "yaml", "name"}),
        "deny a TaskGrant that awaits approval",
        "Create a TaskGrantApproval with decision Deny for the grant's current uid; one valid Deny ends "
        "the grant as Denied (ApprovalDenied).",
        '  kubectl taskgrant deny migrate-42 -n migrations --comment "not during the freeze"',
    ),
    "revoke": Command(
        revoke_command,
        frozenset({"table"}),
        "end a grant now (reason ManuallyRevoked)",
        f"Ask the operator to end the grant at once by setting the {constants.ANNOTATION_REVOKE} "
        "annotation; it removes everything the grant created and reports Revoked/ManuallyRevoked. A grant "
        "that has already ended is left as it is (exit status 0).",
        '  kubectl taskgrant revoke release-42 -n ci --comment "incident 77"\n'
        "  kubectl taskgrant revoke release-42 -n ci --wait --timeout 1m",
    ),
    "audit": Command(
        audit_command,
        frozenset({"table", "json", "yaml"}),
        "report standing privilege and leftovers of ended grants",
        "Report (1) ServiceAccounts that RoleBindings or ClusterRoleBindings give access to, other than "
        "through the bindings of an Active grant that manages them ('standing privilege'; a "
        "ServiceAccount that does not exist is a 'dangling subject'), and (2) grants that have ended, "
        "are past their expiry or are gone but still have labelled ServiceAccounts, Roles or RoleBindings "
        "(this should never happen).\n\nCluster-wide by default. With -n NAMESPACE: the RoleBindings, "
        "ServiceAccounts, Roles and grants in that namespace and the ClusterRoleBindings of its "
        "ServiceAccounts (Roles a grant made in other namespaces are then not seen).\n\n"
        "Exit status: 0 nothing found, 3 findings, 1 error.",
        "  kubectl taskgrant audit\n  kubectl taskgrant audit -n ci -o json",
        all_namespaces=True,
    ),
}


def add_global_flags(parser: argparse.ArgumentParser, outputs: Iterable[str]) -> None:
    # SUPPRESS: a flag given before or after the command both count, as with kubectl.
    group = parser.add_argument_group("global flags")
    group.add_argument("--kubeconfig", default=argparse.SUPPRESS, help="path to the kubeconfig file")
    group.add_argument("--context", default=argparse.SUPPRESS, help="the kubeconfig context to use")
    group.add_argument(
        "-n",
        "--namespace",
        default=argparse.SUPPRESS,
        help="the namespace (default: the context's namespace, else default)",
    )
    choices = sorted(set(outputs) - {"table"})
    if choices:  # describe and revoke print text only
        group.add_argument(
            "-o",
            "--output",
            default=argparse.SUPPRESS,
            choices=choices,
            help="output format (default: a table)",
        )


ALL_OUTPUTS = frozenset(output for command in COMMANDS.values() for output in command.outputs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubectl taskgrant",
        description="Work with TaskGrants: task-scoped access that lives exactly as long as its Job.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Examples:\n  kubectl taskgrant list -A\n  kubectl taskgrant audit\n\n"
        "Use `kubectl taskgrant COMMAND --help` for more about a command.",
    )
    add_global_flags(parser, ALL_OUTPUTS)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        sub = commands.add_parser(
            name,
            help=command.help,
            description="\n\n".join(
                textwrap.fill(part, HELP_WIDTH) for part in command.description.split("\n\n")
            ),
            epilog=f"Examples:\n{command.examples}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_global_flags(sub, command.outputs)
        if command.all_namespaces:
            sub.add_argument(
                "-A", "--all-namespaces", action="store_true", help="all namespaces, overriding -n"
            )
        if name not in ("list", "audit"):
            sub.add_argument("name", metavar="NAME", help="the TaskGrant's name")
        if name in ("approve", "deny", "revoke"):
            sub.add_argument("--comment", help="why; kept with the decision or revocation and in events")
        if name == "revoke":
            sub.add_argument("--wait", action="store_true", help="wait until the grant has ended")
            sub.add_argument(
                "--timeout",
                type=timeout_seconds,
                default=30.0,
                metavar="DURATION",
                help="with --wait (default 30s)",
            )
        sub.set_defaults(all_namespaces=False)
        if name in ("approve", "deny"):
            sub.set_defaults(decision=name.capitalize())
    return parser


def connect(kubeconfig: str | None, context: str | None) -> KubeApi:
    """The plugin's own User-Agent, as kubectl sends its own, so audit logs tell them apart."""
    return KubeApi.from_environment(kubeconfig, context, user_agent=USER_AGENT)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help (0) and usage errors; kubectl exits 1 on the latter
        return EXIT_OK if stop.code in (0, None) else EXIT_ERROR
    command = COMMANDS[args.command]
    kubeconfig, context = getattr(args, "kubeconfig", None), getattr(args, "context", None)
    args.output = getattr(args, "output", "table")
    if args.output not in command.outputs:
        allowed = ",".join(sorted(command.outputs - {"table"})) or "none"
        print(
            f"error: {args.command} does not support --output {args.output} (allowed: {allowed})",
            file=sys.stderr,
        )
        return EXIT_ERROR
    args.namespace_given = hasattr(args, "namespace")
    try:
        if not args.namespace_given:
            args.namespace = context_namespace(kubeconfig, context)
        api = connect(kubeconfig, context)
    except (ConfigError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    try:
        return asyncio.run(command.run(api, args))
    except ApiError as error:
        print(f"Error from server ({error.reason}): {error.message}", file=sys.stderr)
    except CommandError as error:
        print(f"error: {error}", file=sys.stderr)
    except urllib3.exceptions.HTTPError as error:
        reason = getattr(error, "reason", None) or error
        print(f"Unable to connect to the server: {reason}", file=sys.stderr)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        api.close()
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
