"""The results as Markdown tables (stdout, pasteable into docs/performance.md) and the targets."""

from __future__ import annotations

import math
from typing import Any

from bench.phases import PhaseResult

VERBS = ("get", "list", "create", "patch", "deletecollection")


def ms(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value * 1000:.0f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def latency_rows(phases: list[PhaseResult]) -> list[list[str]]:
    rows = []
    for phase in phases:
        for key, label in (
            ("activation_latency_s", "activation, burst (Job created → RoleBinding created)"),
            ("paced_activation_latency_s", "activation, paced"),
            ("paced_revocation_latency_s", "revocation, paced"),
            ("revocation_latency_s", "revocation, burst (Job Complete → ServiceAccount deleted)"),
            ("deadline_lateness_s", "deadline lateness, burst (expiresAt → ServiceAccount deleted)"),
            ("paced_deadline_lateness_s", "deadline lateness, paced"),
        ):
            dist = phase.data.get(key)
            if dist and dist["count"]:
                rows.append(
                    [
                        label,
                        str(phase.grants),
                        str(dist["count"]),
                        ms(dist["p50"]),
                        ms(dist["p95"]),
                        ms(dist["p99"]),
                        ms(dist["max"]),
                    ]
                )
    return rows


def render(phases: list[PhaseResult], targets: list[dict[str, Any]]) -> str:
    out: list[str] = []
    lifecycle = [p for p in phases if "activation_latency_s" in p.data or "deadline_lateness_s" in p.data]
    out.append("Latencies (milliseconds)\n")
    out.append(table(["what", "N", "count", "p50", "p95", "p99", "max"], latency_rows(lifecycle)))

    rows = []
    for p in lifecycle:
        throughput = p.data.get("throughput", {})
        operator = p.data["operator"]
        rows.append(
            [
                p.name,
                f"{throughput.get('lifecycles_per_second', math.nan):.1f}",
                f"{throughput.get('lifecycles_per_second_incl_paced_and_idle', math.nan):.1f}",
                f"{throughput.get('activation_window_s', math.nan):.2f}",
                f"{throughput.get('revocation_window_s', math.nan):.2f}",
                f"{operator['cpu_seconds']:.1f}",
                f"{operator['peak_rss_mb']:.0f}",
                f"{operator.get('rss_all_active_mb', math.nan):.0f}",
            ]
        )
    out.append("\nThroughput and operator resources\n")
    out.append(
        table(
            [
                "phase",
                "lifecycles/s (burst)",
                "lifecycles/s (first Job → last revocation)",
                "activation window s",
                "revocation window s",
                "operator CPU s",
                "peak RSS MB",
                "RSS all active MB",
            ],
            rows,
        )
    )

    rows = []
    for p in lifecycle:
        counts = p.data["requests_per_lifecycle"]
        verbs = counts["namespaced_by_verb"]
        rows.append(
            [
                p.name,
                *(f"{verbs.get(verb, 0):.2f}" for verb in VERBS),
                f"{counts['reads']:.2f}",
                f"{counts['writes_without_events']:.2f}",
                f"{counts['event_writes']:.2f}",
                f"{counts['cluster_scoped_reads']:.2f}",
                f"{counts['cluster_scoped_writes']:.3f}",
            ]
        )
    out.append(
        "\nOperator API requests per grant lifecycle (in the grant's namespace, by verb; events included)\n"
    )
    out.append(
        table(
            [
                "phase",
                *VERBS,
                "reads",
                "writes (no events)",
                "event writes",
                "cluster reads",
                "cluster writes",
            ],
            rows,
        )
    )
    for p in lifecycle:
        counts = p.data["requests_per_lifecycle"]
        resources = {**counts["namespaced_by_resource"]}
        cluster = counts["cluster_scoped_by_resource"]
        rows = [[key, "namespace", f"{value:.3f}"] for key, value in resources.items()]
        rows += [[key, "cluster", f"{value:.3f}"] for key, value in cluster.items()]
        out.append(f"\n{p.name}: requests per lifecycle by verb and resource\n")
        out.append(table(["request", "scope", "per grant"], rows))
        if counts["failed_requests"]:
            out.append(f"\nfailed operator requests (total): {counts['failed_requests']}")

    for p in phases:
        if "steps" in p.data:
            out.append(f"\nMemory ({p.name}, {p.data['total_seconds']:.0f} s in all)\n")
            rows = [
                [
                    str(step["grants"]),
                    f"{step['seconds_to_all_active']:.0f}",
                    f"{step['rss_mb']:.0f}",
                    f"{step['peak_rss_mb']:.0f}",
                    f"{step['cpu_seconds']:.0f}",
                    str(step.get("slope_bytes_per_grant", "")),
                ]
                for step in p.data["steps"]
            ]
            out.append(
                table(
                    [
                        "active grants",
                        "s to all Active",
                        "RSS MB",
                        "peak RSS MB",
                        "CPU s",
                        "slope bytes/grant",
                    ],
                    rows,
                )
            )

    out.append("\nTargets\n")
    out.append(
        table(
            ["target", "measured", "met"],
            [
                [t["target"], t["measured"], {True: "yes", False: "NO", None: "n/a"}[t["met"]]]
                for t in targets
            ],
        )
    )
    errors = [f"- {p.name}: {p.error}" for p in phases if p.error]
    if errors:
        out.append("\nIncomplete phases\n\n" + "\n".join(errors))
    return "\n".join(out) + "\n"


def _find(phases: list[PhaseResult], prefix: str) -> PhaseResult | None:
    found = [p for p in phases if p.name.startswith(prefix)]
    return max(found, key=lambda p: p.grants) if found else None


def targets(phases: list[PhaseResult]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = []

    def add(target: str, value: float | None, limit: float, shown: str) -> None:
        met = None if value is None or math.isnan(value) else value < limit
        result.append({"target": target, "measured": shown, "met": met, "value": value, "limit": limit})

    big = _find(phases, "lifecycle-")
    if big is not None:
        n = big.grants
        for kind, label in (("paced_", "Jobs completing at a steady rate"), ("", "all Jobs at once")):
            dist = big.data.get(f"{kind}revocation_latency_s") or {}
            if dist.get("count"):
                p99 = dist["p99"]
                add(f"revocation p99 < 1 s at {n} active, {label}", p99, 1.0, f"{ms(p99)} ms")
                add(f"revocation p99 < 100 ms at {n} active, {label} (aim)", p99, 0.1, f"{ms(p99)} ms")
        for kind, label in (("paced_", "Jobs starting at a steady rate"), ("", "all Jobs at once")):
            dist = big.data.get(f"{kind}activation_latency_s") or {}
            if dist.get("count"):
                p99 = dist["p99"]
                add(f"activation p99 < 1 s at {n} active, {label}", p99, 1.0, f"{ms(p99)} ms")
        counts = big.data["requests_per_lifecycle"]
        writes = counts["writes_without_events"]
        total = writes + counts["event_writes"]
        add(
            "≤ 10 API writes per single-namespace lifecycle (events excluded)", writes, 10.01, f"{writes:.2f}"
        )
        add("≤ 10 API writes per single-namespace lifecycle (events included)", total, 10.01, f"{total:.2f}")
        peak = big.data["operator"]["peak_rss_mb"]
        add(f"peak RSS < 200 MB at {n} active", peak, 200.0, f"{peak:.0f} MB")
    deadline = _find(phases, "deadline-")
    if deadline is not None:
        for kind, label in (("paced_", "expiring at a steady rate"), ("", "expiring together")):
            dist = deadline.data.get(f"{kind}deadline_lateness_s") or {}
            if dist.get("count"):
                p99 = dist["p99"]
                add(f"deadline lateness p99 < 1 s, {dist['count']} grants {label}", p99, 1.0, f"{ms(p99)} ms")
    memory = _find(phases, "memory-")
    if memory is not None:
        slopes = [
            s["slope_bytes_per_grant"] for s in memory.data["steps"][2:] if "slope_bytes_per_grant" in s
        ]
        reached = memory.data["steps"][-1]["grants"]
        if len(slopes) >= 2:
            # "Flat": no later interval adds more per grant than 1.5 times the first (or 2 KiB more).
            first = slopes[0]
            worst = max(slopes[1:])
            limit = max(1.5 * first, first + 2048)
            met = worst <= limit
            result.append(
                {
                    "target": f"flat per-grant memory slope to {reached} grants",
                    "measured": ", ".join(f"{s / 1024:.1f}" for s in slopes) + " KiB/grant",
                    "met": met,
                    "value": worst,
                    "limit": limit,
                }
            )
    return result
