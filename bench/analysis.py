"""Latencies and request counts, computed from the emulator's request log after a phase.

Every timestamp is `time.monotonic()` in the bench process, taken by the emulator when it answered a
request, so the bench's own requests and the operator's compare directly.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.client import BENCH_CLIENT
from taskgrant.emulator import ServedRequest

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: the smallest value with at least `fraction` of the values at or below it."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Distribution:
    count: int
    p50: float
    p95: float
    p99: float
    max: float
    mean: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Distribution:
        if not values:
            return cls(0, math.nan, math.nan, math.nan, math.nan, math.nan)
        return cls(
            count=len(values),
            p50=percentile(values, 0.50),
            p95=percentile(values, 0.95),
            p99=percentile(values, 0.99),
            max=max(values),
            mean=sum(values) / len(values),
        )


def is_bench(request: ServedRequest) -> bool:
    return request.user_agent == BENCH_CLIENT


def operator_requests(requests: Iterable[ServedRequest], since: float) -> list[ServedRequest]:
    """The operator's API requests from `since` on: not the bench's, not discovery, not watch-streams."""
    return [
        r
        for r in requests
        if not is_bench(r) and r.verb is not None and r.verb != "watch" and r.received >= since
    ]


@dataclass
class Timeline:
    """What happened in one grant's namespace, from the request log."""

    job_created: float | None = None  # the bench's Job create answered
    job_finished: float | None = None  # the bench's Job status patch (Complete) answered
    first_job_create_received: float | None = None
    binding_created: float | None = None  # the operator's first RoleBinding create answered
    revoked: float | None = None  # the operator's last ServiceAccount deletecollection answered


def timelines(requests: Iterable[ServedRequest], namespaces: Iterable[str]) -> dict[str, Timeline]:
    wanted = set(namespaces)
    found: dict[str, Timeline] = {ns: Timeline() for ns in wanted}
    for r in requests:
        if r.namespace not in wanted or r.answered is None or r.status is None or r.status >= 300:
            continue
        line = found[r.namespace]
        if is_bench(r):
            if r.plural == "jobs" and r.verb == "create" and line.job_created is None:
                line.job_created = r.answered
                line.first_job_create_received = r.received
            elif r.plural == "jobs" and r.verb == "patch" and r.subresource == "status":
                line.job_finished = r.answered
        elif r.plural == "rolebindings" and r.verb == "create" and line.binding_created is None:
            line.binding_created = r.answered
        elif r.plural == "serviceaccounts" and r.verb == "deletecollection":
            line.revoked = r.answered  # the last one counts
    return found


def activation_latencies(lines: Mapping[str, Timeline]) -> list[float]:
    return [
        line.binding_created - line.job_created
        for line in lines.values()
        if line.binding_created is not None and line.job_created is not None
    ]


def revocation_latencies(lines: Mapping[str, Timeline]) -> list[float]:
    return [
        line.revoked - line.job_finished
        for line in lines.values()
        if line.revoked is not None and line.job_finished is not None
    ]


def deadline_lateness(lines: Mapping[str, Timeline], expiry: Mapping[str, float]) -> list[float]:
    """From each grant's expiresAt (as monotonic time) to its last deletecollection answered."""
    return [
        lines[ns].revoked - expires  # type: ignore[operator]
        for ns, expires in expiry.items()
        if ns in lines and lines[ns].revoked is not None
    ]


@dataclass
class RequestCounts:
    """The operator's requests per grant lifecycle (averaged over N grants)."""

    grants: int
    namespaced_by_verb: dict[str, float] = field(default_factory=dict)
    namespaced_by_resource: dict[str, float] = field(default_factory=dict)  # "verb plural[/sub]"
    cluster_by_resource: dict[str, float] = field(default_factory=dict)
    reads: float = 0.0
    writes_without_events: float = 0.0
    event_writes: float = 0.0
    cluster_reads: float = 0.0
    cluster_writes: float = 0.0
    writes_per_grant_min: int = 0
    writes_per_grant_max: int = 0
    failed: dict[str, int] = field(default_factory=dict)  # "verb plural status": count (absolute)

    def as_dict(self) -> dict[str, Any]:
        return {
            "grants": self.grants,
            "namespaced_by_verb": self.namespaced_by_verb,
            "namespaced_by_resource": self.namespaced_by_resource,
            "cluster_scoped_by_resource": self.cluster_by_resource,
            "reads": self.reads,
            "writes_without_events": self.writes_without_events,
            "event_writes": self.event_writes,
            "cluster_scoped_reads": self.cluster_reads,
            "cluster_scoped_writes": self.cluster_writes,
            "writes_without_events_per_grant_min": self.writes_per_grant_min,
            "writes_without_events_per_grant_max": self.writes_per_grant_max,
            "failed_requests": self.failed,
        }


def _resource(r: ServedRequest) -> str:
    plural = f"{r.plural}/{r.subresource}" if r.subresource else str(r.plural)
    return f"{r.verb} {plural}"


def request_counts(
    requests: Iterable[ServedRequest], namespaces: Iterable[str], since: float
) -> RequestCounts:
    wanted = set(namespaces)
    n = len(wanted)
    by_verb: Counter[str] = Counter()
    by_resource: Counter[str] = Counter()
    cluster: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    writes_of: defaultdict[str, int] = defaultdict(int)
    reads = writes = events = cluster_reads = cluster_writes = 0
    for r in operator_requests(requests, since):
        if r.status is not None and r.status >= 300:
            failed[f"{_resource(r)} {r.status}"] += 1
        write = r.verb in WRITE_VERBS
        if r.namespace in wanted:
            by_verb[str(r.verb)] += 1
            by_resource[_resource(r)] += 1
            if r.plural == "events":
                events += write
            elif write:
                writes += 1
                writes_of[r.namespace] += 1
            else:
                reads += 1
        elif r.namespace is None:
            cluster[_resource(r)] += 1
            cluster_writes += write
            cluster_reads += not write
    per_grant = [writes_of.get(ns, 0) for ns in wanted]
    return RequestCounts(
        grants=n,
        namespaced_by_verb={verb: count / n for verb, count in sorted(by_verb.items())},
        namespaced_by_resource={key: count / n for key, count in sorted(by_resource.items())},
        cluster_by_resource={key: count / n for key, count in sorted(cluster.items())},
        reads=reads / n,
        writes_without_events=writes / n,
        event_writes=events / n,
        cluster_reads=cluster_reads / n,
        cluster_writes=cluster_writes / n,
        writes_per_grant_min=min(per_grant, default=0),
        writes_per_grant_max=max(per_grant, default=0),
        failed=dict(sorted(failed.items())),
    )
