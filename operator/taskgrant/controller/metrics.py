"""Prometheus metrics, named by Prometheus and controller-runtime conventions (taskgrant_ prefix)."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import Counter, Gauge, Histogram, start_http_server

# Revocation and lateness are expected in milliseconds; the tail buckets catch a struggling API server.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

GRANTS = Gauge("taskgrant_grants", "TaskGrants by phase, as last counted.", ["phase"])
ACTIVATIONS = Counter(
    "taskgrant_activations_total", "Grants activated (RoleBindings created).", ["job_source"]
)
REVOCATIONS = Counter(
    "taskgrant_revocations_total",
    "Grants ended, every object removed, by final phase and reason.",
    ["phase", "reason"],
)
REVOCATION_SECONDS = Histogram(
    "taskgrant_revocation_duration_seconds",
    "From noticing that a grant must end to every one of its objects confirmed gone.",
    buckets=LATENCY_BUCKETS,
)
DEADLINE_LATENESS_SECONDS = Histogram(
    "taskgrant_deadline_lateness_seconds",
    "From a grant's expiry to every one of its objects confirmed gone.",
    buckets=LATENCY_BUCKETS,
)
RECONCILE_ERRORS = Counter("taskgrant_reconcile_errors_total", "Reconciles that failed and were retried.")
API_REQUESTS = Counter(
    "taskgrant_api_requests_total", "Kubernetes API requests by verb and HTTP status code.", ["verb", "code"]
)

PHASES = ("Pending", "Active", "Revoked", "Denied")


def count_response(verb: str, status: int) -> None:
    """The API client's observer (KubeApi's `observe`)."""
    API_REQUESTS.labels(verb=verb, code=str(status)).inc()


def count_phases(counts: Mapping[str, int]) -> None:
    for phase in PHASES:
        GRANTS.labels(phase=phase).set(counts.get(phase, 0))


def serve(port: int, address: str = "0.0.0.0") -> None:
    """Serve /metrics on its own thread (the operator's process and platform metrics included)."""
    start_http_server(port, addr=address)
