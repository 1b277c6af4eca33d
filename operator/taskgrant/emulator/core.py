"""
An in-memory Kubernetes API server for tests and demos, built on kmock.

:class:`ClusterEmulator` extends :class:`kmock.KubernetesEmulator` where kmock
deviates from a real API server in ways that matter to an operator:
server-managed metadata, resource versions & watch resumption, the status
subresource, label/field selectors, core v1 namespaces, discovery fixes,
and O(1) per-request reaction matching (kmock re-filters the whole history).

:class:`EmulatedCluster` runs it on 127.0.0.1 in a background thread with its
own event loop, so that both sync code (tests, CLI) and async code can use it.

Deliberately not emulated: ownerReference garbage collection, deletion
propagation, admission, defaulting & schema validation, server-side apply.
"""

import argparse
import asyncio
import bisect
import contextlib
import copy
import datetime
import json
import pathlib
import random
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import aiohttp.web
import attrs
import jsonpatch
import jsonpointer
import kmock
import yaml
from kmock._internal import apps, dsl, enums, parsing, references, rendering
from typing_extensions import override

__all__ = [
    "ClusterEmulator",
    "EmulatedCluster",
    "ServedRequest",
    "declare_crd",
    "load_crds",
    "main",
    "parse_field_selector",
    "parse_label_selector",
]

T = TypeVar("T")
Obj = dict[str, Any]
Predicate = Callable[[Mapping[str, Any]], bool]
ResourceArg = str | kmock.resource
Key = tuple[kmock.resource, str | None, str]  # as in kmock.objects

NAMESPACES: Final = kmock.resource("", "v1", "namespaces")
CRDS: Final = kmock.resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
CRD_VERBS: Final = frozenset(
    {
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    }
)

MERGE_PATCH: Final = "application/merge-patch+json"
JSON_PATCH: Final = "application/json-patch+json"
STRATEGIC_PATCH: Final = "application/strategic-merge-patch+json"

# kmock's path parser crashes on these (it reads "namespaces" as the namespace prefix).
_NAMESPACE_PATH = re.compile(r"/api/v1/namespaces(?:/(?P<name>[^/]+)(?:/(?P<sub>status|finalize))?)?/?")

# Server-managed metadata that clients cannot change with patches/updates.
_MANAGED_META: Final = (
    "name",
    "namespace",
    "uid",
    "creationTimestamp",
    "generation",
    "resourceVersion",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)

# The real API server supports only these field selectors (besides metadata.name/namespace).
_EXTRA_FIELDS: Final[dict[tuple[str, str, str], frozenset[str]]] = {
    ("", "v1", "pods"): frozenset(
        {
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        }
    ),
    ("", "v1", "events"): frozenset(
        {
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        }
    ),
    ("", "v1", "secrets"): frozenset({"type"}),
    ("", "v1", "namespaces"): frozenset({"status.phase"}),
    ("", "v1", "nodes"): frozenset({"spec.unschedulable"}),
    ("batch", "v1", "jobs"): frozenset({"status.successful"}),
}


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rkey(resource: references.Selectable) -> tuple[str, str, str]:
    # Plain tuples: kmock.resource.__eq__ goes through pattern matching and is slow in hot loops.
    return (resource.group or "", resource.version or "", resource.plural or "")


def _error(
    code: int,
    reason: str,
    message: str,
    *,
    resource: references.Selectable | None = None,
    name: str | None = None,
    causes: list[dict[str, str]] | None = None,
) -> kmock.KubernetesError:
    """A Kubernetes ``Status`` failure, rendered by kmock as a proper API error."""
    details: dict[str, Any] = {}
    if name is not None:
        details["name"] = name
    if resource is not None:
        details["group"] = resource.group or ""
        details["kind"] = resource.plural or ""
    if causes:
        details["causes"] = causes
    return kmock.KubernetesError(status=code, reason=reason, message=message, details=details or {"-": "-"})


def _not_found(resource: references.Selectable, name: str) -> kmock.KubernetesError:
    what = f"{resource.plural}.{resource.group}" if resource.group else f"{resource.plural}"
    return _error(404, "NotFound", f'{what} "{name}" not found', resource=resource, name=name)


def _header(request: rendering.Request, name: str) -> str:
    # kmock keeps the headers as a plain (case-sensitive) dict.
    for key, val in request.headers.items():
        if key.lower() == name.lower():
            return val
    return ""


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge-patch (kmock's own merge refuses dict<->scalar replacements)."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result: dict[str, Any] = dict(target) if isinstance(target, Mapping) else {}
    for key, val in patch.items():
        if val is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), val)
    return result


def _split_terms(selector: str) -> list[str]:
    # Commas inside "in (a,b)" belong to the set, not to the list of requirements.
    terms: list[str] = []
    depth = 0
    current: list[str] = []
    for char in selector:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(char)
    terms.append("".join(current))
    return [term.strip() for term in terms if term.strip()]


_KEY = r"[A-Za-z0-9](?:[-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VAL = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_NOT_EXISTS_RE = re.compile(rf"!\s*({_KEY})")
_EXISTS_RE = re.compile(rf"({_KEY})")
_EQUALITY_RE = re.compile(rf"({_KEY})\s*(==|=|!=)\s*({_VAL})")
_SET_RE = re.compile(rf"({_KEY})\s+(in|notin)\s*\(([^()]*)\)")


def parse_label_selector(selector: str) -> Predicate:
    """
    Parse a label selector into a predicate on a labels dict.

    Supports ``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``, ``a notin (x)``,
    ``a``, ``!a``; commas mean AND. Raises ``ValueError`` on bad syntax.
    """
    reqs: list[tuple[str, str, frozenset[str]]] = []
    for term in _split_terms(selector):
        if m := _NOT_EXISTS_RE.fullmatch(term):
            reqs.append((m[1], "!", frozenset()))
        elif m := _EQUALITY_RE.fullmatch(term):
            reqs.append((m[1], "notin" if m[2] == "!=" else "in", frozenset({m[3]})))
        elif m := _SET_RE.fullmatch(term):
            values = frozenset(v.strip() for v in m[3].split(","))
            if not all(v and re.fullmatch(_VAL, v) for v in values):  # "in ()" is invalid too
                raise ValueError(f"unable to parse requirement: {term!r}")
            reqs.append((m[1], m[2], values))
        elif m := _EXISTS_RE.fullmatch(term):
            reqs.append((m[1], "exists", frozenset()))
        else:
            raise ValueError(f"unable to parse requirement: {term!r}")

    def check(labels: Mapping[str, Any]) -> bool:
        for key, op, values in reqs:
            present = key in labels
            if op == "exists" and not present:
                return False
            if op == "!" and present:
                return False
            if op == "in" and (not present or labels[key] not in values):
                return False
            if op == "notin" and present and labels[key] in values:
                return False
        return True

    return check


def _field_value(obj: Mapping[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def parse_field_selector(selector: str, resource: references.Selectable | None = None) -> Predicate:
    """
    Parse a field selector into a predicate on an object.

    Like the real API server, only ``metadata.name``, ``metadata.namespace``
    and a few per-resource fields are accepted; others raise ``ValueError``.
    """
    allowed = {"metadata.name", "metadata.namespace"}
    allowed |= _EXTRA_FIELDS.get(_rkey(resource), frozenset()) if resource is not None else set()
    reqs: list[tuple[str, bool, str]] = []
    for term in _split_terms(selector):
        m = re.fullmatch(r"([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*)", term)
        if m is None:
            raise ValueError(f"invalid selector: {term!r}")
        if m[1] not in allowed:
            raise ValueError(f"field label not supported: {m[1]}")
        reqs.append((m[1], m[2] != "!=", m[3].strip()))

    def check(obj: Mapping[str, Any]) -> bool:
        return all((_field_value(obj, path) == value) == equal for path, equal, value in reqs)

    return check


@attrs.frozen(kw_only=True)
class ServedRequest:
    """A thread-safe snapshot of one served request, for counting API calls in tests."""

    id: int
    method: str
    path: str
    params: Mapping[str, str]
    group: str | None
    version: str | None
    plural: str | None
    namespace: str | None
    name: str | None
    subresource: str | None
    action: str | None  # kmock's action: list, watch, fetch, create, update, delete
    verb: str | None  # the RBAC-style verb: get, list, watch, create, update, patch, delete, deletecollection
    status: int | None  # None while still streaming (watches)
    data: Any
    user_agent: str
    received: float  # time.monotonic() when the request arrived
    answered: float | None  # time.monotonic() when its response was ready (None while streaming)

    @property
    def resource(self) -> str | None:
        if self.version is None or self.plural is None:
            return None
        return f"{self.group}/{self.version}/{self.plural}" if self.group else f"{self.version}/{self.plural}"


class NoReactionError(NotImplementedError):
    """kmock's protocol for "no reaction matched this request": its dispatch catches NotImplementedError
    from nested handlers and falls back to the next one (kmock.RawHandler does the same)."""


@attrs.frozen
class Fault:
    """An API failure to inject: the next `times` requests with this verb on this resource fail."""

    verb: str  # as ServedRequest.verb: get, list, watch, create, patch, update, delete, deletecollection
    plural: str
    status: int
    times: int = 1
    retry_after: int | None = None
    reason: str = "InternalError"


def _verb(request: rendering.Request) -> str | None:
    if request.resource is None or request.resource.plural is None:
        return None  # discovery & non-resource URLs
    method = request.method
    if request.action == enums.action.WATCH:
        return "watch"
    if method == enums.method.GET:
        return "get" if request.name else "list"
    if method == enums.method.POST:
        return "create"  # incl. subresources, e.g. pods/eviction
    if method == enums.method.PATCH:
        return "patch"
    if method == enums.method.PUT:
        return "update"
    if method == enums.method.DELETE:
        return "delete" if request.name else "deletecollection"
    return None


@attrs.define(kw_only=True)
class ClusterEmulator(kmock.KubernetesEmulator):
    """
    kmock's Kubernetes emulator with the semantics of a real API server.

    The objects are still stored in ``self.objects`` (kmock's histories),
    so kmock-style assertions keep working; but prefer creating objects via
    the API or :meth:`create_object`: seeded ``objects[...]`` get no metadata
    and no watch events.
    """

    # If true, creating objects in non-existent namespaces fails with 404 (as in a real cluster).
    require_namespaces: bool = False
    initial_namespaces: Sequence[str] = ("default",)
    bundled_resources: bool = True  # load kmock's bundled core/batch/rbac/... discovery data
    event_log_size: int = 100_000  # watch-resumption window; older resourceVersions get "410 Gone"

    _rv: int = attrs.field(default=0, init=False)
    _log: list[tuple[int, tuple[str, str, str], str, Obj, Obj | None]] = attrs.field(factory=list, init=False)
    _log_floor: int = attrs.field(default=0, init=False)
    _wakeup: asyncio.Event = attrs.field(factory=asyncio.Event, init=False)
    _closing: bool = attrs.field(default=False, init=False)
    _faults: dict[Fault, int] = attrs.field(factory=dict, init=False)
    _access: set[tuple[str | None, ...]] = attrs.field(
        factory=set, init=False
    )  # see allow_access()  # each fault: how many more times
    # Fault injection for watch-streams: see cut_watches() and silence_watches().
    _watch_streams: int = attrs.field(default=0, init=False)
    _watch_cuts: int = attrs.field(default=0, init=False)
    _silenced_up_to: int = attrs.field(default=0, init=False)
    _results: dict[int, rendering.Payload] = attrs.field(factory=dict, init=False)
    _statuses: dict[int, int] = attrs.field(factory=dict, init=False)
    _times: dict[int, tuple[float, float | None]] = attrs.field(factory=dict, init=False)
    _custom: set[tuple[str, str, str]] = attrs.field(factory=set, init=False)
    # Keys of self._objects by resource and namespace, so that lists never scan the whole store.
    _by_resource: dict[tuple[str, str, str], dict[str | None, dict[Key, None]]] = attrs.field(
        factory=dict, init=False
    )
    _by_namespace: dict[str | None, dict[Key, None]] = attrs.field(factory=dict, init=False)
    _indexed: int = attrs.field(default=0, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.fallback[enums.method.PUT] << self._serve_replace
        self.fallback[enums.method.DELETE] << self._serve_delete_collection
        self.fallback["get /api/"] << self._serve_api
        self.fallback["get /apis/"] << self._serve_apis
        if self.bundled_resources:
            self.resources.load_bundled()
        for namespace in self.initial_namespaces:
            self.create_object(NAMESPACES, {"metadata": {"name": namespace}})

    # ----------------------------------------------------------------------------------------------
    # Public state accessors & mutators. They are synchronous and must run in the server's loop
    # (or before it starts). EmulatedCluster wraps them for other threads.
    # ----------------------------------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        """The latest (global) resourceVersion."""
        return self._rv

    def resolve(self, resource: ResourceArg) -> kmock.resource:
        """Turn 'group/version/plural' or a partial name ('taskgrants', 'jobs.batch') into a resource."""
        res = kmock.resource(resource)
        if res.group is not None and res.version is not None and res.plural is not None:
            return res
        name = resource.lower() if isinstance(resource, str) else None
        found = [
            known
            for known in self.resources
            if (res.check(known) and res.plural is not None)
            or (
                name is not None
                and name
                in {
                    (self.resources[known].kind or "").lower(),
                    self.resources[known].singular or "",
                }
                | self.resources[known].shortnames
            )
        ]
        if len(found) != 1:
            raise ValueError(f"Cannot resolve the resource unambiguously: {resource!r} -> {found!r}")
        return found[0]

    def list_objects(self, resource: ResourceArg, namespace: str | None = None) -> list[Obj]:
        """Deep copies of the current (non-deleted) objects; namespace=None means all namespaces."""
        return [copy.deepcopy(obj) for obj in self._live(self.resolve(resource), namespace)]

    def get_object(self, resource: ResourceArg, name: str, namespace: str | None = None) -> Obj | None:
        res = self.resolve(resource)
        found = self._current(self._key(res, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def create_object(
        self,
        resource: ResourceArg,
        body: Mapping[str, Any],
        namespace: str | None = None,
    ) -> Obj:
        """Create as the API does: server-managed metadata, 409 on duplicates, an ADDED event."""
        res = self.resolve(resource)
        if not isinstance(body, Mapping) or not isinstance(body.get("metadata", {}), Mapping):
            raise _error(400, "BadRequest", "the body must be an object with an object in metadata")
        obj: Obj = copy.deepcopy(dict(body))
        meta: Obj = obj.setdefault("metadata", {})
        info = self._info(res)

        namespaced = info.namespaced if info is not None else None
        body_ns = meta.get("namespace") or None
        if namespaced is False:
            meta.pop("namespace", None)
            namespace = None
        else:
            if namespace and body_ns and namespace != body_ns:
                raise _error(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent on the request",
                )
            namespace = namespace or body_ns
            if namespaced and not namespace:
                raise _error(400, "BadRequest", "a namespace is required for a namespaced resource")
            if namespace:
                meta["namespace"] = namespace

        kind = (info.kind if info is not None else None) or (res.plural or "").capitalize()
        if not meta.get("name") and meta.get("generateName"):
            alphabet = "bcdfghjklmnpqrstvwxz2456789"  # as in the API server: no vowels, no look-alikes
            for _ in range(100):
                name = meta["generateName"] + "".join(random.choices(alphabet, k=5))
                if self._current(self._key(res, namespace, name)) is None:
                    break
            meta["name"] = name
        if not meta.get("name"):
            what = f"{kind}.{res.group}" if res.group else kind
            raise _error(
                422,
                "Invalid",
                f'{what} "" is invalid: metadata.name: Required value: name or generateName is required',
                resource=res,
                name="",
                causes=[
                    {
                        "reason": "FieldValueRequired",
                        "field": "metadata.name",
                        "message": "Required value: name or generateName is required",
                    }
                ],
            )
        name = meta["name"]

        if namespace is not None and res != NAMESPACES:
            ns_obj = self._current((NAMESPACES, None, namespace))
            if ns_obj is None and self.require_namespaces:
                raise _not_found(NAMESPACES, namespace)
            if ns_obj is not None and ns_obj.get("metadata", {}).get("deletionTimestamp"):
                raise _error(
                    403,
                    "Forbidden",
                    f"unable to create new content in namespace {namespace} because it is being terminated",
                    resource=res,
                    name=name,
                )

        key = self._key(res, namespace, name)
        if self._current(key) is not None:
            what = f"{res.plural}.{res.group}" if res.group else f"{res.plural}"
            raise _error(409, "AlreadyExists", f'{what} "{name}" already exists', resource=res, name=name)

        for field in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(field, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _now()
        meta["generation"] = 1
        meta["resourceVersion"] = str(self._next_rv())
        obj.setdefault("apiVersion", f"{res.group}/{res.version}" if res.group else res.version)
        obj.setdefault("kind", kind)
        if self._has_status(res):
            obj.pop("status", None)  # as the API does for resources with a status subresource
        if res == NAMESPACES:
            obj.setdefault("spec", {"finalizers": ["kubernetes"]})
            obj["status"] = {"phase": "Active"}

        if key in self._objects:
            self._objects[key].create(obj)  # re-creation continues the soft-deleted history
        else:
            self._objects[key] = obj
            self._index(key)
        self._emit(res, "ADDED", obj, None)
        return copy.deepcopy(obj)

    def patch_object(
        self,
        resource: ResourceArg,
        name: str,
        patch: Any,
        namespace: str | None = None,
        *,
        subresource: str | None = None,
        content_type: str = MERGE_PATCH,
    ) -> Obj:
        """Patch (merge-, json-, or strategic-as-merge-) the object or its status subresource."""
        res = self.resolve(resource)
        key = self._key(res, namespace, name)
        old = self._current(key)
        if old is None:
            raise _not_found(res, name)
        base = copy.deepcopy(old)
        if content_type == JSON_PATCH:
            if not isinstance(patch, list):
                raise _error(400, "BadRequest", "a json-patch must be a list of operations")
            try:
                new = jsonpatch.apply_patch(base, patch)
            except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as e:
                raise _error(
                    422, "Invalid", f"the json-patch cannot be applied: {e}", resource=res, name=name
                ) from e
        elif content_type in (MERGE_PATCH, STRATEGIC_PATCH):
            if content_type == STRATEGIC_PATCH and _rkey(res) in self._custom:
                raise _error(
                    415,
                    "UnsupportedMediaType",
                    "the body of the request was in an unknown format - accepted media types "
                    "include: application/json-patch+json, application/merge-patch+json",
                )
            if not isinstance(patch, Mapping):
                raise _error(400, "BadRequest", "a merge-patch must be an object")
            new = _merge_patch(base, patch)  # NB: strategic merge of lists is approximated as merge-patch
        else:
            raise _error(415, "UnsupportedMediaType", f"the media type is not supported: {content_type!r}")
        return self._update(res, key, old, new, subresource)

    def replace_object(
        self,
        resource: ResourceArg,
        name: str,
        body: Mapping[str, Any],
        namespace: str | None = None,
        *,
        subresource: str | None = None,
    ) -> Obj:
        """Replace (PUT) the whole object or its status subresource."""
        res = self.resolve(resource)
        key = self._key(res, namespace, name)
        old = self._current(key)
        if old is None:
            raise _not_found(res, name)
        if not isinstance(body, Mapping) or body.get("metadata", {}).get("name", name) != name:
            raise _error(400, "BadRequest", "the name of the object does not match the name on the URL")
        return self._update(res, key, old, copy.deepcopy(dict(body)), subresource)

    def delete_object(self, resource: ResourceArg, name: str, namespace: str | None = None) -> Obj:
        """Delete, or only mark for deletion if there are finalizers; returns the last state."""
        res = self.resolve(resource)
        key = self._key(res, namespace, name)
        if self._current(key) is None:
            raise _not_found(res, name)
        return self._delete_key(key)

    def inject_fault(self, fault: Fault) -> None:
        """Answer the next `fault.times` matching requests with `fault.status`, changing nothing."""
        self._faults[fault] = fault.times

    def clear_faults(self) -> None:
        self._faults.clear()

    def allow_access(
        self, user: str, verb: str, group: str, resource: str, namespace: str | None = None
    ) -> None:
        """Make SubjectAccessReviews allow this (namespace None: in every namespace).

        This is not RBAC evaluation: tests say what a user may do, and reviews answer from that list.
        """
        self._access.add((user, verb, group, resource, namespace))

    def _review_access(self, review: Mapping[str, Any]) -> dict[str, Any]:
        spec = review.get("spec") or {}
        attributes = spec.get("resourceAttributes") or {}
        resource = attributes.get("resource", "")
        if attributes.get("subresource"):
            resource += f"/{attributes['subresource']}"
        wanted = (spec.get("user"), attributes.get("verb"), attributes.get("group", ""), resource)
        allowed = (*wanted, attributes.get("namespace")) in self._access or (*wanted, None) in self._access
        reason = "allowed by the emulator's access list" if allowed else "not in the emulator's access list"
        return {**review, "status": {"allowed": allowed, "reason": reason}}

    def _take_fault(self, request: rendering.Request) -> Fault | None:
        verb, plural = _verb(request), request.resource.plural if request.resource else None
        for fault, remaining in self._faults.items():
            if remaining > 0 and fault.verb == verb and fault.plural == plural:
                self._faults[fault] = remaining - 1
                return fault
        return None

    def cut_watches(self) -> None:
        """End every open watch-stream now, as a dropped connection or an API server restart would."""
        self._watch_cuts += 1
        self._wake()

    def silence_watches(self) -> None:
        """Keep every open watch-stream open but deliver nothing more on it (a hung connection).

        Streams opened later work normally, so a client that detects the silence and reconnects recovers.
        """
        self._silenced_up_to = self._watch_streams
        self._wake()

    def shutdown(self) -> None:
        """End all watch-streams, so that the HTTP server can stop without waiting for them."""
        self._closing = True
        self._wake()

    # ----------------------------------------------------------------------------------------------
    # Internal state machinery.
    # ----------------------------------------------------------------------------------------------

    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def _info(self, res: kmock.resource) -> kmock.ResourceInfo | None:
        # NB: not .get(): kmock's ResourcesArray auto-creates the missing entries on item access.
        return self.resources[res] if res in self.resources else None  # noqa: SIM401

    def _key(self, res: kmock.resource, namespace: str | None, name: str) -> Key:
        info = self._info(res)
        namespaced = info.namespaced if info is not None else None
        return (res, None if namespaced is False else namespace, name)

    def _index(self, key: Key) -> None:
        self._by_resource.setdefault(_rkey(key[0]), {}).setdefault(key[1], {})[key] = None
        self._by_namespace.setdefault(key[1], {})[key] = None
        self._indexed += 1

    def _reindex(self) -> None:
        """Catch up with keys that kmock itself (or a test's seeding) put into the store."""
        if self._indexed != len(self._objects):
            self._by_resource.clear()
            self._by_namespace.clear()
            self._indexed = 0
            for key in list(self._objects.keys()):
                self._index(key)

    def _keys_of(self, res: kmock.resource, namespace: str | None) -> list[Key]:
        """The keys (deleted ones too) of one resource, in one namespace or (None) in all of them."""
        self._reindex()
        scopes = self._by_resource.get(_rkey(res), {})
        if namespace is not None:
            return list(scopes.get(namespace, ()))
        return [key for keys in scopes.values() for key in keys]

    def _keys_in(self, namespace: str) -> list[Key]:
        self._reindex()
        return list(self._by_namespace.get(namespace, ()))

    def _live(self, res: kmock.resource, namespace: str | None) -> Iterator[Obj]:
        for key in self._keys_of(res, namespace):
            obj = self._current(key)
            if obj is not None:
                yield obj

    def _matches(self, key: Key, match: Predicate) -> bool:
        obj = self._current(key)
        return obj is not None and match(obj)

    def _current(self, key: Key) -> Obj | None:
        if key in self._objects:
            obj = self._objects[key]
            if not obj.deleted:
                return obj.raw
        return None

    def _has_status(self, res: kmock.resource) -> bool | None:
        """True/False if the resource is declared with/without a status subresource; None if unknown."""
        if res not in self.resources:
            return None
        return "status" in self.resources[res].subresources

    def _known(self, res: kmock.resource) -> bool:
        return res in self.resources or any(_rkey(known) == _rkey(res) for known in self._get_resources())

    def _wake(self) -> None:
        # Swap the event so that the woken watchers wait for the next change on a fresh one.
        wakeup, self._wakeup = self._wakeup, asyncio.Event()
        wakeup.set()

    def _emit(self, res: kmock.resource, etype: str, obj: Obj, old: Obj | None) -> None:
        rv = int(obj.get("metadata", {}).get("resourceVersion") or self._rv)
        self._log.append((rv, _rkey(res), etype, copy.deepcopy(obj), copy.deepcopy(old)))
        if len(self._log) > 2 * self.event_log_size:
            cut = len(self._log) - self.event_log_size
            self._log_floor = self._log[cut - 1][0]
            del self._log[:cut]
        self._wake()

    def _store(self, key: Key, obj: Obj) -> None:
        self._objects[key].history.append(obj)

    def _update(
        self,
        res: kmock.resource,
        key: Key,
        old: Obj,
        new: Any,
        subresource: str | None,
    ) -> Obj:
        if not isinstance(new, dict) or not isinstance(new.get("metadata", {}), dict):
            raise _error(422, "Invalid", "the resulting object must be an object with an object in metadata")
        has_status = self._has_status(res)
        old_meta: Obj = old.get("metadata", {})
        new_meta: Obj = new.get("metadata", {})

        # Optimistic concurrency: a stale resourceVersion in the request is a conflict.
        new_rv = new_meta.get("resourceVersion")
        if new_rv and old_meta.get("resourceVersion") and str(new_rv) != str(old_meta.get("resourceVersion")):
            what = f"{res.plural}.{res.group}" if res.group else f"{res.plural}"
            raise _error(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {what} "{key[2]}": the object has been modified; '
                "please apply your changes to the latest version and try again",
                resource=res,
                name=key[2],
            )

        # The status subresource changes only the status; the main resource never changes it.
        result: Obj
        if subresource == "status":
            if has_status is False:
                raise _not_found(res, f"{key[2]}/status")
            result = copy.deepcopy(old)
            if "status" in new:
                result["status"] = new["status"]
            else:
                result.pop("status", None)
        else:
            result = new
            if has_status:
                if "status" in old:
                    result["status"] = copy.deepcopy(old["status"])
                else:
                    result.pop("status", None)

        meta: Obj = result.setdefault("metadata", {})
        for field in _MANAGED_META:
            if field in old_meta:
                meta[field] = old_meta[field]
            else:
                meta.pop(field, None)
        if old_meta.get("deletionTimestamp"):
            added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
            if added:
                raise _error(
                    422,
                    "Invalid",
                    "metadata.finalizers: Forbidden: no new finalizers can be added if the object "
                    f"is being deleted, found new finalizers {sorted(added)}",
                    resource=res,
                    name=key[2],
                )

        # The generation tracks the desired state: anything except metadata (and the status subresource).
        def content(obj: Obj) -> Obj:
            return {k: v for k, v in obj.items() if k != "metadata" and not (has_status and k == "status")}

        if subresource is None and content(result) != content(old):
            meta["generation"] = int(old_meta.get("generation") or 0) + 1

        if result == old:
            return copy.deepcopy(old)  # no-op writes change nothing and emit nothing, as in a real cluster

        meta["resourceVersion"] = str(self._next_rv())
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._store(key, result)
            self._objects[key].delete()
            self._emit(res, "DELETED", result, old)
            self._finalize_namespace(key[1])
        else:
            self._store(key, result)
            self._emit(res, "MODIFIED", result, old)
        return copy.deepcopy(result)

    def _delete_key(self, key: Key) -> Obj:
        res = key[0]
        old = self._current(key)
        assert old is not None
        meta: Obj = old.get("metadata", {})
        if meta.get("deletionTimestamp"):
            return copy.deepcopy(old)  # already being deleted
        if meta.get("finalizers") or res == NAMESPACES:
            new = copy.deepcopy(old)
            new.setdefault("metadata", {})["deletionTimestamp"] = _now()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            new["metadata"]["resourceVersion"] = str(self._next_rv())
            if res == NAMESPACES:
                new["status"] = dict(new.get("status") or {}, phase="Terminating")
            self._store(key, new)
            self._emit(res, "MODIFIED", new, old)
            if res == NAMESPACES:
                self._purge_namespace(key[2])
            return copy.deepcopy(self._objects[key].last.raw)
        final = copy.deepcopy(old)
        final.setdefault("metadata", {})["resourceVersion"] = str(self._next_rv())
        self._store(key, final)
        self._objects[key].delete()
        self._emit(res, "DELETED", final, old)
        self._finalize_namespace(key[1])
        return copy.deepcopy(final)

    def _purge_namespace(self, namespace: str) -> None:
        """Delete everything in a terminating namespace, as the namespace controller does."""
        for key in self._keys_in(namespace):
            if key[0] != NAMESPACES and self._current(key) is not None:
                self._delete_key(key)
        self._finalize_namespace(namespace)

    def _finalize_namespace(self, namespace: str | None) -> None:
        """Remove a terminating namespace once it is empty."""
        if namespace is None:
            return
        key = (NAMESPACES, None, namespace)
        ns_obj = self._current(key)
        if ns_obj is None or not ns_obj.get("metadata", {}).get("deletionTimestamp"):
            return
        if ns_obj["metadata"].get("finalizers"):
            return
        if any(k[0] != NAMESPACES and self._current(k) is not None for k in self._keys_in(namespace)):
            return
        final = copy.deepcopy(ns_obj)
        final["metadata"]["resourceVersion"] = str(self._next_rv())
        final["spec"] = dict(final.get("spec") or {}, finalizers=[])
        self._store(key, final)
        self._objects[key].delete()
        self._emit(NAMESPACES, "DELETED", final, ns_obj)

    # ----------------------------------------------------------------------------------------------
    # HTTP layer: parsing, dispatching, serving.
    # ----------------------------------------------------------------------------------------------

    @override
    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        # A copy of RawHandler.__call__ with 2 changes: our own parser (for /api/v1/namespaces), and
        # 4xx Kubernetes errors are not accumulated as server errors (they are normal API answers).
        await raw_request.read()
        raw_response: aiohttp.web.StreamResponse | None = None
        request: rendering.Request | None = None
        try:
            if self.limit is not None and len(self._requests) >= self.limit:
                raise apps.KMockError("Too many requests have been served so far.")
            received = time.monotonic()
            request = await self._parse_request(raw_request, id=len(self._requests))
            self._requests.append(request)
            self._times[request.id] = (received, None)
            try:
                response = await self._handle(request)
                self._statuses[request.id] = response.status
                self._times[request.id] = (received, time.monotonic())
                return response
            except rendering.StreamingError as e:
                raw_response = e.args[0]
                if e.__cause__ is not None:
                    raise e.__cause__  # noqa: B904  # unwrap as kmock does
                raise
        except Exception as e:
            if not self._errors:
                raise
            if not isinstance(e, kmock.KubernetesError) or e.status >= 500:
                self._errors[-1].append(e)
            if raw_response is None or not raw_response.prepared:
                response = await self._render_error(e)
            else:
                await self._stream_error(e, raw_response)
                await raw_response.write_eof()
                response = raw_response
            if request is not None:
                self._statuses[request.id] = response.status
            return response

    async def _parse_request(self, raw_request: aiohttp.web.BaseRequest, *, id: int) -> rendering.Request:
        match = _NAMESPACE_PATH.fullmatch(raw_request.path)
        if match is None:
            return await rendering.Request._parse(raw_request, id=id)

        # Same as kmock's Request._parse(), but with the path parsed as a cluster-scoped resource.
        body = await raw_request.read()
        text = await raw_request.text()
        try:
            data = json.loads(text) if text else None
        except ValueError:
            data = None
        k8s = parsing.ParsedPath(
            group="", version="v1", plural="namespaces", name=match["name"], subresource=match["sub"]
        )
        method = enums.method(raw_request.method)
        return rendering.Request(
            id=id,
            raw_request=raw_request,
            url=raw_request.url,
            method=method,
            params=dict(raw_request.query),
            headers=dict(raw_request.headers),
            cookies=dict(raw_request.cookies),
            data=data,
            body=body,
            text=text,
            action=parsing.guess_k8s(k8s, method, dict(raw_request.query)),
            resource=NAMESPACES,
            namespace=None,
            name=match["name"],
            subresource=match["sub"],
        )

    @override
    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        # The state changes before the reactions (as in kmock), so that user reactions can intercept
        # the responses, but the stored objects & watch-streams stay consistent.
        res = request.resource
        if res is not None and (res.group, res.plural) == ("authorization.k8s.io", "subjectaccessreviews"):
            return aiohttp.web.json_response(self._review_access(self._body(request)), status=201)
        fault = self._take_fault(request)
        if fault is not None:  # an injected failure changes nothing, as a failed request would not
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
            status = {
                "apiVersion": "v1",
                "kind": "Status",
                "metadata": {},
                "status": "Failure",
                "code": fault.status,
                "reason": fault.reason,
                "message": "injected fault",
            }
            return aiohttp.web.json_response(status, status=fault.status, headers=headers)
        writing = request.method != enums.method.GET and request.subresource in (None, "status")
        if writing and res is not None and res.version is not None and res.plural is not None:
            if not self._known(res):
                raise _error(
                    404, "NotFound", "the server could not find the requested resource", resource=res
                )
            result = self._write(request, res)
            if result is not None:
                self._results[request.id] = result
        try:
            return await self._dispatch(request)
        finally:
            self._results.pop(request.id, None)

    def _write(self, request: rendering.Request, res: kmock.resource) -> rendering.Payload:
        method, name, sub = request.method, request.name, request.subresource
        if request.action == enums.action.CREATE and sub is None:
            body = self._body(request)
            return rendering.Response(status=201, payload=self.create_object(res, body, request.namespace))
        elif request.action == enums.action.UPDATE and name is not None:
            content_type = _header(request, "Content-Type").split(";")[0].strip().lower() or MERGE_PATCH
            return self.patch_object(
                res, name, self._body(request), request.namespace, subresource=sub, content_type=content_type
            )
        elif method == enums.method.PUT and name is not None:
            return self.replace_object(res, name, self._body(request), request.namespace, subresource=sub)
        elif request.action == enums.action.DELETE and name is not None and sub is None:
            result = self.delete_object(res, name, request.namespace)
            if self._current(self._key(res, request.namespace, name)) is not None:
                return result  # still there: finalizers or a terminating namespace
            return {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {
                    "name": name,
                    "group": res.group,
                    "kind": res.plural,
                    "uid": result.get("metadata", {}).get("uid"),
                },
            }
        elif method == enums.method.DELETE and name is None and sub is None:
            match = self._matcher(request, res)
            keys = [key for key in self._keys_of(res, request.namespace) if self._matches(key, match)]
            items = [self._delete_key(key) for key in keys if self._current(key) is not None]
            return self._list_payload(res, items)
        return None

    @staticmethod
    def _body(request: rendering.Request) -> Any:
        try:
            return json.loads(request.body) if request.body else None
        except ValueError:
            raise _error(400, "BadRequest", "the request body is not valid JSON") from None

    async def _dispatch(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        # A copy of RawHandler._handle(), except for the matching: kmock checks `request in view`,
        # which re-filters the whole request history for every request (O(N) per request).
        # Here, the request alone is checked against the view's chain of criteria (O(1)).
        priorities: list[tuple[float, ...]] = [payload.priorities for payload in self._payloads]
        max_length: int = max(len(priority) for priority in priorities) if priorities else 0
        priorities = [tuple(-p for p in priority) for priority in priorities]
        priorities = [priority + (0,) * (max_length - len(priority)) for priority in priorities]
        indexes = sorted(range(len(priorities)), key=lambda index: priorities[index])
        payloads = [self._payloads[index] for index in indexes]
        for payload in payloads:
            if not payload._disabled.is_set() and self._sees(payload._source, request):
                try:
                    return await payload(request)
                except rendering.ReactionMismatchError:
                    payload._disabled.set()
                except NotImplementedError:
                    pass
        raise NoReactionError("Undefined server behaviour: no reaction matching the request is defined.")

    def _sees(self, view: dsl.View, request: rendering.Request) -> bool:
        """Whether the request is visible through the view; same semantics as ``request in view``."""
        match view:
            case dsl.Root():
                return view is self or any(req is request for req in view._requests)
            case dsl.Filter():
                return self._sees(view._source, request) and bool(view.criteria(request))
            case dsl.Priority():
                return self._sees(view._source, request)
            case dsl.OrGroup():
                return any(self._sees(source, request) for source in view._sources)
            case dsl.AndGroup():
                return all(self._sees(source, request) for source in view._sources)
            case dsl.Exclusion():
                return self._sees(view._source, request) and not any(
                    self._sees(excluded, request) for excluded in view._exclusions
                )
            case _:
                return request in view  # slices, streams, reactions: history-dependent, the slow way

    def _matcher(self, request: rendering.Request, res: kmock.resource) -> Predicate:
        """Namespace, name, label & field selector filtering of a list/watch request."""
        params = request.params
        try:
            labels = parse_label_selector(params.get("labelSelector", ""))
            fields = parse_field_selector(params.get("fieldSelector", ""), res)
        except ValueError as e:
            raise _error(400, "BadRequest", str(e)) from None
        namespace, name = request.namespace, request.name

        def match(obj: Mapping[str, Any]) -> bool:
            meta = obj.get("metadata") or {}
            if namespace is not None and meta.get("namespace") != namespace:
                return False
            if name is not None and meta.get("name") != name:
                return False
            return labels(meta.get("labels") or {}) and fields(obj)

        return match

    def _list_payload(self, res: kmock.resource, items: list[Obj]) -> Obj:
        info = self._info(res)
        kind = (info.kind if info is not None else None) or (res.plural or "").capitalize()
        return {
            "apiVersion": f"{res.group}/{res.version}" if res.group else res.version,
            "kind": f"{kind}List",
            "metadata": {"resourceVersion": str(self._rv)},
            "items": items,
        }

    def _check_readable(self, request: rendering.Request) -> kmock.resource:
        res = request.resource
        if res is None or not self._known(res):
            raise _error(404, "NotFound", "the server could not find the requested resource")
        if request.subresource not in (None, "status"):
            raise _error(404, "NotFound", f"the subresource {request.subresource!r} is not emulated")
        return res

    @override
    async def _serve_version(self, request: rendering.Request) -> rendering.Payload:
        result = await super()._serve_version(request)
        if isinstance(result, dict) and request.resource is not None and request.resource.group == "":
            result["groupVersion"] = request.resource.version  # kmock says "/v1"
        return result

    @override
    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        res = request.resource
        if res is not None and res.version is None and res.plural is None:
            return await self._serve_group(request)  # /apis/GROUP/
        if res is not None and res.plural is None:
            return await self._serve_version(request)  # /api/v1/ & /apis/GROUP/VERSION/
        res = self._check_readable(request)
        match = self._matcher(request, res)
        items = [copy.deepcopy(obj) for obj in self._live(res, request.namespace) if match(obj)]
        return self._list_payload(res, items)

    @override
    async def _serve_fetch(self, request: rendering.Request) -> rendering.Payload:
        res = self._check_readable(request)
        assert request.name is not None
        obj = self._current(self._key(res, request.namespace, request.name))
        if obj is None:
            raise _not_found(res, request.name)
        return copy.deepcopy(obj)

    @override
    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[rendering.Payload]:
        res = self._check_readable(request)
        match = self._matcher(request, res)
        rkey = _rkey(res)
        params = request.params
        since = params.get("resourceVersion", "")
        timeout = float(params["timeoutSeconds"]) if params.get("timeoutSeconds") else None
        deadline = asyncio.get_running_loop().time() + timeout if timeout else None
        yield b""  # send the headers now: the stream is open even if nothing happens
        self._watch_streams += 1
        stream, cuts = self._watch_streams, self._watch_cuts

        position: int
        if since.isdigit() and int(since) > 0:
            position = int(since)  # resume: replay the logged events after this version
        else:
            # No version (or "0"): the current state as synthetic ADDED events, then the changes.
            position = self._rv
            snapshot = [copy.deepcopy(obj) for obj in self._live(res, request.namespace) if match(obj)]
            for obj in snapshot:
                yield {"type": "ADDED", "object": obj}
            if params.get("sendInitialEvents") == "true":
                yield {
                    "type": "BOOKMARK",
                    "object": {
                        "apiVersion": f"{res.group}/{res.version}" if res.group else res.version,
                        "kind": self.resources[res].kind if res in self.resources else None,
                        "metadata": {
                            "resourceVersion": str(position),
                            "annotations": {"k8s.io/initial-events-end": "true"},
                        },
                    },
                }

        while not self._closing:
            if self._watch_cuts != cuts:
                return  # cut: the client sees the stream end and must watch again
            if stream <= self._silenced_up_to:
                await self._wakeup.wait()  # hung: open, but nothing is ever delivered again
                continue
            if position < self._log_floor:
                yield {
                    "type": "ERROR",
                    "object": {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "metadata": {},
                        "status": "Failure",
                        "reason": "Expired",
                        "code": 410,
                        "message": f"too old resource version: {position} ({self._log_floor})",
                    },
                }
                return
            start = bisect.bisect_right(self._log, position, key=lambda entry: entry[0])
            batch = self._log[start:]
            if batch:
                for rv, erkey, etype, obj, old in batch:
                    position = rv
                    if erkey != rkey:
                        continue
                    # Objects entering/leaving the selection look like additions/deletions to watchers.
                    now_in, was_in = match(obj), old is not None and match(old)
                    if etype == "MODIFIED" and now_in and not was_in:
                        etype = "ADDED"
                    elif etype == "MODIFIED" and was_in and not now_in:
                        etype = "DELETED"
                    elif not now_in and not (etype == "DELETED" and was_in):
                        continue
                    yield {"type": etype, "object": copy.deepcopy(obj)}
                continue
            remaining = None if deadline is None else deadline - asyncio.get_running_loop().time()
            if remaining is not None and remaining <= 0:
                return
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout=remaining)
            except TimeoutError:
                return

    def _result(self, request: rendering.Request) -> rendering.Payload:
        if request.id not in self._results:
            raise _error(404, "NotFound", f"the request is not emulated: {request.method} {request.url.path}")
        return self._results[request.id]

    @override
    async def _serve_create(self, request: rendering.Request) -> rendering.Payload:
        return self._result(request)

    @override
    async def _serve_update(self, request: rendering.Request) -> rendering.Payload:
        return self._result(request)

    @override
    async def _serve_delete(self, request: rendering.Request) -> rendering.Payload:
        return self._result(request)

    async def _serve_replace(self, request: rendering.Request) -> rendering.Payload:
        return self._result(request)

    async def _serve_delete_collection(self, request: rendering.Request) -> rendering.Payload:
        return self._result(request)


def declare_crd(emulator: ClusterEmulator, crd: Mapping[str, Any]) -> list[kmock.resource]:
    """Declare one CustomResourceDefinition (as a dict) and store it as a CRD object."""
    spec = crd.get("spec", {})
    names = spec.get("names", {})
    group: str = spec["group"]
    plural: str = names["plural"]
    declared: list[kmock.resource] = []
    for version in spec.get("versions", []):
        if not version.get("served", True):
            continue
        subresources = version.get("subresources", spec.get("subresources")) or {}
        resource = kmock.resource(group, version["name"], plural)
        emulator.resources[resource] = kmock.ResourceInfo(
            kind=names.get("kind"),
            singular=names.get("singular") or names.get("kind", plural).lower(),
            namespaced=spec.get("scope", "Namespaced") == "Namespaced",
            verbs=set(CRD_VERBS),
            shortnames=set(names.get("shortNames", [])),
            categories=set(names.get("categories", [])),
            subresources=set(subresources),
        )
        emulator._custom.add(_rkey(resource))
        declared.append(resource)

    # Also make the CRD visible via the API, as kopf & kubectl may look at it.
    name = crd.get("metadata", {}).get("name") or f"{plural}.{group}"
    if emulator.get_object(CRDS, name) is None:
        emulator.create_object(CRDS, dict(crd, metadata=dict(crd.get("metadata", {}), name=name)))
        emulator.patch_object(
            CRDS,
            name,
            {
                "status": {
                    "acceptedNames": names,
                    "storedVersions": [v["name"] for v in spec.get("versions", []) if v.get("storage")],
                    "conditions": [
                        {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts"},
                        {"type": "Established", "status": "True", "reason": "InitialNamesAccepted"},
                    ],
                }
            },
            subresource="status",
        )
    return declared


def load_crds(
    emulator: ClusterEmulator,
    paths: str | pathlib.Path | Iterable[str | pathlib.Path],
) -> list[kmock.resource]:
    """Declare all CRDs from YAML files (multi-document) or directories of them (*.yaml, *.yml)."""
    paths = [paths] if isinstance(paths, (str, pathlib.Path)) else list(paths)
    files: list[pathlib.Path] = []
    for path in map(pathlib.Path, paths):
        files.extend(sorted([*path.glob("*.yaml"), *path.glob("*.yml")]) if path.is_dir() else [path])
    declared: list[kmock.resource] = []
    for file in files:
        for doc in yaml.safe_load_all(file.read_text(encoding="utf-8")):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                declared.extend(declare_crd(emulator, doc))
    return declared


class EmulatedCluster:
    """
    A :class:`ClusterEmulator` served on 127.0.0.1 from a background thread & event loop.

    Usable from sync code (``with EmulatedCluster() as cluster: ...``) and
    async code (``async with ...``). All accessors are thread-safe: they run
    inside the emulator's loop and return copies.

    Note: kmock.Server patches aiohttp's DNS resolution globally (LIFO);
    if several clusters run at once in one process, stop them in reverse order.
    """

    def __init__(
        self,
        emulator: ClusterEmulator | None = None,
        *,
        crds: str | pathlib.Path | Iterable[str | pathlib.Path] = (),
        host: str = "127.0.0.1",
        port: int | None = None,
        token: str = "emulated-cluster-token",
    ) -> None:
        super().__init__()
        self.emulator: ClusterEmulator = emulator if emulator is not None else ClusterEmulator()
        self.token = token
        self._host = host
        self._port = port
        self._url: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._failure: BaseException | None = None
        load_crds(self.emulator, crds)

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("The emulated cluster is not started.")
        return self._url

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("The emulated cluster is not started.")
        return self._loop

    def start(self, timeout: float = 10.0) -> Self:
        if self._thread is not None:
            raise RuntimeError("The emulated cluster can be started only once.")
        self._thread = threading.Thread(target=self._thread_main, name="emulated-cluster", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise TimeoutError("The emulated cluster did not start in time.")
        if self._failure is not None:
            raise RuntimeError("The emulated cluster failed to start.") from self._failure
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is None or self._loop is None or self._stopping is None:
            return
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(timeout)
        self._thread = None

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as e:
            self._failure = e
        finally:
            self._started.set()  # unblock start() even on failures
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        async with self.emulator, kmock.Server(self.emulator, host=self._host, port=self._port) as server:
            self._url = str(server.url).rstrip("/")
            self._started.set()
            await self._stopping.wait()
            self.emulator.shutdown()
            await asyncio.sleep(0.1)  # let the watch-streams end & the clients disconnect

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)

    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run a sync function inside the emulator's loop and return its result."""
        if self._loop is None or self._thread is None:
            return fn()  # not started: nothing runs concurrently
        if threading.get_ident() == self._thread.ident:
            return fn()

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    async def acall(self, fn: Callable[[], T]) -> T:
        """The same as :meth:`call`, but awaitable from another event loop."""
        if self._loop is None or self._thread is None or threading.get_ident() == self._thread.ident:
            return fn()

        async def run() -> T:
            return fn()

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(run(), self._loop))

    def inject_fault(self, fault: Fault) -> None:
        self.call(lambda: self.emulator.inject_fault(fault))

    def clear_faults(self) -> None:
        self.call(self.emulator.clear_faults)

    def allow_access(
        self, user: str, verb: str, group: str, resource: str, namespace: str | None = None
    ) -> None:
        self.call(lambda: self.emulator.allow_access(user, verb, group, resource, namespace))

    def cut_watches(self) -> None:
        self.call(self.emulator.cut_watches)

    def silence_watches(self) -> None:
        self.call(self.emulator.silence_watches)

    def objects(self, resource: ResourceArg, namespace: str | None = None) -> list[Obj]:
        """Current (non-deleted) objects of a resource, e.g. 'taskgrant.dev/v1alpha1/taskgrants'."""
        return self.call(lambda: self.emulator.list_objects(resource, namespace))

    def get(self, resource: ResourceArg, name: str, namespace: str | None = None) -> Obj | None:
        return self.call(lambda: self.emulator.get_object(resource, name, namespace))

    def create(self, resource: ResourceArg, body: Mapping[str, Any], namespace: str | None = None) -> Obj:
        """Create an object as if via the API (metadata, watch events), bypassing HTTP."""
        return self.call(lambda: self.emulator.create_object(resource, body, namespace))

    def patch(
        self,
        resource: ResourceArg,
        name: str,
        patch: Any,
        namespace: str | None = None,
        *,
        subresource: str | None = None,
    ) -> Obj:
        return self.call(
            lambda: self.emulator.patch_object(resource, name, patch, namespace, subresource=subresource)
        )

    def delete(self, resource: ResourceArg, name: str, namespace: str | None = None) -> Obj:
        return self.call(lambda: self.emulator.delete_object(resource, name, namespace))

    def load_crds(self, paths: str | pathlib.Path | Iterable[str | pathlib.Path]) -> list[kmock.resource]:
        return self.call(lambda: load_crds(self.emulator, paths))

    def requests(self) -> list[ServedRequest]:
        """All requests served so far, in order (incl. discovery, where verb/plural are None)."""

        def snapshot() -> list[ServedRequest]:
            return [
                ServedRequest(
                    id=req.id,
                    method=str(req.method.value),
                    path=req.url.path,
                    params=dict(req.params),
                    group=req.resource.group if req.resource else None,
                    version=req.resource.version if req.resource else None,
                    plural=req.resource.plural if req.resource else None,
                    namespace=req.namespace,
                    name=req.name,
                    subresource=req.subresource,
                    action=req.action.value.lower() if req.action else None,
                    verb=_verb(req),
                    user_agent=_header(req, "User-Agent"),
                    received=self.emulator._times[req.id][0],
                    answered=self.emulator._times[req.id][1],
                    status=self.emulator._statuses.get(req.id),
                    data=copy.deepcopy(req.data),
                )
                for req in self.emulator._requests
            ]

        return self.call(snapshot)

    def errors(self) -> list[str]:
        """Server-side errors (5xx & crashes) so far; 4xx API answers are not errors."""
        return self.call(lambda: [repr(e) for level in self.emulator._errors for e in level])

    def kubeconfig(self, namespace: str = "default") -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "emulated", "cluster": {"server": self.url}}],
            "users": [{"name": "emulated", "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": "emulated",
                    "context": {"cluster": "emulated", "user": "emulated", "namespace": namespace},
                }
            ],
            "current-context": "emulated",
            "preferences": {},
        }

    def write_kubeconfig(self, path: str | pathlib.Path, namespace: str = "default") -> pathlib.Path:
        """Write a kubeconfig usable by kubernetes.config.load_kube_config() and kopf's login."""
        path = pathlib.Path(path)
        path.write_text(yaml.safe_dump(self.kubeconfig(namespace), sort_keys=False), encoding="utf-8")
        return path


def main(argv: Sequence[str] | None = None) -> None:
    """Serve an emulated cluster until interrupted: ``python -m taskgrant.emulator --help``."""
    parser = argparse.ArgumentParser(description="Serve an in-memory emulated Kubernetes API.")
    parser.add_argument("--crds", action="append", default=[], help="CRD YAML files or directories.")
    parser.add_argument("--kubeconfig", default="emulated.kubeconfig", help="Where to write the kubeconfig.")
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args(argv)
    with EmulatedCluster(crds=args.crds, port=args.port) as cluster:
        path = cluster.write_kubeconfig(args.kubeconfig)
        print(f"Serving {cluster.url}; KUBECONFIG={path.absolute()}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
